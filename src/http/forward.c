/* The forwarding rule (see forward.h). Connection's tokens are read once
 * per request into a small list; a request with more tokens than that list
 * holds is unusual enough that the rest are matched by a scan. */
#include "forward.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define MAX_TOKENS 16

typedef struct span_s {
  const char *s;
  size_t n;
} span_t;

static int is_ows(char c) {
  return c == ' ' || c == '\t';
}

/* Calls fn for each comma-separated, trimmed, non-empty element of v. */
static void each_element(const char *v, size_t n,
                         void (*fn)(void *ud, const char *s, size_t n),
                         void *ud) {
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && v[j] != ',')
      j++;
    size_t a = i, b = j;
    while (a < b && is_ows(v[a]))
      a++;
    while (b > a && is_ows(v[b - 1]))
      b--;
    if (b > a) fn(ud, v + a, b - a);
    i = j + 1;
  }
}

typedef struct tokens_s {
  span_t v[MAX_TOKENS];
  size_t n;
  int overflow;
} tokens_t;

static void add_token(void *ud, const char *s, size_t n) {
  tokens_t *t = ud;
  if (t->n < MAX_TOKENS)
    t->v[t->n++] = (span_t){s, n};
  else
    t->overflow = 1;
}

typedef struct find_s {
  const char *name;
  size_t len;
  int found;
} find_t;

static void match_token(void *ud, const char *s, size_t n) {
  find_t *f = ud;
  if (n == f->len && strncasecmp(s, f->name, n) == 0) f->found = 1;
}

/* Whether name is one of the tokens in the request's Connection headers. */
static int named_in_connection(const shadow_headers_t *in, const tokens_t *t,
                               const char *name, size_t len) {
  for (size_t i = 0; i < t->n; i++)
    if (t->v[i].n == len && strncasecmp(t->v[i].s, name, len) == 0) return 1;
  if (!t->overflow) return 0;
  find_t f = {name, len, 0};
  for (size_t i = 0; i < in->n && !f.found; i++)
    if (shadow_header_name_is(&in->v[i], "connection"))
      each_element(in->v[i].value, in->v[i].value_len, match_token, &f);
  return f.found;
}

int shadow_forward_aliases_framing(const char *name, size_t len) {
  if (!memchr(name, '_', len)) return 0;
  char folded[64] = {0};
  if (len >= sizeof(folded)) return 0;
  for (size_t i = 0; i < len; i++)
    folded[i] = name[i] == '_' ? '-' : name[i];
  if (shadow_header_is_hop(folded, len)) return 1;
  return len == 4 && strncasecmp(folded, "host", 4) == 0;
}

static int reserved(const shadow_forward_t *f, const shadow_header_t *h) {
  for (size_t i = 0; f->reserved && f->reserved[i]; i++)
    if (shadow_header_name_is(h, f->reserved[i])) return 1;
  return 0;
}

int shadow_forward_headers(const shadow_headers_t *in,
                           const shadow_forward_t *f, shadow_headers_t *out) {
  shadow_headers_clear(out);
  tokens_t conn = {.n = 0, .overflow = 0};
  for (size_t i = 0; i < in->n; i++)
    if (shadow_header_name_is(&in->v[i], "connection"))
      each_element(in->v[i].value, in->v[i].value_len, add_token, &conn);
  int forwarded = f && f->proto;
  /* X-Forwarded-For: every client value in order, then the peer. */
  shadow_buf_t xff = SHADOW_BUF_INIT;
  int rc = 0;
  for (size_t i = 0; i < in->n && rc == 0; i++) {
    const shadow_header_t *h = &in->v[i];
    if (shadow_header_is_hop(h->name, h->name_len) ||
        shadow_forward_aliases_framing(h->name, h->name_len) ||
        named_in_connection(in, &conn, h->name, h->name_len) ||
        (f && reserved(f, h)))
      continue;
    if (forwarded && shadow_header_name_is(h, "x-forwarded-for")) {
      if (xff.len) rc |= shadow_buf_append(&xff, ", ", 2);
      rc |= shadow_buf_append(&xff, h->value, h->value_len);
      continue;
    }
    if (forwarded && shadow_header_name_is(h, "x-forwarded-proto")) continue;
    rc = shadow_headers_add(out, h->name, h->name_len, h->value, h->value_len);
  }
  if (rc == 0 && forwarded) {
    if (f->peer && f->peer[0]) {
      if (xff.len) rc |= shadow_buf_append(&xff, ", ", 2);
      rc |= shadow_buf_puts(&xff, f->peer);
    }
    if (rc == 0 && xff.len)
      rc = shadow_headers_add(out, "X-Forwarded-For", 15, xff.data, xff.len);
    if (rc == 0)
      rc = shadow_headers_add(out, "X-Forwarded-Proto", 17, f->proto,
                              strlen(f->proto));
  }
  shadow_buf_free(&xff);
  return rc ? -ENOMEM : 0;
}
