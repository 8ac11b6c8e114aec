/* The ring log (see ring.h): a fixed array of the newest records, each a
 * copy of its JSON text and route tag. */
#include "ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry_s {
  char *mem; /* "json\0route\0" in one allocation */
  size_t len;
  size_t route_len;
} entry_t;

struct shadow_ring_s {
  entry_t *v;
  size_t cap;
  size_t head; /* where the next push goes */
  size_t len;
  uint64_t pushed;
};

shadow_ring_t *shadow_ring_new(size_t capacity) {
  if (capacity == 0) return NULL;
  shadow_ring_t *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->v = calloc(capacity, sizeof(entry_t));
  if (!r->v) {
    free(r);
    return NULL;
  }
  r->cap = capacity;
  return r;
}

void shadow_ring_free(shadow_ring_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->cap; i++)
    free(r->v[i].mem);
  free(r->v);
  free(r);
}

int shadow_ring_push(shadow_ring_t *r, const char *json, size_t len,
                     const char *route, size_t route_len) {
  if (!route) route_len = 0;
  if (len + route_len + 2 < len) return -ENOMEM;
  char *mem = malloc(len + route_len + 2);
  if (!mem) return -ENOMEM;
  if (len) memcpy(mem, json, len);
  mem[len] = '\0';
  if (route_len) memcpy(mem + len + 1, route, route_len);
  mem[len + 1 + route_len] = '\0';
  entry_t *e = &r->v[r->head];
  free(e->mem); /* the oldest, when the ring is full */
  e->mem = mem;
  e->len = len;
  e->route_len = route_len;
  r->head = (r->head + 1) % r->cap;
  if (r->len < r->cap) r->len++;
  r->pushed++;
  return 0;
}

size_t shadow_ring_len(const shadow_ring_t *r) {
  return r->len;
}
size_t shadow_ring_capacity(const shadow_ring_t *r) {
  return r->cap;
}
uint64_t shadow_ring_pushed(const shadow_ring_t *r) {
  return r->pushed;
}

/* Slot of entry i, 0 = newest. */
static size_t slot(const shadow_ring_t *r, size_t i) {
  return (r->head + r->cap - 1 - i) % r->cap;
}

int shadow_ring_set_capacity(shadow_ring_t *r, size_t capacity) {
  if (capacity == 0) return -EINVAL;
  if (capacity == r->cap) return 0;
  entry_t *v = calloc(capacity, sizeof(entry_t));
  if (!v) return -ENOMEM;
  size_t keep = r->len < capacity ? r->len : capacity;
  /* Lay the kept entries out oldest first from slot 0, so head = keep. */
  for (size_t i = 0; i < keep; i++) {
    entry_t *e = &r->v[slot(r, i)];
    v[keep - 1 - i] = *e;
    e->mem = NULL;
  }
  for (size_t i = 0; i < r->cap; i++)
    free(r->v[i].mem);
  free(r->v);
  r->v = v;
  r->cap = capacity;
  r->len = keep;
  r->head = keep % capacity;
  return 0;
}

const char *shadow_ring_get(const shadow_ring_t *r, size_t i, size_t *len,
                            const char **route, size_t *route_len) {
  if (i >= r->len) return NULL;
  const entry_t *e = &r->v[slot(r, i)];
  if (len) *len = e->len;
  if (route) *route = e->mem + e->len + 1;
  if (route_len) *route_len = e->route_len;
  return e->mem;
}
