/* The telemetry pieces on their own: percentiles from the log-bucketed
 * histogram against the exact ones, field folding, the signature table's
 * bound and recency order, redaction of headers and of JSON values in
 * diffs, the latency objective of the verdict, and the sink's rotation,
 * reopen and full-disk handling. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin_guard.h"
#include "check.h"
#include "diff.h"
#include "noise.h"
#include "noise_render.h"
#include "noise_table.h"
#include "redact.h"
#include "signatures.h"
#include "sink.h"
#include "stats.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The nearest-rank q-quantile of sorted v[0..n). */
static double exact_quantile(const double *v, size_t n, double q) {
  size_t rank = (size_t)ceil(q * (double)n);
  if (rank < 1) rank = 1;
  return v[rank - 1];
}

static void test_percentiles(void) {
  /* A skewed spread from 50 us to 2 s, like latencies with a long tail. */
  enum { N = 20000 };
  static double v[N];
  shadow_lhist_t h;
  memset(&h, 0, sizeof(h));
  unsigned seed = 12345;
  for (int i = 0; i < N; i++) {
    seed = seed * 1103515245u + 12345u;
    double u = (double)(seed >> 8) / (double)(1u << 24);
    v[i] = 50e-6 * pow(40000.0, u * u);
    shadow_lhist_observe(&h, v[i]);
  }
  qsort(v, N, sizeof(v[0]), cmp_double);
  const double qs[] = {0.5, 0.9, 0.99, 0.999, 1.0};
  for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
    double want = exact_quantile(v, N, qs[i]);
    double got = shadow_lhist_quantile(&h, qs[i]);
    /* Half a bucket: 2^(1/16) - 1. */
    CHECK(fabs(got - want) / want <= 0.0443);
  }
  CHECK(h.n == N);
  CHECK(shadow_lhist_quantile(&h, 1.0) == v[N - 1]);
  /* One value: every percentile is it, exactly (clamped to min/max). */
  shadow_lhist_t one;
  memset(&one, 0, sizeof(one));
  shadow_lhist_observe(&one, 0.0123);
  CHECK(shadow_lhist_quantile(&one, 0.5) == 0.0123);
  CHECK(shadow_lhist_quantile(&one, 0.99) == 0.0123);
  shadow_lhist_t none;
  memset(&none, 0, sizeof(none));
  CHECK(shadow_lhist_quantile(&none, 0.99) == 0);
  /* Out of range values land in the end buckets without harm. */
  shadow_lhist_observe(&none, 1e-9);
  shadow_lhist_observe(&none, 1e6);
  shadow_lhist_observe(&none, -1); /* unknown: not counted */
  CHECK(none.n == 2);
  CHECK(shadow_lhist_quantile(&none, 1.0) == 1e6);
}

static void test_fold(void) {
  char out[64];
  shadow_field_fold("body:/hits/0/id", 15, out, sizeof(out));
  CHECK(strcmp(out, "body:/hits/*/id") == 0);
  shadow_field_fold("body:/a/12/b/3", 14, out, sizeof(out));
  CHECK(strcmp(out, "body:/a/*/b/*") == 0);
  /* Only whole segments of digits are indexes. */
  shadow_field_fold("body:/v2/x1/00a", 15, out, sizeof(out));
  CHECK(strcmp(out, "body:/v2/x1/00a") == 0);
  /* Header names and the other fields stay whole. */
  shadow_field_fold("header:x-1", 10, out, sizeof(out));
  CHECK(strcmp(out, "header:x-1") == 0);
  shadow_field_fold("status", 6, out, sizeof(out));
  CHECK(strcmp(out, "status") == 0);
  /* Bounded by the room given. */
  size_t n = shadow_field_fold("body:/aaaaaaaaaaaaaaaa", 22, out, 8);
  CHECK(n == 7 && strlen(out) == 7);
}

static void test_signatures(void) {
  shadow_signatures_t *s = shadow_signatures_new(3, 1 << 20);
  const char fa[] = "body:/hits/*/id\0";
  const char fb[] = "status\0";
  for (int i = 0; i < 100; i++)
    shadow_signatures_add(s, "GET /a", SHADOW_PART_BODY, fa, 1, 1000.0 + i,
                          "{\"id\":1}", 8);
  CHECK(shadow_signatures_len(s) == 1);
  shadow_signatures_add(s, "GET /a", SHADOW_PART_STATUS, fb, 1, 2000, "{}", 2);
  shadow_signatures_add(s, "GET /b", SHADOW_PART_BODY, fa, 1, 3000, "{}", 2);
  CHECK(shadow_signatures_len(s) == 3);
  shadow_buf_t out = SHADOW_BUF_INIT;
  shadow_signatures_render(s, &out, 10, NULL, 0);
  /* Most recently seen first; the repeated one counted 100 times with the
   * first and last time it was seen. */
  const char *b = strstr(out.data, "\"route\":\"GET /b\"");
  const char *a = strstr(out.data, "\"count\":100");
  CHECK(b && a && b < a);
  CHECK(strstr(out.data, "\"first_seen\":\"1970-01-01T00:00:01.000Z\","
                         "\"last_seen\":\"1970-01-01T00:00:01.099Z\"") != NULL);
  CHECK(strstr(out.data, "\"fields\":[\"body:/hits/*/id\"]") != NULL);
  CHECK(strstr(out.data, "\"evicted\":0") != NULL);
  /* Seeing the first again makes it the most recent; a fourth evicts the
   * least recently seen, "GET /a" status. */
  shadow_signatures_add(s, "GET /a", SHADOW_PART_BODY, fa, 1, 4000,
                        "{\"id\":2}", 8);
  shadow_signatures_add(s, "GET /c", SHADOW_PART_BODY, fa, 1, 5000, "{}", 2);
  CHECK(shadow_signatures_len(s) == 3);
  CHECK(shadow_signatures_evicted(s) == 1);
  shadow_buf_reset(&out);
  shadow_signatures_render(s, &out, 10, NULL, 0);
  CHECK(strstr(out.data, "\"parts\":[\"status\"]") == NULL);
  CHECK(strstr(out.data, "\"count\":101") != NULL);
  CHECK(strstr(out.data, "\"exemplar\":{\"id\":2}") != NULL);
  /* By route, and with a limit. */
  shadow_buf_reset(&out);
  shadow_signatures_render(s, &out, 10, "GET /c", 6);
  CHECK(strstr(out.data, "\"total\":1,") != NULL);
  shadow_buf_reset(&out);
  shadow_signatures_render(s, &out, 1, NULL, 0);
  CHECK(strstr(out.data, "\"total\":3,") != NULL);
  CHECK(strstr(out.data, "GET /a") == NULL); /* only the newest: /c */
  shadow_signatures_free(s);

  /* A byte budget evicts too: records of 1000 bytes in 5000. */
  char big[1000];
  memset(big, 'x', sizeof(big));
  s = shadow_signatures_new(1000, 5000);
  char route[32];
  for (int i = 0; i < 50; i++) {
    snprintf(route, sizeof(route), "GET /r%d", i);
    shadow_signatures_add(s, route, SHADOW_PART_BODY, fa, 1, i, big,
                          sizeof(big));
    CHECK(shadow_signatures_bytes(s) <= 5000);
  }
  CHECK(shadow_signatures_len(s) >= 3 && shadow_signatures_len(s) <= 5);
  CHECK(shadow_signatures_evicted(s) == 50 - shadow_signatures_len(s));
  shadow_signatures_free(s);
  shadow_buf_free(&out);
}

/* Which Hosts the admin serves, which POSTs may reload, which addresses
 * are loopback. */
static void test_admin_guard(void) {
#define HOST_OK(own, h) shadow_admin_host_ok(own, h, strlen(h))
  const char *own = "127.0.0.1:9090";
  CHECK(shadow_admin_host_ok(own, NULL, 0));
  CHECK(HOST_OK(own, "127.0.0.1:9090") && HOST_OK(own, "127.0.0.1"));
  CHECK(HOST_OK(own, "localhost") && HOST_OK(own, "LocalHost:1234"));
  CHECK(HOST_OK(own, "localhost.:9090"));
  CHECK(HOST_OK(own, "[::1]:9090") && HOST_OK(own, "[::1]"));
  CHECK(HOST_OK(own, "10.0.0.7:9090")); /* an address is never rebound */
  CHECK(!HOST_OK(own, "attacker.example"));
  CHECK(!HOST_OK(own, "attacker.example:9090"));
  CHECK(!HOST_OK(own, "localhost.attacker.example"));
  CHECK(!HOST_OK(own, "127.0.0.1.nip.io"));
  CHECK(!HOST_OK(own, "") && !HOST_OK(own, ":9090"));
  CHECK(!HOST_OK(own, "localhost:90x") && !HOST_OK(own, "[::1"));
  CHECK(HOST_OK("shadow.internal:9090", "Shadow.Internal:9090"));
  CHECK(!HOST_OK("shadow.internal:9090", "other.internal:9090"));
#undef HOST_OK
  CHECK(shadow_admin_json_request("application/json", 16));
  CHECK(shadow_admin_json_request("Application/JSON; charset=utf-8", 31));
  CHECK(!shadow_admin_json_request(NULL, 0));
  CHECK(!shadow_admin_json_request("text/plain", 10));
  CHECK(!shadow_admin_json_request("application/jsonp", 17));
  CHECK(!shadow_admin_json_request("application/x-www-form-urlencoded", 33));
  CHECK(shadow_admin_addr_loopback("127.0.0.1:9090"));
  CHECK(shadow_admin_addr_loopback("127.1.2.3:9090"));
  CHECK(shadow_admin_addr_loopback("[::1]:9090"));
  CHECK(shadow_admin_addr_loopback("localhost:9090"));
  CHECK(!shadow_admin_addr_loopback("0.0.0.0:9090"));
  CHECK(!shadow_admin_addr_loopback("[::]:9090"));
  CHECK(!shadow_admin_addr_loopback("10.0.0.7:9090"));
  CHECK(!shadow_admin_addr_loopback("shadow.internal:9090"));
}

static void test_redact(void) {
  shadow_redact_t *r = shadow_redact_new();
  CHECK(shadow_redact_add_defaults(r) == 0);
  CHECK(shadow_redact_add_json(r, "/token") == 0);
  CHECK(shadow_redact_add_json(r, "/users/*/password") == 0);
  CHECK(shadow_redact_add_json(r, "token") == -EINVAL);
  CHECK(shadow_redact_add_header(r, "bad name") == -EINVAL);
  /* The mark of lua/shadow/redact.lua: HMAC-SHA256 of "abc" under the
   * key, as `openssl dgst -sha256 -hmac 0123456789abcdef0123` says. */
  char mark[SHADOW_REDACT_MARK_LEN + 1], mark2[SHADOW_REDACT_MARK_LEN + 1];
  CHECK(shadow_redact_set_key(r, "short", 5) == -EINVAL);
  CHECK(!shadow_redact_has_key(r));
  /* Without a key: the process's random one, the same for every object. */
  shadow_redact_mark(r, "abc", 3, mark);
  shadow_redact_mark(NULL, "abc", 3, mark2);
  CHECK(strcmp(mark, mark2) == 0);
  CHECK(strncmp(mark, "[redacted hmac-sha256:", 22) == 0);
  CHECK(strlen(mark) == SHADOW_REDACT_MARK_LEN);
  CHECK(shadow_redact_set_key(r, "0123456789abcdef0123", 20) == 0);
  CHECK(shadow_redact_has_key(r));
  shadow_redact_mark(r, "abc", 3, mark);
  CHECK(strcmp(mark, "[redacted hmac-sha256:7175886e54c43350]") == 0);
  CHECK(strcmp(mark, mark2) != 0);
  /* The default list: the six headers that carry credentials. */
  CHECK(shadow_redact_headers(r) == 6);
  CHECK(strcmp(shadow_redact_header(r, 1), "proxy-authorization") == 0);
  CHECK(strcmp(shadow_redact_header(r, 4), "x-api-key") == 0);
  CHECK(strcmp(shadow_redact_header(r, 5), "x-auth-token") == 0);

  shadow_record_t *p = shadow_record_new(), *c = shadow_record_new();
  p->status = c->status = 200;
  shadow_headers_add(&p->headers, "Set-Cookie", 10, "sid=1", 5);
  shadow_headers_add(&p->headers, "X-Other", 7, "keep", 4);
  shadow_headers_add(&c->headers, "set-cookie", 10, "sid=2", 5);
  shadow_headers_add(&c->headers, "X-Other", 7, "keep", 4);
  CHECK(shadow_redact_record(r, p) == 0 && shadow_redact_record(r, c) == 0);
  CHECK(strncmp(p->headers.v[0].value, "[redacted hmac-sha256:", 22) == 0);
  CHECK(strcmp(p->headers.v[1].value, "keep") == 0);
  shadow_headers_add(&p->headers, "content-type", 12, "application/json", 16);
  shadow_headers_add(&c->headers, "content-type", 12, "application/json", 16);
  const char *pb = "{\"token\":\"s3cret\",\"users\":[{\"name\":\"a\","
                   "\"password\":\"p1\"}],\"n\":1}";
  const char *cb = "{\"token\":\"other\",\"users\":[{\"name\":\"b\","
                   "\"password\":\"p2\"}],\"n\":2}";
  shadow_buf_append(&p->body, pb, strlen(pb));
  shadow_buf_append(&c->body, cb, strlen(cb));
  shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
  int parts = shadow_diff_records(NULL, p, c, &res);
  CHECK(parts & SHADOW_PART_BODY);
  CHECK(parts & SHADOW_PART_HEADERS);
  CHECK(shadow_redact_diff(r, &res) == 0);
  const char *j = res.json.data;
  CHECK(strstr(j, "s3cret") == NULL && strstr(j, "other") == NULL);
  CHECK(strstr(j, "sid=") == NULL);
  CHECK(strstr(j, "\"p1\"") == NULL && strstr(j, "\"p2\"") == NULL);
  shadow_redact_mark(r, "s3cret", 6, mark);
  CHECK(strstr(j, mark) != NULL);
  /* What is not secret stays: the names and the counter. */
  CHECK(strstr(j, "\"primary\":1,\"candidate\":2") != NULL);
  CHECK(strstr(j, "\"candidate\":\"b\"") != NULL);
  /* A replaced object holding a secret has the secret marked inside it. */
  shadow_redact_t *only = shadow_redact_new();
  shadow_redact_add_json(only, "/a/pw");
  shadow_record_clear(p);
  shadow_record_clear(c);
  shadow_headers_add(&p->headers, "content-type", 12, "application/json", 16);
  shadow_headers_add(&c->headers, "content-type", 12, "application/json", 16);
  shadow_buf_append(&p->body, "{\"a\":{\"pw\":\"x1\",\"v\":1}}", 23);
  shadow_buf_append(&c->body, "{\"a\":[1]}", 9);
  CHECK(shadow_diff_records(NULL, p, c, &res) > 0);
  CHECK(shadow_redact_diff(only, &res) == 0);
  CHECK(strstr(res.json.data, "x1") == NULL);
  CHECK(strstr(res.json.data, "\"v\":1") != NULL);
  shadow_diff_result_free(&res);
  shadow_record_free(p);
  shadow_record_free(c);
  shadow_redact_free(only);
  shadow_redact_free(r);
}

/* One learned field of route 0. */
static void learned(shadow_stats_t *s, const char *field, uint64_t differed,
                    uint64_t noise_differed, unsigned noise_shapes,
                    double noise_max_delta) {
  shadow_noise_entry_t *e =
      shadow_noise_table_get(s->noise, "GET /x", 6, 0, field, strlen(field), 1);
  CHECK(e != NULL);
  e->learned.differed = differed;
  e->learned.noise_differed = noise_differed;
  e->learned.shapes = e->learned.noise_shapes = noise_shapes;
  e->learned.noise_max_delta = noise_max_delta;
}

/* The snippet is Lua a config runs: a field name from a response body
 * cannot end its string, and each kind of noise gets its rule. */
static void test_noise_snippet(void) {
  shadow_stats_t *s = shadow_stats_new(NULL, 0);
  shadow_route_stats_t *r = shadow_stats_route(s, "GET /x", 6);
  CHECK(r == &s->routes[0]);
  r->compared = r->learn_compared = r->noise_compared = 400;
  learned(s, "body:/a\"b\\c\n", 200, 200, SHADOW_NOISE_VALUE, 0);
  learned(s, "header:x-id", 400, 400, SHADOW_NOISE_HEADER, 0);
  learned(s, "body:/p", 300, 300, SHADOW_NOISE_NUMBER, 3.71e-6);
  learned(s, "body:/items", 100, 100, SHADOW_NOISE_MOVE, 0);
  learned(s, "body:/bug", 40, 0, SHADOW_NOISE_VALUE, 0);
  shadow_noise_settings_t cfg = {0.99, shadow_noise_z(0.99), 100};
  shadow_buf_t out = SHADOW_BUF_INIT;
  CHECK(shadow_noise_render_lua(s, &cfg, &out) == 0);
  CHECK(strstr(out.data, "\nreturn {\n") != NULL);
  CHECK(strstr(out.data, "headers = { \"x-id\" },") != NULL);
  CHECK(strstr(out.data, "json = { \"/a\\\"b\\\\c\\010\" },") != NULL);
  CHECK(strstr(out.data, "tolerance = { [\"/p\"] = 3.8e-06 },") != NULL);
  CHECK(strstr(out.data, "arrays = { [\"/items\"] = \"multiset\" },") != NULL);
  CHECK(strstr(out.data, "bug") == NULL);
  CHECK(out.data[out.len - 2] == '}' && out.data[out.len - 1] == '\n');
  shadow_buf_free(&out);
  CHECK(shadow_noise_render_json(s, &cfg, &out) == 0);
  CHECK(strstr(out.data, "\"field\":\"body:/bug\",\"class\":\"real\"") != NULL);
  CHECK(strstr(out.data, "\"proposal\":\"tolerance = { [\\\"/p\\\"] = "
                         "3.8e-06 }\"") != NULL);
  shadow_buf_free(&out);
  shadow_stats_free(s);
}

static void test_latency_verdict(void) {
  shadow_stats_t *s = shadow_stats_new(NULL, 0);
  shadow_route_stats_t *r = shadow_stats_route(s, "GET /x", 6);
  shadow_slo_t slo = {0.5, 10, 1.5};
  for (int i = 0; i < 20; i++) {
    shadow_exchange_obs_t o = {200, 200, {1, 10, 1, 10 + i % 5}};
    r->compared++;
    r->learn_compared++;
    s->compared++;
    shadow_stats_observe(s, r, &o);
  }
  shadow_verdict_t v;
  shadow_stats_verdict(s, r, &slo, &v);
  /* The candidate's p99 (14 ms) is within 1.5 x the primary's 10 ms. */
  CHECK(v.code == SHADOW_VERDICT_PROMOTE);
  /* Half the pairs at 40 ms: its p99 is over 1.5 x 10 ms: hold, saying
   * why. */
  for (int i = 0; i < 20; i++) {
    shadow_exchange_obs_t o = {200, 500, {1, 10, 1, 40}};
    r->compared++;
    shadow_stats_observe(s, r, &o);
  }
  shadow_stats_verdict(s, r, &slo, &v);
  CHECK(v.code == SHADOW_VERDICT_HOLD);
  CHECK(strstr(v.reason, "candidate p99 ") == v.reason);
  CHECK(strstr(v.reason, "over 1.5 x primary p99 10") != NULL);
  /* Without the objective, the same counts promote. */
  slo.max_latency_ratio = 0;
  shadow_stats_verdict(s, r, &slo, &v);
  CHECK(v.code == SHADOW_VERDICT_PROMOTE);
  CHECK(r->classes[2][2] == 20 && r->classes[2][5] == 20);
  shadow_stats_free(s);
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = malloc(1 << 20);
  *n = fread(buf, 1, 1 << 20, f);
  buf[*n] = '\0';
  fclose(f);
  return buf;
}

static void test_sink(void) {
  char dir[] = "/tmp/shadow-sink-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[128], p1[140], p2[140], p3[140];
  snprintf(path, sizeof(path), "%s/d.ndjson", dir);
  snprintf(p1, sizeof(p1), "%s.1", path);
  snprintf(p2, sizeof(p2), "%s.2", path);
  snprintf(p3, sizeof(p3), "%s.3", path);
  shadow_sink_opts_t o = {.path = path, .max_bytes = 1000, .keep = 2};
  shadow_sink_t *s;
  CHECK(shadow_sink_new(&o, &s) == 0);
  char line[100];
  memset(line, 'a', sizeof(line));
  for (int i = 0; i < 45; i++)
    shadow_sink_push(s, line, 99); /* 100 bytes with its newline */
  shadow_sink_sync(s);
  shadow_sink_status_t st;
  shadow_sink_status(s, &st);
  CHECK(st.lines == 45 && st.bytes == 4500 && st.dropped == 0);
  CHECK(st.rotations == 4);
  size_t n;
  char *t = slurp(path, &n);
  CHECK(t && n == 500);
  free(t);
  t = slurp(p1, &n);
  CHECK(t && n == 1000);
  free(t);
  t = slurp(p2, &n);
  CHECK(t && n == 1000);
  free(t);
  CHECK(access(p3, F_OK) != 0); /* keep = 2 */
  /* Moved away, then reopened: a new file. */
  char moved[160];
  snprintf(moved, sizeof(moved), "%s/moved", dir);
  CHECK(rename(path, moved) == 0);
  shadow_sink_reopen(s);
  shadow_sink_push(s, "after", 5);
  shadow_sink_sync(s);
  t = slurp(path, &n);
  CHECK(t && strcmp(t, "after\n") == 0);
  free(t);
  shadow_sink_close(s);

  /* A full disk: every write fails; counted, never fatal. */
  shadow_sink_opts_t full = {.path = "/dev/full", .max_bytes = 0};
  CHECK(shadow_sink_new(&full, &s) == 0);
  shadow_sink_push(s, "x", 1);
  shadow_sink_push(s, "y", 1);
  shadow_sink_sync(s);
  shadow_sink_status(s, &st);
  CHECK(st.errors[SHADOW_SINK_ERR_WRITE] >= 1);
  CHECK(st.dropped == 2 && st.lines == 0);
  CHECK(strstr(st.last_error, "No space left") != NULL);
  shadow_sink_close(s);
  /* A path that cannot be opened. */
  snprintf(path, sizeof(path), "%s/no/such/dir/x", dir);
  shadow_sink_opts_t bad = {.path = path};
  CHECK(shadow_sink_new(&bad, &s) == 0);
  shadow_sink_push(s, "x", 1);
  shadow_sink_sync(s);
  shadow_sink_status(s, &st);
  CHECK(st.errors[SHADOW_SINK_ERR_OPEN] >= 1 && st.dropped == 1);
  CHECK(!st.open);
  shadow_sink_close(s);
  /* A full queue drops and counts instead of waiting. */
  snprintf(path, sizeof(path), "%s/q", dir);
  shadow_sink_opts_t small = {.path = path, .queue_bytes = 250};
  CHECK(shadow_sink_new(&small, &s) == 0);
  for (int i = 0; i < 10; i++)
    shadow_sink_push(s, line, 99);
  shadow_sink_sync(s);
  shadow_sink_status(s, &st);
  CHECK(st.lines + st.dropped == 10);
  shadow_sink_close(s);
  unlink(path);
  snprintf(path, sizeof(path), "%s/d.ndjson", dir);
  unlink(path);
  unlink(p1);
  unlink(p2);
  unlink(moved);
  CHECK(rmdir(dir) == 0);
}

int main(void) {
  test_percentiles();
  test_fold();
  test_signatures();
  test_admin_guard();
  test_redact();
  test_latency_verdict();
  test_noise_snippet();
  test_sink();
  return check_report("test_telemetry");
}
