/* Whether a shadow leg (candidate or secondary, each its own gate) may
 * start: the circuit breaker first, then the cap on legs in flight across
 * every worker loop. A leg that was let in
 * takes a slot and gives it back when it ends, saying how it went, which
 * is what moves the breaker. The breaker's state is published in the
 * stats as it changes. Each call takes the shared lock itself. */
#ifndef SHADOW_ADMISSION_H
#define SHADOW_ADMISSION_H

#include <stddef.h>
#include <stdint.h>

#include "shared.h"

typedef enum shadow_leg_outcome_e {
  SHADOW_LEG_OK = 0, /* the candidate answered */
  SHADOW_LEG_FAILED, /* it failed: counts toward opening the breaker */
  SHADOW_LEG_DROPPED /* no verdict: cancelled, abandoned, never sent */
} shadow_leg_outcome_t;

/* 1: a slot is taken; *probe says whether this is the single leg a
 * half-open breaker lets through. 0: not admitted, *why is "breaker" or
 * "overload" (a skip reason). cap 0 means no cap. */
int shadow_admission_enter(shadow_shared_t *sh, shadow_gate_id_t g, size_t cap,
                           uint64_t now_ms, int *probe, const char **why);
/* Gives the slot back. While the breaker is half-open only the probe's
 * outcome counts: a leg that started while it was closed and ends late
 * says nothing about the candidate now. */
void shadow_admission_leave(shadow_shared_t *sh, shadow_gate_id_t g, int probe,
                            shadow_leg_outcome_t outcome, uint64_t now_ms);

#endif
