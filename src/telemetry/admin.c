/* The admin endpoints (see admin.h): routing, the bearer token, and the
 * JSON and Prometheus renderings of the shared counters under the lock. */
#include "admin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin_guard.h"
#include "clock.h"
#include "fleet.h"
#include "secret.h"
#include "server.h"
#include "signatures.h"
#include "store.h"

struct shadow_admin_s {
  shadow_server_t *server;
  shadow_admin_ctx_t ctx;
  shadow_buf_t out;
  char *addr; /* as configured: its host is one the Host check accepts */
};

static void reply(shadow_request_t *req, int status, const char *type,
                  const char *body, size_t len) {
  shadow_headers_t h = SHADOW_HEADERS_INIT;
  shadow_headers_add(&h, "content-type", 12, type, strlen(type));
  shadow_headers_add(&h, "cache-control", 13, "no-store", 8);
  shadow_server_respond(req, status, &h, body, len);
  shadow_headers_free(&h);
}

static void reply_json(shadow_request_t *req, int status, const char *json) {
  reply(req, status, "application/json", json, strlen(json));
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The decoded value of query parameter name, or -1 when absent. */
static int query_param(const char *query, size_t qlen, const char *name,
                       shadow_buf_t *out) {
  size_t nl = strlen(name);
  const char *p = query, *end = query + qlen;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    if ((size_t)(pe - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
      shadow_buf_reset(out);
      for (const char *s = p + nl + 1; s < pe; s++) {
        if (*s == '+') {
          shadow_buf_putc(out, ' ');
        } else if (*s == '%' && pe - s > 2 && hexval(s[1]) >= 0 &&
                   hexval(s[2]) >= 0) {
          shadow_buf_putc(out, (char)(hexval(s[1]) * 16 + hexval(s[2])));
          s += 2;
        } else {
          shadow_buf_putc(out, *s);
        }
      }
      if (!out->data) shadow_buf_append(out, "", 0);
      return 0;
    }
    p = pe + 1;
  }
  return -1;
}

static void divergences(shadow_admin_t *a, shadow_request_t *req,
                        const char *query, size_t qlen, int local) {
  shadow_ring_t *ring = a->ctx.ring(a->ctx.ud);
  shadow_buf_t v = SHADOW_BUF_INIT;
  size_t limit = 50;
  if (query_param(query, qlen, "limit", &v) == 0) {
    char *end;
    long n = strtol(v.data, &end, 10);
    if (*end || n < 0) {
      shadow_buf_free(&v);
      reply_json(req, 400, "{\"error\":\"limit must be a whole number\"}");
      return;
    }
    limit = (size_t)n;
  }
  shadow_buf_t r = SHADOW_BUF_INIT;
  int by_route = query_param(query, qlen, "route", &r) == 0;
  shadow_buf_t *out = &a->out;
  shadow_buf_reset(out);
  if (query_param(query, qlen, "group", &v) == 0) {
    if (strcmp(v.data, "signature") != 0) {
      shadow_buf_free(&v);
      shadow_buf_free(&r);
      reply_json(req, 400, "{\"error\":\"group must be signature\"}");
      return;
    }
    a->ctx.lock(a->ctx.ud);
    shadow_stats_t *view = shadow_fleet_view(a->ctx.stats, local);
    if (view->signatures)
      shadow_signatures_render(view->signatures, out, limit,
                               by_route ? r.data : NULL, r.len);
    else
      shadow_buf_puts(out, "{\"divergences\":[],\"total\":0,\"evicted\":0}");
    a->ctx.unlock(a->ctx.ud);
    shadow_buf_free(&v);
    shadow_buf_free(&r);
    reply(req, 200, "application/json", out->data, out->len);
    return;
  }
  shadow_buf_free(&v);
  v = r;
  shadow_buf_puts(out, "{\"divergences\":[");
  a->ctx.lock(a->ctx.ud);
  if (!local && a->ctx.stats->fleet) ring = a->ctx.stats->fleet->ring;
  size_t shown = 0, total = 0, len = ring ? shadow_ring_len(ring) : 0;
  for (size_t i = 0; i < len; i++) {
    size_t n, rl;
    const char *route;
    const char *json = shadow_ring_get(ring, i, &n, &route, &rl);
    if (!json) break;
    if (by_route && (rl != v.len || memcmp(route, v.data, rl) != 0)) continue;
    total++;
    if (shown < limit) {
      if (shown++) shadow_buf_putc(out, ',');
      shadow_buf_append(out, json, n);
    }
  }
  a->ctx.unlock(a->ctx.ud);
  shadow_buf_printf(out, "],\"total\":%zu}", total);
  shadow_buf_free(&v);
  reply(req, 200, "application/json", out->data, out->len);
}

/* Constant-time comparison, so the token cannot be guessed by timing. */
static int token_ok(const shadow_request_t *req, const char *token) {
  const shadow_header_t *h =
      shadow_headers_find(&req->headers, "authorization");
  if (!h || h->value_len < 7 || strncasecmp(h->value, "Bearer ", 7)) return 0;
  return shadow_secret_equal(h->value + 7, h->value_len - 7, token,
                             strlen(token));
}

static void on_admin_request(shadow_request_t *req, void *ud) {
  shadow_admin_t *a = ud;
  const char *t = req->target.data ? req->target.data : "/";
  size_t tl = req->target.len;
  const char *q = memchr(t, '?', tl);
  size_t pl = q ? (size_t)(q - t) : tl;
  const char *query = q ? q + 1 : "";
  size_t qlen = q ? tl - pl - 1 : 0;
#define PATH_IS(s) (pl == sizeof(s) - 1 && memcmp(t, s, pl) == 0)
  int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
  shadow_admin_settings_t cfg;
  a->ctx.settings(a->ctx.ud, &cfg);

  if (PATH_IS("/healthz")) {
    reply_json(req, 200, "{\"status\":\"ok\"}");
    return;
  }
  /* A page on attacker.example whose name now resolves to this address
   * (DNS rebinding) reaches us with its own name as Host: refused before
   * anything is read or done. */
  const shadow_header_t *host = shadow_headers_find(&req->headers, "host");
  if (!shadow_admin_host_ok(a->addr, host ? host->value : NULL,
                            host ? host->value_len : 0)) {
    reply_json(req, 421,
               "{\"error\":\"Host is not this admin's address or a "
               "loopback name\"}");
    return;
  }
  if (cfg.token && !token_ok(req, cfg.token)) {
    reply_json(req, 401, "{\"error\":\"a bearer token is required\"}");
    return;
  }
  shadow_slo_t slo = {cfg.slo_max_rate, cfg.slo_min_samples,
                      cfg.slo_max_latency_ratio};
  /* ?scope=local: this instance alone, when a fleet store would show the
   * fleet; ?scope=fleet is the default. */
  int local = 0;
  {
    shadow_buf_t v = SHADOW_BUF_INIT;
    if (query_param(query, qlen, "scope", &v) == 0) {
      if (strcmp(v.data, "local") == 0) {
        local = 1;
      } else if (strcmp(v.data, "fleet") != 0) {
        shadow_buf_free(&v);
        reply_json(req, 400, "{\"error\":\"scope must be local or fleet\"}");
        return;
      }
    }
    shadow_buf_free(&v);
  }
  if (PATH_IS("/divergences") && get) {
    divergences(a, req, query, qlen, local);
  } else if (PATH_IS("/stats") && get) {
    shadow_buf_reset(&a->out);
    a->ctx.lock(a->ctx.ud);
    shadow_stats_render_json(shadow_fleet_view(a->ctx.stats, local), &a->out,
                             &slo, shadow_wall_ms());
    a->ctx.unlock(a->ctx.ud);
    reply(req, 200, "application/json", a->out.data, a->out.len);
  } else if (PATH_IS("/noise") && get) {
    int lua = qlen >= 10 && memmem(query, qlen, "format=lua", 10) != NULL;
    shadow_buf_reset(&a->out);
    a->ctx.lock(a->ctx.ud);
    shadow_stats_t *view = shadow_fleet_view(a->ctx.stats, local);
    if (lua)
      shadow_noise_render_lua(view, &cfg.noise, &a->out);
    else
      shadow_noise_render_json(view, &cfg.noise, &a->out);
    a->ctx.unlock(a->ctx.ud);
    reply(req, 200, lua ? "text/plain; charset=utf-8" : "application/json",
          a->out.data, a->out.len);
  } else if (PATH_IS("/metrics") && get) {
    shadow_buf_reset(&a->out);
    a->ctx.lock(a->ctx.ud);
    shadow_stats_render_prometheus(a->ctx.stats, &a->out, &slo);
    a->ctx.unlock(a->ctx.ud);
    reply(req, 200, "text/plain; version=0.0.4", a->out.data, a->out.len);
  } else if (PATH_IS("/reload") || PATH_IS("/stats/reset")) {
    int is_reset = !PATH_IS("/reload");
    const char *what = is_reset ? "/stats/reset" : "/reload";
    if (strcmp(req->method, "POST") != 0) {
      shadow_buf_reset(&a->out);
      shadow_buf_printf(&a->out, "{\"error\":\"use POST %s\"}", what);
      reply(req, 405, "application/json", a->out.data, a->out.len);
      return;
    }
    /* Without a token, a form on any web page could post here: a JSON
     * request needs a CORS preflight, which this port never grants. */
    const shadow_header_t *ct =
        shadow_headers_find(&req->headers, "content-type");
    if (!cfg.token && !shadow_admin_json_request(ct ? ct->value : NULL,
                                                 ct ? ct->value_len : 0)) {
      shadow_buf_reset(&a->out);
      shadow_buf_printf(&a->out,
                        "{\"error\":\"POST %s needs Content-Type: "
                        "application/json (or admin_token and its bearer "
                        "token)\"}",
                        what);
      reply(req, 415, "application/json", a->out.data, a->out.len);
      return;
    }
    if (is_reset) {
      shadow_buf_t v = SHADOW_BUF_INIT;
      if (query_param(query, qlen, "scope", &v) == 0 &&
          strcmp(v.data, "fleet") == 0) {
        /* A new window for every instance: the store's epoch. */
        shadow_buf_free(&v);
        a->ctx.lock(a->ctx.ud);
        shadow_store_t *store = a->ctx.stats->store;
        a->ctx.unlock(a->ctx.ud);
        if (!store) {
          reply_json(req, 409,
                     "{\"error\":\"scope=fleet needs a store (config "
                     "store = shadow.redis(...))\"}");
        } else if (shadow_store_reset_fleet(store) != 0) {
          reply_json(req, 503,
                     "{\"error\":\"the fleet store is not connected; "
                     "try again\"}");
        } else {
          reply_json(req, 200, "{\"result\":\"ok\",\"scope\":\"fleet\"}");
        }
        return;
      }
      int forget = query_param(query, qlen, "noise", &v) == 0 && v.len == 1 &&
                   v.data[0] == '1';
      shadow_buf_free(&v);
      a->ctx.reset(a->ctx.ud, forget);
      shadow_buf_reset(&a->out);
      shadow_buf_printf(&a->out, "{\"result\":\"ok\",\"noise\":\"%s\"}",
                        forget ? "forgotten" : "kept");
      reply(req, 200, "application/json", a->out.data, a->out.len);
      return;
    }
    char *err = NULL;
    int rc = a->ctx.reload(a->ctx.ud, &err);
    shadow_buf_reset(&a->out);
    if (rc >= 0) {
      a->ctx.lock(a->ctx.ud);
      unsigned generation = a->ctx.stats->generation;
      a->ctx.unlock(a->ctx.ud);
      shadow_buf_printf(&a->out, "{\"result\":\"%s\",\"generation\":%u}",
                        rc == 0 ? "ok" : "unchanged", generation);
    } else {
      shadow_buf_puts(&a->out, "{\"result\":\"error\",\"error\":");
      const char *e = err ? err : "reload failed";
      shadow_buf_json_string(&a->out, e, strlen(e), 0);
      shadow_buf_putc(&a->out, '}');
    }
    free(err);
    reply(req, rc >= 0 ? 200 : 422, "application/json", a->out.data,
          a->out.len);
  } else if (PATH_IS("/") && get) {
    reply(req, 200, "text/html; charset=utf-8", shadow_admin_dashboard_html,
          strlen(shadow_admin_dashboard_html));
  } else {
    reply_json(req, 404, "{\"error\":\"not found\"}");
  }
#undef PATH_IS
}

int shadow_admin_listen(uv_loop_t *loop, const char *addr,
                        const shadow_admin_ctx_t *ctx, shadow_admin_t **out,
                        char **err) {
  shadow_admin_t *a = calloc(1, sizeof(*a));
  if (!a) return -ENOMEM;
  a->ctx = *ctx;
  if (!(a->addr = strdup(addr))) {
    free(a);
    return -ENOMEM;
  }
  shadow_server_opts_t o;
  shadow_server_opts_default(&o);
  o.body_bytes = 4096;
  o.max_connections = 64;
  /* No on_body: the admin's few bodies arrive whole. */
  shadow_server_handler_t h = {.on_request = on_admin_request, .ud = a};
  int rc = shadow_server_listen(loop, addr, &o, &h, &a->server, err);
  if (rc) {
    free(a->addr);
    free(a);
    return rc;
  }
  *out = a;
  return 0;
}

void shadow_admin_close(shadow_admin_t *a) {
  if (!a) return;
  shadow_server_close(a->server);
  shadow_buf_free(&a->out);
  free(a->addr);
  free(a);
}
