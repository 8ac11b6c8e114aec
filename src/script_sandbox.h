/* The restricted environment of config scripts. */
#ifndef SHADOW_SCRIPT_SANDBOX_H
#define SHADOW_SCRIPT_SANDBOX_H

#include <lua.h>

/* Stack: [...] -> [..., env] and 0; or [..., message] and -1. dir is the
 * config's directory, where require looks for the config's own modules. */
int shadow_sandbox_push_env(lua_State *L, const char *dir);

#endif
