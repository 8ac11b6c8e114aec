/* The ring log: the newest N divergence records, as JSON text. Bounded:
 * pushing into a full ring drops the oldest. Pure: no I/O, no locking. */
#ifndef SHADOW_RING_H
#define SHADOW_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct shadow_ring_s shadow_ring_t;

shadow_ring_t *shadow_ring_new(size_t capacity); /* capacity >= 1 */
void shadow_ring_free(shadow_ring_t *r);         /* NULL is fine */

/* Copies json (one record) and its route tag in. Returns 0 or -ENOMEM. */
int shadow_ring_push(shadow_ring_t *r, const char *json, size_t len,
                     const char *route, size_t route_len);
size_t shadow_ring_len(const shadow_ring_t *r);
size_t shadow_ring_capacity(const shadow_ring_t *r);
uint64_t shadow_ring_pushed(const shadow_ring_t *r); /* ever pushed */
/* Keeps the newest min(len, capacity) entries. */
int shadow_ring_set_capacity(shadow_ring_t *r, size_t capacity);

/* Entry i, 0 = newest. NULL when i >= len. Pointers stay valid until the
 * next push or set_capacity. */
const char *shadow_ring_get(const shadow_ring_t *r, size_t i, size_t *len,
                            const char **route, size_t *route_len);

#endif
