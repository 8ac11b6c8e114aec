/* HTTP/2 to backends, under upstream.h's API: one nghttp2 client session
 * per pooled connection, each leg its own stream. The pool, the queue,
 * connecting, TLS and failover are upstream.c's; this file turns legs
 * into streams and frames into the leg's events. It may touch the pool's
 * structures (upstream_int.h) and nghttp2, nothing above src/http.
 *
 * Flow control is the backpressure: the session never widens a stream's
 * window by itself; it does as the leg's reader takes the bytes, so a
 * paused leg holds at most one window of its stream (kept in leg->rbuf)
 * and slows only that stream, while the connection's window is given
 * back at once so the other streams go on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream_int.h"

/* A stream's receive window: what a paused leg may hold. nghttp2's
 * default, said out loud. */
#define STREAM_WINDOW 65535
/* The connection's window: wide, since each stream is bounded by its own
 * and the connection's is given back as bytes arrive. */
#define CONN_WINDOW (16 * 1024 * 1024)
/* Frames taken from the session per write. */
#define OUT_CHUNK (64u * 1024u)

static void flush(conn_t *conn);
static void arm(conn_t *conn);

/* ---- the request as HTTP/2 --------------------------------------------- */

static int put_pair(shadow_buf_t *b, const char *n, size_t nl, const char *v,
                    size_t vl, int lower) {
  size_t at = b->len;
  if (shadow_buf_append(b, n, nl) || shadow_buf_putc(b, '\0') ||
      shadow_buf_append(b, v, vl) || shadow_buf_putc(b, '\0'))
    return -ENOMEM;
  if (lower)
    for (size_t i = at; i < at + nl; i++)
      if (b->data[i] >= 'A' && b->data[i] <= 'Z') b->data[i] += 'a' - 'A';
  return 0;
}

static int method_has_body(const char *m) {
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
         strcmp(m, "PATCH") == 0;
}

/* Hop-by-hop headers mean nothing in HTTP/2 (RFC 9113 8.2.2) and Host
 * becomes :authority; "te: trailers" is the one TE allowed, and gRPC
 * needs it. */
int shadow__h2_serialize(shadow_upstream_t *u, leg_t *leg,
                         const shadow_upstream_request_t *r) {
  shadow_buf_t *b = &leg->wire;
  shadow_buf_reset(b);
  const char *target = r->target ? r->target : "";
  size_t tlen = r->target_len;
  int rc = put_pair(b, ":method", 7, r->method, strlen(r->method), 0);
  rc |= put_pair(b, ":scheme", 7, u->tls ? "https" : "http", u->tls ? 5 : 4, 0);
  const shadow_header_t *host = NULL;
  for (size_t i = 0; r->headers && i < r->headers->n; i++)
    if (shadow_header_name_is(&r->headers->v[i], "host")) {
      host = &r->headers->v[i];
      break;
    }
  if (u->host_override)
    rc |= put_pair(b, ":authority", 10, u->host_override,
                   strlen(u->host_override), 0);
  else if (host)
    rc |= put_pair(b, ":authority", 10, host->value, host->value_len, 0);
  else
    rc |= put_pair(b, ":authority", 10, u->host, strlen(u->host), 0);
  /* The path without the base, which submit prepends. */
  rc |= put_pair(b, ":path", 5, tlen ? target : "/", tlen ? tlen : 1, 0);
  /* The forwarding rule drops TE with the other hop-by-hop headers; gRPC
   * servers refuse a call without it, so it is said again here, as
   * nginx's grpc_pass does. */
  int te = leg->grpc;
  if (te) rc |= put_pair(b, "te", 2, "trailers", 8, 0);
  for (int pass = 0; pass < 2; pass++) {
    const shadow_headers_t *hs = pass ? r->extra : r->headers;
    for (size_t i = 0; hs && i < hs->n; i++) {
      const shadow_header_t *e = &hs->v[i];
      if (shadow_header_name_is(e, "te")) {
        if (!te && e->value_len == 8 &&
            strncasecmp(e->value, "trailers", 8) == 0) {
          rc |= put_pair(b, "te", 2, "trailers", 8, 0);
          te = 1;
        }
        continue;
      }
      if (shadow_header_is_hop(e->name, e->name_len) ||
          shadow_header_name_is(e, "host") ||
          shadow_header_name_is(e, "expect") || e->name_len == 0 ||
          e->name[0] == ':')
        continue;
      rc |= put_pair(b, e->name, e->name_len, e->value, e->value_len, 1);
    }
  }
  int64_t cl = r->body_more ? r->content_length : (int64_t)r->body_len;
  if (cl > 0 || (cl == 0 && method_has_body(r->method))) {
    char n[24];
    int k = snprintf(n, sizeof(n), "%lld", (long long)cl);
    rc |= put_pair(b, "content-length", 14, n, (size_t)k, 0);
  }
  leg->hlen = b->len;
  if (r->body_len) rc |= shadow_buf_append(b, r->body, r->body_len);
  leg->content_length = r->body_more ? r->content_length : (int64_t)r->body_len;
  return rc ? -ENOMEM : 0;
}

/* Walks the pairs of wire's header block. */
static const char *next_pair(const leg_t *leg, const char *p, const char **v) {
  const char *end = leg->wire.data + leg->hlen;
  if (p >= end) return NULL;
  *v = p + strlen(p) + 1;
  return *v + strlen(*v) + 1;
}

int shadow__h2_to_h1(shadow_upstream_t *u, leg_t *leg) {
  shadow_headers_t hs = SHADOW_HEADERS_INIT;
  const char *method = NULL, *path = NULL, *auth = NULL, *v, *n, *p;
  int rc = 0;
  for (n = leg->wire.data; (p = next_pair(leg, n, &v)) != NULL; n = p) {
    if (strcmp(n, ":method") == 0)
      method = v;
    else if (strcmp(n, ":path") == 0)
      path = v;
    else if (strcmp(n, ":authority") == 0)
      auth = v;
    else if (n[0] != ':' && strcmp(n, "content-length") != 0 &&
             strcmp(n, "te") != 0)
      rc |= shadow_headers_add(&hs, n, strlen(n), v, strlen(v));
  }
  if (auth && !u->host_override)
    rc |= shadow_headers_add(&hs, "host", 4, auth, strlen(auth));
  shadow_buf_t old = leg->wire;
  size_t body = old.len - leg->hlen;
  shadow_upstream_request_t r = {.method = method,
                                 .target = path,
                                 .target_len = path ? strlen(path) : 0,
                                 .headers = &hs,
                                 .body = old.data + leg->hlen,
                                 .body_len = body,
                                 .body_more = leg->streaming,
                                 .content_length = leg->content_length};
  shadow_buf_t wire = SHADOW_BUF_INIT, pend = SHADOW_BUF_INIT;
  if (rc == 0 && method && path)
    rc = shadow__upstream_serialize(u, &wire, &r, leg->chunked);
  else
    rc = -ENOMEM;
  /* A streamed body queued so far is bare bytes; HTTP/1.1 of unknown
   * length wants it in chunks, and the last chunk if the body ended. */
  size_t queued = leg->pend.len - leg->poff;
  if (rc == 0 && leg->chunked && queued)
    rc = shadow_buf_printf(&pend, "%zx\r\n", queued) |
         shadow_buf_append(&pend, leg->pend.data + leg->poff, queued) |
         shadow_buf_append(&pend, "\r\n", 2);
  else if (rc == 0 && queued)
    rc = shadow_buf_append(&pend, leg->pend.data + leg->poff, queued);
  if (rc == 0 && leg->chunked && leg->body_ended)
    rc = shadow_buf_puts(&pend, "0\r\n\r\n");
  shadow_headers_free(&hs);
  if (rc) {
    shadow_buf_free(&wire);
    shadow_buf_free(&pend);
    return -ENOMEM;
  }
  shadow_buf_free(&leg->wire);
  shadow_buf_free(&leg->pend);
  leg->wire = wire;
  leg->pend = pend;
  leg->poff = 0;
  leg->h2 = 0;
  leg->hlen = 0;
  return 0;
}

/* ---- streams and the connection's timer -------------------------------- */

/* The stream's deadline, as conn_arm's for an HTTP/1.1 leg: the send
 * timeout between writes of a request still going out, the head deadline
 * once it is out, the read timeout between reads of the body (none while
 * paused), never past the total deadline. */
static void leg_due(conn_t *conn, leg_t *leg) {
  shadow_upstream_t *u = conn->u;
  uint64_t now = uv_now(u->loop), at;
  if (leg->parked) {
    at = UINT64_MAX;
  } else if (leg->got_head && leg->paused) {
    at = UINT64_MAX;
  } else if (leg->got_head) {
    at = now + u->opts.read_timeout_ms;
  } else if (!leg->sent && conn->h2) {
    at = leg->wrote_at + u->opts.read_timeout_ms;
    if (leg->deadline < at && !leg->stream_id) at = leg->deadline;
  } else {
    at = leg->deadline;
  }
  leg->due = shadow__upstream_cap_total(leg, at);
  if (leg->due < conn->deadline.armed ||
      !uv_is_active((uv_handle_t *)&conn->timer))
    arm(conn);
}

static void on_h2_timer(uv_timer_t *t);

/* The timer fires at the earliest of the streams' deadlines, the connect
 * timeout while connecting, or the idle timeout with no stream. */
static void arm(conn_t *conn) {
  shadow_upstream_t *u = conn->u;
  uint64_t now = uv_now(u->loop), at = UINT64_MAX;
  if (conn->state == CLOSING) return;
  if (conn->state == CONNECTING)
    at = conn->deadline.due;
  else if (!conn->nstreams)
    at = now + u->opts.idle_timeout_ms;
  for (link_t *e = conn->streams.next; e != &conn->streams; e = e->next) {
    leg_t *leg = CONTAINER(e, leg_t, slink);
    if (leg->due < at) at = leg->due;
  }
  if (at == UINT64_MAX) {
    uv_timer_stop(&conn->timer);
    return;
  }
  conn->deadline.armed = at;
  uv_timer_start(&conn->timer, on_h2_timer, at > now ? at - now : 0, 0);
}

/* The leg leaves its connection's streams. */
static void unbind(conn_t *conn, leg_t *leg) {
  list_remove(&leg->slink);
  list_remove(&leg->tlink);
  conn->nstreams--;
  leg->conn = NULL;
  if (conn->h2 && leg->stream_id)
    nghttp2_session_set_stream_user_data(conn->h2, leg->stream_id, NULL);
}

static void bind_leg(conn_t *conn, leg_t *leg) {
  list_push_back(&conn->streams, &leg->slink);
  conn->nstreams++;
  leg->conn = conn;
  leg->where = AT_NONE;
}

/* An idempotent request the server never saw (a refused stream, one past
 * a GOAWAY's last id, a connection lost before any answer) goes once
 * more; anything else fails. */
static void retry_or_fail(shadow_upstream_t *u, leg_t *leg, int err,
                          int unseen) {
  if (unseen && leg->idempotent && !leg->streaming && !leg->retried &&
      !leg->got_head && !u->closing) {
    leg->retried = 1;
    u->stats.retries++;
    leg->stream_id = 0;
    leg->woff = 0;
    leg->sent = 0;
    shadow__upstream_dispatch(u, leg, 1);
  } else {
    shadow__upstream_fail(leg, err);
  }
}

/* Every leg on conn ends: the connection is gone. */
static void drop_streams(conn_t *conn, int err, int unseen_ok) {
  shadow_upstream_t *u = conn->u;
  while (!list_empty(&conn->streams)) {
    leg_t *leg = CONTAINER(conn->streams.next, leg_t, slink);
    int unseen = unseen_ok && !leg->got_head;
    unbind(conn, leg);
    retry_or_fail(u, leg, err, unseen);
  }
}

static void conn_fail(conn_t *conn, int err, const char *detail) {
  shadow_upstream_t *u = conn->u;
  if (conn->state == CLOSING) return;
  for (link_t *e = conn->streams.next; e != &conn->streams; e = e->next) {
    leg_t *leg = CONTAINER(e, leg_t, slink);
    if (detail) snprintf(leg->detail, sizeof(leg->detail), "%s", detail);
  }
  /* A connection that answered before and dies before answering these
   * may just have been closed by the server while idle (as HTTP/1.1's
   * stale keep-alive): those legs are retried. */
  drop_streams(conn, err, conn->reused && err == SHADOW_UPSTREAM_RESET);
  shadow__upstream_conn_close(conn);
  shadow__upstream_pump(u);
}

static void on_h2_timer(uv_timer_t *t) {
  conn_t *conn = t->data;
  shadow_upstream_t *u = conn->u;
  uint64_t now = uv_now(u->loop);
  if (conn->state == CLOSING) return;
  if (conn->state == CONNECTING) {
    if (conn->deadline.due <= now) {
      if (conn->handshaking) {
        conn_fail(conn, SHADOW_UPSTREAM_TLS, "handshake timed out");
      } else {
        shadow__h2_conn_failed(conn, SHADOW_UPSTREAM_TIMEOUT,
                               "connect timed out");
      }
      return;
    }
  } else if (!conn->nstreams) {
    if (conn->deadline.armed <= now) {
      shadow__upstream_conn_close(conn);
      return;
    }
  }
  link_t *e = conn->streams.next;
  int cut = 0;
  while (e != &conn->streams) {
    leg_t *leg = CONTAINER(e, leg_t, slink);
    e = e->next;
    if (leg->due > now) continue;
    if (conn->h2 && leg->stream_id)
      nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, leg->stream_id,
                                NGHTTP2_CANCEL);
    unbind(conn, leg);
    shadow__upstream_fail(leg, SHADOW_UPSTREAM_TIMEOUT);
    cut = 1;
  }
  if (cut) {
    flush(conn);
    shadow__upstream_pump(u);
  }
  if (conn->state != CLOSING) arm(conn);
}

void shadow__h2_on_timer(conn_t *conn) {
  on_h2_timer(&conn->timer);
}

/* ---- submitting -------------------------------------------------------- */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *ud) {
  (void)src;
  (void)ud;
  /* The leg through the stream, not src: one abandoned meanwhile is gone
   * from the stream (its user data cleared), and its RST_STREAM ends it. */
  leg_t *leg = nghttp2_session_get_stream_user_data(s, id);
  if (!leg) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t at_hand = leg->wire.len - leg->hlen - leg->woff;
  if (at_hand) {
    size_t n = at_hand < length ? at_hand : length;
    memcpy(buf, leg->wire.data + leg->hlen + leg->woff, n);
    leg->woff += n;
    if (!leg->streaming && leg->woff == leg->wire.len - leg->hlen)
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
  }
  size_t queued = leg->pend.len - leg->poff;
  if (queued) {
    size_t n = queued < length ? queued : length;
    memcpy(buf, leg->pend.data + leg->poff, n);
    leg->poff += n;
    if (leg->poff == leg->pend.len) {
      shadow_buf_reset(&leg->pend);
      leg->poff = 0;
      if (leg->body_ended) *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (leg->poff >= SEND_HIGH) {
      /* A producer that keeps up never lets pend empty: what was sent
       * goes, so pend holds only what waits. */
      memmove(leg->pend.data, leg->pend.data + leg->poff,
              leg->pend.len - leg->poff);
      leg->pend.len -= leg->poff;
      leg->poff = 0;
    }
    return (ssize_t)n;
  }
  if (!leg->streaming || leg->body_ended) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  leg->deferred_data = 1;
  return NGHTTP2_ERR_DEFERRED;
}

/* Opens leg's stream on conn. 0, or -1 when the session takes no more
 * streams (the leg is untouched). */
static int submit(conn_t *conn, leg_t *leg) {
  shadow_upstream_t *u = conn->u;
  nghttp2_nv nv[256], *v = nv, *big = NULL;
  size_t n = 0, cap = sizeof(nv) / sizeof(nv[0]);
  const char *p, *val, *name;
  for (name = leg->wire.data; (p = next_pair(leg, name, &val)) != NULL;
       name = p)
    n++;
  if (n + 1 > cap) {
    big = malloc(sizeof(*big) * (n + 1));
    if (!big) return -ENOMEM;
    v = big;
  }
  char *path = NULL;
  size_t i = 0;
  for (name = leg->wire.data; (p = next_pair(leg, name, &val)) != NULL;
       name = p, i++) {
    size_t vl = strlen(val);
    if (strcmp(name, ":path") == 0 && u->base_len) {
      path = malloc(u->base_len + vl + 1);
      if (!path) {
        free(big);
        return -ENOMEM;
      }
      memcpy(path, u->base, u->base_len);
      memcpy(path + u->base_len, val, vl + 1);
      if (strcmp(val, "/") == 0) path[u->base_len + 1] = '\0';
      val = path;
      vl = strlen(path);
    }
    v[i].name = (uint8_t *)name;
    v[i].namelen = strlen(name);
    v[i].value = (uint8_t *)val;
    v[i].valuelen = vl;
    v[i].flags = NGHTTP2_NV_FLAG_NONE;
  }
  nghttp2_data_provider dp = {.source.ptr = leg, .read_callback = read_body};
  int has_body = leg->streaming || leg->wire.len > leg->hlen;
  leg->woff = 0;
  int32_t id =
      nghttp2_submit_request(conn->h2, NULL, v, n, has_body ? &dp : NULL, leg);
  free(path);
  free(big);
  if (id < 0) return -1;
  leg->stream_id = id;
  leg->deferred_data = 0;
  leg->sent = 0;
  u->stats.h2_streams++;
  if (conn->reused) u->stats.reuses++;
  leg->wrote_at = uv_now(u->loop);
  return 0;
}

/* The streams the server allows beside ours. */
static size_t conn_limit(conn_t *conn) {
  size_t lim = conn->u->opts.max_streams;
  if (conn->h2) {
    uint32_t r = nghttp2_session_get_remote_settings(
        conn->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (r < lim) lim = r;
  }
  return lim ? lim : 1;
}

static int has_room(conn_t *conn) {
  return conn->state != CLOSING && !conn->goaway &&
         conn->nstreams < conn_limit(conn) &&
         (conn->state != CONNECTING || conn->want_h2) &&
         !(conn->state == CONNECTING && conn->probe);
}

int shadow__h2_has_room(shadow_upstream_t *u) {
  for (link_t *e = u->h2conns.next; e != &u->h2conns; e = e->next)
    if (has_room(CONTAINER(e, conn_t, link))) return 1;
  return 0;
}

int shadow__h2_place(shadow_upstream_t *u, leg_t *leg) {
  for (link_t *e = u->h2conns.next; e != &u->h2conns; e = e->next) {
    conn_t *conn = CONTAINER(e, conn_t, link);
    if (!has_room(conn)) continue;
    if (conn->h2) {
      int rc = submit(conn, leg);
      if (rc == -1) {
        conn->goaway = 1; /* out of stream ids: a new connection */
        continue;
      }
      if (rc) return 0;
      bind_leg(conn, leg);
      conn->reused = 1;
      leg_due(conn, leg);
      flush(conn);
    } else {
      /* Connecting: submitted once it is ready. */
      bind_leg(conn, leg);
      leg->wrote_at = uv_now(u->loop);
      leg_due(conn, leg);
    }
    return 1;
  }
  return 0;
}

/* ---- writing ------------------------------------------------------------ */

static void drain_pass(conn_t *conn);

static void on_h2_write(shadow_stream_t *st, int status) {
  conn_t *conn = st->data;
  conn->h2_writing = 0;
  shadow_buf_reset(&conn->out);
  if (conn->state == CLOSING) return;
  if (status != 0) {
    conn_fail(conn, SHADOW_UPSTREAM_RESET, NULL);
    return;
  }
  drain_pass(conn);
  if (conn->state == CLOSING) return;
  flush(conn);
}

/* Takes what the session has to send into out and writes it: one write
 * in flight at a time, the rest once it completes. */
static void flush(conn_t *conn) {
  if (!conn->h2 || conn->state == CLOSING || conn->in_recv || conn->h2_writing)
    return;
  while (conn->out.len < OUT_CHUNK) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(conn->h2, &data);
    if (n < 0) {
      conn_fail(conn, SHADOW_UPSTREAM_BAD_RESPONSE, NULL);
      return;
    }
    if (n == 0) break;
    if (shadow_buf_append(&conn->out, data, (size_t)n)) {
      conn_fail(conn, SHADOW_UPSTREAM_RESET, "out of memory");
      return;
    }
  }
  if (!conn->out.len) {
    if (!nghttp2_session_want_read(conn->h2) &&
        !nghttp2_session_want_write(conn->h2)) {
      /* The session is over (a GOAWAY and no stream left). */
      shadow_upstream_t *u = conn->u;
      drop_streams(conn, SHADOW_UPSTREAM_RESET, 1);
      shadow__upstream_conn_close(conn);
      shadow__upstream_pump(u);
    }
    return;
  }
  uv_buf_t b = uv_buf_init(conn->out.data, (unsigned)conn->out.len);
  conn->h2_writing = 1;
  int rc = shadow_stream_write(&conn->s, &b, 1, on_h2_write);
  if (rc < 0) {
    conn->h2_writing = 0;
    conn_fail(conn, SHADOW_UPSTREAM_RESET, NULL);
  }
}

/* Producers that waited for their body to go out may go on. Legs are
 * taken off a pass list one at a time, so a callback that aborts or ends
 * any of them leaves the walk sound. */
static void drain_pass(conn_t *conn) {
  link_t pass;
  list_init(&pass);
  for (link_t *e = conn->streams.next; e != &conn->streams; e = e->next) {
    leg_t *leg = CONTAINER(e, leg_t, slink);
    if (leg->wants_drain && leg->pend.len - leg->poff < SEND_LOW)
      list_push_back(&pass, &leg->tlink);
  }
  while (!list_empty(&pass)) {
    leg_t *leg = CONTAINER(pass.next, leg_t, tlink);
    list_remove(&leg->tlink);
    leg->wants_drain = 0;
    if (leg->h->on_drain) leg->h->on_drain(leg->ud);
    if (conn->state == CLOSING) break;
  }
  while (!list_empty(&pass))
    list_remove(pass.next);
}

/* ---- session callbacks --------------------------------------------------- */

static leg_t *leg_of(nghttp2_session *s, int32_t id) {
  return id ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static int cb_begin_headers(nghttp2_session *s, const nghttp2_frame *f,
                            void *ud) {
  (void)ud;
  leg_t *leg = leg_of(s, f->hd.stream_id);
  if (leg && f->hd.type == NGHTTP2_HEADERS) shadow_headers_clear(&leg->rh);
  return 0;
}

static int cb_header(nghttp2_session *s, const nghttp2_frame *f,
                     const uint8_t *name, size_t nl, const uint8_t *value,
                     size_t vl, uint8_t flags, void *ud) {
  (void)flags;
  conn_t *conn = ud;
  leg_t *leg = leg_of(s, f->hd.stream_id);
  if (!leg || f->hd.type != NGHTTP2_HEADERS) return 0;
  if (nl == 7 && memcmp(name, ":status", 7) == 0) {
    int st = 0;
    for (size_t i = 0; i < vl && i < 3; i++)
      st = st * 10 + (value[i] - '0');
    leg->status = st;
    return 0;
  }
  if (leg->rh.bytes + nl + vl > conn->u->opts.header_bytes ||
      shadow_headers_add(&leg->rh, (const char *)name, nl, (const char *)value,
                         vl)) {
    leg->h2_err = SHADOW_UPSTREAM_TOO_LARGE;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return 0;
}

static int64_t content_length(const shadow_headers_t *h) {
  const shadow_header_t *e = shadow_headers_find(h, "content-length");
  if (!e || !e->value_len || e->value_len > 18) return -1;
  int64_t n = 0;
  for (size_t i = 0; i < e->value_len; i++) {
    if (e->value[i] < '0' || e->value[i] > '9') return -1;
    n = n * 10 + (e->value[i] - '0');
  }
  return n;
}

static int cb_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  conn_t *conn = ud;
  if (conn->state == CLOSING) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (f->hd.type == NGHTTP2_GOAWAY) {
    /* The streams past last_stream_id are closed by nghttp2 as refused
     * (and retried); the others finish. No new stream goes here. */
    conn->goaway = 1;
    conn->u->stats.h2_goaways++;
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  leg_t *leg = leg_of(s, f->hd.stream_id);
  if (!leg) return 0;
  if (leg->got_head) {
    leg->has_trailers = 1; /* delivered with on_done */
    return 0;
  }
  if (leg->status >= 100 && leg->status < 200) {
    if (leg->h->on_interim) leg->h->on_interim(leg->ud, leg->status, &leg->rh);
    shadow_headers_clear(&leg->rh);
    return conn->state == CLOSING ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  }
  leg->got_head = 1;
  /* A head that ends the stream says there is no body (gRPC's
   * trailers-only answer): length 0, so what relays it can end its own
   * stream with the head too. A HEAD's answer keeps the length it names. */
  int64_t cl = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !leg->head
                   ? 0
                   : content_length(&leg->rh);
  leg->h->on_head(leg->ud, leg->status, &leg->rh, cl);
  if (conn->state == CLOSING) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (leg_of(s, f->hd.stream_id) == leg) {
    shadow_headers_clear(&leg->rh);
    leg_due(conn, leg);
    if (list_empty(&leg->tlink)) list_push_back(&conn->touched, &leg->tlink);
  }
  return 0;
}

/* Legs that got events in this read: on_read_end after it. */
static link_t *touched_list(conn_t *conn) {
  return &conn->touched;
}

static int cb_data(nghttp2_session *s, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *ud) {
  (void)flags;
  conn_t *conn = ud;
  if (conn->state == CLOSING) return NGHTTP2_ERR_CALLBACK_FAILURE;
  /* The connection's window goes back at once; the stream's when the
   * reader has the bytes. */
  nghttp2_session_consume_connection(s, len);
  leg_t *leg = leg_of(s, id);
  if (!leg) return 0;
  if (leg->paused || leg->rbuf.len) {
    if (shadow_buf_append(&leg->rbuf, data, len)) {
      leg->h2_err = SHADOW_UPSTREAM_RESET;
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id,
                                NGHTTP2_INTERNAL_ERROR);
    }
    return 0;
  }
  leg->h->on_body(leg->ud, (const char *)data, len);
  if (conn->state == CLOSING) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (leg_of(s, id) != leg) return 0;
  nghttp2_session_consume_stream(s, id, len);
  leg_due(conn, leg);
  if (list_empty(&leg->tlink)) list_push_back(touched_list(conn), &leg->tlink);
  return 0;
}

static int cb_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  conn_t *conn = ud;
  leg_t *leg = leg_of(s, f->hd.stream_id);
  if (!leg || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
    return 0;
  uint64_t now = uv_now(conn->u->loop);
  leg->wrote_at = now;
  if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    /* The request's last byte: the wait for the head starts now, as
     * nginx's proxy_read_timeout does. */
    leg->sent = 1;
    leg->deadline = shadow__upstream_cap_total(leg, now + leg->timeout_ms);
  }
  if (!leg->got_head) leg_due(conn, leg);
  return 0;
}

static int map_error(uint32_t code) {
  switch (code) {
  case NGHTTP2_PROTOCOL_ERROR:
  case NGHTTP2_FRAME_SIZE_ERROR:
  case NGHTTP2_COMPRESSION_ERROR:
  case NGHTTP2_FLOW_CONTROL_ERROR: return SHADOW_UPSTREAM_BAD_RESPONSE;
  default: return SHADOW_UPSTREAM_RESET;
  }
}

static int cb_stream_close(nghttp2_session *s, int32_t id, uint32_t code,
                           void *ud) {
  conn_t *conn = ud;
  shadow_upstream_t *u = conn->u;
  leg_t *leg = leg_of(s, id);
  if (!leg) return 0;
  unbind(conn, leg);
  if (code == NGHTTP2_NO_ERROR && leg->got_head && !leg->h2_err) {
    if (leg->rbuf.len) {
      /* Paused with bytes in hand: the end waits for the reader (in the
       * flush list, where a close finds it too). */
      leg->parked = 1;
      list_push_back(&u->flush, &leg->tlink);
      if (!leg->paused) shadow__upstream_defer(u);
      return 0;
    }
    shadow_headers_t none = SHADOW_HEADERS_INIT;
    if (leg->h->on_read_end) leg->h->on_read_end(leg->ud);
    if (!leg->ended)
      shadow__upstream_deliver(leg, SHADOW_UPSTREAM_OK,
                               leg->has_trailers ? &leg->rh : &none);
  } else if (leg->h2_err) {
    shadow__upstream_fail(leg, leg->h2_err);
  } else if (code == NGHTTP2_REFUSED_STREAM) {
    u->stats.h2_refused++;
    retry_or_fail(u, leg, SHADOW_UPSTREAM_RESET, 1);
  } else {
    shadow__upstream_fail(leg, code == NGHTTP2_NO_ERROR
                                   ? SHADOW_UPSTREAM_BAD_RESPONSE
                                   : map_error(code));
  }
  shadow__upstream_pump(u);
  return conn->state == CLOSING ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* A fresh set per session (nghttp2 copies it): workers' loops run on
 * threads of their own, so nothing here is shared. */
static nghttp2_session_callbacks *callbacks(void) {
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs)) return NULL;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
                                                          cb_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
  return cbs;
}

/* ---- reading ----------------------------------------------------------- */

void shadow__h2_on_read(conn_t *conn, ssize_t nread, const uv_buf_t *buf) {
  if (nread == 0 || conn->state == CLOSING) return;
  if (nread < 0) {
    if (nread == SHADOW_STREAM_ETLS)
      conn_fail(conn, SHADOW_UPSTREAM_TLS, shadow_stream_error(&conn->s));
    else
      conn_fail(conn, SHADOW_UPSTREAM_RESET, NULL);
    return;
  }
  link_t *t = touched_list(conn);
  conn->in_recv = 1;
  ssize_t n = nghttp2_session_mem_recv(conn->h2, (const uint8_t *)buf->base,
                                       (size_t)nread);
  conn->in_recv = 0;
  if (conn->state == CLOSING) {
    while (!list_empty(t))
      list_remove(t->next);
    return;
  }
  if (n < 0) {
    while (!list_empty(t))
      list_remove(t->next);
    /* A bad frame: nghttp2 queued a GOAWAY; the streams are lost. */
    flush(conn);
    conn_fail(conn, SHADOW_UPSTREAM_BAD_RESPONSE, NULL);
    return;
  }
  while (!list_empty(t)) {
    leg_t *leg = CONTAINER(t->next, leg_t, tlink);
    list_remove(&leg->tlink);
    if (leg->h->on_read_end) leg->h->on_read_end(leg->ud);
    if (conn->state == CLOSING) {
      while (!list_empty(t))
        list_remove(t->next);
      return;
    }
  }
  flush(conn);
  if (conn->state == CLOSING || conn->nstreams) return;
  if (conn->goaway) { /* no stream left, none to come */
    shadow_upstream_t *u = conn->u;
    shadow__upstream_conn_close(conn);
    shadow__upstream_pump(u);
    return;
  }
  arm(conn);
}

/* ---- the connection's life ---------------------------------------------- */

void shadow__h2_conn_ready(conn_t *conn) {
  shadow_upstream_t *u = conn->u;
  int h2 = 1;
  if (conn->s.tls) h2 = strcmp(shadow_tls_alpn(conn->s.tls), "h2") == 0;
  if (conn->probe) u->learned = h2 ? 2 : 1;
  conn->probe = 0;
  if (!h2) {
    /* The server would not speak h2 (it chose http/1.1, or no ALPN at
     * all): an "auto" pool's legs go over HTTP/1.1 (the first on this very
     * connection); gRPC and protocol "h2" cannot. */
    leg_t *first = NULL;
    link_t again;
    list_init(&again);
    while (!list_empty(&conn->streams)) {
      leg_t *leg = CONTAINER(conn->streams.next, leg_t, slink);
      unbind(conn, leg);
      if (leg->grpc || u->proto != SHADOW_UPSTREAM_AUTO) {
        snprintf(leg->detail, sizeof(leg->detail),
                 "the server did not select h2 (ALPN)%s",
                 leg->grpc ? ", which gRPC needs" : "");
        shadow__upstream_fail(leg, SHADOW_UPSTREAM_TLS);
      } else if (shadow__h2_to_h1(u, leg) != 0) {
        shadow__upstream_fail(leg, SHADOW_UPSTREAM_RESET);
      } else if (!first) {
        first = leg;
      } else {
        list_push_back(&again, &leg->slink);
      }
    }
    list_remove(&conn->link);
    conn->want_h2 = 0;
    list_push_back(&u->busy, &conn->link);
    conn->state = BUSY;
    while (!list_empty(&again)) {
      leg_t *leg = CONTAINER(again.next, leg_t, slink);
      list_remove(&leg->slink);
      shadow__upstream_dispatch(u, leg, 1);
    }
    if (first) {
      shadow__upstream_conn_bind_h1(conn, first);
    } else {
      shadow__upstream_conn_close(conn);
    }
    /* Legs that waited for the answer go now. */
    shadow__upstream_pump(u);
    return;
  }
  nghttp2_option *opt = NULL;
  if (nghttp2_option_new(&opt) == 0) {
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(
        opt, (uint32_t)u->opts.max_streams);
  }
  nghttp2_session_callbacks *cbs = callbacks();
  int rc =
      cbs && opt ? nghttp2_session_client_new2(&conn->h2, cbs, conn, opt) : -1;
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    nghttp2_option_del(opt);
    conn->h2 = NULL;
    conn_fail(conn, SHADOW_UPSTREAM_RESET, "out of memory");
    return;
  }
  nghttp2_option_del(opt);
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       (uint32_t)(u->opts.header_bytes < UINT32_MAX ? u->opts.header_bytes
                                                    : UINT32_MAX)}};
  nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv,
                          sizeof(iv) / sizeof(iv[0]));
  nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0,
                                        CONN_WINDOW);
  conn->state = BUSY;
  /* Legs that waited for the connection get their streams. */
  link_t *e = conn->streams.next;
  while (e != &conn->streams) {
    leg_t *leg = CONTAINER(e, leg_t, slink);
    e = e->next;
    if (leg->stream_id) continue;
    if (submit(conn, leg) != 0) {
      unbind(conn, leg);
      shadow__upstream_fail(leg, SHADOW_UPSTREAM_RESET);
      continue;
    }
    nghttp2_session_set_stream_user_data(conn->h2, leg->stream_id, leg);
    leg_due(conn, leg);
  }
  arm(conn);
  flush(conn);
  /* Queued legs (those that waited for an "auto" pool's answer, or for
   * room) may take the new connection's streams. */
  shadow__upstream_pump(u);
}

void shadow__h2_conn_failed(conn_t *conn, int reason, const char *detail) {
  shadow_upstream_t *u = conn->u;
  u->stats.connect_failures++;
  shadow_resolver_failed(u->res, (const struct sockaddr *)&conn->addr,
                         detail ? detail : "connect failed");
  struct sockaddr_storage failed = conn->addr;
  conn->probe = 0;
  link_t legs;
  list_init(&legs);
  while (!list_empty(&conn->streams)) {
    leg_t *leg = CONTAINER(conn->streams.next, leg_t, slink);
    unbind(conn, leg);
    list_push_back(&legs, &leg->slink);
  }
  shadow__upstream_conn_close(conn);
  /* As upstream.c's failover: the name's next address, while the leg's
   * deadline allows; nothing was sent, so any request may go again. */
  while (!list_empty(&legs)) {
    leg_t *leg = CONTAINER(legs.next, leg_t, slink);
    list_remove(&leg->slink);
    uint64_t now = uv_now(u->loop);
    if (!u->closing && leg->connects < shadow_resolver_count(u->res) &&
        leg->deadline > now) {
      u->stats.failovers++;
      shadow__upstream_connect(u, leg, (const struct sockaddr *)&failed);
    } else {
      shadow__upstream_fail(leg, reason);
    }
  }
  shadow__upstream_pump(u);
}

void shadow__h2_conn_fail(conn_t *conn, int err, const char *detail) {
  conn_fail(conn, err, detail);
}

/* The first leg of a connection being opened for HTTP/2. */
void shadow__h2_conn_attach(conn_t *conn, leg_t *leg) {
  shadow_upstream_t *u = conn->u;
  uint64_t now = uv_now(u->loop);
  uint64_t ct = u->opts.connect_timeout_ms;
  conn->deadline.due = ct < UINT64_MAX - now ? now + ct : UINT64_MAX;
  bind_leg(conn, leg);
  leg->wrote_at = now;
  leg_due(conn, leg);
  arm(conn);
}

void shadow__h2_conn_abandon(conn_t *conn, int err) {
  drop_streams(conn, err, 0);
}

void shadow__h2_conn_free(conn_t *conn) {
  if (conn->h2) nghttp2_session_del(conn->h2);
  conn->h2 = NULL;
  shadow_buf_free(&conn->out);
}

/* ---- the caller's calls on a leg ----------------------------------------- */

void shadow__h2_leg_body(leg_t *leg) {
  conn_t *conn = leg->conn;
  if (!conn || !conn->h2 || !leg->stream_id) return;
  if (leg->deferred_data) {
    leg->deferred_data = 0;
    nghttp2_session_resume_data(conn->h2, leg->stream_id);
  }
  flush(conn);
}

void shadow__h2_leg_pause(leg_t *leg) {
  (void)leg; /* cb_data keeps the bytes; leg_due stops the read timeout */
  if (leg->conn && leg->got_head) leg_due(leg->conn, leg);
}

void shadow__h2_leg_resume(leg_t *leg) {
  shadow_upstream_t *u = leg->u;
  if (leg->rbuf.len || leg->parked) {
    if (list_empty(&leg->tlink)) list_push_back(&u->flush, &leg->tlink);
    shadow__upstream_defer(u);
  }
  if (leg->conn && leg->got_head) leg_due(leg->conn, leg);
}

void shadow__h2_leg_abort(leg_t *leg) {
  conn_t *conn = leg->conn;
  list_remove(&leg->tlink);
  leg->parked = 0;
  if (!conn) return;
  int32_t id = leg->stream_id;
  unbind(conn, leg);
  if (conn->h2 && id) {
    nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    flush(conn);
  }
  if (conn->state != CLOSING) arm(conn);
}

/* From the loop (upstream.c's defer timer): the bytes resumed legs held
 * while paused, then the stream's window for them, then an end that
 * waited behind them. */
void shadow__h2_flush_resumed(shadow_upstream_t *u) {
  link_t batch;
  list_init(&batch);
  while (!list_empty(&u->flush)) {
    link_t *e = u->flush.next;
    list_remove(e);
    list_push_back(&batch, e);
  }
  while (!list_empty(&batch)) {
    leg_t *leg = CONTAINER(batch.next, leg_t, tlink);
    list_remove(&leg->tlink);
    if (leg->ended) continue;
    if (leg->paused) {
      if (leg->parked) list_push_back(&u->flush, &leg->tlink);
      continue;
    }
    size_t n = leg->rbuf.len;
    if (n) {
      leg->h->on_body(leg->ud, leg->rbuf.data, n);
      if (leg->ended) continue;
      shadow_buf_reset(&leg->rbuf);
      conn_t *conn = leg->conn;
      if (conn && conn->h2 && leg->stream_id) {
        nghttp2_session_consume_stream(conn->h2, leg->stream_id, n);
        flush(conn);
      }
      if (leg->h->on_read_end) leg->h->on_read_end(leg->ud);
      if (leg->ended) continue;
    }
    if (leg->parked && !leg->paused) {
      leg->parked = 0;
      shadow_headers_t none = SHADOW_HEADERS_INIT;
      shadow__upstream_deliver(leg, SHADOW_UPSTREAM_OK,
                               leg->has_trailers ? &leg->rh : &none);
    }
  }
}
