/* Reading capture files back: the files a command names, read line
 * after line without holding a line longer than the cap (each line is
 * then read by capture_line.h), and the cap itself. */
#ifndef SHADOW_CAPTURE_READ_H
#define SHADOW_CAPTURE_READ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "capture_line.h"

/* The longest line read by default (--max-line-bytes): 64 MiB holds
 * every line the default settings can write (two bodies of at most
 * capture.body_bytes = 1 MiB, each at worst 6 bytes a byte once escaped,
 * and two heads), with room for raised limits. */
#define SHADOW_CAPTURE_MAX_LINE (64u * 1024u * 1024u)

struct shadow_config_s;
/* The longest line cfg's capture can write (request and response bodies
 * up to capture.body_bytes, heads up to their limits, all escaped at
 * worst), or SHADOW_CAPTURE_MAX_LINE if that is larger: the default cap
 * when the command has the config. */
size_t shadow_capture_line_bound(const struct shadow_config_s *cfg);

/* "N", "NK", "NM" or "NG" (KiB, MiB, GiB) into *out: 0, or -EINVAL
 * when it is not such a size from 1 KiB to 16 GiB. */
int shadow_capture_size_parse(const char *s, size_t *out);

/* Lines of capture files, one file after the other ("-" is stdin). */
typedef struct shadow_capture_reader_s {
  const char *const *paths;
  size_t npaths, next;
  FILE *f;
  const char *path; /* the file the last line came from */
  uint64_t line;    /* its number in that file, from 1 */
  char *buf;        /* the line */
  size_t cap;
  /* Longer lines are not held: they are read past and reported (0: the
   * default, SHADOW_CAPTURE_MAX_LINE). Set after open(). */
  size_t max_line;
  char *blk; /* what was read from the file and not yet split */
  size_t bpos, bend;
  uint64_t bytes_read, bytes_total; /* for progress: all the files */
} shadow_capture_reader_t;

/* Opens every file at once, so a missing one is found before anything
 * is replayed. 0, or -1 with *err naming the file (free() it). */
int shadow_capture_reader_open(shadow_capture_reader_t *r,
                               const char *const *paths, size_t n, char **err);
/* The next line (without its newline; NUL-terminated) and its length: 1,
 * or 0 at the end of the last file, or -1 with *err on a read error, or
 * 2 for a line longer than max_line: *line is NULL and *len its length,
 * its bytes were read past without being kept (the caller reports
 * path:line and goes on). */
int shadow_capture_reader_next(shadow_capture_reader_t *r, const char **line,
                               size_t *len, char **err);
void shadow_capture_reader_close(shadow_capture_reader_t *r);

#endif
