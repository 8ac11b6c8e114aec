/* The HTTP client: one backend, a keep-alive connection pool, llhttp
 * response parsing, timeouts, one retry of an idempotent request on a stale
 * pooled connection. It knows nothing of shadowing. */
#ifndef SHADOW_UPSTREAM_H
#define SHADOW_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "record.h"

typedef struct shadow_upstream_s shadow_upstream_t;

/* A zero timeout or byte limit takes the default: a backend with no
 * timeout or no limit is what a hostile one exploits. */
typedef struct shadow_upstream_opts_s {
  uint64_t connect_timeout_ms; /* default 1000 */
  uint64_t timeout_ms;         /* send to complete response; default 5000 */
  size_t max_connections;      /* open at once; beyond, requests queue;
                                  0: no cap */
  size_t max_idle;             /* idle keep-alive connections kept; 256 */
  size_t header_bytes;         /* response headers; default 64 KiB */
  size_t body_bytes;           /* response body; default 8 MiB */
} shadow_upstream_opts_t;

void shadow_upstream_opts_default(shadow_upstream_opts_t *o);

typedef enum shadow_upstream_err_e {
  SHADOW_UPSTREAM_OK = 0,
  SHADOW_UPSTREAM_REFUSED,      /* connect failed */
  SHADOW_UPSTREAM_RESET,        /* closed or reset before a whole response */
  SHADOW_UPSTREAM_TIMEOUT,      /* connect or response timeout */
  SHADOW_UPSTREAM_BAD_RESPONSE, /* not HTTP, or framing errors */
  SHADOW_UPSTREAM_TOO_LARGE,    /* over header_bytes or body_bytes */
  SHADOW_UPSTREAM_CANCELED      /* the upstream was closed */
} shadow_upstream_err_t;

/* "refused", "reset", "timeout", "bad_response", "too_large", "canceled":
 * the label values of shadow_candidate_errors_total{reason}. */
const char *shadow_upstream_err_name(int err);

/* Called exactly once per successful send, never from inside
 * shadow_upstream_send(). On OK, res is the response and the callback owns
 * it (shadow_record_free); otherwise res is NULL. latency_ms runs from the
 * send to the last byte of the response (or the failure). */
typedef void (*shadow_upstream_cb)(void *ud, int err, shadow_record_t *res,
                                   double latency_ms);

/* url: "http://host[:port][/base]". host is resolved once, here. A base
 * path is prepended to every target. Sets *err (free() it) on failure. */
int shadow_upstream_new(uv_loop_t *loop, const char *url,
                        const shadow_upstream_opts_t *opts,
                        shadow_upstream_t **out, char **err);

/* Sends one request. headers are the client's: hop-by-hop ones are dropped,
 * Host is kept when present (else host:port of the url), then extra is
 * appended (x-shadow-request, x-forwarded-for). Everything is copied before
 * this returns. Returns 0, or a negative code and the callback is never
 * called. */
int shadow_upstream_send(shadow_upstream_t *u, const char *method,
                         const char *target, size_t target_len,
                         const shadow_headers_t *headers,
                         const shadow_headers_t *extra, const char *body,
                         size_t body_len, shadow_upstream_cb cb, void *ud);

void shadow_upstream_set_opts(shadow_upstream_t *u,
                              const shadow_upstream_opts_t *opts);
const char *shadow_upstream_url(const shadow_upstream_t *u);
size_t shadow_upstream_pending(const shadow_upstream_t *u);
size_t shadow_upstream_connections(const shadow_upstream_t *u);

/* Lifetime counters of one backend's pool, for tests and /stats. */
typedef struct shadow_upstream_stats_s {
  uint64_t requests; /* sends accepted */
  uint64_t failures; /* callbacks with an error, CANCELED included */
  uint64_t retries;  /* idempotent requests resent after a stale reuse */
  uint64_t connects; /* connections opened */
  uint64_t reuses;   /* requests sent on a pooled connection */
  uint64_t queued;   /* requests that waited for max_connections */
} shadow_upstream_stats_t;

void shadow_upstream_stats(const shadow_upstream_t *u,
                           shadow_upstream_stats_t *out);

/* Fails every pending request with SHADOW_UPSTREAM_CANCELED (callbacks run
 * from the loop, not from here) and closes the connections; memory is freed
 * once the handles have closed. */
void shadow_upstream_close(shadow_upstream_t *u);

#endif
