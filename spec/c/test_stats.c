/* Counters stay bounded, the verdict follows the Wilson interval, and both
 * renderings carry the contract's names. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "stats.h"

int main(void) {
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

  /* The verdict. */
  shadow_verdict_t v;
  shadow_verdict_compute(&v, 10, 0, 0.001, 1000);
  CHECK(strcmp(v.decision, "insufficient-data") == 0);
  shadow_verdict_compute(&v, 100000, 10, 0.001, 1000);
  CHECK(strcmp(v.decision, "promote") == 0);
  CHECK(v.lower < 0.0001 && v.upper > 0.0001 && v.upper < 0.001);
  shadow_verdict_compute(&v, 5000, 10, 0.001, 1000);
  CHECK(strcmp(v.decision, "hold") == 0); /* rate 0.2% */
  /* Zero divergences in 1000: the upper bound is still ~0.38%, over a
   * 0.1% budget: not enough evidence to promote. */
  shadow_verdict_compute(&v, 1000, 0, 0.001, 1000);
  CHECK(strcmp(v.decision, "hold") == 0);
  CHECK(v.upper > 0.003 && v.upper < 0.005);

  shadow_stats_t *s = shadow_stats_new();
  s->requests = 7;
  s->compared = 3;
  s->diverged = 1;
  shadow_route_stats_t *r = shadow_stats_route(s, "GET /a\"b", 8);
  r->compared = 3;
  r->diverged = 1;
  r->parts[2] = 1;
  shadow_counters_add(s->candidate_errors, "timeout", 7, 2);
  shadow_hist_observe(&s->primary_latency, 0.003);
  shadow_stats_set_reload(s, 1.7e12, "error", "x.lua:3: boom");
  shadow_buf_t out = SHADOW_BUF_INIT;
  shadow_stats_render_prometheus(s, &out);
  CHECK(strstr(out.data, "shadow_requests_total 7\n") != NULL);
  CHECK(strstr(out.data, "shadow_divergences_total{route=\"GET /a\\\"b\","
                         "part=\"body\"} 1\n") != NULL);
  CHECK(strstr(out.data, "shadow_candidate_errors_total{reason=\"timeout\"}"
                         " 2\n") != NULL);
  CHECK(strstr(out.data, "shadow_primary_latency_seconds_bucket{le=\"0.005\"}"
                         " 1\n") != NULL);
  CHECK(strstr(out.data, "shadow_reloads_total{result=\"error\"} 1\n"));
  CHECK(strstr(out.data, "shadow_breaker_open 0\n") != NULL);
  shadow_buf_reset(&out);
  shadow_stats_render_json(s, &out, 0.001, 1000);
  CHECK(strstr(out.data, "\"requests\":7") != NULL);
  CHECK(strstr(out.data, "\"GET /a\\\"b\":{\"sampled\":0,\"compared\":3") !=
        NULL);
  CHECK(strstr(out.data, "\"error\":\"x.lua:3: boom\"") != NULL);
  CHECK(strstr(out.data, "\"decision\":\"insufficient-data\"") != NULL);
  shadow_buf_free(&out);
  shadow_stats_free(s);
  return check_report("test_stats");
}
