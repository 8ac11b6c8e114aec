/* The engine's record parsing, record diff, divergence records, ring
 * log and sampling rule, checked through their C API. */
#include "check.h"
#include "diff.h"
#include "divergence.h"
#include "record_parse.h"
#include "ring.h"
#include "sample.h"
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void parse_ok(const char *s, int status, const char *body, size_t nh) {
  shadow_record_t r;
  shadow_record_init(&r);
  char err[128];
  int rc = shadow_record_parse(&r, s, strlen(s), err, sizeof err);
  if (rc) fprintf(stderr, "parse: %s\n", err);
  CHECK(rc == 0);
  CHECK(r.status == status);
  CHECK(r.body.len == strlen(body) &&
        memcmp(r.body.data ? r.body.data : "", body, r.body.len) == 0);
  CHECK(r.headers.n == nh);
  shadow_record_release(&r);
}

static void parse_bad(const char *s, const char *want) {
  shadow_record_t r;
  shadow_record_init(&r);
  char err[128];
  CHECK(shadow_record_parse(&r, s, strlen(s), err, sizeof err) == -EINVAL);
  if (!strstr(err, want)) fprintf(stderr, "err '%s' lacks '%s'\n", err, want);
  CHECK(strstr(err, want));
  shadow_record_release(&r);
}

/* A response kept while its pair is out: compacted to its size, every
 * byte where it was; a body already its size is left where it lies. */
static void test_record_compact(void) {
  shadow_record_t r;
  shadow_record_init(&r);
  CHECK(shadow_headers_add(&r.headers, "Server", 6, "nginx", 5) == 0);
  char piece[100];
  memset(piece, 'x', sizeof piece);
  for (int i = 0; i < 11; i++) /* a chunked body's pieces: 1,100 bytes */
    CHECK(shadow_buf_append(&r.body, piece, sizeof piece) == 0);
  CHECK(r.body.cap == 2048);
  CHECK(shadow_record_compact(&r) == 0);
  CHECK(r.body.len == 1100 && r.body.cap == 1101 && r.body.data[1100] == 0);
  CHECK(r.body.data[0] == 'x' && r.body.data[1099] == 'x');
  CHECK(r.headers.cap == 1 && strcmp(r.headers.v[0].value, "nginx") == 0);
  const char *body = r.body.data;
  CHECK(shadow_record_compact(&r) == 0 && r.body.data == body);
  /* It still grows, as any body. */
  CHECK(shadow_buf_append(&r.body, "y", 1) == 0 && r.body.len == 1101);
  shadow_record_release(&r);
  /* An empty record holds nothing to give back. */
  CHECK(shadow_record_compact(&r) == 0 && r.body.data == NULL);
  shadow_record_release(&r);
}

int main(void) {
  test_record_compact();
  parse_ok(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A:  b \r\n\r\nhello",
      200, "hello", 2);
  parse_ok("HTTP/1.1 404 Not Found\nA: 1\n\nbody\n", 404, "body\n", 1);
  parse_ok("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody\n", 200, "body",
           1);
  parse_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: "
           "chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
           200, "hello world", 1);
  parse_ok("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n", 200,
           "abc", 1);
  parse_ok("HTTP/1.0 204\r\n\r\n", 204, "", 0);
  parse_ok("HTTP/1.1 301 Moved\r\nLocation: /x\r\n", 301, "", 1);
  parse_ok("HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n\r\n", 200, "", 1);
  parse_bad("HTTP/1.1 2x0 OK\r\n\r\n", "status");
  parse_bad("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "line 2: bad header");
  parse_bad("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "content-length");
  parse_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "chunk size");
  parse_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
            "chunk longer");
  {
    shadow_record_t r;
    shadow_record_init(&r);
    CHECK(shadow_record_parse(&r, "{\"a\": 1}\n", 9, NULL, 0) == 0);
    CHECK(r.status == 200);
    const shadow_header_t *h = shadow_headers_find(&r.headers, "content-type");
    CHECK(h && strcmp(h->value, "application/json") == 0);
    shadow_record_release(&r);
    CHECK(shadow_record_parse(&r, "plain text", 10, NULL, 0) == 0);
    CHECK(r.headers.n == 0 && r.status == 200);
    shadow_record_release(&r);
    CHECK(shadow_record_parse(&r, "", 0, NULL, 0) == 0);
    shadow_record_release(&r);
  }
  /* divergence with meta and a huge noise list and long strings */
  {
    shadow_record_t p, c;
    shadow_record_init(&p);
    shadow_record_init(&c);
    p.status = 200;
    c.status = 503;
    shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
    CHECK(shadow_diff_records(NULL, &p, &c, &res) == SHADOW_PART_STATUS);
    char longs[5000];
    memset(longs, 'r', sizeof longs - 1);
    longs[sizeof longs - 1] = 0;
    const char *noise[100];
    for (int i = 0; i < 99; i++)
      noise[i] = longs;
    noise[99] = NULL;
    shadow_divergence_meta_t m = {.id = 42,
                                  .time_ms = 1795716000123.0,
                                  .route = longs,
                                  .method = "GET",
                                  .path = "/u/7?v=\"1\"",
                                  .primary_ms = 3.1,
                                  .candidate_ms = 5.0,
                                  .primary_first_ms = 1.5,
                                  .candidate_first_ms = -1,
                                  .noise = noise};
    shadow_buf_t out = SHADOW_BUF_INIT;
    CHECK(shadow_divergence_format(&out, &m, &res) == 0);
    CHECK(out.len <= SHADOW_DIVERGENCE_MAX_BYTES);
    CHECK(strstr(out.data, "\"time\":\"2026-11-26T18:00:00.123Z\""));
    CHECK(strstr(out.data, "\"key\":null"));
    CHECK(strstr(out.data,
                 "\"latency_ms\":{\"primary\":3.100,\"candidate\":5.000}"));
    CHECK(strstr(out.data, "\"first_byte_ms\":{\"primary\":1.500,"
                           "\"candidate\":null}"));
    CHECK(strstr(out.data, "\"path\":\"/u/7?v=\\\"1\\\"\""));
    printf("%.300s...\n", out.data);
    shadow_buf_free(&out);
    /* Header diffs beyond the cap: many long different headers. */
    char name[32], val[1200];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = 0;
    for (int i = 0; i < 300; i++) {
      snprintf(name, sizeof name, "x-h%d", i);
      shadow_headers_add(&p.headers, name, strlen(name), val, strlen(val));
      shadow_headers_add(&c.headers, name, strlen(name), "c", 1);
    }
    shadow_diff_opts_t *o = shadow_diff_opts_new();
    shadow_diff_opts_set_value_max(o, 0);
    CHECK(shadow_diff_records(o, &p, &c, &res) == 3);
    CHECK(res.nfields == 301);
    CHECK(shadow_divergence_format(&out, &m, &res) == 0);
    CHECK(out.len <= SHADOW_DIVERGENCE_MAX_BYTES);
    CHECK(strstr(out.data, ",\"truncated\":true}"));
    CHECK(
        strstr(out.data,
               "\"headers\":{\"differs\":true,\"diffs\":[{\"name\":\"x-h0\""));
    printf("capped record: %zu bytes (of %zu parts)\n", out.len, res.json.len);
    shadow_buf_free(&out);
    shadow_diff_opts_free(o);
    shadow_diff_result_free(&res);
    shadow_diff_result_free(&res);
    shadow_record_release(&p);
    shadow_record_release(&c);
    CHECK(shadow_divergence_format(&out, NULL, NULL) == 0);
    printf("%s\n", out.data);
    shadow_buf_free(&out);
    /* The record's time, by the calendar's arithmetic, against gmtime_r
     * at days across four centuries and leap days, and past year 9999. */
    int bad_time = 0;
    for (int64_t s = 0; s < 253402300800LL * 2 && bad_time < 3;
         s += s < 2000000000 ? 86399 * 7 + 3601 : 86400LL * 997 + 1) {
      shadow_divergence_meta_t tm_meta = {.time_ms = (double)s * 1000 + 7,
                                          .primary_ms = -1,
                                          .candidate_ms = -1,
                                          .primary_first_ms = -1,
                                          .candidate_first_ms = -1};
      time_t t = (time_t)s;
      struct tm tm;
      char want[64];
      CHECK(gmtime_r(&t, &tm) != NULL);
      snprintf(want, sizeof want,
               "\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.007Z\"",
               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
               tm.tm_min, tm.tm_sec);
      CHECK(shadow_divergence_format(&out, &tm_meta, NULL) == 0);
      if (!strstr(out.data, want)) {
        fprintf(stderr, "time %lld: %s, want %s\n", (long long)s, out.data,
                want);
        bad_time++;
        check_failed++;
      }
      shadow_buf_free(&out);
    }
  }
  /* ring capacity shrink with wrap */
  {
    shadow_ring_t *r = shadow_ring_new(3);
    char b[8];
    for (int i = 0; i < 7; i++) {
      snprintf(b, sizeof b, "%d", i);
      CHECK(shadow_ring_push(r, b, strlen(b), "rt", 2) == 0);
    }
    const char *route;
    size_t len, rl;
    CHECK(strcmp(shadow_ring_get(r, 0, &len, &route, &rl), "6") == 0 &&
          rl == 2 && strcmp(route, "rt") == 0);
    CHECK(shadow_ring_set_capacity(r, 2) == 0);
    CHECK(strcmp(shadow_ring_get(r, 1, &len, NULL, NULL), "5") == 0);
    CHECK(shadow_ring_get(r, 2, &len, NULL, NULL) == NULL);
    CHECK(shadow_ring_pushed(r) == 7);
    CHECK(shadow_ring_new(0) == NULL);
    shadow_ring_free(r);
    shadow_ring_free(NULL);
  }
  CHECK(shadow_sample_threshold(0.3) == 300000 &&
        shadow_sample_threshold(-1) == 0 &&
        shadow_sample_threshold(7) == 1000000);
  CHECK(shadow_sample_threshold(0.0000005) == 1 &&
        shadow_sample_threshold(0.0000004) == 0);
  {
    shadow_record_t p, c;
    shadow_record_init(&p);
    shadow_record_init(&c);
    p.status = c.status = 200;
    shadow_headers_add(&p.headers, "Content-Type", 12, "application/json", 16);
    shadow_headers_add(&c.headers, "content-type", 12, "application/json", 16);
    shadow_headers_add(&c.headers, "X-New", 5, "1", 1);
    shadow_buf_puts(&p.body, "{\"a\":1,\"b\":[1]}");
    shadow_buf_puts(&c.body, "{\"a\":2,\"b\":[1,2]}");
    shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
    CHECK(shadow_diff_records(NULL, &p, &c, &res) ==
          (SHADOW_PART_HEADERS | SHADOW_PART_BODY));
    CHECK(res.nfields == 3);
    const char *f = res.fields.data;
    CHECK(strcmp(f, "header:x-new") == 0);
    f += strlen(f) + 1;
    CHECK(strcmp(f, "body:/a") == 0 || strcmp(f, "body:/b/1") == 0);
    printf("%s\n", res.json.data);
    shadow_diff_result_free(&res);
    shadow_record_release(&p);
    shadow_record_release(&c);
  }
  return check_report("test_engine");
}
