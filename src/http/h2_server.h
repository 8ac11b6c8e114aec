/* HTTP/2 from clients: one connection's nghttp2 server session, without a
 * socket. server.c owns the connection (socket, TLS, timers, limits on
 * connections, the drain) and feeds the client's bytes in and writes the
 * frames out; this file turns each stream into a shadow_request_t for the
 * same handler as HTTP/1.1, and takes the handler's answer through the
 * same calls (server.c routes a request with http_major 2 here). So the
 * fuzzer drives a session exactly as the server does, bytes in and out. */
#ifndef SHADOW_H2_SERVER_H
#define SHADOW_H2_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "request_parse.h"
#include "server.h"

typedef struct shadow_h2_s shadow_h2_t;

/* The connection preface a client opens with (RFC 9113 section 3.4). */
#define SHADOW_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define SHADOW_H2_PREFACE_LEN 24

/* What the session asks of the connection that owns it. */
typedef struct shadow_h2_io_s {
  void *ud;
  /* Frames or deferred work wait: call shadow_h2_send soon, from the loop
   * (never from inside this call). */
  void (*want_write)(void *ud);
  /* A request was handed to the handler, and given back by it. */
  void (*handed)(void *ud, shadow_request_t *req);
  void (*given_back)(void *ud); /* the last thing the session does */
  /* A bad-input answer (GOAWAY or RST_STREAM with an error code), by
   * reason: "bad_preface", "protocol", ... (NULL-able). */
  void (*error)(void *ud, const char *reason);
  /* Milliseconds on a monotonic clock, for the reset rate. */
  uint64_t (*now_ms)(void *ud);
} shadow_h2_io_t;

/* What each request gets from the connection. */
typedef struct shadow_h2_conn_info_s {
  const char *peer;       /* the client's address */
  const char *local_host; /* "addr:port" for a request with no :authority */
  int tls;
} shadow_h2_conn_info_t;

/* A session with opts' limits; its SETTINGS are queued at once. 0 or
 * -ENOMEM. */
int shadow_h2_new(const shadow_server_opts_t *opts,
                  const shadow_server_handler_t *h, const shadow_h2_io_t *io,
                  const shadow_h2_conn_info_t *info, shadow_h2_t **out);
/* Only once no request is with the handler (see shadow_h2_inflight). */
void shadow_h2_free(shadow_h2_t *s);

/* The client's bytes. 0, or a negative code when the connection is done
 * for (what it still has to say, a GOAWAY, is then to send before the
 * close). */
int shadow_h2_feed(shadow_h2_t *s, const char *data, size_t len);
/* Runs deferred work (bodies held back by a pause, on_writable) and
 * appends frames to out until about max bytes are there or nothing is
 * left. 0 or a negative code (the connection is done for). */
int shadow_h2_send(shadow_h2_t *s, shadow_buf_t *out, size_t max);
/* Nothing is left to read or to write: the connection may close. */
int shadow_h2_done(const shadow_h2_t *s);
/* The client can send more; streams are open (at any stage); requests are
 * with the handler; some are waiting for request body bytes. */
int shadow_h2_want_read(const shadow_h2_t *s);
size_t shadow_h2_streams(const shadow_h2_t *s);
size_t shadow_h2_inflight(const shadow_h2_t *s);
int shadow_h2_body_waiting(const shadow_h2_t *s);
/* A stream has begun its headers and not finished them, or none has come
 * yet: what the header timeout applies to. */
int shadow_h2_heading(const shadow_h2_t *s);
/* Graceful end: GOAWAY (NO_ERROR, the last stream id) is queued, streams
 * in flight finish, and then the session is done. Safe twice. */
void shadow_h2_goaway(shadow_h2_t *s);
/* The connection is gone: every request with the handler gets
 * on_abort(why); streams that wait for a body are told SHADOW_ABORT_TIMEOUT
 * when why is that (the body stalled), and answered 408 if they can. */
void shadow_h2_abort_all(shadow_h2_t *s, int why);
void shadow_h2_abort_waiting(shadow_h2_t *s);

/* The request calls of server.h, for a request with http_major 2. */
int shadow_h2_head(shadow_request_t *req, int status,
                   const shadow_headers_t *headers, int64_t body_len);
int shadow_h2_interim(shadow_request_t *req, int status,
                      const shadow_headers_t *headers);
int shadow_h2_body(shadow_request_t *req, const char *data, size_t len);
void shadow_h2_flush(shadow_request_t *req);
void shadow_h2_end(shadow_request_t *req, const shadow_headers_t *trailers);
void shadow_h2_abort(shadow_request_t *req);
int shadow_h2_head_sent(const shadow_request_t *req);
void shadow_h2_pause_body(shadow_request_t *req);
void shadow_h2_resume_body(shadow_request_t *req);

#endif
