/* The capture line (see capture_line.h): formatting one exchange into a
 * line, and reading a line back into one exchange, every field checked. */
#include "capture_line.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "digest.h"
#include "json.h"
#include "request_parse.h"

/* --- writing -------------------------------------------------------------- */

int shadow_capture_utf8_valid(const char *data, size_t len) {
  const unsigned char *s = (const unsigned char *)data;
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (len - i <= n) return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    /* Overlong forms, surrogates and what lies past U+10FFFF. */
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return 0;
    i += n + 1;
  }
  return 1;
}

int shadow_capture_base64(shadow_buf_t *out, const char *data, size_t len) {
  static const char abc[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (shadow_buf_reserve(out, (len + 2) / 3 * 4 + 1)) return -ENOMEM;
  const unsigned char *s = (const unsigned char *)data;
  char *o = out->data + out->len;
  size_t i = 0;
  for (; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = abc[(v >> 6) & 63];
    *o++ = abc[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)s[i] << 16;
    if (i + 1 < len) v |= (uint32_t)s[i + 1] << 8;
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = i + 1 < len ? abc[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  out->len = (size_t)(o - out->data);
  out->data[out->len] = '\0';
  return 0;
}

int shadow_capture_is_json(const shadow_headers_t *h) {
  const shadow_header_t *ct = shadow_headers_find(h, "content-type");
  if (!ct) return 0;
  size_t n = ct->value_len;
  const char *v = ct->value;
  const char *semi = memchr(v, ';', n);
  if (semi) n = (size_t)(semi - v);
  while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  while (n && (*v == ' ' || *v == '\t')) {
    v++;
    n--;
  }
  if (n == 16 && strncasecmp(v, "application/json", 16) == 0) return 1;
  return n > 5 && strncasecmp(v + n - 5, "+json", 5) == 0;
}

static int put_ms(shadow_buf_t *b, double ms) {
  if (!isfinite(ms) || ms < 0) return shadow_buf_puts(b, "null");
  return shadow_buf_printf(b, "%.3f", ms);
}

static int put_string(shadow_buf_t *b, const char *s, size_t n) {
  if (!s) return shadow_buf_puts(b, "null");
  return shadow_buf_json_string(b, s, n, 0);
}

/* "headers":[["name","value"],...], secret values as their marks: a list
 * of pairs keeps the order and the repeats a replay must send. */
static int put_list(shadow_buf_t *b, const char *key, const shadow_headers_t *h,
                    const shadow_redact_t *r) {
  int rc = shadow_buf_printf(b, "\"%s\":[", key);
  for (size_t i = 0; !rc && h && i < h->n; i++) {
    const shadow_header_t *e = &h->v[i];
    char mark[SHADOW_REDACT_MARK_LEN + 1];
    int redacted = shadow_redact_header_mark(r, e, mark);
    rc = (i && shadow_buf_putc(b, ',')) || shadow_buf_putc(b, '[') ||
         put_string(b, e->name, e->name_len) || shadow_buf_putc(b, ',') ||
         (redacted ? put_string(b, mark, SHADOW_REDACT_MARK_LEN)
                   : put_string(b, e->value, e->value_len)) ||
         shadow_buf_putc(b, ']');
  }
  return rc ? -ENOMEM : shadow_buf_putc(b, ']');
}

static int put_headers(shadow_buf_t *b, const shadow_headers_t *h,
                       const shadow_redact_t *r) {
  return put_list(b, "headers", h, r);
}

/* "body":"..." as text when it is UTF-8, else with "encoding":"base64". */
static int put_body(shadow_buf_t *b, const char *data, size_t n) {
  if (!data) n = 0;
  if (shadow_capture_utf8_valid(data ? data : "", n))
    return shadow_buf_puts(b, "\"body\":") || put_string(b, data ? data : "", n)
               ? -ENOMEM
               : 0;
  return shadow_buf_puts(b, "\"body\":\"") ||
                 shadow_capture_base64(b, data, n) ||
                 shadow_buf_puts(b, "\",\"encoding\":\"base64\"")
             ? -ENOMEM
             : 0;
}

/* A body's bytes as the line holds them: redacted when its JSON has
 * secret values. *text and *n are the bytes to write; when they are
 * rewritten, they live in tmp. 0, 1 when the body cannot be shown (its
 * JSON should be redacted and does not parse), or -ENOMEM. */
static int redacted_body(const shadow_redact_t *r, const shadow_headers_t *h,
                         const char **text, size_t *n, shadow_buf_t *tmp) {
  if (shadow_redact_pointers(r) == 0 || !shadow_capture_is_json(h) || !*n)
    return 0;
  int rc = shadow_redact_json(r, *text, *n, tmp);
  if (rc == 1) {
    *text = tmp->data;
    *n = tmp->len;
    return 0;
  }
  if (rc == -ENOMEM) return rc;
  return rc == 0 ? 0 : 1;
}

/* The longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence, when s is text: a body cut at body_bytes stays text. */
static size_t utf8_prefix(const char *s, size_t n) {
  size_t k = n;
  for (int back = 0; back < 3 && k > 0; back++) {
    unsigned char c = (unsigned char)s[k - 1];
    if (c < 0x80) break;
    if (c >= 0xC0) { /* a lead byte whose sequence is cut: drop it */
      k--;
      break;
    }
    k--;
  }
  return shadow_capture_utf8_valid(s, k) ? k : n;
}

static int put_response(shadow_buf_t *b, const shadow_record_t *rec,
                        const shadow_redact_t *r, size_t body_bytes) {
  shadow_buf_t tmp = SHADOW_BUF_INIT;
  const char *body = rec->body.data ? rec->body.data : "";
  size_t kept = rec->body.len;
  uint64_t total = shadow_record_body_len(rec);
  shadow_digest_t digest;
  int cut = rec->body_cut || total > body_bytes;
  int rc = 0;
  if (!cut) {
    /* Whole: the line holds it (redacted), and length and digest are
     * those of what it holds, so a reader can tell a damaged body. */
    int hidden = redacted_body(r, &rec->headers, &body, &kept, &tmp);
    if (hidden < 0) goto oom;
    if (hidden) { /* JSON that should be redacted and cannot be */
      cut = 1;
      digest = shadow_digest_of(rec->body.data, rec->body.len);
      kept = 0;
    } else {
      total = kept;
      digest = shadow_digest_of(body, kept);
    }
  } else {
    digest = rec->body_cut ? rec->body_digest
                           : shadow_digest_of(rec->body.data, rec->body.len);
    if (kept > body_bytes) kept = body_bytes;
    /* A prefix of a JSON document cannot be redacted reliably: a line
     * whose JSON has secrets keeps only the length and the digest. */
    if (shadow_redact_pointers(r) && shadow_capture_is_json(&rec->headers))
      kept = 0;
    kept = utf8_prefix(body, kept);
  }
  char hex[33];
  shadow_digest_hex(digest, hex);
  rc = shadow_buf_printf(b, "\"response\":{\"status\":%d,", rec->status) ||
       put_headers(b, &rec->headers, r) || shadow_buf_putc(b, ',') ||
       put_body(b, body, kept) ||
       shadow_buf_printf(b, ",\"length\":%llu,\"cut\":%s,\"digest\":\"%s\"",
                         (unsigned long long)total, cut ? "true" : "false",
                         hex) ||
       (rec->trailers.n && (shadow_buf_putc(b, ',') ||
                            put_list(b, "trailers", &rec->trailers, r))) ||
       shadow_buf_putc(b, '}');
  shadow_buf_free(&tmp);
  return rc ? -ENOMEM : 0;
oom:
  shadow_buf_free(&tmp);
  return -ENOMEM;
}

int shadow_capture_format(shadow_buf_t *out, const shadow_capture_exchange_t *x,
                          const shadow_redact_t *r, size_t body_bytes) {
  size_t start = out->len;
  char when[SHADOW_WALL_ISO_LEN];
  shadow_wall_iso(x->time_ms, when);
  shadow_buf_t tmp = SHADOW_BUF_INIT;
  const char *body = x->body ? x->body : "";
  size_t body_len = x->body ? x->body_len : 0;
  int hidden = redacted_body(r, x->headers, &body, &body_len, &tmp);
  int rc =
      hidden < 0 ||
      shadow_buf_printf(out, "{\"v\":%d,\"id\":%llu,\"time\":\"%s\",\"route\":",
                        SHADOW_CAPTURE_VERSION, (unsigned long long)x->id,
                        when) ||
      put_string(out, x->route, x->route ? strlen(x->route) : 0) ||
      shadow_buf_puts(out, ",\"key\":") ||
      put_string(out, x->key, x->key ? strlen(x->key) : 0) ||
      shadow_buf_puts(out, ",\"request\":{\"method\":") ||
      put_string(out, x->method, strlen(x->method)) ||
      shadow_buf_puts(out, ",\"target\":") ||
      put_string(out, x->target, x->target_len) ||
      shadow_buf_puts(out, ",\"peer\":") ||
      put_string(out, x->peer ? x->peer : "", x->peer ? strlen(x->peer) : 0) ||
      shadow_buf_printf(out, ",\"tls\":%s,", x->tls ? "true" : "false") ||
      (x->http_major == 2 && shadow_buf_puts(out, "\"protocol\":\"h2\",")) ||
      put_headers(out, x->headers, r) || shadow_buf_putc(out, ',');
  /* A request body is sent again by a replay, so it is whole or absent:
   * JSON whose secrets cannot be marked is left out. */
  if (!rc)
    rc = put_body(out, hidden ? "" : body, hidden ? 0 : body_len) ||
         shadow_buf_puts(out, "},") ||
         put_response(out, x->response, r, body_bytes) ||
         shadow_buf_puts(out, ",\"timing_ms\":{\"first_byte\":") ||
         put_ms(out, x->first_byte_ms) || shadow_buf_puts(out, ",\"total\":") ||
         put_ms(out, x->total_ms) || shadow_buf_puts(out, "}}");
  shadow_buf_free(&tmp);
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return -ENOMEM;
  }
  return 0;
}

/* --- reading ------------------------------------------------------------- */

void shadow_capture_entry_init(shadow_capture_entry_t *e) {
  memset(e, 0, sizeof(*e));
  shadow_record_init(&e->response);
  e->first_byte_ms = e->total_ms = -1;
}

void shadow_capture_entry_clear(shadow_capture_entry_t *e) {
  e->id = 0;
  e->time[0] = '\0';
  e->has_route = e->has_key = 0;
  shadow_buf_reset(&e->route);
  shadow_buf_reset(&e->key);
  shadow_buf_reset(&e->method);
  shadow_buf_reset(&e->target);
  shadow_buf_reset(&e->peer);
  e->method_id = -1;
  e->tls = 0;
  shadow_headers_clear(&e->headers);
  shadow_buf_reset(&e->body);
  shadow_record_clear(&e->response);
  e->first_byte_ms = e->total_ms = -1;
}

void shadow_capture_entry_release(shadow_capture_entry_t *e) {
  shadow_buf_free(&e->route);
  shadow_buf_free(&e->key);
  shadow_buf_free(&e->method);
  shadow_buf_free(&e->target);
  shadow_buf_free(&e->peer);
  shadow_headers_free(&e->headers);
  shadow_buf_free(&e->body);
  shadow_record_release(&e->response);
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int shadow_capture_unbase64(shadow_buf_t *out, const char *s, size_t n) {
  while (n && s[n - 1] == '=')
    n--;
  if (n % 4 == 1) return -EINVAL;
  if (shadow_buf_reserve(out, n / 4 * 3 + 3)) return -ENOMEM;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value((unsigned char)s[i]);
    if (v < 0) return -EINVAL;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->data[out->len++] = (char)((acc >> bits) & 0xFF);
    }
  }
  out->data[out->len] = '\0';
  return 0;
}

/* --- one line ------------------------------------------------------------ */

typedef struct parse_s {
  char *err;
  size_t errlen;
  int failed;
} parse_t;

static int bad(parse_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int bad(parse_t *p, const char *fmt, ...) {
  if (!p->failed) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
  }
  p->failed = 1;
  return -EINVAL;
}

static const shadow_json_t *field(const shadow_json_t *obj, const char *k) {
  if (!obj || obj->type != SHADOW_JSON_OBJECT) return NULL;
  long i = shadow_json_member_find(obj, k, strlen(k));
  return i < 0 ? NULL : &obj->u.members[i].value;
}

/* A string member: NULL (and the error) when absent or not a string;
 * with null_ok, a JSON null gives *is_null instead. */
static const shadow_json_t *want_string(parse_t *p, const shadow_json_t *obj,
                                        const char *where, const char *k,
                                        int null_ok, int *is_null) {
  const shadow_json_t *v = field(obj, k);
  if (is_null) *is_null = 0;
  if (v && v->type == SHADOW_JSON_STRING) return v;
  if (v && null_ok && v->type == SHADOW_JSON_NULL) {
    *is_null = 1;
    return NULL;
  }
  bad(p, "%s%s %s", where, k,
      v ? (null_ok ? "is not a string or null" : "is not a string")
        : "is missing");
  return NULL;
}

static int want_number(parse_t *p, const shadow_json_t *obj, const char *where,
                       const char *k, double lo, double hi, double *out) {
  const shadow_json_t *v = field(obj, k);
  if (!v || v->type != SHADOW_JSON_NUMBER)
    return bad(p, "%s%s %s", where, k, v ? "is not a number" : "is missing");
  double d = shadow_json_number(v);
  if (!(d >= lo && d <= hi) || d != floor(d))
    return bad(p, "%s%s is not a whole number from %.0f to %.0f", where, k, lo,
               hi);
  *out = d;
  return 0;
}

static int copy_string(shadow_buf_t *b, const shadow_json_t *v) {
  shadow_buf_reset(b);
  return shadow_buf_append(b, v->len ? v->u.str : "", v->len) ? -ENOMEM : 0;
}

/* "headers":[["name","value"],...] (or another key's list: "trailers",
 * which may be absent) into h. */
static int read_list(parse_t *p, const shadow_json_t *obj, const char *where,
                     const char *key, int optional, shadow_headers_t *h) {
  const shadow_json_t *a = field(obj, key);
  if (!a && optional) return 0;
  if (!a || a->type != SHADOW_JSON_ARRAY)
    return bad(p, "%s%s %s", where, key, a ? "is not an array" : "is missing");
  for (uint32_t i = 0; i < a->len; i++) {
    const shadow_json_t *pair = &a->u.items[i];
    if (pair->type != SHADOW_JSON_ARRAY || pair->len != 2 ||
        pair->u.items[0].type != SHADOW_JSON_STRING ||
        pair->u.items[1].type != SHADOW_JSON_STRING)
      return bad(p, "%s%s[%u] is not a [name, value] pair of strings", where,
                 key, i);
    const shadow_json_t *n = &pair->u.items[0], *v = &pair->u.items[1];
    if (!shadow_header_name_valid(n->u.str, n->len) ||
        !shadow_header_value_valid(v->len ? v->u.str : "", v->len))
      return bad(p, "%s%s[%u] is not a valid HTTP header", where, key, i);
    if (shadow_headers_add(h, n->u.str, n->len, v->len ? v->u.str : "", v->len))
      return -ENOMEM;
  }
  return 0;
}

static int read_headers(parse_t *p, const shadow_json_t *obj, const char *where,
                        shadow_headers_t *h) {
  return read_list(p, obj, where, "headers", 0, h);
}

/* "body" and "encoding" into out. */
static int read_body(parse_t *p, const shadow_json_t *obj, const char *where,
                     shadow_buf_t *out) {
  const shadow_json_t *b = want_string(p, obj, where, "body", 0, NULL);
  if (!b) return -EINVAL;
  const shadow_json_t *enc = field(obj, "encoding");
  shadow_buf_reset(out);
  if (!enc || enc->type == SHADOW_JSON_NULL) return copy_string(out, b);
  if (enc->type != SHADOW_JSON_STRING || enc->len != 6 ||
      memcmp(enc->u.str, "base64", 6) != 0)
    return bad(p, "%sencoding must be \"base64\" when present", where);
  int rc = shadow_capture_unbase64(out, b->len ? b->u.str : "", b->len);
  if (rc == -EINVAL) return bad(p, "%sbody is not base64", where);
  return rc;
}

static int hex_digest(const char *s, size_t n, shadow_digest_t *d) {
  if (n != 32) return -1;
  uint64_t w[2] = {0, 0};
  for (size_t i = 0; i < 32; i++) {
    char c = s[i];
    int v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (v < 0) return -1;
    w[i / 16] = (w[i / 16] << 4) | (uint64_t)v;
  }
  d->high = w[0];
  d->low = w[1];
  return 0;
}

static int read_request(parse_t *p, const shadow_json_t *root,
                        shadow_capture_entry_t *e) {
  const shadow_json_t *rq = field(root, "request");
  if (!rq || rq->type != SHADOW_JSON_OBJECT)
    return bad(p, "request %s", rq ? "is not an object" : "is missing");
  const shadow_json_t *m = want_string(p, rq, "request.", "method", 0, NULL);
  const shadow_json_t *t = want_string(p, rq, "request.", "target", 0, NULL);
  if (!m || !t) return -EINVAL;
  if (copy_string(&e->method, m) || copy_string(&e->target, t)) return -ENOMEM;
  e->method_id = shadow_request_method_id(e->method.data);
  if (e->method_id < 0) return bad(p, "request.method is not an HTTP method");
  if (t->len == 0 || t->u.str[0] != '/' ||
      !shadow_header_value_valid(t->u.str, t->len) ||
      memchr(t->u.str, ' ', t->len) || memchr(t->u.str, '\t', t->len))
    return bad(p, "request.target is not an origin-form target");
  const shadow_json_t *peer = field(rq, "peer");
  if (peer && peer->type == SHADOW_JSON_STRING && copy_string(&e->peer, peer))
    return -ENOMEM;
  const shadow_json_t *tls = field(rq, "tls");
  e->tls = tls && tls->type == SHADOW_JSON_TRUE;
  const shadow_json_t *proto = field(rq, "protocol");
  e->http_major = 1;
  if (proto && proto->type == SHADOW_JSON_STRING && proto->len == 2 &&
      memcmp(proto->u.str, "h2", 2) == 0)
    e->http_major = 2;
  else if (proto && !(proto->type == SHADOW_JSON_STRING && proto->len == 8 &&
                      memcmp(proto->u.str, "http/1.1", 8) == 0))
    return bad(p, "request.protocol must be \"h2\" or \"http/1.1\"");
  int rc = read_headers(p, rq, "request.", &e->headers);
  if (rc == 0) rc = read_body(p, rq, "request.", &e->body);
  return rc;
}

static int read_response(parse_t *p, const shadow_json_t *root,
                         shadow_record_t *r) {
  const shadow_json_t *rs = field(root, "response");
  if (!rs || rs->type != SHADOW_JSON_OBJECT)
    return bad(p, "response %s", rs ? "is not an object" : "is missing");
  double status, length;
  if (want_number(p, rs, "response.", "status", 100, 599, &status) ||
      want_number(p, rs, "response.", "length", 0, 0x1p53, &length))
    return -EINVAL;
  r->status = (int)status;
  int rc = read_headers(p, rs, "response.", &r->headers);
  if (rc == 0) rc = read_list(p, rs, "response.", "trailers", 1, &r->trailers);
  if (rc == 0) rc = read_body(p, rs, "response.", &r->body);
  if (rc) return rc;
  const shadow_json_t *cut = field(rs, "cut");
  if (!cut || (cut->type != SHADOW_JSON_TRUE && cut->type != SHADOW_JSON_FALSE))
    return bad(p, "response.cut %s", cut ? "is not a boolean" : "is missing");
  const shadow_json_t *dg = want_string(p, rs, "response.", "digest", 0, NULL);
  shadow_digest_t d;
  if (!dg) return -EINVAL;
  if (hex_digest(dg->u.str, dg->len, &d))
    return bad(p, "response.digest is not 32 hex digits");
  if (cut->type == SHADOW_JSON_TRUE) {
    if ((double)r->body.len > length)
      return bad(p, "response.body is longer than response.length");
    r->body_cut = 1;
    r->body_total = (uint64_t)length;
    r->body_digest = d;
  } else if ((double)r->body.len != length ||
             !shadow_digest_equal(
                 d, shadow_digest_of(r->body.data, r->body.len))) {
    /* A whole body must be the one that was written. */
    return bad(p, "response.body does not match its length and digest "
                  "(a damaged line)");
  }
  return 0;
}

static void read_timing(const shadow_json_t *root, shadow_capture_entry_t *e) {
  const shadow_json_t *t = field(root, "timing_ms");
  const shadow_json_t *f = field(t, "first_byte"), *a = field(t, "total");
  if (f && f->type == SHADOW_JSON_NUMBER)
    e->first_byte_ms = shadow_json_number(f);
  if (a && a->type == SHADOW_JSON_NUMBER) e->total_ms = shadow_json_number(a);
}

int shadow_capture_parse(const char *line, size_t len,
                         shadow_capture_entry_t *e, char *err, size_t errlen) {
  parse_t p = {err, errlen, 0};
  if (errlen) err[0] = '\0';
  shadow_capture_entry_clear(e);
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t root;
  size_t off = 0;
  const char *why = NULL;
  int rc = shadow_json_parse(&arena, line, len, &root, &off, &why);
  if (rc == -ENOMEM) goto done;
  if (rc) {
    rc = bad(&p, "not JSON at byte %zu: %s%s", off, why ? why : "invalid",
             off >= len ? " (the line is cut short)" : "");
    goto done;
  }
  if (root.type != SHADOW_JSON_OBJECT) {
    rc = bad(&p, "not a JSON object");
    goto done;
  }
  const shadow_json_t *v = field(&root, "v");
  if (!v || v->type != SHADOW_JSON_NUMBER) {
    rc = bad(&p, "no \"v\": not a capture line");
    goto done;
  }
  if (shadow_json_number(v) != SHADOW_CAPTURE_VERSION) {
    rc = bad(&p, "version %.*s is not one this shadowd reads (%d)",
             (int)(v->rawlen < 20 ? v->rawlen : 1),
             v->rawlen < 20 ? v->raw : "?", SHADOW_CAPTURE_VERSION);
    goto done;
  }
  double id;
  if ((rc = want_number(&p, &root, "", "id", 0, 0x1p53, &id))) goto done;
  e->id = (uint64_t)id;
  const shadow_json_t *t = want_string(&p, &root, "", "time", 0, NULL);
  if (!t) {
    rc = -EINVAL;
    goto done;
  }
  snprintf(e->time, sizeof(e->time), "%.*s",
           (int)(t->len < sizeof(e->time) ? t->len : sizeof(e->time) - 1),
           t->u.str);
  int null_route, null_key;
  const shadow_json_t *route =
      want_string(&p, &root, "", "route", 1, &null_route);
  const shadow_json_t *key = want_string(&p, &root, "", "key", 1, &null_key);
  if (p.failed) {
    rc = -EINVAL;
    goto done;
  }
  if ((route && copy_string(&e->route, route)) ||
      (key && copy_string(&e->key, key))) {
    rc = -ENOMEM;
    goto done;
  }
  e->has_route = route != NULL;
  e->has_key = key != NULL;
  if ((rc = read_request(&p, &root, e))) goto done;
  if ((rc = read_response(&p, &root, &e->response))) goto done;
  read_timing(&root, e);
done:
  shadow_json_arena_free(&arena);
  if (rc == -ENOMEM && errlen) snprintf(err, errlen, "out of memory");
  return rc;
}
