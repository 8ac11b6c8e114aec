/* A TCP connection, plain or TLS, as the server and the upstream client
 * use it: reads hand over plaintext, writes take plaintext, and with TLS
 * the handshake, the records and the close_notify happen underneath (over
 * memory BIOs, see tls.c). The owner embeds the stream and keeps libuv's
 * model: one write of its own in flight at a time, a callback when it is
 * done (never from inside the write call), memory freed in the close
 * callback. A write the socket takes whole at once costs one system call
 * and no change to the connection's epoll registration (see stream.c). */
#ifndef SHADOW_STREAM_H
#define SHADOW_STREAM_H

#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "tls.h"

typedef struct shadow_stream_s shadow_stream_t;

/* A TLS failure (the handshake, a bad record, a certificate): nread or
 * status is this, and shadow_stream_error() has the words. */
#define SHADOW_STREAM_ETLS (-7000)
/* A TLS server's client spoke plain HTTP (its first byte is a letter, not
 * a TLS record): on_ready gets this, and the stream is plain from now on,
 * so the owner can answer in words the client reads. */
#define SHADOW_STREAM_EPLAIN (-7001)

/* As libuv's: the owner's alloc gives where plaintext lands; nread > 0
 * bytes are in buf; UV_EOF: the peer closed (with TLS: close_notify or
 * the socket's end); < 0 otherwise: a failure. */
typedef void (*shadow_stream_alloc_cb)(shadow_stream_t *s, size_t suggested,
                                       uv_buf_t *buf);
typedef void (*shadow_stream_read_cb)(shadow_stream_t *s, ssize_t nread,
                                      const uv_buf_t *buf);
typedef void (*shadow_stream_write_cb)(shadow_stream_t *s, int status);
/* The TLS handshake finished: status 0, or SHADOW_STREAM_ETLS. */
typedef void (*shadow_stream_ready_cb)(shadow_stream_t *s, int status);

struct shadow_stream_s {
  uv_tcp_t tcp; /* first: libuv's handle is the stream */
  shadow_tls_t *tls;
  void *data; /* the owner's */
  shadow_stream_alloc_cb on_alloc;
  shadow_stream_read_cb on_read;
  shadow_stream_ready_cb on_ready;
  shadow_stream_write_cb on_written; /* of the owner's write in flight */
  uv_close_cb on_close;
  uv_write_t wreq; /* the owner's write, on a plain stream */
  /* An owner's write the socket took whole: its callback runs from this
   * idle handle on the loop's next turn, before it polls. */
  uv_idle_t done_idle;
  int done_pending;
  uv_shutdown_t sreq;
  int want_read; /* the owner reads */
  int reading;   /* libuv reads */
  int writing;   /* the owner's write is in flight */
  int closing;
  int server;       /* TLS: the server's side */
  int tls_seen;     /* TLS: the peer's first bytes were a TLS record */
  int open_handles; /* tcp and done_idle, until both have closed */
};

/* Sets up s (not yet connected) on loop; data is the owner's. */
int shadow_stream_init(uv_loop_t *loop, shadow_stream_t *s, void *data);
/* The stream of a libuv handle (a close callback's argument). */
shadow_stream_t *shadow_stream_of(uv_handle_t *h);
/* Turns a connected stream into TLS, as client or server; the handshake
 * starts now and ends with on_ready. 0, or -ENOMEM. */
int shadow_stream_start_tls(shadow_stream_t *s, shadow_tls_ctx_t *ctx,
                            int server, shadow_stream_ready_cb on_ready);
int shadow_stream_read_start(shadow_stream_t *s, shadow_stream_alloc_cb alloc,
                             shadow_stream_read_cb cb);
void shadow_stream_read_stop(shadow_stream_t *s);
/* Writes bufs (copied by TLS, referenced on a plain stream until cb);
 * one at a time. 0, or a negative code and cb is never called. */
int shadow_stream_write(shadow_stream_t *s, const uv_buf_t *bufs,
                        unsigned nbufs, shadow_stream_write_cb cb);
/* What a plain stream takes now, without queueing (uv_try_write); a TLS
 * stream takes nothing this way (UV_EAGAIN). */
int shadow_stream_try_write(shadow_stream_t *s, const uv_buf_t *bufs,
                            unsigned nbufs);
/* Bytes queued for the socket (ciphertext with TLS). */
size_t shadow_stream_queued(const shadow_stream_t *s);
/* Sends close_notify (TLS) and half-closes the socket. 0 or < 0. */
int shadow_stream_shutdown(shadow_stream_t *s);
/* Closes; cb runs (with the tcp handle) once libuv has closed it. */
void shadow_stream_close(shadow_stream_t *s, uv_close_cb cb);
/* The words for the last SHADOW_STREAM_ETLS. */
const char *shadow_stream_error(const shadow_stream_t *s);
int shadow_stream_is_tls(const shadow_stream_t *s);

#endif
