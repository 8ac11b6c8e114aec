/* Rename rules applied to the primary's tree before the JSON diff walks
 * it (what they mean: the top of json_rules.c). Internal to the engine;
 * json_diff.c calls it. Pure. */
#ifndef SHADOW_JSON_RENAME_H
#define SHADOW_JSON_RENAME_H

#include <stdint.h>

#include "buf.h"
#include "json.h"
#include "json_rules.h"

typedef struct shadow_json_rename_s {
  shadow_json_arena_t *arena; /* in: where new nodes go */
  shadow_buf_t *explain;      /* in: NDJSON lines appended, or NULL */
  uint64_t hits;              /* out: bit i when rename i applied */
  /* out, on -EINVAL: the lazy node (a span both texts share) that did not
   * parse, the offset inside it, and why. */
  const char *bad_raw;
  size_t bad_off;
  const char *why;
} shadow_json_rename_t;

/* Moves the primary's members as the renames say, creating objects on
 * the way, and marks every container it changed SHADOW_JSON_EDITED.
 * Lazy nodes on the way are parsed. 0, -EINVAL (see bad_raw) or -ENOMEM. */
int shadow_json_renames_apply(const shadow_json_rules_t *r, shadow_json_t *root,
                              shadow_json_rename_t *ctx);

#endif
