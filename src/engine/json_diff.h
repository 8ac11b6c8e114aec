/* Semantic JSON diff: parses two JSON texts and writes the differences as
 * RFC 6902 JSON Patch operations with RFC 6901 pointers. Pure. */
#ifndef SHADOW_JSON_DIFF_H
#define SHADOW_JSON_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Per-path rules: ignored pointers, array modes, numeric tolerances,
 * coercions, masks, time comparisons, and renames. A segment "*" in any
 * pointer matches any key or index. At most 64 rules besides renames, and
 * 64 renames (one more is -EINVAL). A path matching an ignore rule is
 * skipped entirely: no op, no count, no descent. The op order and what
 * each array mode guarantees are described at the top of json_diff.c,
 * what the leaf rules and renames do at the top of json_rules.c. */
typedef struct shadow_json_rules_s shadow_json_rules_t;

/* How an array's elements are paired. */
enum {
  SHADOW_ARRAY_INDEX = 0,    /* compare by position (default) */
  SHADOW_ARRAY_SET = 1,      /* order and duplicates ignored */
  SHADOW_ARRAY_MULTISET = 2, /* order ignored */
  SHADOW_ARRAY_KEY = 3       /* elements matched by a member's value */
};

/* What a coerce rule reads a string as. */
enum { SHADOW_COERCE_NUMBER = 1, SHADOW_COERCE_BOOLEAN = 2 };

/* Mask classes: two values that both match compare equal. */
enum {
  SHADOW_MASK_UUID = 1,
  SHADOW_MASK_HEX,
  SHADOW_MASK_ISO8601,
  SHADOW_MASK_EPOCH,
  SHADOW_MASK_PATTERN /* a Lua pattern, matched against the whole value */
};

/* How a time rule reads numbers: by magnitude (seconds below 10^11, then
 * milliseconds, microseconds, nanoseconds), or always in one unit. */
enum { SHADOW_TIME_INSTANT = 0, SHADOW_TIME_S = 1, SHADOW_TIME_MS = 2 };

shadow_json_rules_t *shadow_json_rules_new(void);
void shadow_json_rules_free(shadow_json_rules_t *r); /* NULL is fine */
/* Each returns 0, -EINVAL (malformed pointer or argument) or -ENOMEM. */
int shadow_json_rules_ignore(shadow_json_rules_t *r, const char *pointer);
/* mode is one of SHADOW_ARRAY_*; key only for SHADOW_ARRAY_KEY. */
int shadow_json_rules_array(shadow_json_rules_t *r, const char *pointer,
                            int mode, const char *key);
int shadow_json_rules_tolerance(shadow_json_rules_t *r, const char *pointer,
                                double tolerance);
/* kind is one of SHADOW_COERCE_*. */
int shadow_json_rules_coerce(shadow_json_rules_t *r, const char *pointer,
                             int kind);
/* cls is one of SHADOW_MASK_*; pattern (a Lua pattern) only for
 * SHADOW_MASK_PATTERN. On -EINVAL, *why (when not NULL) says what is
 * wrong with the pattern, or is NULL for a bad pointer. */
int shadow_json_rules_mask(shadow_json_rules_t *r, const char *pointer, int cls,
                           const char *pattern, const char **why);
/* unit is one of SHADOW_TIME_*; tolerance_ms >= 0. */
int shadow_json_rules_time(shadow_json_rules_t *r, const char *pointer,
                           int unit, double tolerance_ms);
/* The primary's value at from is compared with the candidate's at to
 * (both object members; as many "*" in each, bound in order). On -EINVAL,
 * *why (when not NULL) names the conflict. */
int shadow_json_rules_rename(shadow_json_rules_t *r, const char *from,
                             const char *to, const char **why);
/* 1 when the rules hold a rename: byte-identical texts may then differ. */
int shadow_json_rules_renames(const shadow_json_rules_t *r);

/* Rules are numbered by bit: walk rules 0..63 in the order they were
 * added, renames from 64 on. The name of bit b ("kind:pointer", what
 * hit counters are labelled with) and a line describing the rule, or NULL
 * for an unused bit. */
#define SHADOW_JSON_RULE_BITS 128
const char *shadow_json_rules_name(const shadow_json_rules_t *r, size_t bit);
const char *shadow_json_rules_desc(const shadow_json_rules_t *r, size_t bit);
/* Every rule's name, each NUL-terminated, *len bytes in all; *n rules. */
const char *shadow_json_rules_names(const shadow_json_rules_t *r, size_t *len,
                                    size_t *n);

/* Where ops go. Each op is one JSON object:
 *   {"op":"replace","path":"/a/b","primary":V,"candidate":V}
 *   {"op":"add","path":"/a/3","candidate":V}
 *   {"op":"remove","path":"/a/2","primary":V}
 *   {"op":"move","from":"/a/0","path":"/a/4"}
 * Values are compact JSON: numbers as written in the source, strings
 * re-escaped, of a repeated key only the last member. Truncation
 * (value_max > 0): a string longer than value_max bytes keeps its first
 * value_max bytes (cut on a UTF-8 boundary) followed by "...(N bytes)"
 * inside its quotes, N its full length; any other value whose compact JSON
 * is longer than value_max bytes is written instead as a JSON string
 * holding the first value_max bytes of that JSON followed by "...(N
 * bytes)", N the full length of the compact JSON. An op with a value cut
 * so ends with ,"truncated":true: it does not apply as it stands. */
typedef struct shadow_json_diff_out_s {
  shadow_buf_t *ops;    /* appended (may be NULL): op objects separated by
                           commas, none before the first op of a call */
  shadow_buf_t *fields; /* appended (may be NULL): each differing pointer,
                           NUL-terminated, array indexes as they are */
  size_t nops;          /* set: how many differences (ops) were found */
  size_t value_max;     /* truncate values longer than this (0: no limit) */
  size_t ops_max_bytes; /* stop adding ops once the ops written by this call
                           would pass this size (0: no limit); nops still
                           counts every difference */
  int truncated;        /* set: 1 when ops were cut at ops_max_bytes */
  /* set: bit b (see shadow_json_rules_name) when rule b decided something
   * in this diff: absorbed a difference, renamed a member, paired an
   * array's elements. Once per diff, however often it fired. */
  uint64_t hits[SHADOW_JSON_RULE_BITS / 64];
  /* appended (may be NULL): what the rules did, one JSON object a line:
   *   {"kind":"absorbed","path":P,"rule":R,"why":W,"primary":V,"candidate":V}
   *   {"kind":"renamed","from":P,"path":P,"rule":R}
   *   {"kind":"not_renamed","from":P,"path":P,"rule":R,"why":W}
   *   {"kind":"reported","op":O,"path":P,"primary":V,"candidate":V,
   *    "tried":[{"rule":R,"why":W}...]}
   * (values truncated like ops'; "primary"/"candidate" only when there).
   * Costs nothing when NULL. */
  shadow_buf_t *explain;
  /* Written before every pointer in ops, fields and explain (already
   * escaped, e.g. "/3" for the fourth message of a gRPC stream); rules
   * still match from the texts' roots. NULL: none. */
  const char *path_prefix;
} shadow_json_diff_out_t;

/* Returns 0 when both texts parse; out->nops says how many differences.
 * Returns -EINVAL when a side is not JSON (err names the side and offset)
 * or -ENOMEM, with nothing appended to out's buffers. rules may be NULL.
 * What both texts share byte for byte is checked for strings and brackets
 * only (json_diff.c says why), so a fault the two share there may pass. */
int shadow_json_diff(const char *primary, size_t plen, const char *candidate,
                     size_t clen, const shadow_json_rules_t *rules,
                     shadow_json_diff_out_t *out, char *err, size_t errlen);

/* Parses only, for benchmarks and validation: 0 or -EINVAL/-ENOMEM. */
int shadow_json_validate(const char *text, size_t len);

#endif
