/* The growable byte buffer (see buf.h), and JSON string escaping with the
 * truncation marker records use. */
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recycle.h"
#include "utf8.h"

/* ---- recycled blocks -------------------------------------------------- */

/* A request builds and drops a dozen short-lived buffers (a forwarded
 * head, a divergence record, its fields, JSON strings for its ops), most
 * of them of the same few sizes. glibc's per-thread cache serves blocks
 * up to 1 KiB at once; bigger ones, and every block past its seven per
 * size, go through its bins at several times the cost. So, as h2o
 * recycles its socket buffers, each thread keeps a few freed blocks of
 * each size this file grows a buffer to (64 << k bytes, up to 16 KiB) and
 * hands them out again before asking malloc (not under AddressSanitizer:
 * recycle.h). */
#define RECYCLE_CLASSES 9 /* 64 B .. 16 KiB */
#define RECYCLE_DEPTH 8   /* at most ~256 KiB kept per thread */

typedef struct {
  void *block[RECYCLE_DEPTH];
  unsigned n;
} recycle_t;

static _Thread_local recycle_t recycled[RECYCLE_CLASSES];

/* The class of a block of cap bytes, or -1 when cap is not a size this
 * file makes (an exact reserve, a buffer filled elsewhere). */
static int recycle_class(size_t cap) {
  if (!SHADOW_RECYCLE || cap < 64 ||
      cap > ((size_t)64 << (RECYCLE_CLASSES - 1)) || (cap & (cap - 1)))
    return -1;
  return __builtin_ctzll((unsigned long long)cap) - 6;
}

/* A block of cap bytes, whose class (recycle_class) is k. */
static void *block_take(int k, size_t cap) {
  if (k >= 0 && recycled[k].n) return recycled[k].block[--recycled[k].n];
  return malloc(cap);
}

/* Gives back p, a block of class k (or -1: freed). */
static void block_give(int k, void *p) {
  if (k >= 0 && recycled[k].n < RECYCLE_DEPTH) {
    recycled[k].block[recycled[k].n++] = p;
    return;
  }
  free(p);
}

void shadow_buf_recycle_clear(void) {
  for (int k = 0; k < RECYCLE_CLASSES; k++) {
    while (recycled[k].n)
      free(recycled[k].block[--recycled[k].n]);
  }
}

/* ---- buffers ---------------------------------------------------------- */

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
  char *p;
  int k = recycle_class(cap), old_k = b->data ? recycle_class(b->cap) : -1;
  if (!b->data) {
    p = block_take(k, cap);
  } else if (old_k >= 0 && k >= 0) {
    /* Both sizes are recycled ones: move to a block of the new size and
     * keep the old one, rather than realloc's copy and free. */
    p = block_take(k, cap);
    if (p) {
      memcpy(p, b->data, b->cap); /* as realloc keeps it all */
      block_give(old_k, b->data);
    }
  } else {
    p = realloc(b->data, cap);
  }
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

void shadow_buf_fit(shadow_buf_t *b, size_t slack) {
  if (!b->data || b->cap - b->len - 1 < slack) return;
  /* glibc shrinks a block where it lies, splitting off the rest. */
  char *p = realloc(b->data, b->len + 1);
  if (!p) return;
  b->data = p;
  b->cap = b->len + 1;
}

void shadow_buf_free(shadow_buf_t *b) {
  if (b->data) block_give(recycle_class(b->cap), b->data);
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
