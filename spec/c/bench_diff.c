/* Benchmark (not a test): diff throughput of JSON documents of about 1 KiB,
 * 64 KiB and 1 MiB with one changed field, beside the parse-only
 * throughput of the same documents in the same run. MB/s counts the bytes
 * of both sides; "ratio" is the diff's time over parsing both sides. The
 * last rows re-indent the candidate, so no subtree is byte-identical and
 * the diff walks every node: the worst case for the same change. */
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

typedef struct {
  double parse_mbs, diff_mbs, ratio;
  size_t nops;
} row_t;

/* Seconds per call of one parse of each side (diff == 0) or of one diff. */
static double time_once(const shadow_buf_t *a, const shadow_buf_t *c, int diff,
                        shadow_buf_t *ops, size_t *nops) {
  shadow_json_diff_out_t out = {ops, NULL, 0, 256, 0, 0};
  long n = 0;
  double t0 = now(), t;
  do {
    for (int k = 0; k < 8; k++) {
      int rc;
      if (diff) {
        shadow_buf_reset(ops);
        rc = shadow_json_diff(a->data, a->len, c->data, c->len, NULL, &out,
                              NULL, 0);
      } else {
        rc = shadow_json_validate(a->data, a->len) ||
             shadow_json_validate(c->data, c->len);
      }
      if (rc) {
        fprintf(stderr, "bench document does not parse\n");
        exit(2);
      }
    }
    n += 8;
    t = now() - t0;
  } while (t < 0.1);
  if (diff) *nops = out.nops;
  return t / (double)n;
}

/* Parse and diff take turns, and each keeps its best of seven rounds, so a
 * busy machine skews both alike rather than one of them. */
static row_t measure(const shadow_buf_t *a, const shadow_buf_t *c) {
  row_t r = {0, 0, 0, 0};
  shadow_buf_t ops = SHADOW_BUF_INIT;
  double parse_each = 1e9, diff_each = 1e9;
  for (int round = 0; round < 7; round++) {
    double tp = time_once(a, c, 0, &ops, &r.nops);
    double td = time_once(a, c, 1, &ops, &r.nops);
    if (tp < parse_each) parse_each = tp;
    if (td < diff_each) diff_each = td;
  }
  shadow_buf_free(&ops);
  double bytes = (double)(a->len + c->len);
  r.parse_mbs = bytes / parse_each / 1e6;
  r.diff_mbs = bytes / diff_each / 1e6;
  r.ratio = diff_each / parse_each;
  return r;
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
  printf("| document | primary bytes | parse both MB/s | diff MB/s | "
         "diff / parse both | ops |\n");
  printf("|---|---|---|---|---|---|\n");
  int ok = 1;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    shadow_buf_t a = SHADOW_BUF_INIT, c = SHADOW_BUF_INIT;
    size_t items = items_for(cases[i].size);
    make_doc(&a, items, 0, 0);
    make_doc(&c, items, 1, cases[i].pretty);
    row_t r = measure(&a, &c);
    printf("| %s | %zu | %.0f | %.0f | %.2fx | %zu |\n", cases[i].name, a.len,
           r.parse_mbs, r.diff_mbs, r.ratio, r.nops);
    if (r.nops != 1) ok = 0;
    shadow_buf_free(&a);
    shadow_buf_free(&c);
  }
  if (!ok) {
    fprintf(stderr, "expected exactly one op per document pair\n");
    return 1;
  }
  return 0;
}
