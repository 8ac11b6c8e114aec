/* Two gRPC bodies compared message by message, for diff.c (see
 * grpc_diff.c for how unary and streaming pairs are laid out). Pure. */
#ifndef SHADOW_GRPC_DIFF_H
#define SHADOW_GRPC_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "grpc.h"
#include "json_diff.h"

/* One side: a gRPC body (type a SHADOW_GRPC_* other than NOT), or a plain
 * body taken as a single message (type NOT; protobuf says whether it is
 * application/x-protobuf, else it is JSON text). */
typedef struct shadow_grpc_side_s {
  const char *data;
  size_t len;
  int type;
  int protobuf;
  int encoding; /* SHADOW_GRPC_* of grpc-encoding */
} shadow_grpc_side_t;

typedef struct shadow_grpc_pair_s {
  /* in */
  const shadow_json_rules_t *rules;
  size_t value_max; /* as shadow_json_diff_out_t's */
  size_t ops_max_bytes;
  size_t limit; /* inflated bytes per side (limits.diff_bytes) */
  const shadow_pb_schema_t *schema;
  const char *msg_type; /* with schema: the messages' type, else by number */
  shadow_buf_t *explain;
  /* out (appended) */
  shadow_buf_t *ops;     /* ops separated by commas */
  shadow_buf_t *fields;  /* NUL-terminated pointers */
  shadow_buf_t *summary; /* a sentence, or why the framing is bad */
  shadow_buf_t *extra;   /* members for the body part: ,"messages":... */
  size_t nops;
  int truncated;
  uint64_t hits[SHADOW_JSON_RULE_BITS / 64];
} shadow_grpc_pair_t;

/* 0 (x->nops says whether anything differs), -EINVAL when a side's
 * framing is bad or a plain side is not JSON (x->summary says which and
 * why; the caller compares bytes), or -ENOMEM. */
int shadow_grpc_diff(shadow_grpc_pair_t *x, const shadow_grpc_side_t *p,
                     const shadow_grpc_side_t *c);

#endif
