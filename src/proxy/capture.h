/* Capture in the live pipeline: what an exchange keeps for its line
 * from the capture decision until the primary's leg ends, and the line's
 * hand-off to the capture sink (telemetry/sink.h: its writer thread,
 * bounded queue, rotation, reopen on SIGUSR1, errors counted and never
 * fatal). A line is formatted (capture_line.h) on the event loop once the
 * client's response is complete, never before it, and is bounded by
 * body_bytes; the disk is only ever touched by the sink's thread. */
#ifndef SHADOW_CAPTURE_H
#define SHADOW_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "capture_line.h"
#include "config.h"
#include "record.h"

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
  int http_major; /* the client's protocol: 1, or 2 for HTTP/2 */
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
