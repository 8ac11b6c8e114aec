/* The request parser (see request_parse.h): llhttp for the grammar, a
 * strict scan of the head for what llhttp's loose build lets through, and
 * the header and body limits. */
#include "request_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Above this, a buffer kept for the next request on a connection is given
 * back instead: one big upload must not pin its memory for the connection's
 * whole life. */
#define KEEP_BYTES (64 * 1024)
#define KEEP_HEADERS 64

static shadow_request_parser_t *parser_of(llhttp_t *h) {
  return (shadow_request_parser_t *)h->data;
}

/* Records the answer and stops llhttp: HPE_USER comes back from execute. */
static int fail(shadow_request_parser_t *p, int status, const char *why) {
  if (!p->status) {
    p->status = status;
    p->why = why;
  }
  return HPE_USER;
}

static int on_url(llhttp_t *h, const char *at, size_t len) {
  shadow_request_parser_t *p = parser_of(h);
  if (shadow_buf_append(&p->req->target, at, len))
    return fail(p, 500, "out of memory");
  return 0;
}

/* Trailers come after the head scan, so they are counted here as they
 * arrive (not when complete: a trailer that never ends must not grow a
 * buffer), and dropped, because nothing downstream forwards them. */
static int trailer(shadow_request_parser_t *p, size_t len) {
  p->trailer_bytes += len;
  if (p->trailer_bytes > p->header_limit)
    return fail(p, 431, "trailers over the header limit");
  return 0;
}

static int on_header_field(llhttp_t *h, const char *at, size_t len) {
  shadow_request_parser_t *p = parser_of(h);
  if (!p->in_head) return trailer(p, len);
  if (shadow_header_span_add(&p->field, at, len))
    return fail(p, 500, "out of memory");
  return 0;
}

static int on_header_value(llhttp_t *h, const char *at, size_t len) {
  shadow_request_parser_t *p = parser_of(h);
  if (!p->in_head) return trailer(p, len);
  if (shadow_header_span_add(&p->value, at, len))
    return fail(p, 500, "out of memory");
  return 0;
}

static int on_header_value_complete(llhttp_t *h) {
  shadow_request_parser_t *p = parser_of(h);
  if (!p->in_head) return trailer(p, 4); /* ": " and CRLF */
  const char *name = shadow_header_span_data(&p->field);
  size_t name_len = shadow_header_span_len(&p->field);
  if (!shadow_header_name_valid(name, name_len))
    return fail(p, 400, "invalid header name");
  if (p->max_headers && p->req->headers.n >= p->max_headers)
    return fail(p, 431, "more header lines than max_headers");
  const char *value = shadow_header_span_data(&p->value);
  size_t vlen = shadow_header_span_len(&p->value);
  /* llhttp skips the whitespace before a value but not after it. */
  while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
    vlen--;
  int rc = 0;
  /* The name is checked above, and scan_head has refused every control
   * byte but HTAB before llhttp saw the head: the line is a valid field,
   * marked so, and the legs' heads do not check it again. */
  if (shadow_headers_add_known_valid(&p->req->headers, name, name_len, value,
                                     vlen))
    rc = fail(p, 500, "out of memory");
  shadow_header_span_clear(&p->field);
  shadow_header_span_clear(&p->value);
  return rc;
}

static int value_is(const shadow_header_t *e, const char *lower) {
  return strlen(lower) == e->value_len &&
         strncasecmp(e->value, lower, e->value_len) == 0;
}

/* RFC 9110 section 7.2: uri-host [ ":" port ], uri-host being a reg-name
 * (unreserved, pct-encoded and sub-delims characters, but not the comma
 * that would make it a list) or a bracketed IPv6 literal. */
int shadow_request_host_valid(const char *s, size_t n) {
  size_t i = 0;
  if (n == 0) return 0;
  if (s[0] == '[') {
    while (++i < n && s[i] != ']')
      if (!strchr("0123456789abcdefABCDEF:.", s[i])) return 0;
    if (i >= n || i == 1) return 0;
    i++;
  } else {
    static const char sub[] = "-._~%!$&'()*+;=";
    for (; i < n && s[i] != ':'; i++) {
      unsigned char c = (unsigned char)s[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
            (c >= 'A' && c <= 'Z') || (c && strchr(sub, c))))
        return 0;
    }
    if (i == 0) return 0;
  }
  if (i == n) return 1;
  if (s[i] != ':' || n - i - 1 > 5) return 0;
  for (size_t j = i + 1; j < n; j++)
    if (s[j] < '0' || s[j] > '9') return 0;
  return 1;
}

int shadow_request_method_valid(const char *s, size_t n) {
  /* A method and a header name are both tokens. */
  return shadow_header_name_valid(s, n);
}

int shadow_request_target_valid(const char *s, size_t n) {
  if (n == 1 && s[0] == '*') return 1;
  if (n == 0 || s[0] != '/') return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c == 0x7f) return 0;
  }
  return 1;
}

/* Makes the target origin-form. An absolute-form target ("http://host/p")
 * becomes its path and query, and Host its authority (RFC 9112 section
 * 3.2.2), before any hook or backend sees the request. Returns 0 or the
 * status to answer. */
static int origin_form(shadow_request_parser_t *p, int method) {
  shadow_request_t *req = p->req;
  const char *t = req->target.data ? req->target.data : "";
  size_t n = req->target.len;
  if (n && t[0] == '/') return 0;
  if (n == 1 && t[0] == '*') return method == HTTP_OPTIONS ? 0 : 400;
  size_t scheme = n >= 7 && strncasecmp(t, "http://", 7) == 0    ? 7
                  : n >= 8 && strncasecmp(t, "https://", 8) == 0 ? 8
                                                                 : 0;
  if (!scheme) return 400;
  size_t a = scheme, e = a;
  while (e < n && t[e] != '/' && t[e] != '?' && t[e] != '#')
    e++;
  if (!shadow_request_host_valid(t + a, e - a)) return 400;
  if (shadow_headers_set(&req->headers, "Host", t + a, e - a)) return 500;
  shadow_buf_t path = SHADOW_BUF_INIT;
  int rc = 0;
  if (e == n || t[e] != '/') rc |= shadow_buf_putc(&path, '/');
  rc |= shadow_buf_append(&path, t + e, n - e);
  if (rc) {
    shadow_buf_free(&path);
    return 500;
  }
  shadow_buf_free(&req->target);
  req->target = path;
  return 0;
}

static int on_headers_complete(llhttp_t *h) {
  shadow_request_parser_t *p = parser_of(h);
  shadow_request_t *req = p->req;
  p->in_head = 0;
  req->http_major = h->http_major;
  req->http_minor = h->http_minor;
  req->method_id = h->method;
  req->method = llhttp_method_name((llhttp_method_t)h->method);

  if (h->http_major != 1) return fail(p, 400, "unsupported HTTP version");
  if (h->method == HTTP_CONNECT) return fail(p, 405, "CONNECT not served");
  /* The upgrade is known from the head (llhttp sets it before this
   * callback): a streamed request goes on before its body, and the
   * primary must get its Upgrade and no candidate a copy, whenever the
   * body arrives. */
  req->upgrade = h->upgrade != 0;

  /* The framing as the header list says it, not as llhttp's loose build
   * reads it: any Transfer-Encoding (even empty) beside a Content-Length,
   * and any coding but a lone "chunked", are refused; another parser
   * behind us might read either differently (RFC 9112 section 6.1). */
  size_t hosts = 0, te = 0, cl = 0;
  int te_chunked = 1;
  const shadow_header_t *expect = NULL, *host = NULL;
  for (size_t i = 0; i < req->headers.n; i++) {
    const shadow_header_t *e = &req->headers.v[i];
    if (shadow_header_name_is(e, "host")) {
      hosts++;
      host = e;
    } else if (shadow_header_name_is(e, "expect")) {
      expect = e;
    } else if (shadow_header_name_is(e, "transfer-encoding")) {
      te++;
      te_chunked &= value_is(e, "chunked");
    } else if (shadow_header_name_is(e, "content-length")) {
      cl++;
    }
  }
  if (te && (cl || (h->flags & F_CONTENT_LENGTH)))
    return fail(p, 400, "content-length with transfer-encoding");
  /* HTTP/1.0 has no chunked coding: a 1.0 backend would read this body
   * differently, which is a smuggling shape. */
  if (te && h->http_minor == 0)
    return fail(p, 400, "transfer-encoding in HTTP/1.0");
  if (te > 1 || !te_chunked ||
      ((h->flags & F_TRANSFER_ENCODING) && !(h->flags & F_CHUNKED)))
    return fail(p, 501, "transfer-encoding other than chunked");
  p->chunk_scan = te == 1;

  /* RFC 9112 section 3.2: exactly one Host in HTTP/1.1. Two Hosts are a
   * routing ambiguity between us and the backend. */
  if (hosts > 1 || (hosts == 0 && h->http_minor >= 1))
    return fail(p, 400, "missing or repeated host");
  if (host && !shadow_request_host_valid(host->value, host->value_len))
    return fail(p, 400, "invalid host");
  int st = origin_form(p, h->method);
  if (st) return fail(p, st, "request target not in origin form");

  if ((h->flags & F_CONTENT_LENGTH) && p->body_limit &&
      h->content_length > p->body_limit)
    return fail(p, 413, "content-length over the body limit");
  req->content_length = (h->flags & F_CHUNKED) ? -1
                        : (h->flags & F_CONTENT_LENGTH)
                            ? (int64_t)h->content_length
                            : 0;
  req->body_complete = req->content_length == 0;
  if (h->flags & F_CONTENT_LENGTH) {
    /* Reserve the declared size up to a cap: a client may declare 8 MiB and
     * send nothing, and that should not cost 8 MiB. */
    size_t want = (size_t)h->content_length;
    if (want > KEEP_BYTES) want = KEEP_BYTES;
    if (shadow_buf_reserve(&req->body, want))
      return fail(p, 500, "out of memory");
  }

  int has_body = (h->flags & F_CHUNKED) || h->content_length > 0;
  if (expect && h->http_minor >= 1 && has_body &&
      value_is(expect, "100-continue")) {
    p->expect_continue = 1;
    req->expect_continue = 1;
  }
  /* Streaming stops here so the request can go on before its body. */
  if ((p->stream && has_body) || p->expect_continue) {
    p->head_done = 1;
    return HPE_PAUSED;
  }
  return 0;
}

/* Room left under the body limit. */
static int over_limit(const shadow_request_parser_t *p, uint64_t more) {
  return p->body_limit && more > p->body_limit - p->req->body_seen;
}

static int on_body(llhttp_t *h, const char *at, size_t len) {
  shadow_request_parser_t *p = parser_of(h);
  if (over_limit(p, len)) return fail(p, 413, "body over the body limit");
  if (shadow_buf_append(&p->req->body, at, len))
    return fail(p, 500, "out of memory");
  p->req->body_seen += len;
  return 0;
}

/* A chunk declares its size before its bytes: refuse one that cannot fit
 * right away instead of reading up to the limit first. */
static int on_chunk_header(llhttp_t *h) {
  shadow_request_parser_t *p = parser_of(h);
  if (over_limit(p, h->content_length))
    return fail(p, 413, "chunk over the body limit");
  return 0;
}

static int on_message_complete(llhttp_t *h) {
  shadow_request_parser_t *p = parser_of(h);
  p->req->body_complete = 1;
  /* An upgrade (Connection: upgrade and Upgrade) either becomes a tunnel
   * or ends the connection after its answer: no request follows it. */
  p->req->upgrade = h->upgrade != 0;
  p->req->keep_alive = llhttp_should_keep_alive(h) && !h->upgrade;
  p->complete = 1;
  /* Stop here, so the caller answers this request before the next one. */
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

static void head_scan_reset(shadow_request_parser_t *p) {
  p->in_head = 1;
  p->seen_head_line = 0;
  p->chunk_scan = 0;
  p->chunk_state = 0;
  p->chunk_left = 0;
  p->started = 0;
  p->head_bytes = 0;
  p->line_len = 0;
  p->prev_cr = 0;
  p->seen_line = 0;
  p->trailer_bytes = 0;
}

void shadow_request_parser_init(shadow_request_parser_t *p,
                                shadow_request_t *req, size_t header_limit,
                                uint64_t body_limit, int stream) {
  memset(p, 0, sizeof(*p));
  llhttp_init(&p->http, HTTP_REQUEST, &settings);
  p->http.data = p;
  p->req = req;
  p->header_limit = header_limit;
  p->body_limit = body_limit;
  p->stream = stream;
  req->content_length = 0;
  req->body_seen = 0;
  req->body_complete = 0;
  req->expect_continue = 0;
  head_scan_reset(p);
  shadow_buf_reset(&req->target);
  shadow_headers_clear(&req->headers);
  shadow_buf_reset(&req->body);
}

void shadow_request_parser_free(shadow_request_parser_t *p) {
  shadow_header_span_free(&p->field);
  shadow_header_span_free(&p->value);
}

void shadow_request_release(shadow_request_t *req) {
  shadow_buf_free(&req->target);
  shadow_headers_free(&req->headers);
  shadow_buf_free(&req->body);
}

void shadow_request_parser_next(shadow_request_parser_t *p) {
  shadow_request_t *req = p->req;
  if (p->complete && !req->keep_alive) p->done = 1;
  p->complete = 0;
  p->expect_continue = 0;
  p->head_done = 0;
  req->content_length = 0;
  req->body_seen = 0;
  req->body_complete = 0;
  req->expect_continue = 0;
  head_scan_reset(p);
  shadow_buf_reset(&req->target);
  if (req->headers.cap > KEEP_HEADERS)
    shadow_headers_free(&req->headers);
  else
    shadow_headers_clear(&req->headers);
  if (req->body.cap > KEEP_BYTES)
    shadow_buf_free(&req->body);
  else
    shadow_buf_reset(&req->body);
  if (req->target.cap > KEEP_BYTES) shadow_buf_free(&req->target);
  req->method = NULL;
  req->keep_alive = 0;
  req->data = NULL;
}

int shadow_request_parser_started(const shadow_request_parser_t *p) {
  return p->started && !p->complete;
}

/* Walks the request head byte by byte ahead of llhttp. llhttp 8 in its
 * default (loose) build accepts a bare LF as a line end and folds
 * continuation lines; a backend behind us may not, and that disagreement is
 * what request smuggling feeds on. So only CRLF ends a line here, and a
 * line may not start with whitespace. Returns 0 with *take = the bytes up to
 * and including the blank line that ends the head (or all of n when it has
 * not arrived), or an HTTP status with *take = the bytes before the one at
 * fault. */
static int scan_head(shadow_request_parser_t *p, const unsigned char *s,
                     size_t n, size_t *take) {
  for (size_t i = 0; i < n; i++) {
    if (!p->prev_cr && p->line_len > 0 && p->head_bytes < p->header_limit) {
      /* Inside a line, the plain bytes that need no decision go by eight
       * at a time; the byte that ends the run is judged below. */
      size_t room = p->header_limit - p->head_bytes;
      size_t k = shadow_header_plain_span((const char *)s + i,
                                          n - i < room ? n - i : room);
      p->head_bytes += k;
      p->line_len += k;
      i += k;
      if (i == n) break;
    }
    unsigned char c = s[i];
    p->started = 1;
    *take = i;
    if (++p->head_bytes > p->header_limit) {
      p->why = "request head over the header limit";
      return 431;
    }
    if (p->prev_cr) {
      p->prev_cr = 0;
      if (c != '\n') {
        p->why = "bare CR";
        return 400;
      }
      if (p->line_len == 0 && p->seen_line) {
        *take = i + 1;
        return 0;
      }
      if (p->line_len) p->seen_head_line = 1;
      /* A blank line before the request line is skipped (RFC 9112
       * section 2.2): some clients send CRLF after a POST body. */
      p->line_len = 0;
      continue;
    }
    if (c == '\r') {
      p->prev_cr = 1;
      continue;
    }
    if (c == '\n') {
      p->why = "bare LF";
      return 400;
    }
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      p->why = "control byte in head";
      return 400;
    }
    /* A tab is whitespace in a header value, but not in the request line,
     * where another parser may take it for the end of the target. */
    if (c == '\t' && !p->seen_head_line) {
      p->why = "control byte in the request line";
      return 400;
    }
    if (p->line_len == 0 && p->seen_line && (c == ' ' || c == '\t')) {
      p->why = "obs-fold or whitespace before a header";
      return 400;
    }
    p->seen_line = 1;
    p->line_len++;
  }
  *take = n;
  return 0;
}

enum {
  CHUNK_SIZE0 = 0, /* the first digit of a chunk size */
  CHUNK_SIZE,      /* more digits, an extension, or CR */
  CHUNK_EXT,       /* an extension, to CR */
  CHUNK_SIZE_LF,   /* the LF after the size line's CR */
  CHUNK_DATA,
  CHUNK_DATA_CR, /* the CRLF after chunk data */
  CHUNK_DATA_LF,
  CHUNK_TRAILER_START, /* a trailer line, or the last CRLF */
  CHUNK_TRAILER,
  CHUNK_TRAILER_LF,
  CHUNK_END_LF,
  CHUNK_DONE
};

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int chunk_fault(shadow_request_parser_t *p, const char *why) {
  p->why = why;
  return 400;
}

/* Walks a chunked body ahead of llhttp, as scan_head walks the head:
 * llhttp's loose build takes any byte after a chunk size's CR, and any two
 * bytes after chunk data, for the CRLF the grammar wants (RFC 9112 section
 * 7.1). A front proxy that reads those bytes differently from the backend
 * is how a request gets smuggled, so only CRLF is taken here. Returns 0
 * with *take = bytes up to the end of the body (or all of n), or 400 with
 * *take = the bytes before the one at fault. */
static int scan_chunked(shadow_request_parser_t *p, const unsigned char *s,
                        size_t n, size_t *take) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    *take = i;
    switch (p->chunk_state) {
    case CHUNK_SIZE0:
      if (hex_value(c) < 0) return chunk_fault(p, "bad chunk size");
      p->chunk_left = (uint64_t)hex_value(c);
      p->chunk_state = CHUNK_SIZE;
      break;
    case CHUNK_SIZE:
      if (hex_value(c) >= 0) {
        if (p->chunk_left >> 56) return chunk_fault(p, "chunk size overflow");
        p->chunk_left = p->chunk_left * 16 + (uint64_t)hex_value(c);
      } else if (c == '\r') {
        p->chunk_state = CHUNK_SIZE_LF;
      } else if (c == ';' || c == ' ' || c == '\t') {
        p->chunk_state = CHUNK_EXT;
      } else {
        return chunk_fault(p, "bad chunk size");
      }
      break;
    case CHUNK_EXT:
      if (c == '\r')
        p->chunk_state = CHUNK_SIZE_LF;
      else if ((c < 0x20 && c != '\t') || c == 0x7f)
        return chunk_fault(p, "control byte in a chunk extension");
      break;
    case CHUNK_SIZE_LF:
      if (c != '\n') return chunk_fault(p, "chunk size line not ended by CRLF");
      p->chunk_state = p->chunk_left ? CHUNK_DATA : CHUNK_TRAILER_START;
      break;
    case CHUNK_DATA: {
      size_t k = n - i;
      if (k > p->chunk_left) k = (size_t)p->chunk_left;
      p->chunk_left -= k;
      i += k - 1;
      if (p->chunk_left == 0) p->chunk_state = CHUNK_DATA_CR;
      break;
    }
    case CHUNK_DATA_CR:
      if (c != '\r') return chunk_fault(p, "chunk data not ended by CRLF");
      p->chunk_state = CHUNK_DATA_LF;
      break;
    case CHUNK_DATA_LF:
      if (c != '\n') return chunk_fault(p, "chunk data not ended by CRLF");
      p->chunk_state = CHUNK_SIZE0;
      break;
    case CHUNK_TRAILER_START:
      if (c == '\r') {
        p->chunk_state = CHUNK_END_LF;
        break;
      }
      if (c == ' ' || c == '\t') return chunk_fault(p, "obs-fold in trailers");
      p->chunk_state = CHUNK_TRAILER;
      /* fall through: the line's first byte */
      /* FALLTHROUGH */
    case CHUNK_TRAILER:
      if (c == '\r')
        p->chunk_state = CHUNK_TRAILER_LF;
      else if (c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f)
        return chunk_fault(p, "control byte in trailers");
      break;
    case CHUNK_TRAILER_LF:
      if (c != '\n') return chunk_fault(p, "trailer line not ended by CRLF");
      p->chunk_state = CHUNK_TRAILER_START;
      break;
    case CHUNK_END_LF:
      if (c != '\n') return chunk_fault(p, "chunked body not ended by CRLF");
      p->chunk_state = CHUNK_DONE;
      *take = i + 1;
      return 0;
    default: /* CHUNK_DONE: the rest belongs to the next request */ return 0;
    }
  }
  *take = n;
  return 0;
}

/* llhttp's own refusal as an answer: a Transfer-Encoding it will not
 * take is "not implemented" (as the head check answers, and nginx),
 * anything else a bad request. */
static int llhttp_status(const shadow_request_parser_t *p) {
  return llhttp_get_errno(&p->http) == HPE_INVALID_TRANSFER_ENCODING ? 501
                                                                     : 400;
}

static shadow_parse_event_t parse_error(shadow_request_parser_t *p, int status,
                                        const char *why) {
  if (!p->status) {
    p->status = status;
    p->why = why;
  }
  return SHADOW_PARSE_ERROR;
}

/* One llhttp run over bytes of the caller's, which are this parser's
 * only until it returns: a header line they end inside is copied now. */
static llhttp_errno_t execute(shadow_request_parser_t *p, const char *data,
                              size_t n) {
  llhttp_errno_t e = llhttp_execute(&p->http, data, n);
  if (shadow_header_span_keep(&p->field) ||
      shadow_header_span_keep(&p->value)) {
    fail(p, 500, "out of memory");
    return HPE_USER;
  }
  return e;
}

shadow_parse_event_t shadow_request_parse(shadow_request_parser_t *p,
                                          const char *data, size_t len,
                                          size_t *used) {
  *used = 0;
  if (p->status) return SHADOW_PARSE_ERROR;
  if (p->complete) return SHADOW_PARSE_REQUEST;
  if (p->done) {
    /* Bytes after a request that closes the connection are not read. */
    *used = len;
    return SHADOW_PARSE_MORE;
  }
  size_t off = 0;
  while (off < len) {
    size_t n = len - off;
    if (p->in_head || p->chunk_scan) {
      int st = p->in_head
                   ? scan_head(p, (const unsigned char *)data + off, n, &n)
                   : scan_chunked(p, (const unsigned char *)data + off, n, &n);
      if (st) {
        /* llhttp sees the bytes before the fault first, so the answer is
         * the first fault in byte order wherever reads split the stream. */
        const char *why = p->why;
        if (n && execute(p, data + off, n) != HPE_OK)
          return parse_error(p, llhttp_status(p),
                             llhttp_get_error_reason(&p->http));
        return parse_error(p, st, why);
      }
    }
    llhttp_errno_t e = execute(p, data + off, n);
    if (e == HPE_OK) {
      off += n;
      continue;
    }
    if (e == HPE_PAUSED) {
      off += (size_t)(llhttp_get_error_pos(&p->http) - (data + off));
      llhttp_resume(&p->http);
      *used = off;
      if (p->complete) return SHADOW_PARSE_REQUEST;
      if (p->head_done == 1) {
        /* Reported once. CONTINUE also means the head is complete. */
        p->head_done = 2;
        if (p->expect_continue) {
          p->expect_continue = 0;
          return SHADOW_PARSE_CONTINUE;
        }
        if (p->stream) return SHADOW_PARSE_HEAD;
      }
      continue;
    }
    return parse_error(p, llhttp_status(p), llhttp_get_error_reason(&p->http));
  }
  *used = len;
  return SHADOW_PARSE_MORE;
}

/* llhttp's own table of its methods: llhttp_method_name aborts on a
 * number it does not define, so the numbers are never probed. */
static const struct {
  int id;
  const char *name;
} llhttp_methods[] = {
#define METHOD(num, name, string) {num, #string},
    HTTP_ALL_METHOD_MAP(METHOD)
#undef METHOD
};

int shadow_request_method_id(const char *name) {
  for (size_t i = 0; i < sizeof(llhttp_methods) / sizeof(llhttp_methods[0]);
       i++)
    if (llhttp_methods[i].id < 64 &&
        strcasecmp(llhttp_methods[i].name, name) == 0)
      return llhttp_methods[i].id;
  return -1;
}
