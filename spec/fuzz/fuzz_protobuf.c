/* libFuzzer target for protobuf as a tree: the input is decoded without a
 * schema and with a fixed descriptor set (built here by hand, so the
 * target needs no file) as each of its message types; every result must
 * be JSON the diff's parser takes (bounded nesting included), and the
 * record diff must find a protobuf body and its JSON tree the same. The input
 * is also read as a descriptor set, which must load or be refused cleanly. Any
 * crash, leak or sanitizer report fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "diff.h"
#include "json.h"
#include "protobuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static shadow_pb_schema_t *schema;
static shadow_diff_opts_t *opts; /* with the schema, type f.M */

static void put_varint(shadow_buf_t *b, uint64_t v) {
  do {
    char c = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    shadow_buf_putc(b, c);
    v >>= 7;
  } while (v);
}

static void put_len(shadow_buf_t *b, uint32_t num, const shadow_buf_t *in) {
  put_varint(b, (uint64_t)num << 3 | 2);
  put_varint(b, in->len);
  shadow_buf_append(b, in->data ? in->data : "", in->len);
}

static void put_str(shadow_buf_t *b, uint32_t num, const char *s) {
  put_varint(b, (uint64_t)num << 3 | 2);
  put_varint(b, strlen(s));
  shadow_buf_puts(b, s);
}

static void put_int(shadow_buf_t *b, uint32_t num, uint64_t v) {
  put_varint(b, (uint64_t)num << 3);
  put_varint(b, v);
}

/* FieldDescriptorProto: name 1, number 3, label 4, type 5, type_name 6. */
static void field(shadow_buf_t *msg, const char *name, int number, int label,
                  int type, const char *type_name) {
  shadow_buf_t f = SHADOW_BUF_INIT;
  put_str(&f, 1, name);
  put_int(&f, 3, (uint64_t)number);
  put_int(&f, 4, (uint64_t)label);
  put_int(&f, 5, (uint64_t)type);
  if (type_name) put_str(&f, 6, type_name);
  put_len(msg, 2, &f);
  shadow_buf_free(&f);
}

/* package f: message M { every scalar type, a nested M, an enum E, a map
 * string -> M, packed ints } and enum E. */
static void setup(void) {
  shadow_buf_t m = SHADOW_BUF_INIT, file = SHADOW_BUF_INIT,
               set = SHADOW_BUF_INIT, entry = SHADOW_BUF_INIT,
               mopts = SHADOW_BUF_INIT, en = SHADOW_BUF_INIT,
               val = SHADOW_BUF_INIT;
  static const char *const names[] = {
      "d", "f", "i64", "u64", "i32", "fx64", "fx32", "b",   "s",
      "g", "m", "by",  "u32", "e",   "sf32", "sf64", "s32", "s64"};
  put_str(&m, 1, "M");
  for (int t = 1; t <= 18; t++) {
    if (t == 10) continue; /* groups */
    const char *tn = t == 11 ? ".f.M" : t == 14 ? ".f.E" : NULL;
    field(&m, names[t - 1], t, 1, t, tn);
    field(&m, names[t - 1], 100 + t, 3, t, tn); /* repeated twins */
  }
  put_str(&entry, 1, "MapEntry");
  field(&entry, "key", 1, 1, 9, NULL);
  field(&entry, "value", 2, 1, 11, ".f.M");
  put_int(&mopts, 7, 1);
  put_len(&entry, 7, &mopts);
  put_len(&m, 3, &entry);
  field(&m, "map", 50, 3, 11, ".f.M.MapEntry");
  put_str(&file, 1, "f.proto");
  put_str(&file, 2, "f");
  put_len(&file, 4, &m);
  put_str(&en, 1, "E");
  put_str(&val, 1, "ZERO");
  put_int(&val, 2, 0);
  put_len(&en, 2, &val);
  shadow_buf_reset(&val);
  put_str(&val, 1, "ONE");
  put_int(&val, 2, 1);
  put_len(&en, 2, &val);
  put_len(&file, 5, &en);
  put_len(&set, 1, &file);
  char err[128];
  if (shadow_pb_schema_load(&schema, set.data, set.len, err, sizeof err) ||
      !shadow_pb_schema_has(schema, "f.M") ||
      !shadow_pb_schema_has(schema, "f.M.MapEntry"))
    abort();
  opts = shadow_diff_opts_new();
  if (!opts || shadow_diff_opts_protobuf(opts, set.data, set.len, "f.M", err,
                                         sizeof err))
    abort();
  shadow_buf_free(&m);
  shadow_buf_free(&file);
  shadow_buf_free(&set);
  shadow_buf_free(&entry);
  shadow_buf_free(&mopts);
  shadow_buf_free(&en);
  shadow_buf_free(&val);
}

static void record(shadow_record_t *r, const char *type, const void *body,
                   size_t len) {
  shadow_record_init(r);
  r->status = 200;
  shadow_headers_add(&r->headers, "content-type", 12, type, strlen(type));
  shadow_buf_append(&r->body, body, len);
}

/* The message decodes to JSON the diff takes (so the tree is bounded and
 * well formed), and the record diff finds the protobuf body and that JSON
 * body the same. */
static void check_tree(const uint8_t *p, size_t n, const char *type) {
  shadow_buf_t out = SHADOW_BUF_INIT;
  if (shadow_pb_to_json(p, n, type ? schema : NULL, type, &out)) abort();
  if (shadow_json_validate(out.data, out.len)) abort();
  /* The bound docs/pending/protobuf.md states without a schema (24: the
   * "_undecoded" member, only ever at the top). */
  if (!type && out.len > 7 * n + 24) abort();
  if (!type || strcmp(type, "f.M") == 0) {
    shadow_record_t a, b;
    record(&a, "application/x-protobuf", p, n);
    record(&b, "application/json", out.data, out.len);
    shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
    int parts = shadow_diff_records(type ? opts : NULL, &a, &b, &res);
    if (parts < 0 || (parts & SHADOW_PART_BODY) ||
        res.body_kind != SHADOW_BODY_PROTOBUF)
      abort();
    shadow_diff_result_free(&res);
    shadow_record_release(&a);
    shadow_record_release(&b);
  }
  shadow_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!schema) setup();
  /* A copy, so a read past the end is an ASan error, not luck. */
  uint8_t *p = malloc(size ? size : 1);
  if (!p) abort();
  memcpy(p, data, size);
  check_tree(p, size, NULL);
  check_tree(p, size, "f.M");
  check_tree(p, size, "f.M.MapEntry");

  shadow_pb_schema_t *s = NULL;
  char err[128];
  if (shadow_pb_schema_load(&s, p, size, err, sizeof err) == 0) {
    if (!s) abort();
    shadow_pb_schema_free(s);
  } else if (s) {
    abort();
  }
  free(p);
  return 0;
}
