/* The diff rules from their JSON form: the one reader of `ignore`,
 * `arrays`, `tolerance`, `rename`, `coerce`, `mask`, `time`, `diff_bytes`
 * and `value_max`, so the daemon's config and shadow.diff's options (and
 * the gateway's) take the same rules with the same words for a bad one.
 * Both sides hand over the Lua table as JSON (lua/shadow/opts.lua encodes
 * it), which keeps this file free of Lua. Messages name the entry as a
 * Lua user wrote it: arrays["/tags"], ignore.json[2]. A Lua table has no
 * order, so the sections are read in a fixed order and the entries of
 * each by key: the rules (and their bits) come out the same every load. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "diff.h"
#include "json.h"

typedef struct parse_s {
  shadow_diff_opts_t *o;
  char *err;
  size_t errlen;
} parse_t;

static int fail(parse_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(parse_t *p, const char *fmt, ...) {
  if (p->err && p->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}

static int is_object(const shadow_json_t *v) {
  return v->type == SHADOW_JSON_OBJECT;
}

/* An empty Lua table is encoded as {}: as a list it is just empty. */
static int is_list(const shadow_json_t *v) {
  return v->type == SHADOW_JSON_ARRAY || (is_object(v) && v->len == 0);
}

static int key_is(const shadow_json_member_t *m, const char *name) {
  return m->klen == strlen(name) && memcmp(m->key, name, m->klen) == 0;
}

/* Orders members by key bytes. */
static int by_key_r(const void *x, const void *y, void *base) {
  const shadow_json_t *o = base;
  const shadow_json_member_t *a = &o->u.members[*(const uint32_t *)x];
  const shadow_json_member_t *b = &o->u.members[*(const uint32_t *)y];
  size_t n = a->klen < b->klen ? a->klen : b->klen;
  int c = memcmp(a->key, b->key, n);
  return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

/* The members of an object sorted by key, as indexes (freed by the
 * caller); NULL without memory. */
static uint32_t *sorted(const shadow_json_t *v) {
  uint32_t *idx = malloc(((size_t)v->len + 1) * sizeof *idx);
  if (!idx) return NULL;
  for (uint32_t i = 0; i < v->len; i++)
    idx[i] = i;
  /* qsort_r: two configs may load at once, on two workers' threads. */
  qsort_r(idx, v->len, sizeof *idx, by_key_r, (void *)v);
  return idx;
}

/* 1 for a pointer the rules accept: empty, or "/" segments with ~0 ~1
 * (and ~2, a NUL in a key: field.h). */
static int pointer_ok(const char *p) {
  if (*p && *p != '/') return 0;
  for (; *p; p++)
    if (*p == '~' && p[1] != '0' && p[1] != '1' && p[1] != '2') return 0;
  return 1;
}

/* Why a rule under a valid pointer was refused: the only other reason. */
static int too_many(parse_t *p, const char *what, const char *ptr) {
  return fail(p,
              "%s[\"%s\"]: too many rules (at most 64 besides renames, "
              "and 64 renames)",
              what, ptr);
}

static int bad_pointer(parse_t *p, const char *what, const char *ptr) {
  return fail(p,
              "%s[\"%s\"]: \"%s\" is not a JSON Pointer (\"/a/b\", \"*\" "
              "for any key or index)",
              what, ptr, ptr);
}

static int read_ignore(parse_t *p, const shadow_json_t *v) {
  if (!is_object(v))
    return fail(p, "ignore must be a table { headers = {...}, json = {...} }");
  for (uint32_t i = 0; i < v->len; i++) {
    const shadow_json_member_t *m = &v->u.members[i];
    int json = key_is(m, "json");
    if (!json && !key_is(m, "headers"))
      return fail(p, "unknown field ignore.%.*s", (int)m->klen, m->key);
    const char *what = json ? "json" : "headers";
    if (!is_list(&m->value))
      return fail(p, "ignore.%s must be a list of strings", what);
    const shadow_json_t *list = &m->value;
    size_t n = list->type == SHADOW_JSON_ARRAY ? list->len : 0;
    for (size_t j = 0; j < n; j++) {
      const shadow_json_t *s = &list->u.items[j];
      if (s->type != SHADOW_JSON_STRING)
        return fail(p, "ignore.%s[%zu] must be a string", what, j + 1);
      char *c = shadow_bytes_dup(s->u.str, s->len);
      if (!c) return -ENOMEM;
      int rc = json ? shadow_diff_opts_ignore_json(p->o, c)
                    : shadow_diff_opts_ignore_header(p->o, c);
      if (rc == -EINVAL)
        rc = fail(p, "ignore.%s[%zu] \"%s\" is not a valid %s", what, j + 1, c,
                  json ? "JSON Pointer" : "header name");
      free(c);
      if (rc) return rc;
    }
  }
  return 0;
}

typedef int (*entry_fn)(parse_t *p, const char *ptr, const shadow_json_t *v);

/* A table of JSON Pointer = rule, read entry by entry in key order; shape
 * names what each value must be, for the error. */
static int read_table(parse_t *p, const shadow_json_t *v, const char *what,
                      const char *shape, entry_fn fn) {
  if (!is_object(v))
    return fail(p, "%s must be a table of JSON Pointer = %s", what, shape);
  uint32_t *idx = sorted(v);
  if (!idx) return -ENOMEM;
  int rc = 0;
  for (uint32_t i = 0; i < v->len && !rc; i++) {
    const shadow_json_member_t *m = &v->u.members[idx[i]];
    char *ptr = shadow_bytes_dup(m->key, m->klen);
    if (!ptr) {
      rc = -ENOMEM;
      break;
    }
    rc = fn(p, ptr, &m->value);
    free(ptr);
  }
  free(idx);
  return rc;
}

/* arrays = { [ptr] = "index" | "set" | "multiset" | { key = "field" } }. */
static int read_array_mode(parse_t *p, const char *ptr,
                           const shadow_json_t *mode) {
  static const char *const names[] = {"index", "set", "multiset"};
  char *key = NULL;
  int id = -1;
  if (mode->type == SHADOW_JSON_STRING) {
    for (int k = 0; k < 3; k++)
      if (mode->len == strlen(names[k]) &&
          memcmp(mode->u.str, names[k], mode->len) == 0)
        id = k; /* SHADOW_ARRAY_INDEX, _SET, _MULTISET in order */
  } else if (is_object(mode) && mode->len == 1 &&
             key_is(&mode->u.members[0], "key") &&
             mode->u.members[0].value.type == SHADOW_JSON_STRING &&
             mode->u.members[0].value.len > 0) {
    const shadow_json_t *k = &mode->u.members[0].value;
    key = shadow_bytes_dup(k->u.str, k->len);
    if (!key) return -ENOMEM;
    id = SHADOW_ARRAY_KEY;
  }
  int rc = id < 0 ? -EINVAL : shadow_diff_opts_array_mode(p->o, ptr, id, key);
  if (rc == -EINVAL)
    rc = id >= 0 && pointer_ok(ptr)
             ? too_many(p, "arrays", ptr)
             : fail(p,
                    "arrays[\"%s\"] must be \"index\", \"set\", "
                    "\"multiset\" or { key = \"field\" } under a JSON "
                    "Pointer",
                    ptr);
  free(key);
  return rc;
}

/* tolerance = { [ptr] = number >= 0 }. */
static int read_tolerance(parse_t *p, const char *ptr, const shadow_json_t *v) {
  double t = v->type == SHADOW_JSON_NUMBER ? shadow_json_number(v) : -1;
  int rc = shadow_diff_opts_tolerance(p->o, ptr, t);
  if (rc == -EINVAL)
    rc = t >= 0 && pointer_ok(ptr)
             ? too_many(p, "tolerance", ptr)
             : fail(p,
                    "tolerance[\"%s\"] must be a number >= 0 under a JSON "
                    "Pointer",
                    ptr);
  return rc;
}

/* A string member's value as a C string, or NULL (with rc set to -ENOMEM
 * when memory ran out, left alone when it is not a string). */
static char *str_of(const shadow_json_t *v, int *rc) {
  if (v->type != SHADOW_JSON_STRING) return NULL;
  char *c = shadow_bytes_dup(v->u.str, v->len);
  if (!c) *rc = -ENOMEM;
  return c;
}

static int is_word(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_'))
      return 0;
  return 1;
}

/* rename = { [from] = to }. */
static int read_rename(parse_t *p, const char *ptr, const shadow_json_t *v) {
  int rc = 0;
  char *to = str_of(v, &rc);
  if (rc) return rc;
  if (!to)
    return fail(p,
                "rename[\"%s\"] must be the candidate's JSON Pointer for "
                "it, a string",
                ptr);
  const char *why = NULL;
  if (!pointer_ok(ptr)) {
    rc = bad_pointer(p, "rename", ptr);
  } else if (!pointer_ok(to)) {
    rc = fail(p, "rename[\"%s\"] = \"%s\": the target is not a JSON Pointer",
              ptr, to);
  } else {
    rc = shadow_diff_opts_rename(p->o, ptr, to, &why);
    if (rc == -EINVAL)
      rc = why ? fail(p, "rename[\"%s\"] = \"%s\": %s", ptr, to, why)
               : too_many(p, "rename", ptr);
  }
  free(to);
  return rc;
}

/* coerce = { [ptr] = "number" | "boolean" }. */
static int read_coerce(parse_t *p, const char *ptr, const shadow_json_t *v) {
  int kind = 0;
  if (v->type == SHADOW_JSON_STRING) {
    if (v->len == 6 && memcmp(v->u.str, "number", 6) == 0)
      kind = SHADOW_COERCE_NUMBER;
    else if (v->len == 7 && memcmp(v->u.str, "boolean", 7) == 0)
      kind = SHADOW_COERCE_BOOLEAN;
  }
  if (!kind)
    return fail(p, "coerce[\"%s\"] must be \"number\" or \"boolean\"", ptr);
  if (!pointer_ok(ptr)) return bad_pointer(p, "coerce", ptr);
  int rc = shadow_diff_opts_coerce(p->o, ptr, kind);
  return rc == -EINVAL ? too_many(p, "coerce", ptr) : rc;
}

/* mask = { [ptr] = class | pattern }. */
static int read_mask(parse_t *p, const char *ptr, const shadow_json_t *v) {
  static const char *const classes[] = {"uuid", "hex", "iso8601", "epoch"};
  int rc = 0;
  char *cls = str_of(v, &rc);
  if (rc) return rc;
  if (!cls || !*cls) {
    free(cls);
    return fail(p,
                "mask[\"%s\"] must be \"uuid\", \"hex\", \"iso8601\", "
                "\"epoch\" or a Lua pattern",
                ptr);
  }
  int id = SHADOW_MASK_PATTERN;
  for (int k = 0; k < 4; k++)
    if (strcmp(cls, classes[k]) == 0) id = SHADOW_MASK_UUID + k;
  const char *why = NULL;
  if (id == SHADOW_MASK_PATTERN && is_word(cls)) {
    /* A bare word as a pattern would only match itself: surely a class
     * misspelt. */
    rc = fail(p,
              "mask[\"%s\"]: unknown class \"%s\" (uuid, hex, iso8601, "
              "epoch, or a Lua pattern such as \"%%w+\")",
              ptr, cls);
  } else if (!pointer_ok(ptr)) {
    rc = bad_pointer(p, "mask", ptr);
  } else {
    rc = shadow_diff_opts_mask(p->o, ptr, id,
                               id == SHADOW_MASK_PATTERN ? cls : NULL, &why);
    if (rc == -EINVAL)
      rc = why ? fail(p, "mask[\"%s\"] = \"%s\": %s", ptr, cls, why)
               : too_many(p, "mask", ptr);
  }
  free(cls);
  return rc;
}

static int unit_of(const shadow_json_t *v) {
  static const char *const units[] = {"instant", "s", "ms"};
  if (v->type != SHADOW_JSON_STRING) return -1;
  for (int k = 0; k < 3; k++)
    if (v->len == strlen(units[k]) && memcmp(v->u.str, units[k], v->len) == 0)
      return k; /* SHADOW_TIME_INSTANT, _S, _MS in order */
  return -1;
}

/* time = { [ptr] = { unit = ..., tolerance_ms = n } | unit }. */
static int read_time(parse_t *p, const char *ptr, const shadow_json_t *v) {
  int unit = SHADOW_TIME_INSTANT;
  double tol = 0;
  if (v->type == SHADOW_JSON_STRING) {
    unit = unit_of(v);
  } else if (is_object(v)) {
    for (uint32_t i = 0; i < v->len; i++) {
      const shadow_json_member_t *m = &v->u.members[i];
      if (key_is(m, "unit")) {
        unit = unit_of(&m->value);
      } else if (key_is(m, "tolerance_ms")) {
        tol = m->value.type == SHADOW_JSON_NUMBER
                  ? shadow_json_number(&m->value)
                  : -1;
        if (!(tol >= 0 && tol <= 1e15))
          return fail(p,
                      "time[\"%s\"].tolerance_ms must be a number of "
                      "milliseconds >= 0",
                      ptr);
      } else {
        return fail(p, "unknown field time[\"%s\"].%.*s", ptr, (int)m->klen,
                    m->key);
      }
    }
  } else {
    unit = -1;
  }
  if (unit < 0)
    return fail(p,
                "time[\"%s\"] must be { unit = \"instant\" | \"s\" | "
                "\"ms\", tolerance_ms = n } or a unit",
                ptr);
  if (!pointer_ok(ptr)) return bad_pointer(p, "time", ptr);
  int rc = shadow_diff_opts_time(p->o, ptr, unit, tol);
  return rc == -EINVAL ? too_many(p, "time", ptr) : rc;
}

/* A byte count: a whole number from 0 to 2^53. */
static int read_size(parse_t *p, const shadow_json_t *v, const char *name,
                     size_t *out) {
  double d = v->type == SHADOW_JSON_NUMBER ? shadow_json_number(v) : -1;
  if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d))
    return fail(p, "%s must be a whole number >= 0", name);
  *out = (size_t)d;
  return 0;
}

int shadow_diff_opts_parse(shadow_diff_opts_t *o, const char *json, size_t len,
                           char *err, size_t errlen) {
  parse_t p = {o, err, errlen};
  if (err && errlen) err[0] = '\0';
  if (!o || !json) return -EINVAL;
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t root;
  size_t off = 0;
  const char *why = NULL;
  int rc = shadow_json_parse(&arena, json, len, &root, &off, &why);
  if (rc == -ENOMEM) goto out;
  if (rc || !is_object(&root)) {
    rc = fail(&p, "options must be a table");
    goto out;
  }
  static const char *const sections[] = {"ignore", "arrays",     "tolerance",
                                         "rename", "coerce",     "mask",
                                         "time",   "diff_bytes", "value_max"};
  enum { NSECTIONS = sizeof sections / sizeof *sections };
  for (uint32_t i = 0; i < root.len && rc == 0; i++) {
    int known = 0;
    for (int k = 0; k < NSECTIONS; k++)
      known |= key_is(&root.u.members[i], sections[k]);
    if (!known)
      rc = fail(&p, "unknown field %.*s", (int)root.u.members[i].klen,
                root.u.members[i].key);
  }
  for (int k = 0; k < NSECTIONS && rc == 0; k++) {
    for (uint32_t i = 0; i < root.len && rc == 0; i++) {
      const shadow_json_member_t *m = &root.u.members[i];
      const shadow_json_t *v = &m->value;
      size_t n = 0;
      if (!key_is(m, sections[k])) continue;
      switch (k) {
      case 0: rc = read_ignore(&p, v); break;
      case 1: rc = read_table(&p, v, "arrays", "mode", read_array_mode); break;
      case 2:
        rc = read_table(&p, v, "tolerance", "number", read_tolerance);
        break;
      case 3: rc = read_table(&p, v, "rename", "rule", read_rename); break;
      case 4: rc = read_table(&p, v, "coerce", "rule", read_coerce); break;
      case 5: rc = read_table(&p, v, "mask", "rule", read_mask); break;
      case 6: rc = read_table(&p, v, "time", "rule", read_time); break;
      case 7:
        rc = read_size(&p, v, "diff_bytes", &n);
        if (!rc) shadow_diff_opts_set_diff_bytes(o, n);
        break;
      default:
        rc = read_size(&p, v, "value_max", &n);
        if (!rc) shadow_diff_opts_set_value_max(o, n);
        break;
      }
    }
  }
out:
  shadow_json_arena_free(&arena);
  return rc;
}
