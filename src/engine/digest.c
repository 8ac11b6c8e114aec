/* XXH3-128 through xxhash's streaming state. The rest of the engine sees
 * only shadow_digest_t, so the hash could change in this one file. */
#include "digest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

struct shadow_digester_s {
  XXH3_state_t *state;
};

shadow_digest_t shadow_digest_of(const void *data, size_t len) {
  XXH128_hash_t h = XXH3_128bits(data, len);
  return (shadow_digest_t){h.high64, h.low64};
}

int shadow_digest_equal(shadow_digest_t a, shadow_digest_t b) {
  return a.high == b.high && a.low == b.low;
}

void shadow_digest_hex(shadow_digest_t d, char out[33]) {
  snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, d.high, d.low);
}

shadow_digester_t *shadow_digester_new(void) {
  shadow_digester_t *g = malloc(sizeof(*g));
  if (!g) return NULL;
  /* XXH3_createState allocates the aligned state xxhash wants. */
  g->state = XXH3_createState();
  if (!g->state || XXH3_128bits_reset(g->state) != XXH_OK) {
    XXH3_freeState(g->state);
    free(g);
    return NULL;
  }
  return g;
}

void shadow_digester_update(shadow_digester_t *g, const void *data,
                            size_t len) {
  if (len) XXH3_128bits_update(g->state, data, len);
}

shadow_digest_t shadow_digester_result(const shadow_digester_t *g) {
  XXH128_hash_t h = XXH3_128bits_digest(g->state);
  return (shadow_digest_t){h.high64, h.low64};
}

void shadow_digester_free(shadow_digester_t *g) {
  if (!g) return;
  XXH3_freeState(g->state);
  free(g);
}
