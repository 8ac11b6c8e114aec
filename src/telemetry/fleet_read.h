/* The fleet read back from the store's replies: after a flush, HGETALL of
 * the counts, float, max and sig hashes, XREVRANGE of the log and HGETALL
 * of the instances, in that order, become a shadow_fleet_t (fleet.h): a
 * fresh stats from the counts, the signatures put back newest last, the
 * records in a ring, and the instances that reported in the last minute.
 * Pure data from hiredis's reply objects; no I/O. */
#ifndef SHADOW_FLEET_READ_H
#define SHADOW_FLEET_READ_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet.h"

/* r: the six replies in the order above. NULL when out of memory. */
shadow_fleet_t *shadow_fleet_read(redisReply *const *r,
                                  const char *const *hook_names, size_t nhooks,
                                  size_t max_sigs, size_t log_capacity,
                                  uint64_t epoch, double now_ms);
/* A reply's number (an integer, or a string holding one), or 0. */
double shadow_fleet_reply_num(const redisReply *x);

#endif
