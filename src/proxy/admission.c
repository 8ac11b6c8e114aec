/* Shadow-leg admission (see admission.h): the breaker's policy as the
 * dispatcher applies it, kept apart from the breaker's own state machine
 * (breaker.c), which knows nothing of slots or probes that vanish. */
#include "admission.h"

#include <stdio.h>

#include "log.h"

/* Says once, in the log, that a breaker moved, with why: an operator
 * reading the log learns when mirroring stopped and started again. */
static void log_transition(shadow_gate_id_t g, int from,
                           const shadow_breaker_t *b, const char *why) {
  if (from == b->state) return;
  shadow_log_warn("breaker: %s %s -> %s (%s)",
                  g == SHADOW_GATE_SECONDARY ? "secondary" : "candidate",
                  shadow_breaker_state_name(from),
                  shadow_breaker_state_name(b->state), why);
}

/* /stats and /metrics show the breakers as they are now: every
 * transition, open -> half-open in shadow_breaker_allow included. Under
 * the lock. */
static void publish(shadow_shared_t *sh, shadow_gate_id_t g) {
  shadow_breaker_t *b = &sh->gates[g].breaker;
  if (g == SHADOW_GATE_SECONDARY) {
    sh->stats->secondary_breaker_state = shadow_breaker_state_name(b->state);
    return;
  }
  sh->stats->breaker_open = b->state == SHADOW_BREAKER_OPEN;
  sh->stats->breaker_state = shadow_breaker_state_name(b->state);
}

/* A probe that ends with no outcome: a half-open breaker must not wait for
 * it forever. Under the lock. */
static void release_probe(shadow_breaker_t *b) {
  if (b->state == SHADOW_BREAKER_HALF_OPEN) b->probe_inflight = 0;
}

int shadow_admission_enter(shadow_shared_t *sh, shadow_gate_id_t g, size_t cap,
                           uint64_t now_ms, int *probe, const char **why) {
  *probe = 0;
  *why = NULL;
  shadow_shared_lock(sh);
  shadow_gate_t *gate = &sh->gates[g];
  shadow_breaker_t *b = &gate->breaker;
  int from = b->state;
  int allowed = shadow_breaker_allow(b, now_ms);
  log_transition(g, from, b, "cooldown passed, one probe let through");
  *probe = allowed && b->state == SHADOW_BREAKER_HALF_OPEN;
  publish(sh, g);
  if (!allowed) {
    *why = "breaker";
  } else if (cap > 0 && gate->inflight >= cap) {
    /* The breaker let this leg through; give the probe back unused. */
    if (*probe) release_probe(b);
    *probe = 0;
    *why = "overload";
  } else {
    /* The slot is taken here, under the same lock as the check, so that
     * loops racing for the last slot cannot both get it. */
    gate->inflight++;
  }
  shadow_shared_unlock(sh);
  return *why == NULL;
}

void shadow_admission_leave(shadow_shared_t *sh, shadow_gate_id_t g, int probe,
                            shadow_leg_outcome_t outcome, uint64_t now_ms) {
  shadow_shared_lock(sh);
  shadow_gate_t *gate = &sh->gates[g];
  gate->inflight--;
  shadow_breaker_t *b = &gate->breaker;
  int counts = probe || b->state != SHADOW_BREAKER_HALF_OPEN;
  if (outcome == SHADOW_LEG_DROPPED) {
    if (probe) release_probe(b);
  } else if (counts) {
    int from = b->state;
    shadow_breaker_result(b, outcome == SHADOW_LEG_OK, now_ms);
    if (outcome == SHADOW_LEG_OK)
      log_transition(g, from, b, "the probe succeeded");
    else if (from == SHADOW_BREAKER_HALF_OPEN)
      log_transition(g, from, b, "the probe failed");
    else {
      char why[64];
      snprintf(why, sizeof(why), "%d consecutive failures", b->threshold);
      log_transition(g, from, b, why);
    }
    publish(sh, g);
  }
  shadow_shared_unlock(sh);
}
