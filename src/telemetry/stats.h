/* Counters, per-route and per-field tallies, latency histograms, and their
 * two renderings: the /stats JSON and the Prometheus text of /metrics.
 * Lives in C so it survives reloads. */
#ifndef SHADOW_STATS_H
#define SHADOW_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "diff.h"
#include "field.h"
#include "noise_table.h"
#include "verdict.h"

/* A string-keyed family of counters (one metric's label values). Bounded:
 * past max_keys new names count under "other", so a hostile or buggy route
 * hook cannot grow memory without end. */
typedef struct shadow_counters_s shadow_counters_t;

/* A name is counted as valid UTF-8 without control characters (each bad
 * byte a U+FFFD) and of at most this many bytes (cut, with an ellipsis),
 * so every label value on /metrics is one Prometheus accepts. */
#define SHADOW_COUNTER_NAME_MAX 512

shadow_counters_t *shadow_counters_new(size_t max_keys);
/* The same, for names that are keys and never shown as labels (replay's
 * "route\x1ffield" table): counted byte for byte, no cleaning. */
shadow_counters_t *shadow_counters_new_raw(size_t max_keys);
void shadow_counters_free(shadow_counters_t *c);
void shadow_counters_add(shadow_counters_t *c, const char *name, size_t len,
                         uint64_t n);
uint64_t shadow_counters_get(const shadow_counters_t *c, const char *name);
/* Sets every count to 0 and keeps the names (a new counting window: a rule
 * that never fires still shows, at 0). */
void shadow_counters_zero(shadow_counters_t *c);
/* 1 and *pos (the name's position in insertion order) when name is there. */
int shadow_counters_find(const shadow_counters_t *c, const char *name,
                         uint64_t *pos);
size_t shadow_counters_max(const shadow_counters_t *c);
/* Calls fn for each entry in insertion order. */
void shadow_counters_each(const shadow_counters_t *c,
                          void (*fn)(void *ud, const char *name, uint64_t n),
                          void *ud);

#define SHADOW_HIST_BUCKETS 14
typedef struct shadow_hist_s {
  uint64_t buckets[SHADOW_HIST_BUCKETS]; /* cumulative at render time */
  uint64_t count;
  double sum; /* seconds */
} shadow_hist_t;

/* Upper bounds of the buckets, in seconds. */
extern const double shadow_hist_bounds[SHADOW_HIST_BUCKETS];

void shadow_hist_observe(shadow_hist_t *h, double seconds);

/* A log-bucketed latency histogram, for percentiles: SHADOW_LHIST_SUB
 * buckets per doubling from 1 microsecond, so a percentile read from it
 * is within 2^(1/16) - 1 (4.4%) of the true one (it reports the bucket's
 * geometric middle, clamped to the least and greatest value seen). Bucket
 * 0 holds what is under 1 us, the last one what is over 2^28 us (268 s).
 * 1.8 KiB each: four per route. */
#define SHADOW_LHIST_SUB 8
#define SHADOW_LHIST_OCTAVES 28
#define SHADOW_LHIST_BUCKETS (SHADOW_LHIST_SUB * SHADOW_LHIST_OCTAVES + 2)
typedef struct shadow_lhist_s {
  uint64_t n;
  double min_s, max_s, sum_s;
  uint64_t b[SHADOW_LHIST_BUCKETS];
} shadow_lhist_t;

void shadow_lhist_observe(shadow_lhist_t *h, double seconds);
/* The q-quantile (0 < q <= 1, nearest rank) in seconds; 0 when empty. */
double shadow_lhist_quantile(const shadow_lhist_t *h, double q);

/* What a route's latencies are kept as: to the first byte and to the last
 * byte, primary and candidate, over the sampled exchanges whose leg ended
 * well. */
enum {
  SHADOW_LAT_PRIMARY_FIRST = 0,
  SHADOW_LAT_PRIMARY_LAST,
  SHADOW_LAT_CANDIDATE_FIRST,
  SHADOW_LAT_CANDIDATE_LAST,
  SHADOW_LAT_COUNT
};

/* Status classes of the primary x candidate matrix: 0 is a status out of
 * 100..599, 1..5 the 1xx..5xx classes, 6 a leg that failed (no status). */
#define SHADOW_STATUS_CLASSES 7
#define SHADOW_STATUS_ERROR 6
int shadow_status_class(int status);

/* Fields kept per route (folded, see shadow_field_fold); past it "other". */
#define SHADOW_ROUTE_FIELDS_MAX 64

typedef struct shadow_route_stats_s {
  uint64_t sampled, compared, diverged;
  uint64_t parts[3]; /* status, headers, body */
  /* Body divergences by how the bodies were compared (shadow_body_kind_t):
   * a "digest" one cannot say which field differs, or whether only the
   * key order did. */
  uint64_t body_kinds[SHADOW_BODY_KINDS];
  /* Pairs by primary class (row) and candidate class (column). */
  uint64_t classes[SHADOW_STATUS_CLASSES][SHADOW_STATUS_CLASSES];
  shadow_counters_t *fields; /* folded fields that differed, or NULL */
  shadow_lhist_t *latency;   /* SHADOW_LAT_COUNT of them, or NULL */
  uint64_t noise_compared;   /* primary/secondary pairs compared */
  uint64_t noise_suppressed; /* divergences only in noise fields */
  /* Pairs compared raw because a normalize call failed on one side. */
  uint64_t compared_raw;
  /* Pairs compared since noise was first learned: what the noise table's
   * counts are judged against. A POST /stats/reset that keeps the learned
   * noise keeps this too, so the learned counts never outnumber it. */
  uint64_t learn_compared;
} shadow_route_stats_t;

/* The last error of one Lua hook, for /stats and the dashboard: a log
 * line is not the only place a failing hook shows. */
#define SHADOW_HOOK_ERROR_MAX 240
typedef struct shadow_hook_error_s {
  uint64_t count;
  double last_ms; /* wall time of the last error; 0: none */
  char last[SHADOW_HOOK_ERROR_MAX + 1];
} shadow_hook_error_t;

/* What one sampled exchange showed, for the per-route views. A status of
 * -1 is a leg that failed; 0 one that did not run (or was cancelled); a
 * latency below 0 is unknown. */
typedef struct shadow_exchange_obs_s {
  int primary_status, candidate_status;
  double ms[SHADOW_LAT_COUNT];
} shadow_exchange_obs_t;

/* The divergence rate over the last minutes: compared and diverged pairs
 * per SHADOW_HISTORY_STEP_S seconds, for SHADOW_HISTORY_SLOTS steps. */
#define SHADOW_HISTORY_SLOTS 120
#define SHADOW_HISTORY_STEP_S 5
typedef struct shadow_history_slot_s {
  int64_t step; /* wall seconds / SHADOW_HISTORY_STEP_S; 0 = never used */
  uint64_t compared, diverged;
} shadow_history_slot_t;

/* The objectives the verdict is judged against (slo.*). */
typedef struct shadow_slo_s {
  double max_divergence_rate;
  uint64_t min_samples;
  double max_latency_ratio; /* 0: no latency objective */
} shadow_slo_t;

struct shadow_sink_s;
struct shadow_signatures_s;
struct shadow_fleet_s;
struct shadow_store_s;

typedef struct shadow_stats_s {
  uint64_t requests, sampled, compared, diverged;
  uint64_t primary_errors;
  uint64_t responses_cut; /* primary failures after the head went out */
  uint64_t tunnels;       /* upgrades the primary accepted (101) */
  int64_t tunnels_open;   /* of those, still open */
  /* Clients turned away at limits.max_connections or by an accept error
   * (out of file descriptors), and upgrades at limits.max_tunnels. */
  uint64_t connections_rejected, tunnels_rejected;
  /* Request-body copies held now, against limits.copy_memory_bytes. */
  uint64_t copy_bytes;
  shadow_counters_t *candidate_errors; /* by reason */
  shadow_counters_t *skipped;          /* by reason */
  shadow_counters_t *script_errors;    /* by hook */
  shadow_counters_t *reloads;          /* by result */
  shadow_counters_t *fields;           /* differing fields */
  /* Comparisons in which each JSON rule decided something, by the rule's
   * name ("coerce:/qty"); every rule of a loaded config is there, at 0
   * until it fires, so a dead rule shows. */
  shadow_counters_t *rule_hits;
  shadow_counters_t *route_names; /* name -> index into routes */
  shadow_route_stats_t *routes;
  size_t nroutes, routes_cap;
  shadow_hist_t primary_latency, candidate_latency;
  /* The same legs as the per-route ones, over all routes. */
  shadow_lhist_t latency[SHADOW_LAT_COUNT];
  uint64_t classes[SHADOW_STATUS_CLASSES][SHADOW_STATUS_CLASSES];
  shadow_history_slot_t history[SHADOW_HISTORY_SLOTS];
  /* Rendered with the counters when set (owned elsewhere). */
  struct shadow_sink_s *sink;
  /* capture: lines handed to its sink, exchanges chosen for it that were
   * not written (by reason), and the sink (NULL: no capture.file). */
  uint64_t captured;
  shadow_counters_t *capture_skipped;
  struct shadow_sink_s *capture_sink;
  /* HTTP/2 clients' bad input answered with GOAWAY or RST_STREAM and an
   * error code, by reason ("bad_preface", "reset_flood", ...). */
  shadow_counters_t *h2_errors;
  struct shadow_signatures_s *signatures;
  /* Time spent in each Lua hook, and its errors, by the index of its
   * name. */
  shadow_hist_t *hook_time;
  shadow_hook_error_t *hook_errors;
  /* Pairs compared raw because normalize failed on one side. */
  uint64_t compared_raw;
  /* Failed reloads in this window, and the last one's time (0: none) and
   * error, kept when a later reload succeeds. */
  uint64_t reloads_failed;
  double last_failed_reload_ms;
  char *last_failed_reload_error;
  /* When this counting window began: the start, or POST /stats/reset. */
  double window_start_ms;
  const char *const *hook_names;
  size_t nhooks;
  int breaker_open;
  const char *breaker_state; /* "closed", "open", "half-open" */
  /* The secondary (noise cancellation): its breaker, its failures by
   * reason, and the primary/secondary pairs compared. */
  const char *secondary_breaker_state;
  shadow_counters_t *secondary_errors;
  uint64_t noise_compared;
  uint64_t noise_suppressed; /* divergences only in fields classed noise */
  shadow_noise_table_t *noise;
  /* The last reload: when, and its error (NULL if it succeeded). */
  double last_reload_ms;
  const char *last_reload_result; /* "ok", "error", "unchanged" */
  char *last_reload_error;
  unsigned generation;
  /* The generation each event loop runs: a reload reaches the worker
   * loops one by one, each on its own thread. */
  unsigned *loop_generation;
  size_t nloops;
  /* With a fleet store: the store (its state for /stats and /metrics)
   * and the fleet's counts as last read back (fleet.h), which the views,
   * the verdict and the noise classes read unless ?scope=local. Both NULL
   * without a store; the store swaps fleet under the shared lock. */
  struct shadow_store_s *store;
  struct shadow_fleet_s *fleet;
  int fleet_view; /* this is a fleet's counts, not an instance's */
} shadow_stats_t;

/* hook_names (static strings) name the nhooks hooks whose time is kept,
 * by index. */
shadow_stats_t *shadow_stats_new(const char *const *hook_names, size_t nhooks);
/* Room for the generations of nloops loops, each at 1. 0 or -ENOMEM. */
int shadow_stats_set_loops(shadow_stats_t *s, size_t nloops);
void shadow_stats_free(shadow_stats_t *s);
/* A hook failed at wall time now_ms with msg (its first line is kept, cut
 * to SHADOW_HOOK_ERROR_MAX bytes). hook is an index into hook_names. */
void shadow_stats_hook_error(shadow_stats_t *s, int hook, const char *msg,
                             double now_ms);
/* Starts a new counting window at now_ms: every counter, the per-route and
 * per-field views, the hook times and errors, the history and the
 * signatures back to 0 (names kept). The learned noise is kept unless
 * forget_noise. The generation, the breaker states and the last reload
 * are state, not counts, and stay. */
void shadow_stats_reset(shadow_stats_t *s, double now_ms, int forget_noise);
/* The route's entry, created on first use (bounded like counters). */
shadow_route_stats_t *shadow_stats_route(shadow_stats_t *s, const char *name,
                                         size_t len);
/* result: "ok", "error" (with error) or "unchanged". */
void shadow_stats_set_reload(shadow_stats_t *s, double when_ms,
                             const char *result, const char *error);

/* Counts the exchange's statuses and latencies for its route (and over
 * all routes). */
void shadow_stats_observe(shadow_stats_t *s, shadow_route_stats_t *r,
                          const shadow_exchange_obs_t *obs);
/* Counts a compared pair in the rate's history, at wall time now_ms. */
void shadow_stats_history_add(shadow_stats_t *s, double now_ms, int diverged);
/* Counts one divergence's folded fields (NUL-separated, each once) for
 * its route and over all. */
void shadow_stats_add_fields(shadow_stats_t *s, shadow_route_stats_t *r,
                             const char *fields, size_t nfields);

/* The verdict for a route (r) or overall (r NULL): the engine's rule on
 * the counts (engine/verdict.h), then hold when the candidate's p99 to the
 * last byte exceeds max_latency_ratio times the primary's, once both have
 * min_samples timings (at least 1). */
void shadow_stats_verdict(const shadow_stats_t *s,
                          const shadow_route_stats_t *r,
                          const shadow_slo_t *slo, shadow_verdict_t *v);

/* /stats, with the verdict overall and per route. now_ms places the
 * history. */
/* A verdict as the JSON object /stats and replay's summary show. */
void shadow_verdict_render_json(shadow_buf_t *out, const shadow_verdict_t *v);
int shadow_stats_render_json(const shadow_stats_t *s, shadow_buf_t *out,
                             const shadow_slo_t *slo, double now_ms);
int shadow_stats_render_prometheus(const shadow_stats_t *s, shadow_buf_t *out,
                                   const shadow_slo_t *slo);

#endif
