/* What every worker loop shares: the counters, the ring log, the
 * divergence signatures, the NDJSON sink, and the breakers and in-flight
 * counts of the candidate and the secondary. With one loop (the default)
 * nothing is locked; with
 * --workers N the one mutex guards it all. Updates are short and happen a few
 * times per request, so one uncontended lock costs less than merging per-worker
 * copies would. */
#ifndef SHADOW_SHARED_H
#define SHADOW_SHARED_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "breaker.h"
#include "config.h"
#include "ring.h"
#include "signatures.h"
#include "sink.h"
#include "stats.h"

/* The shadow legs, each kind behind its own breaker and in-flight cap, so
 * a failing secondary never stops the candidate, nor the reverse. */
typedef enum {
  SHADOW_GATE_CANDIDATE = 0,
  SHADOW_GATE_SECONDARY,
  SHADOW_GATES
} shadow_gate_id_t;

typedef struct shadow_gate_s {
  shadow_breaker_t breaker;
  size_t inflight; /* legs in flight, all loops */
} shadow_gate_t;

typedef struct shadow_shared_s {
  uv_mutex_t mu;
  int threaded;
  shadow_stats_t *stats;
  shadow_ring_t *ring;
  shadow_gate_t gates[SHADOW_GATES];
  uint64_t next_id; /* divergence ids, unique across loops */
  /* Upgrade requests open, their tunnels included (limits.max_tunnels). */
  size_t upgrades;
  shadow_signatures_t *signatures;
  /* log.file's writer, or NULL; it has a lock and a thread of its own, so
   * a push under mu never waits for the disk. */
  shadow_sink_t *sink;
  /* capture.file's writer, or NULL: a second sink, with its own rotation
   * settings (capture.h). */
  shadow_sink_t *capture;
  uint64_t next_capture_id; /* capture line ids, unique across loops */
} shadow_shared_t;

/* Creates the shared state for the first config. 0, or -1 and *err. */
int shadow_shared_init(shadow_shared_t *sh, const shadow_config_t *cfg,
                       size_t loops, char **err);
/* Applies a reloaded config: ring capacity, sink file and rotation,
 * the capture file and its rotation, breaker settings.
 * 0, or -1 and *err with nothing changed. Takes the lock itself. */
int shadow_shared_apply(shadow_shared_t *sh, const shadow_config_t *cfg,
                        char **err);
void shadow_shared_flush(shadow_shared_t *sh);
/* Closes and reopens log.file and capture.file (SIGUSR1, after an
 * outside rotation). */
void shadow_shared_reopen(shadow_shared_t *sh);
void shadow_shared_release(shadow_shared_t *sh);

static inline void shadow_shared_lock(shadow_shared_t *sh) {
  if (sh->threaded) uv_mutex_lock(&sh->mu);
}

static inline void shadow_shared_unlock(shadow_shared_t *sh) {
  if (sh->threaded) uv_mutex_unlock(&sh->mu);
}

#endif
