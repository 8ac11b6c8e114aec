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

/* A share as a percentage with `digits` significant digits, never in
 * exponent form and without trailing zeros: "95%", "4.6%", "0.096%". */
static void percent(char *out, size_t n, double share, int digits) {
  double p = share * 100;
  if (p >= 1) {
    int whole = (int)floor(log10(p)) + 1;
    snprintf(out, n, "%.*f", digits > whole ? digits - whole : 0, p);
  } else {
    snprintf(out, n, "%.*g", digits, p);
  }
  if (strchr(out, '.')) {
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '0')
      out[--len] = '\0';
    if (len > 0 && out[len - 1] == '.') out[--len] = '\0';
  }
  size_t len = strlen(out);
  if (len + 1 < n) memcpy(out + len, "%", 2);
}

/* Writes a and b as percentages with two significant digits, or with as
 * many more as it takes for two different numbers not to print alike: "at
 * least 0.1% differ; the budget is 0.1%" would read as a contradiction. */
static void two_percents(double a, double b, char *sa, char *sb, size_t n) {
  for (int digits = 2; digits <= 17; digits++) {
    percent(sa, n, a, digits);
    percent(sb, n, b, digits);
    if (a == b || strcmp(sa, sb) != 0) return;
  }
}

/* The reason in words an operator reads without knowing the statistics:
 * "at least" for the interval's lower bound, "at most" for its upper one
 * when it is within the budget, "up to ... may" when it is not (more
 * comparisons may still decide either way). */
static void bound_reason(shadow_verdict_t *v, const char *how, double bound,
                         const char *verb) {
  char sbound[48], sbudget[48];
  two_percents(bound, v->budget, sbound, sbudget, sizeof(sbound));
  snprintf(v->reason, sizeof(v->reason),
           "%s %s of compared requests %s; the budget is %s", how, sbound, verb,
           sbudget);
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
    bound_reason(v, "at least", v->lower, "differ");
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
    bound_reason(v, "at most", v->upper, "differ");
  } else {
    set_code(v, SHADOW_VERDICT_HOLD);
    bound_reason(v, "up to", v->upper, "may differ");
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
