/* The upstream client's HTTP/2 legs against Debian's nginx with
 * `listen ... http2` (h2c with prior knowledge) and the Lua module: the
 * same API as HTTP/1.1 legs (whole sends, streamed bodies with on_drain,
 * pause and resume, abort, trailers, timeouts, close), with streams
 * sharing connections. Exit 0 means every check passed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "loopback.h"
#include "upstream.h"

static uv_loop_t loop;
static pid_t nginx_pid = -1;
static char tmpdir[] = "/tmp/test_upstream_h2.XXXXXX";

#define BIG (4 * 1024 * 1024)

/* ---- nginx ------------------------------------------------------------- */

static void stop_nginx(void) {
  if (nginx_pid > 0) {
    kill(nginx_pid, SIGTERM);
    waitpid(nginx_pid, NULL, 0);
    nginx_pid = -1;
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

static const char *nginx_conf =
    "%s"
    "worker_processes 1;\n"
    "pid %s/nginx.pid;\n"
    "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n"
    "events { worker_connections 256; }\n"
    "http {\n"
    "  access_log off;\n"
    "  client_body_temp_path %s/body;\n"
    "  proxy_temp_path %s/proxy;\n"
    "  fastcgi_temp_path %s/fastcgi;\n"
    "  uwsgi_temp_path %s/uwsgi;\n"
    "  scgi_temp_path %s/scgi;\n"
    "  keepalive_requests 100000;\n"
    "  server {\n"
    "    listen 127.0.0.1:%d http2;\n"
    "    location = /cl { add_header X-Conn $connection; return 200 hello; }\n"
    "    location = /trailers { add_trailer X-T done always;\n"
    "      return 200 body; }\n"
    "    location = /big { alias %s/big.bin; }\n"
    "    location = /204 { return 204; }\n"
    "    location = /echo {\n"
    "      client_max_body_size 64m; client_body_buffer_size 64m;\n"
    "      content_by_lua_block {\n"
    "        ngx.req.read_body()\n"
    "        ngx.header['X-Len'] = ngx.var.http_content_length or 'none'\n"
    "        ngx.header['X-Proto'] = ngx.var.server_protocol\n"
    "        ngx.header['X-Host'] = ngx.var.http_host or 'none'\n"
    "        ngx.print(ngx.req.get_body_data() or '')\n"
    "    } }\n"
    "    location = /sleep { content_by_lua_block {\n"
    "      ngx.sleep(tonumber(ngx.var.arg_t) or 1)\n"
    "      ngx.print('late')\n"
    "    } }\n"
    "  }\n"
    "  server {\n"
    "    listen 127.0.0.1:%d ssl;\n"
    "    ssl_certificate %s/srv.crt; ssl_certificate_key %s/srv.key;\n"
    "    location = /echo { content_by_lua_block {\n"
    "      ngx.req.read_body()\n"
    "      ngx.header['X-Proto'] = ngx.var.server_protocol\n"
    "      ngx.print(ngx.req.get_body_data() or '')\n"
    "    } }\n"
    "  }\n"
    "}\n";

static int start_nginx(int port, int tls_port) {
  if (!mkdtemp(tmpdir)) return -1;
  char path[256];
  char cmd[512];
  snprintf(cmd, sizeof(cmd),
           "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout "
           "srv.key -out srv.crt -subj /CN=localhost -days 2 2>/dev/null",
           tmpdir);
  if (system(cmd) != 0) return -1;
  snprintf(path, sizeof(path), "%s/big.bin", tmpdir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  for (int i = 0; i < BIG; i++)
    fputc('a' + i % 26, f);
  fclose(f);
  snprintf(path, sizeof(path), "%s/nginx.conf", tmpdir);
  f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f, nginx_conf, geteuid() == 0 ? "user root;\n" : "", tmpdir, tmpdir,
          tmpdir, tmpdir, tmpdir, tmpdir, port, tmpdir, tls_port, tmpdir,
          tmpdir);
  fclose(f);
  atexit(stop_nginx);
  nginx_pid = fork();
  if (nginx_pid == 0) {
    execl("/usr/sbin/nginx", "nginx", "-p", tmpdir, "-e", "stderr", "-c", path,
          "-g", "daemon off; error_log stderr;", (char *)NULL);
    _exit(127);
  }
  return nginx_pid > 0 && wait_port(port) == 0 && wait_port(tls_port) == 0 ? 0
                                                                           : -1;
}

/* ---- helpers ----------------------------------------------------------- */

typedef struct result_s {
  int done;
  int err;
  shadow_record_t *rec;
} result_t;

static void on_result(void *ud, int err, shadow_record_t *rec, double ms) {
  (void)ms;
  result_t *r = ud;
  CHECK(!r->done);
  r->done = 1;
  r->err = err;
  r->rec = rec;
}

static void wait_done(result_t *r) {
  while (!r->done)
    uv_run(&loop, UV_RUN_ONCE);
}

static void result_free(result_t *r) {
  shadow_record_free(r->rec);
  memset(r, 0, sizeof(*r));
}

static shadow_upstream_t *make(int port, const shadow_upstream_opts_t *o) {
  char url[64];
  snprintf(url, sizeof(url), "h2c://127.0.0.1:%d", port);
  shadow_upstream_t *u = NULL;
  char *err = NULL;
  if (shadow_upstream_new(&loop, url, o, &u, &err)) {
    fprintf(stderr, "shadow_upstream_new(%s): %s\n", url, err);
    exit(1);
  }
  return u;
}

static void finish(shadow_upstream_t *u) {
  shadow_upstream_close(u);
  uv_run(&loop, UV_RUN_DEFAULT);
}

static void send_get(shadow_upstream_t *u, const char *target, result_t *r) {
  memset(r, 0, sizeof(*r));
  CHECK(shadow_upstream_send(u, "GET", target, strlen(target), NULL, NULL, NULL,
                             0, on_result, r) == 0);
  CHECK(!r->done); /* never from inside send() */
}

static const char *hdr(const result_t *r, const char *name) {
  if (!r->rec) return "";
  const shadow_header_t *h = shadow_headers_find(&r->rec->headers, name);
  return h ? h->value : "";
}

/* A leg driven by hand: counts what comes, can pause at its head. */
typedef struct leg_s {
  shadow_upstream_leg_t *leg;
  int status, done, err, pause_at_head, drains;
  int64_t cl;
  size_t body;
  shadow_headers_t trailers;
} leg_t;

static void l_head(void *ud, int status, shadow_headers_t *h, int64_t cl) {
  (void)h;
  leg_t *l = ud;
  l->status = status;
  l->cl = cl;
  if (l->pause_at_head) shadow_upstream_leg_pause(l->leg);
}
static void l_body(void *ud, const char *data, size_t len) {
  (void)data;
  ((leg_t *)ud)->body += len;
}
static void l_done(void *ud, int err, const shadow_headers_t *t,
                   const char *detail) {
  (void)detail;
  leg_t *l = ud;
  CHECK(!l->done);
  l->done = 1;
  l->err = err;
  for (size_t i = 0; t && i < t->n; i++)
    shadow_headers_add(&l->trailers, t->v[i].name, t->v[i].name_len,
                       t->v[i].value, t->v[i].value_len);
}
static void l_drain(void *ud) {
  ((leg_t *)ud)->drains++;
}
static const shadow_upstream_handler_t l_handler = {
    NULL, l_head, l_body, NULL, l_done, l_drain, NULL};

static void run_until(int *flag) {
  while (!*flag)
    uv_run(&loop, UV_RUN_ONCE);
}

/* ---- tests ------------------------------------------------------------- */

static void test_basic(int port) {
  shadow_upstream_t *u = make(port, NULL);
  result_t r;
  send_get(u, "/cl", &r);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 200);
  CHECK(r.rec->body.len == 5 && memcmp(r.rec->body.data, "hello", 5) == 0);
  result_free(&r);
  /* Host becomes :authority; the body arrives whole. */
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  shadow_headers_add(&h, "Host", 4, "example.test", 12);
  shadow_headers_add(&h, "Connection", 10, "keep-alive", 10);
  memset(&r, 0, sizeof(r));
  CHECK(shadow_upstream_send(u, "POST", "/echo", 5, &h, NULL, "abc", 3,
                             on_result, &r) == 0);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->body.len == 3);
  CHECK(strcmp(hdr(&r, "x-proto"), "HTTP/2.0") == 0);
  CHECK(strcmp(hdr(&r, "x-host"), "example.test") == 0);
  CHECK(strcmp(hdr(&r, "x-len"), "3") == 0);
  result_free(&r);
  shadow_headers_free(&h);
  shadow_upstream_stats_t s;
  shadow_upstream_stats(u, &s);
  CHECK(s.h2_streams == 2 && s.connects == 1);
  finish(u);
}

/* 50 at once: streams of one connection; with max_streams 5, ten. */
static void test_multiplex(int port) {
  for (int pass = 0; pass < 2; pass++) {
    shadow_upstream_opts_t o;
    shadow_upstream_opts_default(&o);
    o.max_streams = pass ? 5 : 100;
    shadow_upstream_t *u = make(port, &o);
    result_t r[50];
    for (int i = 0; i < 50; i++)
      send_get(u, "/cl", &r[i]);
    for (int i = 0; i < 50; i++) {
      wait_done(&r[i]);
      CHECK(r[i].err == SHADOW_UPSTREAM_OK && r[i].rec->status == 200);
      result_free(&r[i]);
    }
    shadow_upstream_stats_t s;
    shadow_upstream_stats(u, &s);
    CHECK(s.h2_streams == 50);
    if (pass)
      CHECK(s.connects == 10);
    else
      CHECK(s.connects == 1);
    finish(u);
  }
}

/* A streamed body, 4 MiB in 64 KiB pieces, fed as on_drain allows. */
static void test_streamed_body(int port) {
  shadow_upstream_t *u = make(port, NULL);
  leg_t l;
  memset(&l, 0, sizeof(l));
  shadow_upstream_request_t r = {.method = "POST",
                                 .target = "/echo",
                                 .target_len = 5,
                                 .body_more = 1,
                                 .content_length = -1};
  CHECK(shadow_upstream_start(u, &r, &l_handler, &l, &l.leg) == 0);
  static char piece[64 * 1024];
  memset(piece, 'p', sizeof(piece));
  size_t sent = 0;
  int waits = 0;
  while (sent < BIG) {
    int rc = shadow_upstream_leg_body(l.leg, piece, sizeof(piece));
    CHECK(rc >= 0);
    sent += sizeof(piece);
    if (rc == 1) { /* wait for on_drain, as the dispatcher does */
      int before = l.drains;
      waits++;
      while (l.drains == before && !l.done)
        uv_run(&loop, UV_RUN_ONCE);
    }
  }
  CHECK(waits > 0);
  CHECK(shadow_upstream_leg_body_end(l.leg) == 0);
  run_until(&l.done);
  CHECK(l.err == SHADOW_UPSTREAM_OK && l.status == 200 && l.body == BIG);
  shadow_headers_free(&l.trailers);
  finish(u);
}

/* Paused at its head, a leg takes no body and holds a window at most; a
 * second stream on the same connection finishes meanwhile; resumed, the
 * first gets the rest. */
static void test_pause(int port) {
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.max_connections = 1;
  shadow_upstream_t *u = make(port, &o);
  leg_t l;
  memset(&l, 0, sizeof(l));
  l.pause_at_head = 1;
  shadow_upstream_request_t r = {
      .method = "GET", .target = "/big", .target_len = 4};
  CHECK(shadow_upstream_start(u, &r, &l_handler, &l, &l.leg) == 0);
  while (!l.status)
    uv_run(&loop, UV_RUN_ONCE);
  result_t other;
  send_get(u, "/cl", &other);
  wait_done(&other);
  CHECK(other.err == SHADOW_UPSTREAM_OK && other.rec->status == 200);
  result_free(&other);
  CHECK(l.body == 0 && !l.done);
  CHECK(shadow_upstream_connections(u) == 1);
  shadow_upstream_leg_resume(l.leg);
  CHECK(l.body == 0); /* never from inside resume() */
  run_until(&l.done);
  CHECK(l.err == SHADOW_UPSTREAM_OK && l.body == BIG);
  shadow_headers_free(&l.trailers);
  finish(u);
}

/* Abandoning a leg resets its stream; the connection serves on. */
static void test_abort(int port) {
  shadow_upstream_t *u = make(port, NULL);
  leg_t l;
  memset(&l, 0, sizeof(l));
  shadow_upstream_request_t r = {
      .method = "GET", .target = "/big", .target_len = 4};
  CHECK(shadow_upstream_start(u, &r, &l_handler, &l, &l.leg) == 0);
  while (!l.body)
    uv_run(&loop, UV_RUN_ONCE);
  shadow_upstream_leg_abort(l.leg);
  result_t r2;
  send_get(u, "/cl", &r2);
  wait_done(&r2);
  CHECK(r2.err == SHADOW_UPSTREAM_OK);
  result_free(&r2);
  CHECK(!l.done); /* no callback after abort */
  shadow_upstream_stats_t s;
  shadow_upstream_stats(u, &s);
  CHECK(s.connects == 1 && s.aborted == 1);
  /* An upload abandoned with body still queued: its bytes are not asked
   * for again (ASan watches), the connection serves on. */
  static char piece[256 * 1024];
  memset(piece, 'q', sizeof(piece));
  memset(&l, 0, sizeof(l));
  shadow_upstream_request_t up = {.method = "POST",
                                  .target = "/echo",
                                  .target_len = 5,
                                  .body = piece,
                                  .body_len = sizeof(piece),
                                  .body_more = 1,
                                  .content_length = -1};
  CHECK(shadow_upstream_start(u, &up, &l_handler, &l, &l.leg) == 0);
  for (int i = 0; i < 5; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(shadow_upstream_leg_body(l.leg, piece, sizeof(piece)) >= 0);
  shadow_upstream_leg_abort(l.leg);
  send_get(u, "/cl", &r2);
  wait_done(&r2);
  CHECK(r2.err == SHADOW_UPSTREAM_OK);
  result_free(&r2);
  CHECK(!l.done);
  finish(u);
}

/* A head that ends its stream (no body at all) says length 0. */
static void test_empty(int port) {
  shadow_upstream_t *u = make(port, NULL);
  leg_t l;
  memset(&l, 0, sizeof(l));
  shadow_upstream_request_t r = {
      .method = "GET", .target = "/204", .target_len = 4};
  CHECK(shadow_upstream_start(u, &r, &l_handler, &l, &l.leg) == 0);
  run_until(&l.done);
  CHECK(l.err == SHADOW_UPSTREAM_OK && l.status == 204 && l.cl == 0);
  shadow_headers_free(&l.trailers);
  finish(u);
}

static void test_trailers(int port) {
  shadow_upstream_t *u = make(port, NULL);
  leg_t l;
  memset(&l, 0, sizeof(l));
  shadow_upstream_request_t r = {
      .method = "GET", .target = "/trailers", .target_len = 9};
  CHECK(shadow_upstream_start(u, &r, &l_handler, &l, &l.leg) == 0);
  run_until(&l.done);
  CHECK(l.err == SHADOW_UPSTREAM_OK && l.status == 200 && l.body == 4);
  const shadow_header_t *t = shadow_headers_find(&l.trailers, "x-t");
  CHECK(t && t->value_len == 4 && memcmp(t->value, "done", 4) == 0);
  shadow_headers_free(&l.trailers);
  finish(u);
}

/* The head deadline and the total deadline end the stream, not the
 * connection; close() cancels what is in flight. */
static void test_timeouts(int port) {
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.timeout_ms = 200;
  shadow_upstream_t *u = make(port, &o);
  result_t r;
  send_get(u, "/sleep?t=2", &r);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_TIMEOUT);
  send_get(u, "/cl", &r);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_OK);
  result_free(&r);
  leg_t l;
  memset(&l, 0, sizeof(l));
  l.pause_at_head = 1;
  shadow_upstream_request_t big = {.method = "GET",
                                   .target = "/big",
                                   .target_len = 4,
                                   .total_timeout_ms = 300};
  CHECK(shadow_upstream_start(u, &big, &l_handler, &l, &l.leg) == 0);
  run_until(&l.done); /* paused, still held to its total deadline */
  CHECK(l.err == SHADOW_UPSTREAM_TIMEOUT);
  shadow_upstream_stats_t s;
  shadow_upstream_stats(u, &s);
  CHECK(s.connects == 1);
  send_get(u, "/sleep?t=2", &r);
  uv_run(&loop, UV_RUN_NOWAIT);
  shadow_upstream_close(u);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_CANCELED);
  uv_run(&loop, UV_RUN_DEFAULT);
}

/* An "auto" pool whose server has no h2: the first leg was made for h2
 * and its streamed body queued while the connection asked (ALPN); it goes
 * over HTTP/1.1 after all, its queued body in chunks. */
static void test_auto_fallback(int tls_port) {
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.protocol = SHADOW_UPSTREAM_AUTO;
  o.tls.verify = 0;
  /* A handshake under valgrind takes seconds. */
  o.connect_timeout_ms = o.timeout_ms = 30000;
  char url[64];
  snprintf(url, sizeof(url), "https://127.0.0.1:%d", tls_port);
  shadow_upstream_t *u = NULL;
  char *err = NULL;
  CHECK(shadow_upstream_new(&loop, url, &o, &u, &err) == 0);
  free(err);
  if (!u) return;
  leg_t l;
  memset(&l, 0, sizeof(l));
  shadow_upstream_request_t r = {.method = "POST",
                                 .target = "/echo",
                                 .target_len = 5,
                                 .body = "hello ",
                                 .body_len = 6,
                                 .body_more = 1,
                                 .content_length = -1};
  CHECK(shadow_upstream_start(u, &r, &l_handler, &l, &l.leg) == 0);
  CHECK(shadow_upstream_leg_body(l.leg, "world", 5) == 0);
  CHECK(shadow_upstream_leg_body_end(l.leg) == 0);
  run_until(&l.done);
  CHECK(l.err == SHADOW_UPSTREAM_OK && l.status == 200 && l.body == 11);
  shadow_headers_free(&l.trailers);
  /* Learned: the next one goes as HTTP/1.1 from the start. */
  result_t res;
  memset(&res, 0, sizeof(res));
  CHECK(shadow_upstream_send(u, "POST", "/echo", 5, NULL, NULL, "again", 5,
                             on_result, &res) == 0);
  wait_done(&res);
  CHECK(res.err == SHADOW_UPSTREAM_OK &&
        strcmp(hdr(&res, "x-proto"), "HTTP/1.1") == 0);
  result_free(&res);
  shadow_upstream_stats_t s;
  shadow_upstream_stats(u, &s);
  CHECK(s.h2_streams == 0);
  finish(u);
}

static void test_urls(void) {
  char *err = NULL;
  CHECK(shadow_upstream_url_check("h2c://127.0.0.1:80/base", &err) == 0);
  CHECK(shadow_upstream_url_check("h2c:/127.0.0.1", &err) == -EINVAL);
  free(err);
  err = NULL;
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.protocol = SHADOW_UPSTREAM_AUTO;
  shadow_upstream_t *u = NULL;
  CHECK(shadow_upstream_new(&loop, "http://127.0.0.1:1", &o, &u, &err) ==
        -EINVAL);
  CHECK(err && strstr(err, "https://"));
  free(err);
  CHECK(shadow_upstream_protocol_parse("h2") == SHADOW_UPSTREAM_H2);
  CHECK(shadow_upstream_protocol_parse("h3") == -1);
  CHECK(strcmp(shadow_upstream_protocol_name(SHADOW_UPSTREAM_AUTO), "auto") ==
        0);
}

int main(void) {
  alarm(100); /* a hang is a failure, not a stuck CI job */
  signal(SIGPIPE, SIG_IGN);
  CHECK(uv_loop_init(&loop) == 0);
  int port = free_port(), tls_port = free_port();
  if (start_nginx(port, tls_port)) {
    fprintf(stderr, "nginx did not start on port %d\n", port);
    return 1;
  }
  test_basic(port);
  test_multiplex(port);
  test_streamed_body(port);
  test_pause(port);
  test_abort(port);
  test_trailers(port);
  test_empty(port);
  test_timeouts(port);
  test_auto_fallback(tls_port);
  test_urls();
  stop_nginx();
  CHECK(uv_loop_close(&loop) == 0);
  return check_report("test_upstream_h2");
}
