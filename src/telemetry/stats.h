/* Counters, per-route and per-field tallies, latency histograms, and their
 * two renderings: the /stats JSON and the Prometheus text of /metrics.
 * Lives in C so it survives reloads. */
#ifndef SHADOW_STATS_H
#define SHADOW_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "diff.h"
#include "verdict.h"

/* A string-keyed family of counters (one metric's label values). Bounded:
 * past max_keys new names count under "other", so a hostile or buggy route
 * hook cannot grow memory without end. */
typedef struct shadow_counters_s shadow_counters_t;

shadow_counters_t *shadow_counters_new(size_t max_keys);
void shadow_counters_free(shadow_counters_t *c);
void shadow_counters_add(shadow_counters_t *c, const char *name, size_t len,
                         uint64_t n);
uint64_t shadow_counters_get(const shadow_counters_t *c, const char *name);
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

typedef struct shadow_route_stats_s {
  uint64_t sampled, compared, diverged;
  uint64_t parts[3]; /* status, headers, body */
  /* Body divergences by how the bodies were compared (shadow_body_kind_t):
   * a "digest" one cannot say which field differs, or whether only the
   * key order did. */
  uint64_t body_kinds[SHADOW_BODY_KINDS];
} shadow_route_stats_t;

typedef struct shadow_stats_s {
  uint64_t requests, sampled, compared, diverged;
  uint64_t primary_errors;
  uint64_t responses_cut; /* primary failures after the head went out */
  uint64_t tunnels;       /* upgrades the primary accepted (101) */
  int64_t tunnels_open;   /* of those, still open */
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
  /* Time spent in each Lua hook, by the index of its name. */
  shadow_hist_t *hook_time;
  const char *const *hook_names;
  size_t nhooks;
  int breaker_open;
  const char *breaker_state; /* "closed", "open", "half-open" */
  /* The last reload: when, and its error (NULL if it succeeded). */
  double last_reload_ms;
  const char *last_reload_result; /* "ok", "error", "unchanged" */
  char *last_reload_error;
  unsigned generation;
  /* The generation each event loop runs: a reload reaches the worker
   * loops one by one, each on its own thread. */
  unsigned *loop_generation;
  size_t nloops;
} shadow_stats_t;

/* hook_names (static strings) name the nhooks hooks whose time is kept,
 * by index. */
shadow_stats_t *shadow_stats_new(const char *const *hook_names, size_t nhooks);
/* Room for the generations of nloops loops, each at 1. 0 or -ENOMEM. */
int shadow_stats_set_loops(shadow_stats_t *s, size_t nloops);
void shadow_stats_free(shadow_stats_t *s);
/* The route's entry, created on first use (bounded like counters). */
shadow_route_stats_t *shadow_stats_route(shadow_stats_t *s, const char *name,
                                         size_t len);
/* result: "ok", "error" (with error) or "unchanged". */
void shadow_stats_set_reload(shadow_stats_t *s, double when_ms,
                             const char *result, const char *error);

/* /stats, with the verdict (engine/verdict.h) overall and per route. */
int shadow_stats_render_json(const shadow_stats_t *s, shadow_buf_t *out,
                             double slo_budget, uint64_t slo_min_samples);
int shadow_stats_render_prometheus(const shadow_stats_t *s, shadow_buf_t *out);

#endif
