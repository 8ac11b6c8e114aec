/* What shadowd has learned of each field's noise: per route and folded
 * field, how often the candidate and the secondary differed from the
 * primary there, and in which ways (engine/noise.h's shapes, the largest
 * number moves, the reference a field's later differences are weighed
 * against: a few fixed numbers per field). The comparator fills it under the
 * shared lock; GET /noise classes each field by engine/noise.h's rule and
 * proposes a rule for the noise ones. Bounded: past max entries new fields are
 * counted, not kept.
 */
#ifndef SHADOW_NOISE_TABLE_H
#define SHADOW_NOISE_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "noise.h"

#define SHADOW_NOISE_FIELDS_MAX 4096

/* The secondary must have differed on a field this often before a
 * candidate difference is weighed against what it showed. */
#define SHADOW_NOISE_ENVELOPE_MIN 10

typedef struct shadow_noise_entry_s {
  char *route, *field;          /* NUL-terminated, owned */
  size_t route_idx;             /* into shadow_stats_t.routes */
  shadow_noise_field_t learned; /* what both sides showed (engine/noise.h) */
} shadow_noise_entry_t;

typedef struct shadow_noise_table_s shadow_noise_table_t;

shadow_noise_table_t *shadow_noise_table_new(size_t max);
void shadow_noise_table_free(shadow_noise_table_t *t);
/* The entry of (route, field), made when create is set and there is
 * room; NULL otherwise. */
shadow_noise_entry_t *shadow_noise_table_get(shadow_noise_table_t *t,
                                             const char *route, size_t rlen,
                                             size_t route_idx,
                                             const char *field, size_t flen,
                                             int create);
size_t shadow_noise_table_len(const shadow_noise_table_t *t);
shadow_noise_entry_t *shadow_noise_table_at(shadow_noise_table_t *t, size_t i);
/* Fields not kept because the table was full. */
uint64_t shadow_noise_table_dropped(const shadow_noise_table_t *t);

#endif
