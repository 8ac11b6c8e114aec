/* The HTTP client: one backend, a keep-alive connection pool, streamed
 * requests and responses, timeouts, one retry of an idempotent request on a
 * stale pooled connection. It knows nothing of shadowing.
 *
 * A request in flight is a leg. Its response is delivered as events (head,
 * body pieces, end) while it arrives, so a body of any size passes through
 * the connection's fixed read buffer; the caller can pause the reading
 * (backpressure) and resume it. A request body can be streamed too. */
#ifndef SHADOW_UPSTREAM_H
#define SHADOW_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "record.h"
#include "response_parse.h"
#include "tls.h"

typedef struct shadow_upstream_s shadow_upstream_t;

/* Which HTTP a backend speaks (opts.protocol). HTTP/1.1 is the default,
 * as nginx's proxy speaks only HTTP/1.x to backends; a gRPC request
 * (content-type application/grpc*) goes over HTTP/2 whatever this says. */
enum {
  SHADOW_UPSTREAM_HTTP1 = 0, /* "http/1.1" */
  SHADOW_UPSTREAM_H2,        /* "h2": h2c on http://, ALPN h2 on https:// */
  SHADOW_UPSTREAM_AUTO       /* "auto": https:// only, the server's ALPN */
};
/* "http/1.1", "h2", "auto"; the enum from a name, or -1. */
const char *shadow_upstream_protocol_name(int protocol);
int shadow_upstream_protocol_parse(const char *name);
typedef struct shadow_upstream_leg_s shadow_upstream_leg_t;

/* A zero timeout takes the default: a backend with no timeout is what a
 * hostile one exploits. timeout_ms runs from the request's last byte
 * written to the response head, as nginx's proxy_read_timeout (while the
 * request waits for a connection it bounds the wait from start());
 * read_timeout_ms runs between two reads of the body, and between two
 * writes of a request still being sent, as nginx's proxy_send_timeout. */
typedef struct shadow_upstream_opts_s {
  uint64_t connect_timeout_ms; /* default 3000 */
  uint64_t timeout_ms;         /* request's end to head (above); 5000 */
  uint64_t read_timeout_ms;    /* between reads or writes (above); 60000 */
  uint64_t idle_timeout_ms;    /* an idle pooled connection; 60000 */
  size_t max_connections;      /* open at once; beyond, requests queue;
                                  0: no cap */
  size_t max_idle;     /* idle keep-alive connections kept; 0: no cap (they
                          are kept until idle_timeout_ms) */
  size_t header_bytes; /* response head; default 64 KiB */
  int protocol;        /* SHADOW_UPSTREAM_HTTP1 (h2c:// URLs: H2); read by
                          new() only */
  size_t max_streams;  /* HTTP/2 streams at once on one connection, never
                          above the server's SETTINGS_MAX_CONCURRENT_STREAMS;
                          default 100 */
  size_t body_keep;    /* shadow_upstream_send: body bytes kept in the
                          record, the rest digested; default 1 MiB */
  const char *host;    /* Host header to send instead of the client's;
                          NULL: the client's (copied by new/set_opts) */
  /* https:// backends: how to check the server (read by new() only; the
   * strings need not outlive it). server_name NULL: the URL's host. */
  shadow_tls_client_opts_t tls;
  /* A host name is looked up again this often, in the background; 0: at
   * new() only (read by new() only). Default 30000. A numeric host never
   * is. */
  uint64_t resolve_ms;
  /* Where the resolver's lines go (a lookup that failed, an address
   * skipped after a failed connect): NULL, nowhere. */
  void (*log)(void *ud, const char *msg);
  void *log_ud;
} shadow_upstream_opts_t;

void shadow_upstream_opts_default(shadow_upstream_opts_t *o);

/* "refused", "reset", "timeout", "bad_response", "too_large", "canceled",
 * "tls": the label values of shadow_candidate_errors_total{reason}. */
const char *shadow_upstream_err_name(int err);

/* What to send. headers are the client's: hop-by-hop ones are dropped,
 * Host is kept when present (else the url's host:port, or opts.host),
 * then extra is appended. Everything is copied before start() returns. */
typedef struct shadow_upstream_request_s {
  const char *method;
  const char *target;
  size_t target_len;
  const shadow_headers_t *headers;
  const shadow_headers_t *extra;
  const char *body; /* the body bytes at hand */
  size_t body_len;
  /* 0: body is the whole body. 1: more follows through
   * shadow_upstream_leg_body(), content_length long in all, or of unknown
   * length (sent chunked) when content_length < 0. */
  int body_more;
  int64_t content_length;
  /* An Upgrade value (with Connection: upgrade) the backend is asked for,
   * or NULL. A 101 makes the leg a tunnel: body() then sends raw bytes,
   * on_body gets raw bytes, and on_done comes when the backend closes. */
  const char *upgrade;
  /* The whole leg's deadline, from start() to the response's last byte,
   * whatever the other timeouts say (0: none): a shadow leg that streams
   * forever ends with SHADOW_UPSTREAM_TIMEOUT, its connection closed. */
  uint64_t total_timeout_ms;
} shadow_upstream_request_t;

/* The response, as it arrives. Callbacks never run inside a call the
 * caller made into this file (start, body, pause, resume, abort). */
typedef struct shadow_upstream_handler_s {
  /* A 1xx interim response (NULL: ignored). */
  void (*on_interim)(void *ud, int status, const shadow_headers_t *h);
  /* The final response head; content_length -1 when not declared. The
   * handler may take h's lines by swapping h with an empty list of its
   * own (shadow_headers_swap): nothing reads them after on_head returns,
   * so a response that is kept is not copied. */
  void (*on_head)(void *ud, int status, shadow_headers_t *h,
                  int64_t content_length);
  void (*on_body)(void *ud, const char *data, size_t len);
  /* After the events of one read (NULL-able): a good moment to flush. */
  void (*on_read_end)(void *ud);
  /* Exactly once, last: err SHADOW_UPSTREAM_OK for a complete response
   * (trailers are those of a chunked body, maybe none), else the reason;
   * detail has words for a TLS failure, else NULL. The leg is gone once
   * this returns. */
  void (*on_done)(void *ud, int err, const shadow_headers_t *trailers,
                  const char *detail);
  /* A streamed request body that was told to wait may go on (NULL-able). */
  void (*on_drain)(void *ud);
  /* NULL-able: room in the handler's own buffer where the next body bytes
   * may be read, so on_body then gets them where they already lie and
   * need not copy them (shadow_record_body_room). Up to want bytes; returns
   * the room's size with *at its start, or 0 to have them read into the
   * client's buffer as usual. want 0 only asks whether it keeps bodies so.
   * Offered only for a body framed by Content-Length over HTTP/1.1. */
  size_t (*body_room)(void *ud, size_t want, char **at);
} shadow_upstream_handler_t;

/* Whether url is a backend URL this client takes, "http[s]://host[:port]
 * [/base]" or "h2c://host[:port][/base]" (HTTP/2 with prior knowledge
 * over plain TCP; host a name, IPv4 or [IPv6]): 0, or -EINVAL and *err saying
 * what is wrong (free() it). The one place the grammar lives: the config
 * checks with it at load, shadow_upstream_new parses with it. */
int shadow_upstream_url_check(const char *url, char **err);

/* Whether url's host is a name (looked up, re-resolved) rather than an
 * address; 0 for a URL that does not parse. */
int shadow_upstream_url_has_name(const char *url);

/* url as above. host is resolved here, synchronously, and then again every
 * opts.resolve_ms in the background (resolver.h): a connection goes to the
 * first of its addresses that is not being skipped, and one that cannot
 * connect (refused, unreachable, connect timeout) makes the leg try the
 * next, within its deadline. An https:// URL gets its TLS
 * context here too (a CA or certificate file that cannot be read fails
 * it). A base path is prepended to every target. Sets *err (free() it) on
 * failure. */
int shadow_upstream_new(uv_loop_t *loop, const char *url,
                        const shadow_upstream_opts_t *opts,
                        shadow_upstream_t **out, char **err);

/* Starts a leg. Returns 0 and *out, or a negative code and no callback is
 * ever called. */
int shadow_upstream_start(shadow_upstream_t *u,
                          const shadow_upstream_request_t *r,
                          const shadow_upstream_handler_t *h, void *ud,
                          shadow_upstream_leg_t **out);
/* More of a streamed request body. Returns 0, or 1 when enough is queued
 * that the producer should wait for on_drain (the bytes are taken either
 * way), or a negative code when the leg no longer sends. */
int shadow_upstream_leg_body(shadow_upstream_leg_t *leg, const char *data,
                             size_t len);
/* The streamed request body is complete. */
int shadow_upstream_leg_body_end(shadow_upstream_leg_t *leg);
/* Stops and restarts reading the response: while paused the read timeout
 * does not run, and no body event comes. */
void shadow_upstream_leg_pause(shadow_upstream_leg_t *leg);
void shadow_upstream_leg_resume(shadow_upstream_leg_t *leg);
/* Abandons the leg: its connection is closed (never pooled: the rest of
 * the response is unread) and no callback comes for it any more. */
void shadow_upstream_leg_abort(shadow_upstream_leg_t *leg);

/* Called exactly once per successful send, never from inside
 * shadow_upstream_send(). On OK, res is the response and the callback owns
 * it (shadow_record_free): its body is kept up to opts.body_keep bytes and
 * digested beyond. Otherwise res is NULL. latency_ms runs from the send to
 * the last byte of the response (or the failure). */
typedef void (*shadow_upstream_cb)(void *ud, int err, shadow_record_t *res,
                                   double latency_ms);

/* A whole request (body included) whose whole response is collected into
 * a record: the candidate's leg, and tests. 0, or a negative code and the
 * callback is never called. */
int shadow_upstream_send(shadow_upstream_t *u, const char *method,
                         const char *target, size_t target_len,
                         const shadow_headers_t *headers,
                         const shadow_headers_t *extra, const char *body,
                         size_t body_len, shadow_upstream_cb cb, void *ud);

void shadow_upstream_set_opts(shadow_upstream_t *u,
                              const shadow_upstream_opts_t *opts);
size_t shadow_upstream_pending(const shadow_upstream_t *u);
size_t shadow_upstream_connections(const shadow_upstream_t *u);
size_t shadow_upstream_idle(const shadow_upstream_t *u);

/* Lifetime counters of one backend's pool, for tests and /stats. */
typedef struct shadow_upstream_stats_s {
  uint64_t requests; /* sends accepted */
  uint64_t failures; /* callbacks with an error, CANCELED included */
  uint64_t retries;  /* idempotent requests resent after a stale reuse */
  uint64_t connects; /* connections opened */
  uint64_t reuses;   /* requests sent on a pooled connection */
  uint64_t queued;   /* requests that waited for max_connections */
  uint64_t aborted;  /* legs abandoned by their caller */
  uint64_t connect_failures; /* connects refused, unreachable, timed out */
  uint64_t failovers;        /* ... after which the leg tried another
                                address of the name */
  uint64_t resolve_failures; /* background lookups that failed (the last
                                addresses were kept) */
  uint64_t address_changes;  /* ... that changed the addresses */
  uint64_t h2_streams;       /* HTTP/2 streams opened */
  uint64_t h2_goaways;       /* GOAWAYs received */
  uint64_t h2_refused;       /* streams the server refused or cut by a
                                GOAWAY (retried when idempotent) */
} shadow_upstream_stats_t;

void shadow_upstream_stats(const shadow_upstream_t *u,
                           shadow_upstream_stats_t *out);

/* Fails every pending request with SHADOW_UPSTREAM_CANCELED (callbacks run
 * from the loop, not from here) and closes the connections; memory is freed
 * once the handles have closed. */
void shadow_upstream_close(shadow_upstream_t *u);

#endif
