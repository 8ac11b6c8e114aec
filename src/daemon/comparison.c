/* Pairing's last step (see comparison.h). Counting happens under the
 * shared lock; formatting, the larger part of the work, outside it. */
#include "comparison.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "divergence.h"
#include "log.h"
#include "redact.h"
#include "ring.h"

/* A divergence with more differing fields than this is counted by its
 * first ones, so one pathological pair cannot cost a sort of millions. */
#define FOLDED_MAX 1024

void shadow_comparator_init(shadow_comparator_t *c, shadow_shared_t *sh) {
  memset(c, 0, sizeof(*c));
  c->sh = sh;
}

void shadow_comparator_free(shadow_comparator_t *c) {
  shadow_diff_result_free(&c->diff);
  shadow_buf_free(&c->scratch);
  shadow_buf_free(&c->folded);
  free(c->sort);
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

/* Counts the pair, and a divergence when parts is not 0. Returns the
 * divergence's id, or 0 when there is none. */
static uint64_t count(shadow_comparator_t *c, const shadow_pair_t *p,
                      unsigned parts, double now_ms) {
  shadow_shared_t *sh = c->sh;
  shadow_stats_t *st = sh->stats;
  size_t rlen = p->route ? strlen(p->route) : 0;
  if (parts) fold_fields(c);
  shadow_shared_lock(sh);
  st->compared++;
  shadow_route_stats_t *rs = shadow_stats_route(st, p->route, rlen);
  if (rs) rs->compared++;
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
                    double now_ms) {
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
      .noise = NULL,
  };
  shadow_buf_reset(&c->scratch);
  if (shadow_divergence_format(&c->scratch, &m, &c->diff) < 0) return;
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
                    shadow_record_t *primary, shadow_record_t *candidate) {
  shadow_gen_t *g = p->gen;
  const shadow_config_t *cfg = shadow_gen_config(g);
  /* Secret headers become marks before any hook or the diff sees them
   * (as in the gateway); a record that cannot be redacted is not
   * compared, so its secret cannot reach a record. */
  if (shadow_redact_record(cfg->redact, primary) ||
      shadow_redact_record(cfg->redact, candidate)) {
    shadow_shared_lock(c->sh);
    shadow_counters_add(c->sh->stats->skipped, "diff_error", 10, 1);
    shadow_shared_unlock(c->sh);
    return;
  }
  if (shadow_gen_has_hook(g, SHADOW_HOOK_NORMALIZE)) {
    /* A failed normalize leaves the record raw: compare what we have. */
    shadow_script_normalize(g, p->lreq, primary, "primary");
    shadow_script_normalize(g, p->lreq, candidate, "candidate");
  }
  int parts = shadow_diff_records(cfg->diff_opts, primary, candidate, &c->diff);
  if (parts > 0 && shadow_redact_diff(cfg->redact, &c->diff) != 0)
    parts = -1; /* unredacted values must not be published */
  if (parts < 0) {
    shadow_shared_lock(c->sh);
    shadow_counters_add(c->sh->stats->skipped, "diff_error", 10, 1);
    shadow_shared_unlock(c->sh);
    return;
  }
  double now_ms = shadow_wall_ms();
  uint64_t id = count(c, p, (unsigned)parts, now_ms);
  if (id) publish(c, p, id, now_ms);
}
