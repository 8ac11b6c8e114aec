/* The environment config scripts run in. The sandbox itself is Lua
 * (script_sandbox.lua, compiled into the binary like wrk's prelude),
 * because a table of allowed globals and the pattern bounds read far better
 * in Lua than as a page of lua_pushcfunction calls; this file runs it. */
#include "script_sandbox.h"

#include <lauxlib.h>
#include <string.h>

/* cmake/EmbedText.cmake's array of src/script/script_sandbox.lua. */
extern const char shadow_sandbox_lua[];

int shadow_sandbox_push_env(lua_State *L, const char *dir, int sources,
                            lua_CFunction memory_cap, void *cap_ud,
                            lua_CFunction spent) {
  sources = sources < 0 ? lua_gettop(L) + sources + 1 : sources;
  if (luaL_loadbufferx(L, shadow_sandbox_lua, strlen(shadow_sandbox_lua),
                       "=shadowd-sandbox", "t") != 0)
    return -1;
  lua_pushstring(L, dir);
  lua_pushvalue(L, sources);
  lua_pushlightuserdata(L, cap_ud);
  lua_pushcclosure(L, memory_cap, 1);
  lua_pushcfunction(L, spent);
  if (lua_pcall(L, 4, 1, 0) != 0) return -1;
  if (lua_pcall(L, 0, 1, 0) != 0) return -1;
  return 0;
}
