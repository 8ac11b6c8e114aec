/* The dispatcher. One exchange per client request: the primary leg answers
 * the client the moment it completes; a sampled request also has a
 * candidate leg, and when both are in, the pair is compared. */
#include "dispatcher.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "divergence.h"
#include "log.h"
#include "sample.h"
#include "shared.h"
#include "upstream.h"

/* A backend in use by one or more generations. A reload keeps the pool of
 * a backend whose address and options did not change. */
typedef struct backend_s {
  struct backend_s *next; /* in the dispatcher's list */
  int refs;
  char *signature; /* url and options: equal signature, same pool */
  shadow_upstream_t *up;
} backend_t;

/* A generation as the dispatcher sees it: the script host's generation and
 * the backends its config names. */
typedef struct epoch_s {
  int refs;
  shadow_gen_t *gen;
  const shadow_config_t *cfg;
  backend_t *primary, *candidate;
} epoch_t;

typedef struct exchange_s exchange_t;

struct shadow_dispatcher_s {
  uv_loop_t *loop;
  shadow_server_t *server;
  /* Counters, ring, sink, breaker and the in-flight count: shared with
   * the other worker loops, if any, and touched only under LOCK. */
  shadow_shared_t *sh;
  shadow_stats_t *stats; /* sh->stats */
  epoch_t *epoch;        /* current */
  backend_t *backends;
  size_t exchanges;       /* exchanges alive */
  uv_timer_t drain_timer; /* polls for the last client connection to go */
  uv_idle_t idle; /* runs deferred work: Lua candidates, backend closes */
  exchange_t *lua_queue, *lua_queue_tail;
  shadow_diff_result_t diff;
  shadow_buf_t scratch;
  int closing;
  int handles_open;
  void (*drained)(void *ud);
  void *drained_ud;
};

struct exchange_s {
  shadow_dispatcher_t *d;
  epoch_t *epoch;
  shadow_request_t *req; /* until the client is answered */
  int lreq;              /* the Lua view of the request, 0 if none */
  int sampled;
  int primary_pending, candidate_pending;
  int probe; /* the single leg a half-open breaker let through */
  shadow_record_t *primary, *candidate; /* kept for the comparison */
  double primary_ms, candidate_ms;
  int has_key;
  shadow_buf_t key, route, method, target;
  int cand_lreq; /* rewritten request for a Lua candidate */
  exchange_t *next_queued;
};

static void finish_if_done(exchange_t *ex);
static void check_drained(shadow_dispatcher_t *d);

#define LOCK(d) shadow_shared_lock((d)->sh)
#define UNLOCK(d) shadow_shared_unlock((d)->sh)

/* --- backends and epochs ------------------------------------------------ */

static char *backend_signature(const shadow_backend_cfg_t *b, size_t max_idle) {
  shadow_buf_t s = SHADOW_BUF_INIT;
  shadow_buf_printf(&s, "%s|%s|%llu|%llu|%zu|%zu", b->url,
                    b->host ? b->host : "", (unsigned long long)b->timeout_ms,
                    (unsigned long long)b->connect_timeout_ms,
                    b->max_connections, max_idle);
  return shadow_buf_steal(&s, NULL);
}

/* max_idle: idle connections the pool keeps; 0 for the default. */
static int backend_get(shadow_dispatcher_t *d, const shadow_backend_cfg_t *b,
                       const shadow_limits_t *limits, size_t max_idle,
                       backend_t **out, char **err) {
  *out = NULL;
  if (b->kind != SHADOW_BACKEND_HTTP) return 0;
  char *sig = backend_signature(b, max_idle);
  if (!sig) return -ENOMEM;
  for (backend_t *e = d->backends; e; e = e->next)
    if (e->refs > 0 && strcmp(e->signature, sig) == 0) {
      free(sig);
      e->refs++;
      *out = e;
      return 0;
    }
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.timeout_ms = b->timeout_ms;
  o.connect_timeout_ms = b->connect_timeout_ms;
  o.max_connections = b->max_connections;
  o.body_bytes = limits->body_bytes;
  o.header_bytes = limits->header_bytes;
  if (max_idle > o.max_idle) o.max_idle = max_idle;
  backend_t *e = calloc(1, sizeof(*e));
  if (!e) {
    free(sig);
    return -ENOMEM;
  }
  int rc = shadow_upstream_new(d->loop, b->url, &o, &e->up, err);
  if (rc) {
    free(sig);
    free(e);
    return rc;
  }
  e->signature = sig;
  e->refs = 1;
  e->next = d->backends;
  d->backends = e;
  *out = e;
  return 0;
}

/* A backend nobody uses is closed from the idle callback, never from inside
 * one of its own upstream callbacks. */
static void idle_cb(uv_idle_t *h);

static void backend_unref(shadow_dispatcher_t *d, backend_t *b) {
  if (!b || --b->refs > 0) return;
  if (!d->closing) uv_idle_start(&d->idle, idle_cb);
}

static void epoch_unref(shadow_dispatcher_t *d, epoch_t *e) {
  if (!e || --e->refs > 0) return;
  backend_unref(d, e->primary);
  backend_unref(d, e->candidate);
  shadow_gen_unref(e->gen);
  free(e);
}

static void on_script_error(void *ud, int hook) {
  shadow_dispatcher_t *d = ud;
  const char *name = shadow_hook_name(hook);
  LOCK(d);
  shadow_counters_add(d->stats->script_errors, name, strlen(name), 1);
  UNLOCK(d);
}

static void on_script_time(void *ud, int hook, double seconds) {
  shadow_dispatcher_t *d = ud;
  if (hook < 0 || hook >= SHADOW_STATS_MAX_HOOKS) return;
  LOCK(d);
  d->stats->hook_names[hook] = shadow_hook_name(hook);
  shadow_hist_observe(&d->stats->hook_time[hook], seconds);
  UNLOCK(d);
}

static int epoch_new(shadow_dispatcher_t *d, shadow_gen_t *gen, epoch_t **out,
                     char **err) {
  const shadow_config_t *cfg = shadow_gen_config(gen);
  epoch_t *e = calloc(1, sizeof(*e));
  if (!e) return -ENOMEM;
  int rc = backend_get(d, &cfg->primary, &cfg->limits, 0, &e->primary, err);
  /* Candidate legs are open-loop: as many can be in flight as the cap
   * allows, and each finished one should find its connection kept. */
  if (rc == 0)
    rc = backend_get(d, &cfg->candidate, &cfg->limits, cfg->max_inflight_shadow,
                     &e->candidate, err);
  if (rc) {
    backend_unref(d, e->primary);
    free(e);
    return rc;
  }
  e->refs = 1;
  e->gen = gen;
  e->cfg = cfg;
  shadow_script_observer_t obs = {on_script_error, on_script_time, d};
  shadow_gen_observe(gen, &obs);
  *out = e;
  return 0;
}

/* --- exchanges ---------------------------------------------------------- */

static uint64_t now_ms(shadow_dispatcher_t *d) {
  return uv_now(d->loop);
}

/* Counts a request that was not mirrored. Takes the lock. */
static void skip(shadow_dispatcher_t *d, const char *reason) {
  LOCK(d);
  shadow_counters_add(d->stats->skipped, reason, strlen(reason), 1);
  UNLOCK(d);
}

/* "GET /users/:id": the method and the path with numeric segments folded,
 * so that a route without a route hook still has a bounded label set. */
static void default_route(const shadow_request_t *req, shadow_buf_t *route) {
  shadow_buf_puts(route, req->method);
  shadow_buf_putc(route, ' ');
  const char *t = req->target.data ? req->target.data : "/";
  size_t n = req->target.len;
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
}

static exchange_t *exchange_new(shadow_dispatcher_t *d, shadow_request_t *req) {
  exchange_t *ex = calloc(1, sizeof(*ex));
  if (!ex) return NULL;
  ex->d = d;
  ex->req = req;
  ex->epoch = d->epoch;
  ex->epoch->refs++;
  d->exchanges++;
  return ex;
}

static void maybe_free_dispatcher(shadow_dispatcher_t *d);

static void exchange_free(exchange_t *ex) {
  shadow_dispatcher_t *d = ex->d;
  shadow_gen_t *g = ex->epoch->gen;
  shadow_script_req_close(g, ex->lreq);
  if (ex->cand_lreq != ex->lreq) shadow_script_req_close(g, ex->cand_lreq);
  shadow_record_free(ex->primary);
  shadow_record_free(ex->candidate);
  shadow_buf_free(&ex->key);
  shadow_buf_free(&ex->route);
  shadow_buf_free(&ex->method);
  shadow_buf_free(&ex->target);
  epoch_unref(d, ex->epoch);
  free(ex);
  d->exchanges--;
  maybe_free_dispatcher(d);
}

static void respond_error(exchange_t *ex, int status, const char *what) {
  char body[160];
  int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", what);
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  shadow_headers_add(&h, "content-type", 12, "application/json", 16);
  shadow_server_respond(ex->req, status, &h, body, (size_t)n);
  shadow_headers_free(&h);
  ex->req = NULL;
  check_drained(ex->d);
}

static void on_primary(void *ud, int err, shadow_record_t *res,
                       double latency_ms) {
  exchange_t *ex = ud;
  shadow_dispatcher_t *d = ex->d;
  ex->primary_pending = 0;
  ex->primary_ms = latency_ms;
  LOCK(d);
  shadow_hist_observe(&d->stats->primary_latency, latency_ms / 1000);
  if (err != SHADOW_UPSTREAM_OK) d->stats->primary_errors++;
  UNLOCK(d);
  if (err != SHADOW_UPSTREAM_OK) {
    if (ex->req) {
      if (err == SHADOW_UPSTREAM_TIMEOUT)
        respond_error(ex, 504, "primary timed out");
      else if (err == SHADOW_UPSTREAM_CANCELED)
        respond_error(ex, 503, "shutting down");
      else {
        char what[64];
        snprintf(what, sizeof(what), "primary failed: %s",
                 shadow_upstream_err_name(err));
        respond_error(ex, 502, what);
      }
    }
    if (ex->sampled) skip(d, "primary_error");
  } else {
    if (ex->req) {
      shadow_server_respond(ex->req, res->status, &res->headers, res->body.data,
                            res->body.len);
      ex->req = NULL;
      check_drained(d);
    }
    /* The record is kept only when there is a candidate to compare. */
    if (ex->sampled && (ex->candidate_pending || ex->candidate))
      ex->primary = res;
    else
      shadow_record_free(res);
  }
  finish_if_done(ex);
}

/* /stats and /metrics show the breaker as it is now: every transition,
 * open -> half-open in shadow_breaker_allow included, is published. Both
 * run under LOCK. */
static void breaker_publish(shadow_dispatcher_t *d) {
  shadow_breaker_t *b = &d->sh->breaker;
  d->stats->breaker_open = b->state == SHADOW_BREAKER_OPEN;
  d->stats->breaker_state = shadow_breaker_state_name(b->state);
}

/* A leg the breaker let through that will report no result: a half-open
 * breaker must not wait forever for its probe. */
static void breaker_release(shadow_dispatcher_t *d) {
  shadow_breaker_t *b = &d->sh->breaker;
  if (b->state == SHADOW_BREAKER_HALF_OPEN) b->probe_inflight = 0;
}

static void candidate_done(exchange_t *ex, int err, shadow_record_t *res,
                           double latency_ms) {
  shadow_dispatcher_t *d = ex->d;
  ex->candidate_pending = 0;
  ex->candidate_ms = latency_ms;
  int ok = err == SHADOW_UPSTREAM_OK;
  LOCK(d);
  d->sh->inflight_shadow--;
  /* Half-open, only the probe decides: a leg that started while the
   * breaker was closed and ends late says nothing about the candidate
   * now. */
  shadow_breaker_t *b = &d->sh->breaker;
  int counts = ex->probe || b->state != SHADOW_BREAKER_HALF_OPEN;
  if (err != SHADOW_UPSTREAM_CANCELED && counts) {
    shadow_breaker_result(b, ok, now_ms(d));
    breaker_publish(d);
  } else if (err == SHADOW_UPSTREAM_CANCELED && ex->probe) {
    breaker_release(d);
  }
  if (ok) {
    shadow_hist_observe(&d->stats->candidate_latency, latency_ms / 1000);
  } else {
    const char *why = shadow_upstream_err_name(err);
    shadow_counters_add(d->stats->candidate_errors, why, strlen(why), 1);
  }
  UNLOCK(d);
  if (ok) ex->candidate = res;
  finish_if_done(ex);
}

static void on_candidate(void *ud, int err, shadow_record_t *res,
                         double latency_ms) {
  candidate_done(ud, err, res, latency_ms);
}

/* Counts the pair, and a divergence when parts is not 0: formats its
 * record into the ring log and the sink, then tells on_divergence. */
static void record_comparison(exchange_t *ex, unsigned parts) {
  shadow_dispatcher_t *d = ex->d;
  shadow_stats_t *st = d->stats;
  shadow_shared_t *sh = d->sh;
  LOCK(d);
  st->compared++;
  shadow_route_stats_t *rs =
      shadow_stats_route(st, ex->route.data, ex->route.len);
  if (rs) rs->compared++;
  if (!parts) {
    UNLOCK(d);
    return;
  }
  st->diverged++;
  if (rs) {
    rs->diverged++;
    for (int p = 0; p < 3; p++)
      if (parts & (1u << p)) rs->parts[p]++;
  }
  const char *f = d->diff.fields.data;
  for (size_t i = 0; i < d->diff.nfields && f; i++) {
    size_t n = strlen(f);
    shadow_counters_add(st->fields, f, n, 1);
    f += n + 1;
  }
  uint64_t id = ++sh->next_id;
  UNLOCK(d);
  /* Formatting, the larger part of the work, happens outside the lock. */
  shadow_divergence_meta_t m = {
      .id = id,
      .time_ms = shadow_now_ms(),
      .route = ex->route.data,
      .method = ex->method.data,
      .path = ex->target.data,
      .key = ex->has_key ? ex->key.data : NULL,
      .primary_ms = ex->primary_ms,
      .candidate_ms = ex->candidate_ms,
      .noise = NULL,
  };
  shadow_buf_reset(&d->scratch);
  if (shadow_divergence_format(&d->scratch, &m, &d->diff) < 0) return;
  LOCK(d);
  shadow_ring_push(sh->ring, d->scratch.data, d->scratch.len,
                   ex->route.data ? ex->route.data : "", ex->route.len);
  if (sh->sink) {
    fwrite(d->scratch.data, 1, d->scratch.len, sh->sink);
    fputc('\n', sh->sink);
  }
  UNLOCK(d);
  shadow_script_on_divergence(ex->epoch->gen, d->scratch.data, d->scratch.len);
}

static void compare(exchange_t *ex) {
  shadow_dispatcher_t *d = ex->d;
  shadow_gen_t *g = ex->epoch->gen;
  if (shadow_gen_has_hook(g, SHADOW_HOOK_NORMALIZE)) {
    /* A failed normalize leaves the record raw: compare what we have. */
    shadow_script_normalize(g, ex->lreq, ex->primary, "primary");
    shadow_script_normalize(g, ex->lreq, ex->candidate, "candidate");
  }
  int parts = shadow_diff_records(ex->epoch->cfg->diff_opts, ex->primary,
                                  ex->candidate, &d->diff);
  if (parts < 0) {
    skip(d, "diff_error");
    return;
  }
  record_comparison(ex, (unsigned)parts);
}

static void drain_poll(uv_timer_t *t) {
  check_drained(t->data);
}

/* Called after each answer to a client: the drain is over when none is
 * left in flight and every client connection is gone. An answer handed to
 * the server may still be being written (closing then would cut it), and
 * a request may still be arriving; each such connection closes by itself
 * once answered. The server has no event for its last connection going,
 * so poll for it; the drain timeout bounds the wait. */
static void check_drained(shadow_dispatcher_t *d) {
  if (!d->drained || !d->server || shadow_server_inflight(d->server) > 0)
    return;
  if (shadow_server_connections(d->server) > 0) {
    if (!uv_is_active((uv_handle_t *)&d->drain_timer))
      uv_timer_start(&d->drain_timer, drain_poll, 10, 10);
    return;
  }
  uv_timer_stop(&d->drain_timer);
  void (*done)(void *) = d->drained;
  d->drained = NULL;
  done(d->drained_ud);
}

static void finish_if_done(exchange_t *ex) {
  if (ex->primary_pending || ex->candidate_pending || ex->req) return;
  if (ex->primary && ex->candidate) compare(ex);
  exchange_free(ex);
}

/* --- Lua backends ------------------------------------------------------- */

static void call_lua_backend(exchange_t *ex, int fn_ref, int lreq,
                             shadow_upstream_cb cb) {
  char err[160];
  uint64_t t0 = uv_hrtime();
  shadow_record_t *res = shadow_record_new();
  int rc = res ? shadow_script_call_backend(ex->epoch->gen, fn_ref, lreq, res,
                                            err, sizeof(err))
               : -1;
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  if (rc) {
    shadow_record_free(res);
    cb(ex, SHADOW_UPSTREAM_BAD_RESPONSE, NULL, ms);
  } else {
    cb(ex, SHADOW_UPSTREAM_OK, res, ms);
  }
}

/* Lua candidates run after the loop has written the client's response. */
static void queue_lua_candidate(exchange_t *ex) {
  shadow_dispatcher_t *d = ex->d;
  ex->next_queued = NULL;
  if (d->lua_queue_tail)
    d->lua_queue_tail->next_queued = ex;
  else
    d->lua_queue = ex;
  d->lua_queue_tail = ex;
}

static void idle_cb(uv_idle_t *h) {
  shadow_dispatcher_t *d = h->data;
  exchange_t *ex = d->lua_queue;
  d->lua_queue = d->lua_queue_tail = NULL;
  while (ex) {
    exchange_t *next = ex->next_queued;
    if (d->closing)
      candidate_done(ex, SHADOW_UPSTREAM_CANCELED, NULL, 0);
    else
      call_lua_backend(ex, ex->epoch->cfg->candidate.lua_ref, ex->cand_lreq,
                       on_candidate);
    ex = next;
  }
  /* Close backends no generation uses any more. */
  backend_t **pp = &d->backends;
  while (*pp) {
    backend_t *b = *pp;
    if (b->refs <= 0) {
      *pp = b->next;
      if (b->up) shadow_upstream_close(b->up);
      free(b->signature);
      free(b);
    } else {
      pp = &b->next;
    }
  }
  if (!d->lua_queue) uv_idle_stop(&d->idle);
}

/* --- the request path --------------------------------------------------- */

/* Decides whether this request gets a candidate leg, and sets up what the
 * comparison needs. Returns 1 to mirror. */
static int decide(exchange_t *ex, shadow_request_t *req) {
  shadow_dispatcher_t *d = ex->d;
  const shadow_config_t *cfg = ex->epoch->cfg;
  shadow_gen_t *g = ex->epoch->gen;
  if (cfg->candidate.kind == SHADOW_BACKEND_NONE || cfg->rate <= 0) return 0;
  if (req->method_id < 0 || req->method_id >= 64 ||
      !(cfg->mirror_methods & (1ull << req->method_id)))
    return 0;
  if (shadow_gen_has_hook(g, SHADOW_HOOK_FILTER) &&
      !shadow_script_filter(g, ex->lreq))
    return 0;
  int k = 0;
  if (shadow_gen_has_hook(g, SHADOW_HOOK_KEY)) {
    k = shadow_script_key(g, ex->lreq, &ex->key);
    if (k < 0) return 0; /* fallback: not sampled */
  }
  ex->has_key = k == 1;
  int in = ex->has_key ? shadow_sampled(ex->key.data, ex->key.len, cfg->rate)
                       : shadow_sampled_random(cfg->rate);
  if (!in) return 0;
  const char *why = NULL;
  LOCK(d);
  shadow_breaker_t *b = &d->sh->breaker;
  int allowed = shadow_breaker_allow(b, now_ms(d));
  /* Half-open, the breaker lets exactly one leg through: the probe. */
  ex->probe = allowed && b->state == SHADOW_BREAKER_HALF_OPEN;
  breaker_publish(d);
  if (!allowed) {
    why = "breaker";
  } else if (cfg->max_inflight_shadow > 0 &&
             d->sh->inflight_shadow >= cfg->max_inflight_shadow) {
    /* The breaker let this leg through; give the slot back unused. */
    breaker_release(d);
    why = "overload";
  } else {
    /* The slot is taken here, under the same lock as the check, so that
     * loops racing for the last slot cannot both get it. */
    d->sh->inflight_shadow++;
  }
  UNLOCK(d);
  if (why) {
    skip(d, why);
    return 0;
  }
  return 1;
}

/* Gives back the slot decide() took, for a leg that never started. A leg
 * that failed to send counts against the breaker; one that was never
 * attempted (a failed rewrite) only frees a half-open breaker's probe. */
static void unreserve(shadow_dispatcher_t *d, int send_failed) {
  LOCK(d);
  d->sh->inflight_shadow--;
  if (send_failed) {
    shadow_breaker_result(&d->sh->breaker, 0, now_ms(d));
    breaker_publish(d);
    shadow_counters_add(d->stats->candidate_errors, "send", 4, 1);
  } else {
    breaker_release(d);
  }
  UNLOCK(d);
}

static int start_candidate(exchange_t *ex, shadow_request_t *req) {
  shadow_dispatcher_t *d = ex->d;
  const shadow_config_t *cfg = ex->epoch->cfg;
  shadow_gen_t *g = ex->epoch->gen;
  ex->cand_lreq = ex->lreq;
  int rewritten = 0;
  if (shadow_gen_has_hook(g, SHADOW_HOOK_REWRITE)) {
    if (shadow_script_rewrite(g, ex->lreq, &ex->cand_lreq) != 0) {
      ex->cand_lreq = ex->lreq;
      unreserve(d, 0);
      skip(d, "rewrite");
      return -1;
    }
    rewritten = 1;
  }
  if (cfg->candidate.kind == SHADOW_BACKEND_LUA) {
    ex->candidate_pending = 1;
    queue_lua_candidate(ex);
    uv_idle_start(&d->idle, idle_cb);
    return 0;
  }
  /* The candidate is told it is one, so it can skip side effects. */
  static const shadow_header_t mark = {(char *)"x-shadow-request", 16,
                                       (char *)"1", 1};
  shadow_headers_t extra = {(shadow_header_t *)&mark, 1, 1, 17, NULL};
  int rc;
  if (rewritten) {
    shadow_buf_t m = SHADOW_BUF_INIT, t = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    shadow_headers_t h = SHADOW_HEADERS_INIT;
    int bad = shadow_script_req_read(g, ex->cand_lreq, &m, &t, &h, &b);
    rc = bad ? -EINVAL
             : shadow_upstream_send(ex->epoch->candidate->up, m.data, t.data,
                                    t.len, &h, &extra, b.data, b.len,
                                    on_candidate, ex);
    shadow_buf_free(&m);
    shadow_buf_free(&t);
    shadow_buf_free(&b);
    shadow_headers_free(&h);
    if (bad) {
      unreserve(d, 0);
      skip(d, "rewrite");
      return -1;
    }
  } else {
    rc = shadow_upstream_send(ex->epoch->candidate->up, req->method,
                              req->target.data, req->target.len, &req->headers,
                              &extra, req->body.data, req->body.len,
                              on_candidate, ex);
  }
  if (rc) {
    /* The leg never started: no callback will come. */
    unreserve(d, 1);
    return rc;
  }
  ex->candidate_pending = 1;
  return 0;
}

static int needs_lua_request(const epoch_t *e) {
  shadow_gen_t *g = e->gen;
  return e->cfg->primary.kind == SHADOW_BACKEND_LUA ||
         e->cfg->candidate.kind == SHADOW_BACKEND_LUA ||
         shadow_gen_has_hook(g, SHADOW_HOOK_FILTER) ||
         shadow_gen_has_hook(g, SHADOW_HOOK_KEY) ||
         shadow_gen_has_hook(g, SHADOW_HOOK_ROUTE) ||
         shadow_gen_has_hook(g, SHADOW_HOOK_REWRITE) ||
         shadow_gen_has_hook(g, SHADOW_HOOK_NORMALIZE);
}

static void on_request(shadow_request_t *req, void *ud) {
  shadow_dispatcher_t *d = ud;
  exchange_t *ex = exchange_new(d, req);
  if (!ex) {
    shadow_headers_t none = SHADOW_HEADERS_INIT;
    shadow_server_respond(req, 503, &none, NULL, 0);
    return;
  }
  epoch_t *e = ex->epoch;
  shadow_gen_t *g = e->gen;
  if (needs_lua_request(e)) ex->lreq = shadow_script_req_open(g, req);

  ex->sampled = decide(ex, req);
  if (ex->sampled) {
    if (shadow_gen_has_hook(g, SHADOW_HOOK_ROUTE)) {
      if (shadow_script_route(g, ex->lreq, &ex->route) != 0) {
        shadow_buf_reset(&ex->route);
        shadow_buf_puts(&ex->route, "unknown");
      }
    } else {
      default_route(req, &ex->route);
    }
  }
  LOCK(d);
  d->stats->requests++;
  if (ex->sampled) {
    d->stats->sampled++;
    shadow_route_stats_t *rs =
        shadow_stats_route(d->stats, ex->route.data, ex->route.len);
    if (rs) rs->sampled++;
  }
  UNLOCK(d);
  if (ex->sampled) {
    shadow_buf_puts(&ex->method, req->method);
    shadow_buf_append(&ex->target, req->target.data, req->target.len);
    if (start_candidate(ex, req) != 0) ex->sampled = 0;
  }

  ex->primary_pending = 1;
  if (e->cfg->primary.kind == SHADOW_BACKEND_LUA) {
    call_lua_backend(ex, e->cfg->primary.lua_ref, ex->lreq, on_primary);
    return;
  }
  shadow_header_t xff = {(char *)"x-forwarded-for", 15, req->peer,
                         strlen(req->peer)};
  shadow_headers_t extra = {&xff, req->peer[0] ? 1 : 0, 1, 0, NULL};
  int rc = shadow_upstream_send(e->primary->up, req->method, req->target.data,
                                req->target.len, &req->headers, &extra,
                                req->body.data, req->body.len, on_primary, ex);
  if (rc) on_primary(ex, SHADOW_UPSTREAM_BAD_RESPONSE, NULL, 0);
}

/* --- lifecycle ---------------------------------------------------------- */

int shadow_dispatcher_new(uv_loop_t *loop, shadow_gen_t *gen,
                          shadow_shared_t *sh, shadow_dispatcher_t **out,
                          char **err) {
  const shadow_config_t *cfg = shadow_gen_config(gen);
  shadow_dispatcher_t *d = calloc(1, sizeof(*d));
  if (!d) return -ENOMEM;
  d->loop = loop;
  d->sh = sh;
  d->stats = sh->stats;
  uv_idle_init(loop, &d->idle);
  d->idle.data = d;
  uv_timer_init(loop, &d->drain_timer);
  d->drain_timer.data = d;
  d->handles_open = 2;
  int rc = epoch_new(d, gen, &d->epoch, err);
  shadow_limits_t limits = cfg->limits;
  limits.reuse_port = sh->threaded;
  if (rc == 0)
    rc = shadow_server_listen(loop, cfg->listen, &limits, on_request, d,
                              &d->server, err);
  if (rc) {
    if (d->epoch) {
      shadow_gen_ref(gen); /* the caller keeps its reference on failure */
      epoch_unref(d, d->epoch);
      d->epoch = NULL;
    }
    shadow_dispatcher_close(d);
    return rc;
  }
  *out = d;
  return 0;
}

int shadow_dispatcher_reload(shadow_dispatcher_t *d, shadow_gen_t *gen,
                             char **err) {
  const shadow_config_t *cfg = shadow_gen_config(gen);
  const shadow_config_t *old = d->epoch->cfg;
  if (strcmp(cfg->listen, old->listen) != 0) {
    *err = strdup("listen cannot change on reload; restart shadowd");
    return -EINVAL;
  }
  epoch_t *e;
  int rc = epoch_new(d, gen, &e, err);
  if (rc) return rc;
  shadow_limits_t limits = cfg->limits;
  limits.reuse_port = d->sh->threaded;
  shadow_server_set_limits(d->server, &limits);
  epoch_t *prev = d->epoch;
  d->epoch = e;
  epoch_unref(d, prev);
  return 0;
}

size_t shadow_dispatcher_inflight(const shadow_dispatcher_t *d) {
  return d->server ? shadow_server_inflight(d->server) : 0;
}

void shadow_dispatcher_drain(shadow_dispatcher_t *d, void (*done)(void *ud),
                             void *ud) {
  d->drained = done;
  d->drained_ud = ud;
  if (d->server) shadow_server_drain(d->server);
  check_drained(d);
}

static void handle_closed(uv_handle_t *h) {
  shadow_dispatcher_t *d = h->data;
  d->handles_open--;
  maybe_free_dispatcher(d);
}

static void maybe_free_dispatcher(shadow_dispatcher_t *d) {
  if (!d->closing || d->exchanges > 0 || d->handles_open > 0) return;
  /* Every epoch is gone, so every backend has refs == 0. */
  while (d->backends) {
    backend_t *b = d->backends;
    d->backends = b->next;
    if (b->up) shadow_upstream_close(b->up);
    free(b->signature);
    free(b);
  }
  shadow_diff_result_free(&d->diff);
  shadow_buf_free(&d->scratch);
  free(d);
}

void shadow_dispatcher_close(shadow_dispatcher_t *d) {
  if (d->closing) return;
  d->closing = 1;
  if (d->server) shadow_server_close(d->server);
  d->server = NULL;
  /* Abandon candidate legs: closing the pools fails them with CANCELED,
   * through the loop. */
  for (backend_t *b = d->backends; b; b = b->next) {
    shadow_upstream_close(b->up);
    b->up = NULL;
  }
  exchange_t *q = d->lua_queue;
  d->lua_queue = d->lua_queue_tail = NULL;
  epoch_t *e = d->epoch;
  d->epoch = NULL;
  while (q) {
    exchange_t *next = q->next_queued;
    candidate_done(q, SHADOW_UPSTREAM_CANCELED, NULL, 0);
    q = next;
  }
  if (e) epoch_unref(d, e);
  uv_close((uv_handle_t *)&d->idle, handle_closed);
  uv_close((uv_handle_t *)&d->drain_timer, handle_closed);
}
