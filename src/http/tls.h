/* TLS over memory BIOs, driven by whoever owns the socket: ciphertext
 * read from the socket goes in with shadow_tls_feed(), plaintext comes out
 * of shadow_tls_read(); plaintext written with shadow_tls_write() turns
 * into ciphertext that shadow_tls_take() hands over for the socket. No
 * socket, no loop: OpenSSL never blocks and never touches a descriptor, so
 * the event loop stays in charge (see stream.c). */
#ifndef SHADOW_TLS_H
#define SHADOW_TLS_H

#include <stddef.h>

#include "buf.h"

typedef struct shadow_tls_ctx_s shadow_tls_ctx_t;
typedef struct shadow_tls_s shadow_tls_t;

/* A backend's TLS settings. */
typedef struct shadow_tls_client_opts_s {
  const char *ca_file;     /* NULL: the system's CA store */
  const char *server_name; /* SNI and the name checked; NULL: none */
  int verify;              /* 0 only when a config writes verify = false */
  const char *cert_file;   /* a client certificate (mutual TLS), or NULL */
  const char *key_file;
  /* What ALPN offers: SHADOW_TLS_ALPN_HTTP1 (the default), _H2 alone
   * (gRPC, protocol "h2"), _AUTO, both with h2 first, or _NONE (not an
   * HTTP peer: the fleet store's Redis). */
  int alpn;
} shadow_tls_client_opts_t;

enum {
  SHADOW_TLS_ALPN_HTTP1 = 0,
  SHADOW_TLS_ALPN_H2,
  SHADOW_TLS_ALPN_AUTO,
  SHADOW_TLS_ALPN_NONE
};

/* 0, or a negative code and *err naming the file or the problem. */
int shadow_tls_client_ctx(const shadow_tls_client_opts_t *o,
                          shadow_tls_ctx_t **out, char **err);
/* A listener's certificate and key; ALPN offers h2 and http/1.1. */
int shadow_tls_server_ctx(const char *cert_file, const char *key_file,
                          shadow_tls_ctx_t **out, char **err);
void shadow_tls_ctx_ref(shadow_tls_ctx_t *c);
void shadow_tls_ctx_unref(shadow_tls_ctx_t *c); /* NULL is fine */
/* Handshakes that resumed a session, and all handshakes done. */
void shadow_tls_ctx_counts(const shadow_tls_ctx_t *c, unsigned long *done,
                           unsigned long *resumed);

/* One connection's TLS, as client or server; NULL when out of memory. */
shadow_tls_t *shadow_tls_new(shadow_tls_ctx_t *ctx, int server);
void shadow_tls_free(shadow_tls_t *t); /* NULL is fine */

enum {
  SHADOW_TLS_OK = 0,     /* done (handshake complete, or bytes taken) */
  SHADOW_TLS_WANT = 1,   /* needs more ciphertext from the peer */
  SHADOW_TLS_CLOSED = 2, /* the peer closed the TLS session */
  SHADOW_TLS_ERROR = -1  /* failed; shadow_tls_error() says why */
};

/* Ciphertext from the socket. 0 or SHADOW_TLS_ERROR (no memory). */
int shadow_tls_feed(shadow_tls_t *t, const char *data, size_t len);
/* Advances the handshake. OK once it is done, WANT, or ERROR. */
int shadow_tls_handshake(shadow_tls_t *t);
int shadow_tls_handshake_done(const shadow_tls_t *t);
/* Plaintext into buf: > 0 bytes, 0 (nothing more for now), -2 (the peer
 * closed the session) or -1 (an error). */
long shadow_tls_read(shadow_tls_t *t, char *buf, size_t cap);
/* Encrypts len bytes. OK or ERROR. */
int shadow_tls_write(shadow_tls_t *t, const char *data, size_t len);
/* Starts an orderly close (close_notify); the alert is then to take. */
void shadow_tls_shutdown(shadow_tls_t *t);
/* Ciphertext waiting for the socket: appended to out, 0 or -ENOMEM. */
size_t shadow_tls_pending(const shadow_tls_t *t);
int shadow_tls_take(shadow_tls_t *t, shadow_buf_t *out);
/* Why the last ERROR happened, for "tls: <reason>": a certificate check's
 * words ("certificate has expired", "hostname mismatch") or OpenSSL's. */
const char *shadow_tls_error(const shadow_tls_t *t);
/* The ALPN protocol the peer chose, or "" when none. */
const char *shadow_tls_alpn(shadow_tls_t *t);

#endif
