/* The daemon's counters: bounded string-keyed families, per-route tallies,
 * latency histograms and the last reload. The verdict drawn from them is
 * the engine's (verdict.c); their renderings are in stats_render.c. */
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

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
};

shadow_counters_t *shadow_counters_new(size_t max_keys) {
  shadow_counters_t *c = calloc(1, sizeof(*c));
  if (c) c->max_keys = max_keys;
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

/* The position of name, created if there is room; "other" past the cap. */
static long find_or_add(shadow_counters_t *c, const char *name, size_t len) {
  if (c->index_cap == 0 && grow_index(c)) return -1;
  size_t s = slot_of(c, name, len);
  if (c->index[s]) return (long)c->index[s] - 1;
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

uint64_t shadow_counters_get(const shadow_counters_t *c, const char *name) {
  if (!c->index_cap) return 0;
  uint32_t e = c->index[slot_of(c, name, strlen(name))];
  return e ? c->v[e - 1].n : 0;
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
  s->candidate_errors = shadow_counters_new(32);
  s->skipped = shadow_counters_new(32);
  s->script_errors = shadow_counters_new(32);
  s->reloads = shadow_counters_new(8);
  s->fields = shadow_counters_new(1000);
  s->rule_hits = shadow_counters_new(512);
  s->route_names = shadow_counters_new(500);
  s->breaker_state = "closed";
  if (!s->candidate_errors || !s->skipped || !s->script_errors || !s->reloads ||
      !s->fields || !s->rule_hits || !s->route_names ||
      (nhooks && !s->hook_time)) {
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
  shadow_counters_free(s->skipped);
  shadow_counters_free(s->script_errors);
  shadow_counters_free(s->reloads);
  shadow_counters_free(s->fields);
  shadow_counters_free(s->rule_hits);
  shadow_counters_free(s->route_names);
  free(s->routes);
  free(s->hook_time);
  free(s->loop_generation);
  free(s->last_reload_error);
  free(s);
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
}
