/* The gRPC comparison: framing (length-prefixed messages), grpc-encoding
 * gzip, trailers, grpc-status and grpc-message beside the status, bad
 * frames, streams message by message, and method output types from a
 * descriptor set that Debian's protoc makes at test time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "capture_line.h"
#include "check.h"
#include "diff.h"
#include "grpc.h"
#include "noise.h"
#include "policy.h"
#include "protobuf.h"
#include "record_parse.h"
#include "redact.h"

/* A User (api.proto) by hand: name = 1 (string), age = 2 (varint). */
static size_t user(uint8_t *out, const char *name, int age) {
  size_t n = strlen(name), k = 0;
  out[k++] = 0x0a;
  out[k++] = (uint8_t)n;
  memcpy(out + k, name, n);
  k += n;
  out[k++] = 0x10;
  out[k++] = (uint8_t)age;
  return k;
}

/* Appends one length-prefixed message. */
static void frame(shadow_buf_t *b, int compressed, const void *p, size_t n) {
  uint8_t h[5] = {(uint8_t)compressed, (uint8_t)(n >> 24), (uint8_t)(n >> 16),
                  (uint8_t)(n >> 8), (uint8_t)n};
  shadow_buf_append(b, (const char *)h, 5);
  shadow_buf_append(b, p, n);
}

static void frame_user(shadow_buf_t *b, const char *name, int age) {
  uint8_t m[64];
  frame(b, 0, m, user(m, name, age));
}

static size_t gzip_of(const void *in, size_t n, uint8_t *out, size_t cap) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  deflateInit2(&zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
  zs.next_in = (unsigned char *)(uintptr_t)in;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  deflate(&zs, Z_FINISH);
  size_t got = cap - zs.avail_out;
  deflateEnd(&zs);
  return got;
}

static void grpc_record(shadow_record_t *r, const shadow_buf_t *body,
                        const char *status, const char *message) {
  shadow_record_init(r);
  r->status = 200;
  shadow_headers_add(&r->headers, "content-type", 12, "application/grpc", 16);
  shadow_buf_append(&r->body, body->data ? body->data : "", body->len);
  if (status) shadow_headers_add(&r->trailers, "grpc-status", 11, status, 1);
  if (message)
    shadow_headers_add(&r->trailers, "grpc-message", 12, message,
                       strlen(message));
}

static shadow_diff_result_t res = SHADOW_DIFF_RESULT_INIT;

static int has(const char *s) {
  int ok = res.json.data && strstr(res.json.data, s) != NULL;
  if (!ok) fprintf(stderr, "  missing %s in %s\n", s, res.json.data);
  return ok;
}

static int diff(const shadow_diff_opts_t *o, const char *path,
                const shadow_record_t *p, const shadow_record_t *c) {
  return shadow_diff_records_at(o, path, path ? strlen(path) : 0, p, c, &res,
                                NULL);
}

static void test_framing(void) {
  CHECK(shadow_grpc_content_type("application/grpc", 16) == SHADOW_GRPC_PROTO);
  CHECK(shadow_grpc_content_type(" application/grpc+proto; x=1", 28) ==
        SHADOW_GRPC_PROTO);
  CHECK(shadow_grpc_content_type("application/grpc+json", 21) ==
        SHADOW_GRPC_JSON);
  CHECK(shadow_grpc_content_type("application/grpc+thrift", 23) ==
        SHADOW_GRPC_OTHER);
  CHECK(shadow_grpc_content_type("application/grpc-web", 20) ==
        SHADOW_GRPC_NOT);
  CHECK(shadow_grpc_content_type("application/json", 16) == SHADOW_GRPC_NOT);
  CHECK(shadow_grpc_encoding(NULL, 0) == SHADOW_GRPC_IDENTITY);
  CHECK(shadow_grpc_encoding("identity", 8) == SHADOW_GRPC_IDENTITY);
  CHECK(shadow_grpc_encoding("gzip", 4) == SHADOW_GRPC_GZIP);
  CHECK(shadow_grpc_encoding("snappy", 6) == SHADOW_GRPC_UNKNOWN);

  shadow_buf_t b = SHADOW_BUF_INIT;
  CHECK(shadow_grpc_count("", 0, NULL, NULL) == 0);
  frame_user(&b, "Ada", 36);
  frame_user(&b, "Bob", 7);
  CHECK(shadow_grpc_count(b.data, b.len, NULL, NULL) == 2);
  size_t bad = 0;
  const char *why = NULL;
  /* A length past the end of the body: never read beyond it. */
  CHECK(shadow_grpc_count(b.data, b.len - 1, &bad, &why) == -1);
  CHECK(bad == 12 && why && strstr(why, "longer"));
  CHECK(shadow_grpc_count(b.data, 3, &bad, &why) == -1);
  CHECK(bad == 0 && strstr(why, "cut short"));
  b.data[0] = 7;
  CHECK(shadow_grpc_count(b.data, b.len, &bad, &why) == -1);
  CHECK(strstr(why, "flag"));
  /* A 4 GiB claim in a 5-byte body. */
  static const char huge[] = {0, '\xff', '\xff', '\xff', '\xff'};
  CHECK(shadow_grpc_count(huge, 5, &bad, &why) == -1);
  shadow_buf_free(&b);
}

static void test_unary_and_status(void) {
  shadow_buf_t a = SHADOW_BUF_INIT, c = SHADOW_BUF_INIT;
  frame_user(&a, "Ada", 36);
  frame_user(&c, "Eve", 36);
  shadow_record_t p, q;
  grpc_record(&p, &a, "0", NULL);
  grpc_record(&q, &c, "0", NULL);
  CHECK(diff(NULL, NULL, &p, &q) == SHADOW_PART_BODY);
  CHECK(has("\"kind\":\"protobuf\""));
  CHECK(has("{\"op\":\"replace\",\"path\":\"/1\",\"primary\":\"Ada\","
            "\"candidate\":\"Eve\"}"));
  CHECK(has("\"grpc\":{\"primary\":0,\"candidate\":0}"));
  CHECK(has("\"messages\":{\"primary\":1,\"candidate\":1}"));
  CHECK(has("\"trailers\":{\"differs\":false"));
  shadow_record_release(&q);

  /* grpc-status differs (in a trailers-only reply: in the headers). */
  shadow_buf_t none = SHADOW_BUF_INIT;
  grpc_record(&q, &none, NULL, NULL);
  shadow_headers_add(&q.headers, "grpc-status", 11, "5", 1);
  shadow_headers_add(&q.headers, "grpc-message", 12, "no such user", 12);
  int parts = diff(NULL, NULL, &p, &q);
  CHECK(parts & SHADOW_PART_STATUS);
  CHECK(!(parts & SHADOW_PART_HEADERS)); /* grpc-* are not headers here */
  CHECK(has("\"status\":{\"differs\":true,\"primary\":200,\"candidate\":200,"
            "\"grpc\":{\"primary\":0,\"candidate\":5},"
            "\"grpc_message\":{\"primary\":null,\"candidate\":\"no such "
            "user\"}}"));
  /* No message at all on one side: a stream of 0 vs 1, the one removed. */
  CHECK(has("{\"op\":\"remove\",\"path\":\"/0\",\"primary\":{\"1\":\"Ada\","
            "\"2\":36}}"));
  CHECK(res.fields.data &&
        memmem(res.fields.data, res.fields.len, "status", 7) != NULL);
  shadow_record_release(&q);

  /* Another trailer differs: compared as headers are, ignore.headers
   * applies. */
  grpc_record(&q, &a, "0", NULL);
  shadow_headers_add(&q.trailers, "x-cost", 6, "9", 1);
  CHECK(diff(NULL, NULL, &p, &q) == SHADOW_PART_HEADERS);
  CHECK(has("\"trailers\":{\"differs\":true,\"diffs\":[{\"name\":\"x-cost\","
            "\"primary\":null,\"candidate\":\"9\"}]}"));
  CHECK(memmem(res.fields.data, res.fields.len, "trailer:x-cost", 15));
  shadow_diff_opts_t *o = shadow_diff_opts_new();
  CHECK(shadow_diff_opts_ignore_header(o, "x-cost") == 0);
  CHECK(diff(o, NULL, &p, &q) == 0);
  shadow_diff_opts_free(o);
  shadow_record_release(&q);
  shadow_record_release(&p);
  shadow_buf_free(&a);
  shadow_buf_free(&c);
  shadow_buf_free(&none);
}

static void test_gzip(void) {
  uint8_t m[64], z[128];
  size_t n = user(m, "Ada", 36);
  size_t zn = gzip_of(m, n, z, sizeof z);
  shadow_buf_t a = SHADOW_BUF_INIT, c = SHADOW_BUF_INIT;
  frame(&a, 0, m, n);
  frame(&c, 1, z, zn);
  shadow_record_t p, q;
  grpc_record(&p, &a, "0", NULL);
  grpc_record(&q, &c, "0", NULL);
  shadow_headers_add(&q.headers, "grpc-encoding", 13, "gzip", 4);
  /* The same message, compressed on one side only: they agree, and
   * grpc-encoding says only how it travelled. */
  CHECK(diff(NULL, NULL, &p, &q) == 0);
  shadow_headers_add(&q.headers, "grpc-accept-encoding", 20, "gzip", 4);
  CHECK(diff(NULL, NULL, &p, &q) == 0); /* negotiation, not the reply */

  /* A bad gzip stream: compared as bytes, and said so. */
  z[zn / 2] ^= 0xff;
  z[zn / 2 + 1] ^= 0xff;
  shadow_buf_reset(&c);
  frame(&c, 1, z, zn);
  shadow_record_release(&q);
  grpc_record(&q, &c, "0", NULL);
  shadow_headers_add(&q.headers, "grpc-encoding", 13, "gzip", 4);
  CHECK(diff(NULL, NULL, &p, &q) == SHADOW_PART_BODY);
  CHECK(has("candidate message 0: bad gzip stream, compared as bytes"));

  /* An unknown encoding: bytes too. */
  shadow_headers_set(&q.headers, "grpc-encoding", "snappy", 6);
  CHECK(diff(NULL, NULL, &p, &q) & SHADOW_PART_BODY);
  CHECK(has("unknown grpc-encoding"));

  /* Inflating past diff_bytes: the message compares by digest. */
  static uint8_t big[8192], bz[8192];
  memset(big, 'a', sizeof big);
  size_t bzn = gzip_of(big, sizeof big, bz, sizeof bz);
  shadow_buf_reset(&c);
  frame(&c, 1, bz, bzn);
  shadow_record_release(&q);
  grpc_record(&q, &c, "0", NULL);
  shadow_headers_add(&q.headers, "grpc-encoding", 13, "gzip", 4);
  shadow_diff_opts_t *o = shadow_diff_opts_new();
  shadow_diff_opts_set_diff_bytes(o, 1024);
  CHECK(diff(o, NULL, &p, &q) & SHADOW_PART_BODY);
  CHECK(has("inflates past limits.diff_bytes, compared by digest"));
  CHECK(has("xxh3-128:"));
  shadow_diff_opts_free(o);
  shadow_record_release(&p);
  shadow_record_release(&q);
  shadow_buf_free(&a);
  shadow_buf_free(&c);
}

static void test_stream_and_bad_frames(void) {
  shadow_buf_t a = SHADOW_BUF_INIT, c = SHADOW_BUF_INIT;
  frame_user(&a, "Ada", 36);
  frame_user(&a, "Bob", 7);
  frame_user(&a, "Cy", 9);
  frame_user(&c, "Ada", 36);
  frame_user(&c, "Bob", 8);
  shadow_record_t p, q;
  grpc_record(&p, &a, "0", NULL);
  grpc_record(&q, &c, "0", NULL);
  CHECK(diff(NULL, NULL, &p, &q) == SHADOW_PART_BODY);
  CHECK(has("{\"op\":\"replace\",\"path\":\"/1/2\",\"primary\":7,"
            "\"candidate\":8}"));
  CHECK(has("{\"op\":\"remove\",\"path\":\"/2\",\"primary\":{\"1\":\"Cy\","
            "\"2\":9}}"));
  CHECK(has("2 fields differ in a stream of 3 primary and 2 candidate"));
  /* Fields are named per message, as rules are: the index comes off; a
   * message added or removed is the message itself, "body:". */
  CHECK(res.nfields == 2);
  CHECK(memcmp(res.fields.data, "body:/2\0body:\0", 15) == 0);
  /* A unary rule applies to each message of the stream. */
  shadow_diff_opts_t *o = shadow_diff_opts_new();
  CHECK(shadow_diff_opts_ignore_json(o, "/2") == 0);
  CHECK(diff(o, NULL, &p, &q) == SHADOW_PART_BODY);
  CHECK(res.json.data && !strstr(res.json.data, "\"/1/2\""));
  CHECK(has("\"summary\":\"1 field differs in a stream"));
  shadow_diff_opts_free(o);

  /* A message longer than its frame: the bodies compare as bytes. */
  shadow_record_release(&q);
  shadow_buf_t cut = SHADOW_BUF_INIT;
  shadow_buf_append(&cut, a.data, a.len - 2);
  grpc_record(&q, &cut, "0", NULL);
  CHECK(diff(NULL, NULL, &p, &q) == SHADOW_PART_BODY);
  CHECK(has("\"kind\":\"bytes\""));
  CHECK(has("the candidate's gRPC framing is bad at byte 24 (message longer "
            "than the rest of the body); bodies differ"));
  shadow_record_release(&p);
  shadow_record_release(&q);
  shadow_buf_free(&a);
  shadow_buf_free(&c);
  shadow_buf_free(&cut);
}

static void test_record_file(void) {
  /* A recorded reply: chunked, its trailers after the last chunk. */
  static const char text[] = "HTTP/2 200\r\ncontent-type: application/grpc\r\n"
                             "transfer-encoding: chunked\r\n\r\n"
                             "0\r\ngrpc-status: 3\r\ngrpc-message: bad\r\n\r\n";
  shadow_record_t r;
  shadow_record_init(&r);
  char err[128];
  CHECK(shadow_record_parse(&r, text, sizeof text - 1, err, sizeof err) == 0);
  CHECK(r.status == 200 && r.body.len == 0 && r.trailers.n == 2);
  const shadow_header_t *h = shadow_headers_find(&r.trailers, "grpc-status");
  CHECK(h && h->value_len == 1 && h->value[0] == '3');
  shadow_record_release(&r);
  static const char badt[] = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
                             "\r\n0\r\nno colon here\r\n\r\n";
  shadow_record_init(&r);
  CHECK(shadow_record_parse(&r, badt, sizeof badt - 1, err, sizeof err) ==
        -EINVAL);
  CHECK(strstr(err, "bad trailer line") != NULL);
  shadow_record_release(&r);
}

/* A capture line carries the response's trailers and an HTTP/2
 * request's protocol, and reads them back; older lines read as HTTP/1. */
static void test_capture(void) {
  shadow_buf_t body = SHADOW_BUF_INIT, line = SHADOW_BUF_INIT;
  frame_user(&body, "Ada", 36);
  shadow_record_t rec;
  grpc_record(&rec, &body, "5", "gone");
  shadow_headers_t req = SHADOW_HEADERS_INIT;
  shadow_headers_add(&req, "content-type", 12, "application/grpc", 16);
  shadow_capture_exchange_t x = {.id = 1,
                                 .method = "POST",
                                 .target = "/shop.v1.Users/GetUser",
                                 .target_len = 22,
                                 .peer = "",
                                 .http_major = 2,
                                 .headers = &req,
                                 .body = body.data,
                                 .body_len = body.len,
                                 .response = &rec,
                                 .first_byte_ms = -1,
                                 .total_ms = -1};
  CHECK(shadow_capture_format(&line, &x, NULL, 1 << 20) == 0);
  CHECK(strstr(line.data, "\"protocol\":\"h2\"") != NULL);
  CHECK(strstr(line.data, "\"trailers\":[[\"grpc-status\",\"5\"],"
                          "[\"grpc-message\",\"gone\"]]") != NULL);
  shadow_capture_entry_t e;
  shadow_capture_entry_init(&e);
  char err[256] = "";
  CHECK(shadow_capture_parse(line.data, line.len, &e, err, sizeof err) == 0);
  CHECK(e.http_major == 2);
  CHECK(e.response.trailers.n == 2);
  CHECK(e.response.body.len == body.len &&
        memcmp(e.response.body.data, body.data, body.len) == 0);
  /* The same exchange over HTTP/1.1: no protocol member, read as 1. */
  x.http_major = 1;
  shadow_buf_reset(&line);
  CHECK(shadow_capture_format(&line, &x, NULL, 1 << 20) == 0);
  CHECK(strstr(line.data, "\"protocol\"") == NULL);
  CHECK(shadow_capture_parse(line.data, line.len, &e, err, sizeof err) == 0);
  CHECK(e.http_major == 1);
  /* A protocol this version does not know is refused, said so. */
  char *at = strstr(line.data, "\"tls\":false,");
  CHECK(at != NULL);
  if (at) {
    shadow_buf_t bad = SHADOW_BUF_INIT;
    size_t off = (size_t)(at - line.data) + strlen("\"tls\":false,");
    shadow_buf_append(&bad, line.data, off);
    shadow_buf_puts(&bad, "\"protocol\":\"h3\",");
    shadow_buf_append(&bad, line.data + off, line.len - off);
    CHECK(shadow_capture_parse(bad.data, bad.len, &e, err, sizeof err) ==
          -EINVAL);
    CHECK(strstr(err, "request.protocol") != NULL);
    shadow_buf_free(&bad);
  }
  shadow_capture_entry_release(&e);
  /* A secret in a trailer is marked as in a header. */
  shadow_redact_t *rd = shadow_redact_new();
  CHECK(rd && shadow_redact_add_header(rd, "x-token") == 0);
  shadow_headers_add(&rec.trailers, "x-token", 7, "hunter2", 7);
  CHECK(shadow_redact_record(rd, &rec) == 0);
  const shadow_header_t *tok = shadow_headers_find(&rec.trailers, "x-token");
  CHECK(tok && !strstr(tok->value, "hunter2") &&
        strstr(tok->value, "redacted") != NULL);
  shadow_redact_free(rd);
  shadow_headers_free(&req);
  shadow_record_release(&rec);
  shadow_buf_free(&body);
  shadow_buf_free(&line);
}

static shadow_buf_t seen = SHADOW_BUF_INIT;

static void collect(void *ud, const char *field, size_t len, unsigned shape,
                    double delta) {
  (void)ud;
  (void)shape;
  (void)delta;
  shadow_buf_append(&seen, field, len);
  shadow_buf_putc(&seen, ';');
}

/* A secondary that differs in the same trailer masks it; a stream's body
 * ops are masked op by op, as JSON bodies' are. */
static void test_noise(void) {
  shadow_buf_t a = SHADOW_BUF_INIT, c = SHADOW_BUF_INIT;
  frame_user(&a, "Ada", 36);
  frame_user(&a, "Bob", 7);
  frame_user(&c, "Ada", 37);
  frame_user(&c, "Bob", 8);
  shadow_record_t p, q, s;
  grpc_record(&p, &a, "0", NULL);
  grpc_record(&q, &c, "0", NULL);
  grpc_record(&s, &a, "0", NULL);
  shadow_headers_add(&q.trailers, "x-host", 6, "c1", 2);
  shadow_headers_add(&s.trailers, "x-host", 6, "p2", 2);
  /* The secondary's age differs in message 0 only. */
  shadow_buf_t sb = SHADOW_BUF_INIT;
  frame_user(&sb, "Ada", 40);
  frame_user(&sb, "Bob", 7);
  shadow_buf_reset(&s.body);
  shadow_buf_append(&s.body, sb.data, sb.len);
  shadow_diff_result_t noise = SHADOW_DIFF_RESULT_INIT;
  CHECK(diff(NULL, NULL, &p, &q) == (SHADOW_PART_HEADERS | SHADOW_PART_BODY));
  CHECK(shadow_diff_records_at(NULL, NULL, 0, &p, &s, &noise, NULL) ==
        (SHADOW_PART_HEADERS | SHADOW_PART_BODY));
  /* What the noise table learns: per message, as fields are named (no
   * "/0", "/1" in front; field numbers fold as indexes do). */
  CHECK(shadow_noise_observe(&res, collect, NULL) == 0);
  CHECK(seen.data && strcmp(seen.data, "trailer:x-host;body:/*;body:/*;") == 0);
  shadow_buf_free(&seen);
  CHECK(shadow_noise_mask(&res, &noise, NULL) == 0);
  CHECK(res.parts == SHADOW_PART_BODY); /* the trailer was noise */
  CHECK(has("\"trailers\":{\"differs\":false"));
  CHECK(has("\"path\":\"/1/2\""));
  CHECK(!strstr(res.json.data, "\"/0/2\""));
  shadow_diff_result_free(&noise);
  shadow_record_release(&p);
  shadow_record_release(&q);
  shadow_record_release(&s);
  shadow_buf_free(&a);
  shadow_buf_free(&c);
  shadow_buf_free(&sb);
}

/* Without a route hook a gRPC call is routed by its method's path. */
static void test_route(void) {
  shadow_request_t q;
  memset(&q, 0, sizeof q);
  q.method = "POST";
  shadow_buf_puts(&q.target, "/shop.v1.Users/GetUser?trace=1");
  shadow_buf_t route = SHADOW_BUF_INIT;
  shadow_policy_default_route_of(&q, &route);
  CHECK(route.data && strcmp(route.data, "POST /shop.v1.Users/GetUser") == 0);
  CHECK(!shadow_policy_is_grpc(&q));
  shadow_headers_add(&q.headers, "content-type", 12, "application/grpc+proto",
                     22);
  CHECK(shadow_policy_is_grpc(&q));
  shadow_buf_reset(&route);
  shadow_policy_default_route_of(&q, &route);
  CHECK(route.data && strcmp(route.data, "/shop.v1.Users/GetUser") == 0);
  /* Numbers in a method name are not folded to :id. */
  shadow_buf_reset(&q.target);
  shadow_buf_puts(&q.target, "/v2.Api/Get2");
  shadow_buf_reset(&route);
  shadow_policy_default_route_of(&q, &route);
  CHECK(route.data && strcmp(route.data, "/v2.Api/Get2") == 0);
  shadow_buf_free(&route);
  shadow_buf_free(&q.target);
  shadow_headers_free(&q.headers);
}

static char dir[64];

static int sh(const char *cmd) {
  return system(cmd);
}

static void test_methods(void) {
  char proto[512], cmd[2048], path[128];
  const char *self = __FILE__, *slash = strrchr(self, '/');
  snprintf(proto, sizeof proto, "%.*s/../fixtures/proto",
           slash ? (int)(slash - self) : 1, slash ? self : ".");
  if (sh("protoc --version > /dev/null 2>&1")) {
    printf("test_grpc: SKIPPED the protoc cases: no protoc on PATH\n");
    return;
  }
  snprintf(dir, sizeof dir, "/tmp/test_grpc.XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  snprintf(cmd, sizeof cmd,
           "protoc -I%s --descriptor_set_out=%s/users.pb --include_imports "
           "users.proto",
           proto, dir);
  CHECK(sh(cmd) == 0);
  snprintf(path, sizeof path, "%s/users.pb", dir);
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  if (!f) return;
  static char fds[65536];
  size_t n = fread(fds, 1, sizeof fds, f);
  fclose(f);
  shadow_diff_opts_t *o = shadow_diff_opts_new();
  char err[256];
  CHECK(shadow_diff_opts_grpc(o, fds, n, err, sizeof err) == 0);
  CHECK(shadow_diff_opts_grpc_methods(o) == 3);
  CHECK(shadow_diff_opts_grpc(o, "nope", 4, err, sizeof err) == -EINVAL);
  CHECK(strstr(err, "not a descriptor set") != NULL);
  CHECK(shadow_diff_opts_grpc_methods(o) == 3); /* the good one stays */

  shadow_buf_t a = SHADOW_BUF_INIT, c = SHADOW_BUF_INIT;
  frame_user(&a, "Ada", 36);
  frame_user(&c, "Eve", 36);
  shadow_record_t p, q;
  grpc_record(&p, &a, "0", NULL);
  grpc_record(&q, &c, "0", NULL);
  CHECK(diff(o, "/shop.v1.Users/GetUser?x=1", &p, &q) == SHADOW_PART_BODY);
  CHECK(has("\"path\":\"/name\",\"primary\":\"Ada\""));
  /* A method the set lacks: by number. */
  CHECK(diff(o, "/shop.v1.Users/Nope", &p, &q) == SHADOW_PART_BODY);
  CHECK(has("\"path\":\"/1\""));
  /* A stream: by name under each index. */
  frame_user(&c, "Bob", 2);
  shadow_record_release(&q);
  grpc_record(&q, &c, "0", NULL);
  CHECK(diff(o, "/shop.v1.Users/ListUsers", &p, &q) == SHADOW_PART_BODY);
  CHECK(has("\"path\":\"/0/name\""));
  CHECK(has("{\"op\":\"add\",\"path\":\"/1\",\"candidate\":{\"name\":"
            "\"Bob\",\"age\":2}}"));
  shadow_record_release(&p);
  shadow_record_release(&q);
  shadow_buf_free(&a);
  shadow_buf_free(&c);
  shadow_diff_opts_free(o);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  sh(cmd);
}

int main(void) {
  test_framing();
  test_unary_and_status();
  test_gzip();
  test_stream_and_bad_frames();
  test_record_file();
  test_capture();
  test_noise();
  test_route();
  test_methods();
  shadow_diff_result_free(&res);
  return check_report("test_grpc");
}
