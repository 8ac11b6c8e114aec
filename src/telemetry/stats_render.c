/* The two renderings of shadow_stats_t: /stats JSON and /metrics text. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "stats.h"

typedef struct json_each_s {
  shadow_buf_t *out;
  int first;
} json_each_t;

static void json_counter(void *ud, const char *name, uint64_t n) {
  json_each_t *e = ud;
  if (!e->first) shadow_buf_putc(e->out, ',');
  e->first = 0;
  shadow_buf_json_string(e->out, name, strlen(name), 0);
  shadow_buf_printf(e->out, ":%llu", (unsigned long long)n);
}

static void json_counters(shadow_buf_t *out, const shadow_counters_t *c) {
  json_each_t e = {out, 1};
  shadow_buf_putc(out, '{');
  shadow_counters_each(c, json_counter, &e);
  shadow_buf_putc(out, '}');
}

/* JSON has no NaN or infinity; the verdict's numbers are always finite.
 * The reason is the engine's own sentence, escaped like any string. */
static void json_verdict(shadow_buf_t *out, const shadow_verdict_t *v) {
  shadow_buf_printf(out,
                    "{\"decision\":\"%s\",\"compared\":%llu,\"diverged\":%llu,"
                    "\"rate\":%.6g,\"lower\":%.6g,\"upper\":%.6g,"
                    "\"budget\":%.6g,\"reason\":",
                    v->decision, (unsigned long long)v->compared,
                    (unsigned long long)v->diverged, v->rate, v->lower,
                    v->upper, v->budget);
  shadow_buf_json_string(out, v->reason, strlen(v->reason), 0);
  shadow_buf_putc(out, '}');
}

static void iso_time(char *buf, size_t n, double ms) {
  time_t sec = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + k, n - k, ".%03dZ", (int)fmod(ms, 1000));
}

typedef struct routes_each_s {
  const shadow_stats_t *s;
  shadow_buf_t *out;
  double budget;
  uint64_t min_samples;
  size_t i;
} routes_each_t;

static void json_route(void *ud, const char *name, uint64_t idx) {
  routes_each_t *e = ud;
  const shadow_route_stats_t *r = &e->s->routes[idx];
  if (e->i++) shadow_buf_putc(e->out, ',');
  shadow_buf_json_string(e->out, name, strlen(name), 0);
  shadow_buf_printf(
      e->out,
      ":{\"sampled\":%llu,\"compared\":%llu,\"diverged\":%llu,"
      "\"parts\":{\"status\":%llu,\"headers\":%llu,"
      "\"body\":%llu},\"body_kinds\":{\"json\":%llu,\"bytes\":%llu,"
      "\"digest\":%llu},\"verdict\":",
      (unsigned long long)r->sampled, (unsigned long long)r->compared,
      (unsigned long long)r->diverged, (unsigned long long)r->parts[0],
      (unsigned long long)r->parts[1], (unsigned long long)r->parts[2],
      (unsigned long long)r->body_kinds[SHADOW_BODY_JSON],
      (unsigned long long)r->body_kinds[SHADOW_BODY_BYTES],
      (unsigned long long)r->body_kinds[SHADOW_BODY_DIGEST]);
  shadow_verdict_t v;
  shadow_verdict_compute(&v, r->compared, r->diverged, e->budget,
                         e->min_samples);
  json_verdict(e->out, &v);
  shadow_buf_putc(e->out, '}');
}

/* route_names maps a name to its index; shadow_counters_each hands us the
 * count, which for route_names is unused, so walk by insertion order: the
 * i-th name has index i. */
typedef struct route_walk_s {
  routes_each_t *e;
  uint64_t i;
} route_walk_t;

static void route_walk(void *ud, const char *name, uint64_t n) {
  route_walk_t *w = ud;
  (void)n;
  json_route(w->e, name, w->i++);
}

int shadow_stats_render_json(const shadow_stats_t *s, shadow_buf_t *out,
                             double budget, uint64_t min_samples) {
  shadow_buf_printf(
      out,
      "{\"totals\":{\"requests\":%llu,\"sampled\":%llu,"
      "\"compared\":%llu,\"diverged\":%llu,"
      "\"primary_errors\":%llu,\"responses_cut\":%llu,"
      "\"tunnels\":%llu,\"tunnels_open\":%lld,\"candidate_errors\":",
      (unsigned long long)s->requests, (unsigned long long)s->sampled,
      (unsigned long long)s->compared, (unsigned long long)s->diverged,
      (unsigned long long)s->primary_errors,
      (unsigned long long)s->responses_cut, (unsigned long long)s->tunnels,
      (long long)s->tunnels_open);
  json_counters(out, s->candidate_errors);
  shadow_buf_puts(out, ",\"skipped\":");
  json_counters(out, s->skipped);
  shadow_buf_puts(out, "},\"routes\":{");
  routes_each_t e = {s, out, budget, min_samples, 0};
  route_walk_t w = {&e, 0};
  shadow_counters_each(s->route_names, route_walk, &w);
  shadow_buf_puts(out, "},\"fields\":");
  json_counters(out, s->fields);
  shadow_buf_puts(out, ",\"rule_hits\":");
  json_counters(out, s->rule_hits);
  shadow_buf_printf(out, ",\"breaker\":{\"state\":\"%s\",\"open\":%s}",
                    s->breaker_state, s->breaker_open ? "true" : "false");
  shadow_buf_puts(out, ",\"script_errors\":");
  json_counters(out, s->script_errors);
  shadow_buf_puts(out, ",\"reloads\":");
  json_counters(out, s->reloads);
  shadow_buf_puts(out, ",\"last_reload\":");
  if (s->last_reload_ms > 0) {
    char t[40];
    iso_time(t, sizeof(t), s->last_reload_ms);
    shadow_buf_printf(out, "{\"time\":\"%s\",\"result\":\"%s\",\"error\":", t,
                      s->last_reload_result ? s->last_reload_result : "ok");
    if (s->last_reload_error)
      shadow_buf_json_string(out, s->last_reload_error,
                             strlen(s->last_reload_error), 0);
    else
      shadow_buf_puts(out, "null");
    shadow_buf_putc(out, '}');
  } else {
    shadow_buf_puts(out, "null");
  }
  shadow_buf_printf(out, ",\"generation\":%u,\"loop_generations\":[",
                    s->generation);
  for (size_t i = 0; i < s->nloops; i++)
    shadow_buf_printf(out, "%s%u", i ? "," : "", s->loop_generation[i]);
  shadow_buf_puts(out, "],\"verdict\":");
  shadow_verdict_t v;
  shadow_verdict_compute(&v, s->compared, s->diverged, budget, min_samples);
  json_verdict(out, &v);
  return shadow_buf_putc(out, '}');
}

/* Prometheus label values escape backslash, double quote and newline. */
static void prom_label(shadow_buf_t *out, const char *v) {
  for (; *v; v++) {
    if (*v == '\\')
      shadow_buf_puts(out, "\\\\");
    else if (*v == '"')
      shadow_buf_puts(out, "\\\"");
    else if (*v == '\n')
      shadow_buf_puts(out, "\\n");
    else
      shadow_buf_putc(out, *v);
  }
}

typedef struct prom_each_s {
  shadow_buf_t *out;
  const char *metric, *label;
} prom_each_t;

static void prom_counter(void *ud, const char *name, uint64_t n) {
  prom_each_t *e = ud;
  shadow_buf_printf(e->out, "%s{%s=\"", e->metric, e->label);
  prom_label(e->out, name);
  shadow_buf_printf(e->out, "\"} %llu\n", (unsigned long long)n);
}

static void prom_family(shadow_buf_t *out, const char *metric, const char *help,
                        const char *label, const shadow_counters_t *c) {
  shadow_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", metric, help,
                    metric);
  prom_each_t e = {out, metric, label};
  shadow_counters_each(c, prom_counter, &e);
}

static void prom_scalar(shadow_buf_t *out, const char *metric, const char *type,
                        const char *help, uint64_t v) {
  shadow_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", metric, help,
                    metric, type, metric, (unsigned long long)v);
}

static void prom_hist(shadow_buf_t *out, const char *metric, const char *help,
                      const shadow_hist_t *h) {
  shadow_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", metric, help,
                    metric);
  uint64_t cum = 0;
  for (int i = 0; i < SHADOW_HIST_BUCKETS; i++) {
    cum += h->buckets[i];
    shadow_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", metric,
                      shadow_hist_bounds[i], (unsigned long long)cum);
  }
  shadow_buf_printf(out,
                    "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n"
                    "%s_count %llu\n",
                    metric, (unsigned long long)h->count, metric, h->sum,
                    metric, (unsigned long long)h->count);
}

typedef struct prom_routes_s {
  const shadow_stats_t *s;
  shadow_buf_t *out;
  uint64_t i;
} prom_routes_t;

/* Body series carry how the bodies were compared (kind), so a sum over
 * kind is the body count and a digest one is visible apart. */
static void prom_route(void *ud, const char *name, uint64_t n) {
  static const char *const parts[2] = {"status", "headers"};
  static const char *const kinds[3] = {"json", "bytes", "digest"};
  prom_routes_t *e = ud;
  const shadow_route_stats_t *r = &e->s->routes[e->i++];
  (void)n;
  for (int p = 0; p < 2; p++) {
    if (!r->parts[p]) continue;
    shadow_buf_puts(e->out, "shadow_divergences_total{route=\"");
    prom_label(e->out, name);
    shadow_buf_printf(e->out, "\",part=\"%s\"} %llu\n", parts[p],
                      (unsigned long long)r->parts[p]);
  }
  for (int k = 0; k < 3; k++) {
    if (!r->body_kinds[k]) continue;
    shadow_buf_puts(e->out, "shadow_divergences_total{route=\"");
    prom_label(e->out, name);
    shadow_buf_printf(e->out, "\",part=\"body\",kind=\"%s\"} %llu\n", kinds[k],
                      (unsigned long long)r->body_kinds[k]);
  }
}

int shadow_stats_render_prometheus(const shadow_stats_t *s, shadow_buf_t *out) {
  prom_scalar(out, "shadow_requests_total", "counter",
              "Client requests received.", s->requests);
  prom_scalar(out, "shadow_sampled_total", "counter",
              "Requests mirrored to the candidate.", s->sampled);
  prom_scalar(out, "shadow_compared_total", "counter",
              "Primary and candidate response pairs compared.", s->compared);
  prom_scalar(out, "shadow_primary_errors_total", "counter",
              "Requests the primary failed (answered 502 or 504, or cut).",
              s->primary_errors);
  prom_scalar(out, "shadow_tunnels_total", "counter",
              "Upgraded connections (WebSocket) the primary accepted.",
              s->tunnels);
  prom_scalar(out, "shadow_tunnels_open", "gauge",
              "Upgraded connections still open.",
              (uint64_t)(s->tunnels_open > 0 ? s->tunnels_open : 0));
  prom_scalar(out, "shadow_responses_cut_total", "counter",
              "Responses the primary failed after their head was sent: the "
              "client's connection was closed.",
              s->responses_cut);
  shadow_buf_puts(out, "# HELP shadow_divergences_total Compared pairs that "
                       "differed, by route and part.\n"
                       "# TYPE shadow_divergences_total counter\n");
  prom_routes_t pr = {s, out, 0};
  shadow_counters_each(s->route_names, prom_route, &pr);
  prom_family(out, "shadow_candidate_errors_total",
              "Candidate legs that failed, by reason.", "reason",
              s->candidate_errors);
  prom_family(out, "shadow_skipped_total",
              "Requests that would have been mirrored but were not, by "
              "reason.",
              "reason", s->skipped);
  prom_hist(out, "shadow_primary_latency_seconds", "Primary response latency.",
            &s->primary_latency);
  prom_hist(out, "shadow_candidate_latency_seconds",
            "Candidate response latency.", &s->candidate_latency);
  shadow_buf_puts(out, "# HELP shadow_hook_duration_seconds Time spent in "
                       "each Lua hook.\n# TYPE shadow_hook_duration_seconds "
                       "histogram\n");
  for (size_t h = 0; h < s->nhooks; h++) {
    const shadow_hist_t *hh = &s->hook_time[h];
    if (!s->hook_names[h] || hh->count == 0) continue;
    uint64_t cum = 0;
    for (int i = 0; i < SHADOW_HIST_BUCKETS; i++) {
      cum += hh->buckets[i];
      shadow_buf_printf(out,
                        "shadow_hook_duration_seconds_bucket{hook=\"%s\","
                        "le=\"%g\"} %llu\n",
                        s->hook_names[h], shadow_hist_bounds[i],
                        (unsigned long long)cum);
    }
    shadow_buf_printf(out,
                      "shadow_hook_duration_seconds_bucket{hook=\"%s\","
                      "le=\"+Inf\"} %llu\n",
                      s->hook_names[h], (unsigned long long)hh->count);
    shadow_buf_printf(out,
                      "shadow_hook_duration_seconds_sum{hook=\"%s\"} "
                      "%.9g\n",
                      s->hook_names[h], hh->sum);
    shadow_buf_printf(out,
                      "shadow_hook_duration_seconds_count{hook=\"%s\"} "
                      "%llu\n",
                      s->hook_names[h], (unsigned long long)hh->count);
  }
  prom_scalar(out, "shadow_breaker_open", "gauge",
              "1 while the candidate's circuit breaker is open.",
              (uint64_t)s->breaker_open);
  prom_family(out, "shadow_script_errors_total", "Lua hook errors, by hook.",
              "hook", s->script_errors);
  prom_family(out, "shadow_reloads_total", "Script reloads, by result.",
              "result", s->reloads);
  prom_family(out, "shadow_rule_hits_total",
              "Comparisons in which a diff rule absorbed a difference or "
              "renamed a member, by rule.",
              "rule", s->rule_hits);
  return 0;
}
