/* A protobuf message written as JSON text, for json_diff.c to compare
 * under the same rules as a JSON body (and against a JSON body).
 *
 * Without a schema a message is an object keyed by field number ("1",
 * "2"); a number seen more than once is an array of its values in wire
 * order. A varint is an unsigned integer (so int32 -1 reads
 * 18446744073709551615 and sint32 -1 reads 1: the wire does not say
 * which), fixed32 and fixed64 unsigned integers too. A length-delimited
 * payload is a nested message when it parses wholly as one (and is not
 * empty), else a string when it is valid UTF-8, else a base64 string.
 *
 * With a schema fields are keyed by their .proto name; enums by value
 * name (the number when the value is unknown); map fields are objects;
 * repeated fields are arrays, packed or not; sint zigzag-decoded; float
 * and double as their shortest round-trip decimal (NaN and infinities as
 * the strings "NaN", "Infinity", "-Infinity"); bool true/false; bytes
 * base64; 64-bit integers as exact numbers. A field absent from the wire
 * is absent from the tree (a proto3 default is never written, so one
 * encoder writing an explicit zero shows as a field added). A singular
 * field seen twice keeps its last value. Numbers the schema does not know
 * are keyed by number as without a schema, and so is a field whose wire
 * type does not match its declared type.
 *
 * What does not decode: a message stops at the first field that does not
 * decode (a cut varint, a length past the end, a group), and the bytes
 * from there to its end become the member "_undecoded", a base64 string,
 * beside the fields read before. A field declared as a message that does
 * not parse as one, or that lies deeper than SHADOW_PB_MAX_DEPTH, is a
 * base64 string. Nothing is refused: every byte string gives a tree.
 *
 * Bounds: recursion is at most SHADOW_PB_MAX_DEPTH deep; each level holds
 * one index per field it has, and the fields of the levels on the stack
 * never overlap, so memory is linear in the message; the output is at
 * most a fixed multiple of the input. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protobuf_schema.h"
#include "utf8.h"

typedef struct emit_s {
  const shadow_pb_schema_t *s;
  shadow_buf_t *out;
} emit_t;

int shadow_pb_base64(shadow_buf_t *b, const uint8_t *p, size_t n) {
  static const char abc[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (shadow_buf_reserve(b, (n + 2) / 3 * 4 + 2)) return -ENOMEM;
  char *o = b->data + b->len;
  *o++ = '"';
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = abc[(v >> 6) & 63];
    *o++ = abc[v & 63];
  }
  if (i < n) {
    uint32_t v =
        (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = i + 1 < n ? abc[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o++ = '"';
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
  return 0;
}

static int utf8_valid(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t k = shadow_utf8_seq(p + i, n - i);
    if (!k) return 0;
    i += k;
  }
  return 1;
}

static int put_text_or_bytes(shadow_buf_t *b, const uint8_t *p, size_t n) {
  if (utf8_valid(p, n)) return shadow_buf_json_string(b, (const char *)p, n, 0);
  return shadow_pb_base64(b, p, n);
}

/* Integers in decimal without printf, which was a third of the time. */
static int put_u64(shadow_buf_t *b, uint64_t v) {
  char tmp[24];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return shadow_buf_append(b, tmp + i, sizeof tmp - i);
}

static int put_i64(shadow_buf_t *b, int64_t v) {
  if (v >= 0) return put_u64(b, (uint64_t)v);
  /* -(v + 1) + 1: INT64_MIN has no positive twin. */
  return shadow_buf_putc(b, '-') || put_u64(b, (uint64_t)(-(v + 1)) + 1)
             ? -ENOMEM
             : 0;
}

static int put_key_number(shadow_buf_t *b, uint32_t number) {
  return shadow_buf_putc(b, '"') || put_u64(b, number) ||
                 shadow_buf_puts(b, "\":")
             ? -ENOMEM
             : 0;
}

/* The fields of one message, as read: in idx order once sorted by number
 * (wire order kept within a number), and where the undecodable rest
 * starts (NULL when it all decoded). */
typedef struct fields_s {
  shadow_pb_field_t *v;
  size_t n;
  const uint8_t *rest;
  size_t restlen;
} fields_t;

/* A field and its place on the wire: qsort is not stable, so the place
 * keeps the wire order within one number. */
typedef struct slot_s {
  shadow_pb_field_t f;
  size_t order;
} slot_t;

static int by_slot(const void *a, const void *b) {
  const slot_t *x = a, *y = b;
  if (x->f.number != y->f.number)
    return (x->f.number > y->f.number) - (x->f.number < y->f.number);
  return (x->order > y->order) - (x->order < y->order);
}

/* Reads every field of p[0, n) into fs, sorted by number. */
static int collect(const uint8_t *p, size_t n, fields_t *fs) {
  const uint8_t *q = p, *end = p + n;
  shadow_pb_field_t f;
  size_t count = 0;
  int rc;
  while ((rc = shadow_pb_next(&q, end, &f)) == 1)
    count++;
  fs->rest = rc < 0 ? q : NULL;
  fs->restlen = rc < 0 ? (size_t)(end - q) : 0;
  fs->n = count;
  fs->v = NULL;
  if (!count) return 0;
  slot_t *slots = malloc(count * sizeof *slots);
  if (!slots) return -ENOMEM;
  q = p;
  int in_order = 1;
  for (size_t i = 0; i < count; i++) {
    shadow_pb_next(&q, end, &slots[i].f);
    slots[i].order = i;
    if (i && slots[i].f.number < slots[i - 1].f.number) in_order = 0;
  }
  /* Encoders write fields by number: most messages need no sort. */
  if (!in_order) qsort(slots, count, sizeof *slots, by_slot);
  /* Compact in place: a slot is larger than a field, so field i never
   * overwrites a slot not yet moved. */
  shadow_pb_field_t *v = (shadow_pb_field_t *)slots;
  for (size_t i = 0; i < count; i++)
    memmove(&v[i], &slots[i].f, sizeof v[i]);
  fs->v = v;
  return 0;
}

static int emit_raw(emit_t *e, const uint8_t *p, size_t n, int depth);
static int emit_typed(emit_t *e, long msg, const uint8_t *p, size_t n,
                      int depth);

/* Text as a person writes it: valid UTF-8 without control characters
 * but tab, CR and LF. Short words often parse as messages ("hi" is field
 * 13 = 105), while a real message nearly always holds a control byte (a
 * tag of fields 1 to 3, a short length, a small value), so text is taken
 * as a string first. */
static int is_text(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') ||
        p[i] == 0x7f)
      return 0;
  return utf8_valid(p, n);
}

/* A length-delimited payload without a schema. */
static int put_raw_len(emit_t *e, const uint8_t *p, size_t n, int depth) {
  if (n > 0 && depth < SHADOW_PB_MAX_DEPTH && !is_text(p, n) &&
      shadow_pb_is_message(p, n))
    return emit_raw(e, p, n, depth + 1);
  return put_text_or_bytes(e->out, p, n);
}

static int put_raw_value(emit_t *e, const shadow_pb_field_t *f, int depth) {
  switch (f->wire) {
  case SHADOW_PB_LEN: return put_raw_len(e, f->p, f->n, depth);
  case SHADOW_PB_FIXED32: return put_u64(e->out, (uint32_t)f->v);
  default: return put_u64(e->out, f->v);
  }
}

static int put_rest(emit_t *e, const fields_t *fs, int comma) {
  if (!fs->rest) return 0;
  if ((comma && shadow_buf_putc(e->out, ',')) ||
      shadow_buf_puts(e->out, "\"_undecoded\":"))
    return -ENOMEM;
  return shadow_pb_base64(e->out, fs->rest, fs->restlen);
}

/* Writes the values of fs->v[i, j) (one field number) as one value, or
 * as an array when there are several. */
static int put_raw_group(emit_t *e, const fields_t *fs, size_t i, size_t j,
                         int depth) {
  int rc = 0;
  if (j - i > 1) rc = shadow_buf_putc(e->out, '[');
  for (size_t k = i; k < j && !rc; k++) {
    if (k > i) rc = shadow_buf_putc(e->out, ',');
    if (!rc) rc = put_raw_value(e, &fs->v[k], depth);
  }
  if (!rc && j - i > 1) rc = shadow_buf_putc(e->out, ']');
  return rc;
}

static int emit_raw(emit_t *e, const uint8_t *p, size_t n, int depth) {
  fields_t fs;
  int rc = collect(p, n, &fs);
  if (rc) return rc;
  rc = shadow_buf_putc(e->out, '{');
  size_t i = 0;
  while (!rc && i < fs.n) {
    size_t j = i + 1;
    while (j < fs.n && fs.v[j].number == fs.v[i].number)
      j++;
    if (i > 0) rc = shadow_buf_putc(e->out, ',');
    if (!rc) rc = put_key_number(e->out, fs.v[i].number);
    if (!rc) rc = put_raw_group(e, &fs, i, j, depth);
    i = j;
  }
  if (!rc) rc = put_rest(e, &fs, fs.n > 0);
  if (!rc) rc = shadow_buf_putc(e->out, '}');
  free(fs.v);
  return rc;
}

/* ---- with a schema ---------------------------------------------------- */

/* The wire type a declared type travels as, or -1 (groups). */
static int wire_of(int type) {
  switch (type) {
  case PB_T_DOUBLE:
  case PB_T_FIXED64:
  case PB_T_SFIXED64: return SHADOW_PB_FIXED64;
  case PB_T_FLOAT:
  case PB_T_FIXED32:
  case PB_T_SFIXED32: return SHADOW_PB_FIXED32;
  case PB_T_STRING:
  case PB_T_BYTES:
  case PB_T_MESSAGE: return SHADOW_PB_LEN;
  case PB_T_GROUP: return -1;
  default: return SHADOW_PB_VARINT;
  }
}

static int put_double(shadow_buf_t *b, double d, int is_float) {
  if (isnan(d)) return shadow_buf_puts(b, "\"NaN\"");
  if (isinf(d))
    return shadow_buf_puts(b, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  /* The shortest decimal that reads back as the same value, so 0.1 sent
   * as a float or double is 0.1, as a JSON side would write it. */
  char tmp[40];
  for (int prec = is_float ? 6 : 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (is_float ? strtof(tmp, NULL) == (float)d : strtod(tmp, NULL) == d)
      break;
  }
  return shadow_buf_puts(b, tmp);
}

static int put_enum(shadow_buf_t *b, const pb_enum_t *en, int32_t v) {
  for (size_t i = 0; en && i < en->nvalues; i++)
    if (en->values[i].number == v)
      return shadow_buf_json_string(b, en->values[i].name,
                                    strlen(en->values[i].name), 0);
  return put_i64(b, v);
}

/* A scalar (not string, bytes or message) from its wire value. */
static int put_scalar(shadow_buf_t *b, const pb_field_def_t *d, uint64_t v) {
  switch (d->type) {
  case PB_T_DOUBLE: {
    double x;
    memcpy(&x, &v, sizeof x);
    return put_double(b, x, 0);
  }
  case PB_T_FLOAT: {
    uint32_t u = (uint32_t)v;
    float x;
    memcpy(&x, &u, sizeof x);
    return put_double(b, (double)x, 1);
  }
  case PB_T_INT64:
  case PB_T_SFIXED64: return put_i64(b, (int64_t)v);
  case PB_T_INT32:
  case PB_T_SFIXED32: return put_i64(b, (int32_t)(uint32_t)v);
  case PB_T_UINT32:
  case PB_T_FIXED32: return put_u64(b, (uint32_t)v);
  case PB_T_SINT32: {
    uint32_t u = (uint32_t)v;
    int32_t x = (int32_t)(u >> 1) ^ -(int32_t)(u & 1);
    return put_i64(b, x);
  }
  case PB_T_SINT64: {
    int64_t x = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    return put_i64(b, x);
  }
  case PB_T_BOOL: return shadow_buf_puts(b, v ? "true" : "false");
  case PB_T_ENUM: return put_enum(b, d->enm, (int32_t)(uint32_t)v);
  default: return put_u64(b, v);
  }
}

static int put_typed_value(emit_t *e, const pb_field_def_t *d,
                           const shadow_pb_field_t *f, int depth) {
  if (f->wire != wire_of(d->type)) return put_raw_value(e, f, depth);
  switch (d->type) {
  case PB_T_STRING: return put_text_or_bytes(e->out, f->p, f->n);
  case PB_T_BYTES: return shadow_pb_base64(e->out, f->p, f->n);
  case PB_T_MESSAGE:
    if (d->msg < 0 || depth >= SHADOW_PB_MAX_DEPTH ||
        !shadow_pb_is_message(f->p, f->n))
      return shadow_pb_base64(e->out, f->p, f->n);
    return emit_typed(e, d->msg, f->p, f->n, depth + 1);
  default: return put_scalar(e->out, d, f->v);
  }
}

/* A packed run of scalars, each written as an array element. -1 when it
 * does not decode (nothing is written then: the caller writes bytes). */
static int put_packed(emit_t *e, const pb_field_def_t *d,
                      const shadow_pb_field_t *f, int *first) {
  int w = wire_of(d->type);
  /* Check first, so a bad run leaves nothing half written. */
  const uint8_t *q = f->p, *end = f->p + f->n;
  while (q < end) {
    uint64_t v;
    if (w == SHADOW_PB_VARINT) {
      if (shadow_pb_varint(&q, end, &v)) return -1;
    } else {
      size_t k = w == SHADOW_PB_FIXED64 ? 8 : 4;
      if ((size_t)(end - q) < k) return -1;
      q += k;
    }
  }
  q = f->p;
  while (q < end) {
    uint64_t v = 0;
    if (w == SHADOW_PB_VARINT) {
      shadow_pb_varint(&q, end, &v);
    } else {
      size_t k = w == SHADOW_PB_FIXED64 ? 8 : 4;
      for (size_t i = 0; i < k; i++)
        v |= (uint64_t)q[i] << (8 * i);
      q += k;
    }
    if ((!*first && shadow_buf_putc(e->out, ',')) || put_scalar(e->out, d, v))
      return -ENOMEM;
    *first = 0;
  }
  return 0;
}

static int packable(int type) {
  return type != PB_T_STRING && type != PB_T_BYTES && type != PB_T_MESSAGE &&
         type != PB_T_GROUP;
}

static int put_repeated(emit_t *e, const pb_field_def_t *d, const fields_t *fs,
                        size_t i, size_t j, int depth) {
  int rc = shadow_buf_putc(e->out, '['), first = 1;
  for (size_t k = i; k < j && !rc; k++) {
    const shadow_pb_field_t *f = &fs->v[k];
    if (packable(d->type) && f->wire == SHADOW_PB_LEN) {
      rc = put_packed(e, d, f, &first);
      if (rc != -1) continue;
      rc = 0; /* a packed run that does not decode: one bytes element */
    }
    if (!first) rc = shadow_buf_putc(e->out, ',');
    first = 0;
    if (!rc) rc = put_typed_value(e, d, f, depth);
  }
  return rc ? rc : shadow_buf_putc(e->out, ']');
}

/* A map key as a JSON string: the key field's value as text. */
static int put_map_key(shadow_buf_t *b, const pb_field_def_t *kd,
                       const shadow_pb_field_t *kf) {
  if (!kf)
    return shadow_buf_puts(b, kd && kd->type == PB_T_BOOL     ? "\"false\""
                              : kd && kd->type == PB_T_STRING ? "\"\""
                                                              : "\"0\"");
  if (kf->wire == SHADOW_PB_LEN) {
    if (utf8_valid(kf->p, kf->n))
      return shadow_buf_json_string(b, (const char *)kf->p, kf->n, 0);
    return shadow_pb_base64(b, kf->p, kf->n);
  }
  shadow_buf_t tmp = SHADOW_BUF_INIT;
  int rc = put_scalar(&tmp, kd, kf->v);
  if (!rc) rc = shadow_buf_json_string(b, tmp.data, tmp.len, 0);
  shadow_buf_free(&tmp);
  return rc;
}

/* The value of an entry that has none on the wire: the type's zero. */
static int put_zero(shadow_buf_t *b, const pb_field_def_t *vd) {
  switch (vd->type) {
  case PB_T_STRING:
  case PB_T_BYTES: return shadow_buf_puts(b, "\"\"");
  case PB_T_MESSAGE: return shadow_buf_puts(b, "{}");
  default: return put_scalar(b, vd, 0);
  }
}

/* Map entries as an object, each entry's key (field 1) and value (field
 * 2); a later entry with the same key wins, as the JSON diff reads a
 * repeated key. 1 when an entry does not decode (nothing written). */
static int put_map(emit_t *e, const pb_message_t *entry, const fields_t *fs,
                   size_t i, size_t j, int depth) {
  for (size_t k = i; k < j; k++)
    if (fs->v[k].wire != SHADOW_PB_LEN ||
        !shadow_pb_is_message(fs->v[k].p, fs->v[k].n))
      return 1;
  const pb_field_def_t *kd = pb_message_field(entry, 1);
  const pb_field_def_t *vd = pb_message_field(entry, 2);
  if (!kd || !vd || depth >= SHADOW_PB_MAX_DEPTH) return 1;
  int rc = shadow_buf_putc(e->out, '{');
  for (size_t k = i; k < j && !rc; k++) {
    shadow_pb_field_t f, kf, vf;
    int hk = 0, hv = 0;
    const uint8_t *q = fs->v[k].p, *end = q + fs->v[k].n;
    while (shadow_pb_next(&q, end, &f) == 1) {
      if (f.number == 1) kf = f, hk = 1;
      if (f.number == 2) vf = f, hv = 1;
    }
    if (k > i) rc = shadow_buf_putc(e->out, ',');
    if (!rc) rc = put_map_key(e->out, kd, hk ? &kf : NULL);
    if (!rc) rc = shadow_buf_putc(e->out, ':');
    if (!rc)
      rc = hv ? put_typed_value(e, vd, &vf, depth + 1) : put_zero(e->out, vd);
  }
  return rc ? rc : shadow_buf_putc(e->out, '}');
}

static int emit_typed(emit_t *e, long msg, const uint8_t *p, size_t n,
                      int depth) {
  const pb_message_t *m = &e->s->msgs[msg];
  fields_t fs;
  int rc = collect(p, n, &fs);
  if (rc) return rc;
  rc = shadow_buf_putc(e->out, '{');
  size_t i = 0;
  while (!rc && i < fs.n) {
    size_t j = i + 1;
    while (j < fs.n && fs.v[j].number == fs.v[i].number)
      j++;
    const pb_field_def_t *d = pb_message_field(m, fs.v[i].number);
    if (i > 0) rc = shadow_buf_putc(e->out, ',');
    if (!rc)
      rc = d ? shadow_buf_json_string(e->out, d->name, strlen(d->name), 0) ||
                   shadow_buf_putc(e->out, ':')
             : put_key_number(e->out, fs.v[i].number);
    if (rc) {
      rc = -ENOMEM;
    } else if (!d) {
      rc = put_raw_group(e, &fs, i, j, depth);
    } else if (d->label == PB_LABEL_REPEATED && d->type == PB_T_MESSAGE &&
               d->msg >= 0 && e->s->msgs[d->msg].map_entry) {
      rc = put_map(e, &e->s->msgs[d->msg], &fs, i, j, depth);
      if (rc == 1) rc = put_raw_group(e, &fs, i, j, depth);
    } else if (d->label == PB_LABEL_REPEATED) {
      rc = put_repeated(e, d, &fs, i, j, depth);
    } else {
      rc = put_typed_value(e, d, &fs.v[j - 1], depth); /* the last wins */
    }
    i = j;
  }
  if (!rc) rc = put_rest(e, &fs, fs.n > 0);
  if (!rc) rc = shadow_buf_putc(e->out, '}');
  free(fs.v);
  return rc;
}

int shadow_pb_to_json(const void *msg, size_t len, const shadow_pb_schema_t *s,
                      const char *type, shadow_buf_t *out) {
  emit_t e = {s, out};
  const uint8_t *p = msg ? msg : (const uint8_t *)"";
  if (!s || !type) return emit_raw(&e, p, len, 1);
  long m;
  if (type[0] == '.') {
    m = pb_schema_find_message(s, type);
  } else {
    size_t n = strlen(type);
    char *full = malloc(n + 2);
    if (!full) return -ENOMEM;
    full[0] = '.';
    memcpy(full + 1, type, n + 1);
    m = pb_schema_find_message(s, full);
    free(full);
  }
  if (m < 0) return -EINVAL;
  return emit_typed(&e, m, p, len, 1);
}
