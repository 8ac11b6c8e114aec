/* Divergences grouped by signature: the route, the parts that differ and
 * the differing fields with array indexes folded to "*". The same fault
 * seen a thousand times is one entry with a count, the first and last time
 * it was seen and its newest record, which /divergences?group=signature
 * lists. Bounded whatever the traffic: at most max_entries signatures and
 * max_bytes of stored records; past either, the least recently seen
 * signature goes, and is counted. Pure data: no I/O, no locking (the
 * caller holds the shared lock). */
#ifndef SHADOW_SIGNATURES_H
#define SHADOW_SIGNATURES_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The defaults the daemon uses. */
#define SHADOW_SIGNATURES_MAX 1000
#define SHADOW_SIGNATURES_BYTES (16u << 20)
/* A signature keeps at most this many folded fields; a divergence with
 * more is told apart by the first ones and "+N more". */
#define SHADOW_SIGNATURE_FIELDS_MAX 32

typedef struct shadow_signatures_s shadow_signatures_t;

shadow_signatures_t *shadow_signatures_new(size_t max_entries,
                                           size_t max_bytes);
void shadow_signatures_free(shadow_signatures_t *s); /* NULL is fine */
/* Forgets every signature (a new counting window); keeps the limits. */
void shadow_signatures_reset(shadow_signatures_t *s);

/* Counts one divergence: route (may be NULL), the SHADOW_PART_* bits, its
 * folded fields (nfields NUL-terminated strings, sorted and unique), the
 * time and its record (json, copied as the newest exemplar). 0 or
 * -ENOMEM. */
int shadow_signatures_add(shadow_signatures_t *s, const char *route,
                          unsigned parts, const char *fields, size_t nfields,
                          double time_ms, const char *json, size_t len);

/* One signature as the fleet store sends it: its key text (route, parts
 * and fields, one a line), its id, counts and times and newest record. */
typedef struct shadow_signature_view_s {
  const char *key;
  size_t key_len;
  uint64_t hash; /* the id /divergences shows, hex */
  uint64_t count;
  double first_ms, last_ms;
  const char *exemplar; /* or NULL */
  size_t exemplar_len;
} shadow_signature_view_t;

/* Calls fn on each signature, least recently seen first. */
void shadow_signatures_each(const shadow_signatures_t *s,
                            void (*fn)(void *ud,
                                       const shadow_signature_view_t *v),
                            void *ud);
/* Puts a signature read back from the fleet: its key text (as _each gave
 * it), count, first and last time and exemplar; it becomes the most
 * recently seen. 0 or -ENOMEM. */
int shadow_signatures_put(shadow_signatures_t *s,
                          const shadow_signature_view_t *v);

size_t shadow_signatures_len(const shadow_signatures_t *s);
uint64_t shadow_signatures_evicted(const shadow_signatures_t *s);
size_t shadow_signatures_bytes(const shadow_signatures_t *s);
size_t shadow_signatures_max(const shadow_signatures_t *s);

/* {"divergences":[ groups, most recently seen first ],"total":N,
 * "evicted":N} with at most limit groups, of route only when route is not
 * NULL. A group: {"signature","route","parts","fields","count",
 * "first_seen","last_seen","exemplar"}. */
int shadow_signatures_render(const shadow_signatures_t *s, shadow_buf_t *out,
                             size_t limit, const char *route, size_t route_len);

#endif
