/* The candidate's circuit breaker: closed -> open after `failures`
 * consecutive failures; open -> half-open after the cooldown, letting one
 * probe through; the probe's result closes or reopens it. Pure: the caller
 * passes the time. */
#ifndef SHADOW_BREAKER_H
#define SHADOW_BREAKER_H

#include <stdint.h>

enum {
  SHADOW_BREAKER_CLOSED = 0,
  SHADOW_BREAKER_OPEN,
  SHADOW_BREAKER_HALF_OPEN
};

typedef struct shadow_breaker_s {
  int state;
  int failures;  /* consecutive */
  int threshold; /* failures that open it */
  uint64_t cooldown_ms;
  uint64_t opened_ms;
  int probe_inflight;
} shadow_breaker_t;

void shadow_breaker_init(shadow_breaker_t *b, int threshold,
                         uint64_t cooldown_ms);
/* New settings (a reload) for a breaker that keeps its state. */
void shadow_breaker_configure(shadow_breaker_t *b, int threshold,
                              uint64_t cooldown_ms);
/* 1 when a candidate leg may start now. While the breaker is half-open
 * the one leg allowed is the probe, and only the probe's outcome may be
 * reported (shadow_breaker_result); the caller drops the results of legs
 * that started earlier, since they say nothing about the candidate now.
 * A probe that ends without an outcome (cancelled, never sent) frees the
 * slot by clearing probe_inflight. */
int shadow_breaker_allow(shadow_breaker_t *b, uint64_t now_ms);
void shadow_breaker_result(shadow_breaker_t *b, int ok, uint64_t now_ms);
const char *shadow_breaker_state_name(int state);

#endif
