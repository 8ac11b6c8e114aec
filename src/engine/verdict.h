/* The promotion verdict: may the candidate replace the primary, judged from
 * how many compared pairs diverged against a divergence budget. One rule in
 * one place, so the daemon's /stats, a gateway (through the FFI) and replay
 * always reach the same decision from the same counts. Pure arithmetic: no
 * I/O, no allocation.
 *
 * The interval is the 95% Wilson score interval of diverged / compared.
 * - hold as soon as its lower bound is above the budget, whatever the count:
 *   min_samples guards against an early promote, not an early hold;
 * - promote once at least min_samples pairs were compared and its upper
 *   bound is within the budget;
 * - otherwise insufficient-data below min_samples, hold at or above it.
 * With nothing compared there is no evidence either way: insufficient-data,
 * whatever min_samples says. */
#ifndef SHADOW_VERDICT_H
#define SHADOW_VERDICT_H

#include <stdint.h>

enum {
  SHADOW_VERDICT_HOLD = -1,
  SHADOW_VERDICT_INSUFFICIENT = 0,
  SHADOW_VERDICT_PROMOTE = 1,
};

/* Room for the longest reason the rule writes (two 20-digit counts, or two
 * numbers at full precision) and one added hold reason. */
#define SHADOW_VERDICT_REASON_MAX 192

typedef struct shadow_verdict_s {
  int code;             /* SHADOW_VERDICT_* */
  const char *decision; /* "promote", "hold", "insufficient-data" */
  uint64_t compared, diverged;
  double rate, lower, upper, budget;
  char reason[SHADOW_VERDICT_REASON_MAX]; /* why, in words */
} shadow_verdict_t;

/* The 95% Wilson score interval of k successes in n trials, clamped to
 * [0, 1]; [0, 1] when n is 0. k must not exceed n. */
void shadow_verdict_wilson(uint64_t n, uint64_t k, double *lower,
                           double *upper);

/* Fills v from the counts. diverged above compared counts as compared. */
void shadow_verdict_compute(shadow_verdict_t *v, uint64_t compared,
                            uint64_t diverged, double budget,
                            uint64_t min_samples);

/* Another objective's evidence that the candidate is failing (a latency
 * SLO, say): the verdict becomes hold with that reason, whatever it was.
 * When it was already hold, the reason is added after "; " if it fits, so
 * the first reason is never cut. */
void shadow_verdict_hold(shadow_verdict_t *v, const char *reason);

/* "promote", "hold" or "insufficient-data" for a SHADOW_VERDICT_* code. */
const char *shadow_verdict_decision(int code);

#endif
