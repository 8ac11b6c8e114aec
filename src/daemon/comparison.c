/* Pairing's last step (see comparison.h). Counting happens under the
 * shared lock; formatting, the larger part of the work, outside it. */
#include "comparison.h"

#include <string.h>

#include "clock.h"
#include "divergence.h"
#include "log.h"
#include "ring.h"

void shadow_comparator_init(shadow_comparator_t *c, shadow_shared_t *sh) {
  memset(c, 0, sizeof(*c));
  c->sh = sh;
}

void shadow_comparator_free(shadow_comparator_t *c) {
  shadow_diff_result_free(&c->diff);
  shadow_buf_free(&c->scratch);
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

/* Counts the pair, and a divergence when parts is not 0. Returns the
 * divergence's id, or 0 when there is none. */
static uint64_t count(shadow_comparator_t *c, const shadow_pair_t *p,
                      unsigned parts) {
  shadow_shared_t *sh = c->sh;
  shadow_stats_t *st = sh->stats;
  size_t rlen = p->route ? strlen(p->route) : 0;
  shadow_shared_lock(sh);
  st->compared++;
  count_hits(st, shadow_gen_config(p->gen)->diff_opts, &c->diff);
  shadow_route_stats_t *rs = shadow_stats_route(st, p->route, rlen);
  if (rs) rs->compared++;
  uint64_t id = 0;
  if (parts) {
    st->diverged++;
    if (rs) {
      rs->diverged++;
      for (int i = 0; i < 3; i++)
        if (parts & (1u << i)) rs->parts[i]++;
      if (parts & SHADOW_PART_BODY) rs->body_kinds[c->diff.body_kind]++;
    }
    const char *f = c->diff.fields.data;
    for (size_t i = 0; i < c->diff.nfields && f; i++) {
      size_t n = strlen(f);
      shadow_counters_add(st->fields, f, n, 1);
      f += n + 1;
    }
    id = ++sh->next_id;
  }
  shadow_shared_unlock(sh);
  return id;
}

static void publish(shadow_comparator_t *c, const shadow_pair_t *p,
                    uint64_t id) {
  shadow_shared_t *sh = c->sh;
  shadow_divergence_meta_t m = {
      .id = id,
      .time_ms = shadow_wall_ms(),
      .route = p->route,
      .method = p->method,
      .path = p->target,
      .key = p->key,
      .primary_ms = p->primary_ms,
      .candidate_ms = p->candidate_ms,
      .primary_first_ms = p->primary_first_ms,
      .candidate_first_ms = p->candidate_first_ms,
      .noise = NULL,
  };
  shadow_buf_reset(&c->scratch);
  if (shadow_divergence_format(&c->scratch, &m, &c->diff) < 0) return;
  const char *route = p->route ? p->route : "";
  shadow_shared_lock(sh);
  shadow_ring_push(sh->ring, c->scratch.data, c->scratch.len, route,
                   strlen(route));
  if (sh->sink) {
    fwrite(c->scratch.data, 1, c->scratch.len, sh->sink);
    fputc('\n', sh->sink);
  }
  shadow_shared_unlock(sh);
  shadow_script_on_divergence(p->gen, c->scratch.data, c->scratch.len);
}

void shadow_compare(shadow_comparator_t *c, const shadow_pair_t *p,
                    shadow_record_t *primary, shadow_record_t *candidate) {
  shadow_gen_t *g = p->gen;
  if (shadow_gen_has_hook(g, SHADOW_HOOK_NORMALIZE)) {
    /* A failed normalize leaves the record raw: compare what we have. */
    shadow_script_normalize(g, p->lreq, primary, "primary");
    shadow_script_normalize(g, p->lreq, candidate, "candidate");
  }
  int parts = shadow_diff_records(shadow_gen_config(g)->diff_opts, primary,
                                  candidate, &c->diff);
  if (parts < 0) {
    shadow_shared_lock(c->sh);
    shadow_counters_add(c->sh->stats->skipped, "diff_error", 10, 1);
    shadow_shared_unlock(c->sh);
    return;
  }
  uint64_t id = count(c, p, (unsigned)parts);
  if (id) publish(c, p, id);
}
