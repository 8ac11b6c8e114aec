/* The upstream client (see upstream.h): a pool of keep-alive connections to
 * one backend, and the legs that run on them. A leg's request is written
 * from a buffer it owns; its response is parsed from the connection's fixed
 * read buffer and handed on as events, so nothing here grows with the size
 * of a body. Backpressure is the caller's: pausing a leg stops reading its
 * connection, which in turn makes the backend's TCP window close. */
#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "upstream_int.h"

static void dispatch(shadow_upstream_t *u, leg_t *leg, int front);
static void pump(shadow_upstream_t *u);
static void conn_read_start(conn_t *conn);
static void conn_arm(conn_t *conn);
static const shadow_response_events_t response_events;

void shadow_upstream_opts_default(shadow_upstream_opts_t *o) {
  o->connect_timeout_ms = 3000;
  o->timeout_ms = 5000;
  o->read_timeout_ms = 60000;
  o->idle_timeout_ms = 60000;
  o->max_connections = 0;
  /* No cap: a steady load finds a connection for each of its concurrent
   * requests; closing and reopening them costs more than the sockets do
   * and leaves TIME_WAIT behind. Idle ones close after idle_timeout_ms. */
  o->max_idle = 0;
  o->header_bytes = 64 * 1024;
  o->body_keep = 1024 * 1024;
  o->host = NULL;
  o->protocol = SHADOW_UPSTREAM_HTTP1;
  o->max_streams = 100;
  memset(&o->tls, 0, sizeof(o->tls));
  o->tls.verify = 1;
  o->resolve_ms = 30000;
  o->log = NULL;
  o->log_ud = NULL;
}

/* Zero timeouts and limits mean "the default": a backend without any
 * timeout or limit is exactly what a hostile one exploits. */
static void opts_normalize(shadow_upstream_opts_t *dst,
                           const shadow_upstream_opts_t *src) {
  shadow_upstream_opts_t d;
  shadow_upstream_opts_default(&d);
  *dst = src ? *src : d;
  if (!dst->connect_timeout_ms) dst->connect_timeout_ms = d.connect_timeout_ms;
  if (!dst->timeout_ms) dst->timeout_ms = d.timeout_ms;
  if (!dst->read_timeout_ms) dst->read_timeout_ms = d.read_timeout_ms;
  if (!dst->idle_timeout_ms) dst->idle_timeout_ms = d.idle_timeout_ms;
  if (!dst->header_bytes) dst->header_bytes = d.header_bytes;
  if (!dst->max_streams) dst->max_streams = d.max_streams;
}

const char *shadow_upstream_protocol_name(int protocol) {
  switch (protocol) {
  case SHADOW_UPSTREAM_H2: return "h2";
  case SHADOW_UPSTREAM_AUTO: return "auto";
  default: return "http/1.1";
  }
}

int shadow_upstream_protocol_parse(const char *name) {
  if (!name) return -1;
  if (strcmp(name, "http/1.1") == 0) return SHADOW_UPSTREAM_HTTP1;
  if (strcmp(name, "h2") == 0) return SHADOW_UPSTREAM_H2;
  if (strcmp(name, "auto") == 0) return SHADOW_UPSTREAM_AUTO;
  return -1;
}

const char *shadow_upstream_err_name(int err) {
  switch (err) {
  case SHADOW_UPSTREAM_OK: return "ok";
  case SHADOW_UPSTREAM_REFUSED: return "refused";
  case SHADOW_UPSTREAM_RESET: return "reset";
  case SHADOW_UPSTREAM_TIMEOUT: return "timeout";
  case SHADOW_UPSTREAM_BAD_RESPONSE: return "bad_response";
  case SHADOW_UPSTREAM_TOO_LARGE: return "too_large";
  case SHADOW_UPSTREAM_CANCELED: return "canceled";
  case SHADOW_UPSTREAM_TLS: return "tls";
  default: return "unknown";
  }
}

/* ---- legs -------------------------------------------------------------- */

static void leg_recycle(leg_t *leg) {
  shadow_upstream_t *u = leg->u;
  if (leg->writes > 0) {
    leg->dead = 1;
    return;
  }
  shadow_buf_free(&leg->pend);
  shadow_buf_free(&leg->rbuf);
  shadow_headers_free(&leg->rh);
  if (u->nfree < KEEP_FREE && leg->wire.cap <= KEEP_WIRE) {
    shadow_buf_reset(&leg->wire);
    list_push_front(&u->freelist, &leg->link);
    u->nfree++;
    return;
  }
  shadow_buf_free(&leg->wire);
  free(leg);
}

static leg_t *leg_get(shadow_upstream_t *u) {
  leg_t *leg;
  shadow_buf_t wire = SHADOW_BUF_INIT;
  if (!list_empty(&u->freelist)) {
    leg = CONTAINER(u->freelist.next, leg_t, link);
    list_remove(&leg->link);
    u->nfree--;
    wire = leg->wire;
  } else {
    leg = malloc(sizeof(*leg));
    if (!leg) return NULL;
  }
  memset(leg, 0, sizeof(*leg));
  leg->wire = wire;
  leg->u = u;
  list_init(&leg->link);
  list_init(&leg->slink);
  list_init(&leg->tlink);
  return leg;
}

/* The leg's last event. */
static void deliver(leg_t *leg, int err, const shadow_headers_t *trailers) {
  shadow_upstream_t *u = leg->u;
  if (err != SHADOW_UPSTREAM_OK) u->stats.failures++;
  u->pending--;
  leg->ended = 1;
  leg->where = AT_NONE;
  leg->h->on_done(leg->ud, err, trailers, leg->detail[0] ? leg->detail : NULL);
  leg_recycle(leg);
}

static void maybe_free(shadow_upstream_t *u) {
  if (!u->closing || u->handles > 0) return;
  while (!list_empty(&u->freelist)) {
    leg_t *leg = CONTAINER(u->freelist.next, leg_t, link);
    list_remove(&leg->link);
    shadow_buf_free(&leg->wire);
    free(leg);
  }
  free(u->host_override);
  shadow_tls_ctx_unref(u->tls);
  shadow_tls_ctx_unref(u->tls_h2);
  shadow_tls_ctx_unref(u->tls_auto);
  free(u->host);
  free(u->base);
  free(u);
}

static void on_upstream_timer_close(uv_handle_t *h) {
  shadow_upstream_t *u = h->data;
  u->handles--;
  maybe_free(u);
}

static void maybe_close_defer(shadow_upstream_t *u) {
  if (u->closing && !u->defer_closed && list_empty(&u->deferred)) {
    u->defer_closed = 1;
    uv_close((uv_handle_t *)&u->defer_timer, on_upstream_timer_close);
  }
}

static void on_defer(uv_timer_t *t) {
  shadow_upstream_t *u = t->data;
  /* Only what was deferred before this run: a callback that sends again
   * and fails again must wait for the next turn of the loop. */
  link_t batch;
  list_init(&batch);
  if (!list_empty(&u->deferred)) {
    batch.next = u->deferred.next;
    batch.prev = u->deferred.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    list_init(&u->deferred);
  }
  while (!list_empty(&batch)) {
    leg_t *leg = CONTAINER(batch.next, leg_t, link);
    list_remove(&leg->link);
    deliver(leg, leg->err, NULL);
  }
  shadow__h2_flush_resumed(u);
  maybe_close_defer(u);
}

void shadow__upstream_defer(shadow_upstream_t *u) {
  if (!u->defer_closed && !uv_is_active((uv_handle_t *)&u->defer_timer))
    uv_timer_start(&u->defer_timer, on_defer, 0, 0);
}

/* Every failure goes through the loop, so no callback ever runs inside
 * shadow_upstream_start() or inside another callback's call into us. */
static void fail(leg_t *leg, int err) {
  shadow_upstream_t *u = leg->u;
  leg->err = err;
  leg->where = AT_DEFERRED; /* no more events but on_done */
  list_push_back(&u->deferred, &leg->link);
  if (!uv_is_active((uv_handle_t *)&u->defer_timer))
    uv_timer_start(&u->defer_timer, on_defer, 0, 0);
}

static uint64_t remaining(shadow_upstream_t *u, const leg_t *leg) {
  uint64_t now = uv_now(u->loop);
  return leg->deadline > now ? leg->deadline - now : 0;
}

/* A deadline no later than the leg's total one. */
static uint64_t cap_total(const leg_t *leg, uint64_t at) {
  return at < leg->total_deadline ? at : leg->total_deadline;
}

/* Milliseconds from now to at, capped by the total deadline. */
static uint64_t until(shadow_upstream_t *u, const leg_t *leg, uint64_t at) {
  uint64_t now = uv_now(u->loop);
  at = cap_total(leg, at);
  return at > now ? at - now : 0;
}

/* ---- connections ------------------------------------------------------- */

static void conn_handle_closed(conn_t *conn) {
  if (--conn->closes > 0) return;
  shadow_upstream_t *u = conn->u;
  shadow__h2_conn_free(conn);
  shadow_response_parser_free(&conn->parser);
  free(conn);
  u->handles--;
  maybe_free(u);
}

static void on_stream_close(uv_handle_t *h) {
  conn_handle_closed(shadow_stream_of(h)->data);
}

static void on_timer_close(uv_handle_t *h) {
  conn_handle_closed(h->data);
}

/* Closes a connection whose leg (if any) was already detached. The slot it
 * held is free at once: uv_close() closes the socket now. */
static void conn_close(conn_t *conn) {
  shadow_upstream_t *u = conn->u;
  if (conn->state == CLOSING) return;
  if (conn->state == IDLE) u->nidle--;
  list_remove(&conn->link);
  u->nconns--;
  conn->state = CLOSING;
  shadow_stream_close(&conn->s, on_stream_close);
  uv_close((uv_handle_t *)&conn->timer, on_timer_close);
}

static leg_t *conn_detach(conn_t *conn) {
  leg_t *leg = conn->leg;
  conn->leg = NULL;
  if (leg) leg->conn = NULL;
  shadow_deadline_clear(&conn->deadline);
  return leg;
}

static int is_stale_error(int uverr) {
  return uverr == UV_EOF || uverr == UV_ECONNRESET || uverr == UV_EPIPE;
}

/* The leg on conn failed before a whole response. A pooled connection that
 * the server had already given up on fails exactly like this, before a
 * single byte of response; an idempotent request whose bytes are all still
 * at hand gets one more try. */
static void conn_abort(conn_t *conn, int reason, int uverr) {
  shadow_upstream_t *u = conn->u;
  int stale = conn->reused && is_stale_error(uverr) &&
              shadow_response_parser_seen(&conn->parser) == 0;
  leg_t *leg = conn_detach(conn);
  conn_close(conn);
  if (leg && stale && leg->idempotent && !leg->streaming && !leg->retried &&
      !u->closing) {
    leg->retried = 1;
    u->stats.retries++;
    dispatch(u, leg, 1);
  } else if (leg) {
    fail(leg, reason);
  }
  pump(u);
}

static void conn_send(conn_t *conn);

/* The request's last byte is written: the wait for the head starts now,
 * as nginx's proxy_read_timeout does, so a slow upload does not eat the
 * backend's time to answer. */
static void leg_sent(leg_t *leg) {
  conn_t *conn = leg->conn;
  if (leg->sent || leg->tunnel || !conn) return;
  leg->sent = 1;
  leg->deadline = cap_total(leg, uv_now(leg->u->loop) + leg->timeout_ms);
  if (!shadow_response_parser_has_head(&conn->parser)) conn_arm(conn);
}

/* A streamed leg whose write completed: its next bytes, and a producer
 * that waited may go on. */
static void leg_wrote(leg_t *leg) {
  conn_t *conn = leg->conn;
  shadow_buf_reset(&leg->wire);
  if (leg->pend.len && conn && !conn->writing) {
    shadow_buf_t t = leg->wire;
    leg->wire = leg->pend;
    leg->pend = t;
    conn_send(conn);
  }
  if (conn && !conn->writing && leg->body_ended && !leg->pend.len)
    leg_sent(leg);
  if (leg->wants_drain && leg->pend.len < SEND_LOW && !leg->ended &&
      leg->where == AT_NONE) {
    leg->wants_drain = 0;
    if (leg->h->on_drain) leg->h->on_drain(leg->ud);
  }
}

static void on_write(shadow_stream_t *st, int status) {
  conn_t *conn = st->data;
  leg_t *leg = conn->writing;
  conn->writing = NULL;
  leg->writes--;
  if (leg->dead) {
    leg->dead = 0;
    leg_recycle(leg);
    return;
  }
  if (conn->state == CLOSING || conn->leg != leg) return;
  if (status != 0) {
    conn_abort(conn, SHADOW_UPSTREAM_RESET, status);
    return;
  }
  /* The send timeout runs between two writes, as nginx's
   * proxy_send_timeout does. */
  leg->wrote_at = uv_now(conn->u->loop);
  if (!leg->sent) conn_arm(conn);
  if (leg->streaming)
    leg_wrote(leg);
  else
    leg_sent(leg);
}

static void connect_leg(shadow_upstream_t *u, leg_t *leg,
                        const struct sockaddr *after);

/* Connecting failed (refused, unreachable, the connect timeout): the
 * address is skipped for a while, and the leg tries the name's next one
 * while its deadline allows, as nginx's proxy_next_upstream error
 * timeout does with a name's addresses. Nothing was sent yet, so any
 * request may go again. */
static void conn_connect_failed(conn_t *conn, int reason, const char *why) {
  shadow_upstream_t *u = conn->u;
  if (conn->want_h2) {
    shadow__h2_conn_failed(conn, reason, why);
    return;
  }
  u->stats.connect_failures++;
  shadow_resolver_failed(u->res, (const struct sockaddr *)&conn->addr, why);
  struct sockaddr_storage failed = conn->addr;
  leg_t *leg = conn_detach(conn);
  conn_close(conn);
  if (leg && !u->closing && leg->connects < shadow_resolver_count(u->res) &&
      remaining(u, leg) > 0) {
    u->stats.failovers++;
    connect_leg(u, leg, (const struct sockaddr *)&failed);
  } else if (leg) {
    fail(leg, reason);
  }
  pump(u);
}

static void conn_send(conn_t *conn) {
  leg_t *leg = conn->leg;
  if (!leg->wire.len) return;
  uv_buf_t buf = uv_buf_init(leg->wire.data, (unsigned)leg->wire.len);
  conn->writing = leg;
  leg->writes++;
  int rc = shadow_stream_write(&conn->s, &buf, 1, on_write);
  if (rc < 0) {
    conn->writing = NULL;
    leg->writes--;
    conn_abort(conn, SHADOW_UPSTREAM_RESET, rc);
  }
}

static void on_timer(uv_timer_t *t);

/* Arms the connection's deadline ms from now (lazily: see deadline.h). */
static void conn_timer_set(conn_t *conn, uint64_t ms) {
  shadow_deadline_set(&conn->deadline, &conn->timer, on_timer, ms);
}

static void conn_timer_clear(conn_t *conn) {
  shadow_deadline_clear(&conn->deadline);
}

static void on_timer(uv_timer_t *t) {
  conn_t *conn = t->data;
  shadow_upstream_t *u = conn->u;
  if (conn->want_h2) {
    shadow__h2_on_timer(conn);
    return;
  }
  if (!shadow_deadline_reached(&conn->deadline, &conn->timer, on_timer)) return;
  if (conn->state == IDLE) { /* kept long enough without use */
    conn_close(conn);
    return;
  }
  if (conn->state == CLOSING || !conn->leg) return;
  /* The connect timeout proper (the head deadline still runs): the
   * address is as good as unreachable. */
  if (conn->state == CONNECTING && !conn->handshaking &&
      remaining(u, conn->leg) > 0) {
    conn_connect_failed(conn, SHADOW_UPSTREAM_TIMEOUT, "connect timed out");
    return;
  }
  leg_t *leg = conn_detach(conn);
  conn_close(conn);
  /* A server that takes the connection but never finishes the handshake
   * is a TLS failure (502 naming it), not a slow answer; the leg's total
   * deadline is a timeout whatever the leg was doing. */
  if (conn->handshaking && uv_now(u->loop) < leg->total_deadline) {
    snprintf(leg->detail, sizeof(leg->detail), "handshake timed out");
    fail(leg, SHADOW_UPSTREAM_TLS);
  } else {
    fail(leg, SHADOW_UPSTREAM_TIMEOUT);
  }
  pump(u);
}

/* The timer that fits the connection's state: the connect timeout (within
 * the head deadline), the send timeout between two writes of a request
 * still being sent, the head deadline once it is sent, the read timeout
 * between two reads of a body (not while paused), or the idle timeout;
 * for a leg with a total deadline, never past it (paused or not). */
static void conn_arm(conn_t *conn) {
  shadow_upstream_t *u = conn->u;
  leg_t *leg = conn->leg;
  uint64_t ms;
  if (conn->state == IDLE) {
    ms = u->opts.idle_timeout_ms;
  } else if (!leg) {
    conn_timer_clear(conn);
    return;
  } else if (leg->tunnel ||
             (leg->paused && shadow_response_parser_has_head(&conn->parser))) {
    /* A tunnel may be quiet for long: its idle time is the client side's
     * to bound. A paused leg waits for its reader. */
    if (leg->total_deadline == UINT64_MAX) {
      conn_timer_clear(conn);
      return;
    }
    ms = until(u, leg, UINT64_MAX);
  } else if (shadow_response_parser_has_head(&conn->parser)) {
    ms = until(u, leg, uv_now(u->loop) + u->opts.read_timeout_ms);
  } else if (conn->state == BUSY && !leg->sent) {
    ms = until(u, leg, leg->wrote_at + u->opts.read_timeout_ms);
  } else {
    ms = remaining(u, leg);
    if (conn->state == CONNECTING && u->opts.connect_timeout_ms < ms)
      ms = u->opts.connect_timeout_ms;
  }
  conn_timer_set(conn, ms);
}

/* Binds leg to conn: fresh parser state, the deadline armed. */
static void conn_bind(conn_t *conn, leg_t *leg) {
  shadow_response_parser_reset(&conn->parser, leg->head, leg->upgrade,
                               &response_events, conn);
  conn->leg = leg;
  leg->conn = conn;
  leg->sent = 0; /* a retry sends it again */
  leg->wrote_at = uv_now(conn->u->loop);
  conn_arm(conn);
}

/* Sends leg on an open connection that is free. */
static void reuse(conn_t *conn, leg_t *leg) {
  conn_bind(conn, leg);
  conn->u->stats.reuses++;
  conn_send(conn);
  conn_read_start(conn);
}

/* A connection whose response is done: take the next queued request, or
 * wait in the pool. */
static void conn_idle(conn_t *conn) {
  shadow_upstream_t *u = conn->u;
  if (u->opts.max_connections && u->nconns > u->opts.max_connections) {
    conn_close(conn); /* the cap was lowered: shrink to it */
    return;
  }
  if (!shadow_resolver_has(u->res, (const struct sockaddr *)&conn->addr)) {
    conn_close(conn); /* the name no longer points there */
    pump(u);
    return;
  }
  if (!list_empty(&u->queue)) {
    leg_t *leg = CONTAINER(u->queue.next, leg_t, link);
    list_remove(&leg->link);
    leg->where = AT_NONE;
    u->nqueued--;
    reuse(conn, leg);
    return;
  }
  if (u->opts.max_idle && u->nidle >= u->opts.max_idle) {
    conn_close(conn);
    return;
  }
  list_remove(&conn->link);
  list_push_front(&u->idle, &conn->link);
  conn->state = IDLE;
  u->nidle++;
  conn_arm(conn);
  /* A leg paused at its last read stopped the reading; an idle connection
   * reads, to see the server close it. */
  conn_read_start(conn);
}

/* Where a read lands. Usually the client's one buffer, which every event
 * of the read is done with before the next. A body the leg's handler keeps
 * (body_room: the dispatcher's records) is read straight into its buffer
 * once the head is in, so its bytes are not copied there from ours; up to
 * one byte more than the body's rest is read, so bytes past the response
 * show in the same read, as they do in ours. Taken only when the room holds
 * the whole rest or a full read of ours: never more reads than before.
 * The head's read would still carry most of a large body into our buffer
 * (with the copy after it), so on a connection whose last body was large,
 * the first read of a response takes only FIRST_READ bytes: the head, a
 * little body, and then the rest goes straight where it is kept. */
#define FIRST_READ 4096
#define BIG_BODY (32 * 1024)
#define ROOM_MAX (1024 * 1024)

static void on_alloc(shadow_stream_t *st, size_t hint, uv_buf_t *buf) {
  conn_t *conn = st->data;
  leg_t *leg = conn->leg;
  size_t n = sizeof(conn->u->rbuf);
  if (leg && !conn->h2 && leg->h->body_room && !leg->tunnel) {
    uint64_t left = shadow_response_parser_body_left(&conn->parser);
    if (left) {
      size_t want = left < ROOM_MAX ? (size_t)left + 1 : ROOM_MAX;
      char *at = NULL;
      size_t room = leg->h->body_room(leg->ud, want, &at);
      if (room && (room == want || room >= sizeof(conn->u->rbuf))) {
        *buf = uv_buf_init(at, (unsigned)room);
        return;
      }
    } else if (conn->big_body &&
               shadow_response_parser_seen(&conn->parser) == 0 &&
               leg->h->body_room(leg->ud, 0, NULL)) {
      n = FIRST_READ;
    }
  }
  *buf = uv_buf_init(conn->u->rbuf, (unsigned)n);
}

/* ---- response events --------------------------------------------------- */

/* Each returns -1 once the leg has gone (aborted from inside a callback),
 * which stops the parser for the rest of this read. */

static int ev_interim(void *ud, shadow_response_parser_t *p) {
  conn_t *conn = ud;
  leg_t *leg = conn->leg;
  if (!leg) return -1;
  if (leg->h->on_interim) leg->h->on_interim(leg->ud, p->status, &p->headers);
  return conn->leg ? 0 : -1;
}

static int ev_head(void *ud, shadow_response_parser_t *p) {
  conn_t *conn = ud;
  leg_t *leg = conn->leg;
  if (!leg) return -1;
  if (p->status == 101) leg->tunnel = 1;
  leg->h->on_head(leg->ud, p->status, &p->headers, p->content_length);
  if (!conn->leg) return -1;
  conn_arm(conn); /* from the head deadline to the read timeout */
  return 0;
}

static int ev_body(void *ud, const char *data, size_t len) {
  conn_t *conn = ud;
  leg_t *leg = conn->leg;
  if (!leg) return -1;
  leg->h->on_body(leg->ud, data, len);
  return conn->leg ? 0 : -1;
}

static const shadow_response_events_t response_events = {ev_interim, ev_head,
                                                         ev_body};

static void on_read(shadow_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *conn = st->data;
  shadow_upstream_t *u = conn->u;
  if (conn->h2) {
    shadow__h2_on_read(conn, nread, buf);
    return;
  }
  if (nread == 0 || conn->state == CLOSING) return;
  leg_t *leg = conn->leg;
  if (!leg) {
    /* An idle connection: EOF means the server closed it, and bytes
     * nobody asked for mean it is out of step. Either way, drop it. */
    conn_close(conn);
    pump(u);
    return;
  }
  int v;
  if (nread > 0) {
    v = shadow_response_parser_feed(&conn->parser, buf->base, (size_t)nread);
  } else if (nread == UV_EOF) {
    v = shadow_response_parser_finish(&conn->parser);
  } else if (nread == SHADOW_STREAM_ETLS) {
    snprintf(leg->detail, sizeof(leg->detail), "%s",
             shadow_stream_error(&conn->s));
    conn_abort(conn, SHADOW_UPSTREAM_TLS, (int)nread);
    return;
  } else {
    conn_abort(conn, SHADOW_UPSTREAM_RESET, (int)nread);
    return;
  }
  /* A callback may have aborted the leg (the connection is closing) or
   * paused it. */
  if (conn->state == CLOSING || conn->leg != leg) return;
  if (v == SHADOW_RESPONSE_ERROR) {
    conn_abort(conn, conn->parser.err, (int)nread);
    return;
  }
  if (v == SHADOW_RESPONSE_MORE) {
    if (leg->h->on_read_end) leg->h->on_read_end(leg->ud);
    if (conn->state == CLOSING || conn->leg != leg) return;
    if (leg->paused && conn->reading) {
      shadow_stream_read_stop(st);
      conn->reading = 0;
    }
    conn_arm(conn);
    return;
  }
  /* A response that came while our request was still being written means
   * the server stopped reading it: the rest would be read as a request. */
  int keep = nread > 0 && conn->parser.keep_alive && !conn->parser.extra &&
             !conn->writing && !leg->pend.len &&
             (!leg->streaming || leg->body_ended) && !u->closing;
  conn->big_body = conn->parser.body_seen >= BIG_BODY;
  conn_detach(conn);
  conn->reused = 1;
  /* The trailers are taken out of the parser, which the connection's next
   * request resets; they are rare, and usually this moves nothing. */
  shadow_headers_t trailers = conn->parser.trailers;
  memset(&conn->parser.trailers, 0, sizeof(conn->parser.trailers));
  /* The connection is settled before the callback runs, so a send from
   * inside it can already reuse this connection. */
  if (keep) {
    conn_idle(conn);
  } else {
    conn_close(conn);
    pump(u);
  }
  deliver(leg, SHADOW_UPSTREAM_OK, &trailers);
  shadow_headers_free(&trailers);
}

static void conn_read_start(conn_t *conn) {
  if (conn->reading || conn->state == CLOSING || conn->state == CONNECTING)
    return;
  int rc = shadow_stream_read_start(&conn->s, on_alloc, on_read);
  if (rc < 0) {
    if (conn->h2)
      shadow__h2_conn_fail(conn, SHADOW_UPSTREAM_RESET, NULL);
    else
      conn_abort(conn, SHADOW_UPSTREAM_RESET, rc);
    return;
  }
  conn->reading = 1;
}

/* The connection can carry requests: send the leg's. */
static void conn_ready(conn_t *conn) {
  if (conn->want_h2) {
    /* HTTP/2, unless ALPN chose HTTP/1.1 (then it comes back here). */
    shadow__h2_conn_ready(conn);
    if (conn->h2 && conn->state != CLOSING) conn_read_start(conn);
    return;
  }
  conn->state = BUSY;
  if (!conn->leg) { /* cannot happen: a connection is opened for a leg */
    conn_idle(conn);
    return;
  }
  /* Reads stay on for the connection's whole life, idle included, so a
   * server that closes an idle connection frees it at once. */
  conn_read_start(conn);
  if (conn->state == CLOSING) return;
  conn->leg->wrote_at = uv_now(conn->u->loop); /* the sending starts */
  conn_arm(conn);
  conn_send(conn);
}

/* The TLS handshake is over: a failure fails the leg (with the words of
 * the certificate check, or OpenSSL's), success sends it. */
static void on_tls_ready(shadow_stream_t *st, int status) {
  conn_t *conn = st->data;
  shadow_upstream_t *u = conn->u;
  if (conn->state == CLOSING) return;
  conn->handshaking = 0;
  if (status == 0) {
    conn_ready(conn);
    return;
  }
  if (conn->want_h2) {
    shadow__h2_conn_fail(conn, SHADOW_UPSTREAM_TLS,
                         status == SHADOW_STREAM_ETLS
                             ? shadow_stream_error(st)
                             : "the server closed the handshake");
    return;
  }
  leg_t *leg = conn_detach(conn);
  if (leg)
    snprintf(leg->detail, sizeof(leg->detail), "%s",
             status == SHADOW_STREAM_ETLS ? shadow_stream_error(st)
                                          : "the server closed the handshake");
  conn_close(conn);
  if (leg) fail(leg, SHADOW_UPSTREAM_TLS);
  pump(u);
}

static void on_connect(uv_connect_t *c, int status) {
  conn_t *conn = c->data;
  shadow_upstream_t *u = conn->u;
  if (conn->state == CLOSING) return;
  if (status < 0) {
    conn_connect_failed(conn, SHADOW_UPSTREAM_REFUSED, uv_strerror(status));
    return;
  }
  shadow_resolver_succeeded(u->res, (const struct sockaddr *)&conn->addr);
  uv_tcp_nodelay(&conn->s.tcp, 1);
  if (!conn->ctx) {
    conn_ready(conn);
    return;
  }
  /* Still CONNECTING: the connect timeout bounds the handshake too. */
  conn->handshaking = 1;
  if (shadow_stream_start_tls(&conn->s, conn->ctx, 0, on_tls_ready) != 0) {
    if (conn->want_h2) {
      shadow__h2_conn_fail(conn, SHADOW_UPSTREAM_TLS, "out of memory");
      return;
    }
    leg_t *leg = conn_detach(conn);
    conn_close(conn);
    if (leg) fail(leg, SHADOW_UPSTREAM_TLS);
    pump(u);
  }
}

/* A connection for leg to the name's next address (after the one that
 * just failed, if any), which *tried is set to. */
static int conn_open(shadow_upstream_t *u, leg_t *leg,
                     const struct sockaddr *after,
                     struct sockaddr_storage *tried) {
  leg->connects++; /* every try counts, so the failover loop ends */
  struct sockaddr_storage addr;
  shadow_resolver_pick(u->res, after, &addr);
  *tried = addr; /* after may point at *tried: read first */
  conn_t *conn = calloc(1, sizeof(*conn));
  if (!conn) return -ENOMEM;
  int rc = shadow_stream_init(u->loop, &conn->s, conn);
  if (rc < 0) {
    free(conn);
    return rc;
  }
  uv_timer_init(u->loop, &conn->timer);
  conn->u = u;
  conn->timer.data = conn->connect.data = conn;
  conn->closes = 2;
  conn->state = CONNECTING;
  shadow_response_parser_init(&conn->parser, u->opts.header_bytes);
  list_init(&conn->link);
  list_init(&conn->streams);
  list_init(&conn->touched);
  conn->want_h2 = leg->h2;
  /* https: ALPN as the leg needs: HTTP/1.1, h2 alone (gRPC, "h2"), or
   * both while an "auto" pool has not learned the server's choice. */
  conn->ctx = !u->tls                                          ? NULL
              : !leg->h2                                       ? u->tls
              : u->proto == SHADOW_UPSTREAM_AUTO && !leg->grpc ? u->tls_auto
                                                               : u->tls_h2;
  conn->probe = leg->h2 && !leg->grpc && u->proto == SHADOW_UPSTREAM_AUTO &&
                u->learned == 0;
  list_push_back(leg->h2 ? &u->h2conns : &u->busy, &conn->link);
  u->nconns++;
  u->handles++;
  u->stats.connects++;
  conn->addr = addr;
  if (!leg->h2) conn_bind(conn, leg);
  rc = uv_tcp_connect(&conn->connect, &conn->s.tcp,
                      (const struct sockaddr *)&conn->addr, on_connect);
  if (rc == 0 && leg->h2) shadow__h2_conn_attach(conn, leg);
  if (rc < 0) {
    /* No route, no such family here (an IPv6 address on a host without
     * IPv6): as good as refused. */
    u->stats.connect_failures++;
    shadow_resolver_failed(u->res, (const struct sockaddr *)&conn->addr,
                           uv_strerror(rc));
    conn_detach(conn);
    conn_close(conn);
  }
  return rc;
}

/* A new connection for leg, on the first of the name's addresses that
 * takes a connect; the rest of the failover is conn_connect_failed's. */
static void connect_leg(shadow_upstream_t *u, leg_t *leg,
                        const struct sockaddr *after) {
  struct sockaddr_storage last;
  for (;;) {
    int rc = conn_open(u, leg, after, &last);
    if (rc == 0) return;
    after = (const struct sockaddr *)&last;
    if (rc == -ENOMEM || leg->connects >= shadow_resolver_count(u->res)) {
      fail(leg, SHADOW_UPSTREAM_REFUSED);
      return;
    }
    u->stats.failovers++;
  }
}

void shadow__upstream_connect(shadow_upstream_t *u, leg_t *leg,
                              const struct sockaddr *after) {
  connect_leg(u, leg, after);
}

void shadow__upstream_conn_bind_h1(conn_t *conn, leg_t *leg) {
  conn_bind(conn, leg);
  conn_ready(conn);
}

void shadow__upstream_conn_close(conn_t *conn) {
  conn_close(conn);
}

uint64_t shadow__upstream_cap_total(const leg_t *leg, uint64_t at) {
  return cap_total(leg, at);
}

void shadow__upstream_fail(leg_t *leg, int err) {
  fail(leg, err);
}

void shadow__upstream_deliver(leg_t *leg, int err,
                              const shadow_headers_t *trailers) {
  deliver(leg, err, trailers);
}

void shadow__upstream_dispatch(shadow_upstream_t *u, leg_t *leg, int front) {
  dispatch(u, leg, front);
}

void shadow__upstream_pump(shadow_upstream_t *u) {
  pump(u);
}

/* ---- scheduling -------------------------------------------------------- */

static void on_queue_timer(uv_timer_t *t) {
  shadow_upstream_t *u = t->data;
  uint64_t now = uv_now(u->loop), next = UINT64_MAX;
  link_t *e = u->queue.next;
  while (e != &u->queue) {
    leg_t *leg = CONTAINER(e, leg_t, link);
    e = e->next;
    if (leg->deadline <= now) {
      list_remove(&leg->link);
      u->nqueued--;
      fail(leg, SHADOW_UPSTREAM_TIMEOUT);
    } else if (leg->deadline < next) {
      next = leg->deadline;
    }
  }
  if (next != UINT64_MAX) {
    u->queue_due = next;
    uv_timer_start(&u->queue_timer, on_queue_timer, next - now, 0);
  }
}

static void enqueue(shadow_upstream_t *u, leg_t *leg, int front) {
  if (front)
    list_push_front(&u->queue, &leg->link);
  else
    list_push_back(&u->queue, &leg->link);
  leg->where = AT_QUEUE;
  u->nqueued++;
  u->stats.queued++;
  if (!uv_is_active((uv_handle_t *)&u->queue_timer) ||
      leg->deadline < u->queue_due) {
    u->queue_due = leg->deadline;
    uv_timer_start(&u->queue_timer, on_queue_timer, remaining(u, leg), 0);
  }
}

static int has_slot(const shadow_upstream_t *u) {
  return u->opts.max_connections == 0 || u->nconns < u->opts.max_connections;
}

/* An "auto" pool asks the server once: while its first connection is
 * being opened, the legs that could go either way wait for the answer. */
static int probing(const shadow_upstream_t *u) {
  for (const link_t *e = u->h2conns.next; e != &u->h2conns; e = e->next)
    if (CONTAINER(e, conn_t, link)->probe) return 1;
  return 0;
}

/* An HTTP/2 form leg of an "auto" pool that learned HTTP/1.1. */
static int goes_h1_now(const shadow_upstream_t *u, const leg_t *leg) {
  return leg->h2 && !leg->grpc && u->proto == SHADOW_UPSTREAM_AUTO &&
         u->learned == 1;
}

/* Whether dispatch() would place leg now rather than queue it. */
static int can_place(shadow_upstream_t *u, const leg_t *leg) {
  if (leg->h2 && !goes_h1_now(u, leg))
    return shadow__h2_has_room(u) ||
           (has_slot(u) && (leg->grpc || !probing(u)));
  return !list_empty(&u->idle) || has_slot(u);
}

static void dispatch(shadow_upstream_t *u, leg_t *leg, int front) {
  if (u->closing) {
    fail(leg, SHADOW_UPSTREAM_CANCELED);
    return;
  }
  if (goes_h1_now(u, leg) && shadow__h2_to_h1(u, leg) != 0) {
    fail(leg, SHADOW_UPSTREAM_RESET);
    return;
  }
  if (leg->h2) {
    if (shadow__h2_place(u, leg)) return;
    if (has_slot(u) && (leg->grpc || !probing(u))) {
      leg->connects = 0;
      connect_leg(u, leg, NULL);
      return;
    }
    enqueue(u, leg, front);
    return;
  }
  if (!list_empty(&u->idle)) {
    conn_t *conn = CONTAINER(u->idle.next, conn_t, link);
    list_remove(&conn->link);
    list_push_back(&u->busy, &conn->link);
    conn->state = BUSY;
    u->nidle--;
    reuse(conn, leg);
    return;
  }
  if (has_slot(u)) {
    leg->connects = 0;
    connect_leg(u, leg, NULL);
    return;
  }
  enqueue(u, leg, front);
}

/* Hands queued requests to whatever capacity just appeared. */
static void pump(shadow_upstream_t *u) {
  while (!u->closing && !list_empty(&u->queue) &&
         can_place(u, CONTAINER(u->queue.next, leg_t, link))) {
    leg_t *leg = CONTAINER(u->queue.next, leg_t, link);
    list_remove(&leg->link);
    leg->where = AT_NONE;
    u->nqueued--;
    dispatch(u, leg, 1);
  }
}

/* ---- the request on the wire ------------------------------------------- */

/* Any control byte or DEL: not only CR, LF and NUL, which would split
 * the line, but TAB, VT and FF too, which some parsers take for the space
 * that ends the method or the target. */
static int has_ctl(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) return 1;
  }
  return 0;
}

/* gRPC (application/grpc, +proto, +json...) needs HTTP/2's trailers. */
static int is_grpc(const shadow_headers_t *h) {
  for (size_t i = 0; h && i < h->n; i++)
    if (shadow_header_name_is(&h->v[i], "content-type"))
      return h->v[i].value_len >= 16 &&
             strncasecmp(h->v[i].value, "application/grpc", 16) == 0;
  return 0;
}

static int is_idempotent(const char *m) {
  static const char *const ok[] = {"GET",    "HEAD",  "OPTIONS", "PUT",
                                   "DELETE", "TRACE", NULL};
  for (size_t i = 0; ok[i]; i++)
    if (strcmp(m, ok[i]) == 0) return 1;
  return 0;
}

/* Nothing from a client or a script may write a header the grammar would
 * not parse back as that one header. */
static int headers_ok(const shadow_headers_t *h) {
  for (size_t i = 0; h && i < h->n; i++)
    if (!shadow_headers_line_valid(h, i)) return 0;
  return 1;
}

static size_t headers_size(const shadow_headers_t *h) {
  return h ? h->bytes + h->n * 4 : 0;
}

static int put_header(shadow_buf_t *b, const char *name, size_t nl,
                      const char *value, size_t vl) {
  int rc = shadow_buf_append(b, name, nl);
  if (!rc) rc = shadow_buf_append(b, ": ", 2);
  if (!rc) rc = shadow_buf_append(b, value, vl);
  if (!rc) rc = shadow_buf_append(b, "\r\n", 2);
  return rc;
}

static int method_has_body(const char *m) {
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
         strcmp(m, "PATCH") == 0;
}

/* The request head, and the body at hand with its framing: one buffer, one
 * write. A body whose length is unknown is sent chunked. */
int shadow__upstream_serialize(shadow_upstream_t *u, shadow_buf_t *b,
                               const shadow_upstream_request_t *r,
                               int chunked) {
  const char *target = r->target ? r->target : "";
  size_t tlen = r->target_len;
  const char *host_value = u->host;
  size_t want = strlen(r->method) + u->base_len + tlen + strlen(u->host) +
                headers_size(r->headers) + headers_size(r->extra) +
                r->body_len + 128;
  if (shadow_buf_reserve(b, want)) return -ENOMEM;
  int rc = shadow_buf_puts(b, r->method);
  rc |= shadow_buf_putc(b, ' ');
  if (tlen > 0 && target[0] == '/') {
    rc |= shadow_buf_append(b, u->base, u->base_len);
    rc |= shadow_buf_append(b, target, tlen);
  } else if (tlen > 0) {
    rc |= shadow_buf_append(b, target, tlen); /* "*" or absolute-form */
  } else {
    rc |= shadow_buf_append(b, u->base, u->base_len);
    rc |= shadow_buf_putc(b, '/');
  }
  rc |= shadow_buf_puts(b, " HTTP/1.1\r\n");
  const shadow_header_t *host = NULL;
  const shadow_headers_t *headers = r->headers;
  for (size_t i = 0; headers && i < headers->n; i++) {
    const shadow_header_t *e = &headers->v[i];
    if (shadow_header_is_hop(e->name, e->name_len)) continue;
    if (shadow_header_name_is(e, "host")) {
      if (!host) host = e;
      continue;
    }
    /* shadowd answered an Expect: 100-continue itself and sends the body
     * without waiting, so the backend is not asked to wait either. */
    if (shadow_header_name_is(e, "expect")) continue;
    rc |= put_header(b, e->name, e->name_len, e->value, e->value_len);
  }
  if (r->upgrade) {
    rc |= put_header(b, "Connection", 10, "upgrade", 7);
    rc |= put_header(b, "Upgrade", 7, r->upgrade, strlen(r->upgrade));
  }
  if (u->host_override)
    rc |= put_header(b, "Host", 4, u->host_override, strlen(u->host_override));
  else if (host)
    rc |= put_header(b, "Host", 4, host->value, host->value_len);
  else
    rc |= put_header(b, "Host", 4, host_value, strlen(host_value));
  for (size_t i = 0; r->extra && i < r->extra->n; i++) {
    const shadow_header_t *e = &r->extra->v[i];
    rc |= put_header(b, e->name, e->name_len, e->value, e->value_len);
  }
  if (r->upgrade && r->body_len == 0 && !r->body_more) {
    /* What follows a 101 is the tunnel's, not a body. */
    rc |= shadow_buf_append(b, "\r\n", 2);
    return rc ? -ENOMEM : 0;
  }
  if (chunked) {
    rc |= shadow_buf_puts(b, "Transfer-Encoding: chunked\r\n\r\n");
    if (r->body_len)
      rc |= shadow_buf_printf(b, "%zx\r\n", r->body_len) |
            shadow_buf_append(b, r->body, r->body_len) |
            shadow_buf_append(b, "\r\n", 2);
    return rc ? -ENOMEM : 0;
  }
  uint64_t cl = r->body_more ? (uint64_t)r->content_length : r->body_len;
  if (cl > 0 || method_has_body(r->method))
    rc |= shadow_buf_printf(b, "Content-Length: %llu\r\n",
                            (unsigned long long)cl);
  rc |= shadow_buf_append(b, "\r\n", 2);
  if (r->body_len) rc |= shadow_buf_append(b, r->body, r->body_len);
  return rc ? -ENOMEM : 0;
}

int shadow_upstream_start(shadow_upstream_t *u,
                          const shadow_upstream_request_t *r,
                          const shadow_upstream_handler_t *h, void *ud,
                          shadow_upstream_leg_t **out) {
  *out = NULL;
  if (!u || !r || !r->method || !h || !h->on_head || !h->on_body ||
      !h->on_done || (!r->target && r->target_len) || (!r->body && r->body_len))
    return -EINVAL;
  if (u->closing) return -ECANCELED;
  if (r->body_len > UINT32_MAX / 2) return -E2BIG; /* uv_buf_t: 32 bits */
  if (r->body_more && r->content_length >= 0 &&
      (uint64_t)r->content_length < r->body_len)
    return -EINVAL;
  const char *target = r->target ? r->target : "";
  size_t mlen = strlen(r->method);
  /* Nothing from a client or a script may split the request line or a
   * header: that is request smuggling done through us. */
  if (mlen == 0 || has_ctl(r->method, mlen) || strchr(r->method, ' ') ||
      has_ctl(target, r->target_len) || memchr(target, ' ', r->target_len) ||
      !headers_ok(r->headers) || !headers_ok(r->extra))
    return -EINVAL;
  leg_t *leg = leg_get(u);
  if (!leg) return -ENOMEM;
  leg->streaming = r->body_more;
  leg->chunked = r->body_more && r->content_length < 0;
  leg->grpc = is_grpc(r->headers) || is_grpc(r->extra);
  leg->h2 =
      leg->grpc || u->h2c || u->proto == SHADOW_UPSTREAM_H2 ||
      (u->proto == SHADOW_UPSTREAM_AUTO && u->learned != 1 && !r->upgrade);
  if (leg->h2 && r->upgrade) { /* no Upgrade in HTTP/2 */
    leg_recycle(leg);
    return -EPROTONOSUPPORT;
  }
  int rc = leg->h2 ? shadow__h2_serialize(u, leg, r)
                   : shadow__upstream_serialize(u, &leg->wire, r, leg->chunked);
  if (rc) {
    leg_recycle(leg);
    return rc;
  }
  leg->h = h;
  leg->ud = ud;
  leg->upgrade = r->upgrade != NULL;
  leg->head = strcmp(r->method, "HEAD") == 0;
  leg->idempotent = is_idempotent(r->method);
  uint64_t now = uv_now(u->loop);
  leg->total_deadline =
      r->total_timeout_ms ? now + r->total_timeout_ms : UINT64_MAX;
  leg->timeout_ms = u->opts.timeout_ms;
  leg->deadline = cap_total(leg, now + leg->timeout_ms);
  u->pending++;
  u->stats.requests++;
  *out = leg;
  dispatch(u, leg, 0);
  return 0;
}

/* Queues bytes of a streamed body behind what is being written. */
static int leg_queue(leg_t *leg, const char *data, size_t len, int last) {
  int rc = 0;
  if (leg->chunked && !leg->tunnel && !leg->h2) {
    if (len) rc = shadow_buf_printf(&leg->pend, "%zx\r\n", len);
    if (!rc && len) rc = shadow_buf_append(&leg->pend, data, len);
    if (!rc && len) rc = shadow_buf_append(&leg->pend, "\r\n", 2);
    if (!rc && last) rc = shadow_buf_puts(&leg->pend, "0\r\n\r\n");
  } else if (len) {
    rc = shadow_buf_append(&leg->pend, data, len);
  }
  if (rc) return -ENOMEM;
  if (leg->h2) {
    shadow__h2_leg_body(leg);
    return 0;
  }
  conn_t *conn = leg->conn;
  if (conn && conn->state == BUSY && !conn->writing) leg_wrote(leg);
  return 0;
}

int shadow_upstream_leg_body(shadow_upstream_leg_t *leg, const char *data,
                             size_t len) {
  if (!leg || leg->ended || leg->where == AT_DEFERRED ||
      !(leg->streaming || leg->tunnel) || leg->body_ended)
    return -ECANCELED;
  if (leg->tunnel) leg->streaming = 1; /* writes from here on are raw */
  if (len == 0) return 0;
  if (len > UINT32_MAX / 4) return -E2BIG;
  int rc = leg_queue(leg, data, len, 0);
  if (rc) return rc;
  if (leg->pend.len - leg->poff >= SEND_HIGH) {
    leg->wants_drain = 1;
    return 1;
  }
  return 0;
}

int shadow_upstream_leg_body_end(shadow_upstream_leg_t *leg) {
  if (!leg || leg->ended || leg->where == AT_DEFERRED || !leg->streaming ||
      leg->body_ended)
    return -ECANCELED;
  leg->body_ended = 1;
  return leg_queue(leg, NULL, 0, 1);
}

void shadow_upstream_leg_pause(shadow_upstream_leg_t *leg) {
  if (!leg || leg->ended || leg->paused) return;
  leg->paused = 1;
  if (leg->h2) {
    shadow__h2_leg_pause(leg);
    return;
  }
  conn_t *conn = leg->conn;
  /* Inside a read callback the reading stops once the read is parsed. */
  if (conn && conn->reading) {
    shadow_stream_read_stop(&conn->s);
    conn->reading = 0;
  }
  if (conn) conn_arm(conn);
}

void shadow_upstream_leg_resume(shadow_upstream_leg_t *leg) {
  if (!leg || leg->ended || !leg->paused) return;
  leg->paused = 0;
  if (leg->h2) {
    shadow__h2_leg_resume(leg);
    return;
  }
  conn_t *conn = leg->conn;
  if (!conn) return;
  conn_read_start(conn);
  if (conn->state != CLOSING) conn_arm(conn);
}

void shadow_upstream_leg_abort(shadow_upstream_leg_t *leg) {
  if (!leg || leg->ended) return;
  shadow_upstream_t *u = leg->u;
  leg->ended = 1;
  u->stats.aborted++;
  u->pending--;
  conn_t *conn = leg->conn;
  if (leg->h2 && leg->where == AT_NONE) {
    shadow__h2_leg_abort(leg); /* its stream only */
  } else if (conn) {
    conn_detach(conn);
    conn_close(conn);
  } else if (leg->where == AT_QUEUE) {
    list_remove(&leg->link);
    u->nqueued--;
  } else if (leg->where == AT_DEFERRED) {
    list_remove(&leg->link); /* its failure is never told */
  }
  leg->where = AT_NONE;
  leg_recycle(leg);
  pump(u);
}

/* ---- whole responses into a record ------------------------------------ */

typedef struct collect_s {
  shadow_record_t *rec;
  shadow_upstream_cb cb;
  void *ud;
  size_t keep;
  uint64_t start_ns;
} collect_t;

static void collect_head(void *ud, int status, shadow_headers_t *h,
                         int64_t content_length) {
  collect_t *c = ud;
  c->rec->status = status;
  /* Out of memory: the record is merely short of a header. */
  (void)shadow_headers_take(&c->rec->headers, h);
}

static void collect_body(void *ud, const char *data, size_t len) {
  collect_t *c = ud;
  shadow_record_body_feed(c->rec, data, len, c->keep);
}

static size_t collect_room(void *ud, size_t want, char **at) {
  collect_t *c = ud;
  return shadow_record_body_room(c->rec, want, c->keep, at);
}

static void collect_done(void *ud, int err, const shadow_headers_t *trailers,
                         const char *detail) {
  collect_t *c = ud;
  double ms = (double)(uv_hrtime() - c->start_ns) / 1e6;
  shadow_record_t *rec = c->rec;
  if (err == SHADOW_UPSTREAM_OK) {
    shadow_record_body_end(rec);
    /* Short of memory, the record merely lacks a trailer (as a header). */
    (void)shadow_record_add_trailers(rec, trailers);
  } else {
    shadow_record_free(rec);
    rec = NULL;
  }
  shadow_upstream_cb cb = c->cb;
  void *cud = c->ud;
  free(c);
  cb(cud, err, rec, ms);
}

static const shadow_upstream_handler_t collect_handler = {
    NULL, collect_head, collect_body, NULL, collect_done, NULL, collect_room};

int shadow_upstream_send(shadow_upstream_t *u, const char *method,
                         const char *target, size_t target_len,
                         const shadow_headers_t *headers,
                         const shadow_headers_t *extra, const char *body,
                         size_t body_len, shadow_upstream_cb cb, void *ud) {
  if (!u || !cb) return -EINVAL;
  collect_t *c = malloc(sizeof(*c));
  if (!c) return -ENOMEM;
  c->rec = shadow_record_new();
  if (!c->rec) {
    free(c);
    return -ENOMEM;
  }
  c->cb = cb;
  c->ud = ud;
  c->keep = u->opts.body_keep;
  c->start_ns = uv_hrtime();
  shadow_upstream_request_t r = {.method = method,
                                 .target = target,
                                 .target_len = target_len,
                                 .headers = headers,
                                 .extra = extra,
                                 .body = body,
                                 .body_len = body_len};
  shadow_upstream_leg_t *leg;
  int rc = shadow_upstream_start(u, &r, &collect_handler, c, &leg);
  if (rc) {
    shadow_record_free(c->rec);
    free(c);
  }
  return rc;
}

/* ---- the pool ---------------------------------------------------------- */

static int set_err(char **err, const char *fmt, const char *a, const char *b) {
  if (err) {
    int n = snprintf(NULL, 0, fmt, a, b);
    *err = malloc((size_t)n + 1);
    if (*err) snprintf(*err, (size_t)n + 1, fmt, a, b);
  }
  return -EINVAL;
}

/* "http[s]://host[:port][/base]" or "h2c://...", host being a name, IPv4
 * or [IPv6]. *tls says https; *h2c says h2c (HTTP/2 with prior knowledge
 * over plain TCP, as curl's --http2-prior-knowledge). */
static int parse_url(const char *url, char **host, char **hostport, char **port,
                     char **base, int *tls, int *h2c, char **err) {
  size_t sl = strncasecmp(url, "http://", 7) == 0    ? 7
              : strncasecmp(url, "https://", 8) == 0 ? 8
              : strncasecmp(url, "h2c://", 6) == 0   ? 6
                                                     : 0;
  if (!sl)
    return set_err(err,
                   "%s: expected http[s]://host[:port][/base] or "
                   "h2c://host[:port][/base]%s",
                   url, "");
  *tls = sl == 8;
  *h2c = sl == 6;
  const char *p = url + sl, *h, *he;
  if (*p == '[') {
    h = p + 1;
    he = strchr(h, ']');
    if (!he) return set_err(err, "%s: unterminated [IPv6] host%s", url, "");
    p = he + 1;
  } else {
    h = p;
    he = p + strcspn(p, ":/?#");
    p = he;
  }
  if (he == h) return set_err(err, "%s: no host%s", url, "");
  const char *ps = NULL, *pe = NULL;
  if (*p == ':') {
    ps = ++p;
    while (*p >= '0' && *p <= '9')
      p++;
    pe = p;
    long n = pe > ps && pe - ps <= 5 ? strtol(ps, NULL, 10) : 0;
    if (n < 1 || n > 65535) return set_err(err, "%s: bad port%s", url, "");
  }
  if (*p != '\0' && *p != '/')
    return set_err(err, "%s: unexpected '%s' after the host", url, p);
  size_t blen = strlen(p);
  while (blen > 0 && p[blen - 1] == '/')
    blen--;
  *host = strndup(h, (size_t)(he - h));
  *port = ps ? strndup(ps, (size_t)(pe - ps)) : strdup(*tls ? "443" : "80");
  /* The Host header as the URL spells its authority. */
  size_t alen =
      (size_t)((pe ? pe : he + (url[sl] == '[' ? 1 : 0)) - (url + sl));
  *hostport = strndup(url + sl, alen);
  *base = strndup(p, blen);
  if (!*host || !*port || !*hostport || !*base) {
    free(*host);
    free(*port);
    free(*hostport);
    free(*base);
    if (err) *err = strdup("out of memory");
    return -ENOMEM;
  }
  return 0;
}

int shadow_upstream_url_check(const char *url, char **err) {
  char *host = NULL, *hostport = NULL, *port = NULL, *base = NULL;
  int tls, h2c;
  if (err) *err = NULL;
  if (!url) return -EINVAL;
  int rc = parse_url(url, &host, &hostport, &port, &base, &tls, &h2c, err);
  if (rc) return rc;
  /* A base path is a prefix of request targets: it may not carry what
   * would end the path. */
  if (strpbrk(base, " ?#\t")) {
    rc = set_err(err,
                 "%s: the base path may not hold spaces, a query or a "
                 "fragment%s",
                 url, "");
  }
  free(host);
  free(hostport);
  free(port);
  free(base);
  return rc;
}

/* The set of addresses changed: pooled connections to an address that
 * went away are closed (busy ones when they finish, in conn_idle); those
 * to addresses that stayed are kept warm. */
static void on_addresses(void *ud) {
  shadow_upstream_t *u = ud;
  u->stats.address_changes++;
  link_t *e = u->idle.next;
  while (e != &u->idle) {
    conn_t *conn = CONTAINER(e, conn_t, link);
    e = e->next;
    if (!shadow_resolver_has(u->res, (const struct sockaddr *)&conn->addr))
      conn_close(conn);
  }
  /* An HTTP/2 connection there takes no new stream and closes once its
   * streams are done (an idle one now). */
  e = u->h2conns.next;
  while (e != &u->h2conns) {
    conn_t *conn = CONTAINER(e, conn_t, link);
    e = e->next;
    if (conn->state == CLOSING || conn->state == CONNECTING ||
        shadow_resolver_has(u->res, (const struct sockaddr *)&conn->addr))
      continue;
    conn->goaway = 1;
    if (!conn->nstreams) conn_close(conn);
  }
}

static void on_resolver_log(void *ud, const char *msg) {
  shadow_upstream_t *u = ud;
  if (u->log) u->log(u->log_ud, msg);
}

int shadow_upstream_url_has_name(const char *url) {
  char *host = NULL, *hostport = NULL, *port = NULL, *base = NULL;
  int tls, h2c;
  if (!url || parse_url(url, &host, &hostport, &port, &base, &tls, &h2c, NULL))
    return 0;
  int named = !shadow_resolver_is_numeric(host);
  free(host);
  free(hostport);
  free(port);
  free(base);
  return named;
}

/* Takes a copy of opts->host, which the caller may free afterwards. */
static int apply_opts(shadow_upstream_t *u, const shadow_upstream_opts_t *o) {
  char *host = o && o->host ? strdup(o->host) : NULL;
  if (o && o->host && !host) return -ENOMEM;
  free(u->host_override);
  u->host_override = host;
  opts_normalize(&u->opts, o);
  u->opts.host = u->host_override;
  /* Read once, by new(): no pointer into the caller's strings is kept. */
  memset(&u->opts.tls, 0, sizeof(u->opts.tls));
  return 0;
}

int shadow_upstream_new(uv_loop_t *loop, const char *url,
                        const shadow_upstream_opts_t *opts,
                        shadow_upstream_t **out, char **err) {
  if (err) *err = NULL;
  if (!loop || !url || !out) return -EINVAL;
  int rc = shadow_upstream_url_check(url, err);
  if (rc) return rc;
  char *host = NULL, *hostport = NULL, *port = NULL, *base = NULL;
  int tls = 0, h2c = 0;
  rc = parse_url(url, &host, &hostport, &port, &base, &tls, &h2c, err);
  if (rc) return rc;
  shadow_tls_ctx_t *tls_ctx = NULL, *tls_h2 = NULL, *tls_auto = NULL;
  int proto = opts ? opts->protocol : SHADOW_UPSTREAM_HTTP1;
  if (h2c && proto == SHADOW_UPSTREAM_HTTP1) proto = SHADOW_UPSTREAM_H2;
  if (proto == SHADOW_UPSTREAM_AUTO && !tls) {
    rc = set_err(err,
                 "%s: protocol \"auto\" asks the server through TLS (ALPN): "
                 "it needs an https:// URL%s",
                 url, "");
    goto out;
  }
  if (tls) {
    shadow_upstream_opts_t d;
    shadow_upstream_opts_default(&d);
    shadow_tls_client_opts_t t = opts ? opts->tls : d.tls;
    if (!t.server_name) t.server_name = host;
    t.alpn = SHADOW_TLS_ALPN_HTTP1;
    rc = shadow_tls_client_ctx(&t, &tls_ctx, err);
    /* gRPC always needs h2, whatever the protocol says. */
    t.alpn = SHADOW_TLS_ALPN_H2;
    if (rc == 0) rc = shadow_tls_client_ctx(&t, &tls_h2, err);
    t.alpn = SHADOW_TLS_ALPN_AUTO;
    if (rc == 0 && proto == SHADOW_UPSTREAM_AUTO)
      rc = shadow_tls_client_ctx(&t, &tls_auto, err);
    if (rc) goto out;
  }
  shadow_upstream_t *u = calloc(1, sizeof(*u));
  if (!u || apply_opts(u, opts) != 0) {
    if (err) *err = strdup("out of memory");
    free(u);
    u = NULL;
    rc = -ENOMEM;
    goto out;
  }
  u->log = u->opts.log;
  u->log_ud = u->opts.log_ud;
  shadow_resolver_opts_t ro = {.resolve_ms = u->opts.resolve_ms,
                               .on_change = on_addresses,
                               .log = u->log ? on_resolver_log : NULL,
                               .ud = u};
  char *why = NULL;
  rc = shadow_resolver_new(loop, host, port, &ro, &u->res, &why);
  if (rc) {
    if (rc == -ENOMEM) {
      if (err) *err = strdup("out of memory");
    } else {
      set_err(err, "%s: cannot resolve: %s", url, why ? why : "?");
    }
    free(why);
    free(u->host_override);
    free(u);
    u = NULL;
    goto out;
  }
  u->tls = tls_ctx;
  u->tls_h2 = tls_h2;
  u->tls_auto = tls_auto;
  tls_ctx = tls_h2 = tls_auto = NULL;
  u->proto = proto;
  u->h2c = !tls && proto == SHADOW_UPSTREAM_H2;
  list_init(&u->h2conns);
  list_init(&u->flush);
  u->loop = loop;
  u->host = hostport;
  u->base = base;
  u->base_len = strlen(base);
  hostport = base = NULL;
  list_init(&u->busy);
  list_init(&u->idle);
  list_init(&u->queue);
  list_init(&u->deferred);
  list_init(&u->freelist);
  uv_timer_init(loop, &u->queue_timer);
  uv_timer_init(loop, &u->defer_timer);
  u->queue_timer.data = u->defer_timer.data = u;
  u->handles = 2;
  *out = u;
  rc = 0;
out:
  shadow_tls_ctx_unref(tls_ctx);
  shadow_tls_ctx_unref(tls_h2);
  shadow_tls_ctx_unref(tls_auto);
  free(host);
  free(hostport);
  free(port);
  free(base);
  return rc;
}

void shadow_upstream_set_opts(shadow_upstream_t *u,
                              const shadow_upstream_opts_t *opts) {
  if (apply_opts(u, opts) != 0) return; /* no memory: the old ones stay */
  while (u->opts.max_idle && u->nidle > u->opts.max_idle) {
    conn_t *conn = CONTAINER(u->idle.prev, conn_t, link);
    conn_close(conn);
  }
  pump(u);
}

size_t shadow_upstream_pending(const shadow_upstream_t *u) {
  return u->pending;
}

size_t shadow_upstream_connections(const shadow_upstream_t *u) {
  return u->nconns;
}

size_t shadow_upstream_idle(const shadow_upstream_t *u) {
  return u->nidle;
}

void shadow_upstream_stats(const shadow_upstream_t *u,
                           shadow_upstream_stats_t *out) {
  *out = u->stats;
  if (u->res) { /* gone once the pool is closed */
    shadow_resolver_stats_t rs;
    shadow_resolver_stats(u->res, &rs);
    out->resolve_failures = rs.lookup_failures;
  }
}

void shadow_upstream_close(shadow_upstream_t *u) {
  if (!u || u->closing) return;
  u->closing = 1;
  while (!list_empty(&u->queue)) {
    leg_t *leg = CONTAINER(u->queue.next, leg_t, link);
    list_remove(&leg->link);
    u->nqueued--;
    fail(leg, SHADOW_UPSTREAM_CANCELED);
  }
  while (!list_empty(&u->busy)) {
    conn_t *conn = CONTAINER(u->busy.next, conn_t, link);
    leg_t *leg = conn_detach(conn);
    conn_close(conn);
    if (leg) fail(leg, SHADOW_UPSTREAM_CANCELED);
  }
  while (!list_empty(&u->idle))
    conn_close(CONTAINER(u->idle.next, conn_t, link));
  while (!list_empty(&u->h2conns)) {
    conn_t *conn = CONTAINER(u->h2conns.next, conn_t, link);
    shadow__h2_conn_abandon(conn, SHADOW_UPSTREAM_CANCELED);
    conn_close(conn);
  }
  while (!list_empty(&u->flush)) {
    leg_t *leg = CONTAINER(u->flush.next, leg_t, tlink);
    list_remove(&leg->tlink);
    leg->parked = 0;
    fail(leg, SHADOW_UPSTREAM_CANCELED);
  }
  uv_close((uv_handle_t *)&u->queue_timer, on_upstream_timer_close);
  maybe_close_defer(u);
  /* No lookup answer may touch a pool that is going away. */
  shadow_resolver_close(u->res);
  u->res = NULL;
}
