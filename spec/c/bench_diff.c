/* Benchmark (not a test): JSON diff throughput on API-like documents of
 * about 1 KiB, 64 KiB and 1 MiB with one changed field, beside memcmp of
 * the same bytes and parsing alone, in one run. Every figure is GB/s per
 * side: the bytes of one document over the time of the operation (memcmp
 * of the primary against an equal copy, one parse of the primary, one
 * diff of the pair). The re-indented rows give the candidate other
 * whitespace, so nothing is byte-identical and the diff parses and walks
 * every node: the worst case for the same change. */
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

enum { OP_MEMCMP, OP_PARSE, OP_DIFF, NOPS };

typedef struct {
  const shadow_buf_t *a, *c, *copy;
  shadow_buf_t ops;
  size_t nops;
  volatile int sink;
} bench_t;

static void once(bench_t *b, int op) {
  int rc = 0;
  if (op == OP_MEMCMP) {
    b->sink += memcmp(b->a->data, b->copy->data, b->a->len);
  } else if (op == OP_PARSE) {
    rc = shadow_json_validate(b->a->data, b->a->len);
  } else {
    shadow_json_diff_out_t out = {&b->ops, NULL, 0, 256, 0, 0, {0, 0}, NULL};
    shadow_buf_reset(&b->ops);
    rc = shadow_json_diff(b->a->data, b->a->len, b->c->data, b->c->len, NULL,
                          &out, NULL, 0);
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

int main(void) {
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
    bench_t b = {&a, &c, &copy, SHADOW_BUF_INIT, 0, 0};
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
  return 0;
}
