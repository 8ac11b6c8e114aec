/* Header lines grouped by name, Connection tokens looked up among them, the
 * plain-byte scan, and the forwarding rule built on them: the same answers as
 * the obvious quadratic versions, on small heads and on heads of thousands of
 * lines, and Host is never dropped by a Connection token. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"
#include "forward.h"
#include "header_group.h"
#include "record.h"
#include "request_parse.h"

static void add(shadow_headers_t *h, const char *name, const char *value) {
  CHECK(shadow_headers_add(h, name, strlen(name), value, strlen(value)) == 0);
}

/* The groups against a scan of every pair. */
static void check_groups(const shadow_headers_t *h) {
  size_t *next = malloc(h->n * sizeof(*next));
  unsigned char *first = malloc(h->n);
  CHECK(shadow_headers_group(h, next, first) == 0);
  int ok = 1;
  for (size_t i = 0; i < h->n; i++) {
    size_t want_next = SHADOW_HEADER_GROUP_END;
    int want_first = 1;
    for (size_t j = 0; j < i; j++)
      if (h->v[j].name_len == h->v[i].name_len &&
          strncasecmp(h->v[j].name, h->v[i].name, h->v[i].name_len) == 0)
        want_first = 0;
    for (size_t j = i + 1; j < h->n; j++)
      if (h->v[j].name_len == h->v[i].name_len &&
          strncasecmp(h->v[j].name, h->v[i].name, h->v[i].name_len) == 0) {
        want_next = j;
        break;
      }
    if (next[i] != want_next || first[i] != want_first) ok = 0;
  }
  CHECK(ok);
  free(next);
  free(first);
}

static void test_groups(void) {
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  add(&h, "Accept", "a");
  add(&h, "cookie", "c1");
  add(&h, "ACCEPT", "b");
  add(&h, "X-One", "1");
  add(&h, "Cookie", "c2");
  add(&h, "accept", "c");
  check_groups(&h);
  shadow_headers_clear(&h);
  /* Many lines, few names, in a scrambled order. */
  char name[16];
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof(name), "%s%d", i % 2 ? "h" : "H", (i * 7919) % 37);
    add(&h, name, "v");
  }
  check_groups(&h);
  shadow_headers_free(&h);
}

static size_t first_named(const shadow_headers_t *h, const shadow_header_t *x) {
  for (size_t j = 0; j < h->n; j++)
    if (h->v[j].name_len == x->name_len &&
        strncasecmp(h->v[j].name, x->name, x->name_len) == 0)
      return j;
  return SHADOW_HEADER_GROUP_END;
}

/* Each side's groups as shadow_headers_group, and the peers. */
static void check_pair(const shadow_headers_t *a, const shadow_headers_t *b) {
  shadow_header_groups_t ga, gb;
  CHECK(shadow_headers_pair(a, b, &ga, &gb) == 0);
  int ok = 1;
  for (int side = 0; side < 2; side++) {
    const shadow_headers_t *h = side ? b : a, *o = side ? a : b;
    const shadow_header_groups_t *g = side ? &gb : &ga;
    size_t *next = malloc((h->n ? h->n : 1) * sizeof(*next));
    unsigned char *first = malloc(h->n ? h->n : 1);
    CHECK(shadow_headers_group(h, next, first) == 0);
    for (size_t i = 0; i < h->n; i++) {
      if (g->next[i] != next[i] || g->first[i] != first[i]) ok = 0;
      if (first[i] && g->peer[i] != first_named(o, &h->v[i])) ok = 0;
    }
    free(next);
    free(first);
  }
  CHECK(ok);
  shadow_header_groups_free(&ga);
  shadow_header_groups_free(&gb);
}

static void test_pair(void) {
  shadow_headers_t a = SHADOW_HEADERS_INIT, b = SHADOW_HEADERS_INIT;
  check_pair(&a, &b);
  add(&a, "Vary", "x");
  add(&a, "Set-Cookie", "1");
  add(&a, "vary", "y");
  add(&b, "SET-COOKIE", "1");
  add(&b, "X-Only", "c");
  add(&b, "set-cookie", "2");
  check_pair(&a, &b);
  char name[16];
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof(name), "n%d", (i * 31) % 53);
    add(i % 3 ? &a : &b, name, "v");
  }
  check_pair(&a, &b);
  shadow_headers_free(&a);
  shadow_headers_free(&b);
  /* Every size around the small path's bound, with repeated names in
   * mixed case and names of one length that differ late. */
  static const char *names[] = {"ab",     "AB",     "ac",         "x-long",
                                "X-LONG", "x-lonh", "set-cookie", "c"};
  for (size_t total = 1; total <= 40; total++) {
    shadow_headers_t x = SHADOW_HEADERS_INIT, y = SHADOW_HEADERS_INIT;
    for (size_t i = 0; i < total; i++)
      add(i % 3 == 1 ? &y : &x, names[(i * 5 + total) % 8], "v");
    check_groups(&x);
    check_pair(&x, &y);
    shadow_headers_free(&x);
    shadow_headers_free(&y);
  }
  /* Both sides naming the same lines in the same order (the pair's fast
   * path), in one case or in another, around the small path's bound; and
   * the same with the last name changed, which must leave the fast path. */
  for (size_t total = 1; total <= 40; total++) {
    shadow_headers_t x = SHADOW_HEADERS_INIT, y = SHADOW_HEADERS_INIT;
    shadow_headers_t z = SHADOW_HEADERS_INIT;
    for (size_t i = 0; i < total; i++) {
      const char *nm = names[(i * 3 + total) % 8];
      char upper[16];
      size_t k = 0;
      for (; nm[k] && k + 1 < sizeof(upper); k++)
        upper[k] = (char)(nm[k] >= 'a' && nm[k] <= 'z' ? nm[k] - 32 : nm[k]);
      upper[k] = '\0';
      add(&x, nm, "v");
      add(&y, i % 2 ? upper : nm, "w");
      add(&z, i + 1 == total ? "x-lonh" : nm, "v");
    }
    check_pair(&x, &y);
    check_pair(&y, &x);
    check_pair(&x, &z);
    shadow_headers_free(&x);
    shadow_headers_free(&y);
    shadow_headers_free(&z);
  }
}

static void test_index(void) {
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  add(&h, "Keep-Alive", "1");
  add(&h, "X-A", "1");
  add(&h, "x-b", "1");
  add(&h, "X-C", "1");
  add(&h, "x-a", "2");
  shadow_header_index_t x;
  CHECK(shadow_header_index_build(&x, &h) == 0);
  unsigned char mark[5] = {0};
  const char *list = " keep-alive , X-A,,x-a\t, x-, x-bb";
  shadow_header_index_mark(&x, list, strlen(list), mark);
  CHECK(mark[0] && mark[1] && !mark[2] && !mark[3] && mark[4]);
  shadow_header_index_free(&x);
  shadow_header_index_free(&x); /* safe twice */
  /* Thousands of tokens, each naming a line or none. */
  shadow_headers_clear(&h);
  char name[16];
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof(name), "T%d", i * 2);
    add(&h, name, "v");
  }
  shadow_buf_t b = SHADOW_BUF_INIT;
  for (int i = 0; i < 5000; i++)
    shadow_buf_printf(&b, "%st%d", i ? "," : "", i % 400);
  unsigned char *m = calloc(h.n, 1);
  CHECK(shadow_header_index_build(&x, &h) == 0);
  shadow_header_index_mark(&x, b.data, b.len, m);
  int ok = 1;
  for (int i = 0; i < 300; i++)
    if (m[i] != (i * 2 < 400)) ok = 0;
  CHECK(ok);
  shadow_header_index_free(&x);
  free(m);
  shadow_buf_free(&b);
  shadow_headers_free(&h);
}

static void test_plain_span(void) {
  char s[64];
  memset(s, 'a', sizeof(s));
  CHECK(shadow_header_plain_span(s, 64) == 64);
  for (size_t at = 0; at < 40; at++) {
    const unsigned char bad[] = {'\t', '\v', '\f', 0, '\r', 0x7f, 0x1f};
    for (size_t k = 0; k < sizeof(bad); k++) {
      memset(s, 'a', sizeof(s));
      s[at] = (char)bad[k];
      CHECK(shadow_header_plain_span(s, 64) == at);
    }
    memset(s, 'a', sizeof(s));
    s[at] = (char)0xff; /* not a control byte */
    CHECK(shadow_header_plain_span(s, 64) == 64);
  }
  /* Every length, so the last bytes (read as a word overlapping the one
   * before) are covered wherever the control byte falls; a byte past n
   * is never looked at. */
  for (size_t n = 0; n <= 40; n++) {
    memset(s, 'a', sizeof(s));
    s[n] = '\r';
    CHECK(shadow_header_plain_span(s, n) == n);
    for (size_t at = 0; at < n; at++) {
      memset(s, 'a', sizeof(s));
      s[at] = 0x7f;
      CHECK(shadow_header_plain_span(s, n) == at);
      s[at] = '\n';
      if (at + 1 < n) s[n - 1] = '\t'; /* a later one does not count */
      CHECK(shadow_header_plain_span(s, n) == at);
    }
  }
  CHECK(shadow_header_value_valid("a\tb c", 5));
  CHECK(!shadow_header_value_valid("abcdefgh\vb", 10));
  CHECK(!shadow_header_value_valid("abcdefgh\x7f", 9));
}

/* A name against a lower-case one: case folded, length first, whether
 * the lower-case name is a literal or not. */
static void test_name_is(void) {
  char name[] = "Content-Type", value[] = "x", runtime[32];
  shadow_header_t e = {name, 12, value, 1};
  CHECK(shadow_header_name_is(&e, "content-type"));
  CHECK(!shadow_header_name_is(&e, "content-typ"));
  CHECK(!shadow_header_name_is(&e, "content-types"));
  CHECK(!shadow_header_name_is(&e, "content-typf"));
  CHECK(!shadow_header_name_is(&e, ""));
  snprintf(runtime, sizeof runtime, "%s-%s", "content", "type");
  CHECK(shadow_header_name_is(&e, runtime));
  CHECK(shadow_header_name_eq(&e, "content-type", 12));
  CHECK(!shadow_header_name_eq(&e, "content-type", 11));
}

static int has(const shadow_headers_t *h, const char *name) {
  for (size_t i = 0; i < h->n; i++)
    if (shadow_header_name_is(&h->v[i], name)) return 1;
  return 0;
}

static void test_forward(void) {
  shadow_headers_t in = SHADOW_HEADERS_INIT, out = SHADOW_HEADERS_INIT;
  add(&in, "Host", "client.example");
  /* More tokens than the old fixed list held, Host among them. */
  add(&in, "Connection", "t0,t1,t2,t3,t4,t5,t6,t7,t8,t9,t10,t11,t12,t13");
  add(&in, "Connection", "t14, t15 ,t16, host, x-late");
  add(&in, "X-Late", "1");
  add(&in, "T16", "1");
  add(&in, "X-Keep", "1");
  for (int i = 0; i < 2000; i++)
    add(&in, "t3", "gone");
  shadow_forward_t f = {NULL, NULL, NULL};
  CHECK(shadow_forward_headers(&in, &f, &out) == 0);
  CHECK(has(&out, "host"));
  CHECK(has(&out, "x-keep"));
  CHECK(!has(&out, "x-late") && !has(&out, "t16") && !has(&out, "t3"));
  CHECK(!has(&out, "connection"));
  CHECK(out.n == 2);
  shadow_headers_free(&in);
  shadow_headers_free(&out);
}

static void test_request_line_rules(void) {
  CHECK(shadow_request_method_valid("GET", 3));
  CHECK(shadow_request_method_valid("X-CUSTOM", 8));
  CHECK(!shadow_request_method_valid("GE\tT", 4));
  CHECK(!shadow_request_method_valid("GE T", 4));
  CHECK(!shadow_request_method_valid("", 0));
  CHECK(shadow_request_target_valid("/a?b=c", 6));
  CHECK(shadow_request_target_valid("*", 1));
  CHECK(shadow_request_target_valid("/\xff", 2));
  CHECK(!shadow_request_target_valid("/a\tb", 4));
  CHECK(!shadow_request_target_valid("/a\vb", 4));
  CHECK(!shadow_request_target_valid("/a\fb", 4));
  CHECK(!shadow_request_target_valid("/a b", 4));
  CHECK(!shadow_request_target_valid("/a\x7f", 3));
  CHECK(!shadow_request_target_valid("a", 1));
  CHECK(!shadow_request_target_valid("", 0));
}

/* RFC 9110's tchar, spelled out, against the bit-mask test. */
static void test_name_valid(void) {
  static const char extra[] = "!#$%&'*+-.^_`|~";
  for (int c = 0; c < 256; c++) {
    int want = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
               (c >= 'A' && c <= 'Z') || (c && strchr(extra, c));
    char one = (char)c, many[] = "X-Name-Xx";
    many[8] = (char)c;
    CHECK(shadow_header_name_valid(&one, 1) == want);
    CHECK(shadow_header_name_valid(many, 9) == want);
  }
  CHECK(!shadow_header_name_valid("", 0));
}

/* The checked mark: which lines are known valid, through every change. */
static void test_checked(void) {
  shadow_headers_t h = SHADOW_HEADERS_INIT, g = SHADOW_HEADERS_INIT;
  CHECK(shadow_headers_add_valid(&h, "A", 1, "1", 1) == 0);
  CHECK(shadow_headers_add_valid(&h, "B(", 2, "2", 1) == -EINVAL);
  CHECK(shadow_headers_add_valid(&h, "B", 1, "2\r\n", 3) == -EINVAL);
  CHECK(h.n == 1 && h.checked == 1);
  CHECK(shadow_headers_add_valid(&h, "B", 1, "2\t3", 3) == 0);
  CHECK(h.n == 2 && h.checked == 2);
  add(&h, "C", "bad\x01"); /* added unchecked: every writer checks it */
  CHECK(h.n == 3 && h.checked == 2);
  CHECK(!shadow_headers_line_valid(&h, 2) && shadow_headers_line_valid(&h, 1));
  CHECK(shadow_headers_add_valid(&h, "D", 1, "4", 1) == 0);
  CHECK(h.checked == 2); /* not past an unchecked line */
  /* A copy keeps what is known of each line. */
  for (size_t i = 0; i < h.n; i++)
    CHECK(shadow_headers_add_line(&g, &h, i) == 0);
  CHECK(g.n == 4 && g.checked == 2);
  CHECK(shadow_headers_extend_last(&h, "5", 1, 0) == 0);
  CHECK(h.checked == 2);
  shadow_headers_clear(&g);
  CHECK(g.checked == 0);
  CHECK(shadow_headers_add_valid(&g, "A", 1, "1", 1) == 0);
  CHECK(shadow_headers_extend_last(&g, "\n", 1, 0) == 0);
  CHECK(g.checked == 0 && !shadow_headers_line_valid(&g, 0));
  shadow_headers_clear(&g);
  CHECK(shadow_headers_add_valid(&g, "A", 1, "1", 1) == 0);
  CHECK(shadow_headers_add_valid(&g, "B", 1, "2", 1) == 0);
  CHECK(shadow_headers_add_valid(&g, "C", 1, "3", 1) == 0);
  CHECK(shadow_headers_set(&g, "b", "x\ny", 3) == 0);
  CHECK(g.checked == 1 && !shadow_headers_line_valid(&g, 1));
  /* take: into an empty list by swapping, else by copying. */
  shadow_headers_t t = SHADOW_HEADERS_INIT;
  CHECK(shadow_headers_take(&t, &g) == 0);
  CHECK(t.n == 3 && t.checked == 1 && g.n == 0 && g.checked == 0);
  CHECK(strcmp(t.v[2].name, "C") == 0 && strcmp(t.v[1].value, "x\ny") == 0);
  CHECK(shadow_headers_add_valid(&g, "E", 1, "5", 1) == 0);
  CHECK(shadow_headers_take(&t, &g) == 0);
  CHECK(t.n == 4 && g.n == 1 && t.checked == 1);
  CHECK(strcmp(t.v[3].name, "E") == 0);
  /* truncate: the lines kept keep their bytes and marks; the count of
   * bytes and the mark follow the cut. */
  size_t bytes = t.bytes;
  shadow_headers_truncate(&t, 4);
  CHECK(t.n == 4 && t.bytes == bytes);
  shadow_headers_truncate(&t, 2);
  CHECK(t.n == 2 && t.checked == 1 && t.bytes == 2 + 1 + 3);
  CHECK(strcmp(t.v[1].name, "B") == 0 && strcmp(t.v[1].value, "x\ny") == 0);
  shadow_headers_truncate(&t, 0);
  CHECK(t.n == 0 && t.checked == 0 && t.bytes == 0);
  shadow_headers_free(&t);
  shadow_headers_free(&h);
  shadow_headers_free(&g);
  shadow_headers_free(&t);
  CHECK(t.checked == 0 && t.n == 0);
}

/* compact: a list kept a long while moves into memory of its lines' size,
 * lines, bytes (a NUL inside a value included) and marks unchanged, and
 * still grows as any list. */
static void test_compact(void) {
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  CHECK(shadow_headers_add_valid(&h, "Server", 6, "nginx", 5) == 0);
  add(&h, "X-Bad", "a\x01b");
  CHECK(shadow_headers_add_valid(&h, "Etag", 4, "\"1\"", 3) == 0);
  CHECK(shadow_headers_add(&h, "X-Nul", 5, "a\0b", 3) == 0);
  size_t bytes = h.bytes, checked = h.checked;
  CHECK(h.cap == 16); /* a parser's list's first size */
  CHECK(shadow_headers_compact(&h) == 0);
  CHECK(h.n == 4 && h.cap == 4 && h.bytes == bytes && h.checked == checked);
  /* The strings lie end to end, "name\0value\0" each, in one block. */
  CHECK(h.v[3].value + h.v[3].value_len + 1 == h.v[0].name + bytes + 2 * 4);
  CHECK(strcmp(h.v[0].name, "Server") == 0 &&
        strcmp(h.v[0].value, "nginx") == 0);
  CHECK(strcmp(h.v[1].value, "a\x01b") == 0 &&
        !shadow_headers_line_valid(&h, 1));
  CHECK(h.v[3].value_len == 3 && memcmp(h.v[3].value, "a\0b", 3) == 0);
  /* Already its size: left where it is. */
  shadow_header_t *v = h.v;
  CHECK(shadow_headers_compact(&h) == 0 && h.v == v);
  /* It grows again like any list: a new line, a longer value. */
  for (int i = 0; i < 20; i++)
    CHECK(shadow_headers_add_valid(&h, "More", 4, "line", 4) == 0);
  CHECK(shadow_headers_extend_last(&h, "!", 1, 0) == 0);
  CHECK(h.n == 24 && strcmp(h.v[23].value, "line!") == 0);
  CHECK(strcmp(h.v[2].value, "\"1\"") == 0);
  /* An emptied list gives its memory back. */
  shadow_headers_clear(&h);
  CHECK(shadow_headers_compact(&h) == 0);
  CHECK(h.n == 0 && h.v == NULL && h.cap == 0);
  CHECK(shadow_headers_add_valid(&h, "A", 1, "1", 1) == 0 && h.n == 1);
  shadow_headers_free(&h);
}

int main(void) {
  test_name_valid();
  test_checked();
  test_compact();
  test_name_is();
  test_groups();
  test_pair();
  test_index();
  test_plain_span();
  test_forward();
  test_request_line_rules();
  return check_report("test_header_group");
}
