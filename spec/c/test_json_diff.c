/* Unit tests of the semantic JSON diff (src/json_diff.h): each case is a
 * pair of documents and the exact ops a user would read. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "diff.h"
#include "json.h"
#include "json_diff.h"
#include "json_scan.h"

typedef struct {
  shadow_buf_t ops;
  shadow_buf_t fields;
  shadow_json_diff_out_t out;
  char err[160];
  int rc;
} run_t;

static void run_free(run_t *r) {
  shadow_buf_free(&r->ops);
  shadow_buf_free(&r->fields);
}

static void run(run_t *r, const char *a, const char *b,
                const shadow_json_rules_t *rules, size_t value_max,
                size_t ops_max) {
  memset(r, 0, sizeof *r);
  r->out.ops = &r->ops;
  r->out.fields = &r->fields;
  r->out.value_max = value_max;
  r->out.ops_max_bytes = ops_max;
  r->rc = shadow_json_diff(a, strlen(a), b, strlen(b), rules, &r->out, r->err,
                           sizeof r->err);
}

/* Diffs a and b and compares the ops with want ("" for none). */
static void expect_rules(int line, const char *a, const char *b,
                         const shadow_json_rules_t *rules, const char *want) {
  run_t r;
  run(&r, a, b, rules, 0, 0);
  const char *got = r.ops.data ? r.ops.data : "";
  if (r.rc != 0 || strcmp(got, want) != 0) {
    fprintf(stderr,
            "line %d: diff %s vs %s\n  rc %d err '%s'\n  got  %s\n"
            "  want %s\n",
            line, a, b, r.rc, r.err, got, want);
    check_failed++;
  }
  run_free(&r);
}

#define EXPECT(a, b, want) expect_rules(__LINE__, a, b, NULL, want)
#define EXPECT_R(a, b, rules, want) expect_rules(__LINE__, a, b, rules, want)

static void test_key_order_and_scalars(void) {
  EXPECT("{\"a\":1,\"b\":[1,2],\"c\":{\"d\":null}}",
         "{ \"c\" : {\"d\":null}, \"b\":[1,2], \"a\":1 }", "");
  EXPECT("{\"a\":true}", "{\"a\":false}",
         "{\"op\":\"replace\",\"path\":\"/a\",\"primary\":true,"
         "\"candidate\":false}");
  EXPECT("[null]", "[null]", "");
  EXPECT("\"x\"", "\"y\"",
         "{\"op\":\"replace\",\"path\":\"\",\"primary\":\"x\","
         "\"candidate\":\"y\"}");
  /* A type change is one replace, not a descent. */
  EXPECT("{\"a\":{\"b\":1}}", "{\"a\":[1]}",
         "{\"op\":\"replace\",\"path\":\"/a\",\"primary\":{\"b\":1},"
         "\"candidate\":[1]}");
  EXPECT("{\"a\":1}", "{\"a\":\"1\"}",
         "{\"op\":\"replace\",\"path\":\"/a\",\"primary\":1,"
         "\"candidate\":\"1\"}");
  /* Many keys in different orders: matched by hash, not quadratically. */
  char a[8192], b[8192];
  size_t la = 0, lb = 0;
  la += (size_t)snprintf(a + la, sizeof a - la, "{");
  lb += (size_t)snprintf(b + lb, sizeof b - lb, "{");
  for (int i = 0; i < 200; i++) {
    la += (size_t)snprintf(a + la, sizeof a - la, "%s\"k%d\":%d", i ? "," : "",
                           i, i);
    lb += (size_t)snprintf(b + lb, sizeof b - lb, "%s\"k%d\":%d", i ? "," : "",
                           199 - i, 199 - i == 57 ? 0 : 199 - i);
  }
  snprintf(a + la, sizeof a - la, "}");
  snprintf(b + lb, sizeof b - lb, "}");
  EXPECT(a, b,
         "{\"op\":\"replace\",\"path\":\"/k57\",\"primary\":57,"
         "\"candidate\":0}");
}

static void test_numbers(void) {
  EXPECT("[1,1.0,1e0,10e-1,0.1e1,100,-0,0.000]", "[1.00,1,1E+0,1,1,1e2,0,0]",
         "");
  EXPECT("[1.5,120,0.05,-3]", "[15e-1,1.2e2,5e-2,-3.0]", "");
  EXPECT("{\"n\":1}", "{\"n\":1.01}",
         "{\"op\":\"replace\",\"path\":\"/n\",\"primary\":1,"
         "\"candidate\":1.01}");
  EXPECT("[-1]", "[1]",
         "{\"op\":\"replace\",\"path\":\"/0\",\"primary\":-1,"
         "\"candidate\":1}");
  /* Beyond 2^53 a double cannot tell these apart; the diff must. */
  EXPECT("[9007199254740993]", "[9007199254740992]",
         "{\"op\":\"replace\",\"path\":\"/0\",\"primary\":9007199254740993,"
         "\"candidate\":9007199254740992}");
  EXPECT("[123456789012345678901234567890]",
         "[1234567890123456789012345678.9e2]", "");
  EXPECT("[1e400]", "[1e401]",
         "{\"op\":\"replace\",\"path\":\"/0\",\"primary\":1e400,"
         "\"candidate\":1e401}");
}

static void test_strings(void) {
  EXPECT("{\"s\":\"\\u00e9\"}", "{\"s\":\"\xc3\xa9\"}", "");
  EXPECT("[\"\\ud83d\\ude00\"]", "[\"\xf0\x9f\x98\x80\"]", "");
  EXPECT("[\"a\\/b\\n\"]", "[\"a/b\\u000a\"]", "");
  EXPECT("{\"\\u0061\":1}", "{\"a\":1}", "");
  EXPECT("[\"caf\\u00e9\"]", "[\"cafe\"]",
         "{\"op\":\"replace\",\"path\":\"/0\",\"primary\":\"caf\xc3\xa9\","
         "\"candidate\":\"cafe\"}");
  EXPECT("[\"q\\\"\"]", "[\"q\"]",
         "{\"op\":\"replace\",\"path\":\"/0\",\"primary\":\"q\\\"\","
         "\"candidate\":\"q\"}");
}

static void test_nested_and_objects(void) {
  EXPECT("{\"user\":{\"name\":\"Ann\",\"tags\":[\"a\",\"b\"]}}",
         "{\"user\":{\"tags\":[\"a\",\"b\",\"x\"],\"name\":\"ann\"}}",
         "{\"op\":\"replace\",\"path\":\"/user/name\",\"primary\":\"Ann\","
         "\"candidate\":\"ann\"},"
         "{\"op\":\"add\",\"path\":\"/user/tags/2\",\"candidate\":\"x\"}");
  EXPECT("{\"a\":1,\"b\":2}", "{\"c\":{\"d\":[3]},\"a\":1}",
         "{\"op\":\"remove\",\"path\":\"/b\",\"primary\":2},"
         "{\"op\":\"add\",\"path\":\"/c\",\"candidate\":{\"d\":[3]}}");
  /* RFC 6901: ~ is ~0 and / is ~1. */
  EXPECT("{\"a/b\":{\"m~n\":1}}", "{\"a/b\":{\"m~n\":2}}",
         "{\"op\":\"replace\",\"path\":\"/a~1b/m~0n\",\"primary\":1,"
         "\"candidate\":2}");
  EXPECT("{\"\":1}", "{\"\":2}",
         "{\"op\":\"replace\",\"path\":\"/\",\"primary\":1,"
         "\"candidate\":2}");
}

static void test_arrays(void) {
  /* Removals come highest index first, so they apply in order. */
  EXPECT("[1,2,3,4,5]", "[1,9]",
         "{\"op\":\"replace\",\"path\":\"/1\",\"primary\":2,"
         "\"candidate\":9},"
         "{\"op\":\"remove\",\"path\":\"/4\",\"primary\":5},"
         "{\"op\":\"remove\",\"path\":\"/3\",\"primary\":4},"
         "{\"op\":\"remove\",\"path\":\"/2\",\"primary\":3}");
  EXPECT("[1]", "[1,2,[3]]",
         "{\"op\":\"add\",\"path\":\"/1\",\"candidate\":2},"
         "{\"op\":\"add\",\"path\":\"/2\",\"candidate\":[3]}");
  EXPECT("[]", "{}",
         "{\"op\":\"replace\",\"path\":\"\",\"primary\":[],"
         "\"candidate\":{}}");
}

static void test_ignore(void) {
  shadow_json_rules_t *r = shadow_json_rules_new();
  CHECK(r != NULL);
  CHECK(shadow_json_rules_ignore(r, "/meta/generated_at") == 0);
  CHECK(shadow_json_rules_ignore(r, "/items/*/etag") == 0);
  CHECK(shadow_json_rules_ignore(r, "/a~1b") == 0);
  CHECK(shadow_json_rules_ignore(r, "no-slash") == -EINVAL);
  CHECK(shadow_json_rules_ignore(r, "/bad~3") == -EINVAL);
  EXPECT_R("{\"meta\":{\"generated_at\":1,\"v\":1},\"a/b\":1,"
           "\"items\":[{\"id\":1,\"etag\":\"x\"},{\"id\":2,\"etag\":\"y\"}]}",
           "{\"meta\":{\"generated_at\":2,\"v\":1},\"a/b\":2,"
           "\"items\":[{\"id\":1,\"etag\":\"z\"},{\"id\":3}]}",
           r,
           "{\"op\":\"replace\",\"path\":\"/items/1/id\",\"primary\":2,"
           "\"candidate\":3}");
  /* Ignored paths are skipped when only one side has them too. */
  EXPECT_R("{\"meta\":{}}", "{\"meta\":{\"generated_at\":5}}", r, "");
  /* Counted nowhere: no op, no field. */
  run_t x;
  run(&x, "{\"meta\":{\"generated_at\":1}}", "{\"meta\":{\"generated_at\":2}}",
      r, 0, 0);
  CHECK(x.rc == 0 && x.out.nops == 0 && x.fields.len == 0);
  run_free(&x);
  shadow_json_rules_free(r);

  /* Up to 64 rules, then -EINVAL. */
  r = shadow_json_rules_new();
  for (int i = 0; i < 64; i++)
    CHECK(shadow_json_rules_ignore(r, "/x") == 0);
  CHECK(shadow_json_rules_ignore(r, "/x") == -EINVAL);
  shadow_json_rules_free(r);
}

static void test_array_modes(void) {
  shadow_json_rules_t *r = shadow_json_rules_new();
  CHECK(shadow_json_rules_array(r, "/set", SHADOW_ARRAY_SET, NULL) == 0);
  CHECK(shadow_json_rules_array(r, "/multi", SHADOW_ARRAY_MULTISET, NULL) == 0);
  CHECK(shadow_json_rules_array(r, "/*/items", SHADOW_ARRAY_KEY, "id") == 0);
  CHECK(shadow_json_rules_array(r, "/k", SHADOW_ARRAY_KEY, NULL) == -EINVAL);
  CHECK(shadow_json_rules_array(r, "/k", 9, NULL) == -EINVAL);

  /* set: order and duplicates ignored. */
  EXPECT_R("{\"set\":[1,2,3,2]}", "{\"set\":[3,1,2]}", r, "");
  EXPECT_R("{\"set\":[1,2,2,4]}", "{\"set\":[5,1,5,2]}", r,
           "{\"op\":\"remove\",\"path\":\"/set/3\",\"primary\":4},"
           "{\"op\":\"add\",\"path\":\"/set/3\",\"candidate\":5}");
  /* multiset: order ignored, counts matter. */
  EXPECT_R("{\"multi\":[{\"a\":1},2,2]}", "{\"multi\":[2,{\"a\":1},2]}", r, "");
  EXPECT_R("{\"multi\":[1,2,2]}", "{\"multi\":[2,1,3]}", r,
           "{\"op\":\"remove\",\"path\":\"/multi/2\",\"primary\":2},"
           "{\"op\":\"add\",\"path\":\"/multi/2\",\"candidate\":3}");
  /* key: paired by id; diffs under the primary's index. */
  EXPECT_R("{\"o\":{\"items\":[{\"id\":1,\"v\":\"a\"},{\"id\":2,\"v\":\"b\"},"
           "{\"id\":3}]}}",
           "{\"o\":{\"items\":[{\"id\":4},{\"v\":\"B\",\"id\":2},"
           "{\"id\":1,\"v\":\"a\"}]}}",
           r,
           "{\"op\":\"replace\",\"path\":\"/o/items/1/v\",\"primary\":\"b\","
           "\"candidate\":\"B\"},"
           "{\"op\":\"remove\",\"path\":\"/o/items/2\",\"primary\":{\"id\":3}},"
           "{\"op\":\"add\",\"path\":\"/o/items/2\",\"candidate\":{\"id\":4}}");
  /* Keys compare by value: 1 and 1.0 are the same id. */
  EXPECT_R("{\"o\":{\"items\":[{\"id\":1,\"v\":1}]}}",
           "{\"o\":{\"items\":[{\"id\":1.0,\"v\":1}]}}", r, "");
  /* Arrays elsewhere keep their order: a swap is one move. */
  EXPECT_R("{\"other\":[1,2]}", "{\"other\":[2,1]}", r,
           "{\"op\":\"move\",\"from\":\"/other/0\",\"path\":\"/other/1\"}");
  shadow_json_rules_free(r);

  /* A set whose elements differ only in an ignored member pairs up. */
  r = shadow_json_rules_new();
  CHECK(shadow_json_rules_array(r, "/s", SHADOW_ARRAY_SET, NULL) == 0);
  CHECK(shadow_json_rules_ignore(r, "/s/*/t") == 0);
  EXPECT_R("{\"s\":[{\"id\":1,\"t\":1},{\"id\":2,\"t\":1}]}",
           "{\"s\":[{\"id\":2,\"t\":9},{\"id\":1,\"t\":8}]}", r, "");
  shadow_json_rules_free(r);
}

static void test_tolerance(void) {
  shadow_json_rules_t *r = shadow_json_rules_new();
  CHECK(shadow_json_rules_tolerance(r, "/price", 0.01) == 0);
  CHECK(shadow_json_rules_tolerance(r, "/items/*/w", 0.5) == 0);
  CHECK(shadow_json_rules_tolerance(r, "/x", -1) == -EINVAL);
  EXPECT_R("{\"price\":10.00,\"items\":[{\"w\":1}]}",
           "{\"price\":10.005,\"items\":[{\"w\":1.4}]}", r, "");
  /* Equal values out of a double's range stay equal under a tolerance. */
  EXPECT_R("{\"price\":1e400}", "{\"price\":10e399}", r, "");
  EXPECT_R("{\"price\":10.00,\"other\":1}", "{\"price\":10.02,\"other\":1.001}",
           r,
           "{\"op\":\"replace\",\"path\":\"/price\",\"primary\":10.00,"
           "\"candidate\":10.02},"
           "{\"op\":\"replace\",\"path\":\"/other\",\"primary\":1,"
           "\"candidate\":1.001}");
  shadow_json_rules_free(r);
}

static void test_truncation_and_budget(void) {
  char big[2000];
  memset(big, 'x', sizeof big);
  big[0] = '"';
  big[1500] = '"';
  big[1501] = '\0';
  char a[2100], b[2100];
  snprintf(a, sizeof a, "{\"s\":%s}", big);
  snprintf(b, sizeof b, "{\"s\":[%s]}", big);
  run_t r;
  run(&r, "{\"s\":\"abcdefghij\"}", "{\"s\":{\"k\":\"abcdefghij\"}}", NULL, 4,
      0);
  CHECK(r.rc == 0);
  /* A cut value makes the op one that does not apply as it stands. */
  CHECK(strcmp(r.ops.data,
               "{\"op\":\"replace\",\"path\":\"/s\",\"primary\":"
               "\"abcd...(10 bytes)\",\"candidate\":"
               "\"{\\\"k\\\"...(18 bytes)\",\"truncated\":true}") == 0);
  run_free(&r);
  run(&r, a, b, NULL, 64, 0);
  CHECK(r.rc == 0 && r.out.nops == 1 && r.ops.len < 300);
  CHECK(strstr(r.ops.data, "...(1499 bytes)\"") != NULL);
  CHECK(strstr(r.ops.data, "...(1503 bytes)\"") != NULL);
  run_free(&r);

  /* A byte budget cuts ops but not the count; fields list every one. */
  run(&r, "[1,2,3,4,5,6,7,8,9,10]", "[0,0,0,0,0,0,0,0,0,0]", NULL, 0, 150);
  CHECK(r.rc == 0 && r.out.nops == 10 && r.out.truncated == 1);
  CHECK(r.ops.len <= 150 && r.ops.len > 0);
  CHECK(r.ops.data[r.ops.len - 1] == '}');
  size_t nf = 0;
  for (size_t i = 0; i < r.fields.len; i++)
    nf += r.fields.data[i] == '\0';
  CHECK(nf == 10);
  CHECK(strcmp(r.fields.data, "/0") == 0);
  run_free(&r);
}

static void test_invalid(void) {
  static const char *bad[] = {
      "",
      "{",
      "[1,]",
      "{\"a\" 1}",
      "01",
      "1.",
      "1e",
      "-",
      "nul",
      "tru",
      "\"\\x\"",
      "\"\\ud800\"",
      "\"\\udc00x\"",
      "\"a\nb\"",
      "[1] x",
      "{,}",
      "\"abc",
      "\"\\u12\"",
      "\"\xae\"",
      "\"\xc3\"",
      "\"\xed\xa0\x80\"", /* UTF-8 is checked: not UTF-8, not JSON */
      "[\"\\",
      "{\"a\":1,}",
      "+1",
      ".5",
      "NaN",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    run_t r;
    run(&r, "{}", bad[i], NULL, 0, 0);
    if (r.rc != -EINVAL || !strstr(r.err, "candidate")) {
      fprintf(stderr, "accepted invalid '%s' (rc %d)\n", bad[i], r.rc);
      check_failed++;
    }
    run_free(&r);
    CHECK(shadow_json_validate(bad[i], strlen(bad[i])) == -EINVAL);
  }
  run_t r;
  run(&r, "[1,2,x]", "[]", NULL, 0, 0);
  CHECK(r.rc == -EINVAL && strstr(r.err, "primary") &&
        strstr(r.err, "offset 5"));
  run_free(&r);
  /* Identical invalid texts are still invalid. */
  run(&r, "{oops", "{oops", NULL, 0, 0);
  CHECK(r.rc == -EINVAL);
  run_free(&r);
  CHECK(shadow_json_validate(" {\"a\":[1,2.5e-3,\"x\",true,null]} ", 32) == 0);
}

static void test_depth(void) {
  /* A depth bomb is refused, not a stack overflow; 512 levels are fine. */
  size_t n = 100000;
  char *bomb = malloc(n + 1);
  memset(bomb, '[', n);
  bomb[n] = '\0';
  run_t r;
  run(&r, "[]", bomb, NULL, 0, 0);
  CHECK(r.rc == -EINVAL && strstr(r.err, "deep"));
  run_free(&r);
  char *ok = malloc(2 * SHADOW_JSON_MAX_DEPTH + 1);
  memset(ok, '[', SHADOW_JSON_MAX_DEPTH);
  memset(ok + SHADOW_JSON_MAX_DEPTH, ']', SHADOW_JSON_MAX_DEPTH);
  ok[2 * SHADOW_JSON_MAX_DEPTH] = '\0';
  CHECK(shadow_json_validate(ok, strlen(ok)) == 0);
  run(&r, ok, ok, NULL, 0, 0);
  CHECK(r.rc == 0 && r.out.nops == 0);
  run_free(&r);
  /* One level more is refused. */
  char *deep = malloc(2 * SHADOW_JSON_MAX_DEPTH + 3);
  memset(deep, '[', SHADOW_JSON_MAX_DEPTH + 1);
  memset(deep + SHADOW_JSON_MAX_DEPTH + 1, ']', SHADOW_JSON_MAX_DEPTH + 1);
  deep[2 * SHADOW_JSON_MAX_DEPTH + 2] = '\0';
  run(&r, "[]", deep, NULL, 0, 0);
  CHECK(r.rc == -EINVAL);
  run_free(&r);
  free(deep);
  free(ok);
  free(bomb);
}

static void test_fields_and_odd_keys(void) {
  run_t r;
  run(&r, "{\"a\":{\"b\":[1,2]},\"\\u0000\":1}",
      "{\"a\":{\"b\":[1]},\"\\u0000\":2}", NULL, 0, 0);
  CHECK(r.rc == 0 && r.out.nops == 2);
  /* One NUL-terminated entry per difference, even for a key "\0": the
   * NUL is ~2 in the field and in the op's path alike (field.h). */
  CHECK(r.fields.len == strlen("/a/b/1") + 1 + strlen("/~2") + 1);
  CHECK(strcmp(r.fields.data, "/a/b/1") == 0);
  CHECK(strcmp(r.fields.data + 7, "/~2") == 0);
  CHECK(strstr(r.ops.data, "\"path\":\"/~2\"") != NULL);
  run_free(&r);
  /* "e\0f" and "e\0g" are two fields, neither of them "/e"; an ignore
   * rule written with ~2 silences the one it names. */
  run(&r, "{\"e\\u0000f\":1,\"e\\u0000g\":1,\"e\":1}",
      "{\"e\\u0000f\":2,\"e\\u0000g\":2,\"e\":1}", NULL, 0, 0);
  CHECK(r.rc == 0 && r.out.nops == 2);
  CHECK(strcmp(r.fields.data, "/e~2f") == 0);
  CHECK(strcmp(r.fields.data + 6, "/e~2g") == 0);
  run_free(&r);
  {
    shadow_json_rules_t *ign = shadow_json_rules_new();
    CHECK(shadow_json_rules_ignore(ign, "/e~2f") == 0);
    run(&r, "{\"e\\u0000f\":1,\"e\\u0000g\":1}",
        "{\"e\\u0000f\":2,\"e\\u0000g\":2}", ign, 0, 0);
    CHECK(r.rc == 0 && r.out.nops == 1);
    CHECK(strcmp(r.fields.data, "/e~2g") == 0);
    run_free(&r);
    shadow_json_rules_free(ign);
  }
  /* Duplicate keys: the last one counts, and a text equals itself. */
  EXPECT("{\"a\":1,\"a\":2}", "{\"a\":1,\"a\":2}", "");
  EXPECT("{\"a\":1,\"b\":0,\"a\":2}", "{\"b\":0,\"a\":2}", "");
  EXPECT("{\"a\":1,\"b\":0,\"a\":2}", "{\"a\":2,\"c\":0}",
         "{\"op\":\"remove\",\"path\":\"/b\",\"primary\":0},"
         "{\"op\":\"add\",\"path\":\"/c\",\"candidate\":0}");
  /* Ops continue a buffer that already holds something. */
  memset(&r, 0, sizeof r);
  shadow_buf_puts(&r.ops, "[");
  r.out.ops = &r.ops;
  CHECK(shadow_json_diff("[1,2]", 5, "[3,4]", 5, NULL, &r.out, NULL, 0) == 0);
  CHECK(strncmp(r.ops.data, "[{\"op\"", 6) == 0);
  CHECK(strstr(r.ops.data, "},{\"op\"") != NULL);
  run_free(&r);
}

/* An array of n small records, as APIs answer; first and extra change it. */
static void records(shadow_buf_t *b, int n, int skip, int extra_at) {
  shadow_buf_puts(b, "[");
  int first = 1;
  for (int i = 0; i < n; i++) {
    if (i == extra_at) {
      shadow_buf_printf(b, "%s{\"id\":-1,\"name\":\"new\"}", first ? "" : ",");
      first = 0;
    }
    if (i == skip) continue;
    shadow_buf_printf(b, "%s{\"id\":%d,\"name\":\"user %d\",\"tags\":[%d]}",
                      first ? "" : ",", i, i, i % 7);
    first = 0;
  }
  if (extra_at == n)
    shadow_buf_printf(b, "%s{\"id\":-1,\"name\":\"new\"}", first ? "" : ",");
  shadow_buf_puts(b, "]");
}

static void test_alignment(void) {
  /* One insert, one delete, one move: one op each, not one per index. */
  EXPECT("[1,2,3]", "[0,1,2,3]",
         "{\"op\":\"add\",\"path\":\"/0\",\"candidate\":0}");
  EXPECT("[1,2,3]", "[2,3]",
         "{\"op\":\"remove\",\"path\":\"/0\",\"primary\":1}");
  EXPECT("[1,2,3,4]", "[1,2,9,3,4]",
         "{\"op\":\"add\",\"path\":\"/2\",\"candidate\":9}");
  EXPECT("[\"a\",\"b\",\"c\",\"d\",\"e\"]", "[\"b\",\"c\",\"d\",\"a\",\"e\"]",
         "{\"op\":\"move\",\"from\":\"/0\",\"path\":\"/3\"}");
  EXPECT("[\"a\",\"b\",\"c\",\"d\",\"e\"]", "[\"a\",\"e\",\"b\",\"c\",\"d\"]",
         "{\"op\":\"move\",\"from\":\"/4\",\"path\":\"/1\"}");
  /* A changed element between kept ones is diffed where it is. */
  EXPECT(
      "[{\"a\":1},{\"b\":1},{\"c\":1}]", "[{\"a\":1},{\"b\":2},{\"c\":1}]",
      "{\"op\":\"replace\",\"path\":\"/1/b\",\"primary\":1,\"candidate\":2}");
  /* Nothing in common: by index, as before. */
  EXPECT("[1,2]", "[3,4,5]",
         "{\"op\":\"replace\",\"path\":\"/0\",\"primary\":1,\"candidate\":3},"
         "{\"op\":\"replace\",\"path\":\"/1\",\"primary\":2,\"candidate\":4},"
         "{\"op\":\"add\",\"path\":\"/2\",\"candidate\":5}");
  /* Removals highest first, then additions and moves in the candidate's
   * order, each at the index it has when it applies: 6 goes after the 1
   * that has not moved yet. */
  EXPECT("[1,2,3,4,5,6]", "[6,2,9,4,1]",
         "{\"op\":\"replace\",\"path\":\"/2\",\"primary\":3,\"candidate\":9},"
         "{\"op\":\"remove\",\"path\":\"/4\",\"primary\":5},"
         "{\"op\":\"move\",\"from\":\"/4\",\"path\":\"/1\"},"
         "{\"op\":\"move\",\"from\":\"/0\",\"path\":\"/4\"}");

  /* The case: one record inserted at the front of 1000 is one op,
   * where it used to be 2001 and a record cut at 64 KiB. */
  for (int n = 100; n <= 1000; n *= 10) {
    shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT, c = SHADOW_BUF_INIT;
    shadow_buf_t d = SHADOW_BUF_INIT;
    records(&a, n, -1, -1);
    records(&b, n, -1, 0);
    records(&c, n, 0, -1);
    records(&d, n, 0, n / 2); /* the first record moved to the middle */
    run_t r;
    run(&r, a.data, b.data, NULL, 256, 65536);
    CHECK(r.rc == 0 && r.out.nops == 1 && !r.out.truncated);
    CHECK(r.ops.data &&
          strncmp(r.ops.data, "{\"op\":\"add\",\"path\":\"/0\",", 24) == 0);
    run_free(&r);
    run(&r, a.data, c.data, NULL, 256, 65536);
    CHECK(r.rc == 0 && r.out.nops == 1);
    CHECK(r.ops.data &&
          strncmp(r.ops.data, "{\"op\":\"remove\",\"path\":\"/0\",", 27) == 0);
    run_free(&r);
    run(&r, c.data, a.data, NULL, 256, 65536);
    CHECK(r.rc == 0 && r.out.nops == 1);
    run_free(&r);
    shadow_buf_reset(&d);
    /* A move: record 0 placed after record n/2. */
    shadow_buf_puts(&d, "[");
    for (int i = 1; i < n; i++) {
      shadow_buf_printf(&d, "%s{\"id\":%d,\"name\":\"user %d\",\"tags\":[%d]}",
                        i > 1 ? "," : "", i, i, i % 7);
      if (i == n / 2)
        shadow_buf_puts(&d, ",{\"id\":0,\"name\":\"user 0\",\"tags\":[0]}");
    }
    shadow_buf_puts(&d, "]");
    char want[96];
    snprintf(want, sizeof want,
             "{\"op\":\"move\",\"from\":\"/0\",\"path\":\"/%d\"}", n / 2);
    run(&r, a.data, d.data, NULL, 256, 65536);
    CHECK(r.rc == 0 && r.out.nops == 1 && r.ops.data &&
          strcmp(r.ops.data, want) == 0);
    run_free(&r);
    shadow_buf_free(&a);
    shadow_buf_free(&b);
    shadow_buf_free(&c);
    shadow_buf_free(&d);
  }

  shadow_json_rules_t *r = shadow_json_rules_new();
  /* Elements that differ only where a rule says not to look still align,
   * and still move. */
  CHECK(shadow_json_rules_ignore(r, "/x/*/t") == 0);
  EXPECT_R("{\"x\":[{\"id\":1,\"t\":1},{\"id\":2,\"t\":1},{\"id\":3,\"t\":1}]}",
           "{\"x\":[{\"id\":3,\"t\":7},{\"id\":1,\"t\":8},{\"id\":2,\"t\":9}]}",
           r, "{\"op\":\"move\",\"from\":\"/x/2\",\"path\":\"/x/0\"}");
  /* Where a rule ignores whole elements, nothing moves: a move would carry
   * what the rule hides. */
  CHECK(shadow_json_rules_ignore(r, "/y/*") == 0);
  EXPECT_R("{\"y\":[1,2,3]}", "{\"y\":[3,1,2,4]}", r, "");
  shadow_json_rules_free(r);
}

/* Builds {"pad":[...n numbers...],"mid":MID,"tail":[...n numbers...]}:
 * two documents from it share everything but MID byte for byte. */
static void padded(shadow_buf_t *b, int n, const char *mid) {
  shadow_buf_puts(b, "{\"pad\":[");
  for (int i = 0; i < n; i++)
    shadow_buf_printf(b, "%s{\"i\":%d,\"s\":\"x%d\"}", i ? "," : "", i, i);
  shadow_buf_printf(b, "],\"mid\":%s,\"tail\":[", mid);
  for (int i = 0; i < n; i++)
    shadow_buf_printf(b, "%s[%d,{\"k\":\"v\\u00e9\"}]", i ? "," : "", i);
  shadow_buf_puts(b, "]}");
}

static void expect_padded(int line, const char *m1, const char *m2,
                          const shadow_json_rules_t *rules, const char *want) {
  shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
  padded(&a, 300, m1);
  padded(&b, 300, m2);
  expect_rules(line, a.data, b.data, rules, want);
  shadow_buf_free(&a);
  shadow_buf_free(&b);
}

#define EXPECT_PAD(m1, m2, rules, want)                                        \
  expect_padded(__LINE__, m1, m2, rules, want)

/* Big documents that share all but a few bytes: the shared parts are left
 * unparsed, and every semantic rule still holds in what differs. */
static void test_shared_spans(void) {
  EXPECT_PAD("{\"a\":1}", "{\"a\":2}", NULL,
             "{\"op\":\"replace\",\"path\":\"/mid/a\",\"primary\":1,"
             "\"candidate\":2}");
  /* Key order, number spellings, escapes: the same document. */
  EXPECT_PAD("{\"a\":1,\"b\":[1.0,\"\\u00e9\"]}",
             "{\"b\":[1,\"\xc3\xa9\"],\"a\":10e-1}", NULL, "");
  /* Ignore and tolerance rules apply inside the part that differs. */
  shadow_json_rules_t *r = shadow_json_rules_new();
  CHECK(shadow_json_rules_ignore(r, "/mid/t") == 0);
  CHECK(shadow_json_rules_tolerance(r, "/mid/p", 0.5) == 0);
  EXPECT_PAD("{\"t\":1,\"p\":1.0}", "{\"t\":2,\"p\":1.2}", r, "");
  /* An ignored path that holds a shared span is still ignored. */
  CHECK(shadow_json_rules_ignore(r, "/pad") == 0);
  {
    shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    padded(&a, 300, "1");
    shadow_buf_puts(&b, "{\"pad\":[],\"mid\":1,\"tail\":");
    const char *t = strstr(a.data, "\"tail\":") + 7;
    shadow_buf_puts(&b, t);
    expect_rules(__LINE__, a.data, b.data, r, "");
    shadow_buf_free(&a);
    shadow_buf_free(&b);
  }
  shadow_json_rules_free(r);
  /* A shared span compared with one that differs is parsed then. */
  {
    shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    padded(&a, 300, "0");
    padded(&b, 300, "0");
    char *p = strstr(b.data, "{\"i\":150,");
    CHECK(p != NULL);
    p[5] = '9'; /* "i":150 becomes "i":950 */
    expect_rules(__LINE__, a.data, b.data, NULL,
                 "{\"op\":\"replace\",\"path\":\"/pad/150/i\",\"primary\":150,"
                 "\"candidate\":950}");
    shadow_buf_free(&a);
    shadow_buf_free(&b);
  }
  /* Shifted suffix: an element inserted early moves everything after it. */
  {
    shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    padded(&a, 300, "0");
    padded(&b, 300, "0");
    char *p = strstr(b.data, "\"tail\":[") + 8;
    size_t at = (size_t)(p - b.data);
    shadow_buf_t c = SHADOW_BUF_INIT;
    shadow_buf_append(&c, b.data, at);
    shadow_buf_puts(&c, "\"new\",");
    shadow_buf_puts(&c, b.data + at);
    expect_rules(__LINE__, a.data, c.data, NULL,
                 "{\"op\":\"add\",\"path\":\"/tail/0\",\"candidate\":\"new\"}");
    /* And the same the other way, with the removed value written out. */
    expect_rules(
        __LINE__, c.data, a.data, NULL,
        "{\"op\":\"remove\",\"path\":\"/tail/0\",\"primary\":\"new\"}");
    shadow_buf_free(&a);
    shadow_buf_free(&b);
    shadow_buf_free(&c);
  }
  /* A shared span that has to be written out is parsed, and a fault in it
   * is reported like any other, with the side and the offset. */
  {
    shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    padded(&a, 300, "{\"bad\":[1,,2],\"x\":1}");
    padded(&b, 300, "{\"x\":1}");
    run_t x;
    run(&x, a.data, b.data, NULL, 0, 0);
    CHECK(x.rc == -EINVAL && strstr(x.err, "primary body is not JSON") &&
          x.ops.len == 0 && x.fields.len == 0);
    size_t off = (size_t)(strstr(a.data, ",,") - a.data) + 1;
    char where[64];
    snprintf(where, sizeof where, "offset %zu", off);
    CHECK(strstr(x.err, where) != NULL);
    run_free(&x);
    shadow_buf_free(&a);
    shadow_buf_free(&b);
  }
  /* The same when the fault lies in the shared prefix, found only when
   * the value is written out (here the candidate's repeated key makes
   * the broken member an op's primary). */
  {
    shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    shadow_buf_puts(&a, "{\"bad\":[1,,2],\"x\":");
    padded(&a, 100, "0");
    shadow_buf_puts(&b, a.data);
    shadow_buf_puts(&a, "}");
    shadow_buf_puts(&b, ",\"bad\":0}");
    run_t x;
    run(&x, a.data, b.data, NULL, 0, 0);
    CHECK(x.rc == -EINVAL && strstr(x.err, "primary body is not JSON") &&
          strstr(x.err, "offset 10") && x.ops.len == 0);
    run_free(&x);
    shadow_buf_free(&a);
    shadow_buf_free(&b);
  }
  /* Shared elements of an array in set mode are read when pairing. */
  {
    shadow_json_rules_t *sr = shadow_json_rules_new();
    CHECK(shadow_json_rules_array(sr, "/pad", SHADOW_ARRAY_SET, NULL) == 0);
    shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    padded(&a, 300, "0");
    padded(&b, 300, "0");
    char *p = strstr(b.data, "{\"i\":150,");
    p[5] = '9';
    expect_rules(
        __LINE__, a.data, b.data, sr,
        "{\"op\":\"remove\",\"path\":\"/pad/150\",\"primary\":"
        "{\"i\":150,\"s\":\"x150\"}},{\"op\":\"add\",\"path\":\"/pad/299\","
        "\"candidate\":{\"i\":950,\"s\":\"x150\"}}");
    shadow_json_rules_free(sr);
    shadow_buf_free(&a);
    shadow_buf_free(&b);
  }
  /* Trailing whitespace alone: no difference. */
  {
    shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
    padded(&a, 300, "0");
    padded(&b, 300, "0");
    shadow_buf_puts(&b, "\n");
    expect_rules(__LINE__, a.data, b.data, NULL, "");
    shadow_buf_puts(&b, "x");
    run_t x;
    run(&x, a.data, b.data, NULL, 0, 0);
    CHECK(x.rc == -EINVAL && strstr(x.err, "candidate"));
    run_free(&x);
    shadow_buf_free(&a);
    shadow_buf_free(&b);
  }
}

static void test_duplicate_keys(void) {
  /* The last member wins in both documents: these are both {"a":2}. */
  EXPECT("{\"a\":1,\"a\":2}", "{\"a\":3,\"a\":2}", "");
  EXPECT("{\"a\":1,\"a\":2}", "{\"a\":2}", "");
  EXPECT("{\"a\":2,\"a\":1}", "{\"a\":2}",
         "{\"op\":\"replace\",\"path\":\"/a\",\"primary\":1,\"candidate\":2}");
  EXPECT("[{\"k\":{\"x\":1},\"k\":{\"y\":1}}]",
         "[{\"k\":{\"x\":2},\"k\":{\"y\":1}}]", "");
  /* A value is written as the rule reads it. */
  EXPECT("{\"o\":1}", "{\"o\":{\"k\":1,\"k\":2}}",
         "{\"op\":\"replace\",\"path\":\"/o\",\"primary\":1,"
         "\"candidate\":{\"k\":2}}");
  /* In sets too: equal under the rule, equal as elements. */
  shadow_json_rules_t *r = shadow_json_rules_new();
  CHECK(shadow_json_rules_array(r, "/s", SHADOW_ARRAY_SET, NULL) == 0);
  EXPECT_R("{\"s\":[{\"a\":1,\"a\":2}]}", "{\"s\":[{\"a\":2}]}", r, "");
  shadow_json_rules_free(r);
  /* 100000 repeated keys that differ only in their last value: one field,
   * not 100000. */
  shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
  shadow_buf_puts(&a, "{");
  shadow_buf_puts(&b, "{");
  for (int i = 0; i < 100000; i++) {
    shadow_buf_printf(&a, "%s\"k\":%d", i ? "," : "", i);
    shadow_buf_printf(&b, "%s\"k\":%d", i ? "," : "", i == 99999 ? -1 : i + 1);
  }
  shadow_buf_puts(&a, "}");
  shadow_buf_puts(&b, "}");
  run_t x;
  run(&x, a.data, b.data, NULL, 0, 0);
  CHECK(x.rc == 0 && x.out.nops == 1 && x.ops.data &&
        strcmp(x.ops.data, "{\"op\":\"replace\",\"path\":\"/k\",\"primary\":"
                           "99999,\"candidate\":-1}") == 0);
  run_free(&x);
  shadow_buf_free(&a);
  shadow_buf_free(&b);
  /* A repeated key around a shared span: the dead member's change does
   * not count, the live one's does. */
  shadow_buf_t p = SHADOW_BUF_INIT, q = SHADOW_BUF_INIT;
  padded(&p, 200, "{\"d\":1,\"d\":5}");
  padded(&q, 200, "{\"d\":2,\"d\":5}");
  shadow_buf_puts(&p, "");
  expect_rules(__LINE__, p.data, q.data, NULL, "");
  shadow_buf_free(&p);
  shadow_buf_free(&q);
}

static void test_truncated_ops(void) {
  run_t r;
  /* Only the op whose value was cut says so. */
  run(&r, "{\"a\":\"0123456789\",\"b\":1}", "{\"a\":\"x\",\"b\":2}", NULL, 8,
      0);
  CHECK(r.rc == 0 && r.out.nops == 2);
  CHECK(r.ops.data &&
        strcmp(
            r.ops.data,
            "{\"op\":\"replace\",\"path\":\"/a\",\"primary\":"
            "\"01234567...(10 bytes)\",\"candidate\":\"x\",\"truncated\":true},"
            "{\"op\":\"replace\",\"path\":\"/b\",\"primary\":1,"
            "\"candidate\":2}") == 0);
  run_free(&r);
  /* A long number and a long container are cut the same way. */
  run(&r, "[1]", "[12345678901234567890,{\"k\":\"vvvvvvvvvvvv\"}]", NULL, 8, 0);
  CHECK(r.rc == 0 && r.out.nops == 2 && r.ops.data);
  CHECK(r.ops.data &&
        strstr(r.ops.data, "\"candidate\":\"12345678...(20 bytes)\","
                           "\"truncated\":true}") != NULL);
  run_free(&r);
  /* value_max 0: nothing is cut, nothing is marked. */
  run(&r, "{\"a\":\"0123456789\"}", "{\"a\":\"x\"}", NULL, 0, 0);
  CHECK(r.rc == 0 && r.ops.data && !strstr(r.ops.data, "truncated"));
  run_free(&r);
}

/* The structural scan against its contract, byte by byte: from a start
 * outside any string, a backslash escapes the next byte (an escaped quote
 * is no quote, an escaped backslash escapes nothing), quotes toggle
 * strings, and outside strings brackets open and close entries, a closed
 * one dropping what it held. */
static void ref_scan(const char *t, size_t start, size_t limit, uint32_t *open,
                     uint32_t *end, size_t *n) {
  uint32_t stack[4096];
  size_t sp = 0;
  int in_str = 0, esc = 0;
  *n = 0;
  for (size_t i = start; i < limit; i++) {
    char c = t[i];
    if (esc) {
      esc = 0;
      if (c == '"' || c == '\\') continue;
    } else if (c == '\\') {
      esc = 1;
      continue;
    } else if (c == '"') {
      in_str = !in_str;
      continue;
    }
    if (in_str) continue;
    if (c == '[' || c == '{') {
      open[*n] = (uint32_t)i;
      end[*n] = SHADOW_JSON_SPAN_OPEN;
      stack[sp++] = (uint32_t)(*n)++;
    } else if ((c == ']' || c == '}') && sp) {
      uint32_t r = stack[--sp];
      end[r] = (uint32_t)i + 1;
      *n = r + 1;
    }
  }
}

static uint64_t scan_rng = 88172645463325252ULL;

static size_t scan_rn(size_t n) {
  scan_rng ^= scan_rng << 13;
  scan_rng ^= scan_rng >> 7;
  scan_rng ^= scan_rng << 17;
  return (size_t)(scan_rng % n);
}

static void test_scan(void) {
  static const char alphabet[] = "\"\\\\[]{}a \"[]";
  char text[1200];
  uint32_t open[1200], end[1200];
  int bad = 0;
  for (int portable = 0; portable < 2; portable++) {
    shadow_json_spans_portable(portable);
    for (int round = 0; round < 20000 && bad < 3; round++) {
      size_t len = scan_rn(sizeof text);
      /* Some texts are mostly backslashes, so long runs cross blocks. */
      int runs = scan_rn(4) == 0;
      for (size_t i = 0; i < len; i++)
        text[i] =
            runs && scan_rn(3) ? '\\' : alphabet[scan_rn(sizeof alphabet - 1)];
      size_t start = len ? scan_rn(len) : 0,
             limit = start + scan_rn(len - start + 1);
      shadow_json_spans_t sp = SHADOW_JSON_SPANS_INIT;
      size_t n;
      ref_scan(text, start, limit, open, end, &n);
      int rc = shadow_json_spans_scan(&sp, text, start, limit);
      int same = rc == 0 && sp.n == n;
      for (size_t i = 0; same && i < n; i++)
        same = sp.open[i] == open[i] && sp.end[i] == end[i];
      if (!same) {
        fprintf(stderr,
                "scan (%s) of [%zu, %zu) of '%.*s': %zu entries, want %zu\n",
                portable ? "portable" : "best", start, limit, (int)len, text,
                sp.n, n);
        bad++;
        check_failed++;
      }
      shadow_json_spans_free(&sp);
      /* One container's end on demand agrees with the table's first
       * entry, when its closing bracket is of its own kind. */
      size_t at = start;
      while (at < limit && text[at] != '[' && text[at] != '{')
        at++;
      if (at < limit) {
        ref_scan(text, at, limit, open, end, &n);
        size_t e = 0;
        int got = shadow_json_span_end(text, at, limit, &e);
        int want = end[0] != SHADOW_JSON_SPAN_OPEN &&
                   (text[at] == '[') == (text[end[0] - 1] == ']');
        if (got != want || (want && e != end[0])) {
          fprintf(stderr,
                  "span end (%s) at %zu of [.., %zu) of '%.*s': %d %zu\n",
                  portable ? "portable" : "best", at, limit, (int)len, text,
                  got, e);
          bad++;
          check_failed++;
        }
      }
    }
  }
  shadow_json_spans_portable(0);
  /* The common prefix and suffix, at every length around the blocks. */
  char a[9000], b[9000];
  for (size_t i = 0; i < sizeof a; i++)
    a[i] = b[i] = (char)('a' + i % 23);
  for (size_t at = 0; at < sizeof a; at += 1 + at / 7) {
    b[at] = 'X';
    CHECK(shadow_json_common_prefix(a, b, sizeof a) == at);
    CHECK(shadow_json_common_suffix(a, b, sizeof a) == sizeof a - at - 1);
    b[at] = a[at];
  }
  CHECK(shadow_json_common_prefix(a, b, sizeof a) == sizeof a);
}

/* Big inputs in every mode: each matching step must stay near linear
 * (a quadratic one would take minutes here and trip the test timeout). */
static void test_scale(void) {
  enum { N = 200000 };
  shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
  shadow_buf_puts(&a, "{\"z\":[");
  shadow_buf_puts(&b, "{\"z\":[");
  for (int i = 0; i < N; i++) {
    shadow_buf_puts(&a, i ? ",0" : "0");
    shadow_buf_puts(&b, i ? ",0" : (i == 0 ? "1" : "0"));
  }
  shadow_buf_puts(&a, "],\"k\":[");
  shadow_buf_puts(&b, "],\"k\":[");
  for (int i = 0; i < N; i++) {
    shadow_buf_printf(&a, "%s{\"id\":%d,\"v\":0}", i ? "," : "", i);
    shadow_buf_printf(&b, "%s{\"v\":%d,\"id\":%d}", i ? "," : "",
                      N - 1 - i == 7 ? 1 : 0, N - 1 - i);
  }
  shadow_buf_puts(&a, "],\"o\":{");
  shadow_buf_puts(&b, "],\"o\":{");
  for (int i = 0; i < N; i++) {
    shadow_buf_printf(&a, "%s\"%d\":%d", i ? "," : "", i, i);
    shadow_buf_printf(&b, "%s\"%d\":%d", i ? "," : "", N - 1 - i, N - 1 - i);
  }
  shadow_buf_puts(&a, "}}");
  shadow_buf_puts(&b, "}}");
  static const int modes[] = {SHADOW_ARRAY_MULTISET, SHADOW_ARRAY_SET};
  for (int m = 0; m < 2; m++) {
    shadow_json_rules_t *r = shadow_json_rules_new();
    CHECK(shadow_json_rules_array(r, "/z", modes[m], NULL) == 0);
    CHECK(shadow_json_rules_array(r, "/k", SHADOW_ARRAY_KEY, "id") == 0);
    shadow_buf_t ops = SHADOW_BUF_INIT;
    shadow_json_diff_out_t out = {&ops, NULL, 0, 0, 0, 0, {0, 0}, NULL, NULL};
    CHECK(shadow_json_diff(a.data, a.len, b.data, b.len, r, &out, NULL, 0) ==
          0);
    /* multiset: one 0 removed, the 1 added; set: only the 1 added. Key
     * mode: id 7's v changed, under its primary index 7. */
    CHECK(out.nops == (m == 0 ? 3u : 2u));
    CHECK(strstr(ops.data, "\"path\":\"/k/7/v\"") != NULL);
    shadow_buf_free(&ops);
    shadow_json_rules_free(r);
  }
  shadow_buf_free(&a);
  shadow_buf_free(&b);

  /* Arrays nested 500 deep with a change at the bottom, and with another
   * at every level: each compare of an element must not nest compares of
   * its own (2^500 walks), nor repeat its walk at every level for ever. */
  for (int wide = 0; wide < 2; wide++) {
    shadow_buf_t p = SHADOW_BUF_INIT, q = SHADOW_BUF_INIT;
    for (int i = 0; i < 500; i++) {
      shadow_buf_putc(&p, '[');
      shadow_buf_putc(&q, '[');
    }
    shadow_buf_puts(&p, "1");
    shadow_buf_puts(&q, "2");
    for (int i = 0; i < 500; i++) {
      shadow_buf_puts(&p, wide ? ",0]" : "]");
      shadow_buf_puts(&q, wide ? ",1]" : "]");
    }
    shadow_json_diff_out_t out = {NULL, NULL, 0, 0, 0, 0, {0, 0}, NULL, NULL};
    CHECK(shadow_json_diff(p.data, p.len, q.data, q.len, NULL, &out, NULL, 0) ==
          0);
    CHECK(out.nops == (wide ? 501u : 1u));
    shadow_buf_free(&p);
    shadow_buf_free(&q);
  }
}

int main(void) {
  test_key_order_and_scalars();
  test_numbers();
  test_strings();
  test_nested_and_objects();
  test_arrays();
  test_ignore();
  test_array_modes();
  test_tolerance();
  test_truncation_and_budget();
  test_invalid();
  test_depth();
  test_fields_and_odd_keys();
  test_scale();
  test_scan();
  test_alignment();
  test_shared_spans();
  test_duplicate_keys();
  test_truncated_ops();
  return check_report("test_json_diff");
}
