-- Hooks cannot escape their budget, and the sandbox is closed (issue 23,
-- rows 2 and 3). Each case runs the real shadowd in front of Debian's
-- nginx: a hook that catches its own timeout in a pcall loop, a memory
-- hog, a pattern that backtracks for minutes, a string.rep of gigabytes,
-- SIGTERM while a hook holds the loop; then every way out of the sandbox
-- that was open, each refused by --check with a clear error.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local process = require "support.process"
local http = require "support.http"
local port = require "support.port"
local cleanup = require "support.cleanup"
local socket = require "socket"

local BACKENDS = {
  primary = [[
    location / { content_by_lua_block {
      ngx.header["content-type"] = "text/plain"
      ngx.print("primary ok")
    } }
  ]],
  candidate = [[
    location / { return 200 "candidate ok"; }
  ]],
}

-- A config whose sample.key hook is `hook` (the body of a function of
-- req), with the given limits and drain timeout.
local function hook_config(ng, hook, limits, drain_ms)
  return function(addr)
    return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q), candidate = shadow.http(%q),
  sample = { rate = 1.0, key = function(req) %s end },
  limits = { %s },
  drain_timeout_ms = %d,
}
]]):format(addr.listen, addr.admin, ng:url("primary"), ng:url("candidate"),
           hook, limits or "", drain_ms or 2000)
  end
end

-- Peak and current resident memory of a process, in bytes.
local function memory(pid)
  local status = process.read_file("/proc/" .. pid .. "/status") or ""
  return (tonumber(status:match("VmHWM:%s*(%d+)")) or 0) * 1024,
         (tonumber(status:match("VmRSS:%s*(%d+)")) or 0) * 1024
end

local function script_errors(d, hook)
  local m = d:admin("/metrics").body
  return tonumber(m:match('shadow_script_errors_total{hook="' .. hook
                          .. '"} (%d+)')) or 0
end

-- One GET, timed; the response and the seconds it took.
local function timed_get(d, path)
  local t0 = socket.gettime()
  local res, err = http.request(d.port, { method = "GET", path = path,
                                          timeout = 30 })
  return res, err, socket.gettime() - t0
end

-- Serves a request with the hook failing, then checks the admin answers
-- and the log names why.
local function served_despite(d, why, bound)
  local res, err, took = timed_get(d, "/x")
  assert(res, err)
  assert.are.equal(200, res.status)
  assert.are.equal("primary ok", res.body)
  assert.is_true(took < bound, ("took %.2f s"):format(took))
  assert.are.equal(200, d:admin("/healthz").status)
  assert(port.wait_until(function() return script_errors(d, "key") >= 1 end,
                         10))
  assert(port.wait_until(function()
    return d:log():find(why, 1, true)
  end, 10), d:log())
  print(("served in %.0f ms with the hook failing: %s"):format(took * 1000,
                                                               why))
  return took
end

describe("a hook's budget", function()
  local ng
  setup(function() ng = nginx.start{ servers = BACKENDS } end)
  teardown(function() cleanup.stop_all(ng) end)

  it("holds against a pcall loop that catches its own timeout", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d = stop.add(shadowd.start{ text = hook_config(ng, [[
      while true do pcall(function() for i = 1, 1e7 do end end) end ]],
      "hook_timeout_ms = 100") })
    served_despite(d, "key hook failed: hook ran longer than 100 ms", 5)
    -- xpcall with a handler that loops too.
    local d2 = stop.add(shadowd.start{ text = hook_config(ng, [[
      while true do
        xpcall(function() for i = 1, 1e7 do end end,
               function() while true do end end)
      end ]], "hook_timeout_ms = 100") })
    served_despite(d2, "key hook failed: hook ran longer than 100 ms", 5)
  end)

  for _, args in ipairs({ {}, { "--workers", "2" } }) do
    local loops = #args > 0 and " (--workers 2)" or " (one loop)"
    it("stops SIGTERM's wait at drain_timeout_ms, whatever a hook does"
       .. loops, function()
      local stop = cleanup.new()
      finally(stop.run)
      -- The hook's own limit is a minute: only the stop can end it.
      local d = stop.add(shadowd.start{ args = args, text = hook_config(ng, [[
        print("hook running")
        while true do pcall(function() for i = 1, 1e7 do end end) end ]],
        "hook_timeout_ms = 60000", 500) })
      local c = assert(http.connect(d.port))
      stop.add(function() c:close() end)
      assert(c:send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert(port.wait_until(function()
        return d:log():find("hook running", 1, true)
      end, 10), d:log())
      local t0 = socket.gettime()
      d.proc:kill(process.SIGTERM)
      local how = d.proc:wait(5)
      local took = socket.gettime() - t0
      assert.are.equal("exited", how, "still running after 5 s")
      print(("exited %.0f ms after SIGTERM (drain_timeout_ms 500)%s")
            :format(took * 1000, loops))
      -- drain_timeout_ms is 500; the margin is for a loaded machine.
      assert.is_true(took < 2.5, ("exited %.2f s after SIGTERM"):format(took))
      assert.truthy(d:log():find("shadowd is stopping", 1, true), d:log())
    end)
  end

  it("caps a state's memory at limits.hook_memory_bytes", function()
    local stop = cleanup.new()
    finally(stop.run)
    -- 512 MiB kept in a table, 1 MiB at a time: far past the cap.
    local d = stop.add(shadowd.start{ text = hook_config(ng, [[
      local t, mib = {}, ("x"):rep(1024 * 1024 - 16)
      for i = 1, 512 do t[i] = mib .. i end
      return "kept " .. #t ]],
      "hook_timeout_ms = 20000, hook_memory_bytes = 32 * 1024 * 1024") })
    local before = memory(d.proc.pid)
    served_despite(d, "key hook failed: hook ran out of memory", 15)
    local peak = memory(d.proc.pid)
    print(("peak RSS grew by %.1f MiB (cap 32 MiB)"):format((peak - before)
                                                           / 2^20))
    -- The cap plus what the allocator keeps around; 512 MiB without it.
    assert.is_true(peak - before < 128 * 1024 * 1024,
                   ("peak RSS grew by %.0f MiB"):format((peak - before) / 2^20))
  end)

  it("refuses a string.rep over the cap before allocating", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d = stop.add(shadowd.start{ text = hook_config(ng, [[
      return #(("x"):rep(1300 * 1024 * 1024)) ]]) })
    local before = memory(d.proc.pid)
    served_despite(d, "string.rep: a result of 1363148800 bytes is over "
                   .. "limits.hook_memory_bytes (67108864)", 5)
    local peak = memory(d.proc.pid)
    assert.is_true(peak - before < 64 * 1024 * 1024,
                   ("peak RSS grew by %.0f MiB"):format((peak - before) / 2^20))
  end)

  it("refuses a pattern that would backtrack for minutes in one C call",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local d = stop.add(shadowd.start{ text = hook_config(ng, [[
      local s = ("a"):rep(300)
      return tostring(s:find(("a-"):rep(6) .. "b")) ]],
      "hook_timeout_ms = 100") })
    served_despite(d, 'string.find: pattern "a-a-a-a-a-a-b" may take', 5)
  end)

  it("lets linear patterns run on large subjects", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d = stop.add(shadowd.start{ text = hook_config(ng, [[
      local body = ('{"id":"abc","ts":12345,"x":"y"},'):rep(30000)
      local n = select(2, body:gsub('"ts":%d+,', '"ts":0,'))
      local id = body:match('"id":"(.-)"')
      n = n + select(2, body:gsub('"id":%s*"[^"]*"', '"id":""'))
      n = n + select(2, body:gsub(':%s*(%d+)%s*,', ':0,'))
      local words = 0
      for _ in body:gmatch("[^,]+") do words = words + 1 end
      return id .. n .. words ]], "hook_timeout_ms = 2000") })
    local res = assert(timed_get(d, "/x"))
    assert.are.equal(200, res.status)
    assert(port.wait_until(function()
      return (d:stats().totals.sampled or 0) >= 1
    end, 10))
    assert.are.equal(0, script_errors(d, "key"))
  end)
end)

describe("the sandbox", function()
  local dir
  before_each(function() dir = process.tmpdir("shadow-edge-sandbox") end)
  after_each(function() process.rmdir(dir) end)

  -- --check on a config whose first lines are snippet, run in cwd.
  local function check(snippet, cwd)
    local conf = dir .. "/shadow.lua"
    process.write_file(conf, snippet
      .. "\nreturn { primary = 'http://127.0.0.1:1' }\n")
    local code, out, err = process.run({ shadowd.binary(), "--check",
                                         "--config", conf },
                                       { cwd = cwd or dir })
    return code, out .. err
  end

  local function refused(snippet, message, cwd)
    local code, out = check(snippet, cwd)
    assert.are_not.equal(0, code, out)
    assert.truthy(out:find(message, 1, true), out)
    return out
  end

  it("has no shadow.clib, ffi, jit or shadow's internal modules", function()
    local why = "is not available to configs (only shadow, shadow.rules, "
      .. "cjson and modules beside the config may be required)"
    refused('local C = require "shadow.clib"', "module 'shadow.clib' " .. why)
    refused('local ffi = require "ffi"', "module 'ffi' " .. why)
    refused('local jit = require "jit.util"', "module 'jit.util' " .. why)
    refused('local l = require "shadow.loader"',
            "module 'shadow.loader' " .. why)
  end)

  it("hands out no C handle through shadow's objects", function()
    local code, out = check([[
local shadow = require "shadow"
local r = shadow.ring(4)
r:push({ route = "GET /" })
assert(r:len() == 1, "the ring works")
assert(r._C == nil and r._p == nil and r._len == nil, "no C in a ring")
assert(getmetatable(r) == false, "a ring's metatable is hidden")
local sh = shadow.shadower{ primary = function() return 1 end,
                            candidate = function() return 2 end }
assert(sh:call() == 1)
assert(sh.ring == nil and sh.stats.calls == 1, "no ring in a shadower")
print("no handles")
]])
    assert.are.equal(0, code, out)
    assert.truthy(out:find("no handles", 1, true), out)
  end)

  it("has no string.dump, through the library or a string", function()
    refused("local d = string.dump(function() end)",
            "attempt to call field 'dump' (a nil value)")
    refused('local d = ("").dump(function() end)',
            "attempt to call field 'dump' (a nil value)")
    refused('local d = getmetatable("").__index.dump',
            "attempt to index a boolean value")
  end)

  it("loads no binary chunk, as the config or as a module", function()
    local bytecode = string.dump(function() return {} end)
    process.write_file(dir .. "/shadow.lua", bytecode)
    local code, out, err = process.run({ shadowd.binary(), "--check",
                                         "--config", dir .. "/shadow.lua" })
    assert.are_not.equal(0, code)
    assert.truthy((out .. err):find("a precompiled (binary) chunk; configs "
                                    .. "are loaded as Lua text only", 1,
                                    true), out .. err)
    process.write_file(dir .. "/compiled.lua", bytecode)
    refused('local m = require "compiled"',
            "compiled.lua: attempt to load chunk with wrong mode (modules "
            .. "are loaded as Lua text only)")
    refused("local f = load('return 1')", "undeclared global 'load'")
    refused("local f = loadstring('return 1')",
            "undeclared global 'loadstring'")
  end)

  it("loads nothing from the working directory", function()
    local cwd = process.tmpdir("shadow-edge-cwd")
    finally(function() process.rmdir(cwd) end)
    local marker = cwd .. "/loaded"
    os.execute("mkdir -p " .. cwd .. "/shadow")
    local evil = ("io.open(%q, 'w'):write('yes')\nreturn {}\n"):format(marker)
    process.write_file(cwd .. "/shadow/evil.lua", evil)
    process.write_file(cwd .. "/shadow/init.lua", evil)
    process.write_file(cwd .. "/cjson.lua", evil)
    process.write_file(cwd .. "/shadow/evil.so", "not a library")
    refused('local e = require "shadow.evil"', "module 'shadow.evil' is not "
            .. "available to configs", cwd)
    -- The documented modules still come from shadowd and Debian.
    local code, out = check([[
local shadow = require "shadow"
local cjson = require "cjson"
assert(type(shadow.diff) == "function" and cjson.decode("[1]")[1] == 1)
]], cwd)
    assert.are.equal(0, code, out)
    assert.is_nil(process.read_file(marker), "a file of the working "
                  .. "directory was loaded")
  end)
end)
