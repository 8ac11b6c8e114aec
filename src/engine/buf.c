/* The growable byte buffer (see buf.h), and JSON string escaping with the
 * truncation marker records use. */
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

int shadow_buf_reserve(shadow_buf_t *b, size_t extra) {
  size_t need = b->len + extra + 1; /* room for the NUL */
  if (need <= b->cap) return 0;
  if (need < b->len) return -ENOMEM; /* overflow */
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  /* An empty buffer's first room (most of a request's buffers) is a
   * plain malloc: realloc(NULL) costs a wrapper more. */
  char *p = b->data ? realloc(b->data, cap) : malloc(cap);
  if (!p) return -ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int shadow_buf_reserve_exact(shadow_buf_t *b, size_t extra) {
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  if (need < b->len) return -ENOMEM; /* overflow */
  char *p = realloc(b->data, need);
  if (!p) return -ENOMEM;
  b->data = p;
  b->cap = need;
  return 0;
}

int shadow_buf_append_grow(shadow_buf_t *b, const void *p, size_t n) {
  if (shadow_buf_reserve(b, n)) return -ENOMEM;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int shadow_buf_put_u64(shadow_buf_t *b, uint64_t v) {
  char tmp[20], *p = tmp + sizeof(tmp);
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return shadow_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

int shadow_buf_vprintf(shadow_buf_t *b, const char *fmt, va_list ap) {
  /* Format straight into the free space: one pass when it fits, which is
   * nearly always, and a second only to grow. */
  if (shadow_buf_reserve(b, 64)) return -ENOMEM;
  size_t room = b->cap - b->len;
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(b->data + b->len, room, fmt, copy);
  va_end(copy);
  if (n < 0) {
    b->data[b->len] = '\0';
    return -EINVAL;
  }
  if ((size_t)n >= room) {
    if (shadow_buf_reserve(b, (size_t)n)) {
      b->data[b->len] = '\0';
      return -ENOMEM;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  }
  b->len += (size_t)n;
  return 0;
}

int shadow_buf_printf(shadow_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = shadow_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int shadow_buf_json_string(shadow_buf_t *b, const char *s, size_t n,
                           size_t max) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  size_t keep = n;
  if (max > 0 && n > max) {
    keep = max;
    /* Do not cut a multi-byte character in half. */
    while (keep > 0 && (p[keep] & 0xC0) == 0x80)
      keep--;
  }
  if (shadow_buf_reserve(b, keep + 2)) return -ENOMEM;
  shadow_buf_putc(b, '"');
  size_t i = 0;
  while (i < keep) {
    size_t run = i;
    /* Copy runs of plain bytes in one go. */
    while (run < keep && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
           p[run] != '\\')
      run++;
    if (run > i) {
      if (shadow_buf_append(b, p + i, run - i)) return -ENOMEM;
      i = run;
      continue;
    }
    unsigned c = p[i];
    char esc[8];
    size_t elen = 2;
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    default:
      if (c >= 0x80) {
        size_t l = shadow_utf8_seq(p + i, keep - i);
        if (l) {
          if (shadow_buf_append(b, p + i, l)) return -ENOMEM;
          i += l;
          continue;
        }
      }
      esc[1] = 'u';
      esc[2] = '0';
      esc[3] = '0';
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      elen = 6;
    }
    if (shadow_buf_append(b, esc, elen)) return -ENOMEM;
    i++;
  }
  if (keep < n && shadow_buf_printf(b, "...(%zu bytes)", n) < 0) return -ENOMEM;
  return shadow_buf_putc(b, '"');
}

void shadow_buf_reset(shadow_buf_t *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

void shadow_buf_free(shadow_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *shadow_buf_steal(shadow_buf_t *b, size_t *len) {
  char *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

char *shadow_bytes_dup(const char *s, size_t n) {
  char *c = malloc(n + 1);
  if (c) {
    memcpy(c, s, n);
    c[n] = '\0';
  }
  return c;
}
