/* Noise (see noise.h): masking one request's candidate diff by what its
 * secondary diff shows, and the significance rule that tells noise fields
 * from real ones over many requests.
 *
 * The mask works on the diff's output, not inside the diff: it parses the
 * result's JSON parts, keeps what noise does not cover and writes them
 * back. That costs a parse of the (small) record only on requests that
 * had a secondary leg, and leaves the JSON diff's own rules and fast
 * paths untouched. */
#include "noise.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "field.h"
#include "json.h"

/* --- reading diff results ----------------------------------------------- */

static const shadow_json_t *member(const shadow_json_t *obj, const char *key) {
  if (!obj || obj->type != SHADOW_JSON_OBJECT) return NULL;
  long i = shadow_json_member_find(obj, key, strlen(key));
  return i < 0 ? NULL : &obj->u.members[i].value;
}

static int str_is(const shadow_json_t *v, const char *s) {
  return v && v->type == SHADOW_JSON_STRING && v->len == strlen(s) &&
         memcmp(v->u.str, s, v->len) == 0;
}

/* A gRPC stream's body part (its "messages" are not one on each side):
 * its ops' paths begin with the message's index, which its fields leave
 * out (rules apply per message: grpc_diff.c). */
static int is_stream(const shadow_json_t *body) {
  const shadow_json_t *m = member(body, "messages");
  const shadow_json_t *p = member(m, "primary"), *c = member(m, "candidate");
  if (!p || !c || p->type != SHADOW_JSON_NUMBER ||
      c->type != SHADOW_JSON_NUMBER)
    return 0;
  return shadow_json_number(p) != 1 || shadow_json_number(c) != 1;
}

/* How many bytes of a stream op's path name the message: "/3". */
static size_t index_len(const char *p, size_t n) {
  size_t i = n && p[0] == '/' ? 1 : 0;
  while (i && i < n && p[i] != '/')
    i++;
  return i;
}

/* A body compared as a tree, op by op: JSON, or protobuf (a message or a
 * gRPC stream) decoded to one. */
static int tree_kind(const shadow_json_t *body) {
  const shadow_json_t *k = member(body, "kind");
  return str_is(k, "json") || str_is(k, "protobuf");
}

/* Parses a result's parts as one object: {"status":..,"headers":..,..}. */
static int parse_result(const shadow_diff_result_t *res, shadow_buf_t *text,
                        shadow_json_arena_t *arena, shadow_json_t *root) {
  size_t off = 0;
  const char *why = NULL;
  if (shadow_buf_putc(text, '{') ||
      shadow_buf_append(text, res->json.data ? res->json.data : "",
                        res->json.len) ||
      shadow_buf_putc(text, '}'))
    return -ENOMEM;
  return shadow_json_parse(arena, text->data, text->len, root, &off, &why);
}

/* The parent of a pointer: "/items/3" -> "/items". */
static size_t parent_len(const char *p, size_t n) {
  while (n && p[n - 1] != '/')
    n--;
  return n ? n - 1 : 0;
}

static int emit(shadow_buf_t *f, const char *prefix, const char *p, size_t n,
                int fold, unsigned shape, double delta,
                shadow_noise_observe_fn fn, void *ud) {
  shadow_buf_reset(f);
  if (shadow_buf_puts(f, prefix) || shadow_buf_append(f, p, n)) return -ENOMEM;
  if (fold) {
    /* Folding never lengthens a name: fold it in place. */
    char *tmp = malloc(f->len + 1);
    if (!tmp) return -ENOMEM;
    size_t k = shadow_field_fold(f->data, f->len, tmp, f->len + 1);
    memcpy(f->data, tmp, k + 1);
    f->len = k;
    free(tmp);
  }
  fn(ud, f->data, f->len, shape, delta);
  return 0;
}

static unsigned op_shape(const shadow_json_t *op, double *delta) {
  const shadow_json_t *kind = member(op, "op");
  *delta = 0;
  if (str_is(kind, "add")) return SHADOW_NOISE_ADD;
  if (str_is(kind, "remove")) return SHADOW_NOISE_REMOVE;
  if (str_is(kind, "move")) return SHADOW_NOISE_MOVE;
  const shadow_json_t *a = member(op, "primary"), *b = member(op, "candidate");
  if (!a || !b) return SHADOW_NOISE_VALUE;
  if (a->type == SHADOW_JSON_NUMBER && b->type == SHADOW_JSON_NUMBER) {
    *delta = fabs(shadow_json_number(a) - shadow_json_number(b));
    return SHADOW_NOISE_NUMBER;
  }
  int ta = a->type == SHADOW_JSON_TRUE ? SHADOW_JSON_FALSE : a->type;
  int tb = b->type == SHADOW_JSON_TRUE ? SHADOW_JSON_FALSE : b->type;
  return ta == tb ? SHADOW_NOISE_VALUE : SHADOW_NOISE_TYPE;
}

/* --- the mask ----------------------------------------------------------- */

/* What the secondary showed on this request. */
typedef struct mask_s {
  int status, body; /* the status / the whole body (bytes) differed */
  const shadow_json_t *headers;  /* its header diffs, or NULL */
  const shadow_json_t *trailers; /* its trailer diffs, or NULL */
  const shadow_json_t *ops;      /* its body ops, or NULL */
  const shadow_noise_envelope_t *env;
} mask_t;

static int same_ptr(const shadow_json_t *v, const char *p, size_t n) {
  return v && v->type == SHADOW_JSON_STRING && v->len == n &&
         memcmp(v->u.str, p, n) == 0;
}

/* Whether pointer q (a noise op's) is p or one of p's parents. */
static int at_or_above(const char *q, size_t ql, const char *p, size_t n) {
  if (ql == 0) return 1; /* the root */
  return n >= ql && memcmp(p, q, ql) == 0 && (n == ql || p[ql] == '/');
}

/* Whether the candidate's op is noise by what the secondary did on this
 * request: a change of the same kind at the same place (for a number, no
 * more than twice the secondary's move, or the field's learned range), a
 * secondary change above it (a subtree it replaced or removed), or, for
 * a move, the secondary moving elements of the same array. Anything else
 * (another kind of change, a number moved much further) stays: a real
 * difference on a noisy field is still one. */
static int masked_op(const mask_t *m, const shadow_json_t *op,
                     shadow_buf_t *scratch) {
  const shadow_json_t *path = member(op, "path");
  if (!m->ops || !path || path->type != SHADOW_JSON_STRING) return 0;
  double dc;
  unsigned cs = op_shape(op, &dc);
  const char *p = path->u.str;
  size_t n = path->len;
  for (uint32_t i = 0; i < m->ops->len; i++) {
    const shadow_json_t *nop = &m->ops->u.items[i];
    const shadow_json_t *np = member(nop, "path");
    if (!np || np->type != SHADOW_JSON_STRING) continue;
    double ds;
    unsigned ns = op_shape(nop, &ds);
    if (ns == SHADOW_NOISE_MOVE) {
      /* Order noise: the candidate's moves in the same array are too. */
      size_t a = parent_len(np->u.str, np->len), b = parent_len(p, n);
      if (cs == SHADOW_NOISE_MOVE && a == b && memcmp(np->u.str, p, a) == 0)
        return 1;
      continue;
    }
    if (!same_ptr(np, p, n)) {
      if (at_or_above(np->u.str, np->len, p, n) && np->len < n) return 1;
      continue;
    }
    if (cs != ns) return 0;
    if (cs != SHADOW_NOISE_NUMBER) return 1;
    double limit = 2 * ds;
    if (m->env && m->env->max_delta) {
      shadow_buf_reset(scratch);
      if (shadow_buf_puts(scratch, "body:") == 0 &&
          shadow_buf_append(scratch, p, n) == 0) {
        char folded[1024];
        size_t k = shadow_field_fold(scratch->data, scratch->len, folded,
                                     sizeof(folded));
        double learned = m->env->max_delta(m->env->ud, folded, k);
        if (learned > limit) limit = learned;
      }
    }
    return dc <= limit;
  }
  return 0;
}

static int name_listed(const shadow_json_t *list, const shadow_json_t *name) {
  for (uint32_t i = 0; list && i < list->len; i++) {
    const shadow_json_t *n = member(&list->u.items[i], "name");
    if (n && name && n->type == SHADOW_JSON_STRING && n->len == name->len &&
        memcmp(n->u.str, name->u.str, n->len) == 0)
      return 1;
  }
  return 0;
}

/* Writes obj with "differs" set to differs and "diffs" replaced by the
 * kept items (written by the caller into kept, comma-separated). */
static int write_part(shadow_buf_t *b, const char *name,
                      const shadow_json_t *obj, int differs,
                      const shadow_buf_t *kept, const char *summary) {
  int rc = shadow_buf_putc(b, '"') || shadow_buf_puts(b, name) ||
           shadow_buf_puts(b, "\":{");
  int first = 1;
  for (uint32_t i = 0; !rc && i < obj->len; i++) {
    const shadow_json_member_t *m = &obj->u.members[i];
    if (!first) rc = shadow_buf_putc(b, ',');
    first = 0;
    if (rc || shadow_buf_json_string(b, m->key, m->klen, 0) ||
        shadow_buf_putc(b, ':'))
      return -ENOMEM;
    if (m->klen == 7 && memcmp(m->key, "differs", 7) == 0)
      rc = shadow_buf_puts(b, differs ? "true" : "false");
    else if (m->klen == 5 && memcmp(m->key, "diffs", 5) == 0 && kept)
      rc = shadow_buf_putc(b, '[') ||
           shadow_buf_append(b, kept->data ? kept->data : "", kept->len) ||
           shadow_buf_putc(b, ']');
    else if (m->klen == 7 && memcmp(m->key, "summary", 7) == 0 && summary)
      rc = shadow_buf_json_string(b, summary, strlen(summary), 0);
    else
      rc = shadow_json_write(b, &m->value);
  }
  return rc || shadow_buf_putc(b, '}') ? -ENOMEM : 0;
}

static int add_field(shadow_buf_t *f, size_t *n, const char *prefix,
                     const char *s, size_t len) {
  if (shadow_buf_puts(f, prefix) || shadow_buf_append(f, s, len) ||
      shadow_buf_append(f, "", 1))
    return -ENOMEM;
  (*n)++;
  return 0;
}

/* What a filter drops: each callback says 1 for "this is noise". */
typedef struct filter_s {
  int (*status)(void *ud);
  int (*header)(void *ud, const shadow_json_t *name);
  int (*trailer)(void *ud, const shadow_json_t *name);
  int (*body)(void *ud); /* a body compared as bytes or by digest */
  int (*op)(void *ud, const shadow_json_t *op, shadow_buf_t *scratch);
  void *ud;
  int *stream; /* when not NULL: told whether the body is a gRPC stream */
} filter_t;

/* The body's JSON ops: keeps the ones the filter does not drop, into kept
 * and fields. *left is how many remain, *dropped how many were removed. */
static int filter_ops(const filter_t *f, const shadow_json_t *diffs, int stream,
                      shadow_buf_t *kept, shadow_buf_t *fields, size_t *nfields,
                      size_t *left, size_t *dropped) {
  shadow_buf_t scratch = SHADOW_BUF_INIT;
  int rc = 0;
  *left = *dropped = 0;
  for (uint32_t i = 0;
       diffs && diffs->type == SHADOW_JSON_ARRAY && i < diffs->len && !rc;
       i++) {
    const shadow_json_t *op = &diffs->u.items[i];
    if (f->op(f->ud, op, &scratch)) {
      (*dropped)++;
      continue;
    }
    const shadow_json_t *path = member(op, "path");
    if ((*left)++ && shadow_buf_putc(kept, ',')) rc = -ENOMEM;
    if (!rc && shadow_json_write(kept, op)) rc = -ENOMEM;
    size_t skip = path && path->type == SHADOW_JSON_STRING && stream
                      ? index_len(path->u.str, path->len)
                      : 0;
    if (!rc && path && path->type == SHADOW_JSON_STRING &&
        add_field(fields, nfields, "body:", path->u.str + skip,
                  path->len - skip))
      rc = -ENOMEM;
  }
  shadow_buf_free(&scratch);
  return rc;
}

/* Rewrites res without what f drops: parts, fields and summary follow. */
static int filter_result(shadow_diff_result_t *res, const filter_t *f) {
  shadow_buf_t text = SHADOW_BUF_INIT, out = SHADOW_BUF_INIT;
  shadow_buf_t kept = SHADOW_BUF_INIT, fields = SHADOW_BUF_INIT;
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t root;
  size_t nfields = 0;
  unsigned parts = 0;
  int rc = parse_result(res, &text, &arena, &root);
  const shadow_json_t *status = rc ? NULL : member(&root, "status");
  const shadow_json_t *headers = rc ? NULL : member(&root, "headers");
  const shadow_json_t *body = rc ? NULL : member(&root, "body");
  if (!rc && (!status || !headers || !body)) rc = -EINVAL;

  /* status */
  if (!rc) {
    int differs = (res->parts & SHADOW_PART_STATUS) && !f->status(f->ud);
    if (differs) {
      parts |= SHADOW_PART_STATUS;
      rc = add_field(&fields, &nfields, "status", "", 0);
    }
    if (!rc) rc = write_part(&out, "status", status, differs, NULL, NULL);
  }
  /* headers, then trailers when the record has them, by name */
  const shadow_json_t *trailers = rc ? NULL : member(&root, "trailers");
  for (int t = 0; t < 2 && !rc; t++) {
    const shadow_json_t *part = t ? trailers : headers;
    if (!part) continue;
    const shadow_json_t *diffs = member(part, "diffs");
    size_t left = 0;
    shadow_buf_reset(&kept);
    for (uint32_t i = 0;
         !rc && diffs && diffs->type == SHADOW_JSON_ARRAY && i < diffs->len;
         i++) {
      const shadow_json_t *h = &diffs->u.items[i];
      const shadow_json_t *name = member(h, "name");
      if (!name || name->type != SHADOW_JSON_STRING) continue;
      if (t ? f->trailer(f->ud, name) : f->header(f->ud, name)) continue;
      if ((left++ && shadow_buf_putc(&kept, ',')) ||
          shadow_json_write(&kept, h) ||
          add_field(&fields, &nfields, t ? "trailer:" : "header:", name->u.str,
                    name->len))
        rc = -ENOMEM;
    }
    if (left) parts |= SHADOW_PART_HEADERS;
    if (!rc)
      rc = shadow_buf_putc(&out, ',') ||
                   write_part(&out, t ? "trailers" : "headers", part, left > 0,
                              &kept, NULL)
               ? -ENOMEM
               : 0;
  }
  /* body: all of it, or op by op */
  if (!rc) {
    int was = (res->parts & SHADOW_PART_BODY) != 0;
    int json = tree_kind(body);
    char summary[64];
    const char *new_summary = NULL;
    size_t left = 0, dropped = 0;
    shadow_buf_t none = SHADOW_BUF_INIT;
    shadow_buf_reset(&kept);
    int whole = was && !json && f->body(f->ud);
    int differs = was && !whole;
    if (differs && json) {
      int stream = is_stream(body);
      if (f->stream) *f->stream = stream;
      rc = filter_ops(f, member(body, "diffs"), stream, &kept, &fields,
                      &nfields, &left, &dropped);
      /* The summary counts every difference, listed or not: take away
       * the dropped ones. */
      const shadow_json_t *s = member(body, "summary");
      unsigned long total = 0;
      if (s && s->type == SHADOW_JSON_STRING) total = strtoul(s->u.str, 0, 10);
      size_t remain = total > dropped ? total - dropped : left;
      if (remain < left) remain = left;
      differs = remain > 0;
      if (!differs) {
        new_summary = "";
      } else if (dropped) {
        snprintf(summary, sizeof(summary), "%zu field%s differ%s", remain,
                 remain == 1 ? "" : "s", remain == 1 ? "s" : "");
        new_summary = summary;
      }
    } else if (differs) {
      rc = add_field(&fields, &nfields, "body", "", 0);
    } else if (was) {
      new_summary = "";
    }
    if (differs) parts |= SHADOW_PART_BODY;
    const shadow_buf_t *diffs_out = json && was ? &kept : was ? &none : NULL;
    if (!rc)
      rc = shadow_buf_putc(&out, ',') || write_part(&out, "body", body, differs,
                                                    diffs_out, new_summary)
               ? -ENOMEM
               : 0;
  }
  if (!rc) {
    shadow_buf_free(&res->json);
    shadow_buf_free(&res->fields);
    res->json = out;
    res->fields = fields;
    res->nfields = nfields;
    res->parts = parts;
    out = fields = (shadow_buf_t)SHADOW_BUF_INIT;
  }
  shadow_json_arena_free(&arena);
  shadow_buf_free(&text);
  shadow_buf_free(&out);
  shadow_buf_free(&kept);
  shadow_buf_free(&fields);
  return rc == -EINVAL ? 0 : rc; /* a record we cannot read stays as is */
}

/* The secondary's mask as a filter. */
static int mask_status(void *ud) {
  return ((mask_t *)ud)->status;
}
static int mask_body(void *ud) {
  return ((mask_t *)ud)->body;
}
static int mask_header(void *ud, const shadow_json_t *name) {
  return name_listed(((mask_t *)ud)->headers, name);
}
static int mask_trailer(void *ud, const shadow_json_t *name) {
  return name_listed(((mask_t *)ud)->trailers, name);
}
static int mask_op(void *ud, const shadow_json_t *op, shadow_buf_t *scratch) {
  return masked_op(ud, op, scratch);
}

int shadow_noise_mask(shadow_diff_result_t *res,
                      const shadow_diff_result_t *noise,
                      const shadow_noise_envelope_t *env) {
  if (!res->parts || !noise || !noise->parts) return 0;
  shadow_buf_t ntext = SHADOW_BUF_INIT;
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t nroot;
  mask_t m = {0, 0, NULL, NULL, NULL, env};
  int rc = parse_result(noise, &ntext, &arena, &nroot);
  if (!rc) {
    const shadow_json_t *nb = member(&nroot, "body");
    m.status = (noise->parts & SHADOW_PART_STATUS) != 0;
    m.headers = member(member(&nroot, "headers"), "diffs");
    if (m.headers && m.headers->type != SHADOW_JSON_ARRAY) m.headers = NULL;
    m.trailers = member(member(&nroot, "trailers"), "diffs");
    if (m.trailers && m.trailers->type != SHADOW_JSON_ARRAY) m.trailers = NULL;
    if (noise->parts & SHADOW_PART_BODY) {
      if (tree_kind(nb)) {
        m.ops = member(nb, "diffs");
        if (m.ops && m.ops->type != SHADOW_JSON_ARRAY) m.ops = NULL;
      } else {
        m.body = 1;
      }
    }
    filter_t f = {mask_status, mask_header, mask_trailer, mask_body,
                  mask_op,     &m,          NULL};
    rc = filter_result(res, &f);
  }
  shadow_json_arena_free(&arena);
  shadow_buf_free(&ntext);
  return rc == -EINVAL ? 0 : rc;
}

/* A caller's rule as a filter: each difference by folded field and shape. */
typedef struct rule_s {
  shadow_noise_is_fn fn;
  void *ud;
  shadow_buf_t name;
  int stream; /* the body is a gRPC stream: fields leave the index out */
} rule_t;

static int rule_ask(rule_t *r, const char *prefix, const char *s, size_t n,
                    int fold, unsigned shape, double delta) {
  shadow_buf_reset(&r->name);
  if (shadow_buf_puts(&r->name, prefix) || shadow_buf_append(&r->name, s, n))
    return 0;
  char folded[1024];
  const char *f = r->name.data;
  size_t len = r->name.len;
  if (fold) {
    len = shadow_field_fold(r->name.data, r->name.len, folded, sizeof(folded));
    f = folded;
  }
  return r->fn(r->ud, f, len, shape, delta);
}

static int rule_status(void *ud) {
  return rule_ask(ud, "status", "", 0, 0, SHADOW_NOISE_STATUS, 0);
}
static int rule_body(void *ud) {
  return rule_ask(ud, "body", "", 0, 0, SHADOW_NOISE_BYTES, 0);
}
static int rule_header(void *ud, const shadow_json_t *name) {
  return rule_ask(ud, "header:", name->u.str, name->len, 0, SHADOW_NOISE_HEADER,
                  0);
}
static int rule_trailer(void *ud, const shadow_json_t *name) {
  return rule_ask(ud, "trailer:", name->u.str, name->len, 0,
                  SHADOW_NOISE_HEADER, 0);
}
static int rule_op(void *ud, const shadow_json_t *op, shadow_buf_t *scratch) {
  (void)scratch;
  const shadow_json_t *path = member(op, "path");
  if (!path || path->type != SHADOW_JSON_STRING) return 0;
  double delta;
  unsigned shape = op_shape(op, &delta);
  size_t n = shape == SHADOW_NOISE_MOVE ? parent_len(path->u.str, path->len)
                                        : path->len;
  size_t skip = ((rule_t *)ud)->stream ? index_len(path->u.str, n) : 0;
  return rule_ask(ud, "body:", path->u.str + skip, n - skip, 1, shape, delta);
}

int shadow_noise_filter(shadow_diff_result_t *res, shadow_noise_is_fn is_noise,
                        void *ud) {
  if (!res->parts) return 0;
  rule_t r = {is_noise, ud, SHADOW_BUF_INIT, 0};
  filter_t f = {rule_status, rule_header, rule_trailer, rule_body,
                rule_op,     &r,          &r.stream};
  int rc = filter_result(res, &f);
  shadow_buf_free(&r.name);
  return rc;
}

/* --- observations ------------------------------------------------------- */

int shadow_noise_observe(const shadow_diff_result_t *res,
                         shadow_noise_observe_fn fn, void *ud) {
  if (!res->parts) return 0;
  shadow_buf_t text = SHADOW_BUF_INIT, f = SHADOW_BUF_INIT;
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t root;
  size_t off = 0;
  const char *why = NULL;
  int rc =
      shadow_buf_putc(&text, '{') ||
              shadow_buf_append(&text, res->json.data, res->json.len) ||
              shadow_buf_putc(&text, '}')
          ? -ENOMEM
          : shadow_json_parse(&arena, text.data, text.len, &root, &off, &why);
  if (rc == 0 && (res->parts & SHADOW_PART_STATUS))
    rc = emit(&f, "status", "", 0, 0, SHADOW_NOISE_STATUS, 0, fn, ud);
  for (int t = 0; t < 2 && !rc; t++) {
    const shadow_json_t *hd =
        member(member(&root, t ? "trailers" : "headers"), "diffs");
    for (uint32_t i = 0;
         !rc && hd && hd->type == SHADOW_JSON_ARRAY && i < hd->len; i++) {
      const shadow_json_t *name = member(&hd->u.items[i], "name");
      if (name && name->type == SHADOW_JSON_STRING)
        rc = emit(&f, t ? "trailer:" : "header:", name->u.str, name->len, 0,
                  SHADOW_NOISE_HEADER, 0, fn, ud);
    }
  }
  const shadow_json_t *body = rc ? NULL : member(&root, "body");
  if (!rc && (res->parts & SHADOW_PART_BODY) && body) {
    if (!tree_kind(body)) {
      rc = emit(&f, "body", "", 0, 0, SHADOW_NOISE_BYTES, 0, fn, ud);
    } else {
      const shadow_json_t *ops = member(body, "diffs");
      int stream = is_stream(body);
      for (uint32_t i = 0;
           !rc && ops && ops->type == SHADOW_JSON_ARRAY && i < ops->len; i++) {
        const shadow_json_t *op = &ops->u.items[i];
        const shadow_json_t *path = member(op, "path");
        if (!path || path->type != SHADOW_JSON_STRING) continue;
        double delta;
        unsigned shape = op_shape(op, &delta);
        /* A move is the array's business: its order. */
        size_t n = shape == SHADOW_NOISE_MOVE
                       ? parent_len(path->u.str, path->len)
                       : path->len;
        size_t skip = stream ? index_len(path->u.str, n) : 0;
        rc = emit(&f, "body:", path->u.str + skip, n - skip, 1, shape, delta,
                  fn, ud);
      }
    }
  }
  shadow_json_arena_free(&arena);
  shadow_buf_free(&text);
  shadow_buf_free(&f);
  return rc == -EINVAL ? 0 : rc;
}

/* --- significance ------------------------------------------------------- */

double shadow_noise_z(double confidence) {
  if (!(confidence > 0.5)) return 0;
  if (confidence >= 1) return 8;
  /* Phi(z) = 1 - erfc(z / sqrt 2) / 2 is increasing: bisect for it. */
  double lo = 0, hi = 8;
  for (int i = 0; i < 60; i++) {
    double mid = (lo + hi) / 2;
    if (1 - 0.5 * erfc(mid / sqrt(2.0)) < confidence)
      lo = mid;
    else
      hi = mid;
  }
  return (lo + hi) / 2;
}

void shadow_noise_wilson(uint64_t k, uint64_t n, double z, double *lo,
                         double *hi) {
  if (n == 0) {
    *lo = 0;
    *hi = 1;
    return;
  }
  double nn = (double)n, p = (double)k / nn, z2 = z * z;
  double denom = 1 + z2 / nn;
  double centre = (p + z2 / (2 * nn)) / denom;
  double half = z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / denom;
  *lo = centre - half < 0 ? 0 : centre - half;
  *hi = centre + half > 1 ? 1 : centre + half;
  if (k == 0) *lo = 0;
  if (k == n) *hi = 1;
}

void shadow_noise_newcombe(uint64_t k1, uint64_t n1, uint64_t k2, uint64_t n2,
                           double z, double *lo, double *hi) {
  double l1, u1, l2, u2;
  shadow_noise_wilson(k1, n1, z, &l1, &u1);
  shadow_noise_wilson(k2, n2, z, &l2, &u2);
  double p1 = n1 ? (double)k1 / (double)n1 : 0;
  double p2 = n2 ? (double)k2 / (double)n2 : 0;
  double d = p1 - p2;
  *lo = d - sqrt((p1 - l1) * (p1 - l1) + (u2 - p2) * (u2 - p2));
  *hi = d + sqrt((u1 - p1) * (u1 - p1) + (p2 - l2) * (p2 - l2));
}

/* --- learning ---------------------------------------------------------- */

/* Counts a difference after the reference: whether it moved a number
 * further than the reference ever did, whether it shows a shape the
 * reference never showed. */
static void weigh(const shadow_noise_field_t *f, unsigned shapes, double delta,
                  uint64_t *judged, uint64_t *beyond, uint64_t *novel) {
  (*judged)++;
  if ((shapes & SHADOW_NOISE_NUMBER) && delta > f->ref_max) (*beyond)++;
  if (shapes & ~f->ref_shapes) (*novel)++;
}

void shadow_noise_learn_secondary(shadow_noise_field_t *f, unsigned shapes,
                                  double delta) {
  f->noise_differed++;
  f->noise_shapes |= shapes;
  if (delta > f->noise_max_delta) f->noise_max_delta = delta;
  if (f->ref_len < SHADOW_NOISE_REFERENCE) {
    f->ref_shapes |= shapes;
    if ((shapes & SHADOW_NOISE_NUMBER) && delta > f->ref_max)
      f->ref_max = delta;
    /* The candidate's difference on this same request shares its primary
     * with the reference's last member: weighing it against a reference
     * that includes its twin would not be fair, so the next candidate
     * difference (this request's, or a later one) is skipped. Which one
     * is skipped does not depend on its value, so nothing is biased. */
    f->ref_fresh = ++f->ref_len == SHADOW_NOISE_REFERENCE;
    return;
  }
  weigh(f, shapes, delta, &f->noise_judged, &f->noise_beyond, &f->noise_novel);
}

void shadow_noise_learn_candidate(shadow_noise_field_t *f, unsigned shapes,
                                  double delta) {
  f->differed++;
  f->shapes |= shapes;
  if (delta > f->max_delta) f->max_delta = delta;
  if (f->ref_len < SHADOW_NOISE_REFERENCE) return;
  if (f->ref_fresh) {
    f->ref_fresh = 0;
    return;
  }
  weigh(f, shapes, delta, &f->judged, &f->beyond, &f->novel);
}

shadow_noise_counts_t shadow_noise_field_counts(const shadow_noise_field_t *f,
                                                uint64_t compared,
                                                uint64_t noise_compared) {
  shadow_noise_counts_t c = {
      compared,       f->differed,       f->judged,       f->beyond,
      noise_compared, f->noise_differed, f->noise_judged, f->noise_beyond,
      f->novel,       f->noise_novel};
  return c;
}

/* --- classifying -------------------------------------------------------- */

/* log(n choose k). lgamma_r: lgamma's sign is a global, and /noise and
 * the comparators classify from different threads. */
static double log_choose(double n, double k) {
  int sign;
  return lgamma_r(n + 1, &sign) - lgamma_r(k + 1, &sign) -
         lgamma_r(n - k + 1, &sign);
}

double shadow_noise_hypergeom_upper(uint64_t x, uint64_t n, uint64_t K,
                                    uint64_t N, double stop) {
  if (K > N || n > N) return 1;
  uint64_t lo = n + K > N ? n + K - N : 0, hi = n < K ? n : K;
  if (x <= lo) return 1;
  if (x > hi) return 0;
  double dn = (double)n, dK = (double)K, dN = (double)N;
  double t = exp(log_choose(dK, (double)x) +
                 log_choose(dN - dK, dn - (double)x) - log_choose(dN, dn));
  double sum = 0;
  /* Terms past the mode shrink by a ratio that itself shrinks, so once
   * it is below 1 the rest is at most t r / (1 - r). */
  for (uint64_t k = x; k <= hi; k++) {
    sum += t;
    if (sum > stop) return sum;
    double dk = (double)k;
    double r = (dK - dk) * (dn - dk) / ((dk + 1) * (dN - dK - dn + dk + 1));
    if (r < 1 && t * r / (1 - r) <= sum * 1e-12) break;
    t *= r;
  }
  return sum;
}

/* The z whose one-sided tail is target, from z whose tail is above it:
 * the tail is convex and falling, so Newton from the left never
 * overshoots. */
static double tail_z(double z, double target) {
  /* Each thread classifies with the same few z: remember the last. */
  static _Thread_local double last_z = -1, last_target = -1, last_x;
  if (z == last_z && target == last_target) return last_x;
  double x = z;
  for (int i = 0; i < 8; i++) {
    double g = 0.5 * erfc(x / sqrt(2.0)) - target;
    double d = exp(-x * x / 2) / sqrt(2 * M_PI);
    if (!(d > 0)) break;
    x += g / d;
  }
  last_z = z;
  last_target = target;
  last_x = x;
  return x;
}

/* Whether the candidate's k of its n judged differences are
 * significantly more than the secondary's nk of its nn: given the
 * reference, each later difference of either side is counted with one and
 * the same probability when the two sides vary alike, so conditioned on
 * how many were counted, how many of them are the candidate's is
 * hypergeometric, whatever that probability is. */
static int more_often(uint64_t k, uint64_t n, uint64_t nk, uint64_t nn,
                      double alpha) {
  if (!k || !n || !nn) return 0;
  /* At or below the mean, the tail holds at least the median's half: not
   * significant at any alpha used here, and cheap to see. */
  if ((double)k * (double)(n + nn) <= (double)(k + nk) * (double)n) return 0;
  return shadow_noise_hypergeom_upper(k, n, k + nk, n + nn, alpha) <= alpha;
}

shadow_noise_class_t shadow_noise_classify(const shadow_noise_counts_t *c,
                                           double z, uint64_t min_samples,
                                           double *margin) {
  /* Three tests, each at alpha/3: a field of pure noise passes them all
   * with probability at least 1 - alpha (Bonferroni). */
  double a3 = 0.5 * erfc(z / sqrt(2.0)) / 3;
  double lo, hi;
  shadow_noise_newcombe(c->differed, c->compared, c->noise_differed,
                        c->noise_compared, tail_z(z, a3), &lo, &hi);
  if (margin) *margin = lo;
  if (c->compared < min_samples || c->noise_compared < min_samples)
    return SHADOW_NOISE_UNDECIDED;
  if (lo > 0) return SHADOW_NOISE_REAL;
  if (more_often(c->beyond, c->judged, c->noise_beyond, c->noise_judged, a3) ||
      more_often(c->novel, c->judged, c->noise_novel, c->noise_judged, a3))
    return SHADOW_NOISE_REAL;
  if (c->noise_differed > 0) return SHADOW_NOISE_NOISE;
  return SHADOW_NOISE_UNDECIDED;
}

const char *shadow_noise_class_name(shadow_noise_class_t c) {
  switch (c) {
  case SHADOW_NOISE_NOISE: return "noise";
  case SHADOW_NOISE_REAL: return "real";
  default: return "undecided";
  }
}
