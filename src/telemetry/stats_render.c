/* The two renderings of shadow_stats_t: /stats JSON and /metrics text,
 * with what is kept beside the counters (the signature table, the sink's
 * status) when there is one. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fleet.h"
#include "signatures.h"
#include "sink.h"
#include "stats.h"
#include "store.h"

static const char *const class_names[SHADOW_STATUS_CLASSES] = {
    "other", "1xx", "2xx", "3xx", "4xx", "5xx", "error"};

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
void shadow_verdict_render_json(shadow_buf_t *out, const shadow_verdict_t *v) {
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
  const shadow_slo_t *slo;
  size_t i;
} routes_each_t;

/* {"2xx":{"2xx":n,"5xx":n},...}: rows by primary class, only the cells
 * that are not 0. */
static void
json_classes(shadow_buf_t *out,
             const uint64_t m[SHADOW_STATUS_CLASSES][SHADOW_STATUS_CLASSES]) {
  shadow_buf_putc(out, '{');
  int rows = 0;
  for (int p = 0; p < SHADOW_STATUS_CLASSES; p++) {
    int cells = 0;
    for (int c = 0; c < SHADOW_STATUS_CLASSES; c++) {
      if (!m[p][c]) continue;
      if (!cells)
        shadow_buf_printf(out, "%s\"%s\":{", rows++ ? "," : "", class_names[p]);
      shadow_buf_printf(out, "%s\"%s\":%llu", cells++ ? "," : "",
                        class_names[c], (unsigned long long)m[p][c]);
    }
    if (cells) shadow_buf_putc(out, '}');
  }
  shadow_buf_putc(out, '}');
}

/* Milliseconds with six significant digits: sub-millisecond legs (an
 * in-process backend) still read apart. */
static void json_lhist(shadow_buf_t *out, const shadow_lhist_t *h) {
  shadow_buf_printf(out,
                    "{\"count\":%llu,\"p50\":%.6g,\"p90\":%.6g,\"p99\":%.6g,"
                    "\"max\":%.6g}",
                    (unsigned long long)h->n,
                    shadow_lhist_quantile(h, 0.50) * 1e3,
                    shadow_lhist_quantile(h, 0.90) * 1e3,
                    shadow_lhist_quantile(h, 0.99) * 1e3, h->max_s * 1e3);
}

/* {"primary":{"first_byte":{...},"last_byte":{...}},"candidate":{...}} in
 * milliseconds; the histograms may be NULL (nothing timed yet). */
static void json_latency(shadow_buf_t *out, const shadow_lhist_t *lat) {
  static const shadow_lhist_t empty;
  const shadow_lhist_t *h[SHADOW_LAT_COUNT];
  for (int i = 0; i < SHADOW_LAT_COUNT; i++)
    h[i] = lat ? &lat[i] : &empty;
  shadow_buf_puts(out, "{\"primary\":{\"first_byte\":");
  json_lhist(out, h[SHADOW_LAT_PRIMARY_FIRST]);
  shadow_buf_puts(out, ",\"last_byte\":");
  json_lhist(out, h[SHADOW_LAT_PRIMARY_LAST]);
  shadow_buf_puts(out, "},\"candidate\":{\"first_byte\":");
  json_lhist(out, h[SHADOW_LAT_CANDIDATE_FIRST]);
  shadow_buf_puts(out, ",\"last_byte\":");
  json_lhist(out, h[SHADOW_LAT_CANDIDATE_LAST]);
  shadow_buf_puts(out, "}}");
}

static void json_route(void *ud, const char *name, uint64_t idx) {
  routes_each_t *e = ud;
  const shadow_route_stats_t *r = &e->s->routes[idx];
  if (e->i++) shadow_buf_putc(e->out, ',');
  shadow_buf_json_string(e->out, name, strlen(name), 0);
  shadow_buf_printf(
      e->out,
      ":{\"sampled\":%llu,\"compared\":%llu,\"diverged\":%llu,"
      "\"noise_compared\":%llu,\"noise_suppressed\":%llu,"
      "\"compared_raw\":%llu,\"parts\":{\"status\":%llu,\"headers\":%llu,"
      "\"body\":%llu},\"body_kinds\":{\"json\":%llu,\"bytes\":%llu,"
      "\"digest\":%llu,\"protobuf\":%llu},\"fields\":",
      (unsigned long long)r->sampled, (unsigned long long)r->compared,
      (unsigned long long)r->diverged, (unsigned long long)r->noise_compared,
      (unsigned long long)r->noise_suppressed,
      (unsigned long long)r->compared_raw, (unsigned long long)r->parts[0],
      (unsigned long long)r->parts[1], (unsigned long long)r->parts[2],
      (unsigned long long)r->body_kinds[SHADOW_BODY_JSON],
      (unsigned long long)r->body_kinds[SHADOW_BODY_BYTES],
      (unsigned long long)r->body_kinds[SHADOW_BODY_DIGEST],
      (unsigned long long)r->body_kinds[SHADOW_BODY_PROTOBUF]);
  if (r->fields)
    json_counters(e->out, r->fields);
  else
    shadow_buf_puts(e->out, "{}");
  shadow_buf_puts(e->out, ",\"classes\":");
  json_classes(e->out, r->classes);
  shadow_buf_puts(e->out, ",\"latency_ms\":");
  json_latency(e->out, r->latency);
  shadow_buf_puts(e->out, ",\"verdict\":");
  shadow_verdict_t v;
  shadow_stats_verdict(e->s, r, e->slo, &v);
  shadow_verdict_render_json(e->out, &v);
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

/* The compared and diverged pairs of each step of the last minutes,
 * oldest first: [[time_ms, compared, diverged], ...], a step with nothing
 * compared included, so a chart reads time from left to right. */
static void json_history(const shadow_stats_t *s, shadow_buf_t *out,
                         double now_ms) {
  int64_t now = (int64_t)(now_ms / 1000) / SHADOW_HISTORY_STEP_S;
  shadow_buf_printf(out, "{\"step_s\":%d,\"points\":[", SHADOW_HISTORY_STEP_S);
  for (int64_t k = SHADOW_HISTORY_SLOTS - 1; k >= 0; k--) {
    int64_t step = now - k;
    const shadow_history_slot_t *h =
        step >= 0 ? &s->history[step % SHADOW_HISTORY_SLOTS] : NULL;
    int live = h && h->step == step;
    shadow_buf_printf(out, "%s[%" PRId64 ",%llu,%llu]",
                      k == SHADOW_HISTORY_SLOTS - 1 ? "" : ",",
                      step * SHADOW_HISTORY_STEP_S * 1000,
                      (unsigned long long)(live ? h->compared : 0),
                      (unsigned long long)(live ? h->diverged : 0));
  }
  shadow_buf_puts(out, "]}");
}

static void json_sink(shadow_buf_t *out, shadow_sink_t *sink) {
  if (!sink) {
    shadow_buf_puts(out, "null");
    return;
  }
  shadow_sink_status_t st;
  shadow_sink_status(sink, &st);
  const char *path = shadow_sink_path(sink);
  shadow_buf_puts(out, "{\"file\":");
  shadow_buf_json_string(out, path, strlen(path), 0);
  shadow_buf_printf(
      out,
      ",\"open\":%s,\"lines\":%llu,\"bytes\":%llu,"
      "\"dropped\":%llu,\"rotations\":%llu,\"reopens\":%llu,"
      "\"file_bytes\":%llu,\"queued_bytes\":%zu,\"errors\":{",
      st.open ? "true" : "false", (unsigned long long)st.lines,
      (unsigned long long)st.bytes, (unsigned long long)st.dropped,
      (unsigned long long)st.rotations, (unsigned long long)st.reopens,
      (unsigned long long)st.file_bytes, st.queued);
  for (int i = 0; i < SHADOW_SINK_ERR_COUNT; i++)
    shadow_buf_printf(out, "%s\"%s\":%llu", i ? "," : "",
                      shadow_sink_error_names[i],
                      (unsigned long long)st.errors[i]);
  shadow_buf_puts(out, "},\"last_error\":");
  if (st.last_error_ms > 0) {
    char t[40];
    iso_time(t, sizeof(t), st.last_error_ms);
    shadow_buf_puts(out, "{\"message\":");
    shadow_buf_json_string(out, st.last_error, strlen(st.last_error), 0);
    shadow_buf_printf(out, ",\"time\":\"%s\"}", t);
  } else {
    shadow_buf_puts(out, "null");
  }
  shadow_buf_putc(out, '}');
}

/* The sampled requests whose route was folded into "other" (the route
 * table was full): the "other" route's own count, when it holds any. */
static uint64_t route_overflow(const shadow_stats_t *s) {
  uint64_t idx = 0;
  if (!s->route_names || !shadow_counters_find(s->route_names, "other", &idx))
    return 0;
  return idx < s->nroutes ? s->routes[idx].sampled : 0;
}

/* {"normalize":{"count":3,"last_error":"...","last_time":"..."}}: every
 * hook that failed in this window, with its last message. */
static void json_hook_errors(const shadow_stats_t *s, shadow_buf_t *out) {
  shadow_buf_putc(out, '{');
  int first = 1;
  for (size_t i = 0; s->hook_errors && i < s->nhooks; i++) {
    const shadow_hook_error_t *e = &s->hook_errors[i];
    if (!e->count) continue;
    if (!first) shadow_buf_putc(out, ',');
    first = 0;
    char t[40];
    iso_time(t, sizeof(t), e->last_ms);
    const char *name = s->hook_names[i];
    shadow_buf_json_string(out, name, strlen(name), 0);
    shadow_buf_printf(
        out, ":{\"count\":%llu,\"last_error\":", (unsigned long long)e->count);
    shadow_buf_json_string(out, e->last, strlen(e->last), 0);
    shadow_buf_printf(out, ",\"last_time\":\"%s\"}", t);
  }
  shadow_buf_putc(out, '}');
}

int shadow_stats_render_json(const shadow_stats_t *s, shadow_buf_t *out,
                             const shadow_slo_t *slo, double now_ms) {
  shadow_buf_printf(
      out,
      "{\"totals\":{\"requests\":%llu,\"sampled\":%llu,"
      "\"compared\":%llu,\"diverged\":%llu,"
      "\"primary_errors\":%llu,\"responses_cut\":%llu,"
      "\"tunnels\":%llu,\"tunnels_open\":%lld,"
      "\"connections_rejected\":%llu,\"tunnels_rejected\":%llu,"
      "\"copy_bytes\":%llu,\"candidate_errors\":",
      (unsigned long long)s->requests, (unsigned long long)s->sampled,
      (unsigned long long)s->compared, (unsigned long long)s->diverged,
      (unsigned long long)s->primary_errors,
      (unsigned long long)s->responses_cut, (unsigned long long)s->tunnels,
      (long long)s->tunnels_open, (unsigned long long)s->connections_rejected,
      (unsigned long long)s->tunnels_rejected,
      (unsigned long long)s->copy_bytes);
  json_counters(out, s->candidate_errors);
  shadow_buf_puts(out, ",\"secondary_errors\":");
  json_counters(out, s->secondary_errors);
  shadow_buf_puts(out, ",\"h2_errors\":");
  json_counters(out, s->h2_errors);
  shadow_buf_printf(out,
                    ",\"noise_compared\":%llu,\"noise_suppressed\":%llu,"
                    "\"compared_raw\":%llu",
                    (unsigned long long)s->noise_compared,
                    (unsigned long long)s->noise_suppressed,
                    (unsigned long long)s->compared_raw);
  shadow_buf_puts(out, ",\"skipped\":");
  json_counters(out, s->skipped);
  shadow_buf_puts(out, ",\"classes\":");
  json_classes(out, s->classes);
  shadow_buf_puts(out, ",\"latency_ms\":");
  json_latency(out, s->latency);
  shadow_buf_puts(out, "},\"routes\":{");
  routes_each_t e = {s, out, slo, 0};
  route_walk_t w = {&e, 0};
  shadow_counters_each(s->route_names, route_walk, &w);
  shadow_buf_printf(out,
                    "},\"route_overflow\":{\"max_routes\":%zu,"
                    "\"sampled\":%llu},\"fields\":",
                    shadow_counters_max(s->route_names),
                    (unsigned long long)route_overflow(s));
  json_counters(out, s->fields);
  shadow_buf_puts(out, ",\"rule_hits\":");
  json_counters(out, s->rule_hits);
  shadow_buf_printf(out,
                    ",\"breaker\":{\"state\":\"%s\",\"open\":%s,"
                    "\"secondary\":\"%s\"}",
                    s->breaker_state, s->breaker_open ? "true" : "false",
                    s->secondary_breaker_state);
  shadow_buf_puts(out, ",\"script_errors\":");
  json_counters(out, s->script_errors);
  shadow_buf_puts(out, ",\"hook_errors\":");
  json_hook_errors(s, out);
  shadow_buf_puts(out, ",\"reloads\":");
  json_counters(out, s->reloads);
  shadow_buf_printf(out, ",\"failed_reloads\":{\"count\":%llu,\"last\":",
                    (unsigned long long)s->reloads_failed);
  if (s->last_failed_reload_ms > 0) {
    char t[40];
    iso_time(t, sizeof(t), s->last_failed_reload_ms);
    shadow_buf_printf(out, "{\"time\":\"%s\",\"error\":", t);
    const char *err = s->last_failed_reload_error;
    if (err)
      shadow_buf_json_string(out, err, strlen(err), 0);
    else
      shadow_buf_puts(out, "null");
    shadow_buf_puts(out, "}}");
  } else {
    shadow_buf_puts(out, "null}");
  }
  {
    char t[40];
    iso_time(t, sizeof(t), s->window_start_ms);
    shadow_buf_printf(out, ",\"window_start\":\"%s\"", t);
  }
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
  shadow_buf_puts(out, "],\"history\":");
  json_history(s, out, now_ms);
  shadow_buf_puts(out, ",\"signatures\":");
  if (s->signatures)
    shadow_buf_printf(
        out,
        "{\"kept\":%zu,\"max\":%zu,\"evicted\":%llu,"
        "\"bytes\":%zu}",
        shadow_signatures_len(s->signatures),
        shadow_signatures_max(s->signatures),
        (unsigned long long)shadow_signatures_evicted(s->signatures),
        shadow_signatures_bytes(s->signatures));
  else
    shadow_buf_puts(out, "null");
  shadow_buf_puts(out, ",\"sink\":");
  json_sink(out, s->sink);
  /* capture: what was written, what was chosen and not written, and
   * its sink, shown like log.file's. */
  if (s->capture_sink) {
    shadow_buf_printf(out, ",\"capture\":{\"captured\":%llu,\"skipped\":",
                      (unsigned long long)s->captured);
    json_counters(out, s->capture_skipped);
    shadow_buf_puts(out, ",\"sink\":");
    json_sink(out, s->capture_sink);
    shadow_buf_putc(out, '}');
  } else {
    shadow_buf_puts(out, ",\"capture\":null");
  }
  shadow_buf_printf(out,
                    ",\"slo\":{\"max_divergence_rate\":%.6g,"
                    "\"min_samples\":%llu,\"max_latency_ratio\":%.6g}",
                    slo->max_divergence_rate,
                    (unsigned long long)slo->min_samples,
                    slo->max_latency_ratio);
  shadow_buf_puts(out, ",\"verdict\":");
  shadow_verdict_t v;
  shadow_stats_verdict(s, NULL, slo, &v);
  shadow_verdict_render_json(out, &v);
  /* The fleet store's state (null without one), and which view this is:
   * "fleet" (the counts of every instance) or "local". */
  shadow_buf_puts(out, ",\"store\":");
  if (s->store)
    shadow_store_render_json(s->store, out);
  else
    shadow_buf_puts(out, "null");
  shadow_buf_printf(out, ",\"scope\":\"%s\"",
                    s->fleet_view ? "fleet" : "local");
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
  static const char *const kinds[SHADOW_BODY_KINDS] = {"json", "bytes",
                                                       "digest", "protobuf"};
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
  for (int k = 0; k < SHADOW_BODY_KINDS; k++) {
    if (!r->body_kinds[k]) continue;
    shadow_buf_puts(e->out, "shadow_divergences_total{route=\"");
    prom_label(e->out, name);
    shadow_buf_printf(e->out, "\",part=\"body\",kind=\"%s\"} %llu\n", kinds[k],
                      (unsigned long long)r->body_kinds[k]);
  }
}

/* One line per route of a per-route family: which says what. */
enum { ROUTE_VERDICT, ROUTE_COMPARED, ROUTE_DIVERGED };

typedef struct prom_per_route_s {
  const shadow_stats_t *s;
  shadow_buf_t *out;
  const shadow_slo_t *slo;
  const char *metric;
  int which;
  uint64_t i;
} prom_per_route_t;

static void prom_route_value(void *ud, const char *name, uint64_t n) {
  prom_per_route_t *e = ud;
  const shadow_route_stats_t *r = &e->s->routes[e->i++];
  (void)n;
  shadow_buf_printf(e->out, "%s{route=\"", e->metric);
  prom_label(e->out, name);
  if (e->which == ROUTE_VERDICT) {
    shadow_verdict_t v;
    shadow_stats_verdict(e->s, r, e->slo, &v);
    shadow_buf_printf(e->out, "\"} %d\n", v.code);
  } else {
    uint64_t x = e->which == ROUTE_COMPARED ? r->compared : r->diverged;
    shadow_buf_printf(e->out, "\"} %llu\n", (unsigned long long)x);
  }
}

static void prom_per_route(const shadow_stats_t *s, shadow_buf_t *out,
                           const shadow_slo_t *slo, const char *metric,
                           const char *type, const char *help, int which) {
  shadow_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric,
                    type);
  prom_per_route_t e = {s, out, slo, metric, which, 0};
  shadow_counters_each(s->route_names, prom_route_value, &e);
}

static void prom_gauge_double(shadow_buf_t *out, const char *metric,
                              const char *help, double v) {
  shadow_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %.9g\n", metric,
                    help, metric, metric, v);
}

/* The verdict per route and overall, the per-route counts and the
 * objectives, so recording rules can judge a fleet from the sums
 * (examples/prometheus/). */
static void prom_verdicts(const shadow_stats_t *s, shadow_buf_t *out,
                          const shadow_slo_t *slo) {
  /* With a fleet store the verdict is the fleet's: every instance shows
   * the same one. The counters below stay this instance's, for sums. */
  const shadow_stats_t *vs = s->fleet ? s->fleet->stats : s;
  prom_per_route(vs, out, slo, "shadow_verdict", "gauge",
                 "Promotion verdict per route: 1 promote, 0 insufficient "
                 "data, -1 hold.",
                 ROUTE_VERDICT);
  shadow_verdict_t v;
  shadow_stats_verdict(vs, NULL, slo, &v);
  shadow_buf_printf(out,
                    "# HELP shadow_verdict_overall Promotion verdict over "
                    "all routes: 1 promote, 0 insufficient data, -1 hold.\n"
                    "# TYPE shadow_verdict_overall gauge\n"
                    "shadow_verdict_overall %d\n",
                    v.code);
  prom_scalar(out, "shadow_diverged_total", "counter",
              "Compared pairs that differed in any part.", s->diverged);
  prom_per_route(s, out, slo, "shadow_route_compared_total", "counter",
                 "Compared pairs, by route.", ROUTE_COMPARED);
  prom_per_route(s, out, slo, "shadow_route_diverged_total", "counter",
                 "Compared pairs that differed in any part, by route.",
                 ROUTE_DIVERGED);
  prom_scalar(out, "shadow_routes_overflow_total", "counter",
              "Sampled requests whose route was counted as \"other\": the "
              "route table was full.",
              route_overflow(s));
  prom_gauge_double(out, "shadow_slo_max_divergence_rate",
                    "The divergence budget (slo.max_divergence_rate).",
                    slo->max_divergence_rate);
  prom_gauge_double(out, "shadow_slo_min_samples",
                    "Comparisons needed before a promote (slo.min_samples).",
                    (double)slo->min_samples);
  prom_gauge_double(out, "shadow_slo_max_latency_ratio",
                    "Largest candidate/primary p99 latency ratio "
                    "(slo.max_latency_ratio; 0: none).",
                    slo->max_latency_ratio);
}

/* A sink writer's status under prefix_errors_total{reason},
 * prefix_lines_total, prefix_dropped_total and prefix_rotations_total;
 * file names the config key and what names what a line holds. */
static void prom_sink_status(shadow_buf_t *out, shadow_sink_t *sink,
                             const char *prefix, const char *file,
                             const char *what) {
  shadow_sink_status_t st;
  memset(&st, 0, sizeof(st));
  if (sink) shadow_sink_status(sink, &st);
  shadow_buf_printf(out,
                    "# HELP %s_errors_total Failures of the %s sink, by "
                    "reason.\n# TYPE %s_errors_total counter\n",
                    prefix, file, prefix);
  for (int i = 0; i < SHADOW_SINK_ERR_COUNT; i++)
    shadow_buf_printf(out, "%s_errors_total{reason=\"%s\"} %llu\n", prefix,
                      shadow_sink_error_names[i],
                      (unsigned long long)st.errors[i]);
  char name[64], help[128];
  snprintf(name, sizeof(name), "%s_lines_total", prefix);
  snprintf(help, sizeof(help), "%s written to %s.", what, file);
  prom_scalar(out, name, "counter", help, st.lines);
  snprintf(name, sizeof(name), "%s_dropped_total", prefix);
  snprintf(help, sizeof(help), "%s that did not reach %s.", what, file);
  prom_scalar(out, name, "counter", help, st.dropped);
  snprintf(name, sizeof(name), "%s_rotations_total", prefix);
  snprintf(help, sizeof(help), "Rotations of %s.", file);
  prom_scalar(out, name, "counter", help, st.rotations);
}

/* capture's counters and its sink's, under shadow_capture_*. */
static void prom_capture(const shadow_stats_t *s, shadow_buf_t *out) {
  prom_scalar(out, "shadow_captured_total", "counter",
              "Exchanges handed to the capture file's writer.", s->captured);
  prom_family(out, "shadow_capture_skipped_total",
              "Exchanges chosen for capture that were not written, by "
              "reason.",
              "reason", s->capture_skipped);
  prom_sink_status(out, s->capture_sink, "shadow_capture", "capture.file",
                   "Exchanges");
}

static void prom_sink(const shadow_stats_t *s, shadow_buf_t *out) {
  prom_sink_status(out, s->sink, "shadow_sink", "log.file",
                   "Divergence records");
  if (s->signatures) {
    prom_scalar(out, "shadow_signatures", "gauge",
                "Divergence signatures kept.",
                shadow_signatures_len(s->signatures));
    prom_scalar(out, "shadow_signatures_evicted_total", "counter",
                "Divergence signatures evicted, least recently seen first.",
                shadow_signatures_evicted(s->signatures));
  }
}

int shadow_stats_render_prometheus(const shadow_stats_t *s, shadow_buf_t *out,
                                   const shadow_slo_t *slo) {
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
  prom_scalar(out, "shadow_connections_rejected_total", "counter",
              "Clients turned away at limits.max_connections (503) or when "
              "out of file descriptors (closed).",
              s->connections_rejected);
  prom_scalar(out, "shadow_tunnels_rejected_total", "counter",
              "Upgrades answered 503 at limits.max_tunnels.",
              s->tunnels_rejected);
  prom_family(out, "shadow_h2_errors_total",
              "HTTP/2 clients' bad input answered with GOAWAY or RST_STREAM "
              "and an error code, by reason.",
              "reason", s->h2_errors);
  prom_scalar(out, "shadow_copy_bytes", "gauge",
              "Request-body copies held for the shadow legs and capture, "
              "against limits.copy_memory_bytes.",
              s->copy_bytes);
  prom_scalar(out, "shadow_responses_cut_total", "counter",
              "Responses the primary failed after their head was sent: the "
              "client's connection was closed.",
              s->responses_cut);
  shadow_buf_puts(out, "# HELP shadow_divergences_total Compared pairs that "
                       "differed, by route and part.\n"
                       "# TYPE shadow_divergences_total counter\n");
  prom_routes_t pr = {s, out, 0};
  shadow_counters_each(s->route_names, prom_route, &pr);
  prom_family(out, "shadow_secondary_errors_total",
              "Secondary legs that failed or were not let in, by reason.",
              "reason", s->secondary_errors);
  prom_scalar(out, "shadow_noise_compared_total", "counter",
              "Primary and secondary response pairs compared (noise).",
              s->noise_compared);
  prom_scalar(out, "shadow_noise_suppressed_total", "counter",
              "Divergences not counted: they differed only in fields classed "
              "noise.",
              s->noise_suppressed);
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
  shadow_buf_puts(out, "# HELP shadow_script_error_last_time_seconds When "
                       "each Lua hook last failed (Unix time).\n"
                       "# TYPE shadow_script_error_last_time_seconds gauge\n");
  for (size_t h = 0; s->hook_errors && h < s->nhooks; h++)
    if (s->hook_names[h] && s->hook_errors[h].count)
      shadow_buf_printf(out,
                        "shadow_script_error_last_time_seconds{hook=\"%s\"} "
                        "%.3f\n",
                        s->hook_names[h], s->hook_errors[h].last_ms / 1000);
  prom_scalar(out, "shadow_compared_raw_total", "counter",
              "Pairs compared raw because normalize failed on one side.",
              s->compared_raw);
  prom_family(out, "shadow_reloads_total", "Script reloads, by result.",
              "result", s->reloads);
  prom_gauge_double(out, "shadow_reload_failed_last_time_seconds",
                    "When a reload last failed (Unix time; 0: not in this "
                    "window).",
                    s->last_failed_reload_ms / 1000);
  prom_gauge_double(out, "shadow_stats_window_start_seconds",
                    "When the counting window began: the start, or the last "
                    "POST /stats/reset (Unix time).",
                    s->window_start_ms / 1000);
  prom_family(out, "shadow_rule_hits_total",
              "Comparisons in which a diff rule absorbed a difference or "
              "renamed a member, by rule.",
              "rule", s->rule_hits);
  prom_verdicts(s, out, slo);
  prom_sink(s, out);
  prom_capture(s, out);
  if (s->store) shadow_store_render_prometheus(s->store, out);
  return 0;
}
