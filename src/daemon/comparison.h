/* The end of a shadowed exchange: redact both records' secret headers,
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
#include "script.h"
#include "shared.h"

typedef struct shadow_comparator_s {
  shadow_shared_t *sh;
  shadow_diff_result_t diff;
  shadow_buf_t scratch;
  /* The divergence's fields folded (stats.h), sorted, each once. */
  shadow_buf_t folded;
  size_t nfolded;
  const char **sort; /* room for sorting them */
  size_t sort_cap;
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

/* Compares primary with candidate (normalize may rewrite both). */
void shadow_compare(shadow_comparator_t *c, const shadow_pair_t *pair,
                    shadow_record_t *primary, shadow_record_t *candidate);

#endif
