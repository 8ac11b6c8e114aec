/* libFuzzer target for HTTP/2 from clients without sockets: arbitrary
 * bytes fed to a server-side h2 session (h2_server.c) as server.c feeds
 * it, after a valid connection preface or instead of one (the first byte
 * chooses), in two reads split where the fuzzer says, with the frames the
 * session answers drained after each read as the connection would write
 * them. The handler answers as the dispatcher can: at once, with a head
 * and body pieces and trailers, later (after the next read), by pausing
 * and resuming the body, or by aborting; small limits reach the 413, 431
 * and refused-stream paths. Whatever the bytes, nothing may crash, leak
 * or touch freed memory, and every request handed out must come back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HELD_MAX 64

typedef struct fuzz_s {
  shadow_request_t *held[HELD_MAX];
  size_t nheld;
  long out; /* handed out minus given back */
  uint64_t now;
} fuzz_t;

static fuzz_t F;

static void answer(shadow_request_t *req, int how) {
  static const char body[] = "0123456789abcdef";
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  shadow_headers_add(&h, "Content-Type", 12, "text/plain", 10);
  shadow_headers_add(&h, "Connection", 10, "close", 5); /* dropped */
  switch (how % 4) {
  case 0:
    shadow_h2_head(req, 200, &h, 16);
    shadow_h2_body(req, body, 16);
    shadow_h2_end(req, NULL);
    break;
  case 1: {
    shadow_headers_t t = SHADOW_HEADERS_INIT;
    shadow_headers_add(&t, "grpc-status", 11, "0", 1);
    shadow_h2_interim(req, 103, &h);
    shadow_h2_head(req, 200, &h, -1);
    for (int i = 0; i < 8; i++)
      shadow_h2_body(req, body, 16);
    shadow_h2_end(req, &t);
    shadow_headers_free(&t);
    break;
  }
  case 2:
    shadow_h2_head(req, 500, &h, 100);
    shadow_h2_body(req, body, 16);
    shadow_h2_end(req, NULL); /* cut short: a reset */
    break;
  default: shadow_h2_abort(req); break;
  }
  shadow_headers_free(&h);
}

static void on_request(shadow_request_t *req, void *ud) {
  (void)ud;
  size_t n = req->target.len;
  int how = n ? (unsigned char)req->target.data[n - 1] : 0;
  if (how & 4 && F.nheld < HELD_MAX) {
    if (how & 8) shadow_h2_pause_body(req);
    F.held[F.nheld++] = req; /* answered after the next read */
    return;
  }
  answer(req, how);
}

static void on_body(shadow_request_t *req, const char *d, size_t n) {
  (void)req;
  (void)d;
  (void)n;
}

static void on_abort(shadow_request_t *req, int why) {
  (void)why;
  for (size_t i = 0; i < F.nheld; i++)
    if (F.held[i] == req) {
      F.held[i] = F.held[--F.nheld];
      shadow_h2_end(req, NULL);
      return;
    }
  /* Not held: it was answered already, or is being answered. */
}

static void want_write(void *ud) {
  (void)ud;
}
static void handed(void *ud, shadow_request_t *req) {
  (void)ud;
  (void)req;
  F.out++;
}
static void given_back(void *ud) {
  (void)ud;
  F.out--;
}
static uint64_t now_ms(void *ud) {
  (void)ud;
  return F.now += 7;
}

static void drain(shadow_h2_t *s) {
  shadow_buf_t out = SHADOW_BUF_INIT;
  for (int i = 0; i < 64; i++) {
    shadow_buf_reset(&out);
    if (shadow_h2_send(s, &out, 1 << 16) != 0 || out.len == 0) break;
  }
  shadow_buf_free(&out);
}

/* The requests held from the last read are answered now. */
static void answer_held(void) {
  while (F.nheld) {
    shadow_request_t *req = F.held[--F.nheld];
    shadow_h2_resume_body(req);
    answer(req, (int)F.nheld);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int with_preface = data[0] & 1, streaming = data[0] & 2;
  size_t split = data[1];
  data += 2;
  size -= 2;
  memset(&F, 0, sizeof(F));
  shadow_server_opts_t o;
  shadow_server_opts_default(&o);
  o.header_bytes = 1024;
  o.max_headers = 8;
  o.body_bytes = 4096;
  o.h2_max_streams = 4;
  o.h2_max_resets = 8;
  shadow_server_handler_t h = {.on_request = on_request,
                               .on_body = streaming ? on_body : NULL,
                               .on_abort = on_abort};
  shadow_h2_io_t io = {NULL, want_write, handed, given_back, NULL, now_ms};
  shadow_h2_conn_info_t info = {"127.0.0.1", "127.0.0.1:80", 0};
  shadow_h2_t *s;
  if (shadow_h2_new(&o, &h, &io, &info, &s) != 0) return 0;
  if (with_preface) shadow_h2_feed(s, SHADOW_H2_PREFACE, SHADOW_H2_PREFACE_LEN);
  if (split > size) split = size;
  shadow_h2_feed(s, (const char *)data, split);
  drain(s);
  answer_held();
  drain(s);
  shadow_h2_feed(s, (const char *)data + split, size - split);
  drain(s);
  shadow_h2_goaway(s);
  drain(s);
  /* The connection ends: what is still with the handler is aborted. */
  shadow_h2_abort_all(s, SHADOW_ABORT_CLOSE);
  answer_held();
  if (F.out != 0 || shadow_h2_inflight(s) != 0) abort();
  shadow_h2_free(s);
  return 0;
}
