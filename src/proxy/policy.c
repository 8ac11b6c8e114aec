/* The mirroring policy (see policy.h). Hooks run through the script host,
 * which applies each one's fallback: a failed filter or key means "not
 * sampled", a failed route means "unknown". */
#include "policy.h"

#include <string.h>

#include "grpc.h"
#include "sample.h"
#include "utf8.h"

int shadow_policy_may_mirror(const shadow_config_t *cfg, int method_id) {
  if (cfg->candidate.kind == SHADOW_BACKEND_NONE || cfg->rate <= 0) return 0;
  return method_id >= 0 && method_id < 64 &&
         (cfg->mirror_methods & (1ull << method_id));
}

void shadow_policy_decide(shadow_gen_t *g, const shadow_request_t *req,
                          int lreq, shadow_policy_decision_t *d) {
  const shadow_config_t *cfg = shadow_gen_config(g);
  shadow_buf_reset(&d->key);
  d->has_key = 0;
  d->secondary = 0;
  if (cfg->candidate.kind == SHADOW_BACKEND_NONE || cfg->rate <= 0) {
    d->why = SHADOW_POLICY_NO_CANDIDATE;
    return;
  }
  if (!shadow_policy_may_mirror(cfg, req->method_id)) {
    d->why = SHADOW_POLICY_METHOD;
    return;
  }
  if (shadow_gen_has_hook(g, SHADOW_HOOK_FILTER) &&
      !shadow_script_filter(g, lreq)) {
    d->why = SHADOW_POLICY_FILTERED;
    return;
  }
  int k = 0;
  if (shadow_gen_has_hook(g, SHADOW_HOOK_KEY)) {
    k = shadow_script_key(g, lreq, &d->key);
    if (k < 0) {
      d->why = SHADOW_POLICY_KEY_FAILED;
      return;
    }
  }
  d->has_key = k == 1;
  int in = d->has_key ? shadow_sampled(d->key.data, d->key.len, cfg->rate)
                      : shadow_sampled_random(cfg->rate);
  d->why = in ? SHADOW_POLICY_MIRROR : SHADOW_POLICY_NOT_SAMPLED;
  /* The secondary's share is within the candidate's: with a key the same
   * sticky rule at the lower rate picks a subset of the sampled keys;
   * without one, a second draw at the ratio of the two rates. */
  double sr = cfg->secondary_rate;
  if (in && cfg->secondary.kind != SHADOW_BACKEND_NONE && sr > 0)
    d->secondary = d->has_key ? shadow_sampled(d->key.data, d->key.len, sr)
                              : shadow_sampled_random(sr / cfg->rate);
}

void shadow_policy_capture(shadow_gen_t *g, const shadow_request_t *req,
                           int lreq, const shadow_policy_decision_t *mirror,
                           shadow_policy_decision_t *d) {
  const shadow_config_t *cfg = shadow_gen_config(g);
  const shadow_capture_cfg_t *c = &cfg->capture;
  shadow_buf_reset(&d->key);
  d->has_key = 0;
  if (!c->file || c->rate <= 0) {
    d->why = SHADOW_POLICY_NO_CANDIDATE;
    return;
  }
  int id = req->method_id;
  if (id < 0 || id >= 64 || !(c->methods & (1ull << id))) {
    d->why = SHADOW_POLICY_METHOD;
    return;
  }
  /* What the mirroring decision learnt: the filter ran unless it stopped
   * at the candidate or the method; sample.key ran when it got past the
   * filter. */
  int filtered = mirror && mirror->why != SHADOW_POLICY_NO_CANDIDATE &&
                 mirror->why != SHADOW_POLICY_METHOD;
  int keyed = filtered && mirror->why != SHADOW_POLICY_FILTERED;
  if (filtered ? mirror->why == SHADOW_POLICY_FILTERED
               : shadow_gen_has_hook(g, SHADOW_HOOK_FILTER) &&
                     !shadow_script_filter(g, lreq)) {
    d->why = SHADOW_POLICY_FILTERED;
    return;
  }
  int k = 0;
  if (shadow_gen_has_hook(g, SHADOW_HOOK_CAPTURE_KEY)) {
    k = shadow_script_capture_key(g, lreq, &d->key);
  } else if (keyed) {
    k = mirror->why == SHADOW_POLICY_KEY_FAILED ? -1 : mirror->has_key;
    if (k == 1 && shadow_buf_append(&d->key, mirror->key.data, mirror->key.len))
      k = -1;
  } else if (shadow_gen_has_hook(g, SHADOW_HOOK_KEY)) {
    k = shadow_script_key(g, lreq, &d->key);
  }
  if (k < 0) {
    d->why = SHADOW_POLICY_KEY_FAILED;
    return;
  }
  d->has_key = k == 1;
  int in = d->has_key ? shadow_sampled(d->key.data, d->key.len, c->rate)
                      : shadow_sampled_random(c->rate);
  d->why = in ? SHADOW_POLICY_MIRROR : SHADOW_POLICY_NOT_SAMPLED;
}

/* A route is a label on /metrics and a key in every table: what follows
 * route[from..] is made valid UTF-8 without control characters and cut to
 * SHADOW_ROUTE_NAME_MAX bytes, whether a client's path or a hook made it.
 * Out of memory leaves it as it was (the counters clean it again). */
static void route_clean(shadow_buf_t *route, size_t from) {
  const char *r = route->data ? route->data + from : "";
  size_t n = route->len - from;
  if (shadow_utf8_label_ok(r, n, SHADOW_ROUTE_NAME_MAX)) return;
  shadow_buf_t b = SHADOW_BUF_INIT;
  if (shadow_utf8_label(&b, r, n, SHADOW_ROUTE_NAME_MAX) == 0) {
    route->len = from;
    shadow_buf_append(route, b.data, b.len);
  }
  shadow_buf_free(&b);
}

void shadow_policy_default_route(const char *method, const char *target,
                                 size_t n, shadow_buf_t *route) {
  size_t from = route->len;
  shadow_buf_puts(route, method);
  shadow_buf_putc(route, ' ');
  const char *t = target && n ? target : "/";
  if (!target || !n) n = 1;
  const char *q = memchr(t, '?', n);
  if (q) n = (size_t)(q - t);
  size_t i = 0;
  while (i < n) {
    if (t[i] == '/') {
      size_t j = i + 1;
      int digits = 0, other = 0;
      while (j < n && t[j] != '/') {
        if (t[j] >= '0' && t[j] <= '9')
          digits++;
        else
          other++;
        j++;
      }
      if (digits && !other) {
        shadow_buf_puts(route, "/:id");
        i = j;
        continue;
      }
    }
    shadow_buf_putc(route, t[i]);
    i++;
  }
  route_clean(route, from);
}

int shadow_policy_is_grpc(const shadow_request_t *req) {
  const shadow_header_t *ct =
      shadow_headers_find(&req->headers, "content-type");
  return ct &&
         shadow_grpc_content_type(ct->value, ct->value_len) != SHADOW_GRPC_NOT;
}

void shadow_policy_default_route_of(const shadow_request_t *req,
                                    shadow_buf_t *route) {
  const char *t = req->target.data;
  size_t n = req->target.len;
  if (!t || !n || t[0] != '/' || !shadow_policy_is_grpc(req)) {
    shadow_policy_default_route(req->method, t, n, route);
    return;
  }
  size_t from = route->len;
  const char *q = memchr(t, '?', n);
  shadow_buf_append(route, t, q ? (size_t)(q - t) : n);
  route_clean(route, from);
}

void shadow_policy_route(shadow_gen_t *g, const shadow_request_t *req, int lreq,
                         shadow_buf_t *route) {
  shadow_buf_reset(route);
  if (!shadow_gen_has_hook(g, SHADOW_HOOK_ROUTE)) {
    shadow_policy_default_route_of(req, route);
    return;
  }
  if (shadow_script_route(g, lreq, route) != 0) {
    shadow_buf_reset(route);
    shadow_buf_puts(route, "unknown");
  }
  route_clean(route, 0);
}

const char *shadow_policy_why_name(shadow_policy_why_t why) {
  switch (why) {
  case SHADOW_POLICY_MIRROR: return "mirrored";
  case SHADOW_POLICY_NO_CANDIDATE: return "no candidate, or rate 0";
  case SHADOW_POLICY_METHOD: return "not in mirror_methods";
  case SHADOW_POLICY_FILTERED: return "filtered out";
  case SHADOW_POLICY_KEY_FAILED: return "the key hook failed";
  case SHADOW_POLICY_NOT_SAMPLED: return "not sampled";
  default: return "?";
  }
}
