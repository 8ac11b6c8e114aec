/* What the fleet has counted, read back from the store after a flush: a
 * shadow_stats_t built from the fleet's counts (so the same renderers
 * serve it, and the verdict and the noise classes come from it), with its
 * noise table and signatures, and the newest divergence records of every
 * instance. Owned by the store; shadow_stats_t.fleet points at the current
 * one, swapped under the shared lock. */
#ifndef SHADOW_FLEET_H
#define SHADOW_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "stats.h"

typedef struct shadow_fleet_s {
  shadow_stats_t *stats; /* with .noise and .signatures of the fleet */
  shadow_ring_t *ring;   /* newest first, as the stream gave them */
  size_t instances;      /* that reported in the last minute */
  uint64_t epoch;
  double built_ms;
} shadow_fleet_t;

void shadow_fleet_free(shadow_fleet_t *f); /* NULL is fine */

/* The stats a view reads: the fleet's when there is one and local is 0,
 * else s itself. */
static inline shadow_stats_t *shadow_fleet_view(shadow_stats_t *s, int local) {
  return !local && s->fleet ? s->fleet->stats : s;
}

/* --- the counts, as the store's hashes hold them ---------------------- */

/* Field names are parts joined by 0x1f (see fleet_counts.c). */
#define SHADOW_FLEET_SEP '\x1f'

enum {
  SHADOW_FLEET_COUNT = 0, /* an integer the fleet sums (HINCRBY) */
  SHADOW_FLEET_FLOAT = 1, /* a float the fleet sums (HINCRBYFLOAT) */
  SHADOW_FLEET_MAX = 2    /* a value the fleet takes the largest of */
};

typedef void (*shadow_fleet_count_fn)(void *ud, int kind, const char *name,
                                      size_t len, uint64_t u, double d);

/* Calls fn for every count of s that a fleet adds up (and every MAX),
 * each under its field name; zeros are left out. */
void shadow_fleet_counts_walk(const shadow_stats_t *s, shadow_fleet_count_fn fn,
                              void *ud);
/* Adds one field read back from the fleet into f (a fresh stats): a
 * COUNT or MAX as u/d, a FLOAT as d. Unknown names are ignored (a newer
 * instance may send more). */
void shadow_fleet_counts_add(shadow_stats_t *f, int kind, const char *name,
                             size_t len, uint64_t u, double d);
/* After the last add: what cannot be summed is derived (the latency
 * histograms' least and greatest values from their buckets). */
void shadow_fleet_counts_finish(shadow_stats_t *f);

#endif
