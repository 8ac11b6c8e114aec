/* UTF-8 checks for text that comes from clients and backends and goes to
 * readers that need it valid: Prometheus label values, JSON strings, log
 * lines. Pure. */
#ifndef SHADOW_UTF8_H
#define SHADOW_UTF8_H

#include <stddef.h>

#include "buf.h"

/* The length of the valid UTF-8 sequence that starts s (n bytes left): 1
 * to 4, or 0 when it is not one (a stray or truncated byte, an overlong
 * form, a surrogate, past U+10FFFF). */
size_t shadow_utf8_seq(const unsigned char *s, size_t n);

/* 1 when s[0..n) is already a label as shadow_utf8_label writes it: valid
 * UTF-8, no control characters, at most max bytes. */
int shadow_utf8_label_ok(const char *s, size_t n, size_t max);

/* Appends s[0..n) to out as a label: every byte that is not part of a
 * valid sequence, and every control character (C0, DEL), becomes U+FFFD;
 * past max bytes (max >= 4) it is cut on a character boundary and ends in
 * U+2026 (an ellipsis), so the whole is at most max bytes. 0 or -ENOMEM. */
int shadow_utf8_label(shadow_buf_t *out, const char *s, size_t n, size_t max);

#endif
