/* The restricted environment of config scripts. */
#ifndef SHADOW_SCRIPT_SANDBOX_H
#define SHADOW_SCRIPT_SANDBOX_H

#include <lua.h>

/* Stack: [...] -> [..., env] and 0; or [..., message] and -1. dir is the
 * config's directory, where require looks for the config's own modules;
 * the path of each module it loads is appended to the table at index
 * sources, so a reload can tell whether anything changed. memory_cap, a C
 * function with cap_ud as its upvalue, returns the state's memory cap in
 * bytes (string.rep refuses a result over it by name); spent returns
 * whether the running call's time is up (the sandbox's pcall and xpcall
 * re-raise then). Called once per state: it also closes the state's
 * string library (script_sandbox.lua). */
int shadow_sandbox_push_env(lua_State *L, const char *dir, int sources,
                            lua_CFunction memory_cap, void *cap_ud,
                            lua_CFunction spent);

#endif
