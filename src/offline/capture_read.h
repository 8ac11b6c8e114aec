/* Reading capture files back (the format capture.h writes): one line
 * into one exchange, checked field by field, and the files a command
 * names read line after line. A line that is cut short, is not JSON,
 * lacks a field, has one of the wrong type, or whose body does not match
 * its length and digest, is refused with words saying what is wrong, so
 * the caller can report "file:line: why" and go on with the next one. */
#ifndef SHADOW_CAPTURE_READ_H
#define SHADOW_CAPTURE_READ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "record.h"

/* One exchange read from a line. Strings are NUL-terminated. */
typedef struct shadow_capture_entry_s {
  uint64_t id;
  char time[40]; /* as written: "2026-11-26T18:00:00.123Z" */
  int has_route, has_key;
  shadow_buf_t route, key;
  shadow_buf_t method, target, peer;
  int method_id; /* llhttp's number */
  int tls;
  shadow_headers_t headers; /* the request's */
  shadow_buf_t body;        /* the request's */
  /* The primary's response: body_cut set when the line holds only a
   * prefix (then body_total and body_digest describe the whole). */
  shadow_record_t response;
  double first_byte_ms, total_ms; /* < 0: unknown */
} shadow_capture_entry_t;

void shadow_capture_entry_init(shadow_capture_entry_t *e);
/* Empties e for the next line, keeping its memory. */
void shadow_capture_entry_clear(shadow_capture_entry_t *e);
void shadow_capture_entry_release(shadow_capture_entry_t *e);

/* Fills e (cleared first) from one line. 0, or -EINVAL with err saying
 * what is wrong, or -ENOMEM. */
int shadow_capture_parse(const char *line, size_t len,
                         shadow_capture_entry_t *e, char *err, size_t errlen);

/* Decodes base64 (RFC 4648, padding optional) into out. 0 or -EINVAL
 * (not base64) or -ENOMEM. */
int shadow_capture_unbase64(shadow_buf_t *out, const char *s, size_t n);

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
