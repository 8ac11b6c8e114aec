/* libFuzzer target for the mask rules' Lua-pattern matcher, which runs on
 * every response value at a masked path (bytes from backends). One buffer
 * is split at its first 0x00 byte into a pattern and a value (no 0x00: the
 * whole buffer is both). A pattern the checker accepts is matched against
 * the value; and the value escaped into a literal pattern (every
 * punctuation byte behind %) must match the value itself when it fits.
 * Any crash, hang past libFuzzer's timeout or sanitizer report fails. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* value as a pattern that matches exactly it, or 0 when it would be too
 * long. A NUL or any byte is literal in a pattern except punctuation,
 * which %-escaping makes literal. */
static size_t literal(const char *v, size_t n, char *out, size_t cap) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (ispunct(c)) {
      if (k + 2 > cap) return 0;
      out[k++] = '%';
    } else if (k + 1 > cap) {
      return 0;
    }
    out[k++] = (char)c;
  }
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *d = (const char *)data;
  const char *zero = memchr(d, 0, size);
  const char *p = d, *v = d;
  size_t pn = size, vn = size;
  if (zero) {
    pn = (size_t)(zero - d);
    v = zero + 1;
    vn = size - pn - 1;
  }
  if (shadow_pattern_check(p, pn, NULL) == 0)
    (void)shadow_pattern_match(p, pn, v, vn);

  char lit[SHADOW_PATTERN_MAX];
  size_t ln = literal(v, vn, lit, sizeof lit);
  if (ln > 0) {
    if (shadow_pattern_check(lit, ln, NULL) != 0) abort();
    if (shadow_pattern_match(lit, ln, v, vn) != 1) abort();
  }
  return 0;
}
