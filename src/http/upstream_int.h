/* What upstream.c and h2_client.c share of a pool: its connections and the
 * legs on them. Private to src/http: nothing else includes it. A
 * connection speaks HTTP/1.1 (one leg at a time, upstream.c) or HTTP/2
 * (many legs, one stream each, h2_client.c); the pool, the queue, the
 * resolver and the timeouts are the same for both. */
#ifndef SHADOW_UPSTREAM_INT_H
#define SHADOW_UPSTREAM_INT_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "deadline.h"
#include "resolver.h"
#include "response_parse.h"
#include "stream.h"
#include "upstream.h"

/* The read buffer, one per pool: a read is parsed (and its bytes handed
 * on) before libuv reads from another connection, so the pool's
 * connections can share it, and an idle connection holds none. */
#define READ_BUF (64 * 1024)
/* Finished legs keep their wire buffer for the next send, unless it grew
 * past this (a large body), so the freelist never hoards memory. */
#define KEEP_WIRE (16u * 1024u)
#define KEEP_FREE 64
/* A streamed request body: past this much queued, the producer waits;
 * below the low mark it may go on. */
#define SEND_HIGH (64u * 1024u)
#define SEND_LOW (16u * 1024u)

typedef struct link_s {
  struct link_s *prev, *next;
} link_t;

static inline void list_init(link_t *l) {
  l->prev = l->next = l;
}
static inline int list_empty(const link_t *l) {
  return l->next == l;
}
static inline void list_remove(link_t *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
  e->prev = e->next = e;
}
static inline void list_push_front(link_t *l, link_t *e) {
  e->next = l->next;
  e->prev = l;
  l->next->prev = e;
  l->next = e;
}
static inline void list_push_back(link_t *l, link_t *e) {
  e->prev = l->prev;
  e->next = l;
  l->prev->next = e;
  l->prev = e;
}

#define CONTAINER(ptr, type, field)                                            \
  ((type *)((char *)(ptr)-offsetof(type, field)))

typedef struct conn_s conn_t;

struct shadow_upstream_leg_s {
  link_t link; /* in the queue, the deferred list or the freelist */
  shadow_upstream_t *u;
  conn_t *conn; /* the connection carrying it, if any */
  /* The bytes of the write in flight, or to be written first: the request
   * head and the body at hand. A leg that is not streamed keeps them until
   * it ends, so it can be resent on another connection. */
  shadow_buf_t wire;
  shadow_buf_t pend; /* streamed body queued behind wire */
  const shadow_upstream_handler_t *h;
  void *ud;
  /* In uv_now() milliseconds: of the response head (from start() until
   * the request is sent, then from its last byte); of the whole leg
   * (UINT64_MAX: none); when the last write of the request completed. */
  uint64_t deadline, total_deadline, wrote_at;
  uint64_t timeout_ms; /* opts.timeout_ms when it started: set_opts()
                          changes the legs that start after it */
  int err;
  char detail[96]; /* a TLS failure's words */
  int head;
  int idempotent;
  int retried;
  size_t connects; /* connections opened for it: one per address tried */
  int writes;      /* uv_writes in flight that point into wire */
  int dead;        /* ended while a write was in flight: free on its cb */
  int streaming;   /* more body follows start() */
  int chunked;     /* ... in chunked framing */
  int body_ended;  /* the streamed body is complete */
  int wants_drain; /* the producer was told to wait */
  int paused;
  int upgrade; /* asked for an upgrade */
  int tunnel;  /* got its 101: raw bytes both ways */
  int sent;    /* the whole request is written on this connection */
  int where;   /* AT_NONE, AT_QUEUE, AT_DEFERRED (failed, not yet told) */
  int ended;   /* on_done was delivered, or the caller aborted */
  /* HTTP/2 (h2_client.c). wire then holds the request as name\0value\0
   * pairs (pseudo-headers first, :path without the base), hlen bytes
   * long, and the body at hand behind them; woff is how much of that body
   * went into DATA frames. A streamed body queues in pend, poff sent. */
  int h2;            /* goes over HTTP/2 */
  int grpc;          /* content-type application/grpc*: HTTP/2 only */
  int32_t stream_id; /* 0: not submitted yet */
  int deferred_data; /* the data provider waits for more body */
  int got_head;      /* the final head was delivered */
  int has_trailers;  /* rh holds trailers */
  int parked;        /* the stream ended while paused: rbuf to deliver */
  int h2_err;        /* a failure our callbacks saw (TOO_LARGE...) */
  int status;        /* the response's :status */
  size_t hlen, woff, poff;
  int64_t content_length; /* the request's, for an HTTP/1.1 fallback */
  uint64_t due;           /* the stream's own deadline */
  link_t slink;           /* in its connection's streams */
  link_t tlink;           /* in a pass list (flush, read end, drain) */
  shadow_headers_t rh;    /* the response head, then its trailers */
  shadow_buf_t rbuf;      /* DATA received while paused (<= the window) */
};

enum { AT_NONE, AT_QUEUE, AT_DEFERRED };

typedef shadow_upstream_leg_t leg_t;

enum { CONNECTING, BUSY, IDLE, CLOSING };

struct conn_s {
  shadow_stream_t s; /* plain or TLS */
  uv_timer_t timer;  /* connect, response head, read, or idle timeout */
  uv_connect_t connect;
  struct sockaddr_storage addr; /* the address of the name it went to */
  link_t link;                  /* in busy or idle */
  shadow_upstream_t *u;
  leg_t *leg;     /* the leg in flight */
  leg_t *writing; /* whose wire the pending uv_write reads */
  shadow_response_parser_t parser;
  int state;
  int reading;
  int reused;      /* has answered before: a failure may just be staleness */
  int handshaking; /* connected, the TLS handshake under way */
  int closes;      /* handles still to close before the memory goes */
  int big_body;    /* its last response's body was large (see on_alloc) */
  /* The timer's deadline (deadline.h); an HTTP/2 connection's timer
   * keeps due for its connect timeout and armed for when it fires. */
  shadow_deadline_t deadline;
  /* HTTP/2 (h2_client.c): the session once it speaks h2 (NULL: HTTP/1.1),
   * its legs (those not yet submitted wait here while it connects). */
  nghttp2_session *h2;
  int want_h2;           /* opened for HTTP/2 legs */
  int goaway;            /* takes no new streams */
  int in_recv;           /* inside nghttp2_session_mem_recv */
  int h2_writing;        /* out is being written */
  int probe;             /* opened by an "auto" pool that does not know yet */
  shadow_tls_ctx_t *ctx; /* the TLS context it handshakes with */
  link_t streams;
  link_t touched; /* legs with events in the read at hand */
  size_t nstreams;
  shadow_buf_t out;
};

struct shadow_upstream_s {
  uv_loop_t *loop;
  shadow_upstream_opts_t opts;
  char *host_override;   /* opts.host, owned */
  shadow_tls_ctx_t *tls; /* https: the backend's TLS context */
  /* https: ALPN "h2" only (gRPC, protocol "h2"), and "h2,http/1.1" for
   * "auto"; NULL when unused. */
  shadow_tls_ctx_t *tls_h2, *tls_auto;
  int h2c;        /* h2c:// or http:// with protocol "h2" */
  int learned;    /* "auto": 0 unknown, 1 HTTP/1.1, 2 h2 */
  int proto;      /* opts.protocol at new() */
  link_t h2conns; /* connections that speak or will speak HTTP/2 */
  link_t flush;   /* legs with paused bytes to deliver from the loop */
  char *host;     /* the Host header when the client sent none */
  char *base;     /* path prefix without a trailing slash */
  size_t base_len;
  shadow_resolver_t *res;                 /* the host's addresses */
  void (*log)(void *ud, const char *msg); /* the resolver's lines */
  void *log_ud;
  link_t busy, idle, queue, deferred, freelist;
  size_t nidle, nconns, nqueued, nfree, pending;
  uint64_t queue_due;
  uv_timer_t queue_timer; /* the earliest deadline among queued requests */
  uv_timer_t defer_timer; /* delivers failures from the loop */
  int closing;
  int defer_closed;
  int handles; /* open handles (connections count as one) */
  shadow_upstream_stats_t stats;
  char rbuf[READ_BUF];
};

/* upstream.c's, for h2_client.c. */
void shadow__upstream_deliver(leg_t *leg, int err,
                              const shadow_headers_t *trailers);
void shadow__upstream_fail(leg_t *leg, int err);
void shadow__upstream_dispatch(shadow_upstream_t *u, leg_t *leg, int front);
void shadow__upstream_pump(shadow_upstream_t *u);
void shadow__upstream_conn_close(conn_t *conn);
void shadow__upstream_conn_bind_h1(conn_t *conn, leg_t *leg);
uint64_t shadow__upstream_cap_total(const leg_t *leg, uint64_t at);
void shadow__upstream_defer(shadow_upstream_t *u);
int shadow__upstream_serialize(shadow_upstream_t *u, shadow_buf_t *b,
                               const shadow_upstream_request_t *r, int chunked);
/* A new connection for leg (after a failed address, or NULL). */
void shadow__upstream_connect(shadow_upstream_t *u, leg_t *leg,
                              const struct sockaddr *after);

/* h2_client.c's. */
/* The request of leg as HTTP/2 (see leg_t): 0 or -ENOMEM. */
int shadow__h2_serialize(shadow_upstream_t *u, leg_t *leg,
                         const shadow_upstream_request_t *r);
/* The same request made HTTP/1.1 again, for an "auto" connection the
 * server gave HTTP/1.1: 0 or -ENOMEM. */
int shadow__h2_to_h1(shadow_upstream_t *u, leg_t *leg);
/* Places leg on an HTTP/2 connection with a free stream: 1 when it did,
 * 0 when none has room (the caller opens one or queues). */
int shadow__h2_place(shadow_upstream_t *u, leg_t *leg);
/* Whether a queued HTTP/2 leg could be placed now. */
int shadow__h2_has_room(shadow_upstream_t *u);
/* conn is connected (and its TLS done): start HTTP/2 on it, or hand its
 * legs to HTTP/1.1 when ALPN chose that. */
void shadow__h2_conn_ready(conn_t *conn);
/* conn could not connect: its legs fail over or fail with reason. */
void shadow__h2_conn_failed(conn_t *conn, int reason, const char *detail);
void shadow__h2_on_read(conn_t *conn, ssize_t nread, const uv_buf_t *buf);
void shadow__h2_on_timer(conn_t *conn);
/* Closing: every leg fails with err (CANCELED on close). */
void shadow__h2_conn_abandon(conn_t *conn, int err);
void shadow__h2_conn_fail(conn_t *conn, int err, const char *detail);
void shadow__h2_conn_attach(conn_t *conn, leg_t *leg);
void shadow__h2_conn_free(conn_t *conn);
void shadow__h2_leg_body(leg_t *leg);
void shadow__h2_leg_pause(leg_t *leg);
void shadow__h2_leg_resume(leg_t *leg);
void shadow__h2_leg_abort(leg_t *leg);
/* From the loop: paused bytes of resumed legs. */
void shadow__h2_flush_resumed(shadow_upstream_t *u);

#endif
