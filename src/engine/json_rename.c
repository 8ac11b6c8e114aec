/* Renames (json_rename.h). Each rename, shallowest target first, finds
 * every member its source names in the primary as it is now (wildcards
 * bound to the keys and indexes met), then moves each by its concrete
 * paths, looked up again from the root: a move reallocates member arrays,
 * so a node found before it may have moved. A member that stays in its
 * object only changes its key, in place; one that changes object is taken
 * out of its member array and added to the other's (a new array from the
 * arena), with objects created on the way. Every container on the way to
 * a change is marked EDITED, which is all the diff needs to know: its
 * bytes no longer say what it holds. Pure. */
#include "json_rename.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A concrete segment: an object key (key not NULL), or an array index;
 * a rule's literal segment carries both, for whichever it meets. */
typedef struct {
  const char *key;
  uint32_t klen;
  long idx;
} cseg_t;

typedef struct {
  shadow_json_rename_t *c;
  const rename_t *rn;
  int rc;
  int sibling;           /* from and to differ in their last segment only */
  int moved;             /* members the sibling path renamed in place */
  cseg_t *stack;         /* the source path being walked, one per segment */
  cseg_t *bind;          /* what each wildcard bound, in order */
  shadow_json_t **nodes; /* the containers on the way, root first */
  /* The matches: each from.nseg + to.nseg concrete segments. */
  cseg_t *m;
  size_t mn, mcap;
} ren_t;

static int open_node(ren_t *x, shadow_json_t *v, int depth) {
  if (!(v->flags & SHADOW_JSON_LAZY)) return 0;
  size_t off = 0;
  const char *why = NULL;
  int rc = shadow_json_materialize(x->c->arena, v, depth, &off, &why);
  if (rc) {
    x->rc = rc;
    if (rc == -EINVAL) {
      x->c->bad_raw = v->raw;
      x->c->bad_off = off;
      x->c->why = why;
    }
  }
  return rc;
}

static long find(const shadow_json_t *o, const char *key, size_t klen) {
  return shadow_json_member_find(o, key, klen);
}

/* A member is live when it is its key's last one. */
static int live(const shadow_json_t *o, uint32_t i) {
  if (!(o->flags & SHADOW_JSON_DUPS)) return 1;
  const shadow_json_member_t *m = &o->u.members[i];
  return find(o, m->key, m->klen) == (long)i;
}

static shadow_json_t *child_of(shadow_json_t *v, const cseg_t *s) {
  if (v->type == SHADOW_JSON_OBJECT) {
    if (!s->key) return NULL;
    long i = find(v, s->key, s->klen);
    return i < 0 ? NULL : &v->u.members[i].value;
  }
  if (v->type == SHADOW_JSON_ARRAY && s->idx >= 0 && s->idx < (long)v->len)
    return &v->u.items[s->idx];
  return NULL;
}

static cseg_t literal(const seg_t *sg) {
  cseg_t c = {sg->s, (uint32_t)sg->len, sg->idx};
  return c;
}

/* Keeps the match the stack and bindings spell. */
static void record(ren_t *x) {
  int nf = x->rn->from.nseg, nt = x->rn->to.nseg;
  size_t need = (x->mn + 1) * (size_t)(nf + nt);
  if (need > x->mcap) {
    size_t cap = x->mcap ? x->mcap * 2 : (size_t)(nf + nt) * 16;
    while (cap < need)
      cap *= 2;
    cseg_t *m = realloc(x->m, cap * sizeof *m);
    if (!m) {
      x->rc = -ENOMEM;
      return;
    }
    x->m = m;
    x->mcap = cap;
  }
  cseg_t *o = x->m + x->mn * (size_t)(nf + nt);
  memcpy(o, x->stack, (size_t)nf * sizeof *o);
  int b = 0;
  for (int i = 0; i < nt; i++) {
    const seg_t *sg = &x->rn->to.segs[i];
    o[nf + i] = sg->star ? x->bind[b++] : literal(sg);
  }
  x->mn++;
}

static void explain(ren_t *x, const cseg_t *f, int nf, const cseg_t *t, int nt,
                    const char *why);

/* A rename within one object (only the last segment changes, the common
 * case), done where collect finds it: a new key in place moves nothing,
 * so the nodes on the way stay where they are. Returns 0 when the member
 * must go the general way (a repeated key). */
static int rename_here(ren_t *x, shadow_json_t *v, uint32_t i, int depth) {
  if (v->flags & SHADOW_JSON_DUPS) return 0;
  const seg_t *tk = &x->rn->to.segs[depth];
  int nf = x->rn->from.nseg;
  if (find(v, tk->s, tk->len) >= 0) {
    if (x->c->explain) {
      cseg_t *to = x->bind + x->rn->stars; /* scratch after the bindings */
      memcpy(to, x->stack, (size_t)nf * sizeof *to);
      to[depth] = literal(tk);
      explain(x, x->stack, nf, to, nf,
              "the primary already has a value at the target");
    }
    return 1;
  }
  v->u.members[i].key = tk->s;
  v->u.members[i].klen = (uint32_t)tk->len;
  for (int k = 0; k <= depth; k++)
    x->nodes[k]->flags |= SHADOW_JSON_EDITED;
  x->moved++;
  if (x->c->explain) {
    cseg_t *to = x->bind + x->rn->stars;
    memcpy(to, x->stack, (size_t)nf * sizeof *to);
    to[depth] = literal(tk);
    explain(x, x->stack, nf, to, nf, NULL);
  }
  return 1;
}

/* Walks the source path from v, the node at its first depth segments. */
static void collect(ren_t *x, shadow_json_t *v, int depth, int nb) {
  if (x->rc || open_node(x, v, depth)) return;
  x->nodes[depth] = v;
  const seg_t *sg = &x->rn->from.segs[depth];
  int last = depth == x->rn->from.nseg - 1;
  if (v->type == SHADOW_JSON_OBJECT) {
    for (uint32_t i = 0; i < v->len && !x->rc; i++) {
      shadow_json_member_t *m = &v->u.members[i];
      if (sg->star) {
        if (!live(v, i)) continue;
      } else if (m->klen != sg->len || memcmp(m->key, sg->s, sg->len) ||
                 !live(v, i)) {
        continue;
      }
      cseg_t c = {m->key, m->klen, -1};
      x->stack[depth] = c;
      if (sg->star) x->bind[nb] = c;
      if (last) {
        if (!x->sibling || !rename_here(x, v, i, depth)) record(x);
        if (x->sibling && !sg->star) break; /* its only member */
      } else {
        collect(x, &m->value, depth + 1, nb + sg->star);
      }
    }
  } else if (v->type == SHADOW_JSON_ARRAY && !last) {
    /* A rename moves object members; an array is only on the way. */
    uint32_t from = 0, to = v->len;
    if (!sg->star) {
      if (sg->idx < 0 || sg->idx >= (long)v->len) return;
      from = (uint32_t)sg->idx;
      to = from + 1;
    }
    for (uint32_t i = from; i < to && !x->rc; i++) {
      cseg_t c = {NULL, 0, (long)i};
      x->stack[depth] = c;
      if (sg->star) x->bind[nb] = c;
      collect(x, &v->u.items[i], depth + 1, nb + sg->star);
    }
  }
}

/* The node at p[0, n) from root, lazy nodes on the way parsed; NULL when
 * the path is not there. */
static shadow_json_t *resolve(ren_t *x, shadow_json_t *root, const cseg_t *p,
                              int n) {
  shadow_json_t *cur = root;
  for (int i = 0; i < n && cur; i++) {
    if (open_node(x, cur, i)) return NULL;
    cur = child_of(cur, &p[i]);
  }
  if (cur && open_node(x, cur, n)) return NULL;
  return cur;
}

/* Marks root and the containers at p[0, n) EDITED, with HAS_LAZY too
 * when what was moved there may hold a lazy node. */
static void mark(shadow_json_t *root, const cseg_t *p, int n, uint8_t extra) {
  shadow_json_t *cur = root;
  for (int i = 0; cur; i++) {
    cur->flags |= (uint8_t)(SHADOW_JSON_EDITED | extra);
    if (i == n) break;
    cur = child_of(cur, &p[i]);
  }
}

static void remove_key(shadow_json_t *o, const char *key, size_t klen) {
  uint32_t j = 0;
  for (uint32_t i = 0; i < o->len; i++) {
    shadow_json_member_t *m = &o->u.members[i];
    if (m->klen == klen && memcmp(m->key, key, klen) == 0) continue;
    o->u.members[j++] = *m;
  }
  o->len = j;
}

static shadow_json_t *add_member(ren_t *x, shadow_json_t *o, const cseg_t *k,
                                 const shadow_json_t *val) {
  shadow_json_member_t *m =
      shadow_json_arena_alloc(x->c->arena, ((size_t)o->len + 1) * sizeof *m);
  if (!m) {
    x->rc = -ENOMEM;
    return NULL;
  }
  if (o->len) memcpy(m, o->u.members, (size_t)o->len * sizeof *m);
  m[o->len].key = k->key;
  m[o->len].klen = k->klen;
  m[o->len].value = *val;
  o->u.members = m;
  return &m[o->len++].value;
}

static void write_path(shadow_buf_t *b, const cseg_t *p, int n) {
  shadow_buf_t t = SHADOW_BUF_INIT;
  for (int i = 0; i < n; i++) {
    if (!p[i].key) {
      shadow_buf_printf(&t, "/%ld", p[i].idx);
      continue;
    }
    shadow_buf_putc(&t, '/');
    for (uint32_t j = 0; j < p[i].klen; j++) {
      char c = p[i].key[j];
      if (c == '~')
        shadow_buf_puts(&t, "~0");
      else if (c == '/')
        shadow_buf_puts(&t, "~1");
      else if (c == '\0')
        shadow_buf_puts(&t, "~2"); /* as json_diff writes it (field.h) */
      else
        shadow_buf_putc(&t, c);
    }
  }
  shadow_buf_json_string(b, t.data ? t.data : "", t.len, 0);
  shadow_buf_free(&t);
}

static void explain(ren_t *x, const cseg_t *f, int nf, const cseg_t *t, int nt,
                    const char *why) {
  shadow_buf_t *b = x->c->explain;
  if (!b) return;
  shadow_buf_printf(
      b, "{\"kind\":\"%s\",\"from\":", why ? "not_renamed" : "renamed");
  write_path(b, f, nf);
  shadow_buf_puts(b, ",\"path\":");
  write_path(b, t, nt);
  shadow_buf_puts(b, ",\"rule\":");
  shadow_buf_json_string(b, x->rn->name, strlen(x->rn->name), 0);
  if (why) {
    shadow_buf_puts(b, ",\"why\":");
    shadow_buf_json_string(b, why, strlen(why), 0);
  }
  if (shadow_buf_puts(b, "}\n")) x->rc = -ENOMEM;
}

/* Moves the member at f to t (each concrete), unless the target is taken
 * or has no object to go in. Returns 1 when it moved. */
static int move(ren_t *x, shadow_json_t *root, const cseg_t *f, int nf,
                const cseg_t *t, int nt) {
  shadow_json_t *p = resolve(x, root, f, nf - 1);
  if (!p || p->type != SHADOW_JSON_OBJECT) return 0;
  const cseg_t *fk = &f[nf - 1], *tk = &t[nt - 1];
  long mi = find(p, fk->key, fk->klen);
  if (mi < 0) return 0;
  /* Where the target's object is, or the deepest node on the way. */
  shadow_json_t *cur = root;
  int i = 0;
  for (; i < nt - 1; i++) {
    if (open_node(x, cur, i)) return 0;
    shadow_json_t *nx = child_of(cur, &t[i]);
    if (!nx) break;
    cur = nx;
  }
  if (open_node(x, cur, i)) return 0;
  const char *why = NULL;
  if (cur->type != SHADOW_JSON_OBJECT || !tk->key) {
    why = "the primary has no object at the target to hold it";
  } else if (i < nt - 1) {
    for (int j = i; j < nt - 1; j++)
      if (!t[j].key) why = "the primary has no object at the target to hold it";
  } else if (find(cur, tk->key, tk->klen) >= 0) {
    why = "the primary already has a value at the target";
  }
  if (why) {
    explain(x, f, nf, t, nt, why);
    return 0;
  }
  shadow_json_t val = p->u.members[mi].value;
  uint8_t lazy = (val.flags & (SHADOW_JSON_LAZY | SHADOW_JSON_HAS_LAZY))
                     ? SHADOW_JSON_HAS_LAZY
                     : 0;
  if (i == nt - 1 && cur == p && !(p->flags & SHADOW_JSON_DUPS)) {
    /* The common case: a new key in the same object. */
    p->u.members[mi].key = tk->key;
    p->u.members[mi].klen = tk->klen;
    mark(root, f, nf - 1, 0);
    explain(x, f, nf, t, nt, NULL);
    return 1;
  }
  remove_key(p, fk->key, fk->klen);
  mark(root, f, nf - 1, 0);
  /* Looked up again: taking the member out moved its siblings. */
  cur = root;
  for (i = 0; i < nt - 1 && !x->rc; i++) {
    shadow_json_t *nx = child_of(cur, &t[i]);
    if (!nx) {
      shadow_json_t obj;
      memset(&obj, 0, sizeof obj);
      obj.type = SHADOW_JSON_OBJECT;
      obj.raw = "{}";
      obj.rawlen = 2;
      obj.flags = SHADOW_JSON_EDITED;
      nx = add_member(x, cur, &t[i], &obj);
    }
    cur = nx;
  }
  if (x->rc || !cur) return 0;
  if (!add_member(x, cur, tk, &val)) return 0;
  mark(root, t, nt - 1, lazy);
  explain(x, f, nf, t, nt, NULL);
  return 1;
}

int shadow_json_renames_apply(const shadow_json_rules_t *r, shadow_json_t *root,
                              shadow_json_rename_t *c) {
  c->hits = 0;
  if (!r || r->nren == 0) return 0;
  /* Shallowest target first, so a rename into an object another rename
   * creates or fills finds it there. */
  int order[SHADOW_JSON_MAX_RENAMES];
  for (int i = 0; i < r->nren; i++) {
    int j = i;
    while (j > 0 && r->ren[order[j - 1]].to.nseg > r->ren[i].to.nseg) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
  ren_t x;
  memset(&x, 0, sizeof x);
  x.c = c;
  for (int k = 0; k < r->nren && !x.rc; k++) {
    const rename_t *rn = &r->ren[order[k]];
    int nf = rn->from.nseg, nt = rn->to.nseg;
    x.rn = rn;
    x.mn = 0;
    x.moved = 0;
    /* Sibling: the same path to the same object, a new last key. */
    x.sibling =
        nf == nt && !rn->from.segs[nf - 1].star && !rn->to.segs[nt - 1].star;
    for (int i = 0; x.sibling && i < nf - 1; i++)
      x.sibling = rn->from.segs[i].star == rn->to.segs[i].star &&
                  (rn->from.segs[i].star ||
                   (rn->from.segs[i].len == rn->to.segs[i].len &&
                    memcmp(rn->from.segs[i].s, rn->to.segs[i].s,
                           rn->to.segs[i].len) == 0));
    /* The path, the bindings, and scratch for a target path. */
    x.stack = calloc((size_t)nf * 2 + (size_t)rn->stars + 1, sizeof(cseg_t));
    x.nodes = calloc((size_t)nf + 1, sizeof *x.nodes);
    if (!x.stack || !x.nodes) {
      free(x.stack);
      free(x.nodes);
      x.rc = -ENOMEM;
      break;
    }
    x.bind = x.stack + nf;
    collect(&x, root, 0, 0);
    if (x.moved) c->hits |= (uint64_t)1 << order[k];
    for (size_t i = 0; i < x.mn && !x.rc; i++) {
      const cseg_t *m = x.m + i * (size_t)(nf + nt);
      if (move(&x, root, m, nf, m + nf, nt)) c->hits |= (uint64_t)1 << order[k];
    }
    free(x.stack);
    free(x.nodes);
    x.stack = NULL;
    x.nodes = NULL;
  }
  free(x.m);
  return x.rc;
}
