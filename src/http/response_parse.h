/* A socketless HTTP/1.x response parser over llhttp: bytes in, events out.
 * The head (status and headers) is delivered as soon as it is complete,
 * body bytes as they are parsed (de-chunked), and trailers at the end, so
 * a response of any size streams through a fixed buffer. Interim responses
 * (1xx) are delivered apart and parsing goes on with the final one. The
 * upstream client keeps one parser per connection and reuses it. */
#ifndef SHADOW_RESPONSE_PARSE_H
#define SHADOW_RESPONSE_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "buf.h"
#include "header_span.h"
#include "record.h"

/* Why a response failed: the label values of
 * shadow_candidate_errors_total{reason} (see shadow_upstream_err_name). */
typedef enum shadow_upstream_err_e {
  SHADOW_UPSTREAM_OK = 0,
  SHADOW_UPSTREAM_REFUSED,      /* connect failed */
  SHADOW_UPSTREAM_RESET,        /* closed or reset before a whole response */
  SHADOW_UPSTREAM_TIMEOUT,      /* connect, response head or read timeout */
  SHADOW_UPSTREAM_BAD_RESPONSE, /* not HTTP, or framing errors */
  SHADOW_UPSTREAM_TOO_LARGE,    /* response head over header_bytes */
  SHADOW_UPSTREAM_CANCELED,     /* the upstream was closed */
  SHADOW_UPSTREAM_TLS,          /* TLS handshake or session failed */
  SHADOW_UPSTREAM_ERR_COUNT
} shadow_upstream_err_t;

/* What feed() and finish() return. On SHADOW_RESPONSE_ERROR, err holds a
 * shadow_upstream_err_t reason (RESET, BAD_RESPONSE or TOO_LARGE). */
enum {
  SHADOW_RESPONSE_ERROR = -1,
  SHADOW_RESPONSE_MORE = 0, /* feed more bytes, or finish() on EOF */
  SHADOW_RESPONSE_DONE = 1  /* the response is complete */
};

typedef struct shadow_response_parser_s shadow_response_parser_t;

/* Called during feed(). Each returns 0 to go on, or -1 to stop parsing
 * with err = BAD_RESPONSE. The parser's status, headers, content_length and
 * chunked fields describe the head being delivered; the parser reads its
 * headers no more after on_head, so on_head may take them (swap). */
typedef struct shadow_response_events_s {
  int (*on_interim)(void *ud, shadow_response_parser_t *p);
  int (*on_head)(void *ud, shadow_response_parser_t *p);
  int (*on_body)(void *ud, const char *data, size_t len);
} shadow_response_events_t;

struct shadow_response_parser_s {
  llhttp_t http;
  const shadow_response_events_t *ev;
  void *ud;
  int status;
  shadow_headers_t headers;  /* of the head being parsed or delivered */
  shadow_headers_t trailers; /* of a chunked body, once DONE */
  int64_t content_length;    /* declared; -1 when none (chunked or close) */
  int chunked;
  shadow_header_span_t name; /* the header name being received */
  shadow_header_span_t value;
  size_t header_limit; /* head bytes (status line, headers, trailers) */
  size_t header_seen;
  size_t seen; /* bytes fed since reset */
  uint64_t body_seen;
  int head;         /* the request was HEAD: no body follows */
  int may_upgrade;  /* the request asked for an upgrade: 101 is taken */
  int upgraded;     /* a 101 came: every byte after it is the tunnel's */
  int interim;      /* interim (1xx) responses so far */
  int headers_done; /* later header callbacks are trailers */
  int done;
  int err;        /* reason when state is SHADOW_RESPONSE_ERROR */
  int keep_alive; /* after DONE: the connection may carry another request */
  int extra;      /* bytes arrived beyond the response */
};

/* Interim (1xx) responses before the final one: more fail the response
 * (BAD_RESPONSE), so a backend cannot keep one exchange busy with hints
 * without end. Browsers act on the first 103 only. */
#define SHADOW_RESPONSE_MAX_INTERIM 16

/* header_limit 0 means no limit. */
void shadow_response_parser_init(shadow_response_parser_t *p,
                                 size_t header_limit);

/* Prepares for the response to a new request: head says it was HEAD,
 * may_upgrade that it asked for an upgrade (then a 101 is delivered as the
 * head, and what follows as body bytes until the peer closes); events
 * (NULL-able members) go to ev with ud. */
void shadow_response_parser_reset(shadow_response_parser_t *p, int head,
                                  int may_upgrade,
                                  const shadow_response_events_t *ev, void *ud);

/* Feeds bytes. After DONE or ERROR, further calls return the same verdict
 * and bytes fed after DONE mark the connection as not reusable. */
int shadow_response_parser_feed(shadow_response_parser_t *p, const char *data,
                                size_t len);

/* The peer closed: completes a close-delimited body, else a short response
 * is an error (RESET). */
int shadow_response_parser_finish(shadow_response_parser_t *p);

/* The bytes still to come of a body framed by Content-Length, once its
 * head is in: every one of them is body. 0 for anything else (no head yet,
 * the response complete, chunked, read to EOF, a tunnel, no body). */
uint64_t shadow_response_parser_body_left(const shadow_response_parser_t *p);

/* Bytes of the current response seen so far: 0 means the peer sent
 * nothing, which is what makes a stale keep-alive connection retryable. */
size_t shadow_response_parser_seen(const shadow_response_parser_t *p);

/* The head has been delivered (on_head ran). */
int shadow_response_parser_has_head(const shadow_response_parser_t *p);

void shadow_response_parser_free(shadow_response_parser_t *p);

#endif
