/* Fingerprints of a config's top-level fields and the sentence that says
 * which of them a reload changed (see config_changes.h). A value's hash
 * does not depend on a table's traversal order: each entry's hash is
 * combined by addition. A function is known by where it is defined, so
 * moving one shows as a change and editing its body in place may not
 * (the files' hash still makes the reload happen). */
#include "config_changes.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define DEPTH_MAX 16

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed) {
  return XXH64(p, n, seed);
}

static uint64_t hash_value(lua_State *L, int idx, int depth) {
  int t = lua_type(L, idx);
  uint64_t h = (uint64_t)t * 0x9e3779b97f4a7c15ull;
  switch (t) {
  case LUA_TBOOLEAN: return h + (uint64_t)lua_toboolean(L, idx);
  case LUA_TNUMBER: {
    lua_Number x = lua_tonumber(L, idx);
    return hash_bytes(&x, sizeof(x), h);
  }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return hash_bytes(s, n, h);
  }
  case LUA_TFUNCTION: {
    lua_Debug ar;
    lua_pushvalue(L, idx);
    if (lua_getinfo(L, ">S", &ar)) {
      h = hash_bytes(ar.short_src, strlen(ar.short_src), h);
      h += (uint64_t)ar.linedefined * 31 + (uint64_t)ar.lastlinedefined;
    }
    return h;
  }
  case LUA_TTABLE: {
    if (depth >= DEPTH_MAX || !lua_checkstack(L, 4)) return h;
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    uint64_t sum = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      uint64_t k = hash_value(L, -2, depth + 1);
      uint64_t v = hash_value(L, -1, depth + 1);
      sum += XXH64(&v, sizeof(v), k);
      lua_pop(L, 1);
    }
    return h ^ sum;
  }
  default: return h;
  }
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The rules a config's diff tables define: entries of ignore.json,
 * ignore.headers, arrays, tolerance, rename, coerce, mask and time. */
static size_t count_rules(lua_State *L, int idx) {
  static const char *const lists[] = {"arrays", "tolerance", "rename",
                                      "coerce", "mask",      "time"};
  size_t n = 0;
  for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
    lua_getfield(L, idx, lists[i]);
    if (lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        n++;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, idx, "ignore");
  if (lua_istable(L, -1)) {
    static const char *const sub[] = {"json", "headers"};
    for (int i = 0; i < 2; i++) {
      lua_getfield(L, -1, sub[i]);
      if (lua_istable(L, -1)) n += lua_objlen(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return n;
}

int shadow_config_print_take(lua_State *L, int idx, shadow_config_print_t *p) {
  memset(p, 0, sizeof(*p));
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (!lua_istable(L, idx) || !lua_checkstack(L, 8)) return 0;
  size_t cap = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) cap++;
  }
  if (cap == 0) return 0;
  p->keys = calloc(cap, sizeof(*p->keys));
  p->hashes = calloc(cap, sizeof(*p->hashes));
  if (!p->keys || !p->hashes) goto oom;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && p->n < cap) {
      char *k = strdup(lua_tostring(L, -2));
      if (!k) {
        lua_pop(L, 2);
        goto oom;
      }
      p->keys[p->n++] = k;
    }
    lua_pop(L, 1);
  }
  qsort(p->keys, p->n, sizeof(*p->keys), cmp_keys);
  for (size_t i = 0; i < p->n; i++) {
    lua_getfield(L, idx, p->keys[i]);
    p->hashes[i] = hash_value(L, -1, 0);
    lua_pop(L, 1);
  }
  p->rules = count_rules(L, idx);
  return 0;
oom:
  shadow_config_print_free(p);
  return -1;
}

void shadow_config_print_free(shadow_config_print_t *p) {
  for (size_t i = 0; p->keys && i < p->n; i++)
    free(p->keys[i]);
  free(p->keys);
  free(p->hashes);
  memset(p, 0, sizeof(*p));
}

/* Appends "label: a, b" for the names in one of the three groups. which:
 * 0 added, 1 removed, 2 changed. Returns 1 when it wrote anything. */
static int describe_group(const shadow_config_print_t *a,
                          const shadow_config_print_t *b, int which,
                          const char *label, int sep, shadow_buf_t *out) {
  static const char *const backends[] = {"primary", "candidate", "secondary"};
  size_t i = 0, j = 0;
  int wrote = 0;
  while (i < a->n || j < b->n) {
    int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->keys[i], b->keys[j]);
    const char *name = NULL;
    if (c < 0) {
      if (which == 1) name = a->keys[i];
      i++;
    } else if (c > 0) {
      if (which == 0) name = b->keys[j];
      j++;
    } else {
      if (which == 2 && a->hashes[i] != b->hashes[j]) name = a->keys[i];
      i++;
      j++;
    }
    if (!name) continue;
    shadow_buf_puts(out, wrote ? ", " : sep ? "; " : "");
    if (!wrote) shadow_buf_printf(out, "%s: ", label);
    shadow_buf_puts(out, name);
    for (int k = 0; k < 3; k++)
      if (strcmp(name, backends[k]) == 0) shadow_buf_puts(out, " (backend)");
    wrote = 1;
  }
  return wrote;
}

void shadow_config_print_describe(const shadow_config_print_t *before,
                                  const shadow_config_print_t *after,
                                  shadow_buf_t *out) {
  int any = describe_group(before, after, 0, "added", 0, out);
  any |= describe_group(before, after, 1, "removed", any, out);
  any |= describe_group(before, after, 2, "changed", any, out);
  if (before->rules != after->rules) {
    shadow_buf_printf(out, "%srules: %zu -> %zu", any ? "; " : "",
                      before->rules, after->rules);
    any = 1;
  }
  if (!any) shadow_buf_puts(out, "no field changed");
}
