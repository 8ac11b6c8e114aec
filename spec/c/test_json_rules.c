/* Unit tests of the migration rules of the JSON diff (rename, coerce, mask,
 * time: json_rules.c, json_rename.c), of the Lua-pattern matcher behind
 * masks, and of their JSON form (shadow_diff_opts_parse): each case is a
 * pair of documents and the exact ops a user would read, or the message a
 * bad rule gets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "diff.h"
#include "json.h"
#include "json_diff.h"
#include "json_rules.h"
#include "pattern.h"

typedef struct {
  shadow_buf_t ops, fields, explain;
  shadow_json_diff_out_t out;
  char err[160];
  int rc;
} run_t;

static void run(run_t *r, const char *a, const char *b,
                const shadow_json_rules_t *rules) {
  memset(r, 0, sizeof *r);
  r->out.ops = &r->ops;
  r->out.fields = &r->fields;
  r->out.explain = &r->explain;
  r->rc = shadow_json_diff(a, strlen(a), b, strlen(b), rules, &r->out, r->err,
                           sizeof r->err);
}

static void run_free(run_t *r) {
  shadow_buf_free(&r->ops);
  shadow_buf_free(&r->fields);
  shadow_buf_free(&r->explain);
}

static void expect(int line, const char *a, const char *b,
                   const shadow_json_rules_t *rules, const char *want) {
  run_t r;
  run(&r, a, b, rules);
  const char *got = r.ops.data ? r.ops.data : "";
  if (r.rc != 0 || strcmp(got, want) != 0) {
    fprintf(stderr,
            "line %d: diff %s vs %s\n  rc %d err '%s'\n  got  %s\n"
            "  want %s\n",
            line, a, b, r.rc, r.err, got, want);
    check_failed++;
  } else {
    check_passed++;
  }
  /* Without explaining, the same ops. */
  shadow_buf_t ops = SHADOW_BUF_INIT;
  shadow_json_diff_out_t out;
  memset(&out, 0, sizeof out);
  out.ops = &ops;
  int rc = shadow_json_diff(a, strlen(a), b, strlen(b), rules, &out, NULL, 0);
  if (rc != r.rc || strcmp(ops.data ? ops.data : "", got) != 0) {
    fprintf(stderr, "line %d: explaining changed the ops\n", line);
    check_failed++;
  }
  shadow_buf_free(&ops);
  run_free(&r);
}

#define EXPECT(a, b, rules, want) expect(__LINE__, a, b, rules, want)

/* The explain lines of a diff contain want. */
static void expect_explain(int line, const char *a, const char *b,
                           const shadow_json_rules_t *rules, const char *want) {
  run_t r;
  run(&r, a, b, rules);
  const char *got = r.explain.data ? r.explain.data : "";
  if (r.rc != 0 || !strstr(got, want)) {
    fprintf(stderr, "line %d: explain of %s vs %s\n  got  %s\n  want %s\n",
            line, a, b, got, want);
    check_failed++;
  } else {
    check_passed++;
  }
  run_free(&r);
}

#define EXPLAIN(a, b, rules, want) expect_explain(__LINE__, a, b, rules, want)

/* The names of the rules that hit, in bit order, joined by spaces. */
static void expect_hits(int line, const char *a, const char *b,
                        const shadow_json_rules_t *rules, const char *want) {
  run_t r;
  run(&r, a, b, rules);
  char got[512] = "";
  for (size_t bit = 0; bit < SHADOW_JSON_RULE_BITS; bit++) {
    if (!(r.out.hits[bit / 64] >> (bit % 64) & 1)) continue;
    const char *n = shadow_json_rules_name(rules, bit);
    size_t len = strlen(got);
    snprintf(got + len, sizeof got - len, "%s%s", len ? " " : "", n ? n : "?");
  }
  if (r.rc != 0 || strcmp(got, want) != 0) {
    fprintf(stderr, "line %d: hits of %s vs %s\n  got  '%s'\n  want '%s'\n",
            line, a, b, got, want);
    check_failed++;
  } else {
    check_passed++;
  }
  run_free(&r);
}

#define HITS(a, b, rules, want) expect_hits(__LINE__, a, b, rules, want)

static shadow_json_rules_t *rules_new(void) {
  shadow_json_rules_t *r = shadow_json_rules_new();
  if (!r) abort();
  return r;
}

static void test_rename(void) {
  shadow_json_rules_t *r = rules_new();
  CHECK(shadow_json_rules_rename(r, "/user/email", "/user/email_address",
                                 NULL) == 0);
  /* The renamed member compares with the candidate's: neither is added or
   * removed. */
  EXPECT("{\"user\":{\"name\":\"Ann\",\"email\":\"a@x\"}}",
         "{\"user\":{\"email_address\":\"a@x\",\"name\":\"Ann\"}}", r, "");
  HITS("{\"user\":{\"email\":\"a@x\"}}",
       "{\"user\":{\"email_address\":\"a@x\"}}", r, "rename:/user/email");
  /* A different value is reported at the candidate's path. */
  EXPECT("{\"user\":{\"email\":\"a@x\"}}",
         "{\"user\":{\"email_address\":\"b@x\"}}", r,
         "{\"op\":\"replace\",\"path\":\"/user/email_address\","
         "\"primary\":\"a@x\",\"candidate\":\"b@x\"}");
  /* A candidate that kept the old name lacks the new one and has the old:
   * even when both texts are the same bytes. */
  EXPECT("{\"user\":{\"email\":\"a@x\"}}", "{\"user\":{\"email\":\"a@x\"}}", r,
         "{\"op\":\"remove\",\"path\":\"/user/email_address\","
         "\"primary\":\"a@x\"},{\"op\":\"add\",\"path\":\"/user/email\","
         "\"candidate\":\"a@x\"}");
  /* Nothing to rename: identical texts agree, and the rule did nothing. */
  EXPECT("{\"user\":{\"name\":\"Ann\"}}", "{\"user\":{\"name\":\"Ann\"}}", r,
         "");
  HITS("{\"user\":{\"name\":\"Ann\"}}", "{\"user\":{\"name\":\"Ann\"}}", r, "");
  /* Onto a path the primary also has: nothing is overwritten, so the rule
   * does not apply there and both compare as they are. */
  EXPECT("{\"user\":{\"email\":\"a@x\",\"email_address\":\"old@x\"}}",
         "{\"user\":{\"email_address\":\"a@x\"}}", r,
         "{\"op\":\"remove\",\"path\":\"/user/email\",\"primary\":\"a@x\"},"
         "{\"op\":\"replace\",\"path\":\"/user/email_address\","
         "\"primary\":\"old@x\",\"candidate\":\"a@x\"}");
  HITS("{\"user\":{\"email\":\"a\",\"email_address\":\"o\"}}",
       "{\"user\":{\"email_address\":\"a\"}}", r, "");
  EXPLAIN("{\"user\":{\"email\":\"a\",\"email_address\":\"o\"}}",
          "{\"user\":{\"email_address\":\"a\"}}", r,
          "{\"kind\":\"not_renamed\",\"from\":\"/user/email\",\"path\":"
          "\"/user/email_address\",\"rule\":\"rename:/user/email\",\"why\":"
          "\"the primary already has a value at the target\"}");
  /* A candidate that has both names: the old one is extra. */
  EXPECT("{\"user\":{\"email\":\"a\"}}",
         "{\"user\":{\"email\":\"a\",\"email_address\":\"a\"}}", r,
         "{\"op\":\"add\",\"path\":\"/user/email\",\"candidate\":\"a\"}");
  /* Repeated keys: the last one is the member, and it moves. */
  EXPECT("{\"user\":{\"email\":\"old\",\"n\":1,\"email\":\"a\"}}",
         "{\"user\":{\"n\":1,\"email_address\":\"a\"}}", r, "");
  /* Not an object where the rule looks: nothing to do. */
  EXPECT("{\"user\":[1]}", "{\"user\":[1]}", r, "");
  EXPECT("{\"user\":{\"email\":{\"a\":[1,2]}}}",
         "{\"user\":{\"email_address\":{\"a\":[1,2]}}}", r, "");
  shadow_json_rules_free(r);

  /* Into another object, created when the primary has none. */
  r = rules_new();
  CHECK(shadow_json_rules_rename(r, "/email", "/contact/email", NULL) == 0);
  EXPECT("{\"email\":\"a\",\"id\":1}",
         "{\"id\":1,\"contact\":{\"email\":\"a\"}}", r, "");
  EXPECT("{\"email\":\"a\",\"contact\":{\"phone\":\"1\"}}",
         "{\"contact\":{\"phone\":\"1\",\"email\":\"a\"}}", r, "");
  /* No object to put it in: not renamed. */
  EXPECT("{\"email\":\"a\",\"contact\":\"none\"}",
         "{\"email\":\"a\",\"contact\":\"none\"}", r, "");
  EXPLAIN("{\"email\":\"a\",\"contact\":\"none\"}",
          "{\"email\":\"a\",\"contact\":\"none\"}", r,
          "\"why\":\"the primary has no object at the target to hold it\"");
  shadow_json_rules_free(r);
}

static void test_rename_wildcards(void) {
  shadow_json_rules_t *r = rules_new();
  CHECK(shadow_json_rules_rename(r, "/items/*/email", "/items/*/email_address",
                                 NULL) == 0);
  const char *p = "{\"items\":[{\"id\":1,\"email\":\"a\"},{\"id\":2,\"email\":"
                  "\"b\"},{\"id\":3,\"email\":\"c\"}]}";
  const char *c =
      "{\"items\":[{\"id\":1,\"email_address\":\"a\"},{\"id\":2,"
      "\"email_address\":\"b\"},{\"id\":3,\"email_address\":\"c\"}]}";
  EXPECT(p, c, r, "");
  /* Aligned: an element inserted in the candidate is one add. */
  EXPECT(p,
         "{\"items\":[{\"id\":1,\"email_address\":\"a\"},{\"id\":9,"
         "\"email_address\":\"z\"},{\"id\":2,\"email_address\":\"b\"},{\"id\":"
         "3,\"email_address\":\"c\"}]}",
         r,
         "{\"op\":\"add\",\"path\":\"/items/1\",\"candidate\":{\"id\":9,"
         "\"email_address\":\"z\"}}");
  /* Keyed, reordered, one value changed: reported under the primary's
   * index. */
  CHECK(shadow_json_rules_array(r, "/items", SHADOW_ARRAY_KEY, "id") == 0);
  EXPECT(p,
         "{\"items\":[{\"id\":3,\"email_address\":\"c\"},{\"id\":1,"
         "\"email_address\":\"a\"},{\"id\":2,\"email_address\":\"B\"}]}",
         r,
         "{\"op\":\"replace\",\"path\":\"/items/1/email_address\","
         "\"primary\":\"b\",\"candidate\":\"B\"}");
  shadow_json_rules_free(r);

  /* As a set: elements pair once renamed. */
  r = rules_new();
  CHECK(shadow_json_rules_rename(r, "/tags/*/n", "/tags/*/name", NULL) == 0);
  CHECK(shadow_json_rules_array(r, "/tags", SHADOW_ARRAY_SET, NULL) == 0);
  EXPECT("{\"tags\":[{\"n\":\"a\"},{\"n\":\"b\"}]}",
         "{\"tags\":[{\"name\":\"b\"},{\"name\":\"a\"}]}", r, "");
  shadow_json_rules_free(r);

  /* A wildcard over keys, bound into the target. */
  r = rules_new();
  CHECK(shadow_json_rules_rename(r, "/prices/*/amt", "/prices/*/amount",
                                 NULL) == 0);
  EXPECT("{\"prices\":{\"eur\":{\"amt\":1},\"usd\":{\"amt\":2}}}",
         "{\"prices\":{\"usd\":{\"amount\":2},\"eur\":{\"amount\":1}}}", r, "");
  shadow_json_rules_free(r);

  /* A rename into an object another rename creates: shallowest target
   * first. */
  r = rules_new();
  CHECK(shadow_json_rules_rename(r, "/user", "/account", NULL) == 0);
  CHECK(shadow_json_rules_rename(r, "/mail", "/account/email", NULL) == 0);
  EXPECT("{\"mail\":\"a\",\"user\":{\"id\":1}}",
         "{\"account\":{\"id\":1,\"email\":\"a\"}}", r, "");
  HITS("{\"mail\":\"a\",\"user\":{\"id\":1}}",
       "{\"account\":{\"id\":1,\"email\":\"a\"}}", r,
       "rename:/user rename:/mail");
  shadow_json_rules_free(r);
}

static void test_rename_refused(void) {
  shadow_json_rules_t *r = rules_new();
  const char *why = NULL;
  CHECK(shadow_json_rules_rename(r, "/a", "/a", &why) == -EINVAL && why);
  CHECK(shadow_json_rules_rename(r, "/a", "/a/b", &why) == -EINVAL && why);
  CHECK(shadow_json_rules_rename(r, "", "/b", &why) == -EINVAL && why);
  CHECK(shadow_json_rules_rename(r, "/a/*/x", "/b/x", &why) == -EINVAL &&
        strstr(why, "as many *"));
  CHECK(shadow_json_rules_rename(r, "a", "/b", &why) == -EINVAL && !why);
  CHECK(shadow_json_rules_rename(r, "/user", "/account", &why) == 0);
  CHECK(shadow_json_rules_rename(r, "/user/email", "/x", &why) == -EINVAL &&
        strstr(why, "inside each other"));
  CHECK(shadow_json_rules_rename(r, "/y", "/user/y", &why) == -EINVAL &&
        strstr(why, "target lies inside"));
  CHECK(shadow_json_rules_rename(r, "/z", "/account", &why) == -EINVAL &&
        strstr(why, "same target"));
  shadow_json_rules_free(r);
}

/* A shared span (skipped as byte-identical) still gets renamed. */
static void test_rename_shared_spans(void) {
  shadow_json_rules_t *r = rules_new();
  CHECK(shadow_json_rules_rename(r, "/big/*/old", "/big/*/new", NULL) == 0);
  shadow_buf_t a = SHADOW_BUF_INIT, b = SHADOW_BUF_INIT;
  shadow_buf_puts(&a, "{\"big\":[");
  shadow_buf_puts(&b, "{\"big\":[");
  for (int i = 0; i < 200; i++) {
    shadow_buf_printf(&a, "%s{\"id\":%d,\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}",
                      i ? "," : "", i);
    shadow_buf_printf(&b, "%s{\"id\":%d,\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}",
                      i ? "," : "", i);
  }
  /* The one member to rename sits in the middle of common text: the
   * candidate kept its old name, so both texts share it byte for byte. */
  shadow_buf_puts(&a, ",{\"old\":1}");
  shadow_buf_puts(&b, ",{\"old\":1}");
  for (int i = 0; i < 200; i++) {
    shadow_buf_printf(&a, ",{\"id\":%d,\"pad\":\"yyyyyyyyyyyyyyyyyyyy\"}", i);
    shadow_buf_printf(&b, ",{\"id\":%d,\"pad\":\"yyyyyyyyyyyyyyyyyyyy\"}", i);
  }
  shadow_buf_puts(&a, "],\"v\":1}");
  shadow_buf_puts(&b, "],\"v\":2}");
  EXPECT(a.data, b.data, r,
         "{\"op\":\"remove\",\"path\":\"/big/200/new\",\"primary\":1},"
         "{\"op\":\"add\",\"path\":\"/big/200/old\",\"candidate\":1},"
         "{\"op\":\"replace\",\"path\":\"/v\",\"primary\":1,\"candidate\":2}");
  /* And a candidate that renamed it agrees. */
  shadow_buf_t c = SHADOW_BUF_INIT;
  shadow_buf_append(&c, b.data, b.len);
  char *at = strstr(c.data, "{\"old\":1}");
  memcpy(at, "{\"new\":1}", 9);
  EXPECT(a.data, c.data, r,
         "{\"op\":\"replace\",\"path\":\"/v\",\"primary\":1,\"candidate\":2}");
  shadow_buf_free(&a);
  shadow_buf_free(&b);
  shadow_buf_free(&c);
  shadow_json_rules_free(r);
}

static void test_coerce(void) {
  shadow_json_rules_t *r = rules_new();
  CHECK(shadow_json_rules_coerce(r, "/qty", SHADOW_COERCE_NUMBER) == 0);
  CHECK(shadow_json_rules_coerce(r, "/flags/*", SHADOW_COERCE_BOOLEAN) == 0);
  EXPECT("{\"qty\":\"12\"}", "{\"qty\":12}", r, "");
  EXPECT("{\"qty\":12}", "{\"qty\":\"12.0\"}", r, "");
  EXPECT("{\"qty\":\"1e2\"}", "{\"qty\":\"100\"}", r, "");
  HITS("{\"qty\":\"12\"}", "{\"qty\":12}", r, "coerce:/qty");
  /* A string that holds no number, or not only one, is still a
   * difference. */
  EXPECT("{\"qty\":\"abc\"}", "{\"qty\":12}", r,
         "{\"op\":\"replace\",\"path\":\"/qty\",\"primary\":\"abc\","
         "\"candidate\":12}");
  EXPECT("{\"qty\":\" 12\"}", "{\"qty\":12}", r,
         "{\"op\":\"replace\",\"path\":\"/qty\",\"primary\":\" 12\","
         "\"candidate\":12}");
  EXPECT("{\"qty\":\"12\"}", "{\"qty\":13}", r,
         "{\"op\":\"replace\",\"path\":\"/qty\",\"primary\":\"12\","
         "\"candidate\":13}");
  EXPLAIN("{\"qty\":\"abc\"}", "{\"qty\":12}", r,
          "\"tried\":[{\"rule\":\"coerce:/qty\",\"why\":\"the primary is not "
          "a number\"}]");
  EXPLAIN("{\"qty\":\"12\"}", "{\"qty\":12}", r,
          "{\"kind\":\"absorbed\",\"path\":\"/qty\",\"rule\":\"coerce:/qty\","
          "\"why\":\"equal as numbers\",\"primary\":\"12\",\"candidate\":12}");
  EXPECT("{\"flags\":{\"a\":\"true\",\"b\":false}}",
         "{\"flags\":{\"a\":true,\"b\":\"false\"}}", r, "");
  EXPECT("{\"flags\":{\"a\":\"yes\"}}", "{\"flags\":{\"a\":true}}", r,
         "{\"op\":\"replace\",\"path\":\"/flags/a\",\"primary\":\"yes\","
         "\"candidate\":true}");
  EXPECT("{\"flags\":{\"a\":\"true\"}}", "{\"flags\":{\"a\":false}}", r,
         "{\"op\":\"replace\",\"path\":\"/flags/a\",\"primary\":\"true\","
         "\"candidate\":false}");
  /* Elsewhere a string is a string. */
  EXPECT("{\"other\":\"12\"}", "{\"other\":12}", r,
         "{\"op\":\"replace\",\"path\":\"/other\",\"primary\":\"12\","
         "\"candidate\":12}");
  /* With a tolerance at the same path. */
  CHECK(shadow_json_rules_tolerance(r, "/qty", 0.5) == 0);
  EXPECT("{\"qty\":\"12.25\"}", "{\"qty\":12}", r, "");
  HITS("{\"qty\":\"12.25\"}", "{\"qty\":12}", r, "coerce:/qty tolerance:/qty");
  shadow_json_rules_free(r);

  /* Under array wildcards: aligned, keyed (the key itself coerced), set. */
  r = rules_new();
  CHECK(shadow_json_rules_coerce(r, "/items/*/qty", SHADOW_COERCE_NUMBER) == 0);
  EXPECT("{\"items\":[{\"id\":1,\"qty\":\"1\"},{\"id\":2,\"qty\":\"2\"}]}",
         "{\"items\":[{\"id\":0,\"qty\":0},{\"id\":1,\"qty\":1},{\"id\":2,"
         "\"qty\":2}]}",
         r,
         "{\"op\":\"add\",\"path\":\"/items/0\",\"candidate\":{\"id\":0,"
         "\"qty\":0}}");
  CHECK(shadow_json_rules_coerce(r, "/items/*/id", SHADOW_COERCE_NUMBER) == 0);
  CHECK(shadow_json_rules_array(r, "/items", SHADOW_ARRAY_KEY, "id") == 0);
  EXPECT("{\"items\":[{\"id\":1,\"qty\":\"1\"},{\"id\":2,\"qty\":\"2\"}]}",
         "{\"items\":[{\"id\":\"2\",\"qty\":2},{\"id\":\"1\",\"qty\":3}]}", r,
         "{\"op\":\"replace\",\"path\":\"/items/0/qty\",\"primary\":\"1\","
         "\"candidate\":3}");
  CHECK(shadow_json_rules_coerce(r, "/tags/*", SHADOW_COERCE_NUMBER) == 0);
  CHECK(shadow_json_rules_array(r, "/tags", SHADOW_ARRAY_SET, NULL) == 0);
  EXPECT("{\"tags\":[\"1\",\"2\",3]}", "{\"tags\":[2,\"3\",1]}", r, "");
  shadow_json_rules_free(r);
}

/* The walk finds rules by tables of segments (json_rules.h): keys that
 * share a bucket, and a segment naming an index, must still each match
 * only their own paths. "ak" and "dd" fall in one bucket. */
static void test_segment_tables(void) {
  shadow_json_rules_t *r = rules_new();
  CHECK(shadow_json_rules_coerce(r, "/ak", SHADOW_COERCE_NUMBER) == 0);
  CHECK(shadow_json_rules_mask(r, "/dd", SHADOW_MASK_UUID, NULL, NULL) == 0);
  CHECK(shadow_json_rules_coerce(r, "/list/1", SHADOW_COERCE_NUMBER) == 0);
  EXPECT("{\"ak\":\"1\",\"dd\":\"1\"}", "{\"ak\":1,\"dd\":1}", r,
         "{\"op\":\"replace\",\"path\":\"/dd\",\"primary\":\"1\","
         "\"candidate\":1}");
  HITS("{\"ak\":\"1\",\"dd\":\"1\"}", "{\"ak\":1,\"dd\":1}", r, "coerce:/ak");
  EXPECT("{\"list\":[\"1\",\"1\"]}", "{\"list\":[1,1]}", r,
         "{\"op\":\"replace\",\"path\":\"/list/0\",\"primary\":\"1\","
         "\"candidate\":1}");
  EXPECT("{\"list\":{\"1\":\"2\",\"0\":\"2\"}}",
         "{\"list\":{\"1\":2,\"0\":\"2\"}}", r, "");
  /* A number spelled in the string as in the number is the fast way;
   * other spellings and other numbers go through the parser. */
  EXPECT("{\"ak\":\"-1.50\"}", "{\"ak\":-1.50}", r, "");
  EXPECT("{\"ak\":-1.5}", "{\"ak\":\"-15e-1\"}", r, "");
  EXPECT("{\"ak\":\"1.5\"}", "{\"ak\":1.50001}", r,
         "{\"op\":\"replace\",\"path\":\"/ak\",\"primary\":\"1.5\","
         "\"candidate\":1.50001}");
  shadow_json_rules_free(r);
}

static void test_mask(void) {
  shadow_json_rules_t *r = rules_new();
  CHECK(shadow_json_rules_mask(r, "/id", SHADOW_MASK_UUID, NULL, NULL) == 0);
  CHECK(shadow_json_rules_mask(r, "/trace", SHADOW_MASK_HEX, NULL, NULL) == 0);
  CHECK(shadow_json_rules_mask(r, "/at", SHADOW_MASK_ISO8601, NULL, NULL) == 0);
  CHECK(shadow_json_rules_mask(r, "/ts", SHADOW_MASK_EPOCH, NULL, NULL) == 0);
  CHECK(shadow_json_rules_mask(r, "/token", SHADOW_MASK_PATTERN, "tok_%w+",
                               NULL) == 0);
  EXPECT("{\"id\":\"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b\"}",
         "{\"id\":\"D7C9A0B1-2E3F-4A5B-9C8D-7E6F5A4B3C2D\"}", r, "");
  HITS("{\"id\":\"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b\"}",
       "{\"id\":\"d7c9a0b1-2e3f-4a5b-9c8d-7e6f5a4b3c2d\"}", r, "mask:/id");
  /* A format change is a divergence: the candidate's id is no uuid. */
  EXPECT("{\"id\":\"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b\"}", "{\"id\":42}", r,
         "{\"op\":\"replace\",\"path\":\"/id\",\"primary\":"
         "\"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b\",\"candidate\":42}");
  EXPLAIN("{\"id\":\"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b\"}",
          "{\"id\":\"0b8f6a4e1c2d4e5f8a9b0c1d2e3f4a5b\"}", r,
          "{\"rule\":\"mask:/id\",\"why\":\"the candidate is not a uuid\"}");
  EXPECT("{\"trace\":\"00ff\"}", "{\"trace\":\"ABCDEF0123\"}", r, "");
  EXPECT("{\"trace\":\"00ff\"}", "{\"trace\":\"00fg\"}", r,
         "{\"op\":\"replace\",\"path\":\"/trace\",\"primary\":\"00ff\","
         "\"candidate\":\"00fg\"}");
  EXPECT("{\"at\":\"2026-11-26\"}", "{\"at\":\"2026-11-27T10:00:00.5+01:00\"}",
         r, "");
  EXPECT("{\"at\":\"2026-11-26\"}", "{\"at\":\"2026-02-30\"}", r,
         "{\"op\":\"replace\",\"path\":\"/at\",\"primary\":\"2026-11-26\","
         "\"candidate\":\"2026-02-30\"}");
  EXPECT("{\"ts\":1700000000}", "{\"ts\":\"1700000001.5\"}", r, "");
  EXPECT("{\"ts\":1700000000}", "{\"ts\":-1}", r,
         "{\"op\":\"replace\",\"path\":\"/ts\",\"primary\":1700000000,"
         "\"candidate\":-1}");
  EXPECT("{\"token\":\"tok_abc\"}", "{\"token\":\"tok_XYZ9\"}", r, "");
  /* The pattern matches the whole value. */
  EXPECT("{\"token\":\"tok_abc\"}", "{\"token\":\"tok_ab-c\"}", r,
         "{\"op\":\"replace\",\"path\":\"/token\",\"primary\":\"tok_abc\","
         "\"candidate\":\"tok_ab-c\"}");
  /* One side matching is not enough. */
  EXPECT("{\"token\":\"x\"}", "{\"token\":\"tok_a\"}", r,
         "{\"op\":\"replace\",\"path\":\"/token\",\"primary\":\"x\","
         "\"candidate\":\"tok_a\"}");
  shadow_json_rules_free(r);

  /* Under an array wildcard, aligned: elements that differ only in masked
   * ids still line up, so an insertion is one add. */
  r = rules_new();
  CHECK(shadow_json_rules_mask(r, "/rows/*/id", SHADOW_MASK_UUID, NULL, NULL) ==
        0);
  EXPECT("{\"rows\":[{\"id\":\"00000000-0000-0000-0000-000000000001\",\"v\":1},"
         "{\"id\":\"00000000-0000-0000-0000-000000000002\",\"v\":2}]}",
         "{\"rows\":[{\"id\":\"10000000-0000-0000-0000-000000000000\",\"v\":0},"
         "{\"id\":\"10000000-0000-0000-0000-000000000001\",\"v\":1},"
         "{\"id\":\"10000000-0000-0000-0000-000000000002\",\"v\":2}]}",
         r,
         "{\"op\":\"add\",\"path\":\"/rows/0\",\"candidate\":{\"id\":"
         "\"10000000-0000-0000-0000-000000000000\",\"v\":0}}");
  shadow_json_rules_free(r);
}

static void test_time(void) {
  shadow_json_rules_t *r = rules_new();
  CHECK(shadow_json_rules_time(r, "/t", SHADOW_TIME_INSTANT, 0) == 0);
  CHECK(shadow_json_rules_time(r, "/near", SHADOW_TIME_INSTANT, 1000) == 0);
  CHECK(shadow_json_rules_time(r, "/ms", SHADOW_TIME_MS, 0) == 0);
  /* Epoch seconds, milliseconds and RFC 3339 in several zones. */
  EXPECT("{\"t\":1700000000}", "{\"t\":\"2023-11-14T22:13:20Z\"}", r, "");
  EXPECT("{\"t\":1700000000123}", "{\"t\":\"2023-11-14T22:13:20.123Z\"}", r,
         "");
  EXPECT("{\"t\":\"2023-11-14T23:13:20+01:00\"}",
         "{\"t\":\"2023-11-14t17:13:20-0500\"}", r, "");
  EXPECT("{\"t\":\"2023-11-14 22:13:20.000000z\"}", "{\"t\":1700000000.0}", r,
         "");
  EXPECT("{\"t\":\"1700000000\"}", "{\"t\":\"2023-11-14T22:13:20Z\"}", r, "");
  /* A leap second reads as the next minute's first. */
  EXPECT("{\"t\":\"2016-12-31T23:59:60Z\"}", "{\"t\":\"2017-01-01T00:00:00Z\"}",
         r, "");
  /* Off by one second with no tolerance, and not a time at all. */
  EXPECT("{\"t\":1700000001}", "{\"t\":\"2023-11-14T22:13:20Z\"}", r,
         "{\"op\":\"replace\",\"path\":\"/t\",\"primary\":1700000001,"
         "\"candidate\":\"2023-11-14T22:13:20Z\"}");
  EXPECT("{\"t\":\"2023-11-14T22:13:20\"}", "{\"t\":1700000000}", r,
         "{\"op\":\"replace\",\"path\":\"/t\",\"primary\":"
         "\"2023-11-14T22:13:20\",\"candidate\":1700000000}");
  EXPLAIN("{\"t\":\"soon\"}", "{\"t\":1700000000}", r,
          "{\"rule\":\"time:/t\",\"why\":\"the primary is not a time\"}");
  /* Within the tolerance, and past it. */
  EXPECT("{\"near\":1700000000}", "{\"near\":\"2023-11-14T22:13:20.999Z\"}", r,
         "");
  HITS("{\"near\":1700000000}", "{\"near\":\"2023-11-14T22:13:20.999Z\"}", r,
       "time:/near");
  EXPECT("{\"near\":1700000000}", "{\"near\":\"2023-11-14T22:13:21.5Z\"}", r,
         "{\"op\":\"replace\",\"path\":\"/near\",\"primary\":1700000000,"
         "\"candidate\":\"2023-11-14T22:13:21.5Z\"}");
  EXPLAIN("{\"near\":1700000000}", "{\"near\":\"2023-11-14T22:13:21.5Z\"}", r,
          "\"why\":\"1500 ms apart, more than 1000 ms\"");
  /* A forced unit: 1700000000 ms is in 1970. */
  EXPECT("{\"ms\":1700000000}", "{\"ms\":\"1970-01-20T16:13:20Z\"}", r, "");
  shadow_json_rules_free(r);

  int64_t us = 0;
  CHECK(shadow_rules_rfc3339("1970-01-01T00:00:00Z", 20, &us) && us == 0);
  CHECK(shadow_rules_rfc3339("1969-12-31T23:59:59.5Z", 22, &us) &&
        us == -500000);
  CHECK(shadow_rules_rfc3339("2000-02-29T00:00:00Z", 20, &us) &&
        us == 951782400LL * 1000000);
  CHECK(!shadow_rules_rfc3339("2001-02-29T00:00:00Z", 20, &us));
  CHECK(!shadow_rules_rfc3339("2001-01-01T24:00:00Z", 20, &us));
  CHECK(!shadow_rules_rfc3339("2001-01-01T00:00:00+24:00", 25, &us));
}

static void test_explain_and_hits(void) {
  shadow_json_rules_t *r = rules_new();
  CHECK(shadow_json_rules_ignore(r, "/meta") == 0);
  CHECK(shadow_json_rules_tolerance(r, "/price", 0.01) == 0);
  CHECK(shadow_json_rules_array(r, "/tags", SHADOW_ARRAY_SET, NULL) == 0);
  CHECK(shadow_json_rules_mask(r, "/id", SHADOW_MASK_UUID, NULL, NULL) == 0);
  HITS("{\"meta\":1,\"price\":1.001,\"tags\":[1,2]}",
       "{\"meta\":2,\"price\":1,\"tags\":[2,1]}", r,
       "ignore:/meta tolerance:/price arrays:/tags");
  /* Equal values at a rule's path: nothing to decide. */
  HITS("{\"meta\":1,\"price\":1}", "{\"meta\":1,\"price\":1.0}", r, "");
  EXPLAIN("{\"tags\":[1,2]}", "{\"tags\":[2,1]}", r,
          "{\"kind\":\"absorbed\",\"path\":\"/tags\",\"rule\":\"arrays:/tags\","
          "\"why\":\"the same elements as a set\"}");
  EXPLAIN("{\"x\":1}", "{\"x\":2}", r,
          "{\"kind\":\"reported\",\"op\":\"replace\",\"path\":\"/x\","
          "\"primary\":1,\"candidate\":2,\"tried\":[]}");
  EXPLAIN("{\"id\":\"a\"}", "{}", r,
          "{\"kind\":\"reported\",\"op\":\"remove\",\"path\":\"/id\","
          "\"primary\":\"a\",\"tried\":[{\"rule\":\"mask:/id\",\"why\":\"the "
          "candidate has no value here\"}]}");
  /* Inside an element found equal by a dry compare (the aligned array's
   * common prefix): still counted and explained. */
  shadow_json_rules_t *q = rules_new();
  CHECK(shadow_json_rules_coerce(q, "/a/*/n", SHADOW_COERCE_NUMBER) == 0);
  HITS("{\"a\":[{\"n\":\"1\"},{\"n\":2}]}", "{\"a\":[{\"n\":1},{\"n\":3}]}", q,
       "coerce:/a/*/n");
  EXPLAIN("{\"a\":[{\"n\":\"1\"},{\"n\":2}]}", "{\"a\":[{\"n\":1},{\"n\":3}]}",
          q, "{\"kind\":\"absorbed\",\"path\":\"/a/0/n\"");
  /* A pair a dry compare found different does not count. */
  HITS("{\"a\":[{\"n\":\"1\",\"x\":1}]}", "{\"a\":[{\"n\":\"2\",\"x\":2}]}", q,
       "");
  size_t len = 0, n = 0;
  const char *names = shadow_json_rules_names(r, &len, &n);
  CHECK(n == 4);
  CHECK(len == strlen("ignore:/meta") + strlen("tolerance:/price") +
                   strlen("arrays:/tags") + strlen("mask:/id") + 4);
  CHECK(strcmp(names, "ignore:/meta") == 0);
  CHECK(strcmp(shadow_json_rules_desc(r, 3),
               "values that are both uuid are equal") == 0);
  CHECK(shadow_json_rules_name(r, 4) == NULL);
  shadow_json_rules_free(q);
  shadow_json_rules_free(r);
}

static void test_pattern(void) {
  struct {
    const char *p, *s;
    int want;
  } cases[] = {
      {"%w+", "abc123", 1},  {"%w+", "abc-123", 0},
      {"%w+", "", 0},        {"%d%d%-%d", "12-3", 1},
      {"[a-f]+", "cafe", 1}, {"[^a-f]+", "xyz", 1},
      {"[^a-f]+", "xaz", 0}, {"a.-b", "axxbyyb", 1},
      {"a.-b", "axxbyy", 0}, {"^ab$", "ab", 1},
      {"ab?c", "ac", 1},     {"ab?c", "abc", 1},
      {"ab?c", "abbc", 0},   {"(%a+)-(%d+)", "id-42", 1},
      {"[%d.]+", "1.5", 1},  {"%.", ".", 1},
      {"%.", "x", 0},        {"[]]", "]", 1},
      {"%u%l*", "Hello", 1}, {"%S+", "a b", 0},
      {"x*", "", 1},         {"%x+", "DEADbeef", 1},
      {"a$b", "a$b", 1},     {"[%w_]+", "snake_case", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int got = shadow_pattern_match(cases[i].p, strlen(cases[i].p), cases[i].s,
                                   strlen(cases[i].s));
    if (got != cases[i].want) {
      fprintf(stderr, "pattern %s on %s: got %d\n", cases[i].p, cases[i].s,
              got);
      check_failed++;
    } else {
      check_passed++;
    }
  }
  const char *why = NULL;
  CHECK(shadow_pattern_check("[a-", 3, &why) == -EINVAL && strstr(why, "]"));
  CHECK(shadow_pattern_check("a%", 2, &why) == -EINVAL);
  CHECK(shadow_pattern_check("%b()", 4, &why) == -EINVAL);
  CHECK(shadow_pattern_check("(a", 2, &why) == -EINVAL);
  CHECK(shadow_pattern_check("a)", 2, &why) == -EINVAL);
  CHECK(shadow_pattern_check("%w+%.%d*", 8, &why) == 0);
  /* A pathological pattern on a long value gives up, quickly. */
  char s[4096];
  memset(s, 'a', sizeof s);
  CHECK(shadow_pattern_match("a*a*a*a*a*b", 11, s, sizeof s) == 0);
}

/* The rules' JSON form: what a config writes, and the words a bad one
 * gets. */
static void expect_parse(int line, const char *json, const char *want_err) {
  shadow_diff_opts_t *o = shadow_diff_opts_new();
  char err[256] = "";
  int rc = shadow_diff_opts_parse(o, json, strlen(json), err, sizeof err);
  int ok = want_err ? rc == -EINVAL && strcmp(err, want_err) == 0 : rc == 0;
  if (!ok) {
    fprintf(stderr, "line %d: parse %s\n  rc %d err '%s'\n  want '%s'\n", line,
            json, rc, err, want_err ? want_err : "(ok)");
    check_failed++;
  } else {
    check_passed++;
  }
  shadow_diff_opts_free(o);
}

#define PARSE(json, err) expect_parse(__LINE__, json, err)

static void test_parse(void) {
  PARSE(
      "{\"rename\":{\"/user/email\":\"/user/email_address\"},"
      "\"coerce\":{\"/items/*/qty\":\"number\",\"/flags/*\":\"boolean\"},"
      "\"mask\":{\"/id\":\"uuid\",\"/trace\":\"hex\",\"/token\":\"%w+\"},"
      "\"time\":{\"/created_at\":{\"unit\":\"instant\",\"tolerance_ms\":1000},"
      "\"/t\":\"ms\"}}",
      NULL);
  PARSE("{\"rename\":{},\"coerce\":{},\"mask\":{},\"time\":{}}", NULL);
  PARSE("{\"coerce\":{\"/qty\":\"int\"}}",
        "coerce[\"/qty\"] must be \"number\" or \"boolean\"");
  PARSE("{\"coerce\":{\"qty\":\"number\"}}",
        "coerce[\"qty\"]: \"qty\" is not a JSON Pointer (\"/a/b\", \"*\" for "
        "any key or index)");
  PARSE("{\"mask\":{\"/id\":\"uuid4\"}}",
        "mask[\"/id\"]: unknown class \"uuid4\" (uuid, hex, iso8601, epoch, or "
        "a Lua pattern such as \"%w+\")");
  PARSE("{\"mask\":{\"/id\":\"[a-\"}}",
        "mask[\"/id\"] = \"[a-\": malformed pattern (missing ']')");
  PARSE("{\"mask\":{\"/id\":7}}",
        "mask[\"/id\"] must be \"uuid\", \"hex\", \"iso8601\", \"epoch\" or a "
        "Lua pattern");
  PARSE("{\"time\":{\"/t\":{\"unit\":\"days\"}}}",
        "time[\"/t\"] must be { unit = \"instant\" | \"s\" | \"ms\", "
        "tolerance_ms = n } or a unit");
  PARSE("{\"time\":{\"/t\":{\"tolerance_ms\":-1}}}",
        "time[\"/t\"].tolerance_ms must be a number of milliseconds >= 0");
  PARSE("{\"time\":{\"/t\":{\"tz\":1}}}", "unknown field time[\"/t\"].tz");
  PARSE("{\"rename\":{\"/a\":\"/a/b\"}}",
        "rename[\"/a\"] = \"/a/b\": one of its paths lies inside the other");
  PARSE("{\"rename\":{\"/a\":5}}",
        "rename[\"/a\"] must be the candidate's JSON Pointer for it, a string");
  PARSE("{\"rename\":{\"/a/*\":\"/b\"}}",
        "rename[\"/a/*\"] = \"/b\": both paths must hold as many * as each "
        "other, which bind in order");
  PARSE("{\"renames\":{}}", "unknown field renames");
  /* Rules come out in a fixed order whatever the JSON's order. */
  shadow_diff_opts_t *a = shadow_diff_opts_new(), *b = shadow_diff_opts_new();
  const char *ja = "{\"mask\":{\"/b\":\"hex\",\"/a\":\"uuid\"},\"ignore\":{"
                   "\"json\":[\"/z\"]}}";
  const char *jb = "{\"ignore\":{\"json\":[\"/z\"]},\"mask\":{\"/a\":\"uuid\","
                   "\"/b\":\"hex\"}}";
  CHECK(shadow_diff_opts_parse(a, ja, strlen(ja), NULL, 0) == 0);
  CHECK(shadow_diff_opts_parse(b, jb, strlen(jb), NULL, 0) == 0);
  for (size_t bit = 0; bit < 3; bit++)
    CHECK(strcmp(shadow_diff_opts_rule_name(a, bit),
                 shadow_diff_opts_rule_name(b, bit)) == 0);
  CHECK(strcmp(shadow_diff_opts_rule_name(a, 1), "mask:/a") == 0);
  shadow_diff_opts_free(a);
  shadow_diff_opts_free(b);
}

/* Records: the hit bits reach the result, and a rename sees past the
 * record diff's byte-identical shortcut. */
static void test_records(void) {
  shadow_diff_opts_t *o = shadow_diff_opts_new();
  const char *j = "{\"rename\":{\"/email\":\"/email_address\"},"
                  "\"coerce\":{\"/n\":\"number\"}}";
  CHECK(shadow_diff_opts_parse(o, j, strlen(j), NULL, 0) == 0);
  shadow_record_t p, c;
  shadow_record_init(&p);
  shadow_record_init(&c);
  p.status = c.status = 200;
  shadow_headers_add(&p.headers, "content-type", 12, "application/json", 16);
  shadow_headers_add(&c.headers, "content-type", 12, "application/json", 16);
  shadow_buf_puts(&p.body, "{\"email\":\"a\",\"n\":\"1\"}");
  shadow_buf_puts(&c.body, "{\"email_address\":\"a\",\"n\":1}");
  shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
  CHECK(shadow_diff_records(o, &p, &c, &res) == 0);
  CHECK(res.hits[0] == 1 && res.hits[1] == 1);
  CHECK(strcmp(shadow_diff_opts_rule_name(o, 0), "coerce:/n") == 0);
  CHECK(strcmp(shadow_diff_opts_rule_name(o, 64), "rename:/email") == 0);
  shadow_buf_reset(&c.body);
  shadow_buf_append(&c.body, p.body.data, p.body.len);
  CHECK(shadow_diff_records(o, &p, &c, &res) == SHADOW_PART_BODY);
  shadow_buf_t ex = SHADOW_BUF_INIT;
  CHECK(shadow_diff_records_explain(o, &p, &c, &res, &ex) == SHADOW_PART_BODY);
  CHECK(ex.data && strstr(ex.data, "\"kind\":\"renamed\""));
  shadow_buf_free(&ex);
  shadow_diff_result_free(&res);
  shadow_record_release(&p);
  shadow_record_release(&c);
  shadow_diff_opts_free(o);
}

int main(void) {
  test_rename();
  test_rename_wildcards();
  test_rename_refused();
  test_rename_shared_spans();
  test_coerce();
  test_segment_tables();
  test_mask();
  test_time();
  test_explain_and_hits();
  test_pattern();
  test_parse();
  test_records();
  shadow_json_arena_cache_clear();
  return check_report("test_json_rules");
}
