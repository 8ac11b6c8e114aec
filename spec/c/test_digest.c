/* Bodies that arrive in pieces: the record keeps a bounded prefix and a
 * digest of the whole, and the diff compares such bodies by length and
 * digest, so a one-byte change deep in a large body is still found. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "diff.h"
#include "digest.h"
#include "record.h"

#define MiB (1024 * 1024)

/* Feeds body into r in pieces of pseudo-random size, as reads arrive. */
static void feed(shadow_record_t *r, const char *body, size_t len, size_t keep,
                 unsigned seed) {
  size_t off = 0;
  while (off < len) {
    seed = seed * 1103515245u + 12345u;
    size_t n = 1 + (seed >> 8) % 70000;
    if (n > len - off) n = len - off;
    CHECK(shadow_record_body_feed(r, body + off, n, keep) == 0);
    off += n;
  }
  shadow_record_body_end(r);
}

static char *random_body(size_t len, unsigned seed) {
  char *b = malloc(len);
  for (size_t i = 0; i < len; i++) {
    seed = seed * 1103515245u + 12345u;
    b[i] = (char)(seed >> 16);
  }
  return b;
}

static void test_feed_keeps_prefix_and_digests_all(void) {
  size_t len = 3 * MiB;
  char *body = random_body(len, 7);
  shadow_record_t r;
  shadow_record_init(&r);
  feed(&r, body, len, MiB, 1);
  CHECK(r.body_cut == 1);
  CHECK(r.body.len == MiB);
  CHECK(memcmp(r.body.data, body, MiB) == 0);
  CHECK(r.body_total == len);
  CHECK(shadow_record_body_len(&r) == len);
  CHECK(shadow_digest_equal(r.body_digest, shadow_digest_of(body, len)));
  CHECK(r.digester == NULL);
  shadow_record_release(&r);

  /* At most keep bytes: kept whole, nothing digested. */
  shadow_record_init(&r);
  feed(&r, body, MiB, MiB, 2);
  CHECK(r.body_cut == 0);
  CHECK(r.body.len == MiB && memcmp(r.body.data, body, MiB) == 0);
  shadow_record_release(&r);

  /* keep 0: everything is digest. */
  shadow_record_init(&r);
  feed(&r, body, 1000, 0, 3);
  CHECK(r.body_cut == 1 && r.body.len == 0 && r.body_total == 1000);
  CHECK(shadow_digest_equal(r.body_digest, shadow_digest_of(body, 1000)));
  shadow_record_release(&r);
  free(body);
}

static void test_diff_by_digest(void) {
  size_t len = 3 * MiB;
  char *a = random_body(len, 11);
  char *b = malloc(len);
  memcpy(b, a, len);
  shadow_diff_opts_t *o = shadow_diff_opts_new();
  shadow_diff_opts_set_diff_bytes(o, MiB);
  shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
  shadow_record_t p, c;
  shadow_record_init(&p);
  shadow_record_init(&c);
  p.status = c.status = 200;
  feed(&p, a, len, MiB, 5);
  feed(&c, b, len, MiB, 9); /* other piece sizes, same bytes */
  CHECK(shadow_diff_records(o, &p, &c, &res) == 0);
  CHECK(strstr(res.json.data, "\"kind\":\"digest\""));

  /* One byte at 2.5 MiB, far past what was kept. */
  b[len / 2 + MiB] ^= 1;
  shadow_record_release(&c);
  shadow_record_init(&c);
  c.status = 200;
  feed(&c, b, len, MiB, 9);
  CHECK(shadow_diff_records(o, &p, &c, &res) == SHADOW_PART_BODY);
  CHECK(strstr(res.json.data, "\"kind\":\"digest\""));
  CHECK(strstr(res.json.data, "bodies differ by digest"));

  /* A cut body against a small whole one differs by digest too. */
  shadow_record_release(&c);
  shadow_record_init(&c);
  c.status = 200;
  shadow_buf_append(&c.body, "short", 5);
  CHECK(shadow_diff_records(o, &p, &c, &res) == SHADOW_PART_BODY);
  CHECK(strstr(res.json.data, "candidate 5 bytes"));

  shadow_record_release(&p);
  shadow_record_release(&c);
  shadow_diff_result_free(&res);
  shadow_diff_opts_free(o);
  free(a);
  free(b);
}

/* Reads landing in the room past the body (shadow_record_body_room) are
 * fed where they lie; copied pieces may come between them. The record
 * must end as if every piece had been copied in. */
static void feed_landing(shadow_record_t *r, const char *body, size_t len,
                         size_t keep, unsigned seed) {
  size_t off = 0;
  while (off < len) {
    seed = seed * 1103515245u + 12345u;
    size_t n = 1 + (seed >> 8) % 70000;
    if (n > len - off) n = len - off;
    char *at = NULL;
    size_t room =
        (seed >> 4) % 3 ? shadow_record_body_room(r, n, keep, &at) : 0;
    if (room) {
      CHECK(room <= n);
      CHECK(r->body.len + room < r->body.cap); /* and the NUL after it */
      n = room;
      memcpy(at, body + off, n); /* what the read would do */
      CHECK(shadow_record_body_feed(r, at, n, keep) == 0);
    } else {
      CHECK(shadow_record_body_feed(r, body + off, n, keep) == 0);
    }
    off += n;
  }
  shadow_record_body_end(r);
}

static void test_feed_in_place(void) {
  size_t len = 3 * MiB;
  char *body = random_body(len, 11);
  shadow_record_t r;

  /* Kept whole. */
  shadow_record_init(&r);
  feed_landing(&r, body, MiB, MiB, 3);
  CHECK(!r.body_cut && r.body.len == MiB);
  CHECK(memcmp(r.body.data, body, MiB) == 0 && r.body.data[MiB] == '\0');
  shadow_record_release(&r);

  /* Past keep: the room stops at keep, the rest is digested. */
  shadow_record_init(&r);
  feed_landing(&r, body, len, MiB, 4);
  CHECK(r.body_cut && r.body.len == MiB && r.body_total == len);
  CHECK(memcmp(r.body.data, body, MiB) == 0 && r.body.data[MiB] == '\0');
  CHECK(shadow_digest_equal(r.body_digest, shadow_digest_of(body, len)));
  char *at = NULL;
  CHECK(shadow_record_body_room(&r, 100, MiB, &at) == 0); /* cut: none */
  shadow_record_release(&r);

  /* want 0 only asks, and allocates nothing. */
  shadow_record_init(&r);
  CHECK(shadow_record_body_room(&r, 0, MiB, NULL) == 1);
  CHECK(r.body.cap == 0);
  CHECK(shadow_record_body_room(&r, 0, 0, NULL) == 0); /* keep 0: never */
  shadow_record_release(&r);

  /* A piece in place that crosses keep (room asked under a larger keep):
   * its part up to keep stays, all of it is digested. */
  shadow_record_init(&r);
  CHECK(shadow_record_body_feed(&r, body, 1000, 5000) == 0);
  CHECK(shadow_record_body_room(&r, 10000, MiB, &at) == 10000);
  memcpy(at, body + 1000, 10000);
  CHECK(shadow_record_body_feed(&r, at, 10000, 5000) == 0);
  CHECK(shadow_record_body_feed(&r, body + 11000, 1000, 5000) == 0);
  shadow_record_body_end(&r);
  CHECK(r.body_cut && r.body.len == 5000 && r.body_total == 12000);
  CHECK(memcmp(r.body.data, body, 5000) == 0 && r.body.data[5000] == '\0');
  CHECK(shadow_digest_equal(r.body_digest, shadow_digest_of(body, 12000)));
  shadow_record_release(&r);
  free(body);
}

int main(void) {
  test_feed_keeps_prefix_and_digests_all();
  test_diff_by_digest();
  test_feed_in_place();
  return check_report("test_digest");
}
