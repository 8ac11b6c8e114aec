/* Pairing's last step (see comparison.h). Counting happens under the
 * shared lock; formatting, the larger part of the work, outside it. */
#include "comparison.h"

#include "fleet.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "divergence.h"
#include "log.h"
#include "noise.h"
#include "redact.h"
#include "ring.h"

/* A divergence with more differing fields than this is counted by its
 * first ones, so one pathological pair cannot cost a sort of millions. */
#define FOLDED_MAX 1024

void shadow_comparator_init(shadow_comparator_t *c, shadow_shared_t *sh) {
  memset(c, 0, sizeof(*c));
  c->sh = sh;
}

static void obs_free(shadow_obs_list_t *l) {
  shadow_buf_free(&l->names);
  free(l->v);
}

void shadow_comparator_free(shadow_comparator_t *c) {
  shadow_diff_result_free(&c->diff);
  shadow_diff_result_free(&c->noise);
  obs_free(&c->cobs);
  obs_free(&c->nobs);
  free(c->noise_list);
  shadow_buf_free(&c->scratch);
  shadow_buf_free(&c->folded);
  free(c->sort);
  shadow_rewritten_free(&c->rewritten);
}

/* Adds the rules that decided something in this comparison to their
 * counters. Called under the shared lock: each worker's comparator has its
 * own result, so the engine needs no atomics. */
static void count_hits(shadow_stats_t *st, const shadow_diff_opts_t *o,
                       const shadow_diff_result_t *res) {
  for (size_t w = 0; w < SHADOW_JSON_RULE_BITS / 64; w++)
    for (uint64_t bits = res->hits[w]; bits; bits &= bits - 1) {
      size_t bit = w * 64 + (size_t)__builtin_ctzll(bits);
      const char *name = shadow_diff_opts_rule_name(o, bit);
      if (name) shadow_counters_add(st->rule_hits, name, strlen(name), 1);
    }
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* c->diff's fields, folded, into c->folded: sorted, each once, so a field
 * that differs at several indexes counts once per divergence and the
 * signature does not depend on the order the engine found them in. */
static void fold_fields(shadow_comparator_t *c) {
  shadow_buf_t all = SHADOW_BUF_INIT;
  size_t n = c->diff.nfields < FOLDED_MAX ? c->diff.nfields : FOLDED_MAX;
  c->nfolded = 0;
  shadow_buf_reset(&c->folded);
  if (n == 0) return;
  if (n > c->sort_cap) {
    const char **v = realloc(c->sort, n * sizeof(*v));
    if (!v) return;
    c->sort = v;
    c->sort_cap = n;
  }
  const char *f = c->diff.fields.data;
  char one[1024];
  size_t *offs = malloc(n * sizeof(*offs));
  if (!offs) return;
  for (size_t i = 0; i < n && f; i++) {
    size_t len = strlen(f);
    size_t k = shadow_field_fold(f, len, one, sizeof(one));
    offs[i] = all.len;
    if (shadow_buf_append(&all, one, k + 1)) {
      n = i;
      break;
    }
    f += len + 1;
  }
  for (size_t i = 0; i < n; i++)
    c->sort[i] = all.data + offs[i];
  free(offs);
  qsort(c->sort, n, sizeof(*c->sort), by_name);
  for (size_t i = 0; i < n; i++) {
    if (i && strcmp(c->sort[i], c->sort[i - 1]) == 0) continue;
    if (shadow_buf_append(&c->folded, c->sort[i], strlen(c->sort[i]) + 1))
      break;
    c->nfolded++;
  }
  shadow_buf_free(&all);
}

/* --- noise --------------------------------------------------------------- */

static const char *obs_name(const shadow_obs_list_t *l, size_t i) {
  return l->names.data + l->v[i].off;
}

/* shadow_noise_observe's callback: one entry per folded field. */
static void obs_add(void *ud, const char *field, size_t len, unsigned shape,
                    double delta) {
  shadow_obs_list_t *l = ud;
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i].len == len && memcmp(obs_name(l, i), field, len) == 0) {
      l->v[i].shapes |= shape;
      if (delta > l->v[i].delta) l->v[i].delta = delta;
      return;
    }
  if (l->n >= FOLDED_MAX) return;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    shadow_obs_t *v = realloc(l->v, cap * sizeof(*v));
    if (!v) return;
    l->v = v;
    l->cap = cap;
  }
  size_t off = l->names.len;
  if (shadow_buf_append(&l->names, field, len) ||
      shadow_buf_append(&l->names, "", 1))
    return;
  l->v[l->n++] = (shadow_obs_t){off, len, shape, delta};
}

static void observe_into(shadow_obs_list_t *l, const shadow_diff_result_t *r) {
  l->n = 0;
  shadow_buf_reset(&l->names);
  shadow_noise_observe(r, obs_add, l);
}

/* The learned range of a field's number noise, for the mask. Takes the
 * lock: it runs outside count(). */
typedef struct envelope_ud_s {
  shadow_comparator_t *c;
  const char *route;
} envelope_ud_t;

static double learned_max(void *ud, const char *field, size_t len) {
  envelope_ud_t *e = ud;
  shadow_shared_t *sh = e->c->sh;
  size_t rlen = strlen(e->route);
  shadow_shared_lock(sh);
  /* With a fleet store, what the fleet learned: every instance applies
   * the same noise. */
  shadow_stats_t *st = shadow_fleet_view(sh->stats, 0);
  shadow_noise_entry_t *n =
      shadow_noise_table_get(st->noise, e->route, rlen, 0, field, len, 0);
  double max = n && n->learned.noise_differed >= SHADOW_NOISE_ENVELOPE_MIN
                   ? n->learned.noise_max_delta
                   : 0;
  shadow_shared_unlock(sh);
  return max;
}

/* Learns from this request, under the lock: the secondary's differences
 * (noise), then the candidate's, each field's through the engine's one
 * learning step (engine/noise.h), which weighs them against the field's
 * reference. */
static void learn(shadow_comparator_t *c, shadow_stats_t *st,
                  shadow_route_stats_t *rs, const char *route, size_t rlen,
                  int have_noise) {
  size_t ridx = rs ? (size_t)(rs - st->routes) : 0;
  if (have_noise) {
    st->noise_compared++;
    if (rs) rs->noise_compared++;
    for (size_t i = 0; i < c->nobs.n; i++) {
      const shadow_obs_t *o = &c->nobs.v[i];
      shadow_noise_entry_t *e = shadow_noise_table_get(
          st->noise, route, rlen, ridx, obs_name(&c->nobs, i), o->len, 1);
      if (e) shadow_noise_learn_secondary(&e->learned, o->shapes, o->delta);
    }
  }
  for (size_t i = 0; i < c->cobs.n; i++) {
    const shadow_obs_t *o = &c->cobs.v[i];
    shadow_noise_entry_t *e = shadow_noise_table_get(
        st->noise, route, rlen, ridx, obs_name(&c->cobs, i), o->len, 1);
    if (e) shadow_noise_learn_candidate(&e->learned, o->shapes, o->delta);
  }
}

/* Whether a difference lies within what the secondary has shown of its
 * field: a number moved no further than the secondary ever moved it, or
 * elements reordered in an array the secondary reorders. Other shapes
 * cannot be told apart by size, so their field's class decides. */
static int within_envelope(const shadow_noise_field_t *f, unsigned shapes,
                           double delta) {
  if (f->noise_differed < SHADOW_NOISE_ENVELOPE_MIN) return 0;
  if (shapes == SHADOW_NOISE_NUMBER)
    return (f->noise_shapes & SHADOW_NOISE_NUMBER) &&
           delta <= f->noise_max_delta;
  return shapes == SHADOW_NOISE_MOVE && (f->noise_shapes & SHADOW_NOISE_MOVE);
}

typedef struct learned_ud_s {
  shadow_comparator_t *c;
  const shadow_config_t *cfg;
  const char *route;
} learned_ud_t;

/* What has been learned, applied to one difference: noise when its field
 * is classed noise, or when it lies within the field's envelope (so the
 * jitter of a float that also has a real bug is still jitter). Takes the
 * lock: it runs outside count(). */
static int learned_noise(void *ud, const char *field, size_t len,
                         unsigned shapes, double delta) {
  learned_ud_t *l = ud;
  shadow_shared_t *sh = l->c->sh;
  size_t rlen = strlen(l->route);
  int noise = 0;
  shadow_shared_lock(sh);
  /* With a fleet store, the fleet's classes (fleet.h): every instance
   * classes a field alike, from the counts of all. */
  shadow_stats_t *st = shadow_fleet_view(sh->stats, 0);
  shadow_noise_entry_t *e =
      shadow_noise_table_get(st->noise, l->route, rlen, 0, field, len, 0);
  const shadow_route_stats_t *rs =
      e && e->route_idx < st->nroutes ? &st->routes[e->route_idx] : NULL;
  if (e && rs) {
    shadow_noise_counts_t k = shadow_noise_field_counts(
        &e->learned, rs->learn_compared, rs->noise_compared);
    noise =
        within_envelope(&e->learned, shapes, delta) ||
        shadow_noise_classify(&k, l->cfg->noise_z, l->cfg->noise_min_samples,
                              NULL) == SHADOW_NOISE_NOISE;
  }
  shadow_shared_unlock(sh);
  return noise;
}

/* The record's "noise": the fields the secondary differed on. */
static const char *const *noise_list(shadow_comparator_t *c, int have_noise) {
  if (!have_noise || c->noise.nfields == 0) return NULL;
  size_t n = c->noise.nfields;
  if (n + 1 > c->noise_cap) {
    const char **v = realloc(c->noise_list, (n + 1) * sizeof(*v));
    if (!v) return NULL;
    c->noise_list = v;
    c->noise_cap = n + 1;
  }
  const char *f = c->noise.fields.data;
  for (size_t i = 0; i < n; i++) {
    c->noise_list[i] = f;
    f += strlen(f) + 1;
  }
  c->noise_list[n] = NULL;
  return c->noise_list;
}

/* --- counting and publishing --------------------------------------------- */

/* Counts the pair, and a divergence when parts is not 0. Returns the
 * divergence's id, or 0 when there is none. */
static uint64_t count(shadow_comparator_t *c, const shadow_pair_t *p,
                      unsigned parts, double now_ms, int have_noise,
                      int suppressed, int raw_compare) {
  shadow_shared_t *sh = c->sh;
  shadow_stats_t *st = sh->stats;
  const char *route = p->route ? p->route : "";
  size_t rlen = strlen(route);
  if (parts) fold_fields(c);
  shadow_shared_lock(sh);
  st->compared++;
  count_hits(st, shadow_gen_config(p->gen)->diff_opts, &c->diff);
  shadow_route_stats_t *rs = shadow_stats_route(st, p->route, rlen);
  if (rs) {
    rs->compared++;
    rs->learn_compared++;
  }
  if (raw_compare) {
    /* normalize failed on a side: the verdict counts a raw comparison. */
    st->compared_raw++;
    if (rs) rs->compared_raw++;
  }
  learn(c, st, rs, route, rlen, have_noise);
  if (suppressed) {
    /* It differed only where the secondary showed noise. */
    st->noise_suppressed++;
    if (rs) rs->noise_suppressed++;
  }
  shadow_stats_history_add(st, now_ms, parts != 0);
  uint64_t id = 0;
  if (parts) {
    st->diverged++;
    if (rs) {
      rs->diverged++;
      for (int i = 0; i < 3; i++)
        if (parts & (1u << i)) rs->parts[i]++;
      if (parts & SHADOW_PART_BODY) rs->body_kinds[c->diff.body_kind]++;
    }
    shadow_stats_add_fields(st, rs, c->folded.data, c->nfolded);
    id = ++sh->next_id;
  }
  shadow_shared_unlock(sh);
  return id;
}

static void publish(shadow_comparator_t *c, const shadow_pair_t *p, uint64_t id,
                    double now_ms, int have_noise) {
  shadow_shared_t *sh = c->sh;
  shadow_divergence_meta_t m = {
      .id = id,
      .time_ms = now_ms,
      .route = p->route,
      .method = p->method,
      .path = p->target,
      .key = p->key,
      .primary_ms = p->primary_ms,
      .candidate_ms = p->candidate_ms,
      .primary_first_ms = p->primary_first_ms,
      .candidate_first_ms = p->candidate_first_ms,
      .noise = noise_list(c, have_noise),
  };
  shadow_buf_reset(&c->scratch);
  if (shadow_divergence_format(&c->scratch, &m, &c->diff) < 0) return;
  /* Values a body redaction rule covers must never reach a record: with
   * such rules, the values as received are left out. */
  const shadow_config_t *cfg = shadow_gen_config(p->gen);
  shadow_rewritten_append(&c->rewritten, &c->scratch, cfg->diff_opts, &c->diff,
                          shadow_redact_pointers(cfg->redact) == 0,
                          SHADOW_DIVERGENCE_MAX_BYTES);
  const char *route = p->route ? p->route : "";
  shadow_shared_lock(sh);
  shadow_ring_push(sh->ring, c->scratch.data, c->scratch.len, route,
                   strlen(route));
  shadow_signatures_add(sh->signatures, route, c->diff.parts, c->folded.data,
                        c->nfolded, now_ms, c->scratch.data, c->scratch.len);
  if (sh->sink) shadow_sink_push(sh->sink, c->scratch.data, c->scratch.len);
  shadow_shared_unlock(sh);
  shadow_script_on_divergence(p->gen, c->scratch.data, c->scratch.len);
}

void shadow_compare(shadow_comparator_t *c, const shadow_pair_t *p,
                    shadow_record_t *primary, shadow_record_t *candidate,
                    shadow_record_t *secondary) {
  shadow_gen_t *g = p->gen;
  const shadow_config_t *cfg = shadow_gen_config(g);
  /* Secret headers become marks before any hook or the diff sees them
   * (as in the gateway); a record that cannot be redacted is not
   * compared, so its secret cannot reach a record. */
  if (shadow_redact_record(cfg->redact, primary) ||
      shadow_redact_record(cfg->redact, candidate) ||
      (secondary && shadow_redact_record(cfg->redact, secondary))) {
    shadow_shared_lock(c->sh);
    shadow_counters_add(c->sh->stats->skipped, "diff_error", 10, 1);
    shadow_shared_unlock(c->sh);
    return;
  }
  int raw_compare = 0;
  shadow_rewritten_t *rw = &c->rewritten;
  shadow_rewritten_clear(rw);
  if (shadow_gen_has_hook(g, SHADOW_HOOK_NORMALIZE)) {
    /* A failed normalize leaves the record raw: compare what we have, and
     * count it, so /stats says how much of the verdict rests on raw
     * pairs. The records as received are kept for the divergence record
     * (rewritten.h). */
    size_t keep = cfg->limits.diff_bytes;
    shadow_rewritten_keep(rw, 0, primary, keep);
    shadow_rewritten_keep(rw, 1, candidate, keep);
    raw_compare |= shadow_script_normalize(g, p->lreq, primary, "primary");
    raw_compare |= shadow_script_normalize(g, p->lreq, candidate, "candidate");
    shadow_rewritten_check(rw, 0, primary);
    shadow_rewritten_check(rw, 1, candidate);
    if (secondary) shadow_script_normalize(g, p->lreq, secondary, "secondary");
  }
  /* The target says which gRPC method replied (its output type decodes
   * the messages, with grpc.descriptors). */
  const char *t = p->target;
  size_t tl = t ? strlen(t) : 0;
  int parts = shadow_diff_records_at(cfg->diff_opts, t, tl, primary, candidate,
                                     &c->diff, NULL);
  int have_noise =
      secondary && shadow_diff_records_at(cfg->diff_opts, t, tl, primary,
                                          secondary, &c->noise, NULL) >= 0;
  /* Noise is learned only where there is a secondary to learn it from;
   * without one, nothing here costs a thing. */
  int learning = cfg->secondary.kind != SHADOW_BACKEND_NONE;
  int raw = parts;
  c->cobs.n = c->nobs.n = 0;
  if (learning && parts > 0) observe_into(&c->cobs, &c->diff);
  if (have_noise) observe_into(&c->nobs, &c->noise);
  if (parts > 0 && have_noise) {
    envelope_ud_t eu = {c, p->route ? p->route : ""};
    shadow_noise_envelope_t env = {learned_max, &eu};
    if (shadow_noise_mask(&c->diff, &c->noise, &env) == 0)
      parts = (int)c->diff.parts;
  }
  if (learning && parts > 0) {
    learned_ud_t lu = {c, cfg, p->route ? p->route : ""};
    if (shadow_noise_filter(&c->diff, learned_noise, &lu) == 0)
      parts = (int)c->diff.parts;
  }
  int suppressed = raw > 0 && parts == 0;
  if (parts > 0 && shadow_redact_diff(cfg->redact, &c->diff) != 0)
    parts = -1; /* unredacted values must not be published */
  if (parts < 0) {
    shadow_shared_lock(c->sh);
    shadow_counters_add(c->sh->stats->skipped, "diff_error", 10, 1);
    shadow_shared_unlock(c->sh);
    return;
  }
  double now_ms = shadow_wall_ms();
  uint64_t id = count(c, p, (unsigned)parts, now_ms, have_noise, suppressed,
                      raw_compare != 0);
  rw->primary = primary;
  if (id) publish(c, p, id, now_ms, have_noise);
  rw->primary = NULL;
}
