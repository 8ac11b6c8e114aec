/* The JSON parser (see json.h): one pass over the text into an arena,
 * strings pointing into the source where they hold no escape, numbers kept
 * as text with a normalized form; equality and hashing of parsed trees. */
#include "json.h"

#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- arena ------------------------------------------------------------ */

struct arena_chunk_s {
  struct arena_chunk_s *next;
  size_t cap;
  size_t used;
  alignas(max_align_t) unsigned char data[];
};

/* One chunk is kept per thread between diffs: a proxy diffs thousands of
 * similar documents a second, and a fresh chunk each time costs a malloc,
 * for big documents an mmap, and page faults on every page it touches. */
#define SPARE_MAX ((size_t)8 << 20)
static _Thread_local struct arena_chunk_s *spare;

/* The parser's two stacks are kept the same way, so a big array does not
 * cost an mmap and its page faults per parse. */
static _Thread_local void *spare_nst, *spare_mst;
static _Thread_local size_t spare_ncap, spare_mcap;

void shadow_json_arena_cache_clear(void) {
  free(spare);
  spare = NULL;
  free(spare_nst);
  free(spare_mst);
  spare_nst = spare_mst = NULL;
  spare_ncap = spare_mcap = 0;
}

void *shadow_json_arena_alloc(shadow_json_arena_t *a, size_t n) {
  n = (n + 7) & ~(size_t)7;
  struct arena_chunk_s *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t size = a->next_size ? a->next_size : 16384;
    if (size < n) size = n;
    if (spare && spare->cap >= size) {
      c = spare;
      spare = NULL;
      size = c->cap;
    } else {
      c = malloc(sizeof *c + size);
    }
    if (!c) return NULL;
    c->cap = size;
    c->used = 0;
    c->next = a->head;
    a->head = c;
    /* Grow geometrically so a big document needs few chunks. */
    if (a->next_size < ((size_t)1 << 26)) a->next_size = size * 2;
  }
  void *p = c->data + c->used;
  c->used += n;
  return p;
}

void shadow_json_arena_free(shadow_json_arena_t *a) {
  struct arena_chunk_s *c = a->head;
  while (c) {
    struct arena_chunk_s *next = c->next;
    /* Keep the biggest chunk that is not too big as the spare. */
    if (c->cap <= SPARE_MAX && (!spare || c->cap > spare->cap)) {
      free(spare);
      spare = c;
    } else {
      free(c);
    }
    c = next;
  }
  a->head = NULL;
  a->next_size = 0;
}

/* ---- parser ----------------------------------------------------------- */

typedef struct {
  const char *s; /* start of text */
  const char *p; /* cursor */
  const char *end;
  shadow_json_arena_t *a;
  /* Children are collected on these stacks and copied into the arena in one
   * block when their container closes, so siblings are contiguous. */
  shadow_json_t *nst;
  size_t ntop, ncap;
  shadow_json_member_t *mst;
  size_t mtop, mcap;
  int depth;
  int rc;
  const char *why;
  shadow_json_skip_fn skip; /* lazy parses only */
  void *skip_ctx;
  size_t skipped; /* lazy nodes made so far */
} parser_t;

/* 1 for ASCII bytes a string may hold as they are; bytes >= 0x80 take the
 * UTF-8 check. */
static const unsigned char plain[256] = {
#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
    R16(0), R16(0), /* controls */
    1,      1,      0 /* " */, 1,      1,      1,      1,         1,
    1,      1,      1,         1,      1,      1,      1,         1,
    R16(1), R16(1), 1,         1,      1,      1,      1,         1,
    1,      1,      1,         1,      1,      1,      0 /* \ */, 1,
    1,      1,      R16(1),    R16(1), R16(0), R16(0), R16(0),    R16(0),
    R16(0), R16(0), R16(0),    R16(0)
#undef R16
};

/* A parser starts with the thread's spare stacks and gives them back. */
static void stacks_take(parser_t *ps) {
  ps->nst = spare_nst;
  ps->ncap = spare_ncap;
  ps->mst = spare_mst;
  ps->mcap = spare_mcap;
  spare_nst = spare_mst = NULL;
  spare_ncap = spare_mcap = 0;
}

/* Stacks for more than this many children are freed rather than kept:
 * 512 KiB of nodes, 768 KiB of members at most, per thread. */
#define SPARE_STACK_MAX ((size_t)1 << 14)

static void stacks_give(parser_t *ps) {
  if (ps->ncap <= SPARE_STACK_MAX && !spare_nst) {
    spare_nst = ps->nst;
    spare_ncap = ps->ncap;
  } else {
    free(ps->nst);
  }
  if (ps->mcap <= SPARE_STACK_MAX && !spare_mst) {
    spare_mst = ps->mst;
    spare_mcap = ps->mcap;
  } else {
    free(ps->mst);
  }
}

static int fail(parser_t *ps, const char *why) {
  if (!ps->rc) {
    ps->rc = -EINVAL;
    ps->why = why;
  }
  return ps->rc;
}

static int oom(parser_t *ps) {
  ps->rc = -ENOMEM;
  ps->why = "out of memory";
  return ps->rc;
}

static inline void skip_ws(parser_t *ps) {
  const char *p = ps->p, *end = ps->end;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
    p++;
#if defined(__SSE2__)
    /* Indentation: after a newline, a run of spaces 16 bytes at a time
     * (pretty-printed documents are as much indentation as data). */
    if (p[-1] == '\n')
      while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned sp =
            (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')));
        if (sp != 0xFFFF) {
          p += __builtin_ctz(~sp);
          break;
        }
        p += 16;
      }
#endif
  }
  ps->p = p;
}

static int hexval(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = (unsigned char)p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      return -1;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Length of the valid UTF-8 sequence at s (2..4), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c >= 0xC2 && c <= 0xDF) {
    return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
    if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
        (s[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
    if (c == 0xF4 && s[1] >= 0x90) return 0; /* beyond U+10FFFF */
    return 4;
  }
  return 0;
}

/* Parses a string at ps->p (on the opening quote). Strings without escapes
 * point into the source; others are decoded into the arena. Text must be
 * UTF-8 (RFC 8259): invalid sequences are refused, so every string the
 * diff writes back reads as the same string. */
static int parse_string(parser_t *ps, const char **out, uint32_t *olen) {
  const char *start = ++ps->p;
  const char *p = start, *end = ps->end;
  int escaped = 0;
  for (;;) {
#if defined(__SSE2__)
    /* 16 bytes at a time up to the first byte that is not plain: a quote,
     * a backslash, a control byte or a byte >= 0x80 (both below 0x20 as
     * signed bytes). */
    while (end - p >= 16) {
      __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
      __m128i stop =
          _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                       _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
      unsigned m = (unsigned)_mm_movemask_epi8(stop);
      if (m) {
        p += __builtin_ctz(m);
        break;
      }
      p += 16;
    }
#endif
    while (p < end && plain[(unsigned char)*p])
      p++;
    if (p >= end) {
      ps->p = p;
      return fail(ps, "unterminated string");
    }
    if (*p == '"') break;
    if ((unsigned char)*p >= 0x80) {
      size_t l = utf8_len((const unsigned char *)p, (size_t)(end - p));
      if (!l) {
        ps->p = p;
        return fail(ps, "invalid UTF-8 in string");
      }
      p += l;
      continue;
    }
    if (*p == '\\') {
      escaped = 1;
      if (end - p < 2) {
        ps->p = end;
        return fail(ps, "unterminated string");
      }
      p += 2; /* the escaped byte is checked when decoding */
      continue;
    }
    ps->p = p;
    return fail(ps, "control character in string");
  }
  size_t n = (size_t)(p - start);
  if (!escaped) {
    *out = start;
    *olen = (uint32_t)n;
    ps->p = p + 1;
    return 0;
  }
  char *o = shadow_json_arena_alloc(ps->a, n ? n : 1);
  if (!o) return oom(ps);
  size_t k = 0;
  const char *q = start;
  while (q < p) {
    if (*q != '\\') {
      o[k++] = *q++;
      continue;
    }
    ps->p = q;
    q++;
    switch (*q) {
    case '"':
      o[k++] = '"';
      q++;
      break;
    case '\\':
      o[k++] = '\\';
      q++;
      break;
    case '/':
      o[k++] = '/';
      q++;
      break;
    case 'b':
      o[k++] = '\b';
      q++;
      break;
    case 'f':
      o[k++] = '\f';
      q++;
      break;
    case 'n':
      o[k++] = '\n';
      q++;
      break;
    case 'r':
      o[k++] = '\r';
      q++;
      break;
    case 't':
      o[k++] = '\t';
      q++;
      break;
    case 'u': {
      unsigned cp, lo;
      if (p - q < 5 || hexval(q + 1, &cp)) return fail(ps, "bad \\u escape");
      q += 5;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(ps, "lone low surrogate");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p - q < 6 || q[0] != '\\' || q[1] != 'u' || hexval(q + 2, &lo) ||
            lo < 0xDC00 || lo > 0xDFFF)
          return fail(ps, "unpaired high surrogate");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        q += 6;
      }
      k += put_utf8(o + k, cp);
      break;
    }
    default: return fail(ps, "bad escape");
    }
  }
  *out = o;
  *olen = (uint32_t)k;
  ps->p = p + 1;
  return 0;
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

#define EXP_LIMIT 1000000000LL

static int parse_number(parser_t *ps, shadow_json_t *v) {
  const char *p = ps->p, *end = ps->end, *start = p;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  if (p >= end || !is_digit(*p)) {
    ps->p = p;
    return fail(ps, "bad number");
  }
  const char *is = p;
  if (*p == '0')
    p++;
  else
    while (p < end && is_digit(*p))
      p++;
  const char *ie = p, *fs = p, *fe = p;
  if (p < end && *p == '.') {
    fs = ++p;
    while (p < end && is_digit(*p))
      p++;
    fe = p;
    if (fe == fs) {
      ps->p = p;
      return fail(ps, "bad fraction");
    }
  }
  long long e = 0;
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    int eneg = 0;
    if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    if (p >= end || !is_digit(*p)) {
      ps->p = p;
      return fail(ps, "bad exponent");
    }
    while (p < end && is_digit(*p)) {
      if (e < EXP_LIMIT) e = e * 10 + (*p - '0');
      p++;
    }
    if (eneg) e = -e;
  }
  ps->p = p;
  v->type = SHADOW_JSON_NUMBER;
  v->raw = start;
  v->rawlen = (uint32_t)(p - start);

  /* Normalize: significant digits of int part then fraction part, without
   * leading or trailing zeros. */
  const char *ds = is;
  while (ds < ie && *ds == '0')
    ds++;
  const char *fz = fe; /* fraction without trailing zeros ends at fz */
  while (fz > fs && fz[-1] == '0')
    fz--;
  long long exp;
  const char *digits;
  size_t nd;
  if (ds < ie && fz > fs) {
    /* Digits on both sides of the point: copy them together. */
    nd = (size_t)(ie - ds) + (size_t)(fz - fs);
    char *o = shadow_json_arena_alloc(ps->a, nd);
    if (!o) return oom(ps);
    memcpy(o, ds, (size_t)(ie - ds));
    memcpy(o + (ie - ds), fs, (size_t)(fz - fs));
    digits = o;
    exp = e - (fz - fs);
  } else if (ds < ie) {
    const char *de = ie;
    while (de > ds && de[-1] == '0')
      de--;
    digits = ds;
    nd = (size_t)(de - ds);
    exp = e + (ie - de);
  } else {
    const char *fd = fs;
    while (fd < fz && *fd == '0')
      fd++;
    digits = fd;
    nd = (size_t)(fz - fd);
    exp = e - (fz - fs);
  }
  if (nd == 0) {
    neg = 0;
    exp = 0;
  }
  if (exp > EXP_LIMIT) exp = EXP_LIMIT;
  if (exp < -EXP_LIMIT) exp = -EXP_LIMIT;
  v->neg = (uint8_t)neg;
  v->len = (uint32_t)nd;
  v->exp = (int32_t)exp;
  v->u.digits = digits;
  return 0;
}

static int lit(parser_t *ps, const char *word, size_t n, int type,
               shadow_json_t *v) {
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n))
    return fail(ps, "invalid literal");
  v->type = (uint8_t)type;
  v->raw = ps->p;
  v->rawlen = (uint32_t)n;
  ps->p += n;
  return 0;
}

static int parse_value(parser_t *ps, shadow_json_t *v);

/* Copies a node field by field. parse_value has just written each field
 * on its own; a struct copy reads them back 16 bytes at a time, which the
 * CPU cannot forward from those narrower stores, and stalls on every node
 * (a third of the parse time, measured). Leaves, most nodes, are parsed
 * straight into their stack slot and need no copy at all. */
static inline void node_copy(shadow_json_t *d, const shadow_json_t *s) {
  d->raw = s->raw;
  d->rawlen = s->rawlen;
  d->type = s->type;
  d->neg = s->neg;
  d->flags = s->flags;
  d->len = s->len;
  d->exp = s->exp;
  d->u = s->u;
}

/* A lazy parse's question at a container's opening bracket: when the
 * answer is to skip it, v becomes a lazy node and ps->p moves past it. */
static int skip_lazy(parser_t *ps, shadow_json_t *v) {
  size_t off = (size_t)(ps->p - ps->s), e;
  char close = *ps->p == '{' ? '}' : ']';
  if (!ps->skip(ps->skip_ctx, off, &e) || e < off + 2 ||
      e > (size_t)(ps->end - ps->s) || ps->s[e - 1] != close)
    return 0;
  v->raw = ps->p;
  v->rawlen = (uint32_t)(e - off);
  v->type = close == '}' ? SHADOW_JSON_OBJECT : SHADOW_JSON_ARRAY;
  v->neg = 0;
  v->flags = SHADOW_JSON_LAZY;
  v->len = 0;
  v->exp = 0;
  v->u.str = NULL;
  ps->p = ps->s + e;
  ps->skipped++;
  return 1;
}

static int parse_array(parser_t *ps, shadow_json_t *v) {
  const char *start = ps->p++;
  size_t base = ps->ntop, skipped = ps->skipped;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == ']') {
    ps->p++;
  } else {
    for (;;) {
      skip_ws(ps);
      if (ps->ntop == ps->ncap) {
        size_t cap = ps->ncap ? ps->ncap * 2 : 64;
        shadow_json_t *n = realloc(ps->nst, cap * sizeof *n);
        if (!n) return oom(ps);
        ps->nst = n;
        ps->ncap = cap;
      }
      /* Leaves and skipped containers are parsed in place, since nothing
       * they do can move the stack; a container that is parsed may, so it
       * goes through a copy. */
      int leaf = ps->p < ps->end && *ps->p != '{' && *ps->p != '[';
      if (leaf ||
          (ps->skip && ps->p < ps->end && skip_lazy(ps, &ps->nst[ps->ntop]))) {
        if (leaf && parse_value(ps, &ps->nst[ps->ntop])) return ps->rc;
        ps->ntop++;
      } else {
        shadow_json_t item;
        if (parse_value(ps, &item)) return ps->rc;
        node_copy(&ps->nst[ps->ntop++], &item);
      }
      skip_ws(ps);
      if (ps->p >= ps->end) return fail(ps, "unterminated array");
      if (*ps->p == ',') {
        ps->p++;
        continue;
      }
      if (*ps->p == ']') {
        ps->p++;
        break;
      }
      return fail(ps, "expected , or ]");
    }
  }
  size_t count = ps->ntop - base;
  v->type = SHADOW_JSON_ARRAY;
  if (ps->skipped != skipped) v->flags |= SHADOW_JSON_HAS_LAZY;
  v->len = (uint32_t)count;
  v->u.items = NULL;
  if (count) {
    v->u.items = shadow_json_arena_alloc(ps->a, count * sizeof(shadow_json_t));
    if (!v->u.items) return oom(ps);
    memcpy(v->u.items, ps->nst + base, count * sizeof(shadow_json_t));
  }
  ps->ntop = base;
  v->raw = start;
  v->rawlen = (uint32_t)(ps->p - start);
  return 0;
}

/* 1 when a key occurs twice among m[0..n). Small objects compare every
 * pair; big ones go through a hash set (or say 1 without memory, which
 * only sends readers down the exact path for repeated keys). */
static int has_repeats(const shadow_json_member_t *m, size_t n) {
  if (n <= 16) {
    for (size_t i = 1; i < n; i++)
      for (size_t j = 0; j < i; j++)
        if (m[i].klen == m[j].klen &&
            memcmp(m[i].key, m[j].key, m[i].klen) == 0)
          return 1;
    return 0;
  }
  size_t size = 32;
  while (size < n * 2)
    size *= 2;
  int32_t *tab = malloc(size * sizeof *tab);
  if (!tab) return 1;
  memset(tab, 0xff, size * sizeof *tab);
  int dup = 0;
  for (size_t i = 0; i < n && !dup; i++) {
    size_t h = (size_t)XXH3_64bits(m[i].key, m[i].klen) & (size - 1);
    for (; tab[h] >= 0; h = (h + 1) & (size - 1)) {
      const shadow_json_member_t *o = &m[tab[h]];
      if (o->klen == m[i].klen && memcmp(o->key, m[i].key, o->klen) == 0) {
        dup = 1;
        break;
      }
    }
    tab[h] = (int32_t)i;
  }
  free(tab);
  return dup;
}

static int parse_object(parser_t *ps, shadow_json_t *v) {
  const char *start = ps->p++;
  size_t base = ps->mtop;
  /* A 64-bit filter over each key's length and end bytes: a repeated key
   * always hits a bit already set, and only then are keys compared. */
  uint64_t seen = 0, hit = 0;
  size_t skipped = ps->skipped;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == '}') {
    ps->p++;
  } else {
    for (;;) {
      const char *key;
      uint32_t klen;
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected key");
      if (parse_string(ps, &key, &klen)) return ps->rc;
      unsigned kb = klen * 7u;
      if (klen) kb += (unsigned char)key[0] + 3u * (unsigned char)key[klen - 1];
      hit |= seen >> (kb & 63);
      seen |= (uint64_t)1 << (kb & 63);
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected :");
      ps->p++;
      skip_ws(ps);
      if (ps->mtop == ps->mcap) {
        size_t cap = ps->mcap ? ps->mcap * 2 : 64;
        shadow_json_member_t *n = realloc(ps->mst, cap * sizeof *n);
        if (!n) return oom(ps);
        ps->mst = n;
        ps->mcap = cap;
      }
      shadow_json_member_t *d;
      if (ps->p < ps->end && *ps->p != '{' && *ps->p != '[') {
        d = &ps->mst[ps->mtop]; /* a leaf, in place as above */
        if (parse_value(ps, &d->value)) return ps->rc;
        ps->mtop++;
      } else {
        shadow_json_t value;
        if (parse_value(ps, &value)) return ps->rc;
        d = &ps->mst[ps->mtop++];
        node_copy(&d->value, &value);
      }
      d->key = key;
      d->klen = klen;
      skip_ws(ps);
      if (ps->p >= ps->end) return fail(ps, "unterminated object");
      if (*ps->p == ',') {
        ps->p++;
        continue;
      }
      if (*ps->p == '}') {
        ps->p++;
        break;
      }
      return fail(ps, "expected , or }");
    }
  }
  size_t count = ps->mtop - base;
  v->type = SHADOW_JSON_OBJECT;
  if (ps->skipped != skipped) v->flags |= SHADOW_JSON_HAS_LAZY;
  v->len = (uint32_t)count;
  v->u.members = NULL;
  if (count) {
    size_t bytes = count * sizeof(shadow_json_member_t);
    v->u.members = shadow_json_arena_alloc(ps->a, bytes);
    if (!v->u.members) return oom(ps);
    memcpy(v->u.members, ps->mst + base, bytes);
    if ((hit & 1) && has_repeats(v->u.members, count))
      v->flags |= SHADOW_JSON_DUPS;
  }
  ps->mtop = base;
  v->raw = start;
  v->rawlen = (uint32_t)(ps->p - start);
  return 0;
}

static int parse_value(parser_t *ps, shadow_json_t *v) {
  if (ps->p >= ps->end) return fail(ps, "unexpected end");
  v->neg = 0;
  v->flags = 0;
  v->len = 0;
  v->exp = 0;
  v->u.str = NULL;
  switch (*ps->p) {
  case '{':
  case '[': {
    if (ps->skip && skip_lazy(ps, v)) return 0;
    if (++ps->depth > SHADOW_JSON_MAX_DEPTH) return fail(ps, "too deep");
    int rc = *ps->p == '{' ? parse_object(ps, v) : parse_array(ps, v);
    ps->depth--;
    return rc;
  }
  case '"': {
    const char *start = ps->p;
    if (parse_string(ps, &v->u.str, &v->len)) return ps->rc;
    v->type = SHADOW_JSON_STRING;
    v->raw = start;
    v->rawlen = (uint32_t)(ps->p - start);
    return 0;
  }
  case 't': return lit(ps, "true", 4, SHADOW_JSON_TRUE, v);
  case 'f': return lit(ps, "false", 5, SHADOW_JSON_FALSE, v);
  case 'n': return lit(ps, "null", 4, SHADOW_JSON_NULL, v);
  default: return parse_number(ps, v);
  }
}

int shadow_json_parse(shadow_json_arena_t *a, const char *text, size_t len,
                      shadow_json_t *root, size_t *err_off, const char **why) {
  return shadow_json_parse_lazy(a, text, len, root, NULL, NULL, err_off, why);
}

int shadow_json_parse_lazy(shadow_json_arena_t *a, const char *text, size_t len,
                           shadow_json_t *root, shadow_json_skip_fn skip,
                           void *ctx, size_t *err_off, const char **why) {
  parser_t ps;
  memset(&ps, 0, sizeof ps);
  ps.s = ps.p = text;
  ps.end = text + len;
  ps.a = a;
  ps.skip = skip;
  ps.skip_ctx = ctx;
  stacks_take(&ps);
  /* Size the first chunk from the text: nodes take about four times its
   * size in API-like documents (many short members). */
  if (!a->head && !a->next_size) {
    size_t guess = len * 4 + 4096;
    a->next_size = guess < ((size_t)1 << 26) ? guess : ((size_t)1 << 26);
  }
  if (len >= UINT32_MAX) {
    fail(&ps, "text of 4 GiB or more");
  } else {
    skip_ws(&ps);
    if (!parse_value(&ps, root)) {
      skip_ws(&ps);
      if (ps.p != ps.end) fail(&ps, "trailing characters");
    }
  }
  stacks_give(&ps);
  if (ps.rc) {
    if (err_off) *err_off = (size_t)(ps.p - ps.s);
    if (why) *why = ps.why;
  }
  return ps.rc;
}

int shadow_json_parse_number(shadow_json_arena_t *a, const char *text,
                             size_t len, shadow_json_t *out) {
  parser_t ps;
  memset(&ps, 0, sizeof ps);
  ps.s = ps.p = text;
  ps.end = text + len;
  ps.a = a;
  if (len == 0 || len >= UINT32_MAX) return -EINVAL;
  memset(out, 0, sizeof *out);
  int rc = parse_number(&ps, out);
  if (rc == 0 && ps.p != ps.end) rc = -EINVAL;
  return rc;
}

int shadow_json_materialize(shadow_json_arena_t *a, shadow_json_t *v, int depth,
                            size_t *err_off, const char **why) {
  if (!(v->flags & SHADOW_JSON_LAZY)) return 0;
  parser_t ps;
  memset(&ps, 0, sizeof ps);
  ps.s = ps.p = v->raw;
  ps.end = v->raw + v->rawlen;
  ps.a = a;
  ps.depth = depth;
  stacks_take(&ps);
  shadow_json_t n;
  if (!parse_value(&ps, &n) && ps.p != ps.end) fail(&ps, "trailing characters");
  stacks_give(&ps);
  if (ps.rc) {
    if (err_off) *err_off = (size_t)(ps.p - ps.s);
    if (why) *why = ps.why;
    return ps.rc;
  }
  *v = n;
  return 0;
}

/* ---- equality and hashing --------------------------------------------- */

static int num_equal(const shadow_json_t *a, const shadow_json_t *b) {
  return a->neg == b->neg && a->exp == b->exp && a->len == b->len &&
         memcmp(a->u.digits, b->u.digits, a->len) == 0;
}

long shadow_json_member_find(const shadow_json_t *obj, const char *key,
                             size_t klen) {
  if (obj->type != SHADOW_JSON_OBJECT) return -1;
  for (long i = (long)obj->len - 1; i >= 0; i--) {
    const shadow_json_member_t *m = &obj->u.members[i];
    if (m->klen == klen && memcmp(m->key, key, klen) == 0) return i;
  }
  return -1;
}

/* Last-occurrence index of each key of o, by open addressing; NULL when o
 * is small (a backwards scan is cheaper) or memory is short. */
typedef struct {
  const shadow_json_t *o;
  int32_t *tab;
  size_t mask;
} keyidx_t;

static int same_key(const shadow_json_member_t *a,
                    const shadow_json_member_t *b) {
  return a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0;
}

static void keyidx_init(keyidx_t *k, const shadow_json_t *o) {
  k->o = o;
  k->tab = NULL;
  if (o->len <= 16) return;
  size_t size = 32;
  while (size < (size_t)o->len * 2)
    size *= 2;
  k->tab = malloc(size * sizeof *k->tab);
  if (!k->tab) return;
  memset(k->tab, 0xff, size * sizeof *k->tab);
  k->mask = size - 1;
  const shadow_json_member_t *m = o->u.members;
  for (uint32_t i = 0; i < o->len; i++) {
    size_t h = (size_t)XXH3_64bits(m[i].key, m[i].klen) & k->mask;
    while (k->tab[h] >= 0 && !same_key(&m[k->tab[h]], &m[i]))
      h = (h + 1) & k->mask;
    k->tab[h] = (int32_t)i;
  }
}

static long keyidx_find(const keyidx_t *k, const shadow_json_member_t *key) {
  if (!k->tab) return shadow_json_member_find(k->o, key->key, key->klen);
  const shadow_json_member_t *m = k->o->u.members;
  size_t h = (size_t)XXH3_64bits(key->key, key->klen) & k->mask;
  while (k->tab[h] >= 0) {
    if (same_key(&m[k->tab[h]], key)) return k->tab[h];
    h = (h + 1) & k->mask;
  }
  return -1;
}

/* Objects in different key orders: a repeated key counts by its last
 * member, as in the diff. */
static int obj_equal_unordered(const shadow_json_t *a, const shadow_json_t *b) {
  keyidx_t ka, kb;
  keyidx_init(&ka, a);
  keyidx_init(&kb, b);
  int eq = 1;
  size_t da = 0, db = 0;
  for (uint32_t j = 0; eq && j < a->len; j++) {
    const shadow_json_member_t *x = &a->u.members[j];
    if (keyidx_find(&ka, x) != (long)j) continue;
    da++;
    long k = keyidx_find(&kb, x);
    if (k < 0 || !shadow_json_equal(&x->value, &b->u.members[k].value)) eq = 0;
  }
  /* Every distinct key of a is in b: equal distinct counts finish it. */
  for (uint32_t j = 0; eq && j < b->len; j++)
    db += keyidx_find(&kb, &b->u.members[j]) == (long)j;
  free(ka.tab);
  free(kb.tab);
  return eq && da == db;
}

static int obj_equal(const shadow_json_t *a, const shadow_json_t *b) {
  uint32_t n = a->len, i = 0;
  if (n == b->len && !((a->flags | b->flags) & SHADOW_JSON_DUPS)) {
    /* Same key order is the common case: compare member by member. */
    while (i < n && same_key(&a->u.members[i], &b->u.members[i]))
      i++;
    if (i == n) {
      for (i = 0; i < n; i++)
        if (!shadow_json_equal(&a->u.members[i].value, &b->u.members[i].value))
          return 0;
      return 1;
    }
  }
  return obj_equal_unordered(a, b);
}

int shadow_json_equal(const shadow_json_t *a, const shadow_json_t *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case SHADOW_JSON_NUMBER: return num_equal(a, b);
  case SHADOW_JSON_STRING:
    return a->len == b->len && memcmp(a->u.str, b->u.str, a->len) == 0;
  case SHADOW_JSON_ARRAY:
    if (a->len != b->len) return 0;
    if (!((a->flags | b->flags) & SHADOW_JSON_EDITED) &&
        a->rawlen == b->rawlen && memcmp(a->raw, b->raw, a->rawlen) == 0)
      return 1;
    for (uint32_t i = 0; i < a->len; i++)
      if (!shadow_json_equal(&a->u.items[i], &b->u.items[i])) return 0;
    return 1;
  case SHADOW_JSON_OBJECT:
    if (!((a->flags | b->flags) & SHADOW_JSON_EDITED) &&
        a->rawlen == b->rawlen && memcmp(a->raw, b->raw, a->rawlen) == 0)
      return 1;
    return obj_equal(a, b);
  default: return 1;
  }
}

static uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

uint64_t shadow_json_hash(const shadow_json_t *v) {
  uint64_t h = (uint64_t)v->type * 0x9E3779B97F4A7C15ULL;
  switch (v->type) {
  case SHADOW_JSON_NUMBER:
    return mix(h ^
               XXH3_64bits_withSeed(v->u.digits, v->len,
                                    (uint64_t)(int64_t)v->exp * 2 + v->neg));
  case SHADOW_JSON_STRING: return mix(h ^ XXH3_64bits(v->u.str, v->len));
  case SHADOW_JSON_ARRAY:
    for (uint32_t i = 0; i < v->len; i++)
      h = mix(h + shadow_json_hash(&v->u.items[i]) + i);
    return h;
  case SHADOW_JSON_OBJECT: {
    /* A sum is independent of member order; of a repeated key only the
     * last member counts, as in equality. */
    uint64_t s = 0, live = 0;
    keyidx_t k;
    k.tab = NULL;
    int dups = (v->flags & SHADOW_JSON_DUPS) != 0;
    if (dups) keyidx_init(&k, v);
    for (uint32_t i = 0; i < v->len; i++) {
      const shadow_json_member_t *m = &v->u.members[i];
      if (dups && keyidx_find(&k, m) != (long)i) continue;
      live++;
      s += mix(XXH3_64bits(m->key, m->klen) ^
               (shadow_json_hash(&m->value) * 31));
    }
    free(k.tab);
    return mix(h ^ s ^ live);
  }
  default: return mix(h);
  }
}

/* ---- writing and numbers ---------------------------------------------- */

int shadow_json_write(shadow_buf_t *b, const shadow_json_t *v) {
  switch (v->type) {
  case SHADOW_JSON_NULL: return shadow_buf_append(b, "null", 4);
  case SHADOW_JSON_TRUE: return shadow_buf_append(b, "true", 4);
  case SHADOW_JSON_FALSE: return shadow_buf_append(b, "false", 5);
  case SHADOW_JSON_NUMBER: return shadow_buf_append(b, v->raw, v->rawlen);
  case SHADOW_JSON_STRING:
    return shadow_buf_json_string(b, v->u.str, v->len, 0);
  case SHADOW_JSON_ARRAY:
    if (shadow_buf_putc(b, '[')) return -ENOMEM;
    for (uint32_t i = 0; i < v->len; i++) {
      if (i && shadow_buf_putc(b, ',')) return -ENOMEM;
      if (shadow_json_write(b, &v->u.items[i])) return -ENOMEM;
    }
    return shadow_buf_putc(b, ']');
  case SHADOW_JSON_OBJECT: {
    keyidx_t k;
    k.tab = NULL;
    int dups = (v->flags & SHADOW_JSON_DUPS) != 0, rc = 0, first = 1;
    if (dups) keyidx_init(&k, v);
    rc = shadow_buf_putc(b, '{');
    for (uint32_t i = 0; !rc && i < v->len; i++) {
      const shadow_json_member_t *m = &v->u.members[i];
      if (dups && keyidx_find(&k, m) != (long)i) continue;
      if (!first && shadow_buf_putc(b, ',')) rc = -ENOMEM;
      first = 0;
      if (rc || shadow_buf_json_string(b, m->key, m->klen, 0) ||
          shadow_buf_putc(b, ':') || shadow_json_write(b, &m->value))
        rc = -ENOMEM;
    }
    free(k.tab);
    return rc ? -ENOMEM : shadow_buf_putc(b, '}');
  }
  }
  return -EINVAL;
}

double shadow_json_number(const shadow_json_t *v) {
  /* Rebuild from the normalized form: 40 significant digits are more than a
   * double holds, and the source text need not be NUL-terminated. */
  char tmp[64];
  size_t nd = v->len < 40 ? v->len : 40;
  long long e = (long long)v->exp + (long long)(v->len - nd);
  if (nd == 0) return 0.0;
  snprintf(tmp, sizeof tmp, "%s%.*se%lld", v->neg ? "-" : "", (int)nd,
           v->u.digits, e);
  return strtod(tmp, NULL);
}
