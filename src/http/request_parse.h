/* The request parser: bytes in, complete requests or a protocol answer out.
 * It owns no socket, so the server, the fuzzer and tests drive it alike.
 *
 * llhttp does the grammar; this file adds what a proxy's front door needs on
 * top of it: a strict scan of the request head (bare LF, bare CR, obs-fold
 * and control bytes are refused rather than guessed at, because a backend
 * that guesses differently is how requests get smuggled), byte limits on the
 * head and the body, and one request at a time: parsing stops after each
 * complete request so the caller can answer it before the next one. */
#ifndef SHADOW_REQUEST_PARSE_H
#define SHADOW_REQUEST_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "buf.h"
#include "header_span.h"
#include "record.h"

/* One parsed request head, and the body bytes parsed so far. The server
 * keeps one per connection and reuses it for each request. */
typedef struct shadow_request_s {
  const char *method;  /* "GET": static storage */
  int method_id;       /* llhttp_method_t */
  shadow_buf_t target; /* request-target as sent: "/path?query" */
  shadow_headers_t headers;
  /* Body bytes parsed and not yet taken by whoever reads the body: in a
   * streaming parser they are taken after each feed, otherwise this is
   * the whole body, de-chunked. */
  shadow_buf_t body;
  int64_t content_length; /* as declared; -1 when chunked; 0 without body */
  uint64_t body_seen;     /* body bytes parsed so far, in all */
  int body_complete;      /* the last body byte has been parsed */
  int expect_continue;    /* the client asked for 100 Continue */
  int http_major, http_minor;
  int keep_alive;    /* the connection stays open after this one */
  int tls;           /* it came over TLS (X-Forwarded-Proto: https) */
  int upgrade;       /* it asks for Upgrade: a 101 makes it a tunnel */
  uint64_t start_ns; /* set by the caller: when the request began */
  char peer[64];     /* client address, for x-forwarded-for */
  void *data;        /* the handler's */
} shadow_request_t;

typedef enum shadow_parse_event_e {
  SHADOW_PARSE_MORE = 0, /* everything consumed; feed more bytes */
  SHADOW_PARSE_REQUEST,  /* *req is complete; feed the rest after answering */
  SHADOW_PARSE_CONTINUE, /* the head is complete and asks for 100 Continue:
                            send it, go on */
  SHADOW_PARSE_HEAD,     /* streaming: the head is complete, the body may
                            follow */
  SHADOW_PARSE_ERROR     /* answer parser.status and close */
} shadow_parse_event_t;

typedef struct shadow_request_parser_s {
  llhttp_t http;
  shadow_request_t *req; /* filled in place: the caller reuses it */
  size_t header_limit;
  /* Header lines in one head, 0: no limit (set after init). Past it the
   * answer is 431 at once, as Apache's LimitRequestFields and HAProxy's
   * tune.http.maxhdr do: every line costs work at every layer. */
  size_t max_headers;
  uint64_t body_limit; /* 0: no limit */
  /* Streaming: stop after the head (SHADOW_PARSE_HEAD) so the request can
   * be handed on before its body has arrived; body bytes then collect in
   * req->body for the caller to take after each feed. */
  int stream;
  int status;      /* after SHADOW_PARSE_ERROR: 400, 413 or 431 */
  const char *why; /* after SHADOW_PARSE_ERROR: for logs and tests */

  /* The head scan (see request_parse.c). */
  int in_head;       /* before headers complete */
  int started;       /* a byte of the current request has arrived */
  size_t head_bytes; /* request line + headers so far, CRLFs included */
  size_t line_len;
  int prev_cr;
  int seen_line;      /* the request line has begun */
  int seen_head_line; /* the request line has ended */
  /* The chunked-body scan (see request_parse.c). */
  int chunk_scan;
  int chunk_state;
  uint64_t chunk_left;

  /* The header line being received (header_span.h): pointed at in the
   * read, joined aside only when a read splits it; one shadow_headers_add
   * per line once it is whole. */
  shadow_header_span_t field;
  shadow_header_span_t value;
  size_t trailer_bytes;
  int expect_continue;
  int head_done; /* 1: paused after the head; 2: that was reported */
  int complete;  /* paused after on_message_complete */
  int done;      /* the connection carries no further request */
} shadow_request_parser_t;

/* Sets p up to fill req, which must outlive it; req's buffers are reset.
 * body_limit 0 is no limit; stream as described above. */
void shadow_request_parser_init(shadow_request_parser_t *p,
                                shadow_request_t *req, size_t header_limit,
                                uint64_t body_limit, int stream);
/* Frees the parser's own scratch memory (not req's). Safe twice. */
void shadow_request_parser_free(shadow_request_parser_t *p);

/* Parses up to len bytes of data; *used says how many were taken. After
 * SHADOW_PARSE_HEAD the head is complete and parsing goes on with the body;
 * after SHADOW_PARSE_REQUEST the request (body included) is complete and
 * the caller owns *req until it calls shadow_request_parser_next(); after
 * SHADOW_PARSE_ERROR every further call returns the same error. */
shadow_parse_event_t shadow_request_parse(shadow_request_parser_t *p,
                                          const char *data, size_t len,
                                          size_t *used);

/* Clears *req (keeping its memory) for the next request on the connection. */
void shadow_request_parser_next(shadow_request_parser_t *p);

/* True once any byte of a request that is not complete yet has arrived:
 * what tells an idle keep-alive connection from a slow client. */
int shadow_request_parser_started(const shadow_request_parser_t *p);

/* Whether a Host value is one (RFC 9110 section 7.2), for Host headers and
 * absolute-form authorities alike. */
int shadow_request_host_valid(const char *s, size_t n);

/* The request line's rules as this parser applies them to a client, for
 * what a hook writes in their place: a method is a token (RFC 9110
 * section 9.1); a target is origin-form ("/..."), or "*", and holds no
 * byte the head scan refuses in a request line (controls, TAB, DEL) nor
 * a space, which would end it early. */
int shadow_request_method_valid(const char *s, size_t n);
int shadow_request_target_valid(const char *s, size_t n);

/* Releases the memory of a request's contents (method and peer stay). */
void shadow_request_release(shadow_request_t *req);

/* llhttp's number for an HTTP method name (any case), or -1. */
int shadow_request_method_id(const char *name);

#endif
