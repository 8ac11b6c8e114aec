/* Benchmark (not a test): JSON diff throughput on API-like documents of
 * about 1 KiB, 64 KiB and 1 MiB with one changed field, beside memcmp of
 * the same bytes and parsing alone, in one run. Every figure is GB/s per
 * side: the bytes of one document over the time of the operation (memcmp
 * of the primary against an equal copy, one parse of the primary, one
 * diff of the pair). The re-indented rows give the candidate other
 * whitespace, so nothing is byte-identical and the diff parses and walks
 * every node: the worst case for the same change.
 *
 * A second table prices the migration rules on a 64 KiB pair where v2
 * renamed a member, sends numbers and booleans as strings, new uuids and
 * RFC 3339 times in every element: the diff under rename, coerce, mask
 * and time rules (nothing left to report) beside the diff without rules
 * of v1 against itself re-indented (the same walk over every node, with
 * nothing to report either), and beside v1 against v2 without rules
 * (every change reported). `bench_diff --docs DIR` writes that pair as
 * DIR/v1.json and DIR/v2.json for scripts/bench-diff's Lua rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "json.h"
#include "json_diff.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An API-like response: metadata and a list of user records; with changed,
 * the middle record's city differs. */
static void make_doc(shadow_buf_t *b, size_t items, int changed, int pretty) {
  const char *nl = pretty ? "\n    " : "";
  const char *sp = pretty ? " " : "";
  shadow_buf_printf(b,
                    "{%s\"meta\":{\"page\":1,\"total\":12345,"
                    "\"generated_at\":\"2026-11-26T18:00:00Z\"},%s"
                    "\"items\":[",
                    nl, nl);
  for (size_t i = 0; i < items; i++) {
    shadow_buf_printf(
        b,
        "%s%s{\"id\":%zu,%s\"name\":\"user %zu\",%s\"email\":"
        "\"user%zu@example.com\",%s\"score\":%zu.%02zu,%s\"active\":%s,%s"
        "\"tags\":[\"alpha\",%s\"beta\",%s\"caf\\u00e9\"],%s\"address\":"
        "{\"city\":\"%s\",%s\"zip\":\"%05zu\"}}",
        i ? "," : "", nl, i, sp, i, sp, i, sp, i % 100, i % 97, sp,
        i % 3 ? "true" : "false", sp, sp, sp, sp,
        (changed && i == items / 2) ? "Paris" : "Lyon", sp, i);
  }
  shadow_buf_printf(b, "]%s}", nl);
}

/* How many records make a compact document of about target bytes. */
static size_t items_for(size_t target) {
  shadow_buf_t one = SHADOW_BUF_INIT, two = SHADOW_BUF_INIT;
  make_doc(&one, 1, 0, 0);
  make_doc(&two, 2, 0, 0);
  size_t per = two.len - one.len, base = one.len - per;
  shadow_buf_free(&one);
  shadow_buf_free(&two);
  return target > base ? (target - base + per / 2) / per : 1;
}

/* A v1 (version 1) or v2 element list for the migration rows: v2 renamed
 * email, quotes qty and active, and has other uuids and RFC 3339 times. */
static void make_migration(shadow_buf_t *b, size_t items, int version,
                           int pretty) {
  const char *nl = pretty ? "\n  " : "";
  const char *sp = pretty ? " " : "";
  shadow_buf_printf(b, "{%s\"meta\":{\"page\":1,\"total\":%zu},%s\"items\":[",
                    nl, items, nl);
  for (size_t i = 0; i < items; i++) {
    long t = 1700000000L + (long)i * 61;
    char stamp[64];
    long days = t / 86400, sec = t % 86400;
    /* 2023-11-14 is day 19675; the times stay within a few days of it. */
    snprintf(stamp, sizeof stamp, "2023-11-%02ldT%02ld:%02ld:%02ldZ",
             14 + (days - 19675), sec / 3600, sec / 60 % 60, sec % 60);
    shadow_buf_printf(b, "%s%s{\"id\":\"%08zx-%04zx-4%03zx-8%03zx-%012zx\",%s",
                      i ? "," : "", nl, i * 2654435761u % 0xffffffffu,
                      (i * 7 + version) % 0xffff, i % 0xfff,
                      (i + version) % 0xfff, i * 40503u + version * 977u, sp);
    if (version == 1)
      shadow_buf_printf(b,
                        "\"email\":\"user%zu@example.com\",%s\"qty\":%zu,%s"
                        "\"active\":%s,%s\"created_at\":%ld,%s",
                        i, sp, i % 50, sp, i % 3 ? "true" : "false", sp, t, sp);
    else
      shadow_buf_printf(
          b,
          "\"email_address\":\"user%zu@example.com\",%s\"qty\":"
          "\"%zu\",%s\"active\":\"%s\",%s\"created_at\":\"%s\",%s",
          i, sp, i % 50, sp, i % 3 ? "true" : "false", sp, stamp, sp);
    shadow_buf_printf(
        b,
        "\"name\":\"user %zu\",%s\"tags\":[\"alpha\",%s\"beta\"],%s"
        "\"address\":{\"city\":\"Lyon\",%s\"zip\":\"%05zu\"}}",
        i, sp, sp, sp, sp, i);
  }
  shadow_buf_printf(b, "]%s}", nl);
}

static shadow_json_rules_t *migration_rules(void) {
  shadow_json_rules_t *r = shadow_json_rules_new();
  if (!r ||
      shadow_json_rules_rename(r, "/items/*/email", "/items/*/email_address",
                               NULL) ||
      shadow_json_rules_coerce(r, "/items/*/qty", SHADOW_COERCE_NUMBER) ||
      shadow_json_rules_coerce(r, "/items/*/active", SHADOW_COERCE_BOOLEAN) ||
      shadow_json_rules_mask(r, "/items/*/id", SHADOW_MASK_UUID, NULL, NULL) ||
      shadow_json_rules_time(r, "/items/*/created_at", SHADOW_TIME_INSTANT,
                             0)) {
    fprintf(stderr, "bench rules refused\n");
    exit(2);
  }
  return r;
}

enum { OP_MEMCMP, OP_PARSE, OP_DIFF, NOPS };

typedef struct {
  const shadow_buf_t *a, *c, *copy;
  shadow_buf_t ops;
  size_t nops;
  volatile int sink;
  const shadow_json_rules_t *rules;
} bench_t;

static void once(bench_t *b, int op) {
  int rc = 0;
  if (op == OP_MEMCMP) {
    b->sink += memcmp(b->a->data, b->copy->data, b->a->len);
  } else if (op == OP_PARSE) {
    rc = shadow_json_validate(b->a->data, b->a->len);
  } else {
    shadow_json_diff_out_t out = {&b->ops, NULL,   0,    256, 0,
                                  0,       {0, 0}, NULL, NULL};
    shadow_buf_reset(&b->ops);
    rc = shadow_json_diff(b->a->data, b->a->len, b->c->data, b->c->len,
                          b->rules, &out, NULL, 0);
    b->nops = out.nops;
  }
  if (rc) {
    fprintf(stderr, "bench document does not parse\n");
    exit(2);
  }
}

/* Seconds per call, over at least 50 ms of calls. */
static double time_op(bench_t *b, int op) {
  long n = 0;
  double t0 = now(), t;
  do {
    for (int k = 0; k < 8; k++)
      once(b, op);
    n += 8;
    t = now() - t0;
  } while (t < 0.05);
  return t / (double)n;
}

static size_t migration_items_for(size_t target) {
  shadow_buf_t one = SHADOW_BUF_INIT, two = SHADOW_BUF_INIT;
  make_migration(&one, 1, 1, 0);
  make_migration(&two, 2, 1, 0);
  size_t per = two.len - one.len, base = one.len - per;
  shadow_buf_free(&one);
  shadow_buf_free(&two);
  return target > base ? (target - base + per / 2) / per : 1;
}

static int write_file(const char *path, const shadow_buf_t *b) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t n = fwrite(b->data, 1, b->len, f);
  return fclose(f) == 0 && n == b->len ? 0 : -1;
}

/* The migration table (see the top of this file). */
static int migration(const char *docs) {
  size_t items = migration_items_for(64 * 1024);
  shadow_buf_t v1 = SHADOW_BUF_INIT, v1i = SHADOW_BUF_INIT,
               v2 = SHADOW_BUF_INIT, v2i = SHADOW_BUF_INIT;
  make_migration(&v1, items, 1, 0);
  make_migration(&v1i, items, 1, 1);
  make_migration(&v2, items, 2, 0);
  make_migration(&v2i, items, 2, 1);
  if (docs) {
    char p[4096];
    snprintf(p, sizeof p, "%s/v1.json", docs);
    int rc = write_file(p, &v1);
    snprintf(p, sizeof p, "%s/v2.json", docs);
    if (rc || write_file(p, &v2)) {
      fprintf(stderr, "cannot write the documents to %s\n", docs);
      return 1;
    }
  }
  shadow_json_rules_t *rules = migration_rules();
  /* The rules row parses one v1 and one v2 and walks every node; so do
   * the first two rows together, without rules and with nothing to
   * report: their mean is the diff without rules of these texts. */
  struct {
    const char *name;
    const shadow_buf_t *a, *c;
    const shadow_json_rules_t *rules;
  } rows[] = {
      {"v1 vs v1 re-indented, no rules", &v1, &v1i, NULL},
      {"v2 vs v2 re-indented, no rules", &v2, &v2i, NULL},
      {"v1 vs v2, rename + coerce + mask + time rules", &v1, &v2, rules},
      {"v1 vs v2, no rules (every change reported)", &v1, &v2, NULL},
  };
  enum { NROWS = sizeof rows / sizeof *rows };
  bench_t b[NROWS];
  double best[NROWS];
  for (int i = 0; i < NROWS; i++) {
    memset(&b[i], 0, sizeof b[i]);
    b[i].a = rows[i].a;
    b[i].c = rows[i].c;
    b[i].copy = &v1;
    b[i].rules = rows[i].rules;
    best[i] = 1e9;
  }
  for (int round = 0; round < 9; round++)
    for (int i = 0; i < NROWS; i++) {
      double t = time_op(&b[i], OP_DIFF);
      if (t < best[i]) best[i] = t;
    }
  double walk = (best[0] + best[1]) / 2;
  printf("\n| migration pair, %zu and %zu bytes (%zu elements) | us per diff "
         "| vs no rules | ops |\n|---|---:|---:|---:|\n",
         v1.len, v2.len, items);
  for (int i = 0; i < NROWS; i++)
    printf("| %s | %.1f | %.2fx | %zu |\n", rows[i].name, best[i] * 1e6,
           best[i] / walk, b[i].nops);
  int ok =
      b[0].nops == 0 && b[1].nops == 0 && b[2].nops == 0 && b[3].nops >= items;
  if (!ok)
    fprintf(stderr, "migration rows: the walks and the rules should report "
                    "nothing, and no rules every change\n");
  printf("(the rules cost %.0f%% over the diff without rules of the same "
         "texts, the mean of the first two rows; target: at most 20%%)\n",
         (best[2] / walk - 1) * 100);
  /* What scripts/bench-diff hands to the Lua rows. */
  printf("(the rules add %.1f us per diff)\n", (best[2] - walk) * 1e6);
  for (int i = 0; i < NROWS; i++)
    shadow_buf_free(&b[i].ops);
  shadow_json_rules_free(rules);
  shadow_buf_free(&v1);
  shadow_buf_free(&v1i);
  shadow_buf_free(&v2);
  shadow_buf_free(&v2i);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *docs =
      argc == 3 && strcmp(argv[1], "--docs") == 0 ? argv[2] : NULL;
  static const struct {
    const char *name;
    size_t size;
    int pretty;
  } cases[] = {
      {"1 KiB", 1024, 0},
      {"64 KiB", 64 * 1024, 0},
      {"1 MiB", 1024 * 1024, 0},
      {"64 KiB re-indented", 64 * 1024, 1},
      {"1 MiB re-indented", 1024 * 1024, 1},
  };
  printf("| document | bytes per side | memcmp GB/s | parse GB/s | "
         "diff GB/s | diff / parse | ops |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|\n");
  int ok = 1;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    shadow_buf_t a = SHADOW_BUF_INIT, c = SHADOW_BUF_INIT,
                 copy = SHADOW_BUF_INIT;
    size_t items = items_for(cases[i].size);
    make_doc(&a, items, 0, 0);
    make_doc(&copy, items, 0, 0);
    make_doc(&c, items, 1, cases[i].pretty);
    bench_t b = {&a, &c, &copy, SHADOW_BUF_INIT, 0, 0, NULL};
    /* The three take turns, each keeping its best of nine rounds, so a
     * busy machine skews them alike rather than one of them. */
    double best[NOPS] = {1e9, 1e9, 1e9};
    for (int round = 0; round < 9; round++)
      for (int op = 0; op < NOPS; op++) {
        double t = time_op(&b, op);
        if (t < best[op]) best[op] = t;
      }
    double bytes = (double)a.len;
    printf("| %s | %zu | %.3g | %.3g | %.3g | %.2fx | %zu |\n", cases[i].name,
           a.len, bytes / best[OP_MEMCMP] / 1e9, bytes / best[OP_PARSE] / 1e9,
           bytes / best[OP_DIFF] / 1e9, best[OP_DIFF] / best[OP_PARSE], b.nops);
    if (b.nops != 1) ok = 0;
    shadow_buf_free(&b.ops);
    shadow_buf_free(&a);
    shadow_buf_free(&c);
    shadow_buf_free(&copy);
  }
  if (!ok) {
    fprintf(stderr, "expected exactly one op per document pair\n");
    return 1;
  }
  return migration(docs);
}
