/* Reads the table a config script returned into a shadow_config_t,
 * validating every field. Private to the script host. */
#ifndef SHADOW_SCRIPT_CONFIG_H
#define SHADOW_SCRIPT_CONFIG_H

#include <lua.h>

#include "config.h"
#include "script.h"

/* Stack: [..., config table at idx] -> unchanged. Fills cfg and the
 * registry references of the hooks (LUA_NOREF where absent). Returns 0, or
 * -1 with *err set to a message naming the field (free() it). */
int shadow_script_read_config(lua_State *L, int idx, shadow_config_t *cfg,
                              int hooks[SHADOW_HOOK_COUNT], char **err);

#endif
