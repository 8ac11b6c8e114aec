/* libFuzzer target for the JSON diff: one buffer is split at its first
 * 0x00 byte (or in half when there is none) into a primary and a candidate
 * text. Both are diffed against each other under a fixed set of rules that
 * exercises every array mode, ignores and tolerances; each side against
 * itself must give no ops. When both sides are JSON, the ops without rules
 * must apply as a JSON Patch (the tests' own applier, spec/c/patch_apply.h)
 * and give a document equal to the candidate, and a diff never calls valid
 * JSON invalid. Any crash, leak or sanitizer report fails. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../c/patch_apply.h"
#include "diff.h"
#include "json.h"
#include "json_diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static shadow_json_rules_t *rules;

static void setup(void) {
  rules = shadow_json_rules_new();
  if (!rules) abort();
  shadow_json_rules_ignore(rules, "/meta/*");
  shadow_json_rules_ignore(rules, "/*/etag");
  shadow_json_rules_array(rules, "/s", SHADOW_ARRAY_SET, NULL);
  shadow_json_rules_array(rules, "/m", SHADOW_ARRAY_MULTISET, NULL);
  shadow_json_rules_array(rules, "/k", SHADOW_ARRAY_KEY, "id");
  shadow_json_rules_array(rules, "/*/*", SHADOW_ARRAY_MULTISET, NULL);
  shadow_json_rules_tolerance(rules, "/*", 0.5);
  shadow_json_rules_ignore(rules, "/s/*/t");
  shadow_json_rules_ignore(rules, "/i/1");
}

static void run(const char *a, size_t al, const char *b, size_t bl,
                const shadow_json_rules_t *r, int expect_same) {
  shadow_buf_t ops = SHADOW_BUF_INIT, fields = SHADOW_BUF_INIT;
  shadow_json_diff_out_t out = {&ops, &fields, 0,    16,  512,
                                0,    {0, 0},  NULL, NULL};
  char err[128];
  int rc = shadow_json_diff(a, al, b, bl, r, &out, err, sizeof err);
  if (rc == 0) {
    if (expect_same && out.nops) abort();
    if (ops.len > 512) abort(); /* the byte budget holds */
    size_t nf = 0;
    for (size_t i = 0; i < fields.len; i++)
      nf += fields.data[i] == '\0';
    if (nf != out.nops) abort();
  } else if (rc != -EINVAL || ops.len || fields.len) {
    abort(); /* a failed diff leaves no ops behind */
  }
  shadow_buf_free(&ops);
  shadow_buf_free(&fields);
}

/* Both texts are JSON (pr, cr their trees): the diff succeeds, and its ops
 * turn the primary into the candidate. */
static void check_patch(const char *a, size_t al, const char *b, size_t bl,
                        const shadow_json_t *pr, const shadow_json_t *cr) {
  shadow_buf_t ops = SHADOW_BUF_INIT, w = SHADOW_BUF_INIT;
  shadow_json_diff_out_t out = {&ops, NULL, 0, 0, 0, 0, {0, 0}, NULL, NULL};
  if (shadow_json_diff(a, al, b, bl, NULL, &out, NULL, 0)) abort();
  tnode_t *doc = from_dom(pr);
  long n = apply_ops(&doc, ops.data, ops.len);
  if (n < 0 || (size_t)n != out.nops) abort();
  tnode_write(&w, doc);
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t got;
  if (shadow_json_parse(&arena, w.data, w.len, &got, NULL, NULL)) abort();
  if (!shadow_json_equal(&got, cr)) abort();
  shadow_json_arena_free(&arena);
  tfree(doc);
  shadow_buf_free(&ops);
  shadow_buf_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!rules) setup();
  const char *s = (const char *)data;
  const char *nul = memchr(s, 0, size);
  size_t al = nul ? (size_t)(nul - s) : size / 2;
  const char *b = s + al + (nul ? 1 : 0);
  size_t bl = size - al - (nul ? 1 : 0);
  /* Copies, so a read past either half is an ASan error, not luck. */
  char *pa = malloc(al ? al : 1), *pb = malloc(bl ? bl : 1);
  if (!pa || !pb) abort();
  memcpy(pa, s, al);
  memcpy(pb, b, bl);
  run(pa, al, pb, bl, NULL, 0);
  run(pa, al, pb, bl, rules, 0);
  run(pa, al, pa, al, rules, 1);
  run(pb, bl, pb, bl, NULL, 1);
  shadow_json_arena_t arena = SHADOW_JSON_ARENA_INIT;
  shadow_json_t pr, cr;
  int pok = shadow_json_parse(&arena, pa, al, &pr, NULL, NULL) == 0;
  int cok = shadow_json_parse(&arena, pb, bl, &cr, NULL, NULL) == 0;
  if (pok && cok) check_patch(pa, al, pb, bl, &pr, &cr);
  if (pok) {
    /* The same document re-written compactly (escapes and spacing differ,
     * so byte-identical shortcuts do not apply): no ops. */
    shadow_buf_t w = SHADOW_BUF_INIT;
    if (shadow_json_write(&w, &pr) == 0) {
      run(pa, al, w.data, w.len, NULL, 1);
      run(w.data, w.len, pa, al, rules, 1);
    }
    shadow_buf_free(&w);
  }
  shadow_json_arena_free(&arena);
  free(pa);
  free(pb);
  return 0;
}
