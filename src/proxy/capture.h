/* Capture: exchanges recorded as NDJSON for `shadowd replay`, one exchange
 * a line, versioned ("v": 1 on every line; README "The capture format").
 * A line holds the client's request (method, target, headers, body, the
 * client's address), the primary's response (status, headers, body up to
 * capture.body_bytes, with the whole body's length and XXH3-128 digest),
 * the primary's timings, the route and the sampling key. Secret headers
 * and JSON values are replaced by their marks (redact.h), the same marks
 * the divergence records show.
 *
 * The daemon writes lines through a sink of their own (telemetry/sink.h:
 * its writer thread, bounded queue, rotation, reopen on SIGUSR1, errors
 * counted and never fatal). A line is formatted on the event loop once
 * the client's response is complete, never before it, and is bounded by
 * body_bytes; the disk is only ever touched by the sink's thread. */
#ifndef SHADOW_CAPTURE_H
#define SHADOW_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
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

/* --- the daemon's side --------------------------------------------------- */

struct shadow_shared_s;
struct shadow_gen_s;

/* What an exchange keeps for its line from the capture decision (taken
 * when the request body is complete) until the primary's leg ends; the
 * request may be gone by then (the server reuses it). */
typedef struct shadow_capture_state_s {
  int maybe;   /* capture may want it: keep the primary's response */
  int decided; /* the decision was taken */
  int wanted;  /* it is captured: a line is written when the primary ends */
  int has_key;
  double time_ms;
  shadow_buf_t key, method, target;
  shadow_headers_t headers;
  char peer[64];
  int tls;
} shadow_capture_state_t;

void shadow_capture_state_free(shadow_capture_state_t *s);

/* The response bytes an exchange keeps when capture may want it: the
 * larger of limits.diff_bytes and capture.body_bytes. */
size_t shadow_capture_keep(const shadow_config_t *cfg);

/* Formats the exchange's line into scratch and hands it to the capture
 * sink; counts it, or the reason it was not written. Takes the lock. */
void shadow_capture_write(struct shadow_shared_s *sh,
                          const shadow_config_t *cfg,
                          const shadow_capture_state_t *st, const char *route,
                          const char *body, size_t body_len,
                          const shadow_record_t *response, double first_byte_ms,
                          double total_ms, shadow_buf_t *scratch);

/* Counts an exchange chosen for capture that could not be written, by
 * reason (shadow_capture_skipped_total{reason}). Takes the lock. */
void shadow_capture_skip(struct shadow_shared_s *sh, const char *reason);

#endif
