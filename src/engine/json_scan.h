/* Where JSON containers end, found without parsing them: a structural scan
 * that follows strings and brackets only, 64 bytes at a time. The diff uses
 * it to leave unparsed what two texts share byte for byte. Pure. */
#ifndef SHADOW_JSON_SCAN_H
#define SHADOW_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>

#define SHADOW_JSON_SPAN_OPEN UINT32_MAX

/* The containers a reader of a scanned range may meet, in the order they
 * open: every container open at the end of the range, and every one that
 * closed inside it while its parent was still open there. What a closed
 * container holds is dropped when it closes, since a reader skips it
 * whole. For entry r, open[r] is the offset of its opening bracket and
 * end[r] is one past its closing bracket, or SHADOW_JSON_SPAN_OPEN when it
 * was still open at the end of the range. */
typedef struct shadow_json_spans_s {
  uint32_t *open, *end;
  size_t n, cap;
  size_t start, limit; /* the range scanned */
} shadow_json_spans_t;

#define SHADOW_JSON_SPANS_INIT                                                 \
  { NULL, NULL, 0, 0, 0, 0 }

/* Scans text[start, limit), where start is outside any string (a value's
 * first byte, say), and records the containers that open there as above.
 * A closing bracket that matches nothing in the range is passed over. The
 * scan does not validate: it follows quotes, backslash escapes and
 * brackets, and agrees with the parser wherever the parser accepts the
 * text. Returns 0 or -ENOMEM; offsets must fit in 32 bits. */
int shadow_json_spans_scan(shadow_json_spans_t *s, const char *text,
                           size_t start, size_t limit);
void shadow_json_spans_free(shadow_json_spans_t *s); /* safe twice */

/* The end of the one container whose opening bracket is text[off] (outside
 * any string), found by the same scan without a table: 1 and *end one past
 * its closing bracket when that lies before limit and is of the same kind,
 * else 0. Costs about the container's length at memory speed. */
int shadow_json_span_end(const char *text, size_t off, size_t limit,
                         size_t *end);

/* Tests only: 1 makes scans use the portable path even where the CPU has
 * AVX2, so both are checked on one machine. Not thread-safe. */
void shadow_json_spans_portable(int on);

/* Length of the common prefix of a and b (n bytes each), and of the common
 * suffix, by blocks: memcmp speed on long equal runs. */
size_t shadow_json_common_prefix(const char *a, const char *b, size_t n);
size_t shadow_json_common_suffix(const char *a, const char *b, size_t n);

#endif
