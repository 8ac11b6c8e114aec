/* `shadowd check-gateway [--nginx-conf FILE] CONF_LUA`: a gateway conf
 * checked before nginx loads it. CONF_LUA returns the table given to
 * shadow.gateway's new(conf) (nginx.conf's init_by_lua does
 * `require("shadow.gateway").new(dofile("CONF_LUA"))`); it is validated
 * by shadow.gateway.conf's validate, the very code new() runs, so the
 * messages are new()'s. The module needs nothing of nginx but the
 * lua_shared_dicts, which only nginx.conf declares: with --nginx-conf the
 * dicts it declares, without it any name is taken for declared. */
#include "check_gateway.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "script.h"

/* Runs with (conf path, nginx.conf path or nil); returns the summary, or
 * nil and the message. */
static const char driver[] =
    "local path, nginx_conf = ...\n"
    "local chunk, err = loadfile(path)\n"
    "if not chunk then return nil, err end\n"
    "local ok, conf = pcall(chunk)\n"
    "if not ok then return nil, path .. ': ' .. tostring(conf) end\n"
    "local dicts\n"
    "if nginx_conf then\n"
    "  local f, ferr = io.open(nginx_conf)\n"
    "  if not f then return nil, ferr end\n"
    "  local text = f:read('*a')\n"
    "  f:close()\n"
    "  dicts = {}\n"
    "  for line in text:gmatch('[^\\n]+') do\n"
    "    local name = line:gsub('#.*', '')\n"
    "      :match('^%s*lua_shared_dict%s+([^%s;]+)')\n"
    "    if name then dicts[name] = true end\n"
    "  end\n"
    "else\n"
    "  dicts = setmetatable({}, { __index = function() return true end })\n"
    "end\n"
    "local vok, c, opts = pcall(require('shadow.gateway.conf').validate,\n"
    "                           conf, dicts)\n"
    "if not vok then return nil, tostring(c) end\n"
    "local function hooks()\n"
    "  local t = {}\n"
    "  for _, h in ipairs({ 'key', 'filter', 'route', 'rewrite',\n"
    "                       'normalize', 'on_divergence' }) do\n"
    "    if c[h] then t[#t + 1] = h end\n"
    "  end\n"
    "  return #t > 0 and table.concat(t, ' ') or 'none'\n"
    "end\n"
    "local methods = {}\n"
    "for m in pairs(c.methods) do methods[#methods + 1] = m end\n"
    "table.sort(methods)\n"
    "local rules = 0\n"
    "if opts ~= nil then\n"
    "  local ffi = require 'ffi'\n"
    "  local n, len = ffi.new('size_t[1]'), ffi.new('size_t[1]')\n"
    "  require('shadow.loader').get().shadow_ffi_opts_rules(opts, len, n)\n"
    "  rules = tonumber(n[0])\n"
    "end\n"
    "local ig = conf.ignore and conf.ignore.headers or {}\n"
    "local lines = {\n"
    "  ('gateway conf %s is valid'):format(path),\n"
    "  ('  shared_dict %s%s'):format(c.dict_name, nginx_conf and\n"
    "    (', declared in ' .. nginx_conf) or\n"
    "    (' (nginx.conf must declare lua_shared_dict ' .. c.dict_name ..\n"
    "     ' 10m;)')),\n"
    "  ('  candidate   %s (connect %g ms, head %g ms, between reads %g ms)')\n"
    "    :format(c.candidate.url, c.candidate.connect_timeout,\n"
    "            c.candidate.head_timeout, c.candidate.read_timeout),\n"
    "  ('  sample      rate %g of %s'):format(c.rate,\n"
    "    table.concat(methods, ' ')),\n"
    "  ('  hooks       %s'):format(hooks()),\n"
    "  ('  rules       %d JSON rule%s, %d ignored header%s'):format(rules,\n"
    "    rules == 1 and '' or 's', #ig, #ig == 1 and '' or 's'),\n"
    "  ('  breaker     opens after %d failures for %g ms')\n"
    "    :format(c.breaker_failures, c.breaker_cooldown_ms),\n"
    "  ('  log         %d records in the shared dict'):format(c.capacity),\n"
    "}\n"
    "local st = c.store\n"
    "if st then\n"
    "  -- Where and how, never the password.\n"
    "  lines[#lines + 1] = ('  store       redis%s://%s:%d/%d keys %s:*, '\n"
    "    .. 'flush every %d ms, expire after %d s%s'):format(\n"
    "    st.tls and 's' or '', st.host, st.port, st.db, st.base,\n"
    "    st.flush_ms, st.ttl_s, st.user and (', user ' .. st.user) or '')\n"
    "end\n"
    "return table.concat(lines, '\\n') .. '\\n'\n";

static void usage(FILE *f) {
  fprintf(f, "usage: shadowd check-gateway [--nginx-conf NGINX_CONF] "
             "CONF_LUA\n"
             "  CONF_LUA returns the table given to "
             "require(\"shadow.gateway\").new(conf)\n");
}

int shadow_check_gateway_main(int argc, char **argv) {
  const char *path = NULL, *nginx_conf = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--nginx-conf") == 0 && i + 1 < argc) {
      nginx_conf = argv[++i];
    } else if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] == '-' || path) {
      usage(stderr);
      return 2;
    } else {
      path = argv[i];
    }
  }
  if (!path) {
    usage(stderr);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "shadowd check-gateway: out of memory\n");
    return 2;
  }
  /* Not a sandbox: the conf is the operator's own code, run as nginx's
   * init_by_lua would run it. shadow's modules come compiled in, and the
   * engine through ffi.C, as in the daemon. */
  luaL_openlibs(L);
  int code = 2;
  if (shadow_script_open_embedded(L) ||
      luaL_loadbuffer(L, driver, sizeof(driver) - 1, "=check-gateway")) {
    fprintf(stderr, "shadowd check-gateway: %s\n", lua_tostring(L, -1));
    goto done;
  }
  lua_pushstring(L, path);
  if (nginx_conf)
    lua_pushstring(L, nginx_conf);
  else
    lua_pushnil(L);
  if (lua_pcall(L, 2, 2, 0)) {
    fprintf(stderr, "shadowd check-gateway: %s\n", lua_tostring(L, -1));
    goto done;
  }
  if (lua_isnil(L, -2)) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s\n", msg ? msg : "shadowd check-gateway: failed");
    code = 1;
  } else {
    fputs(lua_tostring(L, -2), stdout);
    code = 0;
  }
done:
  lua_close(L);
  return code;
}
