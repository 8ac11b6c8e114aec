/* The Lua sources of lua/shadow/, compiled into shadowd by
 * cmake/EmbedLua.cmake and registered in package.preload by script.c. */
#ifndef SHADOW_EMBEDDED_LUA_H
#define SHADOW_EMBEDDED_LUA_H

#include <stddef.h>

typedef struct shadow_embedded_lua_s {
  const char *module; /* "shadow", "shadow.http", ... */
  const char *chunkname;
  const char *source;
  size_t len;
} shadow_embedded_lua_t;

/* Ends with an entry whose module is NULL. */
extern const shadow_embedded_lua_t shadow_embedded_lua[];

#endif
