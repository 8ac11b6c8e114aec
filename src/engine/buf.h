/* A growable byte buffer: the one way engine and daemon build strings. */
#ifndef SHADOW_BUF_H
#define SHADOW_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct shadow_buf_s {
  char *data; /* NUL-terminated when len > 0 or after any append */
  size_t len;
  size_t cap;
} shadow_buf_t;

#define SHADOW_BUF_INIT                                                        \
  { NULL, 0, 0 }

/* Each returns 0, or -ENOMEM with the buffer unchanged. */
int shadow_buf_reserve(shadow_buf_t *b, size_t extra);
/* The same, to exactly len + extra (+ the NUL), for a buffer whose final
 * size is known: no doubling past it. */
int shadow_buf_reserve_exact(shadow_buf_t *b, size_t extra);
/* Appending is on every path that writes a head, a record or a line, a
 * hundred times a request: the case with room is inline, growing is not. */
int shadow_buf_append_grow(shadow_buf_t *b, const void *p, size_t n);
static inline int shadow_buf_append(shadow_buf_t *b, const void *p, size_t n) {
  if (n < b->cap - b->len) { /* room for n bytes and the NUL */
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
  }
  return shadow_buf_append_grow(b, p, n);
}
static inline int shadow_buf_puts(shadow_buf_t *b, const char *s) {
  return shadow_buf_append(b, s, strlen(s));
}
static inline int shadow_buf_putc(shadow_buf_t *b, char c) {
  return shadow_buf_append(b, &c, 1);
}
/* v in decimal, as printf's %llu writes it, without printf's machinery
 * (on the per-pair path, printf was a few percent of a comparison). */
int shadow_buf_put_u64(shadow_buf_t *b, uint64_t v);
int shadow_buf_printf(shadow_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int shadow_buf_vprintf(shadow_buf_t *b, const char *fmt, va_list ap);

/* Appends s as a quoted JSON string. When max > 0 and n > max, only the
 * first max bytes (cut on a UTF-8 boundary) are kept and the marker
 * "...(N bytes)" is appended inside the quotes, so records stay bounded.
 * Bytes that are not valid UTF-8 are written as \u00XX escapes. */
int shadow_buf_json_string(shadow_buf_t *b, const char *s, size_t n,
                           size_t max);

void shadow_buf_reset(shadow_buf_t *b); /* len = 0, keeps memory */
/* For a buffer whose bytes are final and that is kept a while: gives back
 * its room past the bytes and the NUL when that is slack bytes or more.
 * Left as it was when realloc fails. */
void shadow_buf_fit(shadow_buf_t *b, size_t slack);
/* Safe twice. Memory of the sizes buffers grow to is kept for the
 * thread's next buffers (see buf.c); a buffer's data taken with
 * shadow_buf_steal is the caller's, freed with free(). */
void shadow_buf_free(shadow_buf_t *b);
/* Frees the blocks this thread keeps (shadow_engine_caches_clear). */
void shadow_buf_recycle_clear(void);

/* n bytes copied into a new NUL-terminated string (strndup would stop at
 * a NUL inside; these bytes come from parsed JSON and may hold one); NULL
 * without memory. The caller frees it. */
char *shadow_bytes_dup(const char *s, size_t n);

/* Takes the data out; the caller frees it with free(). */
char *shadow_buf_steal(shadow_buf_t *b, size_t *len);

#endif
