/* The HTTP/1.1 server: a libuv TCP listener, client connections, llhttp
 * request parsing, and the limits of DESIGN.md's bad-input table. It knows
 * nothing of shadowing: it hands each complete request to a callback and
 * writes whatever response it is given. Used for the proxy and the admin. */
#ifndef SHADOW_SERVER_H
#define SHADOW_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "record.h"

typedef struct shadow_server_s shadow_server_t;

typedef struct shadow_limits_s {
  size_t header_bytes;        /* request line + headers; over: 431 */
  size_t body_bytes;          /* over: 413 */
  uint64_t header_timeout_ms; /* until a request's headers are complete: 408 */
  uint64_t idle_timeout_ms;   /* a keep-alive connection with nothing to do */
  size_t max_connections;     /* 0: no cap; over: 503 and close */
  /* Not a limit but a listener option: SO_REUSEPORT, so that several
   * worker loops can each listen on the same address and the kernel
   * spreads connections across them. */
  int reuse_port;
} shadow_limits_t;

/* 64 KiB, 8 MiB, 10 s, 60 s, 0: the defaults of DESIGN.md. */
void shadow_limits_default(shadow_limits_t *l);

/* One parsed request. It stays valid, even if the client goes away, until
 * shadow_server_respond() is called for it; then it is gone. */
typedef struct shadow_request_s {
  const char *method;  /* "GET": static storage */
  int method_id;       /* llhttp_method_t */
  shadow_buf_t target; /* request-target as sent: "/path?query" */
  shadow_headers_t headers;
  shadow_buf_t body; /* the whole body, de-chunked */
  int http_major, http_minor;
  int keep_alive;    /* the connection stays open after this one */
  uint64_t start_ns; /* uv_hrtime() when the request began */
  char peer[64];     /* client address, for x-forwarded-for */
  void *data;        /* the handler's */
} shadow_request_t;

typedef void (*shadow_request_cb)(shadow_request_t *req, void *ud);

/* Binds addr ("127.0.0.1:8080", "[::1]:8080", ":8080") and listens. On
 * failure returns a negative code and sets *err (free() it). */
int shadow_server_listen(uv_loop_t *loop, const char *addr,
                         const shadow_limits_t *limits, shadow_request_cb cb,
                         void *ud, shadow_server_t **out, char **err);

/* Answers req and invalidates it. headers are end-to-end headers: the
 * server drops hop-by-hop ones (connection, transfer-encoding,
 * content-length, ...) and writes its own framing: Content-Length of
 * body_len, except for HEAD requests and 1xx/204/304 statuses, where a
 * content-length given in headers is passed through and no body is sent.
 * Everything is copied. May be called from inside the request callback. */
void shadow_server_respond(shadow_request_t *req, int status,
                           const shadow_headers_t *headers, const char *body,
                           size_t body_len);

/* The port the listener is bound to: what "127.0.0.1:0" picked. */
int shadow_server_port(const shadow_server_t *s);

/* Applies new limits to connections accepted from now on. */
void shadow_server_set_limits(shadow_server_t *s, const shadow_limits_t *l);

/* Graceful stop, step one: stop accepting, close idle connections, and
 * close each busy one after its current response. */
void shadow_server_drain(shadow_server_t *s);
/* Requests handed to the callback and not yet answered. */
size_t shadow_server_inflight(const shadow_server_t *s);
size_t shadow_server_connections(const shadow_server_t *s);
/* Closes everything now. Memory is freed in the handles' close callbacks,
 * so run the loop afterwards until it is empty. Requests still in flight
 * remain valid until responded to (responding then writes nothing). */
void shadow_server_close(shadow_server_t *s);

/* "Bad Request" for 400 and so on; "" for unknown codes. */
const char *shadow_http_reason(int status);

#endif
