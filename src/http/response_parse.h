/* A socketless HTTP/1.x response parser over llhttp: bytes in, one
 * shadow_record_t out (status, headers, de-chunked body), with limits and a
 * verdict on whether the connection may carry another request. The upstream
 * client keeps one per connection and reuses it, so parsing a response
 * allocates only what the record itself needs. */
#ifndef SHADOW_RESPONSE_PARSE_H
#define SHADOW_RESPONSE_PARSE_H

#include <stddef.h>

#include <llhttp.h>

#include "buf.h"
#include "record.h"

/* What feed() and finish() return. On SHADOW_RESPONSE_ERROR, err holds a
 * shadow_upstream_err_t reason (RESET, BAD_RESPONSE or TOO_LARGE). */
enum {
  SHADOW_RESPONSE_ERROR = -1,
  SHADOW_RESPONSE_MORE = 0, /* feed more bytes, or finish() on EOF */
  SHADOW_RESPONSE_DONE = 1  /* the record is complete: take it */
};

typedef struct shadow_response_parser_s {
  llhttp_t http;
  shadow_record_t *rec; /* being filled; owned until taken */
  shadow_buf_t name;    /* the header name being received */
  shadow_buf_t value;   /* the header value being received */
  size_t header_limit;
  size_t body_limit;
  size_t header_seen; /* bytes of status line and headers so far */
  size_t seen;        /* bytes fed since reset */
  int head;           /* the request was HEAD: no body follows */
  int headers_done;   /* later header callbacks are trailers */
  int done;
  int err;        /* reason when state is SHADOW_RESPONSE_ERROR */
  int keep_alive; /* after DONE: the connection may carry another request */
  int extra;      /* bytes arrived beyond the response */
} shadow_response_parser_t;

/* Limits of 0 mean "no limit". */
void shadow_response_parser_init(shadow_response_parser_t *p,
                                 size_t header_limit, size_t body_limit);
void shadow_response_parser_limits(shadow_response_parser_t *p,
                                   size_t header_limit, size_t body_limit);

/* Prepares for the response to a new request; head says it was HEAD. */
int shadow_response_parser_reset(shadow_response_parser_t *p, int head);

/* Feeds bytes. After DONE or ERROR, further calls return the same verdict
 * and bytes fed after DONE mark the connection as not reusable. */
int shadow_response_parser_feed(shadow_response_parser_t *p, const char *data,
                                size_t len);

/* The peer closed: completes a close-delimited body, else a short response
 * is an error (RESET). */
int shadow_response_parser_finish(shadow_response_parser_t *p);

/* Hands over the complete record (caller frees it); NULL unless DONE. */
shadow_record_t *shadow_response_parser_take(shadow_response_parser_t *p);

/* Bytes of the current response seen so far: 0 means the peer sent
 * nothing, which is what makes a stale keep-alive connection retryable. */
size_t shadow_response_parser_seen(const shadow_response_parser_t *p);

void shadow_response_parser_free(shadow_response_parser_t *p);

#endif
