/* The client-facing HTTP/1.1 server. Parsing lives in request_parse.c; this
 * file is sockets, timers and the order of things on a connection:
 *
 *   read -> parse head -> request handed out -> body streams in
 *                      -> response streams out -> written -> next request
 *
 * One request per connection is in flight at a time. Bytes a client
 * pipelines behind it stay buffered (up to BUSY_READ_BYTES, then reading
 * stops) until its response has been written, so a client that sends
 * without reading cannot make us queue responses without bound.
 *
 * Output goes through two buffers: pend collects what the producer queues,
 * wbuf is what one uv_write is writing. Memory per connection is thus
 * bounded by twice the high-water mark plus one producer's batch, however
 * large the response: past the mark, body() tells the producer to wait
 * until on_writable (which is how a slow client slows the backend read).
 *
 * An HTTP/2 connection (its preface on a plain listener, ALPN h2 on a TLS
 * one) keeps the socket, the timers and the connection's place here, and
 * hands its bytes to an h2 session (h2_server.c), whose frames go out
 * through the same two buffers; c->inflight then counts its streams with
 * the handler. There is no h2c Upgrade from HTTP/1.1 (nginx has none
 * either): a client speaks HTTP/2 from its first byte or not at all. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deadline.h"
#include "h2_server.h"

/* Bigger per-connection buffers are given back once idle (see below). */
#define KEEP_BYTES (16 * 1024)
/* How long a connection we are closing keeps reading and discarding what the
 * client still sends, so that our last response is not destroyed by the RST
 * a close with unread data causes. */
#define LINGER_MS 1000
#define LINGER_BYTES (64 * 1024)
/* Refusals in progress beyond this are closed without a 503: under a flood
 * the courtesy of an answer must not cost memory without bound. */
#define MAX_REFUSING 64
/* Response bytes queued past this ask the producer to wait; it may go on
 * once everything queued has been written. */
#define WRITE_HIGH (64 * 1024)
/* Body pieces at least this large are written from the producer's buffer
 * when nothing else is in flight, instead of being copied first. */
#define DIRECT_BYTES (8 * 1024)
/* While a request is in flight the connection keeps reading, so that a
 * keep-alive connection does not pay an epoll_ctl to stop and another to
 * restart reading on every request; what a pipelining client sends
 * meanwhile is buffered, up to this much, and then reading pauses. */
#define BUSY_READ_BYTES (64 * 1024)

typedef struct conn_s conn_t;

struct shadow_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_idle_t posted_idle; /* runs conn_process for posted connections */
  uv_timer_t drain_timer;
  shadow_server_opts_t opts;
  shadow_server_handler_t h;
  conn_t *conns;  /* open connections, refusals included */
  conn_t *posted; /* connections whose buffered input waits for the loop */
  size_t nconns;  /* open connections counted against the cap */
  size_t nrefusing;
  size_t nalive; /* connection structs not yet freed */
  size_t inflight;
  int at_cap; /* a client was refused since the last one admitted */
  /* A descriptor held back for accepting (and closing) clients when none
   * is left: see drain_backlog. -1 if it could not be opened. */
  int spare_fd;
  int handles; /* the server's own open handles */
  int listener_open;
  int draining;
  int closing;
  void (*drained)(void *ud);
  void *drained_ud;
  /* Reads land here and are parsed in place; only the bytes a busy
   * connection cannot parse yet are copied to its own buffer. An idle
   * keep-alive connection so holds no read buffer at all. */
  char rbuf[64 * 1024];
};

struct conn_s {
  shadow_stream_t s; /* plain, or TLS on a TLS listener */
  uv_timer_t timer;
  shadow_server_t *srv;
  conn_t *prev, *next;
  conn_t *post_prev, *post_next;
  shadow_server_opts_t opts;
  shadow_request_parser_t parser;
  shadow_request_t req; /* reused for each request on the connection */
  shadow_buf_t in;      /* unparsed bytes, from in_pos */
  size_t in_pos;
  shadow_buf_t pend;          /* response bytes queued */
  shadow_buf_t wbuf;          /* response bytes being written */
  uint64_t head_since;        /* when the header deadline started counting */
  shadow_deadline_t deadline; /* of the timer's state (deadline.h) */
  int head_clock;             /* head_since is set */
  int served;                 /* requests answered on this connection */
  size_t discarded;
  size_t wq_size; /* bytes queued at the last write-progress check */
  int open_handles;
  /* The request in flight. */
  int head_in;     /* its head has been parsed */
  int inflight;    /* handed out and not yet given back */
  int body_stream; /* its body is still streaming to the handler */
  int body_paused;
  int aborted;      /* on_abort was told */
  int abort_status; /* a parse error to answer if no head was sent */
  /* Its response. */
  int head_out;
  int no_body;
  int chunked;
  int64_t resp_len; /* declared Content-Length, or -1 */
  uint64_t resp_sent;
  int want_writable;
  int ended;  /* end() or abort() was called: flush, then next or close */
  int tunnel; /* a 101 went out: raw bytes both ways until the end */
  /* The connection. */
  int writing;
  int close_after;
  int closing;
  int lingering;
  int reading;
  int peer_eof; /* the client half-closed while we were busy */
  int refused;
  int posted;
  /* HTTP/2: the session, once the connection speaks it; sniff: the first
   * bytes may still be its preface. */
  shadow_h2_t *h2;
  int sniff;
};

static void conn_process(conn_t *c);
static void conn_continue(conn_t *c);
static void conn_arm(conn_t *c);
static void on_timer(uv_timer_t *t);
static void conn_flush(conn_t *c);
static void h2_flush(conn_t *c);
static void h2_arm(conn_t *c);
static int h2_read(conn_t *c, const uv_buf_t *buf, ssize_t nread);
static void h2_timeout(conn_t *c);
static int sniff(conn_t *c, const uv_buf_t *buf, ssize_t nread);

/* Bytes queued for a client past which an interim response is dropped. */
#define INTERIM_QUEUE_BYTES (16 * 1024)

void shadow_server_opts_default(shadow_server_opts_t *o) {
  o->header_bytes = 64 * 1024;
  o->max_headers = 100;
  o->body_bytes = 8 * 1024 * 1024;
  o->header_timeout_ms = 10000;
  o->idle_timeout_ms = 60000;
  o->max_connections = 0;
  o->fd_reserve = 0;
  o->tunnel_idle_timeout_ms = 60000;
  o->reuse_port = 0;
  o->h2_max_streams = 128;
  o->h2_max_resets = 1000;
  o->tls = NULL;
}

const char *shadow_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 102: return "Processing";
  case 103: return "Early Hints";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Entity";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "";
  }
}

/* The short JSON error bodies of the bad-input table. */
static const char *error_text(int status) {
  switch (status) {
  case 400: return "bad request";
  case 408: return "request timeout";
  case 405: return "method not allowed";
  case 413: return "payload too large";
  case 431: return "request header fields too large";
  case 501: return "not implemented";
  case 503: return "too many connections";
  default: return "internal error";
  }
}

static conn_t *conn_of_req(shadow_request_t *req) {
  return (conn_t *)(void *)((char *)req - offsetof(conn_t, req));
}

/* ---- posted work: buffered input parsed from the loop, never from inside
 * a call the handler made into the server ---- */

static void conn_unpost(conn_t *c) {
  shadow_server_t *s = c->srv;
  if (!c->posted) return;
  if (c->post_prev)
    c->post_prev->post_next = c->post_next;
  else
    s->posted = c->post_next;
  if (c->post_next) c->post_next->post_prev = c->post_prev;
  c->post_prev = c->post_next = NULL;
  c->posted = 0;
}

static void on_posted(uv_idle_t *h) {
  shadow_server_t *s = h->data;
  /* Each connection processed may post itself again: take the list. */
  conn_t *list = s->posted;
  s->posted = NULL;
  for (conn_t *c = list; c; c = c->post_next)
    c->posted = 0;
  while (list) {
    conn_t *c = list;
    list = c->post_next;
    if (list) list->post_prev = NULL;
    c->post_next = c->post_prev = NULL;
    if (!c->closing) conn_continue(c);
  }
  if (!s->posted) uv_idle_stop(&s->posted_idle);
}

static void conn_post(conn_t *c) {
  shadow_server_t *s = c->srv;
  if (c->posted || c->closing) return;
  c->posted = 1;
  c->post_prev = NULL;
  c->post_next = s->posted;
  if (s->posted) s->posted->post_prev = c;
  s->posted = c;
  uv_idle_start(&s->posted_idle, on_posted);
}

/* ---- freeing: only from close callbacks, or when the last in-flight
 * request of a closed connection is given back. ---- */

static void server_maybe_free(shadow_server_t *s) {
  if (!s->closing || s->handles > 0 || s->nalive > 0) return;
  if (s->spare_fd >= 0) close(s->spare_fd);
  shadow_tls_ctx_unref(s->opts.tls);
  free(s);
}

static void on_drain_timer(uv_timer_t *t) {
  shadow_server_t *s = t->data;
  void (*done)(void *) = s->drained;
  s->drained = NULL;
  if (done) done(s->drained_ud);
}

/* The drain is over once the last connection has gone and no request is
 * still with the handler; done runs from the loop, on a clean stack. */
static void check_drained(shadow_server_t *s) {
  if (s->drained && !s->closing && s->nconns == 0 && s->nrefusing == 0 &&
      s->inflight == 0)
    uv_timer_start(&s->drain_timer, on_drain_timer, 0, 0);
}

static void conn_maybe_free(conn_t *c) {
  if (c->open_handles > 0 || c->inflight) return;
  shadow_server_t *s = c->srv;
  conn_unpost(c);
  shadow_h2_free(c->h2);
  shadow_request_parser_free(&c->parser);
  shadow_request_release(&c->req);
  shadow_buf_free(&c->in);
  shadow_buf_free(&c->pend);
  shadow_buf_free(&c->wbuf);
  free(c);
  s->nalive--;
  check_drained(s);
  server_maybe_free(s);
}

static void on_conn_handle_close(uv_handle_t *h) {
  conn_t *c = h->data;
  c->open_handles--;
  conn_maybe_free(c);
}

static void on_stream_close(uv_handle_t *h) {
  conn_t *c = shadow_stream_of(h)->data;
  c->open_handles--;
  conn_maybe_free(c);
}

/* Tells the handler its request cannot be answered any more. */
static void conn_abort_request(conn_t *c, int why) {
  if (!c->inflight || c->aborted || c->ended) return;
  c->aborted = 1;
  if (c->srv->h.on_abort) c->srv->h.on_abort(&c->req, why);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  shadow_server_t *s = c->srv;
  c->closing = 1;
  conn_unpost(c);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  if (c->refused)
    s->nrefusing--;
  else
    s->nconns--;
  /* Pending writes are cancelled by uv_close; their callbacks run first
   * and see c->closing. The memory stays until both handles have closed,
   * so the handler may end its request from inside on_abort. */
  shadow_stream_close(&c->s, on_stream_close);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_close);
  int why = s->closing ? SHADOW_ABORT_CLOSE : SHADOW_ABORT_CLIENT;
  if (c->h2)
    shadow_h2_abort_all(c->h2, why);
  else
    conn_abort_request(c, why);
  check_drained(s);
}

/* ---- writing ---- */

static int put_headers(shadow_buf_t *b, const shadow_headers_t *headers,
                       int pass_cl, int pass_trailer, int pass_upgrade) {
  int rc = 0;
  for (size_t i = 0; headers && i < headers->n && rc == 0; i++) {
    const shadow_header_t *e = &headers->v[i];
    /* What a backend or a Lua hook produced that is not a valid field is
     * not written: it could end the header and write one of its own. */
    if (!shadow_headers_line_valid(headers, i)) continue;
    if (shadow_header_is_hop(e->name, e->name_len) &&
        !(pass_cl && shadow_header_name_is(e, "content-length")) &&
        !(pass_trailer && shadow_header_name_is(e, "trailer")) &&
        !(pass_upgrade && (shadow_header_name_is(e, "upgrade") ||
                           shadow_header_name_is(e, "connection"))))
      continue;
    rc |= shadow_buf_append(b, e->name, e->name_len);
    rc |= shadow_buf_append(b, ": ", 2);
    rc |= shadow_buf_append(b, e->value, e->value_len);
    rc |= shadow_buf_append(b, "\r\n", 2);
  }
  return rc;
}

static size_t queued(const conn_t *c) {
  return c->pend.len + c->wbuf.len;
}

static void on_linger_timer(uv_timer_t *t) {
  conn_close(t->data);
}
static void on_read(shadow_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(shadow_stream_t *st, size_t hint, uv_buf_t *buf);

/* Half-closes and reads what the client still sends until it closes, for a
 * bounded time and byte count; then closes. */
static void conn_linger(conn_t *c) {
  c->lingering = 1;
  if (shadow_stream_shutdown(&c->s) != 0) {
    conn_close(c);
    return;
  }
  if (!c->reading) {
    if (shadow_stream_read_start(&c->s, on_alloc, on_read) != 0) {
      conn_close(c);
      return;
    }
    c->reading = 1;
  }
  uv_timer_start(&c->timer, on_linger_timer, LINGER_MS, 0);
}

/* Everything of a response has been written: the connection moves on to
 * the next request, or closes. */
static void conn_response_done(conn_t *c) {
  c->head_in = c->head_out = c->ended = c->aborted = 0;
  c->tunnel = 0;
  c->want_writable = 0;
  c->body_stream = c->body_paused = 0;
  /* A large response's buffers are not kept for the next one. */
  if (c->pend.cap > KEEP_BYTES) shadow_buf_free(&c->pend);
  if (c->wbuf.cap > KEEP_BYTES) shadow_buf_free(&c->wbuf);
  shadow_request_parser_next(&c->parser);
  if (c->close_after) {
    conn_linger(c);
    return;
  }
  c->served = 1;
  c->head_clock = 0;
  conn_process(c);
}

static void on_write(shadow_stream_t *st, int status) {
  conn_t *c = st->data;
  c->writing = 0;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c); /* tells the handler, if the request is still its */
    return;
  }
  shadow_buf_reset(&c->wbuf);
  if (c->h2) {
    h2_flush(c);
    return;
  }
  if (c->pend.len) conn_flush(c);
  if (c->want_writable && !c->pend.len && !c->ended && c->inflight) {
    c->want_writable = 0;
    if (c->srv->h.on_writable) c->srv->h.on_writable(&c->req);
    if (c->closing) return;
  }
  if (c->ended && !c->writing && !c->pend.len) {
    conn_response_done(c);
    return;
  }
  conn_arm(c);
}

static void conn_flush(conn_t *c) {
  if (c->writing || c->closing || !c->pend.len) return;
  shadow_buf_t t = c->wbuf;
  c->wbuf = c->pend;
  c->pend = t;
  uv_buf_t b = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
  if (shadow_stream_write(&c->s, &b, 1, on_write) != 0) {
    conn_close(c);
    return;
  }
  c->writing = 1;
  conn_arm(c);
}

/* Queues a short JSON error and closes after it: after a protocol error
 * the byte stream can no longer be trusted to hold request boundaries. */
static void conn_fail_text(conn_t *c, int status, const char *text) {
  char body[96];
  int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", text);
  shadow_buf_reset(&c->pend);
  c->close_after = 1;
  c->ended = 1;
  if (shadow_buf_printf(&c->pend,
                        "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                        status, shadow_http_reason(status), n, body) != 0) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

static void conn_fail(conn_t *c, int status) {
  conn_fail_text(c, status, error_text(status));
}

int shadow_server_head(shadow_request_t *req, int status,
                       const shadow_headers_t *headers, int64_t body_len) {
  if (req->http_major == 2)
    return shadow_h2_head(req, status, headers, body_len);
  conn_t *c = conn_of_req(req);
  shadow_server_t *s = c->srv;
  if (!c->inflight || c->head_out || c->ended) return -EINVAL;
  if (c->closing) return -ECANCELED;
  if (status < 100 || status > 999) status = 500;
  if (status == 101) {
    if (!req->upgrade) return -EINVAL;
    /* The tunnel: no framing, the connection ends with it. */
    c->tunnel = 1;
    c->no_body = 0;
    c->chunked = 0;
    c->resp_len = -1;
    c->resp_sent = 0;
    c->close_after = 1;
    int rc = shadow_buf_puts(&c->pend, "HTTP/1.1 101 Switching Protocols\r\n");
    rc |= put_headers(&c->pend, headers, 0, 0, 1);
    rc |= shadow_buf_append(&c->pend, "\r\n", 2);
    if (rc) {
      conn_close(c);
      return -ENOMEM;
    }
    c->head_out = 1;
    c->body_stream = 1; /* the client's bytes from here on are its body */
    conn_flush(c);
    /* What the client sent after its request is the tunnel's first. */
    conn_post(c);
    return 0;
  }
  int head_req = req->method_id == HTTP_HEAD;
  c->no_body = head_req || status < 200 || status == 204 || status == 304;
  c->resp_len = c->no_body ? 0 : body_len;
  c->resp_sent = 0;
  c->chunked = !c->no_body && body_len < 0 && req->http_minor >= 1;
  /* Without a length, an HTTP/1.0 client reads the body to the close. */
  if (!c->no_body && body_len < 0 && !c->chunked) c->close_after = 1;
  int keep = req->keep_alive && !s->draining && !s->closing && !c->close_after;
  if (!keep) c->close_after = 1;
  shadow_buf_t *b = &c->pend;
  /* HEAD and 304 describe a body they do not carry, so a given
   * content-length is the right one to pass on; 1xx and 204 must not have
   * one at all (RFC 9110 section 8.6). */
  int pass_cl = head_req || status == 304;
  /* By hand, not printf: once per response (status is 100-999 here). */
  char line[14] = "HTTP/1.1 000 ";
  line[9] = (char)('0' + status / 100);
  line[10] = (char)('0' + status / 10 % 10);
  line[11] = (char)('0' + status % 10);
  int rc = shadow_buf_append(b, line, sizeof(line) - 1);
  rc |= shadow_buf_puts(b, shadow_http_reason(status));
  rc |= shadow_buf_append(b, "\r\n", 2);
  rc |= put_headers(b, headers, pass_cl, c->chunked, 0);
  if (!c->no_body && body_len >= 0) {
    rc |= shadow_buf_puts(b, "Content-Length: ");
    rc |= shadow_buf_put_u64(b, (uint64_t)body_len);
    rc |= shadow_buf_append(b, "\r\n", 2);
  }
  if (c->chunked) rc |= shadow_buf_puts(b, "Transfer-Encoding: chunked\r\n");
  if (!keep)
    rc |= shadow_buf_puts(b, "Connection: close\r\n");
  else if (req->http_minor == 0)
    rc |= shadow_buf_puts(b, "Connection: keep-alive\r\n");
  rc |= shadow_buf_append(b, "\r\n", 2);
  if (rc) {
    conn_close(c);
    return -ENOMEM;
  }
  c->head_out = 1;
  return 0;
}

int shadow_server_interim(shadow_request_t *req, int status,
                          const shadow_headers_t *headers) {
  if (req->http_major == 2) return shadow_h2_interim(req, status, headers);
  conn_t *c = conn_of_req(req);
  if (!c->inflight || c->head_out || c->ended || c->closing) return -EINVAL;
  /* RFC 9110 section 15.2: no 1xx to an HTTP/1.0 client. 100 Continue is
   * the server's own business (it has answered Expect already), and 101
   * is not interim. */
  if (req->http_minor == 0 || status == 100 || status == 101 || status < 100 ||
      status > 199)
    return 0;
  /* A hint is advisory: one that finds the client behind (more than a
   * few hints' worth still queued for it) is dropped rather than queued,
   * so a client that does not read never makes hints pile up here. */
  if (c->pend.len >= INTERIM_QUEUE_BYTES) return 0;
  shadow_buf_t *b = &c->pend;
  int rc = shadow_buf_printf(b, "HTTP/1.1 %d %s\r\n", status,
                             shadow_http_reason(status));
  rc |= put_headers(b, headers, 0, 0, 0);
  rc |= shadow_buf_append(b, "\r\n", 2);
  if (rc) {
    conn_close(c);
    return -ENOMEM;
  }
  conn_flush(c);
  return 0;
}

int shadow_server_body(shadow_request_t *req, const char *data, size_t len) {
  if (req->http_major == 2) return shadow_h2_body(req, data, len);
  conn_t *c = conn_of_req(req);
  if (!c->inflight || !c->head_out || c->ended) return -EINVAL;
  if (c->closing) return -ECANCELED;
  if (c->no_body || len == 0) return 0;
  if (c->resp_len >= 0 && c->resp_sent + len > (uint64_t)c->resp_len)
    len = (size_t)((uint64_t)c->resp_len - c->resp_sent); /* never past it */
  int rc = 0;
  if (c->chunked) rc |= shadow_buf_printf(&c->pend, "%zx\r\n", len);
  c->resp_sent += len;
  size_t taken = 0;
  if (!rc && len >= DIRECT_BYTES &&
      (!c->writing || shadow_stream_queued(&c->s) == 0)) {
    /* A large piece with nothing in flight goes to the socket straight
     * from the caller's buffer, after what is queued before it; only what
     * the socket does not take now is copied. A write whose bytes the
     * socket has all taken, its callback still to come, is not in the
     * way (a TLS stream's try_write declines, and the piece is copied). */
    uv_buf_t b[2] = {uv_buf_init(c->pend.data, (unsigned)c->pend.len),
                     uv_buf_init((char *)data, (unsigned)len)};
    int n =
        shadow_stream_try_write(&c->s, b[0].len ? b : b + 1, b[0].len ? 2 : 1);
    if (n < 0 && n != UV_EAGAIN) {
      conn_close(c);
      return -ECANCELED;
    }
    size_t wrote = n > 0 ? (size_t)n : 0;
    if (wrote < c->pend.len) {
      memmove(c->pend.data, c->pend.data + wrote, c->pend.len - wrote);
      c->pend.len -= wrote;
    } else {
      taken = wrote - c->pend.len;
      shadow_buf_reset(&c->pend);
    }
  }
  rc |= shadow_buf_append(&c->pend, data + taken, len - taken);
  if (c->chunked) rc |= shadow_buf_append(&c->pend, "\r\n", 2);
  if (rc) {
    conn_close(c);
    return -ENOMEM;
  }
  if (queued(c) >= WRITE_HIGH) {
    conn_flush(c);
    c->want_writable = 1;
    return 1;
  }
  return 0;
}

void shadow_server_flush(shadow_request_t *req) {
  if (req->http_major == 2) {
    shadow_h2_flush(req);
    return;
  }
  conn_flush(conn_of_req(req));
}

int shadow_server_head_sent(const shadow_request_t *req) {
  if (req->http_major == 2) return shadow_h2_head_sent(req);
  const conn_t *c =
      (const conn_t *)(const void *)((const char *)req - offsetof(conn_t, req));
  return c->head_out;
}

/* The handler is done with req: from here on the connection owns it. */
static void give_back(conn_t *c) {
  shadow_server_t *s = c->srv;
  c->inflight = 0;
  s->inflight--;
  c->ended = 1;
  /* A body still arriving would have to be read to find the next request:
   * the connection closes instead. */
  if (c->body_stream || !c->req.body_complete) c->close_after = 1;
}

static void finish(conn_t *c) {
  if (c->closing) {
    /* Freed now, or by the last handle's close; either checks the drain. */
    conn_maybe_free(c);
    return;
  }
  if (!c->writing && !c->pend.len) {
    /* Nothing left to write: move on from the loop, not from here. */
    conn_post(c);
    return;
  }
  conn_flush(c);
}

void shadow_server_end(shadow_request_t *req,
                       const shadow_headers_t *trailers) {
  if (req->http_major == 2) {
    shadow_h2_end(req, trailers);
    return;
  }
  conn_t *c = conn_of_req(req);
  if (!c->inflight) return; /* given back twice: the second is dropped */
  if (!c->closing && !c->head_out) {
    /* Aborted before any answer: a body error answers with its status,
     * anything else with a plain close. */
    give_back(c);
    if (c->abort_status)
      conn_fail(c, c->abort_status);
    else
      c->close_after = 1;
    finish(c);
    return;
  }
  if (!c->closing && c->chunked) {
    int rc = shadow_buf_puts(&c->pend, "0\r\n");
    rc |= put_headers(&c->pend, trailers, 0, 0, 0);
    rc |= shadow_buf_append(&c->pend, "\r\n", 2);
    if (rc) c->close_after = 1;
  } else if (c->resp_len >= 0 && c->resp_sent < (uint64_t)c->resp_len) {
    c->close_after = 1; /* cut short: only a close tells the client */
  }
  give_back(c);
  finish(c);
}

void shadow_server_abort(shadow_request_t *req) {
  if (req->http_major == 2) {
    shadow_h2_abort(req);
    return;
  }
  conn_t *c = conn_of_req(req);
  if (!c->inflight) return;
  c->close_after = 1;
  /* Without its terminator a chunked body reads as cut short, and a
   * length-framed one as shorter than declared: the close tells. */
  give_back(c);
  finish(c);
}

void shadow_server_respond(shadow_request_t *req, int status,
                           const shadow_headers_t *headers, const char *body,
                           size_t body_len) {
  if (req->http_major == 2) {
    if (!shadow_h2_head_sent(req) &&
        shadow_h2_head(req, status, headers, (int64_t)body_len) == 0)
      shadow_h2_body(req, body, body_len);
    shadow_h2_end(req, NULL);
    return;
  }
  conn_t *c = conn_of_req(req);
  if (!c->inflight) return;
  if (body_len > UINT32_MAX) { /* uv_buf_t lengths are 32-bit */
    shadow_server_abort(req);
    return;
  }
  if (!c->head_out &&
      shadow_server_head(req, status, headers, (int64_t)body_len) == 0)
    shadow_server_body(req, body, body_len);
  shadow_server_end(req, NULL);
}

/* ---- reading and parsing ---- */

static void continue_100(conn_t *c) {
  if (c->req.http_minor >= 1 &&
      shadow_buf_puts(&c->pend, "HTTP/1.1 100 Continue\r\n\r\n") == 0)
    conn_flush(c);
}

/* Hands body bytes collected in req->body to the handler, and the end of
 * the body when it has come. */
static void deliver_body(conn_t *c) {
  shadow_server_t *s = c->srv;
  shadow_request_t *req = &c->req;
  if (!c->body_stream) return;
  if (req->body.len) {
    if (c->inflight && !c->aborted && s->h.on_body)
      s->h.on_body(req, req->body.data, req->body.len);
    shadow_buf_reset(&req->body);
    if (c->closing) return;
  }
  if (req->body_complete) {
    c->body_stream = 0;
    if (c->inflight && !c->aborted && s->h.on_body_end) s->h.on_body_end(req);
  }
}

/* "addr:port" the client connected to, for an HTTP/1.0 request that names
 * no host: every backend then sees the same Host, not each its own. */
static void local_host(conn_t *c, char *host, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char ip[64];
  host[0] = '\0';
  if (uv_tcp_getsockname(&c->s.tcp, (struct sockaddr *)&ss, &len) != 0) return;
  int n;
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
    n = snprintf(host, cap, "[%s]:%d", ip,
                 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
    n = snprintf(host, cap, "%s:%d", ip,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
  }
  if (n < 0 || (size_t)n >= cap) host[0] = '\0';
}

static void add_local_host(conn_t *c) {
  char host[80];
  local_host(c, host, sizeof(host));
  if (host[0])
    shadow_headers_add(&c->req.headers, "Host", 4, host, strlen(host));
}

/* Arms the connection's deadline ms from now (lazily: see deadline.h). */
static void timer_set(conn_t *c, uint64_t ms) {
  shadow_deadline_set(&c->deadline, &c->timer, on_timer, ms);
}

static void timer_clear(conn_t *c) {
  shadow_deadline_clear(&c->deadline);
}

static void hand_out(conn_t *c) {
  shadow_server_t *s = c->srv;
  shadow_request_t *req = &c->req;
  req->tls = shadow_stream_is_tls(&c->s);
  if (!shadow_headers_find(&req->headers, "host")) add_local_host(c);
  c->inflight = 1;
  s->inflight++;
  c->aborted = 0;
  c->abort_status = 0;
  c->head_out = c->ended = 0;
  c->body_stream = s->h.on_body && !req->body_complete;
  timer_clear(c);
  s->h.on_request(req, s->h.ud);
  /* The handler took what came with the head. */
  if (s->h.on_body && !c->closing) shadow_buf_reset(&req->body);
}

/* Feeds bytes to the parser until it needs more, a request is complete,
 * or the connection fails. Returns the bytes taken. */
static size_t conn_feed(conn_t *c, const char *data, size_t len) {
  shadow_server_t *s = c->srv;
  size_t off = 0;
  if (c->tunnel) {
    /* Raw bytes, while the handler takes them. */
    if (!c->inflight || c->ended || c->closing || c->body_paused || !len)
      return 0;
    if (s->h.on_body) s->h.on_body(&c->req, data, len);
    return len;
  }
  for (;;) {
    if (c->closing || c->ended) break;
    /* Once a request is handed out, only its body is read, and only while
     * the handler takes it. */
    if (c->inflight && (!c->body_stream || c->body_paused)) break;
    size_t used = 0;
    shadow_parse_event_t ev =
        shadow_request_parse(&c->parser, data + off, len - off, &used);
    off += used;
    if (ev == SHADOW_PARSE_CONTINUE || ev == SHADOW_PARSE_HEAD) {
      if (ev == SHADOW_PARSE_CONTINUE) continue_100(c);
      if (s->h.on_body) c->head_in = 1; /* handed out after this feed */
      continue;
    }
    if (ev == SHADOW_PARSE_REQUEST) {
      if (!c->inflight) {
        c->head_in = 1;
        /* A streaming handler gets the head and the body at once; the
         * others a whole request. */
        hand_out(c);
      } else {
        deliver_body(c);
      }
      break;
    }
    if (ev == SHADOW_PARSE_ERROR) {
      if (c->inflight) {
        /* The body of a request already handed out broke the framing or
         * the limit: the handler ends it, then the status goes out if
         * nothing else has. */
        c->abort_status = c->parser.status;
        c->close_after = 1;
        conn_abort_request(c, SHADOW_ABORT_BODY);
      } else {
        conn_fail(c, c->parser.status);
      }
      break;
    }
    break; /* MORE: everything was taken */
  }
  /* A streamed head is handed out once the bytes that came with it have
   * been parsed, so a small body goes on with its head in one piece. */
  if (c->head_in && !c->inflight && !c->ended && !c->closing)
    hand_out(c);
  else if (c->inflight && c->body_stream && !c->closing)
    deliver_body(c);
  return off;
}

/* What a posted connection does on the loop: finish a response that had
 * nothing left to write, or parse what is buffered. */
static void conn_continue(conn_t *c) {
  if (c->h2) {
    h2_flush(c);
    return;
  }
  if (c->ended && !c->writing && !c->pend.len)
    conn_response_done(c);
  else
    conn_process(c);
}

/* Parses what is buffered, then decides whether to read and which timer
 * runs. Called after a response is written and after each read. */
static void conn_process(conn_t *c) {
  if (c->in.len > c->in_pos)
    c->in_pos += conn_feed(c, c->in.data + c->in_pos, c->in.len - c->in_pos);
  if (c->closing) return;
  if (c->in_pos == c->in.len) {
    c->in.len = c->in_pos = 0;
    if (c->in.cap > KEEP_BYTES) shadow_buf_free(&c->in);
  } else if (c->in_pos > 0) {
    memmove(c->in.data, c->in.data + c->in_pos, c->in.len - c->in_pos);
    c->in.len -= c->in_pos;
    c->in_pos = 0;
  }
  conn_arm(c);
}

static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->closing || c->lingering) return;
  if (!shadow_deadline_reached(&c->deadline, &c->timer, on_timer)) return;
  if (c->h2) {
    h2_timeout(c);
    return;
  }
  if (c->writing) {
    /* Like nginx's send_timeout: a response that made no progress for an
     * idle timeout is abandoned, so a client that never reads cannot hold
     * the response's memory for ever. */
    size_t left = shadow_stream_queued(&c->s);
    if (left && left >= c->wq_size)
      conn_close(c);
    else
      conn_arm(c);
    return;
  }
  if (c->inflight && c->tunnel) {
    conn_abort_request(c, SHADOW_ABORT_TIMEOUT); /* idle both ways */
    return;
  }
  if (c->inflight) {
    /* Only a streamed body that stopped arriving has a timer here. */
    c->abort_status = 408;
    c->close_after = 1;
    conn_abort_request(c, SHADOW_ABORT_TIMEOUT);
    return;
  }
  /* A client that began a request and stalled gets told; one that sent
   * nothing is just idle and is closed without a word. */
  if (shadow_request_parser_started(&c->parser))
    conn_fail(c, 408);
  else
    conn_close(c);
}

static int set_reading(conn_t *c, int on) {
  if (on && !c->reading) {
    if (shadow_stream_read_start(&c->s, on_alloc, on_read) != 0) {
      conn_close(c);
      return -1;
    }
    c->reading = 1;
  } else if (!on && c->reading) {
    shadow_stream_read_stop(&c->s);
    c->reading = 0;
  }
  return 0;
}

/* Reads only while the connection can take bytes, and runs the timer that
 * fits. As in nginx: a new connection has the header timeout from accept to
 * send its first request's head; a keep-alive connection waits out the idle
 * timeout for a next request, then has the header timeout from that
 * request's first byte; a body has the idle timeout between reads, and so
 * has a response the client stops reading. (Counting a keep-alive
 * connection's header deadline from the previous response would 408 a
 * client whose request, after a long idle spell, arrives in two packets.) */
static void conn_arm(conn_t *c) {
  if (c->closing || c->lingering) return;
  if (c->h2) {
    h2_arm(c);
    return;
  }
  if (c->peer_eof && !c->inflight && !c->writing && !c->ended &&
      !c->close_after) {
    /* Everything the client sent before its half-close is answered. */
    conn_close(c);
    return;
  }
  uint64_t idle = c->opts.idle_timeout_ms;
  if (c->tunnel && c->inflight) {
    /* Any byte either way (reads and writes both come through here)
     * starts the idle time over. */
    if (set_reading(c, !c->body_paused && !c->peer_eof)) return;
    uint64_t t = c->opts.tunnel_idle_timeout_ms;
    if (t)
      timer_set(c, t);
    else
      timer_clear(c);
    return;
  }
  if (c->head_in || c->writing || c->ended || c->close_after) {
    int streaming = c->inflight && c->body_stream;
    int keep_reading =
        !c->peer_eof &&
        (streaming ? !c->body_paused
                   : !c->close_after && c->in.len < BUSY_READ_BYTES);
    if (set_reading(c, keep_reading)) return;
    if (c->writing && idle) {
      /* A client that stops reading our answer: see on_timer. */
      c->wq_size = shadow_stream_queued(&c->s);
      timer_set(c, idle);
    } else if (streaming && !c->body_paused && idle) {
      timer_set(c, idle);
    } else {
      timer_clear(c);
    }
    return;
  }
  if (set_reading(c, 1)) return;
  uint64_t now = uv_now(c->srv->loop);
  uint64_t ms = idle; /* 0: no timeout */
  int started = shadow_request_parser_started(&c->parser);
  if (started && !c->head_clock) {
    c->head_since = now;
    c->head_clock = 1;
  }
  if (c->parser.in_head && c->opts.header_timeout_ms &&
      (started || !c->served)) {
    uint64_t end = c->head_since + c->opts.header_timeout_ms;
    uint64_t left = end > now ? end - now : 1;
    if (!started && ms && ms < left) left = ms;
    ms = left;
  }
  if (ms)
    timer_set(c, ms);
  else
    timer_clear(c);
}

static void on_alloc(shadow_stream_t *st, size_t hint, uv_buf_t *buf) {
  conn_t *c = st->data;
  (void)hint;
  if (c->lingering || c->in.len == 0) {
    *buf = uv_buf_init(c->srv->rbuf, sizeof(c->srv->rbuf));
    return;
  }
  if (shadow_buf_reserve(&c->in, KEEP_BYTES) != 0) {
    *buf = uv_buf_init(NULL, 0); /* on_read gets UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(c->in.data + c->in.len,
                     (unsigned)(c->in.cap - c->in.len - 1));
}

static void on_read(shadow_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = st->data;
  if (c->closing) return;
  if (c->h2 && !c->lingering && h2_read(c, buf, nread)) return;
  if (c->sniff && sniff(c, buf, nread)) return;
  if (nread < 0) {
    if (nread == UV_EOF && (c->inflight || c->writing || c->ended) &&
        !c->body_stream) {
      /* A client may half-close after sending its request: it still
       * gets the answer, and the connection ends after it. */
      c->peer_eof = 1;
      set_reading(c, 0);
      return;
    }
    /* EOF when idle or mid-body, a reset, or no memory: the connection
     * ends here (and the handler is told). */
    conn_close(c);
    return;
  }
  if (nread == 0) return;
  if (c->lingering) {
    c->discarded += (size_t)nread;
    if (c->discarded > LINGER_BYTES) conn_close(c);
    return;
  }
  if (buf->base == c->srv->rbuf) {
    size_t used = conn_feed(c, buf->base, (size_t)nread);
    if (c->closing) return;
    if (used < (size_t)nread &&
        shadow_buf_append(&c->in, buf->base + used, (size_t)nread - used)) {
      conn_close(c);
      return;
    }
  } else {
    c->in.len += (size_t)nread;
    c->in.data[c->in.len] = '\0';
    c->in_pos += conn_feed(c, c->in.data + c->in_pos, c->in.len - c->in_pos);
    if (c->closing) return;
  }
  conn_process(c);
}

void shadow_server_pause_body(shadow_request_t *req) {
  if (req->http_major == 2) {
    shadow_h2_pause_body(req);
    return;
  }
  conn_t *c = conn_of_req(req);
  if (c->closing || !c->body_stream || c->body_paused) return;
  c->body_paused = 1;
  conn_arm(c);
}

void shadow_server_resume_body(shadow_request_t *req) {
  if (req->http_major == 2) {
    shadow_h2_resume_body(req);
    return;
  }
  conn_t *c = conn_of_req(req);
  if (c->closing || !c->body_paused) return;
  c->body_paused = 0;
  /* Bytes read before the pause come first, from the loop. */
  if (c->in.len > c->in_pos)
    conn_post(c);
  else
    conn_arm(c);
}

/* ---- HTTP/2: the connection's side of an h2 session ---- */

static void h2_want_write(void *ud) {
  conn_post(ud); /* h2_flush from the loop, not from inside the session */
}

static void h2_handed(void *ud, shadow_request_t *req) {
  conn_t *c = ud;
  (void)req;
  c->inflight++;
  c->srv->inflight++;
  timer_clear(c);
}

static void h2_given_back(void *ud) {
  conn_t *c = ud;
  c->inflight--;
  c->srv->inflight--;
  if (c->closing)
    conn_maybe_free(c); /* which checks the drain */
  else
    conn_post(c);
}

static void h2_error(void *ud, const char *reason) {
  conn_t *c = ud;
  if (c->srv->h.on_h2_error) c->srv->h.on_h2_error(c->srv->h.ud, reason);
}

static uint64_t h2_now(void *ud) {
  conn_t *c = ud;
  return uv_now(c->srv->loop);
}

static void local_host(conn_t *c, char *out, size_t cap);

/* The connection speaks HTTP/2 from here on; data is what the client sent
 * so far (its preface first). */
static void h2_start(conn_t *c, const char *data, size_t len) {
  shadow_server_t *s = c->srv;
  char host[80];
  local_host(c, host, sizeof(host));
  shadow_h2_io_t io = {c,        h2_want_write, h2_handed, h2_given_back,
                       h2_error, h2_now};
  shadow_h2_conn_info_t info = {c->req.peer, host, shadow_stream_is_tls(&c->s)};
  c->sniff = 0;
  if (shadow_h2_new(&c->opts, &s->h, &io, &info, &c->h2) != 0) {
    conn_close(c);
    return;
  }
  /* A drain or a reload that came first still applies. */
  if (s->draining) shadow_h2_goaway(c->h2);
  if (len) shadow_h2_feed(c->h2, data, len);
  h2_flush(c);
}

/* Writes what the session has to send, one write at a time; closes the
 * connection once the session is done. */
static void h2_flush(conn_t *c) {
  if (c->closing || c->lingering || c->writing) return;
  if (shadow_h2_send(c->h2, &c->pend, WRITE_HIGH) != 0 && !c->pend.len) {
    conn_close(c);
    return;
  }
  if (c->closing) return; /* the handler, called back, closed it */
  if (c->pend.len) {
    conn_flush(c);
    return;
  }
  if (shadow_h2_done(c->h2) || c->close_after) {
    conn_linger(c);
    return;
  }
  /* Nothing in flight: a large download's buffers are not kept. */
  if (!shadow_h2_streams(c->h2)) {
    if (c->pend.cap > KEEP_BYTES) shadow_buf_free(&c->pend);
    if (c->wbuf.cap > KEEP_BYTES) shadow_buf_free(&c->wbuf);
  }
  h2_arm(c);
}

static int h2_read(conn_t *c, const uv_buf_t *buf, ssize_t nread) {
  if (nread < 0) {
    conn_close(c); /* the client went: its streams are aborted */
    return 1;
  }
  shadow_h2_feed(c->h2, buf->base, (size_t)nread);
  if (!c->closing) h2_flush(c);
  return 1;
}

/* On a plain listener, or TLS without ALPN h2, the first bytes tell
 * HTTP/2's preface from an HTTP/1.1 request line. 1 when they were taken
 * here (HTTP/2, or too few to tell yet), 0 for HTTP/1.1. */
static int sniff(conn_t *c, const uv_buf_t *buf, ssize_t nread) {
  if (nread <= 0) return 0;
  /* "PRI * HTTP/2.0" is no HTTP/1.1 request: it is HTTP/2, or a bad
   * preface, which the session answers with a GOAWAY. */
  const size_t tell = 14;
  int own = buf->base != c->srv->rbuf;
  const char *p = own ? c->in.data + c->in_pos : buf->base;
  size_t n = own ? c->in.len - c->in_pos + (size_t)nread : (size_t)nread;
  size_t m = n < tell ? n : tell;
  if (memcmp(p, SHADOW_H2_PREFACE, m) != 0) {
    c->sniff = 0;
    return 0;
  }
  if (n < tell) {
    if (own) {
      c->in.len += (size_t)nread;
      c->in.data[c->in.len] = '\0';
    } else if (shadow_buf_append(&c->in, p, n) != 0) {
      conn_close(c);
    }
    return 1;
  }
  h2_start(c, p, n);
  c->in.len = c->in_pos = 0;
  return 1;
}

/* The timer of an HTTP/2 connection: a write that stalls (send timeout),
 * a request body that stops arriving, the first request's headers (header
 * timeout) and a connection with nothing in flight (idle timeout). Reading
 * goes on whatever the streams do: flow control holds each one back. */
static void h2_arm(conn_t *c) {
  if (c->closing || c->lingering) return;
  if (set_reading(c, shadow_h2_want_read(c->h2))) return;
  uint64_t idle = c->opts.idle_timeout_ms, ms = 0;
  if (c->writing) {
    c->wq_size = shadow_stream_queued(&c->s);
    ms = idle;
  } else if (shadow_h2_inflight(c->h2)) {
    ms = shadow_h2_body_waiting(c->h2) ? idle : 0;
  } else if (!c->served && shadow_h2_heading(c->h2) &&
             c->opts.header_timeout_ms) {
    uint64_t now = uv_now(c->srv->loop);
    uint64_t end = c->head_since + c->opts.header_timeout_ms;
    ms = end > now ? end - now : 1;
  } else {
    c->served = 1;
    ms = idle;
  }
  if (ms)
    timer_set(c, ms);
  else
    timer_clear(c);
}

static void h2_timeout(conn_t *c) {
  if (c->writing) {
    size_t left = shadow_stream_queued(&c->s);
    if (left && left >= c->wq_size)
      conn_close(c);
    else
      h2_arm(c);
    return;
  }
  if (shadow_h2_inflight(c->h2)) {
    /* Bodies that stopped arriving: 408 on those streams. */
    shadow_h2_abort_waiting(c->h2);
    conn_post(c);
    return;
  }
  /* Idle, or no request in time: GOAWAY, and the close after it. */
  shadow_h2_goaway(c->h2);
  c->close_after = 1;
  h2_flush(c);
}

/* ---- accepting ---- */

static void peer_name(conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  c->req.peer[0] = '\0';
  if (uv_tcp_getpeername(&c->s.tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->req.peer, sizeof(c->req.peer));
  else
    uv_ip4_name((struct sockaddr_in *)&ss, c->req.peer, sizeof(c->req.peer));
}

/* A TLS client's handshake: one that fails is closed without a word (as
 * nginx does; there is no HTTP to answer in). The header timeout runs
 * meanwhile, so a client that never finishes it is closed too. */
static void on_tls_ready(shadow_stream_t *st, int status) {
  conn_t *c = st->data;
  if (status == SHADOW_STREAM_EPLAIN)
    conn_fail_text(c, 400, "plain HTTP sent to the TLS port");
  else if (status != 0)
    conn_close(c);
  else if (strcmp(shadow_tls_alpn(c->s.tls), "h2") == 0)
    h2_start(c, NULL, 0); /* our SETTINGS go first */
  else if (shadow_tls_alpn(c->s.tls)[0])
    c->sniff = 0; /* http/1.1 was agreed */
}

/* Tells the handler a client was turned away; a burst is the run of
 * refusals between two admitted clients. */
static void refused(shadow_server_t *s, int err) {
  int first = !s->at_cap;
  s->at_cap = 1;
  if (s->h.on_refuse) s->h.on_refuse(s->h.ud, err, first);
}

/* Fewer than opts.fd_reserve descriptors would be left after this client
 * (a quarter of the limit at most, for tiny limits). The kernel hands out
 * the lowest free descriptor, so every one below c's is open: its number
 * says how many are in use, with no need to count them. The limit is read
 * each time, as it can be changed from outside (prlimit). */
static int fds_short(conn_t *c) {
  size_t reserve = c->srv->opts.fd_reserve;
  uv_os_fd_t fd;
  struct rlimit rl;
  if (!reserve || uv_fileno((uv_handle_t *)&c->s.tcp, &fd) != 0 ||
      getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return 0;
  uint64_t lim = (uint64_t)rl.rlim_cur;
  uint64_t keep = reserve < lim / 4 ? reserve : lim / 4;
  return (uint64_t)fd + keep >= lim;
}

/* Out of descriptors. libuv accepts and closes what waits with a spare
 * descriptor of its own and says nothing; it reports EMFILE only when it
 * has lost that one (another thread took the descriptor it freed), and
 * then calls again at once for as long as accept fails: a spin. So the
 * same is done here with a spare of the server's own: the backlog is
 * emptied (each client closed, and counted) until accept says EAGAIN,
 * which ends libuv's loop. */
static void drain_backlog(shadow_server_t *s) {
  uv_os_fd_t lfd;
  if (uv_fileno((uv_handle_t *)&s->listener, &lfd) != 0) return;
  if (s->spare_fd >= 0) close(s->spare_fd);
  s->spare_fd = -1;
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && (errno == EINTR || errno == ECONNABORTED)) continue;
    if (fd < 0) break;
    close(fd);
    refused(s, UV_EMFILE);
  }
  s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_connection(uv_stream_t *ls, int status) {
  shadow_server_t *s = ls->data;
  if (s->draining || s->closing) return;
  if (status < 0) {
    refused(s, status);
    if (status == UV_EMFILE || status == UV_ENFILE) drain_backlog(s);
    return;
  }
  conn_t *c = calloc(1, sizeof(*c));
  /* Without memory there is nothing to answer with; libuv then holds the
   * connection and pauses the listener until a later accept. */
  if (!c) return;
  c->srv = s;
  c->opts = s->opts;
  shadow_stream_init(s->loop, &c->s, c);
  uv_timer_init(s->loop, &c->timer);
  c->timer.data = c;
  c->open_handles = 2;
  s->nalive++;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++; /* until it is known to be over */
  shadow_request_parser_init(&c->parser, &c->req, c->opts.header_bytes,
                             c->opts.body_bytes, s->h.on_body != NULL);
  c->parser.max_headers = c->opts.max_headers;
  if (uv_accept(ls, (uv_stream_t *)&c->s.tcp) != 0) {
    conn_close(c);
    return;
  }
  int short_fds = fds_short(c);
  int over = short_fds ||
             (s->opts.max_connections && s->nconns > s->opts.max_connections);
  if (over) {
    s->nconns--;
    c->refused = 1;
    s->nrefusing++;
  } else {
    s->at_cap = 0;
  }
  /* Responses go out whole in one write; Nagle would only hold back the
   * tail of a pipelined burst or of a streamed body. */
  uv_tcp_nodelay(&c->s.tcp, 1);
  if (s->opts.tls && !over &&
      shadow_stream_start_tls(&c->s, s->opts.tls, 1, on_tls_ready) != 0) {
    conn_close(c);
    return;
  }
  if (over) {
    refused(s, short_fds ? SHADOW_REFUSE_FDS : 0);
    if (s->nrefusing > MAX_REFUSING)
      conn_close(c);
    else
      conn_fail(c, 503);
    return;
  }
  peer_name(c);
  c->sniff = 1;
  c->head_since = uv_now(s->loop);
  c->head_clock = 1;
  conn_arm(c);
}

static int parse_addr(const char *addr, struct sockaddr_storage *ss) {
  char host[256];
  const char *port;
  if (addr[0] == '[') {
    const char *end = strchr(addr, ']');
    if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host))
      return -EINVAL;
    memcpy(host, addr + 1, (size_t)(end - addr - 1));
    host[end - addr - 1] = '\0';
    port = end + 2;
  } else {
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof(host)) return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    port = colon + 1;
  }
  char *endp;
  long p = strtol(port, &endp, 10);
  if (!*port || *endp || p < 0 || p > 65535) return -EINVAL;
  if (!host[0]) strcpy(host, "0.0.0.0");
  if (strchr(host, ':'))
    return uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, (int)p, (struct sockaddr_in *)ss);
}

static void on_server_handle_close(uv_handle_t *h) {
  shadow_server_t *s = h->data;
  s->handles--;
  server_maybe_free(s);
}

static void set_err(char **err, const char *addr, int rc) {
  if (!err) return;
  size_t n = strlen(addr) + 128;
  *err = malloc(n);
  if (*err) snprintf(*err, n, "listen %s: %s", addr, uv_strerror(rc));
}

static void close_handles(shadow_server_t *s) {
  if (s->listener_open) {
    s->listener_open = 0;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_close);
  }
}

int shadow_server_listen(uv_loop_t *loop, const char *addr,
                         const shadow_server_opts_t *opts,
                         const shadow_server_handler_t *handler,
                         shadow_server_t **out, char **err) {
  struct sockaddr_storage ss;
  *out = NULL;
  if (err) *err = NULL;
  if (!handler || !handler->on_request) return -EINVAL;
  int rc = parse_addr(addr, &ss);
  if (rc) {
    set_err(err, addr, rc);
    return rc;
  }
  shadow_server_t *s = calloc(1, sizeof(*s));
  if (!s) {
    set_err(err, addr, UV_ENOMEM);
    return -ENOMEM;
  }
  s->loop = loop;
  s->h = *handler;
  s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (opts)
    s->opts = *opts;
  else
    shadow_server_opts_default(&s->opts);
  if (s->opts.tls) shadow_tls_ctx_ref(s->opts.tls);
  uv_idle_init(loop, &s->posted_idle);
  uv_timer_init(loop, &s->drain_timer);
  s->posted_idle.data = s->drain_timer.data = s;
  /* With a domain, libuv creates the socket now, so SO_REUSEPORT can be
   * set on it before the bind (libuv 1.44 has no flag for it). */
  uv_tcp_init_ex(loop, &s->listener, ss.ss_family);
  s->listener.data = s;
  s->listener_open = 1;
  s->handles = 3;
  if (s->opts.reuse_port) {
    uv_os_fd_t fd;
    int on = 1;
    rc = uv_fileno((uv_handle_t *)&s->listener, &fd);
    if (rc == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
      rc = -errno;
  }
  /* libuv sets SO_REUSEADDR itself on Unix when it binds a TCP handle, so
   * a restart does not wait out TIME_WAIT. */
  if (rc == 0) rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
  if (rc) {
    set_err(err, addr, rc);
    /* The struct is freed by the close callbacks: run the loop. */
    s->closing = 1;
    close_handles(s);
    uv_close((uv_handle_t *)&s->posted_idle, on_server_handle_close);
    uv_close((uv_handle_t *)&s->drain_timer, on_server_handle_close);
    return rc;
  }
  *out = s;
  return 0;
}

int shadow_server_port(const shadow_server_t *s) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void shadow_server_set_opts(shadow_server_t *s, const shadow_server_opts_t *o) {
  /* Connections made with the old certificate keep it (OpenSSL counts
   * its references); new ones get the new one. */
  if (o->tls) shadow_tls_ctx_ref(o->tls);
  shadow_tls_ctx_unref(s->opts.tls);
  s->opts = *o;
  /* An HTTP/2 connection can live for hours (a gRPC channel does): a
   * GOAWAY moves its client to a new connection, with the new options
   * and certificate, once its streams are done, as nginx's reload does. */
  for (conn_t *c = s->conns; c; c = c->next)
    if (c->h2) shadow_h2_goaway(c->h2);
}

void shadow_server_drain(shadow_server_t *s, void (*done)(void *ud), void *ud) {
  s->draining = 1;
  s->drained = done;
  s->drained_ud = ud;
  close_handles(s);
  conn_t *next;
  for (conn_t *c = s->conns; c; c = next) {
    next = c->next;
    if (c->h2) {
      /* GOAWAY with the last stream: those in flight finish, and the
       * connection closes after them. */
      shadow_h2_goaway(c->h2);
      continue;
    }
    /* A request in flight, or one still arriving, is finished: head()
     * sees draining and closes after the answer. Only connections with
     * nothing started are closed now. */
    if (c->inflight || c->head_in) continue;
    if (c->writing || c->ended)
      c->close_after = 1;
    else if (!c->lingering && !shadow_request_parser_started(&c->parser))
      conn_close(c);
  }
  check_drained(s);
}

size_t shadow_server_inflight(const shadow_server_t *s) {
  return s->inflight;
}

size_t shadow_server_connections(const shadow_server_t *s) {
  return s->nconns;
}

void shadow_server_close(shadow_server_t *s) {
  if (s->closing) return;
  s->draining = 1;
  s->closing = 1;
  s->drained = NULL;
  close_handles(s);
  uv_close((uv_handle_t *)&s->posted_idle, on_server_handle_close);
  uv_close((uv_handle_t *)&s->drain_timer, on_server_handle_close);
  while (s->conns)
    conn_close(s->conns);
  server_maybe_free(s);
}
