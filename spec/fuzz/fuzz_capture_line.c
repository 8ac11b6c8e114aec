/* libFuzzer target for the capture-line reader (telemetry/capture_line.c):
 * a capture file is untrusted bytes (copied between machines, cut by a
 * full disk, edited by hand), and `shadowd replay` and `shadowd export`
 * read it line by line. Each input is one line: it must be refused with
 * words or accepted, never crash or leak. An accepted line must also
 * survive a round trip: written again by the capture writer, it reads
 * back to the same request and response, so what a replay sends is what
 * was recorded. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture_line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_buf(const shadow_buf_t *a, const shadow_buf_t *b) {
  return a->len == b->len &&
         (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  shadow_capture_entry_t e, back;
  shadow_capture_entry_init(&e);
  shadow_capture_entry_init(&back);
  char err[256];
  int rc = shadow_capture_parse((const char *)data, size, &e, err, sizeof(err));
  if (rc == -EINVAL && err[0] == '\0') abort(); /* refused without words */
  if (rc == 0) {
    shadow_capture_exchange_t x = {
        .id = e.id,
        .time_ms = 0,
        .route = e.has_route ? e.route.data : NULL,
        .key = e.has_key ? e.key.data : NULL,
        .method = e.method.data,
        .target = e.target.data,
        .target_len = e.target.len,
        .peer = e.peer.data ? e.peer.data : "",
        .tls = e.tls,
        .headers = &e.headers,
        .body = e.body.data,
        .body_len = e.body.len,
        .response = &e.response,
        .first_byte_ms = e.first_byte_ms,
        .total_ms = e.total_ms,
    };
    shadow_buf_t line = SHADOW_BUF_INIT;
    /* No redaction and room for the whole body: what was read is what is
     * written. */
    size_t room = e.response.body.len + 1;
    if (shadow_capture_format(&line, &x, NULL, room) == 0) {
      if (shadow_capture_parse(line.data, line.len, &back, err, sizeof(err)))
        abort(); /* the writer wrote a line the reader refuses */
      if (!same_buf(&e.method, &back.method) ||
          !same_buf(&e.target, &back.target) ||
          !shadow_headers_same(&e.headers, &back.headers) ||
          !same_buf(&e.body, &back.body) ||
          e.response.status != back.response.status ||
          !shadow_headers_same(&e.response.headers, &back.response.headers) ||
          !same_buf(&e.response.body, &back.response.body) ||
          e.response.body_cut != back.response.body_cut ||
          (e.response.body_cut &&
           (e.response.body_total != back.response.body_total ||
            !shadow_digest_equal(e.response.body_digest,
                                 back.response.body_digest))))
        abort();
    }
    shadow_buf_free(&line);
  }
  shadow_capture_entry_release(&e);
  shadow_capture_entry_release(&back);
  return 0;
}
