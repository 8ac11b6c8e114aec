#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "response_parse.h"

/* Read buffer per connection: big enough for most responses in one read,
 * small enough that an idle pool of 64 stays around a megabyte. */
#define READ_BUF 16384
/* Finished requests keep their wire buffer for the next send, unless it
 * grew past this (a large body), so the freelist never hoards memory. */
#define KEEP_WIRE (16u * 1024u)
#define KEEP_FREE 64

typedef struct link_s {
  struct link_s *prev, *next;
} link_t;

static void list_init(link_t *l) {
  l->prev = l->next = l;
}
static int list_empty(const link_t *l) {
  return l->next == l;
}
static void list_remove(link_t *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
  e->prev = e->next = e;
}
static void list_push_front(link_t *l, link_t *e) {
  e->next = l->next;
  e->prev = l;
  l->next->prev = e;
  l->next = e;
}
static void list_push_back(link_t *l, link_t *e) {
  e->prev = l->prev;
  e->next = l;
  l->prev->next = e;
  l->prev = e;
}

#define CONTAINER(ptr, type, field)                                            \
  ((type *)((char *)(ptr)-offsetof(type, field)))

typedef struct conn_s conn_t;

typedef struct req_s {
  link_t link; /* in the queue, the deferred list or the freelist */
  shadow_upstream_t *u;
  conn_t *conn;      /* the connection carrying it, if any */
  shadow_buf_t wire; /* request line, headers and body, ready to write */
  shadow_upstream_cb cb;
  void *ud;
  uint64_t start_ns;
  uint64_t deadline; /* in uv_now() milliseconds */
  double latency_ms;
  int err;
  int head;
  int idempotent;
  int retried;
  int writes; /* uv_writes in flight that point into wire */
  int dead;   /* answered while a write was in flight: free on its cb */
} req_t;

enum { CONNECTING, BUSY, IDLE, CLOSING };

struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer; /* connect timeout, then the response deadline */
  uv_connect_t connect;
  uv_write_t write;
  link_t link; /* in busy or idle */
  shadow_upstream_t *u;
  req_t *req;     /* the request in flight */
  req_t *writing; /* whose wire the pending uv_write reads */
  shadow_response_parser_t parser;
  int state;
  int reused; /* has answered before: a failure may just be staleness */
  int closes; /* handles still to close before the memory goes */
  char rbuf[READ_BUF];
};

struct shadow_upstream_s {
  uv_loop_t *loop;
  shadow_upstream_opts_t opts;
  char *url;
  char *host; /* the Host header when the client sent none */
  char *base; /* path prefix without a trailing slash */
  size_t base_len;
  struct sockaddr_storage addr;
  link_t busy, idle, queue, deferred, freelist;
  size_t nidle, nconns, nqueued, nfree, pending;
  uint64_t queue_due;
  uv_timer_t queue_timer; /* the earliest deadline among queued requests */
  uv_timer_t defer_timer; /* delivers failures from the loop */
  int closing;
  int defer_closed;
  int handles; /* open handles (connections count as one) */
  shadow_upstream_stats_t stats;
};

static void dispatch(shadow_upstream_t *u, req_t *req, int front);
static void pump(shadow_upstream_t *u);

void shadow_upstream_opts_default(shadow_upstream_opts_t *o) {
  o->connect_timeout_ms = 1000;
  o->timeout_ms = 5000;
  o->max_connections = 0;
  /* Enough idle connections for a busy proxy's concurrency: closing and
   * reopening connections to a backend costs more than the sockets do,
   * and leaves TIME_WAIT behind. */
  o->max_idle = 256;
  o->header_bytes = 64 * 1024;
  o->body_bytes = 8 * 1024 * 1024;
}

/* Zero timeouts and limits mean "the default": a backend without any
 * timeout or limit is exactly what a hostile one exploits. */
static void opts_normalize(shadow_upstream_opts_t *dst,
                           const shadow_upstream_opts_t *src) {
  shadow_upstream_opts_t d;
  shadow_upstream_opts_default(&d);
  *dst = src ? *src : d;
  if (!dst->connect_timeout_ms) dst->connect_timeout_ms = d.connect_timeout_ms;
  if (!dst->timeout_ms) dst->timeout_ms = d.timeout_ms;
  if (!dst->header_bytes) dst->header_bytes = d.header_bytes;
  if (!dst->body_bytes) dst->body_bytes = d.body_bytes;
}

const char *shadow_upstream_err_name(int err) {
  switch (err) {
  case SHADOW_UPSTREAM_OK: return "ok";
  case SHADOW_UPSTREAM_REFUSED: return "refused";
  case SHADOW_UPSTREAM_RESET: return "reset";
  case SHADOW_UPSTREAM_TIMEOUT: return "timeout";
  case SHADOW_UPSTREAM_BAD_RESPONSE: return "bad_response";
  case SHADOW_UPSTREAM_TOO_LARGE: return "too_large";
  case SHADOW_UPSTREAM_CANCELED: return "canceled";
  default: return "unknown";
  }
}

/* ---- requests ---------------------------------------------------------- */

static void req_recycle(req_t *req) {
  shadow_upstream_t *u = req->u;
  if (req->writes > 0) {
    req->dead = 1;
    return;
  }
  if (u->nfree < KEEP_FREE && req->wire.cap <= KEEP_WIRE) {
    shadow_buf_reset(&req->wire);
    list_push_front(&u->freelist, &req->link);
    u->nfree++;
    return;
  }
  shadow_buf_free(&req->wire);
  free(req);
}

static req_t *req_get(shadow_upstream_t *u) {
  req_t *req;
  shadow_buf_t wire = SHADOW_BUF_INIT;
  if (!list_empty(&u->freelist)) {
    req = CONTAINER(u->freelist.next, req_t, link);
    list_remove(&req->link);
    u->nfree--;
    wire = req->wire;
  } else {
    req = malloc(sizeof(*req));
    if (!req) return NULL;
  }
  memset(req, 0, sizeof(*req));
  req->wire = wire;
  req->u = u;
  list_init(&req->link);
  return req;
}

static void deliver(req_t *req, int err, shadow_record_t *rec) {
  shadow_upstream_t *u = req->u;
  if (err == SHADOW_UPSTREAM_OK)
    req->latency_ms = (double)(uv_hrtime() - req->start_ns) / 1e6;
  else
    u->stats.failures++;
  u->pending--;
  req->cb(req->ud, err, rec, req->latency_ms);
  req_recycle(req);
}

static void maybe_free(shadow_upstream_t *u) {
  if (!u->closing || u->handles > 0) return;
  while (!list_empty(&u->freelist)) {
    req_t *req = CONTAINER(u->freelist.next, req_t, link);
    list_remove(&req->link);
    shadow_buf_free(&req->wire);
    free(req);
  }
  free(u->url);
  free(u->host);
  free(u->base);
  free(u);
}

static void on_upstream_timer_close(uv_handle_t *h) {
  shadow_upstream_t *u = h->data;
  u->handles--;
  maybe_free(u);
}

static void maybe_close_defer(shadow_upstream_t *u) {
  if (u->closing && !u->defer_closed && list_empty(&u->deferred)) {
    u->defer_closed = 1;
    uv_close((uv_handle_t *)&u->defer_timer, on_upstream_timer_close);
  }
}

static void on_defer(uv_timer_t *t) {
  shadow_upstream_t *u = t->data;
  /* Only what was deferred before this run: a callback that sends again
   * and fails again must wait for the next turn of the loop. */
  link_t batch;
  list_init(&batch);
  if (!list_empty(&u->deferred)) {
    batch.next = u->deferred.next;
    batch.prev = u->deferred.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    list_init(&u->deferred);
  }
  while (!list_empty(&batch)) {
    req_t *req = CONTAINER(batch.next, req_t, link);
    list_remove(&req->link);
    deliver(req, req->err, NULL);
  }
  maybe_close_defer(u);
}

/* Every failure goes through the loop, so no callback ever runs inside
 * shadow_upstream_send() or inside another callback's call into us. */
static void fail(req_t *req, int err) {
  shadow_upstream_t *u = req->u;
  req->err = err;
  req->latency_ms = (double)(uv_hrtime() - req->start_ns) / 1e6;
  list_push_back(&u->deferred, &req->link);
  if (!uv_is_active((uv_handle_t *)&u->defer_timer))
    uv_timer_start(&u->defer_timer, on_defer, 0, 0);
}

static uint64_t remaining(shadow_upstream_t *u, const req_t *req) {
  uint64_t now = uv_now(u->loop);
  return req->deadline > now ? req->deadline - now : 0;
}

/* ---- connections ------------------------------------------------------- */

static void on_conn_close(uv_handle_t *h) {
  conn_t *conn = h->data;
  if (--conn->closes > 0) return;
  shadow_upstream_t *u = conn->u;
  shadow_response_parser_free(&conn->parser);
  free(conn);
  u->handles--;
  maybe_free(u);
}

/* Closes a connection whose request (if any) was already detached. The
 * slot it held is free at once: uv_close() closes the socket now. */
static void conn_close(conn_t *conn) {
  shadow_upstream_t *u = conn->u;
  if (conn->state == CLOSING) return;
  if (conn->state == IDLE) u->nidle--;
  list_remove(&conn->link);
  u->nconns--;
  conn->state = CLOSING;
  uv_close((uv_handle_t *)&conn->tcp, on_conn_close);
  uv_close((uv_handle_t *)&conn->timer, on_conn_close);
}

static req_t *conn_detach(conn_t *conn) {
  req_t *req = conn->req;
  conn->req = NULL;
  if (req) req->conn = NULL;
  uv_timer_stop(&conn->timer);
  return req;
}

static int is_stale_error(int uverr) {
  return uverr == UV_EOF || uverr == UV_ECONNRESET || uverr == UV_EPIPE;
}

/* The request on conn failed before a whole response. A pooled connection
 * that the server had already given up on fails exactly like this, before
 * a single byte of response; an idempotent request gets one more try. */
static void conn_abort(conn_t *conn, int reason, int uverr) {
  shadow_upstream_t *u = conn->u;
  int stale = conn->reused && is_stale_error(uverr) &&
              shadow_response_parser_seen(&conn->parser) == 0;
  req_t *req = conn_detach(conn);
  conn_close(conn);
  if (req && stale && req->idempotent && !req->retried && !u->closing) {
    req->retried = 1;
    u->stats.retries++;
    dispatch(u, req, 1);
  } else if (req) {
    fail(req, reason);
  }
  pump(u);
}

static void on_write(uv_write_t *w, int status) {
  conn_t *conn = w->data;
  req_t *req = conn->writing;
  conn->writing = NULL;
  req->writes--;
  if (req->dead) {
    req->dead = 0;
    req_recycle(req);
    return;
  }
  if (status == 0 || conn->state == CLOSING || conn->req != req) return;
  conn_abort(conn, SHADOW_UPSTREAM_RESET, status);
}

static void conn_send(conn_t *conn) {
  req_t *req = conn->req;
  uv_buf_t buf = uv_buf_init(req->wire.data, (unsigned)req->wire.len);
  conn->writing = req;
  req->writes++;
  int rc = uv_write(&conn->write, (uv_stream_t *)&conn->tcp, &buf, 1, on_write);
  if (rc < 0) {
    conn->writing = NULL;
    req->writes--;
    conn_abort(conn, SHADOW_UPSTREAM_RESET, rc);
  }
}

static void on_timer(uv_timer_t *t) {
  conn_t *conn = t->data;
  shadow_upstream_t *u = conn->u;
  if (conn->state == CLOSING || !conn->req) return;
  req_t *req = conn_detach(conn);
  conn_close(conn);
  fail(req, SHADOW_UPSTREAM_TIMEOUT);
  pump(u);
}

/* Binds req to conn: fresh parser state, the deadline armed. */
static int conn_bind(conn_t *conn, req_t *req) {
  shadow_upstream_t *u = conn->u;
  shadow_response_parser_limits(&conn->parser, u->opts.header_bytes,
                                u->opts.body_bytes);
  if (shadow_response_parser_reset(&conn->parser, req->head)) return -ENOMEM;
  conn->req = req;
  req->conn = conn;
  uint64_t ms = remaining(u, req);
  if (conn->state == CONNECTING && u->opts.connect_timeout_ms < ms)
    ms = u->opts.connect_timeout_ms;
  uv_timer_start(&conn->timer, on_timer, ms, 0);
  return 0;
}

/* Sends req on an open connection that is free. */
static void reuse(conn_t *conn, req_t *req) {
  if (conn_bind(conn, req)) {
    conn_close(conn);
    fail(req, SHADOW_UPSTREAM_RESET);
    return;
  }
  conn->u->stats.reuses++;
  conn_send(conn);
}

/* A connection whose response is done: take the next queued request, or
 * wait in the pool. */
static void conn_idle(conn_t *conn) {
  shadow_upstream_t *u = conn->u;
  if (u->opts.max_connections && u->nconns > u->opts.max_connections) {
    conn_close(conn); /* the cap was lowered: shrink to it */
    return;
  }
  if (!list_empty(&u->queue)) {
    req_t *req = CONTAINER(u->queue.next, req_t, link);
    list_remove(&req->link);
    u->nqueued--;
    reuse(conn, req);
    return;
  }
  if (u->nidle >= u->opts.max_idle) {
    conn_close(conn);
    return;
  }
  list_remove(&conn->link);
  list_push_front(&u->idle, &conn->link);
  conn->state = IDLE;
  u->nidle++;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *conn = h->data;
  *buf = uv_buf_init(conn->rbuf, sizeof(conn->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *conn = s->data;
  shadow_upstream_t *u = conn->u;
  if (nread == 0 || conn->state == CLOSING) return;
  if (!conn->req) {
    /* An idle connection: EOF means the server closed it, and bytes
     * nobody asked for mean it is out of step. Either way, drop it. */
    conn_close(conn);
    pump(u);
    return;
  }
  int v;
  if (nread > 0)
    v = shadow_response_parser_feed(&conn->parser, buf->base, (size_t)nread);
  else if (nread == UV_EOF)
    v = shadow_response_parser_finish(&conn->parser);
  else {
    conn_abort(conn, SHADOW_UPSTREAM_RESET, (int)nread);
    return;
  }
  if (v == SHADOW_RESPONSE_MORE) return;
  if (v == SHADOW_RESPONSE_ERROR) {
    conn_abort(conn, conn->parser.err, (int)nread);
    return;
  }
  shadow_record_t *rec = shadow_response_parser_take(&conn->parser);
  /* A response that came while our request was still being written means
   * the server stopped reading it: the rest would be read as a request. */
  int keep = nread > 0 && conn->parser.keep_alive && !conn->parser.extra &&
             !conn->writing && !u->closing;
  req_t *req = conn_detach(conn);
  conn->reused = 1;
  /* The connection is settled before the callback runs, so a send from
   * inside it can already reuse this connection. */
  if (keep)
    conn_idle(conn);
  else {
    conn_close(conn);
    pump(u);
  }
  deliver(req, SHADOW_UPSTREAM_OK, rec);
}

static void on_connect(uv_connect_t *c, int status) {
  conn_t *conn = c->data;
  shadow_upstream_t *u = conn->u;
  if (conn->state == CLOSING) return;
  if (status < 0) {
    req_t *req = conn_detach(conn);
    conn_close(conn);
    if (req) fail(req, SHADOW_UPSTREAM_REFUSED);
    pump(u);
    return;
  }
  conn->state = BUSY;
  uv_tcp_nodelay(&conn->tcp, 1);
  /* Reads stay on for the connection's whole life, idle included, so a
   * server that closes an idle connection frees it at once. */
  int rc = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
  if (rc < 0) {
    conn_abort(conn, SHADOW_UPSTREAM_RESET, rc);
    return;
  }
  if (!conn->req) { /* cannot happen: a connection is opened for a request */
    conn_idle(conn);
    return;
  }
  uv_timer_start(&conn->timer, on_timer, remaining(u, conn->req), 0);
  conn_send(conn);
}

static int conn_open(shadow_upstream_t *u, req_t *req) {
  conn_t *conn = calloc(1, sizeof(*conn));
  if (!conn) return -ENOMEM;
  int rc = uv_tcp_init(u->loop, &conn->tcp);
  if (rc < 0) {
    free(conn);
    return rc;
  }
  uv_timer_init(u->loop, &conn->timer);
  conn->u = u;
  conn->tcp.data = conn->timer.data = conn->connect.data = conn->write.data =
      conn;
  conn->closes = 2;
  conn->state = CONNECTING;
  shadow_response_parser_init(&conn->parser, u->opts.header_bytes,
                              u->opts.body_bytes);
  list_init(&conn->link);
  list_push_back(&u->busy, &conn->link);
  u->nconns++;
  u->handles++;
  u->stats.connects++;
  rc = conn_bind(conn, req);
  if (rc == 0)
    rc = uv_tcp_connect(&conn->connect, &conn->tcp,
                        (const struct sockaddr *)&u->addr, on_connect);
  if (rc < 0) {
    conn_detach(conn);
    conn_close(conn);
  }
  return rc;
}

/* ---- scheduling -------------------------------------------------------- */

static void on_queue_timer(uv_timer_t *t) {
  shadow_upstream_t *u = t->data;
  uint64_t now = uv_now(u->loop), next = UINT64_MAX;
  link_t *e = u->queue.next;
  while (e != &u->queue) {
    req_t *req = CONTAINER(e, req_t, link);
    e = e->next;
    if (req->deadline <= now) {
      list_remove(&req->link);
      u->nqueued--;
      fail(req, SHADOW_UPSTREAM_TIMEOUT);
    } else if (req->deadline < next) {
      next = req->deadline;
    }
  }
  if (next != UINT64_MAX) {
    u->queue_due = next;
    uv_timer_start(&u->queue_timer, on_queue_timer, next - now, 0);
  }
}

static void enqueue(shadow_upstream_t *u, req_t *req, int front) {
  if (front)
    list_push_front(&u->queue, &req->link);
  else
    list_push_back(&u->queue, &req->link);
  u->nqueued++;
  u->stats.queued++;
  if (!uv_is_active((uv_handle_t *)&u->queue_timer) ||
      req->deadline < u->queue_due) {
    u->queue_due = req->deadline;
    uv_timer_start(&u->queue_timer, on_queue_timer, remaining(u, req), 0);
  }
}

static int has_slot(const shadow_upstream_t *u) {
  return u->opts.max_connections == 0 || u->nconns < u->opts.max_connections;
}

static void dispatch(shadow_upstream_t *u, req_t *req, int front) {
  if (u->closing) {
    fail(req, SHADOW_UPSTREAM_CANCELED);
    return;
  }
  if (!list_empty(&u->idle)) {
    conn_t *conn = CONTAINER(u->idle.next, conn_t, link);
    list_remove(&conn->link);
    list_push_back(&u->busy, &conn->link);
    conn->state = BUSY;
    u->nidle--;
    reuse(conn, req);
    return;
  }
  if (has_slot(u)) {
    int rc = conn_open(u, req);
    if (rc < 0) fail(req, SHADOW_UPSTREAM_REFUSED);
    return;
  }
  enqueue(u, req, front);
}

/* Hands queued requests to whatever capacity just appeared. */
static void pump(shadow_upstream_t *u) {
  while (!u->closing && !list_empty(&u->queue) &&
         (!list_empty(&u->idle) || has_slot(u))) {
    req_t *req = CONTAINER(u->queue.next, req_t, link);
    list_remove(&req->link);
    u->nqueued--;
    dispatch(u, req, 1);
  }
}

/* ---- the request on the wire ------------------------------------------- */

static int has_ctl(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 1;
  return 0;
}

static int is_idempotent(const char *m) {
  static const char *const ok[] = {"GET",    "HEAD",  "OPTIONS", "PUT",
                                   "DELETE", "TRACE", NULL};
  for (size_t i = 0; ok[i]; i++)
    if (strcmp(m, ok[i]) == 0) return 1;
  return 0;
}

static int headers_ok(const shadow_headers_t *h) {
  if (!h) return 1;
  for (size_t i = 0; i < h->n; i++) {
    const shadow_header_t *e = &h->v[i];
    if (e->name_len == 0 || has_ctl(e->name, e->name_len) ||
        memchr(e->name, ':', e->name_len) || has_ctl(e->value, e->value_len))
      return 0;
  }
  return 1;
}

static size_t headers_size(const shadow_headers_t *h) {
  return h ? h->bytes + h->n * 4 : 0;
}

static int put_header(shadow_buf_t *b, const char *name, size_t nl,
                      const char *value, size_t vl) {
  int rc = shadow_buf_append(b, name, nl);
  if (!rc) rc = shadow_buf_append(b, ": ", 2);
  if (!rc) rc = shadow_buf_append(b, value, vl);
  if (!rc) rc = shadow_buf_append(b, "\r\n", 2);
  return rc;
}

/* One buffer, one write: request line, headers, body. Copying the body in
 * costs the same one copy that "everything is copied" asks for anyway. */
static int serialize(shadow_upstream_t *u, shadow_buf_t *b, const char *method,
                     const char *target, size_t tlen,
                     const shadow_headers_t *headers,
                     const shadow_headers_t *extra, const char *body,
                     size_t blen) {
  size_t want = strlen(method) + u->base_len + tlen + strlen(u->host) +
                headers_size(headers) + headers_size(extra) + blen + 96;
  if (shadow_buf_reserve(b, want)) return -ENOMEM;
  int rc = shadow_buf_puts(b, method);
  rc |= shadow_buf_putc(b, ' ');
  if (tlen > 0 && target[0] == '/') {
    rc |= shadow_buf_append(b, u->base, u->base_len);
    rc |= shadow_buf_append(b, target, tlen);
  } else if (tlen > 0) {
    rc |= shadow_buf_append(b, target, tlen); /* "*" or absolute-form */
  } else {
    rc |= shadow_buf_append(b, u->base, u->base_len);
    rc |= shadow_buf_putc(b, '/');
  }
  rc |= shadow_buf_puts(b, " HTTP/1.1\r\n");
  const shadow_header_t *host = NULL;
  for (size_t i = 0; headers && i < headers->n; i++) {
    const shadow_header_t *e = &headers->v[i];
    if (shadow_header_is_hop(e->name, e->name_len)) continue;
    if (shadow_header_name_is(e, "host")) {
      if (!host) host = e;
      continue;
    }
    rc |= put_header(b, e->name, e->name_len, e->value, e->value_len);
  }
  if (host)
    rc |= put_header(b, "Host", 4, host->value, host->value_len);
  else
    rc |= put_header(b, "Host", 4, u->host, strlen(u->host));
  for (size_t i = 0; extra && i < extra->n; i++) {
    const shadow_header_t *e = &extra->v[i];
    rc |= put_header(b, e->name, e->name_len, e->value, e->value_len);
  }
  if (blen > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
      strcmp(method, "PATCH") == 0)
    rc |= shadow_buf_printf(b, "Content-Length: %zu\r\n", blen);
  rc |= shadow_buf_append(b, "\r\n", 2);
  if (blen) rc |= shadow_buf_append(b, body, blen);
  return rc ? -ENOMEM : 0;
}

int shadow_upstream_send(shadow_upstream_t *u, const char *method,
                         const char *target, size_t target_len,
                         const shadow_headers_t *headers,
                         const shadow_headers_t *extra, const char *body,
                         size_t body_len, shadow_upstream_cb cb, void *ud) {
  if (!u || !method || !cb || (!target && target_len) || (!body && body_len))
    return -EINVAL;
  if (u->closing) return -ECANCELED;
  if (body_len > UINT32_MAX / 2) return -E2BIG; /* uv_buf_t holds 32 bits */
  if (!target) target = "";
  size_t mlen = strlen(method);
  /* Nothing from a client or a script may split the request line or a
   * header: that is request smuggling done through us. */
  if (mlen == 0 || has_ctl(method, mlen) || strchr(method, ' ') ||
      has_ctl(target, target_len) || memchr(target, ' ', target_len) ||
      !headers_ok(headers) || !headers_ok(extra))
    return -EINVAL;
  req_t *req = req_get(u);
  if (!req) return -ENOMEM;
  int rc = serialize(u, &req->wire, method, target, target_len, headers, extra,
                     body, body_len);
  if (rc) {
    req_recycle(req);
    return rc;
  }
  req->cb = cb;
  req->ud = ud;
  req->head = strcmp(method, "HEAD") == 0;
  req->idempotent = is_idempotent(method);
  req->start_ns = uv_hrtime();
  req->deadline = uv_now(u->loop) + u->opts.timeout_ms;
  u->pending++;
  u->stats.requests++;
  dispatch(u, req, 0);
  return 0;
}

/* ---- the pool ---------------------------------------------------------- */

static int set_err(char **err, const char *fmt, const char *a, const char *b) {
  if (err) {
    int n = snprintf(NULL, 0, fmt, a, b);
    *err = malloc((size_t)n + 1);
    if (*err) snprintf(*err, (size_t)n + 1, fmt, a, b);
  }
  return -EINVAL;
}

/* "http://host[:port][/base]", host being a name, IPv4 or [IPv6]. */
static int parse_url(const char *url, char **host, char **hostport, char **port,
                     char **base, char **err) {
  if (strncasecmp(url, "http://", 7) != 0)
    return set_err(err, "%s: only http:// URLs are supported%s", url, "");
  const char *p = url + 7, *h, *he;
  if (*p == '[') {
    h = p + 1;
    he = strchr(h, ']');
    if (!he) return set_err(err, "%s: unterminated [IPv6] host%s", url, "");
    p = he + 1;
  } else {
    h = p;
    he = p + strcspn(p, ":/?#");
    p = he;
  }
  if (he == h) return set_err(err, "%s: no host%s", url, "");
  const char *ps = NULL, *pe = NULL;
  if (*p == ':') {
    ps = ++p;
    while (*p >= '0' && *p <= '9')
      p++;
    pe = p;
    long n = pe > ps && pe - ps <= 5 ? strtol(ps, NULL, 10) : 0;
    if (n < 1 || n > 65535) return set_err(err, "%s: bad port%s", url, "");
  }
  if (*p != '\0' && *p != '/')
    return set_err(err, "%s: unexpected '%s' after the host", url, p);
  size_t blen = strlen(p);
  while (blen > 0 && p[blen - 1] == '/')
    blen--;
  *host = strndup(h, (size_t)(he - h));
  *port = ps ? strndup(ps, (size_t)(pe - ps)) : strdup("80");
  /* The Host header as the URL spells its authority. */
  size_t alen = (size_t)((pe ? pe : he + (url[7] == '[' ? 1 : 0)) - (url + 7));
  *hostport = strndup(url + 7, alen);
  *base = strndup(p, blen);
  if (!*host || !*port || !*hostport || !*base) {
    free(*host);
    free(*port);
    free(*hostport);
    free(*base);
    if (err) *err = strdup("out of memory");
    return -ENOMEM;
  }
  return 0;
}

int shadow_upstream_new(uv_loop_t *loop, const char *url,
                        const shadow_upstream_opts_t *opts,
                        shadow_upstream_t **out, char **err) {
  if (err) *err = NULL;
  if (!loop || !url || !out) return -EINVAL;
  char *host = NULL, *hostport = NULL, *port = NULL, *base = NULL;
  int rc = parse_url(url, &host, &hostport, &port, &base, err);
  if (rc) return rc;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  uv_getaddrinfo_t gai;
  /* Resolved once, synchronously: it happens at config load, not per
   * request, and a backend that moves is a config change. */
  rc = uv_getaddrinfo(loop, &gai, NULL, host, port, &hints);
  shadow_upstream_t *u = NULL;
  if (rc < 0 || !gai.addrinfo) {
    set_err(err, "%s: cannot resolve: %s", url, uv_strerror(rc));
    rc = -EINVAL;
    goto out;
  }
  u = calloc(1, sizeof(*u));
  if (!u || !(u->url = strdup(url))) {
    uv_freeaddrinfo(gai.addrinfo);
    if (err) *err = strdup("out of memory");
    if (u) free(u);
    u = NULL;
    rc = -ENOMEM;
    goto out;
  }
  memcpy(&u->addr, gai.addrinfo->ai_addr, gai.addrinfo->ai_addrlen);
  uv_freeaddrinfo(gai.addrinfo);
  u->loop = loop;
  opts_normalize(&u->opts, opts);
  u->host = hostport;
  u->base = base;
  u->base_len = strlen(base);
  hostport = base = NULL;
  list_init(&u->busy);
  list_init(&u->idle);
  list_init(&u->queue);
  list_init(&u->deferred);
  list_init(&u->freelist);
  uv_timer_init(loop, &u->queue_timer);
  uv_timer_init(loop, &u->defer_timer);
  u->queue_timer.data = u->defer_timer.data = u;
  u->handles = 2;
  *out = u;
  rc = 0;
out:
  free(host);
  free(hostport);
  free(port);
  free(base);
  return rc;
}

void shadow_upstream_set_opts(shadow_upstream_t *u,
                              const shadow_upstream_opts_t *opts) {
  opts_normalize(&u->opts, opts);
  while (u->nidle > u->opts.max_idle) {
    conn_t *conn = CONTAINER(u->idle.prev, conn_t, link);
    conn_close(conn);
  }
  pump(u);
}

const char *shadow_upstream_url(const shadow_upstream_t *u) {
  return u->url;
}

size_t shadow_upstream_pending(const shadow_upstream_t *u) {
  return u->pending;
}

size_t shadow_upstream_connections(const shadow_upstream_t *u) {
  return u->nconns;
}

void shadow_upstream_stats(const shadow_upstream_t *u,
                           shadow_upstream_stats_t *out) {
  *out = u->stats;
}

void shadow_upstream_close(shadow_upstream_t *u) {
  if (!u || u->closing) return;
  u->closing = 1;
  while (!list_empty(&u->queue)) {
    req_t *req = CONTAINER(u->queue.next, req_t, link);
    list_remove(&req->link);
    u->nqueued--;
    fail(req, SHADOW_UPSTREAM_CANCELED);
  }
  while (!list_empty(&u->busy)) {
    conn_t *conn = CONTAINER(u->busy.next, conn_t, link);
    req_t *req = conn_detach(conn);
    conn_close(conn);
    if (req) fail(req, SHADOW_UPSTREAM_CANCELED);
  }
  while (!list_empty(&u->idle))
    conn_close(CONTAINER(u->idle.next, conn_t, link));
  uv_close((uv_handle_t *)&u->queue_timer, on_upstream_timer_close);
  maybe_close_defer(u);
}
