/* Semantic JSON diff. Both texts are parsed into one arena, then walked
 * together; differences become JSON Patch ops (RFC 6902) whose pointers
 * (RFC 6901) are built incrementally in one buffer.
 *
 * Op order is what makes the ops applicable in sequence: under an array,
 * diffs inside kept elements come first (their indexes are still the
 * primary's), then removals from the highest index down, then additions
 * at increasing indexes. Objects: changes and removals in the primary's
 * member order, then additions in the candidate's order.
 *
 * Array modes other than index mode make the patch exact only up to the
 * mode's equivalence: set (order and duplicates ignored) removes each
 * primary element whose value the candidate lacks and appends each distinct
 * candidate value the primary lacks; multiset pairs equal elements one to
 * one, removes unpaired primary elements and appends unpaired candidate
 * ones; key mode pairs elements by the value of the key member (in order,
 * for repeated keys), diffs each pair under the primary's index, removes
 * unpaired primary elements and appends unpaired candidate ones (elements
 * without the key pair by whole value). The patched primary then holds the
 * candidate's elements in a possibly different order.
 *
 * Index mode does no alignment: an element inserted near the front shows
 * as changes at every later index. That keeps the diff linear; arrays whose
 * order means nothing should get a mode.
 *
 * Rules are at most 64 pointers in total. The walk passes down a bitmask of
 * the rules whose leading segments match the current path, so where no
 * rule can match (mask 0) rules cost nothing. A path matching an ignore
 * rule is skipped entirely: no op, no count, no descent (ignoring single
 * array elements can therefore leave later array ops off by one; "*"
 * patterns do not have that problem). When two array rules name the same
 * path, the one added last wins. Set and multiset elements that differ
 * only in ignored or tolerated places still pair up: elements left
 * unpaired by exact equality are compared pairwise under the rules
 * (bounded to 4096 pairs per array).
 *
 * Byte-identical subtrees (same source span bytes) are equal without a
 * walk, which makes a small change in a big document cost little more
 * than parsing it. Objects whose keys come in the same order are walked
 * member by member; others are matched through a hash of their keys, where
 * a repeated key counts by its last member. */
#include "json_diff.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "diff.h"
#include "json.h"

#define MAX_RULES 64
#define FUZZY_PAIRS 4096

enum { RULE_IGNORE, RULE_ARRAY, RULE_TOLERANCE };

typedef struct {
  const char *s; /* unescaped segment */
  size_t len;
  int star;
  long idx; /* the array index it names, or -1 */
} seg_t;

typedef struct {
  int kind;
  int nseg;
  seg_t *segs;
  char *store; /* backing for the segments' bytes */
  int mode;
  char *key;
  size_t klen;
  double tol;
} rule_t;

struct shadow_json_rules_s {
  rule_t r[MAX_RULES];
  int n;
};

shadow_json_rules_t *shadow_json_rules_new(void) {
  return calloc(1, sizeof(shadow_json_rules_t));
}

void shadow_json_rules_free(shadow_json_rules_t *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) {
    free(r->r[i].segs);
    free(r->r[i].store);
    free(r->r[i].key);
  }
  free(r);
}

/* Splits an RFC 6901 pointer into unescaped segments. */
static int rule_add(shadow_json_rules_t *r, int kind, const char *pointer,
                    rule_t **out) {
  if (!r || !pointer) return -EINVAL;
  if (r->n >= MAX_RULES) return -EINVAL;
  size_t n = strlen(pointer);
  if (n && pointer[0] != '/') return -EINVAL;
  int nseg = 0;
  for (size_t i = 0; i < n; i++)
    nseg += pointer[i] == '/';
  if (nseg >= SHADOW_JSON_MAX_DEPTH) return -EINVAL;
  rule_t *ru = &r->r[r->n];
  memset(ru, 0, sizeof *ru);
  ru->kind = kind;
  ru->nseg = nseg;
  ru->store = malloc(n + 1);
  ru->segs = calloc((size_t)nseg + 1, sizeof(seg_t));
  if (!ru->store || !ru->segs) {
    free(ru->store);
    free(ru->segs);
    return -ENOMEM;
  }
  char *o = ru->store;
  size_t i = 0;
  for (int k = 0; k < nseg; k++) {
    seg_t *sg = &ru->segs[k];
    i++; /* the '/' */
    sg->s = o;
    while (i < n && pointer[i] != '/') {
      char c = pointer[i++];
      if (c == '~') {
        if (i >= n || (pointer[i] != '0' && pointer[i] != '1')) {
          free(ru->store);
          free(ru->segs);
          return -EINVAL;
        }
        c = pointer[i++] == '0' ? '~' : '/';
      }
      *o++ = c;
    }
    sg->len = (size_t)(o - sg->s);
    sg->star = sg->len == 1 && sg->s[0] == '*';
    sg->idx = -1;
    if (sg->len > 0 && sg->len <= 9 && (sg->s[0] != '0' || sg->len == 1)) {
      long v = 0;
      size_t j = 0;
      for (; j < sg->len && sg->s[j] >= '0' && sg->s[j] <= '9'; j++)
        v = v * 10 + (sg->s[j] - '0');
      if (j == sg->len) sg->idx = v;
    }
  }
  *out = ru;
  return 0;
}

int shadow_json_rules_ignore(shadow_json_rules_t *r, const char *pointer) {
  rule_t *ru;
  int rc = rule_add(r, RULE_IGNORE, pointer, &ru);
  if (rc) return rc;
  r->n++;
  return 0;
}

int shadow_json_rules_array(shadow_json_rules_t *r, const char *pointer,
                            int mode, const char *key) {
  if (mode < SHADOW_ARRAY_INDEX || mode > SHADOW_ARRAY_KEY) return -EINVAL;
  if (mode == SHADOW_ARRAY_KEY && (!key || !*key)) return -EINVAL;
  rule_t *ru;
  int rc = rule_add(r, RULE_ARRAY, pointer, &ru);
  if (rc) return rc;
  ru->mode = mode;
  if (mode == SHADOW_ARRAY_KEY) {
    ru->klen = strlen(key);
    ru->key = malloc(ru->klen + 1);
    if (!ru->key) {
      free(ru->store);
      free(ru->segs);
      return -ENOMEM;
    }
    memcpy(ru->key, key, ru->klen + 1);
  }
  r->n++;
  return 0;
}

int shadow_json_rules_tolerance(shadow_json_rules_t *r, const char *pointer,
                                double tolerance) {
  if (!(tolerance >= 0) || isinf(tolerance)) return -EINVAL;
  rule_t *ru;
  int rc = rule_add(r, RULE_TOLERANCE, pointer, &ru);
  if (rc) return rc;
  ru->tol = tolerance;
  r->n++;
  return 0;
}

/* ---- the walk --------------------------------------------------------- */

typedef struct {
  const shadow_json_rules_t *rules;
  shadow_json_diff_out_t *out;
  shadow_json_arena_t *scratch;
  shadow_buf_t path; /* the current pointer, escaped */
  shadow_buf_t tmp;  /* a value being serialized */
  size_t ops_base;   /* out->ops->len when the call began */
  size_t written;    /* ops written by this call */
  int dry;           /* 1: only find whether anything differs */
  int found;
  int rc;
} ctx_t;

/* What the rules say about the node at the current path. */
typedef struct {
  int ignored;
  int mode;
  const char *key;
  size_t klen;
  int has_tol;
  double tol;
} here_t;

static void rules_here(const ctx_t *x, uint64_t mask, int depth, here_t *h) {
  memset(h, 0, sizeof *h);
  while (mask) {
    int i = __builtin_ctzll(mask);
    mask &= mask - 1;
    const rule_t *ru = &x->rules->r[i];
    if (ru->nseg != depth) continue;
    if (ru->kind == RULE_IGNORE) {
      h->ignored = 1;
    } else if (ru->kind == RULE_ARRAY) {
      h->mode = ru->mode;
      h->key = ru->key;
      h->klen = ru->klen;
    } else {
      h->has_tol = 1;
      h->tol = ru->tol;
    }
  }
}

/* The rules that still match after descending by one segment: a key
 * (key != NULL) or an array index. */
static uint64_t child_mask(const ctx_t *x, uint64_t mask, int depth,
                           const char *key, size_t klen, long idx) {
  uint64_t m = 0;
  while (mask) {
    int i = __builtin_ctzll(mask);
    mask &= mask - 1;
    const rule_t *ru = &x->rules->r[i];
    if (ru->nseg <= depth) continue;
    const seg_t *sg = &ru->segs[depth];
    int ok = sg->star || (key ? sg->len == klen && memcmp(sg->s, key, klen) == 0
                              : sg->idx == idx);
    if (ok) m |= (uint64_t)1 << i;
  }
  return m;
}

static void push_key(ctx_t *x, const char *k, size_t n) {
  if (shadow_buf_reserve(&x->path, n * 2 + 1)) {
    x->rc = -ENOMEM;
    return;
  }
  char *o = x->path.data + x->path.len;
  *o++ = '/';
  for (size_t i = 0; i < n; i++) {
    if (k[i] == '~') {
      *o++ = '~';
      *o++ = '0';
    } else if (k[i] == '/') {
      *o++ = '~';
      *o++ = '1';
    } else
      *o++ = k[i];
  }
  *o = '\0';
  x->path.len = (size_t)(o - x->path.data);
}

/* By hand, not snprintf: this runs once per array element walked. */
static void push_index(ctx_t *x, size_t i) {
  char tmp[24];
  char *o = tmp + sizeof tmp;
  do {
    *--o = (char)('0' + i % 10);
    i /= 10;
  } while (i);
  *--o = '/';
  if (shadow_buf_append(&x->path, o, (size_t)(tmp + sizeof tmp - o)))
    x->rc = -ENOMEM;
}

static void pop(ctx_t *x, size_t len) {
  x->path.len = len;
  if (x->path.data) x->path.data[len] = '\0';
}

/* Writes a value for an op, truncated as documented in json_diff.h. */
static int write_value(ctx_t *x, shadow_buf_t *b, const shadow_json_t *v) {
  size_t max = x->out->value_max;
  if (v->type == SHADOW_JSON_STRING)
    return shadow_buf_json_string(b, v->u.str, v->len, max);
  if (v->type != SHADOW_JSON_ARRAY && v->type != SHADOW_JSON_OBJECT) {
    if (!max || v->rawlen <= max) return shadow_json_write(b, v);
    return shadow_buf_json_string(b, v->raw, v->rawlen, max);
  }
  shadow_buf_reset(&x->tmp);
  if (shadow_json_write(&x->tmp, v)) return -ENOMEM;
  if (max && x->tmp.len > max)
    return shadow_buf_json_string(b, x->tmp.data, x->tmp.len, max);
  return shadow_buf_append(b, x->tmp.data, x->tmp.len);
}

/* Appends the pointer NUL-terminated. A key may hold a NUL byte (from
 * \u0000), which would split the entry, so such a byte is written as the
 * six characters \u0000 there (the op's path keeps the real byte). */
static int add_field(shadow_buf_t *f, const shadow_buf_t *path) {
  const char *p = path->data ? path->data : "";
  size_t n = path->len;
  const char *z;
  while ((z = memchr(p, '\0', n)) != NULL) {
    if (shadow_buf_append(f, p, (size_t)(z - p)) ||
        shadow_buf_append(f, "\\u0000", 6))
      return -ENOMEM;
    n -= (size_t)(z - p) + 1;
    p = z + 1;
  }
  return shadow_buf_append(f, p, n) || shadow_buf_putc(f, '\0') ? -ENOMEM : 0;
}

static void emit(ctx_t *x, const char *op, const shadow_json_t *p,
                 const shadow_json_t *c) {
  if (x->dry) {
    x->found = 1;
    return;
  }
  shadow_json_diff_out_t *out = x->out;
  out->nops++;
  if (out->fields && add_field(out->fields, &x->path)) {
    x->rc = -ENOMEM;
    return;
  }
  if (!out->ops || out->truncated) return;
  shadow_buf_t *b = out->ops;
  size_t before = b->len;
  int rc = 0;
  if (x->written) rc |= shadow_buf_putc(b, ',');
  rc |= shadow_buf_printf(b, "{\"op\":\"%s\",\"path\":", op);
  rc |= shadow_buf_json_string(b, x->path.data ? x->path.data : "", x->path.len,
                               0);
  if (p) {
    rc |= shadow_buf_puts(b, ",\"primary\":");
    rc |= write_value(x, b, p);
  }
  if (c) {
    rc |= shadow_buf_puts(b, ",\"candidate\":");
    rc |= write_value(x, b, c);
  }
  rc |= shadow_buf_putc(b, '}');
  if (rc) {
    x->rc = -ENOMEM;
    return;
  }
  if (out->ops_max_bytes && b->len - x->ops_base > out->ops_max_bytes) {
    b->len = before;
    b->data[before] = '\0';
    out->truncated = 1;
    return;
  }
  x->written++;
}

static void diff_value(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                       uint64_t mask, int depth);

static int done(const ctx_t *x) {
  return x->rc || (x->dry && x->found);
}

/* One child of a container: a pair to compare, or a removal (b NULL) or an
 * addition (a NULL) at the given key or index. Returns 1 when the child's
 * path is ignored, so callers can keep array indexes right. */
static int child(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                 uint64_t mask, int depth, const char *key, size_t klen,
                 size_t idx) {
  size_t len = x->path.len;
  uint64_t cm = 0;
  if (key)
    push_key(x, key, klen);
  else
    push_index(x, idx);
  if (x->rc) return 0;
  if (mask) cm = child_mask(x, mask, depth, key, klen, key ? -1 : (long)idx);
  int ignored = 0;
  if (a && b) {
    diff_value(x, a, b, cm, depth + 1);
  } else {
    here_t h;
    if (cm) rules_here(x, cm, depth + 1, &h);
    if (cm && h.ignored)
      ignored = 1;
    else if (a)
      emit(x, "remove", a, NULL);
    else
      emit(x, "add", NULL, b);
  }
  pop(x, len);
  return ignored;
}

static int same_key(const shadow_json_member_t *a,
                    const shadow_json_member_t *b) {
  return a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0;
}

/* Where each key of an object last occurs: a hash table for big objects,
 * a backwards scan for small ones. */
typedef struct {
  const shadow_json_member_t *m;
  uint32_t n;
  int32_t *tab; /* NULL: scan */
  size_t mask;
} keys_t;

static int keys_init(ctx_t *x, keys_t *k, const shadow_json_t *o) {
  k->m = o->u.members;
  k->n = o->len;
  k->tab = NULL;
  k->mask = 0;
  if (k->n <= 8) return 0;
  size_t size = 16;
  while (size < (size_t)k->n * 2)
    size *= 2;
  k->tab = shadow_json_arena_alloc(x->scratch, size * sizeof *k->tab);
  if (!k->tab) return x->rc = -ENOMEM;
  memset(k->tab, 0xff, size * sizeof *k->tab);
  k->mask = size - 1;
  for (uint32_t i = 0; i < k->n; i++) {
    size_t h = (size_t)XXH3_64bits(k->m[i].key, k->m[i].klen) & k->mask;
    while (k->tab[h] >= 0 && !same_key(&k->m[k->tab[h]], &k->m[i]))
      h = (h + 1) & k->mask;
    k->tab[h] = (int32_t)i; /* a repeated key keeps its last member */
  }
  return 0;
}

static long keys_last(const keys_t *k, const shadow_json_member_t *key) {
  if (!k->tab) {
    for (uint32_t i = k->n; i-- > 0;)
      if (same_key(&k->m[i], key)) return i;
    return -1;
  }
  size_t h = (size_t)XXH3_64bits(key->key, key->klen) & k->mask;
  while (k->tab[h] >= 0) {
    if (same_key(&k->m[k->tab[h]], key)) return k->tab[h];
    h = (h + 1) & k->mask;
  }
  return -1;
}

static void diff_object(ctx_t *x, const shadow_json_t *a,
                        const shadow_json_t *b, uint64_t mask, int depth) {
  uint32_t na = a->len, nb = b->len, i = 0;
  const shadow_json_member_t *am = a->u.members, *bm = b->u.members;
  /* Same keys in the same order is the common case: walk both in step
   * (member by member, even for repeated keys). */
  if (na == nb) {
    while (i < na && same_key(&am[i], &bm[i]))
      i++;
    if (i == na) {
      for (i = 0; i < na && !done(x); i++)
        child(x, &am[i].value, &bm[i].value, mask, depth, am[i].key, am[i].klen,
              0);
      return;
    }
  }
  /* Otherwise match keys by hash; a repeated key counts by its last
   * member, as most parsers read it. */
  keys_t ka, kb;
  if (keys_init(x, &ka, a) || keys_init(x, &kb, b)) return;
  uint8_t *used = shadow_json_arena_alloc(x->scratch, nb ? nb : 1);
  if (!used) {
    x->rc = -ENOMEM;
    return;
  }
  memset(used, 0, nb);
  for (uint32_t j = 0; j < na; j++) {
    if (keys_last(&ka, &am[j]) != (long)j) continue;
    long k = keys_last(&kb, &am[j]);
    if (k >= 0) {
      used[k] = 1;
      child(x, &am[j].value, &bm[k].value, mask, depth, am[j].key, am[j].klen,
            0);
    } else {
      child(x, &am[j].value, NULL, mask, depth, am[j].key, am[j].klen, 0);
    }
    if (done(x)) return;
  }
  for (uint32_t k = 0; k < nb; k++) {
    if (used[k] || keys_last(&kb, &bm[k]) != (long)k) continue;
    child(x, NULL, &bm[k].value, mask, depth, bm[k].key, bm[k].klen, 0);
    if (done(x)) return;
  }
}

static void diff_array_index(ctx_t *x, const shadow_json_t *a,
                             const shadow_json_t *b, uint64_t mask, int depth) {
  uint32_t na = a->len, nb = b->len, n = na < nb ? na : nb;
  for (uint32_t i = 0; i < n; i++) {
    child(x, &a->u.items[i], &b->u.items[i], mask, depth, NULL, 0, i);
    if (done(x)) return;
  }
  for (uint32_t i = na; i-- > nb;) {
    child(x, &a->u.items[i], NULL, mask, depth, NULL, 0, i);
    if (done(x)) return;
  }
  for (uint32_t i = na; i < nb; i++) {
    child(x, NULL, &b->u.items[i], mask, depth, NULL, 0, i);
    if (done(x)) return;
  }
}

/* Compares a and b under the rules at the current path, without output. */
static int dry_equal(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                     uint64_t mask, int depth) {
  int dry = x->dry, found = x->found;
  x->dry = 1;
  x->found = 0;
  diff_value(x, a, b, mask, depth);
  int eq = !x->found;
  x->dry = dry;
  x->found = found;
  return eq;
}

/* What an element is matched by: itself, or (key mode) its key member. */
static const shadow_json_t *match_of(const shadow_json_t *e, const here_t *h,
                                     int *keyed) {
  *keyed = 0;
  if (h->mode == SHADOW_ARRAY_KEY) {
    long k = shadow_json_member_find(e, h->key, h->klen);
    if (k >= 0) {
      *keyed = 1;
      return &e->u.members[k].value;
    }
  }
  return e;
}

/* The group head whose match value equals m, or -1. */
static int32_t find_group(const int32_t *bucket, const int32_t *next,
                          const uint64_t *ch, const uint8_t *ck,
                          const shadow_json_t *bi, const here_t *h, size_t size,
                          uint64_t hv, int keyed, const shadow_json_t *m) {
  for (int32_t g = bucket[hv & (size - 1)]; g >= 0; g = next[g]) {
    int k2;
    if (ch[g] == hv && ck[g] == keyed &&
        shadow_json_equal(m, match_of(&bi[g], h, &k2)))
      return g;
  }
  return -1;
}

static void diff_array_unordered(ctx_t *x, const shadow_json_t *a,
                                 const shadow_json_t *b, uint64_t mask,
                                 int depth, const here_t *h) {
  uint32_t na = a->len, nb = b->len;
  const shadow_json_t *ai = a->u.items, *bi = b->u.items;
  int set = h->mode == SHADOW_ARRAY_SET;
  /* Candidate elements are grouped by equal match value: a hash table of
   * group heads, each group a list in index order with a cursor to its
   * first unpaired element, so many equal elements cost no more than
   * distinct ones. */
  size_t size = 16;
  while (size < (size_t)nb * 2)
    size *= 2;
  int32_t *bucket = shadow_json_arena_alloc(x->scratch, size * 4);
  size_t n4 = ((size_t)nb + 1) * 4;
  int32_t *next = shadow_json_arena_alloc(x->scratch, n4); /* heads */
  int32_t *same = shadow_json_arena_alloc(x->scratch, n4); /* in a group */
  int32_t *tail = shadow_json_arena_alloc(x->scratch, n4);
  int32_t *cur = shadow_json_arena_alloc(x->scratch, n4);
  int32_t *pm = shadow_json_arena_alloc(x->scratch, ((size_t)na + 1) * 4);
  int32_t *cm = shadow_json_arena_alloc(x->scratch, n4);
  uint64_t *ch = shadow_json_arena_alloc(x->scratch, ((size_t)nb + 1) * 8);
  uint8_t *ck = shadow_json_arena_alloc(x->scratch, (size_t)nb + 1);
  if (!bucket || !next || !same || !tail || !cur || !pm || !cm || !ch || !ck) {
    x->rc = -ENOMEM;
    return;
  }
  memset(bucket, 0xff, size * 4);
  memset(pm, 0xff, ((size_t)na + 1) * 4);
  memset(cm, 0xff, n4);
  for (uint32_t j = 0; j < nb; j++) {
    int keyed;
    const shadow_json_t *m = match_of(&bi[j], h, &keyed);
    ck[j] = (uint8_t)keyed;
    ch[j] = shadow_json_hash(m) ^ (uint64_t)keyed;
    same[j] = -1;
    int32_t g = find_group(bucket, next, ch, ck, bi, h, size, ch[j], keyed, m);
    if (g >= 0) {
      same[tail[g]] = (int32_t)j;
      tail[g] = (int32_t)j;
      continue;
    }
    size_t s = (size_t)ch[j] & (size - 1);
    next[j] = bucket[s];
    bucket[s] = (int32_t)j;
    tail[j] = cur[j] = (int32_t)j;
  }
  for (uint32_t i = 0; i < na; i++) {
    int keyed;
    const shadow_json_t *m = match_of(&ai[i], h, &keyed);
    uint64_t hv = shadow_json_hash(m) ^ (uint64_t)keyed;
    int32_t g = find_group(bucket, next, ch, ck, bi, h, size, hv, keyed, m);
    if (g < 0) continue;
    if (!set) {
      /* One to one, in index order. */
      int32_t j = cur[g];
      if (j < 0) continue;
      cur[g] = same[j];
      pm[i] = j;
      cm[j] = (int32_t)i;
      continue;
    }
    /* A set pairs a value with every equal copy on the other side. */
    pm[i] = g;
    if (cm[g] < 0)
      for (int32_t j = g; j >= 0; j = same[j])
        cm[j] = (int32_t)i;
  }
  if (set) {
    /* A value the primary lacks is appended once, however often the
     * candidate holds it. */
    for (size_t s = 0; s < size; s++)
      for (int32_t g = bucket[s]; g >= 0; g = next[g])
        if (cm[g] == -1)
          for (int32_t j = same[g]; j >= 0; j = same[j])
            cm[j] = -2;
  }
  if (h->mode != SHADOW_ARRAY_KEY && mask) {
    /* Pair what differs only where the rules say not to look. */
    size_t lp = 0, lc = 0;
    for (uint32_t i = 0; i < na; i++)
      lp += pm[i] < 0;
    for (uint32_t j = 0; j < nb; j++)
      lc += cm[j] == -1;
    if (lp && lc && lp * lc <= FUZZY_PAIRS) {
      for (uint32_t i = 0; i < na; i++) {
        if (pm[i] >= 0) continue;
        uint64_t em = child_mask(x, mask, depth, NULL, 0, (long)i);
        if (!em) continue;
        size_t len = x->path.len;
        push_index(x, i);
        for (uint32_t j = 0; j < nb && !x->rc; j++) {
          if (cm[j] == -2 || (!set && cm[j] >= 0)) continue;
          if (!dry_equal(x, &ai[i], &bi[j], em, depth + 1)) continue;
          pm[i] = (int32_t)j;
          cm[j] = (int32_t)i;
          if (!set) break;
        }
        pop(x, len);
        if (x->rc) return;
      }
    }
  }
  if (h->mode == SHADOW_ARRAY_KEY) {
    for (uint32_t i = 0; i < na; i++) {
      if (pm[i] < 0) continue;
      child(x, &ai[i], &bi[pm[i]], mask, depth, NULL, 0, i);
      if (done(x)) return;
    }
  }
  uint32_t left = na;
  for (uint32_t i = na; i-- > 0;) {
    if (pm[i] >= 0) continue;
    if (!child(x, &ai[i], NULL, mask, depth, NULL, 0, i)) left--;
    if (done(x)) return;
  }
  for (uint32_t j = 0; j < nb; j++) {
    if (cm[j] != -1) continue;
    if (!child(x, NULL, &bi[j], mask, depth, NULL, 0, left)) left++;
    if (done(x)) return;
  }
}

static void diff_value(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                       uint64_t mask, int depth) {
  here_t h;
  if (done(x)) return;
  if (mask) {
    rules_here(x, mask, depth, &h);
    if (h.ignored) return;
  } else {
    memset(&h, 0, sizeof h);
  }
  /* Byte-identical text is the same value, whatever the rules say. */
  if (a->rawlen == b->rawlen && memcmp(a->raw, b->raw, a->rawlen) == 0) return;
  if (a->type != b->type) {
    emit(x, "replace", a, b);
    return;
  }
  switch (a->type) {
  case SHADOW_JSON_NUMBER:
    /* Exact first: big integers and values beyond a double stay exact. */
    if (a->neg == b->neg && a->exp == b->exp && a->len == b->len &&
        memcmp(a->u.digits, b->u.digits, a->len) == 0)
      return;
    if (h.has_tol &&
        fabs(shadow_json_number(a) - shadow_json_number(b)) <= h.tol)
      return;
    emit(x, "replace", a, b);
    return;
  case SHADOW_JSON_STRING:
    if (a->len != b->len || memcmp(a->u.str, b->u.str, a->len))
      emit(x, "replace", a, b);
    return;
  case SHADOW_JSON_OBJECT: diff_object(x, a, b, mask, depth); return;
  case SHADOW_JSON_ARRAY:
    if (h.mode == SHADOW_ARRAY_INDEX)
      diff_array_index(x, a, b, mask, depth);
    else
      diff_array_unordered(x, a, b, mask, depth, &h);
    return;
  default: return; /* null, true, false: the same type is the same value */
  }
}

static void set_err(char *err, size_t errlen, const char *side, size_t off,
                    const char *why) {
  if (err && errlen)
    snprintf(err, errlen, "%s body is not JSON: %s at offset %zu", side,
             why ? why : "invalid", off);
}

int shadow_json_diff(const char *primary, size_t plen, const char *candidate,
                     size_t clen, const shadow_json_rules_t *rules,
                     shadow_json_diff_out_t *out, char *err, size_t errlen) {
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t pr, cr;
  size_t off = 0;
  const char *why = NULL;
  int rc;
  out->nops = 0;
  out->truncated = 0;
  if (err && errlen) err[0] = '\0';
  /* One chunk for both trees: nodes take about four times the text. */
  size_t guess = (plen + clen) * 4 + 4096;
  arena.next_size = guess < ((size_t)1 << 26) ? guess : ((size_t)1 << 26);
  rc = shadow_json_parse(&arena, primary, plen, &pr, &off, &why);
  if (rc) {
    if (rc == -EINVAL) set_err(err, errlen, "primary", off, why);
    shadow_json_arena_free(&arena);
    return rc;
  }
  /* Identical texts are the same document: one parse proves both JSON. */
  if (plen == clen && memcmp(primary, candidate, plen) == 0) {
    shadow_json_arena_free(&arena);
    return 0;
  }
  rc = shadow_json_parse(&arena, candidate, clen, &cr, &off, &why);
  if (rc) {
    if (rc == -EINVAL) set_err(err, errlen, "candidate", off, why);
    shadow_json_arena_free(&arena);
    return rc;
  }
  ctx_t x;
  memset(&x, 0, sizeof x);
  x.rules = rules;
  x.out = out;
  x.scratch = &arena;
  x.ops_base = out->ops ? out->ops->len : 0;
  uint64_t mask = 0;
  if (rules && rules->n)
    mask = rules->n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << rules->n) - 1);
  diff_value(&x, &pr, &cr, mask, 0);
  rc = x.rc;
  shadow_buf_free(&x.path);
  shadow_buf_free(&x.tmp);
  shadow_json_arena_free(&arena);
  return rc;
}

int shadow_json_validate(const char *text, size_t len) {
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t root;
  int rc = shadow_json_parse(&arena, text, len, &root, NULL, NULL);
  shadow_json_arena_free(&arena);
  return rc;
}
