/* The tests' own JSON Patch applier, shared by the property test and the
 * diff fuzz target: a mutable tree built from a parsed document (a repeated
 * key: the last member wins), RFC 6902 add, remove, replace and move over
 * it, and a plain writer. It shares no code with the diff it checks: only
 * the parser, to read documents and op lists. Header-only, static inline,
 * so each program takes what it uses. */
#ifndef SHADOW_SPEC_PATCH_APPLY_H
#define SHADOW_SPEC_PATCH_APPLY_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"

enum { T_NULL, T_BOOL, T_NUM, T_STR, T_ARR, T_OBJ };

typedef struct tnode_s tnode_t;
struct tnode_s {
  int type;
  int b;
  char *s; /* number text or string bytes */
  size_t slen;
  tnode_t **kids;
  char **keys; /* objects */
  size_t *klens;
  size_t n, cap;
};

static inline void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static inline char *dupn(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static inline tnode_t *tnew(int type) {
  tnode_t *t = calloc(1, sizeof *t);
  if (!t) abort();
  t->type = type;
  return t;
}

static inline void tfree(tnode_t *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) {
    tfree(t->kids[i]);
    if (t->keys) free(t->keys[i]);
  }
  free(t->kids);
  free(t->keys);
  free(t->klens);
  free(t->s);
  free(t);
}

static inline void tpush(tnode_t *t, const char *key, size_t klen, tnode_t *v,
                         size_t at) {
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 4;
    t->kids = realloc(t->kids, t->cap * sizeof *t->kids);
    if (t->type == T_OBJ) {
      t->keys = realloc(t->keys, t->cap * sizeof *t->keys);
      t->klens = realloc(t->klens, t->cap * sizeof *t->klens);
    }
  }
  memmove(t->kids + at + 1, t->kids + at, (t->n - at) * sizeof *t->kids);
  t->kids[at] = v;
  if (t->type == T_OBJ) {
    memmove(t->keys + at + 1, t->keys + at, (t->n - at) * sizeof *t->keys);
    memmove(t->klens + at + 1, t->klens + at, (t->n - at) * sizeof *t->klens);
    t->keys[at] = dupn(key, klen);
    t->klens[at] = klen;
  }
  t->n++;
}

static inline void tdel(tnode_t *t, size_t at) {
  tfree(t->kids[at]);
  memmove(t->kids + at, t->kids + at + 1, (t->n - at - 1) * sizeof *t->kids);
  if (t->type == T_OBJ) {
    free(t->keys[at]);
    memmove(t->keys + at, t->keys + at + 1, (t->n - at - 1) * sizeof *t->keys);
    memmove(t->klens + at, t->klens + at + 1,
            (t->n - at - 1) * sizeof *t->klens);
  }
  t->n--;
}

static inline long tfind(const tnode_t *t, const char *k, size_t kl) {
  for (size_t i = 0; i < t->n; i++)
    if (t->klens[i] == kl && memcmp(t->keys[i], k, kl) == 0) return (long)i;
  return -1;
}

static inline tnode_t *tcopy(const tnode_t *t) {
  tnode_t *c = tnew(t->type);
  c->b = t->b;
  if (t->s) c->s = dupn(t->s, t->slen);
  c->slen = t->slen;
  for (size_t i = 0; i < t->n; i++)
    tpush(c, t->keys ? t->keys[i] : NULL, t->keys ? t->klens[i] : 0,
          tcopy(t->kids[i]), c->n);
  return c;
}

static inline tnode_t *from_dom(const shadow_json_t *v) {
  tnode_t *t;
  switch (v->type) {
  case SHADOW_JSON_NULL: return tnew(T_NULL);
  case SHADOW_JSON_TRUE:
  case SHADOW_JSON_FALSE:
    t = tnew(T_BOOL);
    t->b = v->type == SHADOW_JSON_TRUE;
    return t;
  case SHADOW_JSON_NUMBER:
    t = tnew(T_NUM);
    t->s = dupn(v->raw, v->rawlen);
    t->slen = v->rawlen;
    return t;
  case SHADOW_JSON_STRING:
    t = tnew(T_STR);
    t->s = dupn(v->u.str, v->len);
    t->slen = v->len;
    return t;
  case SHADOW_JSON_ARRAY:
    t = tnew(T_ARR);
    for (uint32_t i = 0; i < v->len; i++)
      tpush(t, NULL, 0, from_dom(&v->u.items[i]), t->n);
    return t;
  default:
    /* A repeated key: the last member wins, as the diff reads it. */
    t = tnew(T_OBJ);
    for (uint32_t i = 0; i < v->len; i++) {
      const shadow_json_member_t *m = &v->u.members[i];
      long at = tfind(t, m->key, m->klen);
      if (at >= 0) {
        tfree(t->kids[at]);
        t->kids[at] = from_dom(&m->value);
      } else {
        tpush(t, m->key, m->klen, from_dom(&m->value), t->n);
      }
    }
    return t;
  }
}

static inline const shadow_json_t *member(const shadow_json_t *o,
                                          const char *k) {
  long i = shadow_json_member_find(o, k, strlen(k));
  return i < 0 ? NULL : &o->u.members[i].value;
}

/* Unescapes the next RFC 6901 segment of p into out; returns its end. */
static inline const char *next_seg(const char *p, const char *end, char *out,
                                   size_t *olen) {
  size_t n = 0;
  p++; /* '/' */
  while (p < end && *p != '/') {
    if (*p == '~' && p + 1 < end) {
      out[n++] = p[1] == '0' ? '~' : '/';
      p += 2;
    } else {
      out[n++] = *p++;
    }
  }
  *olen = n;
  return p;
}

static inline int parse_index(const char *s, size_t n, size_t *out) {
  if (!n || (n > 1 && s[0] == '0')) return -1;
  size_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (size_t)(s[i] - '0');
  }
  *out = v;
  return 0;
}

/* The index of the child seg names in t, or -1. */
static inline long locate(const tnode_t *t, const char *seg, size_t sl) {
  size_t idx;
  if (t->type == T_OBJ) return tfind(t, seg, sl);
  if (t->type == T_ARR && !parse_index(seg, sl, &idx) && idx < t->n)
    return (long)idx;
  return -1;
}

/* The container that holds the last segment of a non-empty path, with
 * that segment unescaped into seg; NULL when the path leads nowhere. */
static inline tnode_t *parent_of(tnode_t *root, const char *path, size_t plen,
                                 char *seg, size_t *sl) {
  const char *end = path + plen, *p = path;
  tnode_t *cur = root;
  for (;;) {
    if (*p != '/') return NULL;
    p = next_seg(p, end, seg, sl);
    if (p == end) return cur->type >= T_ARR ? cur : NULL;
    long at = locate(cur, seg, *sl);
    if (at < 0) return NULL;
    cur = cur->kids[at];
  }
}

/* Takes the node at path out of the document (RFC 6902 remove). */
static inline tnode_t *take(tnode_t **root, const char *path, size_t plen) {
  size_t sl;
  if (plen == 0) return NULL;
  char *seg = xmalloc(plen);
  tnode_t *par = parent_of(*root, path, plen, seg, &sl);
  long at = par ? locate(par, seg, sl) : -1;
  free(seg);
  if (at < 0) return NULL;
  tnode_t *v = par->kids[at];
  par->kids[at] = tnew(T_NULL); /* tdel frees what it removes */
  tdel(par, (size_t)at);
  return v;
}

/* Puts v at path (RFC 6902 add): inserts into an array, sets a member. */
static inline int put(tnode_t **root, const char *path, size_t plen,
                      tnode_t *v) {
  size_t sl, idx;
  if (plen == 0) {
    tfree(*root);
    *root = v;
    return 0;
  }
  char *seg = xmalloc(plen);
  int rc = 0;
  tnode_t *par = parent_of(*root, path, plen, seg, &sl);
  if (!par) {
    rc = -1;
  } else if (par->type == T_ARR) {
    if (parse_index(seg, sl, &idx) || idx > par->n)
      rc = -1;
    else
      tpush(par, NULL, 0, v, idx);
  } else {
    long at = tfind(par, seg, sl);
    if (at >= 0) {
      tfree(par->kids[at]);
      par->kids[at] = v;
    } else {
      tpush(par, seg, sl, v, par->n);
    }
  }
  free(seg);
  return rc;
}

/* Applies one op (value: the op's candidate; from: a move's source);
 * returns 0 or -1 when the op does not apply. */
static inline int apply(tnode_t **root, const char *op, const char *path,
                        size_t plen, const shadow_json_t *from,
                        const shadow_json_t *value) {
  if (!strcmp(op, "move")) {
    if (!from || from->type != SHADOW_JSON_STRING) return -1;
    /* A path inside the moved value is no place to move it to. */
    if (plen > from->len && !memcmp(path, from->u.str, from->len) &&
        path[from->len] == '/')
      return -1;
    tnode_t *v = take(root, from->u.str, from->len);
    if (!v) return -1;
    if (put(root, path, plen, v)) {
      tfree(v);
      return -1;
    }
    return 0;
  }
  if (!strcmp(op, "remove")) {
    tnode_t *v = take(root, path, plen);
    if (!v) return -1;
    tfree(v);
    return 0;
  }
  if (!value) return -1;
  if (!strcmp(op, "add")) {
    tnode_t *v = from_dom(value);
    if (put(root, path, plen, v)) {
      tfree(v);
      return -1;
    }
    return 0;
  }
  if (strcmp(op, "replace")) return -1;
  if (plen == 0) {
    tfree(*root);
    *root = from_dom(value);
    return 0;
  }
  size_t sl;
  char *seg = xmalloc(plen);
  tnode_t *par = parent_of(*root, path, plen, seg, &sl);
  long at = par ? locate(par, seg, sl) : -1;
  free(seg);
  if (at < 0) return -1;
  tfree(par->kids[at]);
  par->kids[at] = from_dom(value);
  return 0;
}

/* Applies a list of ops, the diff's output (comma-separated objects), to
 * *root; returns how many, or -1 when the list does not parse or an op
 * does not apply. */
static inline long apply_ops(tnode_t **root, const char *ops, size_t len) {
  shadow_buf_t list = SHADOW_BUF_INIT;
  shadow_buf_putc(&list, '[');
  shadow_buf_append(&list, ops ? ops : "", ops ? len : 0);
  shadow_buf_putc(&list, ']');
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t arr;
  long n = -1;
  if (!shadow_json_parse(&arena, list.data, list.len, &arr, NULL, NULL) &&
      arr.type == SHADOW_JSON_ARRAY) {
    n = (long)arr.len;
    for (uint32_t i = 0; i < arr.len; i++) {
      const shadow_json_t *o = &arr.u.items[i];
      const shadow_json_t *op = member(o, "op"), *path = member(o, "path");
      char name[16];
      if (!op || !path || op->type != SHADOW_JSON_STRING ||
          path->type != SHADOW_JSON_STRING) {
        n = -1;
        break;
      }
      snprintf(name, sizeof name, "%.*s", (int)op->len, op->u.str);
      if (apply(root, name, path->u.str, path->len, member(o, "from"),
                member(o, "candidate"))) {
        n = -1;
        break;
      }
    }
  }
  shadow_json_arena_free(&arena);
  shadow_buf_free(&list);
  return n;
}

/* Writes t as compact JSON, numbers as they were written. */
static inline void tnode_write(shadow_buf_t *b, const tnode_t *t) {
  switch (t->type) {
  case T_NULL: shadow_buf_puts(b, "null"); break;
  case T_BOOL: shadow_buf_puts(b, t->b ? "true" : "false"); break;
  case T_NUM: shadow_buf_append(b, t->s, t->slen); break;
  case T_STR: shadow_buf_json_string(b, t->s, t->slen, 0); break;
  default:
    shadow_buf_putc(b, t->type == T_ARR ? '[' : '{');
    for (size_t i = 0; i < t->n; i++) {
      if (i) shadow_buf_putc(b, ',');
      if (t->type == T_OBJ) {
        shadow_buf_json_string(b, t->keys[i], t->klens[i], 0);
        shadow_buf_putc(b, ':');
      }
      tnode_write(b, t->kids[i]);
    }
    shadow_buf_putc(b, t->type == T_ARR ? ']' : '}');
  }
}

#endif
