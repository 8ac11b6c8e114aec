/* Redaction (redact = { headers = {...}, json = {...}, key = "..." }):
 * values at those places are replaced by
 * "[redacted hmac-sha256:<16 hex>]", the first 64 bits of HMAC-SHA256 of
 * the value under a key: redact.key when set, else a random key made once
 * per process (shared by its worker loops and kept across reloads). Equal
 * secrets still compare equal, and a mark cannot be turned back into a
 * short secret by trying a dictionary, which an unkeyed hash allowed.
 * lua/shadow/redact.lua writes the same mark under the same key, so the
 * daemon and a gateway agree; no secret, and never the key, reaches a
 * record, the ring, the NDJSON sink, the dashboard or on_divergence.
 *
 * Headers are redacted in both records before they are compared (as the
 * gateway does), so normalize and the diff see only marks. JSON values
 * are redacted in the divergence's diffs after the comparison: the diff ran
 * on the real values, so it needs no second parse of each body, and a
 * pointer names what the record shows (the normalized body). */
#ifndef SHADOW_REDACT_H
#define SHADOW_REDACT_H

#include <stddef.h>

#include "buf.h"
#include "diff.h"
#include "record.h"

/* "[redacted hmac-sha256:" 16 hex "]" */
#define SHADOW_REDACT_MARK_LEN 39
/* redact.key: at least this many bytes, so it cannot be guessed either. */
#define SHADOW_REDACT_KEY_MIN 16

typedef struct shadow_redact_s shadow_redact_t;

/* Empty: redacts nothing until names or pointers are added. */
shadow_redact_t *shadow_redact_new(void);
void shadow_redact_free(shadow_redact_t *r); /* NULL is fine */
/* authorization, proxy-authorization, cookie, set-cookie, x-api-key and
 * x-auth-token: what redact defaults to. */
int shadow_redact_add_defaults(shadow_redact_t *r);
/* A header name (any case). 0, -EINVAL or -ENOMEM. */
int shadow_redact_add_header(shadow_redact_t *r, const char *name);
/* A JSON Pointer where a segment "*" matches any key or index. 0, -EINVAL
 * (not a pointer) or -ENOMEM. */
int shadow_redact_add_json(shadow_redact_t *r, const char *pointer);
size_t shadow_redact_headers(const shadow_redact_t *r);
size_t shadow_redact_pointers(const shadow_redact_t *r);
/* The i-th header name (lower case) or pointer, for --check. */
const char *shadow_redact_header(const shadow_redact_t *r, size_t i);
const char *shadow_redact_pointer(const shadow_redact_t *r, size_t i);

/* Sets the key marks are made with (redact.key; len >= SHADOW_REDACT_KEY_MIN
 * bytes, any bytes). Without one, the process's random key is used. 0,
 * -EINVAL (too short) or -ENOMEM. */
int shadow_redact_set_key(shadow_redact_t *r, const char *key, size_t len);
/* 1 when a key was set (marks then agree across processes and runs). */
int shadow_redact_has_key(const shadow_redact_t *r);

/* Writes the mark of value under r's key (r NULL: the process's key) into
 * out (SHADOW_REDACT_MARK_LEN + 1 bytes). */
void shadow_redact_mark(const shadow_redact_t *r, const char *value, size_t len,
                        char *out);

/* 1 and h's mark in out (SHADOW_REDACT_MARK_LEN + 1 bytes) when h is a
 * redacted header, else 0: for writers that mark while they copy (the
 * capture file) and leave the record as it is. */
int shadow_redact_header_mark(const shadow_redact_t *r,
                              const shadow_header_t *h, char *out);
/* Replaces the values of redacted headers in a header list (a request's,
 * for the capture file and replay). 0 or -ENOMEM (h is then unchanged). */
int shadow_redact_header_list(const shadow_redact_t *r, shadow_headers_t *h);

/* Replaces the values of redacted headers in rec, in its headers and its
 * trailers. 0 or -ENOMEM (the list that failed is then unchanged: the
 * caller does not use such a record). */
int shadow_redact_record(const shadow_redact_t *r, shadow_record_t *rec);

/* Replaces the values at redacted pointers in res's body diffs: an op at
 * or under a pointer has its primary and candidate values marked whole; an
 * op above one (a replaced object) has the values inside it marked. A
 * value that is a string is marked by its text, any other by its compact
 * JSON. 0, or -ENOMEM (res is then unchanged). */
int shadow_redact_diff(const shadow_redact_t *r, shadow_diff_result_t *res);

/* Replaces the values at redacted pointers in a whole JSON document (a
 * body in the capture file, and the candidate's in a replay, so both are
 * marked alike), with the marks of shadow_redact_diff. 1 and the redacted
 * text in out (reset first) when something was marked; 0 when nothing
 * was (out untouched); -EINVAL when text is not JSON; -ENOMEM. */
int shadow_redact_json(const shadow_redact_t *r, const char *text, size_t len,
                       shadow_buf_t *out);

#endif
