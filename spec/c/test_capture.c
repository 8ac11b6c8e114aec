/* The capture line on its own: written by capture.c and read back by
 * capture_read.c to the same request and response (text, binary, cut and
 * whole bodies), secrets replaced by their marks and never written, a cut
 * text body kept as text, and damaged lines refused with words saying
 * what is wrong; the line reader's numbering across blank lines, CRLF and
 * a last line without its newline. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture.h"
#include "capture_read.h"
#include "check.h"
#include "redact.h"

static void add(shadow_headers_t *h, const char *n, const char *v) {
  CHECK(shadow_headers_add(h, n, strlen(n), v, strlen(v)) == 0);
}

/* A response as the dispatcher keeps it: its body fed with keep. */
static void response(shadow_record_t *r, int status, const char *ct,
                     const char *body, size_t len, size_t keep) {
  shadow_record_init(r);
  r->status = status;
  if (ct) add(&r->headers, "content-type", ct);
  CHECK(shadow_record_body_feed(r, body, len, keep) == 0);
  shadow_record_body_end(r);
}

static shadow_capture_exchange_t exchange(const shadow_headers_t *h,
                                          const char *body,
                                          const shadow_record_t *resp) {
  shadow_capture_exchange_t x = {
      .id = 7,
      .time_ms = 1796128197123.0,
      .route = "POST /orders",
      .key = "user-1",
      .method = "POST",
      .target = "/orders?x=1",
      .target_len = 11,
      .peer = "10.0.0.9",
      .tls = 1,
      .headers = h,
      .body = body,
      .body_len = body ? strlen(body) : 0,
      .response = resp,
      .first_byte_ms = 1.5,
      .total_ms = 2.25,
  };
  return x;
}

static void test_round_trip(void) {
  shadow_redact_t *rd = shadow_redact_new();
  CHECK(shadow_redact_add_defaults(rd) == 0);
  CHECK(shadow_redact_add_json(rd, "/token") == 0);
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  add(&h, "content-type", "application/json");
  add(&h, "authorization", "Bearer hunter2-secret");
  add(&h, "x-a", "1");
  add(&h, "x-a", "2");
  const char *req_body = "{\"token\":\"req-secret\",\"n\":1}";
  const char *resp_body = "{\"id\":1,\"token\":\"resp-secret\"}";
  shadow_record_t r;
  response(&r, 201, "application/json", resp_body, strlen(resp_body), 1 << 20);
  add(&r.headers, "set-cookie", "sid=cookie-secret");
  shadow_capture_exchange_t x = exchange(&h, req_body, &r);
  shadow_buf_t line = SHADOW_BUF_INIT;
  CHECK(shadow_capture_format(&line, &x, rd, 1 << 20) == 0);
  CHECK(strncmp(line.data, "{\"v\":1,", 7) == 0);
  CHECK(strstr(line.data, "\"time\":\"2026-12-01T12:29:57.123Z\"") != NULL);
  CHECK(!memchr(line.data, '\n', line.len));
  const char *secrets[] = {"hunter2", "req-secret", "resp-secret",
                           "cookie-secret"};
  for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
    CHECK(strstr(line.data, secrets[i]) == NULL);
  CHECK(strstr(line.data, "[redacted hmac-sha256:") != NULL);

  shadow_capture_entry_t e;
  shadow_capture_entry_init(&e);
  char err[256];
  CHECK(shadow_capture_parse(line.data, line.len, &e, err, sizeof(err)) == 0);
  CHECK(e.id == 7 && e.has_route && e.has_key && e.tls);
  CHECK(strcmp(e.route.data, "POST /orders") == 0);
  CHECK(strcmp(e.key.data, "user-1") == 0);
  CHECK(strcmp(e.method.data, "POST") == 0 && e.method_id == 3);
  CHECK(strcmp(e.target.data, "/orders?x=1") == 0);
  CHECK(strcmp(e.peer.data, "10.0.0.9") == 0);
  CHECK(e.headers.n == 4);
  CHECK(strcmp(e.headers.v[3].value, "2") == 0); /* order and repeats kept */
  CHECK(strncmp(e.headers.v[1].value, "[redacted hmac-sha256:", 22) == 0);
  CHECK(strstr(e.body.data, "\"n\":1") != NULL);
  CHECK(e.response.status == 201 && !e.response.body_cut);
  CHECK(strstr(e.response.body.data, "\"id\":1") != NULL);
  CHECK(e.first_byte_ms == 1.5 && e.total_ms == 2.25);
  shadow_capture_entry_release(&e);
  shadow_buf_free(&line);
  shadow_record_release(&r);
  shadow_headers_free(&h);
  shadow_redact_free(rd);
}

static void test_bodies(void) {
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  add(&h, "host", "example");
  shadow_capture_entry_t e;
  shadow_capture_entry_init(&e);
  char err[256];
  shadow_buf_t line = SHADOW_BUF_INIT;

  /* Binary: base64, whole. */
  unsigned char bin[300];
  for (size_t i = 0; i < sizeof(bin); i++)
    bin[i] = (unsigned char)(i * 37 + 1);
  shadow_record_t r;
  response(&r, 200, "application/octet-stream", (const char *)bin, sizeof(bin),
           1 << 20);
  shadow_capture_exchange_t x = exchange(&h, NULL, &r);
  CHECK(shadow_capture_format(&line, &x, NULL, 1 << 20) == 0);
  CHECK(strstr(line.data, "\"encoding\":\"base64\"") != NULL);
  CHECK(shadow_capture_parse(line.data, line.len, &e, err, sizeof(err)) == 0);
  CHECK(e.response.body.len == sizeof(bin) &&
        memcmp(e.response.body.data, bin, sizeof(bin)) == 0);
  shadow_record_release(&r);

  /* Text longer than body_bytes, cut inside a two-byte character: the
   * line keeps a prefix that is still text, and the whole's length and
   * digest. */
  char text[100];
  memset(text, 'a', sizeof(text));
  text[9] = (char)0xC3;
  text[10] = (char)0xA9; /* é across the cut at 10 */
  response(&r, 200, "text/plain", text, sizeof(text), 1 << 20);
  shadow_buf_reset(&line);
  CHECK(shadow_capture_format(&line, &x, NULL, 10) == 0);
  CHECK(strstr(line.data, "\"encoding\"") == NULL);
  CHECK(shadow_capture_parse(line.data, line.len, &e, err, sizeof(err)) == 0);
  CHECK(e.response.body_cut && e.response.body_total == sizeof(text));
  CHECK(e.response.body.len == 9);
  CHECK(shadow_digest_equal(e.response.body_digest,
                            shadow_digest_of(text, sizeof(text))));
  shadow_record_release(&r);

  /* A cut JSON body with secrets cannot be redacted: only its length and
   * digest are written. */
  shadow_redact_t *rd = shadow_redact_new();
  CHECK(shadow_redact_add_json(rd, "/token") == 0);
  const char *js = "{\"token\":\"cut-secret\",\"pad\":\"xxxxxxxxxxxxxxxx\"}";
  response(&r, 200, "application/json", js, strlen(js), 1 << 20);
  shadow_buf_reset(&line);
  CHECK(shadow_capture_format(&line, &x, rd, 20) == 0);
  CHECK(strstr(line.data, "cut-secret") == NULL);
  CHECK(shadow_capture_parse(line.data, line.len, &e, err, sizeof(err)) == 0);
  CHECK(e.response.body_cut && e.response.body.len == 0);
  CHECK(e.response.body_total == strlen(js));
  shadow_record_release(&r);
  shadow_redact_free(rd);

  shadow_capture_entry_release(&e);
  shadow_buf_free(&line);
  shadow_headers_free(&h);
}

/* The words for a damaged line. */
static const char *refusal(const char *line) {
  static char err[256];
  shadow_capture_entry_t e;
  shadow_capture_entry_init(&e);
  int rc = shadow_capture_parse(line, strlen(line), &e, err, sizeof(err));
  shadow_capture_entry_release(&e);
  return rc == -EINVAL ? err : "(accepted)";
}

static void test_damaged(void) {
  const char *good =
      "{\"v\":1,\"id\":1,\"time\":\"t\",\"route\":null,\"key\":null,"
      "\"request\":{\"method\":\"GET\",\"target\":\"/\",\"headers\":[],"
      "\"body\":\"\"},\"response\":{\"status\":200,\"headers\":[],"
      "\"body\":\"\",\"length\":0,\"cut\":false,"
      "\"digest\":\"99aa06d3014798d86001c324468d497f\"}}";
  CHECK(strcmp(refusal(good), "(accepted)") == 0);
  char cut[64];
  snprintf(cut, sizeof(cut), "%.40s", good);
  CHECK(strstr(refusal(cut), "cut short") != NULL);
  CHECK(strstr(refusal("garbage"), "not JSON") != NULL);
  CHECK(strstr(refusal("[1,2]"), "not a JSON object") != NULL);
  CHECK(strstr(refusal("{\"v\":2}"), "version 2") != NULL);
  /* A whole body that is not the one written. */
  char bad[600];
  snprintf(bad, sizeof(bad), "%s", good);
  char *d = strstr(bad, "99aa");
  d[0] = '0';
  CHECK(strstr(refusal(bad), "damaged") != NULL);
  snprintf(bad, sizeof(bad), "%s", good);
  memcpy(strstr(bad, "\"GET\""), "\"G T\"", 5);
  CHECK(strstr(refusal(bad), "request.method") != NULL);
  /* A name llhttp does not know (this once aborted in llhttp). */
  snprintf(bad, sizeof(bad), "%s", good);
  memcpy(strstr(bad, "\"GET\""), "\"OET\"", 5);
  CHECK(strstr(refusal(bad), "request.method") != NULL);
  snprintf(bad, sizeof(bad), "%s", good);
  memcpy(strstr(bad, "\"target\":\"/\""), "\"target\":\"x\"", 12);
  CHECK(strstr(refusal(bad), "request.target") != NULL);
}

static void test_base64(void) {
  const char *in = "\x00\xff\x10 shadow";
  for (size_t n = 0; n <= 10; n++) {
    shadow_buf_t b = SHADOW_BUF_INIT, back = SHADOW_BUF_INIT;
    CHECK(shadow_capture_base64(&b, in, n) == 0);
    CHECK(b.len == (n + 2) / 3 * 4);
    CHECK(shadow_capture_unbase64(&back, b.data ? b.data : "", b.len) == 0);
    CHECK(back.len == n && (n == 0 || memcmp(back.data, in, n) == 0));
    shadow_buf_free(&b);
    shadow_buf_free(&back);
  }
  shadow_buf_t b = SHADOW_BUF_INIT;
  CHECK(shadow_capture_unbase64(&b, "ab$d", 4) == -EINVAL);
  shadow_buf_free(&b);
}

static void test_reader(void) {
  char dir[] = "/tmp/shadow-capture-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char a[64], b[64];
  snprintf(a, sizeof(a), "%s/a", dir);
  snprintf(b, sizeof(b), "%s/b", dir);
  FILE *f = fopen(a, "w");
  fputs("one\r\n\ntwo\n", f);
  fclose(f);
  f = fopen(b, "w");
  fputs("three", f); /* no newline at the end */
  fclose(f);
  const char *paths[] = {a, b};
  shadow_capture_reader_t rd;
  char *err = NULL;
  CHECK(shadow_capture_reader_open(&rd, paths, 2, &err) == 0);
  CHECK(rd.bytes_total == 15);
  const char *line;
  size_t len;
  const char *want[] = {"one", "", "two", "three"};
  uint64_t lines[] = {1, 2, 3, 1};
  for (int i = 0; i < 4; i++) {
    CHECK(shadow_capture_reader_next(&rd, &line, &len, &err) == 1);
    CHECK(len == strlen(want[i]) && strcmp(line, want[i]) == 0);
    CHECK(rd.line == lines[i]);
    CHECK(strcmp(rd.path, i < 3 ? a : b) == 0);
  }
  CHECK(shadow_capture_reader_next(&rd, &line, &len, &err) == 0);
  shadow_capture_reader_close(&rd);
  const char *missing[] = {a, "/nonexistent/capture"};
  CHECK(shadow_capture_reader_open(&rd, missing, 2, &err) == -1);
  CHECK(err && strstr(err, "/nonexistent/capture") != NULL);
  free(err);
  unlink(a);
  unlink(b);
  rmdir(dir);
}

/* A line past max_line is read past, not held: its number and length
 * are told, and the lines around it come whole, across block bounds. */
static void test_long_line(void) {
  char dir[] = "/tmp/shadow-capture-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char a[64];
  snprintf(a, sizeof(a), "%s/a", dir);
  FILE *f = fopen(a, "w");
  size_t big = 300 * 1000; /* several read blocks */
  fputs("first\n", f);
  for (size_t i = 0; i < big; i++)
    fputc('x', f);
  fputs("\n", f);
  for (int i = 0; i < 2048; i++) /* exactly max_line */
    fputc('y', f);
  fputs("\r\nlast", f);
  fclose(f);
  const char *paths[] = {a};
  shadow_capture_reader_t rd;
  char *err = NULL;
  CHECK(shadow_capture_reader_open(&rd, paths, 1, &err) == 0);
  rd.max_line = 2048;
  const char *line;
  size_t len;
  CHECK(shadow_capture_reader_next(&rd, &line, &len, &err) == 1);
  CHECK(len == 5 && strcmp(line, "first") == 0 && rd.line == 1);
  CHECK(shadow_capture_reader_next(&rd, &line, &len, &err) == 2);
  CHECK(line == NULL && len == big && rd.line == 2);
  CHECK(rd.cap <= 2049); /* never grown past max_line */
  /* "\r" counts toward the cap while the line is read: 2049 bytes. */
  CHECK(shadow_capture_reader_next(&rd, &line, &len, &err) == 2);
  CHECK(len == 2049 && rd.line == 3);
  CHECK(shadow_capture_reader_next(&rd, &line, &len, &err) == 1);
  CHECK(len == 4 && strcmp(line, "last") == 0 && rd.line == 4);
  CHECK(shadow_capture_reader_next(&rd, &line, &len, &err) == 0);
  CHECK(rd.bytes_read == rd.bytes_total);
  shadow_capture_reader_close(&rd);
  size_t n = 0;
  CHECK(shadow_capture_size_parse("64M", &n) == 0 && n == 64u << 20);
  CHECK(shadow_capture_size_parse("4096", &n) == 0 && n == 4096);
  CHECK(shadow_capture_size_parse("1k", &n) == 0 && n == 1024);
  CHECK(shadow_capture_size_parse("12", &n) == -EINVAL);
  CHECK(shadow_capture_size_parse("-5M", &n) == -EINVAL);
  CHECK(shadow_capture_size_parse("5T", &n) == -EINVAL);
  CHECK(shadow_capture_size_parse("17G", &n) == -EINVAL);
  CHECK(shadow_capture_size_parse("", &n) == -EINVAL);
  unlink(a);
  rmdir(dir);
}

int main(void) {
  test_round_trip();
  test_bodies();
  test_damaged();
  test_base64();
  test_reader();
  test_long_line();
  return check_report("test_capture");
}
