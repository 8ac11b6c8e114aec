/* The dispatcher: one exchange per client request. The primary leg streams
 * to the client as it arrives, with backpressure both ways (a slow client
 * pauses the primary's read; a slow primary pauses the client's upload).
 * A request the policy mirrors also has a candidate leg, started once the
 * request body is complete (a copy of it is kept up to mirror_body_bytes);
 * both responses are kept up to diff_bytes and digested beyond, and the
 * pair is compared when both legs have ended. The parts live apart: the
 * policy (policy.c), the backends and generations (backends.c), the
 * breaker and in-flight cap (admission.c), the comparison (comparison.c).
 * Capture (capture.c) decides beside the policy and, for a request it
 * takes, keeps the primary's response whether or not it is mirrored, and
 * writes its line once the primary's leg has ended.
 */
#include "dispatcher.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "backends.h"
#include "capture.h"
#include "clock.h"
#include "comparison.h"
#include "deferred.h"
#include "forward.h"
#include "log.h"
#include "policy.h"
#include "shared.h"
#include "tls.h"
#include "upstream.h"

typedef struct exchange_s exchange_t;

struct shadow_dispatcher_s {
  uv_loop_t *loop;
  shadow_server_t *server;
  /* Counters, ring, sink, breaker and the in-flight count: shared with
   * the other worker loops, if any, and touched only under the lock. */
  shadow_shared_t *sh;
  shadow_stats_t *stats; /* sh->stats */
  shadow_backends_t *backends;
  shadow_epoch_t *epoch; /* current */
  size_t exchanges;      /* exchanges alive */
  shadow_deferred_t deferred;
  shadow_comparator_t cmp;
  /* The headers a leg forwards, built for each leg as it starts (the
   * upstream client copies them before start() returns). */
  shadow_headers_t fwd, rewritten;
  /* The exchange whose client headers fwd's first fwd_lines lines are,
   * forwarded and nothing more, or NULL: the candidate's leg, started
   * right after the primary's from the same headers, takes them as they
   * are instead of building them again. */
  const struct exchange_s *fwd_of;
  size_t fwd_lines;
  shadow_buf_t capture_line;  /* reused for each capture line */
  size_t max_conns;           /* this worker's share of max_connections */
  uint64_t rewrite_warned_ms; /* when an invalid rewrite was last logged */
  int closing;
  int handles_open;
  void (*drained)(void *ud);
  void *drained_ud;
};

enum { LEG_NONE = 0, LEG_RUNNING, LEG_DONE, LEG_FAILED };

/* One side of an exchange: the primary, or a shadow leg (the candidate,
 * or the secondary copy of the primary that tells noise from change). */
typedef struct leg_s {
  exchange_t *ex;
  shadow_upstream_leg_t *up; /* an HTTP leg in flight */
  shadow_record_t *rec;      /* what is kept for the comparison, or NULL */
  size_t keep;               /* body bytes rec keeps; 0: limits.diff_bytes */
  uint64_t start_ns, first_ns, last_ns;
  int status; /* of the response head, 0 before it */
  int state;
  int err;
  /* Shadow legs: which gate (breaker and cap) admits them, whether this
   * leg holds a slot there, and whether that slot is the breaker's probe. */
  shadow_gate_id_t gate;
  int admitted, probe;
  shadow_task_t task; /* an in-process (Lua) backend's deferred call */
} leg_t;

struct exchange_s {
  shadow_dispatcher_t *d;
  shadow_epoch_t *epoch;
  shadow_request_t *req; /* until given back to the server */
  int lreq;              /* the Lua view of the request, 0 if none */
  int cand_lreq;         /* the rewritten request, or lreq */
  int maybe;        /* the request may be mirrored: keep the primary's answer */
  int decided;      /* the policy has run */
  int sampled;      /* a candidate leg was started */
  int skipped;      /* the pair will not be compared */
  int body_done;    /* the request body is complete */
  int body_over;    /* it outgrew the copy's cap */
  int body_memory;  /* ... or the copy budget (limits.copy_memory_bytes) */
  int upgrade_slot; /* holds one of limits.max_tunnels */
  /* Bytes charged to the copy budget: the body copy's buffer, and the
   * other copies made of it (the Lua view, each shadow leg's request). */
  size_t charged_body, charged;
  int primary_paused;
  int held;          /* inside a call that may end the exchange: finish waits */
  int tunnel;        /* the primary answered an upgrade with 101 */
  shadow_buf_t body; /* a copy of the request body, for the candidate */
  leg_t primary, candidate, secondary;
  shadow_policy_decision_t dec;
  shadow_buf_t route, method, target;
  shadow_capture_state_t cap;
};

#define LOCK(d) shadow_shared_lock((d)->sh)
#define UNLOCK(d) shadow_shared_unlock((d)->sh)

static void finish_if_done(exchange_t *ex);
static const shadow_upstream_handler_t primary_handler;
static const shadow_upstream_handler_t shadow_leg_handler;

static double ms_between(uint64_t a, uint64_t b) {
  return a && b >= a ? (double)(b - a) / 1e6 : -1;
}

/* Counts a request that was not mirrored. Takes the lock. */
static void skip(shadow_dispatcher_t *d, const char *reason) {
  LOCK(d);
  shadow_counters_add(d->stats->skipped, reason, strlen(reason), 1);
  UNLOCK(d);
}

/* --- script observers --------------------------------------------------- */

static void on_script_error(void *ud, int hook, const char *msg) {
  shadow_dispatcher_t *d = ud;
  const char *name = shadow_hook_name(hook);
  double now_ms = shadow_wall_ms();
  LOCK(d);
  shadow_counters_add(d->stats->script_errors, name, strlen(name), 1);
  shadow_stats_hook_error(d->stats, hook, msg, now_ms);
  UNLOCK(d);
}

static void on_script_time(void *ud, int hook, double seconds) {
  shadow_dispatcher_t *d = ud;
  if (hook < 0 || (size_t)hook >= d->stats->nhooks) return;
  LOCK(d);
  shadow_hist_observe(&d->stats->hook_time[hook], seconds);
  UNLOCK(d);
}

static int epoch_start(shadow_dispatcher_t *d, shadow_gen_t *gen,
                       shadow_epoch_t **out, char **err) {
  int rc = shadow_epoch_new(d->backends, gen, out, err);
  if (rc) return rc;
  shadow_script_observer_t obs = {on_script_error, on_script_time, d};
  shadow_gen_observe(gen, &obs);
  return 0;
}

/* --- exchanges ---------------------------------------------------------- */

static exchange_t *exchange_new(shadow_dispatcher_t *d, shadow_request_t *req) {
  exchange_t *ex = calloc(1, sizeof(*ex));
  if (!ex) return NULL;
  ex->d = d;
  ex->req = req;
  ex->epoch = d->epoch;
  shadow_epoch_ref(ex->epoch);
  ex->primary.ex = ex->candidate.ex = ex->secondary.ex = ex;
  ex->candidate.gate = SHADOW_GATE_CANDIDATE;
  ex->secondary.gate = SHADOW_GATE_SECONDARY;
  d->exchanges++;
  req->data = ex;
  return ex;
}

static void maybe_free_dispatcher(shadow_dispatcher_t *d);

static void exchange_free(exchange_t *ex) {
  shadow_dispatcher_t *d = ex->d;
  shadow_gen_t *g = ex->epoch->gen;
  shadow_script_req_close(g, ex->lreq);
  if (ex->cand_lreq != ex->lreq) shadow_script_req_close(g, ex->cand_lreq);
  shadow_record_free(ex->primary.rec);
  shadow_record_free(ex->candidate.rec);
  shadow_record_free(ex->secondary.rec);
  shadow_buf_free(&ex->body);
  shadow_buf_free(&ex->dec.key);
  shadow_buf_free(&ex->route);
  shadow_buf_free(&ex->method);
  shadow_buf_free(&ex->target);
  shadow_capture_state_free(&ex->cap);
  shadow_epoch_unref(d->backends, ex->epoch);
  if (d->fwd_of == ex) d->fwd_of = NULL;
  if (ex->tunnel || ex->upgrade_slot || ex->charged || ex->charged_body) {
    LOCK(d);
    if (ex->tunnel) d->stats->tunnels_open--;
    if (ex->upgrade_slot) d->sh->upgrades--;
    d->stats->copy_bytes -= ex->charged + ex->charged_body;
    UNLOCK(d);
  }
  free(ex);
  d->exchanges--;
  if (shadow_backends_unused(d->backends)) shadow_deferred_kick(&d->deferred);
  maybe_free_dispatcher(d);
}

/* Gives the request back to the server (which then answers or closes as
 * it must); the exchange may live on for its candidate. */
static void release_request(exchange_t *ex, int graceful) {
  shadow_request_t *req = ex->req;
  if (!req) return;
  ex->req = NULL;
  req->data = NULL;
  if (graceful)
    shadow_server_end(req, NULL);
  else
    shadow_server_abort(req);
}

static void respond_error(exchange_t *ex, int status, const char *what) {
  shadow_buf_t body = SHADOW_BUF_INIT;
  shadow_buf_puts(&body, "{\"error\":");
  shadow_buf_json_string(&body, what, strlen(what), 256);
  shadow_buf_putc(&body, '}');
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  shadow_headers_add(&h, "content-type", 12, "application/json", 16);
  shadow_request_t *req = ex->req;
  ex->req = NULL;
  req->data = NULL;
  shadow_server_respond(req, status, &h, body.data, body.len);
  shadow_headers_free(&h);
  shadow_buf_free(&body);
}

/* The pair will not be compared: drop what was kept for it (unless
 * capture may still want the primary's response). */
static void drop_pair(exchange_t *ex, const char *reason) {
  if (!ex->skipped && ex->sampled && reason) skip(ex->d, reason);
  ex->skipped = 1;
  if (ex->cap.wanted || (ex->cap.maybe && !ex->cap.decided)) return;
  shadow_record_free(ex->primary.rec);
  ex->primary.rec = NULL;
}

/* --- keeping a response for the comparison ------------------------------ */

static void leg_keep_head(leg_t *leg, int status, shadow_headers_t *h,
                          int64_t content_length) {
  leg->first_ns = uv_hrtime();
  leg->status = status;
  if (!leg->rec) return;
  leg->rec->status = status;
  /* One allocation for a body of declared length that will be kept, of
   * that length: it is held until the other side answers (200 ms for a
   * slow candidate), and a doubled one would be half empty (2 KiB for 1
   * KiB). One byte more, for the byte past the body that a read straight
   * into the record may carry (upstream.c's on_alloc), or the buffer
   * would grow again, by a copy. */
  size_t keep = leg->ex->epoch->cfg->limits.diff_bytes;
  if (content_length > 0 && (uint64_t)content_length <= keep)
    shadow_buf_reserve_exact(&leg->rec->body, (size_t)content_length + 1);
  /* The record takes the parsed lines (no copy): h is then empty. */
  if (shadow_headers_take(&leg->rec->headers, h)) {
    /* Out of memory: a partial record would compare wrong. */
    shadow_record_free(leg->rec);
    leg->rec = NULL;
  }
}

static void leg_keep_body(leg_t *leg, const char *data, size_t len) {
  if (!leg->rec) return;
  const shadow_config_t *cfg = leg->ex->epoch->cfg;
  size_t keep = leg->keep ? leg->keep : cfg->limits.diff_bytes;
  if (shadow_record_body_feed(leg->rec, data, len, keep)) {
    shadow_record_free(leg->rec);
    leg->rec = NULL;
  }
}

/* Room in the record for a read to land in (see body_room in upstream.h):
 * the body's bytes are then kept without a copy. */
static size_t leg_body_room(leg_t *leg, size_t want, char **at) {
  if (!leg->rec) return 0;
  const shadow_config_t *cfg = leg->ex->epoch->cfg;
  size_t keep = leg->keep ? leg->keep : cfg->limits.diff_bytes;
  return shadow_record_body_room(leg->rec, want, keep, at);
}

/* Trailers (gRPC's grpc-status among them) belong to the record too. */
static void leg_keep_trailers(leg_t *leg, const shadow_headers_t *t) {
  if (leg->rec && shadow_record_add_trailers(leg->rec, t)) {
    shadow_record_free(leg->rec); /* a partial record would compare wrong */
    leg->rec = NULL;
  }
}

static void leg_end(leg_t *leg, int err) {
  leg->up = NULL;
  leg->last_ns = uv_hrtime();
  leg->err = err;
  leg->state = err == SHADOW_UPSTREAM_OK ? LEG_DONE : LEG_FAILED;
  if (leg->rec) shadow_record_body_end(leg->rec);
}

/* Whether any leg of ex is still out. */
static int legs_running(const exchange_t *ex) {
  return ex->primary.state == LEG_RUNNING ||
         ex->candidate.state == LEG_RUNNING ||
         ex->secondary.state == LEG_RUNNING;
}

/* A leg's response is in and kept, and another leg is still out (a slow
 * candidate's, 200 ms): the response moves into memory of its size, so a
 * wait does not hold the 1.6 KiB the parser's header list had grown to
 * for ~600 bytes of lines, nor a doubled body's empty half. */
static void leg_wait(leg_t *leg) {
  if (leg->rec && leg->state == LEG_DONE && legs_running(leg->ex))
    (void)shadow_record_compact(leg->rec); /* else as it was */
}

/* --- the copy budget ---------------------------------------------------- */

/* Copies of request bodies (for the candidate, the secondary, capture and
 * the hooks' view) share limits.copy_memory_bytes across all exchanges and
 * workers (the count is in the shared stats, under the lock), so many
 * large uploads at once cannot grow memory without bound: past it a copy
 * is not made, and that exchange is not mirrored or captured. The primary
 * streams either way. An in-process primary needs the whole body to answer
 * at all, so its copy is not charged (mirror_body_bytes caps it). */
static int budget_exempt(const exchange_t *ex) {
  return ex->epoch->cfg->primary.kind == SHADOW_BACKEND_LUA;
}

/* Charges n more bytes to the exchange: 0, or -1 (nothing charged) when
 * the budget has not that much left. */
static int budget_take(exchange_t *ex, size_t n, size_t *to) {
  shadow_dispatcher_t *d = ex->d;
  uint64_t cap = ex->epoch->cfg->limits.copy_memory_bytes;
  if (!n) return 0;
  LOCK(d);
  int ok = !cap || d->stats->copy_bytes + n <= cap;
  if (ok) d->stats->copy_bytes += n;
  UNLOCK(d);
  if (!ok) return -1;
  *to += n;
  return 0;
}

/* The body copy is gone: over its cap (memory: over the budget). */
static void body_drop(exchange_t *ex, int memory) {
  shadow_dispatcher_t *d = ex->d;
  ex->body_over = 1;
  if (memory) ex->body_memory = 1;
  shadow_buf_free(&ex->body);
  if (ex->charged_body) {
    LOCK(d);
    d->stats->copy_bytes -= ex->charged_body;
    UNLOCK(d);
    ex->charged_body = 0;
  }
}

/* Charges the body copy's buffer for holding need bytes, before it grows:
 * to exactly that (exact), or to what shadow_buf_reserve's doubling from
 * 64 makes of it. */
static int budget_body(exchange_t *ex, size_t need, int exact) {
  if (budget_exempt(ex) || need + 1 <= ex->body.cap) return 0;
  size_t cap = exact ? need + 1 : ex->body.cap ? ex->body.cap : 64;
  while (cap < need + 1 && cap <= SIZE_MAX / 2)
    cap *= 2;
  if (cap < need + 1) cap = need + 1;
  return budget_take(ex, cap - ex->charged_body, &ex->charged_body);
}

/* The request's Lua view, which holds a copy of the body (charged too). */
static void open_lreq(exchange_t *ex) {
  if (ex->lreq) return;
  if (ex->body.len && !budget_exempt(ex) &&
      budget_take(ex, ex->body.len, &ex->charged))
    body_drop(ex, 1);
  ex->lreq = shadow_script_req_open(ex->epoch->gen, ex->req, ex->body.data,
                                    ex->body.len);
}

/* Whether anything will read the request's Lua view: a hook that takes
 * the request, or a Lua backend. Without one the view (a Lua table with
 * the headers and a copy of the body, per sampled request) is not built;
 * the policy and the comparison take 0 for it. */
static int lreq_needed(const exchange_t *ex, int for_capture) {
  shadow_gen_t *g = ex->epoch->gen;
  const shadow_config_t *cfg = ex->epoch->cfg;
  static const int mirror_hooks[] = {SHADOW_HOOK_FILTER, SHADOW_HOOK_KEY,
                                     SHADOW_HOOK_ROUTE, SHADOW_HOOK_REWRITE,
                                     SHADOW_HOOK_NORMALIZE};
  /* Capture names its line's route too, so the route hook reads it. */
  static const int capture_hooks[] = {SHADOW_HOOK_FILTER, SHADOW_HOOK_KEY,
                                      SHADOW_HOOK_ROUTE,
                                      SHADOW_HOOK_CAPTURE_KEY};
  const int *h = for_capture ? capture_hooks : mirror_hooks;
  size_t n = for_capture ? 4 : 5;
  for (size_t i = 0; i < n; i++)
    if (shadow_gen_has_hook(g, h[i])) return 1;
  return !for_capture && (cfg->candidate.kind == SHADOW_BACKEND_LUA ||
                          cfg->secondary.kind == SHADOW_BACKEND_LUA);
}

/* --- capture ------------------------------------------------------------ */

/* Takes capture's decision once the request body is complete (after the
 * policy's), and copies what the line needs of the request, which the
 * server may reuse before the primary's leg ends. */
static void capture_decide(exchange_t *ex) {
  shadow_capture_state_t *c = &ex->cap;
  if (!c->maybe || c->decided || !ex->req) return;
  c->decided = 1;
  shadow_gen_t *g = ex->epoch->gen;
  const shadow_config_t *cfg = ex->epoch->cfg;
  shadow_request_t *req = ex->req;
  if (lreq_needed(ex, 1)) open_lreq(ex);
  shadow_policy_decision_t dec = {0};
  shadow_policy_capture(g, req, ex->lreq,
                        ex->decided && ex->maybe ? &ex->dec : NULL, &dec);
  if (dec.why == SHADOW_POLICY_MIRROR) {
    /* A request body is replayed whole, so one that was not kept whole
     * cannot be captured. */
    if (ex->body_memory)
      shadow_capture_skip(ex->d->sh, "memory");
    else if (ex->body_over || ex->body.len > cfg->capture.body_bytes)
      shadow_capture_skip(ex->d->sh, "body_too_large");
    else
      c->wanted = 1;
  }
  if (c->wanted) {
    c->has_key = dec.has_key;
    c->key = dec.key;
    dec.key = (shadow_buf_t)SHADOW_BUF_INIT;
    c->time_ms = shadow_wall_ms() - ms_between(req->start_ns, uv_hrtime());
    c->tls = req->tls;
    c->http_major = req->http_major;
    snprintf(c->peer, sizeof(c->peer), "%s", req->peer);
    if (!ex->route.len) shadow_policy_route(g, req, ex->lreq, &ex->route);
    if (shadow_buf_puts(&c->method, req->method) ||
        shadow_buf_append(&c->target, req->target.data, req->target.len))
      c->wanted = 0;
    for (size_t i = 0; c->wanted && i < req->headers.n; i++) {
      const shadow_header_t *h = &req->headers.v[i];
      if (shadow_headers_add(&c->headers, h->name, h->name_len, h->value,
                             h->value_len))
        c->wanted = 0;
    }
    if (!c->wanted) shadow_capture_skip(ex->d->sh, "error");
  }
  shadow_buf_free(&dec.key);
  /* Nobody else wants the primary's response: the pair is not compared. */
  if (!c->wanted && (!ex->maybe || ex->skipped)) {
    shadow_record_free(ex->primary.rec);
    ex->primary.rec = NULL;
  }
}

/* The primary's leg has ended (the client has its response): the line of
 * a captured exchange is written. */
static void capture_end(exchange_t *ex, int err) {
  shadow_capture_state_t *c = &ex->cap;
  if (!c->maybe) return;
  leg_t *p = &ex->primary;
  if (!c->decided) {
    /* The primary answered before the request body was complete: there
     * is no whole request to replay. */
    c->decided = 1;
    shadow_capture_skip(ex->d->sh, "early_response");
  } else if (c->wanted && (err != SHADOW_UPSTREAM_OK || !p->rec)) {
    shadow_capture_skip(ex->d->sh,
                        err != SHADOW_UPSTREAM_OK ? "primary_error" : "error");
  } else if (c->wanted) {
    shadow_capture_write(
        ex->d->sh, ex->epoch->cfg, c, ex->route.data, ex->body.data,
        ex->body.len, p->rec, ms_between(p->start_ns, p->first_ns),
        ms_between(p->start_ns, p->last_ns), &ex->d->capture_line);
  }
  c->wanted = 0;
  /* The line is out; keep the response only for a comparison to come. */
  if (ex->skipped || !ex->sampled) {
    shadow_record_free(p->rec);
    p->rec = NULL;
  }
}

/* --- the primary leg ---------------------------------------------------- */

static void primary_interim(void *ud, int status, const shadow_headers_t *h) {
  exchange_t *ex = ud;
  if (ex->req) shadow_server_interim(ex->req, status, h);
}

static void primary_head(void *ud, int status, shadow_headers_t *h,
                         int64_t content_length) {
  exchange_t *ex = ud;
  leg_keep_head(&ex->primary, status, h, content_length);
  /* Kept for the comparison: the lines are in the record now. */
  if (ex->primary.rec) h = &ex->primary.rec->headers;
  if (status == 101 && !ex->tunnel) {
    ex->tunnel = 1;
    LOCK(ex->d);
    ex->d->stats->tunnels_open++;
    ex->d->stats->tunnels++;
    UNLOCK(ex->d);
  }
  if (ex->req) shadow_server_head(ex->req, status, h, content_length);
}

static void primary_body(void *ud, const char *data, size_t len) {
  exchange_t *ex = ud;
  if (!ex->req) {
    leg_keep_body(&ex->primary, data, len);
    return;
  }
  /* To the client first: the bytes may lie in the record (a read landed
   * there), which keeping them frees if it fails. A write that fails ends
   * the client's connection and with it the request (on_abort): the
   * exchange is held until the write returns, then let go. */
  ex->held++;
  int full = shadow_server_body(ex->req, data, len) == 1;
  ex->held--;
  if (!ex->req) {
    finish_if_done(ex);
    return;
  }
  leg_keep_body(&ex->primary, data, len);
  /* The client is not keeping up: stop reading the primary until it has
   * taken what is queued (primary_writable). */
  if (full && !ex->primary_paused) {
    ex->primary_paused = 1;
    shadow_upstream_leg_pause(ex->primary.up);
  }
}

static size_t primary_body_room(void *ud, size_t want, char **at) {
  exchange_t *ex = ud;
  return leg_body_room(&ex->primary, want, at);
}

static void primary_read_end(void *ud) {
  exchange_t *ex = ud;
  if (ex->req) shadow_server_flush(ex->req);
}

static void count_primary(exchange_t *ex, int err) {
  shadow_dispatcher_t *d = ex->d;
  leg_t *leg = &ex->primary;
  LOCK(d);
  shadow_hist_observe(&d->stats->primary_latency,
                      (double)(leg->last_ns - leg->start_ns) / 1e9);
  if (err != SHADOW_UPSTREAM_OK) d->stats->primary_errors++;
  UNLOCK(d);
}

static void primary_done(void *ud, int err, const shadow_headers_t *trailers,
                         const char *detail) {
  exchange_t *ex = ud;
  if (err == SHADOW_UPSTREAM_OK) leg_keep_trailers(&ex->primary, trailers);
  leg_end(&ex->primary, err);
  count_primary(ex, err);
  if (err == SHADOW_UPSTREAM_OK) {
    if (ex->req) {
      shadow_request_t *req = ex->req;
      ex->req = NULL;
      req->data = NULL;
      shadow_server_end(req, trailers);
    }
    capture_end(ex, err);
    leg_wait(&ex->primary);
  } else {
    capture_end(ex, err);
    drop_pair(ex, "primary_error");
    if (ex->req && !shadow_server_head_sent(ex->req)) {
      if (err == SHADOW_UPSTREAM_TIMEOUT) {
        respond_error(ex, 504, "primary timed out");
      } else if (err == SHADOW_UPSTREAM_CANCELED) {
        respond_error(ex, 503, "shutting down");
      } else {
        char what[160];
        snprintf(what, sizeof(what), "primary failed: %s%s%s",
                 shadow_upstream_err_name(err), detail ? ": " : "",
                 detail ? detail : "");
        respond_error(ex, 502, what);
      }
    } else {
      /* The head went out already: like nginx, end the client's
       * connection, so a cut body is not taken for a whole one. */
      if (ex->req) {
        LOCK(ex->d);
        ex->d->stats->responses_cut++;
        UNLOCK(ex->d);
      }
      release_request(ex, 0);
    }
  }
  finish_if_done(ex);
}

/* The streamed request body may go on to the primary. */
static void primary_drain(void *ud) {
  exchange_t *ex = ud;
  if (ex->req) shadow_server_resume_body(ex->req);
}

static const shadow_upstream_handler_t primary_handler = {
    primary_interim, primary_head,  primary_body,     primary_read_end,
    primary_done,    primary_drain, primary_body_room};

/* --- the shadow legs: candidate and secondary ---------------------------- */

static void shadow_leg_head(void *ud, int status, shadow_headers_t *h,
                            int64_t content_length) {
  leg_keep_head(ud, status, h, content_length);
}

static void shadow_leg_body(void *ud, const char *data, size_t len) {
  leg_keep_body(ud, data, len);
}

static size_t shadow_leg_body_room(void *ud, size_t want, char **at) {
  return leg_body_room(ud, want, at);
}

/* A shadow leg has ended, one way or another: its slot goes back, its
 * breaker and the counters hear how it went. */
static void shadow_leg_ended(leg_t *leg, int err) {
  exchange_t *ex = leg->ex;
  shadow_dispatcher_t *d = ex->d;
  leg_end(leg, err);
  shadow_leg_outcome_t outcome = err == SHADOW_UPSTREAM_OK ? SHADOW_LEG_OK
                                 : err == SHADOW_UPSTREAM_CANCELED
                                     ? SHADOW_LEG_DROPPED
                                     : SHADOW_LEG_FAILED;
  if (leg->admitted) {
    leg->admitted = 0;
    shadow_admission_leave(d->sh, leg->gate, leg->probe, outcome,
                           uv_now(d->loop));
  }
  int candidate = leg->gate == SHADOW_GATE_CANDIDATE;
  LOCK(d);
  if (err == SHADOW_UPSTREAM_OK) {
    if (candidate)
      shadow_hist_observe(&d->stats->candidate_latency,
                          (double)(leg->last_ns - leg->start_ns) / 1e9);
  } else {
    const char *why = shadow_upstream_err_name(err);
    shadow_counters_add(candidate ? d->stats->candidate_errors
                                  : d->stats->secondary_errors,
                        why, strlen(why), 1);
  }
  UNLOCK(d);
}

static void shadow_leg_done(void *ud, int err, const shadow_headers_t *trailers,
                            const char *detail) {
  leg_t *leg = ud;
  if (err == SHADOW_UPSTREAM_OK) leg_keep_trailers(leg, trailers);
  shadow_leg_ended(leg, err);
  leg_wait(leg);
  finish_if_done(leg->ex);
}

static const shadow_upstream_handler_t shadow_leg_handler = {
    NULL, shadow_leg_head,     shadow_leg_body, NULL, shadow_leg_done,
    NULL, shadow_leg_body_room};

/* Abandons a shadow leg that has not ended (the client went away, or the
 * dispatcher closes): its slot goes back without a verdict. */
static void shadow_leg_cancel(leg_t *leg) {
  if (leg->state != LEG_RUNNING) return;
  if (leg->up) {
    shadow_upstream_leg_abort(leg->up);
    leg->up = NULL;
  }
  leg_end(leg, SHADOW_UPSTREAM_CANCELED);
  if (leg->admitted) {
    leg->admitted = 0;
    shadow_admission_leave(leg->ex->d->sh, leg->gate, leg->probe,
                           SHADOW_LEG_DROPPED, uv_now(leg->ex->d->loop));
  }
}

/* --- in-process (Lua) backends ------------------------------------------ */

/* Calls a Lua backend with the request's Lua view; the record goes to
 * leg->rec (a primary's too: the dispatcher then answers from it). */
static int call_lua_backend(exchange_t *ex, leg_t *leg, int fn_ref, int lreq) {
  char err[160];
  leg->start_ns = uv_hrtime();
  leg->state = LEG_RUNNING;
  shadow_record_t *res = shadow_record_new();
  int rc = res ? shadow_script_call_backend(ex->epoch->gen, fn_ref, lreq, res,
                                            err, sizeof(err))
               : -1;
  leg->first_ns = uv_hrtime();
  shadow_record_free(leg->rec);
  leg->rec = NULL;
  if (rc) {
    shadow_record_free(res);
    leg_end(leg, SHADOW_UPSTREAM_BAD_RESPONSE);
    return -1;
  }
  leg->rec = res;
  leg->status = res->status;
  leg_end(leg, SHADOW_UPSTREAM_OK);
  return 0;
}

/* Lua shadow legs run from the loop's idle phase, after the client's
 * response has been written. The candidate gets the rewritten request,
 * the secondary (a copy of the primary) the client's. */
static void run_lua_leg(shadow_task_t *t, int canceled) {
  leg_t *leg = (leg_t *)(void *)((char *)t - offsetof(leg_t, task));
  exchange_t *ex = leg->ex;
  const shadow_config_t *cfg = ex->epoch->cfg;
  if (canceled) {
    shadow_leg_cancel(leg);
  } else {
    int candidate = leg->gate == SHADOW_GATE_CANDIDATE;
    int rc = call_lua_backend(
        ex, leg, candidate ? cfg->candidate.lua_ref : cfg->secondary.lua_ref,
        candidate ? ex->cand_lreq : ex->lreq);
    shadow_leg_ended(leg,
                     rc ? SHADOW_UPSTREAM_BAD_RESPONSE : SHADOW_UPSTREAM_OK);
  }
  finish_if_done(ex);
}

static void answer_from_lua(exchange_t *ex) {
  const shadow_config_t *cfg = ex->epoch->cfg;
  open_lreq(ex);
  int rc = call_lua_backend(ex, &ex->primary, cfg->primary.lua_ref, ex->lreq);
  count_primary(ex, rc ? SHADOW_UPSTREAM_BAD_RESPONSE : SHADOW_UPSTREAM_OK);
  if (rc) {
    capture_end(ex, SHADOW_UPSTREAM_BAD_RESPONSE);
    drop_pair(ex, "primary_error");
    respond_error(ex, 502, "primary failed: bad_response");
    return;
  }
  shadow_record_t *r = ex->primary.rec;
  shadow_request_t *req = ex->req;
  ex->req = NULL;
  req->data = NULL;
  shadow_server_respond(req, r->status, &r->headers, r->body.data, r->body.len);
  capture_end(ex, SHADOW_UPSTREAM_OK);
  /* The record is kept only when there is something to compare it with. */
  if (!ex->sampled && ex->primary.rec) {
    shadow_record_free(r);
    ex->primary.rec = NULL;
  }
}

/* --- the candidate's start ---------------------------------------------- */

/* Names a client may not send on: x-shadow-request is shadowd's own mark,
 * which only the candidate gets, from shadowd. */
static const char *const reserved_headers[] = {"x-shadow-request", NULL};

/* The headers a leg of this request forwards, into d->fwd: the same rule
 * for both legs (http/forward.c), from the client's headers or the
 * rewritten ones. */
static int forward(exchange_t *ex, const shadow_headers_t *in) {
  shadow_dispatcher_t *d = ex->d;
  int client = in == &ex->req->headers;
  if (client && d->fwd_of == ex) {
    /* The client's head does not change once parsed: what the last leg
     * forwarded is what this one forwards, less the lines it added. */
    shadow_headers_truncate(&d->fwd, d->fwd_lines);
    return 0;
  }
  d->fwd_of = NULL;
  shadow_forward_t f = {
      .peer = ex->req->peer,
      .proto = !ex->epoch->cfg->forwarded ? NULL
               : ex->req->tls             ? "https"
                                          : "http",
      .reserved = reserved_headers,
  };
  int rc = shadow_forward_headers(in, &f, &d->fwd);
  if (rc == 0 && client) {
    d->fwd_of = ex;
    d->fwd_lines = d->fwd.n;
  }
  return rc;
}

/* Whether a rewritten request reads as the client parser would have let
 * it in: a token method, an origin-form target without control bytes or
 * spaces, valid header lines. */
static int rewrite_valid(const shadow_buf_t *m, const shadow_buf_t *t,
                         const shadow_headers_t *h) {
  if (!m->data || !t->data || !shadow_request_method_valid(m->data, m->len) ||
      !shadow_request_target_valid(t->data, t->len))
    return 0;
  for (size_t i = 0; i < h->n; i++)
    if (!shadow_headers_line_valid(h, i)) return 0;
  return 1;
}

/* Starts a shadow leg over HTTP: the candidate with the rewritten request
 * when there is one, the secondary always with the client's. */
static int start_http_leg(exchange_t *ex, leg_t *leg, int rewritten) {
  shadow_dispatcher_t *d = ex->d;
  shadow_gen_t *g = ex->epoch->gen;
  shadow_upstream_t *up = shadow_backend_upstream(
      leg->gate == SHADOW_GATE_CANDIDATE ? ex->epoch->candidate
                                         : ex->epoch->secondary);
  shadow_buf_t m = SHADOW_BUF_INIT, t = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
  shadow_upstream_request_t r = {0};
  int rc = 0;
  shadow_headers_clear(&d->rewritten);
  if (rewritten) {
    if (shadow_script_req_read(g, ex->cand_lreq, &ex->req->headers, &m, &t,
                               &d->rewritten, &b) != 0)
      rc = -EINVAL;
    r.method = m.data;
    r.target = t.data;
    r.target_len = t.len;
    r.body = b.data;
    r.body_len = b.len;
  } else {
    r.method = ex->req->method;
    r.target = ex->target.data;
    r.target_len = ex->target.len;
    r.body = ex->body.data;
    r.body_len = ex->body.len;
  }
  /* What the hook wrote must pass the rules a client's request passes:
   * anything else is the hook's error, never sent. */
  if (rc == 0 && rewritten && !rewrite_valid(&m, &t, &d->rewritten)) {
    uint64_t now = uv_now(d->loop);
    if (!d->rewrite_warned_ms || now - d->rewrite_warned_ms >= 1000) {
      /* Once a second at most: a client can make it happen every time. */
      shadow_log_warn("script: rewrite hook failed: it made a request the "
                      "client parser refuses (method, path or header)");
      d->rewrite_warned_ms = now;
    }
    on_script_error(d, SHADOW_HOOK_REWRITE,
                    "rewrite made a request the client parser refuses "
                    "(method, path or header)");
    rc = -EINVAL;
  }
  if (rc == 0) rc = forward(ex, rewritten ? &d->rewritten : &ex->req->headers);
  /* A shadow leg is told it is one, so it can skip side effects. */
  if (rc == 0)
    rc = shadow_headers_add_checked(&d->fwd, "x-shadow-request", 16, "1", 1);
  r.headers = &d->fwd;
  /* A shadow leg never outlives its deadline, whatever its backend does
   * (an endless body would hold the slot for good). */
  r.total_timeout_ms = leg->gate == SHADOW_GATE_CANDIDATE
                           ? ex->epoch->cfg->candidate.total_timeout_ms
                           : ex->epoch->cfg->secondary.total_timeout_ms;
  leg->start_ns = uv_hrtime();
  if (rc == 0)
    rc = shadow_upstream_start(up, &r, &shadow_leg_handler, leg, &leg->up);
  shadow_buf_free(&m);
  shadow_buf_free(&t);
  shadow_buf_free(&b);
  return rc;
}

/* Runs the policy once the request body is complete, and starts the
 * candidate when it says so. */
/* Starts the secondary leg of a mirrored request, when the policy chose
 * it: behind its own gate, with the client's request. A secondary that
 * cannot go costs the pair nothing but its noise; it is counted apart. */
static void start_secondary(exchange_t *ex) {
  shadow_dispatcher_t *d = ex->d;
  const shadow_config_t *cfg = ex->epoch->cfg;
  leg_t *leg = &ex->secondary;
  const char *why;
  /* Its request, body included, is one more copy. */
  if (cfg->secondary.kind == SHADOW_BACKEND_HTTP &&
      budget_take(ex, ex->body.len, &ex->charged)) {
    LOCK(d);
    shadow_counters_add(d->stats->secondary_errors, "memory", 6, 1);
    UNLOCK(d);
    return;
  }
  if (!shadow_admission_enter(d->sh, SHADOW_GATE_SECONDARY,
                              cfg->max_inflight_shadow, uv_now(d->loop),
                              &leg->probe, &why)) {
    LOCK(d);
    shadow_counters_add(d->stats->secondary_errors, why, strlen(why), 1);
    UNLOCK(d);
    return;
  }
  leg->admitted = 1;
  leg->rec = shadow_record_new();
  leg->state = LEG_RUNNING;
  if (cfg->secondary.kind == SHADOW_BACKEND_LUA) {
    shadow_deferred_push(&d->deferred, &leg->task, run_lua_leg);
    return;
  }
  if (start_http_leg(ex, leg, 0) == 0) return;
  leg->state = LEG_NONE;
  leg->admitted = 0;
  shadow_admission_leave(d->sh, SHADOW_GATE_SECONDARY, leg->probe,
                         SHADOW_LEG_FAILED, uv_now(d->loop));
  LOCK(d);
  shadow_counters_add(d->stats->secondary_errors, "send", 4, 1);
  UNLOCK(d);
}

/* Runs the policy once the request body is complete, and starts the
 * shadow legs when it says so. */
static void decide(exchange_t *ex) {
  shadow_dispatcher_t *d = ex->d;
  shadow_gen_t *g = ex->epoch->gen;
  const shadow_config_t *cfg = ex->epoch->cfg;
  leg_t *leg = &ex->candidate;
  if (ex->decided || !ex->req) return;
  ex->decided = 1;
  if (!ex->maybe) return;
  if (lreq_needed(ex, 0)) open_lreq(ex);
  shadow_policy_decide(g, ex->req, ex->lreq, &ex->dec);
  if (ex->dec.why != SHADOW_POLICY_MIRROR) {
    drop_pair(ex, NULL);
    return;
  }
  /* Chosen by the policy; from here on a request that is not mirrored
   * after all is counted as skipped, with the reason. */
  /* The candidate's request, body included, is one more copy. */
  if (!ex->body_over && cfg->candidate.kind == SHADOW_BACKEND_HTTP &&
      budget_take(ex, ex->body.len, &ex->charged))
    body_drop(ex, 1);
  if (ex->body_over) {
    /* A gRPC request body is the client's stream (client-streaming and
     * bidi calls): one that does not end within mirror_body_bytes is
     * skipped as a stream, not as an oversized body. */
    skip(d, ex->body_memory                  ? "memory"
            : shadow_policy_is_grpc(ex->req) ? "streaming"
                                             : "body_too_large");
    drop_pair(ex, NULL);
    return;
  }
  const char *why;
  if (!shadow_admission_enter(d->sh, SHADOW_GATE_CANDIDATE,
                              cfg->max_inflight_shadow, uv_now(d->loop),
                              &leg->probe, &why)) {
    skip(d, why);
    drop_pair(ex, NULL);
    return;
  }
  shadow_policy_route(g, ex->req, ex->lreq, &ex->route);
  ex->sampled = 1;
  LOCK(d);
  d->stats->sampled++;
  shadow_route_stats_t *rs =
      shadow_stats_route(d->stats, ex->route.data, ex->route.len);
  if (rs) rs->sampled++;
  UNLOCK(d);
  leg->admitted = 1;
  shadow_buf_puts(&ex->method, ex->req->method);
  shadow_buf_append(&ex->target, ex->req->target.data, ex->req->target.len);
  ex->cand_lreq = ex->lreq;
  int rewritten = 0;
  if (shadow_gen_has_hook(g, SHADOW_HOOK_REWRITE)) {
    if (shadow_script_rewrite(g, ex->lreq, &ex->cand_lreq) != 0) {
      ex->cand_lreq = ex->lreq;
      leg->admitted = 0;
      shadow_admission_leave(d->sh, SHADOW_GATE_CANDIDATE, leg->probe,
                             SHADOW_LEG_DROPPED, uv_now(d->loop));
      drop_pair(ex, "rewrite");
      return;
    }
    rewritten = 1;
  }
  leg->rec = shadow_record_new();
  leg->state = LEG_RUNNING;
  if (cfg->candidate.kind == SHADOW_BACKEND_LUA) {
    shadow_deferred_push(&d->deferred, &leg->task, run_lua_leg);
    if (ex->dec.secondary) start_secondary(ex);
    return;
  }
  int rc = start_http_leg(ex, leg, rewritten);
  if (rc == 0) {
    if (ex->dec.secondary) start_secondary(ex);
    return;
  }
  /* The leg never started: no callback will come. A request the rewrite
   * made unsendable is the script's fault, not the candidate's. */
  leg->state = LEG_NONE;
  leg->admitted = 0;
  shadow_admission_leave(d->sh, SHADOW_GATE_CANDIDATE, leg->probe,
                         rc == -EINVAL && rewritten ? SHADOW_LEG_DROPPED
                                                    : SHADOW_LEG_FAILED,
                         uv_now(d->loop));
  if (rc == -EINVAL && rewritten) {
    drop_pair(ex, "rewrite");
  } else {
    LOCK(d);
    shadow_counters_add(d->stats->candidate_errors, "send", 4, 1);
    UNLOCK(d);
    drop_pair(ex, NULL);
  }
}

/* --- the request path --------------------------------------------------- */

static int needs_body_copy(const exchange_t *ex) {
  return ex->maybe || ex->cap.maybe ||
         ex->epoch->cfg->primary.kind == SHADOW_BACKEND_LUA;
}

/* Keeps a copy of request body bytes for the candidate (and the hooks),
 * up to mirror_body_bytes, or for capture alone up to what it records
 * (capture.body_bytes), and within the copy budget. */
static void copy_body(exchange_t *ex, const char *data, size_t len) {
  if (!needs_body_copy(ex) || ex->body_over || !len) return;
  const shadow_config_t *cfg = ex->epoch->cfg;
  uint64_t cap = ex->maybe || cfg->primary.kind == SHADOW_BACKEND_LUA
                     ? cfg->limits.mirror_body_bytes
                     : cfg->capture.body_bytes;
  if (ex->body.len + len > cap) {
    body_drop(ex, 0);
    return;
  }
  /* A declared length is taken whole at the first bytes: one allocation,
   * charged once, instead of doublings that each hold old and new. */
  int64_t cl = ex->req ? ex->req->content_length : -1;
  size_t need = ex->body.len + len;
  int whole =
      !ex->body.cap && cl > 0 && (uint64_t)cl <= cap && (uint64_t)cl >= need;
  if (whole) need = (size_t)cl;
  if (budget_body(ex, need, whole)) {
    body_drop(ex, 1);
    return;
  }
  if (whole && shadow_buf_reserve_exact(&ex->body, need - ex->body.len)) {
    body_drop(ex, 0);
    return;
  }
  if (shadow_buf_append(&ex->body, data, len)) body_drop(ex, 0);
}

static void start_primary(exchange_t *ex) {
  shadow_request_t *req = ex->req;
  shadow_upstream_t *up = shadow_backend_upstream(ex->epoch->primary);
  int rc = forward(ex, &req->headers);
  const shadow_header_t *upgrade =
      req->upgrade ? shadow_headers_find(&req->headers, "upgrade") : NULL;
  shadow_upstream_request_t r = {
      .upgrade = upgrade ? upgrade->value : NULL,
      .method = req->method,
      .target = req->target.data,
      .target_len = req->target.len,
      .headers = &ex->d->fwd,
      .body = req->body.data,
      .body_len = req->body.len,
      .body_more = !req->body_complete,
      .content_length = req->content_length,
  };
  ex->primary.start_ns = uv_hrtime();
  ex->primary.state = LEG_RUNNING;
  if (rc ||
      shadow_upstream_start(up, &r, &primary_handler, ex, &ex->primary.up)) {
    leg_end(&ex->primary, SHADOW_UPSTREAM_BAD_RESPONSE);
    count_primary(ex, SHADOW_UPSTREAM_BAD_RESPONSE);
    drop_pair(ex, "primary_error");
    respond_error(ex, 502, "primary failed: bad_request");
  }
}

/* The request body is complete: what waited for it goes on. */
static void body_complete(exchange_t *ex) {
  const shadow_config_t *cfg = ex->epoch->cfg;
  ex->body_done = 1;
  decide(ex);
  capture_decide(ex);
  if (cfg->primary.kind == SHADOW_BACKEND_LUA && ex->req) {
    if (ex->body_over) {
      /* An in-process backend gets whole bodies, so there is a cap. */
      respond_error(ex, 413, "payload too large");
      ex->primary.state = LEG_FAILED;
    } else {
      answer_from_lua(ex);
    }
  }
}

/* An upgrade takes one of limits.max_tunnels (all workers) from its
 * request until its exchange ends, so a burst of handshakes cannot pass
 * the cap while their 101s are on the way; 1 when none is left. */
static int tunnel_refused(exchange_t *ex) {
  shadow_dispatcher_t *d = ex->d;
  size_t cap = ex->epoch->cfg->limits.max_tunnels;
  LOCK(d);
  int over = cap && cap != SHADOW_LIMIT_AUTO && d->sh->upgrades >= cap;
  if (over)
    d->stats->tunnels_rejected++;
  else
    d->sh->upgrades++;
  UNLOCK(d);
  ex->upgrade_slot = !over;
  return over;
}

static void on_request(shadow_request_t *req, void *ud) {
  shadow_dispatcher_t *d = ud;
  exchange_t *ex = exchange_new(d, req);
  if (!ex) {
    shadow_headers_t none = SHADOW_HEADERS_INIT;
    shadow_server_respond(req, 503, &none, NULL, 0);
    return;
  }
  const shadow_config_t *cfg = ex->epoch->cfg;
  LOCK(d);
  d->stats->requests++;
  UNLOCK(d);
  ex->maybe = shadow_policy_may_mirror(cfg, req->method_id);
  if (req->upgrade && tunnel_refused(ex)) {
    respond_error(ex, 503, "too many tunnels");
    finish_if_done(ex);
    return;
  }
  if (req->upgrade && ex->maybe) {
    /* An upgrade becomes a tunnel to the primary alone: what flows in it
     * is no request-response pair to compare. */
    ex->maybe = 0;
    skip(d, "upgrade");
  }
  /* The primary's answer is kept until the policy has spoken: with a
   * streamed body it may start before the body (and the policy) is in. */
  if (ex->maybe) ex->primary.rec = shadow_record_new();
  /* Capture may want it too, and more of its body. */
  ex->cap.maybe = cfg->capture.file && !req->upgrade && req->method_id >= 0 &&
                  req->method_id < 64 &&
                  (cfg->capture.methods & (1ull << req->method_id));
  if (ex->cap.maybe) {
    ex->primary.keep = shadow_capture_keep(cfg);
    if (!ex->primary.rec) ex->primary.rec = shadow_record_new();
  }
  copy_body(ex, req->body.data, req->body.len);
  if (cfg->primary.kind == SHADOW_BACKEND_HTTP) start_primary(ex);
  if (req->body_complete) body_complete(ex);
  finish_if_done(ex);
}

static void on_body(shadow_request_t *req, const char *data, size_t len) {
  exchange_t *ex = req->data;
  if (!ex) return;
  copy_body(ex, data, len);
  if (ex->primary.up &&
      shadow_upstream_leg_body(ex->primary.up, data, len) == 1)
    shadow_server_pause_body(req); /* until primary_drain */
}

static void on_body_end(shadow_request_t *req) {
  exchange_t *ex = req->data;
  if (!ex) return;
  if (ex->primary.up) shadow_upstream_leg_body_end(ex->primary.up);
  body_complete(ex);
  finish_if_done(ex);
}

static void on_writable(shadow_request_t *req) {
  exchange_t *ex = req->data;
  if (!ex || !ex->primary_paused) return;
  ex->primary_paused = 0;
  shadow_upstream_leg_resume(ex->primary.up);
}

/* The client cannot be answered any more: it went away, its body broke,
 * or the server is closing. Everything the exchange still runs stops. */
static void on_abort(shadow_request_t *req, int why) {
  exchange_t *ex = req->data;
  if (!ex) return;
  if (ex->primary.up) {
    shadow_upstream_leg_abort(ex->primary.up);
    ex->primary.up = NULL;
    leg_end(&ex->primary, SHADOW_UPSTREAM_CANCELED);
  }
  if (ex->primary.state == LEG_RUNNING) ex->primary.state = LEG_FAILED;
  if (ex->candidate.state == LEG_RUNNING && ex->candidate.up)
    shadow_leg_cancel(&ex->candidate);
  if (ex->secondary.state == LEG_RUNNING && ex->secondary.up)
    shadow_leg_cancel(&ex->secondary);
  if (ex->cap.wanted) shadow_capture_skip(ex->d->sh, "client_abort");
  ex->cap.wanted = 0;
  drop_pair(ex, why == SHADOW_ABORT_CLIENT || why == SHADOW_ABORT_CLOSE
                    ? "client_abort"
                    : NULL);
  release_request(ex, 1);
  finish_if_done(ex);
}

/* What a leg showed for the per-route views: its status, -1 when it
 * failed, 0 when it did not run or was cancelled (nothing to judge). */
static int leg_outcome(const leg_t *leg) {
  if (leg->state == LEG_DONE) return leg->status;
  if (leg->state == LEG_FAILED && leg->err != SHADOW_UPSTREAM_CANCELED)
    return -1;
  return 0;
}

/* Counts a sampled exchange's statuses and latencies for its route. */
static void observe(exchange_t *ex) {
  const leg_t *p = &ex->primary, *c = &ex->candidate;
  shadow_exchange_obs_t o = {
      .primary_status = leg_outcome(p),
      .candidate_status = leg_outcome(c),
      .ms = {-1, -1, -1, -1},
  };
  if (p->state == LEG_DONE) {
    o.ms[SHADOW_LAT_PRIMARY_FIRST] = ms_between(p->start_ns, p->first_ns);
    o.ms[SHADOW_LAT_PRIMARY_LAST] = ms_between(p->start_ns, p->last_ns);
  }
  if (c->state == LEG_DONE) {
    o.ms[SHADOW_LAT_CANDIDATE_FIRST] = ms_between(c->start_ns, c->first_ns);
    o.ms[SHADOW_LAT_CANDIDATE_LAST] = ms_between(c->start_ns, c->last_ns);
  }
  shadow_dispatcher_t *d = ex->d;
  LOCK(d);
  shadow_stats_observe(
      d->stats, shadow_stats_route(d->stats, ex->route.data, ex->route.len),
      &o);
  UNLOCK(d);
}

static void finish_if_done(exchange_t *ex) {
  if (ex->held || ex->req || legs_running(ex)) return;
  if (ex->sampled) observe(ex);
  if (!ex->skipped && ex->sampled && ex->primary.state == LEG_DONE &&
      ex->candidate.state == LEG_DONE && ex->primary.rec && ex->candidate.rec) {
    shadow_pair_t p = {
        .gen = ex->epoch->gen,
        .lreq = ex->lreq,
        .route = ex->route.data,
        .method = ex->method.data,
        .target = ex->target.data,
        .key = ex->dec.has_key ? ex->dec.key.data : NULL,
        .primary_ms = ms_between(ex->primary.start_ns, ex->primary.last_ns),
        .candidate_ms =
            ms_between(ex->candidate.start_ns, ex->candidate.last_ns),
        .primary_first_ms =
            ms_between(ex->primary.start_ns, ex->primary.first_ns),
        .candidate_first_ms =
            ms_between(ex->candidate.start_ns, ex->candidate.first_ns),
    };
    /* The secondary's answer, when it came whole, tells noise apart. */
    shadow_record_t *secondary =
        ex->secondary.state == LEG_DONE ? ex->secondary.rec : NULL;
    shadow_compare(&ex->d->cmp, &p, ex->primary.rec, ex->candidate.rec,
                   secondary);
  }
  exchange_free(ex);
}

/* --- lifecycle ---------------------------------------------------------- */

static void after_deferred(void *ud) {
  shadow_dispatcher_t *d = ud;
  /* Close the backends no generation uses any more. */
  if (!d->closing) shadow_backends_sweep(d->backends);
}

/* A client turned away at max_connections or by an accept error: counted
 * each time, logged once per burst (the server says when one begins). */
static void on_refuse(void *ud, int err, int first) {
  shadow_dispatcher_t *d = ud;
  LOCK(d);
  d->stats->connections_rejected++;
  UNLOCK(d);
  if (!first) return;
  if (err == SHADOW_REFUSE_FDS)
    shadow_log_warn("file descriptors running short (RLIMIT_NOFILE): new "
                    "clients get 503 until connections close (see "
                    "shadow_connections_rejected_total)");
  else if (err)
    shadow_log_warn("accepting a client failed: %s; new clients are closed "
                    "until descriptors free up (see "
                    "shadow_connections_rejected_total)",
                    uv_strerror(err));
  else
    shadow_log_warn("at limits.max_connections (%zu in this worker): new "
                    "clients get 503 until connections close (see "
                    "shadow_connections_rejected_total)",
                    d->max_conns);
}

/* An HTTP/2 client's bad input, answered by the server: counted. */
static void on_h2_error(void *ud, const char *reason) {
  shadow_dispatcher_t *d = ud;
  LOCK(d);
  shadow_counters_add(d->stats->h2_errors, reason, strlen(reason), 1);
  UNLOCK(d);
}

static const shadow_server_handler_t handler_template = {
    on_request, on_body, on_body_end, on_writable,
    on_abort,   NULL,    on_refuse,   on_h2_error};

/* The listener's options for cfg: limits, SO_REUSEPORT under workers, and
 * a TLS context read from the certificate files now (so a reload re-reads
 * them). 0, or a negative code and *err. The caller drops o->tls. */
static int server_opts(shadow_dispatcher_t *d, const shadow_config_t *cfg,
                       shadow_server_opts_t *o, char **err) {
  shadow_limits_server_opts(&cfg->limits, o);
  /* Each worker listens on its own: the cap is shared out between them. */
  size_t loops = d->stats->nloops ? d->stats->nloops : 1;
  if (o->max_connections)
    o->max_connections = (o->max_connections + loops - 1) / loops;
  d->max_conns = o->max_connections;
  o->reuse_port = d->sh->threaded;
  o->tls = NULL;
  if (!cfg->listen_cert_file) return 0;
  return shadow_tls_server_ctx(cfg->listen_cert_file, cfg->listen_key_file,
                               &o->tls, err);
}

int shadow_dispatcher_new(uv_loop_t *loop, shadow_gen_t *gen,
                          shadow_shared_t *sh, shadow_dispatcher_t **out,
                          char **err) {
  const shadow_config_t *cfg = shadow_gen_config(gen);
  shadow_dispatcher_t *d = calloc(1, sizeof(*d));
  if (!d) return -ENOMEM;
  d->loop = loop;
  d->sh = sh;
  d->stats = sh->stats;
  shadow_comparator_init(&d->cmp, sh);
  shadow_deferred_init(loop, &d->deferred, after_deferred, d);
  d->handles_open = 1;
  d->backends = shadow_backends_new(loop);
  int rc = d->backends ? epoch_start(d, gen, &d->epoch, err) : -ENOMEM;
  shadow_server_opts_t so = {0};
  if (rc == 0) rc = server_opts(d, cfg, &so, err);
  shadow_server_handler_t h = handler_template;
  h.ud = d;
  if (rc == 0)
    rc = shadow_server_listen(loop, cfg->listen, &so, &h, &d->server, err);
  shadow_tls_ctx_unref(so.tls); /* the server holds its own */
  if (rc) {
    shadow_dispatcher_close(d);
    return rc;
  }
  shadow_gen_unref(gen); /* the epoch holds it now */
  *out = d;
  return 0;
}

int shadow_dispatcher_reload(shadow_dispatcher_t *d, shadow_gen_t *gen,
                             char **err) {
  const shadow_config_t *cfg = shadow_gen_config(gen);
  shadow_server_opts_t so;
  int rc = server_opts(d, cfg, &so, err);
  if (rc) return rc;
  shadow_epoch_t *e;
  rc = epoch_start(d, gen, &e, err);
  if (rc) {
    shadow_tls_ctx_unref(so.tls);
    return rc;
  }
  shadow_gen_unref(gen); /* the epoch holds it now */
  shadow_server_set_opts(d->server, &so);
  shadow_tls_ctx_unref(so.tls);
  shadow_epoch_t *prev = d->epoch;
  d->epoch = e;
  shadow_epoch_unref(d->backends, prev);
  shadow_deferred_kick(&d->deferred); /* the old backends may be unused */
  return 0;
}

size_t shadow_dispatcher_inflight(const shadow_dispatcher_t *d) {
  return d->server ? shadow_server_inflight(d->server) : 0;
}

static void on_server_drained(void *ud) {
  shadow_dispatcher_t *d = ud;
  void (*done)(void *) = d->drained;
  d->drained = NULL;
  if (done) done(d->drained_ud);
}

void shadow_dispatcher_drain(shadow_dispatcher_t *d, void (*done)(void *ud),
                             void *ud) {
  d->drained = done;
  d->drained_ud = ud;
  if (d->server)
    shadow_server_drain(d->server, on_server_drained, d);
  else
    on_server_drained(d);
}

static void maybe_free_dispatcher(shadow_dispatcher_t *d) {
  if (!d->closing || d->exchanges > 0 || d->handles_open > 0) return;
  shadow_backends_free(d->backends);
  shadow_comparator_free(&d->cmp);
  shadow_headers_free(&d->fwd);
  shadow_headers_free(&d->rewritten);
  shadow_buf_free(&d->capture_line);
  free(d);
}

static void handle_closed(uv_handle_t *h) {
  shadow_dispatcher_t *d = h->data;
  d->handles_open--;
  maybe_free_dispatcher(d);
}

void shadow_dispatcher_close(shadow_dispatcher_t *d) {
  if (d->closing) return;
  d->closing = 1;
  /* Requests in flight are told (on_abort) and let go of their legs. */
  if (d->server) shadow_server_close(d->server);
  d->server = NULL;
  /* Candidate legs still running fail with CANCELED, through the loop. */
  if (d->backends) shadow_backends_close(d->backends);
  shadow_epoch_t *e = d->epoch;
  d->epoch = NULL;
  if (e) shadow_epoch_unref(d->backends, e);
  shadow_deferred_close(&d->deferred, handle_closed);
}
