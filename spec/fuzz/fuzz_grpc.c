/* libFuzzer target for gRPC bodies: the input's first byte picks the
 * content type (proto, +json, another subtype) and grpc-encoding
 * (identity, gzip, deflate, an unknown one); the rest is the body, framed
 * or not. The framing reader must agree with itself (count and walk), each
 * message must become a JSON value the diff takes, whatever its flag and
 * bytes (bad gzip, a bomb past the budget), and the record diff must find
 * the body equal to itself and compare it with a one-message body and a
 * cut copy without fault. Any crash, leak or sanitizer report fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "diff.h"
#include "grpc.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[] = {"application/grpc", "application/grpc+json",
                                    "application/grpc+thrift"};
static const char *const codings[] = {"identity", "gzip", "deflate", "snappy"};

static void record(shadow_record_t *r, const char *type, const char *coding,
                   const void *body, size_t len) {
  shadow_record_init(r);
  r->status = 200;
  shadow_headers_add(&r->headers, "content-type", 12, type, strlen(type));
  shadow_headers_add(&r->headers, "grpc-encoding", 13, coding, strlen(coding));
  shadow_headers_add(&r->trailers, "grpc-status", 11, "0", 1);
  shadow_buf_append(&r->body, body, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const char *type = types[data[0] % 3];
  const char *coding = codings[(data[0] / 3) % 4];
  /* A copy, so a read past the end is an ASan error, not luck. */
  size_t n = size - 1;
  uint8_t *p = malloc(n ? n : 1);
  if (!p) abort();
  memcpy(p, data + 1, n);

  size_t bad = 0;
  const char *why = NULL;
  long count = shadow_grpc_count(p, n, &bad, &why);
  if (count < 0 && (!why || bad > n)) abort();
  shadow_grpc_decode_t d = {shadow_grpc_content_type(type, strlen(type)),
                            shadow_grpc_encoding(coding, strlen(coding)), NULL,
                            NULL, 4096};
  size_t pos = 0;
  long seen = 0;
  shadow_grpc_frame_t f;
  shadow_buf_t out = SHADOW_BUF_INIT;
  while (shadow_grpc_next(p, n, &pos, &f, NULL) == 1) {
    const char *note = NULL;
    shadow_buf_reset(&out);
    if (shadow_grpc_message_json(&d, &f, &out, &note)) abort();
    if (shadow_json_validate(out.data, out.len)) abort();
    if (d.budget > 4096) abort(); /* never wraps */
    seen++;
  }
  if (count >= 0 && seen != count) abort();
  shadow_buf_free(&out);

  shadow_diff_opts_t *o = shadow_diff_opts_new();
  if (!o) abort();
  shadow_diff_opts_set_diff_bytes(o, 4096);
  shadow_record_t a, b, c;
  record(&a, type, coding, p, n);
  record(&b, type, coding, p, n);
  static const uint8_t one[] = {0, 0, 0, 0, 2, 0x08, 0x01};
  record(&c, "application/grpc", "identity", one, sizeof one);
  shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
  if (shadow_diff_records_at(o, "/p.S/M", 6, &a, &b, &res, NULL) != 0) abort();
  if (shadow_diff_records_at(o, "/p.S/M", 6, &a, &c, &res, NULL) < 0) abort();
  shadow_buf_t whole = SHADOW_BUF_INIT; /* the parts, as one object */
  if (shadow_buf_putc(&whole, '{') ||
      shadow_buf_append(&whole, res.json.data, res.json.len) ||
      shadow_buf_putc(&whole, '}') ||
      shadow_json_validate(whole.data, whole.len))
    abort();
  shadow_buf_free(&whole);
  shadow_record_release(&b);
  record(&b, type, coding, p, n / 2);
  if (shadow_diff_records_at(o, NULL, 0, &a, &b, &res, NULL) < 0) abort();
  shadow_diff_result_free(&res);
  shadow_record_release(&a);
  shadow_record_release(&b);
  shadow_record_release(&c);
  shadow_diff_opts_free(o);
  free(p);
  return 0;
}
