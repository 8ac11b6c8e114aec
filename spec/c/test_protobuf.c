/* Protobuf as a tree (protobuf.h) and protobuf bodies in the record diff:
 * messages encoded by hand, and messages, a descriptor set and its types
 * made by Debian's protoc at test time from spec/fixtures/proto, so a real
 * encoder writes the bytes. Without protoc the hand-encoded cases still
 * run and the rest says it was skipped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "diff.h"
#include "protobuf.h"

static shadow_buf_t tree_buf = SHADOW_BUF_INIT;

/* The message as JSON text (valid until the next call). */
static const char *tree(const void *msg, size_t len,
                        const shadow_pb_schema_t *s, const char *type) {
  shadow_buf_reset(&tree_buf);
  if (shadow_pb_to_json(msg, len, s, type, &tree_buf)) return "(error)";
  return tree_buf.data ? tree_buf.data : "";
}

#define TREE_IS(msg, len, s, type, want)                                       \
  do {                                                                         \
    const char *got_ = tree(msg, len, s, type);                                \
    if (strcmp(got_, want) != 0)                                               \
      fprintf(stderr, "  got:  %s\n  want: %s\n", got_, want);                 \
    CHECK(strcmp(got_, want) == 0);                                            \
  } while (0)

static void test_wire(void) {
  const uint8_t *p;
  uint64_t v;
  static const uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0x01};
  p = max;
  CHECK(shadow_pb_varint(&p, max + 10, &v) == 0 && v == UINT64_MAX);
  static const uint8_t eleven[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0x01};
  p = eleven;
  CHECK(shadow_pb_varint(&p, eleven + 11, &v) == -1 && p == eleven);
  static const uint8_t cut[] = {0x80};
  p = cut;
  CHECK(shadow_pb_varint(&p, cut + 1, &v) == -1);
  CHECK(shadow_pb_is_message((const uint8_t *)"\x08\x01", 2));
  CHECK(!shadow_pb_is_message((const uint8_t *)"\x0a\x05"
                                               "ab",
                              4));                              /* past end */
  CHECK(!shadow_pb_is_message((const uint8_t *)"\x0b\x0c", 2)); /* group */
  CHECK(!shadow_pb_is_message((const uint8_t *)"\x00\x01", 2)); /* field 0 */
  CHECK(shadow_pb_is_message((const uint8_t *)"", 0));
}

/* Schemaless trees from hand-encoded bytes. */
static void test_schemaless(void) {
  /* 1: varint 150; 2: "testing"; 3: nested {1: 1}; 1 again: repeated. */
  static const char m1[] = "\x08\x96\x01\x12\x07testing\x1a\x02\x08\x01"
                           "\x08\x02";
  TREE_IS(m1, sizeof m1 - 1, NULL, NULL,
          "{\"1\":[150,2],\"2\":\"testing\",\"3\":{\"1\":1}}");
  /* int32 -1 is ten bytes of varint: unsigned without a schema. */
  static const char neg[] = "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
  TREE_IS(neg, sizeof neg - 1, NULL, NULL, "{\"1\":18446744073709551615}");
  /* fixed32 and fixed64 as unsigned integers. */
  static const char fx[] = "\x0d\xff\xff\xff\xff\x11\x01\x00\x00\x00\x00\x00"
                           "\x00\x00";
  TREE_IS(fx, sizeof fx - 1, NULL, NULL, "{\"1\":4294967295,\"2\":1}");
  /* Not UTF-8 and not a message: base64. Empty: an empty string. */
  static const char by[] = "\x0a\x03\xff\xfe\xfd\x12\x00";
  TREE_IS(by, sizeof by - 1, NULL, NULL, "{\"1\":\"//79\",\"2\":\"\"}");
  /* A truncated message: the fields before, then the rest as bytes. */
  static const char tr[] = "\x08\x01\x12\x09"
                           "abc";
  TREE_IS(tr, sizeof tr - 1, NULL, NULL,
          "{\"1\":1,\"_undecoded\":\"EglhYmM=\"}");
  static const char cutv[] = "\x08\x80";
  TREE_IS(cutv, sizeof cutv - 1, NULL, NULL, "{\"_undecoded\":\"CIA=\"}");
  /* A group is refused: the rest is bytes, the message still a tree. */
  static const char grp[] = "\x08\x05\x0b\x08\x01\x0c";
  TREE_IS(grp, sizeof grp - 1, NULL, NULL,
          "{\"1\":5,\"_undecoded\":\"CwgBDA==\"}");
  TREE_IS("", 0, NULL, NULL, "{}");
  /* "hi" parses as a message (field 13 = 105) but is text: a string. A
   * message of printable bytes after a control byte stays a message. */
  static const char hi[] = "\x0a\x02hi\x12\x05\x0a\x03"
                           "Ada";
  TREE_IS(hi, sizeof hi - 1, NULL, NULL,
          "{\"1\":\"hi\",\"2\":{\"1\":\"Ada\"}}");
}

/* Nesting far past the cap: bounded, no crash, deepest part as bytes. */
static void test_deep(void) {
  enum { LEVELS = 5000 };
  /* Built inside out: each level is field 1 holding the one below. */
  shadow_buf_t b = SHADOW_BUF_INIT, nb = SHADOW_BUF_INIT;
  shadow_buf_append(&b, "\x08\x01", 2);
  for (int i = 0; i < LEVELS; i++) {
    shadow_buf_reset(&nb);
    uint8_t hdr[12];
    size_t h = 0, n = b.len;
    hdr[h++] = 0x0a;
    do {
      hdr[h++] = (uint8_t)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>= 7;
    } while (n);
    shadow_buf_append(&nb, hdr, h);
    shadow_buf_append(&nb, b.data, b.len);
    shadow_buf_t t = b;
    b = nb;
    nb = t;
  }
  shadow_buf_t out = SHADOW_BUF_INIT;
  CHECK(shadow_pb_to_json(b.data, b.len, NULL, NULL, &out) == 0);
  size_t depth = 0, max = 0;
  for (size_t i = 0; i < out.len; i++) {
    if (out.data[i] == '{') depth++;
    if (out.data[i] == '}') depth--;
    if (depth > max) max = depth;
  }
  CHECK(max == SHADOW_PB_MAX_DEPTH);
  CHECK(out.len < 4 * b.len); /* bytes below the cap, as base64 */
  /* And it diffs as a tree, the JSON parser's cap not reached. */
  shadow_buf_free(&out);
  shadow_buf_free(&b);
  shadow_buf_free(&nb);
}

/* Runs a shell command; 0 when it succeeded. */
static int sh(const char *cmd) {
  return system(cmd) == 0 ? 0 : -1;
}

static char dir[64], proto_dir[1024];

static int read_file(const char *path, shadow_buf_t *out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
    shadow_buf_append(out, tmp, n);
  fclose(f);
  return 0;
}

/* protoc --encode=type from text format; the bytes into out. */
static int encode(const char *type, const char *text, shadow_buf_t *out) {
  char path[128], cmd[2048];
  snprintf(path, sizeof path, "%s/msg.txt", dir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(text, f);
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "protoc -I%s --encode=%s api.proto < %s/msg.txt > %s/msg.bin",
           proto_dir, type, dir, dir);
  if (sh(cmd)) return -1;
  snprintf(path, sizeof path, "%s/msg.bin", dir);
  shadow_buf_reset(out);
  return read_file(path, out);
}

static const char order_text[] =
    "id: 9007199254740993\n"
    "user { name: \"Ada\" age: 36 status: STATUS_ACTIVE tags: \"a\" tags: \"b\""
    " address { city: \"Paris\" } }\n"
    "quantities: [1, 2, 3]\n"
    "counts { key: \"x\" value: 5 }\n"
    "counts { key: \"y\" value: -6 }\n"
    "delta: -3\n"
    "offset: -1\n"
    "price: 0.1\n"
    "ratio: 0.5\n"
    "paid: true\n"
    "blob: \"\\001\\002\\377\"\n"
    "big: 18446744073709551615\n"
    "small: -7\n"
    "delta64: -9000000000\n"
    "history: [STATUS_ACTIVE, STATUS_BANNED]\n"
    "by_rank { key: 1 value { name: \"Bo\" } }\n"
    "huge: 18446744073709551615\n";

static const char order_json[] =
    "{\"id\":9007199254740993,\"user\":{\"name\":\"Ada\",\"age\":36,"
    "\"status\":\"STATUS_ACTIVE\",\"tags\":[\"a\",\"b\"],\"address\":"
    "{\"city\":\"Paris\"}},\"quantities\":[1,2,3],\"counts\":{\"x\":5,"
    "\"y\":-6},\"delta\":-3,\"offset\":-1,\"price\":0.1,\"ratio\":0.5,"
    "\"paid\":true,\"blob\":\"AQL/\",\"big\":18446744073709551615,"
    "\"small\":-7,\"delta64\":-9000000000,\"history\":[\"STATUS_ACTIVE\","
    "\"STATUS_BANNED\"],\"by_rank\":{\"1\":{\"name\":\"Bo\"}},"
    "\"huge\":18446744073709551615}";

static void set_body(shadow_record_t *r, const char *type, const void *body,
                     size_t len) {
  shadow_headers_add(&r->headers, "Content-Type", 12, type, strlen(type));
  shadow_buf_append(&r->body, body, len);
  r->status = 200;
}

/* Diffs two bodies; returns SHADOW_PART_BODY when they differ (the
 * content types may: headers are not the point here), res kept. */
static int diff_bodies(const shadow_diff_opts_t *o, const char *pt,
                       const shadow_buf_t *pb, const char *ct,
                       const shadow_buf_t *cb, shadow_diff_result_t *res) {
  shadow_record_t p, c;
  shadow_record_init(&p);
  shadow_record_init(&c);
  set_body(&p, pt, pb->data, pb->len);
  set_body(&c, ct, cb->data, cb->len);
  int rc = shadow_diff_records(o, &p, &c, res);
  shadow_record_release(&p);
  shadow_record_release(&c);
  return rc < 0 ? rc : rc & SHADOW_PART_BODY;
}

static int has(const shadow_diff_result_t *res, const char *s) {
  return res->json.data && strstr(res->json.data, s) != NULL;
}

static void test_protoc(void) {
  const char *self = __FILE__;
  const char *slash = strrchr(self, '/');
  snprintf(proto_dir, sizeof proto_dir, "%.*s/../fixtures/proto",
           slash ? (int)(slash - self) : 1, slash ? self : ".");
  if (sh("protoc --version > /dev/null 2>&1")) {
    printf("test_protobuf: SKIPPED the protoc cases: no protoc on PATH "
           "(Debian's protobuf-compiler; scripts/bootstrap installs it)\n");
    return;
  }
  snprintf(dir, sizeof dir, "/tmp/test_protobuf.XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  char cmd[2048], path[128];
  snprintf(cmd, sizeof cmd,
           "protoc -I%s --descriptor_set_out=%s/api.pb --include_imports "
           "api.proto",
           proto_dir, dir);
  CHECK(sh(cmd) == 0);
  shadow_buf_t fds = SHADOW_BUF_INIT, msg = SHADOW_BUF_INIT;
  snprintf(path, sizeof path, "%s/api.pb", dir);
  CHECK(read_file(path, &fds) == 0);

  shadow_pb_schema_t *s = NULL;
  char err[256];
  CHECK(shadow_pb_schema_load(&s, fds.data, fds.len, err, sizeof err) == 0);
  CHECK(shadow_pb_schema_has(s, "shop.v1.Order"));
  CHECK(shadow_pb_schema_has(s, ".shop.common.Address"));
  CHECK(!shadow_pb_schema_has(s, "shop.v1.Nope"));

  /* Named paths, enums, maps, packed, negatives, nested, exact int64. */
  CHECK(encode("shop.v1.Order", order_text, &msg) == 0);
  TREE_IS(msg.data, msg.len, s, "shop.v1.Order", order_json);
  /* Without the schema: by number; zigzag and int32 -1 as the wire has
   * them; the packed run is a string of bytes 1, 2, 3 (valid UTF-8). */
  const char *raw = tree(msg.data, msg.len, NULL, NULL);
  CHECK(strstr(raw, "\"1\":9007199254740993") != NULL);
  CHECK(strstr(raw, "\"2\":{\"1\":\"Ada\",\"2\":36,\"3\":1,\"4\":[\"a\",\"b\"],"
                    "\"5\":{\"1\":\"Paris\"}}") != NULL);
  CHECK(strstr(raw, "\"5\":5") != NULL);                       /* sint32 -3 */
  CHECK(strstr(raw, "\"6\":18446744073709551615") != NULL);    /* int32 -1 */
  CHECK(strstr(raw, "\"4\":[{\"1\":\"x\",\"2\":5},") != NULL); /* map */

  /* A truncated message still decodes up to the cut. */
  TREE_IS(msg.data, 3, s, "shop.v1.Order",
          "{\"_undecoded\":\"CIGA\"}"); /* the 9-byte id cut after 3 */
  const char *cut = tree(msg.data, msg.len - 3, s, "shop.v1.Order");
  CHECK(strstr(cut, "\"id\":9007199254740993") != NULL);
  CHECK(strstr(cut, "\"_undecoded\":") != NULL);

  /* A descriptor set is refused when it is not one, or lacks imports. */
  shadow_pb_schema_t *bad = NULL;
  CHECK(shadow_pb_schema_load(&bad, "\x08\x01", 2, err, sizeof err) == -EINVAL);
  CHECK(strstr(err, "descriptor set") != NULL);
  snprintf(cmd, sizeof cmd,
           "protoc -I%s --descriptor_set_out=%s/noimp.pb api.proto", proto_dir,
           dir);
  CHECK(sh(cmd) == 0);
  shadow_buf_t noimp = SHADOW_BUF_INIT;
  snprintf(path, sizeof path, "%s/noimp.pb", dir);
  CHECK(read_file(path, &noimp) == 0);
  CHECK(shadow_pb_schema_load(&bad, noimp.data, noimp.len, err, sizeof err) ==
        -EINVAL);
  CHECK(strstr(err, "--include_imports") != NULL);
  shadow_buf_free(&noimp);

  /* The record diff: protobuf bodies as trees under the rules. */
  shadow_diff_opts_t *o = shadow_diff_opts_new();
  CHECK(shadow_diff_opts_protobuf(o, fds.data, fds.len, "shop.v1.Nope", err,
                                  sizeof err) == -EINVAL);
  CHECK(strstr(err, "no message type shop.v1.Nope") != NULL);
  CHECK(shadow_diff_opts_protobuf(o, fds.data, fds.len, "shop.v1.Order", err,
                                  sizeof err) == 0);
  shadow_buf_t other = SHADOW_BUF_INIT;
  char changed[sizeof order_text + 64];
  snprintf(changed, sizeof changed, "%s", order_text);
  memcpy(strstr(changed, "Ada"), "Eve", 3);
  *strstr(changed, "price: 0.1") = '#'; /* comment it out: absent */
  CHECK(encode("shop.v1.Order", changed, &other) == 0);
  shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;
  CHECK(diff_bodies(o, "application/x-protobuf", &msg,
                    "application/protobuf; proto=shop.v1.Order", &other,
                    &res) == SHADOW_PART_BODY);
  CHECK(res.body_kind == SHADOW_BODY_PROTOBUF);
  CHECK(has(&res, "\"kind\":\"protobuf\""));
  CHECK(has(&res, "\"path\":\"/user/name\",\"primary\":\"Ada\","
                  "\"candidate\":\"Eve\""));
  CHECK(has(&res, "{\"op\":\"remove\",\"path\":\"/price\""));
  /* Every rule applies to the field paths. */
  CHECK(shadow_diff_opts_ignore_json(o, "/user/name") == 0);
  CHECK(shadow_diff_opts_tolerance(o, "/price", 1) == 0);
  CHECK(diff_bodies(o, "application/x-protobuf", &msg, "application/x-protobuf",
                    &other,
                    &res) == SHADOW_PART_BODY); /* /price is gone, not near */
  CHECK(!has(&res, "/user/name"));
  shadow_diff_opts_free(o);

  /* The migration case: a JSON primary against a protobuf candidate. */
  o = shadow_diff_opts_new();
  CHECK(shadow_diff_opts_protobuf(o, fds.data, fds.len, "shop.v1.Order", err,
                                  sizeof err) == 0);
  shadow_buf_t js = SHADOW_BUF_INIT;
  shadow_buf_puts(&js, order_json);
  CHECK(diff_bodies(o, "application/json", &js, "application/x-protobuf", &msg,
                    &res) == 0);
  CHECK(res.body_kind == SHADOW_BODY_PROTOBUF);
  shadow_buf_reset(&js);
  shadow_buf_puts(&js, "{\"id\":\"9007199254740993\",\"user\":{\"name\":"
                       "\"Ada\"}}");
  CHECK(shadow_diff_opts_coerce(o, "/id", SHADOW_COERCE_NUMBER) == 0);
  CHECK(shadow_diff_opts_ignore_json(o, "/quantities") == 0);
  CHECK(diff_bodies(o, "application/json", &js, "application/x-protobuf", &msg,
                    &res) == SHADOW_PART_BODY);
  CHECK(!has(&res, "\"path\":\"/id\"")); /* coerced */
  CHECK(!has(&res, "/quantities"));      /* ignored */
  CHECK(has(&res, "\"path\":\"/user/age\""));
  shadow_diff_opts_free(o);

  /* Without descriptors: by number; identical messages agree. */
  CHECK(diff_bodies(NULL, "application/x-protobuf", &msg,
                    "application/x-protobuf", &msg, &res) == 0);
  CHECK(diff_bodies(NULL, "application/x-protobuf", &msg,
                    "application/x-protobuf", &other,
                    &res) == SHADOW_PART_BODY);
  CHECK(has(&res, "\"path\":\"/2/1\",\"primary\":\"Ada\""));
  /* A protobuf body against a text one: bytes, as before. */
  CHECK(diff_bodies(NULL, "application/x-protobuf", &msg, "text/plain", &msg,
                    &res) == 0);
  CHECK(res.body_kind == SHADOW_BODY_BYTES);

  /* Deep nesting from protoc's own encoder: Node { child { child ... } }. */
  shadow_buf_t text = SHADOW_BUF_INIT;
  for (int i = 0; i < 90; i++)
    shadow_buf_puts(&text, "child { value: 1 ");
  for (int i = 0; i < 90; i++)
    shadow_buf_puts(&text, "} ");
  CHECK(encode("shop.v1.Node", text.data, &other) == 0);
  const char *deep = tree(other.data, other.len, s, "shop.v1.Node");
  CHECK(strncmp(deep, "{\"child\":{\"value\":1,\"child\":", 28) == 0);

  shadow_diff_result_free(&res);
  shadow_buf_free(&text);
  shadow_buf_free(&js);
  shadow_buf_free(&other);
  shadow_buf_free(&msg);
  shadow_buf_free(&fds);
  shadow_pb_schema_free(s);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  sh(cmd);
}

int main(void) {
  test_wire();
  test_schemaless();
  test_deep();
  test_protoc();
  shadow_buf_free(&tree_buf);
  return check_report("test_protobuf");
}
