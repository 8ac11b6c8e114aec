/* The response parser (see response_parse.h): llhttp's callbacks turned
 * into head, body and trailer events, with a bound on the head's size and
 * nothing kept of the body. */
#include "response_parse.h"

#include <errno.h>
#include <string.h>

#include "parsed_field.h"

/* Bytes a header line costs on the wire beyond its name and value (": " and
 * CRLF). Counting them keeps a flood of empty headers inside the limit. */
#define LINE_OVERHEAD 4
/* Scratch kept between responses; one huge header must not pin more. */
#define SCRATCH_KEEP 4096
#define HEADERS_KEEP 64

#define PARSER(h) ((shadow_response_parser_t *)(h)->data)

static int fail(shadow_response_parser_t *p, int err) {
  if (!p->err) p->err = err;
  return -1;
}

static int count_header(shadow_response_parser_t *p, size_t n) {
  p->header_seen += n;
  if (p->header_limit && p->header_seen > p->header_limit)
    return fail(p, SHADOW_UPSTREAM_TOO_LARGE);
  return 0;
}

static int on_message_begin(llhttp_t *h) {
  /* The status line is at least "HTTP/1.1 200 \r\n" long. */
  return count_header(PARSER(h), 15);
}

static int on_status(llhttp_t *h, const char *at, size_t len) {
  return count_header(PARSER(h), len);
}

static int on_header_field(llhttp_t *h, const char *at, size_t len) {
  shadow_response_parser_t *p = PARSER(h);
  if (count_header(p, len)) return -1;
  if (shadow_header_span_add(&p->name, at, len))
    return fail(p, SHADOW_UPSTREAM_TOO_LARGE);
  return 0;
}

static int on_header_value(llhttp_t *h, const char *at, size_t len) {
  shadow_response_parser_t *p = PARSER(h);
  if (count_header(p, len)) return -1;
  if (shadow_header_span_add(&p->value, at, len))
    return fail(p, SHADOW_UPSTREAM_TOO_LARGE);
  return 0;
}

static int on_header_value_complete(llhttp_t *h) {
  shadow_response_parser_t *p = PARSER(h);
  if (count_header(p, LINE_OVERHEAD)) return -1;
  /* Like nginx's "upstream sent invalid header": a field that is not one
   * by RFC 9110 fails the response rather than being passed on. Checked
   * here once, for what llhttp lets through (parsed_field.h): the list
   * remembers it, so writing it out does not check again. */
  shadow_headers_t *dst = p->headers_done ? &p->trailers : &p->headers;
  const char *name = shadow_header_span_data(&p->name);
  size_t name_len = shadow_header_span_len(&p->name);
  int rc = shadow_parsed_field_name_ok(name, name_len)
               ? shadow_headers_add_known_valid(
                     dst, name, name_len, shadow_header_span_data(&p->value),
                     shadow_header_span_len(&p->value))
               : -EINVAL;
  shadow_header_span_clear(&p->name);
  shadow_header_span_clear(&p->value);
  if (rc == -EINVAL) return fail(p, SHADOW_UPSTREAM_BAD_RESPONSE);
  return rc ? fail(p, SHADOW_UPSTREAM_TOO_LARGE) : 0;
}

static int deliver(shadow_response_parser_t *p,
                   int (*cb)(void *, shadow_response_parser_t *)) {
  if (cb && cb(p->ud, p) != 0) return fail(p, SHADOW_UPSTREAM_BAD_RESPONSE);
  return 0;
}

static int on_headers_complete(llhttp_t *h) {
  shadow_response_parser_t *p = PARSER(h);
  int status = llhttp_get_status_code(h);
  /* A 101 to a request that asked for no upgrade is a backend speaking
   * something we cannot relay. */
  if ((status == 101 && !p->may_upgrade) || status < 100 || status > 999)
    return fail(p, SHADOW_UPSTREAM_BAD_RESPONSE);
  p->status = status;
  if (status == 101) {
    /* The tunnel: the head now, then raw bytes (see feed). */
    p->headers_done = 1;
    p->upgraded = 1;
    p->content_length = -1;
    if (deliver(p, p->ev ? p->ev->on_head : NULL)) return -1;
    return 1;
  }
  if (status < 200) {
    /* An interim response (100 Continue, 103 Early Hints) has no body;
     * the final one follows on the same connection. */
    if (++p->interim > SHADOW_RESPONSE_MAX_INTERIM)
      return fail(p, SHADOW_UPSTREAM_BAD_RESPONSE);
    if (deliver(p, p->ev ? p->ev->on_interim : NULL)) return -1;
    return 1;
  }
  p->headers_done = 1;
  p->chunked = (h->flags & F_CHUNKED) != 0;
  p->content_length = -1;
  int no_body = p->head || status == 204 || status == 304;
  if (!p->chunked && (h->flags & F_CONTENT_LENGTH))
    p->content_length = (int64_t)h->content_length;
  if (no_body) p->chunked = 0;
  if (deliver(p, p->ev ? p->ev->on_head : NULL)) return -1;
  /* 1 tells llhttp that no body follows whatever the headers claim. */
  return no_body ? 1 : 0;
}

static int on_body(llhttp_t *h, const char *at, size_t len) {
  shadow_response_parser_t *p = PARSER(h);
  p->body_seen += len;
  if (p->ev && p->ev->on_body && p->ev->on_body(p->ud, at, len) != 0)
    return fail(p, SHADOW_UPSTREAM_BAD_RESPONSE);
  return 0;
}

static int on_message_complete(llhttp_t *h) {
  shadow_response_parser_t *p = PARSER(h);
  /* The 101's message ends here and the tunnel's bytes begin. llhttp
   * pauses by itself only when the 101 carries Upgrade headers; pausing
   * here covers one without, which would otherwise parse on. */
  if (p->upgraded) return HPE_PAUSED;
  if (!p->headers_done) {
    /* The end of an interim response: start over for the next head. */
    shadow_headers_clear(&p->headers);
    p->header_seen = 0;
    return 0;
  }
  p->done = 1;
  p->keep_alive = llhttp_should_keep_alive(h);
  /* Stop right after this message so feed() can tell whether more bytes
   * followed it. */
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void shadow_response_parser_init(shadow_response_parser_t *p,
                                 size_t header_limit) {
  memset(p, 0, sizeof(*p));
  llhttp_init(&p->http, HTTP_RESPONSE, &settings);
  p->http.data = p;
  p->header_limit = header_limit;
  p->content_length = -1;
}

void shadow_response_parser_reset(shadow_response_parser_t *p, int head,
                                  int may_upgrade,
                                  const shadow_response_events_t *ev,
                                  void *ud) {
  llhttp_reset(&p->http);
  if (p->name.copy.cap > SCRATCH_KEEP) shadow_header_span_free(&p->name);
  if (p->value.copy.cap > SCRATCH_KEEP) shadow_header_span_free(&p->value);
  shadow_header_span_clear(&p->name);
  shadow_header_span_clear(&p->value);
  if (p->headers.cap > HEADERS_KEEP) shadow_headers_free(&p->headers);
  shadow_headers_clear(&p->headers);
  if (p->trailers.cap > HEADERS_KEEP) shadow_headers_free(&p->trailers);
  shadow_headers_clear(&p->trailers);
  p->ev = ev;
  p->ud = ud;
  p->status = 0;
  p->content_length = -1;
  p->chunked = 0;
  p->header_seen = 0;
  p->seen = 0;
  p->body_seen = 0;
  p->head = head;
  p->may_upgrade = may_upgrade;
  p->upgraded = 0;
  p->interim = 0;
  p->headers_done = 0;
  p->done = 0;
  p->err = 0;
  p->keep_alive = 0;
  p->extra = 0;
}

static int verdict(const shadow_response_parser_t *p) {
  if (p->err) return SHADOW_RESPONSE_ERROR;
  return p->done ? SHADOW_RESPONSE_DONE : SHADOW_RESPONSE_MORE;
}

int shadow_response_parser_feed(shadow_response_parser_t *p, const char *data,
                                size_t len) {
  if (p->err || len == 0) return verdict(p);
  if (p->upgraded && p->done) {
    /* Tunnel bytes: nothing to parse. */
    p->seen += len;
    if (p->ev && p->ev->on_body && p->ev->on_body(p->ud, data, len) != 0)
      fail(p, SHADOW_UPSTREAM_BAD_RESPONSE);
    return p->err ? SHADOW_RESPONSE_ERROR : SHADOW_RESPONSE_MORE;
  }
  if (p->done) {
    /* Bytes nobody asked for: the stream is out of step with our requests,
     * so the connection must not be reused. */
    p->extra = 1;
    p->keep_alive = 0;
    return verdict(p);
  }
  p->seen += len;
  llhttp_errno_t rc = llhttp_execute(&p->http, data, len);
  /* data is the caller's until the next feed: a line it ends inside is
   * copied now. */
  if (shadow_header_span_keep(&p->name) || shadow_header_span_keep(&p->value))
    fail(p, SHADOW_UPSTREAM_TOO_LARGE);
  if ((rc == HPE_PAUSED_UPGRADE || rc == HPE_PAUSED) && p->upgraded) {
    /* The 101's head is in; the bytes after it are the tunnel's. */
    const char *pos = llhttp_get_error_pos(&p->http);
    p->done = 1;
    if (pos && pos < data + len && p->ev && p->ev->on_body &&
        p->ev->on_body(p->ud, pos, (size_t)(data + len - pos)) != 0)
      fail(p, SHADOW_UPSTREAM_BAD_RESPONSE);
    return p->err ? SHADOW_RESPONSE_ERROR : SHADOW_RESPONSE_MORE;
  }
  if (rc == HPE_PAUSED && p->done) {
    const char *pos = llhttp_get_error_pos(&p->http);
    if (pos && pos < data + len) {
      p->extra = 1;
      p->keep_alive = 0;
    }
    return verdict(p);
  }
  if (rc != HPE_OK) fail(p, SHADOW_UPSTREAM_BAD_RESPONSE);
  return verdict(p);
}

int shadow_response_parser_finish(shadow_response_parser_t *p) {
  /* A tunnel ends when its peer closes: that is its whole "response". */
  if (p->upgraded && p->done && !p->err) {
    p->keep_alive = 0;
    return SHADOW_RESPONSE_DONE;
  }
  if (p->err || p->done) return verdict(p);
  if (p->seen == 0) return fail(p, SHADOW_UPSTREAM_RESET);
  llhttp_finish(&p->http);
  if (p->done) {
    p->keep_alive = 0; /* the peer is gone */
    return verdict(p);
  }
  if (p->err) return verdict(p);
  /* Anything else is a response cut short: a body shorter than its
   * Content-Length, a chunked body without its last chunk, or a half
   * header block. The bytes so far were valid, so the fault is the close. */
  return fail(p, SHADOW_UPSTREAM_RESET);
}

uint64_t shadow_response_parser_body_left(const shadow_response_parser_t *p) {
  if (!p->headers_done || p->done || p->err || p->upgraded || p->head ||
      p->chunked || p->content_length < 0 || p->status == 204 ||
      p->status == 304 || (uint64_t)p->content_length <= p->body_seen)
    return 0;
  return (uint64_t)p->content_length - p->body_seen;
}

size_t shadow_response_parser_seen(const shadow_response_parser_t *p) {
  return p->seen;
}

int shadow_response_parser_has_head(const shadow_response_parser_t *p) {
  return p->headers_done;
}

void shadow_response_parser_free(shadow_response_parser_t *p) {
  shadow_headers_free(&p->headers);
  shadow_headers_free(&p->trailers);
  shadow_header_span_free(&p->name);
  shadow_header_span_free(&p->value);
}
