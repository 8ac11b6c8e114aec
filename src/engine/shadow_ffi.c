/* The C ABI of libshadow for LuaJIT's FFI (see shadow_ffi.h): thin
 * wrappers over the engine that take plain types and check them. */
#include "shadow_ffi.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "divergence.h"
#include "sample.h"
#include "verdict.h"

/* The request facts are few and short: one allocation each, NULL = none. */
enum { META_ROUTE, META_METHOD, META_PATH, META_KEY, META_N };

struct shadow_ffi_diff_s {
  shadow_diff_result_t res;
  shadow_buf_t out;
  shadow_buf_t hits; /* names of the rules that hit, for diff_hits */
  char *meta[META_N];
  unsigned long long next_id;
};

int shadow_abi_version(void) {
  return SHADOW_ABI_VERSION;
}

shadow_record_t *shadow_ffi_record_new(void) {
  return shadow_record_new();
}

void shadow_ffi_record_clear(shadow_record_t *r) {
  if (r) shadow_record_clear(r);
}

int shadow_ffi_record_set_status(shadow_record_t *r, int status) {
  if (!r || status < 0 || status > 999) return -EINVAL;
  r->status = status;
  return 0;
}

int shadow_ffi_record_add_header(shadow_record_t *r, const char *name,
                                 size_t name_len, const char *value,
                                 size_t value_len) {
  if (!r || !name || name_len == 0 || (!value && value_len)) return -EINVAL;
  return shadow_headers_add(&r->headers, name, name_len, value ? value : "",
                            value_len);
}

int shadow_ffi_record_add_trailer(shadow_record_t *r, const char *name,
                                  size_t name_len, const char *value,
                                  size_t value_len) {
  if (!r || !name || name_len == 0 || (!value && value_len)) return -EINVAL;
  return shadow_headers_add(&r->trailers, name, name_len, value ? value : "",
                            value_len);
}

int shadow_ffi_record_set_body(shadow_record_t *r, const char *body,
                               size_t len) {
  if (!r || (!body && len)) return -EINVAL;
  shadow_record_body_end(r);
  r->body_cut = 0;
  shadow_buf_reset(&r->body);
  return shadow_buf_append(&r->body, body ? body : "", len);
}

int shadow_ffi_record_body_feed(shadow_record_t *r, const char *data,
                                size_t len, double keep) {
  if (!r || (!data && len) || !(keep >= 0)) return -EINVAL;
  size_t k = keep > (double)SIZE_MAX ? SIZE_MAX : (size_t)keep;
  return shadow_record_body_feed(r, data, len, k);
}

int shadow_ffi_record_body_end(shadow_record_t *r) {
  if (!r) return -EINVAL;
  shadow_record_body_end(r);
  return 0;
}

double shadow_ffi_record_body_len(const shadow_record_t *r, int *cut) {
  if (cut) *cut = r && r->body_cut;
  return r ? (double)shadow_record_body_len(r) : 0;
}

void shadow_ffi_record_free(shadow_record_t *r) {
  shadow_record_free(r);
}

shadow_diff_opts_t *shadow_ffi_opts_new(void) {
  return shadow_diff_opts_new();
}

int shadow_ffi_opts_ignore_header(shadow_diff_opts_t *o, const char *name) {
  return shadow_diff_opts_ignore_header(o, name);
}

int shadow_ffi_opts_ignore_json(shadow_diff_opts_t *o, const char *pointer) {
  return shadow_diff_opts_ignore_json(o, pointer);
}

int shadow_ffi_opts_array_mode(shadow_diff_opts_t *o, const char *pointer,
                               int mode, const char *key) {
  return shadow_diff_opts_array_mode(o, pointer, mode, key);
}

int shadow_ffi_opts_tolerance(shadow_diff_opts_t *o, const char *pointer,
                              double tolerance) {
  return shadow_diff_opts_tolerance(o, pointer, tolerance);
}

/* A double because Lua numbers are doubles: no cast surprises at the edge. */
int shadow_ffi_opts_diff_bytes(shadow_diff_opts_t *o, double n) {
  if (!o || !(n >= 0) || n > 1e15) return -EINVAL;
  shadow_diff_opts_set_diff_bytes(o, (size_t)n);
  return 0;
}

int shadow_ffi_opts_value_max(shadow_diff_opts_t *o, double n) {
  if (!o || !(n >= 0) || n > 1e15) return -EINVAL;
  shadow_diff_opts_set_value_max(o, (size_t)n);
  return 0;
}

int shadow_ffi_opts_parse(shadow_diff_opts_t *o, const char *json, size_t len,
                          char *err, size_t errlen) {
  return shadow_diff_opts_parse(o, json, len, err, errlen);
}

const char *shadow_ffi_opts_rules(const shadow_diff_opts_t *o, size_t *len,
                                  size_t *n) {
  return shadow_diff_opts_rule_names(o, len, n);
}

void shadow_ffi_opts_free(shadow_diff_opts_t *o) {
  shadow_diff_opts_free(o);
}

shadow_ffi_diff_t *shadow_ffi_diff_new(void) {
  shadow_ffi_diff_t *d = calloc(1, sizeof(*d));
  if (d) d->next_id = 1;
  return d;
}

int shadow_ffi_diff_meta(shadow_ffi_diff_t *d, const char *route,
                         const char *method, const char *path,
                         const char *key) {
  if (!d) return -EINVAL;
  const char *in[META_N] = {route, method, path, key};
  char *copy[META_N] = {NULL};
  for (int i = 0; i < META_N; i++) {
    if (!in[i]) continue;
    copy[i] = strdup(in[i]);
    if (!copy[i]) {
      for (int j = 0; j < i; j++)
        free(copy[j]);
      return -ENOMEM;
    }
  }
  for (int i = 0; i < META_N; i++) {
    free(d->meta[i]);
    d->meta[i] = copy[i];
  }
  return 0;
}

int shadow_ffi_diff_run(shadow_ffi_diff_t *d, const shadow_diff_opts_t *o,
                        const shadow_record_t *p, const shadow_record_t *c,
                        const char **json, size_t *len) {
  if (!d || !p || !c || !json || !len) return -EINVAL;
  const char *path = d->meta[META_PATH];
  int parts = shadow_diff_records_at(o, path, path ? strlen(path) : 0, p, c,
                                     &d->res, NULL);
  if (parts < 0) return parts;
  shadow_divergence_meta_t meta = {
      .id = d->next_id++,
      .time_ms = shadow_wall_ms(),
      .route = d->meta[META_ROUTE],
      .method = d->meta[META_METHOD],
      .path = d->meta[META_PATH],
      .key = d->meta[META_KEY],
      .primary_ms = -1,
      .candidate_ms = -1,
      .primary_first_ms = -1,
      .candidate_first_ms = -1,
  };
  shadow_buf_reset(&d->out);
  int rc = shadow_divergence_format(&d->out, &meta, &d->res);
  if (rc) return rc;
  *json = d->out.data;
  *len = d->out.len;
  return parts;
}

const char *shadow_ffi_diff_fields(const shadow_ffi_diff_t *d, size_t *len,
                                   size_t *n) {
  if (len) *len = d ? d->res.fields.len : 0;
  if (n) *n = d ? d->res.nfields : 0;
  return d && d->res.fields.data ? d->res.fields.data : "";
}

const char *shadow_ffi_diff_hits(shadow_ffi_diff_t *d,
                                 const shadow_diff_opts_t *o, size_t *len,
                                 size_t *n) {
  size_t count = 0;
  if (d) {
    shadow_buf_reset(&d->hits);
    for (size_t bit = 0; bit < SHADOW_JSON_RULE_BITS; bit++) {
      if (!(d->res.hits[bit / 64] >> (bit % 64) & 1)) continue;
      const char *name = shadow_diff_opts_rule_name(o, bit);
      if (!name || shadow_buf_append(&d->hits, name, strlen(name) + 1))
        continue;
      count++;
    }
  }
  if (len) *len = d ? d->hits.len : 0;
  if (n) *n = count;
  return d && d->hits.data ? d->hits.data : "";
}

void shadow_ffi_diff_free(shadow_ffi_diff_t *d) {
  if (!d) return;
  shadow_diff_result_free(&d->res);
  shadow_buf_free(&d->out);
  shadow_buf_free(&d->hits);
  for (int i = 0; i < META_N; i++)
    free(d->meta[i]);
  free(d);
}

int shadow_ffi_sampled(const char *key, size_t len, double rate) {
  if (!key) return shadow_sampled_random(rate);
  return shadow_sampled(key, len, rate);
}

/* A count from Lua: a whole number a double holds exactly. The negated
 * test sends NaN to false. */
static int is_count(double x) {
  return x >= 0 && x <= 9007199254740992.0 && x == floor(x);
}

int shadow_ffi_verdict(double compared, double diverged, double budget,
                       double min_samples, double *rate, double *lower,
                       double *upper, char *reason, size_t reason_len) {
  if (!is_count(compared) || !is_count(diverged) || diverged > compared ||
      !is_count(min_samples) || !(budget >= 0 && budget <= 1))
    return -EINVAL;
  shadow_verdict_t v;
  shadow_verdict_compute(&v, (uint64_t)compared, (uint64_t)diverged, budget,
                         (uint64_t)min_samples);
  if (rate) *rate = v.rate;
  if (lower) *lower = v.lower;
  if (upper) *upper = v.upper;
  if (reason && reason_len) snprintf(reason, reason_len, "%s", v.reason);
  return v.code;
}

shadow_ring_t *shadow_ffi_ring_new(size_t capacity) {
  return shadow_ring_new(capacity);
}

int shadow_ffi_ring_push(shadow_ring_t *r, const char *json, size_t len,
                         const char *route, size_t route_len) {
  if (!r || (!json && len)) return -EINVAL;
  return shadow_ring_push(r, json ? json : "", len, route, route_len);
}

size_t shadow_ffi_ring_len(const shadow_ring_t *r) {
  return r ? shadow_ring_len(r) : 0;
}

size_t shadow_ffi_ring_capacity(const shadow_ring_t *r) {
  return r ? shadow_ring_capacity(r) : 0;
}

int shadow_ffi_ring_set_capacity(shadow_ring_t *r, size_t capacity) {
  if (!r) return -EINVAL;
  return shadow_ring_set_capacity(r, capacity);
}

const char *shadow_ffi_ring_get(const shadow_ring_t *r, size_t i, size_t *len) {
  if (!r) return NULL;
  return shadow_ring_get(r, i, len, NULL, NULL);
}

void shadow_ffi_ring_free(shadow_ring_t *r) {
  shadow_ring_free(r);
}
