/* libFuzzer target for the request path without sockets: the bytes a
 * client could send, fed to the request parser as the server feeds it
 * (one request at a time, the rest after each answer), once whole and once
 * split at a point the fuzzer picks, with small limits so the 413 and 431
 * paths are reached. Both feeds must agree on what the server would answer:
 * llhttp hands over pieces differently when reads split a message, and the
 * answer must not depend on where the network cut the bytes. Each parse
 * reads its own copy of the bytes, freed when it returns. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct outcome_s {
  unsigned requests;
  unsigned heads; /* streaming: heads handed out before their body */
  unsigned continues;
  int status;      /* the error answer, or 0 */
  uint64_t digest; /* of every request's method, target, headers, body */
} outcome_t;

static uint64_t mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 1099511628211ULL;
  return h * 31 + n;
}

/* Body bytes as a streaming server takes them, after each feed. */
static void take_body(outcome_t *o, shadow_request_t *req) {
  o->digest = mix(o->digest, req->body.data, req->body.len);
  shadow_buf_reset(&req->body);
}

static void take(outcome_t *o, const shadow_request_t *req) {
  o->requests++;
  o->digest = mix(o->digest, req->method, strlen(req->method));
  o->digest = mix(o->digest, req->target.data, req->target.len);
  for (size_t i = 0; i < req->headers.n; i++) {
    /* A line the parser marks valid is trusted by every writer after it. */
    if (i < req->headers.checked && !shadow_header_valid(&req->headers.v[i]))
      abort();
    o->digest =
        mix(o->digest, req->headers.v[i].name, req->headers.v[i].name_len);
    o->digest =
        mix(o->digest, req->headers.v[i].value, req->headers.v[i].value_len);
  }
  o->digest = mix(o->digest, &req->keep_alive, sizeof(req->keep_alive));
  o->digest = mix(o->digest, &req->content_length, sizeof(req->content_length));
}

/* Feeds one piece; returns 0 once the connection would be closed. */
static int feed(shadow_request_parser_t *p, outcome_t *o, const char *s,
                size_t n) {
  while (n) {
    size_t used = 0;
    /* Each parse reads a copy freed when it returns, as a server's read
     * buffer is reused: a header line kept by pointer past the parse
     * that saw it is a use after free here, not a silent pass. */
    char *copy = malloc(n);
    if (!copy) abort();
    memcpy(copy, s, n);
    shadow_parse_event_t ev = shadow_request_parse(p, copy, n, &used);
    free(copy);
    if (used > n) abort();
    s += used;
    n -= used;
    if (p->stream && p->head_done) take_body(o, p->req);
    if (ev == SHADOW_PARSE_HEAD) {
      if (!p->stream) abort();
      take(o, p->req);
      o->heads++;
    } else if (ev == SHADOW_PARSE_REQUEST) {
      if (!p->stream || !p->head_done) take(o, p->req);
      take_body(o, p->req);
      if (!p->req->body_complete) abort();
      int keep = p->req->keep_alive;
      shadow_request_parser_next(p);
      if (!keep) return 0;
    } else if (ev == SHADOW_PARSE_CONTINUE) {
      o->continues++;
      if (p->stream) {
        take(o, p->req);
        o->heads++;
      }
    } else if (ev == SHADOW_PARSE_ERROR) {
      if (p->status != 400 && p->status != 405 && p->status != 413 &&
          p->status != 431 && p->status != 501)
        abort();
      o->status = p->status;
      return 0;
    } else if (n) {
      abort(); /* MORE must mean everything was taken */
    }
  }
  return 1;
}

static void run(const char *s, size_t n, size_t cut, int stream, outcome_t *o) {
  shadow_request_t req;
  memset(&req, 0, sizeof(req));
  shadow_request_parser_t p;
  shadow_request_parser_init(&p, &req, 256, 64, stream);
  p.max_headers = 8; /* reachable within 256 bytes, like the byte limit */
  memset(o, 0, sizeof(*o));
  if (feed(&p, o, s, cut)) feed(&p, o, s + cut, n - cut);
  shadow_request_parser_free(&p);
  shadow_request_release(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  /* The first byte picks the split point. */
  size_t n = size - 1;
  const char *s = (const char *)data + 1;
  size_t cut = n ? data[0] % (n + 1) : 0;
  outcome_t whole, split, streamed;
  run(s, n, n, 0, &whole);
  run(s, n, cut, 0, &split);
  /* Limits count bytes, not pieces, so both feeds reach the same verdict;
   * a 100 Continue may be skipped when the body came with the head. */
  if (whole.requests != split.requests || whole.status != split.status ||
      whole.digest != split.digest)
    abort();
  /* Streaming the bodies out as they come changes when they are taken,
   * never what the requests are or whether they are refused. */
  run(s, n, cut, 1, &streamed);
  if (streamed.status != whole.status || streamed.requests < whole.requests ||
      streamed.requests > whole.requests + 1)
    abort();
  return 0;
}
