/* The HTTP server: a libuv TCP listener, client connections, llhttp
 * request parsing, and the limits of the bad-input table. HTTP/2 comes in
 * by its preface on a plain listener and by ALPN on a TLS one, and its
 * streams are requests under the same calls (h2_server.c; a request's
 * http_major is 2). It knows nothing of shadowing. A request is handed out when
 * its head is parsed; its body and its response then stream, each with
 * backpressure, so neither is ever held whole. Used for the proxy and the
 * admin. */
#ifndef SHADOW_SERVER_H
#define SHADOW_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "record.h"
#include "request_parse.h"
#include "stream.h"

typedef struct shadow_server_s shadow_server_t;

typedef struct shadow_server_opts_s {
  size_t header_bytes;        /* request line + headers; over: 431 */
  size_t max_headers;         /* header lines; 0: no cap; over: 431 */
  uint64_t body_bytes;        /* request body; over: 413; 0: no cap */
  uint64_t header_timeout_ms; /* until a request's headers are complete: 408 */
  uint64_t idle_timeout_ms;   /* a keep-alive connection with nothing to do,
                                 a body that stops arriving, a response the
                                 client stops reading */
  size_t max_connections;     /* 0: no cap; over: 503 and close */
  /* A client is refused the same way when fewer file descriptors than
   * this would be left (RLIMIT_NOFILE), so that what else needs them (the
   * admin port, backends, files) still gets them; 0: no such check. */
  size_t fd_reserve;
  uint64_t tunnel_idle_timeout_ms; /* an upgraded connection with no bytes
                                      either way */
  /* SO_REUSEPORT, so that several worker loops can each listen on the same
   * address and the kernel spreads connections across them. */
  int reuse_port;
  /* HTTP/2: streams open at once on a connection (SETTINGS_MAX_CONCURRENT_
   * STREAMS; more are refused with RST_STREAM REFUSED_STREAM), and stream
   * resets a client may send per 10 s before it is sent away (GOAWAY
   * ENHANCE_YOUR_CALM; 0: no cap). */
  size_t h2_max_streams;
  uint64_t h2_max_resets;
  /* A TLS listener's context (the server takes its own reference), or
   * NULL for plain HTTP. */
  shadow_tls_ctx_t *tls;
} shadow_server_opts_t;

/* 64 KiB, 8 MiB, 10 s, 60 s, 0; HTTP/2: 128 streams, 1000 resets. */
void shadow_server_opts_default(shadow_server_opts_t *o);

/* Why a request was abandoned before it was answered. */
enum {
  SHADOW_ABORT_CLIENT = 1, /* the client went away or its socket failed */
  SHADOW_ABORT_BODY,       /* its body broke the framing or the limit */
  SHADOW_ABORT_TIMEOUT,    /* its body or the client's reading stalled */
  SHADOW_ABORT_CLOSE       /* the server is closing */
};

/* What a server calls. Only on_request is required. Without on_body the
 * server reads the whole body (up to body_bytes) before on_request, so the
 * request arrives complete; with it, on_request comes once the head is in,
 * req->body holds the body bytes that came with it (req->body_complete
 * says whether that is all), and the rest comes through on_body, then
 * on_body_end. A request is the handler's from on_request until it calls
 * shadow_server_end() (or respond) for it, whatever happens meanwhile. */
#define SHADOW_REFUSE_FDS 1

typedef struct shadow_server_handler_s {
  void (*on_request)(shadow_request_t *req, void *ud);
  void (*on_body)(shadow_request_t *req, const char *data, size_t len);
  void (*on_body_end)(shadow_request_t *req);
  /* The response queue has drained after a write that asked to wait. */
  void (*on_writable)(shadow_request_t *req);
  /* The request cannot be answered any more (SHADOW_ABORT_*): stop
   * producing and end it; the server answers or closes as fits. */
  void (*on_abort)(shadow_request_t *req, int why);
  void *ud;
  /* A client was turned away (NULL-able): err 0 at max_connections and
   * SHADOW_REFUSE_FDS short of descriptors (fd_reserve), both answered
   * 503 (or closed bare past the refusals in progress); else the accept's
   * error (UV_EMFILE when even fd_reserve did not keep one free; libuv
   * then accepts and closes what waits, so the loop does not spin, and
   * says so only when it cannot, so this is rare). first says
   * it is the first since the server last admitted a client: a burst
   * begins, which is the time to log. */
  void (*on_refuse)(void *ud, int err, int first);
  /* An HTTP/2 client's bad input was answered with GOAWAY or RST_STREAM
   * and an error code (NULL-able): reason is "bad_preface", "protocol",
   * "flow_control", "frame_size", "compression", "invalid_header",
   * "header_list", "refused_stream", "reset_flood", "flood" or
   * "stream_closed". */
  void (*on_h2_error)(void *ud, const char *reason);
} shadow_server_handler_t;

/* Binds addr ("127.0.0.1:8080", "[::1]:8080", ":8080") and listens. On
 * failure returns a negative code and sets *err (free() it). */
int shadow_server_listen(uv_loop_t *loop, const char *addr,
                         const shadow_server_opts_t *opts,
                         const shadow_server_handler_t *handler,
                         shadow_server_t **out, char **err);

/* The response, in pieces. head() starts it: headers are end-to-end (the
 * server drops hop-by-hop ones and writes its own framing): Content-Length
 * when body_len >= 0, else chunked to an HTTP/1.1 client and the end of
 * the connection to an HTTP/1.0 one. A 101 to a request that asked for an
 * upgrade (req->upgrade) makes the connection a tunnel: its Upgrade and
 * Connection headers go out, body() then writes raw bytes, the client's
 * bytes come raw through on_body, and end() closes it. HEAD requests and
 * 1xx/204/304 carry no body; for HEAD and 304 a content-length in headers is
 * passed on. interim() sends a 1xx before it (not to HTTP/1.0 clients). body()
 * queues bytes and returns 0, or 1 when the client is not keeping up: stop
 * until on_writable. end() finishes it (trailers go out with a chunked body)
 * and gives the request back; a response cut short by end() before its
 * declared length closes the connection. Queued bytes are written when the
 * producer calls flush(), or end(). Each copies what it is given. */
int shadow_server_head(shadow_request_t *req, int status,
                       const shadow_headers_t *headers, int64_t body_len);
int shadow_server_interim(shadow_request_t *req, int status,
                          const shadow_headers_t *headers);
int shadow_server_body(shadow_request_t *req, const char *data, size_t len);
void shadow_server_flush(shadow_request_t *req);
void shadow_server_end(shadow_request_t *req, const shadow_headers_t *trailers);
/* Gives the request back without a proper ending: the connection closes
 * (after the bytes queued so far), as when a backend fails mid-response. */
void shadow_server_abort(shadow_request_t *req);
/* head + body + end in one. May be called from inside on_request. */
void shadow_server_respond(shadow_request_t *req, int status,
                           const shadow_headers_t *headers, const char *body,
                           size_t body_len);
/* The response head has been queued. */
int shadow_server_head_sent(const shadow_request_t *req);

/* Stops and restarts reading a streamed request body (backpressure). */
void shadow_server_pause_body(shadow_request_t *req);
void shadow_server_resume_body(shadow_request_t *req);

/* The port the listener is bound to: what "127.0.0.1:0" picked. */
int shadow_server_port(const shadow_server_t *s);

/* Applies new options to connections accepted from now on; HTTP/2
 * connections are sent a GOAWAY, so their clients move to a new
 * connection (and the new options) once their streams are done. */
void shadow_server_set_opts(shadow_server_t *s, const shadow_server_opts_t *o);

/* Graceful stop: stop accepting, close idle connections, close each busy
 * one after its current response, and call done (once) when the last
 * connection has gone. */
void shadow_server_drain(shadow_server_t *s, void (*done)(void *ud), void *ud);
/* Requests handed to the handler and not yet ended. */
size_t shadow_server_inflight(const shadow_server_t *s);
size_t shadow_server_connections(const shadow_server_t *s);
/* Closes everything now: requests in flight get on_abort(CLOSE). Memory is
 * freed in the handles' close callbacks, so run the loop afterwards. */
void shadow_server_close(shadow_server_t *s);

/* "Bad Request" for 400 and so on; "" for unknown codes. */
const char *shadow_http_reason(int status);

#endif
