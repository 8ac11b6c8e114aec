/* The structural scan of json_scan.h. Each 64-byte block becomes four bit
 * masks (quotes, backslashes, opening and closing brackets) in a few vector
 * compares; backslash runs decide which quotes are escaped; a prefix XOR
 * over the unescaped quotes marks the bytes inside strings, and what is
 * left of the bracket masks are the brackets that count. Only brackets are
 * then visited one by one, so the cost is a pass over the bytes at close to
 * memory speed plus a little per container. Pure; touches only the text
 * and the span table. */
#include "json_scan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void shadow_json_spans_free(shadow_json_spans_t *s) {
  free(s->open);
  free(s->end);
  memset(s, 0, sizeof *s);
}

static int spans_grow(shadow_json_spans_t *s) {
  size_t cap = s->cap ? s->cap * 2 : 256;
  uint32_t *o = realloc(s->open, cap * sizeof *o);
  if (!o) return -ENOMEM;
  s->open = o;
  uint32_t *e = realloc(s->end, cap * sizeof *e);
  if (!e) return -ENOMEM;
  s->end = e;
  s->cap = cap;
  return 0;
}

/* The bytes a backslash escapes: the one after each run of odd length.
 * Adding a run's lowest bit to the mask carries through the run to the
 * byte after it; a run that starts on an even bit and ends before an odd
 * one has odd length, and the reverse. Runs are added in two sets, those
 * starting on even bits and those on odd ones, so no carry crosses into
 * another run. *carry is 1 when the block's first byte is escaped by a run
 * that ended the previous block (one starting on an odd bit and reaching
 * bit 63 has odd length, and its carry leaves the word), and is set the
 * same way for the next block. */
#define EVEN_BITS 0x5555555555555555ULL

static inline uint64_t escaped(uint64_t bs, uint64_t *carry) {
  uint64_t b = bs & ~*carry; /* an escaped backslash starts no run */
  uint64_t starts = b & ~(b << 1);
  uint64_t even = b + (starts & EVEN_BITS);
  uint64_t odd = b + (starts & ~EVEN_BITS);
  uint64_t esc = ((even & ~b) & ~EVEN_BITS) | ((odd & ~b) & EVEN_BITS) | *carry;
  *carry = odd < b;
  return esc;
}

/* Bit i set when an odd number of bits 0..i are set. */
static inline uint64_t prefix_xor(uint64_t x) {
  x ^= x << 1;
  x ^= x << 2;
  x ^= x << 4;
  x ^= x << 8;
  x ^= x << 16;
  x ^= x << 32;
  return x;
}

/* What one block leaves to the bracket loop, and what it passes on. */
typedef struct {
  uint64_t esc;    /* the next block's first byte is escaped */
  uint64_t in_str; /* all ones when the block ended inside a string */
} carry_t;

/* The bytes inside strings, from the prefix XOR of a block's unescaped
 * quotes: an opening quote counts as inside, a closing one does not. */
static inline uint64_t strings(uint64_t px, carry_t *c) {
  uint64_t str = px ^ c->in_str;
  c->in_str = 0 - (str >> 63);
  return str;
}

/* Fills opens[k] and brackets[k] (opening, and all brackets, outside
 * strings) for nblk blocks of 64 bytes from p. '[' and '{' differ only in
 * bit 5, as do ']' and '}', so one compare after setting that bit finds
 * both. */
static void masks_generic(const unsigned char *p, size_t nblk, carry_t *c,
                          uint64_t *opens, uint64_t *brackets) {
  for (size_t k = 0; k < nblk; k++, p += 64) {
    uint64_t mq = 0, mb = 0, mo = 0, mc = 0;
#if defined(__SSE2__)
    const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    const __m128i op = _mm_set1_epi8('{'), cl = _mm_set1_epi8('}');
    const __m128i b5 = _mm_set1_epi8(0x20);
    for (int i = 0; i < 4; i++) {
      __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i));
      __m128i f = _mm_or_si128(v, b5);
      unsigned sh = 16u * (unsigned)i;
      mq |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, q)) << sh;
      mb |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, bs)) << sh;
      mo |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(f, op)) << sh;
      mc |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(f, cl)) << sh;
    }
#else
    for (unsigned i = 0; i < 64; i++) {
      unsigned ch = p[i], f = ch | 0x20;
      mq |= (uint64_t)(ch == '"') << i;
      mb |= (uint64_t)(ch == '\\') << i;
      mo |= (uint64_t)(f == '{') << i;
      mc |= (uint64_t)(f == '}') << i;
    }
#endif
    uint64_t quotes = mb | c->esc ? mq & ~escaped(mb, &c->esc) : mq;
    uint64_t str = strings(prefix_xor(quotes), c);
    opens[k] = mo & ~str;
    brackets[k] = (mo | mc) & ~str;
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>

/* The same with 32-byte compares, and the prefix XOR as one carry-less
 * multiply by all ones; chosen at run time where the CPU has both. */
__attribute__((target("avx2,pclmul"))) static void
masks_avx2(const unsigned char *p, size_t nblk, carry_t *c, uint64_t *opens,
           uint64_t *brackets) {
  const __m256i q = _mm256_set1_epi8('"'), bs = _mm256_set1_epi8('\\');
  const __m256i op = _mm256_set1_epi8('{'), cl = _mm256_set1_epi8('}');
  const __m256i b5 = _mm256_set1_epi8(0x20);
  const __m128i ones = _mm_set1_epi8(-1);
  for (size_t k = 0; k < nblk; k++, p += 64) {
    __m256i v0 = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m256i v1 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
    __m256i f0 = _mm256_or_si256(v0, b5), f1 = _mm256_or_si256(v1, b5);
#define MASK64(a, b)                                                           \
  ((uint64_t)(uint32_t)_mm256_movemask_epi8(a) |                               \
   (uint64_t)(uint32_t)_mm256_movemask_epi8(b) << 32)
    uint64_t mq = MASK64(_mm256_cmpeq_epi8(v0, q), _mm256_cmpeq_epi8(v1, q));
    uint64_t mb = MASK64(_mm256_cmpeq_epi8(v0, bs), _mm256_cmpeq_epi8(v1, bs));
    uint64_t mo = MASK64(_mm256_cmpeq_epi8(f0, op), _mm256_cmpeq_epi8(f1, op));
    uint64_t mc = MASK64(_mm256_cmpeq_epi8(f0, cl), _mm256_cmpeq_epi8(f1, cl));
#undef MASK64
    /* Most blocks hold no backslash and follow none. */
    uint64_t quotes = mb | c->esc ? mq & ~escaped(mb, &c->esc) : mq;
    uint64_t px = (uint64_t)_mm_cvtsi128_si64(
        _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)quotes), ones, 0));
    uint64_t str = strings(px, c);
    opens[k] = mo & ~str;
    brackets[k] = (mo | mc) & ~str;
  }
}
#endif

/* Blocks are classified this many at a time, then their brackets read. */
#define CHUNK 64

static int portable_only;

void shadow_json_spans_portable(int on) {
  portable_only = on;
}

/* The masks function this CPU runs best. */
static void (*pick_masks(void))(const unsigned char *, size_t, carry_t *,
                                uint64_t *, uint64_t *) {
#ifdef HAVE_AVX2_PATH
  if (!portable_only && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("pclmul"))
    return masks_avx2;
#endif
  return masks_generic;
}

int shadow_json_spans_scan(shadow_json_spans_t *s, const char *text,
                           size_t start, size_t limit) {
  s->n = 0;
  s->start = start;
  s->limit = limit;
  if (limit > UINT32_MAX) return -ENOMEM;
  void (*masks)(const unsigned char *, size_t, carry_t *, uint64_t *,
                uint64_t *) = pick_masks();
  /* ent[d] is the entry of the container open at depth d; depth 0 is
   * outside everything the range opened. */
  uint32_t *ent = NULL;
  size_t d = 0, dcap = 0;
  carry_t carry = {0, 0};
  const unsigned char *t = (const unsigned char *)text;
  unsigned char tail[64];
  uint64_t opens[CHUNK], brackets[CHUNK];
  int rc = 0;
  for (size_t base = start; base < limit && !rc;) {
    size_t left = limit - base, nblk = left / 64;
    if (nblk > CHUNK) nblk = CHUNK;
    if (nblk) {
      masks(t + base, nblk, &carry, opens, brackets);
    } else {
      /* The last block: padded with spaces, which mean nothing here. */
      memset(tail, ' ', sizeof tail);
      memcpy(tail, t + base, left);
      masks(tail, 1, &carry, opens, brackets);
      brackets[0] &= ((uint64_t)1 << left) - 1;
      nblk = 1;
    }
    for (size_t k = 0; k < nblk; k++, base += 64) {
      uint64_t bits = brackets[k], op = opens[k];
      if (!bits) continue;
      /* Room for 64 more brackets, so the loop below checks nothing. */
      if (s->n + 64 > s->cap && spans_grow(s)) {
        rc = -ENOMEM;
        break;
      }
      if (d + 65 > dcap) {
        size_t cap = dcap ? dcap * 2 : 128;
        uint32_t *ne = realloc(ent, cap * sizeof *ne);
        if (!ne) {
          rc = -ENOMEM;
          break;
        }
        ent = ne;
        dcap = cap;
      }
      uint32_t *open = s->open, *end = s->end;
      size_t n = s->n;
      do {
        unsigned i = (unsigned)__builtin_ctzll(bits);
        bits &= bits - 1;
        uint32_t pos = (uint32_t)(base + i);
        size_t is_open = (size_t)(op >> i & 1);
        if (!is_open && d == 0) continue; /* closes what opened before */
        /* An opening bracket takes entry n; a closing one finishes the
         * entry of its depth and drops what was recorded inside it.
         * Either way the table then ends just after that entry. */
        size_t r = is_open ? n : ent[d - 1];
        open[n] = pos; /* harmless past the end when closing */
        ent[d] = (uint32_t)n;
        end[r] = is_open ? SHADOW_JSON_SPAN_OPEN : pos + 1;
        n = r + 1;
        d = is_open ? d + 1 : d - 1;
      } while (bits);
      s->n = n;
    }
  }
  free(ent);
  return rc;
}

/* One container's end, on demand: the blocks are classified as in a scan,
 * but a block whose closing brackets are fewer than the depth reached
 * cannot hold the end, so it is passed with two popcounts (and, where the
 * CPU has BMI2, so is one whose brackets in order never bring the depth to
 * zero: may_reach_zero); only blocks where the depth may reach zero are
 * read bracket by bracket. Blocks are
 * classified a few at first, then more at a time, so a small container
 * costs a block or two and a long one a pass at close to memory speed.
 * Inlined into one function per masks function, so the popcounts are the
 * CPU's instruction where the vector path runs. */
typedef void (*masks_fn)(const unsigned char *, size_t, carry_t *, uint64_t *,
                         uint64_t *);

#ifdef HAVE_AVX2_PATH
/* For eight brackets in order (bit j set: the j-th opens, else it closes),
 * the lowest the depth gets after any first few of them, relative to where
 * it started: -8 for eight closings, 1 for eight openings. A row per value
 * of the high four bits. */
/* clang-format off */
static const int8_t seq_low[256] = {
    -8, -6, -6, -4, -6, -4, -4, -2, -6, -4, -4, -2, -4, -2, -2, 0,
    -6, -4, -4, -2, -4, -2, -2, 0, -4, -2, -2, 0, -2, 0, -1, 1,
    -6, -4, -4, -2, -4, -2, -2, 0, -4, -2, -2, 0, -2, 0, -1, 1,
    -4, -2, -2, 0, -2, 0, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -6, -4, -4, -2, -4, -2, -2, 0, -4, -2, -2, 0, -2, 0, -1, 1,
    -4, -2, -2, 0, -2, 0, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -5, -3, -3, -1, -3, -1, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -4, -2, -2, 0, -2, 0, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -7, -5, -5, -3, -5, -3, -3, -1, -5, -3, -3, -1, -3, -1, -1, 1,
    -5, -3, -3, -1, -3, -1, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -5, -3, -3, -1, -3, -1, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -4, -2, -2, 0, -2, 0, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -6, -4, -4, -2, -4, -2, -2, 0, -4, -2, -2, 0, -2, 0, -1, 1,
    -4, -2, -2, 0, -2, 0, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -5, -3, -3, -1, -3, -1, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
    -4, -2, -2, 0, -2, 0, -1, 1, -3, -1, -1, 1, -2, 0, -1, 1,
};
/* clang-format on */

/* Whether the depth, at depth before a block, may reach zero inside it:
 * the block's brackets are gathered in order (pext), so a block that opens
 * as much as it closes (an object and its array, say) is passed whatever
 * its count of closings, a byte of brackets a step, without a branch per
 * bracket. Exact: 0 means the depth stays above zero. */
__attribute__((target("bmi2,popcnt"))) static inline int
may_reach_zero(uint64_t bits, uint64_t op, size_t depth) {
  uint64_t seq = _pext_u64(op, bits);
  unsigned k = (unsigned)__builtin_popcountll(bits);
  if (k < 64) seq |= ~0ULL << k; /* openings past the end lower nothing */
  long run = (long)depth;
  for (unsigned c = 0; c < k; c += 8) {
    unsigned b = (unsigned)(seq >> c) & 0xff;
    if (run + seq_low[b] <= 0) return 1;
    run += 2 * __builtin_popcount(b) - 8;
  }
  return 0;
}
#endif

static inline __attribute__((always_inline)) int
span_end(masks_fn masks, int gather, const unsigned char *t, size_t off,
         size_t limit, size_t *end) {
  unsigned char o = t[off];
  carry_t carry = {0, 0};
  unsigned char tail[64];
  uint64_t opens[CHUNK], brackets[CHUNK];
  size_t depth = 0, want = 1;
  for (size_t base = off; base < limit;) {
    size_t left = limit - base, nblk = left / 64;
    if (nblk > want) nblk = want;
    if (want < CHUNK) want *= 2;
    if (nblk) {
      masks(t + base, nblk, &carry, opens, brackets);
    } else {
      memset(tail, ' ', sizeof tail);
      memcpy(tail, t + base, left);
      masks(tail, 1, &carry, opens, brackets);
      nblk = 1;
    }
    for (size_t k = 0; k < nblk; k++, base += 64) {
      uint64_t bits = brackets[k], op = opens[k], cl = bits & ~op;
      size_t ncl = (size_t)__builtin_popcountll(cl);
      if (ncl < depth
#ifdef HAVE_AVX2_PATH
          || (gather && !may_reach_zero(bits, op, depth))
#endif
      ) {
        depth += (size_t)__builtin_popcountll(op) - ncl;
        continue;
      }
      for (; bits; bits &= bits - 1) {
        unsigned i = (unsigned)__builtin_ctzll(bits);
        if (op >> i & 1) {
          depth++;
        } else if (--depth == 0) {
          /* Brackets of either kind pair up in the scan; the parser
           * would refuse a mismatched pair, so it is no span. */
          unsigned char c = t[base + i];
          if ((o == '[') != (c == ']')) return 0;
          *end = base + i + 1;
          return 1;
        }
      }
    }
  }
  return 0;
}

static int span_end_generic(const unsigned char *t, size_t off, size_t limit,
                            size_t *end) {
  return span_end(masks_generic, 0, t, off, limit, end);
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2,pclmul,popcnt,bmi2"))) static int
span_end_avx2(const unsigned char *t, size_t off, size_t limit, size_t *end) {
  return span_end(masks_avx2, 1, t, off, limit, end);
}
#endif

int shadow_json_span_end(const char *text, size_t off, size_t limit,
                         size_t *end) {
  if (off >= limit || limit > UINT32_MAX) return 0;
  const unsigned char *t = (const unsigned char *)text;
  if (t[off] != '[' && t[off] != '{') return 0;
#ifdef HAVE_AVX2_PATH
  if (pick_masks() == masks_avx2 && __builtin_cpu_supports("popcnt") &&
      __builtin_cpu_supports("bmi2"))
    return span_end_avx2(t, off, limit, end);
#endif
  return span_end_generic(t, off, limit, end);
}

/* Big blocks go to memcmp, which the C library makes fast, then smaller
 * ones inside the block that differs, then bytes. */
size_t shadow_json_common_prefix(const char *a, const char *b, size_t n) {
  size_t i = 0;
  for (size_t blk = 4096; blk >= 64; blk /= 8)
    while (n - i >= blk && memcmp(a + i, b + i, blk) == 0)
      i += blk;
  while (i < n && a[i] == b[i])
    i++;
  return i;
}

size_t shadow_json_common_suffix(const char *a, const char *b, size_t n) {
  size_t i = 0; /* bytes matched from the end */
  for (size_t blk = 4096; blk >= 64; blk /= 8)
    while (n - i >= blk && memcmp(a + n - i - blk, b + n - i - blk, blk) == 0)
      i += blk;
  while (i < n && a[n - i - 1] == b[n - i - 1])
    i++;
  return i;
}
