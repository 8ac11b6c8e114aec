/* Reading capture files line by line (see capture_read.h). A capture
 * file is input: it may have been cut by a full disk, edited by hand, or
 * written by a later version; each line is checked by capture_line.c. */
#include "capture_read.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

int shadow_capture_reader_open(shadow_capture_reader_t *r,
                               const char *const *paths, size_t n, char **err) {
  memset(r, 0, sizeof(*r));
  r->paths = paths;
  r->npaths = n;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(paths[i], "-") == 0) continue;
    struct stat sb;
    FILE *f = fopen(paths[i], "rb");
    if (!f || fstat(fileno(f), &sb) != 0 || S_ISDIR(sb.st_mode)) {
      int e = f ? (S_ISDIR(sb.st_mode) ? EISDIR : errno) : errno;
      if (f) fclose(f);
      shadow_buf_t b = SHADOW_BUF_INIT;
      shadow_buf_printf(&b, "%s: %s", paths[i], strerror(e));
      *err = shadow_buf_steal(&b, NULL);
      return -1;
    }
    r->bytes_total += (uint64_t)sb.st_size;
    fclose(f);
  }
  return 0;
}

/* What is read from a file at once; lines are split out of it. */
#define READ_BLOCK (64 * 1024)

/* Whole blocks by read(2), not stdio: a line that has arrived on a pipe
 * is handed on without waiting for a full block behind it. 0 at the end,
 * -1 on an error. */
static ssize_t fill_block(shadow_capture_reader_t *r) {
  for (;;) {
    ssize_t n = read(fileno(r->f), r->blk, READ_BLOCK);
    if (n >= 0 || errno != EINTR) return n;
  }
}

static int read_failed(shadow_capture_reader_t *r, char **err) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  shadow_buf_printf(&b, "%s: read error: %s", r->path, strerror(errno));
  *err = shadow_buf_steal(&b, NULL);
  if (r->f != stdin) fclose(r->f);
  r->f = NULL;
  return -1;
}

int shadow_capture_reader_next(shadow_capture_reader_t *r, const char **line,
                               size_t *len, char **err) {
  size_t max = r->max_line ? r->max_line : SHADOW_CAPTURE_MAX_LINE;
  if (!r->blk && !(r->blk = malloc(READ_BLOCK))) {
    *err = strdup("out of memory");
    return -1;
  }
  for (;;) {
    if (!r->f) {
      if (r->next >= r->npaths) return 0;
      r->path = r->paths[r->next++];
      r->line = 0;
      r->bpos = r->bend = 0;
      r->f = strcmp(r->path, "-") == 0 ? stdin : fopen(r->path, "rb");
      if (!r->f) {
        shadow_buf_t b = SHADOW_BUF_INIT;
        shadow_buf_printf(&b, "%s: %s", r->path, strerror(errno));
        *err = shadow_buf_steal(&b, NULL);
        return -1;
      }
    }
    /* The line's bytes are kept up to max; past it they are only
     * counted, so a line of any length costs one block of memory. */
    size_t k = 0;
    uint64_t total = 0;
    int any = 0, over = 0, newline = 0;
    for (;;) {
      if (r->bpos == r->bend) {
        ssize_t n = fill_block(r);
        if (n < 0) return read_failed(r, err);
        if (n == 0) break;
        r->bpos = 0;
        r->bend = (size_t)n;
      }
      any = 1;
      const char *s = r->blk + r->bpos;
      size_t avail = r->bend - r->bpos;
      const char *nl = memchr(s, '\n', avail);
      size_t take = nl ? (size_t)(nl - s) : avail;
      total += take;
      if (!over && k + take > max) over = 1;
      if (!over) {
        if (k + take + 1 > r->cap) {
          size_t cap = r->cap ? r->cap : 256;
          while (cap < k + take + 1)
            cap *= 2;
          if (cap > max + 1) cap = max + 1;
          char *nb = realloc(r->buf, cap);
          if (!nb) {
            *err = strdup("out of memory");
            return -1;
          }
          r->buf = nb;
          r->cap = cap;
        }
        memcpy(r->buf + k, s, take);
        k += take;
      }
      r->bpos += take + (nl ? 1 : 0);
      if (nl) {
        total++;
        newline = 1;
        break;
      }
    }
    if (!any) { /* the end of this file */
      if (r->f != stdin) fclose(r->f);
      r->f = NULL;
      continue;
    }
    r->line++;
    r->bytes_read += total;
    if (over) {
      *line = NULL;
      *len = (size_t)(total - (uint64_t)newline);
      return 2;
    }
    if (k && r->buf[k - 1] == '\r') k--;
    r->buf[k] = '\0';
    *line = r->buf;
    *len = k;
    return 1;
  }
}

size_t shadow_capture_line_bound(const struct shadow_config_s *cfg) {
  /* Each byte of a body or a head is at worst 6 once escaped ("\u0001"),
   * a base64 body 4/3; the line's own fields and framing are small. */
  uint64_t bodies = 2 * (uint64_t)cfg->capture.body_bytes;
  uint64_t heads = (uint64_t)cfg->limits.header_bytes +
                   (uint64_t)cfg->primary.opts.header_bytes;
  uint64_t n = 6 * (bodies + heads) + 64 * 1024;
  if (n < SHADOW_CAPTURE_MAX_LINE) n = SHADOW_CAPTURE_MAX_LINE;
  return n > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)n;
}

int shadow_capture_size_parse(const char *s, size_t *out) {
  char *end;
  errno = 0;
  if (!s || *s < '0' || *s > '9') return -EINVAL;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return -EINVAL;
  int shift = 0;
  if (*end == 'K' || *end == 'k') shift = 10;
  if (*end == 'M' || *end == 'm') shift = 20;
  if (*end == 'G' || *end == 'g') shift = 30;
  if (shift) end++;
  if (*end || v > (16ull << 30) >> shift) return -EINVAL;
  v <<= shift;
  if (v < 1024) return -EINVAL;
  *out = (size_t)v;
  return 0;
}

void shadow_capture_reader_close(shadow_capture_reader_t *r) {
  if (r->f && r->f != stdin) fclose(r->f);
  r->f = NULL;
  free(r->buf);
  r->buf = NULL;
  free(r->blk);
  r->blk = NULL;
}
