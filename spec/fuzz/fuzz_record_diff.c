/* libFuzzer target for the record diff: one buffer split at a "\n====\n"
 * line (or in half) into two HTTP responses as shadowd diff reads them,
 * each parsed, then diffed into a divergence record, which must stay
 * within SHADOW_DIVERGENCE_MAX_BYTES. Any crash, leak or sanitizer report
 * fails. */
#include "diff.h"
#include "divergence.h"
#include "record_parse.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  const uint8_t *sep = memmem(d, n, "\n====\n", 6);
  size_t a = sep ? (size_t)(sep - d) : n / 2;
  size_t b0 = sep ? a + 6 : a;
  shadow_record_t p, c;
  shadow_record_init(&p);
  shadow_record_init(&c);
  char err[64];
  if (shadow_record_parse(&p, (const char *)d, a, err, sizeof err) == 0 &&
      shadow_record_parse(&c, (const char *)d + b0, n - b0, err, sizeof err) ==
          0) {
    shadow_diff_opts_t *o = shadow_diff_opts_new();
    shadow_diff_opts_set_diff_bytes(o, 512);
    shadow_diff_opts_set_value_max(o, 16);
    shadow_diff_result_t r = SHADOW_DIFF_RESULT_INIT;
    if (shadow_diff_records(o, &p, &c, &r) >= 0) {
      shadow_buf_t out = SHADOW_BUF_INIT;
      shadow_divergence_meta_t m = {.id = 1,
                                    .route = "r",
                                    .method = "GET",
                                    .path = "/",
                                    .key = "k",
                                    .primary_ms = 1,
                                    .candidate_ms = 2,
                                    .primary_first_ms = 0.5,
                                    .candidate_first_ms = 1};
      if (shadow_divergence_format(&out, &m, &r) == 0 &&
          out.len > SHADOW_DIVERGENCE_MAX_BYTES)
        abort();
      shadow_buf_free(&out);
    }
    shadow_diff_result_free(&r);
    shadow_diff_opts_free(o);
  }
  shadow_record_release(&p);
  shadow_record_release(&c);
  return 0;
}
