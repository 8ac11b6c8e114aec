/* The candidate's circuit breaker as a pure state machine (see breaker.h):
 * closed, open after `threshold` consecutive failures, half-open after the
 * cooldown. Time comes from the caller; admission.c applies it to legs. */
#include "breaker.h"

void shadow_breaker_init(shadow_breaker_t *b, int threshold,
                         uint64_t cooldown_ms) {
  b->state = SHADOW_BREAKER_CLOSED;
  b->failures = 0;
  b->opened_ms = 0;
  b->probe_inflight = 0;
  shadow_breaker_configure(b, threshold, cooldown_ms);
}

void shadow_breaker_configure(shadow_breaker_t *b, int threshold,
                              uint64_t cooldown_ms) {
  b->threshold = threshold > 0 ? threshold : 1;
  b->cooldown_ms = cooldown_ms;
}

int shadow_breaker_allow(shadow_breaker_t *b, uint64_t now_ms) {
  switch (b->state) {
  case SHADOW_BREAKER_CLOSED: return 1;
  case SHADOW_BREAKER_OPEN:
    if (now_ms - b->opened_ms < b->cooldown_ms) return 0;
    b->state = SHADOW_BREAKER_HALF_OPEN;
    b->probe_inflight = 1;
    return 1;
  default: /* half-open: one probe at a time */
    if (b->probe_inflight) return 0;
    b->probe_inflight = 1;
    return 1;
  }
}

void shadow_breaker_result(shadow_breaker_t *b, int ok, uint64_t now_ms) {
  if (ok) {
    /* Half-open, this is the probe's success (see breaker.h): close. A
     * success while open is a late leg and changes nothing. */
    if (b->state == SHADOW_BREAKER_HALF_OPEN) {
      b->state = SHADOW_BREAKER_CLOSED;
      b->probe_inflight = 0;
    }
    if (b->state == SHADOW_BREAKER_CLOSED) b->failures = 0;
    return;
  }
  if (b->state == SHADOW_BREAKER_HALF_OPEN) {
    b->state = SHADOW_BREAKER_OPEN;
    b->opened_ms = now_ms;
    b->probe_inflight = 0;
  } else if (b->state == SHADOW_BREAKER_CLOSED &&
             ++b->failures >= b->threshold) {
    b->state = SHADOW_BREAKER_OPEN;
    b->opened_ms = now_ms;
  }
}

const char *shadow_breaker_state_name(int state) {
  return state == SHADOW_BREAKER_OPEN        ? "open"
         : state == SHADOW_BREAKER_HALF_OPEN ? "half-open"
                                             : "closed";
}
