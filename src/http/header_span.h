/* A header name or value as llhttp hands it over: in pieces, each a span
 * of the bytes being parsed. Nearly always one piece, lying whole in the
 * bytes of one read: it is then only pointed at, and the line is stored
 * once, from the read, into its header list. It is copied aside only when
 * a second piece comes, or when the parse of a read ends inside it (the
 * next read's bytes do not follow the last ones in memory, and the last
 * ones are gone). Both parsers use it, for every line of every head. */
#ifndef SHADOW_HEADER_SPAN_H
#define SHADOW_HEADER_SPAN_H

#include <stddef.h>

#include "buf.h"

typedef struct shadow_header_span_s {
  shadow_buf_t copy; /* the pieces so far, once they are copied */
  const char *at;    /* the one piece, in the bytes being parsed, or NULL */
  size_t at_len;
} shadow_header_span_t;

/* Adds a piece. 0, or -ENOMEM. */
static inline int shadow_header_span_add(shadow_header_span_t *s,
                                         const char *at, size_t len) {
  if (!s->at && !s->copy.len) {
    s->at = at;
    s->at_len = len;
    return 0;
  }
  if (s->at) {
    if (shadow_buf_append(&s->copy, s->at, s->at_len)) return -1;
    s->at = NULL;
  }
  return shadow_buf_append(&s->copy, at, len);
}

/* The parse of the bytes pointed into ends: what is still only pointed
 * at is copied. 0, or -ENOMEM. */
static inline int shadow_header_span_keep(shadow_header_span_t *s) {
  if (!s->at) return 0;
  int rc = shadow_buf_append(&s->copy, s->at, s->at_len);
  s->at = NULL;
  return rc;
}

static inline const char *
shadow_header_span_data(const shadow_header_span_t *s) {
  return s->at ? s->at : s->copy.data ? s->copy.data : "";
}

static inline size_t shadow_header_span_len(const shadow_header_span_t *s) {
  return s->at ? s->at_len : s->copy.len;
}

/* Empty again, for the next line (the copy's memory is kept). */
static inline void shadow_header_span_clear(shadow_header_span_t *s) {
  s->at = NULL;
  if (s->copy.len) shadow_buf_reset(&s->copy);
}

static inline void shadow_header_span_free(shadow_header_span_t *s) {
  s->at = NULL;
  shadow_buf_free(&s->copy);
}

#endif
