/* Constant-time comparison (see secret.h). */
#include "secret.h"

int shadow_secret_equal(const char *a, size_t an, const char *b, size_t bn) {
  size_t n = an > bn ? an : bn;
  /* volatile: the compiler may not turn the loop into an early exit. */
  volatile unsigned char diff = an != bn;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = i < an ? (unsigned char)a[i] : 0;
    unsigned char y = i < bn ? (unsigned char)b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}
