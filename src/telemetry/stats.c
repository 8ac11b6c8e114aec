/* The daemon's counters: bounded string-keyed families, per-route tallies
 * (folded fields, status classes, log-bucketed latencies), the divergence
 * rate's recent history, latency histograms and the last reload. The verdict
 * drawn from them is the engine's (verdict.c); their renderings are in
 * stats_render.c. */
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "signatures.h"
#include "utf8.h"

typedef struct entry_s {
  char *name;
  size_t len;
  uint64_t n;
} entry_t;

struct shadow_counters_s {
  entry_t *v; /* insertion order */
  size_t n, cap;
  uint32_t *index; /* open addressing: entry position + 1, 0 = empty */
  size_t index_cap;
  size_t max_keys;
  int raw; /* names are keys, never labels: counted as they are */
};

shadow_counters_t *shadow_counters_new(size_t max_keys) {
  shadow_counters_t *c = calloc(1, sizeof(*c));
  if (c) c->max_keys = max_keys;
  return c;
}

shadow_counters_t *shadow_counters_new_raw(size_t max_keys) {
  shadow_counters_t *c = shadow_counters_new(max_keys);
  if (c) c->raw = 1;
  return c;
}

void shadow_counters_free(shadow_counters_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++)
    free(c->v[i].name);
  free(c->v);
  free(c->index);
  free(c);
}

static size_t slot_of(const shadow_counters_t *c, const char *name,
                      size_t len) {
  size_t mask = c->index_cap - 1;
  size_t i = (size_t)XXH3_64bits(name, len) & mask;
  for (;;) {
    uint32_t e = c->index[i];
    if (e == 0) return i;
    const entry_t *en = &c->v[e - 1];
    if (en->len == len && memcmp(en->name, name, len) == 0) return i;
    i = (i + 1) & mask;
  }
}

static int grow_index(shadow_counters_t *c) {
  size_t cap = c->index_cap ? c->index_cap * 2 : 16;
  uint32_t *idx = calloc(cap, sizeof(*idx));
  if (!idx) return -1;
  free(c->index);
  c->index = idx;
  c->index_cap = cap;
  for (size_t i = 0; i < c->n; i++)
    c->index[slot_of(c, c->v[i].name, c->v[i].len)] = (uint32_t)(i + 1);
  return 0;
}

static long find_or_add(shadow_counters_t *c, const char *name, size_t len);

/* A name as its label: every name is rendered as a Prometheus label value
 * and a JSON string, so bytes that are not UTF-8 (a client's path, a
 * backend's key) are replaced and a long one is cut, before it is counted;
 * names that differ only there count as one. */
static long find_or_add_label(shadow_counters_t *c, const char *name,
                              size_t len) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  long i = shadow_utf8_label(&b, name, len, SHADOW_COUNTER_NAME_MAX)
               ? -1
               : find_or_add(c, b.data ? b.data : "", b.len);
  shadow_buf_free(&b);
  return i;
}

/* The position of name, created if there is room; "other" past the cap. */
static long find_or_add(shadow_counters_t *c, const char *name, size_t len) {
  if (c->index_cap == 0 && grow_index(c)) return -1;
  size_t s = slot_of(c, name, len);
  /* Only labels are stored, so a name found byte for byte is one: the
   * label check (a scan of the name) is for names not counted yet. */
  if (c->index[s]) return (long)c->index[s] - 1;
  if (!c->raw && !shadow_utf8_label_ok(name, len, SHADOW_COUNTER_NAME_MAX))
    return find_or_add_label(c, name, len);
  if (c->n >= c->max_keys) {
    if (len == 5 && memcmp(name, "other", 5) == 0) {
      /* Room is always kept for "other": max_keys counts the rest. */
    } else {
      return find_or_add(c, "other", 5);
    }
  }
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    entry_t *v = realloc(c->v, cap * sizeof(*v));
    if (!v) return -1;
    c->v = v;
    c->cap = cap;
  }
  char *copy = malloc(len + 1);
  if (!copy) return -1;
  memcpy(copy, name, len);
  copy[len] = '\0';
  c->v[c->n] = (entry_t){copy, len, 0};
  c->index[s] = (uint32_t)(c->n + 1);
  c->n++;
  if (c->n * 2 > c->index_cap && grow_index(c)) return -1;
  return (long)c->n - 1;
}

void shadow_counters_add(shadow_counters_t *c, const char *name, size_t len,
                         uint64_t n) {
  long i = find_or_add(c, name, len);
  if (i >= 0) c->v[i].n += n;
}

/* The entry + 1 of name, or 0; name is looked up as it was counted (as
 * its label, unless the family is raw). */
static uint32_t lookup(const shadow_counters_t *c, const char *name) {
  if (!c->index_cap) return 0;
  size_t len = strlen(name);
  if (c->raw || shadow_utf8_label_ok(name, len, SHADOW_COUNTER_NAME_MAX))
    return c->index[slot_of(c, name, len)];
  shadow_buf_t b = SHADOW_BUF_INIT;
  uint32_t e = 0;
  if (shadow_utf8_label(&b, name, len, SHADOW_COUNTER_NAME_MAX) == 0)
    e = c->index[slot_of(c, b.data ? b.data : "", b.len)];
  shadow_buf_free(&b);
  return e;
}

uint64_t shadow_counters_get(const shadow_counters_t *c, const char *name) {
  uint32_t e = lookup(c, name);
  return e ? c->v[e - 1].n : 0;
}

int shadow_counters_find(const shadow_counters_t *c, const char *name,
                         uint64_t *pos) {
  uint32_t e = lookup(c, name);
  if (e) *pos = e - 1;
  return e != 0;
}

void shadow_counters_zero(shadow_counters_t *c) {
  for (size_t i = 0; i < c->n; i++)
    c->v[i].n = 0;
}

size_t shadow_counters_max(const shadow_counters_t *c) {
  return c->max_keys;
}

void shadow_counters_each(const shadow_counters_t *c,
                          void (*fn)(void *ud, const char *name, uint64_t n),
                          void *ud) {
  for (size_t i = 0; i < c->n; i++)
    fn(ud, c->v[i].name, c->v[i].n);
}

const double shadow_hist_bounds[SHADOW_HIST_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,  0.5,    1,     2.5,  5,     10};

void shadow_hist_observe(shadow_hist_t *h, double seconds) {
  for (int i = 0; i < SHADOW_HIST_BUCKETS; i++)
    if (seconds <= shadow_hist_bounds[i]) {
      h->buckets[i]++;
      break;
    }
  h->count++;
  h->sum += seconds;
}

shadow_stats_t *shadow_stats_new(const char *const *hook_names, size_t nhooks) {
  shadow_stats_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->hook_names = hook_names;
  s->nhooks = nhooks;
  s->hook_time = nhooks ? calloc(nhooks, sizeof(*s->hook_time)) : NULL;
  s->hook_errors = nhooks ? calloc(nhooks, sizeof(*s->hook_errors)) : NULL;
  s->candidate_errors = shadow_counters_new(32);
  s->skipped = shadow_counters_new(32);
  s->script_errors = shadow_counters_new(32);
  s->reloads = shadow_counters_new(8);
  s->fields = shadow_counters_new(1000);
  s->rule_hits = shadow_counters_new(512);
  s->route_names = shadow_counters_new(500);
  s->capture_skipped = shadow_counters_new(16);
  s->h2_errors = shadow_counters_new(16);
  s->breaker_state = "closed";
  s->secondary_breaker_state = "closed";
  s->secondary_errors = shadow_counters_new(32);
  s->noise = shadow_noise_table_new(SHADOW_NOISE_FIELDS_MAX);
  if (!s->candidate_errors || !s->secondary_errors || !s->noise ||
      !s->skipped || !s->script_errors || !s->reloads || !s->fields ||
      !s->rule_hits || !s->route_names || !s->capture_skipped ||
      !s->h2_errors || (nhooks && (!s->hook_time || !s->hook_errors))) {
    shadow_stats_free(s);
    return NULL;
  }
  return s;
}

int shadow_stats_set_loops(shadow_stats_t *s, size_t nloops) {
  unsigned *v = calloc(nloops ? nloops : 1, sizeof(*v));
  if (!v) return -ENOMEM;
  for (size_t i = 0; i < nloops; i++)
    v[i] = 1;
  free(s->loop_generation);
  s->loop_generation = v;
  s->nloops = nloops;
  return 0;
}

void shadow_stats_free(shadow_stats_t *s) {
  if (!s) return;
  shadow_counters_free(s->candidate_errors);
  shadow_counters_free(s->secondary_errors);
  shadow_noise_table_free(s->noise);
  shadow_counters_free(s->skipped);
  shadow_counters_free(s->script_errors);
  shadow_counters_free(s->reloads);
  shadow_counters_free(s->fields);
  shadow_counters_free(s->rule_hits);
  shadow_counters_free(s->route_names);
  shadow_counters_free(s->capture_skipped);
  shadow_counters_free(s->h2_errors);
  for (size_t i = 0; i < s->nroutes; i++) {
    shadow_counters_free(s->routes[i].fields);
    free(s->routes[i].latency);
  }
  free(s->routes);
  free(s->hook_time);
  free(s->hook_errors);
  free(s->loop_generation);
  free(s->last_reload_error);
  free(s->last_failed_reload_error);
  free(s);
}

void shadow_stats_hook_error(shadow_stats_t *s, int hook, const char *msg,
                             double now_ms) {
  if (hook < 0 || (size_t)hook >= s->nhooks || !s->hook_errors) return;
  shadow_hook_error_t *e = &s->hook_errors[hook];
  e->count++;
  e->last_ms = now_ms;
  if (!msg) msg = "";
  size_t len = strcspn(msg, "\n");
  if (len > SHADOW_HOOK_ERROR_MAX) len = SHADOW_HOOK_ERROR_MAX;
  memcpy(e->last, msg, len);
  e->last[len] = '\0';
}

static void route_reset(shadow_route_stats_t *r, int forget_noise) {
  shadow_counters_t *fields = r->fields;
  shadow_lhist_t *latency = r->latency;
  uint64_t learn = r->learn_compared;
  uint64_t noise_compared = r->noise_compared;
  memset(r, 0, sizeof(*r));
  if (fields) shadow_counters_zero(fields);
  if (latency) memset(latency, 0, SHADOW_LAT_COUNT * sizeof(*latency));
  r->fields = fields;
  r->latency = latency;
  if (!forget_noise) {
    /* The learned noise is judged against these; see learn_compared. */
    r->learn_compared = learn;
    r->noise_compared = noise_compared;
  }
}

void shadow_stats_reset(shadow_stats_t *s, double now_ms, int forget_noise) {
  s->requests = s->sampled = s->compared = s->diverged = 0;
  s->primary_errors = s->responses_cut = s->tunnels = 0;
  s->compared_raw = s->captured = 0;
  s->reloads_failed = 0;
  s->last_failed_reload_ms = 0;
  free(s->last_failed_reload_error);
  s->last_failed_reload_error = NULL;
  shadow_counters_t *fams[] = {
      s->candidate_errors, s->skipped,          s->script_errors,
      s->reloads,          s->fields,           s->rule_hits,
      s->capture_skipped,  s->secondary_errors, s->h2_errors};
  for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++)
    if (fams[i]) shadow_counters_zero(fams[i]);
  for (size_t i = 0; i < s->nroutes; i++)
    route_reset(&s->routes[i], forget_noise);
  memset(&s->primary_latency, 0, sizeof(s->primary_latency));
  memset(&s->candidate_latency, 0, sizeof(s->candidate_latency));
  memset(s->latency, 0, sizeof(s->latency));
  memset(s->classes, 0, sizeof(s->classes));
  memset(s->history, 0, sizeof(s->history));
  if (s->hook_time) memset(s->hook_time, 0, s->nhooks * sizeof(*s->hook_time));
  if (s->hook_errors)
    memset(s->hook_errors, 0, s->nhooks * sizeof(*s->hook_errors));
  s->noise_suppressed = 0;
  if (forget_noise) {
    s->noise_compared = 0;
    shadow_noise_table_t *fresh =
        shadow_noise_table_new(SHADOW_NOISE_FIELDS_MAX);
    if (fresh) { /* without memory, the old table is kept */
      shadow_noise_table_free(s->noise);
      s->noise = fresh;
    }
  }
  if (s->signatures) shadow_signatures_reset(s->signatures);
  s->window_start_ms = now_ms;
}

shadow_route_stats_t *shadow_stats_route(shadow_stats_t *s, const char *name,
                                         size_t len) {
  long i = find_or_add(s->route_names, name, len);
  if (i < 0) return NULL;
  if ((size_t)i >= s->routes_cap) {
    size_t cap = s->routes_cap ? s->routes_cap * 2 : 16;
    while (cap <= (size_t)i)
      cap *= 2;
    shadow_route_stats_t *r = realloc(s->routes, cap * sizeof(*r));
    if (!r) return NULL;
    memset(r + s->routes_cap, 0, (cap - s->routes_cap) * sizeof(*r));
    s->routes = r;
    s->routes_cap = cap;
  }
  if ((size_t)i >= s->nroutes) s->nroutes = (size_t)i + 1;
  return &s->routes[i];
}

void shadow_stats_set_reload(shadow_stats_t *s, double when_ms,
                             const char *result, const char *error) {
  s->last_reload_ms = when_ms;
  s->last_reload_result = result;
  free(s->last_reload_error);
  s->last_reload_error = error ? strdup(error) : NULL;
  shadow_counters_add(s->reloads, result, strlen(result), 1);
  if (strcmp(result, "error") == 0) {
    s->reloads_failed++;
    s->last_failed_reload_ms = when_ms;
    free(s->last_failed_reload_error);
    s->last_failed_reload_error = error ? strdup(error) : NULL;
  }
}

/* --- log-bucketed histograms -------------------------------------------- */

static int lhist_bucket(double us) {
  if (!(us >= 1)) return 0;
  double i = floor(log2(us) * SHADOW_LHIST_SUB) + 1;
  return i >= SHADOW_LHIST_BUCKETS - 1 ? SHADOW_LHIST_BUCKETS - 1 : (int)i;
}

/* Counts seconds, whose bucket is known, into h. */
static void lhist_add(shadow_lhist_t *h, double seconds, int bucket) {
  if (h->n == 0 || seconds < h->min_s) h->min_s = seconds;
  if (h->n == 0 || seconds > h->max_s) h->max_s = seconds;
  h->n++;
  h->sum_s += seconds;
  h->b[bucket]++;
}

void shadow_lhist_observe(shadow_lhist_t *h, double seconds) {
  if (!(seconds >= 0)) return; /* unknown, or NaN */
  lhist_add(h, seconds, lhist_bucket(seconds * 1e6));
}

double shadow_lhist_quantile(const shadow_lhist_t *h, double q) {
  if (h->n == 0) return 0;
  /* Nearest rank: the smallest value with at least q * n values at or
   * below it. */
  uint64_t rank = (uint64_t)ceil(q * (double)h->n);
  if (rank < 1) rank = 1;
  if (rank > h->n) rank = h->n;
  uint64_t cum = 0;
  int i = 0;
  for (; i < SHADOW_LHIST_BUCKETS; i++) {
    cum += h->b[i];
    if (cum >= rank) break;
  }
  double v;
  if (i == 0)
    v = h->min_s;
  else if (i == SHADOW_LHIST_BUCKETS - 1)
    v = h->max_s;
  else
    v = exp2(((double)i - 0.5) / SHADOW_LHIST_SUB) / 1e6;
  if (v < h->min_s) v = h->min_s;
  if (v > h->max_s) v = h->max_s;
  return v;
}

/* --- per-exchange views ------------------------------------------------- */

int shadow_status_class(int status) {
  if (status < 0) return SHADOW_STATUS_ERROR;
  if (status < 100 || status > 599) return 0;
  return status / 100;
}

void shadow_stats_observe(shadow_stats_t *s, shadow_route_stats_t *r,
                          const shadow_exchange_obs_t *obs) {
  if (r && !r->latency)
    r->latency = calloc(SHADOW_LAT_COUNT, sizeof(*r->latency));
  for (int i = 0; i < SHADOW_LAT_COUNT; i++) {
    if (!(obs->ms[i] >= 0)) continue;
    /* One bucket (a log2) for both histograms the value goes into. */
    double seconds = obs->ms[i] / 1e3;
    int bucket = lhist_bucket(seconds * 1e6);
    lhist_add(&s->latency[i], seconds, bucket);
    if (r && r->latency) lhist_add(&r->latency[i], seconds, bucket);
  }
  if (obs->primary_status > 0 && obs->candidate_status != 0) {
    int p = shadow_status_class(obs->primary_status);
    int c = shadow_status_class(obs->candidate_status);
    s->classes[p][c]++;
    if (r) r->classes[p][c]++;
  }
}

void shadow_stats_add_fields(shadow_stats_t *s, shadow_route_stats_t *r,
                             const char *fields, size_t nfields) {
  if (r && !r->fields) r->fields = shadow_counters_new(SHADOW_ROUTE_FIELDS_MAX);
  const char *f = fields;
  for (size_t i = 0; i < nfields && f; i++) {
    size_t n = strlen(f);
    shadow_counters_add(s->fields, f, n, 1);
    if (r && r->fields) shadow_counters_add(r->fields, f, n, 1);
    f += n + 1;
  }
}

void shadow_stats_history_add(shadow_stats_t *s, double now_ms, int diverged) {
  int64_t step = (int64_t)(now_ms / 1000) / SHADOW_HISTORY_STEP_S;
  shadow_history_slot_t *slot = &s->history[step % SHADOW_HISTORY_SLOTS];
  if (slot->step != step) {
    /* A slot left from an older lap of the ring starts again. */
    slot->step = step;
    slot->compared = slot->diverged = 0;
  }
  slot->compared++;
  if (diverged) slot->diverged++;
}

/* --- the verdict -------------------------------------------------------- */

void shadow_stats_verdict(const shadow_stats_t *s,
                          const shadow_route_stats_t *r,
                          const shadow_slo_t *slo, shadow_verdict_t *v) {
  uint64_t compared = r ? r->compared : s->compared;
  uint64_t diverged = r ? r->diverged : s->diverged;
  shadow_verdict_compute(v, compared, diverged, slo->max_divergence_rate,
                         slo->min_samples);
  if (!(slo->max_latency_ratio > 0)) return;
  const shadow_lhist_t *lat = r ? r->latency : s->latency;
  if (!lat) return;
  const shadow_lhist_t *p = &lat[SHADOW_LAT_PRIMARY_LAST];
  const shadow_lhist_t *c = &lat[SHADOW_LAT_CANDIDATE_LAST];
  uint64_t need = slo->min_samples ? slo->min_samples : 1;
  if (p->n < need || c->n < need) return;
  double pp = shadow_lhist_quantile(p, 0.99);
  double cp = shadow_lhist_quantile(c, 0.99);
  if (!(cp > pp * slo->max_latency_ratio)) return;
  char why[SHADOW_VERDICT_REASON_MAX];
  /* Short enough to follow a divergence reason within the verdict's
   * room (SHADOW_VERDICT_REASON_MAX). */
  snprintf(why, sizeof(why),
           "candidate p99 %.3g ms over %g x primary p99 %.3g ms", cp * 1e3,
           slo->max_latency_ratio, pp * 1e3);
  shadow_verdict_hold(v, why);
}
