/* The inside of a protobuf schema (protobuf.h's shadow_pb_schema_t), for
 * the two files that use it: protobuf_schema.c builds it from a
 * descriptor set, protobuf_json.c decodes messages with it. */
#ifndef SHADOW_PROTOBUF_SCHEMA_H
#define SHADOW_PROTOBUF_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "protobuf.h"

/* FieldDescriptorProto.Type, as descriptor.proto numbers them. */
enum {
  PB_T_DOUBLE = 1,
  PB_T_FLOAT = 2,
  PB_T_INT64 = 3,
  PB_T_UINT64 = 4,
  PB_T_INT32 = 5,
  PB_T_FIXED64 = 6,
  PB_T_FIXED32 = 7,
  PB_T_BOOL = 8,
  PB_T_STRING = 9,
  PB_T_GROUP = 10,
  PB_T_MESSAGE = 11,
  PB_T_BYTES = 12,
  PB_T_UINT32 = 13,
  PB_T_ENUM = 14,
  PB_T_SFIXED32 = 15,
  PB_T_SFIXED64 = 16,
  PB_T_SINT32 = 17,
  PB_T_SINT64 = 18
};

enum { PB_LABEL_REPEATED = 3 };

typedef struct pb_enum_value_s {
  int32_t number;
  char *name;
} pb_enum_value_t;

typedef struct pb_enum_s {
  char *full; /* ".pkg.Enum" */
  pb_enum_value_t *values;
  size_t nvalues;
} pb_enum_t;

typedef struct pb_field_def_s {
  uint32_t number;
  int type;  /* PB_T_* */
  int label; /* 1 optional, 2 required, 3 repeated */
  char *name;
  char *type_name;      /* ".pkg.Type" for messages and enums, else NULL */
  long msg;             /* index of the message type, or -1 */
  const pb_enum_t *enm; /* the enum type, or NULL */
} pb_field_def_t;

typedef struct pb_message_s {
  char *full;             /* ".pkg.Type" */
  pb_field_def_t *fields; /* sorted by number */
  size_t nfields;
  int map_entry;
} pb_message_t;

/* A service method, by the path a gRPC call names: "/pkg.Service/Method". */
typedef struct pb_method_s {
  char *path;
  char *output_name; /* ".pkg.Reply", as the descriptor names it */
  long output;       /* index of the output message type */
} pb_method_t;

struct shadow_pb_schema_s {
  pb_method_t *methods; /* sorted by path */
  size_t nmethods, capmethods;
  pb_message_t *msgs; /* sorted by full name */
  size_t nmsgs, capmsgs;
  pb_enum_t *enums; /* sorted by full name */
  size_t nenums, capenums;
};

/* The message type called full (leading dot included), or -1. */
long pb_schema_find_message(const shadow_pb_schema_t *s, const char *full);
/* The field numbered number in m, or NULL. */
const pb_field_def_t *pb_message_field(const pb_message_t *m, uint32_t number);

#endif
