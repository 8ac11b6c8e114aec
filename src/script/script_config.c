/* Reads the table a config script returned into a shadow_config_t: every
 * field is checked for its type and range, unknown fields are errors, and
 * hooks become registry references. Defaults come from config.c. */
#include "script_config.h"

#include <errno.h>
#include <lauxlib.h>
#include <llhttp.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "file.h"
#include "log.h"
#include "noise.h"
#include "tls.h"

/* The names a config table may use. Anything else is a typo that would
 * otherwise silently do nothing, so it is an error. */
static const char *const known_keys[] = {"listen",
                                         "admin",
                                         "admin_token",
                                         "primary",
                                         "candidate",
                                         "secondary",
                                         "sample",
                                         "mirror_methods",
                                         "route",
                                         "rewrite",
                                         "normalize",
                                         "ignore",
                                         "arrays",
                                         "tolerance",
                                         "on_divergence",
                                         "noise",
                                         "log",
                                         "breaker",
                                         "max_inflight_shadow",
                                         "limits",
                                         "slo",
                                         "watch",
                                         "drain_timeout_ms",
                                         "forwarded",
                                         "redact",
                                         "capture",
                                         "rename",
                                         "coerce",
                                         "mask",
                                         "time",
                                         "grpc",
                                         "store",
                                         NULL};

typedef struct reader_s {
  lua_State *L;
  int idx; /* absolute index of the config table */
  shadow_config_t *cfg;
  char *err; /* first error */
} reader_t;

static int fail(reader_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(reader_t *r, const char *fmt, ...) {
  if (r->err) return -1;
  shadow_buf_t b = SHADOW_BUF_INIT;
  shadow_buf_puts(&b, "config: ");
  va_list ap;
  va_start(ap, fmt);
  shadow_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  r->err = shadow_buf_steal(&b, NULL);
  return -1;
}

/* Stack: [...] -> [..., t[name]] where t is at tidx. */
static int get(reader_t *r, int tidx, const char *name) {
  lua_getfield(r->L, tidx, name);
  return lua_type(r->L, -1);
}

static char *dup_lstring(lua_State *L, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

/* Optional string field: leaves *out alone when absent. */
static int opt_string(reader_t *r, int tidx, const char *path, const char *name,
                      char **out) {
  int t = get(r, tidx, name);
  int rc = 0;
  if (t == LUA_TSTRING) {
    free(*out);
    *out = dup_lstring(r->L, -1);
  } else if (t != LUA_TNIL) {
    rc = fail(r, "%s%s must be a string, not %s", path, name,
              lua_typename(r->L, t));
  }
  lua_pop(r->L, 1);
  return rc;
}

static int opt_number(reader_t *r, int tidx, const char *path, const char *name,
                      double lo, double hi, double *out) {
  int t = get(r, tidx, name);
  int rc = 0;
  if (t == LUA_TNUMBER) {
    double v = lua_tonumber(r->L, -1);
    if (!(v >= lo && v <= hi))
      rc = fail(r, "%s%s must be between %g and %g, not %g", path, name, lo, hi,
                v);
    else
      *out = v;
  } else if (t != LUA_TNIL) {
    rc = fail(r, "%s%s must be a number, not %s", path, name,
              lua_typename(r->L, t));
  }
  lua_pop(r->L, 1);
  return rc;
}

static int opt_size(reader_t *r, int tidx, const char *path, const char *name,
                    double lo, double hi, size_t *out) {
  double v = (double)*out;
  int rc = opt_number(r, tidx, path, name, lo, hi, &v);
  if (rc == 0) *out = (size_t)v;
  return rc;
}

static int opt_u64(reader_t *r, int tidx, const char *path, const char *name,
                   double lo, double hi, uint64_t *out) {
  double v = (double)*out;
  int rc = opt_number(r, tidx, path, name, lo, hi, &v);
  if (rc == 0) *out = (uint64_t)v;
  return rc;
}

/* A count that is derived unless given: leaves *out (SHADOW_LIMIT_AUTO)
 * alone when absent. */
static int opt_size_auto(reader_t *r, int tidx, const char *path,
                         const char *name, double hi, size_t *out) {
  lua_getfield(r->L, tidx, name);
  int absent = lua_isnil(r->L, -1);
  lua_pop(r->L, 1);
  if (absent) return 0;
  size_t v = 0;
  int rc = opt_size(r, tidx, path, name, 0, hi, &v);
  if (rc == 0) *out = v;
  return rc;
}

/* Optional boolean field: leaves *out alone when absent. */
static int opt_bool(reader_t *r, int tidx, const char *path, const char *name,
                    int *out) {
  if (r->err) return -1;
  int t = get(r, tidx, name);
  int rc = 0;
  if (t == LUA_TBOOLEAN)
    *out = lua_toboolean(r->L, -1);
  else if (t != LUA_TNIL)
    rc = fail(r, "%s%s must be a boolean, not %s", path, name,
              lua_typename(r->L, t));
  lua_pop(r->L, 1);
  return rc;
}

/* Optional function field: a registry reference, or LUA_NOREF. */
static int opt_function(reader_t *r, int tidx, const char *path,
                        const char *name, int *ref) {
  int t = get(r, tidx, name);
  if (t == LUA_TFUNCTION) {
    *ref = luaL_ref(r->L, LUA_REGISTRYINDEX); /* pops */
    return 0;
  }
  lua_pop(r->L, 1);
  if (t != LUA_TNIL)
    return fail(r, "%s%s must be a function, not %s", path, name,
                lua_typename(r->L, t));
  return 0;
}

/* Optional sub-table: pushes it and returns its index, or 0 (nothing
 * pushed) when absent. */
static int opt_table(reader_t *r, int tidx, const char *name) {
  int t = get(r, tidx, name);
  if (t == LUA_TTABLE) return lua_gettop(r->L);
  lua_pop(r->L, 1);
  if (t != LUA_TNIL)
    fail(r, "%s must be a table, not %s", name, lua_typename(r->L, t));
  return 0;
}

static int check_keys(reader_t *r, int tidx, const char *path,
                      const char *const *keys) {
  lua_State *L = r->L;
  lua_pushnil(L);
  while (lua_next(L, tidx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      return fail(r, "%s has a key that is not a string", path);
    }
    const char *k = lua_tostring(L, -1);
    int ok = 0;
    for (size_t i = 0; keys[i]; i++)
      if (strcmp(keys[i], k) == 0) ok = 1;
    if (!ok) {
      int rc = fail(r, "unknown field %s%s", path, k);
      lua_pop(L, 1);
      return rc;
    }
  }
  return 0;
}

/* listen = "addr" or { addr = "addr", tls = { cert_file, key_file } }. The
 * certificate is read now, so a config that cannot serve TLS is refused
 * at load. Stack: unchanged. */
static int read_listen(reader_t *r, shadow_config_t *cfg) {
  lua_State *L = r->L;
  int t = get(r, r->idx, "listen");
  int rc = 0;
  if (t == LUA_TSTRING) {
    free(cfg->listen);
    cfg->listen = dup_lstring(L, -1);
  } else if (t == LUA_TTABLE) {
    int lt = lua_gettop(L);
    static const char *const keys[] = {"addr", "tls", NULL};
    rc = check_keys(r, lt, "listen.", keys);
    char *addr = NULL;
    if (rc == 0) rc = opt_string(r, lt, "listen.", "addr", &addr);
    if (rc == 0 && !addr) rc = fail(r, "listen.addr is required");
    if (addr) {
      free(cfg->listen);
      cfg->listen = addr;
    }
    int tt = rc ? 0 : opt_table(r, lt, "tls");
    if (tt) {
      static const char *const tkeys[] = {"cert_file", "key_file", NULL};
      rc = check_keys(r, tt, "listen.tls.", tkeys);
      if (rc == 0)
        rc = opt_string(r, tt, "listen.tls.", "cert_file",
                        &cfg->listen_cert_file);
      if (rc == 0)
        rc =
            opt_string(r, tt, "listen.tls.", "key_file", &cfg->listen_key_file);
      if (rc == 0 && (!cfg->listen_cert_file || !cfg->listen_key_file))
        rc = fail(r, "listen.tls needs cert_file and key_file");
      lua_pop(L, 1);
    }
  } else if (t != LUA_TNIL) {
    rc = fail(r,
              "listen must be \"addr:port\" or { addr = ..., tls = ... }, "
              "not %s",
              lua_typename(L, t));
  }
  lua_pop(L, 1);
  if (rc == 0 && cfg->listen_cert_file) {
    shadow_tls_ctx_t *ctx = NULL;
    char *why = NULL;
    rc = shadow_tls_server_ctx(cfg->listen_cert_file, cfg->listen_key_file,
                               &ctx, &why);
    shadow_tls_ctx_unref(ctx);
    if (rc) rc = fail(r, "listen: %s", why ? why : "tls");
    free(why);
  }
  return rc;
}

/* An https:// backend's files are read now, so --check and a reload
 * refuse a CA or certificate that cannot be read, naming it; tls options
 * on an http:// URL are an error, as they would do nothing. */
static int check_tls(reader_t *r, const char *name, shadow_backend_cfg_t *b) {
  int https = strncasecmp(b->url, "https://", 8) == 0;
  int has_tls = b->tls_ca_file || b->tls_server_name || b->tls_cert_file ||
                !b->opts.tls.verify;
  if (!https) {
    if (has_tls) return fail(r, "%s.tls is for https:// URLs only", name);
    return 0;
  }
  shadow_upstream_opts_t o;
  shadow_backend_upstream_opts(b, &r->cfg->limits, &o);
  if (!o.tls.server_name) o.tls.server_name = "check";
  shadow_tls_ctx_t *ctx = NULL;
  char *why = NULL;
  int rc = shadow_tls_client_ctx(&o.tls, &ctx, &why);
  shadow_tls_ctx_unref(ctx);
  if (rc) rc = fail(r, "%s: %s", name, why ? why : "tls");
  free(why);
  if (rc == 0 && !b->opts.tls.verify)
    shadow_log_warn("config: %s.tls.verify = false: the backend's "
                    "certificate is not checked",
                    name);
  return rc;
}

/* tls = { ca_file, server_name, verify, cert_file, key_file } of an
 * https:// backend. Stack: unchanged. */
static int read_tls(reader_t *r, int bt, const char *name,
                    shadow_backend_cfg_t *b) {
  lua_State *L = r->L;
  int t = get(r, bt, "tls");
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (t != LUA_TTABLE) {
    lua_pop(L, 1);
    return fail(r, "%s.tls must be a table, not %s", name, lua_typename(L, t));
  }
  int tt = lua_gettop(L);
  char path[64];
  snprintf(path, sizeof(path), "%s.tls.", name);
  static const char *const keys[] = {"ca_file",   "server_name", "verify",
                                     "cert_file", "key_file",    NULL};
  int rc = check_keys(r, tt, path, keys);
  rc |= opt_string(r, tt, path, "ca_file", &b->tls_ca_file);
  rc |= opt_string(r, tt, path, "server_name", &b->tls_server_name);
  rc |= opt_string(r, tt, path, "cert_file", &b->tls_cert_file);
  rc |= opt_string(r, tt, path, "key_file", &b->tls_key_file);
  rc |= opt_bool(r, tt, path, "verify", &b->opts.tls.verify);
  lua_pop(L, 1);
  if (rc == 0 && !b->tls_cert_file != !b->tls_key_file)
    rc = fail(r, "%s.tls: cert_file and key_file go together", name);
  return rc;
}

/* protocol = "http/1.1" | "h2" | "auto": "auto" asks the server through
 * ALPN, so it needs https://; an h2c:// URL speaks h2 whatever the
 * option says, so "http/1.1" on one is a contradiction. Stack: unchanged. */
static int read_protocol(reader_t *r, int bt, const char *name,
                         shadow_backend_cfg_t *b) {
  char *p = NULL;
  char path[64];
  snprintf(path, sizeof(path), "%s.", name);
  if (opt_string(r, bt, path, "protocol", &p)) return -1;
  int rc = 0;
  if (p) {
    int v = shadow_upstream_protocol_parse(p);
    if (v < 0)
      rc = fail(r,
                "%s.protocol must be \"http/1.1\", \"h2\" or \"auto\", "
                "not \"%s\"",
                name, p);
    else
      b->opts.protocol = v;
  }
  free(p);
  if (rc || !b->url) return rc;
  int https = strncasecmp(b->url, "https://", 8) == 0;
  int h2c = strncasecmp(b->url, "h2c://", 6) == 0;
  if (b->opts.protocol == SHADOW_UPSTREAM_AUTO && !https)
    rc = fail(r,
              "%s.protocol = \"auto\" asks the server through TLS (ALPN): "
              "it needs an https:// URL (h2c://, or protocol = \"h2\", for "
              "HTTP/2 over plain TCP)",
              name);
  else if (h2c && p && b->opts.protocol == SHADOW_UPSTREAM_HTTP1)
    rc = fail(r,
              "%s: an h2c:// URL speaks HTTP/2; protocol = \"http/1.1\" "
              "contradicts it",
              name);
  return rc;
}

static int read_backend(reader_t *r, const char *name,
                        shadow_backend_cfg_t *b) {
  lua_State *L = r->L;
  int t = get(r, r->idx, name);
  int rc = 0;
  shadow_backend_cfg_init(b);
  if (t == LUA_TNIL) {
    b->kind = SHADOW_BACKEND_NONE;
  } else if (t == LUA_TFUNCTION) {
    b->kind = SHADOW_BACKEND_LUA;
    b->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
  } else if (t == LUA_TSTRING) {
    b->kind = SHADOW_BACKEND_HTTP;
    b->url = dup_lstring(L, -1);
  } else if (t == LUA_TTABLE) {
    int bt = lua_gettop(L);
    char *kind = NULL;
    char path[64];
    snprintf(path, sizeof(path), "%s.", name);
    static const char *const keys[] = {"kind",
                                       "url",
                                       "host",
                                       "timeout_ms",
                                       "connect_timeout_ms",
                                       "read_timeout_ms",
                                       "idle_timeout_ms",
                                       "total_timeout_ms",
                                       "max_connections",
                                       "max_idle",
                                       "resolve_ms",
                                       "tls",
                                       "protocol",
                                       "max_streams",
                                       NULL};
    rc |= opt_string(r, bt, path, "kind", &kind);
    if (rc == 0) rc |= check_keys(r, bt, path, keys);
    if (rc) {
      /* named above */
    } else if (!kind || strcmp(kind, "http") != 0) {
      rc = fail(r, "%s must be shadow.http(url), a URL or a function", name);
    } else {
      b->kind = SHADOW_BACKEND_HTTP;
      rc |= opt_string(r, bt, path, "url", &b->url);
      rc |= opt_string(r, bt, path, "host", &b->host);
      shadow_upstream_opts_t *o = &b->opts;
      rc |= opt_u64(r, bt, path, "timeout_ms", 1, 3600e3, &o->timeout_ms);
      rc |= opt_u64(r, bt, path, "connect_timeout_ms", 1, 3600e3,
                    &o->connect_timeout_ms);
      rc |= opt_u64(r, bt, path, "read_timeout_ms", 1, 86400e3,
                    &o->read_timeout_ms);
      rc |= opt_u64(r, bt, path, "idle_timeout_ms", 1, 86400e3,
                    &o->idle_timeout_ms);
      /* The primary's response streams to the client for as long as it
       * lasts (downloads, event streams): only shadow legs end by a
       * deadline of their own. */
      if (strcmp(name, "primary") == 0 && rc == 0) {
        int tt = get(r, bt, "total_timeout_ms");
        lua_pop(L, 1);
        if (tt != LUA_TNIL)
          rc = fail(r, "primary.total_timeout_ms: only the candidate and the "
                       "secondary have a total deadline (the primary's "
                       "response streams as long as it lasts)");
      }
      rc |= opt_u64(r, bt, path, "total_timeout_ms", 1, 86400e3,
                    &b->total_timeout_ms);
      rc |=
          opt_size(r, bt, path, "max_connections", 0, 1e6, &o->max_connections);
      rc |= opt_size(r, bt, path, "max_idle", 0, 1e6, &o->max_idle);
      rc |= opt_u64(r, bt, path, "resolve_ms", 0, 86400e3, &o->resolve_ms);
      rc |= opt_size(r, bt, path, "max_streams", 1, 1e6, &o->max_streams);
      if (rc == 0) rc = read_protocol(r, bt, name, b);
      if (rc == 0) rc = read_tls(r, bt, name, b);
      if (!b->url) rc = fail(r, "%s has no url", name);
    }
    free(kind);
  } else {
    rc = fail(r, "%s must be shadow.http(url), a URL or a function, not %s",
              name, lua_typename(L, t));
  }
  lua_pop(L, 1);
  if (rc == 0 && b->kind == SHADOW_BACKEND_HTTP) {
    char *why = NULL;
    if (shadow_upstream_url_check(b->url, &why) != 0)
      rc = fail(r, "%s: %s", name, why ? why : "bad url");
    free(why);
  }
  if (rc == 0 && b->kind == SHADOW_BACKEND_HTTP) rc = check_tls(r, name, b);
  return rc;
}

/* Stack: unchanged. The list of HTTP method names at index t (named
 * `name` in messages) as a set of llhttp method bits. */
static int method_set(reader_t *r, int t, const char *name, uint64_t *out) {
  lua_State *L = r->L;
  *out = 0;
  size_t n = lua_objlen(L, t);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, t, (int)i);
    const char *m = lua_tostring(L, -1);
    int id = m ? shadow_request_method_id(m) : -1;
    lua_pop(L, 1);
    if (id < 0) return fail(r, "%s[%zu] is not an HTTP method", name, i);
    *out |= 1ull << id;
  }
  return 0;
}

static int read_methods(reader_t *r, shadow_config_t *cfg) {
  int t = opt_table(r, r->idx, "mirror_methods");
  if (!t) return r->err ? -1 : 0;
  int rc = method_set(r, t, "mirror_methods", &cfg->mirror_methods);
  lua_pop(r->L, 1);
  return rc;
}

/* ignore = { headers = {...}, json = {...} }, arrays = {...},
 * tolerance = {...}, rename, coerce, mask, time = {...}: the diff rules.
 * They reach C as JSON, through lua/shadow/opts.lua's encode and
 * shadow_diff_opts_parse, exactly as shadow.diff's options do, so one
 * reader checks them for both. */
static int read_diff_rules(reader_t *r, shadow_config_t *cfg) {
  static const char *const names[] = {"ignore", "arrays", "tolerance", "rename",
                                      "coerce", "mask",   "time"};
  lua_State *L = r->L;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "shadow.opts");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    int rc = fail(r, "cannot load shadow.opts: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return rc;
  }
  lua_getfield(L, -1, "encode");
  lua_remove(L, -2);
  lua_createtable(L, 0, sizeof(names) / sizeof(*names));
  for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
    lua_getfield(L, r->idx, names[i]);
    lua_setfield(L, -2, names[i]);
  }
  if (lua_pcall(L, 1, 1, 0) != 0) {
    int rc = fail(r, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return rc;
  }
  size_t n = 0;
  const char *json = lua_tolstring(L, -1, &n);
  char why[256];
  int rc = shadow_diff_opts_parse(cfg->diff_opts, json, n, why, sizeof(why));
  lua_pop(L, 1);
  if (rc == -ENOMEM) return fail(r, "out of memory reading the diff rules");
  return rc ? fail(r, "%s", why) : 0;
}

/* redact = { headers = {...}, json = {...}, key = "..." }: a headers list
 * replaces the default names, as in the gateway; key (read last, onto
 * whichever list is kept) makes marks agree across processes. */
static int read_redact(reader_t *r, shadow_config_t *cfg) {
  lua_State *L = r->L;
  int rc = 0;
  int t = opt_table(r, r->idx, "redact");
  if (!t) return 0;
  static const char *const keys[] = {"headers", "json", "key", NULL};
  rc |= check_keys(r, t, "redact.", keys);
  for (int which = 0; which < 2 && rc == 0; which++) {
    int l = opt_table(r, t, which ? "json" : "headers");
    if (!l) continue;
    if (!which) {
      shadow_redact_t *fresh = shadow_redact_new();
      if (!fresh) rc = fail(r, "out of memory");
      shadow_redact_t *old = cfg->redact;
      /* Pointers read before headers do not exist yet: json is second. */
      cfg->redact = fresh ? fresh : old;
      if (fresh) shadow_redact_free(old);
    }
    size_t n = lua_objlen(L, l);
    for (size_t i = 1; i <= n && rc == 0; i++) {
      lua_rawgeti(L, l, (int)i);
      const char *s =
          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      int e = !s      ? -EINVAL
              : which ? shadow_redact_add_json(cfg->redact, s)
                      : shadow_redact_add_header(cfg->redact, s);
      if (e)
        rc = fail(r, "redact.%s[%zu] is not a valid %s",
                  which ? "json" : "headers", i,
                  which ? "JSON Pointer" : "header name");
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  int kt = get(r, t, "key");
  if (rc) {
    /* an error above is the one reported */
  } else if (kt == LUA_TSTRING) {
    size_t kn = 0;
    const char *k = lua_tolstring(L, -1, &kn);
    int e = shadow_redact_set_key(cfg->redact, k, kn);
    /* The key itself is never quoted back: only its length. */
    if (e == -EINVAL)
      rc = fail(r, "redact.key must be at least %d bytes, not %zu",
                SHADOW_REDACT_KEY_MIN, kn);
    else if (e)
      rc = fail(r, "out of memory");
  } else if (kt != LUA_TNIL) {
    rc = fail(r, "redact.key must be a string, not %s", lua_typename(L, kt));
  }
  lua_pop(L, 2);
  return rc;
}

/* capture = { file, rate, key, methods, max_bytes, keep, body_bytes }.
 * Read after mirror_methods and limits, whose values methods and
 * body_bytes default to. Stack: unchanged. */
static int read_capture(reader_t *r, shadow_config_t *cfg, int *key_ref) {
  lua_State *L = r->L;
  shadow_capture_cfg_t *c = &cfg->capture;
  c->methods = cfg->mirror_methods;
  c->body_bytes = cfg->limits.diff_bytes;
  int t = opt_table(r, r->idx, "capture");
  if (!t) return r->err ? -1 : 0;
  static const char *const keys[] = {"file",       "rate",      "key",
                                     "methods",    "max_bytes", "keep",
                                     "body_bytes", NULL};
  int rc = check_keys(r, t, "capture.", keys);
  rc |= opt_string(r, t, "capture.", "file", &c->file);
  rc |= opt_number(r, t, "capture.", "rate", 0, 1, &c->rate);
  rc |= opt_function(r, t, "capture.", "key", key_ref);
  rc |= opt_u64(r, t, "capture.", "max_bytes", 0, 0x1p53, &c->max_bytes);
  double keep = c->keep;
  rc |= opt_number(r, t, "capture.", "keep", 0, 1000, &keep);
  c->keep = (unsigned)keep;
  rc |= opt_size(r, t, "capture.", "body_bytes", 0, 64 << 20, &c->body_bytes);
  int mt = rc ? 0 : opt_table(r, t, "methods");
  if (mt) {
    rc = method_set(r, mt, "capture.methods", &c->methods);
    lua_pop(L, 1);
  }
  if (rc == 0 && !c->file) rc = fail(r, "capture.file is required");
  lua_pop(L, 1);
  return rc ? -1 : 0;
}

/* grpc = { descriptors = "api.pb" }: a descriptor set (protoc
 * --descriptor_set_out --include_imports) read now, so a missing or bad
 * file is a load error naming it and a reload keeps the old script. A
 * relative path is taken from the working directory, as TLS files are. */
static int read_grpc(reader_t *r, shadow_config_t *cfg) {
  int t = opt_table(r, r->idx, "grpc");
  if (!t) return r->err ? -1 : 0;
  static const char *const keys[] = {"descriptors", NULL};
  int rc = check_keys(r, t, "grpc.", keys);
  rc |= opt_string(r, t, "grpc.", "descriptors", &cfg->grpc_descriptors);
  lua_pop(r->L, 1);
  const char *path = cfg->grpc_descriptors;
  if (rc || !path) return rc ? -1 : 0;
  shadow_buf_t b = SHADOW_BUF_INIT;
  int e = shadow_file_read(path, &b);
  if (e) {
    shadow_buf_free(&b);
    return fail(r, "grpc.descriptors: cannot read %s: %s", path, strerror(-e));
  }
  char why[256] = "out of memory";
  e = shadow_diff_opts_grpc(cfg->diff_opts, b.data ? b.data : "", b.len, why,
                            sizeof why);
  shadow_buf_free(&b);
  return e ? fail(r, "grpc.descriptors: %s: %s", path, why) : 0;
}

/* store = shadow.redis(url, { prefix, flush_ms, ttl_s, max_pending,
 * username, password, tls = {...}, sentinel = { addrs, master }, cluster
 * }): the fleet store. The URL's user and password stand unless the
 * options give them. Stack: unchanged. */
static int read_store(reader_t *r, shadow_config_t *cfg) {
  lua_State *L = r->L;
  shadow_store_cfg_t *c = &cfg->store;
  int t = opt_table(r, r->idx, "store");
  if (!t) return r->err ? -1 : 0;
  static const char *const keys[] = {
      "kind",     "url", "prefix",   "flush_ms", "ttl_s",       "password",
      "username", "tls", "sentinel", "cluster",  "max_pending", NULL};
  int rc = check_keys(r, t, "store.", keys);
  char *kind = NULL, *url = NULL;
  rc |= opt_string(r, t, "store.", "kind", &kind);
  rc |= opt_string(r, t, "store.", "url", &url);
  if (rc == 0 && (!kind || strcmp(kind, "redis") != 0))
    rc = fail(r, "store must be shadow.redis(url, opts)");
  if (rc == 0 && !url) rc = fail(r, "store needs a url (redis://host:port/db)");
  char *why = NULL;
  if (rc == 0 && shadow_store_cfg_parse_url(c, url, &why) != 0)
    rc = fail(r, "%s", why ? why : "store: bad URL");
  free(why);
  why = NULL;
  free(kind);
  free(url);
  rc |= opt_string(r, t, "store.", "prefix", &c->prefix);
  if (rc == 0 && c->prefix && !c->prefix[0])
    rc = fail(r, "store.prefix must not be empty");
  rc |= opt_u64(r, t, "store.", "flush_ms", 10, 3600e3, &c->flush_ms);
  rc |= opt_u64(r, t, "store.", "ttl_s", 1, 365 * 86400.0, &c->ttl_s);
  rc |= opt_u64(r, t, "store.", "max_pending", 0, 1e9, &c->max_pending);
  rc |= opt_string(r, t, "store.", "password", &c->password);
  rc |= opt_string(r, t, "store.", "username", &c->username);
  rc |= opt_bool(r, t, "store.", "cluster", &c->cluster);
  if (rc == 0 && c->username && !c->password)
    rc = fail(r, "store.username needs a password");
  int tt = rc ? 0 : opt_table(r, t, "tls");
  if (tt) {
    static const char *const tkeys[] = {"ca_file",   "server_name", "verify",
                                        "cert_file", "key_file",    NULL};
    rc |= check_keys(r, tt, "store.tls.", tkeys);
    rc |= opt_string(r, tt, "store.tls.", "ca_file", &c->tls_ca_file);
    rc |= opt_string(r, tt, "store.tls.", "server_name", &c->tls_server_name);
    rc |= opt_string(r, tt, "store.tls.", "cert_file", &c->tls_cert_file);
    rc |= opt_string(r, tt, "store.tls.", "key_file", &c->tls_key_file);
    rc |= opt_bool(r, tt, "store.tls.", "verify", &c->tls_verify);
    lua_pop(L, 1);
  }
  int st = rc ? 0 : opt_table(r, t, "sentinel");
  if (st) {
    static const char *const skeys[] = {"addrs", "master", NULL};
    rc |= check_keys(r, st, "store.sentinel.", skeys);
    rc |= opt_string(r, st, "store.sentinel.", "master", &c->sentinel_master);
    int at = rc ? 0 : opt_table(r, st, "addrs");
    if (at) {
      size_t n = lua_objlen(L, at);
      if (n == 0 || n > SHADOW_STORE_SENTINELS_MAX)
        rc = fail(r, "store.sentinel.addrs must list 1 to %d \"host:port\"",
                  SHADOW_STORE_SENTINELS_MAX);
      for (size_t i = 1; rc == 0 && i <= n; i++) {
        lua_rawgeti(L, at, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
          rc = fail(r, "store.sentinel.addrs[%zu] must be a string", i);
        else
          c->sentinel_addrs[c->nsentinels++] = dup_lstring(L, -1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    } else if (rc == 0) {
      rc = fail(r, "store.sentinel needs addrs = { \"host:port\", ... }");
    }
    lua_pop(L, 1);
  }
  if (rc == 0 && shadow_store_cfg_check(c, &why) != 0)
    rc = fail(r, "%s", why ? why : "store: bad settings");
  free(why);
  lua_pop(L, 1);
  return rc ? -1 : 0;
}

int shadow_script_read_config(lua_State *L, int idx, shadow_config_t *cfg,
                              int hooks[SHADOW_HOOK_COUNT], char **err) {
  /* Lua 5.1 has no lua_absindex. */
  int abs = idx > 0 || idx <= LUA_REGISTRYINDEX ? idx : lua_gettop(L) + idx + 1;
  reader_t rd = {L, abs, cfg, NULL};
  reader_t *r = &rd;
  int top = lua_gettop(L);
  for (int i = 0; i < SHADOW_HOOK_COUNT; i++)
    hooks[i] = LUA_NOREF;
  if (shadow_config_init(cfg) != 0) fail(r, "out of memory");
  if (r->err) goto out;

  if (check_keys(r, r->idx, "", known_keys)) goto out;
  read_listen(r, cfg);
  opt_string(r, r->idx, "", "admin", &cfg->admin);
  opt_string(r, r->idx, "", "admin_token", &cfg->admin_token);
  read_backend(r, "primary", &cfg->primary);
  read_backend(r, "candidate", &cfg->candidate);
  read_backend(r, "secondary", &cfg->secondary);
  if (!r->err && cfg->primary.kind == SHADOW_BACKEND_NONE)
    fail(r, "primary is required");

  int t = opt_table(r, r->idx, "sample");
  if (t) {
    static const char *const keys[] = {"rate", "key", "filter",
                                       "secondary_rate", NULL};
    check_keys(r, t, "sample.", keys);
    opt_number(r, t, "sample.", "rate", 0, 1, &cfg->rate);
    opt_number(r, t, "sample.", "secondary_rate", 0, 1, &cfg->secondary_rate);
    opt_function(r, t, "sample.", "key", &hooks[SHADOW_HOOK_KEY]);
    opt_function(r, t, "sample.", "filter", &hooks[SHADOW_HOOK_FILTER]);
    lua_pop(L, 1);
  }
  read_methods(r, cfg);
  opt_function(r, r->idx, "", "route", &hooks[SHADOW_HOOK_ROUTE]);
  opt_function(r, r->idx, "", "rewrite", &hooks[SHADOW_HOOK_REWRITE]);
  opt_function(r, r->idx, "", "normalize", &hooks[SHADOW_HOOK_NORMALIZE]);
  opt_function(r, r->idx, "", "on_divergence",
               &hooks[SHADOW_HOOK_ON_DIVERGENCE]);
  if (!r->err) read_diff_rules(r, cfg);

  t = r->err ? 0 : opt_table(r, r->idx, "log");
  if (t) {
    static const char *const keys[] = {"capacity", "file", "max_bytes", "keep",
                                       NULL};
    check_keys(r, t, "log.", keys);
    opt_size(r, t, "log.", "capacity", 1, 1e6, &cfg->log_capacity);
    opt_string(r, t, "log.", "file", &cfg->log_file);
    opt_u64(r, t, "log.", "max_bytes", 0, 0x1p53, &cfg->log_max_bytes);
    double keep = cfg->log_keep;
    opt_number(r, t, "log.", "keep", 0, 1000, &keep);
    cfg->log_keep = (unsigned)keep;
    lua_pop(L, 1);
  }
  t = r->err ? 0 : opt_table(r, r->idx, "breaker");
  if (t) {
    static const char *const keys[] = {"failures", "cooldown_ms", NULL};
    double f = cfg->breaker_failures;
    check_keys(r, t, "breaker.", keys);
    opt_number(r, t, "breaker.", "failures", 1, 1e9, &f);
    cfg->breaker_failures = (int)f;
    opt_u64(r, t, "breaker.", "cooldown_ms", 1, 86400e3,
            &cfg->breaker_cooldown_ms);
    lua_pop(L, 1);
  }
  opt_size(r, r->idx, "", "max_inflight_shadow", 0, 1e6,
           &cfg->max_inflight_shadow);
  /* The secondary is a copy of the primary: it gets the sampled share
   * unless told otherwise, and never more (see policy.c). */
  if (cfg->secondary_rate < 0 || cfg->secondary_rate > cfg->rate)
    cfg->secondary_rate = cfg->rate;
  t = r->err ? 0 : opt_table(r, r->idx, "noise");
  if (t) {
    static const char *const keys[] = {"confidence", "min_samples", NULL};
    check_keys(r, t, "noise.", keys);
    opt_number(r, t, "noise.", "confidence", 0.5, 0.999999,
               &cfg->noise_confidence);
    opt_u64(r, t, "noise.", "min_samples", 1, 1e12, &cfg->noise_min_samples);
    cfg->noise_z = shadow_noise_z(cfg->noise_confidence);
    lua_pop(L, 1);
  }
  opt_u64(r, r->idx, "", "drain_timeout_ms", 0, 3600e3, &cfg->drain_timeout_ms);
  t = r->err ? 0 : opt_table(r, r->idx, "limits");
  if (t) {
    static const char *const keys[] = {"header_bytes",
                                       "body_bytes",
                                       "mirror_body_bytes",
                                       "diff_bytes",
                                       "header_timeout_ms",
                                       "idle_timeout_ms",
                                       "max_connections",
                                       "hook_timeout_ms",
                                       "tunnel_idle_timeout_ms",
                                       "max_tunnels",
                                       "copy_memory_bytes",
                                       "hook_memory_bytes",
                                       "max_headers",
                                       "h2_max_streams",
                                       "h2_max_resets",
                                       NULL};
    shadow_limits_t *l = &cfg->limits;
    check_keys(r, t, "limits.", keys);
    opt_size(r, t, "limits.", "header_bytes", 256, 1 << 24, &l->header_bytes);
    opt_size(r, t, "limits.", "max_headers", 1, 1 << 20, &l->max_headers);
    opt_u64(r, t, "limits.", "body_bytes", 0, 0x1p53, &l->body_bytes);
    opt_u64(r, t, "limits.", "mirror_body_bytes", 0, 1ull << 32,
            &l->mirror_body_bytes);
    opt_size(r, t, "limits.", "diff_bytes", 0, 1ull << 32, &l->diff_bytes);
    opt_u64(r, t, "limits.", "header_timeout_ms", 1, 3600e3,
            &l->header_timeout_ms);
    opt_u64(r, t, "limits.", "idle_timeout_ms", 1, 86400e3,
            &l->idle_timeout_ms);
    opt_size_auto(r, t, "limits.", "max_connections", 1e7, &l->max_connections);
    opt_u64(r, t, "limits.", "hook_timeout_ms", 1, 60e3, &l->hook_timeout_ms);
    opt_size(r, t, "limits.", "hook_memory_bytes", 4 << 20, 1ull << 40,
             &l->hook_memory_bytes);
    opt_u64(r, t, "limits.", "tunnel_idle_timeout_ms", 1, 86400e3,
            &l->tunnel_idle_timeout_ms);
    opt_size_auto(r, t, "limits.", "max_tunnels", 1e7, &l->max_tunnels);
    opt_u64(r, t, "limits.", "copy_memory_bytes", 0, 0x1p53,
            &l->copy_memory_bytes);
    opt_size(r, t, "limits.", "h2_max_streams", 1, 1u << 31,
             &l->h2_max_streams);
    opt_u64(r, t, "limits.", "h2_max_resets", 0, 1e9, &l->h2_max_resets);
    lua_pop(L, 1);
  }
  shadow_limits_resolve(&cfg->limits, cfg->max_inflight_shadow);
  shadow_diff_opts_set_diff_bytes(cfg->diff_opts, cfg->limits.diff_bytes);
  t = r->err ? 0 : opt_table(r, r->idx, "slo");
  if (t) {
    static const char *const keys[] = {"max_divergence_rate", "min_samples",
                                       "max_latency_ratio", NULL};
    check_keys(r, t, "slo.", keys);
    opt_number(r, t, "slo.", "max_divergence_rate", 0, 1, &cfg->slo_max_rate);
    opt_u64(r, t, "slo.", "min_samples", 0, 1e12, &cfg->slo_min_samples);
    opt_number(r, t, "slo.", "max_latency_ratio", 0, 1e6,
               &cfg->slo_max_latency_ratio);
    lua_pop(L, 1);
  }
  opt_bool(r, r->idx, "", "watch", &cfg->watch);
  opt_bool(r, r->idx, "", "forwarded", &cfg->forwarded);
  if (!r->err) read_redact(r, cfg);
  if (!r->err) read_capture(r, cfg, &hooks[SHADOW_HOOK_CAPTURE_KEY]);
  if (!r->err) read_grpc(r, cfg);
  if (!r->err) read_store(r, cfg);

out:
  lua_settop(L, top);
  if (r->err) {
    *err = r->err;
    return -1;
  }
  return 0;
}
