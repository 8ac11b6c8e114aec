/* JUnit XML for `shadowd replay --junit`: what CI systems read natively.
 * One testsuite; a test case per route (each failure lists its failing
 * exchanges) or per exchange. */
#ifndef SHADOW_JUNIT_H
#define SHADOW_JUNIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct shadow_junit_s shadow_junit_t;

typedef enum {
  SHADOW_JUNIT_PASSED,
  SHADOW_JUNIT_DIVERGED, /* a failure: detail lists the fields */
  SHADOW_JUNIT_FAILED,   /* a failure: the candidate's leg failed */
  SHADOW_JUNIT_SKIPPED   /* not compared, not the candidate's doing */
} shadow_junit_outcome_t;

typedef struct shadow_junit_case_s {
  const char *route, *method, *target; /* target: may hold any byte */
  size_t target_len;
  const char *file; /* the capture file and line it came from */
  uint64_t line;
  shadow_junit_outcome_t outcome;
  const char *detail; /* fields ("body:/total, status"), or the error */
  double seconds;     /* the candidate's answer time, or 0 */
} shadow_junit_case_t;

/* per_exchange: a case per exchange (kept in a temporary file, so memory
 * does not grow with the capture), else per route. NULL when out of
 * memory or no temporary file can be made. */
shadow_junit_t *shadow_junit_new(int per_exchange);
/* 0, or -1 when out of memory (the case is counted but not detailed). */
int shadow_junit_add(shadow_junit_t *j, const shadow_junit_case_t *c);
/* Writes the XML to path. error: NULL, or why the run itself failed (it
 * compared nothing): an error case. properties: NULL-ended name, value
 * pairs (the verdict, the candidate). 0, or -errno. */
int shadow_junit_write(shadow_junit_t *j, const char *path, const char *error,
                       const char *const *properties);
void shadow_junit_free(shadow_junit_t *j); /* NULL is fine */

#endif
