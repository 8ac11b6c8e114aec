/* One connection to a Redis server, plain or TLS, on the caller's libuv
 * loop: our own stream (http/stream.h) carries the bytes, so rediss://
 * uses the same TLS code as https backends, and hiredis does only what it
 * is good at: its redisReader parses RESP replies. (hiredis 0.14's async
 * API on libuv cannot do TLS, which is why it is not used.)
 *
 * The owner sends batches: a run of commands already encoded as RESP,
 * whose replies come back together in one callback. One batch at a time;
 * nothing ever blocks. Any failure (resolve, connect, TLS, a lost or
 * silent server, a reply that does not parse) ends the connection with one
 * SHADOW_REDIS_FAILED event, after which the owner forgets it: it frees
 * itself once libuv has closed its handles. */
#ifndef SHADOW_REDIS_CONN_H
#define SHADOW_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "tls.h"

typedef struct shadow_redis_conn_s shadow_redis_conn_t;

/* A batch's replies may take at most this many bytes; past it the
 * connection fails ("replies too large"), so a server gone wrong cannot
 * grow our memory without end. */
#define SHADOW_REDIS_REPLY_MAX ((size_t)256 << 20)

enum {
  SHADOW_REDIS_READY = 0,   /* connected (and the TLS handshake done) */
  SHADOW_REDIS_REPLIES = 1, /* the batch's replies, all of them */
  SHADOW_REDIS_FAILED = 2   /* the connection is over; why says why */
};

/* replies (n of them) are valid during the call only. */
typedef void (*shadow_redis_event_cb)(void *ud, shadow_redis_conn_t *c,
                                      int event, redisReply **replies, size_t n,
                                      const char *why);

/* Starts connecting to host:port (a name is looked up without blocking).
 * tls (NULL: plain) is referenced; server_name is SNI's and the name the
 * certificate is checked against (the context has it). timeout_ms bounds
 * the connect and each batch's wait for its replies. 0, or -ENOMEM and
 * no event ever. */
int shadow_redis_conn_open(uv_loop_t *loop, const char *host, int port,
                           shadow_tls_ctx_t *tls, uint64_t timeout_ms,
                           shadow_redis_event_cb cb, void *ud,
                           shadow_redis_conn_t **out);
/* Sends a batch of nreplies commands (data is copied). 0, or -EBUSY when
 * a batch is in flight, -ENOTCONN before READY. */
int shadow_redis_conn_send(shadow_redis_conn_t *c, const char *data, size_t len,
                           size_t nreplies);
/* Whether a batch is in flight. */
int shadow_redis_conn_busy(const shadow_redis_conn_t *c);
/* CPU time spent reading and parsing replies since the last call (the
 * owner's callback excluded), in ns; the counter restarts at 0. */
uint64_t shadow_redis_conn_take_cpu_ns(shadow_redis_conn_t *c);
/* The calling thread's CPU time, in ns. */
uint64_t shadow_redis_cpu_ns(void);
/* Closes; no event follows. NULL is fine. */
void shadow_redis_conn_close(shadow_redis_conn_t *c);

/* Appends one command (argc words of the given lengths) as RESP. 0 or
 * -ENOMEM. */
int shadow_redis_encode(shadow_buf_t *out, int argc, const char **argv,
                        const size_t *lens);
/* The same for words that are C strings. */
int shadow_redis_encodev(shadow_buf_t *out, int argc, ...);

#endif
