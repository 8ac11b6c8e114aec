/* The script host. Every C -> Lua call goes through call_hook(), which runs
 * the function under a traceback handler, counts and logs a failure, and
 * leaves the stack as it found it. */
#include "script.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>
#include <xxhash.h>

#include "config_changes.h"
#include "config_locate.h"
#include "embedded_lua.h"
#include "header_group.h"
#include "log.h"
#include "script_config.h"
#include "script_sandbox.h"

/* A state's memory, counted by the allocator that wraps LuaJIT's own. The
 * cap holds while Lua code runs (a hook, or the script at load): an
 * allocation past it fails there as "not enough memory", which the call
 * reports like any error. C code that pushes a request's table between
 * hooks is never refused: an allocation failure outside a protected call
 * would abort the process, and what C pushes is bounded by the limits. */
typedef struct mem_s {
  lua_Alloc base;
  void *base_ud;
  size_t used, cap;
  int enforce;
  unsigned refused; /* allocations refused since the last full collection */
} mem_t;

struct shadow_gen_s {
  lua_State *L;
  mem_t mem;
  shadow_config_t cfg;
  int hooks[SHADOW_HOOK_COUNT]; /* registry refs, LUA_NOREF when absent */
  int traceback_ref;
  int decode_ref; /* cjson.decode, loaded on first use */
  int refs;
  shadow_script_observer_t obs;
  uint64_t last_log_ms[SHADOW_HOOK_COUNT];
  char **sources; /* the config first, then the modules it required */
  size_t nsources;
  uint64_t source_hash;
  uint64_t hook_timeout_ns;
  unsigned suppressed[SHADOW_HOOK_COUNT];
  shadow_config_print_t print; /* what a reload's log line compares */
};

const char *const shadow_hook_names[SHADOW_HOOK_COUNT] = {
    "filter",    "key",           "route",   "rewrite",
    "normalize", "on_divergence", "backend", "capture_key"};

const char *shadow_hook_name(int hook) {
  return hook >= 0 && hook < SHADOW_HOOK_COUNT ? shadow_hook_names[hook]
                                               : "unknown";
}

/* Stack: [msg] -> [msg .. traceback]. */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg)
    msg =
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Logs a hook failure at most once a second per hook, saying how many
 * were suppressed in between, and tells the error callback every time. */
static void report(shadow_gen_t *g, int hook, const char *msg) {
  uint64_t now = uv_hrtime() / 1000000;
  if (now - g->last_log_ms[hook] >= 1000 || g->last_log_ms[hook] == 0) {
    /* Only the first line: the traceback is for --check and debugging. */
    const char *nl = strchr(msg, '\n');
    int len = nl ? (int)(nl - msg) : (int)strlen(msg);
    if (g->suppressed[hook])
      shadow_log_warn("script: %s hook failed: %.*s (%u more since last "
                      "report)",
                      shadow_hook_name(hook), len, msg, g->suppressed[hook]);
    else
      shadow_log_warn("script: %s hook failed: %.*s", shadow_hook_name(hook),
                      len, msg);
    g->last_log_ms[hook] = now;
    g->suppressed[hook] = 0;
  } else {
    g->suppressed[hook]++;
  }
  if (g->obs.on_error) g->obs.on_error(g->obs.ud, hook, msg);
}

static void *mem_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mem_t *m = ud;
  if (!ptr) osize = 0;
  if (nsize > osize && m->enforce && m->used + (nsize - osize) > m->cap) {
    m->refused++;
    return NULL;
  }
  void *p = m->base(m->base_ud, ptr, osize, nsize);
  if (p || nsize == 0) /* never below zero, were the count ever off */
    m->used = (m->used > osize ? m->used - osize : 0) + nsize;
  return p;
}

/* The sandbox's view of the cap. Upvalue 1: the mem_t. */
static int mem_cap(lua_State *L) {
  const mem_t *m = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushnumber(L, (lua_Number)m->cap);
  return 1;
}

/* Runaway hooks. LuaJIT does not run debug hooks inside JIT-compiled code,
 * so a `while true do end` that gets compiled would never be interrupted.
 * Script states therefore run with the JIT off (the interpreter checks the
 * count hook), and the count hook aborts a call that passes its deadline.
 * A thread runs one hook at a time (hooks may nest, keeping the outer
 * deadline), and each --workers loop and the main thread (loading a
 * reload's script) is its own thread: the deadline is thread-local, so one
 * thread's hook never takes another's deadline or clears it.
 *
 * Once a call's budget is spent it stays spent: the count hook then runs
 * at every instruction and raises again, so a pcall or xpcall in the
 * script (or in shadow's own Lua) that catches the error gets no further
 * than its next instruction, and the error climbs to call_hook. */
static _Thread_local uint64_t hook_deadline_ns;
static _Thread_local uint64_t hook_limit_ms;
static _Thread_local uint64_t hook_stop_grace_ns;
static _Thread_local int hook_over; /* 0, or why the call is stopped */
enum { OVER_TIME = 1, OVER_STOP };

/* When SIGTERM or SIGINT came (CLOCK_MONOTONIC, uv_hrtime's clock), 0 if
 * not: set from the signal handler, read by every thread's count hook. */
static atomic_uint_fast64_t stop_ns;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void shadow_script_stop(void) {
  uint64_t none = 0;
  atomic_compare_exchange_strong(&stop_ns, &none, now_ns());
}

uint64_t shadow_script_stop_age_ms(void) {
  uint64_t t = atomic_load(&stop_ns);
  return t ? (now_ns() - t) / 1000000 : 0;
}

static const char *over_message(void) {
  return hook_over == OVER_STOP ? "hook stopped: shadowd is stopping"
                                : "hook ran longer than its limit and was "
                                  "stopped";
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (!hook_deadline_ns) return;
  if (!hook_over) {
    uint64_t now = uv_hrtime(), stop = atomic_load(&stop_ns);
    if (now > hook_deadline_ns)
      hook_over = OVER_TIME;
    else if (stop && now > stop + hook_stop_grace_ns)
      hook_over = OVER_STOP;
    else
      return;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
  }
  if (hook_over == OVER_TIME)
    luaL_error(L, "hook ran longer than %d ms and was stopped",
               (int)hook_limit_ms);
  luaL_error(L, "%s", over_message());
}

/* The sandbox's pcall and xpcall ask this. */
static int budget_spent(lua_State *L) {
  lua_pushboolean(L, hook_over != 0);
  return 1;
}

/* Arms the budget of an outermost call; see count_hook. */
static void budget_start(shadow_gen_t *g, uint64_t deadline_ns,
                         uint64_t limit_ms, uint64_t grace_ns) {
  hook_deadline_ns = deadline_ns;
  hook_limit_ms = limit_ms;
  hook_stop_grace_ns = grace_ns;
  hook_over = 0;
  g->mem.enforce = 1;
}

/* Returns why the call was stopped (0: it was not), and disarms. */
static int budget_end(shadow_gen_t *g) {
  int over = hook_over;
  if (over) lua_sethook(g->L, count_hook, LUA_MASKCOUNT, 1000);
  hook_deadline_ns = 0;
  hook_over = 0;
  g->mem.enforce = 0;
  return over;
}

/* Stack: [..., fn, args(nargs)] -> [..., results(nresults)] on success (0);
 * [...] on failure (-1), after reporting it. */
static int call_hook(shadow_gen_t *g, int hook, int nargs, int nresults) {
  lua_State *L = g->L;
  int base = lua_gettop(L) - nargs; /* the function's slot */
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->traceback_ref);
  lua_insert(L, base);
  /* Hooks may nest (a backend calling shadow.diff is not a hook, but
   * on_divergence runs decode then the hook): keep the outer deadline. */
  int outermost = hook_deadline_ns == 0;
  uint64_t t0 = uv_hrtime();
  /* LuaJIT has no emergency collection: garbage the collector has not
   * reached yet would count against the cap. Near it, collect first. */
  if (outermost && g->mem.used > g->mem.cap / 4 * 3)
    lua_gc(L, LUA_GCCOLLECT, 0);
  if (outermost)
    budget_start(g, t0 + g->hook_timeout_ns, g->hook_timeout_ns / 1000000,
                 g->cfg.drain_timeout_ms * 1000000 / 2);
  int rc = lua_pcall(L, nargs, nresults, base);
  uint64_t t1 = uv_hrtime();
  int over = outermost ? budget_end(g) : 0;
  if (g->obs.on_time) g->obs.on_time(g->obs.ud, hook, (double)(t1 - t0) / 1e9);
  if (rc != 0) {
    const char *msg = lua_tostring(L, -1);
    /* A spent budget is the reason, whatever the last error said. */
    if (over == OVER_TIME)
      msg = lua_pushfstring(L, "hook ran longer than %d ms and was stopped",
                            (int)(g->hook_timeout_ns / 1000000));
    else if (over == OVER_STOP)
      msg = "hook stopped: shadowd is stopping";
    else if (rc == LUA_ERRMEM || g->mem.refused)
      msg = lua_pushfstring(L,
                            "hook ran out of memory (limits.hook_memory_bytes"
                            " = %d MiB): %s",
                            (int)(g->mem.cap >> 20), msg ? msg : "");
    report(g, hook, msg ? msg : "(no message)");
    lua_settop(L, base - 1);
    if (g->mem.refused) {
      /* Garbage may be what filled the cap: collect it all before the
       * next call rather than refuse that one too. */
      lua_gc(L, LUA_GCCOLLECT, 0);
      g->mem.refused = 0;
    }
    return -1;
  }
  lua_remove(L, base);
  return 0;
}

/* package.preload loader for an embedded module. Upvalue 1: the entry. */
static int embedded_loader(lua_State *L) {
  const shadow_embedded_lua_t *e = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbuffer(L, e->source, e->len, e->chunkname) != 0)
    return lua_error(L);
  lua_pushstring(L, e->module);
  lua_call(L, 1, 1);
  return 1;
}

/* Stack: unchanged. Keeps only absolute directories in package.path or
 * cpath (field): LuaJIT starts them with ./?.lua and ./?.so, and LUA_PATH
 * may add more, so a require would load files of the working directory
 * outside the sandbox. shadow's modules are compiled in (package.preload);
 * what remains is where Debian installs cjson. */
static void keep_absolute(lua_State *L, const char *field) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, field);
  const char *p = lua_tostring(L, -1);
  shadow_buf_t b = SHADOW_BUF_INIT;
  while (p && *p) {
    const char *end = strchr(p, ';');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 0 && p[0] == '/') {
      if (b.len) shadow_buf_putc(&b, ';');
      shadow_buf_append(&b, p, n);
    }
    p = end ? end + 1 : NULL;
  }
  lua_pop(L, 1);
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  lua_setfield(L, -2, field);
  lua_pop(L, 1);
  shadow_buf_free(&b);
}

int shadow_script_open_embedded(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (const shadow_embedded_lua_t *e = shadow_embedded_lua; e->module; e++) {
    lua_pushlightuserdata(L, (void *)e);
    lua_pushcclosure(L, embedded_loader, 1);
    lua_setfield(L, -2, e->module);
  }
  lua_pop(L, 2);
  static const char clib[] = "package.loaded['shadow.clib'] = require('ffi').C";
  if (luaL_loadbuffer(L, clib, sizeof(clib) - 1, "=shadowd") ||
      lua_pcall(L, 0, 0, 0))
    return -1;
  return 0;
}

/* Stack: unchanged. Makes `require "shadow"` find the module compiled into
 * the binary, and the engine reachable through ffi.C (for shadow's own
 * modules: the sandbox gives a config no way to it). */
static int prepare_state(lua_State *L) {
  luaL_openlibs(L);
  keep_absolute(L, "path");
  keep_absolute(L, "cpath");
  if (shadow_script_open_embedded(L)) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

static void gen_destroy(shadow_gen_t *g) {
  shadow_config_print_free(&g->print);
  if (g->L) {
    /* LuaJIT releases its own allocator's arenas at close only when that
     * allocator is the state's: hand it back first. */
    if (g->mem.base) lua_setallocf(g->L, g->mem.base, g->mem.base_ud);
    lua_close(g->L);
  }
  for (size_t i = 0; i < g->nsources; i++)
    free(g->sources[i]);
  free(g->sources);
  shadow_config_release(&g->cfg);
  free(g);
}

static void add_source(void *ud, const char *path) {
  shadow_gen_t *g = ud;
  if (g->sources) g->sources[g->nsources++] = strdup(path);
}

int shadow_script_load(const char *path, shadow_gen_t **out, char **err) {
  *out = NULL;
  shadow_gen_t *g = calloc(1, sizeof(*g));
  if (!g) return -ENOMEM;
  g->decode_ref = LUA_NOREF;
  for (int i = 0; i < SHADOW_HOOK_COUNT; i++)
    g->hooks[i] = LUA_NOREF;
  g->L = luaL_newstate();
  if (g->L) {
    /* Count from here through LuaJIT's own allocator: what the state
     * holds already, then every change. */
    g->mem.base = lua_getallocf(g->L, &g->mem.base_ud);
    g->mem.used = (size_t)lua_gc(g->L, LUA_GCCOUNT, 0) * 1024 +
                  (size_t)lua_gc(g->L, LUA_GCCOUNTB, 0);
    g->mem.cap = SHADOW_HOOK_MEMORY_DEFAULT;
    lua_setallocf(g->L, mem_alloc, &g->mem);
  }
  if (!g->L || prepare_state(g->L)) {
    *err = strdup("cannot create a Lua state");
    gen_destroy(g);
    return -ENOMEM;
  }
  lua_State *L = g->L;
  lua_pushcfunction(L, traceback);
  g->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* See count_hook: interpreted code checks the hook, compiled code not. */
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000);

  /* Loading reports syntax errors as "file:line: message". The chunk
   * runs in the sandbox, and so do the hooks it defines. */
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (slash && (size_t)(slash - path) < sizeof(dir)) {
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
  } else {
    strcpy(dir, ".");
  }
  lua_newtable(L); /* the sandbox's require notes module paths here */
  int sources = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->traceback_ref);
  /* The script itself gets a generous deadline: a config that loops
   * forever must not hang --check or a reload. Text only: LuaJIT does not
   * verify bytecode, so a binary chunk could read and write any memory. */
  budget_start(g, uv_hrtime() + 5000ull * 1000000, 5000, 0);
  int binary = 0, rc = luaL_loadfilex(L, path, "t");
  if (rc != 0) {
    const char *m = lua_tostring(L, -1);
    binary = m && strstr(m, "wrong mode") != NULL;
  }
  int failed = rc != 0 ||
               shadow_sandbox_push_env(L, dir, sources, mem_cap, &g->mem,
                                       budget_spent) != 0 ||
               !lua_setfenv(L, -2) || (rc = lua_pcall(L, 0, 1, -2)) != 0;
  int over = budget_end(g);
  if (failed) {
    const char *msg = lua_tostring(L, -1);
    if (over == OVER_STOP)
      msg = "loading stopped: shadowd is stopping";
    else if (over == OVER_TIME)
      msg = lua_pushfstring(L,
                            "%s: the config script ran longer than 5000 ms "
                            "and was stopped",
                            path);
    else if (binary)
      msg = lua_pushfstring(L,
                            "%s: a precompiled (binary) chunk; configs "
                            "are loaded as Lua text only",
                            path);
    else if (rc == LUA_ERRMEM)
      msg = lua_pushfstring(L,
                            "%s: the config script ran out of memory "
                            "(limits.hook_memory_bytes while loading: "
                            "%d MiB)",
                            path, (int)(SHADOW_HOOK_MEMORY_DEFAULT >> 20));
    *err = strdup(msg ? msg : "error loading the config");
    gen_destroy(g);
    return -EINVAL;
  }
  if (lua_type(L, -1) != LUA_TTABLE) {
    shadow_buf_t b = SHADOW_BUF_INIT;
    shadow_buf_printf(&b,
                      "%s: the config script must return a table, "
                      "not %s",
                      path, luaL_typename(L, -1));
    *err = shadow_buf_steal(&b, NULL);
    gen_destroy(g);
    return -EINVAL;
  }
  char *cerr = NULL;
  /* Out of memory only makes a reload's log line say less. */
  (void)shadow_config_print_take(L, -1, &g->print);
  if (shadow_script_read_config(L, -1, &g->cfg, g->hooks, &cerr) != 0) {
    shadow_buf_t b = SHADOW_BUF_INIT;
    /* A table keeps no lines: find the entry by its text, in the config
     * or else in the modules it required. */
    const char *where = path;
    long line = shadow_config_locate(path, cerr);
    for (size_t i = 1; !line && i <= lua_objlen(L, sources); i++) {
      lua_rawgeti(L, sources, (int)i);
      const char *m = lua_tostring(L, -1);
      if (m && (line = shadow_config_locate(m, cerr)) > 0) where = m;
      lua_pop(L, 1);
    }
    if (line > 0)
      shadow_buf_printf(&b, "%s:%ld: %s", where, line, cerr);
    else
      shadow_buf_printf(&b, "%s: %s", path, cerr);
    free(cerr);
    *err = shadow_buf_steal(&b, NULL);
    gen_destroy(g);
    return -EINVAL;
  }
  g->hooks[SHADOW_HOOK_BACKEND] = LUA_NOREF;
  g->hook_timeout_ns = g->cfg.limits.hook_timeout_ms * 1000000;
  g->mem.cap = g->cfg.limits.hook_memory_bytes;
  size_t n = lua_objlen(L, sources);
  g->sources = calloc(n + 1 + SHADOW_CONFIG_MAX_FILES, sizeof(char *));
  if (g->sources) {
    g->sources[g->nsources++] = strdup(path);
    for (size_t i = 1; i <= n; i++) {
      lua_rawgeti(L, sources, (int)i);
      const char *p = lua_tostring(L, -1);
      if (p) g->sources[g->nsources++] = strdup(p);
      lua_pop(L, 1);
    }
  }
  /* Certificates and keys are sources too: changing one is a reload's
   * reason, and the watch sees it. */
  shadow_config_each_file(&g->cfg, add_source, g);
  g->source_hash = shadow_gen_source_hash_now(g);
  lua_settop(L, 0);
  g->refs = 1;
  *out = g;
  return 0;
}

int shadow_gen_override(shadow_gen_t *g, const char *listen,
                        const char *admin) {
  char *l = listen ? strdup(listen) : NULL;
  char *a = admin ? strdup(admin) : NULL;
  if ((listen && !l) || (admin && !a)) {
    free(l);
    free(a);
    return -ENOMEM;
  }
  if (l) {
    free(g->cfg.listen);
    g->cfg.listen = l;
  }
  if (a) {
    free(g->cfg.admin);
    g->cfg.admin = a;
  }
  return 0;
}

void shadow_gen_ref(shadow_gen_t *g) {
  g->refs++;
}

void shadow_gen_unref(shadow_gen_t *g) {
  if (g && --g->refs == 0) gen_destroy(g);
}

const shadow_config_t *shadow_gen_config(const shadow_gen_t *g) {
  return &g->cfg;
}

int shadow_gen_has_hook(const shadow_gen_t *g, int hook) {
  return g->hooks[hook] != LUA_NOREF;
}

void shadow_gen_observe(shadow_gen_t *g, const shadow_script_observer_t *o) {
  g->obs = *o;
}

size_t shadow_gen_source_count(const shadow_gen_t *g) {
  return g->nsources;
}

const char *shadow_gen_source(const shadow_gen_t *g, size_t i) {
  return i < g->nsources ? g->sources[i] : NULL;
}

const shadow_config_print_t *shadow_gen_print(const shadow_gen_t *g) {
  return &g->print;
}

uint64_t shadow_gen_source_hash(const shadow_gen_t *g) {
  return g->source_hash;
}

uint64_t shadow_gen_source_hash_now(const shadow_gen_t *g) {
  XXH3_state_t *st = XXH3_createState();
  if (!st) return 0;
  XXH3_64bits_reset(st);
  char buf[16384];
  for (size_t i = 0; i < g->nsources; i++) {
    const char *p = g->sources[i];
    if (!p) continue;
    XXH3_64bits_update(st, p, strlen(p) + 1);
    FILE *f = fopen(p, "rb");
    if (!f) {
      XXH3_64bits_update(st, "(missing)", 9);
      continue;
    }
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
      XXH3_64bits_update(st, buf, n);
    fclose(f);
  }
  uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

/* How a header's repeated values read as one: ", " as RFC 9110 section
 * 5.3 allows for list values, but "; " for Cookie (RFC 6265 section
 * 5.4), whose values are not a comma list. */
static const char *join_with(const char *lname, size_t n) {
  return n == 6 && memcmp(lname, "cookie", 6) == 0 ? "; " : ", ";
}

static size_t lower_name(const shadow_header_t *e, char *name, size_t cap) {
  size_t n = e->name_len < cap ? e->name_len : cap - 1;
  for (size_t j = 0; j < n; j++) {
    char c = e->name[j];
    name[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  return n;
}

/* The lines of h grouped by name (header_group.h): next[i], first[i].
 * NULL when h has no lines or memory ran out. Freed by the caller. */
static size_t *group_lines(const shadow_headers_t *h, unsigned char **first) {
  *first = NULL;
  if (h->n == 0) return NULL;
  size_t *next = malloc(h->n * sizeof(*next));
  *first = malloc(h->n);
  if (!next || !*first || shadow_headers_group(h, next, *first) != 0) {
    free(next);
    free(*first);
    *first = NULL;
    return NULL;
  }
  return next;
}

/* The values of the lines from i on that share its name, joined
 * (join_with), into out (reset first). 0 or -ENOMEM. */
static int join_group(const shadow_headers_t *h, const size_t *next, size_t i,
                      const char *lname, size_t n, shadow_buf_t *out) {
  int rc = 0;
  shadow_buf_reset(out);
  for (size_t j = i; j != SHADOW_HEADER_GROUP_END && rc == 0; j = next[j]) {
    const shadow_header_t *x = &h->v[j];
    if (j != i) rc |= shadow_buf_puts(out, join_with(lname, n));
    rc |= shadow_buf_append(out, x->value, x->value_len);
  }
  return rc ? -ENOMEM : 0;
}

/* Stack: [...] -> [..., headers table]. Names are lower-cased; repeated
 * headers are joined (join_with), each name once, so a head of thousands
 * of lines of one name costs its size, not its square. 0, or -ENOMEM with
 * the table pushed but incomplete. */
static int push_headers(lua_State *L, const shadow_headers_t *h) {
  lua_createtable(L, 0, (int)h->n);
  unsigned char *first;
  size_t *next = group_lines(h, &first);
  if (h->n && !next) return -ENOMEM;
  char name[256];
  shadow_buf_t joined = SHADOW_BUF_INIT;
  int rc = 0;
  for (size_t i = 0; i < h->n && rc == 0; i++) {
    if (!first[i]) continue;
    const shadow_header_t *e = &h->v[i];
    size_t n = lower_name(e, name, sizeof(name));
    lua_pushlstring(L, name, n);
    if (next[i] == SHADOW_HEADER_GROUP_END) {
      lua_pushlstring(L, e->value, e->value_len);
    } else {
      rc = join_group(h, next, i, name, n, &joined);
      lua_pushlstring(L, joined.data ? joined.data : "", joined.len);
    }
    lua_rawset(L, -3);
  }
  shadow_buf_free(&joined);
  free(next);
  free(first);
  return rc;
}

/* Stack: [..., t] -> [..., t]. Reads t.headers (name = string, or name =
 * { list of strings }) into h. */
static int read_headers(lua_State *L, shadow_headers_t *h) {
  lua_getfield(L, -1, "headers");
  int rc = 0;
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2)) {
      size_t nl, vl;
      const char *name = lua_tolstring(L, -2, &nl);
      if (lua_type(L, -2) != LUA_TSTRING) {
        rc = -1;
      } else if (lua_istable(L, -1)) {
        size_t n = lua_objlen(L, -1);
        for (size_t i = 1; i <= n && rc == 0; i++) {
          lua_rawgeti(L, -1, (int)i);
          const char *v = lua_tolstring(L, -1, &vl);
          rc = v ? shadow_headers_add(h, name, nl, v, vl) : -1;
          lua_pop(L, 1);
        }
      } else if (lua_type(L, -1) == LUA_TSTRING ||
                 lua_type(L, -1) == LUA_TNUMBER) {
        /* lua_tolstring on a number converts it in place; it is a value,
         * not the key, so lua_next is not confused. */
        const char *v = lua_tolstring(L, -1, &vl);
        rc = shadow_headers_add(h, name, nl, v, vl);
      } else {
        rc = -1;
      }
      lua_pop(L, 1);
    }
    if (rc) lua_pop(L, 1); /* the key lua_next left */
  } else if (!lua_isnil(L, -1)) {
    rc = -1;
  }
  lua_pop(L, 1);
  return rc;
}

/* Adds the value at the stack top (a string, a number or a list of them)
 * as lines called name. Stack unchanged. */
static int add_value_lines(lua_State *L, shadow_headers_t *h, const char *name,
                           size_t nl) {
  size_t vl;
  if (lua_istable(L, -1)) {
    size_t n = lua_objlen(L, -1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
      lua_rawgeti(L, -1, (int)i);
      const char *v = lua_tolstring(L, -1, &vl);
      rc = v ? shadow_headers_add(h, name, nl, v, vl) : -1;
      lua_pop(L, 1);
    }
    return rc;
  }
  if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
    return -1;
  const char *v = lua_tolstring(L, -1, &vl);
  return shadow_headers_add(h, name, nl, v, vl);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Stack: [..., t] -> [..., t]. The headers of a request table as a backend
 * is to get them: a header whose value the hook left as the request had
 * it keeps its original lines (the client's spelling, order and separate
 * lines); a changed one takes its place with the new value; headers the
 * hook added follow, in name order. So an identity rewrite sends exactly
 * what no rewrite sends. */
static int read_request_headers(lua_State *L, const shadow_headers_t *orig,
                                shadow_headers_t *h) {
  lua_getfield(L, -1, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return -1;
  }
  int hs = lua_gettop(L);
  lua_newtable(L); /* what becomes of each name orig has */
  int seen = hs + 1;
  enum { KEEP = 1, REPLACE, DROP, DONE };
  int rc = 0;
  char lname[256];
  shadow_buf_t joined = SHADOW_BUF_INIT;
  /* Each name's lines are found through the groups, never by scanning
   * the rest of the head for each line. */
  unsigned char *first = NULL;
  size_t *next = orig ? group_lines(orig, &first) : NULL;
  if (orig && orig->n && !next) rc = -1;
  /* First, per name: unchanged (keep the lines), changed, or removed. */
  for (size_t i = 0; next && i < orig->n && rc == 0; i++) {
    if (!first[i]) continue;
    const shadow_header_t *e = &orig->v[i];
    size_t n = lower_name(e, lname, sizeof(lname));
    if (join_group(orig, next, i, lname, n, &joined)) rc = -1;
    lua_pushlstring(L, lname, n);
    lua_rawget(L, hs);
    size_t vl = 0;
    const char *v =
        lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
    int what = lua_isnil(L, -1) ? DROP
               : v && vl == joined.len &&
                       memcmp(v, joined.data ? joined.data : "", vl) == 0
                   ? KEEP
                   : REPLACE;
    lua_pop(L, 1);
    lua_pushlstring(L, lname, n);
    lua_pushinteger(L, what);
    lua_rawset(L, seen);
  }
  shadow_buf_free(&joined);
  free(next);
  free(first);
  /* Then the lines in orig's order: kept ones as they were, a changed
   * name's new lines where its first line was. */
  for (size_t i = 0; orig && i < orig->n && rc == 0; i++) {
    const shadow_header_t *e = &orig->v[i];
    size_t n = lower_name(e, lname, sizeof(lname));
    lua_pushlstring(L, lname, n);
    lua_rawget(L, seen);
    int what = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (what == KEEP) {
      rc = shadow_headers_add(h, e->name, e->name_len, e->value, e->value_len);
    } else if (what == REPLACE) {
      lua_pushlstring(L, lname, n);
      lua_rawget(L, hs);
      rc = add_value_lines(L, h, e->name, e->name_len);
      lua_pop(L, 1);
      lua_pushlstring(L, lname, n);
      lua_pushinteger(L, DONE);
      lua_rawset(L, seen);
    }
  }
  /* The hook's own headers, in name order (pairs() has none). */
  size_t nadd = 0, cap = 0;
  char **added = NULL;
  lua_pushnil(L);
  while (rc == 0 && lua_next(L, hs)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      rc = -1;
      lua_pop(L, 1);
      break;
    }
    lua_pushvalue(L, -1);
    lua_rawget(L, seen);
    int from_orig = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (from_orig) continue;
    if (nadd == cap) {
      cap = cap ? cap * 2 : 8;
      char **v = realloc(added, cap * sizeof(*v));
      if (!v) {
        rc = -1;
        lua_pop(L, 1);
        break;
      }
      added = v;
    }
    added[nadd] = strdup(lua_tostring(L, -1));
    if (!added[nadd]) {
      rc = -1;
      lua_pop(L, 1);
      break;
    }
    nadd++;
  }
  if (nadd) qsort(added, nadd, sizeof(*added), cmp_names);
  for (size_t i = 0; i < nadd; i++) {
    if (rc == 0) {
      lua_getfield(L, hs, added[i]);
      rc = add_value_lines(L, h, added[i], strlen(added[i]));
      lua_pop(L, 1);
    }
    free(added[i]);
  }
  free(added);
  lua_settop(L, hs - 1);
  return rc;
}

int shadow_script_req_open(shadow_gen_t *g, const shadow_request_t *req,
                           const char *body, size_t body_len) {
  lua_State *L = g->L;
  const char *t = req->target.data ? req->target.data : "/";
  size_t tl = req->target.len;
  const char *q = memchr(t, '?', tl);
  size_t pl = q ? (size_t)(q - t) : tl;
  lua_createtable(L, 0, 5);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, t, pl);
  lua_setfield(L, -2, "path");
  if (q)
    lua_pushlstring(L, q + 1, tl - pl - 1);
  else
    lua_pushliteral(L, "");
  lua_setfield(L, -2, "query");
  (void)push_headers(L, &req->headers); /* short of memory: fewer headers */
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, body ? body : "", body ? body_len : 0);
  lua_setfield(L, -2, "body");
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return ref > 0 ? ref : 0;
}

void shadow_script_req_close(shadow_gen_t *g, int req) {
  if (req > 0) luaL_unref(g->L, LUA_REGISTRYINDEX, req);
}

/* Stack: [...] -> [..., hook, req]. */
static void push_hook_and_req(shadow_gen_t *g, int hook, int req) {
  lua_rawgeti(g->L, LUA_REGISTRYINDEX, g->hooks[hook]);
  lua_rawgeti(g->L, LUA_REGISTRYINDEX, req);
}

int shadow_script_filter(shadow_gen_t *g, int req) {
  if (g->hooks[SHADOW_HOOK_FILTER] == LUA_NOREF) return 1;
  push_hook_and_req(g, SHADOW_HOOK_FILTER, req);
  if (call_hook(g, SHADOW_HOOK_FILTER, 1, 1)) return 0;
  int pass = lua_toboolean(g->L, -1);
  lua_pop(g->L, 1);
  return pass;
}

/* A key hook (sample.key or capture.key): 1 and *key, 0 for nil, -1 when
 * it failed. */
static int call_key(shadow_gen_t *g, int hook, int req, shadow_buf_t *key) {
  if (g->hooks[hook] == LUA_NOREF) return 0;
  push_hook_and_req(g, hook, req);
  if (call_hook(g, hook, 1, 1)) return -1;
  int rc = 0;
  size_t n;
  int t = lua_type(g->L, -1);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    const char *s = lua_tolstring(g->L, -1, &n);
    shadow_buf_reset(key);
    rc = shadow_buf_append(key, s, n) ? -1 : 1;
  } else if (t != LUA_TNIL) {
    lua_pop(g->L, 1);
    report(g, hook, "key must return a string, a number or nil");
    return -1;
  }
  lua_pop(g->L, 1);
  return rc;
}

int shadow_script_key(shadow_gen_t *g, int req, shadow_buf_t *key) {
  return call_key(g, SHADOW_HOOK_KEY, req, key);
}

int shadow_script_capture_key(shadow_gen_t *g, int req, shadow_buf_t *key) {
  return call_key(g, SHADOW_HOOK_CAPTURE_KEY, req, key);
}

int shadow_script_route(shadow_gen_t *g, int req, shadow_buf_t *route) {
  push_hook_and_req(g, SHADOW_HOOK_ROUTE, req);
  if (call_hook(g, SHADOW_HOOK_ROUTE, 1, 1)) return -1;
  size_t n;
  /* gsub returns two values; we asked for one. */
  const char *s = lua_tolstring(g->L, -1, &n);
  if (!s) {
    lua_pop(g->L, 1);
    report(g, SHADOW_HOOK_ROUTE, "route must return a string");
    return -1;
  }
  shadow_buf_reset(route);
  shadow_buf_append(route, s, n);
  lua_pop(g->L, 1);
  return 0;
}

int shadow_script_rewrite(shadow_gen_t *g, int req, int *out) {
  lua_State *L = g->L;
  push_hook_and_req(g, SHADOW_HOOK_REWRITE, req);
  if (call_hook(g, SHADOW_HOOK_REWRITE, 1, 1)) return -1;
  if (lua_isnil(L, -1)) { /* rewrote in place, or nothing to change */
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, req);
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    report(g, SHADOW_HOOK_REWRITE, "rewrite must return a request table");
    return -1;
  }
  *out = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int shadow_script_req_read(shadow_gen_t *g, int req,
                           const shadow_headers_t *orig, shadow_buf_t *method,
                           shadow_buf_t *target, shadow_headers_t *headers,
                           shadow_buf_t *body) {
  lua_State *L = g->L;
  int top = lua_gettop(L);
  int rc = 0;
  size_t n;
  const char *s;
  lua_rawgeti(L, LUA_REGISTRYINDEX, req);
  lua_getfield(L, -1, "method");
  s = lua_tolstring(L, -1, &n);
  rc |= s ? shadow_buf_append(method, s, n) : -1;
  lua_pop(L, 1);
  lua_getfield(L, -1, "path");
  s = lua_tolstring(L, -1, &n);
  rc |= s && n > 0 && s[0] == '/' ? shadow_buf_append(target, s, n) : -1;
  lua_pop(L, 1);
  lua_getfield(L, -1, "query");
  s = lua_tolstring(L, -1, &n);
  if (s && n > 0) {
    rc |= shadow_buf_putc(target, '?');
    rc |= shadow_buf_append(target, s, n);
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "body");
  s = lua_tolstring(L, -1, &n);
  if (s) rc |= shadow_buf_append(body, s, n);
  lua_pop(L, 1);
  rc |= read_request_headers(L, orig, headers);
  lua_settop(L, top);
  return rc ? -1 : 0;
}

/* Stack: [...] -> [..., rec table]. */
static void push_record(lua_State *L, const shadow_record_t *rec) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, rec->status);
  lua_setfield(L, -2, "status");
  (void)push_headers(L, &rec->headers); /* short of memory: fewer headers */
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, rec->body.data ? rec->body.data : "", rec->body.len);
  lua_setfield(L, -2, "body");
}

/* Stack: [..., t] -> [..., t]. */
static int read_record(lua_State *L, shadow_record_t *rec) {
  shadow_record_t tmp;
  shadow_record_init(&tmp);
  tmp.status = 200;
  /* A cut body (record.h) is not read back: the prefix a hook saw is not
   * the body, so the record keeps its own. */
  int keep_body = rec->body_cut;
  lua_getfield(L, -1, "status");
  if (lua_type(L, -1) == LUA_TNUMBER)
    tmp.status = (int)lua_tointeger(L, -1);
  else if (!lua_isnil(L, -1))
    tmp.status = -1;
  lua_pop(L, 1);
  int rc = 0;
  if (!keep_body) {
    size_t n;
    lua_getfield(L, -1, "body");
    const char *s = lua_tolstring(L, -1, &n);
    if (s)
      rc = shadow_buf_append(&tmp.body, s, n);
    else if (!lua_isnil(L, -1))
      rc = -1;
    lua_pop(L, 1);
  }
  if (rc == 0) rc = read_headers(L, &tmp.headers);
  if (rc || tmp.status < 100 || tmp.status > 999) {
    shadow_record_release(&tmp);
    return -1;
  }
  if (keep_body) {
    /* The body, its cut and its digest move over as they are. */
    tmp.body = rec->body;
    tmp.body_cut = rec->body_cut;
    tmp.body_total = rec->body_total;
    tmp.body_digest = rec->body_digest;
    tmp.digester = rec->digester;
    memset(&rec->body, 0, sizeof(rec->body));
    rec->digester = NULL;
  }
  shadow_record_release(rec);
  *rec = tmp;
  return 0;
}

int shadow_script_normalize(shadow_gen_t *g, int req, shadow_record_t *rec,
                            const char *side) {
  if (g->hooks[SHADOW_HOOK_NORMALIZE] == LUA_NOREF) return 0;
  lua_State *L = g->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->hooks[SHADOW_HOOK_NORMALIZE]);
  push_record(L, rec);
  lua_pushvalue(L, -1); /* keep the table in case the hook returns nil */
  lua_insert(L, -3);
  lua_pushstring(L, side);
  if (req > 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, req);
  else
    lua_pushnil(L);
  if (call_hook(g, SHADOW_HOOK_NORMALIZE, 3, 1)) {
    lua_pop(L, 1);
    return -1;
  }
  if (lua_isnil(L, -1))
    lua_pop(L, 1); /* normalized in place */
  else
    lua_remove(L, -2);
  int rc = lua_istable(L, -1) ? read_record(L, rec) : -1;
  lua_pop(L, 1);
  if (rc)
    report(g, SHADOW_HOOK_NORMALIZE,
           "normalize must return { status, headers, body }");
  return rc;
}

void shadow_script_on_divergence(shadow_gen_t *g, const char *json,
                                 size_t len) {
  if (g->hooks[SHADOW_HOOK_ON_DIVERGENCE] == LUA_NOREF) return;
  lua_State *L = g->L;
  if (g->decode_ref == LUA_NOREF) {
    static const char src[] = "return require('cjson').decode";
    if (luaL_loadbuffer(L, src, sizeof(src) - 1, "=shadowd") ||
        lua_pcall(L, 0, 1, 0)) {
      report(g, SHADOW_HOOK_ON_DIVERGENCE, lua_tostring(L, -1));
      lua_pop(L, 1);
      return;
    }
    g->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->hooks[SHADOW_HOOK_ON_DIVERGENCE]);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->decode_ref);
  lua_pushlstring(L, json, len);
  if (call_hook(g, SHADOW_HOOK_ON_DIVERGENCE, 1, 1)) {
    lua_pop(L, 1);
    return;
  }
  call_hook(g, SHADOW_HOOK_ON_DIVERGENCE, 1, 0);
}

int shadow_script_call_backend(shadow_gen_t *g, int fn_ref, int req,
                               shadow_record_t *out, char *err, size_t errlen) {
  lua_State *L = g->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, req);
  if (call_hook(g, SHADOW_HOOK_BACKEND, 1, 1)) {
    snprintf(err, errlen, "the Lua backend raised an error");
    return -1;
  }
  int rc = lua_istable(L, -1) ? read_record(L, out) : -1;
  lua_pop(L, 1);
  if (rc) {
    snprintf(err, errlen,
             "the Lua backend must return "
             "{ status, headers, body }");
    report(g, SHADOW_HOOK_BACKEND, err);
  }
  return rc;
}
