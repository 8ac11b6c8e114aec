/* libFuzzer over the upstream response parser: what a hostile backend can
 * send. Input: byte 0 picks HEAD and a small head limit, byte 1 a split
 * point, the rest is the response. It is parsed whole and in two pieces on
 * one reused parser, each piece from a copy freed after its feed; both
 * must reach the same verdict and deliver the same events (interim heads,
 * final head, body bytes, trailers), and neither may crash, leak, or leave
 * a parse pending after EOF. Every header line marked valid must be one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "response_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct outcome_s {
  int verdict;
  int err;
  int status;
  int heads, interims;
  int upgrade; /* the request asked to upgrade: a 101 is final */
  int64_t content_length;
  uint64_t body_len;
  uint64_t sum;      /* of the heads' fields and the trailers, in order */
  uint64_t body_sum; /* of the body bytes */
} outcome_t;

static uint64_t mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 1099511628211ULL;
  return h * 31 + n;
}

/* Also holds the parser to its mark: a line it calls valid (checked once,
 * then trusted by every writer) must be a field by RFC 9110. */
static uint64_t mix_headers(uint64_t h, const shadow_headers_t *hs) {
  for (size_t i = 0; i < hs->n; i++) {
    if (i < hs->checked && !shadow_header_valid(&hs->v[i])) abort();
    h = mix(h, hs->v[i].name, hs->v[i].name_len);
    h = mix(h, hs->v[i].value, hs->v[i].value_len);
  }
  return h;
}

static int on_interim(void *ud, shadow_response_parser_t *p) {
  outcome_t *o = ud;
  if (p->status < 100 || p->status > 199 || o->heads) abort();
  o->interims++;
  o->sum = mix_headers(mix(o->sum, &p->status, sizeof(p->status)), &p->headers);
  return 0;
}

static int on_head(void *ud, shadow_response_parser_t *p) {
  outcome_t *o = ud;
  /* A 101 is a final answer only to a request that asked to upgrade. */
  int upgraded = p->status == 101 && o->upgrade;
  if ((p->status < 200 && !upgraded) || p->status > 999 || o->heads) abort();
  o->heads++;
  o->status = p->status;
  o->content_length = p->content_length;
  o->sum = mix_headers(mix(o->sum, &p->status, sizeof(p->status)), &p->headers);
  return 0;
}

static int on_body(void *ud, const char *d, size_t n) {
  outcome_t *o = ud;
  if (!o->heads) abort(); /* no body before the head */
  o->body_len += n;
  /* Byte by byte, so where the pieces fall does not change the sum. */
  for (size_t i = 0; i < n; i++)
    o->body_sum = (o->body_sum ^ (unsigned char)d[i]) * 1099511628211ULL;
  return 0;
}

static const shadow_response_events_t events = {on_interim, on_head, on_body};

/* Feeds a copy of the bytes, freed when the feed returns, as a read
 * buffer is reused: a header line kept by pointer past the feed that saw
 * it is a use after free here, not a silent pass. */
static int feed_copy(shadow_response_parser_t *p, const char *s, size_t n) {
  char *copy = malloc(n ? n : 1);
  if (!copy) abort();
  if (n) memcpy(copy, s, n);
  int v = shadow_response_parser_feed(p, copy, n);
  free(copy);
  return v;
}

static outcome_t run(shadow_response_parser_t *p, int head, int upgrade,
                     const char *s, size_t n, size_t split) {
  outcome_t o;
  memset(&o, 0, sizeof(o));
  o.upgrade = upgrade;
  shadow_response_parser_reset(p, head, upgrade, &events, &o);
  int v = feed_copy(p, s, split);
  if (v == SHADOW_RESPONSE_MORE) v = feed_copy(p, s + split, n - split);
  if (v == SHADOW_RESPONSE_MORE) v = shadow_response_parser_finish(p);
  if (v == SHADOW_RESPONSE_MORE) abort(); /* EOF must settle it */
  o.verdict = v;
  o.err = p->err;
  if (v == SHADOW_RESPONSE_ERROR &&
      (o.err < SHADOW_UPSTREAM_RESET || o.err > SHADOW_UPSTREAM_TOO_LARGE))
    abort(); /* every failure maps to one known reason */
  if (v == SHADOW_RESPONSE_DONE) {
    if (o.heads != 1) abort();
    /* After a 101 the bytes are the tunnel's, not a body. */
    if (head && o.body_len && o.status != 101) abort();
    if (o.content_length >= 0 && !head && o.status != 204 && o.status != 304 &&
        o.status != 101 && (uint64_t)o.content_length != o.body_len)
      abort(); /* a declared length is what arrives */
    o.sum = mix_headers(o.sum, &p->trailers);
  }
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int head = data[0] & 1;
  int upgrade = (data[0] & 8) != 0;
  size_t hl = data[0] & 2 ? 128 : 64 * 1024;
  const char *s = (const char *)data + 2;
  size_t n = size - 2;
  size_t split = n ? data[1] % (n + 1) : 0;

  shadow_response_parser_t p;
  shadow_response_parser_init(&p, hl);
  outcome_t whole = run(&p, head, upgrade, s, n, n);
  outcome_t parts = run(&p, head, upgrade, s, n, split);
  shadow_response_parser_free(&p);
  /* llhttp hands over a partial header token at the end of each piece but
   * not before a syntax error, so a malformed token long enough to pass a
   * limit is TOO_LARGE in pieces and BAD_RESPONSE whole. Either is right;
   * what was delivered before the fault may then differ too. */
  int same_err = whole.err == parts.err;
  int limit_vs_syntax = !same_err && (whole.err == SHADOW_UPSTREAM_TOO_LARGE ||
                                      parts.err == SHADOW_UPSTREAM_TOO_LARGE);
  if (whole.verdict != parts.verdict || (!same_err && !limit_vs_syntax))
    abort();
  if (same_err &&
      (whole.status != parts.status || whole.heads != parts.heads ||
       whole.interims != parts.interims || whole.body_len != parts.body_len ||
       whole.body_sum != parts.body_sum || whole.sum != parts.sum))
    abort(); /* how bytes arrive must not change what they mean */
  return 0;
}
