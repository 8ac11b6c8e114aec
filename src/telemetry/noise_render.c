/* GET /noise (see noise_render.h). Proposals, for a field classed noise:
 * a header: ignore.headers; a number that only ever moved: a tolerance of
 * the largest move seen, rounded up to two significant digits; an array
 * whose elements only changed places: arrays = "multiset"; any other body
 * field: ignore.json. An ignore rule is proposed only for a field that is
 * noise on every route where it is classed, so a rule pasted for one
 * route cannot hide a real difference on another. A tolerance or a
 * multiset is proposed for a real field too, once the secondary has shown
 * its noise often enough: it silences the noise and nothing else (a
 * number moved further than the secondary ever moved it, an element added
 * or removed, still differ), so the jitter of a float with a real bug is
 * proposed away and the bug stays. */
#include "noise_render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "noise.h"

enum { RULE_NONE, RULE_HEADER, RULE_JSON, RULE_ARRAY, RULE_TOLERANCE };

static shadow_noise_class_t classify(const shadow_stats_t *s,
                                     const shadow_noise_entry_t *e,
                                     const shadow_noise_settings_t *cfg,
                                     double *margin) {
  const shadow_route_stats_t *rs =
      e->route_idx < s->nroutes ? &s->routes[e->route_idx] : NULL;
  shadow_noise_counts_t k = shadow_noise_field_counts(
      &e->learned, rs ? rs->learn_compared : 0, rs ? rs->noise_compared : 0);
  return shadow_noise_classify(&k, cfg->z, cfg->min_samples, margin);
}

static int rule_of(const shadow_noise_entry_t *e) {
  const char *f = e->field;
  if (strncmp(f, "header:", 7) == 0) return RULE_HEADER;
  if (strncmp(f, "body:", 5) != 0) return RULE_NONE; /* status, raw body */
  /* A whole gRPC message added or removed: no rule short of ignoring
   * every message would silence it. */
  if (f[5] == '\0') return RULE_NONE;
  if (e->learned.noise_shapes == SHADOW_NOISE_MOVE) return RULE_ARRAY;
  if (e->learned.noise_shapes == SHADOW_NOISE_NUMBER) return RULE_TOLERANCE;
  return RULE_JSON;
}

/* Rounds up to two significant digits: 3.71e-06 -> 3.8e-06. */
static double round_up2(double x) {
  if (!(x > 0)) return 0;
  double p = pow(10, floor(log10(x)) - 1);
  /* Strictly above x: the largest move seen must pass the rule too. */
  return ceil(x / p + 1e-6) * p;
}

/* One field across routes: proposed when it is noise wherever classed. */
typedef struct merged_s {
  const char *field;
  int rule, noise, blocked;
  double tolerance;
} merged_t;

static size_t merge(const shadow_stats_t *s, const shadow_noise_settings_t *cfg,
                    merged_t *m, size_t cap) {
  size_t n = 0;
  shadow_noise_table_t *t = s->noise;
  for (size_t i = 0; i < shadow_noise_table_len(t); i++) {
    const shadow_noise_entry_t *e = shadow_noise_table_at(t, i);
    shadow_noise_class_t c = classify(s, e, cfg, NULL);
    if (c == SHADOW_NOISE_UNDECIDED && e->learned.differed == 0) continue;
    size_t j = 0;
    while (j < n && strcmp(m[j].field, e->field) != 0)
      j++;
    if (j == n) {
      if (n == cap) continue;
      m[n++] = (merged_t){e->field, rule_of(e), 0, 0, 0};
    }
    int r = rule_of(e);
    int narrowing = (r == RULE_TOLERANCE || r == RULE_ARRAY) &&
                    e->learned.noise_differed >= cfg->min_samples;
    if (c == SHADOW_NOISE_NOISE || (c == SHADOW_NOISE_REAL && narrowing)) {
      m[j].noise = 1;
      if (e->learned.noise_max_delta > m[j].tolerance)
        m[j].tolerance = e->learned.noise_max_delta;
      if (r != m[j].rule) m[j].rule = RULE_JSON;
    } else if (c == SHADOW_NOISE_REAL ||
               (c == SHADOW_NOISE_UNDECIDED && e->learned.differed > 0)) {
      m[j].blocked = 1;
    }
  }
  return n;
}

static int proposed(const merged_t *m) {
  if (!m->noise || m->rule == RULE_NONE) return 0;
  return !m->blocked || m->rule == RULE_TOLERANCE || m->rule == RULE_ARRAY;
}

/* A field as a Lua string literal. Fields come from response bodies, so
 * a quote, a backslash or a control byte in a key must not end the string
 * (a snippet is code a config runs). */
static void lua_string(shadow_buf_t *out, const char *f) {
  shadow_buf_putc(out, '"');
  for (const unsigned char *p = (const unsigned char *)f; *p; p++) {
    if (*p == '"' || *p == '\\')
      shadow_buf_printf(out, "\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      shadow_buf_printf(out, "\\%03u", *p);
    else
      shadow_buf_putc(out, (char)*p);
  }
  shadow_buf_putc(out, '"');
}

static void lua_list(shadow_buf_t *out, const merged_t *m, size_t n, int rule,
                     size_t skip) {
  int first = 1;
  for (size_t i = 0; i < n; i++) {
    if (!proposed(&m[i]) || m[i].rule != rule) continue;
    shadow_buf_puts(out, first ? " " : ", ");
    lua_string(out, m[i].field + skip);
    first = 0;
  }
  shadow_buf_puts(out, first ? "}" : " }");
}

static int count_rule(const merged_t *m, size_t n, int rule) {
  int k = 0;
  for (size_t i = 0; i < n; i++)
    k += proposed(&m[i]) && m[i].rule == rule;
  return k;
}

/* The snippet is a Lua chunk returning the proposed rules, so that
 * a config can load it (dofile) and take its tables, or a person can
 * paste its fields. */
static void snippet(shadow_buf_t *out, const merged_t *m, size_t n) {
  int h = count_rule(m, n, RULE_HEADER), j = count_rule(m, n, RULE_JSON);
  int a = count_rule(m, n, RULE_ARRAY), t = count_rule(m, n, RULE_TOLERANCE);
  if (!h && !j && !a && !t) {
    shadow_buf_puts(out, "-- no field is classed noise yet\nreturn {}\n");
    return;
  }
  shadow_buf_puts(out, "-- the rules shadowd proposes for the fields it "
                       "classed noise\nreturn {\n");
  if (h || j) {
    shadow_buf_puts(out, "  ignore = {\n");
    if (h) {
      shadow_buf_puts(out, "    headers = {");
      lua_list(out, m, n, RULE_HEADER, 7);
      shadow_buf_puts(out, ",\n");
    }
    if (j) {
      shadow_buf_puts(out, "    json = {");
      lua_list(out, m, n, RULE_JSON, 5);
      shadow_buf_puts(out, ",\n");
    }
    shadow_buf_puts(out, "  },\n");
  }
  if (a) {
    shadow_buf_puts(out, "  arrays = {");
    int first = 1;
    for (size_t i = 0; i < n; i++)
      if (proposed(&m[i]) && m[i].rule == RULE_ARRAY) {
        shadow_buf_puts(out, first ? " [" : ", [");
        lua_string(out, m[i].field + 5);
        shadow_buf_puts(out, "] = \"multiset\"");
        first = 0;
      }
    shadow_buf_puts(out, " },\n");
  }
  if (t) {
    shadow_buf_puts(out, "  tolerance = {");
    int first = 1;
    for (size_t i = 0; i < n; i++)
      if (proposed(&m[i]) && m[i].rule == RULE_TOLERANCE) {
        shadow_buf_puts(out, first ? " [" : ", [");
        lua_string(out, m[i].field + 5);
        shadow_buf_printf(out, "] = %.2g", round_up2(m[i].tolerance));
        first = 0;
      }
    shadow_buf_puts(out, " },\n");
  }
  shadow_buf_puts(out, "}\n");
}

static merged_t *merged(const shadow_stats_t *s,
                        const shadow_noise_settings_t *cfg, size_t *n) {
  size_t cap = shadow_noise_table_len(s->noise) + 1;
  merged_t *m = calloc(cap, sizeof(*m));
  *n = m ? merge(s, cfg, m, cap) : 0;
  return m;
}

int shadow_noise_render_lua(const shadow_stats_t *s,
                            const shadow_noise_settings_t *cfg,
                            shadow_buf_t *out) {
  size_t n;
  merged_t *m = merged(s, cfg, &n);
  snippet(out, m, n);
  free(m);
  return 0;
}

static const char *rule_name(int r) {
  switch (r) {
  case RULE_HEADER: return "ignore.headers";
  case RULE_JSON: return "ignore.json";
  case RULE_ARRAY: return "arrays";
  case RULE_TOLERANCE: return "tolerance";
  default: return NULL;
  }
}

/* One field's rule as the Lua it would be in the snippet, or null. */
static void proposal(shadow_buf_t *out, const shadow_noise_entry_t *e,
                     int kind) {
  const char *f = e->field;
  shadow_buf_t t = SHADOW_BUF_INIT;
  switch (kind) {
  case RULE_HEADER:
    shadow_buf_puts(&t, "ignore = { headers = { ");
    lua_string(&t, f + 7);
    shadow_buf_puts(&t, " } }");
    break;
  case RULE_JSON:
    shadow_buf_puts(&t, "ignore = { json = { ");
    lua_string(&t, f + 5);
    shadow_buf_puts(&t, " } }");
    break;
  case RULE_ARRAY:
    shadow_buf_puts(&t, "arrays = { [");
    lua_string(&t, f + 5);
    shadow_buf_puts(&t, "] = \"multiset\" }");
    break;
  case RULE_TOLERANCE:
    shadow_buf_puts(&t, "tolerance = { [");
    lua_string(&t, f + 5);
    shadow_buf_printf(&t, "] = %.2g }", round_up2(e->learned.noise_max_delta));
    break;
  default: shadow_buf_puts(out, "null"); return;
  }
  shadow_buf_json_string(out, t.data ? t.data : "", t.len, 0);
  shadow_buf_free(&t);
}

static double rate(uint64_t k, uint64_t n) {
  return n ? (double)k / (double)n : 0;
}

int shadow_noise_render_json(const shadow_stats_t *s,
                             const shadow_noise_settings_t *cfg,
                             shadow_buf_t *out) {
  shadow_noise_table_t *t = s->noise;
  shadow_buf_printf(out,
                    "{\"confidence\":%g,\"min_samples\":%llu,"
                    "\"noise_compared\":%llu,\"suppressed\":%llu,"
                    "\"fields_dropped\":%llu,\"fields\":[",
                    cfg->confidence, (unsigned long long)cfg->min_samples,
                    (unsigned long long)s->noise_compared,
                    (unsigned long long)s->noise_suppressed,
                    (unsigned long long)shadow_noise_table_dropped(t));
  size_t n;
  merged_t *m = merged(s, cfg, &n);
  for (size_t i = 0; i < shadow_noise_table_len(t); i++) {
    const shadow_noise_entry_t *e = shadow_noise_table_at(t, i);
    const shadow_route_stats_t *rs =
        e->route_idx < s->nroutes ? &s->routes[e->route_idx] : NULL;
    uint64_t T = rs ? rs->learn_compared : 0, S = rs ? rs->noise_compared : 0;
    double margin;
    shadow_noise_class_t c = classify(s, e, cfg, &margin);
    if (i) shadow_buf_putc(out, ',');
    shadow_buf_puts(out, "{\"route\":");
    shadow_buf_json_string(out, e->route, strlen(e->route), 0);
    shadow_buf_puts(out, ",\"field\":");
    shadow_buf_json_string(out, e->field, strlen(e->field), 0);
    shadow_buf_printf(
        out,
        ",\"class\":\"%s\",\"candidate\":{\"differed\":%llu,\"compared\":%llu,"
        "\"rate\":%.6g,\"judged\":%llu,\"beyond\":%llu,\"novel\":%llu,"
        "\"max_delta\":%.6g},"
        "\"noise\":{\"differed\":%llu,\"compared\":%llu,\"rate\":%.6g,"
        "\"judged\":%llu,\"beyond\":%llu,\"novel\":%llu,\"max_delta\":%.6g},"
        "\"margin\":%.6g,\"candidate_rate\":%.6g,"
        "\"noise_rate\":%.6g,\"samples\":%llu,\"rule\":",
        shadow_noise_class_name(c), (unsigned long long)e->learned.differed,
        (unsigned long long)T, rate(e->learned.differed, T),
        (unsigned long long)e->learned.judged,
        (unsigned long long)e->learned.beyond,
        (unsigned long long)e->learned.novel, e->learned.max_delta,
        (unsigned long long)e->learned.noise_differed, (unsigned long long)S,
        rate(e->learned.noise_differed, S),
        (unsigned long long)e->learned.noise_judged,
        (unsigned long long)e->learned.noise_beyond,
        (unsigned long long)e->learned.noise_novel, e->learned.noise_max_delta,
        isfinite(margin) ? margin : 0, rate(e->learned.differed, T),
        rate(e->learned.noise_differed, S),
        (unsigned long long)(T < S ? T : S));
    int kind = rule_of(e);
    int narrowing = (kind == RULE_TOLERANCE || kind == RULE_ARRAY) &&
                    e->learned.noise_differed >= cfg->min_samples;
    const char *r =
        c == SHADOW_NOISE_NOISE || (c == SHADOW_NOISE_REAL && narrowing)
            ? rule_name(kind)
            : NULL;
    if (r)
      shadow_buf_printf(out, "\"%s\"", r);
    else
      shadow_buf_puts(out, "null");
    shadow_buf_puts(out, ",\"proposal\":");
    proposal(out, e, r ? kind : RULE_NONE);
    shadow_buf_putc(out, '}');
  }
  shadow_buf_puts(out, "],\"snippet\":");
  shadow_buf_t text = SHADOW_BUF_INIT;
  snippet(&text, m, n);
  shadow_buf_json_string(out, text.data ? text.data : "", text.len, 0);
  shadow_buf_free(&text);
  free(m);
  return shadow_buf_putc(out, '}');
}

const char *shadow_noise_field_class(const shadow_stats_t *s, const char *route,
                                     const char *field,
                                     const shadow_noise_settings_t *cfg) {
  shadow_noise_entry_t *e = shadow_noise_table_get(
      s->noise, route, strlen(route), 0, field, strlen(field), 0);
  if (!e) return NULL;
  return shadow_noise_class_name(classify(s, e, cfg, NULL));
}
