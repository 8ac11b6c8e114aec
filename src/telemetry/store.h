/* The fleet store: every flush_ms, this instance's counts since the last
 * applied flush go to Redis in one pipeline (a script applied at most
 * once), and the fleet's counts come back into a shadow_fleet_t (fleet.h) that
 * the views, the verdict and the noise classes read. Runs on the main loop;
 * reads and swaps the shared state only through the owner's lock. A store that
 * is down, slow or full never makes a request wait: the deltas stay implicit
 * (this instance's counts less what was sent) up to max_pending, then are
 * dropped and counted. */
#ifndef SHADOW_STORE_H
#define SHADOW_STORE_H

#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "ring.h"
#include "stats.h"
#include "store_cfg.h"

typedef struct shadow_store_s shadow_store_t;

typedef struct shadow_store_owner_s {
  shadow_stats_t *stats;
  shadow_ring_t *(*ring)(void *ud); /* the local divergence records */
  void (*lock)(void *ud);
  void (*unlock)(void *ud);
  void *ud;
} shadow_store_owner_t;

/* Starts connecting (never blocks). 0, or -1 and *err. */
int shadow_store_start(uv_loop_t *loop, const shadow_store_cfg_t *cfg,
                       const shadow_store_owner_t *owner, shadow_store_t **out,
                       char **err);
/* Whether cfg is the store already running (a reload keeps it). */
int shadow_store_same(const shadow_store_t *s, const shadow_store_cfg_t *cfg);
/* The ring capacity the stream is trimmed to (log.capacity). */
void shadow_store_set_log_capacity(shadow_store_t *s, size_t capacity);
/* Stops: detaches the fleet view from the stats (under the lock) and
 * closes the connection. NULL is fine. */
void shadow_store_stop(shadow_store_t *s);
/* POST /stats/reset?scope=fleet: a new epoch for the whole fleet, sent
 * with the next flush (now, when idle). 0, or -ENOTCONN when the store is
 * not connected. */
int shadow_store_reset_fleet(shadow_store_t *s);

/* The "store" object of /stats, and the shadow_store_* metrics. */
void shadow_store_render_json(const shadow_store_t *s, shadow_buf_t *out);
void shadow_store_render_prometheus(const shadow_store_t *s, shadow_buf_t *out);

#endif
