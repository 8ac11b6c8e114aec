/* The promotion verdict's decision table (engine/verdict.c), checked
 * against Wilson bounds this file computes its own way: as the two roots of
 * the quadratic that defines the interval, not the centre-and-half-width
 * form the engine uses. Also the reason sentences, and another objective's
 * hold added on top. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "verdict.h"

#define Z 1.959963984540054 /* the 0.975 quantile of the standard normal */

/* The Wilson interval is where n (k/n - p)^2 = z^2 p (1 - p), that is
 * (n + z^2) p^2 - (2k + z^2) p + k^2/n = 0. */
static void roots(double n, double k, double *lo, double *hi) {
  double a = n + Z * Z, b = 2 * k + Z * Z, c = k * k / n;
  double d = sqrt(b * b - 4 * a * c);
  *lo = (b - d) / (2 * a);
  *hi = (b + d) / (2 * a);
}

static int close_to(double a, double b) {
  return fabs(a - b) <= 1e-9 * fmax(1e-12, fabs(b));
}

typedef struct row_s {
  uint64_t compared, diverged;
  double budget;
  uint64_t min_samples;
  const char *decision;
  const char *reason;
} row_t;

static void check_row(const row_t *r) {
  shadow_verdict_t v;
  shadow_verdict_compute(&v, r->compared, r->diverged, r->budget,
                         r->min_samples);
  int ok =
      strcmp(v.decision, r->decision) == 0 && strcmp(v.reason, r->reason) == 0;
  if (!ok)
    fprintf(stderr, "%llu of %llu at %g, min %llu: %s (%s), want %s (%s)\n",
            (unsigned long long)r->diverged, (unsigned long long)r->compared,
            r->budget, (unsigned long long)r->min_samples, v.decision, v.reason,
            r->decision, r->reason);
  CHECK(ok);
  CHECK(v.code == (r->decision[0] == 'p'   ? SHADOW_VERDICT_PROMOTE
                   : r->decision[0] == 'h' ? SHADOW_VERDICT_HOLD
                                           : SHADOW_VERDICT_INSUFFICIENT));
  CHECK(v.compared == r->compared && v.diverged == r->diverged);
  CHECK(v.budget == r->budget);
  if (r->compared) {
    double lo, hi;
    roots((double)r->compared, (double)r->diverged, &lo, &hi);
    CHECK(close_to(v.lower, lo) || (lo < 1e-12 && v.lower == 0));
    CHECK(close_to(v.upper, hi));
    CHECK(v.rate == (double)r->diverged / (double)r->compared);
  } else {
    CHECK(v.lower == 0 && v.upper == 1 && v.rate == 0);
  }
}

int main(void) {
  static const row_t table[] = {
      /* Every one of 80 differs: the interval 0.954-1 is far above the
       * budget, so hold long before min_samples. */
      {80, 80, 0.001, 1000, "hold",
       "at least 95% of compared requests differ; the budget is 0.1%"},
      /* None of 80 differs, but the upper bound (0.0458) is still over
       * the budget and min_samples is not reached. */
      {80, 0, 0.001, 1000, "insufficient-data",
       "1000 comparisons needed, 80 so far"},
      {4000, 0, 0.001, 1000, "promote",
       "at most 0.096% of compared requests differ; the budget is 0.1%"},
      /* 0.5% against 0.1%: the lower bound (0.00272) is above. */
      {2000, 10, 0.001, 1000, "hold",
       "at least 0.27% of compared requests differ; the budget is 0.1%"},
      /* Past min_samples with an interval that straddles the budget. */
      {2000, 2, 0.001, 1000, "hold",
       "up to 0.36% of compared requests may differ; the budget is 0.1%"},
      {1000, 0, 0.001, 1000, "hold",
       "up to 0.38% of compared requests may differ; the budget is 0.1%"},
      /* The fewest clean comparisons that promote at 0.1%: 3838. One
       * fewer prints the bound with the digits that tell it apart. */
      {3838, 0, 0.001, 1000, "promote",
       "at most 0.09999% of compared requests differ; the budget is 0.1%"},
      {3837, 0, 0.001, 1000, "hold",
       "up to 0.10002% of compared requests may differ; the budget is 0.1%"},
      /* One failing comparison is already clear evidence. */
      {1, 1, 0.001, 1000, "hold",
       "at least 21% of compared requests differ; the budget is 0.1%"},
      /* Nothing compared: no evidence either way, whatever min_samples. */
      {0, 0, 0.001, 1000, "insufficient-data",
       "1000 comparisons needed, 0 so far"},
      {0, 0, 0.001, 0, "insufficient-data", "no comparisons yet"},
      {0, 0, 0.001, 1, "insufficient-data", "1 comparison needed, 0 so far"},
      /* min_samples 0: the interval alone decides. */
      {4000, 0, 0.001, 0, "promote",
       "at most 0.096% of compared requests differ; the budget is 0.1%"},
      {80, 0, 0.001, 0, "hold",
       "up to 4.6% of compared requests may differ; the budget is 0.1%"},
      /* A budget of 1 tolerates anything once min_samples is reached; a
       * budget of 0 never promotes. */
      {10, 10, 1, 10, "promote",
       "at most 100% of compared requests differ; the budget is 100%"},
      {9, 9, 1, 10, "insufficient-data", "10 comparisons needed, 9 so far"},
      {1000000, 0, 0, 1000, "hold",
       "up to 0.00038% of compared requests may differ; the budget is 0%"},
  };
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
    check_row(&table[i]);

  /* The rule, swept over counts and budgets, against the roots above;
   * points within rounding of the budget are left out, where either
   * answer is arithmetic noise. */
  static const double budgets[] = {0, 0.0001, 0.001, 0.01, 0.05, 0.5, 1};
  static const uint64_t mins[] = {0, 1, 30, 1000};
  int swept = 0, mismatched = 0;
  for (uint64_t n = 0; n <= 5000; n += n < 100 ? 1 : 97)
    for (uint64_t k = 0; k <= n; k += 1 + n / 23)
      for (size_t b = 0; b < sizeof(budgets) / sizeof(budgets[0]); b++)
        for (size_t m = 0; m < sizeof(mins) / sizeof(mins[0]); m++) {
          double lo = 0, hi = 1, budget = budgets[b];
          if (n) roots((double)n, (double)k, &lo, &hi);
          if (k == 0) lo = 0;
          if (k == n) hi = 1;
          if (fabs(lo - budget) < 1e-12 || fabs(hi - budget) < 1e-12) continue;
          const char *want;
          if (n && lo > budget)
            want = "hold";
          else if (n == 0 || n < mins[m])
            want = "insufficient-data";
          else
            want = hi <= budget ? "promote" : "hold";
          shadow_verdict_t v;
          shadow_verdict_compute(&v, n, k, budget, mins[m]);
          swept++;
          if (strcmp(v.decision, want) != 0) {
            if (mismatched++ < 5)
              fprintf(stderr, "%llu of %llu at %g, min %llu: %s, want %s\n",
                      (unsigned long long)k, (unsigned long long)n, budget,
                      (unsigned long long)mins[m], v.decision, want);
          }
        }
  CHECK(swept > 10000);
  CHECK(mismatched == 0);

  /* Another objective's hold: a promote becomes hold with its reason, an
   * insufficient-data too (clear evidence needs no min_samples), and a hold
   * keeps its first reason and gains the new one. */
  shadow_verdict_t v;
  shadow_verdict_compute(&v, 4000, 0, 0.001, 1000);
  shadow_verdict_hold(&v, "latency ratio 2.5 above 1.5");
  CHECK(v.code == SHADOW_VERDICT_HOLD && strcmp(v.decision, "hold") == 0);
  CHECK(strcmp(v.reason, "latency ratio 2.5 above 1.5") == 0);
  CHECK(v.upper < 0.001); /* the numbers are untouched */
  shadow_verdict_compute(&v, 80, 0, 0.001, 1000);
  shadow_verdict_hold(&v, "latency ratio 2.5 above 1.5");
  CHECK(strcmp(v.decision, "hold") == 0);
  shadow_verdict_compute(&v, 80, 80, 0.001, 1000);
  shadow_verdict_hold(&v, "latency ratio 2.5 above 1.5");
  CHECK(strcmp(v.reason, "at least 95% of compared requests differ; the "
                         "budget is 0.1%; latency ratio 2.5 above 1.5") == 0);
  /* A reason that does not fit is left out rather than cut mid-word. */
  char longer[SHADOW_VERDICT_REASON_MAX];
  memset(longer, 'x', sizeof(longer) - 1);
  longer[sizeof(longer) - 1] = '\0';
  shadow_verdict_hold(&v, longer);
  CHECK(strcmp(v.reason, "at least 95% of compared requests differ; the "
                         "budget is 0.1%; latency ratio 2.5 above 1.5") == 0);

  /* The words for each code. */
  CHECK(strcmp(shadow_verdict_decision(SHADOW_VERDICT_PROMOTE), "promote") ==
        0);
  CHECK(strcmp(shadow_verdict_decision(SHADOW_VERDICT_HOLD), "hold") == 0);
  CHECK(strcmp(shadow_verdict_decision(SHADOW_VERDICT_INSUFFICIENT),
               "insufficient-data") == 0);

  /* The largest counts still give a finite interval and a reason that
   * fits whole. */
  shadow_verdict_compute(&v, UINT64_MAX - 1, 0, 0.001, UINT64_MAX);
  CHECK(strcmp(v.decision, "insufficient-data") == 0);
  CHECK(strcmp(v.reason, "18446744073709551615 comparisons needed, "
                         "18446744073709551614 so far") == 0);
  CHECK(isfinite(v.lower) && isfinite(v.upper) && v.upper < 1e-18);
  return check_report("test_verdict");
}
