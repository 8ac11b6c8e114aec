/* The fleet store (see store.h): the connection's life (sentinel, AUTH,
 * SELECT, redirects, backoff), the flush pipeline and the fleet read
 * back. Key schema, B being the prefix with its hash tag ("{P}"), E the
 * epoch:
 *   B:epoch      integer; INCR starts a new window for the fleet
 *   B:E:counts   hash of integers (HINCRBY), names as in fleet_counts.c
 *   B:E:float    hash of float sums (HINCRBYFLOAT)
 *   B:E:max      hash "<instance>\x1f<name>" -> the instance's largest
 *   B:E:sig      hash "<id>\x1fcount|first|last|ex|key"
 *   B:E:log      stream of records: d <record> i <instance> r <route>
 *   B:instances  hash instance -> {"last_ms":..,"kind":"shadowd"}
 *   B:E:applied  hash instance -> the sequence of its last applied flush
 * Every key is PEXPIREd at ttl_s by each flush (see FLUSH_SCRIPT). */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "fleet.h"
#include "fleet_read.h"
#include "fleet_snap.h"
#include "log.h"
#include "redis_conn.h"
#include "signatures.h"

enum { DOWN, CONNECTING, CONNECTED };
enum { PH_NONE, PH_SENTINEL, PH_HANDSHAKE, PH_FLUSH };
enum {
  E_CONNECT,
  E_AUTH,
  E_TIMEOUT,
  E_LOST,
  E_REPLY,
  E_REDIRECT,
  E_SENTINEL,
  E_COUNT
};
static const char *const error_names[E_COUNT] = {
    "connect", "auth", "timeout", "lost", "reply", "redirect", "sentinel"};

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct shadow_store_s {
  uv_loop_t *loop;
  shadow_store_cfg_t cfg; /* a copy */
  shadow_store_owner_t owner;
  shadow_tls_ctx_t *tls;
  char *base; /* "{prefix}" */
  char instance[96];
  size_t log_capacity;
  uv_timer_t flush_timer, retry_timer;
  int timers_open;
  shadow_redis_conn_t *conn;
  int state, phase;
  int stopping;
  int final; /* stopping, one last flush in flight */
  uint64_t backoff_ms;
  size_t sentinel_next;
  char *master_host; /* from a sentinel */
  int master_port;
  char *redirect_host; /* from MOVED / ASK */
  int redirect_port, asking;
  /* What was sent, and what this flush sends. */
  shadow_fleet_snap_t *sent, *cur;
  uint64_t sent_pushed, cur_pushed;
  uint64_t epoch;
  int epoch_known, want_incr;
  size_t exec_at, read_at; /* reply indexes of the script and GET epoch */
  /* The flushes' sequence: seq of the last one sent, base_seq of the last
   * one Redis applied (what the next counts from); in_flight while a
   * flush's reply is awaited. */
  uint64_t seq, base_seq;
  int in_flight;
  /* Flushes whose reply never came (a timeout, a lost connection): Redis
   * may have applied them, now or later; kept so that a later answer
   * naming one of them makes its snapshot the one sent. */
  struct {
    uint64_t seq, pushed;
    shadow_fleet_snap_t *snap;
  } amb[4];
  size_t namb;
  /* What /stats and /metrics show. */
  uint64_t errors[E_COUNT];
  uint64_t dropped, flushes;
  uint64_t cpu_ns; /* the store's own work on the loop */
  uint64_t pending;
  double last_flush_ms;
  char last_error[200];
  size_t instances;
  shadow_buf_t batch;
};

static void connect_next(shadow_store_t *s);
static void flush_now(shadow_store_t *s);
static void close_all(shadow_store_t *s);

static void lock(shadow_store_t *s) {
  s->owner.lock(s->owner.ud);
}

static void unlock(shadow_store_t *s) {
  s->owner.unlock(s->owner.ud);
}

/* --- the connection's life ---------------------------------------------- */

static void count_error(shadow_store_t *s, int reason, const char *why) {
  s->errors[reason]++;
  snprintf(s->last_error, sizeof(s->last_error), "%s: %s", error_names[reason],
           why ? why : "");
}

static void on_retry(uv_timer_t *t) {
  connect_next(t->data);
}

/* The connection is gone: try again after the backoff (at once after a
 * redirect: the cluster said where to go). */
static void went_down(shadow_store_t *s, int now) {
  if (s->state == CONNECTED)
    shadow_log_warn("store: lost %s: %s", s->cfg.url, s->last_error);
  s->state = DOWN;
  s->phase = PH_NONE;
  s->conn = NULL;
  if (s->stopping) return;
  uint64_t delay = now ? 0 : s->backoff_ms;
  if (!now) {
    s->backoff_ms = s->backoff_ms * 2;
    if (s->backoff_ms > BACKOFF_MAX_MS) s->backoff_ms = BACKOFF_MAX_MS;
  }
  uv_timer_start(&s->retry_timer, on_retry, delay, 0);
}

static void on_event(void *ud, shadow_redis_conn_t *c, int ev, redisReply **r,
                     size_t n, const char *why);

static void open_to(shadow_store_t *s, const char *host, int port, int tls,
                    int phase) {
  s->state = CONNECTING;
  s->phase = phase;
  uint64_t timeout = s->cfg.flush_ms * 2;
  if (timeout < 2000) timeout = 2000;
  if (shadow_redis_conn_open(s->loop, host, port, tls ? s->tls : NULL, timeout,
                             on_event, s, &s->conn) != 0) {
    s->conn = NULL;
    count_error(s, E_CONNECT, "out of memory");
    went_down(s, 0);
  }
}

static void connect_next(shadow_store_t *s) {
  if (s->stopping || s->conn) return;
  if (s->redirect_host) {
    open_to(s, s->redirect_host, s->redirect_port, s->cfg.tls, PH_HANDSHAKE);
  } else if (s->cfg.nsentinels && !s->master_host) {
    char *h = NULL;
    int port = 0;
    const char *a = s->cfg.sentinel_addrs[s->sentinel_next];
    s->sentinel_next = (s->sentinel_next + 1) % s->cfg.nsentinels;
    if (shadow_store_split_addr(a, &h, &port) != 0) return;
    /* Sentinels speak plain RESP here; TLS is for the data path. */
    open_to(s, h, port, 0, PH_SENTINEL);
    free(h);
  } else if (s->master_host) {
    open_to(s, s->master_host, s->master_port, s->cfg.tls, PH_HANDSHAKE);
  } else {
    open_to(s, s->cfg.host, s->cfg.port, s->cfg.tls, PH_HANDSHAKE);
  }
}

static void handshake(shadow_store_t *s) {
  shadow_buf_t *b = &s->batch;
  shadow_buf_reset(b);
  size_t n = 0;
  if (s->cfg.password) {
    if (s->cfg.username)
      shadow_redis_encodev(b, 3, "AUTH", s->cfg.username, s->cfg.password);
    else
      shadow_redis_encodev(b, 2, "AUTH", s->cfg.password);
    n++;
  }
  if (s->cfg.db) {
    char db[16];
    snprintf(db, sizeof(db), "%u", s->cfg.db);
    shadow_redis_encodev(b, 2, "SELECT", db);
    n++;
  }
  shadow_redis_encodev(b, 1, "PING");
  n++;
  if (shadow_redis_conn_send(s->conn, b->data, b->len, n) != 0) {
    shadow_redis_conn_close(s->conn);
    count_error(s, E_LOST, "cannot send");
    went_down(s, 0);
  }
}

/* MOVED <slot> <host>:<port> or ASK ...: where the key's slot is. */
static int redirected(shadow_store_t *s, redisReply **r, size_t n) {
  for (size_t i = 0; i < n; i++) {
    redisReply *x = r[i];
    if (x->type != REDIS_REPLY_ERROR || !x->str) continue;
    int ask = strncmp(x->str, "ASK ", 4) == 0;
    if (!ask && strncmp(x->str, "MOVED ", 6) != 0) continue;
    const char *addr = strchr(x->str + (ask ? 4 : 6), ' ');
    char *h = NULL;
    int port = 0;
    if (!addr || shadow_store_split_addr(addr + 1, &h, &port) != 0) continue;
    free(s->redirect_host);
    s->redirect_host = h;
    s->redirect_port = port;
    s->asking = ask;
    count_error(s, E_REDIRECT, x->str);
    return 1;
  }
  return 0;
}

static void got_sentinel(shadow_store_t *s, redisReply **r, size_t n) {
  redisReply *x = n ? r[0] : NULL;
  shadow_redis_conn_close(s->conn);
  s->conn = NULL;
  if (x && x->type == REDIS_REPLY_ARRAY && x->elements == 2 &&
      x->element[0]->type == REDIS_REPLY_STRING &&
      x->element[1]->type == REDIS_REPLY_STRING) {
    free(s->master_host);
    s->master_host = strdup(x->element[0]->str);
    s->master_port = atoi(x->element[1]->str);
    s->state = DOWN;
    connect_next(s);
    return;
  }
  count_error(s, E_SENTINEL, "the sentinel does not know the master");
  went_down(s, 0);
}

static void got_handshake(shadow_store_t *s, redisReply **r, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (r[i]->type == REDIS_REPLY_ERROR) {
      count_error(s, E_AUTH, r[i]->str);
      shadow_log_warn("store: %s refused: %s", s->cfg.url, r[i]->str);
      shadow_redis_conn_close(s->conn);
      went_down(s, 0);
      return;
    }
  s->state = CONNECTED;
  s->phase = PH_NONE;
  s->backoff_ms = BACKOFF_MIN_MS;
  shadow_log_info("store: connected to %s", s->cfg.url);
  flush_now(s);
}

static void got_flush(shadow_store_t *s, redisReply **r, size_t n);

static void handle_event(shadow_store_t *s, shadow_redis_conn_t *c, int ev,
                         redisReply **r, size_t n, const char *why);

/* The connection's events, timed for the store's own CPU figure (with the
 * connection's reading and parsing of the replies). */
static void on_event(void *ud, shadow_redis_conn_t *c, int ev, redisReply **r,
                     size_t n, const char *why) {
  shadow_store_t *s = ud;
  uint64_t t0 = shadow_redis_cpu_ns();
  if (c == s->conn && ev == SHADOW_REDIS_REPLIES)
    s->cpu_ns += shadow_redis_conn_take_cpu_ns(c);
  handle_event(s, c, ev, r, n, why);
  s->cpu_ns += shadow_redis_cpu_ns() - t0;
}

static void handle_event(shadow_store_t *s, shadow_redis_conn_t *c, int ev,
                         redisReply **r, size_t n, const char *why) {
  if (c != s->conn) return;
  if (ev == SHADOW_REDIS_FAILED) {
    int reason = strstr(why, "timeout")    ? E_TIMEOUT
                 : s->state == CONNECTED   ? E_LOST
                 : s->phase == PH_SENTINEL ? E_SENTINEL
                                           : E_CONNECT;
    count_error(s, reason, why);
    if (s->in_flight) {
      /* Sent, unanswered: Redis may apply it yet (see got_flush). */
      if (s->namb == sizeof(s->amb) / sizeof(s->amb[0])) {
        shadow_fleet_snap_free(s->amb[0].snap);
        memmove(&s->amb[0], &s->amb[1], (s->namb - 1) * sizeof(s->amb[0]));
        s->namb--;
      }
      s->amb[s->namb].seq = s->seq;
      s->amb[s->namb].pushed = s->cur_pushed;
      s->amb[s->namb].snap = s->cur;
      s->namb++;
      s->cur = NULL;
      s->in_flight = 0;
    }
    /* A primary named by a sentinel that fails: ask again. */
    if (s->phase != PH_SENTINEL && s->master_host) {
      free(s->master_host);
      s->master_host = NULL;
    }
    /* A redirect that fails: back to the configured address. */
    if (s->redirect_host) {
      free(s->redirect_host);
      s->redirect_host = NULL;
    }
    s->conn = NULL;
    if (s->final) {
      close_all(s);
      return;
    }
    went_down(s, 0);
    return;
  }
  if (ev == SHADOW_REDIS_READY) {
    if (s->phase == PH_SENTINEL) {
      shadow_buf_reset(&s->batch);
      shadow_redis_encodev(&s->batch, 3, "SENTINEL", "get-master-addr-by-name",
                           s->cfg.sentinel_master);
      if (shadow_redis_conn_send(c, s->batch.data, s->batch.len, 1) != 0) {
        shadow_redis_conn_close(c);
        count_error(s, E_SENTINEL, "cannot send");
        went_down(s, 0);
      }
    } else {
      handshake(s);
    }
    return;
  }
  if (s->phase == PH_SENTINEL)
    got_sentinel(s, r, n);
  else if (s->phase == PH_HANDSHAKE)
    got_handshake(s, r, n);
  else if (s->phase == PH_FLUSH)
    got_flush(s, r, n);
}

/* --- the flush ---------------------------------------------------------- */

typedef struct build_s {
  shadow_store_t *s;
  shadow_buf_t *args; /* the script's operations, as RESP bulk strings */
  size_t nargs;
  uint64_t deltas;
  int dry; /* only count what is pending */
} build_t;

static void bulk(shadow_buf_t *b, const char *p, size_t n) {
  shadow_buf_printf(b, "$%zu\r\n", n);
  shadow_buf_append(b, p, n);
  shadow_buf_append(b, "\r\n", 2);
}

/* One operation of the flush script: its code, a field, a value. */
static void op3(build_t *w, const char *code, const char *f, size_t fl,
                const char *v, size_t vl) {
  bulk(w->args, code, strlen(code));
  bulk(w->args, f, fl);
  bulk(w->args, v, vl);
  w->nargs += 3;
}

static void on_count(void *ud, int kind, const char *name, size_t len,
                     uint64_t u, double d) {
  build_t *w = ud;
  shadow_store_t *s = w->s;
  shadow_fleet_snap_put(s->cur, name, len, u, d);
  uint64_t su;
  double sd;
  shadow_fleet_snap_get(s->sent, name, len, &su, &sd);
  char v[48];
  int vl;
  if (kind == SHADOW_FLEET_COUNT) {
    /* A count below what was sent was reset here: it all is new. */
    uint64_t delta = u >= su ? u - su : u;
    if (!delta) return;
    w->deltas++;
    if (w->dry) return;
    vl = snprintf(v, sizeof(v), "%" PRIu64, delta);
    op3(w, "c", name, len, v, (size_t)vl);
  } else if (kind == SHADOW_FLEET_FLOAT) {
    double delta = d >= sd ? d - sd : d;
    if (!(delta > 0)) return;
    w->deltas++;
    if (w->dry) return;
    vl = snprintf(v, sizeof(v), "%.17g", delta);
    op3(w, "f", name, len, v, (size_t)vl);
  } else {
    if (d == sd) return;
    w->deltas++;
    if (w->dry) return;
    shadow_buf_t f = SHADOW_BUF_INIT;
    shadow_buf_puts(&f, s->instance);
    shadow_buf_putc(&f, SHADOW_FLEET_SEP);
    shadow_buf_append(&f, name, len);
    vl = snprintf(v, sizeof(v), "%.17g", d);
    op3(w, "m", f.data, f.len, v, (size_t)vl);
    shadow_buf_free(&f);
  }
}

static void sig_field(shadow_buf_t *f, uint64_t hash, const char *what) {
  shadow_buf_reset(f);
  shadow_buf_printf(f, "%016" PRIx64 "%c%s", hash, SHADOW_FLEET_SEP, what);
}

static void on_sig(void *ud, const shadow_signature_view_t *v) {
  build_t *w = ud;
  shadow_store_t *s = w->s;
  char name[40];
  int nl = snprintf(name, sizeof(name), "sig%c%016" PRIx64, SHADOW_FLEET_SEP,
                    v->hash);
  shadow_fleet_snap_put(s->cur, name, (size_t)nl, v->count, v->last_ms);
  uint64_t su;
  double sd;
  shadow_fleet_snap_get(s->sent, name, (size_t)nl, &su, &sd);
  uint64_t delta = v->count >= su ? v->count - su : v->count;
  if (!delta) return;
  w->deltas++;
  if (w->dry) return;
  shadow_buf_t f = SHADOW_BUF_INIT;
  char num[48];
  int l;
  sig_field(&f, v->hash, "count");
  l = snprintf(num, sizeof(num), "%" PRIu64, delta);
  op3(w, "si", f.data, f.len, num, (size_t)l);
  sig_field(&f, v->hash, "first");
  l = snprintf(num, sizeof(num), "%.0f", v->first_ms);
  op3(w, "sn", f.data, f.len, num, (size_t)l);
  sig_field(&f, v->hash, "last");
  l = snprintf(num, sizeof(num), "%.0f", v->last_ms);
  op3(w, "ss", f.data, f.len, num, (size_t)l);
  sig_field(&f, v->hash, "key");
  op3(w, "ss", f.data, f.len, v->key, v->key_len);
  if (v->exemplar) {
    sig_field(&f, v->hash, "ex");
    op3(w, "ss", f.data, f.len, v->exemplar, v->exemplar_len);
  }
  shadow_buf_free(&f);
}

static char *key(shadow_store_t *s, int with_epoch, const char *name) {
  shadow_buf_t b = SHADOW_BUF_INIT;
  if (with_epoch)
    shadow_buf_printf(&b, "%s:%" PRIu64 ":%s", s->base, s->epoch, name);
  else
    shadow_buf_printf(&b, "%s:%s", s->base, name);
  return shadow_buf_steal(&b, NULL);
}

/* Walks the local state into cur (and, unless dry, the pipeline). Under
 * the owner's lock. */
static void walk(shadow_store_t *s, build_t *w) {
  shadow_fleet_snap_free(s->cur);
  s->cur = shadow_fleet_snap_new();
  if (!s->cur) return;
  shadow_stats_t *st = s->owner.stats;
  shadow_fleet_counts_walk(st, on_count, w);
  if (st->signatures) shadow_signatures_each(st->signatures, on_sig, w);
  shadow_ring_t *ring = s->owner.ring(s->owner.ud);
  s->cur_pushed = ring ? shadow_ring_pushed(ring) : 0;
}

/* The flush, applied at most once: Redis runs it only when the last
 * flush it applied for this instance is the one this flush counts from
 * (base), so a flush sent again after a timeout (its first copy may still
 * be applied later, from the old connection's buffer) never counts twice.
 * It answers -1 when applied, else the sequence number Redis has for the
 * instance. KEYS: counts float max sig log instances applied epoch;
 * ARGV: instance base seq heartbeat ttl_ms log_capacity, then operations
 * in threes: c (HINCRBY counts), f (HINCRBYFLOAT float), m (HSET max),
 * si/sn/ss (HINCRBY/HSETNX/HSET sig), x (XADD log: record, route). */
static const char FLUSH_SCRIPT[] =
    "redis.call('HSET',KEYS[6],ARGV[1],ARGV[4])\n"
    "for i=1,8 do redis.call('PEXPIRE',KEYS[i],ARGV[5]) end\n"
    "local a=tonumber(redis.call('HGET',KEYS[7],ARGV[1]) or '0')\n"
    "if a~=tonumber(ARGV[2]) then return a end\n"
    "for i=7,#ARGV,3 do\n"
    " local o,f,v=ARGV[i],ARGV[i+1],ARGV[i+2]\n"
    " if o=='c' then redis.call('HINCRBY',KEYS[1],f,v)\n"
    " elseif o=='f' then redis.call('HINCRBYFLOAT',KEYS[2],f,v)\n"
    " elseif o=='m' then redis.call('HSET',KEYS[3],f,v)\n"
    " elseif o=='si' then redis.call('HINCRBY',KEYS[4],f,v)\n"
    " elseif o=='sn' then redis.call('HSETNX',KEYS[4],f,v)\n"
    " elseif o=='ss' then redis.call('HSET',KEYS[4],f,v)\n"
    " elseif o=='x' then redis.call('XADD',KEYS[5],'MAXLEN','~',ARGV[6],'*',"
    "'d',f,'i',ARGV[1],'r',v) end\n"
    "end\n"
    "redis.call('HSET',KEYS[7],ARGV[1],ARGV[3])\n"
    "for i=1,8 do redis.call('PEXPIRE',KEYS[i],ARGV[5]) end\n"
    "return -1\n";

/* Sends what came since the last applied flush, then reads the fleet
 * back. */
static void flush_now(shadow_store_t *s) {
  if (s->state != CONNECTED || !s->conn || shadow_redis_conn_busy(s->conn))
    return;
  char *k[8] = {key(s, 1, "counts"),  key(s, 1, "float"),
                key(s, 1, "max"),     key(s, 1, "sig"),
                key(s, 1, "log"),     key(s, 0, "instances"),
                key(s, 1, "applied"), key(s, 0, "epoch")};
  shadow_buf_t *b = &s->batch;
  shadow_buf_t args = SHADOW_BUF_INIT;
  shadow_buf_reset(b);
  size_t n = 0;
  build_t w = {s, &args, 0, 0, 0};
  if (s->asking) {
    shadow_redis_encodev(b, 1, "ASKING");
    n++;
  }
  if (s->want_incr) {
    shadow_redis_encodev(b, 2, "INCR", k[7]);
    n++;
    s->want_incr = 0;
  }
  lock(s);
  walk(s, &w);
  shadow_ring_t *ring = s->owner.ring(s->owner.ud);
  if (ring && s->epoch_known) {
    /* Records the ring let go before this flush are not sent: the
     * stream keeps only the newest log.capacity, which these are. */
    uint64_t fresh = s->cur_pushed - s->sent_pushed;
    size_t len = shadow_ring_len(ring);
    if (fresh > len) fresh = len;
    for (size_t i = (size_t)fresh; i-- > 0;) {
      size_t jl, rl;
      const char *route;
      const char *json = shadow_ring_get(ring, i, &jl, &route, &rl);
      if (json) op3(&w, "x", json, jl, route ? route : "", route ? rl : 0);
    }
  }
  unlock(s);
  s->seq++;
  if (s->epoch_known) {
    char heartbeat[64], ttl[24], cap[24], base[24], seq[24];
    snprintf(heartbeat, sizeof(heartbeat),
             "{\"last_ms\":%.0f,\"kind\":\"shadowd\"}", shadow_wall_ms());
    snprintf(ttl, sizeof(ttl), "%" PRIu64, s->cfg.ttl_s * 1000);
    snprintf(cap, sizeof(cap), "%zu", s->log_capacity ? s->log_capacity : 1);
    snprintf(base, sizeof(base), "%" PRIu64, s->base_seq);
    snprintf(seq, sizeof(seq), "%" PRIu64, s->seq);
    shadow_buf_printf(b, "*%zu\r\n", 3 + 8 + 6 + w.nargs);
    bulk(b, "EVAL", 4);
    bulk(b, FLUSH_SCRIPT, sizeof(FLUSH_SCRIPT) - 1);
    bulk(b, "8", 1);
    for (int i = 0; i < 8; i++)
      bulk(b, k[i], strlen(k[i]));
    const char *fixed[6] = {s->instance, base, seq, heartbeat, ttl, cap};
    for (int i = 0; i < 6; i++)
      bulk(b, fixed[i], strlen(fixed[i]));
    shadow_buf_append(b, args.data ? args.data : "", args.len);
    s->exec_at = n++;
  } else {
    /* The first flush only learns the epoch: what was counted so far goes
     * into it with the next one. */
    s->exec_at = SIZE_MAX;
  }
  shadow_buf_free(&args);
  shadow_redis_encodev(b, 2, "GET", k[7]);
  s->read_at = n++;
  for (int i = 0; i < 4; i++)
    shadow_redis_encodev(b, 2, "HGETALL", k[i]);
  char cnt[24];
  snprintf(cnt, sizeof(cnt), "%zu", s->log_capacity ? s->log_capacity : 1);
  shadow_redis_encodev(b, 6, "XREVRANGE", k[4], "+", "-", "COUNT", cnt);
  shadow_redis_encodev(b, 2, "HGETALL", k[5]);
  n += 6;
  for (int i = 0; i < 8; i++)
    free(k[i]);
  s->phase = PH_FLUSH;
  s->in_flight = s->exec_at != SIZE_MAX;
  if (shadow_redis_conn_send(s->conn, b->data, b->len, n) != 0) {
    s->in_flight = 0;
    shadow_redis_conn_close(s->conn);
    count_error(s, E_LOST, "cannot send");
    went_down(s, 0);
  }
}

/* The fleet as the replies after GET epoch tell it (fleet_read.c). */
static shadow_fleet_t *build_fleet(shadow_store_t *s, redisReply **r) {
  const shadow_stats_t *local = s->owner.stats;
  size_t max_sigs = local->signatures ? shadow_signatures_max(local->signatures)
                                      : SHADOW_SIGNATURES_MAX;
  return shadow_fleet_read(r + s->read_at + 1, local->hook_names, local->nhooks,
                           max_sigs, s->log_capacity, s->epoch,
                           shadow_wall_ms());
}

static void swap_fleet(shadow_store_t *s, shadow_fleet_t *fl) {
  lock(s);
  shadow_stats_t *local = s->owner.stats;
  shadow_fleet_t *old = local->fleet;
  if (fl) {
    shadow_stats_t *f = fl->stats;
    /* State, not counts: the fleet's view shows this instance's. */
    f->generation = local->generation;
    f->breaker_state = local->breaker_state;
    f->secondary_breaker_state = local->secondary_breaker_state;
    f->window_start_ms = local->window_start_ms;
    f->store = s;
    f->fleet_view = 1;
  }
  local->fleet = fl;
  unlock(s);
  shadow_fleet_free(old);
}

static void forget_ambiguous(shadow_store_t *s) {
  for (size_t i = 0; i < s->namb; i++)
    shadow_fleet_snap_free(s->amb[i].snap);
  s->namb = 0;
}

/* A flush's snapshot becomes what the fleet has of this instance. */
static void commit(shadow_store_t *s, shadow_fleet_snap_t *snap,
                   uint64_t pushed, uint64_t seq) {
  shadow_fleet_snap_free(s->sent);
  s->sent = snap;
  s->sent_pushed = pushed;
  s->base_seq = seq;
}

static void got_flush(shadow_store_t *s, redisReply **r, size_t n) {
  s->phase = PH_NONE;
  s->in_flight = 0;
  if (s->final) {
    close_all(s);
    return;
  }
  if (redirected(s, r, n)) {
    shadow_redis_conn_close(s->conn);
    s->conn = NULL;
    s->state = DOWN;
    went_down(s, 1);
    return;
  }
  uint64_t epoch =
      (uint64_t)shadow_fleet_reply_num(s->read_at < n ? r[s->read_at] : NULL);
  if (!s->epoch_known || epoch != s->epoch) {
    /* The first epoch learned, or a new one: on a new one, what this
     * instance counted so far is the baseline; only what follows is sent
     * (into keys of its own, where no flush of ours was applied yet). */
    if (s->epoch_known) {
      commit(s, s->cur, s->cur_pushed, 0);
      s->cur = NULL;
      shadow_log_info("store: fleet epoch %" PRIu64 " begins", epoch);
    }
    forget_ambiguous(s);
    s->base_seq = 0;
    s->epoch = epoch;
    s->epoch_known = 1;
    s->pending = 0;
    swap_fleet(s, NULL);
    flush_now(s);
    return;
  }
  redisReply *x = s->exec_at < n ? r[s->exec_at] : NULL;
  if (!x || x->type != REDIS_REPLY_INTEGER) {
    count_error(s, E_REPLY,
                x && x->type == REDIS_REPLY_ERROR ? x->str : "flush failed");
    return; /* the deltas stay, for the next flush */
  }
  if (x->integer == -1) {
    /* Applied: what was sent is now what the fleet has of us. */
    commit(s, s->cur, s->cur_pushed, s->seq);
    s->cur = NULL;
    forget_ambiguous(s);
  } else {
    /* Not applied: Redis has another flush of ours as the last. One whose
     * reply never came was applied after all; or Redis lost what it had
     * of us (restarted empty, keys expired): count on from its number. */
    uint64_t a = (uint64_t)x->integer;
    size_t i = 0;
    while (i < s->namb && s->amb[i].seq != a)
      i++;
    if (i < s->namb) {
      commit(s, s->amb[i].snap, s->amb[i].pushed, a);
      s->amb[i].snap = NULL;
    } else {
      s->base_seq = a;
    }
    forget_ambiguous(s);
  }
  s->flushes++;
  s->last_flush_ms = shadow_wall_ms();
  s->pending = 0;
  swap_fleet(s, build_fleet(s, r));
}

/* A flush tick while the store cannot take it: count what waits, and past
 * max_pending drop it (a new baseline) and count the drop. */
static void account_pending(shadow_store_t *s) {
  build_t w = {s, NULL, 0, 0, 1};
  lock(s);
  walk(s, &w);
  shadow_ring_t *ring = s->owner.ring(s->owner.ud);
  uint64_t records = s->cur_pushed - s->sent_pushed;
  if (ring && records > shadow_ring_len(ring)) records = shadow_ring_len(ring);
  unlock(s);
  s->pending = w.deltas + records;
  if (s->pending > s->cfg.max_pending && s->epoch_known) {
    s->dropped += s->pending;
    shadow_fleet_snap_free(s->sent);
    s->sent = s->cur;
    s->cur = NULL;
    s->sent_pushed = s->cur_pushed;
    s->pending = 0;
  }
}

static void on_flush_tick(uv_timer_t *t) {
  shadow_store_t *s = t->data;
  uint64_t t0 = shadow_redis_cpu_ns();
  if (s->state == CONNECTED && s->conn && !shadow_redis_conn_busy(s->conn))
    flush_now(s);
  else if (s->state != CONNECTED)
    account_pending(s);
  s->cpu_ns += shadow_redis_cpu_ns() - t0;
}

/* --- the owner's calls -------------------------------------------------- */

int shadow_store_start(uv_loop_t *loop, const shadow_store_cfg_t *cfg,
                       const shadow_store_owner_t *owner, shadow_store_t **out,
                       char **err) {
  shadow_store_t *s = calloc(1, sizeof(*s));
  if (!s) return -1;
  s->loop = loop;
  s->owner = *owner;
  shadow_store_cfg_init(&s->cfg);
#define DUP(f) s->cfg.f = cfg->f ? strdup(cfg->f) : NULL
  DUP(url);
  DUP(host);
  DUP(username);
  DUP(password);
  DUP(prefix);
  DUP(tls_ca_file);
  DUP(tls_server_name);
  DUP(tls_cert_file);
  DUP(tls_key_file);
  DUP(sentinel_master);
  for (size_t i = 0; i < cfg->nsentinels; i++)
    DUP(sentinel_addrs[i]);
#undef DUP
  s->cfg.nsentinels = cfg->nsentinels;
  s->cfg.tls = cfg->tls;
  s->cfg.port = cfg->port;
  s->cfg.db = cfg->db;
  s->cfg.flush_ms = cfg->flush_ms ? cfg->flush_ms : 1000;
  s->cfg.ttl_s = cfg->ttl_s;
  s->cfg.max_pending = cfg->max_pending;
  s->cfg.tls_verify = cfg->tls_verify;
  s->cfg.cluster = cfg->cluster;
  s->base = shadow_store_key_base(&s->cfg);
  s->sent = shadow_fleet_snap_new();
  s->backoff_ms = BACKOFF_MIN_MS;
  s->log_capacity = 1000;
  char host[64] = "host";
  gethostname(host, sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  uint64_t rnd = (uint64_t)(shadow_wall_ms() * 1000) ^
                 ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s;
  snprintf(s->instance, sizeof(s->instance), "%s:%d:%08" PRIx64, host,
           (int)getpid(), rnd & 0xffffffffu);
  if (s->cfg.tls) {
    shadow_tls_client_opts_t o = {
        s->cfg.tls_ca_file,
        s->cfg.tls_server_name ? s->cfg.tls_server_name : s->cfg.host,
        s->cfg.tls_verify,
        s->cfg.tls_cert_file,
        s->cfg.tls_key_file,
        SHADOW_TLS_ALPN_NONE};
    if (shadow_tls_client_ctx(&o, &s->tls, err) != 0) {
      shadow_store_cfg_release(&s->cfg);
      free(s->base);
      shadow_fleet_snap_free(s->sent);
      free(s);
      return -1;
    }
  }
  uv_timer_init(loop, &s->flush_timer);
  uv_timer_init(loop, &s->retry_timer);
  s->flush_timer.data = s->retry_timer.data = s;
  s->timers_open = 2;
  uv_timer_start(&s->flush_timer, on_flush_tick, s->cfg.flush_ms,
                 s->cfg.flush_ms);
  *out = s;
  lock(s);
  owner->stats->store = s;
  unlock(s);
  connect_next(s);
  return 0;
}

int shadow_store_same(const shadow_store_t *s, const shadow_store_cfg_t *cfg) {
  return s && shadow_store_cfg_same(&s->cfg, cfg);
}

void shadow_store_set_log_capacity(shadow_store_t *s, size_t capacity) {
  if (s) s->log_capacity = capacity;
}

static void on_timer_closed(uv_handle_t *h) {
  shadow_store_t *s = h->data;
  if (--s->timers_open > 0) return;
  shadow_store_cfg_release(&s->cfg);
  shadow_tls_ctx_unref(s->tls);
  free(s->base);
  free(s->master_host);
  free(s->redirect_host);
  shadow_fleet_snap_free(s->sent);
  shadow_fleet_snap_free(s->cur);
  forget_ambiguous(s);
  shadow_buf_free(&s->batch);
  free(s);
}

static void close_all(shadow_store_t *s) {
  if (uv_is_closing((uv_handle_t *)&s->flush_timer)) return;
  shadow_redis_conn_close(s->conn);
  s->conn = NULL;
  uv_timer_stop(&s->flush_timer);
  uv_timer_stop(&s->retry_timer);
  uv_close((uv_handle_t *)&s->flush_timer, on_timer_closed);
  uv_close((uv_handle_t *)&s->retry_timer, on_timer_closed);
}

static void on_final_deadline(uv_timer_t *t) {
  close_all(t->data);
}

void shadow_store_stop(shadow_store_t *s) {
  if (!s) return;
  s->stopping = 1;
  swap_fleet(s, NULL);
  lock(s);
  if (s->owner.stats->store == s) s->owner.stats->store = NULL;
  unlock(s);
  uv_timer_stop(&s->retry_timer);
  uv_timer_stop(&s->flush_timer);
  /* One last flush, so what this instance counted since the last one
   * reaches the fleet; the loop runs on until it is answered or a second
   * has passed. */
  if (s->state == CONNECTED && s->conn && s->epoch_known &&
      !shadow_redis_conn_busy(s->conn)) {
    flush_now(s);
    if (s->conn && s->phase == PH_FLUSH) {
      s->final = 1;
      uv_timer_start(&s->flush_timer, on_final_deadline, 1000, 0);
      return;
    }
  }
  close_all(s);
}

int shadow_store_reset_fleet(shadow_store_t *s) {
  if (!s || s->state != CONNECTED) return -ENOTCONN;
  s->want_incr = 1;
  flush_now(s);
  return 0;
}

static const char *state_name(const shadow_store_t *s) {
  return s->state == CONNECTED    ? "connected"
         : s->state == CONNECTING ? "connecting"
                                  : "down";
}

void shadow_store_render_json(const shadow_store_t *s, shadow_buf_t *out) {
  shadow_buf_puts(out, "{\"url\":");
  /* The URL without its password. */
  const char *u = s->cfg.url;
  const char *at = strchr(u, '@');
  if (at) {
    shadow_buf_puts(out, "\"");
    shadow_buf_puts(out, s->cfg.tls ? "rediss://" : "redis://");
    shadow_buf_json_string(out, at + 1, strlen(at + 1), 1);
    shadow_buf_puts(out, "\"");
  } else {
    shadow_buf_json_string(out, u, strlen(u), 0);
  }
  shadow_buf_printf(out, ",\"state\":\"%s\",\"instance\":", state_name(s));
  shadow_buf_json_string(out, s->instance, strlen(s->instance), 0);
  shadow_buf_printf(out,
                    ",\"epoch\":%" PRIu64 ",\"flushes\":%" PRIu64
                    ",\"last_flush_ms\":%.0f,\"pending\":%" PRIu64
                    ",\"dropped\":%" PRIu64 ",\"errors\":{",
                    s->epoch, s->flushes, s->last_flush_ms, s->pending,
                    s->dropped);
  uint64_t total = 0;
  for (int i = 0; i < E_COUNT; i++) {
    shadow_buf_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", error_names[i],
                      s->errors[i]);
    total += s->errors[i];
  }
  const shadow_fleet_t *fl = s->owner.stats->fleet;
  shadow_buf_printf(out,
                    "},\"errors_total\":%" PRIu64 ",\"last_error\":", total);
  if (s->last_error[0])
    shadow_buf_json_string(out, s->last_error, strlen(s->last_error), 0);
  else
    shadow_buf_puts(out, "null");
  shadow_buf_printf(out, ",\"instances\":%zu,\"cpu_ms\":%.3f}",
                    fl ? fl->instances : 0, (double)s->cpu_ns / 1e6);
}

void shadow_store_render_prometheus(const shadow_store_t *s,
                                    shadow_buf_t *out) {
  shadow_buf_puts(out, "# HELP shadow_store_errors_total Fleet store "
                       "failures, by reason.\n"
                       "# TYPE shadow_store_errors_total counter\n");
  for (int i = 0; i < E_COUNT; i++)
    shadow_buf_printf(out,
                      "shadow_store_errors_total{reason=\"%s\"} %" PRIu64 "\n",
                      error_names[i], s->errors[i]);
  shadow_buf_printf(
      out,
      "# HELP shadow_store_dropped_total Counts and records never sent to "
      "the fleet store (past max_pending while it was down).\n"
      "# TYPE shadow_store_dropped_total counter\n"
      "shadow_store_dropped_total %" PRIu64 "\n"
      "# HELP shadow_store_flushes_total Flushes the fleet store took.\n"
      "# TYPE shadow_store_flushes_total counter\n"
      "shadow_store_flushes_total %" PRIu64 "\n"
      "# HELP shadow_store_up Whether the fleet store is connected.\n"
      "# TYPE shadow_store_up gauge\n"
      "shadow_store_up %d\n",
      s->dropped, s->flushes, s->state == CONNECTED);
}
