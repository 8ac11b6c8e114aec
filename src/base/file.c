/* Whole files into a buffer (see file.h). */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int shadow_file_read(const char *path, shadow_buf_t *out) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) return -errno;
  char chunk[65536];
  size_t n;
  int rc = 0;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
    if (shadow_buf_append(out, chunk, n)) {
      rc = -ENOMEM;
      break;
    }
  if (ferror(f)) rc = -EIO;
  if (f != stdin) fclose(f);
  return rc;
}
