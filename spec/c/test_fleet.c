/* The fleet store's pure pieces: the URL grammar and its refusals, the key
 * base's hash tag, the counts of a stats walked into named fields and added
 * back (two instances' worth: every count doubles, a maximum does not), the
 * signatures walked and put back under the same ids, the snapshot map, and
 * the RESP encoding. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fleet.h"
#include "fleet_snap.h"
#include "noise_table.h"
#include "redis_conn.h"
#include "signatures.h"
#include "stats.h"
#include "store_cfg.h"

static void test_urls(void) {
  shadow_store_cfg_t c;
  char *err = NULL;
  shadow_store_cfg_init(&c);
  CHECK(shadow_store_cfg_parse_url(&c, "redis://u%3a:p%40ss@h.example:7000/3",
                                   &err) == 0);
  CHECK(!c.tls && strcmp(c.host, "h.example") == 0 && c.port == 7000);
  CHECK(c.db == 3 && strcmp(c.username, "u:") == 0 &&
        strcmp(c.password, "p@ss") == 0);
  shadow_store_cfg_release(&c);
  CHECK(shadow_store_cfg_parse_url(&c, "rediss://[::1]/", &err) == 0);
  CHECK(c.tls && strcmp(c.host, "::1") == 0 && c.port == 6379 && c.db == 0);
  shadow_store_cfg_release(&c);
  CHECK(shadow_store_cfg_parse_url(&c, "redis://secret@h", &err) == 0);
  CHECK(!c.username && strcmp(c.password, "secret") == 0);
  shadow_store_cfg_release(&c);
  const char *bad[] = {"http://h:1",     "redis://",        "redis://h:0",
                       "redis://h:x",    "redis://h:1/db",  "redis://h:1?x=1",
                       "redis://[::1:1", "redis://h:123456"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err = NULL;
    CHECK(shadow_store_cfg_parse_url(&c, bad[i], &err) == -1);
    CHECK(err != NULL);
    free(err);
    shadow_store_cfg_release(&c);
  }
  /* Sentinel without master; tls options on redis://. */
  CHECK(shadow_store_cfg_parse_url(&c, "redis://h:1", &err) == 0);
  c.sentinel_addrs[c.nsentinels++] = strdup("a:1");
  err = NULL;
  CHECK(shadow_store_cfg_check(&c, &err) == -1 && strstr(err, "master"));
  free(err);
  c.sentinel_master = strdup("m");
  CHECK(shadow_store_cfg_check(&c, &err) == 0);
  c.tls_ca_file = strdup("/x");
  err = NULL;
  CHECK(shadow_store_cfg_check(&c, &err) == -1 && strstr(err, "rediss"));
  free(err);
  char *h = NULL;
  int port = 0;
  CHECK(shadow_store_split_addr("[::1]:26379", &h, &port) == 0 &&
        strcmp(h, "::1") == 0 && port == 26379);
  free(h);
  CHECK(shadow_store_split_addr("nope", &h, &port) == -1);
  /* The key base: a hash tag unless the prefix has one. */
  c.prefix = strdup("shadow:checkout");
  char *b = shadow_store_key_base(&c);
  CHECK(strcmp(b, "{shadow:checkout}") == 0);
  free(b);
  free(c.prefix);
  c.prefix = strdup("app:{checkout}");
  b = shadow_store_key_base(&c);
  CHECK(strcmp(b, "app:{checkout}") == 0);
  free(b);
  shadow_store_cfg_t d;
  shadow_store_cfg_init(&d);
  CHECK(!shadow_store_cfg_same(&c, &d));
  shadow_store_cfg_release(&c);
  CHECK(shadow_store_cfg_same(&c, &d));
}

static void add_to(void *ud, int kind, const char *name, size_t len, uint64_t u,
                   double d) {
  shadow_fleet_counts_add(ud, kind, name, len, u, d);
}

static void test_counts(void) {
  shadow_stats_t *s = shadow_stats_new(NULL, 0);
  s->requests = 10;
  s->compared = 7;
  s->diverged = 3;
  shadow_counters_add(s->candidate_errors, "timeout", 7, 2);
  shadow_route_stats_t *r = shadow_stats_route(s, "GET /a", 6);
  r->compared = 7;
  r->diverged = 3;
  r->parts[2] = 3;
  r->learn_compared = 7;
  r->fields = shadow_counters_new(SHADOW_ROUTE_FIELDS_MAX);
  r->latency = calloc(SHADOW_LAT_COUNT, sizeof(*r->latency));
  shadow_counters_add(r->fields, "body:/x", 7, 3);
  shadow_exchange_obs_t obs = {200, 503, {1.0, 2.0, 3.0, 40.0}};
  shadow_stats_observe(s, r, &obs);
  shadow_hist_observe(&s->primary_latency, 0.002);
  shadow_stats_history_add(s, 1e12, 1);
  shadow_noise_entry_t *e =
      shadow_noise_table_get(s->noise, "GET /a", 6, 0, "body:/ts", 8, 1);
  shadow_noise_learn_secondary(&e->learned, SHADOW_NOISE_NUMBER, 2.5);
  shadow_noise_learn_candidate(&e->learned, SHADOW_NOISE_VALUE, 0);

  shadow_stats_t *f = shadow_stats_new(NULL, 0);
  shadow_fleet_counts_walk(s, add_to, f);
  shadow_fleet_counts_walk(s, add_to, f); /* a second instance */
  shadow_fleet_counts_finish(f);
  CHECK(f->requests == 20 && f->compared == 14 && f->diverged == 6);
  CHECK(shadow_counters_get(f->candidate_errors, "timeout") == 4);
  CHECK(f->nroutes == 1);
  shadow_route_stats_t *fr = &f->routes[0];
  CHECK(fr->compared == 14 && fr->diverged == 6 && fr->parts[2] == 6);
  CHECK(fr->learn_compared == 14);
  CHECK(fr->fields && shadow_counters_get(fr->fields, "body:/x") == 6);
  CHECK(fr->classes[2][5] == 2 && f->classes[2][5] == 2);
  CHECK(fr->latency && fr->latency[3].n == 2);
  CHECK(f->latency[3].sum_s > 0.079 && f->latency[3].sum_s < 0.081);
  /* The percentile is the bucket's, within 4.4%. */
  double p = shadow_lhist_quantile(&f->latency[3], 0.5);
  CHECK(p > 0.040 * 0.95 && p < 0.040 * 1.05);
  CHECK(f->primary_latency.count == 2 && f->primary_latency.sum > 0.0039);
  int64_t step = (int64_t)(1e12 / 1000) / SHADOW_HISTORY_STEP_S;
  CHECK(f->history[step % SHADOW_HISTORY_SLOTS].compared == 2);
  shadow_noise_entry_t *fe =
      shadow_noise_table_get(f->noise, "GET /a", 6, 0, "body:/ts", 8, 0);
  CHECK(fe != NULL);
  if (fe) {
    CHECK(fe->learned.noise_differed == 2 && fe->learned.differed == 2);
    CHECK(fe->learned.noise_shapes == SHADOW_NOISE_NUMBER);
    CHECK(fe->learned.shapes == SHADOW_NOISE_VALUE);
    CHECK(fe->learned.noise_max_delta == 2.5); /* a maximum, not a sum */
    CHECK(fe->route_idx == 0);
  }
  /* An unknown or malformed name is ignored. */
  shadow_fleet_counts_add(f, SHADOW_FLEET_COUNT, "zz\x1fy", 4, 5, 0);
  shadow_fleet_counts_add(f, SHADOW_FLEET_COUNT,
                          "rc\x1f"
                          "GET /a\x1f"
                          "9\x1f"
                          "1",
                          13, 5, 0);
  shadow_fleet_counts_add(f, SHADOW_FLEET_COUNT, "t", 1, 5, 0);
  CHECK(f->requests == 20);
  shadow_stats_free(s);
  shadow_stats_free(f);
}

typedef struct sig_copy_s {
  shadow_signatures_t *to;
  uint64_t hashes[8];
  size_t n;
} sig_copy_t;

static void copy_sig(void *ud, const shadow_signature_view_t *v) {
  sig_copy_t *c = ud;
  c->hashes[c->n++ % 8] = v->hash;
  CHECK(shadow_signatures_put(c->to, v) == 0);
}

static void test_signatures(void) {
  shadow_signatures_t *a = shadow_signatures_new(10, 1 << 20);
  shadow_signatures_t *b = shadow_signatures_new(10, 1 << 20);
  const char f1[] = "body:/x\0body:/y";
  shadow_signatures_add(a, "GET /a", 4, f1, 2, 1000, "{\"n\":1}", 7);
  shadow_signatures_add(a, "GET /b", 1, "status", 1, 2000, "{\"n\":2}", 7);
  shadow_signatures_add(a, "GET /a", 4, f1, 2, 3000, "{\"n\":3}", 7);
  sig_copy_t c = {b, {0}, 0};
  shadow_signatures_each(a, copy_sig, &c);
  CHECK(c.n == 2);
  shadow_buf_t x = SHADOW_BUF_INIT, y = SHADOW_BUF_INIT;
  shadow_signatures_render(a, &x, 10, NULL, 0);
  shadow_signatures_render(b, &y, 10, NULL, 0);
  CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
  shadow_buf_free(&x);
  shadow_buf_free(&y);
  shadow_signature_view_t bad = {"no newline", 10, 0, 1, 0, 0, NULL, 0};
  CHECK(shadow_signatures_put(b, &bad) < 0);
  shadow_signatures_free(a);
  shadow_signatures_free(b);
}

static void test_snap(void) {
  shadow_fleet_snap_t *s = shadow_fleet_snap_new();
  char name[32];
  for (int i = 0; i < 5000; i++) {
    int n = snprintf(name, sizeof(name), "k\x1f%d", i);
    CHECK(shadow_fleet_snap_put(s, name, (size_t)n, (uint64_t)i, i * 0.5) == 0);
  }
  CHECK(shadow_fleet_snap_len(s) == 5000);
  uint64_t u;
  double d;
  CHECK(shadow_fleet_snap_get(s,
                              "k\x1f"
                              "4321",
                              6, &u, &d) &&
        u == 4321 && d == 2160.5);
  CHECK(!shadow_fleet_snap_get(s,
                               "k\x1f"
                               "5000",
                               6, &u, &d) &&
        u == 0);
  shadow_fleet_snap_put(s,
                        "k\x1f"
                        "1",
                        3, 9, 0);
  CHECK(shadow_fleet_snap_get(s,
                              "k\x1f"
                              "1",
                              3, &u, &d) &&
        u == 9);
  CHECK(shadow_fleet_snap_len(s) == 5000);
  shadow_fleet_snap_free(s);
}

static void test_resp(void) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  CHECK(shadow_redis_encodev(&b, 2, "GET", "k") == 0);
  const char *want = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  CHECK(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0);
  /* Binary-safe: a field name with 0x1f and a NUL. */
  shadow_buf_reset(&b);
  const char *argv[2] = {"HGET", "a\x1f\0b"};
  size_t lens[2] = {4, 4};
  CHECK(shadow_redis_encode(&b, 2, argv, lens) == 0);
  CHECK(b.len == 24 && memcmp(b.data + 18, "a\x1f\0b\r\n", 6) == 0);
  shadow_buf_free(&b);
}

int main(void) {
  test_urls();
  test_counts();
  test_signatures();
  test_snap();
  test_resp();
  return check_report("test_fleet");
}
