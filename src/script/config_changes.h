/* What a reload changed, in words for the log: the config table's
 * top-level fields added, removed or changed, and the diff rules' count.
 * A fingerprint of each top-level field is taken when a config loads; two
 * loads' fingerprints are then compared without either Lua state. */
#ifndef SHADOW_CONFIG_CHANGES_H
#define SHADOW_CONFIG_CHANGES_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct shadow_config_print_s {
  char **keys;      /* top-level field names, sorted */
  uint64_t *hashes; /* a hash of each field's value */
  size_t n;
  size_t rules; /* diff rules the config defines */
} shadow_config_print_t;

/* Fingerprints the table at idx (the config). 0, or -1 out of memory
 * (then *p is empty). */
int shadow_config_print_take(lua_State *L, int idx, shadow_config_print_t *p);
void shadow_config_print_free(shadow_config_print_t *p);

/* Appends "added: a; removed: b; changed: c, d; rules: 3 -> 5" (only the
 * parts that apply) or "no field changed" to out. */
void shadow_config_print_describe(const shadow_config_print_t *before,
                                  const shadow_config_print_t *after,
                                  shadow_buf_t *out);

#endif
