-- `shadowd check-gateway conf.lua`: a gateway conf checked before nginx
-- loads it. A good conf exits 0 with a summary; each typo'd one exits 1
-- with exactly the message Debian's nginx stops with when its
-- init_by_lua runs require("shadow.gateway").new(dofile(conf)) on the
-- same file: the message is compared with nginx's own, not with a copy.
local shadowd = require "support.shadowd"
local process = require "support.process"
local env = require "support.env"

local GOOD = [[
return {
  shared_dict = "shadow",
  candidate = require("shadow").http("http://127.0.0.1:8082",
                                     { timeout_ms = 1000 }),
  sample = { rate = 1.0, key = function(req) return req.headers["x-user-id"] end },
  mirror_methods = { "GET", "HEAD" },
  ignore = { headers = { "x-request-id" }, json = { "/meta/id" } },
  breaker = { failures = 5, cooldown_ms = 10000 },
  slo = { max_divergence_rate = 0.001, min_samples = 1000 },
  log = { capacity = 1000 },
}
]]

-- Each typo: the text changed in GOOD, and what new() says of it.
local TYPOS = {
  { name = "an unknown field", from = "  log = {", to = "  lgo = 1, log = {",
    message = "shadow.gateway: unknown field lgo" },
  { name = "a bad rate", from = "rate = 1.0", to = "rate = 2",
    message = "shadow.gateway: sample.rate must be a number from 0 to 1" },
  { name = "log.file", from = "capacity = 1000 }",
    to = 'capacity = 1000, file = "/tmp/gw.log" }',
    message = "shadow.gateway: log.file is not written by the gateway; use "
      .. "on_divergence, or read /_shadow/divergences" },
  { name = "a bad slo", from = "max_divergence_rate = 0.001",
    to = "max_divergence_rate = 2" },
  { name = "a bad diff rule", from = 'json = { "/meta/id" }',
    to = 'json = { "meta/id" }' },
  { name = "a store that is not Redis", from = "  log = {",
    to = '  store = "redis://127.0.0.1", log = {',
    message = "shadow.gateway: store must be shadow.redis(url, opts)" },
  { name = "a bad store URL", from = "  log = {",
    to = '  store = require("shadow").redis("http://127.0.0.1"), log = {',
    message = 'shadow.gateway: store: "http://127.0.0.1": expected '
      .. "redis://[user:password@]host[:port][/db] or rediss://..." },
  { name = "an unknown store option", from = "  log = {",
    to = '  store = require("shadow").redis("redis://127.0.0.1", '
      .. "{ flush = 5 }), log = {",
    message = "shadow.gateway: unknown field store.flush" },
  { name = "a sentinel without its master", from = "  log = {",
    to = '  store = require("shadow").redis("redis://127.0.0.1", '
      .. '{ sentinel = { addrs = { "127.0.0.1:26379" } } }), log = {',
    message = "shadow.gateway: store.sentinel needs master (the name "
      .. "sentinels know the primary by)" },
  { name = "a bad flush_ms", from = "  log = {",
    to = '  store = require("shadow").redis("redis://127.0.0.1", '
      .. "{ flush_ms = 0 }), log = {",
    message = "shadow.gateway: store.flush_ms must be a whole number from "
      .. "10 to 3600000" },
}

local function typo(t)
  local s, e = GOOD:find(t.from, 1, true)
  assert(s, t.from)
  return GOOD:sub(1, s - 1) .. t.to .. GOOD:sub(e + 1)
end

local function check(...)
  return process.run({ shadowd.binary(), "check-gateway", ... }, nil, 30)
end

-- nginx as a gateway with only the init_by_lua of examples/nginx, loading
-- conf_path; it exits at once when new() refuses the conf. Returns the
-- "shadow.gateway: ..." message it stopped with.
local function nginx_message(dir, conf_path)
  local root = env.root
  local build = env.build_dir:sub(1, 1) == "/" and env.build_dir
    or (root .. "/" .. env.build_dir)
  process.write_file(dir .. "/nginx.conf", table.concat({
    "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
    "pid " .. dir .. "/nginx.pid;",
    "events {}",
    "http {",
    ('  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";'):format(root,
                                                                      root),
    ('  lua_package_cpath "%s/?.so;;";'):format(build),
    "  lua_shared_dict shadow 1m;",
    "  init_by_lua_block {",
    ('    shadow_gw = require("shadow.gateway").new(dofile(%q))')
      :format(conf_path),
    "  }",
    "}",
  }, "\n") .. "\n")
  local preload = os.getenv("SHADOW_SPEC_PRELOAD") and {
    LD_PRELOAD = os.getenv("LD_PRELOAD") or false,
    ASAN_OPTIONS = "detect_leaks=0:abort_on_error=0" } or nil
  local code, out, err = process.run({ "/usr/sbin/nginx", "-p", dir .. "/",
    "-c", dir .. "/nginx.conf", "-e", dir .. "/error.log",
    "-g", "daemon off; master_process off;" }, { env = preload }, 30)
  assert.are_not.equal(0, code, "nginx accepted the conf")
  local text = out .. err .. (process.read_file(dir .. "/error.log") or "")
  return text:match("init_by_lua error: [^\n]-:%d+: (shadow%.gateway: [^\n]*)"),
         text
end

describe("shadowd check-gateway", function()
  local dir
  before_each(function() dir = process.tmpdir("shadow-check-gw") end)
  after_each(function() process.rmdir(dir) end)

  it("passes a good conf with a summary, exit 0", function()
    process.write_file(dir .. "/gw.lua", GOOD)
    local code, out, err = check(dir .. "/gw.lua")
    assert.equal(0, code, err)
    assert.matches("gateway conf " .. dir .. "/gw.lua is valid", out, 1, true)
    assert.matches("candidate   http://127.0.0.1:8082", out, 1, true)
    assert.matches("rules       1 JSON rule, 1 ignored header", out, 1, true)
    assert.matches("sample      rate 1 of GET HEAD", out, 1, true)
  end)

  for _, t in ipairs(TYPOS) do
    it("refuses " .. t.name .. " with nginx's message, exit 1", function()
      local path = dir .. "/gw.lua"
      process.write_file(path, typo(t))
      local code, out, err = check(path)
      assert.equal(1, code, out .. err)
      local want, log = nginx_message(dir, path)
      assert.truthy(want, "no shadow.gateway message from nginx:\n" .. log)
      if t.message then assert.equal(t.message, want) end
      assert.equal(want .. "\n", err)
    end)
  end

  it("summarizes a store without its password", function()
    local path = dir .. "/gw.lua"
    process.write_file(path, typo{ from = "  log = {",
      to = '  store = require("shadow").redis("rediss://app:s3cret@'
        .. 'redis.example:6380/2", { prefix = "shadow:checkout", '
        .. "flush_ms = 500 }), log = {" })
    local code, out, err = check(path)
    assert.equal(0, code, err)
    assert.matches("store       rediss://redis.example:6380/2 keys "
      .. "{shadow:checkout}:*, flush every 500 ms, expire after 86400 s, "
      .. "user app", out, 1, true)
    assert.not_matches("s3cret", out, 1, true)
  end)

  it("checks shared_dict against nginx.conf's lua_shared_dict lines",
     function()
    process.write_file(dir .. "/gw.lua", GOOD)
    process.write_file(dir .. "/nginx.conf",
      "http {\n  # lua_shared_dict shadow 1m;\n  lua_shared_dict other 1m;\n}\n")
    local code, _, err = check("--nginx-conf", dir .. "/nginx.conf",
                               dir .. "/gw.lua")
    assert.equal(1, code)
    assert.equal('shadow.gateway: no lua_shared_dict named "shadow" in the '
                 .. "http block\n", err)
    process.write_file(dir .. "/nginx.conf",
      "http {\n  lua_shared_dict shadow 16m;\n}\n")
    code, _, err = check("--nginx-conf", dir .. "/nginx.conf",
                         dir .. "/gw.lua")
    assert.equal(0, code, err)
  end)

  it("names a file it cannot load, and a usage error", function()
    local code, _, err = check(dir .. "/missing.lua")
    assert.equal(1, code)
    assert.matches("missing.lua", err, 1, true)
    process.write_file(dir .. "/syntax.lua", "return {\n  shared_dict = ,\n}\n")
    code, _, err = check(dir .. "/syntax.lua")
    assert.equal(1, code)
    assert.matches("syntax.lua:2:", err, 1, true)
    code = check()
    assert.equal(2, code)
  end)
end)
