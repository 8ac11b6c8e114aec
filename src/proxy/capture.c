/* Capture in the live pipeline (see capture.h): what an exchange keeps
 * for its line, and the hand-off of a formatted line to the capture sink,
 * counted under the shared lock. */
#include "capture.h"

#include <stdlib.h>
#include <string.h>

#include "shared.h"

void shadow_capture_state_free(shadow_capture_state_t *s) {
  shadow_buf_free(&s->key);
  shadow_buf_free(&s->method);
  shadow_buf_free(&s->target);
  shadow_headers_free(&s->headers);
}

size_t shadow_capture_keep(const shadow_config_t *cfg) {
  return cfg->capture.body_bytes > cfg->limits.diff_bytes
             ? cfg->capture.body_bytes
             : cfg->limits.diff_bytes;
}

void shadow_capture_skip(shadow_shared_t *sh, const char *reason) {
  shadow_shared_lock(sh);
  shadow_counters_add(sh->stats->capture_skipped, reason, strlen(reason), 1);
  shadow_shared_unlock(sh);
}

void shadow_capture_write(shadow_shared_t *sh, const shadow_config_t *cfg,
                          const shadow_capture_state_t *st, const char *route,
                          const char *body, size_t body_len,
                          const shadow_record_t *response, double first_byte_ms,
                          double total_ms, shadow_buf_t *scratch) {
  shadow_shared_lock(sh);
  uint64_t id = ++sh->next_capture_id;
  shadow_shared_unlock(sh);
  shadow_capture_exchange_t x = {
      .id = id,
      .time_ms = st->time_ms,
      .route = route,
      .key = st->has_key ? st->key.data : NULL,
      .method = st->method.data ? st->method.data : "GET",
      .target = st->target.data ? st->target.data : "/",
      .target_len = st->target.data ? st->target.len : 1,
      .peer = st->peer,
      .tls = st->tls,
      .http_major = st->http_major,
      .headers = &st->headers,
      .body = body,
      .body_len = body_len,
      .response = response,
      .first_byte_ms = first_byte_ms,
      .total_ms = total_ms,
  };
  shadow_buf_reset(scratch);
  if (shadow_capture_format(scratch, &x, cfg->redact,
                            cfg->capture.body_bytes) != 0) {
    shadow_capture_skip(sh, "error");
    return;
  }
  shadow_shared_lock(sh);
  if (sh->capture) {
    shadow_sink_push(sh->capture, scratch->data, scratch->len);
    sh->stats->captured++;
  } else {
    shadow_counters_add(sh->stats->capture_skipped, "no_file", 7, 1);
  }
  shadow_shared_unlock(sh);
}
