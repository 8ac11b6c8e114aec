/* Property test of the JSON diff: for thousands of random document pairs,
 * applying the ops as a JSON Patch (value = candidate) to the primary gives
 * the candidate, and a document against a re-spelled, key-shuffled copy of
 * itself (with repeated keys the last member overrides) gives no ops. Each
 * pair is diffed re-spelled and spelled alike (so what did not change is
 * byte-identical, the case the diff skips unparsed). Then arrays of up to
 * 1000 elements get inserts, deletes and moves at random places: the ops
 * still apply, and one insert, delete or move is at most 2 ops. The
 * documents, the patch applier (add, remove, replace, move) and the
 * equality check here are the test's own, so the library checks against
 * something it does not share code with (only the op list is read with its
 * parser). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "json.h"
#include "json_diff.h"
#include "patch_apply.h"

static uint64_t rng = 0x5eed5eed12345678ULL;

static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static size_t rn(size_t n) {
  return n ? (size_t)(rnd() % n) : 0;
}

/* ---- numbers: the test's own normalization --------------------------- */

typedef struct {
  int neg;
  char d[400];
  long exp;
} canon_t;

static void canon(const char *s, size_t n, canon_t *c) {
  size_t i = 0, nd = 0;
  long point = 0, e = 0;
  int seen_point = 0, eneg = 0;
  c->neg = 0;
  if (i < n && s[i] == '-') {
    c->neg = 1;
    i++;
  }
  for (; i < n && s[i] != 'e' && s[i] != 'E'; i++) {
    if (s[i] == '.') {
      seen_point = 1;
      continue;
    }
    if (nd == 0 && s[i] == '0') {
      if (seen_point) point++;
      continue;
    }
    c->d[nd++] = s[i];
    if (seen_point) point++;
  }
  if (i < n) {
    i++;
    if (s[i] == '+' || s[i] == '-') eneg = s[i++] == '-';
    for (; i < n; i++)
      e = e * 10 + (s[i] - '0');
  }
  while (nd && c->d[nd - 1] == '0') {
    nd--;
    point--;
  }
  c->d[nd] = '\0';
  c->exp = (eneg ? -e : e) - point;
  if (!nd) {
    c->neg = 0;
    c->exp = 0;
  }
}

static int num_eq(const tnode_t *a, const tnode_t *b) {
  canon_t x, y;
  canon(a->s, a->slen, &x);
  canon(b->s, b->slen, &y);
  return x.neg == y.neg && x.exp == y.exp && strcmp(x.d, y.d) == 0;
}

static int teq(const tnode_t *a, const tnode_t *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case T_NULL: return 1;
  case T_BOOL: return a->b == b->b;
  case T_NUM: return num_eq(a, b);
  case T_STR: return a->slen == b->slen && !memcmp(a->s, b->s, a->slen);
  case T_ARR:
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
      if (!teq(a->kids[i], b->kids[i])) return 0;
    return 1;
  default:
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++) {
      long k = tfind(b, a->keys[i], a->klens[i]);
      if (k < 0 || !teq(a->kids[i], b->kids[k])) return 0;
    }
    return 1;
  }
}

/* Equality where arrays at depth <= 1 are sets (mode 1) or multisets
 * (mode 2), as the diff was told; deeper arrays compare by index. */
static int teq_mode(const tnode_t *a, const tnode_t *b, int depth, int mode) {
  if (a->type != b->type) return 0;
  if (a->type == T_OBJ) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++) {
      long k = tfind(b, a->keys[i], a->klens[i]);
      if (k < 0 || !teq_mode(a->kids[i], b->kids[k], depth + 1, mode)) return 0;
    }
    return 1;
  }
  if (a->type != T_ARR) return teq(a, b);
  if (depth > 1) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
      if (!teq_mode(a->kids[i], b->kids[i], depth + 1, mode)) return 0;
    return 1;
  }
  if (mode == 1) {
    for (int side = 0; side < 2; side++) {
      const tnode_t *x = side ? b : a, *y = side ? a : b;
      for (size_t i = 0; i < x->n; i++) {
        size_t j = 0;
        while (j < y->n && !teq_mode(x->kids[i], y->kids[j], depth + 1, mode))
          j++;
        if (j == y->n) return 0;
      }
    }
    return 1;
  }
  if (a->n != b->n) return 0;
  char used[4096] = {0};
  if (b->n > sizeof used) return 0;
  for (size_t i = 0; i < a->n; i++) {
    size_t j = 0;
    while (j < b->n &&
           (used[j] || !teq_mode(a->kids[i], b->kids[j], depth + 1, mode)))
      j++;
    if (j == b->n) return 0;
    used[j] = 1;
  }
  return 1;
}

/* ---- generation -------------------------------------------------------- */

static const char *pieces[] = {
    "a",
    "b",
    "z",
    " ",
    "\xc3\xa9",
    "\xe2\x82\xac",
    "\xf0\x9f\x98\x80",
    "\"",
    "\\",
    "/",
    "~",
    "\n",
    "\x01",
    "0",
    "1",
    "~1",
    "ab",
    "\xe4\xb8\xad",
};
static const char *keyset[] = {
    "a", "b",        "c",  "id",  "name", "a/b", "m~n",
    "",  "\xc3\xa9", "~0", "x y", "tags", "n",   "\xf0\x9f\x98\x80",
};

static tnode_t *gen_string(void) {
  tnode_t *t = tnew(T_STR);
  char buf[128];
  size_t len = 0, n = rn(6);
  for (size_t i = 0; i < n; i++) {
    const char *p = pieces[rn(sizeof pieces / sizeof *pieces)];
    size_t pl = strlen(p);
    memcpy(buf + len, p, pl);
    len += pl;
  }
  t->s = dupn(buf, len);
  t->slen = len;
  return t;
}

/* A number as its plain value text; serialization re-spells it. */
static tnode_t *gen_number(void) {
  tnode_t *t = tnew(T_NUM);
  char buf[64];
  switch (rn(4)) {
  case 0: snprintf(buf, sizeof buf, "%d", (int)rn(5)); break;
  case 1: snprintf(buf, sizeof buf, "-%d", (int)rn(100000)); break;
  case 2:
    snprintf(buf, sizeof buf, "%d.%d", (int)rn(100), (int)rn(100) + 1);
    break;
  default: /* beyond 2^53: neighbours must stay distinct */
    snprintf(buf, sizeof buf, "90071992547409%d", (int)rn(10) + 90);
  }
  t->s = dupn(buf, strlen(buf));
  t->slen = strlen(buf);
  return t;
}

static tnode_t *gen(int depth) {
  size_t k = rn(depth > 3 ? 4 : 7);
  switch (k) {
  case 0: return tnew(T_NULL);
  case 1: {
    tnode_t *t = tnew(T_BOOL);
    t->b = (int)rn(2);
    return t;
  }
  case 2: return gen_number();
  case 3: return gen_string();
  case 4:
  case 5: {
    tnode_t *t = tnew(T_ARR);
    size_t n = rn(6);
    for (size_t i = 0; i < n; i++)
      tpush(t, NULL, 0, gen(depth + 1), t->n);
    return t;
  }
  default: {
    tnode_t *t = tnew(T_OBJ);
    size_t n = rn(6);
    for (size_t i = 0; i < n; i++) {
      const char *key = keyset[rn(sizeof keyset / sizeof *keyset)];
      if (tfind(t, key, strlen(key)) < 0)
        tpush(t, key, strlen(key), gen(depth + 1), t->n);
    }
    return t;
  }
  }
}

/* Changes t in place, in ways a real candidate would differ. */
static void mutate(tnode_t **tp, int depth) {
  tnode_t *t = *tp;
  size_t r = rn(10);
  if (r == 0 || (t->type < T_ARR && r < 4)) {
    tfree(t);
    *tp = gen(depth);
    return;
  }
  if (t->type == T_ARR) {
    if (r == 4 && t->n) {
      tdel(t, rn(t->n));
      return;
    }
    if (r == 5) {
      tpush(t, NULL, 0, gen(depth + 1), t->n);
      return;
    }
    if (r == 6) {
      while (t->n > 1 && rn(2))
        tdel(t, t->n - 1);
      return;
    }
    if (r == 7) {
      tpush(t, NULL, 0, gen(depth + 1), rn(t->n + 1));
      return;
    }
  } else if (t->type == T_OBJ) {
    if (r == 4 && t->n) {
      tdel(t, rn(t->n));
      return;
    }
    if (r == 5) {
      const char *key = keyset[rn(sizeof keyset / sizeof *keyset)];
      if (tfind(t, key, strlen(key)) < 0)
        tpush(t, key, strlen(key), gen(depth + 1), t->n);
      return;
    }
  }
  for (size_t i = 0; i < t->n; i++)
    if (rn(3) == 0) mutate(&t->kids[i], depth + 1);
}

/* ---- serialization, with random but equivalent spellings --------------- */

static void put_num(shadow_buf_t *b, const tnode_t *t, int respell) {
  if (!respell || rn(3) == 0) {
    shadow_buf_append(b, t->s, t->slen);
    return;
  }
  canon_t c;
  canon(t->s, t->slen, &c);
  const char *sign = c.neg ? "-" : "";
  if (!c.d[0]) {
    const char *zeros[] = {"0", "0.0", "-0", "0e5", "0.000E-2"};
    shadow_buf_puts(b, zeros[rn(5)]);
    return;
  }
  switch (rn(4)) {
  case 0: shadow_buf_printf(b, "%s%s0e%ld", sign, c.d, c.exp - 1); break;
  case 1:
    shadow_buf_printf(b, "%s0.%se%ld", sign, c.d, c.exp + (long)strlen(c.d));
    break;
  case 2:
    shadow_buf_printf(b, "%s%c.%s00E%+ld", sign, c.d[0], c.d + 1,
                      c.exp + (long)strlen(c.d) - 1);
    break;
  default: shadow_buf_printf(b, "%s%sE%ld", sign, c.d, c.exp); break;
  }
}

static void put_str(shadow_buf_t *b, const char *s, size_t n, int respell) {
  if (!respell) {
    shadow_buf_json_string(b, s, n, 0);
    return;
  }
  const unsigned char *p = (const unsigned char *)s;
  shadow_buf_putc(b, '"');
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    unsigned cp = l == 1 ? c : c & (0xFF >> (l + 1));
    for (size_t j = 1; j < l; j++)
      cp = (cp << 6) | (p[i + j] & 0x3F);
    if (c == '"' || c == '\\' || c < 0x20 || rn(3) == 0) {
      if (c == '/' && rn(2))
        shadow_buf_puts(b, "\\/");
      else if (cp >= 0x10000)
        shadow_buf_printf(b, "\\u%04X\\u%04x", 0xD800 + ((cp - 0x10000) >> 10),
                          0xDC00 + ((cp - 0x10000) & 0x3FF));
      else
        shadow_buf_printf(b, rn(2) ? "\\u%04x" : "\\u%04X", cp);
    } else {
      shadow_buf_append(b, p + i, l);
    }
    i += l;
  }
  shadow_buf_putc(b, '"');
}

static void ws(shadow_buf_t *b, int respell) {
  if (respell && rn(4) == 0) shadow_buf_puts(b, rn(2) ? " " : "\n\t ");
}

static void ser(shadow_buf_t *b, const tnode_t *t, int respell) {
  ws(b, respell);
  switch (t->type) {
  case T_NULL: shadow_buf_puts(b, "null"); break;
  case T_BOOL: shadow_buf_puts(b, t->b ? "true" : "false"); break;
  case T_NUM: put_num(b, t, respell); break;
  case T_STR: put_str(b, t->s, t->slen, respell); break;
  case T_ARR:
    shadow_buf_putc(b, '[');
    for (size_t i = 0; i < t->n; i++) {
      if (i) shadow_buf_putc(b, ',');
      ser(b, t->kids[i], respell);
    }
    ws(b, respell);
    shadow_buf_putc(b, ']');
    break;
  default: {
    /* A shuffled member order when re-spelling. */
    size_t order[64];
    for (size_t i = 0; i < t->n; i++)
      order[i] = i;
    if (respell)
      for (size_t i = t->n; i > 1; i--) {
        size_t j = rn(i), tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
      }
    shadow_buf_putc(b, '{');
    /* Re-spelled objects may repeat a key: earlier members with random
     * values, which the last member overrides. */
    size_t decoys = 0;
    for (size_t i = 0; respell && i < t->n; i++) {
      if (rn(8)) continue;
      tnode_t *d = gen(3);
      if (decoys++) shadow_buf_putc(b, ',');
      put_str(b, t->keys[i], t->klens[i], respell);
      shadow_buf_putc(b, ':');
      ser(b, d, respell);
      tfree(d);
    }
    for (size_t i = 0; i < t->n; i++) {
      if (i || decoys) shadow_buf_putc(b, ',');
      ws(b, respell);
      put_str(b, t->keys[order[i]], t->klens[order[i]], respell);
      ws(b, respell);
      shadow_buf_putc(b, ':');
      ser(b, t->kids[order[i]], respell);
    }
    ws(b, respell);
    shadow_buf_putc(b, '}');
  }
  }
  ws(b, respell);
}

static int failures;

static void dump(const char *what, const tnode_t *t) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  ser(&b, t, 0);
  fprintf(stderr, "  %s: %s\n", what, b.data);
  shadow_buf_free(&b);
}

/* Diffs the two texts and applies the ops to a copy of prim; mode 0 wants
 * the candidate exactly, 1 and 2 up to set or multiset equivalence of the
 * arrays the rules name. */
static long check_pair(const tnode_t *prim, const tnode_t *cand, const char *pt,
                       size_t pl, const char *ct, size_t cl,
                       const shadow_json_rules_t *rules, int mode) {
  shadow_buf_t ops = SHADOW_BUF_INIT, fields = SHADOW_BUF_INIT;
  shadow_json_diff_out_t out = {&ops, &fields, 0, 0, 0, 0, {0, 0}, NULL, NULL};
  char err[128];
  int rc = shadow_json_diff(pt, pl, ct, cl, rules, &out, err, sizeof err);
  if (rc) {
    fprintf(stderr, "diff failed: %d %s\n  %s\n  %s\n", rc, err, pt, ct);
    failures++;
    return -1;
  }
  tnode_t *cur = tcopy(prim);
  size_t nf = 0;
  for (size_t i = 0; i < fields.len; i++)
    nf += fields.data[i] == '\0';
  long applied = apply_ops(&cur, ops.data, ops.len);
  int bad = applied < 0 || (size_t)applied != out.nops || nf != out.nops;
  if (!bad && !(mode ? teq_mode(cur, cand, 0, mode) : teq(cur, cand))) bad = 1;
  if (bad) {
    fprintf(stderr,
            "patch does not give the candidate (mode %d)\n"
            "  ops: %s\n",
            mode, ops.data ? ops.data : "");
    dump("primary", prim);
    dump("candidate", cand);
    dump("patched", cur);
    failures++;
  }
  tfree(cur);
  shadow_buf_free(&ops);
  shadow_buf_free(&fields);
  return bad ? -1 : (long)out.nops;
}

/* ---- arrays: inserts, deletes and moves ------------------------------ */

/* An element of a test array: mostly records with an id, as APIs answer,
 * and some small values, which repeat. */
static tnode_t *gen_element(size_t id) {
  if (rn(3) == 0) return gen(2);
  tnode_t *t = tnew(T_OBJ), *v = tnew(T_NUM);
  char buf[32];
  snprintf(buf, sizeof buf, "%zu", id);
  v->s = dupn(buf, strlen(buf));
  v->slen = strlen(buf);
  tpush(t, "id", 2, v, 0);
  tpush(t, "name", 4, gen_string(), 1);
  if (rn(2)) tpush(t, "tags", 4, gen(2), 2);
  return t;
}

enum { ED_INSERT, ED_DELETE, ED_MOVE, ED_CHANGE };

/* One edit of array a at a random place; returns which, or -1 when the
 * array is too short for it. */
static int edit(tnode_t *a, int kind, size_t *next_id) {
  if (kind == ED_INSERT) {
    tpush(a, NULL, 0, gen_element((*next_id)++), rn(a->n + 1));
    return kind;
  }
  if (!a->n) return -1;
  size_t i = rn(a->n);
  if (kind == ED_DELETE) {
    tdel(a, i);
    return kind;
  }
  if (kind == ED_MOVE) {
    tnode_t *v = a->kids[i];
    memmove(a->kids + i, a->kids + i + 1, (a->n - i - 1) * sizeof *a->kids);
    a->n--;
    tpush(a, NULL, 0, v, rn(a->n + 1));
    return kind;
  }
  mutate(&a->kids[i], 2);
  return kind;
}

/* A document around the array: at the root, or some levels down beside
 * other members, so paths and shared spans around it vary. */
static tnode_t *wrap(tnode_t *arr, int how) {
  if (how == 0) return arr;
  tnode_t *root = tnew(T_OBJ);
  tnode_t *meta = gen(2);
  tpush(root, "meta", 4, meta, 0);
  if (how == 1) {
    tpush(root, "items", 5, arr, 1);
  } else {
    tnode_t *mid = tnew(T_OBJ);
    tpush(mid, "a/b", 3, arr, 0);
    tpush(root, "m~n", 3, mid, 1);
  }
  tpush(root, "z", 1, gen(2), root->n);
  return root;
}

typedef struct {
  size_t pairs, single[3], single_ops[3], max_single_ops, multi, ops;
} array_stats_t;

static void array_round(array_stats_t *st) {
  size_t n = rn(1001), next_id = 0;
  tnode_t *arr = tnew(T_ARR);
  for (size_t i = 0; i < n; i++)
    tpush(arr, NULL, 0, gen_element(next_id++), arr->n);
  tnode_t *cand = tcopy(arr);
  int single = rn(2) == 0, kind = -1;
  if (single) {
    kind = edit(cand, (int)rn(3), &next_id);
  } else {
    size_t k = 1 + rn(20);
    while (k--)
      edit(cand, (int)rn(4), &next_id);
  }
  int how = (int)rn(3);
  tnode_t *p = wrap(arr, how), *c = wrap(cand, 0);
  if (how) {
    /* The same surroundings on both sides. */
    tnode_t *pc = tcopy(p);
    tnode_t **slot = how == 1 ? &pc->kids[1] : &pc->kids[1]->kids[0];
    tfree(*slot);
    *slot = c;
    c = pc;
  }
  /* Half the pairs spelled alike, so all but the edits is byte-identical
   * (the shared spans are left unparsed), half re-spelled. */
  int respell = (int)rn(2);
  shadow_buf_t pt = SHADOW_BUF_INIT, ct = SHADOW_BUF_INIT;
  ser(&pt, p, respell);
  ser(&ct, c, respell);
  long ops = check_pair(p, c, pt.data, pt.len, ct.data, ct.len, NULL, 0);
  st->pairs++;
  if (ops >= 0) st->ops += (size_t)ops;
  if (single && kind >= 0 && ops >= 0) {
    st->single[kind]++;
    st->single_ops[kind] += (size_t)ops;
    if ((size_t)ops > st->max_single_ops) st->max_single_ops = (size_t)ops;
    if (ops > 2) {
      fprintf(stderr, "one %s in %zu elements gave %ld ops\n",
              kind == ED_INSERT   ? "insert"
              : kind == ED_DELETE ? "delete"
                                  : "move",
              n, ops);
      failures++;
    }
  } else if (!single) {
    st->multi++;
  }
  shadow_buf_free(&pt);
  shadow_buf_free(&ct);
  tfree(p);
  tfree(c);
}

int main(void) {
  const int rounds = 5000, array_rounds = 2000;
  size_t total_ops = 0, same_checked = 0;
  shadow_json_rules_t *set_rules = shadow_json_rules_new();
  shadow_json_rules_t *multi_rules = shadow_json_rules_new();
  if (!set_rules || !multi_rules ||
      shadow_json_rules_array(set_rules, "", SHADOW_ARRAY_SET, NULL) ||
      shadow_json_rules_array(set_rules, "/*", SHADOW_ARRAY_SET, NULL) ||
      shadow_json_rules_array(multi_rules, "", SHADOW_ARRAY_MULTISET, NULL) ||
      shadow_json_rules_array(multi_rules, "/*", SHADOW_ARRAY_MULTISET, NULL))
    abort();
  int done_rounds = 0;
  for (int i = 0; i < rounds && failures < 5; i++, done_rounds++) {
    /* Roots are containers: that is where paths and order matter. */
    tnode_t *p = gen(0), *c;
    while (p->type < T_ARR) {
      tfree(p);
      p = gen(0);
    }
    if (rn(5) == 0) {
      c = gen(0);
    } else {
      c = tcopy(p);
      int m = 1 + (int)rn(4);
      while (m--)
        mutate(&c, 0);
    }
    /* Re-spelled (other spellings, key orders, repeated keys), and spelled
     * alike, where what did not change is byte-identical. */
    for (int respell = 1; respell >= 0; respell--) {
      shadow_buf_t pt = SHADOW_BUF_INIT, ct = SHADOW_BUF_INIT;
      ser(&pt, p, respell);
      ser(&ct, c, respell);
      long ops = check_pair(p, c, pt.data, pt.len, ct.data, ct.len, NULL, 0);
      if (ops > 0) total_ops += (size_t)ops;
      /* The same pair with the top arrays as sets, then as multisets. */
      check_pair(p, c, pt.data, pt.len, ct.data, ct.len, set_rules, 1);
      check_pair(p, c, pt.data, pt.len, ct.data, ct.len, multi_rules, 2);
      shadow_buf_free(&pt);
      shadow_buf_free(&ct);
    }

    /* The same document, re-spelled and key-shuffled: no ops. */
    shadow_buf_t pt = SHADOW_BUF_INIT, again = SHADOW_BUF_INIT;
    ser(&pt, p, 1);
    ser(&again, p, 1);
    shadow_json_diff_out_t out = {NULL, NULL, 0, 0, 0, 0, {0, 0}, NULL, NULL};
    int rc = shadow_json_diff(pt.data, pt.len, again.data, again.len, NULL,
                              &out, NULL, 0);
    if (rc || out.nops) {
      fprintf(stderr, "self diff gave %zu ops (rc %d)\n  %s\n  %s\n", out.nops,
              rc, pt.data, again.data);
      failures++;
    }
    same_checked++;
    shadow_buf_free(&again);
    shadow_buf_free(&pt);
    tfree(p);
    tfree(c);
  }
  array_stats_t st;
  memset(&st, 0, sizeof st);
  for (int i = 0; i < array_rounds && failures < 5; i++)
    array_round(&st);
  shadow_json_rules_free(set_rules);
  shadow_json_rules_free(multi_rules);
  printf("test_json_patch_property: %d pairs (each re-spelled and spelled "
         "alike; by index, as sets and as multisets), %zu ops applied, %zu "
         "self checks; %zu arrays of up to 1000 elements: %zu single inserts "
         "(%zu ops), %zu deletes (%zu ops), %zu moves (%zu ops), at most %zu "
         "ops for one, %zu with up to 20 edits, %zu ops applied; %d "
         "failures\n",
         done_rounds, total_ops, same_checked, st.pairs, st.single[ED_INSERT],
         st.single_ops[ED_INSERT], st.single[ED_DELETE],
         st.single_ops[ED_DELETE], st.single[ED_MOVE], st.single_ops[ED_MOVE],
         st.max_single_ops, st.multi, st.ops, failures);
  return failures ? 1 : 0;
}
