/* A compact JSON DOM for the diff engine: one pass over the text, nodes in an
 * arena (no malloc per node), strings unescaped to UTF-8, numbers kept as
 * their source text plus a normalized form that compares by value. Pure. */
#ifndef SHADOW_JSON_H
#define SHADOW_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Nesting deeper than this is rejected, so hostile input cannot exhaust the
 * stack of the recursive parser, diff or serializer. */
#define SHADOW_JSON_MAX_DEPTH 512

enum {
  SHADOW_JSON_NULL = 0,
  SHADOW_JSON_FALSE,
  SHADOW_JSON_TRUE,
  SHADOW_JSON_NUMBER,
  SHADOW_JSON_STRING,
  SHADOW_JSON_ARRAY,
  SHADOW_JSON_OBJECT
};

typedef struct shadow_json_s shadow_json_t;
typedef struct shadow_json_member_s shadow_json_member_t;

/* A value. raw/rawlen is its span in the source text: the number as written,
 * or the whole container, so byte-identical subtrees compare with memcmp.
 * A number's value is (neg ? -1 : 1) * digits * 10^exp where digits has no
 * leading or trailing zeros (zero: len 0, neg 0, exp 0), so 1, 1.0, 10e-1
 * and 1e0 normalize alike and big integers stay exact. Exponents saturate
 * at +-10^9 (beyond any double; such values compare equal to each other). */
struct shadow_json_s {
  const char *raw;
  uint32_t rawlen;
  uint8_t type;
  uint8_t neg;   /* numbers */
  uint8_t flags; /* SHADOW_JSON_LAZY, _DUPS, _HAS_LAZY */
  uint32_t len;  /* string bytes, number digits, array/object count */
  int32_t exp;   /* numbers */
  union {
    const char *str;               /* unescaped UTF-8, not NUL-terminated */
    const char *digits;            /* numbers */
    shadow_json_t *items;          /* arrays */
    shadow_json_member_t *members; /* objects, in source order */
  } u;
};

/* A container a lazy parse left unparsed: type and raw span only, len 0 and
 * no children until shadow_json_materialize parses it. */
#define SHADOW_JSON_LAZY 1
/* An object that may hold a key more than once (never set when it does
 * not): readers then take each key's last member, as the rule says. */
#define SHADOW_JSON_DUPS 2
/* A container with a SHADOW_JSON_LAZY node somewhere inside it. */
#define SHADOW_JSON_HAS_LAZY 4
/* A container whose members a rename rule changed (json_rename.c): its raw
 * span no longer spells it, so it never compares by bytes. */
#define SHADOW_JSON_EDITED 8

struct shadow_json_member_s {
  const char *key; /* unescaped, not NUL-terminated */
  uint32_t klen;
  shadow_json_t value;
};

/* Arena of nodes and unescaped strings; freed all at once. */
typedef struct shadow_json_arena_s {
  struct arena_chunk_s *head;
  size_t next_size;
} shadow_json_arena_t;

#define SHADOW_JSON_ARENA_INIT                                                 \
  { NULL, 0 }

void *shadow_json_arena_alloc(shadow_json_arena_t *a, size_t n);
void shadow_json_arena_free(shadow_json_arena_t *a); /* safe twice */
/* Frees what this thread keeps for the next parse (see json.c); call
 * before a thread that diffed ends, so nothing is left behind. */
void shadow_json_arena_cache_clear(void);

/* Parses text into *root, allocating from a. The text need not be
 * NUL-terminated and must outlive the tree (nodes point into it). Returns 0,
 * -EINVAL for invalid JSON (with *err_off and *why, when not NULL, naming
 * the offset and the reason; texts of 4 GiB or more are refused too) or
 * -ENOMEM. Repeated object keys are kept (the object gets
 * SHADOW_JSON_DUPS); comparisons use the last one. */
int shadow_json_parse(shadow_json_arena_t *a, const char *text, size_t len,
                      shadow_json_t *root, size_t *err_off, const char **why);

/* A lazy parse: at each container's opening bracket, at offset off from the
 * start of the text, the parser asks skip(ctx, off, &end); when it returns
 * 1 the container becomes a SHADOW_JSON_LAZY node spanning [off, end) and
 * parsing goes on at end, unchecked inside. Otherwise as shadow_json_parse.
 * The functions below take no lazy node, nor a node with one inside. */
typedef int (*shadow_json_skip_fn)(void *ctx, size_t off, size_t *end);
int shadow_json_parse_lazy(shadow_json_arena_t *a, const char *text, size_t len,
                           shadow_json_t *root, shadow_json_skip_fn skip,
                           void *ctx, size_t *err_off, const char **why);

/* Parses a lazy node's span in place (no-op for other nodes); depth is how
 * many containers enclose it, so the nesting limit still holds. Returns 0,
 * -EINVAL (*err_off relative to v->raw) or -ENOMEM. */
int shadow_json_materialize(shadow_json_arena_t *a, shadow_json_t *v, int depth,
                            size_t *err_off, const char **why);

/* Parses text[0, len) as exactly one JSON number (no space around it)
 * into *out, digits allocated from a when they must be. 0, -EINVAL when
 * it is not one, -ENOMEM. For rules that read numbers held in strings. */
int shadow_json_parse_number(shadow_json_arena_t *a, const char *text,
                             size_t len, shadow_json_t *out);

/* 1 when a and b are the same JSON value: key order ignored, numbers by
 * value, a repeated key counted by its last member only. */
int shadow_json_equal(const shadow_json_t *a, const shadow_json_t *b);

/* A hash consistent with shadow_json_equal: key order ignored, a repeated
 * key by its last member. */
uint64_t shadow_json_hash(const shadow_json_t *v);

/* Appends v as compact JSON: numbers as written, strings re-escaped, and
 * of a repeated key only its last member (the value the rule defines). */
int shadow_json_write(shadow_buf_t *b, const shadow_json_t *v);

/* The number as a double (for tolerances). */
double shadow_json_number(const shadow_json_t *v);

/* Index of the member that holds the last occurrence of key, or -1. Linear:
 * meant for the few lookups of array key mode, not for matching objects. */
long shadow_json_member_find(const shadow_json_t *obj, const char *key,
                             size_t klen);

#endif
