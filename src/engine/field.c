/* Field names (see field.h). */
#include "field.h"

#include <string.h>

size_t shadow_field_fold(const char *field, size_t len, char *out, size_t cap) {
  size_t o = 0;
  if (cap == 0) return 0;
  /* Only a body field holds a JSON Pointer; header names stay whole. */
  int pointer = len >= 5 && memcmp(field, "body:", 5) == 0;
  size_t i = 0;
  while (i < len && o + 1 < cap) {
    if (pointer && field[i] == '/') {
      size_t j = i + 1;
      while (j < len && field[j] >= '0' && field[j] <= '9')
        j++;
      out[o++] = '/';
      if (j > i + 1 && (j == len || field[j] == '/')) {
        if (o + 1 < cap) out[o++] = '*';
        i = j;
      } else {
        i++;
      }
      continue;
    }
    out[o++] = field[i++];
  }
  out[o] = '\0';
  return o;
}
