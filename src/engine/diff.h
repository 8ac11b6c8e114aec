/* The diff engine: compares two response records (status, headers, body)
 * and writes the parts of a divergence record. Pure: no I/O, no Lua. */
#ifndef SHADOW_DIFF_H
#define SHADOW_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "json_diff.h" /* SHADOW_ARRAY_*: the array modes */
#include "record.h"

typedef struct shadow_diff_opts_s shadow_diff_opts_t;

shadow_diff_opts_t *shadow_diff_opts_new(void);
void shadow_diff_opts_free(shadow_diff_opts_t *o); /* NULL is fine */
/* Each returns 0, -EINVAL for a malformed argument, or -ENOMEM. */
int shadow_diff_opts_ignore_header(shadow_diff_opts_t *o, const char *name);
/* A JSON Pointer where a segment "*" matches any key or index. */
/* The header names ignore.headers lists (lower case), and their count. */
size_t shadow_diff_opts_ignored_headers(const shadow_diff_opts_t *o,
                                        const char *const **names);
int shadow_diff_opts_ignore_json(shadow_diff_opts_t *o, const char *pointer);
int shadow_diff_opts_array_mode(shadow_diff_opts_t *o, const char *pointer,
                                int mode, const char *key);
int shadow_diff_opts_tolerance(shadow_diff_opts_t *o, const char *pointer,
                               double tolerance);
/* The rules of json_diff.h's shadow_json_rules_rename, _coerce, _mask and
 * _time, with the same arguments; *why as there. */
int shadow_diff_opts_rename(shadow_diff_opts_t *o, const char *from,
                            const char *to, const char **why);
int shadow_diff_opts_coerce(shadow_diff_opts_t *o, const char *pointer,
                            int kind);
int shadow_diff_opts_mask(shadow_diff_opts_t *o, const char *pointer, int cls,
                          const char *pattern, const char **why);
int shadow_diff_opts_time(shadow_diff_opts_t *o, const char *pointer, int unit,
                          double tolerance_ms);
/* The rules from their JSON form, the object
 *   { "ignore": { "headers": [...], "json": [...] },
 *     "arrays": { pointer: "index" | "set" | "multiset" | { "key": name } },
 *     "tolerance": { pointer: number },
 *     "rename": { pointer: pointer },
 *     "coerce": { pointer: "number" | "boolean" },
 *     "mask": { pointer: "uuid" | "hex" | "iso8601" | "epoch" | pattern },
 *     "time": { pointer: { "unit": "instant" | "s" | "ms",
 *                          "tolerance_ms": n } | unit },
 *     "diff_bytes": n, "value_max": n }
 * (any member may be absent; an empty list may be {}), added to o. The one
 * reader of diff rules: the daemon's config and shadow.diff's options both
 * come through here. 0, -ENOMEM, or -EINVAL with err naming the entry as a
 * Lua user wrote it (coerce["/qty"], ignore.json[2]). */
int shadow_diff_opts_parse(shadow_diff_opts_t *o, const char *json, size_t len,
                           char *err, size_t errlen);
/* The JSON rules of o by bit (json_diff.h: SHADOW_JSON_RULE_BITS of
 * them): the name hit counters use ("coerce:/qty"), a line for --check,
 * NULL for an unused bit; and every name at once, NUL-separated. */
const char *shadow_diff_opts_rule_name(const shadow_diff_opts_t *o, size_t bit);
const char *shadow_diff_opts_rule_desc(const shadow_diff_opts_t *o, size_t bit);
const char *shadow_diff_opts_rule_names(const shadow_diff_opts_t *o,
                                        size_t *len, size_t *n);
/* Bodies larger than this compare by digest. Default 1 MiB. */
void shadow_diff_opts_set_diff_bytes(shadow_diff_opts_t *o, size_t n);
/* Values longer than this are truncated with a marker. Default 256. */
void shadow_diff_opts_set_value_max(shadow_diff_opts_t *o, size_t n);

/* Protobuf bodies (content-type application/x-protobuf or
 * application/protobuf) are decoded with the message type message from
 * the descriptor set fds[0, len) (protoc --descriptor_set_out
 * --include_imports), fields then keyed by name; without it, by number
 * (protobuf.h). 0, -ENOMEM, or -EINVAL with err saying why (not a
 * descriptor set, no such type). */
int shadow_diff_opts_protobuf(shadow_diff_opts_t *o, const void *fds,
                              size_t len, const char *message, char *err,
                              size_t errlen);
/* gRPC replies (content-type application/grpc*) decode with the output
 * type of the method their call names, from the descriptor set fds[0,
 * len) (its services: protoc --descriptor_set_out --include_imports);
 * see shadow_diff_records_at. 0, -ENOMEM, or -EINVAL with err saying
 * why. */
int shadow_diff_opts_grpc(shadow_diff_opts_t *o, const void *fds, size_t len,
                          char *err, size_t errlen);
/* How many service methods that descriptor set holds (0: none given). */
size_t shadow_diff_opts_grpc_methods(const shadow_diff_opts_t *o);

enum { SHADOW_PART_STATUS = 1, SHADOW_PART_HEADERS = 2, SHADOW_PART_BODY = 4 };

/* How the bodies were compared: as JSON, byte for byte, (past
 * diff_bytes, or cut short) by digest and length, or as protobuf decoded
 * to a JSON tree (one side protobuf, the other protobuf or JSON). */
typedef enum {
  SHADOW_BODY_JSON,
  SHADOW_BODY_BYTES,
  SHADOW_BODY_DIGEST,
  SHADOW_BODY_PROTOBUF,
  SHADOW_BODY_KINDS
} shadow_body_kind_t;

typedef struct shadow_diff_result_s {
  unsigned parts; /* SHADOW_PART_* bits of the parts that differ */
  shadow_body_kind_t body_kind;
  /* The three parts of a divergence record, without the enclosing braces:
   *   "status":{...},"headers":{...},"body":{...}
   * Written whether or not they differ ("differs": false). */
  shadow_buf_t json;
  /* The fields that differ, each NUL-terminated, for per-field counters:
   * "status", "header:<lower-case name>", "body:<JSON pointer>" or "body". */
  shadow_buf_t fields;
  size_t nfields;
  /* The JSON rules that decided something in this comparison (bit b is
   * shadow_diff_opts_rule_name(o, b)): what shadow_rule_hits_total counts.
   * Set whether or not the records differ. */
  uint64_t hits[SHADOW_JSON_RULE_BITS / 64];
} shadow_diff_result_t;

#define SHADOW_DIFF_RESULT_INIT                                                \
  {                                                                            \
    0, SHADOW_BODY_JSON, SHADOW_BUF_INIT, SHADOW_BUF_INIT, 0, {                \
      0, 0                                                                     \
    }                                                                          \
  }

/* Compares primary p with candidate c under o (NULL: defaults). Returns the
 * parts bitmask (0 = the records agree) or a negative errno. res is reset
 * first and reused across calls to spare allocations. */
int shadow_diff_records(const shadow_diff_opts_t *o, const shadow_record_t *p,
                        const shadow_record_t *c, shadow_diff_result_t *res);
/* The same, and what the JSON rules did is appended to explain (the
 * lines of shadow_json_diff_out_t.explain), for `shadowd diff --explain`. */
int shadow_diff_records_explain(const shadow_diff_opts_t *o,
                                const shadow_record_t *p,
                                const shadow_record_t *c,
                                shadow_diff_result_t *res,
                                shadow_buf_t *explain);
/* The same for the reply to the request at path[0, path_len) (a query
 * is ignored; NULL: not known): a gRPC call "/pkg.Service/Method"
 * decodes its messages with the method's output type (see
 * shadow_diff_opts_grpc). explain may be NULL. gRPC bodies are compared
 * message by message (grpc_diff.c), grpc-status and grpc-message beside
 * the HTTP status (the status part's "grpc" and "grpc_message"), and,
 * when either side has trailers, the trailers as headers are (a
 * "trailers" part beside "headers"; a difference there counts as a
 * headers difference, fields "trailer:<name>"). */
int shadow_diff_records_at(const shadow_diff_opts_t *o, const char *path,
                           size_t path_len, const shadow_record_t *p,
                           const shadow_record_t *c, shadow_diff_result_t *res,
                           shadow_buf_t *explain);
void shadow_diff_result_free(shadow_diff_result_t *res);

#endif
