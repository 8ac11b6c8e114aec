/* Reads a recorded response, or a bare body, from a file's bytes for the
 * offline `shadowd diff` (see record_parse.h). */
#include "record_parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "json_diff.h"

typedef struct cursor_s {
  const char *s;
  size_t n;
  size_t pos;
  size_t line; /* 1-based, for messages */
} cursor_t;

/* The next line without its CR LF or LF; returns 0 at the end of input. */
static int next_line(cursor_t *c, const char **line, size_t *len) {
  if (c->pos >= c->n) return 0;
  const char *start = c->s + c->pos;
  const char *nl = memchr(start, '\n', c->n - c->pos);
  size_t l = nl ? (size_t)(nl - start) : c->n - c->pos;
  c->pos += l + (nl ? 1 : 0);
  if (l && start[l - 1] == '\r') l--;
  *line = start;
  *len = l;
  c->line++;
  return 1;
}

static int fail(char *err, size_t errlen, const char *what, size_t line) {
  if (err && errlen) snprintf(err, errlen, "line %zu: %s", line, what);
  return -EINVAL;
}

static int parse_status(const char *l, size_t n, int *status) {
  size_t i = 5; /* past "HTTP/" */
  while (i < n && l[i] != ' ')
    i++;
  while (i < n && l[i] == ' ')
    i++;
  if (n - i < 3 || !isdigit((unsigned char)l[i]) ||
      !isdigit((unsigned char)l[i + 1]) || !isdigit((unsigned char)l[i + 2]))
    return -EINVAL;
  if (n - i > 3 && l[i + 3] != ' ') return -EINVAL;
  *status = (l[i] - '0') * 100 + (l[i + 1] - '0') * 10 + (l[i + 2] - '0');
  return *status >= 100 ? 0 : -EINVAL;
}

static int is_tchar(unsigned char c) {
  return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int parse_header(shadow_headers_t *h, const char *l, size_t n) {
  if (n && (l[0] == ' ' || l[0] == '\t')) {
    /* obs-fold: a continuation of the previous value. */
    size_t i = 0;
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
      i++;
    if (h->n == 0) return -EINVAL;
    if (shadow_headers_extend_last(h, " ", 1, 0)) return -ENOMEM;
    return shadow_headers_extend_last(h, l + i, n - i, 0);
  }
  const char *colon = memchr(l, ':', n);
  if (!colon || colon == l) return -EINVAL;
  size_t nl = (size_t)(colon - l);
  for (size_t i = 0; i < nl; i++)
    if (!is_tchar((unsigned char)l[i])) return -EINVAL;
  const char *v = colon + 1;
  size_t vl = n - nl - 1;
  while (vl && (*v == ' ' || *v == '\t'))
    v++, vl--;
  while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
    vl--;
  return shadow_headers_add(h, l, nl, v, vl);
}

/* True when the header's value lists the coding "chunked". */
static int is_chunked(const shadow_headers_t *h) {
  for (size_t i = 0; i < h->n; i++) {
    if (!shadow_header_name_is(&h->v[i], "transfer-encoding")) continue;
    const char *v = h->v[i].value;
    size_t n = h->v[i].value_len;
    for (size_t j = 0; j + 7 <= n; j++)
      if (strncasecmp(v + j, "chunked", 7) == 0) return 1;
  }
  return 0;
}

/* The trailer lines after the last chunk, up to a blank line or the end:
 * what gRPC's grpc-status and grpc-message travel in. */
static int read_trailers(cursor_t *c, shadow_headers_t *t, char *err,
                         size_t errlen) {
  const char *l;
  size_t n;
  while (next_line(c, &l, &n) && n > 0) {
    int rc = parse_header(t, l, n);
    if (rc == -EINVAL) return fail(err, errlen, "bad trailer line", c->line);
    if (rc) return rc;
  }
  return 0;
}

static int dechunk(cursor_t *c, shadow_buf_t *body, shadow_headers_t *t,
                   char *err, size_t errlen) {
  for (;;) {
    const char *l;
    size_t n;
    if (!next_line(c, &l, &n))
      return fail(err, errlen, "chunked body ends early", c->line);
    size_t i = 0, size = 0;
    if (n == 0 || !isxdigit((unsigned char)l[0]))
      return fail(err, errlen, "bad chunk size", c->line);
    for (; i < n && isxdigit((unsigned char)l[i]); i++) {
      if (size > ((size_t)-1 >> 4))
        return fail(err, errlen, "chunk size too large", c->line);
      int d = isdigit((unsigned char)l[i])
                  ? l[i] - '0'
                  : (tolower((unsigned char)l[i]) - 'a' + 10);
      size = size * 16 + (size_t)d;
    }
    if (size == 0) return read_trailers(c, t, err, errlen);
    if (size > c->n - c->pos)
      return fail(err, errlen, "chunk longer than the file", c->line);
    if (shadow_buf_append(body, c->s + c->pos, size)) return -ENOMEM;
    c->pos += size;
    /* The CRLF (or LF) that ends the chunk's data. */
    if (c->pos < c->n && c->s[c->pos] == '\r') c->pos++;
    if (c->pos < c->n && c->s[c->pos] == '\n')
      c->pos++;
    else
      return fail(err, errlen, "chunk data not followed by a line end",
                  c->line);
  }
}

static int parse_response(shadow_record_t *r, cursor_t *c, char *err,
                          size_t errlen) {
  const char *l;
  size_t n;
  next_line(c, &l, &n);
  if (parse_status(l, n, &r->status))
    return fail(err, errlen, "bad status line", c->line);
  for (;;) {
    if (!next_line(c, &l, &n)) return 0; /* headers only, no body */
    if (n == 0) break;
    int rc = parse_header(&r->headers, l, n);
    if (rc == -EINVAL) return fail(err, errlen, "bad header line", c->line);
    if (rc) return rc;
  }
  if (is_chunked(&r->headers))
    return dechunk(c, &r->body, &r->trailers, err, errlen);
  size_t rest = c->n - c->pos, take = rest;
  const shadow_header_t *cl =
      shadow_headers_find(&r->headers, "content-length");
  if (cl) {
    size_t v = 0;
    if (cl->value_len == 0) return fail(err, errlen, "bad content-length", 0);
    for (size_t i = 0; i < cl->value_len; i++) {
      if (!isdigit((unsigned char)cl->value[i]) || v > ((size_t)-1) / 10 - 10)
        return fail(err, errlen, "bad content-length", 0);
      v = v * 10 + (size_t)(cl->value[i] - '0');
    }
    if (v > rest)
      return fail(err, errlen, "body shorter than content-length", c->line);
    take = v;
  }
  return shadow_buf_append(&r->body, c->s + c->pos, take);
}

int shadow_record_parse(shadow_record_t *r, const char *data, size_t len,
                        char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!data) data = "";
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    cursor_t c = {data, len, 0, 0};
    return parse_response(r, &c, err, errlen);
  }
  r->status = 200;
  int rc = shadow_json_validate(data, len);
  if (rc == -ENOMEM) return rc;
  if (rc == 0) {
    static const char ct[] = "application/json";
    rc =
        shadow_headers_add(&r->headers, "content-type", 12, ct, sizeof(ct) - 1);
    if (rc) return rc;
  }
  return shadow_buf_append(&r->body, data, len);
}
