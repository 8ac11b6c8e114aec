/* The upstream client against real backends: Debian's nginx with the Lua
 * module for well-behaved HTTP (framing, keep-alive, bodies, slowness), and
 * a small raw TCP server in a thread for the faults nginx will not commit
 * (garbage, a lying Content-Length, huge headers, a keep-alive connection
 * closed under our feet). Exit 0 means every check passed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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
static char tmpdir[] = "/tmp/test_upstream.XXXXXX";

/* ---- helpers ----------------------------------------------------------- */

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
    "  keepalive_requests 10000;\n"
    "  server {\n"
    "    listen 127.0.0.1:%d;\n"
    "    location = /cl { add_header X-Conn $connection; return 200 hello; }\n"
    "    location = /chunked { content_by_lua_block {\n"
    "      ngx.header['X-Conn'] = ngx.var.connection\n"
    "      ngx.print('abc'); ngx.flush(true); ngx.print('def')\n"
    "    } }\n"
    "    location = /204 { return 204; }\n"
    "    location = /304 { content_by_lua_block {\n"
    "      ngx.status = 304; ngx.header['ETag'] = '\"v1\"'\n"
    "      ngx.send_headers(); ngx.exit(ngx.HTTP_OK)\n"
    "    } }\n"
    "    location = /echo {\n"
    "      client_max_body_size 10m; client_body_buffer_size 10m;\n"
    "      content_by_lua_block {\n"
    "        ngx.req.read_body()\n"
    "        ngx.header['X-Len'] = ngx.var.http_content_length or 'none'\n"
    "        ngx.header['X-Method'] = ngx.req.get_method()\n"
    "        ngx.print(ngx.req.get_body_data() or '')\n"
    "    } }\n"
    "    location /headers { content_by_lua_block {\n"
    "      local h = ngx.req.get_headers()\n"
    "      ngx.header['X-Host'] = h['host'] or 'none'\n"
    "      ngx.header['X-Proxy'] = h['proxy-authorization'] or 'none'\n"
    "      ngx.header['X-Keep'] = h['x-keep'] or 'none'\n"
    "      ngx.header['X-Extra'] = h['x-shadow-request'] or 'none'\n"
    "      ngx.header['X-Uri'] = ngx.var.request_uri\n"
    "      ngx.print('ok')\n"
    "    } }\n"
    "    location = /sleep { content_by_lua_block {\n"
    "      ngx.sleep(tonumber(ngx.var.arg_t) or 1)\n"
    "      ngx.header['X-Conn'] = ngx.var.connection\n"
    "      ngx.print('late')\n"
    "    } }\n"
    "    location = /teapot { content_by_lua_block {\n"
    "      ngx.status = 418; ngx.header['X-Custom'] = 'teapot'\n"
    "      ngx.print('short and stout')\n"
    "    } }\n"
    "  }\n"
    "}\n";

static int start_nginx(int port) {
  if (!mkdtemp(tmpdir)) return -1;
  char path[256];
  snprintf(path, sizeof(path), "%s/nginx.conf", tmpdir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f, nginx_conf, geteuid() == 0 ? "user root;\n" : "", tmpdir, tmpdir,
          tmpdir, tmpdir, tmpdir, tmpdir, port);
  fclose(f);
  atexit(stop_nginx);
  nginx_pid = fork();
  if (nginx_pid == 0) {
    execl("/usr/sbin/nginx", "nginx", "-p", tmpdir, "-e", "stderr", "-c", path,
          "-g", "daemon off; error_log stderr;", (char *)NULL);
    _exit(127);
  }
  return nginx_pid > 0 && wait_port(port) == 0 ? 0 : -1;
}

/* ---- the raw server: faults on demand, one connection at a time -------- */

static int raw_fd = -1;
static int raw_port;
static int raw_accepted; /* connections accepted; read after a join point */
static pthread_mutex_t raw_mu = PTHREAD_MUTEX_INITIALIZER;

static void put(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}
static void puts_fd(int fd, const char *s) {
  put(fd, s, strlen(s));
}

/* Reads one request head (and a Content-Length body) into buf. */
static int read_request(int fd, char *buf, size_t cap) {
  size_t len = 0;
  char *end = NULL;
  while (!(end = strstr(buf, "\r\n\r\n"))) {
    if (len + 1 >= cap) return -1;
    ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
    if (r <= 0) return -1;
    len += (size_t)r;
    buf[len] = '\0';
  }
  const char *cl = strcasestr(buf, "\r\ncontent-length:");
  size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
  size_t need = (size_t)(end + 4 - buf) + body;
  while (len < need) {
    char tmp[4096];
    ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
    if (r <= 0) return -1;
    len += (size_t)r;
  }
  return 0;
}

/* /landing's body: large, framed by Content-Length, a known pattern. */
#define LANDING_LEN 200000
static char landing_byte(size_t i) {
  return (char)('a' + (i * 7) % 26);
}

static void pause_ms(long ms) {
  struct timespec ts = {0, ms * 1000 * 1000};
  nanosleep(&ts, NULL);
}

/* Its head in two pieces and its body in several, a moment apart, so the
 * client reads the head across reads and the body over many; with extra,
 * bytes nobody asked for ride along with the body's last piece. */
static void serve_landing(int fd, int extra) {
  puts_fd(fd, "HTTP/1.1 200 OK\r\nX-Piece: ");
  pause_ms(20);
  char head[96];
  snprintf(head, sizeof(head), "two\r\nContent-Length: %d\r\n\r\n",
           LANDING_LEN);
  puts_fd(fd, head);
  static char body[LANDING_LEN + 8];
  for (size_t i = 0; i < LANDING_LEN; i++)
    body[i] = landing_byte(i);
  memcpy(body + LANDING_LEN, "stray", 5);
  size_t piece = 30011;
  for (size_t off = 0; off < LANDING_LEN; off += piece) {
    size_t n = LANDING_LEN - off < piece ? LANDING_LEN - off : piece;
    if (off + n == LANDING_LEN && extra) n += 5;
    put(fd, body + off, n);
    pause_ms(5);
  }
}

static void serve(int fd) {
  char buf[16384];
  for (int n = 1;; n++) {
    memset(buf, 0, sizeof(buf));
    if (read_request(fd, buf, sizeof(buf))) return;
    const char *path = strchr(buf, ' ');
    if (!path) return;
    path++;
    if (!strncmp(path, "/garbage ", 9)) {
      put(fd, "\x01\x02 this is not http\r\n\r\n", 24);
      return;
    } else if (!strncmp(path, "/lie ", 5)) {
      puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
      return;
    } else if (!strncmp(path, "/huge ", 6)) {
      puts_fd(fd, "HTTP/1.1 200 OK\r\nX-Big: ");
      char a[1024];
      memset(a, 'a', sizeof(a));
      for (int i = 0; i < 100; i++)
        put(fd, a, sizeof(a));
      puts_fd(fd, "\r\nContent-Length: 0\r\n\r\n");
      return;
    } else if (!strncmp(path, "/bigbody ", 9)) {
      puts_fd(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
      char a[1024];
      memset(a, 'b', sizeof(a));
      for (int i = 0; i < 10; i++) {
        puts_fd(fd, "400\r\n");
        put(fd, a, sizeof(a));
        puts_fd(fd, "\r\n");
      }
      puts_fd(fd, "0\r\n\r\n");
      return;
    } else if (!strncmp(path, "/endless ", 9)) {
      /* A chunked body that never ends, until the client hangs up. */
      puts_fd(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
      for (;;) {
        if (send(fd, "4\r\nmore\r\n", 9, MSG_NOSIGNAL) != 9) return;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
      }
    } else if (!strncmp(path, "/eof ", 5)) {
      puts_fd(fd, "HTTP/1.1 200 OK\r\n\r\nuntil the end");
      return;
    } else if (!strncmp(path, "/extra ", 7)) {
      /* A second response nobody asked for rides along: the connection is
       * out of step and must not be pooled. */
      puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                  "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil");
    } else if (!strncmp(path, "/landing ", 9)) {
      serve_landing(fd, 0);
    } else if (!strncmp(path, "/landing-extra ", 15)) {
      serve_landing(fd, 1);
      return;
    } else if (!strncmp(path, "/badchunk ", 10)) {
      puts_fd(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "zz\r\nhello\r\n");
      return;
    } else if (!strncmp(path, "/flaky ", 7) || !strncmp(path, "/idle ", 6)) {
      /* The first request on a connection is answered and the connection
       * offered for reuse; a second one is dropped unanswered, as by a
       * server whose keep-alive timeout just expired. */
      if (n > 1) return;
      puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      if (!strncmp(path, "/idle ", 6)) return; /* close while idle */
    } else {
      puts_fd(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
  }
}

static void *raw_main(void *arg) {
  for (;;) {
    int c = accept(raw_fd, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR) continue;
      return NULL; /* shut down */
    }
    pthread_mutex_lock(&raw_mu);
    raw_accepted++;
    pthread_mutex_unlock(&raw_mu);
    serve(c);
    close(c);
  }
}

static int raw_count(void) {
  pthread_mutex_lock(&raw_mu);
  int n = raw_accepted;
  pthread_mutex_unlock(&raw_mu);
  return n;
}

static pthread_t raw_thread;

static int start_raw(void) {
  raw_fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (raw_fd < 0 || bind(raw_fd, (struct sockaddr *)&a, sizeof(a)) ||
      listen(raw_fd, 16) || getsockname(raw_fd, (struct sockaddr *)&a, &len))
    return -1;
  raw_port = ntohs(a.sin_port);
  return pthread_create(&raw_thread, NULL, raw_main, NULL);
}

static void stop_raw(void) {
  shutdown(raw_fd, SHUT_RDWR);
  pthread_join(raw_thread, NULL);
  close(raw_fd);
}

/* ---- driving the client ------------------------------------------------ */

typedef struct result_s {
  int done;
  int err;
  int order;
  shadow_record_t *rec;
  double ms;
} result_t;

static int completions;

static void on_result(void *ud, int err, shadow_record_t *rec, double ms) {
  result_t *r = ud;
  CHECK(!r->done); /* exactly once */
  r->done = 1;
  r->err = err;
  r->rec = rec;
  r->ms = ms;
  r->order = ++completions;
  CHECK((err == SHADOW_UPSTREAM_OK) == (rec != NULL));
}

static void wait_done(result_t *r) {
  while (!r->done)
    uv_run(&loop, UV_RUN_ONCE);
}

static void result_free(result_t *r) {
  shadow_record_free(r->rec);
  memset(r, 0, sizeof(*r));
}

static shadow_upstream_t *make(const char *fmt, int port,
                               const shadow_upstream_opts_t *o) {
  char url[256];
  snprintf(url, sizeof(url), fmt, port);
  shadow_upstream_t *u = NULL;
  char *err = NULL;
  int rc = shadow_upstream_new(&loop, url, o, &u, &err);
  if (rc) {
    fprintf(stderr, "shadow_upstream_new(%s): %s\n", url, err);
    exit(1);
  }
  return u;
}

/* Closes u and runs the loop until its handles are gone. */
static void finish(shadow_upstream_t *u) {
  shadow_upstream_close(u);
  uv_run(&loop, UV_RUN_DEFAULT);
}

static int send_req(shadow_upstream_t *u, const char *method,
                    const char *target, const shadow_headers_t *h,
                    const shadow_headers_t *extra, const char *body,
                    size_t blen, result_t *r) {
  memset(r, 0, sizeof(*r));
  int rc = shadow_upstream_send(u, method, target, strlen(target), h, extra,
                                body, blen, on_result, r);
  CHECK(rc == 0);
  CHECK(!r->done); /* never from inside send() */
  return rc;
}

static void get(shadow_upstream_t *u, const char *method, const char *target,
                result_t *r) {
  if (send_req(u, method, target, NULL, NULL, NULL, 0, r) == 0) wait_done(r);
}

static const char *hdr(const result_t *r, const char *name) {
  if (!r->rec) return "";
  const shadow_header_t *h = shadow_headers_find(&r->rec->headers, name);
  return h ? h->value : "";
}

static int body_is(const result_t *r, const char *s) {
  return r->rec && r->rec->body.len == strlen(s) &&
         memcmp(r->rec->body.data ? r->rec->body.data : "", s, strlen(s)) == 0;
}

/* ---- tests against nginx ----------------------------------------------- */

static void test_framing(int port) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d", port, NULL);
  result_t r;

  get(u, "GET", "/cl", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 200);
  CHECK(body_is(&r, "hello"));
  CHECK(strcmp(hdr(&r, "content-length"), "5") == 0);
  result_free(&r);

  get(u, "GET", "/chunked", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 200);
  CHECK(body_is(&r, "abcdef"));
  CHECK(strcmp(hdr(&r, "transfer-encoding"), "chunked") == 0);
  result_free(&r);

  /* HEAD announces a body it does not send; the next response on the same
   * connection must still parse. */
  get(u, "HEAD", "/cl", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 200);
  CHECK(body_is(&r, ""));
  CHECK(strcmp(hdr(&r, "content-length"), "5") == 0);
  result_free(&r);

  get(u, "GET", "/204", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 204);
  CHECK(body_is(&r, ""));
  result_free(&r);

  get(u, "GET", "/304", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 304);
  CHECK(body_is(&r, ""));
  CHECK(strcmp(hdr(&r, "etag"), "\"v1\"") == 0);
  result_free(&r);

  get(u, "GET", "/teapot", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 418);
  CHECK(strcmp(hdr(&r, "x-custom"), "teapot") == 0);
  CHECK(body_is(&r, "short and stout"));
  result_free(&r);

  get(u, "GET", "/cl", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && body_is(&r, "hello"));
  result_free(&r);

  /* Everything above went over one keep-alive connection. */
  shadow_upstream_stats_t st;
  shadow_upstream_stats(u, &st);
  CHECK(st.connects == 1);
  CHECK(st.reuses == 6);
  CHECK(shadow_upstream_connections(u) == 1);
  CHECK(shadow_upstream_pending(u) == 0);
  finish(u);
}

static void test_keepalive(int port) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d", port, NULL);
  result_t r;
  char first[32] = "";
  for (int i = 0; i < 5; i++) {
    get(u, "GET", "/cl", &r);
    CHECK(r.err == SHADOW_UPSTREAM_OK);
    CHECK(*hdr(&r, "x-conn"));
    if (i == 0) snprintf(first, sizeof(first), "%s", hdr(&r, "x-conn"));
    CHECK(strcmp(first, hdr(&r, "x-conn")) == 0); /* nginx's $connection */
    CHECK(shadow_upstream_connections(u) == 1);
    result_free(&r);
  }
  finish(u);
}

static void test_bodies(int port) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d", port, NULL);
  result_t r;
  size_t n = 300 * 1000;
  char *body = malloc(n);
  for (size_t i = 0; i < n; i++)
    body[i] = (char)('a' + (i * 7) % 26);
  send_req(u, "POST", "/echo", NULL, NULL, body, n, &r);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 200);
  CHECK(r.rec && r.rec->body.len == n && !memcmp(r.rec->body.data, body, n));
  CHECK(strcmp(hdr(&r, "x-len"), "300000") == 0);
  result_free(&r);
  free(body);

  /* A POST without a body still says so, or the server waits for one. */
  send_req(u, "POST", "/echo", NULL, NULL, NULL, 0, &r);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && body_is(&r, ""));
  CHECK(strcmp(hdr(&r, "x-len"), "0") == 0);
  result_free(&r);

  /* A GET carries no Content-Length. */
  get(u, "GET", "/echo", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && strcmp(hdr(&r, "x-len"), "none") == 0);
  result_free(&r);
  finish(u);
}

static int landing_is(const result_t *r, size_t len) {
  if (!r->rec || r->rec->body.len != len || r->rec->body.data[len] != '\0')
    return 0;
  for (size_t i = 0; i < len; i++)
    if (r->rec->body.data[i] != landing_byte(i)) return 0;
  return 1;
}

/* A body the record keeps is read straight into it once its head is in
 * (a head across two reads, a body over several), and on a connection
 * whose last body was large the head's read is a short one: the bytes
 * must come out the same, the connection still pooled, bytes past the
 * response still noticed, and a body past body_keep still cut and
 * digested whole. */
static void test_landing(void) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d", raw_port, NULL);
  result_t r;
  int before = raw_count();
  for (int i = 0; i < 3; i++) {
    get(u, "GET", "/landing", &r);
    CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec->status == 200);
    CHECK(strcmp(hdr(&r, "x-piece"), "two") == 0);
    CHECK(landing_is(&r, LANDING_LEN));
    CHECK(!r.rec->body_cut);
    result_free(&r);
  }
  CHECK(raw_count() == before + 1); /* one connection, pooled */

  /* Bytes past the body in its last read: not pooled. */
  get(u, "GET", "/landing-extra", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && landing_is(&r, LANDING_LEN));
  result_free(&r);
  get(u, "GET", "/landing", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && landing_is(&r, LANDING_LEN));
  result_free(&r);
  CHECK(raw_count() == before + 2);
  finish(u);

  /* Past body_keep: the first 100000 bytes kept, the whole digested. */
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.body_keep = 100000;
  u = make("http://127.0.0.1:%d", raw_port, &o);
  static char whole[LANDING_LEN];
  for (size_t i = 0; i < LANDING_LEN; i++)
    whole[i] = landing_byte(i);
  for (int i = 0; i < 2; i++) {
    get(u, "GET", "/landing", &r);
    CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec && r.rec->body_cut);
    CHECK(landing_is(&r, 100000));
    CHECK(r.rec && r.rec->body_total == LANDING_LEN);
    CHECK(r.rec && shadow_digest_equal(r.rec->body_digest,
                                       shadow_digest_of(whole, LANDING_LEN)));
    result_free(&r);
  }
  finish(u);
}

static void test_host(int port) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d/headers/base/", port, NULL);
  result_t r;
  char want[64];
  snprintf(want, sizeof(want), "127.0.0.1:%d", port);

  get(u, "GET", "/x?q=1", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK);
  CHECK(strcmp(hdr(&r, "x-host"), want) == 0);
  CHECK(strcmp(hdr(&r, "x-uri"), "/headers/base/x?q=1") == 0);
  result_free(&r);

  shadow_headers_t h = SHADOW_HEADERS_INIT, extra = SHADOW_HEADERS_INIT;
  shadow_headers_add(&h, "Connection", 10, "close", 5);
  shadow_headers_add(&h, "host", 4, "example.test", 12);
  shadow_headers_add(&h, "Proxy-Authorization", 19, "secret", 6);
  shadow_headers_add(&h, "X-Keep", 6, "kept", 4);
  shadow_headers_add(&extra, "x-shadow-request", 16, "1", 1);
  send_req(u, "GET", "/y", &h, &extra, NULL, 0, &r);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_OK);
  CHECK(strcmp(hdr(&r, "x-host"), "example.test") == 0);
  CHECK(strcmp(hdr(&r, "x-proxy"), "none") == 0);
  CHECK(strcmp(hdr(&r, "x-keep"), "kept") == 0);
  CHECK(strcmp(hdr(&r, "x-extra"), "1") == 0);
  result_free(&r);
  /* The client's "Connection: close" was its own hop: still one conn. */
  CHECK(shadow_upstream_connections(u) == 1);

  /* A header that would split the request is refused up front. */
  shadow_headers_clear(&h);
  shadow_headers_add(&h, "X-Evil", 6, "a\r\nX-Injected: 1", 17);
  CHECK(shadow_upstream_send(u, "GET", "/", 1, &h, NULL, NULL, 0, on_result,
                             &r) == -EINVAL);
  CHECK(shadow_upstream_send(u, "GET", "/ HTTP/1.1", 10, NULL, NULL, NULL, 0,
                             on_result, &r) == -EINVAL);
  CHECK(!r.done);
  shadow_headers_free(&h);
  shadow_headers_free(&extra);
  finish(u);
}

static void test_timeout(int port) {
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.timeout_ms = 300;
  shadow_upstream_t *u = make("http://127.0.0.1:%d", port, &o);
  result_t r;
  get(u, "GET", "/sleep?t=5", &r);
  CHECK(r.err == SHADOW_UPSTREAM_TIMEOUT);
  CHECK(r.ms >= 200); /* it did wait: not an instant failure */
  CHECK(shadow_upstream_connections(u) == 0); /* a late answer must not
                                                 land on the next request */
  get(u, "GET", "/cl", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && body_is(&r, "hello"));
  result_free(&r);
  finish(u);
}

static void test_queue(int port) {
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.max_connections = 1;
  shadow_upstream_t *u = make("http://127.0.0.1:%d", port, &o);
  result_t r[3];
  completions = 0;
  for (int i = 0; i < 3; i++)
    send_req(u, "GET", "/sleep?t=0.2", NULL, NULL, NULL, 0, &r[i]);
  CHECK(shadow_upstream_pending(u) == 3);
  CHECK(shadow_upstream_connections(u) == 1);
  for (int i = 0; i < 3; i++) {
    wait_done(&r[i]);
    CHECK(shadow_upstream_connections(u) <= 1);
  }
  for (int i = 0; i < 3; i++) {
    CHECK(r[i].err == SHADOW_UPSTREAM_OK && body_is(&r[i], "late"));
    CHECK(r[i].order == i + 1); /* first in, first out */
    CHECK(strcmp(hdr(&r[0], "x-conn"), hdr(&r[i], "x-conn")) == 0);
  }
  shadow_upstream_stats_t st;
  shadow_upstream_stats(u, &st);
  CHECK(st.queued == 2 && st.connects == 1);
  for (int i = 0; i < 3; i++)
    result_free(&r[i]);

  /* A queued request waits for a connection no longer than timeout_ms
   * from its start; once it is sent, the head has timeout_ms from the
   * request's last byte (as nginx's proxy_read_timeout): the second
   * request waits 1 s for the first, then gets its answer 1 s later,
   * 2 s after its start, past 1.5 s but within 1.5 s of its send. */
  o.timeout_ms = 1500;
  shadow_upstream_set_opts(u, &o);
  send_req(u, "GET", "/sleep?t=1", NULL, NULL, NULL, 0, &r[0]);
  send_req(u, "GET", "/sleep?t=1", NULL, NULL, NULL, 0, &r[1]);
  wait_done(&r[0]);
  wait_done(&r[1]);
  CHECK(r[0].err == SHADOW_UPSTREAM_OK);
  CHECK(r[1].err == SHADOW_UPSTREAM_OK && r[1].ms >= 1800);
  result_free(&r[0]);
  result_free(&r[1]);

  /* Closing with requests in flight and queued cancels them, later. */
  send_req(u, "GET", "/sleep?t=5", NULL, NULL, NULL, 0, &r[0]);
  send_req(u, "GET", "/sleep?t=5", NULL, NULL, NULL, 0, &r[1]);
  shadow_upstream_close(u);
  CHECK(!r[0].done && !r[1].done);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(r[0].done && r[0].err == SHADOW_UPSTREAM_CANCELED);
  CHECK(r[1].done && r[1].err == SHADOW_UPSTREAM_CANCELED);
}

/* A leg driven by shadow_upstream_start, for streamed bodies and the
 * total deadline. */
typedef struct sleg_s {
  shadow_upstream_leg_t *leg;
  int status, done, err, pieces;
  size_t body;
  uint64_t start_ms, end_ms;
  uv_timer_t feed;
} sleg_t;

static void sleg_head(void *ud, int status, shadow_headers_t *h, int64_t cl) {
  (void)h;
  (void)cl;
  ((sleg_t *)ud)->status = status;
}
static void sleg_body(void *ud, const char *data, size_t len) {
  (void)data;
  ((sleg_t *)ud)->body += len;
}
static void sleg_done(void *ud, int err, const shadow_headers_t *t,
                      const char *detail) {
  (void)t;
  (void)detail;
  sleg_t *l = ud;
  CHECK(!l->done);
  l->done = 1;
  l->err = err;
  l->end_ms = uv_now(&loop);
}
static const shadow_upstream_handler_t sleg_handler = {
    NULL, sleg_head, sleg_body, NULL, sleg_done, NULL, NULL};

/* Feeds 1000 bytes every 100 ms, 8 times, then ends the body. */
static void on_feed(uv_timer_t *t) {
  sleg_t *l = t->data;
  char piece[1000];
  memset(piece, 'u', sizeof(piece));
  if (l->done) {
    uv_timer_stop(t);
    return;
  }
  CHECK(shadow_upstream_leg_body(l->leg, piece, sizeof(piece)) >= 0);
  if (++l->pieces == 8) {
    CHECK(shadow_upstream_leg_body_end(l->leg) == 0);
    uv_timer_stop(t);
  }
}

/* timeout_ms runs from the request's last byte, as nginx's
 * proxy_read_timeout: an upload that takes longer than it still gets its
 * answer; an answer that comes late after the whole body still times
 * out. */
static void test_slow_upload(int port) {
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.timeout_ms = 300;
  shadow_upstream_t *u = make("http://127.0.0.1:%d", port, &o);
  sleg_t l;
  memset(&l, 0, sizeof(l));
  shadow_upstream_request_t r = {.method = "POST",
                                 .target = "/echo",
                                 .target_len = 5,
                                 .body_more = 1,
                                 .content_length = 8000};
  l.start_ms = uv_now(&loop);
  CHECK(shadow_upstream_start(u, &r, &sleg_handler, &l, &l.leg) == 0);
  uv_timer_init(&loop, &l.feed);
  l.feed.data = &l;
  uv_timer_start(&l.feed, on_feed, 100, 100);
  while (!l.done)
    uv_run(&loop, UV_RUN_ONCE);
  CHECK(l.err == SHADOW_UPSTREAM_OK && l.status == 200 && l.body == 8000);
  CHECK(l.end_ms - l.start_ms >= 700); /* longer than timeout_ms */
  uv_close((uv_handle_t *)&l.feed, NULL);
  /* The head deadline still holds once the request is sent. */
  result_t res;
  get(u, "GET", "/sleep?t=2", &res);
  CHECK(res.err == SHADOW_UPSTREAM_TIMEOUT && res.ms < 1500);
  result_free(&res);
  finish(u);
}

/* A leg's total deadline ends a body that never ends: a timeout, and the
 * connection is closed, not pooled. */
static void test_total_deadline(void) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d", raw_port, NULL);
  sleg_t l;
  memset(&l, 0, sizeof(l));
  shadow_upstream_request_t r = {.method = "GET",
                                 .target = "/endless",
                                 .target_len = 8,
                                 .total_timeout_ms = 300};
  l.start_ms = uv_now(&loop);
  CHECK(shadow_upstream_start(u, &r, &sleg_handler, &l, &l.leg) == 0);
  while (!l.done)
    uv_run(&loop, UV_RUN_ONCE);
  CHECK(l.err == SHADOW_UPSTREAM_TIMEOUT && l.status == 200 && l.body > 0);
  CHECK(l.end_ms - l.start_ms >= 290 && l.end_ms - l.start_ms < 3000);
  CHECK(shadow_upstream_connections(u) == 0 && shadow_upstream_idle(u) == 0);
  /* Paused, the leg is still held to its deadline. */
  memset(&l, 0, sizeof(l));
  CHECK(shadow_upstream_start(u, &r, &sleg_handler, &l, &l.leg) == 0);
  shadow_upstream_leg_pause(l.leg);
  while (!l.done)
    uv_run(&loop, UV_RUN_ONCE);
  CHECK(l.err == SHADOW_UPSTREAM_TIMEOUT);
  finish(u);
}

/* A queued request times out in the queue while the connection is busy. */
static void test_queue_timeout(int port) {
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.max_connections = 1;
  shadow_upstream_t *u = make("http://127.0.0.1:%d", port, &o);
  result_t r[2];
  completions = 0;
  send_req(u, "GET", "/sleep?t=1.5", NULL, NULL, NULL, 0, &r[0]);
  o.timeout_ms = 300;
  shadow_upstream_set_opts(u, &o);
  send_req(u, "GET", "/cl", NULL, NULL, NULL, 0, &r[1]);
  wait_done(&r[1]);
  CHECK(r[1].err == SHADOW_UPSTREAM_TIMEOUT && r[1].order == 1);
  CHECK(!r[0].done);
  wait_done(&r[0]);
  CHECK(r[0].err == SHADOW_UPSTREAM_OK && body_is(&r[0], "late"));
  result_free(&r[0]);
  finish(u);
}

/* Closing from inside a callback cancels the rest; sending from inside a
 * callback reuses the connection that just answered. */
typedef struct chain_s {
  shadow_upstream_t *u;
  int left;
  result_t last;
} chain_t;

static void on_chain(void *ud, int err, shadow_record_t *rec, double ms) {
  chain_t *c = ud;
  CHECK(err == SHADOW_UPSTREAM_OK);
  shadow_record_free(rec);
  if (--c->left > 0) {
    CHECK(shadow_upstream_send(c->u, "GET", "/cl", 3, NULL, NULL, NULL, 0,
                               on_chain, c) == 0);
  } else {
    c->last.done = 1;
  }
}

static void on_close_inside(void *ud, int err, shadow_record_t *rec,
                            double ms) {
  chain_t *c = ud;
  on_result(&c->last, err, rec, ms);
  shadow_upstream_close(c->u);
  CHECK(shadow_upstream_send(c->u, "GET", "/cl", 3, NULL, NULL, NULL, 0,
                             on_result, &c->last) == -ECANCELED);
}

static void test_reentry(int port) {
  chain_t c = {make("http://127.0.0.1:%d", port, NULL), 5, {0}};
  CHECK(shadow_upstream_send(c.u, "GET", "/cl", 3, NULL, NULL, NULL, 0,
                             on_chain, &c) == 0);
  wait_done(&c.last);
  shadow_upstream_stats_t st;
  shadow_upstream_stats(c.u, &st);
  CHECK(st.connects == 1 && st.requests == 5);
  finish(c.u);

  chain_t d = {make("http://127.0.0.1:%d", port, NULL), 0, {0}};
  result_t slow;
  CHECK(shadow_upstream_send(d.u, "GET", "/cl", 3, NULL, NULL, NULL, 0,
                             on_close_inside, &d) == 0);
  send_req(d.u, "GET", "/sleep?t=5", NULL, NULL, NULL, 0, &slow);
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once everything has closed */
  CHECK(d.last.done && d.last.err == SHADOW_UPSTREAM_OK);
  CHECK(slow.done && slow.err == SHADOW_UPSTREAM_CANCELED);
  result_free(&d.last);
}

/* Many requests, a few at a time, over a capped pool: every one answered,
 * never more connections than the cap. */
typedef struct load_s {
  shadow_upstream_t *u;
  int sent, done, ok, total, max_conns;
} load_t;

static void load_next(load_t *l);

static void on_load(void *ud, int err, shadow_record_t *rec, double ms) {
  load_t *l = ud;
  l->done++;
  if (err == SHADOW_UPSTREAM_OK && rec->status == 200 && rec->body.len == 5)
    l->ok++;
  shadow_record_free(rec);
  if (shadow_upstream_connections(l->u) > (size_t)l->max_conns)
    l->max_conns = (int)shadow_upstream_connections(l->u);
  load_next(l);
}

static void load_next(load_t *l) {
  if (l->sent >= l->total) return;
  l->sent++;
  CHECK(shadow_upstream_send(l->u, "GET", "/cl", 3, NULL, NULL, NULL, 0,
                             on_load, l) == 0);
}

static void test_load(int port) {
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.max_connections = 8;
  load_t l = {make("http://127.0.0.1:%d", port, &o), 0, 0, 0, 20000, 0};
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < 32; i++)
    load_next(&l);
  while (l.done < l.total)
    uv_run(&loop, UV_RUN_ONCE);
  double s = (double)(uv_hrtime() - t0) / 1e9;
  CHECK(l.ok == l.total);
  CHECK(l.max_conns <= 8);
  shadow_upstream_stats_t st;
  shadow_upstream_stats(l.u, &st);
  CHECK(st.connects <= 8 && st.failures == 0);
  printf("load: %d requests, 32 in flight, 8 connections: %.0f req/s\n",
         l.total, l.total / s);
  finish(l.u);
}

/* ---- tests against the raw server -------------------------------------- */

static int fault(const char *target, const shadow_upstream_opts_t *o) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d", raw_port, o);
  result_t r;
  get(u, "GET", target, &r);
  int err = r.err;
  result_free(&r);
  finish(u);
  return err;
}

static void test_faults(void) {
  /* Nothing listens on a port we just released. */
  int closed = free_port();
  shadow_upstream_t *u = make("http://127.0.0.1:%d", closed, NULL);
  result_t r;
  get(u, "GET", "/", &r);
  CHECK(r.err == SHADOW_UPSTREAM_REFUSED);
  finish(u);

  CHECK(fault("/garbage", NULL) == SHADOW_UPSTREAM_BAD_RESPONSE);
  CHECK(fault("/lie", NULL) == SHADOW_UPSTREAM_RESET);
  CHECK(fault("/huge", NULL) == SHADOW_UPSTREAM_TOO_LARGE);
  CHECK(fault("/badchunk", NULL) == SHADOW_UPSTREAM_BAD_RESPONSE);
  CHECK(fault("/bigbody", NULL) == SHADOW_UPSTREAM_OK);
  /* No body is refused for its size: past body_keep it is kept as a
   * prefix and a digest of the whole. */
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.body_keep = 4096;
  u = make("http://127.0.0.1:%d", raw_port, &o);
  get(u, "GET", "/bigbody", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && r.rec);
  if (r.rec) {
    CHECK(r.rec->body_cut && r.rec->body.len == 4096);
    CHECK(r.rec->body_total == 10240);
    char all[10240];
    memset(all, 'b', sizeof(all));
    CHECK(shadow_digest_equal(r.rec->body_digest,
                              shadow_digest_of(all, sizeof(all))));
  }
  result_free(&r);
  finish(u);
}

/* A listener whose accept queue is full drops SYNs: the connect hangs
 * until the connect timeout, well before the response timeout. */
static void test_connect_timeout(void) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  CHECK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
  CHECK(listen(lfd, 0) == 0);
  CHECK(getsockname(lfd, (struct sockaddr *)&a, &len) == 0);
  int fill[4];
  for (int i = 0; i < 4; i++) {
    fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(fill[i], (struct sockaddr *)&a, sizeof(a));
  }
  shadow_upstream_opts_t o;
  shadow_upstream_opts_default(&o);
  o.connect_timeout_ms = 200;
  o.timeout_ms = 20000;
  shadow_upstream_t *u = make("http://127.0.0.1:%d", ntohs(a.sin_port), &o);
  result_t r;
  get(u, "GET", "/", &r);
  CHECK(r.err == SHADOW_UPSTREAM_TIMEOUT);
  CHECK(r.ms < 10000); /* the connect timeout, not the response one */
  finish(u);
  for (int i = 0; i < 4; i++)
    close(fill[i]);
  close(lfd);
}

static void test_unpooled(void) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d", raw_port, NULL);
  result_t r;
  get(u, "GET", "/eof", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && body_is(&r, "until the end"));
  CHECK(shadow_upstream_connections(u) == 0);
  result_free(&r);
  get(u, "GET", "/extra", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && body_is(&r, "ok"));
  result_free(&r);
  /* Whether the stray bytes came with the response or just after it, the
   * connection goes: never reused for the next request. */
  while (shadow_upstream_connections(u) > 0)
    uv_run(&loop, UV_RUN_ONCE);
  shadow_upstream_stats_t st;
  shadow_upstream_stats(u, &st);
  CHECK(st.reuses == 0);
  finish(u);
}

static void test_stale_retry(void) {
  shadow_upstream_t *u = make("http://127.0.0.1:%d", raw_port, NULL);
  shadow_upstream_stats_t st;
  result_t r;
  int before = raw_count();
  get(u, "GET", "/flaky", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && body_is(&r, "ok"));
  result_free(&r);
  /* The pooled connection is dropped by the server on this request: the
   * client retries it once on a fresh connection. */
  get(u, "GET", "/flaky", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK && body_is(&r, "ok"));
  result_free(&r);
  shadow_upstream_stats(u, &st);
  CHECK(st.retries == 1);
  CHECK(raw_count() - before == 2);

  /* A POST is not idempotent: the same staleness is a failure. */
  send_req(u, "POST", "/flaky", NULL, NULL, "x", 1, &r);
  wait_done(&r);
  CHECK(r.err == SHADOW_UPSTREAM_RESET);
  result_free(&r);
  shadow_upstream_stats(u, &st);
  CHECK(st.retries == 1);
  finish(u);

  /* A server that closes an idle pooled connection frees it. */
  u = make("http://127.0.0.1:%d", raw_port, NULL);
  get(u, "GET", "/idle", &r);
  CHECK(r.err == SHADOW_UPSTREAM_OK);
  result_free(&r);
  while (shadow_upstream_connections(u) > 0)
    uv_run(&loop, UV_RUN_ONCE);
  finish(u);
}

static void test_urls(int port) {
  CHECK(strcmp(shadow_upstream_err_name(SHADOW_UPSTREAM_REFUSED), "refused") ==
        0);
  CHECK(strcmp(shadow_upstream_err_name(SHADOW_UPSTREAM_BAD_RESPONSE),
               "bad_response") == 0);
  CHECK(strcmp(shadow_upstream_err_name(SHADOW_UPSTREAM_TOO_LARGE),
               "too_large") == 0);
  const char *bad[] = {
      "http://",     "ftp://127.0.0.1/", "http://h:99999",
      "http://[::1", "http://h:80?x",    "http://no.such.host.invalid",
      NULL};
  for (int i = 0; bad[i]; i++) {
    shadow_upstream_t *u = NULL;
    char *err = NULL;
    CHECK(shadow_upstream_new(&loop, bad[i], NULL, &u, &err) < 0);
    CHECK(err != NULL && u == NULL);
    free(err);
  }
  shadow_upstream_t *u = make("http://localhost:%d/", port, NULL);
  finish(u);

  /* An IPv6 literal: nothing of ours listens there, so it is refused (or
   * unreachable where the host has no IPv6), never anything else. */
  u = make("http://[::1]:%d", port, NULL);
  result_t r;
  get(u, "GET", "/", &r);
  CHECK(r.err == SHADOW_UPSTREAM_REFUSED);
  finish(u);
}

int main(void) {
  alarm(100); /* a hang is a failure, not a stuck CI job */
  signal(SIGPIPE, SIG_IGN);
  CHECK(uv_loop_init(&loop) == 0);
  int port = free_port();
  if (start_nginx(port)) {
    fprintf(stderr, "nginx did not start on port %d\n", port);
    return 1;
  }
  if (start_raw()) {
    perror("raw server");
    return 1;
  }
  test_framing(port);
  test_keepalive(port);
  test_bodies(port);
  test_host(port);
  test_timeout(port);
  test_queue(port);
  test_queue_timeout(port);
  test_slow_upload(port);
  test_reentry(port);
  test_load(port);
  test_faults();
  test_total_deadline();
  test_unpooled();
  test_stale_retry();
  test_connect_timeout();
  test_urls(port);
  test_landing();
  stop_raw();
  stop_nginx();
  CHECK(uv_loop_close(&loop) == 0);
  return check_report("test_upstream");
}
