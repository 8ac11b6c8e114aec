/* The fleet's counts (see fleet.h): every additive number of a
 * shadow_stats_t under a field name of the store's hashes, and back.
 * Names are parts joined by 0x1f:
 *   t.<total>                  requests, sampled, compared, diverged, ...
 *   cerr.<reason>, skip.<reason>, script.<hook>
 *   r.<route>.<count>          sampled, compared, diverged, part.status,
 *                              part.headers, part.body, kind.<n>, ...
 *   rc.<route>.<p>.<c>, c.<p>.<c>          status classes
 *   rf.<route>.<field>, f.<field>          differing fields
 *   rl.<route>.<leg>.<bucket>|n|sum, l.<leg>.<bucket>|n|sum  lhist
 *   h.primary|candidate.<bucket>|count|sum Prometheus histograms
 *   hist.<step>.compared|diverged          the rate's history
 *   n.<route>.<field>.<counter>            the noise table's counts
 * (with '.' standing for 0x1f). What is not additive: the noise table's
 * reference (ref_len, ref_shapes, ref_max: what one instance's first
 * differences were), each side's largest number move (sent as a MAX per
 * instance), the shapes (sent as one count per shape bit: how many
 * instances saw it, > 0 meaning seen), and a histogram's least and
 * greatest values (derived from the buckets). Pure data, no I/O. */
#include "fleet.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "signatures.h"

void shadow_fleet_free(shadow_fleet_t *f) {
  if (!f) return;
  if (f->stats) {
    shadow_signatures_free(f->stats->signatures);
    shadow_stats_free(f->stats);
  }
  shadow_ring_free(f->ring);
  free(f);
}

/* --- walking ----------------------------------------------------------- */

typedef struct walk_s {
  shadow_fleet_count_fn fn;
  void *ud;
  shadow_buf_t name;
  size_t mark; /* the name's prefix length for the current family */
} walk_t;

static void name_at(walk_t *w, size_t mark) {
  w->name.len = mark;
}

static void part(walk_t *w, const char *s, size_t n) {
  if (w->name.len) shadow_buf_putc(&w->name, SHADOW_FLEET_SEP);
  shadow_buf_append(&w->name, s, n);
}

static void parts(walk_t *w, const char *s) {
  part(w, s, strlen(s));
}

static void partu(walk_t *w, uint64_t v) {
  char b[24];
  int n = snprintf(b, sizeof(b), "%" PRIu64, v);
  part(w, b, (size_t)n);
}

static void emit(walk_t *w, const char *last, uint64_t v) {
  if (!v) return;
  size_t m = w->name.len;
  if (last) parts(w, last);
  w->fn(w->ud, SHADOW_FLEET_COUNT, w->name.data, w->name.len, v, 0);
  name_at(w, m);
}

static void emitf(walk_t *w, int kind, const char *last, double v) {
  if (!(v != 0) || !isfinite(v)) return;
  size_t m = w->name.len;
  if (last) parts(w, last);
  w->fn(w->ud, kind, w->name.data, w->name.len, 0, v);
  name_at(w, m);
}

static void counter_cb(void *ud, const char *name, uint64_t n) {
  walk_t *w = ud;
  emit(w, name, n);
}

static void family(walk_t *w, const char *tag, const shadow_counters_t *c) {
  if (!c) return;
  name_at(w, 0);
  parts(w, tag);
  shadow_counters_each(c, counter_cb, w);
  name_at(w, 0);
}

static void lhist(walk_t *w, const shadow_lhist_t *h) {
  if (!h->n) return;
  size_t m = w->name.len;
  for (int b = 0; b < SHADOW_LHIST_BUCKETS; b++)
    if (h->b[b]) {
      partu(w, (uint64_t)b);
      emit(w, NULL, h->b[b]);
      name_at(w, m);
    }
  emit(w, "n", h->n);
  emitf(w, SHADOW_FLEET_FLOAT, "sum", h->sum_s);
}

static void
classes(walk_t *w,
        const uint64_t m[SHADOW_STATUS_CLASSES][SHADOW_STATUS_CLASSES]) {
  size_t mark = w->name.len;
  for (int p = 0; p < SHADOW_STATUS_CLASSES; p++)
    for (int c = 0; c < SHADOW_STATUS_CLASSES; c++)
      if (m[p][c]) {
        partu(w, (uint64_t)p);
        partu(w, (uint64_t)c);
        emit(w, NULL, m[p][c]);
        name_at(w, mark);
      }
}

typedef struct route_walk_s {
  walk_t *w;
  const shadow_stats_t *s;
  size_t i;
} route_walk_t;

static void route_cb(void *ud, const char *name, uint64_t n) {
  route_walk_t *rw = ud;
  walk_t *w = rw->w;
  size_t i = rw->i++;
  if (i >= rw->s->nroutes) return;
  const shadow_route_stats_t *r = &rw->s->routes[i];
  name_at(w, 0);
  parts(w, "r");
  parts(w, name);
  emit(w, "sampled", r->sampled);
  emit(w, "compared", r->compared);
  emit(w, "diverged", r->diverged);
  emit(w, "part.status", r->parts[0]);
  emit(w, "part.headers", r->parts[1]);
  emit(w, "part.body", r->parts[2]);
  for (int k = 0; k < SHADOW_BODY_KINDS; k++) {
    char b[24];
    snprintf(b, sizeof(b), "kind.%d", k);
    emit(w, b, r->body_kinds[k]);
  }
  emit(w, "noise_compared", r->noise_compared);
  emit(w, "noise_suppressed", r->noise_suppressed);
  emit(w, "compared_raw", r->compared_raw);
  emit(w, "learn_compared", r->learn_compared);
  name_at(w, 0);
  parts(w, "rc");
  parts(w, name);
  classes(w, r->classes);
  if (r->fields) {
    name_at(w, 0);
    parts(w, "rf");
    parts(w, name);
    shadow_counters_each(r->fields, counter_cb, w);
  }
  if (r->latency)
    for (int leg = 0; leg < SHADOW_LAT_COUNT; leg++) {
      name_at(w, 0);
      parts(w, "rl");
      parts(w, name);
      partu(w, (uint64_t)leg);
      lhist(w, &r->latency[leg]);
    }
  name_at(w, 0);
  (void)n;
}

static void hist(walk_t *w, const char *leg, const shadow_hist_t *h) {
  name_at(w, 0);
  parts(w, "h");
  parts(w, leg);
  size_t m = w->name.len;
  for (int b = 0; b < SHADOW_HIST_BUCKETS; b++)
    if (h->buckets[b]) {
      partu(w, (uint64_t)b);
      emit(w, NULL, h->buckets[b]);
      name_at(w, m);
    }
  emit(w, "count", h->count);
  emitf(w, SHADOW_FLEET_FLOAT, "sum", h->sum);
}

static void noise_entry(walk_t *w, const shadow_noise_entry_t *e) {
  const shadow_noise_field_t *f = &e->learned;
  name_at(w, 0);
  parts(w, "n");
  parts(w, e->route);
  parts(w, e->field);
  emit(w, "differed", f->differed);
  emit(w, "noise_differed", f->noise_differed);
  emit(w, "judged", f->judged);
  emit(w, "beyond", f->beyond);
  emit(w, "novel", f->novel);
  emit(w, "noise_judged", f->noise_judged);
  emit(w, "noise_beyond", f->noise_beyond);
  emit(w, "noise_novel", f->noise_novel);
  for (int b = 0; b < 16; b++) {
    char k[24];
    if (f->shapes & (1u << b)) {
      snprintf(k, sizeof(k), "shape.%d", b);
      emit(w, k, 1);
    }
    if (f->noise_shapes & (1u << b)) {
      snprintf(k, sizeof(k), "nshape.%d", b);
      emit(w, k, 1);
    }
  }
  emitf(w, SHADOW_FLEET_MAX, "max_delta", f->max_delta);
  emitf(w, SHADOW_FLEET_MAX, "noise_max_delta", f->noise_max_delta);
}

void shadow_fleet_counts_walk(const shadow_stats_t *s, shadow_fleet_count_fn fn,
                              void *ud) {
  walk_t w = {fn, ud, SHADOW_BUF_INIT, 0};
  parts(&w, "t");
  emit(&w, "requests", s->requests);
  emit(&w, "sampled", s->sampled);
  emit(&w, "compared", s->compared);
  emit(&w, "diverged", s->diverged);
  emit(&w, "primary_errors", s->primary_errors);
  emit(&w, "noise_compared", s->noise_compared);
  emit(&w, "noise_suppressed", s->noise_suppressed);
  emit(&w, "compared_raw", s->compared_raw);
  family(&w, "cerr", s->candidate_errors);
  family(&w, "skip", s->skipped);
  family(&w, "script", s->script_errors);
  family(&w, "f", s->fields);
  route_walk_t rw = {&w, s, 0};
  if (s->route_names) shadow_counters_each(s->route_names, route_cb, &rw);
  name_at(&w, 0);
  parts(&w, "c");
  classes(&w, s->classes);
  for (int leg = 0; leg < SHADOW_LAT_COUNT; leg++) {
    name_at(&w, 0);
    parts(&w, "l");
    partu(&w, (uint64_t)leg);
    lhist(&w, &s->latency[leg]);
  }
  hist(&w, "primary", &s->primary_latency);
  hist(&w, "candidate", &s->candidate_latency);
  for (int i = 0; i < SHADOW_HISTORY_SLOTS; i++) {
    const shadow_history_slot_t *h = &s->history[i];
    if (!h->step) continue;
    name_at(&w, 0);
    parts(&w, "hist");
    partu(&w, (uint64_t)h->step);
    emit(&w, "compared", h->compared);
    emit(&w, "diverged", h->diverged);
  }
  if (s->noise) {
    size_t n = shadow_noise_table_len(s->noise);
    for (size_t i = 0; i < n; i++)
      noise_entry(&w, shadow_noise_table_at(s->noise, i));
  }
  shadow_buf_free(&w.name);
}

/* --- reading back ------------------------------------------------------ */

#define MAX_PARTS 6

typedef struct name_parts_s {
  const char *p[MAX_PARTS];
  size_t n[MAX_PARTS];
  int count;
} name_parts_t;

static void split(const char *s, size_t len, name_parts_t *np) {
  np->count = 0;
  const char *end = s + len;
  while (np->count < MAX_PARTS) {
    const char *sep = memchr(s, SHADOW_FLEET_SEP, (size_t)(end - s));
    np->p[np->count] = s;
    if (!sep || np->count == MAX_PARTS - 1) {
      np->n[np->count++] = (size_t)(end - s);
      return;
    }
    np->n[np->count++] = (size_t)(sep - s);
    s = sep + 1;
  }
}

static int is(const name_parts_t *np, int i, const char *w) {
  size_t l = strlen(w);
  return i < np->count && np->n[i] == l && memcmp(np->p[i], w, l) == 0;
}

static long num(const name_parts_t *np, int i) {
  if (i >= np->count || np->n[i] == 0 || np->n[i] > 18) return -1;
  long v = 0;
  for (size_t k = 0; k < np->n[i]; k++) {
    char c = np->p[i][k];
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

static void add_class(uint64_t m[SHADOW_STATUS_CLASSES][SHADOW_STATUS_CLASSES],
                      const name_parts_t *np, int i, uint64_t u) {
  long p = num(np, i), c = num(np, i + 1);
  if (p >= 0 && p < SHADOW_STATUS_CLASSES && c >= 0 &&
      c < SHADOW_STATUS_CLASSES)
    m[p][c] += u;
}

static void add_lhist(shadow_lhist_t *h, const name_parts_t *np, int i,
                      int kind, uint64_t u, double d) {
  if (is(np, i, "n")) {
    h->n += u;
  } else if (is(np, i, "sum")) {
    h->sum_s += d;
  } else {
    long b = num(np, i);
    if (b >= 0 && b < SHADOW_LHIST_BUCKETS) h->b[b] += u;
  }
  (void)kind;
}

static shadow_route_stats_t *route_of(shadow_stats_t *f, const name_parts_t *np,
                                      int i) {
  if (i >= np->count) return NULL;
  return shadow_stats_route(f, np->p[i], np->n[i]);
}

static shadow_lhist_t *route_lhist(shadow_route_stats_t *r) {
  if (!r->latency) r->latency = calloc(SHADOW_LAT_COUNT, sizeof(*r->latency));
  return r->latency;
}

static void add_noise(shadow_stats_t *f, const name_parts_t *np, uint64_t u,
                      double d) {
  if (np->count < 4) return;
  shadow_route_stats_t *r = route_of(f, np, 1);
  size_t ridx = r ? (size_t)(r - f->routes) : 0;
  shadow_noise_entry_t *e = shadow_noise_table_get(f->noise, np->p[1], np->n[1],
                                                   ridx, np->p[2], np->n[2], 1);
  if (!e) return;
  shadow_noise_field_t *x = &e->learned;
  if (is(np, 3, "differed"))
    x->differed += u;
  else if (is(np, 3, "noise_differed"))
    x->noise_differed += u;
  else if (is(np, 3, "judged"))
    x->judged += u;
  else if (is(np, 3, "beyond"))
    x->beyond += u;
  else if (is(np, 3, "novel"))
    x->novel += u;
  else if (is(np, 3, "noise_judged"))
    x->noise_judged += u;
  else if (is(np, 3, "noise_beyond"))
    x->noise_beyond += u;
  else if (is(np, 3, "noise_novel"))
    x->noise_novel += u;
  else if (is(np, 3, "max_delta")) {
    if (d > x->max_delta) x->max_delta = d;
  } else if (is(np, 3, "noise_max_delta")) {
    if (d > x->noise_max_delta) x->noise_max_delta = d;
  } else if (np->n[3] > 6 && memcmp(np->p[3], "shape.", 6) == 0) {
    int b = atoi(np->p[3] + 6);
    if (b >= 0 && b < 16 && u) x->shapes |= 1u << b;
  } else if (np->n[3] > 7 && memcmp(np->p[3], "nshape.", 7) == 0) {
    int b = atoi(np->p[3] + 7);
    if (b >= 0 && b < 16 && u) x->noise_shapes |= 1u << b;
  }
}

static void add_route(shadow_route_stats_t *r, const name_parts_t *np,
                      uint64_t u) {
  static const char *const names[] = {"sampled",
                                      "compared",
                                      "diverged",
                                      "part.status",
                                      "part.headers",
                                      "part.body",
                                      "noise_compared",
                                      "noise_suppressed",
                                      "compared_raw",
                                      "learn_compared",
                                      NULL};
  uint64_t *slots[] = {&r->sampled,        &r->compared,
                       &r->diverged,       &r->parts[0],
                       &r->parts[1],       &r->parts[2],
                       &r->noise_compared, &r->noise_suppressed,
                       &r->compared_raw,   &r->learn_compared};
  for (int i = 0; names[i]; i++)
    if (is(np, 2, names[i])) {
      *slots[i] += u;
      return;
    }
  if (np->count > 2 && np->n[2] > 5 && memcmp(np->p[2], "kind.", 5) == 0) {
    int k = atoi(np->p[2] + 5);
    if (k >= 0 && k < SHADOW_BODY_KINDS) r->body_kinds[k] += u;
  }
}

void shadow_fleet_counts_add(shadow_stats_t *f, int kind, const char *name,
                             size_t len, uint64_t u, double d) {
  name_parts_t np;
  split(name, len, &np);
  if (np.count < 2) return;
  if (is(&np, 0, "t")) {
    static const char *const names[] = {
        "requests",         "sampled",        "compared",
        "diverged",         "primary_errors", "noise_compared",
        "noise_suppressed", "compared_raw",   NULL};
    uint64_t *slots[] = {&f->requests,         &f->sampled,
                         &f->compared,         &f->diverged,
                         &f->primary_errors,   &f->noise_compared,
                         &f->noise_suppressed, &f->compared_raw};
    for (int i = 0; names[i]; i++)
      if (is(&np, 1, names[i])) *slots[i] += u;
  } else if (is(&np, 0, "cerr") || is(&np, 0, "skip") || is(&np, 0, "script") ||
             is(&np, 0, "f")) {
    shadow_counters_t *c = is(&np, 0, "cerr")   ? f->candidate_errors
                           : is(&np, 0, "skip") ? f->skipped
                           : is(&np, 0, "f")    ? f->fields
                                                : f->script_errors;
    /* The rest of the name, separators and all, is the counter's. */
    shadow_counters_add(c, np.p[1], len - (size_t)(np.p[1] - name), u);
  } else if (is(&np, 0, "r") && np.count >= 3) {
    shadow_route_stats_t *r = route_of(f, &np, 1);
    if (r) add_route(r, &np, u);
  } else if (is(&np, 0, "rc") && np.count >= 4) {
    shadow_route_stats_t *r = route_of(f, &np, 1);
    if (r) add_class(r->classes, &np, 2, u);
  } else if (is(&np, 0, "c") && np.count >= 3) {
    add_class(f->classes, &np, 1, u);
  } else if (is(&np, 0, "rf") && np.count >= 3) {
    shadow_route_stats_t *r = route_of(f, &np, 1);
    if (r && !r->fields)
      r->fields = shadow_counters_new(SHADOW_ROUTE_FIELDS_MAX);
    if (r && r->fields)
      shadow_counters_add(r->fields, np.p[2], len - (size_t)(np.p[2] - name),
                          u);
  } else if (is(&np, 0, "rl") && np.count >= 4) {
    shadow_route_stats_t *r = route_of(f, &np, 1);
    long leg = num(&np, 2);
    shadow_lhist_t *h = r ? route_lhist(r) : NULL;
    if (h && leg >= 0 && leg < SHADOW_LAT_COUNT)
      add_lhist(&h[leg], &np, 3, kind, u, d);
  } else if (is(&np, 0, "l") && np.count >= 3) {
    long leg = num(&np, 1);
    if (leg >= 0 && leg < SHADOW_LAT_COUNT)
      add_lhist(&f->latency[leg], &np, 2, kind, u, d);
  } else if (is(&np, 0, "h") && np.count >= 3) {
    shadow_hist_t *h = is(&np, 1, "primary")     ? &f->primary_latency
                       : is(&np, 1, "candidate") ? &f->candidate_latency
                                                 : NULL;
    if (!h) return;
    if (is(&np, 2, "count")) {
      h->count += u;
    } else if (is(&np, 2, "sum")) {
      h->sum += d;
    } else {
      long b = num(&np, 2);
      if (b >= 0 && b < SHADOW_HIST_BUCKETS) h->buckets[b] += u;
    }
  } else if (is(&np, 0, "hist") && np.count >= 3) {
    long step = num(&np, 1);
    if (step <= 0) return;
    shadow_history_slot_t *slot = &f->history[step % SHADOW_HISTORY_SLOTS];
    if (slot->step > step) return; /* an older lap */
    if (slot->step < step) {
      slot->step = step;
      slot->compared = slot->diverged = 0;
    }
    if (is(&np, 2, "compared")) slot->compared += u;
    if (is(&np, 2, "diverged")) slot->diverged += u;
  } else if (is(&np, 0, "n")) {
    add_noise(f, &np, u, d);
  }
}

static void lhist_bounds(shadow_lhist_t *h) {
  if (!h->n) return;
  int lo = -1, hi = -1;
  for (int b = 0; b < SHADOW_LHIST_BUCKETS; b++)
    if (h->b[b]) {
      if (lo < 0) lo = b;
      hi = b;
    }
  if (lo < 0) return;
  /* Bucket b > 0 holds [2^((b-1)/SUB), 2^(b/SUB)) microseconds. */
  h->min_s = lo == 0 ? 0 : exp2((double)(lo - 1) / SHADOW_LHIST_SUB) / 1e6;
  h->max_s = exp2((double)hi / SHADOW_LHIST_SUB) / 1e6;
}

void shadow_fleet_counts_finish(shadow_stats_t *f) {
  for (int leg = 0; leg < SHADOW_LAT_COUNT; leg++)
    lhist_bounds(&f->latency[leg]);
  for (size_t i = 0; i < f->nroutes; i++)
    if (f->routes[i].latency)
      for (int leg = 0; leg < SHADOW_LAT_COUNT; leg++)
        lhist_bounds(&f->routes[i].latency[leg]);
}
