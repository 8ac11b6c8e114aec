/* Protobuf messages as JSON trees for the diff: a wire-format reader of
 * our own, a descriptor set (FileDescriptorSet, as `protoc
 * --descriptor_set_out --include_imports` writes it) read with that same
 * reader, and a message turned into JSON text that json_diff.c compares
 * under every rule. Without a schema fields are keyed by number; with one,
 * by name. Pure: no I/O. */
#ifndef SHADOW_PROTOBUF_H
#define SHADOW_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Messages nested deeper than this are not descended into: the field is
 * written as bytes. protobuf's own parsers stop at 100 too. */
#define SHADOW_PB_MAX_DEPTH 100

/* Wire types; 3 and 4 (groups) are refused. */
enum {
  SHADOW_PB_VARINT = 0,
  SHADOW_PB_FIXED64 = 1,
  SHADOW_PB_LEN = 2,
  SHADOW_PB_FIXED32 = 5
};

/* One field as it lies on the wire: for VARINT, FIXED64 and FIXED32 the
 * value in v; for LEN the payload's span in p, n. */
typedef struct shadow_pb_field_s {
  uint32_t number;
  int wire;
  uint64_t v;
  const uint8_t *p;
  size_t n;
} shadow_pb_field_t;

/* Reads the varint at *pp (before end) into *v and moves *pp past it. 0,
 * or -1 when it is cut short or longer than 10 bytes (then *pp is left). */
int shadow_pb_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v);

/* Reads the field at *pp into *f and moves *pp past it: 1, 0 at end, or
 * -1 when it does not decode (a cut varint, a length past the end, field
 * number 0 or above 2^29-1, a group or an unknown wire type); then *pp is
 * left at the field's start. */
int shadow_pb_next(const uint8_t **pp, const uint8_t *end,
                   shadow_pb_field_t *f);

/* 1 when p[0, n) is a whole message: every field decodes and the last one
 * ends exactly at n. Nested payloads are not looked into. */
int shadow_pb_is_message(const uint8_t *p, size_t n);

typedef struct shadow_pb_schema_s shadow_pb_schema_t;

/* Reads a FileDescriptorSet into a schema: every message type (nested ones
 * too) by full name, its fields, and the enums. Returns 0, -ENOMEM, or
 * -EINVAL with err saying what is wrong (not a descriptor set, a field
 * naming a type the set does not hold: --include_imports was left out). */
int shadow_pb_schema_load(shadow_pb_schema_t **out, const void *data,
                          size_t len, char *err, size_t errlen);
void shadow_pb_schema_free(shadow_pb_schema_t *s); /* NULL is fine */
/* 1 when the schema holds the message type name ("pkg.Type"; a leading
 * dot is allowed). */
int shadow_pb_schema_has(const shadow_pb_schema_t *s, const char *name);

/* The output type of the service method a gRPC call path names
 * ("/pkg.Service/Method", path[0, len), no query), as a full name
 * shadow_pb_to_json takes, or NULL when the schema has no such method. */
const char *shadow_pb_schema_method_output(const shadow_pb_schema_t *s,
                                           const char *path, size_t len);
/* How many service methods the schema holds (for --check). */
size_t shadow_pb_schema_methods(const shadow_pb_schema_t *s);

/* Appends p[0, n) to b as a JSON string of its base64 (RFC 4648). 0 or
 * -ENOMEM. */
int shadow_pb_base64(shadow_buf_t *b, const uint8_t *p, size_t n);

/* Appends the message msg[0, len) to out as JSON text. With s and type
 * (a name shadow_pb_schema_has knows), fields are keyed by name as
 * protobuf.c describes; with s NULL or type NULL, by field number. Never
 * refuses a message: what does not decode is written as bytes (a base64
 * string). 0 or -ENOMEM (-EINVAL for a type the schema lacks). */
int shadow_pb_to_json(const void *msg, size_t len, const shadow_pb_schema_t *s,
                      const char *type, shadow_buf_t *out);

#endif
