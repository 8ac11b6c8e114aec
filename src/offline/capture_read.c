/* Reading capture lines back (see capture_read.h). Every field is checked
 * before it is used, because a capture file is input: it may have been
 * cut by a full disk, edited by hand, or written by a later version. */
#include "capture_read.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture.h"
#include "config.h"
#include "json.h"

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

/* "headers":[["name","value"],...] into h. */
static int read_headers(parse_t *p, const shadow_json_t *obj, const char *where,
                        shadow_headers_t *h) {
  const shadow_json_t *a = field(obj, "headers");
  if (!a || a->type != SHADOW_JSON_ARRAY)
    return bad(p, "%sheaders %s", where, a ? "is not an array" : "is missing");
  for (uint32_t i = 0; i < a->len; i++) {
    const shadow_json_t *pair = &a->u.items[i];
    if (pair->type != SHADOW_JSON_ARRAY || pair->len != 2 ||
        pair->u.items[0].type != SHADOW_JSON_STRING ||
        pair->u.items[1].type != SHADOW_JSON_STRING)
      return bad(p, "%sheaders[%u] is not a [name, value] pair of strings",
                 where, i);
    const shadow_json_t *n = &pair->u.items[0], *v = &pair->u.items[1];
    if (!shadow_header_name_valid(n->u.str, n->len) ||
        !shadow_header_value_valid(v->len ? v->u.str : "", v->len))
      return bad(p, "%sheaders[%u] is not a valid HTTP header", where, i);
    if (shadow_headers_add(h, n->u.str, n->len, v->len ? v->u.str : "", v->len))
      return -ENOMEM;
  }
  return 0;
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
  e->method_id = shadow_config_method_id(e->method.data);
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

/* --- files ---------------------------------------------------------------- */

int shadow_capture_reader_open(shadow_capture_reader_t *r,
                               const char *const *paths, size_t n, char **err) {
  memset(r, 0, sizeof(*r));
  r->paths = paths;
  r->npaths = n;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(paths[i], "-") == 0) continue;
    struct stat sb;
    FILE *f = fopen(paths[i], "rb");
    if (!f || fstat(fileno(f), &sb) != 0 || S_ISDIR(sb.st_mode)) {
      int e = f ? (S_ISDIR(sb.st_mode) ? EISDIR : errno) : errno;
      if (f) fclose(f);
      shadow_buf_t b = SHADOW_BUF_INIT;
      shadow_buf_printf(&b, "%s: %s", paths[i], strerror(e));
      *err = shadow_buf_steal(&b, NULL);
      return -1;
    }
    r->bytes_total += (uint64_t)sb.st_size;
    fclose(f);
  }
  return 0;
}

/* What is read from a file at once; lines are split out of it. */
#define READ_BLOCK (64 * 1024)

/* Whole blocks by read(2), not stdio: a line that has arrived on a pipe
 * is handed on without waiting for a full block behind it. 0 at the end,
 * -1 on an error. */
static ssize_t fill_block(shadow_capture_reader_t *r) {
  for (;;) {
    ssize_t n = read(fileno(r->f), r->blk, READ_BLOCK);
    if (n >= 0 || errno != EINTR) return n;
  }
}

static int read_failed(shadow_capture_reader_t *r, char **err) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  shadow_buf_printf(&b, "%s: read error: %s", r->path, strerror(errno));
  *err = shadow_buf_steal(&b, NULL);
  if (r->f != stdin) fclose(r->f);
  r->f = NULL;
  return -1;
}

int shadow_capture_reader_next(shadow_capture_reader_t *r, const char **line,
                               size_t *len, char **err) {
  size_t max = r->max_line ? r->max_line : SHADOW_CAPTURE_MAX_LINE;
  if (!r->blk && !(r->blk = malloc(READ_BLOCK))) {
    *err = strdup("out of memory");
    return -1;
  }
  for (;;) {
    if (!r->f) {
      if (r->next >= r->npaths) return 0;
      r->path = r->paths[r->next++];
      r->line = 0;
      r->bpos = r->bend = 0;
      r->f = strcmp(r->path, "-") == 0 ? stdin : fopen(r->path, "rb");
      if (!r->f) {
        shadow_buf_t b = SHADOW_BUF_INIT;
        shadow_buf_printf(&b, "%s: %s", r->path, strerror(errno));
        *err = shadow_buf_steal(&b, NULL);
        return -1;
      }
    }
    /* The line's bytes are kept up to max; past it they are only
     * counted, so a line of any length costs one block of memory. */
    size_t k = 0;
    uint64_t total = 0;
    int any = 0, over = 0, newline = 0;
    for (;;) {
      if (r->bpos == r->bend) {
        ssize_t n = fill_block(r);
        if (n < 0) return read_failed(r, err);
        if (n == 0) break;
        r->bpos = 0;
        r->bend = (size_t)n;
      }
      any = 1;
      const char *s = r->blk + r->bpos;
      size_t avail = r->bend - r->bpos;
      const char *nl = memchr(s, '\n', avail);
      size_t take = nl ? (size_t)(nl - s) : avail;
      total += take;
      if (!over && k + take > max) over = 1;
      if (!over) {
        if (k + take + 1 > r->cap) {
          size_t cap = r->cap ? r->cap : 256;
          while (cap < k + take + 1)
            cap *= 2;
          if (cap > max + 1) cap = max + 1;
          char *nb = realloc(r->buf, cap);
          if (!nb) {
            *err = strdup("out of memory");
            return -1;
          }
          r->buf = nb;
          r->cap = cap;
        }
        memcpy(r->buf + k, s, take);
        k += take;
      }
      r->bpos += take + (nl ? 1 : 0);
      if (nl) {
        total++;
        newline = 1;
        break;
      }
    }
    if (!any) { /* the end of this file */
      if (r->f != stdin) fclose(r->f);
      r->f = NULL;
      continue;
    }
    r->line++;
    r->bytes_read += total;
    if (over) {
      *line = NULL;
      *len = (size_t)(total - (uint64_t)newline);
      return 2;
    }
    if (k && r->buf[k - 1] == '\r') k--;
    r->buf[k] = '\0';
    *line = r->buf;
    *len = k;
    return 1;
  }
}

size_t shadow_capture_line_bound(const struct shadow_config_s *cfg) {
  /* Each byte of a body or a head is at worst 6 once escaped ("\u0001"),
   * a base64 body 4/3; the line's own fields and framing are small. */
  uint64_t bodies = 2 * (uint64_t)cfg->capture.body_bytes;
  uint64_t heads = (uint64_t)cfg->limits.header_bytes +
                   (uint64_t)cfg->primary.opts.header_bytes;
  uint64_t n = 6 * (bodies + heads) + 64 * 1024;
  if (n < SHADOW_CAPTURE_MAX_LINE) n = SHADOW_CAPTURE_MAX_LINE;
  return n > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)n;
}

int shadow_capture_size_parse(const char *s, size_t *out) {
  char *end;
  errno = 0;
  if (!s || *s < '0' || *s > '9') return -EINVAL;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return -EINVAL;
  int shift = 0;
  if (*end == 'K' || *end == 'k') shift = 10;
  if (*end == 'M' || *end == 'm') shift = 20;
  if (*end == 'G' || *end == 'g') shift = 30;
  if (shift) end++;
  if (*end || v > (16ull << 30) >> shift) return -EINVAL;
  v <<= shift;
  if (v < 1024) return -EINVAL;
  *out = (size_t)v;
  return 0;
}

void shadow_capture_reader_close(shadow_capture_reader_t *r) {
  if (r->f && r->f != stdin) fclose(r->f);
  r->f = NULL;
  free(r->buf);
  r->buf = NULL;
  free(r->blk);
  r->blk = NULL;
}
