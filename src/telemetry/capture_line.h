/* The capture line: one exchange as NDJSON, versioned ("v": 1 on every
 * line; docs/capture-replay.md "The capture format"), written and read in
 * this one room. A line holds the client's request (method, target,
 * headers, body, the client's address), the primary's response (status,
 * headers, body up to capture.body_bytes, with the whole body's length and
 * XXH3-128 digest, and its trailers when it had any), the primary's
 * timings, the route and the sampling key. A request that came over
 * HTTP/2 says so ("protocol": "h2"; absent: HTTP/1.x), so a replay of a
 * gRPC call knows what it was.
 * Secret headers and JSON values are replaced by their marks (redact.h),
 * the same marks the divergence records show.
 *
 * Reading a line checks every field, because a capture file is input: a
 * line that is cut short, is not JSON, lacks a field, has one of the wrong
 * type, or whose body does not match its length and digest, is refused
 * with words saying what is wrong, so the caller can report "file:line:
 * why" and go on with the next one. The daemon's hand-off of lines to
 * their sink is proxy/capture.c; reading files is offline/capture_read.c. */
#ifndef SHADOW_CAPTURE_LINE_H
#define SHADOW_CAPTURE_LINE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "record.h"
#include "redact.h"

#define SHADOW_CAPTURE_VERSION 1

/* One exchange as the line shows it. Strings are NUL-terminated unless a
 * length goes with them; route and key may be NULL. */
typedef struct shadow_capture_exchange_s {
  uint64_t id;
  double time_ms; /* when the request arrived, Unix epoch */
  const char *route, *key;
  const char *method;
  const char *target;
  size_t target_len;
  const char *peer;                /* the client's address, "" when unknown */
  int tls;                         /* it came over TLS */
  int http_major;                  /* 2: it came over HTTP/2 */
  const shadow_headers_t *headers; /* the client's, as received */
  const char *body;                /* the whole request body */
  size_t body_len;
  const shadow_record_t *response; /* the primary's */
  double first_byte_ms, total_ms;  /* < 0: unknown */
} shadow_capture_exchange_t;

/* Appends x as one line (without its newline) to out, redacted by r
 * (NULL: nothing), the response body kept up to body_bytes. 0 or
 * -ENOMEM (out is then as it was). */
int shadow_capture_format(shadow_buf_t *out, const shadow_capture_exchange_t *x,
                          const shadow_redact_t *r, size_t body_bytes);

/* Whether the headers say the body is JSON: application/json or a
 * *+json media type, as the diff engine decides it. */
int shadow_capture_is_json(const shadow_headers_t *h);

/* Whether data is valid UTF-8 (then a line carries it as a JSON string;
 * otherwise as base64). */
int shadow_capture_utf8_valid(const char *data, size_t len);

/* Appends the base64 (RFC 4648, padded) of data to out. 0 or -ENOMEM. */
int shadow_capture_base64(shadow_buf_t *out, const char *data, size_t len);

/* One exchange read from a line. Strings are NUL-terminated. */
typedef struct shadow_capture_entry_s {
  uint64_t id;
  char time[40]; /* as written: "2026-11-26T18:00:00.123Z" */
  int has_route, has_key;
  shadow_buf_t route, key;
  shadow_buf_t method, target, peer;
  int method_id; /* llhttp's number */
  int tls;
  int http_major;           /* 1, or 2 for "protocol": "h2" */
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

#endif
