/* The client-facing HTTP/1.1 server. Parsing lives in request_parse.c; this
 * file is sockets, timers and the order of things on a connection:
 *
 *   read -> parse -> one request in flight -> respond -> write -> next
 *
 * Only one request per connection is in flight at a time. Bytes a client
 * pipelines behind it stay buffered and reading stops until the response
 * has been written, so a client that sends without reading cannot make us
 * queue responses or buffer requests without bound. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "request_parse.h"

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

typedef struct conn_s conn_t;

struct shadow_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  shadow_limits_t limits;
  shadow_request_cb cb;
  void *ud;
  conn_t *conns; /* open connections, refusals included */
  size_t nconns; /* open connections counted against the cap */
  size_t nrefusing;
  size_t nalive; /* connection structs not yet freed */
  size_t inflight;
  int listener_open; /* uv_close not yet called on the listener */
  int listener_closed;
  int draining;
  int closing;
  /* Reads land here and are parsed in place; only the bytes a busy
   * connection cannot parse yet are copied to its own buffer. An idle
   * keep-alive connection so holds no read buffer at all. */
  char rbuf[64 * 1024];
};

struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  shadow_server_t *srv;
  conn_t *prev, *next;
  shadow_limits_t limits;
  shadow_request_parser_t parser;
  shadow_request_t req; /* reused for each request on the connection */
  shadow_buf_t in;      /* unparsed bytes, from in_pos */
  size_t in_pos;
  shadow_buf_t out_head;
  shadow_buf_t out_body;
  uv_write_t wreq;
  uv_write_t creq; /* 100 Continue */
  uv_shutdown_t sreq;
  uint64_t head_since; /* when the header deadline started counting */
  int head_clock;      /* head_since is set */
  int served;          /* requests answered on this connection */
  size_t discarded;
  size_t wq_size; /* bytes queued at the last write-progress check */
  int open_handles;
  int inflight;
  int writing;
  int continuing;
  int close_after;
  int closing;
  int lingering;
  int reading;
  int peer_eof; /* the client half-closed while we were busy */
  int refused;
};

/* While a request is in flight the connection keeps reading, so that a
 * keep-alive connection does not pay an epoll_ctl to stop and another to
 * restart reading on every request; what a pipelining client sends
 * meanwhile is buffered, up to this much, and then reading pauses. */
#define BUSY_READ_BYTES (64 * 1024)

static void conn_process(conn_t *c);
static void conn_arm(conn_t *c);

void shadow_limits_default(shadow_limits_t *l) {
  l->header_bytes = 64 * 1024;
  l->body_bytes = 8 * 1024 * 1024;
  l->header_timeout_ms = 10000;
  l->idle_timeout_ms = 60000;
  l->max_connections = 0;
  l->reuse_port = 0;
}

const char *shadow_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
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

/* The short JSON error bodies of DESIGN.md's bad-input table. */
static const char *error_text(int status) {
  switch (status) {
  case 400: return "bad request";
  case 408: return "request timeout";
  case 413: return "payload too large";
  case 431: return "request header fields too large";
  case 503: return "too many connections";
  default: return "internal error";
  }
}

static conn_t *conn_of_req(shadow_request_t *req) {
  return (conn_t *)(void *)((char *)req - offsetof(conn_t, req));
}

/* ---- freeing: only from close callbacks, or when the last in-flight
 * request of a closed connection is answered. ---- */

static void server_maybe_free(shadow_server_t *s) {
  if (s->closing && s->listener_closed && s->nalive == 0) free(s);
}

static void conn_maybe_free(conn_t *c) {
  if (c->open_handles > 0 || c->inflight) return;
  shadow_server_t *s = c->srv;
  shadow_request_parser_free(&c->parser);
  shadow_request_release(&c->req);
  shadow_buf_free(&c->in);
  shadow_buf_free(&c->out_head);
  shadow_buf_free(&c->out_body);
  free(c);
  s->nalive--;
  server_maybe_free(s);
}

static void on_conn_handle_close(uv_handle_t *h) {
  conn_t *c = h->data;
  c->open_handles--;
  conn_maybe_free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  shadow_server_t *s = c->srv;
  c->closing = 1;
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
   * and see c->closing. */
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_close);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_close);
}

/* ---- writing ---- */

static int header_ok(const shadow_header_t *e) {
  /* A name or value with CR, LF or NUL would let whoever produced it
   * (a backend, a Lua hook) write headers or a response of its own. */
  if (e->name_len == 0) return 0;
  for (size_t i = 0; i < e->name_len; i++) {
    unsigned char ch = (unsigned char)e->name[i];
    if (ch <= ' ' || ch == ':' || ch == 0x7f) return 0;
  }
  for (size_t i = 0; i < e->value_len; i++) {
    unsigned char ch = (unsigned char)e->value[i];
    if (ch == '\r' || ch == '\n' || ch == '\0') return 0;
  }
  return 1;
}

/* Builds the status line and headers into c->out_head. */
static int build_head(conn_t *c, int status, const shadow_headers_t *headers,
                      int http10, int head_req, size_t body_len, int keep) {
  shadow_buf_t *b = &c->out_head;
  shadow_buf_reset(b);
  int no_body = head_req || status < 200 || status == 204 || status == 304;
  /* HEAD and 304 describe a body they do not carry, so a given
   * content-length is the right one to pass on; 1xx and 204 must not have
   * one at all (RFC 9110 section 8.6). */
  int pass_cl = head_req || status == 304;
  int rc = shadow_buf_printf(b, "HTTP/1.1 %d %s\r\n", status,
                             shadow_http_reason(status));
  for (size_t i = 0; headers && i < headers->n && rc == 0; i++) {
    const shadow_header_t *e = &headers->v[i];
    if (!header_ok(e)) continue;
    if (shadow_header_is_hop(e->name, e->name_len) &&
        !(pass_cl && shadow_header_name_is(e, "content-length")))
      continue;
    rc |= shadow_buf_append(b, e->name, e->name_len);
    rc |= shadow_buf_append(b, ": ", 2);
    rc |= shadow_buf_append(b, e->value, e->value_len);
    rc |= shadow_buf_append(b, "\r\n", 2);
  }
  if (!no_body) rc |= shadow_buf_printf(b, "Content-Length: %zu\r\n", body_len);
  if (!keep)
    rc |= shadow_buf_puts(b, "Connection: close\r\n");
  else if (http10)
    rc |= shadow_buf_puts(b, "Connection: keep-alive\r\n");
  rc |= shadow_buf_append(b, "\r\n", 2);
  return rc ? -ENOMEM : 0;
}

static void on_linger_timer(uv_timer_t *t) {
  conn_close(t->data);
}
static void on_shutdown(uv_shutdown_t *r, int status) {
  (void)r;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* Half-closes and reads what the client still sends until it closes, for a
 * bounded time and byte count; then closes. */
static void conn_linger(conn_t *c) {
  c->lingering = 1;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  if (!c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
      conn_close(c);
      return;
    }
    c->reading = 1;
  }
  uv_timer_start(&c->timer, on_linger_timer, LINGER_MS, 0);
}

static void on_write(uv_write_t *w, int status) {
  conn_t *c = w->data;
  c->writing = 0;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  /* A large response's buffers are not kept for the next one. */
  if (c->out_body.cap > KEEP_BYTES) shadow_buf_free(&c->out_body);
  if (c->close_after) {
    conn_linger(c);
    return;
  }
  c->served = 1;
  c->head_clock = 0;
  conn_process(c);
}

static int conn_write(conn_t *c, size_t body_len) {
  uv_buf_t bufs[2];
  unsigned n = 0;
  bufs[n++] = uv_buf_init(c->out_head.data, (unsigned)c->out_head.len);
  if (body_len) bufs[n++] = uv_buf_init(c->out_body.data, (unsigned)body_len);
  c->wreq.data = c;
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write);
  if (rc == 0) {
    c->writing = 1;
    conn_arm(c);
  }
  return rc;
}

/* Answers with a short JSON error and closes: after a protocol error the
 * byte stream can no longer be trusted to hold request boundaries. */
static void conn_fail(conn_t *c, int status) {
  shadow_buf_reset(&c->out_body);
  if (shadow_buf_printf(&c->out_body, "{\"error\":\"%s\"}",
                        error_text(status)) != 0) {
    conn_close(c);
    return;
  }
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  shadow_header_t ct = {(char *)"content-type", 12, (char *)"application/json",
                        16};
  h.v = &ct;
  h.n = 1;
  c->close_after = 1;
  if (build_head(c, status, &h, 0, 0, c->out_body.len, 0) != 0 ||
      conn_write(c, c->out_body.len) != 0)
    conn_close(c);
}

static void on_continue_written(uv_write_t *w, int status) {
  conn_t *c = w->data;
  c->continuing = 0;
  if (status < 0 && !c->closing) conn_close(c);
}

static void conn_continue(conn_t *c) {
  static char text[] = "HTTP/1.1 100 Continue\r\n\r\n";
  if (c->continuing) return;
  uv_buf_t b = uv_buf_init(text, sizeof(text) - 1);
  c->creq.data = c;
  if (uv_write(&c->creq, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written) ==
      0)
    c->continuing = 1;
  else
    conn_close(c);
}

void shadow_server_respond(shadow_request_t *req, int status,
                           const shadow_headers_t *headers, const char *body,
                           size_t body_len) {
  conn_t *c = conn_of_req(req);
  shadow_server_t *s = c->srv;
  if (!c->inflight) return; /* answered twice: the second one is dropped */
  c->inflight = 0;
  s->inflight--;
  if (c->closing) {
    /* The connection went away meanwhile: nothing to write to. */
    conn_maybe_free(c);
    return;
  }
  if (status < 100 || status > 999) status = 500;
  if (body_len > UINT32_MAX) { /* uv_buf_t lengths are 32-bit */
    conn_close(c);
    return;
  }
  int head_req = req->method_id == HTTP_HEAD;
  int no_body = head_req || status < 200 || status == 204 || status == 304;
  int keep = req->keep_alive && !s->draining && !s->closing;
  int http10 = req->http_minor == 0;
  if (no_body) body_len = 0;
  shadow_buf_reset(&c->out_body);
  /* The one copy respond() makes: the caller's body need not outlive this
   * call, and ours lives until the write completes. */
  int rc = body_len ? shadow_buf_append(&c->out_body, body, body_len) : 0;
  if (rc == 0)
    rc = build_head(c, status, headers, http10, head_req, body_len, keep);
  shadow_request_parser_next(&c->parser);
  c->close_after = !keep;
  if (rc != 0 || conn_write(c, body_len) != 0) conn_close(c);
}

/* ---- reading and parsing ---- */

/* Feeds bytes to the parser until it needs more, a request is handed out,
 * or the connection fails. Returns the bytes taken. */
static size_t conn_feed(conn_t *c, const char *data, size_t len) {
  shadow_server_t *s = c->srv;
  size_t off = 0;
  while (!c->closing && !c->inflight && !c->writing && !c->close_after) {
    size_t used = 0;
    shadow_parse_event_t ev =
        shadow_request_parse(&c->parser, data + off, len - off, &used);
    off += used;
    if (ev == SHADOW_PARSE_REQUEST) {
      c->inflight = 1;
      s->inflight++;
      uv_timer_stop(&c->timer);
      s->cb(&c->req, s->ud);
    } else if (ev == SHADOW_PARSE_CONTINUE) {
      conn_continue(c);
    } else if (ev == SHADOW_PARSE_ERROR) {
      conn_fail(c, c->parser.status);
      break;
    } else {
      break;
    }
  }
  return off;
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
  if (c->writing && !c->closing) {
    /* Like nginx's send_timeout: a response that made no progress for an
     * idle timeout is abandoned, so a client that never reads cannot hold
     * the response's memory for ever. */
    size_t left = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (left && left >= c->wq_size)
      conn_close(c);
    else
      conn_arm(c);
    return;
  }
  if (c->closing || c->inflight || c->lingering) return;
  /* A client that began a request and stalled gets told; one that sent
   * nothing is just idle and is closed without a word. */
  if (shadow_request_parser_started(&c->parser))
    conn_fail(c, 408);
  else
    conn_close(c);
}

/* Reads only while the connection can take a request, and runs the timer
 * that fits. As in nginx: a new connection has the header timeout from
 * accept to send its first request's head; a keep-alive connection waits
 * out the idle timeout for a next request, then has the header timeout from
 * that request's first byte; a body has the idle timeout between reads.
 * (Counting a keep-alive connection's header deadline from the previous
 * response would 408 a client whose request, after a long idle spell,
 * arrives in two packets.) */
static void conn_arm(conn_t *c) {
  if (c->closing || c->lingering) return;
  uv_stream_t *st = (uv_stream_t *)&c->tcp;
  if (c->peer_eof && !c->inflight && !c->writing && !c->close_after) {
    /* Everything the client sent before its half-close is answered. */
    conn_close(c);
    return;
  }
  if (c->inflight || c->writing || c->close_after) {
    int keep_reading =
        !c->close_after && !c->peer_eof && c->in.len < BUSY_READ_BYTES;
    if (c->reading && !keep_reading) {
      uv_read_stop(st);
      c->reading = 0;
    } else if (!c->reading && keep_reading) {
      if (uv_read_start(st, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
      }
      c->reading = 1;
    }
    uv_timer_stop(&c->timer);
    if (c->writing && c->limits.idle_timeout_ms) {
      /* A client that stops reading our answer: see on_timer. */
      c->wq_size = uv_stream_get_write_queue_size(st);
      uv_timer_start(&c->timer, on_timer, c->limits.idle_timeout_ms, 0);
    }
    return;
  }
  if (!c->reading) {
    if (uv_read_start(st, on_alloc, on_read) != 0) {
      conn_close(c);
      return;
    }
    c->reading = 1;
  }
  uint64_t now = uv_now(c->srv->loop);
  uint64_t ms = c->limits.idle_timeout_ms; /* 0: no timeout */
  int started = shadow_request_parser_started(&c->parser);
  if (started && !c->head_clock) {
    c->head_since = now;
    c->head_clock = 1;
  }
  if (c->parser.in_head && c->limits.header_timeout_ms &&
      (started || !c->served)) {
    uint64_t end = c->head_since + c->limits.header_timeout_ms;
    uint64_t left = end > now ? end - now : 1;
    if (!started && ms && ms < left) left = ms;
    ms = left;
  }
  if (ms)
    uv_timer_start(&c->timer, on_timer, ms, 0);
  else
    uv_timer_stop(&c->timer);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *c = h->data;
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

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = st->data;
  if (c->closing) return;
  if (nread < 0) {
    if (nread == UV_EOF && (c->inflight || c->writing)) {
      /* A client may half-close after sending its request: it still
       * gets the answer, and the connection ends after it. */
      c->peer_eof = 1;
      uv_read_stop(st);
      c->reading = 0;
      return;
    }
    /* EOF when idle, a reset, or no memory: the connection ends here. */
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

/* ---- accepting ---- */

static void peer_name(conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  c->req.peer[0] = '\0';
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->req.peer, sizeof(c->req.peer));
  else
    uv_ip4_name((struct sockaddr_in *)&ss, c->req.peer, sizeof(c->req.peer));
}

static void on_connection(uv_stream_t *ls, int status) {
  shadow_server_t *s = ls->data;
  if (status < 0 || s->draining || s->closing) return;
  conn_t *c = calloc(1, sizeof(*c));
  /* Without memory there is nothing to answer with; libuv then holds the
   * connection and pauses the listener until a later accept. */
  if (!c) return;
  c->srv = s;
  c->limits = s->limits;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  s->nalive++;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  int over =
      s->limits.max_connections && s->nconns >= s->limits.max_connections;
  if (over) {
    c->refused = 1;
    s->nrefusing++;
  } else {
    s->nconns++;
  }
  shadow_request_parser_init(&c->parser, &c->req, c->limits.header_bytes,
                             c->limits.body_bytes);
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  /* Responses go out whole in one writev; Nagle would only hold back the
   * tail of a pipelined burst. */
  uv_tcp_nodelay(&c->tcp, 1);
  if (over) {
    if (s->nrefusing > MAX_REFUSING)
      conn_close(c);
    else
      conn_fail(c, 503);
    return;
  }
  peer_name(c);
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

static void on_listener_close(uv_handle_t *h) {
  shadow_server_t *s = h->data;
  s->listener_closed = 1;
  server_maybe_free(s);
}

static void set_err(char **err, const char *addr, int rc) {
  if (!err) return;
  size_t n = strlen(addr) + 128;
  *err = malloc(n);
  if (*err) snprintf(*err, n, "listen %s: %s", addr, uv_strerror(rc));
}

int shadow_server_listen(uv_loop_t *loop, const char *addr,
                         const shadow_limits_t *limits, shadow_request_cb cb,
                         void *ud, shadow_server_t **out, char **err) {
  struct sockaddr_storage ss;
  *out = NULL;
  if (err) *err = NULL;
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
  s->cb = cb;
  s->ud = ud;
  if (limits)
    s->limits = *limits;
  else
    shadow_limits_default(&s->limits);
  /* With a domain, libuv creates the socket now, so SO_REUSEPORT can be
   * set on it before the bind (libuv 1.44 has no flag for it). */
  uv_tcp_init_ex(loop, &s->listener, ss.ss_family);
  s->listener.data = s;
  s->listener_open = 1;
  if (s->limits.reuse_port) {
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
    /* The struct is freed by the close callback: run the loop. */
    s->closing = 1;
    s->listener_open = 0;
    uv_close((uv_handle_t *)&s->listener, on_listener_close);
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

void shadow_server_set_limits(shadow_server_t *s, const shadow_limits_t *l) {
  s->limits = *l;
}

static void close_listener(shadow_server_t *s) {
  if (!s->listener_open) return;
  s->listener_open = 0;
  uv_close((uv_handle_t *)&s->listener, on_listener_close);
}

void shadow_server_drain(shadow_server_t *s) {
  s->draining = 1;
  close_listener(s);
  conn_t *next;
  for (conn_t *c = s->conns; c; c = next) {
    next = c->next;
    /* A request in flight, or one still arriving, is finished: respond()
     * sees draining and closes after the answer. Only connections with
     * nothing started are closed now. */
    if (c->inflight) continue;
    if (c->writing)
      c->close_after = 1;
    else if (!c->lingering && !shadow_request_parser_started(&c->parser))
      conn_close(c);
  }
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
  close_listener(s);
  while (s->conns)
    conn_close(s->conns);
  server_maybe_free(s);
}
