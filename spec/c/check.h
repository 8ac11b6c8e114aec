/* A minimal assertion helper for the C tests: each failed CHECK prints its
 * place and is counted; a test's main returns check_report(). */
#ifndef SHADOW_SPEC_CHECK_H
#define SHADOW_SPEC_CHECK_H

#include <stdio.h>

static int check_failed, check_passed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      check_passed++;                                                          \
    } else {                                                                   \
      check_failed++;                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

static inline int check_report(const char *name) {
  printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
  return check_failed ? 1 : 0;
}

#endif
