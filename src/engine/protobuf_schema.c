/* A descriptor set read into a schema: FileDescriptorSet is itself a
 * protobuf message, so it is read with protobuf_wire.c like any other.
 * Kept of it: each message type by full name (nested types too) with its
 * fields (number, name, type, label, the message or enum type it names)
 * and the map_entry option, each enum with its values, and each service
 * method's call path with its output type (what a gRPC response holds).
 * Everything else (options, source info) is skipped. The set is untrusted
 * input like a message: bounded nesting, every read checked. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protobuf_schema.h"

typedef struct load_s {
  shadow_pb_schema_t *s;
  char *err;
  size_t errlen;
} load_t;

static int fail(load_t *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(load_t *l, const char *fmt, ...) {
  if (l->err && l->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, l->errlen, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}

static int not_a_set(load_t *l) {
  return fail(l, "not a descriptor set (make one with protoc "
                 "--descriptor_set_out=FILE --include_imports)");
}

/* "prefix.name" (prefix "" gives ".name"), or NULL without memory. */
static char *join(const char *prefix, const shadow_pb_field_t *name) {
  size_t pl = strlen(prefix);
  char *s = malloc(pl + 1 + name->n + 1);
  if (!s) return NULL;
  memcpy(s, prefix, pl);
  s[pl] = '.';
  memcpy(s + pl + 1, name->p, name->n);
  s[pl + 1 + name->n] = '\0';
  return s;
}

/* Finds the string field number in p[0, n) (the last one, as protobuf
 * merges). 1 found, 0 absent, -1 malformed. */
static int find_string(const uint8_t *p, size_t n, uint32_t number,
                       shadow_pb_field_t *out) {
  const uint8_t *end = p + n;
  shadow_pb_field_t f;
  int rc, found = 0;
  while ((rc = shadow_pb_next(&p, end, &f)) == 1)
    if (f.number == number) {
      if (f.wire != SHADOW_PB_LEN) return -1;
      *out = f;
      found = 1;
    }
  return rc < 0 ? -1 : found;
}

static int grow(void **v, size_t *cap, size_t n, size_t size) {
  if (n < *cap) return 0;
  size_t c = *cap ? *cap * 2 : 16;
  void *nv = realloc(*v, c * size);
  if (!nv) return -ENOMEM;
  *v = nv;
  *cap = c;
  return 0;
}

static int read_enum(load_t *l, const char *prefix, const uint8_t *p,
                     size_t n) {
  shadow_pb_field_t name;
  if (find_string(p, n, 1, &name) != 1) return not_a_set(l);
  shadow_pb_schema_t *s = l->s;
  if (grow((void **)&s->enums, &s->capenums, s->nenums, sizeof *s->enums))
    return -ENOMEM;
  pb_enum_t *e = &s->enums[s->nenums];
  memset(e, 0, sizeof *e);
  e->full = join(prefix, &name);
  if (!e->full) return -ENOMEM;
  s->nenums++;
  const uint8_t *end = p + n;
  shadow_pb_field_t f;
  size_t cap = 0;
  int rc;
  while ((rc = shadow_pb_next(&p, end, &f)) == 1) {
    if (f.number != 2) continue;
    if (f.wire != SHADOW_PB_LEN) return not_a_set(l);
    pb_enum_value_t v = {0, NULL};
    const uint8_t *q = f.p, *qend = f.p + f.n;
    shadow_pb_field_t g;
    int r2;
    while ((r2 = shadow_pb_next(&q, qend, &g)) == 1) {
      if (g.number == 1 && g.wire == SHADOW_PB_LEN) {
        free(v.name);
        v.name = shadow_bytes_dup((const char *)g.p, g.n);
        if (!v.name) return -ENOMEM;
      } else if (g.number == 2 && g.wire == SHADOW_PB_VARINT) {
        v.number = (int32_t)(uint32_t)g.v;
      }
    }
    if (r2 < 0 || !v.name) {
      free(v.name);
      return not_a_set(l);
    }
    if (grow((void **)&e->values, &cap, e->nvalues, sizeof *e->values)) {
      free(v.name);
      return -ENOMEM;
    }
    e->values[e->nvalues++] = v;
  }
  return rc < 0 ? not_a_set(l) : 0;
}

static int read_field(load_t *l, pb_message_t *m, size_t *cap, const uint8_t *p,
                      size_t n) {
  if (grow((void **)&m->fields, cap, m->nfields, sizeof *m->fields))
    return -ENOMEM;
  pb_field_def_t *d = &m->fields[m->nfields];
  memset(d, 0, sizeof *d);
  d->msg = -1;
  m->nfields++;
  const uint8_t *end = p + n;
  shadow_pb_field_t f;
  int rc;
  while ((rc = shadow_pb_next(&p, end, &f)) == 1) {
    char **str = f.number == 1   ? &d->name
                 : f.number == 6 ? &d->type_name
                                 : NULL;
    if (str && f.wire == SHADOW_PB_LEN) {
      free(*str);
      *str = shadow_bytes_dup((const char *)f.p, f.n);
      if (!*str) return -ENOMEM;
    } else if (f.wire == SHADOW_PB_VARINT) {
      if (f.number == 3) d->number = (uint32_t)f.v;
      if (f.number == 4) d->label = (int)(f.v & 0xff);
      if (f.number == 5) d->type = (int)(f.v & 0xff);
    }
  }
  if (rc < 0 || !d->name || d->number == 0 || d->type < PB_T_DOUBLE ||
      d->type > PB_T_SINT64)
    return not_a_set(l);
  return 0;
}

static int read_message(load_t *l, const char *prefix, const uint8_t *p,
                        size_t n, int depth) {
  if (depth > SHADOW_PB_MAX_DEPTH)
    return fail(l, "descriptor set: types nested more than %d deep",
                SHADOW_PB_MAX_DEPTH);
  shadow_pb_field_t name;
  if (find_string(p, n, 1, &name) != 1) return not_a_set(l);
  shadow_pb_schema_t *s = l->s;
  if (grow((void **)&s->msgs, &s->capmsgs, s->nmsgs, sizeof *s->msgs))
    return -ENOMEM;
  size_t me = s->nmsgs++;
  memset(&s->msgs[me], 0, sizeof s->msgs[me]);
  char *full = join(prefix, &name);
  if (!full) return -ENOMEM;
  s->msgs[me].full = full;
  const uint8_t *end = p + n;
  shadow_pb_field_t f;
  size_t cap = 0;
  int rc;
  while ((rc = shadow_pb_next(&p, end, &f)) == 1) {
    int r = 0;
    if (f.number == 2 || f.number == 3 || f.number == 4 || f.number == 7) {
      if (f.wire != SHADOW_PB_LEN) return not_a_set(l);
    }
    /* s->msgs moves as nested types are added: index it each time. */
    if (f.number == 2) {
      r = read_field(l, &s->msgs[me], &cap, f.p, f.n);
    } else if (f.number == 3) {
      r = read_message(l, full, f.p, f.n, depth + 1);
    } else if (f.number == 4) {
      r = read_enum(l, full, f.p, f.n);
    } else if (f.number == 7) { /* MessageOptions: map_entry is 7 */
      const uint8_t *q = f.p, *qend = f.p + f.n;
      shadow_pb_field_t g;
      while (shadow_pb_next(&q, qend, &g) == 1)
        if (g.number == 7 && g.wire == SHADOW_PB_VARINT)
          s->msgs[me].map_entry = g.v != 0;
    }
    if (r) return r;
  }
  return rc < 0 ? not_a_set(l) : 0;
}

/* ServiceDescriptorProto: name 1, method 2 (MethodDescriptorProto: name
 * 1, output_type 3). pkg is the file's package ("" when none). */
static int read_service(load_t *l, const shadow_pb_field_t *pkg,
                        const uint8_t *p, size_t n) {
  shadow_pb_field_t name = {0, 0, 0, NULL, 0};
  if (find_string(p, n, 1, &name) != 1) return not_a_set(l);
  shadow_pb_schema_t *s = l->s;
  const uint8_t *end = p + n;
  shadow_pb_field_t f;
  int rc;
  while ((rc = shadow_pb_next(&p, end, &f)) == 1) {
    if (f.number != 2) continue;
    if (f.wire != SHADOW_PB_LEN) return not_a_set(l);
    shadow_pb_field_t mname = {0, 0, 0, NULL, 0}, out = mname;
    if (find_string(f.p, f.n, 1, &mname) != 1 ||
        find_string(f.p, f.n, 3, &out) != 1)
      return not_a_set(l);
    if (grow((void **)&s->methods, &s->capmethods, s->nmethods,
             sizeof *s->methods))
      return -ENOMEM;
    pb_method_t *m = &s->methods[s->nmethods];
    size_t pl = pkg ? pkg->n : 0;
    m->path = malloc(pl + name.n + mname.n + 4);
    m->output_name = shadow_bytes_dup((const char *)out.p, out.n);
    m->output = -1;
    s->nmethods++; /* counted now, so a failure below frees it */
    if (!m->path || !m->output_name) return -ENOMEM;
    char *w = m->path;
    *w++ = '/';
    if (pl) {
      memcpy(w, pkg->p, pl);
      w += pl;
      *w++ = '.';
    }
    memcpy(w, name.p, name.n);
    w += name.n;
    *w++ = '/';
    memcpy(w, mname.p, mname.n);
    w[mname.n] = '\0';
  }
  return rc < 0 ? not_a_set(l) : 0;
}

static int read_file(load_t *l, const uint8_t *p, size_t n) {
  shadow_pb_field_t pkg;
  int has = find_string(p, n, 2, &pkg);
  if (has < 0) return not_a_set(l);
  char *prefix = has ? join("", &pkg) : shadow_bytes_dup("", 0);
  if (!prefix) return -ENOMEM;
  if (has && pkg.n == 0) prefix[0] = '\0';
  const uint8_t *end = p + n;
  shadow_pb_field_t f;
  int rc = 0, r = 0;
  while (!r && (rc = shadow_pb_next(&p, end, &f)) == 1) {
    if (f.number != 4 && f.number != 5 && f.number != 6) continue;
    if (f.wire != SHADOW_PB_LEN) {
      r = not_a_set(l);
      break;
    }
    r = f.number == 4   ? read_message(l, prefix, f.p, f.n, 1)
        : f.number == 5 ? read_enum(l, prefix, f.p, f.n)
                        : read_service(l, has && pkg.n ? &pkg : NULL, f.p, f.n);
  }
  free(prefix);
  if (r) return r;
  return rc < 0 ? not_a_set(l) : 0;
}

static int by_msg_name(const void *a, const void *b) {
  return strcmp(((const pb_message_t *)a)->full,
                ((const pb_message_t *)b)->full);
}

static int by_enum_name(const void *a, const void *b) {
  return strcmp(((const pb_enum_t *)a)->full, ((const pb_enum_t *)b)->full);
}

static int by_path(const void *a, const void *b) {
  return strcmp(((const pb_method_t *)a)->path, ((const pb_method_t *)b)->path);
}

static int by_number(const void *a, const void *b) {
  uint32_t x = ((const pb_field_def_t *)a)->number;
  uint32_t y = ((const pb_field_def_t *)b)->number;
  return (x > y) - (x < y);
}

long pb_schema_find_message(const shadow_pb_schema_t *s, const char *full) {
  size_t lo = 0, hi = s->nmsgs;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(s->msgs[mid].full, full);
    if (c == 0) return (long)mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

static const pb_enum_t *find_enum(const shadow_pb_schema_t *s,
                                  const char *full) {
  pb_enum_t key;
  key.full = (char *)(uintptr_t)full;
  return s->nenums ? bsearch(&key, s->enums, s->nenums, sizeof *s->enums,
                             by_enum_name)
                   : NULL;
}

const pb_field_def_t *pb_message_field(const pb_message_t *m, uint32_t number) {
  size_t lo = 0, hi = m->nfields;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->fields[mid].number == number) return &m->fields[mid];
    if (m->fields[mid].number < number)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* Points each message and enum field at its type. */
static int resolve(load_t *l) {
  shadow_pb_schema_t *s = l->s;
  if (s->nmsgs) qsort(s->msgs, s->nmsgs, sizeof *s->msgs, by_msg_name);
  if (s->nenums) qsort(s->enums, s->nenums, sizeof *s->enums, by_enum_name);
  if (s->nmethods) qsort(s->methods, s->nmethods, sizeof *s->methods, by_path);
  for (size_t i = 0; i < s->nmethods; i++) {
    pb_method_t *m = &s->methods[i];
    if (m->output_name[0] == '.')
      m->output = pb_schema_find_message(s, m->output_name);
    if (m->output < 0)
      return fail(l,
                  "descriptor set: method %s returns %s, which it does not "
                  "hold (was it made with --include_imports?)",
                  m->path, m->output_name);
  }
  for (size_t i = 0; i < s->nmsgs; i++) {
    pb_message_t *m = &s->msgs[i];
    if (m->nfields) qsort(m->fields, m->nfields, sizeof *m->fields, by_number);
    for (size_t j = 0; j < m->nfields; j++) {
      pb_field_def_t *d = &m->fields[j];
      if (d->type != PB_T_MESSAGE && d->type != PB_T_ENUM &&
          d->type != PB_T_GROUP)
        continue;
      if (!d->type_name || d->type_name[0] != '.')
        return fail(l,
                    "descriptor set: field %s.%s names no fully qualified "
                    "type",
                    m->full + 1, d->name);
      if (d->type == PB_T_ENUM)
        d->enm = find_enum(s, d->type_name);
      else
        d->msg = pb_schema_find_message(s, d->type_name);
      if (d->msg < 0 && !d->enm)
        return fail(l,
                    "descriptor set: field %s.%s names %s, which it does "
                    "not hold (was it made with --include_imports?)",
                    m->full + 1, d->name, d->type_name + 1);
    }
  }
  return 0;
}

int shadow_pb_schema_load(shadow_pb_schema_t **out, const void *data,
                          size_t len, char *err, size_t errlen) {
  *out = NULL;
  if (err && errlen) err[0] = '\0';
  load_t l = {calloc(1, sizeof(shadow_pb_schema_t)), err, errlen};
  if (!l.s) return -ENOMEM;
  const uint8_t *p = data ? data : (const uint8_t *)"";
  const uint8_t *end = p + len;
  shadow_pb_field_t f;
  int rc = 0, r = 0, files = 0;
  while (!r && (rc = shadow_pb_next(&p, end, &f)) == 1) {
    if (f.number != 1 || f.wire != SHADOW_PB_LEN) {
      r = not_a_set(&l);
      break;
    }
    files++;
    r = read_file(&l, f.p, f.n);
  }
  if (!r && (rc < 0 || files == 0)) r = not_a_set(&l);
  if (!r) r = resolve(&l);
  if (r) {
    shadow_pb_schema_free(l.s);
    return r;
  }
  *out = l.s;
  return 0;
}

void shadow_pb_schema_free(shadow_pb_schema_t *s) {
  if (!s) return;
  for (size_t i = 0; i < s->nmsgs; i++) {
    pb_message_t *m = &s->msgs[i];
    for (size_t j = 0; j < m->nfields; j++) {
      free(m->fields[j].name);
      free(m->fields[j].type_name);
    }
    free(m->fields);
    free(m->full);
  }
  for (size_t i = 0; i < s->nenums; i++) {
    for (size_t j = 0; j < s->enums[i].nvalues; j++)
      free(s->enums[i].values[j].name);
    free(s->enums[i].values);
    free(s->enums[i].full);
  }
  for (size_t i = 0; i < s->nmethods; i++) {
    free(s->methods[i].path);
    free(s->methods[i].output_name);
  }
  free(s->methods);
  free(s->msgs);
  free(s->enums);
  free(s);
}

int shadow_pb_schema_has(const shadow_pb_schema_t *s, const char *name) {
  if (!s || !name || !*name) return 0;
  if (name[0] == '.') return pb_schema_find_message(s, name) >= 0;
  size_t n = strlen(name);
  char *full = malloc(n + 2);
  if (!full) return 0;
  full[0] = '.';
  memcpy(full + 1, name, n + 1);
  int has = pb_schema_find_message(s, full) >= 0;
  free(full);
  return has;
}

const char *shadow_pb_schema_method_output(const shadow_pb_schema_t *s,
                                           const char *path, size_t len) {
  size_t lo = 0, hi = s ? s->nmethods : 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const char *mp = s->methods[mid].path;
    size_t ml = strlen(mp);
    int c = memcmp(mp, path, ml < len ? ml : len);
    if (c == 0) c = (ml > len) - (ml < len);
    if (c == 0) return s->msgs[s->methods[mid].output].full;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

size_t shadow_pb_schema_methods(const shadow_pb_schema_t *s) {
  return s ? s->nmethods : 0;
}
