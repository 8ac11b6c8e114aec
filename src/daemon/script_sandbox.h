/* The restricted environment of config scripts. */
#ifndef SHADOW_SCRIPT_SANDBOX_H
#define SHADOW_SCRIPT_SANDBOX_H

#include <lua.h>

/* Stack: [...] -> [..., env] and 0; or [..., message] and -1. dir is the
 * config's directory, where require looks for the config's own modules;
 * the path of each module it loads is appended to the table at index
 * sources, so a reload can tell whether anything changed. */
int shadow_sandbox_push_env(lua_State *L, const char *dir, int sources);

#endif
