/* The client-facing server over real sockets: a uv loop in one thread runs
 * two servers (one without a connection cap, one capped at 2), and the main
 * thread plays hostile and well-behaved clients with raw bytes. Limits are
 * small (1 KiB head, 1000-byte body, 300 ms header timeout, 1 s idle) so
 * each row of the README's bad-input table is reachable quickly; every wait on
 * the client side is bounded by a generous receive timeout, never a sleep. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "server.h"

/* ---- the server side: runs on the loop thread only ---- */

static uv_loop_t loop;
static uv_async_t stopper;
static shadow_server_t *srv_a, *srv_b;
static size_t inflight_at_stop = 99;
/* Counts slow requests the handler has taken, so the client side can wait
 * for "the server has it" instead of guessing with a sleep. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int delays_taken;
static shadow_request_t *held; /* "/hold": answered by on_drain */
/* Clients the capped server turned away, and the bursts they made. */
static int refusals, bursts, emfiles;

static void on_refuse(void *ud, int err, int first) {
  (void)ud;
  CHECK(err == 0 || err == UV_EMFILE);
  pthread_mutex_lock(&mu);
  if (err == UV_EMFILE) {
    emfiles++;
  } else {
    refusals++;
    bursts += first;
  }
  pthread_mutex_unlock(&mu);
}

static void refused_so_far(int *n, int *b) {
  pthread_mutex_lock(&mu);
  *n = refusals;
  *b = bursts;
  pthread_mutex_unlock(&mu);
}

typedef struct delayed_s {
  uv_timer_t timer;
  shadow_request_t *req;
} delayed_t;

static void answer(shadow_request_t *req) {
  char body[512];
  int n = snprintf(body, sizeof(body),
                   "method=%s target=%s body=%zu headers=%zu http=1.%d\n",
                   req->method, req->target.data ? req->target.data : "",
                   req->body.len, req->headers.n, req->http_minor);
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  shadow_headers_add(&h, "Content-Type", 12, "text/plain", 10);
  /* Hop-by-hop headers from a handler must not reach the client. */
  shadow_headers_add(&h, "Transfer-Encoding", 17, "chunked", 7);
  shadow_server_respond(req, 200, &h, body, (size_t)n);
  shadow_headers_free(&h);
}

static void on_delay_close(uv_handle_t *h) {
  free(h->data);
}

static void on_delay(uv_timer_t *t) {
  delayed_t *d = t->data;
  answer(d->req);
  uv_close((uv_handle_t *)&d->timer, on_delay_close);
}

/* "/delay/N" answers after N ms from a timer, so in-order pipelining and
 * clients that leave mid-request are tested with a slow handler. */
static void on_request(shadow_request_t *req, void *ud) {
  (void)ud;
  const char *t = req->target.data ? req->target.data : "";
  if (strcmp(t, "/hold") == 0) {
    held = req;
    pthread_mutex_lock(&mu);
    delays_taken++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return;
  }
  if (strncmp(t, "/delay/", 7) == 0) {
    delayed_t *d = calloc(1, sizeof(*d));
    d->req = req;
    d->timer.data = d;
    uv_timer_init(&loop, &d->timer);
    uv_timer_start(&d->timer, on_delay, (uint64_t)atoi(t + 7), 0);
    pthread_mutex_lock(&mu);
    delays_taken++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return;
  }
  answer(req);
}

static uv_async_t drainer;
static size_t conns_at_drain = 99, inflight_at_drain = 99;

static void on_drain(uv_async_t *a) {
  shadow_server_drain(srv_a, NULL, NULL);
  pthread_mutex_lock(&mu);
  conns_at_drain = shadow_server_connections(srv_a);
  inflight_at_drain = shadow_server_inflight(srv_a);
  pthread_mutex_unlock(&mu);
  if (held) answer(held);
  held = NULL;
  uv_close((uv_handle_t *)a, NULL);
}

/* libuv keeps a spare descriptor to empty the backlog when accept fails
 * with EMFILE; it loses it when another thread takes the one it freed.
 * Dropping it here makes that case, where libuv reports EMFILE and calls
 * again for as long as accept fails, happen on demand. */
static uv_async_t spare_dropper;
static int spare_dropped;

static void on_drop_spare(uv_async_t *a) {
  if (loop.emfile_fd >= 0) close(loop.emfile_fd);
  loop.emfile_fd = -1;
  pthread_mutex_lock(&mu);
  spare_dropped = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  uv_close((uv_handle_t *)a, NULL);
}

/* A round trip through the loop: what the loop was doing when sync_loop()
 * was called (such as emptying the backlog after EMFILE, which accepts and
 * closes whatever arrives until accept says EAGAIN) has finished. */
static uv_async_t syncer;
static int syncs;

static void on_sync(uv_async_t *a) {
  (void)a;
  pthread_mutex_lock(&mu);
  syncs++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void sync_loop(void) {
  pthread_mutex_lock(&mu);
  int want = syncs + 1;
  pthread_mutex_unlock(&mu);
  uv_async_send(&syncer);
  pthread_mutex_lock(&mu);
  while (syncs < want)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

static void on_stop(uv_async_t *a) {
  inflight_at_stop = shadow_server_inflight(srv_b);
  uv_close((uv_handle_t *)&syncer, NULL);
  shadow_server_close(srv_a);
  shadow_server_close(srv_b);
  uv_close((uv_handle_t *)a, NULL);
}

static void *loop_thread(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
  return NULL;
}

/* ---- the client side: blocking sockets on the main thread ---- */

typedef struct client_s {
  int fd;
  char buf[65536];
  size_t len;
} client_t;

typedef struct resp_s {
  int status;
  int close;      /* Connection: close */
  int keep_alive; /* Connection: keep-alive */
  int has_te;
  char body[4096];
  size_t body_len;
} resp_t;

static int port_a, port_b;

static client_t *dial(int port) {
  client_t *c = calloc(1, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {10, 0}; /* generous: only a hang trips it */
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    perror("connect");
    exit(2);
  }
  return c;
}

static void hang_up(client_t *c) {
  close(c->fd);
  free(c);
}

static void say(client_t *c, const char *s, size_t n) {
  while (n) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return; /* the server may have closed: reads will tell */
    s += w;
    n -= (size_t)w;
  }
}
#define SAY(c, lit) say(c, lit, sizeof(lit) - 1)

/* Reads more bytes; 0 on EOF, reset or timeout. */
static int fill(client_t *c) {
  if (c->len == sizeof(c->buf)) return 0;
  ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
  if (r <= 0) return 0;
  c->len += (size_t)r;
  return 1;
}

static void consume(client_t *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

static const char *find_hdr(const char *head, size_t hlen, const char *name) {
  size_t nl = strlen(name);
  for (const char *p = head; p + nl < head + hlen; p++)
    if ((p == head || p[-1] == '\n') && strncasecmp(p, name, nl) == 0 &&
        p[nl] == ':')
      return p + nl + 1;
  return NULL;
}

/* Reads one response; returns 0 when the connection ended first. */
static int read_resp(client_t *c, resp_t *r) {
  memset(r, 0, sizeof(*r));
  char *end;
  while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
    if (!fill(c)) return 0;
  size_t hlen = (size_t)(end - c->buf) + 4;
  r->status = atoi(c->buf + 9);
  const char *v = find_hdr(c->buf, hlen, "connection");
  if (v && strncasecmp(v + 1, "close", 5) == 0) r->close = 1;
  if (v && strncasecmp(v + 1, "keep-alive", 10) == 0) r->keep_alive = 1;
  r->has_te = find_hdr(c->buf, hlen, "transfer-encoding") != NULL;
  v = find_hdr(c->buf, hlen, "content-length");
  size_t blen = v && r->status >= 200 ? (size_t)atol(v) : 0;
  while (c->len < hlen + blen)
    if (!fill(c)) return 0;
  r->body_len = blen < sizeof(r->body) - 1 ? blen : sizeof(r->body) - 1;
  memcpy(r->body, c->buf + hlen, r->body_len);
  r->body[r->body_len] = '\0';
  consume(c, hlen + blen);
  return 1;
}

/* True when the server closes with nothing more to say. */
static int closed(client_t *c) {
  if (c->len) return 0;
  char b;
  ssize_t r = recv(c->fd, &b, 1, 0);
  if (r == 0) return 1;
  return r < 0 && errno == ECONNRESET;
}

static void expect_error(const char *what, const char *bytes, size_t n,
                         int status, const char *json) {
  client_t *c = dial(port_a);
  say(c, bytes, n);
  resp_t r;
  int got = read_resp(c, &r);
  if (!got || r.status != status)
    fprintf(stderr, "%s: got %d, want %d\n", what, got ? r.status : -1, status);
  CHECK(got && r.status == status);
  CHECK(r.close);
  CHECK(strcmp(r.body, json) == 0);
  CHECK(closed(c));
  hang_up(c);
}
#define EXPECT_ERROR(what, lit, st, json)                                      \
  expect_error(what, lit, sizeof(lit) - 1, st, json)

static const char bad[] = "{\"error\":\"bad request\"}";

static void test_keep_alive(void) {
  client_t *c = dial(port_a);
  resp_t r;
  SAY(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200 && !r.close && !r.has_te);
  CHECK(strstr(r.body, "method=GET target=/a body=0 headers=1") != NULL);
  SAY(c, "GET /b?q=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200);
  CHECK(strstr(r.body, "target=/b?q=1 body=0 headers=2") != NULL);
  /* A request split in the middle of a header name and value. */
  SAY(c, "GET /c HTTP/1.1\r\nHo");
  SAY(c, "st: x\r\nX-Lo");
  SAY(c, "ng: va");
  SAY(c, "lue\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200);
  CHECK(strstr(r.body, "target=/c body=0 headers=2") != NULL);
  SAY(c, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200 && r.body_len == 0);
  SAY(c, "GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200 && r.close);
  CHECK(closed(c));
  hang_up(c);
}

static void test_pipelining(void) {
  client_t *c = dial(port_a);
  resp_t r;
  /* The slow one first: answers must still come back in order. */
  SAY(c, "GET /delay/150 HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /two HTTP/1.1\r\nHost: x\r\n\r\n"
         "POST /three HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(read_resp(c, &r) && strstr(r.body, "target=/delay/150 ") != NULL);
  CHECK(read_resp(c, &r) && strstr(r.body, "target=/two ") != NULL);
  CHECK(read_resp(c, &r) &&
        strstr(r.body, "POST target=/three body=5") != NULL);
  hang_up(c);
}

static void test_http10(void) {
  client_t *c = dial(port_a);
  resp_t r;
  SAY(c, "GET /old HTTP/1.0\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200 && r.close);
  CHECK(strstr(r.body, "http=1.0") != NULL);
  CHECK(closed(c));
  hang_up(c);
  c = dial(port_a);
  SAY(c, "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200 && r.keep_alive);
  SAY(c, "GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(read_resp(c, &r) && strstr(r.body, "target=/ka2 ") != NULL);
  hang_up(c);
}

static void test_bodies(void) {
  client_t *c = dial(port_a);
  resp_t r;
  SAY(c, "POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n");
  CHECK(read_resp(c, &r) && strstr(r.body, "body=8 headers=2") != NULL);
  SAY(c, "PUT /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
  SAY(c, "56789");
  CHECK(read_resp(c, &r) && strstr(r.body, "PUT target=/cl body=10") != NULL);
  /* Expect: 100-continue gets the interim answer before the body is sent. */
  SAY(c, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
         "Content-Length: 4\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 100);
  SAY(c, "data");
  CHECK(read_resp(c, &r) && r.status == 200 &&
        strstr(r.body, "target=/e body=4") != NULL);
  hang_up(c);
}

static void test_bad_input(void) {
  EXPECT_ERROR("garbage", "\x16\x03\x01garbage\r\n\r\n", 400, bad);
  EXPECT_ERROR("no version", "GET /\r\n\r\n", 400, bad);
  EXPECT_ERROR("cl+te",
               "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
               400, bad);
  EXPECT_ERROR("dup cl",
               "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               "Content-Length: 5\r\n\r\nhello",
               400, bad);
  EXPECT_ERROR("obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
               400, bad);
  EXPECT_ERROR("bare lf", "GET / HTTP/1.1\nHost: x\n\n", 400, bad);
  EXPECT_ERROR("te not chunked",
               "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
               501, "{\"error\":\"not implemented\"}");
  EXPECT_ERROR("bad chunk",
               "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               "\r\nzz\r\n",
               400, bad);
  /* 413 as soon as the declared length is known, with no body sent. */
  EXPECT_ERROR("cl too big",
               "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
               413, "{\"error\":\"payload too large\"}");
  char big[2048];
  int n = snprintf(big, sizeof(big),
                   "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                   "\r\n\r\n3e8\r\n%01000d\r\n10\r\n",
                   0);
  expect_error("chunked too big", big, (size_t)n, 413,
               "{\"error\":\"payload too large\"}");
  n = snprintf(big, sizeof(big),
               "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %01500d"
               "\r\n\r\n",
               0);
  expect_error("huge head", big, (size_t)n, 431,
               "{\"error\":\"request header fields too large\"}");
  /* A trailer that never ends is cut off at the header limit. */
  n = snprintf(big, sizeof(big),
               "POST / HTTP/1.1\r\nHost: x\r\n"
               "Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: %01500d",
               0);
  expect_error("endless trailer", big, (size_t)n, 431,
               "{\"error\":\"request header fields too large\"}");
  /* A request line without the rest of its head: 408 once the header
   * timeout has passed. */
  EXPECT_ERROR("slow head", "GET /slow HTTP/1.1\r\nHost: x\r\n", 408,
               "{\"error\":\"request timeout\"}");
}

static void test_timeouts_and_caps(void) {
  /* Idle: nothing sent, the connection is closed without a word. */
  client_t *c = dial(port_a);
  CHECK(closed(c));
  hang_up(c);
  c = dial(port_a);
  resp_t r;
  SAY(c, "GET /i HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200);
  CHECK(closed(c));
  hang_up(c);

  /* Server B takes two connections; the third is refused with 503. */
  client_t *b1 = dial(port_b), *b2 = dial(port_b);
  SAY(b1, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
  SAY(b2, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_resp(b1, &r) && r.status == 200);
  CHECK(read_resp(b2, &r) && r.status == 200);
  client_t *b3 = dial(port_b);
  CHECK(read_resp(b3, &r) && r.status == 503 && r.close);
  CHECK(strcmp(r.body, "{\"error\":\"too many connections\"}") == 0);
  CHECK(closed(b3));
  hang_up(b3);
  /* Each refusal is told; only the first of a burst is marked first. */
  int n, nb;
  refused_so_far(&n, &nb);
  CHECK(n == 1 && nb == 1);
  client_t *b4 = dial(port_b);
  CHECK(read_resp(b4, &r) && r.status == 503);
  hang_up(b4);
  refused_so_far(&n, &nb);
  CHECK(n == 2 && nb == 1);
  /* A slot frees; once a client is admitted, the next refusal begins a
   * new burst. (The server sees b1's close when its loop reads it:
   * until then a dial is still refused, within the same burst.) */
  hang_up(b1);
  int in = 0;
  for (int i = 0; i < 500 && !in; i++) {
    client_t *b5 = dial(port_b);
    SAY(b5, "GET /5 HTTP/1.1\r\nHost: x\r\n\r\n");
    in = read_resp(b5, &r) && r.status == 200;
    if (in)
      b1 = b5;
    else
      hang_up(b5);
  }
  CHECK(in);
  refused_so_far(&n, &nb);
  CHECK(nb == 1);
  client_t *b6 = dial(port_b);
  CHECK(read_resp(b6, &r) && r.status == 503);
  hang_up(b6);
  refused_so_far(&n, &nb);
  CHECK(nb == 2);
  hang_up(b1);
  hang_up(b2);
}

/* Out of descriptors, with libuv's spare gone: the server empties the
 * backlog with its own spare, so the client is closed (not left waiting
 * while the loop spins on accept), and it is told. */
static void test_emfile(void) {
  uv_async_send(&spare_dropper);
  pthread_mutex_lock(&mu);
  while (!spare_dropped)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  struct rlimit was, low;
  CHECK(getrlimit(RLIMIT_NOFILE, &was) == 0);
  low = was;
  low.rlim_cur = 256;
  CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
  static int fill[256];
  int n = 0;
  while (n < 256 && (fill[n] = open("/dev/null", O_RDONLY)) >= 0)
    n++;
  CHECK(n > 1 && n < 256 && errno == EMFILE);
  close(fill[--n]); /* the client's socket takes this one */
  client_t *c = dial(port_a);
  SAY(c, "GET /e HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(closed(c));
  hang_up(c);
  while (n)
    close(fill[--n]);
  CHECK(setrlimit(RLIMIT_NOFILE, &was) == 0);
  pthread_mutex_lock(&mu);
  CHECK(emfiles >= 1);
  pthread_mutex_unlock(&mu);
  /* Descriptors again: served as ever, once the loop has finished
   * emptying the backlog (a client that came before that would be closed
   * with it). */
  sync_loop();
  c = dial(port_a);
  resp_t r;
  SAY(c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200);
  hang_up(c);
}

/* Blocks until the handler has taken one more slow request. */
static void wait_taken(int want) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  pthread_mutex_lock(&mu);
  while (delays_taken < want && pthread_cond_timedwait(&cv, &mu, &until) == 0) {
  }
  CHECK(delays_taken == want);
  pthread_mutex_unlock(&mu);
}

static int taken(void) {
  pthread_mutex_lock(&mu);
  int n = delays_taken;
  pthread_mutex_unlock(&mu);
  return n;
}

/* Drain: the idle connection is closed at once, the busy one gets its
 * answer (with Connection: close) and then is closed, and nothing new is
 * accepted. Runs last on server A. */
static void test_drain(void) {
  client_t *idle = dial(port_a), *busy = dial(port_a);
  resp_t r;
  SAY(idle, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_resp(idle, &r) && r.status == 200 && !r.close);
  int want = taken() + 1;
  SAY(busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  wait_taken(want);
  uv_async_send(&drainer);
  CHECK(closed(idle));
  CHECK(read_resp(busy, &r) && r.status == 200 && r.close);
  CHECK(closed(busy));
  pthread_mutex_lock(&mu);
  CHECK(conns_at_drain == 1 && inflight_at_drain == 1);
  pthread_mutex_unlock(&mu);
  hang_up(idle);
  hang_up(busy);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port_a);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0);
  close(fd);
}

static void test_clients_leaving(void) {
  /* Mid-head, mid-body, and with a slow request in flight. */
  client_t *c = dial(port_a);
  SAY(c, "GET / HTTP/1.1\r\nHo");
  hang_up(c);
  c = dial(port_a);
  SAY(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc");
  hang_up(c);
  c = dial(port_a);
  SAY(c, "GET /delay/50 HTTP/1.1\r\nHost: x\r\n\r\n");
  hang_up(c);
  /* The server still serves afterwards; this also outwaits the 50 ms. */
  c = dial(port_a);
  resp_t r;
  SAY(c, "GET /delay/200 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_resp(c, &r) && r.status == 200);
  hang_up(c);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  CHECK(uv_loop_init(&loop) == 0);
  shadow_server_opts_t lim;
  shadow_server_opts_default(&lim);
  CHECK(lim.header_bytes == 65536 && lim.body_bytes == 8u << 20);
  CHECK(strcmp(shadow_http_reason(431), "Request Header Fields Too Large") ==
        0);
  lim.header_bytes = 1024;
  lim.body_bytes = 1000;
  lim.header_timeout_ms = 300;
  lim.idle_timeout_ms = 1000;
  /* No on_body: requests arrive whole, as the admin takes them. */
  shadow_server_handler_t h = {.on_request = on_request,
                               .on_refuse = on_refuse};
  char *err = NULL;
  CHECK(shadow_server_listen(&loop, "127.0.0.1:0", &lim, &h, &srv_a, &err) ==
        0);
  lim.max_connections = 2;
  CHECK(shadow_server_listen(&loop, "127.0.0.1:0", &lim, &h, &srv_b, &err) ==
        0);
  shadow_server_t *dup = NULL;
  char addr[64];
  port_a = shadow_server_port(srv_a);
  port_b = shadow_server_port(srv_b);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port_a);
  /* The port is taken: the error names the address. */
  CHECK(shadow_server_listen(&loop, addr, &lim, &h, &dup, &err) < 0);
  CHECK(dup == NULL && err && strstr(err, addr));
  free(err);
  CHECK(shadow_server_listen(&loop, "nonsense", &lim, &h, &dup, &err) < 0);
  free(err);
  CHECK(port_a > 0 && port_b > 0);
  uv_async_init(&loop, &stopper, on_stop);
  uv_async_init(&loop, &drainer, on_drain);
  uv_async_init(&loop, &spare_dropper, on_drop_spare);
  uv_async_init(&loop, &syncer, on_sync);

  pthread_t th;
  pthread_create(&th, NULL, loop_thread, NULL);
  test_keep_alive();
  test_pipelining();
  test_http10();
  test_bodies();
  test_bad_input();
  test_timeouts_and_caps();
  test_clients_leaving();
  test_emfile();

  /* Close with a request in flight: it is answered after the close, and
   * that answer must free it without writing. */
  test_drain();
  int want = taken() + 1;
  client_t *c = dial(port_b);
  SAY(c, "GET /delay/300 HTTP/1.1\r\nHost: x\r\n\r\n");
  wait_taken(want);
  uv_async_send(&stopper);
  pthread_join(th, NULL);
  CHECK(inflight_at_stop == 1);
  CHECK(closed(c));
  hang_up(c);
  CHECK(uv_loop_close(&loop) == 0);
  return check_report("test_server");
}
