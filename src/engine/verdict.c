/* The promotion verdict's arithmetic (see verdict.h for the rule): the
 * Wilson interval, the decision, and the sentence that says why. Touches
 * nothing but the struct it is given. */
#include "verdict.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The standard normal quantile for a two-sided 95% interval. */
#define Z95 1.959963984540054

void shadow_verdict_wilson(uint64_t n, uint64_t k, double *lower,
                           double *upper) {
  if (n == 0) {
    *lower = 0;
    *upper = 1;
    return;
  }
  const double z2 = Z95 * Z95;
  double dn = (double)n, p = (double)k / dn;
  double denom = 1 + z2 / dn;
  double centre = (p + z2 / (2 * dn)) / denom;
  double half = Z95 * sqrt(p * (1 - p) / dn + z2 / (4 * dn * dn)) / denom;
  /* At k = 0 the lower bound is 0 and at k = n the upper bound is 1
   * exactly; the subtraction would leave a rounding residue (5e-20) that
   * /stats would print. */
  *lower = k == 0 ? 0 : fmax(0, centre - half);
  *upper = k >= n ? 1 : fmin(1, centre + half);
}

/* Writes a and b with three significant digits, or with as many more as
 * it takes for two different numbers not to print alike: a reason saying
 * "upper bound 0.001 above budget 0.001" would read as a contradiction. */
static void two_numbers(double a, double b, char *sa, char *sb, size_t n) {
  for (int digits = 3; digits <= 17; digits++) {
    snprintf(sa, n, "%.*g", digits, a);
    snprintf(sb, n, "%.*g", digits, b);
    if (a == b || strcmp(sa, sb) != 0) return;
  }
}

static void bound_reason(shadow_verdict_t *v, const char *which, double bound,
                         const char *relation) {
  char sbound[32], sbudget[32];
  two_numbers(bound, v->budget, sbound, sbudget, sizeof(sbound));
  snprintf(v->reason, sizeof(v->reason), "%s bound %s %s budget %s", which,
           sbound, relation, sbudget);
}

static void set_code(shadow_verdict_t *v, int code) {
  v->code = code;
  v->decision = shadow_verdict_decision(code);
}

void shadow_verdict_compute(shadow_verdict_t *v, uint64_t compared,
                            uint64_t diverged, double budget,
                            uint64_t min_samples) {
  if (diverged > compared) diverged = compared;
  v->compared = compared;
  v->diverged = diverged;
  v->budget = budget;
  v->rate = compared ? (double)diverged / (double)compared : 0;
  shadow_verdict_wilson(compared, diverged, &v->lower, &v->upper);

  if (compared > 0 && v->lower > budget) {
    set_code(v, SHADOW_VERDICT_HOLD);
    bound_reason(v, "lower", v->lower, "above");
  } else if (compared == 0 || compared < min_samples) {
    set_code(v, SHADOW_VERDICT_INSUFFICIENT);
    if (min_samples == 0)
      snprintf(v->reason, sizeof(v->reason), "no comparisons yet");
    else
      snprintf(v->reason, sizeof(v->reason),
               "%llu comparison%s needed, %llu "
               "so far",
               (unsigned long long)min_samples, min_samples == 1 ? "" : "s",
               (unsigned long long)compared);
  } else if (v->upper <= budget) {
    set_code(v, SHADOW_VERDICT_PROMOTE);
    bound_reason(v, "upper", v->upper, "within");
  } else {
    set_code(v, SHADOW_VERDICT_HOLD);
    bound_reason(v, "upper", v->upper, "above");
  }
}

void shadow_verdict_hold(shadow_verdict_t *v, const char *reason) {
  if (!reason) reason = "";
  if (v->code != SHADOW_VERDICT_HOLD) {
    set_code(v, SHADOW_VERDICT_HOLD);
    snprintf(v->reason, sizeof(v->reason), "%s", reason);
    return;
  }
  size_t have = strlen(v->reason), add = strlen(reason);
  if (add == 0 || have + 2 + add >= sizeof(v->reason)) return;
  memcpy(v->reason + have, "; ", 2);
  memcpy(v->reason + have + 2, reason, add + 1);
}

const char *shadow_verdict_decision(int code) {
  if (code > 0) return "promote";
  if (code < 0) return "hold";
  return "insufficient-data";
}
