/* Header lists and response records (see record.h): strings in chunks the
 * list owns, hop-by-hop names, and bodies that arrive in pieces and are
 * kept as a prefix plus a digest once they outgrow what may be kept. */
#include "record.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "recycle.h"

struct shadow_header_chunk_s {
  struct shadow_header_chunk_s *next;
  size_t cap, used;
  char data[];
};

/* n bytes of string storage that stay where they are until clear/free. */
static char *headers_alloc(shadow_headers_t *h, size_t n) {
  struct shadow_header_chunk_s *c = h->chunks;
  if (!c || c->cap - c->used < n) {
    /* The first chunk, with its header, is one 1 KiB block: malloc's
     * per-thread cache serves blocks up to about that size at once. */
    size_t cap = c ? c->cap * 2 : 1024 - sizeof(*c);
    if (cap < n) cap = n;
    if (cap > ((size_t)1 << 20) && n <= ((size_t)1 << 20))
      cap = (size_t)1 << 20;
    struct shadow_header_chunk_s *nc = malloc(sizeof(*nc) + cap);
    if (!nc) return NULL;
    nc->cap = cap;
    nc->used = 0;
    nc->next = c;
    h->chunks = c = nc;
  }
  char *p = c->data + c->used;
  c->used += n;
  return p;
}

/* Stores "name\0value\0" and points e at it. */
static int header_store(shadow_headers_t *h, shadow_header_t *e, const char *n1,
                        size_t l1, const char *n2, size_t l2, const char *v1,
                        size_t vl1, const char *v2, size_t vl2) {
  char *mem = headers_alloc(h, l1 + l2 + vl1 + vl2 + 2);
  if (!mem) return -ENOMEM;
  memcpy(mem, n1, l1);
  if (l2) memcpy(mem + l1, n2, l2);
  mem[l1 + l2] = '\0';
  char *v = mem + l1 + l2 + 1;
  if (vl1) memcpy(v, v1, vl1);
  if (vl2) memcpy(v + vl1, v2, vl2);
  v[vl1 + vl2] = '\0';
  e->name = mem;
  e->name_len = l1 + l2;
  e->value = v;
  e->value_len = vl1 + vl2;
  return 0;
}

int shadow_headers_add(shadow_headers_t *h, const char *name, size_t name_len,
                       const char *value, size_t value_len) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    shadow_header_t *v = realloc(h->v, cap * sizeof(*v));
    if (!v) return -ENOMEM;
    h->v = v;
    h->cap = cap;
  }
  shadow_header_t *e = &h->v[h->n];
  if (header_store(h, e, name, name_len, NULL, 0, value, value_len, NULL, 0))
    return -ENOMEM;
  h->n++;
  h->bytes += name_len + value_len;
  return 0;
}

/* The line just added at the end is valid: the mark moves past it when
 * every line before it is checked too. */
static void mark_last_checked(shadow_headers_t *h) {
  if (h->checked == h->n - 1) h->checked = h->n;
}

int shadow_headers_add_valid(shadow_headers_t *h, const char *name,
                             size_t name_len, const char *value,
                             size_t value_len) {
  if (!shadow_header_name_valid(name, name_len) ||
      !shadow_header_value_valid(value, value_len))
    return -EINVAL;
  return shadow_headers_add_known_valid(h, name, name_len, value, value_len);
}

int shadow_headers_add_known_valid(shadow_headers_t *h, const char *name,
                                   size_t name_len, const char *value,
                                   size_t value_len) {
  int rc = shadow_headers_add(h, name, name_len, value, value_len);
  if (rc == 0) mark_last_checked(h);
  return rc;
}

int shadow_headers_add_checked(shadow_headers_t *h, const char *name,
                               size_t name_len, const char *value,
                               size_t value_len) {
  int rc = shadow_headers_add_valid(h, name, name_len, value, value_len);
  if (rc == -EINVAL)
    rc = shadow_headers_add(h, name, name_len, value, value_len);
  return rc;
}

int shadow_headers_add_line(shadow_headers_t *h, const shadow_headers_t *from,
                            size_t i) {
  const shadow_header_t *e = &from->v[i];
  int rc = shadow_headers_add(h, e->name, e->name_len, e->value, e->value_len);
  if (rc == 0 && i < from->checked) mark_last_checked(h);
  return rc;
}

int shadow_headers_line_valid(const shadow_headers_t *h, size_t i) {
  return i < h->checked || shadow_header_valid(&h->v[i]);
}

void shadow_headers_swap(shadow_headers_t *a, shadow_headers_t *b) {
  shadow_headers_t t = *a;
  *a = *b;
  *b = t;
}

int shadow_headers_take(shadow_headers_t *into, shadow_headers_t *from) {
  if (into->n == 0) {
    shadow_headers_swap(into, from);
    shadow_headers_clear(from);
    return 0;
  }
  for (size_t i = 0; i < from->n; i++)
    if (shadow_headers_add_line(into, from, i)) return -ENOMEM;
  return 0;
}

int shadow_headers_extend_last(shadow_headers_t *h, const char *more,
                               size_t len, int to_name) {
  if (h->n == 0) return -EINVAL;
  shadow_header_t *e = &h->v[h->n - 1];
  shadow_header_t old = *e;
  /* The old copy stays in its chunk until the list is cleared: extending
   * is rare (a header split across reads). */
  int rc = to_name ? header_store(h, e, old.name, old.name_len, more, len,
                                  old.value, old.value_len, NULL, 0)
                   : header_store(h, e, old.name, old.name_len, NULL, 0,
                                  old.value, old.value_len, more, len);
  if (rc) return rc;
  h->bytes += len;
  if (h->checked == h->n) h->checked = h->n - 1;
  return 0;
}

int shadow_headers_set(shadow_headers_t *h, const char *name, const char *value,
                       size_t value_len) {
  size_t nl = strlen(name), w = 0;
  int done = 0;
  for (size_t i = 0; i < h->n; i++) {
    shadow_header_t e = h->v[i];
    if (e.name_len == nl && strncasecmp(e.name, name, nl) == 0) {
      /* This line changes or goes, and every later one moves. */
      if (h->checked > i) h->checked = i;
      if (done) {
        h->bytes -= e.name_len + e.value_len;
        continue;
      }
      /* The old string stays in its chunk until the list is cleared. */
      if (header_store(h, &e, e.name, e.name_len, NULL, 0, value, value_len,
                       NULL, 0))
        return -ENOMEM;
      h->bytes += value_len;
      h->bytes -= h->v[i].value_len;
      done = 1;
    }
    h->v[w++] = e;
  }
  h->n = w;
  return done ? 0 : shadow_headers_add(h, name, nl, value, value_len);
}

/* RFC 9110's tchar (digits, letters and !#$%&'*+-.^_`|~), a byte to a
 * flag: every header name parsed is checked, so a byte costs one load and
 * no branch (test_header_group checks the table against the definition). */
/* clang-format off: one row per 16 bytes */
static const unsigned char tchar[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 10 */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, /* 20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, /* 30 */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, /* 50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, /* 70 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 90 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* a0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* b0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* c0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* d0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* e0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* f0 */
};
/* clang-format on */

int shadow_header_name_valid(const char *s, size_t n) {
  if (n == 0) return 0;
  unsigned ok = 1;
  for (size_t i = 0; i < n; i++)
    ok &= tchar[(unsigned char)s[i]];
  return (int)ok;
}

/* Whether the 8 bytes at s hold a byte under 0x20 (bytes of 0x80 and up
 * have their high bit in x, so ~x clears it) or a byte equal to 0x7f (a
 * zero in x ^ 0x7f..). */
static int word_has_control(const char *s) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  uint64_t x;
  memcpy(&x, s, 8);
  uint64_t y = x ^ (0x7f * ones);
  return (((x - 0x20 * ones) & ~x & highs) | ((y - ones) & ~y & highs)) != 0;
}

size_t shadow_header_plain_span(const char *s, size_t n) {
  size_t i = 0;
  while (i + 8 <= n && !word_has_control(s + i))
    i += 8;
  /* A clean value's last few bytes: one word that overlaps the one
   * before, not a loop a byte at a time. */
  if (i < n && i + 8 > n && n >= 8 && !word_has_control(s + n - 8)) return n;
  for (; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) break;
  }
  return i;
}

int shadow_header_value_valid(const char *s, size_t n) {
  size_t i = 0;
  while ((i += shadow_header_plain_span(s + i, n - i)) < n) {
    if (s[i] != '\t') return 0;
    i++;
  }
  return 1;
}

int shadow_header_valid(const shadow_header_t *h) {
  return shadow_header_name_valid(h->name, h->name_len) &&
         shadow_header_value_valid(h->value, h->value_len);
}

/* Reached only when the lengths agree (shadow_header_name_is checks them
 * inline): one pass that stops at the first byte that differs. ASCII
 * case only, as HTTP's. */
int shadow_header_name_eq(const shadow_header_t *h, const char *lower,
                          size_t len) {
  if (h->name_len != len) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char a = (unsigned char)h->name[i], b = (unsigned char)lower[i];
    if (a >= 'A' && a <= 'Z') a = (unsigned char)(a + 32);
    if (b >= 'A' && b <= 'Z') b = (unsigned char)(b + 32);
    if (a != b) return 0;
  }
  return 1;
}

const shadow_header_t *shadow_headers_find_n(const shadow_headers_t *h,
                                             const char *name, size_t len) {
  /* Several look-ups per record on the per-pair path: the length rules
   * out most lines before a byte is compared. */
  for (size_t i = 0; i < h->n; i++)
    if (h->v[i].name_len == len && shadow_header_name_eq(&h->v[i], name, len))
      return &h->v[i];
  return NULL;
}

void shadow_headers_truncate(shadow_headers_t *h, size_t n) {
  while (h->n > n) {
    h->n--;
    h->bytes -= h->v[h->n].name_len + h->v[h->n].value_len;
  }
  if (h->checked > h->n) h->checked = h->n;
}

void shadow_headers_clear(shadow_headers_t *h) {
  /* Keep the newest (largest) chunk for the next use of the list. */
  struct shadow_header_chunk_s *c = h->chunks;
  if (c) {
    struct shadow_header_chunk_s *old = c->next;
    while (old) {
      struct shadow_header_chunk_s *next = old->next;
      free(old);
      old = next;
    }
    c->next = NULL;
    c->used = 0;
  }
  h->n = 0;
  h->bytes = 0;
  h->checked = 0;
}

int shadow_headers_same(const shadow_headers_t *a, const shadow_headers_t *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++) {
    const shadow_header_t *x = &a->v[i], *y = &b->v[i];
    if (x->name_len != y->name_len || x->value_len != y->value_len ||
        memcmp(x->name, y->name, x->name_len) != 0 ||
        memcmp(x->value, y->value, x->value_len) != 0)
      return 0;
  }
  return 1;
}

void shadow_headers_free(shadow_headers_t *h) {
  struct shadow_header_chunk_s *c = h->chunks;
  while (c) {
    struct shadow_header_chunk_s *next = c->next;
    free(c);
    c = next;
  }
  h->chunks = NULL;
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
  h->bytes = 0;
  h->checked = 0;
}

/* How much more than its size a header list or a body must hold to be
 * worth moving into memory of that size: a parser's first chunk and array
 * (1.6 KiB) against a dozen short lines; a doubled body's empty part. */
#define COMPACT_SLACK 512

int shadow_headers_compact(shadow_headers_t *h) {
  size_t held = h->cap * sizeof(shadow_header_t);
  for (const struct shadow_header_chunk_s *c = h->chunks; c; c = c->next)
    held += sizeof(*c) + c->cap;
  /* Each line is "name\0value\0"; the list keeps its lengths' sum. */
  size_t bytes = h->bytes + 2 * h->n;
  size_t need = h->n * sizeof(shadow_header_t) + sizeof(*h->chunks) + bytes;
  if (held < need + COMPACT_SLACK) return 0;
  shadow_headers_t t = *h;
  t.v = h->n ? malloc(h->n * sizeof(*t.v)) : NULL;
  t.cap = h->n;
  t.chunks = h->n ? malloc(sizeof(*t.chunks) + bytes) : NULL;
  if (h->n && (!t.v || !t.chunks)) {
    free(t.v);
    free(t.chunks);
    return -ENOMEM;
  }
  if (t.chunks) *t.chunks = (struct shadow_header_chunk_s){NULL, bytes, 0};
  for (size_t i = 0; i < h->n; i++) {
    const shadow_header_t *e = &h->v[i];
    /* Cannot fail: the chunk has room for every line (were bytes short,
     * header_store would take another chunk, not overrun this one). */
    (void)header_store(&t, &t.v[i], e->name, e->name_len, NULL, 0, e->value,
                       e->value_len, NULL, 0);
  }
  shadow_headers_free(h);
  *h = t;
  return 0;
}

int shadow_header_is_hop(const char *name, size_t len) {
  /* Every header of every request comes through here: the length picks
   * the candidates before any comparison. */
  if (len < 2) return 0;
  /* and the first letter before any call (most names pass here) */
  unsigned first = (unsigned char)name[0] | 0x20;
  if (len >= 6 && first == 'p' && strncasecmp(name, "proxy-", 6) == 0) return 1;
  switch (len) {
  case 2: return first == 't' && strncasecmp(name, "te", 2) == 0;
  case 7:
    return (first == 't' && strncasecmp(name, "trailer", 7) == 0) ||
           (first == 'u' && strncasecmp(name, "upgrade", 7) == 0);
  case 10:
    return (first == 'c' && strncasecmp(name, "connection", 10) == 0) ||
           (first == 'k' && strncasecmp(name, "keep-alive", 10) == 0);
  case 14: return first == 'c' && strncasecmp(name, "content-length", 14) == 0;
  case 17:
    return first == 't' && strncasecmp(name, "transfer-encoding", 17) == 0;
  default: return 0;
  }
}

void shadow_record_init(shadow_record_t *r) {
  memset(r, 0, sizeof(*r));
}

/* Records recycled per thread, as buf.c recycles blocks: every leg makes
 * one and the exchange's end frees it, each with a header array, a chunk
 * of header strings and a body, four allocations that a kept record
 * brings along cleared. Only records whose memory stays small are kept,
 * and none under AddressSanitizer (recycle.h). */
#define RECORDS_KEPT 16
#define RECORD_KEEP_BYTES (16 * 1024) /* a kept body's memory, at most */
#define RECORD_KEEP_HEADER_BYTES 4096 /* a kept header list's, each part */

static _Thread_local shadow_record_t *kept_records[RECORDS_KEPT];
static _Thread_local unsigned kept_n;

shadow_record_t *shadow_record_new(void) {
  if (kept_n) return kept_records[--kept_n];
  return calloc(1, sizeof(shadow_record_t));
}

/* A header list's array and newest chunk of strings (what
 * shadow_headers_clear keeps) are small enough to keep. */
static int headers_keepable(const shadow_headers_t *h) {
  return h->cap * sizeof(shadow_header_t) <= RECORD_KEEP_HEADER_BYTES &&
         (!h->chunks || h->chunks->cap <= RECORD_KEEP_HEADER_BYTES);
}

/* Whether r's memory is small enough to keep. */
static int record_keepable(const shadow_record_t *r) {
  return SHADOW_RECYCLE && kept_n < RECORDS_KEPT &&
         headers_keepable(&r->headers) && headers_keepable(&r->trailers) &&
         r->body.cap <= RECORD_KEEP_BYTES;
}

void shadow_record_recycle_clear(void) {
  while (kept_n) {
    shadow_record_t *r = kept_records[--kept_n];
    shadow_record_release(r);
    free(r);
  }
}

static void body_uncut(shadow_record_t *r) {
  shadow_digester_free(r->digester);
  r->digester = NULL;
  r->body_cut = 0;
  r->body_total = 0;
  r->body_digest = (shadow_digest_t){0, 0};
}

void shadow_record_clear(shadow_record_t *r) {
  r->status = 0;
  shadow_headers_clear(&r->headers);
  shadow_headers_clear(&r->trailers);
  shadow_buf_reset(&r->body);
  body_uncut(r);
}

void shadow_record_release(shadow_record_t *r) {
  shadow_headers_free(&r->headers);
  shadow_headers_free(&r->trailers);
  shadow_buf_free(&r->body);
  body_uncut(r);
  r->status = 0;
}

void shadow_record_free(shadow_record_t *r) {
  if (!r) return;
  if (record_keepable(r)) {
    shadow_record_clear(r);
    kept_records[kept_n++] = r;
    return;
  }
  shadow_record_release(r);
  free(r);
}

int shadow_record_compact(shadow_record_t *r) {
  shadow_buf_fit(&r->body, COMPACT_SLACK);
  return shadow_headers_compact(&r->headers);
}

size_t shadow_record_body_room(shadow_record_t *r, size_t want, size_t keep,
                               char **at) {
  if (r->body_cut || r->body.len >= keep) return 0;
  size_t n = keep - r->body.len;
  if (want == 0) return 1;
  if (n > want) n = want;
  if (shadow_buf_reserve(&r->body, n)) return 0;
  *at = r->body.data + r->body.len;
  return n;
}

int shadow_record_body_feed(shadow_record_t *r, const void *data, size_t len,
                            size_t keep) {
  if (len == 0) return 0;
  /* Bytes a read put straight into the room past the body (see
   * shadow_record_body_room) are already where they belong. */
  int in_place =
      r->body.data && (const char *)data == r->body.data + r->body.len;
  if (!r->body_cut) {
    if (r->body.len + len <= keep) {
      if (!in_place) return shadow_buf_append(&r->body, data, len);
      r->body.len += len;
      r->body.data[r->body.len] = '\0';
      return 0;
    }
    /* The body outgrows what is kept: from here on it is a prefix plus a
     * digest of everything, the prefix included. */
    r->digester = shadow_digester_new();
    if (!r->digester) return -ENOMEM;
    size_t room = keep - r->body.len;
    shadow_digester_update(r->digester, r->body.data ? r->body.data : "",
                           r->body.len);
    /* The piece is digested before the prefix takes its part of it: in
     * place, the NUL that ends the prefix lands on its first byte past
     * keep. */
    shadow_digester_update(r->digester, data, len);
    if (in_place) {
      r->body.len += room;
      r->body.data[r->body.len] = '\0';
    } else if (room && shadow_buf_append(&r->body, data, room)) {
      return -ENOMEM;
    }
    r->body_cut = 1;
    r->body_total = r->body.len + (len - room);
    return 0;
  }
  if (r->digester) shadow_digester_update(r->digester, data, len);
  r->body_total += len;
  return 0;
}

void shadow_record_body_end(shadow_record_t *r) {
  if (!r->digester) return;
  r->body_digest = shadow_digester_result(r->digester);
  shadow_digester_free(r->digester);
  r->digester = NULL;
}

uint64_t shadow_record_body_len(const shadow_record_t *r) {
  return r->body_cut ? r->body_total : r->body.len;
}

int shadow_record_add_trailers(shadow_record_t *r,
                               const shadow_headers_t *from) {
  for (size_t i = 0; from && i < from->n; i++)
    if (shadow_headers_add(&r->trailers, from->v[i].name, from->v[i].name_len,
                           from->v[i].value, from->v[i].value_len))
      return -ENOMEM;
  return 0;
}
