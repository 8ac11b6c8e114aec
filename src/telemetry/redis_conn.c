/* One Redis connection (see redis_conn.h): the lookup, the connect, the
 * TLS handshake through http/stream, the batch written whole and its
 * replies gathered with hiredis's redisReader. Touches only its own
 * stream, timer and lookup; the owner hears of it through one callback. */
#include "redis_conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stream.h"

struct shadow_redis_conn_s {
  shadow_stream_t s;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  uv_connect_t connect;
  uv_loop_t *loop;
  shadow_tls_ctx_t *tls;
  uint64_t timeout_ms;
  shadow_redis_event_cb cb;
  void *ud;
  redisReader *reader;
  char port[8];
  int resolving, stream_open, closing, ready, failed;
  int handles; /* the stream and the timer, until both have closed */
  /* The batch in flight: its bytes (kept until written), the replies it
   * expects and those that came. */
  shadow_buf_t out;
  size_t want, fed;       /* replies expected, bytes read for them */
  uint64_t cpu_ns, cb_ns; /* reading's CPU, and the callback's within it */
  redisReply **got;
  size_t ngot, got_cap;
  char rbuf[16384];
};

static void free_replies(shadow_redis_conn_t *c) {
  for (size_t i = 0; i < c->ngot; i++)
    freeReplyObject(c->got[i]);
  c->ngot = 0;
}

static void maybe_free(shadow_redis_conn_t *c) {
  if (c->resolving || c->handles > 0) return;
  free_replies(c);
  free(c->got);
  shadow_buf_free(&c->out);
  if (c->reader) redisReaderFree(c->reader);
  shadow_tls_ctx_unref(c->tls);
  free(c);
}

static void on_stream_closed(uv_handle_t *h) {
  shadow_redis_conn_t *c = shadow_stream_of(h)->data;
  c->handles--;
  maybe_free(c);
}

static void on_timer_closed(uv_handle_t *h) {
  shadow_redis_conn_t *c = h->data;
  c->handles--;
  maybe_free(c);
}

static void shut(shadow_redis_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  if (c->stream_open)
    shadow_stream_close(&c->s, on_stream_closed);
  else
    c->handles--; /* the stream was never initialised */
  if (c->resolving) uv_cancel((uv_req_t *)&c->gai);
  maybe_free(c);
}

/* The connection is over: the owner hears why, once. */
static void fail(shadow_redis_conn_t *c, const char *fmt, ...) {
  if (c->closing || c->failed) return;
  c->failed = 1;
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  shadow_redis_event_cb cb = c->cb;
  void *ud = c->ud;
  shut(c);
  cb(ud, c, SHADOW_REDIS_FAILED, NULL, 0, why);
}

static void on_timeout(uv_timer_t *t) {
  shadow_redis_conn_t *c = t->data;
  fail(c, c->ready ? "timeout waiting for replies" : "connect timeout");
}

static void arm(shadow_redis_conn_t *c) {
  uv_timer_start(&c->timer, on_timeout, c->timeout_ms, 0);
}

static void on_alloc(shadow_stream_t *s, size_t hint, uv_buf_t *buf) {
  shadow_redis_conn_t *c = s->data;
  buf->base = c->rbuf;
  buf->len = sizeof(c->rbuf);
}

uint64_t shadow_redis_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t shadow_redis_conn_take_cpu_ns(shadow_redis_conn_t *c) {
  uint64_t v = c->cpu_ns;
  c->cpu_ns = 0;
  return v;
}

static void read_replies(shadow_redis_conn_t *c, ssize_t nread,
                         const uv_buf_t *buf);

/* Reads, timed for the store's own CPU figure. */
static void on_read(shadow_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  shadow_redis_conn_t *c = s->data;
  uint64_t t0 = shadow_redis_cpu_ns();
  c->cb_ns = 0;
  read_replies(c, nread, buf);
  uint64_t spent = shadow_redis_cpu_ns() - t0;
  c->cpu_ns += spent > c->cb_ns ? spent - c->cb_ns : 0;
}

static void read_replies(shadow_redis_conn_t *c, ssize_t nread,
                         const uv_buf_t *buf) {
  shadow_stream_t *s = &c->s;
  if (c->closing) return;
  if (nread == UV_EOF) {
    fail(c, "the server closed the connection");
    return;
  }
  if (nread < 0) {
    fail(c, "%s",
         nread == SHADOW_STREAM_ETLS ? shadow_stream_error(s)
                                     : uv_strerror((int)nread));
    return;
  }
  if (nread == 0) return;
  c->fed += (size_t)nread;
  if (c->fed > SHADOW_REDIS_REPLY_MAX) {
    fail(c, "replies too large (over %zu bytes)", SHADOW_REDIS_REPLY_MAX);
    return;
  }
  if (redisReaderFeed(c->reader, buf->base, (size_t)nread) != REDIS_OK) {
    fail(c, "bad reply: %s", c->reader->errstr);
    return;
  }
  for (;;) {
    void *r = NULL;
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
      fail(c, "bad reply: %s", c->reader->errstr);
      return;
    }
    if (!r) break;
    if (c->ngot >= c->want) {
      /* Nothing was asked: a server that speaks out of turn. */
      freeReplyObject(r);
      fail(c, "a reply nothing asked for");
      return;
    }
    if (c->ngot == c->got_cap) {
      size_t cap = c->got_cap ? c->got_cap * 2 : 64;
      redisReply **g = realloc(c->got, cap * sizeof(*g));
      if (!g) {
        freeReplyObject(r);
        fail(c, "out of memory");
        return;
      }
      c->got = g;
      c->got_cap = cap;
    }
    c->got[c->ngot++] = r;
    if (c->ngot == c->want) {
      uv_timer_stop(&c->timer);
      /* The owner may send the next batch, or close, from the callback:
       * these replies are taken out of the connection first. */
      redisReply **g = c->got;
      size_t n = c->ngot;
      c->got = NULL;
      c->ngot = c->got_cap = c->want = 0;
      c->fed = 0;
      uint64_t t0 = shadow_redis_cpu_ns();
      c->cb(c->ud, c, SHADOW_REDIS_REPLIES, g, n, NULL);
      c->cb_ns += shadow_redis_cpu_ns() - t0;
      for (size_t i = 0; i < n; i++)
        freeReplyObject(g[i]);
      free(g);
      if (c->closing) return;
    }
  }
}

static void went_ready(shadow_redis_conn_t *c) {
  uv_timer_stop(&c->timer);
  if (shadow_stream_read_start(&c->s, on_alloc, on_read) != 0) {
    fail(c, "cannot read");
    return;
  }
  c->ready = 1;
  c->cb(c->ud, c, SHADOW_REDIS_READY, NULL, 0, NULL);
}

static void on_tls_ready(shadow_stream_t *s, int status) {
  shadow_redis_conn_t *c = s->data;
  if (c->closing) return;
  if (status != 0) {
    fail(c, "tls: %s",
         status == SHADOW_STREAM_ETLS ? shadow_stream_error(s)
                                      : "the server closed the handshake");
    return;
  }
  went_ready(c);
}

static void on_connect(uv_connect_t *req, int status) {
  shadow_redis_conn_t *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    fail(c, "connect: %s", uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->s.tcp, 1);
  if (!c->tls) {
    went_ready(c);
    return;
  }
  if (shadow_stream_start_tls(&c->s, c->tls, 0, on_tls_ready) != 0)
    fail(c, "tls: out of memory");
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  shadow_redis_conn_t *c = req->data;
  c->resolving = 0;
  if (c->closing) {
    uv_freeaddrinfo(res);
    maybe_free(c);
    return;
  }
  if (status < 0 || !res) {
    uv_freeaddrinfo(res);
    fail(c, "resolve: %s", uv_strerror(status));
    return;
  }
  int rc = uv_tcp_connect(&c->connect, &c->s.tcp, res->ai_addr, on_connect);
  uv_freeaddrinfo(res);
  if (rc < 0) fail(c, "connect: %s", uv_strerror(rc));
}

int shadow_redis_conn_open(uv_loop_t *loop, const char *host, int port,
                           shadow_tls_ctx_t *tls, uint64_t timeout_ms,
                           shadow_redis_event_cb cb, void *ud,
                           shadow_redis_conn_t **out) {
  shadow_redis_conn_t *c = calloc(1, sizeof(*c));
  if (!c) return -ENOMEM;
  c->reader = redisReaderCreate();
  if (!c->reader) {
    free(c);
    return -ENOMEM;
  }
  c->loop = loop;
  c->cb = cb;
  c->ud = ud;
  c->timeout_ms = timeout_ms ? timeout_ms : 5000;
  if (tls) {
    shadow_tls_ctx_ref(tls);
    c->tls = tls;
  }
  snprintf(c->port, sizeof(c->port), "%d", port);
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->handles = 2;
  if (shadow_stream_init(loop, &c->s, c) == 0) c->stream_open = 1;
  c->gai.data = c->connect.data = c;
  *out = c;
  if (!c->stream_open) {
    fail(c, "cannot make a socket");
    return 0;
  }
  arm(c);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->resolving = 1;
  int rc = uv_getaddrinfo(loop, &c->gai, on_resolved, host, c->port, &hints);
  if (rc < 0) {
    c->resolving = 0;
    fail(c, "resolve: %s", uv_strerror(rc));
  }
  return 0;
}

static void on_written(shadow_stream_t *s, int status) {
  shadow_redis_conn_t *c = s->data;
  if (c->closing) return;
  if (status < 0) fail(c, "write: %s", uv_strerror(status));
}

int shadow_redis_conn_send(shadow_redis_conn_t *c, const char *data, size_t len,
                           size_t nreplies) {
  if (!c->ready || c->closing) return -ENOTCONN;
  if (c->want || c->s.writing) return -EBUSY;
  shadow_buf_reset(&c->out);
  if (shadow_buf_append(&c->out, data, len) != 0) return -ENOMEM;
  uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
  c->want = nreplies;
  c->ngot = 0;
  int rc = shadow_stream_write(&c->s, &b, 1, on_written);
  if (rc < 0) {
    c->want = 0;
    return rc;
  }
  arm(c);
  return 0;
}

int shadow_redis_conn_busy(const shadow_redis_conn_t *c) {
  return c->want > 0 || c->s.writing;
}

void shadow_redis_conn_close(shadow_redis_conn_t *c) {
  if (!c) return;
  shut(c);
}

int shadow_redis_encode(shadow_buf_t *out, int argc, const char **argv,
                        const size_t *lens) {
  char *cmd = NULL;
  int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
  if (n < 0 || !cmd) return -ENOMEM;
  int rc = shadow_buf_append(out, cmd, (size_t)n);
  redisFreeCommand(cmd);
  return rc ? -ENOMEM : 0;
}

int shadow_redis_encodev(shadow_buf_t *out, int argc, ...) {
  const char *argv[16];
  size_t lens[16];
  if (argc > 16) return -EINVAL;
  va_list ap;
  va_start(ap, argc);
  for (int i = 0; i < argc; i++) {
    argv[i] = va_arg(ap, const char *);
    lens[i] = strlen(argv[i]);
  }
  va_end(ap);
  return shadow_redis_encode(out, argc, argv, lens);
}
