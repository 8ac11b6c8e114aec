/* TLS over memory BIOs with OpenSSL 3 (see tls.h). A client context is one
 * backend's: its CA store, the name to check and send as SNI, an optional
 * client certificate, and the session of the latest handshake, which the
 * next connection offers so that a pool reconnecting resumes instead of
 * paying a full handshake. A server context is one listener's. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct shadow_tls_ctx_s {
  SSL_CTX *ssl;
  int refs;
  int server;
  char *server_name;
  SSL_SESSION *session; /* the latest one a server gave us */
  unsigned long done, resumed;
};

struct shadow_tls_s {
  shadow_tls_ctx_t *ctx;
  SSL *ssl;
  BIO *in, *out; /* ciphertext from and to the peer */
  int handshaken;
  char error[160];
  char alpn[32];
};

/* The index of our context in each SSL_CTX's ex_data, for the callbacks. */
static int ctx_index = -1;

static int set_err(char **err, const char *fmt, const char *a) {
  if (err) {
    char line[256];
    unsigned long e = ERR_get_error();
    char why[160] = "";
    if (e) ERR_error_string_n(e, why, sizeof(why));
    snprintf(line, sizeof(line), fmt, a ? a : "", why);
    *err = strdup(line);
  }
  ERR_clear_error();
  return -EINVAL;
}

/* A new session (TLS 1.3 sends them after the handshake): keep it. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
  shadow_tls_ctx_t *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
  if (!c) return 0;
  if (c->session) SSL_SESSION_free(c->session);
  c->session = sess;
  return 1; /* we took the reference */
}

static shadow_tls_ctx_t *ctx_new(const SSL_METHOD *m, int server) {
  if (ctx_index < 0)
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  shadow_tls_ctx_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->ssl = SSL_CTX_new(m);
  if (!c->ssl) {
    free(c);
    return NULL;
  }
  c->refs = 1;
  c->server = server;
  SSL_CTX_set_ex_data(c->ssl, ctx_index, c);
  SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
  /* Partial writes: SSL_write may take part of a buffer; the BIO is
   * memory, so it never does, but the mode makes that a non-issue. */
  SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION);
  return c;
}

int shadow_tls_client_ctx(const shadow_tls_client_opts_t *o,
                          shadow_tls_ctx_t **out, char **err) {
  *out = NULL;
  shadow_tls_ctx_t *c = ctx_new(TLS_client_method(), 0);
  if (!c) return set_err(err, "tls: cannot make a context%s%s", NULL);
  int rc = 0;
  if (o->ca_file) {
    if (SSL_CTX_load_verify_locations(c->ssl, o->ca_file, NULL) != 1)
      rc = set_err(err, "tls: cannot read ca_file %s: %s", o->ca_file);
  } else if (SSL_CTX_set_default_verify_paths(c->ssl) != 1) {
    rc = set_err(err, "tls: no system CA store%s: %s", NULL);
  }
  if (rc == 0 && o->cert_file &&
      SSL_CTX_use_certificate_chain_file(c->ssl, o->cert_file) != 1)
    rc = set_err(err, "tls: cannot read cert_file %s: %s", o->cert_file);
  if (rc == 0 && o->key_file &&
      SSL_CTX_use_PrivateKey_file(c->ssl, o->key_file, SSL_FILETYPE_PEM) != 1)
    rc = set_err(err, "tls: cannot read key_file %s: %s", o->key_file);
  if (rc == 0 && o->cert_file && SSL_CTX_check_private_key(c->ssl) != 1)
    rc = set_err(err, "tls: key_file does not match cert_file%s: %s", NULL);
  if (rc == 0 && o->server_name && !(c->server_name = strdup(o->server_name)))
    rc = -ENOMEM;
  if (rc) {
    shadow_tls_ctx_unref(c);
    return rc;
  }
  SSL_CTX_set_verify(c->ssl, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                     NULL);
  static const unsigned char h1[] = "\x08http/1.1", h2[] = "\x02h2",
                             both[] = "\x02h2\x08http/1.1";
  if (o->alpn == SHADOW_TLS_ALPN_H2)
    SSL_CTX_set_alpn_protos(c->ssl, h2, sizeof(h2) - 1);
  else if (o->alpn == SHADOW_TLS_ALPN_AUTO)
    SSL_CTX_set_alpn_protos(c->ssl, both, sizeof(both) - 1);
  else if (o->alpn == SHADOW_TLS_ALPN_HTTP1)
    SSL_CTX_set_alpn_protos(c->ssl, h1, sizeof(h1) - 1);
  /* Sessions are kept by us (on_new_session), one per backend. */
  SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_CLIENT |
                                             SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(c->ssl, on_new_session);
  *out = c;
  return 0;
}

static int select_alpn(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  /* HTTP/2 first, as nginx prefers it: a client that offers both speaks
   * h2 (server.c hands the connection to an h2 session). */
  static const unsigned char ours[] = "\x02h2\x08http/1.1";
  unsigned char *chosen;
  if (SSL_select_next_proto(&chosen, outlen, ours, sizeof(ours) - 1, in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK; /* no ALPN: HTTP/1.1 anyway */
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

int shadow_tls_server_ctx(const char *cert_file, const char *key_file,
                          shadow_tls_ctx_t **out, char **err) {
  *out = NULL;
  shadow_tls_ctx_t *c = ctx_new(TLS_server_method(), 1);
  if (!c) return set_err(err, "tls: cannot make a context%s%s", NULL);
  int rc = 0;
  if (SSL_CTX_use_certificate_chain_file(c->ssl, cert_file) != 1)
    rc = set_err(err, "tls: cannot read cert_file %s: %s", cert_file);
  else if (SSL_CTX_use_PrivateKey_file(c->ssl, key_file, SSL_FILETYPE_PEM) != 1)
    rc = set_err(err, "tls: cannot read key_file %s: %s", key_file);
  else if (SSL_CTX_check_private_key(c->ssl) != 1)
    rc = set_err(err, "tls: key_file does not match cert_file%s: %s", NULL);
  if (rc) {
    shadow_tls_ctx_unref(c);
    return rc;
  }
  SSL_CTX_set_alpn_select_cb(c->ssl, select_alpn, NULL);
  *out = c;
  return 0;
}

void shadow_tls_ctx_ref(shadow_tls_ctx_t *c) {
  c->refs++;
}

void shadow_tls_ctx_unref(shadow_tls_ctx_t *c) {
  if (!c || --c->refs > 0) return;
  if (c->session) SSL_SESSION_free(c->session);
  SSL_CTX_free(c->ssl);
  free(c->server_name);
  free(c);
}

void shadow_tls_ctx_counts(const shadow_tls_ctx_t *c, unsigned long *done,
                           unsigned long *resumed) {
  *done = c->done;
  *resumed = c->resumed;
}

shadow_tls_t *shadow_tls_new(shadow_tls_ctx_t *ctx, int server) {
  shadow_tls_t *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->ssl = SSL_new(ctx->ssl);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->in || !t->out) {
    SSL_free(t->ssl);
    BIO_free(t->in);
    BIO_free(t->out);
    free(t);
    return NULL;
  }
  /* An empty memory BIO reads as "retry", not as the end. */
  BIO_set_mem_eof_return(t->in, -1);
  SSL_set_bio(t->ssl, t->in, t->out); /* the SSL owns both now */
  t->ctx = ctx;
  shadow_tls_ctx_ref(ctx);
  if (server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (ctx->server_name) {
      unsigned char ip[16];
      if (inet_pton(AF_INET, ctx->server_name, ip) == 1 ||
          inet_pton(AF_INET6, ctx->server_name, ip) == 1) {
        /* An address is no name to send (RFC 6066), but the certificate
         * must still be for it. */
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), ctx->server_name);
      } else {
        SSL_set_tlsext_host_name(t->ssl, ctx->server_name);
        /* The certificate must name the host: SSL_set1_host checks it. */
        SSL_set1_host(t->ssl, ctx->server_name);
      }
    }
    if (ctx->session) SSL_set_session(t->ssl, ctx->session);
  }
  return t;
}

void shadow_tls_free(shadow_tls_t *t) {
  if (!t) return;
  /* OpenSSL marks the session of a connection freed without a shutdown
   * as not resumable; a pool closes idle connections all the time, and
   * their sessions are fine, so the shutdown is taken as done. A session
   * that failed was marked by the failure itself. */
  if (t->handshaken && !t->error[0])
    SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(t->ssl);
  shadow_tls_ctx_unref(t->ctx);
  free(t);
}

int shadow_tls_feed(shadow_tls_t *t, const char *data, size_t len) {
  while (len > 0) {
    int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
    int n = BIO_write(t->in, data, chunk);
    if (n <= 0) {
      snprintf(t->error, sizeof(t->error), "out of memory");
      return SHADOW_TLS_ERROR;
    }
    data += n;
    len -= (size_t)n;
  }
  return SHADOW_TLS_OK;
}

/* Words for a failed call: the certificate check's own when it failed,
 * else OpenSSL's first error. */
static int failed(shadow_tls_t *t, int rc) {
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return SHADOW_TLS_WANT;
  if (e == SSL_ERROR_ZERO_RETURN) return SHADOW_TLS_CLOSED;
  long v = SSL_get_verify_result(t->ssl);
  unsigned long err = ERR_peek_error();
  if (v != X509_V_OK) {
    snprintf(t->error, sizeof(t->error), "%s",
             X509_verify_cert_error_string(v));
  } else if (err) {
    const char *r = ERR_reason_error_string(err);
    snprintf(t->error, sizeof(t->error), "%s", r ? r : "handshake failed");
  } else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL) {
    snprintf(t->error, sizeof(t->error), "the peer ended the session");
  } else {
    snprintf(t->error, sizeof(t->error), "error %d", e);
  }
  ERR_clear_error();
  return SHADOW_TLS_ERROR;
}

int shadow_tls_handshake(shadow_tls_t *t) {
  if (t->handshaken) return SHADOW_TLS_OK;
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1) {
    t->handshaken = 1;
    t->ctx->done++;
    if (SSL_session_reused(t->ssl)) t->ctx->resumed++;
    return SHADOW_TLS_OK;
  }
  int r = failed(t, rc);
  return r == SHADOW_TLS_CLOSED ? SHADOW_TLS_ERROR : r;
}

int shadow_tls_handshake_done(const shadow_tls_t *t) {
  return t->handshaken;
}

long shadow_tls_read(shadow_tls_t *t, char *buf, size_t cap) {
  int want = cap > (1u << 30) ? 1 << 30 : (int)cap;
  int n = SSL_read(t->ssl, buf, want);
  if (n > 0) return n;
  int r = failed(t, n);
  return r == SHADOW_TLS_WANT ? 0 : r == SHADOW_TLS_CLOSED ? -2 : -1;
}

int shadow_tls_write(shadow_tls_t *t, const char *data, size_t len) {
  while (len > 0) {
    int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
    int n = SSL_write(t->ssl, data, chunk);
    /* Renegotiation is off, so an established session never has to read
     * before it can write: anything but success is a failure. */
    if (n <= 0) {
      failed(t, n);
      return SHADOW_TLS_ERROR;
    }
    data += n;
    len -= (size_t)n;
  }
  return SHADOW_TLS_OK;
}

void shadow_tls_shutdown(shadow_tls_t *t) {
  if (t->handshaken) SSL_shutdown(t->ssl);
  ERR_clear_error();
}

size_t shadow_tls_pending(const shadow_tls_t *t) {
  return BIO_ctrl_pending(t->out);
}

int shadow_tls_take(shadow_tls_t *t, shadow_buf_t *out) {
  size_t n = BIO_ctrl_pending(t->out);
  if (n == 0) return 0;
  if (shadow_buf_reserve(out, n)) return -ENOMEM;
  int got = BIO_read(t->out, out->data + out->len, (int)n);
  if (got > 0) {
    out->len += (size_t)got;
    out->data[out->len] = '\0';
  }
  return 0;
}

const char *shadow_tls_error(const shadow_tls_t *t) {
  return t->error[0] ? t->error : "handshake failed";
}

const char *shadow_tls_alpn(shadow_tls_t *t) {
  const unsigned char *p;
  unsigned int n;
  SSL_get0_alpn_selected(t->ssl, &p, &n);
  if (!p || n >= sizeof(t->alpn)) return "";
  memcpy(t->alpn, p, n);
  t->alpn[n] = '\0';
  return t->alpn;
}
