/* Noise: the per-request mask and the significance rule. The interval
 * figures are the published ones (Newcombe 1998, method 10: 56/70 against
 * 48/80 at 95% is 0.0524 to 0.3339; Wilson's 81 of 263 is 0.2553 to
 * 0.3662); the classifications include Diffy's two failure shapes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "diff.h"
#include "field.h"
#include "noise.h"
#include "record.h"

static int near(double a, double b) {
  return fabs(a - b) < 5e-5;
}

static void record(shadow_record_t *r, int status, const char *hdr,
                   const char *body) {
  shadow_record_init(r);
  r->status = status;
  shadow_headers_add(&r->headers, "content-type", 12, "application/json", 16);
  if (hdr)
    shadow_headers_add(&r->headers, "x-request-id", 12, hdr, strlen(hdr));
  shadow_buf_append(&r->body, body, strlen(body));
}

static int has(const shadow_diff_result_t *r, const char *field) {
  for (size_t i = 0; i < r->fields.len;) {
    const char *f = r->fields.data + i;
    if (strcmp(f, field) == 0) return 1;
    i += strlen(f) + 1;
  }
  return 0;
}

static double learned(void *ud, const char *field, size_t len) {
  (void)ud;
  return len == 7 && memcmp(field, "body:/f", 7) == 0 ? 0.5 : 0;
}

static void test_mask(void) {
  /* The secondary differs from the primary on the timestamp, the request
   * id header and one item's etag; the candidate on those and on a real
   * field (/price) and a header noise never touches. */
  shadow_record_t p, s, c;
  record(&p, 200, "a1",
         "{\"ts\":1,\"price\":10,\"items\":[{\"etag\":\"x\",\"n\":1},"
         "{\"etag\":\"y\",\"n\":2}]}");
  record(&s, 200, "b2",
         "{\"ts\":2,\"price\":10,\"items\":[{\"etag\":\"x\",\"n\":1},"
         "{\"etag\":\"z\",\"n\":2}]}");
  record(&c, 200, "c3",
         "{\"ts\":3,\"price\":11,\"items\":[{\"etag\":\"x\",\"n\":1},"
         "{\"etag\":\"w\",\"n\":2}]}");
  shadow_headers_add(&c.headers, "x-new", 5, "1", 1);
  shadow_diff_result_t rc = SHADOW_DIFF_RESULT_INIT;
  shadow_diff_result_t rs = SHADOW_DIFF_RESULT_INIT;
  CHECK(shadow_diff_records(NULL, &p, &c, &rc) ==
        (SHADOW_PART_HEADERS | SHADOW_PART_BODY));
  CHECK(shadow_diff_records(NULL, &p, &s, &rs) ==
        (SHADOW_PART_HEADERS | SHADOW_PART_BODY));
  CHECK(has(&rc, "body:/ts") && has(&rc, "body:/price"));
  CHECK(shadow_noise_mask(&rc, &rs, NULL) == 0);
  CHECK(rc.parts == (SHADOW_PART_HEADERS | SHADOW_PART_BODY));
  CHECK(has(&rc, "body:/price") && has(&rc, "header:x-new"));
  CHECK(!has(&rc, "body:/ts") && !has(&rc, "body:/items/1/etag"));
  CHECK(!has(&rc, "header:x-request-id"));
  CHECK(rc.nfields == 2);
  CHECK(strstr(rc.json.data, "\"summary\":\"1 field differs\"") != NULL);
  CHECK(strstr(rc.json.data, "\"/ts\"") == NULL);
  CHECK(strstr(rc.json.data, "\"path\":\"/price\"") != NULL);

  /* Everything the candidate changed is noise: no divergence left. */
  shadow_record_t c2;
  record(&c2, 200, "d4",
         "{\"ts\":3,\"price\":10,\"items\":[{\"etag\":\"x\",\"n\":1},"
         "{\"etag\":\"v\",\"n\":2}]}");
  CHECK(shadow_diff_records(NULL, &p, &c2, &rc) != 0);
  CHECK(shadow_noise_mask(&rc, &rs, NULL) == 0);
  CHECK(rc.parts == 0 && rc.nfields == 0);
  CHECK(strstr(rc.json.data, "\"body\":{\"differs\":false") != NULL);
  CHECK(strstr(rc.json.data, "\"diffs\":[]") != NULL);

  /* Noise on /items/1 does not cover /items/10, nor a parent of it. */
  shadow_record_t p3, s3, c3;
  record(&p3, 200, NULL, "{\"a\":{\"b\":1,\"bc\":1}}");
  record(&s3, 200, NULL, "{\"a\":{\"b\":2,\"bc\":1}}");
  record(&c3, 201, NULL, "{\"a\":{\"b\":3,\"bc\":2}}");
  CHECK(shadow_diff_records(NULL, &p3, &c3, &rc) > 0);
  CHECK(shadow_diff_records(NULL, &p3, &s3, &rs) > 0);
  CHECK(shadow_noise_mask(&rc, &rs, NULL) == 0);
  CHECK(has(&rc, "body:/a/bc") && !has(&rc, "body:/a/b"));
  CHECK(rc.parts == (SHADOW_PART_STATUS | SHADOW_PART_BODY));

  /* A real difference on a noisy field stays: a number moved far past the
   * secondary's jitter, and a change of another kind. */
  shadow_record_t p4, s4, c4;
  record(&p4, 200, NULL, "{\"f\":1.000001,\"s\":\"a\",\"l\":[1,2,3,4]}");
  record(&s4, 200, NULL, "{\"f\":1.000002,\"s\":\"b\",\"l\":[4,1,2,3]}");
  record(&c4, 200, NULL, "{\"f\":1.1,\"s\":7,\"l\":[2,3,4,1]}");
  CHECK(shadow_diff_records(NULL, &p4, &c4, &rc) > 0);
  CHECK(shadow_diff_records(NULL, &p4, &s4, &rs) > 0);
  CHECK(shadow_noise_mask(&rc, &rs, NULL) == 0);
  CHECK(has(&rc, "body:/f") && has(&rc, "body:/s"));
  /* ...while the order of /l, which the secondary shuffled too, is not. */
  CHECK(!has(&rc, "body:/l/0") && !has(&rc, "body:/l/3"));
  CHECK(rc.nfields == 2);
  /* A learned range wider than this request's jitter masks the float. */
  shadow_record_t c5;
  record(&c5, 200, NULL, "{\"f\":1.3,\"s\":\"c\",\"l\":[1,2,3,4]}");
  CHECK(shadow_diff_records(NULL, &p4, &c5, &rc) > 0);
  shadow_noise_envelope_t env = {learned, NULL};
  CHECK(shadow_noise_mask(&rc, &rs, &env) == 0);
  CHECK(rc.parts == 0);

  shadow_diff_result_free(&rc);
  shadow_diff_result_free(&rs);
  shadow_record_release(&p4);
  shadow_record_release(&s4);
  shadow_record_release(&c4);
  shadow_record_release(&c5);
  shadow_record_release(&p);
  shadow_record_release(&s);
  shadow_record_release(&c);
  shadow_record_release(&c2);
  shadow_record_release(&p3);
  shadow_record_release(&s3);
  shadow_record_release(&c3);
}

static void test_intervals(void) {
  double z = shadow_noise_z(0.975);
  CHECK(near(z, 1.959964));
  CHECK(near(shadow_noise_z(0.99), 2.326348));
  double lo, hi;
  shadow_noise_wilson(81, 263, z, &lo, &hi);
  CHECK(near(lo, 0.255289) && near(hi, 0.366210));
  shadow_noise_newcombe(56, 70, 48, 80, z, &lo, &hi);
  CHECK(near(lo, 0.052431) && near(hi, 0.333873));
  shadow_noise_wilson(0, 10, z, &lo, &hi);
  CHECK(lo == 0 && hi > 0.27 && hi < 0.28);
  /* Fisher's lady tasting tea: 8 cups, 4 with milk first, she names 4.
   * All 4 right: 1/70; at least 3: 17/70. */
  CHECK(fabs(shadow_noise_hypergeom_upper(4, 4, 4, 8, 1) - 1.0 / 70) < 1e-12);
  CHECK(fabs(shadow_noise_hypergeom_upper(3, 4, 4, 8, 1) - 17.0 / 70) < 1e-12);
  CHECK(shadow_noise_hypergeom_upper(0, 4, 4, 8, 1) == 1);
  CHECK(shadow_noise_hypergeom_upper(5, 4, 4, 8, 1) == 0);
  /* Large counts: 120 of 1000 marked among 20000, drawn 10000: the
   * mean is 60; 100 or more is far out (about 5.2 sd). */
  double p = shadow_noise_hypergeom_upper(100, 10000, 120, 20000, 1);
  CHECK(p > 0 && p < 1e-5);
  /* Stopping early gives a value above stop, never one below it. */
  CHECK(shadow_noise_hypergeom_upper(60, 10000, 120, 20000, 0.01) > 0.01);
}

/* Every difference of both sides weighed against the reference: beyond
 * of the candidate's r, noise_beyond of the secondary's n. */
static shadow_noise_class_t classify2(uint64_t r, uint64_t t, uint64_t n,
                                      uint64_t s, uint64_t beyond,
                                      uint64_t noise_beyond) {
  shadow_noise_counts_t c = {.compared = t,
                             .differed = r,
                             .judged = r,
                             .beyond = beyond,
                             .noise_compared = s,
                             .noise_differed = n,
                             .noise_judged = n,
                             .noise_beyond = noise_beyond};
  return shadow_noise_classify(&c, shadow_noise_z(0.99), 100, NULL);
}

static shadow_noise_class_t classify(uint64_t r, uint64_t t, uint64_t n,
                                     uint64_t s, uint64_t beyond) {
  return classify2(r, t, n, s, beyond, 0);
}

static void test_classes(void) {
  /* Diffy flags r = 1, n = 0 whenever T < 3333: one difference proves
   * nothing either way. */
  CHECK(classify(1, 1000, 0, 1000, 0) == SHADOW_NOISE_UNDECIDED);
  /* Diffy hides r = 60, n = 55 (|r-n|/(r+n) = 4.3% < 20%). At 1000
   * samples the rates are indeed alike; at 100,000 the same rates are a
   * real difference. */
  CHECK(classify(60, 1000, 55, 1000, 0) == SHADOW_NOISE_NOISE);
  CHECK(classify(6000, 100000, 5500, 100000, 0) == SHADOW_NOISE_REAL);
  /* A bug on 2% of requests of a field that never differs otherwise. */
  CHECK(classify(20, 1000, 0, 1000, 0) == SHADOW_NOISE_REAL);
  /* A timestamp: always differs on both. */
  CHECK(classify(1000, 1000, 1000, 1000, 0) == SHADOW_NOISE_NOISE);
  /* A jittered float that the candidate also moves by 10% on 10% of
   * requests: the rates are equal, the size is not. */
  CHECK(classify(1000, 1000, 1000, 1000, 100) == SHADOW_NOISE_REAL);
  /* ...but one value past the reference in 1000 is chance, and so are
   * 30 when the secondary's own moves pass it 20 times: a reference of
   * 50 samples is passed by about 1 in 51 later ones of the same noise. */
  CHECK(classify(1000, 1000, 1000, 1000, 1) == SHADOW_NOISE_NOISE);
  CHECK(classify2(1000, 1000, 1000, 1000, 30, 20) == SHADOW_NOISE_NOISE);
  /* 60 against 20 is not (Fisher's one-sided p ~ 2e-6). */
  CHECK(classify2(1000, 1000, 1000, 1000, 60, 20) == SHADOW_NOISE_REAL);
  /* Too few samples on either side. */
  CHECK(classify(50, 50, 0, 50, 0) == SHADOW_NOISE_UNDECIDED);
  CHECK(classify(500, 1000, 0, 99, 0) == SHADOW_NOISE_UNDECIDED);
  CHECK(strcmp(shadow_noise_class_name(SHADOW_NOISE_REAL), "real") == 0);
}

typedef struct seen_s {
  char fields[8][64];
  unsigned shapes[8];
  double deltas[8];
  int n;
} seen_t;

static void on_seen(void *ud, const char *field, size_t len, unsigned shape,
                    double delta) {
  seen_t *s = ud;
  if (s->n >= 8 || len >= 64) return;
  memcpy(s->fields[s->n], field, len);
  s->fields[s->n][len] = '\0';
  s->shapes[s->n] = shape;
  s->deltas[s->n++] = delta;
}

static void test_observe(void) {
  char folded[64];
  shadow_field_fold("body:/items/12/a1/7", 19, folded, sizeof(folded));
  CHECK(strcmp(folded, "body:/items/*/a1/*") == 0);

  shadow_record_t p, c;
  record(&p, 200, "a",
         "{\"f\":1.5,\"s\":\"x\",\"t\":1,\"l\":[{\"id\":1},{\"id\":2},"
         "{\"id\":3}],\"gone\":1}");
  record(&c, 500, "b",
         "{\"f\":1.25,\"s\":\"y\",\"t\":\"1\",\"l\":[{\"id\":2},{\"id\":3},"
         "{\"id\":1}],\"new\":1}");
  shadow_diff_result_t r = SHADOW_DIFF_RESULT_INIT;
  CHECK(shadow_diff_records(NULL, &p, &c, &r) > 0);
  seen_t s;
  memset(&s, 0, sizeof(s));
  CHECK(shadow_noise_observe(&r, on_seen, &s) == 0);
  unsigned all = 0;
  for (int i = 0; i < s.n; i++) {
    all |= s.shapes[i];
    if (strcmp(s.fields[i], "body:/f") == 0)
      CHECK(s.shapes[i] == SHADOW_NOISE_NUMBER && near(s.deltas[i], 0.25));
    if (strcmp(s.fields[i], "body:/s") == 0)
      CHECK(s.shapes[i] == SHADOW_NOISE_VALUE);
    if (strcmp(s.fields[i], "body:/t") == 0)
      CHECK(s.shapes[i] == SHADOW_NOISE_TYPE);
    if (s.shapes[i] == SHADOW_NOISE_MOVE)
      CHECK(strcmp(s.fields[i], "body:/l") == 0);
  }
  CHECK(strcmp(s.fields[0], "status") == 0);
  CHECK(strcmp(s.fields[1], "header:x-request-id") == 0);
  CHECK(all == (SHADOW_NOISE_STATUS | SHADOW_NOISE_HEADER |
                SHADOW_NOISE_NUMBER | SHADOW_NOISE_VALUE | SHADOW_NOISE_TYPE |
                SHADOW_NOISE_MOVE | SHADOW_NOISE_ADD | SHADOW_NOISE_REMOVE));
  shadow_diff_result_free(&r);
  shadow_record_release(&p);
  shadow_record_release(&c);
}

int main(void) {
  test_mask();
  test_observe();
  test_intervals();
  test_classes();
  return check_report("test_noise");
}
