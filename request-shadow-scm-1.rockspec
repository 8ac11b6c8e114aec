-- LuaRocks package of the shadow Lua module and libshadow, for gateways
-- (nginx with lua-nginx-module, OpenResty). From a checkout:
--   luarocks --lua-version 5.1 make request-shadow-scm-1.rockspec
-- builds libshadow (the C engine, nothing else) with CMake and installs
-- it beside the Lua modules, where lua_package_cpath finds it.
-- Lua modules it needs at run time, from Debian: lua-cjson (and, inside
-- nginx, the lua-resty-core that libnginx-mod-http-lua depends on).
rockspec_format = "3.0"
package = "request-shadow"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Shadow traffic to a candidate backend and compare the answers",
  detailed = [[
    The request-shadow engine (records, semantic JSON diff, sticky
    sampling, ring log, promotion verdict) as libshadow, and the `shadow`
    Lua module that drives it through LuaJIT's FFI: shadow.diff,
    shadow.sampled, shadow.ring, shadow.shadower for in-process shadowing,
    and shadow.gateway, which shadows and compares live traffic inside
    nginx without delaying the client.
  ]],
  license = "MIT",
}
dependencies = {
  "lua == 5.1",
}
external_dependencies = {
  XXHASH = { header = "xxhash.h" },
  ZLIB = { header = "zlib.h" },
}
build = {
  type = "command",
  -- Only the library target: the daemon and the tests are not part of
  -- the rock. Warnings are not errors for someone else's compiler.
  build_command = "cmake -S . -B build.luarocks -DCMAKE_BUILD_TYPE=Release "
    .. "-DSHADOW_WERROR=OFF && cmake --build build.luarocks --target shadow "
    .. "-j 2",
  install = {
    lua = {
      ["shadow"] = "lua/shadow/init.lua",
      ["shadow.clock"] = "lua/shadow/clock.lua",
      ["shadow.diff"] = "lua/shadow/diff.lua",
      ["shadow.gateway"] = "lua/shadow/gateway/init.lua",
      ["shadow.gateway.admin"] = "lua/shadow/gateway/admin.lua",
      ["shadow.gateway.breaker"] = "lua/shadow/gateway/breaker.lua",
      ["shadow.gateway.conf"] = "lua/shadow/gateway/conf.lua",
      ["shadow.gateway.fleet"] = "lua/shadow/gateway/fleet.lua",
      ["shadow.gateway.http"] = "lua/shadow/gateway/http.lua",
      ["shadow.gateway.phase"] = "lua/shadow/gateway/phase.lua",
      ["shadow.gateway.redis"] = "lua/shadow/gateway/redis.lua",
      ["shadow.gateway.store"] = "lua/shadow/gateway/store.lua",
      ["shadow.http"] = "lua/shadow/http.lua",
      ["shadow.redis"] = "lua/shadow/redis.lua",
      ["shadow.loader"] = "lua/shadow/loader.lua",
      ["shadow.opts"] = "lua/shadow/opts.lua",
      ["shadow.record"] = "lua/shadow/record.lua",
      ["shadow.redact"] = "lua/shadow/redact.lua",
      ["shadow.ring"] = "lua/shadow/ring.lua",
      ["shadow.rules"] = "lua/shadow/rules.lua",
      ["shadow.sample"] = "lua/shadow/sample.lua",
      ["shadow.shadower"] = "lua/shadow/shadower.lua",
      ["shadow.stamp"] = "lua/shadow/stamp.lua",
      ["shadow.verdict"] = "lua/shadow/verdict.lua",
    },
    lib = {
      ["libshadow"] = "build.luarocks/libshadow.so",
    },
  },
}
