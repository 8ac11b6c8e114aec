#include "record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int shadow_headers_add(shadow_headers_t *h, const char *name, size_t name_len,
                       const char *value, size_t value_len) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    shadow_header_t *v = realloc(h->v, cap * sizeof(*v));
    if (!v) return -ENOMEM;
    h->v = v;
    h->cap = cap;
  }
  /* One allocation: "name\0value\0". */
  char *mem = malloc(name_len + value_len + 2);
  if (!mem) return -ENOMEM;
  memcpy(mem, name, name_len);
  mem[name_len] = '\0';
  memcpy(mem + name_len + 1, value, value_len);
  mem[name_len + 1 + value_len] = '\0';
  shadow_header_t *e = &h->v[h->n++];
  e->name = mem;
  e->name_len = name_len;
  e->value = mem + name_len + 1;
  e->value_len = value_len;
  h->bytes += name_len + value_len;
  return 0;
}

int shadow_headers_extend_last(shadow_headers_t *h, const char *more,
                               size_t len, int to_name) {
  if (h->n == 0) return -EINVAL;
  shadow_header_t *e = &h->v[h->n - 1];
  size_t nl = e->name_len + (to_name ? len : 0);
  size_t vl = e->value_len + (to_name ? 0 : len);
  char *mem = malloc(nl + vl + 2);
  if (!mem) return -ENOMEM;
  memcpy(mem, e->name, e->name_len);
  if (to_name) memcpy(mem + e->name_len, more, len);
  mem[nl] = '\0';
  memcpy(mem + nl + 1, e->value, e->value_len);
  if (!to_name) memcpy(mem + nl + 1 + e->value_len, more, len);
  mem[nl + 1 + vl] = '\0';
  free(e->name);
  e->name = mem;
  e->name_len = nl;
  e->value = mem + nl + 1;
  e->value_len = vl;
  h->bytes += len;
  return 0;
}

int shadow_header_name_is(const shadow_header_t *h, const char *lower) {
  size_t n = strlen(lower);
  return h->name_len == n && strncasecmp(h->name, lower, n) == 0;
}

const shadow_header_t *shadow_headers_find(const shadow_headers_t *h,
                                           const char *name) {
  for (size_t i = 0; i < h->n; i++)
    if (shadow_header_name_is(&h->v[i], name)) return &h->v[i];
  return NULL;
}

int shadow_headers_copy(shadow_headers_t *dst, const shadow_headers_t *src) {
  for (size_t i = 0; i < src->n; i++) {
    const shadow_header_t *e = &src->v[i];
    int rc = shadow_headers_add(dst, e->name, e->name_len, e->value,
                                e->value_len);
    if (rc) return rc;
  }
  return 0;
}

void shadow_headers_clear(shadow_headers_t *h) {
  for (size_t i = 0; i < h->n; i++) free(h->v[i].name);
  h->n = 0;
  h->bytes = 0;
}

void shadow_headers_free(shadow_headers_t *h) {
  shadow_headers_clear(h);
  free(h->v);
  h->v = NULL;
  h->cap = 0;
}

int shadow_header_is_hop(const char *name, size_t len) {
  static const char *const hop[] = {
      "connection", "keep-alive", "transfer-encoding", "content-length",
      "te",         "trailer",    "upgrade",           NULL};
  if (len >= 6 && strncasecmp(name, "proxy-", 6) == 0) return 1;
  for (size_t i = 0; hop[i]; i++)
    if (strlen(hop[i]) == len && strncasecmp(name, hop[i], len) == 0)
      return 1;
  return 0;
}

void shadow_record_init(shadow_record_t *r) {
  memset(r, 0, sizeof(*r));
}

shadow_record_t *shadow_record_new(void) {
  return calloc(1, sizeof(shadow_record_t));
}

void shadow_record_clear(shadow_record_t *r) {
  r->status = 0;
  shadow_headers_clear(&r->headers);
  shadow_buf_reset(&r->body);
}

void shadow_record_release(shadow_record_t *r) {
  shadow_headers_free(&r->headers);
  shadow_buf_free(&r->body);
  r->status = 0;
}

void shadow_record_free(shadow_record_t *r) {
  if (!r) return;
  shadow_record_release(r);
  free(r);
}

int shadow_record_copy(shadow_record_t *dst, const shadow_record_t *src) {
  dst->status = src->status;
  int rc = shadow_headers_copy(&dst->headers, &src->headers);
  if (rc) return rc;
  return shadow_buf_append(&dst->body, src->body.data ? src->body.data : "",
                           src->body.len);
}
