/* The diff rules from their JSON form: the one reader of `ignore`,
 * `arrays`, `tolerance`, `diff_bytes` and `value_max`, so the daemon's
 * config and shadow.diff's options (and the gateway's) take the same
 * rules with the same words for a bad one. Both sides hand over the Lua
 * table as JSON (lua/shadow/opts.lua encodes it), which keeps this file
 * free of Lua. Messages name the entry as a Lua user wrote it:
 * arrays["/tags"], ignore.json[2]. */
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

static int read_arrays(parse_t *p, const shadow_json_t *v) {
  static const char *const names[] = {"index", "set", "multiset"};
  if (!is_object(v))
    return fail(p, "arrays must be a table of JSON Pointer = mode");
  for (uint32_t i = 0; i < v->len; i++) {
    const shadow_json_member_t *m = &v->u.members[i];
    const shadow_json_t *mode = &m->value;
    char *ptr = shadow_bytes_dup(m->key, m->klen);
    char *key = NULL;
    if (!ptr) return -ENOMEM;
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
      if (!key) {
        free(ptr);
        return -ENOMEM;
      }
      id = SHADOW_ARRAY_KEY;
    }
    int rc = id < 0 ? -EINVAL : shadow_diff_opts_array_mode(p->o, ptr, id, key);
    if (rc == -EINVAL)
      rc = fail(p,
                "arrays[\"%s\"] must be \"index\", \"set\", \"multiset\" or "
                "{ key = \"field\" } under a JSON Pointer",
                ptr);
    free(ptr);
    free(key);
    if (rc) return rc;
  }
  return 0;
}

static int read_tolerance(parse_t *p, const shadow_json_t *v) {
  if (!is_object(v))
    return fail(p, "tolerance must be a table of JSON Pointer = number");
  for (uint32_t i = 0; i < v->len; i++) {
    const shadow_json_member_t *m = &v->u.members[i];
    char *ptr = shadow_bytes_dup(m->key, m->klen);
    if (!ptr) return -ENOMEM;
    int rc = m->value.type != SHADOW_JSON_NUMBER
                 ? -EINVAL
                 : shadow_diff_opts_tolerance(p->o, ptr,
                                              shadow_json_number(&m->value));
    if (rc == -EINVAL)
      rc = fail(p,
                "tolerance[\"%s\"] must be a number >= 0 under a JSON "
                "Pointer",
                ptr);
    free(ptr);
    if (rc) return rc;
  }
  return 0;
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
  for (uint32_t i = 0; i < root.len && rc == 0; i++) {
    const shadow_json_member_t *m = &root.u.members[i];
    size_t n = 0;
    if (key_is(m, "ignore")) {
      rc = read_ignore(&p, &m->value);
    } else if (key_is(m, "arrays")) {
      rc = read_arrays(&p, &m->value);
    } else if (key_is(m, "tolerance")) {
      rc = read_tolerance(&p, &m->value);
    } else if (key_is(m, "diff_bytes")) {
      rc = read_size(&p, &m->value, "diff_bytes", &n);
      if (!rc) shadow_diff_opts_set_diff_bytes(o, n);
    } else if (key_is(m, "value_max")) {
      rc = read_size(&p, &m->value, "value_max", &n);
      if (!rc) shadow_diff_opts_set_value_max(o, n);
    } else {
      rc = fail(&p, "unknown field %.*s", (int)m->klen, m->key);
    }
  }
out:
  shadow_json_arena_free(&arena);
  return rc;
}
