/* Counters stay bounded, and both renderings carry the contract's names;
 * /stats carries the verdict (its rule is tested in test_verdict.c) with
 * its reason, overall and per route. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "stats.h"
#include "utf8.h"

/* A name as a label: bytes that are not UTF-8 and control characters are
 * U+FFFD, a long name is cut on a character boundary with an ellipsis. */
static void test_labels(void) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  CHECK(shadow_utf8_label_ok("GET /a\"b\\", 9, 64));
  CHECK(shadow_utf8_label_ok("\xe2\x82\xac", 3, 64));
  CHECK(!shadow_utf8_label_ok("/m\xff\xfe", 4, 64));
  CHECK(!shadow_utf8_label_ok("/e\xc0\xaf", 4, 64));     /* overlong */
  CHECK(!shadow_utf8_label_ok("/s\xed\xa0\x80", 5, 64)); /* surrogate */
  CHECK(!shadow_utf8_label_ok("a\nb", 3, 64));
  CHECK(!shadow_utf8_label_ok("abcdef", 6, 5));
  CHECK(shadow_utf8_label(&b, "/m\xff\xfe", 4, 64) == 0);
  CHECK(b.len == 8 && memcmp(b.data, "/m\xef\xbf\xbd\xef\xbf\xbd", 8) == 0);
  shadow_buf_reset(&b);
  CHECK(shadow_utf8_label(&b, "a\0b\x7f", 4, 64) == 0);
  CHECK(b.len == 8 && memcmp(b.data,
                             "a\xef\xbf\xbd"
                             "b\xef\xbf\xbd",
                             8) == 0);
  /* 10 euro signs (30 bytes) in 16: four of them and the ellipsis. */
  char euros[31];
  for (int i = 0; i < 10; i++)
    memcpy(euros + 3 * i, "\xe2\x82\xac", 3);
  shadow_buf_reset(&b);
  CHECK(shadow_utf8_label(&b, euros, 30, 16) == 0);
  CHECK(b.len == 15 && memcmp(b.data + 12, "\xe2\x80\xa6", 3) == 0);
  CHECK(shadow_utf8_label_ok(b.data, b.len, 16));
  shadow_buf_free(&b);
  /* Counters count a name by its label: two bad spellings are one. */
  shadow_counters_t *c = shadow_counters_new(10);
  shadow_counters_add(c, "/m\xff", 3, 1);
  shadow_counters_add(c, "/m\xfe", 3, 1);
  CHECK(shadow_counters_get(c, "/m\xef\xbf\xbd") == 2);
  char big[2000];
  memset(big, 'x', sizeof big);
  shadow_counters_add(c, big, sizeof big, 1);
  uint64_t pos;
  char cut[SHADOW_COUNTER_NAME_MAX + 1];
  memset(cut, 'x', SHADOW_COUNTER_NAME_MAX - 3);
  memcpy(cut + SHADOW_COUNTER_NAME_MAX - 3, "\xe2\x80\xa6", 3);
  cut[SHADOW_COUNTER_NAME_MAX] = '\0';
  CHECK(shadow_counters_find(c, cut, &pos) && pos == 1);
  /* A name is found as it was counted: by its label. */
  CHECK(shadow_counters_find(c, "/m\xfe", &pos) && pos == 0);
  shadow_counters_free(c);
  /* A raw family keeps keys byte for byte (replay's "route\x1ffield"). */
  shadow_counters_t *raw = shadow_counters_new_raw(10);
  shadow_counters_add(raw,
                      "r\x1f"
                      "a",
                      3, 1);
  shadow_counters_add(raw,
                      "r\xef\xbf\xbd"
                      "a",
                      5, 1);
  CHECK(shadow_counters_find(raw,
                             "r\x1f"
                             "a",
                             &pos) &&
        pos == 0);
  CHECK(shadow_counters_get(raw, "r\x1f"
                                 "a") == 1);
  CHECK(shadow_counters_find(raw,
                             "r\xef\xbf\xbd"
                             "a",
                             &pos) &&
        pos == 1);
  shadow_counters_free(raw);
}

/* A hook's last error is kept, one line, bounded; a reset zeroes every
 * count but keeps the names (a rule at 0 still shows), the learned noise's
 * judging count, and moves window_start. */
static void test_errors_and_reset(void) {
  static const char *const hooks[] = {"key", "normalize"};
  shadow_stats_t *s = shadow_stats_new(hooks, 2);
  CHECK(s != NULL);
  if (!s) return;
  char big[1000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  shadow_stats_hook_error(s, 1, "c.lua:3: boom\nstack traceback:", 1.7e12);
  shadow_stats_hook_error(s, 1, big, 1.7e12 + 5);
  shadow_stats_hook_error(s, 9, "out of range", 1.7e12); /* ignored */
  CHECK(s->hook_errors[1].count == 2);
  CHECK(strlen(s->hook_errors[1].last) == SHADOW_HOOK_ERROR_MAX);
  shadow_stats_hook_error(s, 1, "c.lua:3: boom\nstack traceback:", 1.7e12 + 9);
  CHECK(strcmp(s->hook_errors[1].last, "c.lua:3: boom") == 0);
  shadow_buf_t out = SHADOW_BUF_INIT;
  shadow_slo_t slo = {0.001, 1000, 0};
  shadow_stats_render_json(s, &out, &slo, 1.7e12);
  CHECK(strstr(out.data, "\"hook_errors\":{\"normalize\":{\"count\":3,"
                         "\"last_error\":\"c.lua:3: boom\",\"last_time\":"
                         "\"2023-11-14T22:13:20.009Z\"}}") != NULL);
  shadow_counters_add(s->rule_hits, "ignore:/ts", 10, 4);
  shadow_stats_set_reload(s, 1.7e12, "error", "c.lua:1: bad");
  shadow_route_stats_t *r = shadow_stats_route(s, "GET /a", 6);
  CHECK(r != NULL);
  if (r) r->compared = r->learn_compared = r->compared_raw = 7;
  s->compared = s->compared_raw = 7;
  shadow_stats_reset(s, 1.8e12, 0);
  CHECK(s->compared == 0 && s->compared_raw == 0 && s->reloads_failed == 0);
  CHECK(s->hook_errors[1].count == 0);
  CHECK(shadow_counters_get(s->rule_hits, "ignore:/ts") == 0);
  uint64_t pos;
  CHECK(shadow_counters_find(s->rule_hits, "ignore:/ts", &pos) == 1);
  CHECK(r && r->compared == 0 && r->compared_raw == 0);
  CHECK(r && r->learn_compared == 7); /* the learned noise is kept */
  CHECK(s->window_start_ms == 1.8e12);
  shadow_buf_reset(&out);
  shadow_stats_render_json(s, &out, &slo, 1.8e12);
  CHECK(strstr(out.data, "\"hook_errors\":{}") != NULL);
  CHECK(strstr(out.data, "\"failed_reloads\":{\"count\":0,\"last\":null}") !=
        NULL);
  CHECK(strstr(out.data, "\"window_start\":\"2027-01-15T08:00:00.000Z\"") !=
        NULL);
  shadow_stats_reset(s, 1.9e12, 1);
  CHECK(r && r->learn_compared == 0);
  shadow_buf_free(&out);
  shadow_stats_free(s);
}

int main(void) {
  test_errors_and_reset();
  test_labels();
  /* Past the cap, new names count under "other". */
  shadow_counters_t *c = shadow_counters_new(3);
  shadow_counters_add(c, "a", 1, 1);
  shadow_counters_add(c, "b", 1, 2);
  shadow_counters_add(c, "c", 1, 3);
  shadow_counters_add(c, "d", 1, 4);
  shadow_counters_add(c, "e", 1, 5);
  shadow_counters_add(c, "a", 1, 10);
  CHECK(shadow_counters_get(c, "a") == 11);
  CHECK(shadow_counters_get(c, "d") == 0);
  CHECK(shadow_counters_get(c, "other") == 9);
  /* Many distinct names: still bounded, all counted. */
  char name[32];
  shadow_counters_t *many = shadow_counters_new(1000);
  for (int i = 0; i < 5000; i++) {
    int n = snprintf(name, sizeof(name), "route-%d", i % 2000);
    shadow_counters_add(many, name, (size_t)n, 1);
  }
  CHECK(shadow_counters_get(many, "route-0") == 3);
  CHECK(shadow_counters_get(many, "route-999") == 3);
  CHECK(shadow_counters_get(many, "other") == 2000);
  shadow_counters_free(many);
  shadow_counters_free(c);

  shadow_stats_t *s = shadow_stats_new(NULL, 0);
  s->requests = 7;
  s->compared = 3;
  s->diverged = 1;
  shadow_route_stats_t *r = shadow_stats_route(s, "GET /a\"b", 8);
  r->compared = 3;
  r->diverged = 1;
  r->parts[2] = 1;
  r->body_kinds[SHADOW_BODY_DIGEST] = 1;
  shadow_counters_add(s->candidate_errors, "timeout", 7, 2);
  shadow_hist_observe(&s->primary_latency, 0.003);
  shadow_stats_set_reload(s, 1.7e12, "error", "x.lua:3: boom");
  shadow_buf_t out = SHADOW_BUF_INIT;
  shadow_slo_t slo = {0.001, 1000, 0};
  shadow_stats_render_prometheus(s, &out, &slo);
  CHECK(strstr(out.data, "shadow_requests_total 7\n") != NULL);
  CHECK(strstr(out.data, "shadow_divergences_total{route=\"GET /a\\\"b\","
                         "part=\"body\",kind=\"digest\"} 1\n") != NULL);
  CHECK(strstr(out.data, "shadow_candidate_errors_total{reason=\"timeout\"}"
                         " 2\n") != NULL);
  CHECK(strstr(out.data, "shadow_primary_latency_seconds_bucket{le=\"0.005\"}"
                         " 1\n") != NULL);
  CHECK(strstr(out.data, "shadow_reloads_total{result=\"error\"} 1\n"));
  CHECK(strstr(out.data, "shadow_breaker_open 0\n") != NULL);
  shadow_buf_reset(&out);
  shadow_stats_render_json(s, &out, &slo, 1.7e12);
  CHECK(strstr(out.data, "\"requests\":7") != NULL);
  CHECK(strstr(out.data, "\"GET /a\\\"b\":{\"sampled\":0,\"compared\":3") !=
        NULL);
  CHECK(strstr(out.data, "\"error\":\"x.lua:3: boom\"") != NULL);
  /* One of three differs: already a lower bound over the budget, so hold,
   * overall and per route, though min_samples is far off. */
  const char *hold = "\"verdict\":{\"decision\":\"hold\",\"compared\":3,"
                     "\"diverged\":1,\"rate\":0.333333,\"lower\":0.0614919,"
                     "\"upper\":0.79234,\"budget\":0.001,\"reason\":\"at "
                     "least 6.1% of compared requests differ; the budget "
                     "is 0.1%\"}";
  const char *first = strstr(out.data, hold);
  CHECK(first != NULL);
  CHECK(first && strstr(first + 1, hold) != NULL);
  /* None of three: too few to say, and the reason counts what is needed. */
  s->diverged = r->diverged = 0;
  shadow_buf_reset(&out);
  shadow_stats_render_json(s, &out, &slo, 1.7e12);
  const char *wait = "\"verdict\":{\"decision\":\"insufficient-data\","
                     "\"compared\":3,\"diverged\":0,\"rate\":0,\"lower\":0,"
                     "\"upper\":0.561497,\"budget\":0.001,\"reason\":\"1000 "
                     "comparisons needed, 3 so far\"}";
  first = strstr(out.data, wait);
  CHECK(first != NULL);
  CHECK(first && strstr(first + 1, wait) != NULL);
  shadow_buf_free(&out);
  shadow_stats_free(s);
  return check_report("test_stats");
}
