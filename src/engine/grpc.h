/* gRPC bodies for the diff: the content types that mark them, the
 * length-prefixed messages they are made of (a 1-byte compressed flag, a
 * 4-byte big-endian length, the message), grpc-encoding, and each
 * message turned into a JSON value the tree diff compares. Pure: no I/O. */
#ifndef SHADOW_GRPC_H
#define SHADOW_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "protobuf.h"

/* What a content type says the messages are. */
enum {
  SHADOW_GRPC_NOT = 0,   /* not gRPC */
  SHADOW_GRPC_PROTO = 1, /* application/grpc, application/grpc+proto */
  SHADOW_GRPC_JSON = 2,  /* application/grpc+json: each message JSON text */
  SHADOW_GRPC_OTHER = 3  /* application/grpc+anything else: compared as bytes */
};

/* The SHADOW_GRPC_* of a content-type value (parameters allowed). */
int shadow_grpc_content_type(const char *ct, size_t n);

/* grpc-encoding values. */
enum {
  SHADOW_GRPC_IDENTITY = 0, /* "identity", or no header */
  SHADOW_GRPC_GZIP = 1,
  SHADOW_GRPC_DEFLATE = 2,
  SHADOW_GRPC_UNKNOWN = 3 /* snappy, zstd, ...: compared as sent */
};
int shadow_grpc_encoding(const char *v, size_t n); /* v NULL: identity */

/* One length-prefixed message: its payload p[0, n), its compressed flag,
 * and where its prefix starts in the body. */
typedef struct shadow_grpc_frame_s {
  const uint8_t *p;
  size_t n;
  int compressed;
  size_t off;
} shadow_grpc_frame_t;

/* Reads the message at *pos of body[0, len) into *f and moves *pos past
 * it: 1, 0 at the end, or -1 when the prefix is cut short, the flag is
 * neither 0 nor 1, or the length runs past the body's end (then *pos is
 * left at the prefix and *why says which). */
int shadow_grpc_next(const void *body, size_t len, size_t *pos,
                     shadow_grpc_frame_t *f, const char **why);

/* How many messages body[0, len) holds, or -1 when its framing is bad
 * (*bad_off the offset of the bad prefix, *why what is wrong). */
long shadow_grpc_count(const void *body, size_t len, size_t *bad_off,
                       const char **why);

/* How one side's messages are decoded. */
typedef struct shadow_grpc_decode_s {
  int type;                         /* SHADOW_GRPC_* of the content type */
  int encoding;                     /* SHADOW_GRPC_* of grpc-encoding */
  const shadow_pb_schema_t *schema; /* with msg_type: fields by name */
  const char *msg_type;
  size_t budget; /* inflated bytes left to this side (limits.diff_bytes);
                    a message past it is compared by digest */
} shadow_grpc_decode_t;

/* Appends message f to out as one JSON value: the decoded protobuf tree
 * (protobuf.h), the JSON text of a +json message, or, when it cannot be
 * decoded, a string: the base64 of its bytes (a bad gzip stream, an
 * unknown encoding, a compressed flag without an encoding, a +json
 * message that is not JSON, another subtype), or "xxh3-128:HEX, N bytes
 * compressed" when inflating would pass the budget. *note is then set to
 * a phrase saying so ("bad gzip stream, compared as bytes"), else NULL.
 * 0 or -ENOMEM. */
int shadow_grpc_message_json(shadow_grpc_decode_t *d,
                             const shadow_grpc_frame_t *f, shadow_buf_t *out,
                             const char **note);

#endif
