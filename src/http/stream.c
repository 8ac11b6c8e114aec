/* Plain or TLS TCP streams (see stream.h). A plain stream is libuv's, one
 * call deep. A TLS stream reads ciphertext into a buffer per thread (reads
 * are handled one at a time), runs it through OpenSSL, and hands plaintext
 * to the owner in the owner's own buffer; whatever ciphertext OpenSSL
 * produces (handshake, records, alerts, session tickets) is written with a
 * request of its own that carries a copy, so nothing waits on the owner.
 *
 * Every write tries the socket first (uv_try_write) and queues with
 * uv_write only what it does not take. libuv finishes a uv_write, even one
 * written at once, by dropping POLLOUT from the connection's interest,
 * which it applies with an epoll_ctl before its next poll: one system call
 * per write that nothing needed. A write taken whole here leaves the
 * registration alone; the owner's callback then runs from an idle handle
 * on the loop's next turn, as libuv would have run it. */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CIPHER_BUF (64 * 1024)

/* A write of ciphertext. owner: it ends the owner's write in flight. */
typedef struct twrite_s {
  uv_write_t req;
  shadow_stream_t *s;
  int owner;
  size_t len;
  char data[];
} twrite_t;

static _Thread_local char cipher[CIPHER_BUF];

static void on_tcp_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

shadow_stream_t *shadow_stream_of(uv_handle_t *h) {
  return (shadow_stream_t *)(void *)h;
}

int shadow_stream_init(uv_loop_t *loop, shadow_stream_t *s, void *data) {
  memset(s, 0, sizeof(*s));
  int rc = uv_tcp_init(loop, &s->tcp);
  s->tcp.data = s;
  s->data = data;
  if (rc) return rc;
  uv_idle_init(loop, &s->done_idle); /* cannot fail */
  s->done_idle.data = s;
  s->open_handles = 2;
  return 0;
}

/* The owner's write ended: its callback, once. */
static void owner_written(shadow_stream_t *s, int status) {
  s->writing = 0;
  if (s->on_written) s->on_written(s, status);
}

static void on_done_idle(uv_idle_t *h) {
  shadow_stream_t *s = h->data;
  uv_idle_stop(h);
  if (!s->done_pending) return;
  s->done_pending = 0;
  owner_written(s, 0);
}

/* The owner's write went out whole, now: its callback on the next turn. */
static void owner_done_later(shadow_stream_t *s) {
  s->done_pending = 1;
  uv_idle_start(&s->done_idle, on_done_idle);
}

/* What the socket takes of bufs now: the count of bytes, or a negative
 * code (UV_EAGAIN: nothing, something is queued, or the socket is full). */
static ssize_t try_write(shadow_stream_t *s, const uv_buf_t *bufs,
                         unsigned nbufs) {
  return uv_try_write((uv_stream_t *)&s->tcp, bufs, nbufs);
}

/* bufs less their first n bytes, into out (at most 8 pieces). */
static unsigned skip_bytes(const uv_buf_t *bufs, unsigned nbufs, size_t n,
                           uv_buf_t *out) {
  unsigned k = 0;
  for (unsigned i = 0; i < nbufs; i++) {
    if (n >= bufs[i].len) {
      n -= bufs[i].len;
      continue;
    }
    out[k++] = uv_buf_init(bufs[i].base + n, (unsigned)(bufs[i].len - n));
    n = 0;
  }
  return k;
}

int shadow_stream_is_tls(const shadow_stream_t *s) {
  return s->tls != NULL;
}

static void on_cipher_written(uv_write_t *req, int status) {
  twrite_t *w = (twrite_t *)(void *)req;
  shadow_stream_t *s = w->s;
  int owner = w->owner;
  free(w);
  if (owner) owner_written(s, status);
}

/* Writes the ciphertext OpenSSL has ready. owner: this write ends the
 * owner's (its callback runs when it is written, even if empty). */
static int flush(shadow_stream_t *s, int owner) {
  size_t n = shadow_tls_pending(s->tls);
  if (n == 0 && !owner) return 0;
  /* n + 1: shadow_tls_take ends what it appends with a NUL. */
  twrite_t *w = malloc(sizeof(*w) + n + 1);
  if (!w) return UV_ENOMEM;
  w->s = s;
  w->owner = owner;
  shadow_buf_t b = {w->data, 0, n + 1};
  /* shadow_tls_take appends into b without growing it: room is there. */
  if (n && shadow_tls_take(s->tls, &b) != 0) {
    free(w);
    return UV_ENOMEM;
  }
  w->len = b.len;
  uv_buf_t ub = uv_buf_init(w->data, (unsigned)w->len);
  ssize_t took = w->len && !s->closing ? try_write(s, &ub, 1) : 0;
  if (took < 0) took = 0; /* a failure shows in uv_write's callback */
  if ((size_t)took == w->len) {
    free(w);
    if (owner) owner_done_later(s);
    return 0;
  }
  ub = uv_buf_init(w->data + took, (unsigned)(w->len - (size_t)took));
  int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &ub, 1, on_cipher_written);
  if (rc) free(w);
  return rc;
}

static void alloc_cipher(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(cipher, sizeof(cipher));
}

static void alloc_plain(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  shadow_stream_t *s = shadow_stream_of(h);
  s->on_alloc(s, hint, buf);
}

static void deliver(shadow_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  if (s->on_read && !s->closing) s->on_read(s, nread, buf);
}

static void ready(shadow_stream_t *s, int status) {
  shadow_stream_ready_cb cb = s->on_ready;
  s->on_ready = NULL;
  if (cb && !s->closing) cb(s, status);
}

static void set_reading(shadow_stream_t *s) {
  int want = !s->closing &&
             (s->want_read || (s->tls && !shadow_tls_handshake_done(s->tls)));
  if (want && !s->reading) {
    uv_alloc_cb a = s->tls ? alloc_cipher : alloc_plain;
    if (uv_read_start((uv_stream_t *)&s->tcp, a, on_tcp_read) == 0)
      s->reading = 1;
  } else if (!want && s->reading) {
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = 0;
  }
}

/* Plaintext out of OpenSSL, into the owner's buffers, until it has none;
 * a pause the owner asks for meanwhile takes effect after this read, as a
 * plain stream delivers a whole read. */
static void drain_plain(shadow_stream_t *s) {
  while (!s->closing && s->on_read) {
    uv_buf_t buf;
    s->on_alloc(s, 65536, &buf);
    if (!buf.base || !buf.len) {
      deliver(s, UV_ENOBUFS, &buf);
      return;
    }
    long n = shadow_tls_read(s->tls, buf.base, buf.len);
    if (n > 0) {
      deliver(s, n, &buf);
      continue;
    }
    if (n == -2)
      deliver(s, UV_EOF, &buf);
    else if (n < 0)
      deliver(s, SHADOW_STREAM_ETLS, &buf);
    break;
  }
  if (!s->closing) flush(s, 0); /* what reading produced (tickets, alerts) */
}

static void on_tcp_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  shadow_stream_t *s = shadow_stream_of((uv_handle_t *)h);
  if (s->closing) return;
  if (!s->tls) {
    if (nread != 0) deliver(s, nread, buf);
    return;
  }
  if (nread == 0) return;
  if (nread < 0) {
    if (!shadow_tls_handshake_done(s->tls))
      ready(s, (int)nread);
    else
      deliver(s, nread, buf);
    return;
  }
  if (s->server && !s->tls_seen && buf->base[0] >= 'A' && buf->base[0] <= 'Z') {
    /* No TLS record starts with a letter; an HTTP method does. */
    shadow_tls_free(s->tls);
    s->tls = NULL;
    uv_read_stop(h);
    s->reading = 0;
    ready(s, SHADOW_STREAM_EPLAIN);
    if (!s->closing) set_reading(s);
    return;
  }
  s->tls_seen = 1;
  if (shadow_tls_feed(s->tls, buf->base, (size_t)nread) != 0) {
    if (!shadow_tls_handshake_done(s->tls))
      ready(s, SHADOW_STREAM_ETLS);
    else
      deliver(s, SHADOW_STREAM_ETLS, buf);
    return;
  }
  if (!shadow_tls_handshake_done(s->tls)) {
    int rc = shadow_tls_handshake(s->tls);
    flush(s, 0);
    if (rc == SHADOW_TLS_WANT) return;
    if (rc != SHADOW_TLS_OK) {
      ready(s, SHADOW_STREAM_ETLS);
      return;
    }
    ready(s, 0);
    if (s->closing) return;
    set_reading(s);
  }
  drain_plain(s);
}

int shadow_stream_start_tls(shadow_stream_t *s, shadow_tls_ctx_t *ctx,
                            int server, shadow_stream_ready_cb on_ready) {
  s->tls = shadow_tls_new(ctx, server);
  if (!s->tls) return -ENOMEM;
  s->on_ready = on_ready;
  s->server = server;
  if (!server) {
    /* The client speaks first: its hello goes out now. */
    shadow_tls_handshake(s->tls);
    int rc = flush(s, 0);
    if (rc) return rc;
  }
  set_reading(s);
  return s->reading ? 0 : UV_EIO;
}

int shadow_stream_read_start(shadow_stream_t *s, shadow_stream_alloc_cb alloc,
                             shadow_stream_read_cb cb) {
  s->on_alloc = alloc;
  s->on_read = cb;
  s->want_read = 1;
  set_reading(s);
  return s->reading || s->closing ? 0 : UV_EIO;
}

void shadow_stream_read_stop(shadow_stream_t *s) {
  s->want_read = 0;
  set_reading(s);
}

static void on_plain_written(uv_write_t *req, int status) {
  owner_written(req->data, status);
}

int shadow_stream_write(shadow_stream_t *s, const uv_buf_t *bufs,
                        unsigned nbufs, shadow_stream_write_cb cb) {
  if (s->writing) return UV_EBUSY;
  if (s->closing) return UV_ECANCELED;
  s->on_written = cb;
  if (!s->tls) {
    uv_buf_t rest[8];
    ssize_t took = nbufs <= 8 ? try_write(s, bufs, nbufs) : 0;
    if (took < 0) took = 0; /* a failure shows in uv_write's callback */
    unsigned nrest = took ? skip_bytes(bufs, nbufs, (size_t)took, rest) : 0;
    if (took && nrest == 0) {
      s->writing = 1;
      owner_done_later(s);
      return 0;
    }
    s->wreq.data = s;
    int rc = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, took ? rest : bufs,
                      took ? nrest : nbufs, on_plain_written);
    if (rc == 0) s->writing = 1;
    return rc;
  }
  for (unsigned i = 0; i < nbufs; i++)
    if (bufs[i].len && shadow_tls_write(s->tls, bufs[i].base, bufs[i].len))
      return SHADOW_STREAM_ETLS;
  int rc = flush(s, 1);
  if (rc == 0) s->writing = 1;
  return rc;
}

int shadow_stream_try_write(shadow_stream_t *s, const uv_buf_t *bufs,
                            unsigned nbufs) {
  if (s->tls || s->closing) return UV_EAGAIN;
  return uv_try_write((uv_stream_t *)&s->tcp, bufs, nbufs);
}

size_t shadow_stream_queued(const shadow_stream_t *s) {
  return uv_stream_get_write_queue_size((const uv_stream_t *)&s->tcp);
}

static void on_shutdown(uv_shutdown_t *r, int status) {
  (void)r;
  (void)status;
}

int shadow_stream_shutdown(shadow_stream_t *s) {
  if (s->closing) return UV_ECANCELED;
  if (s->tls) {
    shadow_tls_shutdown(s->tls);
    flush(s, 0);
  }
  return uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, on_shutdown);
}

/* Both handles closed: a write that went out whole but whose callback was
 * still to come reports success, as libuv reports a completed write on
 * close; then the owner's close callback. */
static void handle_closed(shadow_stream_t *s) {
  if (--s->open_handles > 0) return;
  if (s->done_pending) {
    s->done_pending = 0;
    owner_written(s, 0);
  }
  shadow_tls_free(s->tls);
  s->tls = NULL;
  if (s->on_close) s->on_close((uv_handle_t *)&s->tcp);
}

static void on_tcp_close(uv_handle_t *h) {
  handle_closed(shadow_stream_of(h));
}

static void on_idle_close(uv_handle_t *h) {
  handle_closed(h->data);
}

void shadow_stream_close(shadow_stream_t *s, uv_close_cb cb) {
  if (s->closing) return;
  s->closing = 1;
  s->on_close = cb;
  s->reading = 0;
  uv_close((uv_handle_t *)&s->tcp, on_tcp_close);
  uv_close((uv_handle_t *)&s->done_idle, on_idle_close);
}

const char *shadow_stream_error(const shadow_stream_t *s) {
  return s->tls ? shadow_tls_error(s->tls) : "not a TLS stream";
}
