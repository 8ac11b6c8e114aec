/* Header lists and response records: what the diff engine compares, and
 * what the HTTP layers build while parsing. Pure: no I/O. */
#ifndef SHADOW_RECORD_H
#define SHADOW_RECORD_H

#include <stddef.h>

#include "buf.h"

typedef struct shadow_header_s {
  char *name; /* as received; compared case-insensitively */
  size_t name_len;
  char *value;
  size_t value_len;
} shadow_header_t;

/* An ordered list of headers. Names and values are copied into chunks the
 * list owns, so entries never point into caller memory; the chunks never
 * move (pointers stay valid), and clearing keeps the first one, so a list
 * reused request after request stops allocating. */
typedef struct shadow_headers_s {
  shadow_header_t *v;
  size_t n;
  size_t cap;
  size_t bytes; /* sum of name and value lengths, for limits */
  struct shadow_header_chunk_s *chunks; /* string storage, newest first */
} shadow_headers_t;

#define SHADOW_HEADERS_INIT                                                    \
  { NULL, 0, 0, 0, NULL }

int shadow_headers_add(shadow_headers_t *h, const char *name, size_t name_len,
                       const char *value, size_t value_len);
/* Appends to the value of the last header (llhttp delivers values in
 * pieces when a read splits them). */
int shadow_headers_extend_last(shadow_headers_t *h, const char *more,
                               size_t len, int to_name);
/* The first header whose name equals name (case-insensitive), or NULL. */
const shadow_header_t *shadow_headers_find(const shadow_headers_t *h,
                                           const char *name);
int shadow_headers_copy(shadow_headers_t *dst, const shadow_headers_t *src);
void shadow_headers_clear(shadow_headers_t *h); /* n = 0, keeps the array */
void shadow_headers_free(shadow_headers_t *h);  /* safe twice */

/* True for headers that describe one hop, not the resource: connection,
 * keep-alive, transfer-encoding, content-length, te, trailer, upgrade,
 * proxy-*. A proxy never forwards these and the diff never compares them. */
int shadow_header_is_hop(const char *name, size_t len);

/* Case-insensitive equality of a header name with a lower-case literal. */
int shadow_header_name_is(const shadow_header_t *h, const char *lower);

typedef struct shadow_record_s {
  int status;
  shadow_headers_t headers;
  shadow_buf_t body;
} shadow_record_t;

shadow_record_t *shadow_record_new(void);
void shadow_record_init(shadow_record_t *r);
void shadow_record_clear(shadow_record_t *r); /* back to empty, keeps memory */
void shadow_record_release(shadow_record_t *r); /* frees contents only */
void shadow_record_free(shadow_record_t *r);    /* NULL is fine */
int shadow_record_copy(shadow_record_t *dst, const shadow_record_t *src);

#endif
