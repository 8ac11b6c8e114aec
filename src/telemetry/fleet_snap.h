/* A snapshot of named counts: what this instance had sent to the fleet
 * store at its last successful flush, so the next flush sends only what
 * came after (a delta), and what a new fleet epoch takes as its baseline.
 * A plain hash map of names to numbers; pure data. */
#ifndef SHADOW_FLEET_SNAP_H
#define SHADOW_FLEET_SNAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct shadow_fleet_snap_s shadow_fleet_snap_t;

shadow_fleet_snap_t *shadow_fleet_snap_new(void);
void shadow_fleet_snap_free(shadow_fleet_snap_t *s); /* NULL is fine */
size_t shadow_fleet_snap_len(const shadow_fleet_snap_t *s);
/* Sets name's numbers. 0 or -ENOMEM. */
int shadow_fleet_snap_put(shadow_fleet_snap_t *s, const char *name, size_t len,
                          uint64_t u, double d);
/* 1 and the numbers when name is there, else 0 (and zeros). */
int shadow_fleet_snap_get(const shadow_fleet_snap_t *s, const char *name,
                          size_t len, uint64_t *u, double *d);

#endif
