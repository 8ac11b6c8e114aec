/* Semantic JSON diff. Both texts are parsed into one arena, then walked
 * together; differences become JSON Patch ops (RFC 6902) whose pointers
 * (RFC 6901) are built incrementally in one buffer.
 *
 * What two texts share byte for byte is not parsed. The common prefix and
 * suffix are found with memcmp; a structural scan (json_scan.c) of the
 * prefix says where each container there ends, and in the suffix the end
 * of each container the parser meets is found when it asks (once for both
 * texts); the parser leaves every container that lies wholly inside them
 * as a lazy node (its span only). Such a node is equal
 * to its twin on the other side by position alone; it is parsed when the
 * walk must look inside (it differs from what it is compared with, or it
 * becomes an op's value). So a small change in a big document costs about
 * two passes at memory speed over the text, and nothing semantic changes:
 * only byte-identical spans are skipped. They are checked for strings and
 * brackets, not fully validated: a fault both sides share byte for byte
 * can go unnoticed.
 *
 * Op order is what makes the ops applicable in sequence. Objects: changes
 * and removals in the primary's member order, then additions in the
 * candidate's order; of a repeated key only the last member counts (in
 * both documents, as most parsers read them).
 *
 * Arrays in index mode are aligned: equal elements at both ends are set
 * aside, the rest are matched by a longest common subsequence of element
 * hashes (json_align.c; hashes follow the rules, so elements that differ
 * only where the rules say not to look still match). Between matched
 * elements, what is left pairs up by position and is diffed in place; an
 * element removed at one place and equal to one added at another becomes
 * one "move" (unless a rule ignores single elements of the array). When
 * the alignment would pass its work bound the array is compared by index,
 * as if nothing had been inserted; so is every array once what alignment
 * adds to the walk (compares, hashes, LCS steps) has passed about twice
 * the size of the texts, so a diff stays linear however its arrays nest.
 * Equality inside a compare (a dry walk) is by index. The ops: diffs inside
 * kept elements first (under the primary's indexes), then removals from the
 * highest index down, then additions and moves in the candidate's order, each
 * at the index it has when it applies.
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
 * Rules are at most 64 pointers in total. The walk passes down a bitmask of
 * the rules whose leading segments match the current path, so where no
 * rule can match (mask 0) rules cost nothing. A path matching an ignore
 * rule is skipped entirely: no op, no count, no descent; an ignored
 * removal or addition leaves the element where it is and later indexes
 * account for it. When two array rules name the same path, the one added
 * last wins. Set and multiset elements that differ only in ignored or
 * tolerated places still pair up: elements left unpaired by exact equality
 * are compared pairwise under the rules (bounded to 4096 pairs per array).
 *
 * A value cut to value_max bytes in an op gets "truncated": true on the op:
 * the op still names the place, but it does not apply as it stands. */
#include "json_diff.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "json.h"
#include "json_align.h"
#include "json_rename.h"
#include "json_rules.h"
#include "json_scan.h"

#define FUZZY_PAIRS 4096

/* ---- the walk --------------------------------------------------------- */

/* Alignment bounds: past either, an array is compared by index. */
#define ALIGN_MAX_D 1024
#define ALIGN_MAX_WORK ((size_t)1 << 22)
/* Pairwise checks spent looking for moves, per array. */
#define MOVE_CHECKS 4096
/* Common runs shorter than this are parsed like the rest. */
#define LAZY_MIN 64

/* What a leaf rule tried and why it did not hold, for --explain. */
#define MAX_TRIED 4
typedef struct {
  int rule;
  char why[112];
} tried_t;

typedef struct {
  const shadow_json_rules_t *rules;
  shadow_json_diff_out_t *out;
  shadow_json_arena_t *scratch;
  shadow_buf_t path; /* the current pointer, escaped */
  shadow_buf_t tmp;  /* a value being serialized, or a move's from */
  size_t ops_base;   /* out->ops->len when the call began */
  size_t written;    /* ops written by this call */
  int dry;           /* 1: only find whether anything differs */
  int found;
  int rc;
  /* The two texts and what they share: bytes [0, common) at the start and
   * the last tail bytes of each. */
  const char *ptext, *ctext;
  size_t plen, clen, common, tail;
  char *err;
  size_t errlen;
  /* Node visits left for what alignment adds to the walk (dry compares,
   * hashes, LCS steps): about twice the texts' size. Past it, arrays
   * compare by index, so the whole diff stays linear. */
  long budget;
  uint64_t hits;    /* walk rules that decided something (bit = rule) */
  shadow_buf_t *ex; /* out->explain: NULL unless explaining */
  /* The rules the next op's leaf tried, handed from the compare to
   * emit_op (NULL: none). */
  const tried_t *tried;
  int ntried;
} ctx_t;

/* What the rules say about the node at the current path. The leaf rules
 * are found by index + 1 (0: none), so a zeroed here_t has none. */
typedef struct {
  int ignored;
  int mode;
  const char *key;
  size_t klen;
  int has_tol;
  double tol;
  int ignore_rule, array_rule, tol_rule;
  int coerce, mask, time; /* rule index + 1 */
  int leaf;               /* any of coerce, mask, time */
} here_t;

static inline void rules_here(const ctx_t *x, uint64_t mask, int depth,
                              here_t *h) {
  memset(h, 0, sizeof *h);
  /* Only the rules that end here say anything about this node; on the
   * way to a rule's path (most nodes a rule's mask reaches) none do. */
  const shadow_json_rules_t *r = x->rules;
  mask = r->segtab && depth <= r->maxseg
             ? mask & r->segtab[(size_t)depth * SHADOW_SEGTAB_ROW + SEGTAB_ENDS]
             : 0;
  if (__builtin_expect(!mask, 1)) return;
  while (mask) {
    int i = __builtin_ctzll(mask);
    mask &= mask - 1;
    const rule_t *ru = &x->rules->r[i];
    if (ru->nseg != depth) continue;
    switch (ru->kind) {
    case RULE_IGNORE:
      h->ignored = 1;
      h->ignore_rule = i;
      break;
    case RULE_ARRAY:
      h->mode = ru->mode;
      h->key = ru->key;
      h->klen = ru->klen;
      h->array_rule = i;
      break;
    case RULE_TOLERANCE:
      h->has_tol = 1;
      h->tol = ru->tol;
      h->tol_rule = i;
      break;
    case RULE_COERCE: h->coerce = i + 1; break;
    case RULE_MASK: h->mask = i + 1; break;
    default: h->time = i + 1; break;
    }
  }
  h->leaf = h->coerce || h->mask || h->time;
}

/* The rules that still match after descending by one segment: a key
 * (key != NULL) or an array index. Wildcards match by the table alone;
 * literal segments are compared only for the rules in the key's bucket
 * (json_rules.h), so a key no rule names costs one load. */
static inline uint64_t child_mask(const ctx_t *x, uint64_t mask, int depth,
                                  const char *key, size_t klen, long idx) {
  const shadow_json_rules_t *r = x->rules;
  if (depth >= r->maxseg) return 0;
  const uint64_t *row = &r->segtab[(size_t)depth * SHADOW_SEGTAB_ROW];
  uint64_t m = mask & row[SEGTAB_STAR];
  uint64_t cand =
      mask & (key ? row[SEGTAB_KEYS + shadow_segtab_bucket(key, klen)]
                  : row[SEGTAB_INDEX]);
  while (cand) {
    int i = __builtin_ctzll(cand);
    cand &= cand - 1;
    const seg_t *sg = &r->r[i].segs[depth];
    if (key ? sg->len == klen && memcmp(sg->s, key, klen) == 0 : sg->idx == idx)
      m |= (uint64_t)1 << i;
  }
  return m;
}

/* 1 when an ignore rule names single elements of the array at depth. */
static int ignores_elements(const ctx_t *x, uint64_t mask, int depth) {
  while (mask) {
    int i = __builtin_ctzll(mask);
    mask &= mask - 1;
    const rule_t *ru = &x->rules->r[i];
    if (ru->kind == RULE_IGNORE && ru->nseg == depth + 1) return 1;
  }
  return 0;
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
    } else if (k[i] == '\0') {
      /* A key may hold NUL ("e\u0000f"); fields are NUL-separated C
       * strings downstream, so NUL is written ~2 (field.h). */
      *o++ = '~';
      *o++ = '2';
    } else
      *o++ = k[i];
  }
  *o = '\0';
  x->path.len = (size_t)(o - x->path.data);
}

/* By hand, not snprintf: this runs once per array element walked. */
static void push_index_to(ctx_t *x, shadow_buf_t *b, size_t i) {
  char tmp[24];
  char *o = tmp + sizeof tmp;
  do {
    *--o = (char)('0' + i % 10);
    i /= 10;
  } while (i);
  *--o = '/';
  if (shadow_buf_append(b, o, (size_t)(tmp + sizeof tmp - o))) x->rc = -ENOMEM;
}

static void push_index(ctx_t *x, size_t i) {
  push_index_to(x, &x->path, i);
}

static void pop(ctx_t *x, size_t len) {
  x->path.len = len;
  if (x->path.data) x->path.data[len] = '\0';
}

static void set_err(char *err, size_t errlen, const char *side, size_t off,
                    const char *why) {
  if (err && errlen)
    snprintf(err, errlen, "%s body is not JSON: %s at offset %zu", side,
             why ? why : "invalid", off);
}

/* Parses a lazy node where it lies (the arena owns every node, so the
 * const of the walk is only a promise about the values). depth counts the
 * containers around it. */
static int materialize(ctx_t *x, const shadow_json_t *cv, int depth) {
  shadow_json_t *v = (shadow_json_t *)cv;
  if (!(v->flags & SHADOW_JSON_LAZY)) return 0;
  size_t off = 0;
  const char *why = NULL;
  int rc = shadow_json_materialize(x->scratch, v, depth, &off, &why);
  if (rc) {
    x->rc = rc;
    uintptr_t r = (uintptr_t)v->raw, p = (uintptr_t)x->ptext;
    int primary = r >= p && r < p + x->plen;
    const char *base = primary ? x->ptext : x->ctext;
    if (rc == -EINVAL)
      set_err(x->err, x->errlen, primary ? "primary" : "candidate",
              (size_t)(v->raw - base) + off, why);
  }
  return rc;
}

/* Materializes every lazy node under v, for the functions of json.h. */
static int expand(ctx_t *x, const shadow_json_t *cv, int depth) {
  shadow_json_t *v = (shadow_json_t *)cv;
  if (v->flags & SHADOW_JSON_LAZY) return materialize(x, v, depth);
  if (!(v->flags & SHADOW_JSON_HAS_LAZY)) return 0;
  for (uint32_t i = 0; i < v->len; i++) {
    shadow_json_t *c =
        v->type == SHADOW_JSON_ARRAY ? &v->u.items[i] : &v->u.members[i].value;
    if (expand(x, c, depth + 1)) return x->rc;
  }
  v->flags &= (uint8_t)~SHADOW_JSON_HAS_LAZY;
  return 0;
}

/* 1 when a (primary) and b (candidate) are the same bytes: by position
 * when both lie in the common prefix at one offset, or in the common
 * suffix at one distance from the end; by memcmp otherwise. */
static int same_bytes(const ctx_t *x, const shadow_json_t *a,
                      const shadow_json_t *b) {
  if (a->rawlen != b->rawlen) return 0;
  /* A container a rename changed is no longer what its bytes say. */
  if ((a->flags | b->flags) & SHADOW_JSON_EDITED) return 0;
  if (a->rawlen >= 64) {
    uintptr_t ra = (uintptr_t)a->raw, pa = (uintptr_t)x->ptext;
    uintptr_t rb = (uintptr_t)b->raw, pb = (uintptr_t)x->ctext;
    if (ra >= pa && ra - pa < x->plen && rb >= pb && rb - pb < x->clen) {
      size_t oa = ra - pa, ob = rb - pb;
      if (oa == ob && oa + a->rawlen <= x->common) return 1;
      if (x->plen - oa == x->clen - ob && x->plen - oa <= x->tail) return 1;
    }
  }
  return memcmp(a->raw, b->raw, a->rawlen) == 0;
}

/* Writes a value for an op, truncated as documented in json_diff.h; *cut
 * is set when it was. */
static int write_value(ctx_t *x, shadow_buf_t *b, const shadow_json_t *v,
                       int depth, int *cut) {
  size_t max = x->out->value_max;
  if (v->type == SHADOW_JSON_STRING) {
    if (max && v->len > max) *cut = 1;
    return shadow_buf_json_string(b, v->u.str, v->len, max);
  }
  if (v->type != SHADOW_JSON_ARRAY && v->type != SHADOW_JSON_OBJECT) {
    if (!max || v->rawlen <= max) return shadow_json_write(b, v);
    *cut = 1;
    return shadow_buf_json_string(b, v->raw, v->rawlen, max);
  }
  if (expand(x, v, depth)) return x->rc;
  shadow_buf_reset(&x->tmp);
  if (shadow_json_write(&x->tmp, v)) return -ENOMEM;
  if (max && x->tmp.len > max) {
    *cut = 1;
    return shadow_buf_json_string(b, x->tmp.data, x->tmp.len, max);
  }
  return shadow_buf_append(b, x->tmp.data, x->tmp.len);
}

/* Appends the pointer NUL-terminated. It holds no NUL: a NUL in a key is
 * written ~2 (push_key), in the op's path as here, so the field a noise
 * table or a proposed rule names is the path the record shows, and a
 * rule written with it matches the key (field.h). */
static int add_field(shadow_buf_t *f, const shadow_buf_t *path) {
  const char *p = path->data ? path->data : "";
  return shadow_buf_append(f, p, path->len) || shadow_buf_putc(f, '\0')
             ? -ENOMEM
             : 0;
}

/* An op's "from", "path", "primary" and "candidate" members, as the
 * record and the --explain line both write them; *cut is set when a value
 * was cut. Nonzero when memory ran out. */
static int op_members(ctx_t *x, shadow_buf_t *b, const shadow_buf_t *from,
                      const shadow_json_t *p, const shadow_json_t *c, int depth,
                      int *cut) {
  int rc = 0;
  if (from) {
    rc |= shadow_buf_puts(b, "\"from\":");
    rc |= shadow_buf_json_string(b, from->data, from->len, 0);
    rc |= shadow_buf_putc(b, ',');
  }
  rc |= shadow_buf_puts(b, "\"path\":");
  rc |= shadow_buf_json_string(b, x->path.data ? x->path.data : "", x->path.len,
                               0);
  if (p) {
    rc |= shadow_buf_puts(b, ",\"primary\":");
    rc |= write_value(x, b, p, depth, cut);
  }
  if (c) {
    rc |= shadow_buf_puts(b, ",\"candidate\":");
    rc |= write_value(x, b, c, depth, cut);
  }
  return rc;
}

static void explain_op(ctx_t *x, const char *op, const shadow_json_t *p,
                       const shadow_json_t *c, const shadow_buf_t *from,
                       int depth);

/* One op at the current path: p and c are the values it carries (NULL:
 * none); from (a move's source pointer) when not NULL. depth is the
 * path's, for values that must be parsed before they are written. */
static void emit_op(ctx_t *x, const char *op, const shadow_json_t *p,
                    const shadow_json_t *c, const shadow_buf_t *from,
                    int depth) {
  if (x->dry) {
    x->found = 1;
    return;
  }
  if (x->ex) explain_op(x, op, p, c, from, depth);
  shadow_json_diff_out_t *out = x->out;
  out->nops++;
  if (out->fields && add_field(out->fields, &x->path)) {
    x->rc = -ENOMEM;
    return;
  }
  if (!out->ops || out->truncated) return;
  shadow_buf_t *b = out->ops;
  size_t before = b->len;
  int rc = 0, cut = 0;
  if (x->written) rc |= shadow_buf_putc(b, ',');
  rc |= shadow_buf_puts(b, "{\"op\":\"");
  rc |= shadow_buf_puts(b, op);
  rc |= shadow_buf_puts(b, "\",");
  rc |= op_members(x, b, from, p, c, depth, &cut);
  if (cut) rc |= shadow_buf_puts(b, ",\"truncated\":true");
  rc |= shadow_buf_putc(b, '}');
  if (rc || x->rc) {
    if (!x->rc) x->rc = -ENOMEM;
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

/* The --explain line of a reported op: the op, and what the rules at its
 * path tried (x->tried). */
static void explain_op(ctx_t *x, const char *op, const shadow_json_t *p,
                       const shadow_json_t *c, const shadow_buf_t *from,
                       int depth) {
  shadow_buf_t *b = x->ex;
  int rc = 0, cut = 0;
  rc |= shadow_buf_printf(b, "{\"kind\":\"reported\",\"op\":\"%s\",", op);
  rc |= op_members(x, b, from, p, c, depth, &cut);
  rc |= shadow_buf_puts(b, ",\"tried\":[");
  for (int i = 0; i < x->ntried; i++) {
    const char *name = x->rules->r[x->tried[i].rule].name;
    rc |= shadow_buf_puts(b, i ? ",{\"rule\":" : "{\"rule\":");
    rc |= shadow_buf_json_string(b, name, strlen(name), 0);
    rc |= shadow_buf_puts(b, ",\"why\":");
    rc |=
        shadow_buf_json_string(b, x->tried[i].why, strlen(x->tried[i].why), 0);
    rc |= shadow_buf_putc(b, '}');
  }
  rc |= shadow_buf_puts(b, "]}\n");
  if (rc && !x->rc) x->rc = -ENOMEM;
}

static void emit(ctx_t *x, const char *op, const shadow_json_t *p,
                 const shadow_json_t *c, int depth) {
  emit_op(x, op, p, c, NULL, depth);
}

/* Rule i decided something here: a hit, and with --explain a line saying
 * what it absorbed (a and b, when given, are the two values). */
static void absorbed(ctx_t *x, int rule, const shadow_json_t *a,
                     const shadow_json_t *b, int depth, const char *why) {
  x->hits |= (uint64_t)1 << rule;
  if (!x->ex) return;
  shadow_buf_t *e = x->ex;
  const char *name = x->rules->r[rule].name;
  int rc = 0, cut = 0;
  rc |= shadow_buf_puts(e, "{\"kind\":\"absorbed\",\"path\":");
  rc |= shadow_buf_json_string(e, x->path.data ? x->path.data : "", x->path.len,
                               0);
  rc |= shadow_buf_puts(e, ",\"rule\":");
  rc |= shadow_buf_json_string(e, name, strlen(name), 0);
  rc |= shadow_buf_puts(e, ",\"why\":");
  rc |= shadow_buf_json_string(e, why, strlen(why), 0);
  if (a) {
    rc |= shadow_buf_puts(e, ",\"primary\":");
    rc |= write_value(x, e, a, depth, &cut);
  }
  if (b) {
    rc |= shadow_buf_puts(e, ",\"candidate\":");
    rc |= write_value(x, e, b, depth, &cut);
  }
  rc |= shadow_buf_puts(e, "}\n");
  if (rc && !x->rc) x->rc = -ENOMEM;
}

static void diff_value(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                       uint64_t mask, int depth);

static int done(const ctx_t *x) {
  return x->rc || (x->dry && x->found);
}

/* An addition or removal at a path where leaf rules are: each had
 * nothing to compare with, which --explain says. */
static void emit_one_sided(ctx_t *x, const here_t *h, const shadow_json_t *a,
                           const shadow_json_t *b, int depth) {
  tried_t tr[MAX_TRIED];
  int n = 0;
  int rules[4] = {h->coerce, h->time, h->mask,
                  h->has_tol ? h->tol_rule + 1 : 0};
  for (int i = 0; x->ex && i < 4; i++) {
    if (!rules[i]) continue;
    tr[n].rule = rules[i] - 1;
    snprintf(tr[n].why, sizeof tr[n].why, "the %s has no value here",
             a ? "candidate" : "primary");
    n++;
  }
  x->tried = tr;
  x->ntried = n;
  emit(x, a ? "remove" : "add", a, b, depth);
  x->tried = NULL;
  x->ntried = 0;
}

/* One child of a container: a pair to compare, or a removal (b NULL) or an
 * addition (a NULL) at the given key or index. Returns 1 when the child's
 * path is ignored, so callers can keep array indexes right. */
static int child(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                 uint64_t mask, int depth, const char *key, size_t klen,
                 size_t idx) {
  uint64_t cm = 0;
  if (x->dry && !x->ex) {
    /* Nothing is written, so no path is built: rules go by the mask. */
    if (mask) cm = child_mask(x, mask, depth, key, klen, key ? -1 : (long)idx);
    if (a && b) {
      diff_value(x, a, b, cm, depth + 1);
      return 0;
    }
    here_t h;
    if (cm) rules_here(x, cm, depth + 1, &h);
    if (cm && h.ignored) {
      absorbed(x, h.ignore_rule, NULL, NULL, depth + 1, "ignored");
      return 1;
    }
    x->found = 1;
    return 0;
  }
  size_t len = x->path.len;
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
    if (cm)
      rules_here(x, cm, depth + 1, &h);
    else
      memset(&h, 0, sizeof h);
    if (h.ignored) {
      ignored = 1;
      absorbed(x, h.ignore_rule, a, b, depth + 1, "ignored");
    } else {
      emit_one_sided(x, &h, a, b, depth + 1);
    }
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
  /* Same keys in the same order, none repeated, is the common case: walk
   * both in step. */
  if (na == nb && !((a->flags | b->flags) & SHADOW_JSON_DUPS)) {
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

/* Compares a and b under the rules at the current path, without output. */
static int dry_equal(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                     uint64_t mask, int depth) {
  int dry = x->dry, found = x->found;
  /* What the rules did counts only if the pair is found equal: a pair
   * that differs is walked again for real, or not used. */
  uint64_t hits = x->hits;
  size_t ex = x->ex ? x->ex->len : 0;
  x->dry = 1;
  x->found = 0;
  diff_value(x, a, b, mask, depth);
  int eq = !x->found && !x->rc;
  x->dry = dry;
  x->found = found;
  if (!eq) {
    x->hits = hits;
    if (x->ex && x->ex->data) {
      x->ex->len = ex;
      x->ex->data[ex] = '\0';
    }
  }
  return eq;
}

/* ---- arrays by index -------------------------------------------------- */

/* Whether element a (primary index idx) and b compare equal under the
 * rules: byte-identical ones without a walk. */
static int elem_equal(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                      uint64_t mask, int depth, size_t idx) {
  if (same_bytes(x, a, b)) return 1;
  if (x->budget < 0) return 0;
  uint64_t em = mask ? child_mask(x, mask, depth, NULL, 0, (long)idx) : 0;
  if (!em && a->type != b->type) return 0;
  if (!x->ex) return dry_equal(x, a, b, em, depth + 1);
  size_t len = x->path.len;
  push_index(x, idx);
  int eq = !x->rc && dry_equal(x, a, b, em, depth + 1);
  pop(x, len);
  return eq;
}

/* A hash consistent with equality under the rules: what is ignored adds
 * nothing, a toleranced number and an array in another mode only their
 * type. Without rules, shadow_json_hash. v is expanded. */
static uint64_t rule_hash(ctx_t *x, const shadow_json_t *v, uint64_t mask,
                          int depth) {
  if (!mask) return shadow_json_hash(v);
  here_t h;
  rules_here(x, mask, depth, &h);
  uint64_t t = (uint64_t)(v->type + 1) * 0x9E3779B97F4A7C15ULL;
  if (h.ignored) return 0x2545F4914F6CDD1DULL;
  /* A coerced, masked or timed value may equal one of another type. */
  if (h.leaf) return 0x61C8864680B583EBULL;
  switch (v->type) {
  case SHADOW_JSON_NUMBER: return h.has_tol ? t : shadow_json_hash(v);
  case SHADOW_JSON_ARRAY:
    if (h.mode != SHADOW_ARRAY_INDEX) return t;
    for (uint32_t i = 0; i < v->len; i++) {
      uint64_t cm = child_mask(x, mask, depth, NULL, 0, (long)i);
      t = XXH3_64bits_withSeed(&t, sizeof t,
                               rule_hash(x, &v->u.items[i], cm, depth + 1));
    }
    return t;
  case SHADOW_JSON_OBJECT: {
    keys_t k;
    int dups = (v->flags & SHADOW_JSON_DUPS) != 0;
    if (dups && keys_init(x, &k, v)) return t;
    uint64_t s = 0, live = 0;
    for (uint32_t i = 0; i < v->len; i++) {
      const shadow_json_member_t *m = &v->u.members[i];
      if (dups && keys_last(&k, m) != (long)i) continue;
      uint64_t cm = child_mask(x, mask, depth, m->key, m->klen, -1);
      if (cm) {
        here_t ch;
        rules_here(x, cm, depth + 1, &ch);
        if (ch.ignored) continue; /* present or not, it does not count */
      }
      live++;
      s += XXH3_64bits_withSeed(m->key, m->klen,
                                rule_hash(x, &m->value, cm, depth + 1));
    }
    return XXH3_64bits_withSeed(&s, sizeof s, t ^ live);
  }
  default: return shadow_json_hash(v);
  }
}

/* Pairs a[pre..pre+m) with b[pre..pre+n) by position: what the array
 * compare was before alignment, and what it falls back to. Only one of
 * removals and additions happens; an ignored addition is not there for
 * the next one. */
static void by_index(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                     uint64_t mask, int depth, uint32_t pre, uint32_t m,
                     uint32_t n) {
  uint32_t k = m < n ? m : n, skipped = 0;
  for (uint32_t i = pre; i < pre + k; i++) {
    child(x, &a->u.items[i], &b->u.items[i], mask, depth, NULL, 0, i);
    if (done(x)) return;
  }
  for (uint32_t i = pre + m; i-- > pre + k;) {
    child(x, &a->u.items[i], NULL, mask, depth, NULL, 0, i);
    if (done(x)) return;
  }
  for (uint32_t j = pre + k; j < pre + n; j++) {
    skipped += (uint32_t)child(x, NULL, &b->u.items[j], mask, depth, NULL, 0,
                               j - skipped);
    if (done(x)) return;
  }
}

/* A Fenwick tree of 0/1 counts: how many slots before a slot are filled. */
static void fen_add(int32_t *f, size_t n, size_t i, int32_t d) {
  for (i++; i <= n; i += i & (0 - i))
    f[i] += d;
}

static size_t fen_before(const int32_t *f, size_t i) {
  long s = 0;
  for (; i > 0; i -= i & (0 - i))
    s += f[i];
  return (size_t)s;
}

enum { EL_KEEP, EL_MOVE, EL_GONE, EL_STAY };

static void emit_move(ctx_t *x, size_t from, size_t to, int depth) {
  size_t len = x->path.len;
  shadow_buf_reset(&x->tmp);
  if (shadow_buf_append(&x->tmp, x->path.data ? x->path.data : "", len)) {
    x->rc = -ENOMEM;
    return;
  }
  push_index_to(x, &x->tmp, from);
  push_index(x, to);
  if (!x->rc) emit_op(x, "move", NULL, NULL, &x->tmp, depth + 1);
  pop(x, len);
}

/* The middle of an index-mode array, m elements of a and n of b from pre
 * on, none at either end equal: aligned, then diffed as json_diff.c's
 * opening comment says. */
static void aligned(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                    uint64_t mask, int depth, uint32_t pre, uint32_t m,
                    uint32_t n) {
  const shadow_json_t *ma = a->u.items + pre, *mb = b->u.items + pre;
  shadow_json_arena_t *ar = x->scratch;
  uint64_t *ha = shadow_json_arena_alloc(ar, (size_t)m * 8);
  uint64_t *hb = shadow_json_arena_alloc(ar, (size_t)n * 8);
  int32_t *pa = shadow_json_arena_alloc(ar, (size_t)m * 4);
  int32_t *pb = shadow_json_arena_alloc(ar, (size_t)n * 4);
  uint8_t *sa = shadow_json_arena_alloc(ar, m);
  uint8_t *sb = shadow_json_arena_alloc(ar, n);
  if (!ha || !hb || !pa || !pb || !sa || !sb) {
    x->rc = -ENOMEM;
    return;
  }
  for (uint32_t i = 0; i < m; i++) {
    if (expand(x, &ma[i], depth + 1)) return;
    uint64_t cm = mask ? child_mask(x, mask, depth, NULL, 0, pre + i) : 0;
    ha[i] = rule_hash(x, &ma[i], cm, depth + 1);
    x->budget -= (long)(ma[i].rawlen / 8) + 1; /* about its nodes */
  }
  for (uint32_t j = 0; j < n; j++) {
    if (expand(x, &mb[j], depth + 1)) return;
    uint64_t cm = mask ? child_mask(x, mask, depth, NULL, 0, pre + j) : 0;
    hb[j] = rule_hash(x, &mb[j], cm, depth + 1);
    x->budget -= (long)(mb[j].rawlen / 8) + 1;
  }
  size_t work = x->budget > 0 ? (size_t)x->budget : 0;
  if (work > ALIGN_MAX_WORK) work = ALIGN_MAX_WORK;
  int rc = shadow_json_align(ha, m, hb, n, ALIGN_MAX_D, &work, pa);
  x->budget -= (long)work;
  if (rc == -E2BIG) {
    by_index(x, a, b, mask, depth, pre, m, n);
    return;
  }
  if (rc) {
    x->rc = rc;
    return;
  }
  for (uint32_t j = 0; j < n; j++) {
    pb[j] = -1;
    sb[j] = EL_GONE; /* for b: to be added */
  }
  for (uint32_t i = 0; i < m; i++) {
    sa[i] = pa[i] >= 0 ? EL_KEEP : EL_GONE;
    if (pa[i] >= 0) {
      pb[pa[i]] = (int32_t)i;
      sb[pa[i]] = EL_KEEP;
    }
  }
  /* Moves: an unmatched element of b equal to an unmatched one of a. The
   * table holds unmatched a elements by hash; a used entry is cleared. */
  if (!(mask && ignores_elements(x, mask, depth))) {
    size_t size = 16, checks = 0;
    while (size < (size_t)m * 2)
      size *= 2;
    int32_t *tab = shadow_json_arena_alloc(ar, size * 4);
    if (!tab) {
      x->rc = -ENOMEM;
      return;
    }
    memset(tab, 0xff, size * 4);
    for (uint32_t i = 0; i < m; i++) {
      if (sa[i] != EL_GONE) continue;
      size_t s = (size_t)ha[i] & (size - 1);
      while (tab[s] != -1)
        s = (s + 1) & (size - 1);
      tab[s] = (int32_t)i;
    }
    for (uint32_t j = 0; j < n && checks < MOVE_CHECKS; j++) {
      if (sb[j] != EL_GONE) continue;
      for (size_t s = (size_t)hb[j] & (size - 1); tab[s] != -1;
           s = (s + 1) & (size - 1)) {
        int32_t i = tab[s];
        if (i < 0 || ha[i] != hb[j]) continue;
        if (++checks > MOVE_CHECKS) break;
        if (!elem_equal(x, &ma[i], &mb[j], mask, depth, pre + (uint32_t)i)) {
          if (x->rc) return;
          continue;
        }
        tab[s] = -2;
        sa[i] = EL_MOVE;
        sb[j] = EL_MOVE;
        pa[i] = (int32_t)j;
        pb[j] = i;
        break;
      }
    }
  }
  /* Between kept elements, what is left pairs up by position. */
  for (uint32_t i = 0, j = 0; i < m || j < n;) {
    uint32_t i1 = i, j1 = j;
    while (i1 < m && sa[i1] != EL_KEEP)
      i1++;
    while (j1 < n && sb[j1] != EL_KEEP)
      j1++;
    uint32_t p = i, q = j;
    for (;;) {
      while (p < i1 && sa[p] != EL_GONE)
        p++;
      while (q < j1 && sb[q] != EL_GONE)
        q++;
      if (p >= i1 || q >= j1) break;
      sa[p] = sb[q] = EL_KEEP;
      pa[p] = (int32_t)q;
      pb[q] = (int32_t)p;
      p++;
      q++;
    }
    i = i1 + 1;
    j = j1 + 1;
  }
  /* Inside kept elements, under the primary's indexes. */
  for (uint32_t i = 0; i < m; i++) {
    if (sa[i] != EL_KEEP) continue;
    child(x, &ma[i], &mb[pa[i]], mask, depth, NULL, 0, pre + i);
    if (done(x)) return;
  }
  /* Removals, highest index first; an ignored one stays. */
  for (uint32_t i = m; i-- > 0;) {
    if (sa[i] != EL_GONE) continue;
    if (child(x, &ma[i], NULL, mask, depth, NULL, 0, pre + i)) sa[i] = EL_STAY;
    if (done(x)) return;
  }
  /* Additions and moves in b's order. Slots order what the array holds
   * from now on: between two kept elements, first the elements of a still
   * there (moves' sources, ignored removals), then b's new places; the
   * index of a place is the count of filled slots before it. */
  size_t nslot = (size_t)m + n;
  int32_t *slot_a = shadow_json_arena_alloc(ar, (size_t)m * 4 + 4);
  int32_t *slot_b = shadow_json_arena_alloc(ar, (size_t)n * 4 + 4);
  int32_t *fen = shadow_json_arena_alloc(ar, (nslot + 1) * 4);
  if (!slot_a || !slot_b || !fen) {
    x->rc = -ENOMEM;
    return;
  }
  memset(fen, 0, (nslot + 1) * 4);
  size_t t = 0;
  for (uint32_t i = 0, j = 0; i < m || j < n;) {
    for (; i < m && sa[i] != EL_KEEP; i++) {
      if (sa[i] == EL_GONE) continue;
      slot_a[i] = (int32_t)t;
      fen_add(fen, nslot, t++, 1);
    }
    for (; j < n && sb[j] != EL_KEEP; j++)
      slot_b[j] = (int32_t)t++;
    if (i < m && j < n) { /* the kept pair (i, j) */
      fen_add(fen, nslot, t++, 1);
      i++;
      j++;
    }
  }
  for (uint32_t j = 0; j < n; j++) {
    if (sb[j] == EL_KEEP) continue;
    size_t s = (size_t)slot_b[j];
    if (sb[j] == EL_MOVE) {
      size_t from = slot_a[pb[j]];
      size_t fi = pre + fen_before(fen, from);
      fen_add(fen, nslot, from, -1);
      size_t ti = pre + fen_before(fen, s);
      if (fi != ti) emit_move(x, fi, ti, depth);
      fen_add(fen, nslot, s, 1);
    } else if (!child(x, NULL, &mb[j], mask, depth, NULL, 0,
                      pre + fen_before(fen, s))) {
      fen_add(fen, nslot, s, 1);
    }
    if (done(x)) return;
  }
}

static void diff_array_index(ctx_t *x, const shadow_json_t *a,
                             const shadow_json_t *b, uint64_t mask, int depth) {
  uint32_t na = a->len, nb = b->len, pre = 0, suf = 0;
  const shadow_json_t *ai = a->u.items, *bi = b->u.items;
  /* A dry walk only asks whether anything differs: index order says, and
   * no compare nests inside another. */
  if (x->dry) {
    by_index(x, a, b, mask, depth, 0, na, nb);
    return;
  }
  /* Equal elements at both ends need nothing more. */
  while (pre < na && pre < nb &&
         elem_equal(x, &ai[pre], &bi[pre], mask, depth, pre))
    pre++;
  while (suf < na - pre && suf < nb - pre) {
    /* The pair the first loop stopped at is known to differ. */
    if (na == nb && na - 1 - suf == pre) break;
    if (!elem_equal(x, &ai[na - 1 - suf], &bi[nb - 1 - suf], mask, depth,
                    na - 1 - suf))
      break;
    suf++;
  }
  if (x->rc) return;
  uint32_t m = na - pre - suf, n = nb - pre - suf;
  if (!m && !n) return;
  if (!m || !n || (m == 1 && n == 1) || x->budget < 0)
    by_index(x, a, b, mask, depth, pre, m, n);
  else
    aligned(x, a, b, mask, depth, pre, m, n);
}

/* ---- arrays in other modes -------------------------------------------- */

/* What an element is matched by: itself, or (key mode) its key member,
 * read as a coerce rule on the key says (kc, 0 for none), so ids that
 * became strings still pair. NULL without memory. */
static const shadow_json_t *match_of(ctx_t *x, const shadow_json_t *e,
                                     const here_t *h, int kc, int *keyed) {
  *keyed = 0;
  if (h->mode == SHADOW_ARRAY_KEY) {
    long k = shadow_json_member_find(e, h->key, h->klen);
    if (k >= 0) {
      *keyed = 1;
      const shadow_json_t *v = &e->u.members[k].value;
      if (!kc || v->type != SHADOW_JSON_STRING) return v;
      shadow_json_t *c = shadow_json_arena_alloc(x->scratch, sizeof *c);
      if (!c || shadow_rules_coerce(x->scratch, v, kc, c) < 0) {
        x->rc = -ENOMEM;
        return NULL;
      }
      return c;
    }
  }
  return e;
}

/* The coerce rule on the key member of every element of the array at
 * depth (a rule naming the elements by "*"), or 0. */
static int key_coerce(const ctx_t *x, uint64_t mask, int depth,
                      const here_t *h) {
  if (h->mode != SHADOW_ARRAY_KEY) return 0;
  while (mask) {
    int i = __builtin_ctzll(mask);
    mask &= mask - 1;
    const rule_t *ru = &x->rules->r[i];
    if (ru->kind != RULE_COERCE || ru->nseg != depth + 2) continue;
    const seg_t *k = &ru->segs[depth + 1];
    if (ru->segs[depth].star &&
        (k->star || (k->len == h->klen && memcmp(k->s, h->key, h->klen) == 0)))
      return ru->mode;
  }
  return 0;
}

/* The group head whose match value equals m, or -1. */
static int32_t find_group(const int32_t *bucket, const int32_t *next,
                          const uint64_t *ch, const uint8_t *ck,
                          const shadow_json_t *const *mv, size_t size,
                          uint64_t hv, int keyed, const shadow_json_t *m) {
  for (int32_t g = bucket[hv & (size - 1)]; g >= 0; g = next[g])
    if (ch[g] == hv && ck[g] == keyed && shadow_json_equal(m, mv[g])) return g;
  return -1;
}

static void diff_array_unordered(ctx_t *x, const shadow_json_t *a,
                                 const shadow_json_t *b, uint64_t mask,
                                 int depth, const here_t *h) {
  uint32_t na = a->len, nb = b->len;
  const shadow_json_t *ai = a->u.items, *bi = b->u.items;
  int set = h->mode == SHADOW_ARRAY_SET;
  /* Hashing and matching read whole elements. */
  for (uint32_t i = 0; i < na; i++)
    if (expand(x, &ai[i], depth + 1)) return;
  for (uint32_t j = 0; j < nb; j++)
    if (expand(x, &bi[j], depth + 1)) return;
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
  const shadow_json_t **mv =
      shadow_json_arena_alloc(x->scratch, ((size_t)nb + 1) * sizeof *mv);
  if (!bucket || !next || !same || !tail || !cur || !pm || !cm || !ch || !ck ||
      !mv) {
    x->rc = -ENOMEM;
    return;
  }
  memset(bucket, 0xff, size * 4);
  memset(pm, 0xff, ((size_t)na + 1) * 4);
  memset(cm, 0xff, n4);
  int kc = mask ? key_coerce(x, mask, depth, h) : 0;
  for (uint32_t j = 0; j < nb; j++) {
    int keyed;
    const shadow_json_t *m = match_of(x, &bi[j], h, kc, &keyed);
    if (!m) return;
    mv[j] = m;
    ck[j] = (uint8_t)keyed;
    ch[j] = shadow_json_hash(m) ^ (uint64_t)keyed;
    same[j] = -1;
    int32_t g = find_group(bucket, next, ch, ck, mv, size, ch[j], keyed, m);
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
    const shadow_json_t *m = match_of(x, &ai[i], h, kc, &keyed);
    if (!m) return;
    uint64_t hv = shadow_json_hash(m) ^ (uint64_t)keyed;
    int32_t g = find_group(bucket, next, ch, ck, mv, size, hv, keyed, m);
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

/* ---- leaf rules -------------------------------------------------------- */

static int is_container(const shadow_json_t *v) {
  return v->type == SHADOW_JSON_ARRAY || v->type == SHADOW_JSON_OBJECT;
}

/* Scalars of one type compared exactly (numbers by value). */
static int scalar_equal(const shadow_json_t *a, const shadow_json_t *b) {
  if (a->type != b->type) return 0;
  if (a->type == SHADOW_JSON_NUMBER)
    return a->neg == b->neg && a->exp == b->exp && a->len == b->len &&
           memcmp(a->u.digits, b->u.digits, a->len) == 0;
  if (a->type == SHADOW_JSON_STRING)
    return a->len == b->len && memcmp(a->u.str, b->u.str, a->len) == 0;
  return 1;
}

static const char *side_lacking(int pa, int pb) {
  return !pa && !pb ? "neither side" : !pa ? "the primary" : "the candidate";
}

/* A span of microseconds as milliseconds, without a fraction when whole. */
static const char *ms_text(char *buf, size_t n, double us) {
  if (us == floor(us / 1000) * 1000)
    snprintf(buf, n, "%.0f ms", us / 1000);
  else
    snprintf(buf, n, "%.3f ms", us / 1000);
  return buf;
}

static tried_t *try_note(tried_t *tr, int *n, int rule) {
  if (*n >= MAX_TRIED) return NULL;
  tried_t *t = &tr[(*n)++];
  t->rule = rule;
  t->why[0] = '\0';
  return t;
}

/* Two values where coerce, mask, time or tolerance rules are, at least
 * one of them not a container: each rule in turn may find them equal (a
 * hit); if none does they compare as usual, and an op reports them with
 * what each rule tried. Not recursive, so its notes live on its frame. */
static void diff_leaf(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                      const here_t *h, int depth) {
  static const char *const mask_words[] = {"",        "a uuid",     "hex",
                                           "iso8601", "epoch time", ""};
  tried_t tr[MAX_TRIED];
  int nt = 0;
  tried_t *t;
  int ex = x->ex != NULL;
  const shadow_json_t *pa = a, *pb = b;
  shadow_json_t ca, cb;
  if (h->coerce) {
    const rule_t *ru = &x->rules->r[h->coerce - 1];
    int number = ru->mode == SHADOW_COERCE_NUMBER;
    /* A number and a string spelling it alike hold the same number,
     * whatever its digits: the usual migration, told without parsing. */
    const shadow_json_t *sn = a->type == SHADOW_JSON_STRING ? a : b;
    const shadow_json_t *nn = sn == a ? b : a;
    if (number && sn->type == SHADOW_JSON_STRING &&
        nn->type == SHADOW_JSON_NUMBER && sn->len && nn->rawlen == sn->len &&
        memcmp(nn->raw, sn->u.str, sn->len) == 0) {
      absorbed(x, h->coerce - 1, a, b, depth, "equal as numbers");
      return;
    }
    int ka = shadow_rules_coerce(x->scratch, a, ru->mode, &ca);
    int kb = shadow_rules_coerce(x->scratch, b, ru->mode, &cb);
    if (ka < 0 || kb < 0) {
      x->rc = -ENOMEM;
      return;
    }
    int want = number ? SHADOW_JSON_NUMBER : SHADOW_JSON_TRUE;
    int oka = number
                  ? ca.type == want
                  : ca.type == SHADOW_JSON_TRUE || ca.type == SHADOW_JSON_FALSE;
    int okb = number
                  ? cb.type == want
                  : cb.type == SHADOW_JSON_TRUE || cb.type == SHADOW_JSON_FALSE;
    if ((ka || kb) && oka && okb) {
      /* What the rule is for: compare what the strings hold. */
      pa = &ca;
      pb = &cb;
      if (scalar_equal(pa, pb)) {
        absorbed(x, h->coerce - 1, a, b, depth,
                 number ? "equal as numbers" : "equal as booleans");
        return;
      }
      if (number && h->has_tol) {
        double d = fabs(shadow_json_number(pa) - shadow_json_number(pb));
        if (d <= h->tol) {
          x->hits |= (uint64_t)1 << h->tol_rule;
          absorbed(x, h->coerce - 1, a, b, depth,
                   "equal as numbers, within the tolerance");
          return;
        }
      }
      if (ex && (t = try_note(tr, &nt, h->coerce - 1)))
        snprintf(t->why, sizeof t->why, "different %s",
                 number ? "numbers" : "booleans");
    } else if (ex && (t = try_note(tr, &nt, h->coerce - 1))) {
      if (oka && okb)
        snprintf(t->why, sizeof t->why, "neither is a %s held in a string",
                 number ? "number" : "boolean");
      else
        snprintf(t->why, sizeof t->why, "%s is not a %s",
                 side_lacking(oka, okb), number ? "number" : "boolean");
    }
  }
  if (h->time) {
    const rule_t *ru = &x->rules->r[h->time - 1];
    int64_t ua = 0, ub = 0;
    int ia = shadow_rules_instant(a, ru->mode, &ua);
    int ib = shadow_rules_instant(b, ru->mode, &ub);
    if (ia && ib) {
      int64_t d = ua > ub ? ua - ub : ub - ua;
      if ((double)d <= ru->tol) {
        char why[96], m1[32], m2[32];
        if (ex) {
          if (d == 0)
            snprintf(why, sizeof why, "the same instant");
          else
            snprintf(why, sizeof why, "%s apart, within %s",
                     ms_text(m1, sizeof m1, (double)d),
                     ms_text(m2, sizeof m2, ru->tol));
        }
        absorbed(x, h->time - 1, a, b, depth, ex ? why : "");
        return;
      }
      char m1[32], m2[32];
      if (ex && (t = try_note(tr, &nt, h->time - 1)))
        snprintf(t->why, sizeof t->why, "%s apart, more than %s",
                 ms_text(m1, sizeof m1, (double)d),
                 ms_text(m2, sizeof m2, ru->tol));
    } else if (ex && (t = try_note(tr, &nt, h->time - 1))) {
      snprintf(t->why, sizeof t->why, "%s is not a time", side_lacking(ia, ib));
    }
  }
  if (h->mask) {
    const rule_t *ru = &x->rules->r[h->mask - 1];
    int ma = shadow_rules_mask_match(a, ru->mode, ru->key, ru->klen);
    int mb = shadow_rules_mask_match(b, ru->mode, ru->key, ru->klen);
    if (ma && mb) {
      char why[96] = "";
      if (ex && ru->mode == SHADOW_MASK_PATTERN)
        snprintf(why, sizeof why, "both match %.64s", ru->key);
      else if (ex)
        snprintf(why, sizeof why, "both are %s", mask_words[ru->mode]);
      absorbed(x, h->mask - 1, a, b, depth, why);
      return;
    }
    if (ex && (t = try_note(tr, &nt, h->mask - 1))) {
      if (ru->mode == SHADOW_MASK_PATTERN)
        snprintf(t->why, sizeof t->why, "%s does not match %.64s",
                 side_lacking(ma, mb), ru->key);
      else
        snprintf(t->why, sizeof t->why, "%s is not %s", side_lacking(ma, mb),
                 mask_words[ru->mode]);
    }
  }
  /* No rule made them equal: as usual (numbers within a tolerance). */
  if (a->type == b->type) {
    if (scalar_equal(a, b)) return;
    if (a->type == SHADOW_JSON_NUMBER && h->has_tol) {
      double d = fabs(shadow_json_number(a) - shadow_json_number(b));
      if (d <= h->tol) {
        char why[96] = "";
        if (ex) snprintf(why, sizeof why, "differ by %g, within %g", d, h->tol);
        absorbed(x, h->tol_rule, a, b, depth, why);
        return;
      }
      if (ex && (t = try_note(tr, &nt, h->tol_rule)))
        snprintf(t->why, sizeof t->why, "differ by %g, more than %g", d,
                 h->tol);
    }
  } else if (h->has_tol && ex && (t = try_note(tr, &nt, h->tol_rule))) {
    snprintf(t->why, sizeof t->why, "not both numbers");
  }
  x->tried = tr;
  x->ntried = nt;
  emit(x, "replace", a, b, depth);
  x->tried = NULL;
  x->ntried = 0;
}

static void diff_value(ctx_t *x, const shadow_json_t *a, const shadow_json_t *b,
                       uint64_t mask, int depth) {
  here_t h;
  if (done(x)) return;
  x->budget -= x->dry;
  if (mask) {
    rules_here(x, mask, depth, &h);
    if (h.ignored) {
      if (!same_bytes(x, a, b))
        absorbed(x, h.ignore_rule, a, b, depth, "ignored");
      return;
    }
  } else {
    h.mode = SHADOW_ARRAY_INDEX;
    h.has_tol = 0;
    h.leaf = 0;
  }
  /* Byte-identical text is the same value, whatever the rules say. */
  if (same_bytes(x, a, b)) return;
  if ((h.leaf || h.has_tol) && !(is_container(a) && is_container(b))) {
    diff_leaf(x, a, b, &h, depth);
    return;
  }
  if (a->type != b->type) {
    emit(x, "replace", a, b, depth);
    return;
  }
  switch (a->type) {
  case SHADOW_JSON_NUMBER:
  case SHADOW_JSON_STRING:
    if (!scalar_equal(a, b)) emit(x, "replace", a, b, depth);
    return;
  case SHADOW_JSON_OBJECT:
    if (materialize(x, a, depth) || materialize(x, b, depth)) return;
    diff_object(x, a, b, mask, depth);
    return;
  case SHADOW_JSON_ARRAY:
    if (materialize(x, a, depth) || materialize(x, b, depth)) return;
    if (h.mode == SHADOW_ARRAY_INDEX) {
      diff_array_index(x, a, b, mask, depth);
    } else {
      static const char *const words[] = {
          "", "the same elements as a set", "the same elements as a multiset",
          "the same elements, paired by their key"};
      size_t nops = x->out->nops;
      int found = x->found;
      diff_array_unordered(x, a, b, mask, depth, &h);
      x->hits |= (uint64_t)1 << h.array_rule;
      if (x->ex && !x->rc && x->out->nops == nops && x->found == found)
        absorbed(x, h.array_rule, NULL, NULL, depth, words[h.mode]);
    }
    return;
  default: return; /* null, true, false: the same type is the same value */
  }
}

/* ---- what the texts share --------------------------------------------- */

/* The ends of the containers the primary's parser skipped in the common
 * suffix, in the primary's offsets: the candidate reads them shifted, so
 * the shared bytes are scanned once, not once per side. */
typedef struct {
  size_t *off, *end;
  size_t n, cap;
} memo_t;

/* One side's answers to the parser's skip question. The prefix table is
 * the primary's scan of the common prefix, valid for both texts. In the
 * common suffix each container's end is found when the parser asks
 * (shadow_json_span_end), which scans only what is skipped; the primary
 * notes each answer in the memo, which the candidate reads by its offsets
 * less the difference of the lengths, scanning its own text only where the
 * primary did not ask. */
typedef struct {
  const shadow_json_spans_t *pre;
  size_t pre_cur, common;
  memo_t *memo;
  size_t memo_cur;
  size_t suf_from; /* where this text's common suffix starts */
  long shift;      /* this text's offsets minus the primary's */
  int records;     /* the primary: answers go to the memo */
  const char *text;
  size_t len;
  int rc;
} lazy_t;

/* The end of the container opening at off, when the table knows it closes
 * inside its range: 1 and *end set. The parser asks in increasing offsets
 * and never inside what it skipped, so a cursor moves forward only. */
static int spans_find(const shadow_json_spans_t *t, size_t *cur, size_t off,
                      size_t *end) {
  size_t c = *cur;
  while (c < t->n && t->open[c] < off)
    c++;
  if (c >= t->n || t->open[c] != off) {
    *cur = c;
    return 0;
  }
  *cur = c + 1;
  if (t->end[c] == SHADOW_JSON_SPAN_OPEN) return 0; /* it will be parsed */
  *end = t->end[c];
  return 1;
}

static int memo_add(memo_t *m, size_t off, size_t end) {
  if (m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    size_t *o = realloc(m->off, cap * sizeof *o);
    if (!o) return -ENOMEM;
    m->off = o;
    size_t *e = realloc(m->end, cap * sizeof *e);
    if (!e) return -ENOMEM;
    m->end = e;
    m->cap = cap;
  }
  m->off[m->n] = off;
  m->end[m->n++] = end;
  return 0;
}

static int lazy_skip(void *ctx, size_t off, size_t *end) {
  lazy_t *z = ctx;
  if (off < z->common)
    return z->pre && spans_find(z->pre, &z->pre_cur, off, end);
  if (off < z->suf_from) return 0;
  if (!z->records) {
    /* The candidate: the primary's answer at the same place, if any. */
    size_t poff = (size_t)((long)off - z->shift), c = z->memo_cur;
    while (c < z->memo->n && z->memo->off[c] < poff)
      c++;
    z->memo_cur = c;
    if (c < z->memo->n && z->memo->off[c] == poff) {
      z->memo_cur = c + 1;
      *end = (size_t)((long)z->memo->end[c] + z->shift);
      return 1;
    }
  }
  if (!shadow_json_span_end(z->text, off, z->len, end)) {
    /* Not closed, or closed by the other kind of bracket: the text is not
     * JSON there, which the parser will say; asking again would only
     * rescan what it reads. */
    z->suf_from = SIZE_MAX;
    return 0;
  }
  if (z->records) {
    int rc = memo_add(z->memo, off, *end);
    if (rc) {
      z->rc = rc;
      z->suf_from = SIZE_MAX;
      return 0;
    }
  }
  return 1;
}

/* Parses both texts into the arena, leaving lazy what they share (see the
 * top of this file); sets *common and *tail to the shared prefix and
 * suffix lengths. Returns 0, -EINVAL (err names the side) or -ENOMEM. */
static int parse_pair(shadow_json_arena_t *arena, const char *primary,
                      size_t plen, const char *candidate, size_t clen,
                      shadow_json_t *pr, shadow_json_t *cr, size_t *common,
                      size_t *tail, char *err, size_t errlen) {
  size_t n = plen < clen ? plen : clen, off = 0;
  const char *why = NULL;
  size_t cp = shadow_json_common_prefix(primary, candidate, n);
  size_t cs = shadow_json_common_suffix(primary + plen - (n - cp),
                                        candidate + clen - (n - cp), n - cp);
  *common = cp;
  *tail = cs;
  shadow_json_spans_t pre = SHADOW_JSON_SPANS_INIT;
  memo_t memo = {NULL, NULL, 0, 0};
  lazy_t zp, zc;
  memset(&zp, 0, sizeof zp);
  zp.memo = &memo;
  zp.suf_from = cs >= LAZY_MIN ? plen - cs : SIZE_MAX;
  zp.records = 1;
  zp.text = primary;
  zp.len = plen;
  zc = zp;
  zc.records = 0; /* the candidate reads the primary's answers */
  zc.text = candidate;
  zc.len = clen;
  zc.suf_from = cs >= LAZY_MIN ? clen - cs : SIZE_MAX;
  zc.shift = (long)clen - (long)plen;
  int rc = 0;
  size_t r0 = 0;
  while (r0 < cp && (primary[r0] == ' ' || primary[r0] == '\t' ||
                     primary[r0] == '\n' || primary[r0] == '\r'))
    r0++;
  if (cp >= LAZY_MIN && r0 < cp && (primary[r0] == '{' || primary[r0] == '[')) {
    rc = shadow_json_spans_scan(&pre, primary, r0, cp);
    zp.pre = zc.pre = &pre;
    zp.common = zc.common = cp;
  }
  int lazy = zp.pre || cs >= LAZY_MIN;
  /* Nodes take about four times the text they are parsed from; a lazy
   * parse makes one node for many bytes where the texts agree. */
  size_t guess = (plen + clen) * 4 + 4096;
  if (lazy) guess = (plen + clen) / 4 + (plen - cp - cs) * 8 + 4096;
  arena->next_size = guess < ((size_t)1 << 26) ? guess : ((size_t)1 << 26);
  if (!rc) {
    rc = shadow_json_parse_lazy(arena, primary, plen, pr,
                                lazy ? lazy_skip : NULL, &zp, &off, &why);
    if (rc == -EINVAL) set_err(err, errlen, "primary", off, why);
    if (!rc) rc = zp.rc;
  }
  if (!rc) {
    rc = shadow_json_parse_lazy(arena, candidate, clen, cr,
                                lazy ? lazy_skip : NULL, &zc, &off, &why);
    if (rc == -EINVAL) set_err(err, errlen, "candidate", off, why);
  }
  shadow_json_spans_free(&pre);
  free(memo.off);
  free(memo.end);
  return rc;
}

/* Cuts b back to len (a call that failed leaves nothing behind). */
static void cut_back(shadow_buf_t *b, size_t len) {
  if (b && b->data) {
    b->len = len;
    b->data[len] = '\0';
  }
}

int shadow_json_diff(const char *primary, size_t plen, const char *candidate,
                     size_t clen, const shadow_json_rules_t *rules,
                     shadow_json_diff_out_t *out, char *err, size_t errlen) {
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t pr, cr;
  out->nops = 0;
  out->truncated = 0;
  memset(out->hits, 0, sizeof out->hits);
  if (err && errlen) err[0] = '\0';
  /* Identical texts are the same document: one parse proves both JSON.
   * Under a rename they may still differ (the candidate kept the old
   * name), so then they are walked like any pair. */
  int renames = shadow_json_rules_renames(rules);
  if (plen == clen && memcmp(primary, candidate, plen) == 0 && !renames) {
    size_t off = 0;
    const char *why = NULL;
    int rc = shadow_json_parse(&arena, primary, plen, &pr, &off, &why);
    if (rc == -EINVAL) set_err(err, errlen, "primary", off, why);
    shadow_json_arena_free(&arena);
    return rc;
  }
  ctx_t x;
  memset(&x, 0, sizeof x);
  int rc = parse_pair(&arena, primary, plen, candidate, clen, &pr, &cr,
                      &x.common, &x.tail, err, errlen);
  if (rc) {
    shadow_json_arena_free(&arena);
    return rc;
  }
  x.rules = rules;
  x.out = out;
  x.scratch = &arena;
  x.ops_base = out->ops ? out->ops->len : 0;
  x.ptext = primary;
  x.ctext = candidate;
  x.plen = plen;
  x.clen = clen;
  x.err = err;
  x.errlen = errlen;
  x.budget = (long)((plen + clen) * 2 + 65536);
  x.ex = out->explain;
  size_t fields_base = out->fields ? out->fields->len : 0;
  size_t explain_base = x.ex ? x.ex->len : 0;
  uint64_t rename_hits = 0;
  if (renames) {
    shadow_json_rename_t rn;
    memset(&rn, 0, sizeof rn);
    rn.arena = &arena;
    rn.explain = x.ex;
    rc = shadow_json_renames_apply(rules, &pr, &rn);
    if (rc == -EINVAL)
      set_err(err, errlen, "primary",
              (size_t)(rn.bad_raw - primary) + rn.bad_off, rn.why);
    rename_hits = rn.hits;
    x.rc = rc;
  }
  uint64_t mask = 0;
  if (rules && rules->n)
    mask = rules->n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << rules->n) - 1);
  if (!x.rc && out->path_prefix && *out->path_prefix &&
      shadow_buf_puts(&x.path, out->path_prefix))
    x.rc = -ENOMEM;
  if (!x.rc) diff_value(&x, &pr, &cr, mask, 0);
  rc = x.rc;
  shadow_buf_free(&x.path);
  shadow_buf_free(&x.tmp);
  if (rc) {
    /* A span parsed late was not JSON, or memory ran out: no ops. */
    if (out->ops) cut_back(out->ops, x.ops_base);
    if (out->fields) cut_back(out->fields, fields_base);
    if (x.ex) cut_back(x.ex, explain_base);
    out->nops = 0;
    out->truncated = 0;
  } else {
    out->hits[0] = x.hits;
    out->hits[1] = rename_hits;
  }
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
