/* The digest of a body: XXH3-128, computed in one go or over a body that
 * arrives in pieces. Large bodies are compared by digest and length
 * instead of being kept whole. Pure. */
#ifndef SHADOW_DIGEST_H
#define SHADOW_DIGEST_H

#include <stddef.h>
#include <stdint.h>

typedef struct shadow_digest_s {
  uint64_t high, low;
} shadow_digest_t;

/* A digest in progress; opaque (XXH3's state, 64-byte aligned). */
typedef struct shadow_digester_s shadow_digester_t;

shadow_digest_t shadow_digest_of(const void *data, size_t len);
int shadow_digest_equal(shadow_digest_t a, shadow_digest_t b);
/* 32 lower-case hex digits and a NUL: high word first. */
void shadow_digest_hex(shadow_digest_t d, char out[33]);

/* NULL when out of memory. */
shadow_digester_t *shadow_digester_new(void);
void shadow_digester_update(shadow_digester_t *g, const void *data, size_t len);
shadow_digest_t shadow_digester_result(const shadow_digester_t *g);
void shadow_digester_free(shadow_digester_t *g); /* NULL is fine */

#endif
