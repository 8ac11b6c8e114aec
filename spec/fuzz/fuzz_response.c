/* libFuzzer over the upstream response parser: what a hostile backend can
 * send. Input: byte 0 picks HEAD and small limits, byte 1 a split point,
 * the rest is the response. It is parsed whole and in two pieces on one
 * reused parser; both must reach the same verdict, and neither may crash,
 * leak, or leave a parse pending after EOF. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "response_parse.h"
#include "upstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct outcome_s {
  int verdict;
  int err;
  int status;
  size_t body_len;
  uint64_t body_sum;
} outcome_t;

static outcome_t run(shadow_response_parser_t *p, int head, const char *s,
                     size_t n, size_t split) {
  outcome_t o = {0, 0, 0, 0, 0};
  if (shadow_response_parser_reset(p, head)) abort();
  int v = shadow_response_parser_feed(p, s, split);
  if (v == SHADOW_RESPONSE_MORE)
    v = shadow_response_parser_feed(p, s + split, n - split);
  if (v == SHADOW_RESPONSE_MORE) v = shadow_response_parser_finish(p);
  if (v == SHADOW_RESPONSE_MORE) abort(); /* EOF must settle it */
  o.verdict = v;
  o.err = p->err;
  if (v == SHADOW_RESPONSE_ERROR &&
      (o.err < SHADOW_UPSTREAM_RESET || o.err > SHADOW_UPSTREAM_TOO_LARGE))
    abort(); /* every failure maps to one known reason */
  shadow_record_t *rec = shadow_response_parser_take(p);
  if ((v == SHADOW_RESPONSE_DONE) != (rec != NULL)) abort();
  if (rec) {
    if (rec->status < 100 || rec->status > 999) abort();
    if (head && rec->body.len) abort();
    o.status = rec->status;
    o.body_len = rec->body.len;
    for (size_t i = 0; i < rec->body.len; i++)
      o.body_sum = o.body_sum * 31 + (unsigned char)rec->body.data[i];
    shadow_record_free(rec);
  }
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int head = data[0] & 1;
  size_t hl = data[0] & 2 ? 128 : 64 * 1024;
  size_t bl = data[0] & 4 ? 64 : 1024 * 1024;
  const char *s = (const char *)data + 2;
  size_t n = size - 2;
  size_t split = n ? data[1] % (n + 1) : 0;

  shadow_response_parser_t p;
  shadow_response_parser_init(&p, hl, bl);
  outcome_t whole = run(&p, head, s, n, n);
  outcome_t parts = run(&p, head, s, n, split);
  shadow_response_parser_free(&p);
  /* llhttp hands over a partial header token at the end of each piece but
   * not before a syntax error, so a malformed token long enough to pass a
   * limit is TOO_LARGE in pieces and BAD_RESPONSE whole. Either is right. */
  int same_err = whole.err == parts.err ||
                 whole.err == SHADOW_UPSTREAM_TOO_LARGE ||
                 parts.err == SHADOW_UPSTREAM_TOO_LARGE;
  if (whole.verdict != parts.verdict || !same_err ||
      whole.status != parts.status || whole.body_len != parts.body_len ||
      whole.body_sum != parts.body_sum)
    abort(); /* how bytes arrive must not change what they mean */
  return 0;
}
