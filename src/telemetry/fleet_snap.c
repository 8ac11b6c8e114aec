/* Named counts (see fleet_snap.h): open addressing on XXH3, names copied
 * into one growing arena per snapshot, freed together. */
#include "fleet_snap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct slot_s {
  uint64_t hash;
  char *name; /* NULL: empty */
  size_t len;
  uint64_t u;
  double d;
} slot_t;

struct shadow_fleet_snap_s {
  slot_t *v;
  size_t cap, len;
};

shadow_fleet_snap_t *shadow_fleet_snap_new(void) {
  shadow_fleet_snap_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->cap = 256;
  s->v = calloc(s->cap, sizeof(*s->v));
  if (!s->v) {
    free(s);
    return NULL;
  }
  return s;
}

void shadow_fleet_snap_free(shadow_fleet_snap_t *s) {
  if (!s) return;
  for (size_t i = 0; i < s->cap; i++)
    free(s->v[i].name);
  free(s->v);
  free(s);
}

size_t shadow_fleet_snap_len(const shadow_fleet_snap_t *s) {
  return s->len;
}

static slot_t *find(slot_t *v, size_t cap, uint64_t h, const char *name,
                    size_t len) {
  size_t i = (size_t)h & (cap - 1);
  while (v[i].name && !(v[i].hash == h && v[i].len == len &&
                        memcmp(v[i].name, name, len) == 0))
    i = (i + 1) & (cap - 1);
  return &v[i];
}

static int grow(shadow_fleet_snap_t *s) {
  size_t cap = s->cap * 2;
  slot_t *v = calloc(cap, sizeof(*v));
  if (!v) return -ENOMEM;
  for (size_t i = 0; i < s->cap; i++)
    if (s->v[i].name)
      *find(v, cap, s->v[i].hash, s->v[i].name, s->v[i].len) = s->v[i];
  free(s->v);
  s->v = v;
  s->cap = cap;
  return 0;
}

int shadow_fleet_snap_put(shadow_fleet_snap_t *s, const char *name, size_t len,
                          uint64_t u, double d) {
  if ((s->len + 1) * 2 > s->cap && grow(s) != 0) return -ENOMEM;
  uint64_t h = XXH3_64bits(name, len);
  slot_t *e = find(s->v, s->cap, h, name, len);
  if (!e->name) {
    e->name = malloc(len ? len : 1);
    if (!e->name) return -ENOMEM;
    memcpy(e->name, name, len);
    e->len = len;
    e->hash = h;
    s->len++;
  }
  e->u = u;
  e->d = d;
  return 0;
}

int shadow_fleet_snap_get(const shadow_fleet_snap_t *s, const char *name,
                          size_t len, uint64_t *u, double *d) {
  slot_t *e = find(s->v, s->cap, XXH3_64bits(name, len), name, len);
  *u = e->name ? e->u : 0;
  *d = e->name ? e->d : 0;
  return e->name != NULL;
}
