/* `shadowd replay` (see replay.h): captured exchanges sent again, to a
 * candidate that need not be deployed anywhere but a CI job, and compared
 * with the primary's recorded answers under the same rules as the daemon:
 * redaction, normalize, ignore/arrays/tolerance, and noise.
 *
 * One libuv loop drives the real upstream client with up to --concurrency
 * exchanges in flight; the capture files are read as the exchanges go, so
 * memory holds at most that many whatever the files' size. With
 * --primary, each request also goes to a live primary, as the daemon does
 * it: the candidate is compared with the live answer, and the recorded
 * answer plays the secondary's part: what differs between the two
 * primaries is noise, masked on that request and weighed per field for
 * the verdict (engine/noise.h). --record then writes the live answers as
 * a fresh capture file. */
#include "replay.h"

#include <errno.h>
#include <getopt.h>
#include <llhttp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "caches.h"
#include "capture_line.h"
#include "capture_read.h"
#include "clock.h"
#include "config.h"
#include "divergence.h"
#include "export.h"
#include "field.h"
#include "forward.h"
#include "junit.h"
#include "noise.h"
#include "noise_table.h"
#include "policy.h"
#include "redact.h"
#include "sample.h"
#include "script.h"
#include "stats.h"
#include "upstream.h"
#include "utf8.h"
#include "verdict.h"

/* Bounds on what is kept per route, as the daemon bounds them. */
#define MAX_ROUTES 500
#define MAX_FIELDS 64
#define MAX_SIGNATURES 10000
#define MAX_NOISE_FIELDS 100000
#define TOP_FIELDS 5
/* Failed exchanges named by file:line in the summary. */
#define FAILED_SHOWN 10

typedef struct route_s {
  uint64_t compared, diverged, failed;
  /* Pairs whose two primaries were compared too (--primary): the noise
   * rule's S for every field of the route, as compared is its T. */
  uint64_t noise_compared;
  shadow_counters_t *fields;     /* folded fields of the divergences */
  shadow_counters_t *signatures; /* their sorted field sets */
} route_t;

/* One (route, folded field) for the noise rule, learned as the daemon
 * learns it (engine/noise.h); how many pairs there were is the route's. */
typedef struct noise_field_s {
  shadow_noise_field_t f;
} noise_field_t;

typedef struct replay_s replay_t;
typedef struct job_s job_t;

typedef struct rleg_s {
  job_t *job;
  shadow_upstream_leg_t *up;
  shadow_record_t rec;
  size_t keep;
  uint64_t start_ns, first_ns, last_ns;
  int running, err;
} rleg_t;

struct job_s {
  replay_t *r;
  shadow_capture_entry_t e;
  const char *path;
  uint64_t line;
  int lreq;
  shadow_buf_t route;
  rleg_t cand, prim;
  int legs; /* still running */
  job_t *next;
};

struct replay_s {
  uv_loop_t loop;
  uv_timer_t progress;
  /* Closing the upstreams waits for the loop: never from inside one of
   * their own callbacks. */
  uv_timer_t finish;
  int finish_on;
  int progress_on;
  shadow_gen_t *g; /* NULL without --config */
  shadow_config_t own_cfg;
  const shadow_config_t *cfg;
  shadow_upstream_t *cand_up, *prim_up;
  const char *cand_url, *prim_url;
  int cand_lua;
  double rate;
  size_t concurrency, inflight;
  int quiet;
  shadow_capture_reader_t rd;
  int eof, filling, read_failed;
  job_t *free_jobs;
  /* What happened. */
  uint64_t lines, read, bad, unselected, compared, diverged, failed;
  uint64_t primary_failed, next_id;
  uint64_t start_ns;
  shadow_counters_t *errors; /* candidate leg failures, by reason */
  shadow_counters_t *route_names;
  route_t *routes;
  size_t nroutes;
  shadow_counters_t *noise_names;
  noise_field_t *noise;
  size_t nnoise;
  /* Outputs. */
  FILE *out, *record;
  const char *fixtures;
  shadow_buf_t line, scratch, fp, fc;
  shadow_diff_result_t diff, noise_diff;
  shadow_junit_t *junit;
  /* The first FAILED_SHOWN failed exchanges: text lines for the summary,
   * and JSON objects for --summary. */
  shadow_buf_t failed_text, failed_json;
  size_t failed_shown;
  char **noise_list;
  size_t noise_list_cap;
};

static const char *const reserved_headers[] = {"x-shadow-request", NULL};

static void fill(replay_t *r);

/* --- tables -------------------------------------------------------------- */

/* The position of name in c (added when new; "other" past the bound). */
static long index_of(shadow_counters_t *c, const char *name, size_t len) {
  uint64_t pos;
  shadow_counters_add(c, name, len, 0);
  if (shadow_counters_find(c, name, &pos) ||
      shadow_counters_find(c, "other", &pos))
    return (long)pos;
  return -1;
}

static route_t *route_of(replay_t *r, const char *name, size_t len) {
  long i = index_of(r->route_names, name, len);
  if (i < 0) return NULL;
  if ((size_t)i >= r->nroutes) {
    size_t n = (size_t)i + 1;
    route_t *v = realloc(r->routes, n * sizeof(*v));
    if (!v) return NULL;
    memset(v + r->nroutes, 0, (n - r->nroutes) * sizeof(*v));
    r->routes = v;
    r->nroutes = n;
  }
  route_t *rt = &r->routes[i];
  if (!rt->fields) rt->fields = shadow_counters_new(MAX_FIELDS);
  if (!rt->signatures) rt->signatures = shadow_counters_new(MAX_SIGNATURES);
  return rt->fields && rt->signatures ? rt : NULL;
}

static noise_field_t *noise_of(replay_t *r, const char *route,
                               const char *field, size_t flen) {
  shadow_buf_t k = SHADOW_BUF_INIT;
  long i = -1;
  if (!shadow_buf_puts(&k, route) && !shadow_buf_putc(&k, '\x1f') &&
      !shadow_buf_append(&k, field, flen))
    i = index_of(r->noise_names, k.data, k.len);
  shadow_buf_free(&k);
  if (i < 0) return NULL;
  if ((size_t)i >= r->nnoise) {
    size_t n = (size_t)i + 1;
    noise_field_t *v = realloc(r->noise, n * sizeof(*v));
    if (!v) return NULL;
    memset(v + r->nnoise, 0, (n - r->nnoise) * sizeof(*v));
    r->noise = v;
    r->nnoise = n;
  }
  return &r->noise[i];
}

/* --- the noise rule ------------------------------------------------------ */

typedef struct observe_s {
  replay_t *r;
  const char *route;
  int noise;         /* observing the primaries' diff (else the candidate's) */
  shadow_buf_t seen; /* fields counted for this pair, NUL-separated */
} observe_t;

static int seen_before(observe_t *o, const char *f, size_t n) {
  for (size_t i = 0; i < o->seen.len;) {
    size_t l = strlen(o->seen.data + i);
    if (l == n && memcmp(o->seen.data + i, f, n) == 0) return 1;
    i += l + 1;
  }
  shadow_buf_append(&o->seen, f, n);
  shadow_buf_putc(&o->seen, '\0');
  return 0;
}

/* Learns one difference once per pair, the primaries' (noise) or the
 * candidate's, through the engine's learning step. A field the primaries
 * differ on at several places still widens the mask's range by each. */
static void on_difference(void *ud, const char *field, size_t len,
                          unsigned shape, double delta) {
  observe_t *o = ud;
  noise_field_t *nf = noise_of(o->r, o->route, field, len);
  if (!nf) return;
  int first = !seen_before(o, field, len);
  if (o->noise && first) {
    shadow_noise_learn_secondary(&nf->f, shape, delta);
  } else if (o->noise) {
    nf->f.noise_shapes |= shape;
    if (delta > nf->f.noise_max_delta) nf->f.noise_max_delta = delta;
  } else if (first) {
    shadow_noise_learn_candidate(&nf->f, shape, delta);
  }
}

/* The learned range of a field's number noise, for the mask: what the
 * two primaries have shown of it so far in this run, once they have
 * differed on it often enough (as the daemon's noise table). */
typedef struct envelope_s {
  replay_t *r;
  const char *route;
} envelope_t;

static double learned_max(void *ud, const char *field, size_t len) {
  envelope_t *e = ud;
  noise_field_t *nf = noise_of(e->r, e->route, field, len);
  return nf && nf->f.noise_differed >= SHADOW_NOISE_ENVELOPE_MIN
             ? nf->f.noise_max_delta
             : 0;
}

/* --- legs ---------------------------------------------------------------- */

static void leg_head(void *ud, int status, shadow_headers_t *h,
                     int64_t content_length) {
  rleg_t *leg = ud;
  leg->first_ns = uv_hrtime();
  leg->rec.status = status;
  if (shadow_headers_take(&leg->rec.headers, h))
    leg->err = SHADOW_UPSTREAM_TOO_LARGE;
}

static void leg_body(void *ud, const char *data, size_t len) {
  rleg_t *leg = ud;
  if (shadow_record_body_feed(&leg->rec, data, len, leg->keep))
    leg->err = SHADOW_UPSTREAM_TOO_LARGE;
}

static void job_done(job_t *j);

static void leg_done(void *ud, int err, const shadow_headers_t *trailers,
                     const char *detail) {
  rleg_t *leg = ud;
  leg->up = NULL;
  leg->running = 0;
  leg->last_ns = uv_hrtime();
  if (!leg->err) leg->err = err;
  if (err == SHADOW_UPSTREAM_OK &&
      shadow_record_add_trailers(&leg->rec, trailers))
    leg->err = SHADOW_UPSTREAM_TOO_LARGE; /* out of memory: not compared */
  shadow_record_body_end(&leg->rec);
  if (--leg->job->legs == 0) job_done(leg->job);
}

static const shadow_upstream_handler_t leg_handler = {
    NULL, leg_head, leg_body, NULL, leg_done, NULL, NULL};

/* Sends method/target/headers/body on u for leg; the headers go through
 * the forwarding rule (http/forward.c) with the captured client's address,
 * as the daemon forwards them. 0 or a negative code (no callback). */
static int leg_start(replay_t *r, rleg_t *leg, shadow_upstream_t *u,
                     const char *method, const char *target, size_t tlen,
                     const shadow_headers_t *in, const char *body,
                     size_t body_len, int shadow_mark) {
  const shadow_capture_entry_t *e = &leg->job->e;
  shadow_headers_t fwd = SHADOW_HEADERS_INIT;
  shadow_forward_t f = {
      .peer = e->peer.data ? e->peer.data : "",
      .proto = !r->cfg->forwarded ? NULL
               : e->tls           ? "https"
                                  : "http",
      .reserved = reserved_headers,
  };
  int rc = shadow_forward_headers(in, &f, &fwd) ? -ENOMEM : 0;
  /* The candidate is told it is one, so it can skip side effects. */
  if (rc == 0 && shadow_mark &&
      shadow_headers_add(&fwd, "x-shadow-request", 16, "1", 1))
    rc = -ENOMEM;
  shadow_upstream_request_t req = {
      .method = method,
      .target = target,
      .target_len = tlen,
      .headers = &fwd,
      .body = body,
      .body_len = body_len,
      /* The candidate's leg ends by its deadline, as in the daemon. */
      .total_timeout_ms = shadow_mark ? r->cfg->candidate.total_timeout_ms : 0,
  };
  leg->start_ns = uv_hrtime();
  if (rc == 0) rc = shadow_upstream_start(u, &req, &leg_handler, leg, &leg->up);
  shadow_headers_free(&fwd);
  if (rc == 0) {
    leg->running = 1;
    leg->job->legs++;
  }
  return rc;
}

/* The bytes of a response kept for the comparison: diff_bytes, or all of
 * a recorded body that is longer (so a body redacted whole in the
 * capture can be redacted alike here). */
static size_t keep_for(const replay_t *r, const shadow_record_t *recorded) {
  size_t keep = r->cfg->limits.diff_bytes;
  if (!recorded->body_cut && recorded->body.len > keep)
    keep = recorded->body.len;
  return keep;
}

/* The request the candidate gets: the captured one, or what the rewrite
 * hook makes of it. Starts its leg (or calls a Lua candidate at once). */
static int start_candidate(replay_t *r, job_t *j) {
  shadow_capture_entry_t *e = &j->e;
  rleg_t *leg = &j->cand;
  leg->keep = keep_for(r, &e->response);
  int lreq = j->lreq, rewritten = 0, rc = 0;
  if (r->g && shadow_gen_has_hook(r->g, SHADOW_HOOK_REWRITE)) {
    if (shadow_script_rewrite(r->g, j->lreq, &lreq) != 0) return -EINVAL;
    rewritten = 1;
  }
  if (r->cand_lua) {
    char err[160];
    leg->start_ns = uv_hrtime();
    rc = shadow_script_call_backend(r->g, r->cfg->candidate.lua_ref, lreq,
                                    &leg->rec, err, sizeof(err));
    leg->first_ns = leg->last_ns = uv_hrtime();
    leg->err = rc ? SHADOW_UPSTREAM_BAD_RESPONSE : SHADOW_UPSTREAM_OK;
    rc = 0;
  } else if (rewritten) {
    shadow_buf_t m = SHADOW_BUF_INIT, t = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    shadow_headers_t h = SHADOW_HEADERS_INIT;
    rc = shadow_script_req_read(r->g, lreq, &e->headers, &m, &t, &h, &b);
    if (rc == 0)
      rc = leg_start(r, leg, r->cand_up, m.data, t.data, t.len, &h, b.data,
                     b.len, 1);
    else
      rc = -EINVAL;
    shadow_buf_free(&m);
    shadow_buf_free(&t);
    shadow_buf_free(&b);
    shadow_headers_free(&h);
  } else {
    rc = leg_start(r, leg, r->cand_up, e->method.data, e->target.data,
                   e->target.len, &e->headers, e->body.data, e->body.len, 1);
  }
  if (rewritten && lreq != j->lreq) shadow_script_req_close(r->g, lreq);
  return rc;
}

/* --- one exchange -------------------------------------------------------- */

static job_t *job_get(replay_t *r) {
  job_t *j = r->free_jobs;
  if (j) {
    r->free_jobs = j->next;
  } else {
    j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    shadow_capture_entry_init(&j->e);
    shadow_record_init(&j->cand.rec);
    shadow_record_init(&j->prim.rec);
  }
  j->r = r;
  j->cand.job = j->prim.job = j;
  return j;
}

static void job_put(replay_t *r, job_t *j) {
  if (j->lreq && r->g) shadow_script_req_close(r->g, j->lreq);
  j->lreq = 0;
  shadow_record_clear(&j->cand.rec);
  shadow_record_clear(&j->prim.rec);
  shadow_buf_reset(&j->route);
  j->cand.err = j->prim.err = 0;
  j->cand.running = j->prim.running = 0;
  j->cand.start_ns = j->cand.first_ns = j->cand.last_ns = 0;
  j->prim.start_ns = j->prim.first_ns = j->prim.last_ns = 0;
  j->legs = 0;
  j->next = r->free_jobs;
  r->free_jobs = j;
}

static void job_free(job_t *j) {
  shadow_capture_entry_release(&j->e);
  shadow_record_release(&j->cand.rec);
  shadow_record_release(&j->prim.rec);
  shadow_buf_free(&j->route);
  free(j);
}

/* The captured request as the script host's hooks see it. The request
 * borrows the entry's buffers; it is never released. */
static void request_view(const shadow_capture_entry_t *e, shadow_request_t *q) {
  memset(q, 0, sizeof(*q));
  q->method = llhttp_method_name((llhttp_method_t)e->method_id);
  q->method_id = e->method_id;
  q->target = e->target;
  q->headers = e->headers;
  q->content_length = (int64_t)e->body.len;
  q->body_complete = 1;
  q->tls = e->tls;
  snprintf(q->peer, sizeof(q->peer), "%s", e->peer.data ? e->peer.data : "");
}

/* Whether --rate keeps this exchange: the sticky rule on its key, or on
 * method and target when it has none, so a run picks the same ones each
 * time. */
static int selected(const replay_t *r, const shadow_capture_entry_t *e) {
  if (r->rate >= 1) return 1;
  if (e->has_key) return shadow_sampled(e->key.data, e->key.len, r->rate);
  shadow_buf_t k = SHADOW_BUF_INIT;
  shadow_buf_puts(&k, e->method.data);
  shadow_buf_putc(&k, ' ');
  shadow_buf_append(&k, e->target.data, e->target.len);
  int in = shadow_sampled(k.data, k.len, r->rate);
  shadow_buf_free(&k);
  return in;
}

static int start_job(replay_t *r, job_t *j) {
  shadow_capture_entry_t *e = &j->e;
  shadow_request_t q;
  request_view(e, &q);
  if (r->g) {
    j->lreq = shadow_script_req_open(r->g, &q, e->body.data, e->body.len);
    shadow_policy_route(r->g, &q, j->lreq, &j->route);
  } else if (e->has_route) {
    shadow_buf_append(&j->route, e->route.data, e->route.len);
  } else {
    shadow_policy_default_route_of(&q, &j->route);
  }
  if (!j->route.data) shadow_buf_puts(&j->route, "unknown");
  r->inflight++;
  j->legs = 1; /* held until both legs are started */
  int rc = start_candidate(r, j);
  if (rc) j->cand.err = rc == -EINVAL ? -EINVAL : SHADOW_UPSTREAM_REFUSED;
  if (r->prim_up) {
    j->prim.keep = keep_for(r, &e->response);
    if (leg_start(r, &j->prim, r->prim_up, e->method.data, e->target.data,
                  e->target.len, &e->headers, e->body.data, e->body.len, 0))
      j->prim.err = SHADOW_UPSTREAM_REFUSED;
  }
  if (--j->legs == 0) job_done(j);
  return 0;
}

/* Redacts rec as the capture redacted the recorded response: headers,
 * and a JSON body when the recorded one was kept whole (a cut one is
 * compared by the digest of the bytes as they travelled). */
static int redact_like(const replay_t *r, shadow_record_t *rec,
                       const shadow_record_t *recorded) {
  const shadow_redact_t *rd = r->cfg->redact;
  if (shadow_redact_record(rd, rec)) return -ENOMEM;
  if (recorded->body_cut || rec->body_cut || !rec->body.len ||
      !shadow_redact_pointers(rd) || !shadow_capture_is_json(&rec->headers))
    return 0;
  shadow_buf_t out = SHADOW_BUF_INIT;
  int rc = shadow_redact_json(rd, rec->body.data, rec->body.len, &out);
  if (rc == 1) {
    shadow_buf_free(&rec->body);
    rec->body = out;
    return 0;
  }
  shadow_buf_free(&out);
  return rc == -ENOMEM ? rc : 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The diff's fields folded, sorted, each once, into out (NUL-separated);
 * returns how many. */
static size_t fold_fields(const shadow_diff_result_t *d, shadow_buf_t *out) {
  shadow_buf_reset(out);
  size_t n = d->nfields < 1024 ? d->nfields : 1024;
  if (!n) return 0;
  char **v = calloc(n, sizeof(*v));
  if (!v) return 0;
  const char *f = d->fields.data;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(f);
    char one[1024];
    shadow_field_fold(f, len, one, sizeof(one));
    v[i] = strdup(one);
    f += len + 1;
  }
  qsort(v, n, sizeof(*v), by_name);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] && (i == 0 || !v[i - 1] || strcmp(v[i], v[i - 1]) != 0)) {
      shadow_buf_append(out, v[i], strlen(v[i]) + 1);
      k++;
    }
  }
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
  return k;
}

/* The fields of the primaries' diff, as the record's "noise" list:
 * pointers for body fields, "header:name" and "status" for the rest. */
static const char *const *noise_list(replay_t *r) {
  size_t n = r->noise_diff.parts ? r->noise_diff.nfields : 0;
  if (n + 1 > r->noise_list_cap) {
    char **v = realloc(r->noise_list, (n + 1) * sizeof(*v));
    if (!v) return NULL;
    r->noise_list = v;
    r->noise_list_cap = n + 1;
  }
  const char *f = r->noise_diff.fields.data;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(f);
    r->noise_list[i] =
        (char *)(strncmp(f, "body:", 5) == 0 && len > 5 ? f + 5 : f);
    f += len + 1;
  }
  r->noise_list[n] = NULL;
  return (const char *const *)r->noise_list;
}

static double leg_ms(const rleg_t *l, int first) {
  uint64_t end = first ? l->first_ns : l->last_ns;
  return l->start_ns && end >= l->start_ns ? (double)(end - l->start_ns) / 1e6
                                           : -1;
}

/* Writes the divergence record, with where it came from. */
static void publish(replay_t *r, job_t *j) {
  shadow_capture_entry_t *e = &j->e;
  int live = r->prim_up != NULL;
  shadow_divergence_meta_t m = {
      .id = ++r->next_id,
      .time_ms = shadow_wall_ms(),
      .route = j->route.data,
      .method = e->method.data,
      .path = e->target.data,
      .key = e->has_key ? e->key.data : NULL,
      .primary_ms = live ? leg_ms(&j->prim, 0) : e->total_ms,
      .candidate_ms = leg_ms(&j->cand, 0),
      .primary_first_ms = live ? leg_ms(&j->prim, 1) : e->first_byte_ms,
      .candidate_first_ms = leg_ms(&j->cand, 1),
      .noise = live ? noise_list(r) : NULL,
  };
  shadow_buf_reset(&r->line);
  if (shadow_divergence_format(&r->line, &m, &r->diff) < 0 || !r->line.len)
    return;
  /* Where the exchange came from, before the closing brace. */
  r->line.len--;
  shadow_buf_puts(&r->line, ",\"replay\":{\"file\":");
  shadow_buf_json_string(&r->line, j->path, strlen(j->path), 1024);
  shadow_buf_printf(&r->line, ",\"line\":%llu,\"capture_id\":%llu}}",
                    (unsigned long long)j->line, (unsigned long long)e->id);
  if (r->out) {
    fwrite(r->line.data, 1, r->line.len, r->out);
    fputc('\n', r->out);
  }
  if (r->fixtures) {
    char err[256];
    if (shadow_fixture_write_pair(r->fixtures, m.id, j->route.data,
                                  e->target.data, &r->fp, &r->fc, r->line.data,
                                  r->line.len, err, sizeof(err)) != 0)
      fprintf(stderr, "shadowd replay: --fixtures: %s\n", err);
  }
}

/* What became of an exchange, for --junit and the summary's list of
 * failed exchanges, each named by its capture file and line. */
static void note(replay_t *r, job_t *j, shadow_junit_outcome_t outcome,
                 const char *detail) {
  shadow_capture_entry_t *e = &j->e;
  if (outcome == SHADOW_JUNIT_FAILED && r->failed_shown < FAILED_SHOWN) {
    r->failed_shown++;
    shadow_buf_printf(&r->failed_text, "    %s:%llu: %s ", j->path,
                      (unsigned long long)j->line, e->method.data);
    shadow_utf8_label(&r->failed_text, e->target.data, e->target.len, 200);
    shadow_buf_printf(&r->failed_text, ": %s\n", detail);
    if (r->failed_json.len) shadow_buf_putc(&r->failed_json, ',');
    shadow_buf_puts(&r->failed_json, "{\"file\":");
    shadow_buf_json_string(&r->failed_json, j->path, strlen(j->path), 1024);
    shadow_buf_printf(&r->failed_json,
                      ",\"line\":%llu,\"error\":", (unsigned long long)j->line);
    shadow_buf_json_string(&r->failed_json, detail, strlen(detail), 0);
    shadow_buf_putc(&r->failed_json, '}');
  }
  if (!r->junit) return;
  double ms = leg_ms(&j->cand, 0);
  shadow_junit_case_t c = {
      .route = j->route.data,
      .method = e->method.data,
      .target = e->target.data,
      .target_len = e->target.len,
      .file = j->path,
      .line = j->line,
      .outcome = outcome,
      .detail = detail,
      .seconds = ms > 0 ? ms / 1000 : 0,
  };
  shadow_junit_add(r->junit, &c);
}

static void count_failure(replay_t *r, job_t *j, route_t *rt, int err) {
  const char *why = err == -EINVAL ? "rewrite" : shadow_upstream_err_name(err);
  shadow_counters_add(r->errors, why, strlen(why), 1);
  r->failed++;
  if (rt) rt->failed++;
  note(r, j, SHADOW_JUNIT_FAILED, why);
}

/* The differing fields joined by ", ", for --junit. */
static void fields_joined(const shadow_diff_result_t *d, shadow_buf_t *out) {
  shadow_buf_reset(out);
  const char *f = d->fields.data;
  for (size_t i = 0; i < d->nfields && f; i++, f += strlen(f) + 1) {
    if (i) shadow_buf_puts(out, ", ");
    shadow_buf_puts(out, f);
  }
  shadow_buf_putc(out, '\0');
}

/* Both legs are in: compare, count, publish. */
static void compare(replay_t *r, job_t *j) {
  shadow_capture_entry_t *e = &j->e;
  route_t *rt = route_of(r, j->route.data, j->route.len);
  if (j->cand.err) {
    count_failure(r, j, rt, j->cand.err);
    return;
  }
  int live = r->prim_up != NULL;
  if (live && j->prim.err) {
    /* Nothing to compare the candidate with: not the candidate's fault. */
    r->primary_failed++;
    note(r, j, SHADOW_JUNIT_SKIPPED, "the live primary failed");
    return;
  }
  shadow_record_t *recorded = &e->response;
  shadow_record_t *primary = live ? &j->prim.rec : recorded;
  shadow_record_t *candidate = &j->cand.rec;
  if (redact_like(r, candidate, recorded) ||
      (live && redact_like(r, primary, recorded))) {
    count_failure(r, j, rt, SHADOW_UPSTREAM_BAD_RESPONSE);
    return;
  }
  if (r->fixtures) {
    /* As they were before normalize: `shadowd diff --config` applies it. */
    shadow_fixture_format(&r->fp, primary);
    shadow_fixture_format(&r->fc, candidate);
  }
  if (r->g && shadow_gen_has_hook(r->g, SHADOW_HOOK_NORMALIZE)) {
    shadow_script_normalize(r->g, j->lreq, primary, "primary");
    shadow_script_normalize(r->g, j->lreq, candidate, "candidate");
    if (live) shadow_script_normalize(r->g, j->lreq, recorded, "secondary");
  }
  const shadow_diff_opts_t *o = r->cfg->diff_opts;
  /* The target names the gRPC method whose output type decodes replies. */
  const char *t = j->e.target.data;
  size_t tl = j->e.target.len;
  int parts =
      shadow_diff_records_at(o, t, tl, primary, candidate, &r->diff, NULL);
  int nparts = 0;
  if (parts >= 0 && live)
    nparts = shadow_diff_records_at(o, t, tl, primary, recorded, &r->noise_diff,
                                    NULL);
  else
    r->noise_diff.parts = 0;
  if (parts < 0 || nparts < 0) {
    count_failure(r, j, rt, SHADOW_UPSTREAM_BAD_RESPONSE);
    return;
  }
  r->compared++;
  if (rt) rt->compared++;
  /* The noise rule sees both diffs as they came, before the mask. */
  observe_t ob = {r, j->route.data, 1, SHADOW_BUF_INIT};
  if (live) {
    if (nparts) shadow_noise_observe(&r->noise_diff, on_difference, &ob);
    shadow_buf_reset(&ob.seen);
    ob.noise = 0;
  }
  if (parts) shadow_noise_observe(&r->diff, on_difference, &ob);
  shadow_buf_free(&ob.seen);
  if (live && rt) rt->noise_compared++;
  /* What the two primaries disagree on is not the candidate's doing. Out
   * of memory, the diff stays unmasked: a divergence too many, not one
   * too few. */
  if (live && nparts && parts) {
    envelope_t ev = {r, j->route.data};
    shadow_noise_envelope_t env = {learned_max, &ev};
    shadow_noise_mask(&r->diff, &r->noise_diff, &env);
  }
  parts = (int)r->diff.parts;
  if (!parts) {
    note(r, j, SHADOW_JUNIT_PASSED, NULL);
    return;
  }
  /* As the daemon: a diff whose values cannot be redacted is not
   * published (a normalize hook may have moved a secret). */
  if (shadow_redact_diff(r->cfg->redact, &r->diff) != 0) {
    count_failure(r, j, rt, SHADOW_UPSTREAM_BAD_RESPONSE);
    return;
  }
  r->diverged++;
  shadow_buf_t folded = SHADOW_BUF_INIT;
  size_t nf = fold_fields(&r->diff, &folded);
  if (rt) {
    rt->diverged++;
    shadow_buf_t sig = SHADOW_BUF_INIT;
    for (size_t i = 0, k = 0; k < nf; k++) {
      const char *f = folded.data + i;
      size_t l = strlen(f);
      shadow_counters_add(rt->fields, f, l, 1);
      if (k) shadow_buf_putc(&sig, '\n');
      shadow_buf_append(&sig, f, l);
      i += l + 1;
    }
    if (sig.len) shadow_counters_add(rt->signatures, sig.data, sig.len, 1);
    shadow_buf_free(&sig);
  }
  shadow_buf_free(&folded);
  if (r->junit) {
    fields_joined(&r->diff, &r->scratch);
    note(r, j, SHADOW_JUNIT_DIVERGED, r->scratch.data);
  }
  publish(r, j);
}

static void job_done(job_t *j) {
  replay_t *r = j->r;
  compare(r, j);
  if (r->record && r->prim_up && !j->prim.err) {
    /* The refreshed recording: the same request, today's answer. */
    shadow_capture_exchange_t x = {
        .id = j->e.id,
        .time_ms = shadow_wall_ms() - leg_ms(&j->prim, 0),
        .route = j->route.data,
        .key = j->e.has_key ? j->e.key.data : NULL,
        .method = j->e.method.data,
        .target = j->e.target.data,
        .target_len = j->e.target.len,
        .peer = j->e.peer.data ? j->e.peer.data : "",
        .tls = j->e.tls,
        .headers = &j->e.headers,
        .body = j->e.body.data,
        .body_len = j->e.body.len,
        .response = &j->prim.rec,
        .first_byte_ms = leg_ms(&j->prim, 1),
        .total_ms = leg_ms(&j->prim, 0),
    };
    shadow_buf_reset(&r->scratch);
    if (shadow_capture_format(&r->scratch, &x, r->cfg->redact,
                              r->cfg->capture.body_bytes) == 0) {
      fwrite(r->scratch.data, 1, r->scratch.len, r->record);
      fputc('\n', r->record);
    }
  }
  job_put(r, j);
  r->inflight--;
  fill(r);
}

/* --- the run ------------------------------------------------------------- */

static void close_all(replay_t *r) {
  if (r->finish_on) {
    uv_close((uv_handle_t *)&r->finish, NULL);
    r->finish_on = 0;
  }
  if (r->cand_up) shadow_upstream_close(r->cand_up);
  if (r->prim_up) shadow_upstream_close(r->prim_up);
  r->cand_up = r->prim_up = NULL;
  if (r->progress_on) {
    uv_timer_stop(&r->progress);
    uv_close((uv_handle_t *)&r->progress, NULL);
    r->progress_on = 0;
    fprintf(stderr, "\r\033[K");
  }
}

static void on_finish(uv_timer_t *t) {
  close_all(t->data);
}

/* A line longer than --max-line-bytes was read past, not held. */
static void report_long_line(const shadow_capture_reader_t *rd, const char *cmd,
                             size_t len) {
  fprintf(stderr,
          "%s:%llu: a line of %zu bytes, longer than --max-line-bytes %zu "
          "(shadowd %s --max-line-bytes N reads it): skipped\n",
          rd->path, (unsigned long long)rd->line, len,
          rd->max_line ? rd->max_line : (size_t)SHADOW_CAPTURE_MAX_LINE, cmd);
}

static void fill(replay_t *r) {
  if (r->filling) return;
  r->filling = 1;
  while (!r->eof && r->inflight < r->concurrency) {
    const char *line;
    size_t len;
    char *err = NULL;
    int rc = shadow_capture_reader_next(&r->rd, &line, &len, &err);
    if (rc <= 0) {
      if (rc < 0) {
        fprintf(stderr, "shadowd replay: %s\n", err);
        free(err);
        r->read_failed = 1;
      }
      r->eof = 1;
      break;
    }
    if (rc == 2) {
      report_long_line(&r->rd, "replay", len);
      r->lines++;
      r->bad++;
      continue;
    }
    if (len == 0) continue;
    r->lines++;
    job_t *j = job_get(r);
    if (!j) {
      fprintf(stderr, "shadowd replay: out of memory\n");
      r->read_failed = 1;
      r->eof = 1;
      break;
    }
    char why[256];
    if (shadow_capture_parse(line, len, &j->e, why, sizeof(why)) != 0) {
      fprintf(stderr, "%s:%llu: %s: skipped\n", r->rd.path,
              (unsigned long long)r->rd.line, why);
      r->bad++;
      job_put(r, j);
      continue;
    }
    r->read++;
    j->path = r->rd.path;
    j->line = r->rd.line;
    if (!selected(r, &j->e)) {
      r->unselected++;
      job_put(r, j);
      continue;
    }
    start_job(r, j);
  }
  r->filling = 0;
  if (r->eof && r->inflight == 0 && r->finish_on)
    uv_timer_start(&r->finish, on_finish, 0, 0);
}

static void on_progress(uv_timer_t *t) {
  replay_t *r = t->data;
  double s = (double)(uv_hrtime() - r->start_ns) / 1e9;
  uint64_t done = r->compared + r->failed;
  fprintf(stderr,
          "\r\033[Kreplayed %llu (%llu diverged, %llu failed), %.0f%% of the "
          "input, %.0f/s",
          (unsigned long long)done, (unsigned long long)r->diverged,
          (unsigned long long)r->failed,
          r->rd.bytes_total
              ? 100.0 * (double)r->rd.bytes_read / (double)r->rd.bytes_total
              : 0.0,
          s > 0 ? (double)done / s : 0.0);
}

/* --- the summary --------------------------------------------------------- */

typedef struct top_s {
  const char *name[TOP_FIELDS];
  uint64_t n[TOP_FIELDS];
  size_t k;
} top_t;

static void top_add(void *ud, const char *name, uint64_t n) {
  top_t *t = ud;
  size_t i = t->k < TOP_FIELDS ? t->k++ : TOP_FIELDS;
  if (i == TOP_FIELDS) {
    if (n <= t->n[TOP_FIELDS - 1]) return;
    i = TOP_FIELDS - 1;
  }
  while (i > 0 && t->n[i - 1] < n) {
    t->name[i] = t->name[i - 1];
    t->n[i] = t->n[i - 1];
    i--;
  }
  t->name[i] = name;
  t->n[i] = n;
}

/* A divergence counts for the verdict unless each of its fields is noise
 * by the rule (only ever so with --primary). */
typedef struct discount_s {
  replay_t *r;
  const char *route;
  const route_t *rt;
  uint64_t noise; /* divergences all of whose fields are noise */
} discount_t;

static shadow_noise_class_t field_class(replay_t *r, const char *route,
                                        const route_t *rt, const char *field,
                                        size_t n) {
  shadow_buf_t k = SHADOW_BUF_INIT;
  uint64_t pos;
  int found = !shadow_buf_puts(&k, route) && !shadow_buf_putc(&k, '\x1f') &&
              !shadow_buf_append(&k, field, n) &&
              shadow_counters_find(r->noise_names, k.data, &pos) &&
              pos < r->nnoise;
  shadow_buf_free(&k);
  if (!found) return SHADOW_NOISE_UNDECIDED;
  shadow_noise_counts_t c = shadow_noise_field_counts(
      &r->noise[pos].f, rt->compared, rt->noise_compared);
  return shadow_noise_classify(&c, r->cfg->noise_z, r->cfg->noise_min_samples,
                               NULL);
}

static void discount_sig(void *ud, const char *sig, uint64_t n) {
  discount_t *d = ud;
  if (strcmp(sig, "other") == 0) return;
  const char *p = sig;
  for (;;) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    if (field_class(d->r, d->route, d->rt, p, len) != SHADOW_NOISE_NOISE)
      return;
    if (!nl) break;
    p = nl + 1;
  }
  d->noise += n;
}

typedef struct summary_s {
  replay_t *r;
  FILE *text;
  shadow_buf_t *json;
  size_t i;
  uint64_t noise_total;
} summary_t;

static void verdict_of(const replay_t *r, uint64_t compared, uint64_t diverged,
                       shadow_verdict_t *v) {
  shadow_verdict_compute(v, compared, diverged, r->cfg->slo_max_rate,
                         r->cfg->slo_min_samples);
}

static void summary_route(void *ud, const char *name, uint64_t n) {
  summary_t *s = ud;
  replay_t *r = s->r;
  size_t i = s->i++;
  if (i >= r->nroutes) return;
  route_t *rt = &r->routes[i];
  discount_t d = {r, name, rt, 0};
  if (r->prim_up && rt->signatures)
    shadow_counters_each(rt->signatures, discount_sig, &d);
  s->noise_total += d.noise;
  shadow_verdict_t v;
  verdict_of(r, rt->compared + rt->failed, rt->diverged - d.noise + rt->failed,
             &v);
  double rate = rt->compared ? (double)rt->diverged / (double)rt->compared : 0;
  top_t t = {{0}, {0}, 0};
  if (rt->fields) shadow_counters_each(rt->fields, top_add, &t);
  /* No text when nothing was compared: a verdict per route would mislead. */
  if (s->text) {
    fprintf(s->text, "  %-36s %9llu %9llu %6.1f%% %7llu  %s\n", name,
            (unsigned long long)rt->compared, (unsigned long long)rt->diverged,
            rate * 100, (unsigned long long)rt->failed, v.decision);
    for (size_t k = 0; k < t.k; k++)
      fprintf(s->text, "      %-40s %llu\n", t.name[k],
              (unsigned long long)t.n[k]);
    if (d.noise)
      fprintf(s->text, "      (%llu of them only on noise fields)\n",
              (unsigned long long)d.noise);
  }
  shadow_buf_t *b = s->json;
  if (i) shadow_buf_putc(b, ',');
  shadow_buf_json_string(b, name, strlen(name), 0);
  shadow_buf_printf(
      b,
      ":{\"compared\":%llu,\"diverged\":%llu,\"failed\":%llu,"
      "\"noise_only\":%llu,\"top_fields\":[",
      (unsigned long long)rt->compared, (unsigned long long)rt->diverged,
      (unsigned long long)rt->failed, (unsigned long long)d.noise);
  for (size_t k = 0; k < t.k; k++) {
    if (k) shadow_buf_putc(b, ',');
    shadow_buf_puts(b, "{\"field\":");
    shadow_buf_json_string(b, t.name[k], strlen(t.name[k]), 0);
    shadow_buf_printf(b, ",\"count\":%llu}", (unsigned long long)t.n[k]);
  }
  shadow_buf_puts(b, "],\"verdict\":");
  shadow_verdict_render_json(b, &v);
  shadow_buf_putc(b, '}');
  (void)n;
}

static void json_errors(void *ud, const char *name, uint64_t n) {
  shadow_buf_t *b = ud;
  if (b->data[b->len - 1] != '{') shadow_buf_putc(b, ',');
  shadow_buf_json_string(b, name, strlen(name), 0);
  shadow_buf_printf(b, ":%llu", (unsigned long long)n);
}

static void text_errors(void *ud, const char *name, uint64_t n) {
  fprintf(ud, " %s %llu", name, (unsigned long long)n);
}

/* Prints the summary (stderr) and writes it as JSON (--summary); returns
 * the exit code. */
static int summarize(replay_t *r, const char *summary_path,
                     const char *junit_path, size_t nfiles) {
  FILE *t = stderr;
  fprintf(t,
          "shadowd replay: %llu exchange%s read from %zu file%s, %llu line%s "
          "skipped%s\n",
          (unsigned long long)r->read, r->read == 1 ? "" : "s", nfiles,
          nfiles == 1 ? "" : "s", (unsigned long long)r->bad,
          r->bad == 1 ? "" : "s", r->bad ? " (see above)" : "");
  fprintf(t, "  candidate %s%s%s; %llu replayed%s\n", r->cand_url,
          r->prim_url ? ", primary " : "", r->prim_url ? r->prim_url : "",
          (unsigned long long)(r->compared + r->failed + r->primary_failed),
          r->unselected ? " (the rest not selected by --rate)" : "");
  /* Nothing compared, nothing to judge: no verdict, and why. */
  const char *nothing = NULL;
  if (r->read_failed)
    nothing = "a capture file could not be read to its end";
  else if (r->read == 0)
    nothing = "no exchange could be read";
  else if (r->compared == 0 && r->failed > 0)
    nothing = "the candidate answered none of the exchanges";
  else if (r->compared == 0 && r->primary_failed > 0)
    nothing = "the live primary answered none of the exchanges";
  else if (r->compared == 0)
    nothing = "--rate selected none of the exchanges";
  if (!nothing)
    fprintf(t, "  %-36s %9s %9s %7s %7s  %s\n", "route", "compared", "diverged",
            "rate", "failed", "verdict");
  shadow_buf_t json = SHADOW_BUF_INIT;
  shadow_buf_printf(
      &json,
      "{\"read\":%llu,\"skipped_lines\":%llu,\"replayed\":%llu,"
      "\"compared\":%llu,\"diverged\":%llu,\"failed\":%llu,"
      "\"primary_failed\":%llu,\"routes\":{",
      (unsigned long long)r->read, (unsigned long long)r->bad,
      (unsigned long long)(r->compared + r->failed + r->primary_failed),
      (unsigned long long)r->compared, (unsigned long long)r->diverged,
      (unsigned long long)r->failed, (unsigned long long)r->primary_failed);
  summary_t s = {r, nothing ? NULL : t, &json, 0, 0};
  shadow_counters_each(r->route_names, summary_route, &s);
  shadow_verdict_t v;
  uint64_t counted = r->diverged - s.noise_total + r->failed;
  verdict_of(r, r->compared + r->failed, counted, &v);
  double rate =
      r->compared ? (double)r->diverged / (double)r->compared * 100 : 0;
  if (nothing)
    fprintf(t, "  nothing was compared, so there is no verdict: %s\n", nothing);
  else
    fprintf(t, "  %-36s %9llu %9llu %6.1f%% %7llu  %s: %s\n", "overall",
            (unsigned long long)r->compared, (unsigned long long)r->diverged,
            rate, (unsigned long long)r->failed, v.decision, v.reason);
  if (r->failed) {
    fprintf(t, "  candidate errors:");
    shadow_counters_each(r->errors, text_errors, t);
    fputc('\n', t);
    fprintf(t, "  failed exchanges (%zu of %llu shown):\n%s", r->failed_shown,
            (unsigned long long)r->failed,
            r->failed_text.data ? r->failed_text.data : "");
  }
  if (r->primary_failed)
    fprintf(t, "  %llu exchange%s not compared: the live primary failed\n",
            (unsigned long long)r->primary_failed,
            r->primary_failed == 1 ? "" : "s");
  int code;
  const char *why;
  if (nothing) {
    code = 2;
    why = nothing;
  } else if (v.code == SHADOW_VERDICT_PROMOTE) {
    code = 0;
    why = "the verdict is promote";
  } else if (counted == 0) {
    code = 0;
    why = r->diverged ? "only noise fields diverged" : "nothing diverged";
  } else {
    code = 1;
    why = r->failed && r->diverged == s.noise_total ? "candidate legs failed"
                                                    : "exchanges diverged";
  }
  fprintf(t, "exit %d: %s\n", code, why);
  shadow_buf_puts(&json, "},\"candidate_errors\":{");
  shadow_counters_each(r->errors, json_errors, &json);
  shadow_buf_puts(&json, "},\"failed_exchanges\":[");
  shadow_buf_append(&json, r->failed_json.data ? r->failed_json.data : "",
                    r->failed_json.len);
  shadow_buf_puts(&json, "],\"verdict\":");
  if (nothing)
    shadow_buf_puts(&json, "null");
  else
    shadow_verdict_render_json(&json, &v);
  shadow_buf_printf(&json, ",\"exit\":%d,\"why\":", code);
  shadow_buf_json_string(&json, why, strlen(why), 0);
  shadow_buf_putc(&json, '}');
  if (summary_path) {
    FILE *f = fopen(summary_path, "w");
    if (!f || fwrite(json.data, 1, json.len, f) != json.len ||
        fputc('\n', f) == EOF) {
      fprintf(stderr, "shadowd replay: --summary %s: %s\n", summary_path,
              strerror(errno));
      code = 2;
    }
    if (f) fclose(f);
  }
  shadow_buf_free(&json);
  if (r->junit) {
    char verdict[512];
    snprintf(verdict, sizeof verdict, "%s: %s", v.decision, v.reason);
    const char *props[] = {"candidate", r->cand_url,
                           "verdict",   nothing ? "none" : verdict,
                           "exit",      code == 0 ? "0" : code == 1 ? "1" : "2",
                           NULL,        NULL};
    int rc = shadow_junit_write(r->junit, junit_path, nothing ? nothing : NULL,
                                props);
    if (rc) {
      fprintf(stderr, "shadowd replay: --junit %s: %s\n", junit_path,
              strerror(-rc));
      code = 2;
    }
  }
  return code;
}

/* --- the command line ---------------------------------------------------- */

static void usage(FILE *f) {
  fputs("usage: shadowd replay [--config FILE] [--candidate URL] "
        "[--primary URL]\n"
        "                      [--rate R] [--concurrency N] [--out FILE] "
        "[--summary FILE]\n"
        "                      [--junit FILE [--junit-per route|exchange]]\n"
        "                      [--fixtures DIR] [--record FILE] [--quiet] "
        "[--max-line-bytes N[K|M|G]]\n"
        "                      CAPTURE_FILE...\n"
        "(shadowd --help says what each does)\n",
        f);
}

static int make_upstream(replay_t *r, const shadow_backend_cfg_t *b,
                         const char *url, shadow_upstream_t **out) {
  shadow_upstream_opts_t o;
  shadow_backend_cfg_t def;
  shadow_backend_cfg_init(&def);
  shadow_backend_upstream_opts(b && b->kind == SHADOW_BACKEND_HTTP ? b : &def,
                               &r->cfg->limits, &o);
  char *err = NULL;
  if (shadow_upstream_url_check(url, &err) != 0 ||
      shadow_upstream_new(&r->loop, url, &o, out, &err) != 0) {
    fprintf(stderr, "shadowd replay: %s: %s\n", url, err ? err : "bad url");
    free(err);
    return -1;
  }
  return 0;
}

static int parse_args(int argc, char **argv, const char **config,
                      const char **cand, const char **prim, double *rate,
                      long *concurrency, const char **out, const char **summary,
                      const char **fixtures, const char **record, int *quiet,
                      size_t *max_line, const char **junit, int *per_exchange) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},
      {"candidate", required_argument, NULL, 'C'},
      {"primary", required_argument, NULL, 'P'},
      {"rate", required_argument, NULL, 'r'},
      {"concurrency", required_argument, NULL, 'n'},
      {"out", required_argument, NULL, 'o'},
      {"summary", required_argument, NULL, 's'},
      {"fixtures", required_argument, NULL, 'F'},
      {"record", required_argument, NULL, 'R'},
      {"quiet", no_argument, NULL, 'q'},
      {"max-line-bytes", required_argument, NULL, 'L'},
      {"junit", required_argument, NULL, 'J'},
      {"junit-per", required_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+c:C:P:r:n:o:s:F:R:L:J:j:qh", opts,
                          NULL)) != -1) {
    char *end;
    switch (c) {
    case 'c': *config = optarg; break;
    case 'C': *cand = optarg; break;
    case 'P': *prim = optarg; break;
    case 'r':
      *rate = strtod(optarg, &end);
      if (*end || !(*rate >= 0 && *rate <= 1)) {
        fprintf(stderr, "shadowd replay: --rate takes a number from 0 to 1\n");
        return -1;
      }
      break;
    case 'n':
      *concurrency = strtol(optarg, &end, 10);
      if (*end || *concurrency < 1 || *concurrency > 4096) {
        fprintf(stderr,
                "shadowd replay: --concurrency takes a number from 1 to "
                "4096\n");
        return -1;
      }
      break;
    case 'o': *out = optarg; break;
    case 's': *summary = optarg; break;
    case 'F': *fixtures = optarg; break;
    case 'R': *record = optarg; break;
    case 'q': *quiet = 1; break;
    case 'J': *junit = optarg; break;
    case 'j':
      if (strcmp(optarg, "route") != 0 && strcmp(optarg, "exchange") != 0) {
        fprintf(stderr,
                "shadowd replay: --junit-per takes route or exchange\n");
        return -1;
      }
      *per_exchange = strcmp(optarg, "exchange") == 0;
      break;
    case 'L':
      if (shadow_capture_size_parse(optarg, max_line) != 0) {
        fprintf(stderr, "shadowd replay: --max-line-bytes takes a size from "
                        "1K to 16G (N, NK, NM or NG)\n");
        return -1;
      }
      break;
    case 'h': usage(stdout); return 1;
    default: usage(stderr); return -1;
    }
  }
  return 0;
}

static void release(replay_t *r) {
  while (r->free_jobs) {
    job_t *j = r->free_jobs;
    r->free_jobs = j->next;
    job_free(j);
  }
  for (size_t i = 0; i < r->nroutes; i++) {
    shadow_counters_free(r->routes[i].fields);
    shadow_counters_free(r->routes[i].signatures);
  }
  free(r->routes);
  free(r->noise);
  free(r->noise_list);
  shadow_counters_free(r->errors);
  shadow_counters_free(r->route_names);
  shadow_counters_free(r->noise_names);
  shadow_buf_free(&r->line);
  shadow_buf_free(&r->scratch);
  shadow_buf_free(&r->failed_text);
  shadow_buf_free(&r->failed_json);
  shadow_junit_free(r->junit);
  shadow_buf_free(&r->fp);
  shadow_buf_free(&r->fc);
  shadow_diff_result_free(&r->diff);
  shadow_diff_result_free(&r->noise_diff);
  shadow_capture_reader_close(&r->rd);
  if (r->g)
    shadow_gen_unref(r->g);
  else
    shadow_config_release(&r->own_cfg);
}

int shadow_replay_main(int argc, char **argv) {
  const char *config = NULL, *cand = NULL, *prim = NULL, *out = NULL;
  const char *summary = NULL, *fixtures = NULL, *record = NULL;
  double rate = 1;
  long concurrency = 8;
  int quiet = 0;
  size_t max_line = 0;
  const char *junit = NULL;
  int per_exchange = 0;
  int a = parse_args(argc, argv, &config, &cand, &prim, &rate, &concurrency,
                     &out, &summary, &fixtures, &record, &quiet, &max_line,
                     &junit, &per_exchange);
  if (a) return a > 0 ? 0 : 2;
  if (optind >= argc) {
    usage(stderr);
    return 2;
  }
  if (record && !prim) {
    fprintf(stderr, "shadowd replay: --record needs --primary (it records "
                    "the live primary's answers)\n");
    return 2;
  }
  replay_t *r = calloc(1, sizeof(*r));
  if (!r) return 2;
  r->rate = rate;
  r->concurrency = (size_t)concurrency;
  r->quiet = quiet;
  r->fixtures = fixtures;
  r->prim_url = prim;
  int code = 2;
  char *err = NULL;
  if (config) {
    if (shadow_script_load(config, &r->g, &err) != 0) {
      fprintf(stderr, "shadowd replay: %s\n", err);
      free(err);
      free(r);
      return 2;
    }
    r->cfg = shadow_gen_config(r->g);
  } else {
    if (shadow_config_init(&r->own_cfg) != 0) {
      fprintf(stderr, "shadowd replay: out of memory\n");
      shadow_config_release(&r->own_cfg);
      free(r);
      return 2;
    }
    r->cfg = &r->own_cfg;
  }
  /* Marks are keyed: the capture's were made under the daemon's key, so
   * without a shared redact.key the candidate's redacted headers are
   * marked under another key here and cannot match the recorded ones. */
  if (!shadow_redact_has_key(r->cfg->redact) &&
      shadow_redact_headers(r->cfg->redact) > 0)
    fprintf(stderr,
            "shadowd replay: no redact.key: redacted headers are marked "
            "under this run's own key and will differ from the capture's; "
            "set the same redact.key as the daemon that captured\n");
  r->errors = shadow_counters_new(32);
  r->route_names = shadow_counters_new(MAX_ROUTES);
  r->noise_names = shadow_counters_new_raw(MAX_NOISE_FIELDS);
  int loop_ok = uv_loop_init(&r->loop) == 0;
  if (!r->errors || !r->route_names || !r->noise_names || !loop_ok) {
    fprintf(stderr, "shadowd replay: out of memory\n");
    goto done;
  }
  const shadow_backend_cfg_t *cb = &r->cfg->candidate;
  if (cand) {
    r->cand_url = cand;
    if (make_upstream(r, cb, cand, &r->cand_up)) goto done;
  } else if (cb->kind == SHADOW_BACKEND_HTTP) {
    r->cand_url = cb->url;
    if (make_upstream(r, cb, cb->url, &r->cand_up)) goto done;
  } else if (cb->kind == SHADOW_BACKEND_LUA) {
    r->cand_url = "the config's Lua function";
    r->cand_lua = 1;
  } else {
    fprintf(stderr, "shadowd replay: no candidate: give --candidate URL, or "
                    "a config with one\n");
    goto done;
  }
  if (prim && make_upstream(r, &r->cfg->primary, prim, &r->prim_up)) goto done;
  if (shadow_capture_reader_open(&r->rd, (const char *const *)argv + optind,
                                 (size_t)(argc - optind), &err) != 0) {
    fprintf(stderr, "shadowd replay: %s\n", err);
    free(err);
    goto done;
  }
  /* A config's capture may write longer lines than the default cap. */
  r->rd.max_line = max_line ? max_line
                   : r->g   ? shadow_capture_line_bound(r->cfg)
                            : SHADOW_CAPTURE_MAX_LINE;
  if (out && !(r->out = fopen(out, "w"))) {
    fprintf(stderr, "shadowd replay: --out %s: %s\n", out, strerror(errno));
    goto done;
  }
  if (!out) r->out = stdout;
  if (record && !(r->record = fopen(record, "w"))) {
    fprintf(stderr, "shadowd replay: --record %s: %s\n", record,
            strerror(errno));
    goto done;
  }
  if (junit && !(r->junit = shadow_junit_new(per_exchange))) {
    fprintf(stderr, "shadowd replay: --junit %s: no temporary file: %s\n",
            junit, strerror(errno));
    goto done;
  }
  if (fixtures && mkdir(fixtures, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "shadowd replay: --fixtures %s: %s\n", fixtures,
            strerror(errno));
    goto done;
  }
  r->start_ns = uv_hrtime();
  uv_timer_init(&r->loop, &r->finish);
  r->finish.data = r;
  r->finish_on = 1;
  if (!quiet && isatty(STDERR_FILENO)) {
    uv_timer_init(&r->loop, &r->progress);
    r->progress.data = r;
    uv_timer_start(&r->progress, on_progress, 250, 250);
    r->progress_on = 1;
  }
  fill(r);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  code = summarize(r, summary, junit, (size_t)(argc - optind));
done:
  close_all(r);
  if (loop_ok) {
    uv_run(&r->loop, UV_RUN_DEFAULT); /* the upstreams' handles close */
    uv_loop_close(&r->loop);
  }
  if (r->out && r->out != stdout && fclose(r->out) != 0) code = 2;
  if (r->out == stdout) fflush(stdout);
  if (r->record && fclose(r->record) != 0) code = 2;
  release(r);
  free(r);
  shadow_engine_caches_clear();
  return code;
}
