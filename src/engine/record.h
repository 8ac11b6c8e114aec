/* Header lists and response records: what the diff engine compares, and
 * what the HTTP layers build while parsing. Pure: no I/O. */
#ifndef SHADOW_RECORD_H
#define SHADOW_RECORD_H

#include <stddef.h>
#include <string.h>

#include "buf.h"
#include "digest.h"

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
  /* The first `checked` lines are known to be valid fields (they came in
   * through shadow_headers_add_valid or a copy of such a line): a head is
   * checked once where it is parsed, not again by every layer that writes
   * it out. Any change to a line lowers the mark below it. */
  size_t checked;
} shadow_headers_t;

#define SHADOW_HEADERS_INIT                                                    \
  { NULL, 0, 0, 0, NULL, 0 }

int shadow_headers_add(shadow_headers_t *h, const char *name, size_t name_len,
                       const char *value, size_t value_len);
/* The same, for a line from the network: -EINVAL (nothing added) when it
 * is not a valid field, else the line is added and counted as checked. */
int shadow_headers_add_valid(shadow_headers_t *h, const char *name,
                             size_t name_len, const char *value,
                             size_t value_len);
/* Adds a line its caller has already proven a valid field (a strict
 * parser's output, see src/http/parsed_field.h): stored and marked checked
 * without looking at its bytes again. */
int shadow_headers_add_known_valid(shadow_headers_t *h, const char *name,
                                   size_t name_len, const char *value,
                                   size_t value_len);
/* Adds the line whatever it holds, marked checked when it is a valid field
 * (a line that is not stays unmarked, and whoever writes it checks it). */
int shadow_headers_add_checked(shadow_headers_t *h, const char *name,
                               size_t name_len, const char *value,
                               size_t value_len);
/* Appends line i of from to h, keeping what is known of its validity. */
int shadow_headers_add_line(shadow_headers_t *h, const shadow_headers_t *from,
                            size_t i);
/* Whether line i of h is a valid field: known, or checked now. */
int shadow_headers_line_valid(const shadow_headers_t *h, size_t i);
/* Exchanges the two lists whole (lines, storage and marks): how a list
 * changes owner without copying a byte. */
void shadow_headers_swap(shadow_headers_t *a, shadow_headers_t *b);
/* Gives into from's lines, at its end: by swapping the lists when into is
 * empty (from is left with into's empty list and its memory), else by
 * copying them (from keeps its own). 0 or -ENOMEM (the lines copied by
 * then stay). */
int shadow_headers_take(shadow_headers_t *into, shadow_headers_t *from);
/* Appends to the value of the last header (llhttp delivers values in
 * pieces when a read splits them). */
int shadow_headers_extend_last(shadow_headers_t *h, const char *more,
                               size_t len, int to_name);
/* Makes value the one header called name: the first such header takes it
 * (keeping its place), the others go; added at the end when there is
 * none. 0 or -ENOMEM. */
int shadow_headers_set(shadow_headers_t *h, const char *name, const char *value,
                       size_t value_len);
/* The first header whose name (len bytes) equals name, case-insensitive,
 * or NULL. */
const shadow_header_t *shadow_headers_find_n(const shadow_headers_t *h,
                                             const char *name, size_t len);
/* The same for a NUL-terminated name: inline, so a literal's length is a
 * constant where it is written (several look-ups per pair). */
static inline const shadow_header_t *
shadow_headers_find(const shadow_headers_t *h, const char *name) {
  return shadow_headers_find_n(h, name, strlen(name));
}
/* Whether a and b hold the same lines, in the same order, byte for byte
 * (names' case included): "unchanged", not "equivalent". */
int shadow_headers_same(const shadow_headers_t *a, const shadow_headers_t *b);
void shadow_headers_clear(shadow_headers_t *h); /* n = 0, keeps the array */
/* Keeps the first n lines (n <= h->n), dropping the rest; their bytes
 * stay in the list's storage until it is cleared. */
void shadow_headers_truncate(shadow_headers_t *h, size_t n);
void shadow_headers_free(shadow_headers_t *h); /* safe twice */
/* Moves the lines into storage of their size (one array of n lines, one
 * chunk of their bytes) when the list holds much more than that, as a
 * parser's list grown for any head does: for a list kept a long while.
 * Pointers to the old lines and strings are then stale. 0, or -ENOMEM
 * (the list is unchanged). */
int shadow_headers_compact(shadow_headers_t *h);

/* True for headers that describe one hop, not the resource: connection,
 * keep-alive, transfer-encoding, content-length, te, trailer, upgrade,
 * proxy-*. A proxy never forwards these and the diff never compares them. */
int shadow_header_is_hop(const char *name, size_t len);

/* RFC 9110's field syntax, the one rule every layer applies: a name is a
 * token (section 5.6.2); a value holds no control byte but HTAB (so no
 * CR, LF or NUL that would let whoever wrote it end the header). */
int shadow_header_name_valid(const char *name, size_t len);
int shadow_header_value_valid(const char *value, size_t len);
int shadow_header_valid(const shadow_header_t *h);
/* How many bytes from s on are plain field bytes: neither a control byte
 * (TAB included) nor DEL. Eight bytes a step, for the scans every head
 * byte goes through. */
size_t shadow_header_plain_span(const char *s, size_t n);

/* Case-insensitive equality of a header name with a lower-case name of
 * len bytes. */
int shadow_header_name_eq(const shadow_header_t *h, const char *lower,
                          size_t len);

/* Case-insensitive equality of a header name with a lower-case literal.
 * Inline, so that a literal's length is known where it is written: the
 * dozens of look-ups per pair rule most lines out by length alone,
 * before a call or a byte compared. */
static inline int shadow_header_name_is(const shadow_header_t *h,
                                        const char *lower) {
  size_t len = strlen(lower);
  return h->name_len == len && shadow_header_name_eq(h, lower, len);
}

/* A response as the diff engine sees it. The body is either whole in body,
 * or, when body_cut is set, only its first bytes are in body while
 * body_total and body_digest describe all of it: a streamed body larger
 * than what may be kept is compared by length and digest. */
typedef struct shadow_record_s {
  int status;
  shadow_headers_t headers;
  /* Trailers: those of a chunked body or of an HTTP/2 stream (gRPC's
   * grpc-status and grpc-message come here); empty when none came. */
  shadow_headers_t trailers;
  shadow_buf_t body;
  int body_cut;
  uint64_t body_total;         /* when body_cut: the whole body's length */
  shadow_digest_t body_digest; /* when body_cut: XXH3-128 of all of it */
  shadow_digester_t *digester; /* while a cut body is still arriving */
} shadow_record_t;

shadow_record_t *shadow_record_new(void);
void shadow_record_init(shadow_record_t *r);
void shadow_record_clear(shadow_record_t *r); /* back to empty, keeps memory */
void shadow_record_release(shadow_record_t *r); /* frees contents only */
/* A whole response that will be kept a while (waiting for its pair): its
 * header lines and its body move into memory of their size, when they
 * hold much more (a parser's list; a body grown by doubling: a chunked
 * one, or a prefix cut at limits.diff_bytes). 0, or -ENOMEM (the record
 * is whole either way). */
int shadow_record_compact(shadow_record_t *r);
/* NULL is fine. A record whose memory is small is kept, cleared, for the
 * thread's next shadow_record_new (see record.c). */
void shadow_record_free(shadow_record_t *r);
/* Frees the records this thread keeps (shadow_engine_caches_clear). */
void shadow_record_recycle_clear(void);
/* A body that arrives in pieces: keeps the first `keep` bytes in r->body;
 * once the body passes keep, sets r->body_cut and only counts and digests
 * the rest, so memory stays at keep bytes whatever the body's size.
 * data may lie just past r->body's bytes (in its room): then it is taken
 * where it is. Returns 0 or -ENOMEM. */
int shadow_record_body_feed(shadow_record_t *r, const void *data, size_t len,
                            size_t keep);
/* Room to read the next body bytes straight into r->body, past what it
 * holds, so feeding them copies nothing: up to want bytes, never past
 * keep and never once the body is cut. Returns the room's size with *at
 * its start (valid until r->body next changes), or 0 (no room, or no
 * memory: the caller reads elsewhere and feeds as usual). want 0 only asks
 * whether there would be room, and allocates nothing. The bytes read there
 * are then given to shadow_record_body_feed from where they lie. */
size_t shadow_record_body_room(shadow_record_t *r, size_t want, size_t keep,
                               char **at);
/* The body is complete: finishes the digest of a cut body. Idempotent. */
void shadow_record_body_end(shadow_record_t *r);
/* The whole body's length, cut or not. */
uint64_t shadow_record_body_len(const shadow_record_t *r);
/* Copies every line of from to the end of r's trailers. 0 or -ENOMEM
 * (the lines copied by then stay). from may be NULL. */
int shadow_record_add_trailers(shadow_record_t *r,
                               const shadow_headers_t *from);

#endif
