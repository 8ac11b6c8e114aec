/* HTTP/2 from clients (see h2_server.h): nghttp2's server session in the
 * callbacks-only style (mem_recv in, mem_send out), with every stream
 * mapped onto the handler's calls as an HTTP/1.1 request is:
 *
 *   HEADERS (END_HEADERS) -> on_request; DATA -> on_body; END_STREAM ->
 *   on_body_end; head() -> HEADERS; body() -> DATA through a data source
 *   that defers while nothing is queued; end(trailers) -> trailers in a
 *   HEADERS frame; abort() -> RST_STREAM INTERNAL_ERROR.
 *
 * Backpressure is HTTP/2's own flow control, per stream. Request bodies:
 * window updates are manual (no auto window update), and a stream's bytes
 * are consumed only as its handler takes them, so a paused stream stops
 * its client alone; the connection's window is given back at once, since
 * what it holds is bounded by the streams' windows. Responses: a stream's
 * queue past STREAM_HIGH tells its producer to wait, and only the window
 * of that stream drains it, so a slow stream slows its own backend read.
 *
 * Nothing here touches a socket or the loop: server.c calls in and writes
 * what comes out. Handler calls made from inside nghttp2's callbacks only
 * submit frames; work that calls the handler back (a paused body resumed,
 * on_writable) is deferred to shadow_h2_send, which server.c calls from
 * the loop. */
#include "h2_server.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Response bytes queued on one stream past which its producer waits. */
#define STREAM_HIGH (64 * 1024)
/* The window each request body gets: what a paused stream may hold. */
#define STREAM_WINDOW 65535
/* Client stream resets are counted over windows this long. */
#define RESET_WINDOW_MS 10000

typedef struct h2_stream_s h2_stream_t;

struct h2_stream_s {
  shadow_request_t req; /* what the handler sees */
  shadow_h2_t *s;
  h2_stream_t *prev, *next;
  int32_t id;
  size_t head_bytes, nheaders;
  int too_big; /* the header list broke a limit: 431 */
  int bad;     /* a pseudo-header the server refuses: 400 */
  int heading; /* HEADERS begun, not ended */
  int handed;  /* went to the handler */
  int given;   /* ... and came back (end or abort) */
  int aborted; /* on_abort was told */
  int abort_status;
  int open;     /* nghttp2 has not closed it */
  int body_end; /* END_STREAM came from the client */
  int end_told; /* on_body_end was called */
  int paused;
  int due; /* deferred body delivery */
  int head_out;
  int no_body;  /* the response went with END_STREAM on its HEADERS */
  int ended;    /* end() came: EOF once the queue drains */
  int deferred; /* the data source said DEFERRED */
  int want_writable;
  int writable_due;
  int reset_out;      /* we reset it */
  int closing;        /* on_stream_close is telling the handler */
  const char *reason; /* what a reset of ours will be counted as */
  int64_t resp_len;
  uint64_t resp_sent;
  shadow_buf_t out; /* response body queued, from out_pos */
  size_t out_pos;
  shadow_headers_t trailers;
  int has_trailers;
  /* A head with an empty body waits for end(): with no trailers it goes
   * alone with END_STREAM, which is how gRPC's trailers-only answer (an
   * error status in the head) must arrive; an empty DATA frame after it
   * makes gRPC clients report "stream removed" instead of the status. */
  int head_held;
  int held_status;
  shadow_headers_t held;
  shadow_buf_t cookie; /* cookie crumbs, joined (RFC 9113 8.2.3) */
};

struct shadow_h2_s {
  nghttp2_session *ng;
  shadow_server_opts_t opts;
  shadow_server_handler_t h;
  shadow_h2_io_t io;
  char peer[64];
  char local_host[80];
  int tls;
  h2_stream_t *streams; /* every stream struct alive */
  size_t nopen, ninflight, nheading;
  int work_due;
  int goaway;     /* a graceful GOAWAY was queued */
  int fatal;      /* the session failed: send what is queued, then close */
  int any_stream; /* a request's headers have begun */
  const char *conn_reason; /* what our next GOAWAY with an error counts as */
  uint64_t reset_window_start;
  uint64_t resets;
  /* Scratch for building header lists. */
  nghttp2_nv *nva;
  size_t nva_cap;
  shadow_buf_t names;
};

static h2_stream_t *stream_of(const shadow_request_t *req) {
  return (h2_stream_t *)(void *)((char *)req - offsetof(h2_stream_t, req));
}

static void count(shadow_h2_t *s, const char *reason) {
  if (reason && reason[0] && s->io.error) s->io.error(s->io.ud, reason);
}

static void want_write(shadow_h2_t *s) {
  if (s->io.want_write) s->io.want_write(s->io.ud);
}

static void stream_free(h2_stream_t *st) {
  shadow_h2_t *s = st->s;
  if (st->prev)
    st->prev->next = st->next;
  else
    s->streams = st->next;
  if (st->next) st->next->prev = st->prev;
  shadow_request_release(&st->req);
  shadow_buf_free(&st->out);
  shadow_buf_free(&st->cookie);
  shadow_headers_free(&st->trailers);
  shadow_headers_free(&st->held);
  free(st);
}

/* Frees st once neither nghttp2 nor the handler has it. */
static void stream_maybe_free(h2_stream_t *st) {
  if (st->open || (st->handed && !st->given)) return;
  stream_free(st);
}

static void stream_reset(h2_stream_t *st, uint32_t code, const char *reason) {
  if (!st->open || st->reset_out) return;
  st->reset_out = 1;
  st->reason = reason;
  nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, code);
  want_write(st->s);
}

/* ---- header lists out ---- */

/* nva for status (or 0: trailers) and headers: names lower-cased (HTTP/2
 * wants them so), invalid and connection-specific fields dropped, a
 * content-length of ours when cl >= 0. nghttp2 copies what it is given. */
static int build_nva(shadow_h2_t *s, int status, const shadow_headers_t *hs,
                     int pass_cl, int64_t cl, size_t *n_out) {
  size_t n = hs ? hs->n : 0, need = 0;
  for (size_t i = 0; i < n; i++)
    need += hs->v[i].name_len;
  shadow_buf_reset(&s->names);
  if (shadow_buf_reserve(&s->names, need + 64) != 0) return -ENOMEM;
  if (n + 2 > s->nva_cap) {
    nghttp2_nv *v = realloc(s->nva, (n + 2) * sizeof(*v));
    if (!v) return -ENOMEM;
    s->nva = v;
    s->nva_cap = n + 2;
  }
  size_t k = 0;
  char *p = s->names.data;
  if (status) {
    int len = snprintf(p, 8, "%03d", status);
    s->nva[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)p, 7,
                               (size_t)len, NGHTTP2_NV_FLAG_NONE};
    p += len + 1;
  }
  if (cl >= 0) {
    int len = snprintf(p, 24, "%lld", (long long)cl);
    s->nva[k++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)p, 14,
                               (size_t)len, NGHTTP2_NV_FLAG_NONE};
    p += len + 1;
  }
  for (size_t i = 0; i < n; i++) {
    const shadow_header_t *e = &hs->v[i];
    if (!shadow_headers_line_valid(hs, i) || e->name_len == 0) continue;
    int is_cl = shadow_header_name_is(e, "content-length");
    if (is_cl ? !(pass_cl && cl < 0)
              : shadow_header_is_hop(e->name, e->name_len))
      continue;
    if (shadow_header_name_is(e, "host")) continue;
    for (size_t j = 0; j < e->name_len; j++) {
      char c = e->name[j];
      p[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    s->nva[k++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)e->value, e->name_len,
                               e->value_len, NGHTTP2_NV_FLAG_NONE};
    p += e->name_len;
  }
  *n_out = k;
  return 0;
}

/* ---- the response body's data source ---- */

static ssize_t on_data_read(nghttp2_session *ng, int32_t id, uint8_t *buf,
                            size_t length, uint32_t *flags,
                            nghttp2_data_source *src, void *ud) {
  shadow_h2_t *s = ud;
  h2_stream_t *st = src->ptr;
  (void)ng;
  (void)id;
  size_t have = st->out.len - st->out_pos;
  size_t n = have < length ? have : length;
  if (n) {
    memcpy(buf, st->out.data + st->out_pos, n);
    st->out_pos += n;
    if (st->out_pos == st->out.len) st->out.len = st->out_pos = 0;
  }
  if (st->out.len == 0 && st->want_writable) {
    /* The producer may go on: told from shadow_h2_send, not from here. */
    st->want_writable = 0;
    st->writable_due = 1;
    s->work_due = 1;
  }
  if (st->out.len == 0 && st->ended) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->has_trailers) {
      size_t k;
      if (build_nva(s, 0, &st->trailers, 0, -1, &k) == 0 && k > 0 &&
          nghttp2_submit_trailer(s->ng, st->id, s->nva, k) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)n;
  }
  if (n == 0) {
    st->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

static void resume(h2_stream_t *st) {
  if (st->deferred && st->open) {
    st->deferred = 0;
    nghttp2_session_resume_data(st->s->ng, st->id);
  }
  want_write(st->s);
}

/* ---- requests in ---- */

static const char *error_text(int status) {
  switch (status) {
  case 400: return "bad request";
  case 405: return "method not allowed";
  case 408: return "request timeout";
  case 413: return "payload too large";
  case 431: return "request header fields too large";
  default: return "internal error";
  }
}

/* A short JSON error answered by the server itself. */
static void respond_error(h2_stream_t *st, int status) {
  shadow_h2_t *s = st->s;
  if (!st->open || st->head_out) return;
  char body[96];
  int n =
      snprintf(body, sizeof(body), "{\"error\":\"%s\"}", error_text(status));
  shadow_headers_t hs = SHADOW_HEADERS_INIT;
  shadow_headers_add(&hs, "content-type", 12, "application/json", 16);
  st->head_out = 1;
  st->ended = 1;
  st->resp_len = n;
  size_t k;
  if (shadow_buf_append(&st->out, body, (size_t)n) != 0 ||
      build_nva(s, status, &hs, 0, n, &k) != 0) {
    shadow_headers_free(&hs);
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
    return;
  }
  nghttp2_data_provider dp = {.source.ptr = st, .read_callback = on_data_read};
  if (nghttp2_submit_response(s->ng, st->id, s->nva, k, &dp) != 0)
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
  shadow_headers_free(&hs);
  want_write(s);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f,
                            void *ud) {
  shadow_h2_t *s = ud;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  h2_stream_t *st = calloc(1, sizeof(*st));
  if (!st) return NGHTTP2_ERR_CALLBACK_FAILURE;
  st->s = s;
  st->id = f->hd.stream_id;
  st->open = 1;
  st->heading = 1;
  st->resp_len = -1;
  st->req.http_major = 2;
  st->req.content_length = -1;
  st->req.method_id = -1;
  st->req.method = "";
  st->next = s->streams;
  if (s->streams) s->streams->prev = st;
  s->streams = st;
  s->nopen++;
  s->nheading++;
  s->any_stream = 1;
  nghttp2_session_set_stream_user_data(ng, st->id, st);
  return 0;
}

static int pseudo(h2_stream_t *st, const uint8_t *name, size_t nlen,
                  const uint8_t *value, size_t vlen) {
  shadow_request_t *req = &st->req;
  const char *v = (const char *)value;
  if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
    char m[32];
    if (vlen == 0 || vlen >= sizeof(m)) return st->bad = 1, 0;
    memcpy(m, v, vlen);
    m[vlen] = '\0';
    int id = shadow_request_method_id(m);
    /* Method names are case-sensitive; llhttp's table is upper-case. */
    if (id < 0 || strcmp(llhttp_method_name((llhttp_method_t)id), m) != 0)
      return st->bad = 1, 0;
    req->method_id = id;
    req->method = llhttp_method_name((llhttp_method_t)id);
  } else if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
    shadow_buf_reset(&req->target);
    if (shadow_buf_append(&req->target, v, vlen) != 0) return -1;
  } else if (nlen == 10 && memcmp(name, ":authority", 10) == 0) {
    if (!shadow_request_host_valid(v, vlen)) return st->bad = 1, 0;
    if (shadow_headers_set(&req->headers, "host", v, vlen) != 0) return -1;
  }
  /* :scheme says what the client thinks it talks to; the listener knows. */
  return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f,
                     const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen, uint8_t flags, void *ud) {
  shadow_h2_t *s = ud;
  (void)flags;
  h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
  if (!st || st->too_big) return 0;
  if (f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0; /* trailers: dropped */
  /* The limits of HTTP/1.1 in HTTP/2's measure (RFC 9113 section 6.5.2:
   * name, value and 32 bytes each). */
  st->head_bytes += nlen + vlen + 32;
  st->nheaders++;
  if ((s->opts.header_bytes && st->head_bytes > s->opts.header_bytes) ||
      (s->opts.max_headers && st->nheaders > s->opts.max_headers + 4)) {
    st->too_big = 1;
    return 0;
  }
  int rc = 0;
  if (nlen && name[0] == ':') {
    rc = pseudo(st, name, nlen, value, vlen);
  } else if (nlen == 6 && memcmp(name, "cookie", 6) == 0) {
    if (st->cookie.len) rc |= shadow_buf_append(&st->cookie, "; ", 2);
    rc |= shadow_buf_append(&st->cookie, value, vlen);
  } else if (nlen == 4 && memcmp(name, "host", 4) == 0) {
    /* :authority, when there is one, wins (RFC 9113 section 8.3.1). */
    if (!shadow_headers_find(&st->req.headers, "host"))
      rc = shadow_headers_add(&st->req.headers, "host", 4, (const char *)value,
                              vlen);
  } else {
    rc = shadow_headers_add(&st->req.headers, (const char *)name, nlen,
                            (const char *)value, vlen);
  }
  return rc ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

static int parse_length(const shadow_header_t *h, int64_t *out) {
  int64_t v = 0;
  if (!h || h->value_len == 0 || h->value_len > 18) return -1;
  for (size_t i = 0; i < h->value_len; i++) {
    if (h->value[i] < '0' || h->value[i] > '9') return -1;
    v = v * 10 + (h->value[i] - '0');
  }
  *out = v;
  return 0;
}

static void hand_out(h2_stream_t *st) {
  shadow_h2_t *s = st->s;
  shadow_request_t *req = &st->req;
  st->handed = 1;
  s->ninflight++;
  req->start_ns = uv_hrtime();
  if (s->io.handed) s->io.handed(s->io.ud, req);
  s->h.on_request(req, s->h.ud);
  if (s->h.on_body) shadow_buf_reset(&req->body); /* taken with the head */
}

/* The head is in: the request goes to the handler, or is answered here. */
static void headers_done(h2_stream_t *st, int end_stream) {
  shadow_h2_t *s = st->s;
  shadow_request_t *req = &st->req;
  st->heading = 0;
  s->nheading--;
  st->body_end = end_stream;
  if (st->too_big) {
    count(s, "header_list");
    respond_error(st, 431);
    return;
  }
  if (st->bad || req->method_id < 0) {
    count(s, "invalid_header");
    respond_error(st, 400);
    return;
  }
  if (req->method_id == HTTP_CONNECT) {
    respond_error(st, 405);
    return;
  }
  if (!shadow_request_target_valid(req->target.data ? req->target.data : "",
                                   req->target.len)) {
    count(s, "invalid_header");
    respond_error(st, 400);
    return;
  }
  if (st->cookie.len &&
      shadow_headers_add(&req->headers, "cookie", 6, st->cookie.data,
                         st->cookie.len) != 0) {
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
    return;
  }
  if (!shadow_headers_find(&req->headers, "host") && s->local_host[0])
    shadow_headers_add(&req->headers, "host", 4, s->local_host,
                       strlen(s->local_host));
  int64_t cl;
  if (end_stream)
    req->content_length = 0;
  else if (parse_length(shadow_headers_find(&req->headers, "content-length"),
                        &cl) == 0)
    req->content_length = cl;
  else
    req->content_length = -1;
  if (s->opts.body_bytes && req->content_length > 0 &&
      (uint64_t)req->content_length > s->opts.body_bytes) {
    respond_error(st, 413);
    return;
  }
  req->http_major = 2;
  req->http_minor = 0;
  req->keep_alive = 1;
  req->tls = s->tls;
  req->body_complete = end_stream;
  memcpy(req->peer, s->peer, sizeof(req->peer));
  if (s->h.on_body || end_stream) {
    if (end_stream) st->end_told = 1;
    hand_out(st);
  }
  /* Without on_body the request waits for its whole body. */
}

static void deliver(h2_stream_t *st);

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f,
                         void *ud) {
  shadow_h2_t *s = ud;
  int32_t id = f->hd.stream_id;
  int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (f->hd.type == NGHTTP2_RST_STREAM) {
    uint64_t now = s->io.now_ms ? s->io.now_ms(s->io.ud) : 0;
    if (now - s->reset_window_start >= RESET_WINDOW_MS) {
      s->reset_window_start = now;
      s->resets = 0;
    }
    if (++s->resets > s->opts.h2_max_resets && s->opts.h2_max_resets) {
      /* Rapid reset (CVE-2023-44487): each stream costs us a request to
       * the backends, so a client that opens and cancels without end is
       * sent away. */
      s->conn_reason = "reset_flood";
      nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
      want_write(s);
    }
    return 0;
  }
  h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
  if (!st) return 0;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    headers_done(st, end);
    return 0;
  }
  if (end && (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS)) {
    st->body_end = 1;
    st->req.body_complete = 1;
    if (!st->handed && !st->head_out && !st->heading) {
      hand_out(st); /* a whole body for a handler without on_body */
      return 0;
    }
    deliver(st);
  }
  return 0;
}

/* Hands what req->body holds to the handler, then the body's end. */
static void deliver(h2_stream_t *st) {
  shadow_h2_t *s = st->s;
  shadow_request_t *req = &st->req;
  if (!st->handed || st->given || st->aborted || st->paused || !s->h.on_body)
    return;
  if (req->body.len) {
    size_t n = req->body.len;
    s->h.on_body(req, req->body.data, n);
    shadow_buf_reset(&req->body);
    if (st->open) nghttp2_session_consume_stream(s->ng, st->id, n);
    want_write(s);
  }
  if (st->body_end && !st->end_told && !st->paused && !st->given &&
      !st->aborted) {
    st->end_told = 1;
    if (s->h.on_body_end) s->h.on_body_end(req);
  }
}

static void stream_abort(h2_stream_t *st, int why, int status) {
  shadow_h2_t *s = st->s;
  if (!st->handed || st->given || st->aborted) return;
  st->aborted = 1;
  st->abort_status = status;
  if (s->h.on_abort) s->h.on_abort(&st->req, why);
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id,
                         const uint8_t *data, size_t len, void *ud) {
  shadow_h2_t *s = ud;
  (void)flags;
  /* What the connection's window holds is bounded by the streams'. */
  nghttp2_session_consume_connection(ng, len);
  h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
  if (!st || st->given || st->aborted || !st->open ||
      (!st->handed && st->head_out)) {
    nghttp2_session_consume_stream(ng, id, len);
    return 0;
  }
  shadow_request_t *req = &st->req;
  req->body_seen += len;
  if (s->opts.body_bytes && req->body_seen > s->opts.body_bytes) {
    nghttp2_session_consume_stream(ng, id, len);
    if (st->handed) {
      stream_abort(st, SHADOW_ABORT_BODY, 413);
    } else {
      shadow_buf_free(&req->body);
      respond_error(st, 413);
    }
    return 0;
  }
  if (!st->handed) { /* a handler without on_body: keep it whole */
    if (shadow_buf_append(&req->body, (const char *)data, len) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_consume_stream(ng, id, len);
    return 0;
  }
  if (st->paused || req->body.len) {
    /* Held until resume; the window bounds it. */
    if (shadow_buf_append(&req->body, (const char *)data, len) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
  s->h.on_body(req, (const char *)data, len);
  if (st->open) nghttp2_session_consume_stream(ng, id, len);
  return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code,
                           void *ud) {
  shadow_h2_t *s = ud;
  (void)code;
  h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
  if (!st) return 0;
  nghttp2_session_set_stream_user_data(ng, id, NULL);
  st->open = 0;
  s->nopen--;
  if (st->heading) {
    st->heading = 0;
    s->nheading--;
  }
  /* A request the client reset, or we did, before its answer was done.
   * The handler may end it from inside on_abort: it is freed here, after. */
  st->closing = 1;
  if (st->handed && !st->given) stream_abort(st, SHADOW_ABORT_CLIENT, 0);
  stream_maybe_free(st);
  return 0;
}

static const char *reason_of(uint32_t code) {
  switch (code) {
  case NGHTTP2_NO_ERROR:
  case NGHTTP2_CANCEL:
  case NGHTTP2_INTERNAL_ERROR: return NULL; /* ours, not the client's */
  case NGHTTP2_FLOW_CONTROL_ERROR: return "flow_control";
  case NGHTTP2_FRAME_SIZE_ERROR: return "frame_size";
  case NGHTTP2_COMPRESSION_ERROR: return "compression";
  case NGHTTP2_REFUSED_STREAM: return "refused_stream";
  case NGHTTP2_ENHANCE_YOUR_CALM: return "flood";
  case NGHTTP2_STREAM_CLOSED: return "stream_closed";
  default: return "protocol";
  }
}

/* Every error answer is counted once, when it goes out. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f,
                         void *ud) {
  shadow_h2_t *s = ud;
  if (f->hd.type == NGHTTP2_GOAWAY) {
    const char *r =
        s->conn_reason ? s->conn_reason : reason_of(f->goaway.error_code);
    if (f->goaway.error_code != NGHTTP2_NO_ERROR) count(s, r);
    s->conn_reason = NULL;
  } else if (f->hd.type == NGHTTP2_RST_STREAM) {
    h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    const char *r =
        st && st->reason ? st->reason : reason_of(f->rst_stream.error_code);
    count(s, r);
  }
  return 0;
}

/* nghttp2 says why it answers with an error: the HTTP rules (pseudo-
 * headers, connection-specific or upper-case fields) are told apart from
 * the framing. */
static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f,
                            int lib_error, void *ud) {
  (void)ud;
  if (lib_error != NGHTTP2_ERR_HTTP_HEADER &&
      lib_error != NGHTTP2_ERR_HTTP_MESSAGING)
    return 0;
  h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
  if (st) st->reason = "invalid_header";
  return 0;
}

static int on_invalid_header(nghttp2_session *ng, const nghttp2_frame *f,
                             const uint8_t *name, size_t nlen,
                             const uint8_t *value, size_t vlen, uint8_t flags,
                             void *ud) {
  (void)name;
  (void)nlen;
  (void)value;
  (void)vlen;
  (void)flags;
  (void)ud;
  /* Refused, not ignored: a field the rules forbid is how requests get
   * smuggled past a proxy into an HTTP/1.1 backend. */
  h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
  if (st) st->reason = "invalid_header";
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* ---- the session ---- */

int shadow_h2_new(const shadow_server_opts_t *opts,
                  const shadow_server_handler_t *h, const shadow_h2_io_t *io,
                  const shadow_h2_conn_info_t *info, shadow_h2_t **out) {
  *out = NULL;
  shadow_h2_t *s = calloc(1, sizeof(*s));
  if (!s) return -ENOMEM;
  s->opts = *opts;
  s->h = *h;
  s->io = *io;
  if (info) {
    if (info->peer) snprintf(s->peer, sizeof(s->peer), "%s", info->peer);
    if (info->local_host)
      snprintf(s->local_host, sizeof(s->local_host), "%s", info->local_host);
    s->tls = info->tls;
  }
  s->reset_window_start = s->io.now_ms ? s->io.now_ms(s->io.ud) : 0;
  nghttp2_session_callbacks *cb;
  nghttp2_option *opt;
  if (nghttp2_session_callbacks_new(&cb) != 0) {
    free(s);
    return -ENOMEM;
  }
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cb);
    free(s);
    return -ENOMEM;
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(
      cb, on_invalid_frame);
  nghttp2_session_callbacks_set_on_invalid_header_callback(cb,
                                                           on_invalid_header);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  /* Our own count of resets decides (limits.h2_max_resets). */
  nghttp2_option_set_stream_reset_rate_limit(opt, UINT64_MAX, UINT64_MAX);
  /* The header list's limit is checked as it is decoded, not by refusing
   * to decode: past it the stream gets a 431 (see on_header). */
  int rc = nghttp2_session_server_new2(&s->ng, cb, s, opt);
  nghttp2_session_callbacks_del(cb);
  nghttp2_option_del(opt);
  if (rc != 0) {
    free(s);
    return -ENOMEM;
  }
  uint32_t streams =
      s->opts.h2_max_streams ? (uint32_t)s->opts.h2_max_streams : 128;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       s->opts.header_bytes ? (uint32_t)s->opts.header_bytes : 65536},
  };
  nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv,
                          sizeof(iv) / sizeof(iv[0]));
  *out = s;
  return 0;
}

void shadow_h2_free(shadow_h2_t *s) {
  if (!s) return;
  nghttp2_session_del(s->ng); /* calls nothing back */
  while (s->streams)
    stream_free(s->streams);
  free(s->nva);
  shadow_buf_free(&s->names);
  free(s);
}

int shadow_h2_feed(shadow_h2_t *s, const char *data, size_t len) {
  if (s->fatal) return -EPROTO;
  ssize_t n = nghttp2_session_mem_recv(s->ng, (const uint8_t *)data, len);
  if (n >= 0) return 0;
  s->fatal = 1;
  /* nghttp2 says nothing on these; a GOAWAY tells the client why. The
   * count is taken here, so the GOAWAY is not counted again. */
  if (n == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
    count(s, "bad_preface");
    s->conn_reason = "";
    nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR);
  } else if (n == NGHTTP2_ERR_FLOODED ||
             n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
    count(s, "flood");
    s->conn_reason = "";
    nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
  }
  return -EPROTO;
}

int shadow_h2_send(shadow_h2_t *s, shadow_buf_t *out, size_t max) {
  /* Deferred work first: it may queue more frames. */
  while (s->work_due) {
    s->work_due = 0;
    for (h2_stream_t *st = s->streams, *next; st; st = next) {
      next = st->next;
      if (st->due) {
        st->due = 0;
        deliver(st);
      }
      if (st->writable_due) {
        st->writable_due = 0;
        if (st->handed && !st->given && !st->aborted && s->h.on_writable)
          s->h.on_writable(&st->req);
      }
    }
  }
  while (out->len < max) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(s->ng, &p);
    if (n < 0) {
      s->fatal = 1;
      return -EPROTO;
    }
    if (n == 0) break;
    if (shadow_buf_append(out, (const char *)p, (size_t)n) != 0) return -ENOMEM;
  }
  /* Sending may have drained a queue past its mark. */
  if (s->work_due) want_write(s);
  return 0;
}

int shadow_h2_done(const shadow_h2_t *s) {
  if (s->fatal) return !nghttp2_session_want_write(s->ng);
  /* After our GOAWAY, the last stream's end is the connection's. */
  if (s->goaway && s->nopen == 0 && s->ninflight == 0)
    return !nghttp2_session_want_write(s->ng);
  return !nghttp2_session_want_read(s->ng) &&
         !nghttp2_session_want_write(s->ng);
}

int shadow_h2_want_read(const shadow_h2_t *s) {
  return !s->fatal && nghttp2_session_want_read(s->ng);
}

size_t shadow_h2_streams(const shadow_h2_t *s) {
  return s->nopen;
}

size_t shadow_h2_inflight(const shadow_h2_t *s) {
  return s->ninflight;
}

int shadow_h2_body_waiting(const shadow_h2_t *s) {
  for (const h2_stream_t *st = s->streams; st; st = st->next)
    if (st->handed && !st->given && !st->aborted && !st->body_end &&
        !st->paused && st->open)
      return 1;
  return 0;
}

int shadow_h2_heading(const shadow_h2_t *s) {
  return s->nheading > 0 || !s->any_stream;
}

void shadow_h2_goaway(shadow_h2_t *s) {
  if (s->goaway || s->fatal) return;
  s->goaway = 1;
  nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(s->ng),
                        NGHTTP2_NO_ERROR, NULL, 0);
  want_write(s);
}

void shadow_h2_abort_all(shadow_h2_t *s, int why) {
  for (h2_stream_t *st = s->streams; st; st = st->next)
    stream_abort(st, why, 0);
}

void shadow_h2_abort_waiting(shadow_h2_t *s) {
  for (h2_stream_t *st = s->streams; st; st = st->next)
    if (st->handed && !st->body_end && st->open && !st->paused)
      stream_abort(st, SHADOW_ABORT_TIMEOUT, 408);
}

/* ---- the handler's calls ---- */

/* dst becomes a copy of src (NULL: empty): the handler's lists are its
 * own and may be gone before nghttp2 asks for the frame. 0 or -ENOMEM. */
static int copy_headers(shadow_headers_t *dst, const shadow_headers_t *src) {
  shadow_headers_clear(dst);
  for (size_t i = 0; src && i < src->n; i++)
    if (shadow_headers_add(dst, src->v[i].name, src->v[i].name_len,
                           src->v[i].value, src->v[i].value_len) != 0)
      return -ENOMEM;
  return 0;
}

int shadow_h2_head(shadow_request_t *req, int status,
                   const shadow_headers_t *headers, int64_t body_len) {
  h2_stream_t *st = stream_of(req);
  shadow_h2_t *s = st->s;
  if (!st->handed || st->given || st->head_out) return -EINVAL;
  if (!st->open) return -ECANCELED;
  if (status < 200 || status > 999) status = status == 101 ? 502 : 500;
  int head_req = req->method_id == HTTP_HEAD;
  st->no_body = head_req || status == 204 || status == 304;
  st->resp_len = st->no_body ? 0 : body_len;
  int pass_cl = head_req || status == 304;
  if (!st->no_body && body_len == 0) {
    if (copy_headers(&st->held, headers) != 0) {
      stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
      return -ENOMEM;
    }
    st->held_status = status;
    st->head_held = 1;
    st->head_out = 1;
    return 0;
  }
  size_t k;
  if (build_nva(s, status, headers, pass_cl,
                st->no_body || status == 204 ? -1 : body_len, &k) != 0) {
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
    return -ENOMEM;
  }
  nghttp2_data_provider dp = {.source.ptr = st, .read_callback = on_data_read};
  int rc = nghttp2_submit_response(s->ng, st->id, s->nva, k,
                                   st->no_body ? NULL : &dp);
  if (rc != 0) {
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
    return -ECANCELED;
  }
  st->head_out = 1;
  want_write(s);
  return 0;
}

int shadow_h2_interim(shadow_request_t *req, int status,
                      const shadow_headers_t *headers) {
  h2_stream_t *st = stream_of(req);
  shadow_h2_t *s = st->s;
  if (!st->handed || st->given || st->head_out || !st->open) return -EINVAL;
  /* 100 is the server's business and 101 does not exist in HTTP/2. */
  if (status <= 101 || status > 199) return 0;
  size_t k;
  if (build_nva(s, status, headers, 0, -1, &k) != 0) return 0;
  nghttp2_submit_headers(s->ng, NGHTTP2_FLAG_NONE, st->id, NULL, s->nva, k,
                         NULL);
  want_write(s);
  return 0;
}

int shadow_h2_body(shadow_request_t *req, const char *data, size_t len) {
  h2_stream_t *st = stream_of(req);
  if (!st->handed || st->given || !st->head_out || st->ended) return -EINVAL;
  if (!st->open || st->reset_out) return -ECANCELED;
  if (st->no_body || len == 0) return 0;
  if (st->resp_len >= 0 && st->resp_sent + len > (uint64_t)st->resp_len)
    len = (size_t)((uint64_t)st->resp_len - st->resp_sent);
  st->resp_sent += len;
  if (st->out_pos > 0 && st->out_pos >= st->out.len / 2) {
    memmove(st->out.data, st->out.data + st->out_pos,
            st->out.len - st->out_pos);
    st->out.len -= st->out_pos;
    st->out_pos = 0;
  }
  if (shadow_buf_append(&st->out, data, len) != 0) {
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
    return -ENOMEM;
  }
  resume(st);
  if (st->out.len - st->out_pos >= STREAM_HIGH) {
    st->want_writable = 1;
    return 1;
  }
  return 0;
}

void shadow_h2_flush(shadow_request_t *req) {
  h2_stream_t *st = stream_of(req);
  if (st->open) want_write(st->s);
}

int shadow_h2_head_sent(const shadow_request_t *req) {
  return stream_of(req)->head_out;
}

/* Sends a held head (an empty body): alone with END_STREAM when there are
 * no trailers, else with an empty body and the trailers after it. */
static void submit_held(h2_stream_t *st, const shadow_headers_t *trailers) {
  shadow_h2_t *s = st->s;
  int with_trailers = trailers && trailers->n;
  st->head_held = 0;
  if (!st->open) return;
  /* A trailers-only gRPC answer names no length: it has no body at all. */
  int64_t cl = shadow_headers_find(&st->held, "grpc-status") ? -1 : 0;
  size_t k;
  if (build_nva(s, st->held_status, &st->held, 0, cl, &k) != 0) {
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
    return;
  }
  nghttp2_data_provider dp = {.source.ptr = st, .read_callback = on_data_read};
  if (with_trailers) {
    st->ended = 1;
    copy_headers(&st->trailers, trailers);
    st->has_trailers = 1;
  } else {
    st->no_body = 1;
  }
  if (nghttp2_submit_response(s->ng, st->id, s->nva, k,
                              with_trailers ? &dp : NULL) != 0)
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
  want_write(s);
}

/* The handler is done with req: last of all, as the connection may be
 * freed from inside given_back when it is closing. */
static void give_back(h2_stream_t *st) {
  shadow_h2_t *s = st->s;
  st->given = 1;
  s->ninflight--;
  if (!st->open && !st->closing) stream_free(st);
  if (s->io.given_back) s->io.given_back(s->io.ud);
}

void shadow_h2_end(shadow_request_t *req, const shadow_headers_t *trailers) {
  h2_stream_t *st = stream_of(req);
  if (!st->handed || st->given) return;
  if (!st->head_out) {
    /* Ended before any answer: an error of the body answers with its
     * status, anything else with a reset. */
    if (st->abort_status && st->open)
      respond_error(st, st->abort_status);
    else
      stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
  } else if (st->resp_len >= 0 && st->resp_sent < (uint64_t)st->resp_len &&
             !st->no_body) {
    stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL); /* cut short */
  } else if (st->head_held) {
    submit_held(st, trailers);
  } else if (!st->no_body) {
    st->ended = 1;
    if (trailers && trailers->n) {
      copy_headers(&st->trailers, trailers);
      st->has_trailers = 1;
    }
    resume(st);
  }
  give_back(st);
}

void shadow_h2_abort(shadow_request_t *req) {
  h2_stream_t *st = stream_of(req);
  if (!st->handed || st->given) return;
  stream_reset(st, NGHTTP2_INTERNAL_ERROR, NULL);
  give_back(st);
}

void shadow_h2_pause_body(shadow_request_t *req) {
  h2_stream_t *st = stream_of(req);
  st->paused = 1;
}

void shadow_h2_resume_body(shadow_request_t *req) {
  h2_stream_t *st = stream_of(req);
  if (!st->paused) return;
  st->paused = 0;
  st->due = 1;
  st->s->work_due = 1;
  want_write(st->s);
}
