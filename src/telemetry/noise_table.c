/* The noise table (see noise_table.h): entries in insertion order, found
 * through an open-addressing index on (route, field). */
#include "noise_table.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "buf.h"

struct shadow_noise_table_s {
  shadow_noise_entry_t *v;
  size_t n, cap, max;
  uint32_t *index; /* entry + 1, or 0 for empty; size is a power of two */
  size_t index_size;
  uint64_t dropped;
};

shadow_noise_table_t *shadow_noise_table_new(size_t max) {
  shadow_noise_table_t *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->max = max;
  return t;
}

void shadow_noise_table_free(shadow_noise_table_t *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) {
    free(t->v[i].route);
    free(t->v[i].field);
  }
  free(t->v);
  free(t->index);
  free(t);
}

static uint64_t key_hash(const char *r, size_t rl, const char *f, size_t fl) {
  return XXH3_64bits_withSeed(f, fl, XXH3_64bits(r, rl));
}

static int same(const shadow_noise_entry_t *e, const char *r, size_t rl,
                const char *f, size_t fl) {
  return strlen(e->route) == rl && memcmp(e->route, r, rl) == 0 &&
         strlen(e->field) == fl && memcmp(e->field, f, fl) == 0;
}

/* The slot where (r, f) is or would go. */
static size_t probe(const shadow_noise_table_t *t, const char *r, size_t rl,
                    const char *f, size_t fl) {
  size_t mask = t->index_size - 1;
  size_t i = (size_t)key_hash(r, rl, f, fl) & mask;
  while (t->index[i] && !same(&t->v[t->index[i] - 1], r, rl, f, fl))
    i = (i + 1) & mask;
  return i;
}

/* Keeps the index at most half full. */
static int grow_index(shadow_noise_table_t *t) {
  if (t->index_size && (t->n + 1) * 2 <= t->index_size) return 0;
  size_t size = t->index_size ? t->index_size * 2 : 64;
  uint32_t *old = t->index;
  size_t old_size = t->index_size;
  t->index = calloc(size, sizeof(*t->index));
  if (!t->index) {
    t->index = old;
    return -1;
  }
  t->index_size = size;
  for (size_t i = 0; i < old_size; i++) {
    if (!old[i]) continue;
    const shadow_noise_entry_t *e = &t->v[old[i] - 1];
    t->index[probe(t, e->route, strlen(e->route), e->field, strlen(e->field))] =
        old[i];
  }
  free(old);
  return 0;
}

shadow_noise_entry_t *shadow_noise_table_get(shadow_noise_table_t *t,
                                             const char *route, size_t rlen,
                                             size_t route_idx,
                                             const char *field, size_t flen,
                                             int create) {
  if (!t) return NULL;
  if (t->index_size) {
    size_t i = probe(t, route, rlen, field, flen);
    if (t->index[i]) return &t->v[t->index[i] - 1];
  }
  if (!create) return NULL;
  if (t->n >= t->max) {
    t->dropped++;
    return NULL;
  }
  if (grow_index(t)) return NULL;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 32;
    shadow_noise_entry_t *v = realloc(t->v, cap * sizeof(*v));
    if (!v) return NULL;
    t->v = v;
    t->cap = cap;
  }
  shadow_noise_entry_t *e = &t->v[t->n];
  memset(e, 0, sizeof(*e));
  e->route = shadow_bytes_dup(route, rlen);
  e->field = shadow_bytes_dup(field, flen);
  if (!e->route || !e->field) {
    free(e->route);
    free(e->field);
    return NULL;
  }
  e->route_idx = route_idx;
  t->index[probe(t, route, rlen, field, flen)] = (uint32_t)++t->n;
  return e;
}

size_t shadow_noise_table_len(const shadow_noise_table_t *t) {
  return t ? t->n : 0;
}

shadow_noise_entry_t *shadow_noise_table_at(shadow_noise_table_t *t, size_t i) {
  return t && i < t->n ? &t->v[i] : NULL;
}

uint64_t shadow_noise_table_dropped(const shadow_noise_table_t *t) {
  return t ? t->dropped : 0;
}
