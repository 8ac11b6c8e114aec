-- Limits at the edge (issue 23, rows 5 and 7): client connections capped
-- at limits.max_connections (503, counted, logged once per burst, the
-- admin still answering), accept errors when file descriptors run out
-- handled without a spin, upgrades capped at limits.max_tunnels and idle
-- tunnels closed, and request-body copies held within
-- limits.copy_memory_bytes while every client is still served by the
-- primary. Backends are Debian nginx with its Lua module.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local socket = require "socket"

local PLAIN = [[ location / { return 200 "ok\n"; } ]]

-- Reads the body before answering, so an upload left unfinished holds its
-- exchange open.
local READER = [[
  location / { content_by_lua_block {
    ngx.req.read_body()
    ngx.say("ok")
  } }
]]

-- Answers an upgrade with 101, then echoes bytes until the client leaves.
local WS = [[
  location / { content_by_lua_block {
    local sock = assert(ngx.req.socket(true))
    sock:settimeout(20000)
    sock:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      .. "Connection: Upgrade\r\n\r\n")
    while true do
      local b = sock:receive(1)
      if not b then break end
      sock:send(b)
    end
  } }
]]

local function count(text, pattern)
  local n = 0
  for _ in text:gmatch(pattern) do n = n + 1 end
  return n
end

local function metric(d, name)
  local res = d:admin("/metrics")
  assert.are.equal(200, res.status)
  return tonumber(res.body:match("\n" .. name .. " (%d+)"))
end

local function proc_status(pid, field)
  local text = process.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(text:match(field .. ":%s*(%d+)"))
end

local function cpu_ticks(pid)
  local text = process.read_file("/proc/" .. pid .. "/stat") or ""
  local rest = text:match("%) (.*)")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return tonumber(f[12]) + tonumber(f[13]) -- utime + stime
end

local CAP_LINE = "at limits%.max_connections"

describe("limits.max_connections", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = { primary = PLAIN } }
    d = shadowd.start{ primary = ng:url("primary"), rate = 0,
                       limits = { max_connections = 50 } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("turns clients past the cap away with 503, counts them, logs once a "
     .. "burst, keeps the admin answering, and takes clients again", function()
    local stop = cleanup.new()
    finally(stop.run)
    local held = {}
    stop.add(function() for _, c in ipairs(held) do c:close() end end)
    -- Fill the cap with idle keep-alive clients. The start-up port probe
    -- may hold a slot for a moment: a 503 then is retried.
    local ok = port.wait_until(function()
      local c = http.connect(d.port)
      if not c then return false end
      local res = c:request{ path = "/fill" }
      if res and res.status == 200 then
        held[#held + 1] = c
      else
        c:close()
      end
      return #held == 50
    end, 20, 0.01)
    assert.is_truthy(ok, "only " .. #held .. " clients got in")
    local rejected0 = d:stats().totals.connections_rejected
    local lines0 = count(d:log(), CAP_LINE)

    -- A burst of 20 clients past the cap: each gets a 503 and the close.
    for i = 1, 20 do
      local c = assert(http.connect(d.port))
      local res, err = c:request{ path = "/over" .. i }
      assert.is_truthy(res, "client " .. i .. ": " .. tostring(err))
      assert.are.equal(503, res.status)
      assert.matches("too many connections", res.body)
      assert.is_true(c:wait_closed(5))
      c:close()
    end
    assert.are.equal(0, #ng:requests_for("primary", "/over1"))
    -- The admin port has its own reserve and answers meanwhile.
    assert.are.equal(200, d:admin("/healthz").status)
    local stats = d:stats()
    assert.are.equal(rejected0 + 20, stats.totals.connections_rejected)
    assert.are.equal(rejected0 + 20,
                     metric(d, "shadow_connections_rejected_total"))
    -- One line for the burst, not one per client.
    port.wait_until(function()
      return count(d:log(), CAP_LINE) > lines0
    end, 5, 0.02)
    assert.are.equal(lines0 + 1, count(d:log(), CAP_LINE))

    -- The held clients still work; once some leave, new ones get in.
    assert.are.equal(200, assert(held[1]:request{ path = "/still" }).status)
    for _ = 1, 10 do table.remove(held):close() end
    local back = port.wait_until(function()
      local c = http.connect(d.port)
      if not c then return false end
      local res = c:request{ path = "/back" }
      if res and res.status == 200 then
        held[#held + 1] = c
        return true
      end
      c:close()
    end, 10, 0.02)
    assert.is_truthy(back, "no client got in after 10 left")

    -- Full again, then a second burst: a second line.
    port.wait_until(function()
      local c = http.connect(d.port)
      if not c then return false end
      local res = c:request{ path = "/refill" }
      if res and res.status == 200 then
        held[#held + 1] = c
        return false
      end
      c:close()
      return true
    end, 10, 0.01)
    local c = assert(http.connect(d.port))
    assert.are.equal(503, assert(c:request{ path = "/again" }).status)
    c:close()
    port.wait_until(function()
      return count(d:log(), CAP_LINE) > lines0 + 1
    end, 5, 0.02)
    assert.are.equal(lines0 + 2, count(d:log(), CAP_LINE))
  end)
end)

describe("running short of file descriptors", function()
  it("answers clients 503 before the limit is reached, counted and logged "
     .. "once, keeps the admin answering, and serves again once "
     .. "descriptors free up", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = { primary = PLAIN } })
    -- No cap of shadowd's own: the descriptor limit is what stops it.
    local d = stop.add(shadowd.start{ primary = ng:url("primary"), rate = 0,
                                      limits = { max_connections = 0 } })
    assert.are.equal(200, assert(http.get(d.port, "/warm")).status)
    local pid = d.proc.pid
    local code, out, err = process.run({ "prlimit", "--pid", tostring(pid),
                                         "--nofile=64:64" })
    assert.are.equal(0, code, out .. err)
    local held = {}
    stop.add(function() for _, c in ipairs(held) do c:close() end end)
    local refused, closed = 0, 0
    for i = 1, 80 do
      local c = http.connect(d.port, { timeout = 5 })
      if c then
        local res = c:request{ path = "/fd" .. i }
        if res and res.status == 200 then
          held[#held + 1] = c
        elseif res and res.status == 503 then
          refused = refused + 1
          c:close()
        else
          closed = closed + 1
          c:close()
        end
      else
        closed = closed + 1
      end
    end
    assert.is_true(refused > 0, ("%d held, %d closed"):format(#held, closed))
    assert.are.equal(0, closed)
    -- The admin keeps its reserve.
    assert.are.equal(200, d:admin("/healthz").status)
    assert.are.equal(refused, d:stats().totals.connections_rejected)
    -- At the limit, with clients knocking, the loop does not spin.
    local t0, ticks0 = socket.gettime(), cpu_ticks(pid)
    while socket.gettime() - t0 < 1 do
      local c = http.connect(d.port, { timeout = 0.5 })
      if c then c:close() end
      socket.sleep(0.02)
    end
    local used = (cpu_ticks(pid) - ticks0) / 100
    assert.is_true(used < 0.5, ("%.2f s of CPU in 1 s"):format(used))
    for _, c in ipairs(held) do c:close() end
    held = {}
    local ok = port.wait_until(function()
      local res = http.get(d.port, "/after")
      return res and res.status == 200
    end, 10, 0.05)
    assert.is_truthy(ok, "not served after descriptors were freed")
    assert.are.equal(1, count(d:log(), "file descriptors running short"))
  end)
end)

local function open_tunnel(d)
  local c = assert(http.connect(d.port, { timeout = 10 }))
  assert(c:send("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\n\r\n"))
  local res = assert(c:read_response_head())
  return c, res
end

describe("limits.max_tunnels", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = { primary = WS } }
    d = shadowd.start{ primary = ng:url("primary"), rate = 0,
                       limits = { max_tunnels = 2 } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("answers an upgrade past the cap 503, counted, and takes one again "
     .. "when a tunnel ends", function()
    local stop = cleanup.new()
    finally(stop.run)
    local a, ra = open_tunnel(d)
    stop.add(function() a:close() end)
    local b, rb = open_tunnel(d)
    stop.add(function() b:close() end)
    assert.are.equal(101, ra.status)
    assert.are.equal(101, rb.status)
    assert(a:send("x"))
    assert.are.equal("x", a.sock:receive(1))
    local c, rc = open_tunnel(d)
    stop.add(function() c:close() end)
    assert.are.equal(503, rc.status)
    local body = c.sock:receive(tonumber(rc.headers["content-length"]))
    assert.matches("too many tunnels", body)
    assert.are.equal(1, d:stats().totals.tunnels_rejected)
    assert.are.equal(1, metric(d, "shadow_tunnels_rejected_total"))
    -- The open ones are untouched; one ends, and a new one fits.
    assert(b:send("y"))
    assert.are.equal("y", b.sock:receive(1))
    a:close()
    local ok = port.wait_until(function()
      local e, re = open_tunnel(d)
      stop.add(function() e:close() end)
      return re.status == 101
    end, 10, 0.05)
    assert.is_truthy(ok, "no tunnel after one ended")
  end)
end)

describe("limits.tunnel_idle_timeout_ms", function()
  it("defaults to 60 s, and closes a tunnel idle that long", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = { primary = WS } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"), rate = 0,
                                      limits = { tunnel_idle_timeout_ms = 300 } })
    local c, res = open_tunnel(d)
    stop.add(function() c:close() end)
    assert.are.equal(101, res.status)
    assert(c:send("z"))
    assert.are.equal("z", c.sock:receive(1))
    local t0 = socket.gettime()
    assert.is_true(c:wait_closed(5))
    local idle = socket.gettime() - t0
    assert.is_true(idle > 0.25 and idle < 3,
                   ("closed after %.2f s"):format(idle))
    -- The default, as --check states it.
    local conf = process.tmpdir("shadow-edge") .. "/shadow.lua"
    stop.add(function() os.remove(conf) end)
    process.write_file(conf, 'local shadow = require "shadow"\n'
      .. 'return { primary = shadow.http("http://127.0.0.1:1") }\n')
    local code, out, err = process.run({ shadowd.binary(), "--config", conf,
                                         "--check" })
    assert.are.equal(0, code, out .. err)
    assert.matches("idle ones closed after 60000 ms", out)
  end)
end)

describe("the default of limits.max_connections", function()
  -- Of nofile - 256, the shadow legs' 2 * max_inflight_shadow (at most a
  -- quarter) aside, half; tunnels half of that; the soft limit is raised
  -- to the hard one first.
  local function check_with(limit)
    local dir = process.tmpdir("shadow-edge")
    local conf = dir .. "/shadow.lua"
    process.write_file(conf, 'local shadow = require "shadow"\n'
      .. 'return { primary = shadow.http("http://127.0.0.1:1") }\n')
    local code, out, err = process.run({ "prlimit", "--nofile=" .. limit, "--",
                                         shadowd.binary(), "--config", conf,
                                         "--check" })
    process.rmdir(dir)
    assert.are.equal(0, code, out .. err)
    return out
  end

  it("comes from RLIMIT_NOFILE less a reserve, after raising it", function()
    assert.matches("edge       288 client connections, 144 tunnels",
                   check_with("1024:1024"))
    assert.matches("edge       1664 client connections, 832 tunnels",
                   check_with("1024:4096"))
  end)
end)

describe("limits.copy_memory_bytes", function()
  local CLIENTS, SIZE, BUDGET = 24, 1024 * 1024, 4 * 1024 * 1024
  local ng, d
  setup(function()
    ng = nginx.start{ servers = { primary = READER, candidate = READER } }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       primary_timeout_ms = 60000,
                       mirror_methods = { "POST" },
                       limits = { copy_memory_bytes = BUDGET },
                       extra = 'capture = { file = "capture.ndjson", '
                         .. "body_bytes = " .. SIZE .. " },",
                       -- One budget for the whole process.
                       args = { "--workers", "2" } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("holds copies within the budget, skips the rest for memory, and the "
     .. "primary answers every client", function()
    local stop = cleanup.new()
    finally(stop.run)
    assert.are.equal(200, assert(http.get(d.port, "/warm")).status)
    local pid = d.proc.pid
    local base = proc_status(pid, "VmRSS")
    local conns = {}
    stop.add(function() for _, c in ipairs(conns) do c:close() end end)
    local body = ("b"):rep(SIZE - 1)
    for i = 1, CLIENTS do
      local c = assert(http.connect(d.port, { timeout = 30 }))
      conns[i] = c
      assert(c:send("POST /up/" .. i .. " HTTP/1.1\r\nHost: a\r\n"
        .. "Content-Length: " .. SIZE .. "\r\n\r\n" .. body))
    end
    -- Every upload is in but its last byte: the copies held are within
    -- the budget, however many clients there are.
    local stats = d:wait_totals("requests", CLIENTS + 1, 20)
    assert.are.equal(CLIENTS + 1, stats.totals.requests)
    assert.is_true(stats.totals.copy_bytes > 0)
    assert.is_true(stats.totals.copy_bytes <= BUDGET,
                   "copy_bytes " .. stats.totals.copy_bytes)
    assert.are.equal(stats.totals.copy_bytes, metric(d, "shadow_copy_bytes"))
    -- Peak memory: without the budget it grows by every copy (24 MiB);
    -- with it, by the budget and the streaming buffers. Not meaningful
    -- under a sanitizer (ASan keeps freed memory, TSan shadows it).
    if not os.getenv("ASAN_OPTIONS")
       and not (os.getenv("SHADOW_BUILD_DIR") or ""):find("san") then
      local grew = (proc_status(pid, "VmHWM") - base) / 1024
      assert.is_true(grew < 14, ("peak RSS grew by %.1f MB"):format(grew))
    end
    for i = 1, CLIENTS do
      assert(conns[i]:send("b"))
    end
    for i = 1, CLIENTS do
      local res, err = conns[i]:read_response()
      assert.is_truthy(res, "client " .. i .. ": " .. tostring(err))
      assert.are.equal(200, res.status)
      assert.are.equal("ok\n", res.body)
    end
    local ok = port.wait_until(function()
      stats = d:stats()
      return stats.totals.copy_bytes == 0
        and (stats.totals.skipped.memory or 0) > 0
        and ((stats.capture or {}).skipped or {}).memory
    end, 20, 0.05)
    assert.is_truthy(ok, "copy_bytes " .. stats.totals.copy_bytes
      .. ", skipped " .. require("support.json").encode(stats.totals.skipped))
    assert.is_true(stats.totals.skipped.memory >= 1)
    assert.is_true(stats.capture.skipped.memory >= 1)
  end)
end)
