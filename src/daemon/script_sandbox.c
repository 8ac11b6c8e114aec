/* The environment config scripts run in. A Lua chunk, compiled into the
 * binary like wrk's prelude, because building a table of allowed globals
 * reads far better in Lua than as a page of lua_pushcfunction calls. */
#include "script_sandbox.h"

#include <lauxlib.h>

/* Called with the config's directory. Returns make_env(), which gives a
 * fresh sandbox environment: the safe parts of the standard library, a
 * require that sandboxes modules beside the config, and a metatable that
 * turns any read or write of an undeclared global into an error naming
 * it. Scripts that need state of their own keep it in locals. */
static const char sandbox_lua[] =
    "local dir, sources = ...\n"
    "local real_require, loadfile, setfenv, error, type = require, loadfile, "
    "setfenv, error, type\n"
    "local searchpath = package.searchpath\n"
    "local function copy(t, names)\n"
    "  local c = {}\n"
    "  for _, k in ipairs(names) do c[k] = t[k] end\n"
    "  return c\n"
    "end\n"
    "local trusted = { shadow = true, cjson = true, ['cjson.safe'] = true }\n"
    "local function make_env()\n"
    "  local env = {\n"
    "    assert = assert, error = error, ipairs = ipairs, next = next,\n"
    "    pairs = pairs, pcall = pcall, xpcall = xpcall, select = select,\n"
    "    tonumber = tonumber, tostring = tostring, type = type,\n"
    "    unpack = unpack, rawequal = rawequal, rawget = rawget,\n"
    "    rawset = rawset, setmetatable = setmetatable,\n"
    "    getmetatable = getmetatable, _VERSION = _VERSION,\n"
    "    string = copy(string, { 'byte', 'char', 'find', 'format', 'gmatch',\n"
    "      'gsub', 'len', 'lower', 'match', 'rep', 'reverse', 'sub', 'upper' "
    "}),\n"
    "    table = copy(table, { 'concat', 'insert', 'remove', 'sort', 'maxn' "
    "}),\n"
    "    math = copy(math, { 'abs', 'ceil', 'floor', 'fmod', 'huge', 'max',\n"
    "      'min', 'modf', 'pi', 'random', 'sqrt', 'exp', 'log', 'pow' }),\n"
    "    os = copy(os, { 'time', 'clock', 'date', 'getenv' }),\n"
    "    print = function(...)\n"
    "      local parts = {}\n"
    "      for i = 1, select('#', ...) do parts[i] = tostring(select(i, ...)) "
    "end\n"
    "      io.stderr:write('script: ', table.concat(parts, '\\t'), '\\n')\n"
    "    end,\n"
    "  }\n"
    "  env._G = env\n"
    "  local loaded = {}\n"
    "  env.require = function(name)\n"
    "    if type(name) ~= 'string' then error('require needs a module name', "
    "2) end\n"
    "    if trusted[name] or name:match('^shadow%.') then return "
    "real_require(name) end\n"
    "    if loaded[name] ~= nil then return loaded[name] end\n"
    "    local path = dir and searchpath(name, dir .. '/?.lua;' .. dir .. "
    "'/?/init.lua')\n"
    "    if not path then\n"
    "      error(\"module '\" .. name .. \"' not found beside the config \"\n"
    "            .. \"(only shadow, cjson and modules in \" .. tostring(dir)\n"
    "            .. ' may be required)', 2)\n"
    "    end\n"
    "    local chunk, err = loadfile(path)\n"
    "    if not chunk then error(err, 2) end\n"
    "    setfenv(chunk, env)\n"
    "    sources[#sources + 1] = path\n"
    "    local m = chunk(name)\n"
    "    if m == nil then m = true end\n"
    "    loaded[name] = m\n"
    "    return m\n"
    "  end\n"
    "  return setmetatable(env, {\n"
    "    __index = function(_, k)\n"
    "      error(\"undeclared global '\" .. tostring(k) .. \"'\", 2)\n"
    "    end,\n"
    "    __newindex = function(_, k)\n"
    "      error(\"assignment to undeclared global '\" .. tostring(k)\n"
    "            .. \"' (use local)\", 2)\n"
    "    end,\n"
    "  })\n"
    "end\n"
    "return make_env\n";

int shadow_sandbox_push_env(lua_State *L, const char *dir, int sources) {
  if (luaL_loadbuffer(L, sandbox_lua, sizeof(sandbox_lua) - 1,
                      "=shadowd-sandbox") != 0)
    return -1;
  lua_pushstring(L, dir);
  lua_pushvalue(L, sources);
  if (lua_pcall(L, 2, 1, 0) != 0) return -1;
  if (lua_pcall(L, 0, 1, 0) != 0) return -1;
  return 0;
}
