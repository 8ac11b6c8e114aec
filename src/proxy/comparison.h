/* The end of a shadowed exchange: redact the records' secret headers,
 * normalize them through the config's hook, diff them with the C engine,
 * and count the outcome; a divergence has its secret JSON values redacted,
 * is formatted once and goes to the ring log, the signature table, the
 * NDJSON sink and the on_divergence hook. One comparator per loop: its buffers
 * are reused from pair to pair. */
#ifndef SHADOW_COMPARISON_H
#define SHADOW_COMPARISON_H

#include "buf.h"
#include "diff.h"
#include "record.h"
#include "rewritten.h"
#include "script.h"
#include "shared.h"

/* One request's differences as noise learning counts them: each folded
 * field once, with the shapes it showed and its largest number move. */
typedef struct shadow_obs_s {
  size_t off, len; /* the name, in names */
  unsigned shapes;
  double delta;
} shadow_obs_t;

typedef struct shadow_obs_list_s {
  shadow_buf_t names;
  shadow_obs_t *v;
  size_t n, cap;
} shadow_obs_list_t;

typedef struct shadow_comparator_s {
  shadow_shared_t *sh;
  shadow_diff_result_t diff;
  shadow_diff_result_t noise;   /* primary against secondary */
  shadow_obs_list_t cobs, nobs; /* the candidate's and the secondary's */
  const char **noise_list;      /* the record's "noise", NULL-ended */
  size_t noise_cap;
  shadow_buf_t scratch;
  /* The divergence's fields folded (stats.h), sorted, each once. */
  shadow_buf_t folded;
  size_t nfolded;
  const char **sort; /* room for sorting them */
  size_t sort_cap;
  shadow_rewritten_t rewritten; /* what normalize and rename changed */
} shadow_comparator_t;

/* What is known of the exchange besides the two records. */
typedef struct shadow_pair_s {
  shadow_gen_t *gen;
  int lreq; /* the Lua view of the request, for normalize (0: none) */
  const char *route, *method, *target, *key;   /* key NULL when none */
  double primary_ms, candidate_ms;             /* to the last byte */
  double primary_first_ms, candidate_first_ms; /* to the first byte */
} shadow_pair_t;

void shadow_comparator_init(shadow_comparator_t *c, shadow_shared_t *sh);
void shadow_comparator_free(shadow_comparator_t *c);

/* Compares primary with candidate (normalize may rewrite both). With a
 * secondary (the primary's twin; NULL when it did not answer), what the
 * two primaries disagree on is noise: masked out of this pair, learned per
 * field, and a divergence left only in fields classed noise is not
 * counted (engine/noise.h). */
void shadow_compare(shadow_comparator_t *c, const shadow_pair_t *pair,
                    shadow_record_t *primary, shadow_record_t *candidate,
                    shadow_record_t *secondary);

#endif
