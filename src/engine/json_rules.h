/* The JSON diff's rules as the walk reads them (internal to the engine:
 * json_diff.c, json_rename.c and json_rules.c share it; everyone else
 * goes through json_diff.h), and the value classes of the leaf rules:
 * numbers and booleans held in strings (coerce), formats (mask), and
 * instants (time). Pure. */
#ifndef SHADOW_JSON_RULES_H
#define SHADOW_JSON_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "json_diff.h"

/* Walk rules (matched by the bitmask the walk passes down) and renames
 * (applied to the primary before the walk) are counted apart. */
#define SHADOW_JSON_MAX_RULES 64
#define SHADOW_JSON_MAX_RENAMES 64

enum {
  RULE_IGNORE,
  RULE_ARRAY,
  RULE_TOLERANCE,
  RULE_COERCE,
  RULE_MASK,
  RULE_TIME
};

typedef struct {
  const char *s; /* unescaped segment */
  size_t len;
  int star;
  long idx; /* the array index it names, or -1 */
} seg_t;

/* A pointer split into segments; store backs their bytes. */
typedef struct {
  int nseg;
  seg_t *segs;
  char *store;
} path_t;

typedef struct {
  int kind;
  int nseg;
  seg_t *segs;
  path_t path;
  int mode;  /* arrays: SHADOW_ARRAY_*; coerce: SHADOW_COERCE_*; mask:
                SHADOW_MASK_*; time: SHADOW_TIME_* */
  char *key; /* arrays: the key member; mask: the pattern */
  size_t klen;
  double tol; /* tolerance; time: microseconds */
  char *name; /* "coerce:/qty", what counters are labelled with */
  char *desc; /* "coerce /qty as number", for --check */
} rule_t;

typedef struct {
  path_t from, to;
  int stars; /* wildcards in each, bound in order */
  char *name;
  char *desc;
} rename_t;

/* What the walk reads when it descends, as bitmasks of walk rules, one
 * row of SHADOW_SEGTAB_ROW per depth d (a segment index):
 * [SEGTAB_STAR] the rules whose segment d is a wildcard, [SEGTAB_INDEX]
 * those whose segment d names an array index, [SEGTAB_KEYS + b] those
 * whose literal segment d falls in bucket b (shadow_segtab_bucket of its
 * bytes). A key then costs one load and, only for the rules in its
 * bucket, a compare of the bytes; a node's mask keeps only the rules that
 * end there ([SEGTAB_ENDS], rules with exactly d segments, one row
 * further than the segments go). */
#define SEGTAB_STAR 0
#define SEGTAB_INDEX 1
#define SEGTAB_ENDS 2
#define SEGTAB_KEYS 3
#define SEGTAB_BUCKETS 256
#define SHADOW_SEGTAB_ROW (SEGTAB_KEYS + SEGTAB_BUCKETS)

static inline unsigned shadow_segtab_bucket(const char *s, size_t n) {
  unsigned f = n ? (unsigned char)s[0] : 0;
  unsigned l = n ? (unsigned char)s[n - 1] : 0;
  return (f * 7u + l * 3u + (unsigned)n * 31u) & (SEGTAB_BUCKETS - 1);
}

struct shadow_json_rules_s {
  rule_t r[SHADOW_JSON_MAX_RULES];
  int n;
  /* segtab[d * SHADOW_SEGTAB_ROW + ...] for d up to maxseg (the most
   * segments any walk rule has; row maxseg holds only SEGTAB_ENDS). */
  uint64_t *segtab;
  int maxseg;
  rename_t ren[SHADOW_JSON_MAX_RENAMES];
  int nren;
  /* Every rule's name, NUL-terminated, in bit order (walk rules, then
   * renames): what shadow_json_rules_names hands out. */
  char *names;
  size_t names_len;
};

/* ---- value classes ---------------------------------------------------- */

/* A value read as coerce says: *out is v itself, or (a string holding a
 * JSON number, or "true"/"false") the number or boolean it holds, digits
 * from a. Returns 1 when it was converted, 0 when v is used as it is,
 * -ENOMEM. */
int shadow_rules_coerce(shadow_json_arena_t *a, const shadow_json_t *v,
                        int kind, shadow_json_t *out);

/* 1 when v matches the mask class (SHADOW_MASK_*; for a pattern, pat is
 * the Lua pattern, matched against the whole string, or a number's text). */
int shadow_rules_mask_match(const shadow_json_t *v, int cls, const char *pat,
                            size_t patlen);

/* v as an instant in microseconds since the epoch: an RFC 3339 string, or
 * epoch seconds or milliseconds as a number or a string of digits
 * (unit SHADOW_TIME_INSTANT tells them apart by magnitude). 1 and *us set,
 * or 0 when v is not a time. */
int shadow_rules_instant(const shadow_json_t *v, int unit, int64_t *us);

/* 1 when s[0, n) is an RFC 3339 date-time; *us its instant. */
int shadow_rules_rfc3339(const char *s, size_t n, int64_t *us);

#endif
