-- Graceful shutdown under load: SIGTERM with requests in flight to a slow
-- primary lets every one finish, refuses new connections, abandons the
-- candidate legs still pending, flushes the NDJSON log and exits 0.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local hostile = require "support.hostile"
local http = require "support.http"
local port = require "support.port"
local process = require "support.process"
local json = require "support.json"
local cleanup = require "support.cleanup"
local socket = require "socket"

local SLOW = os.getenv("SHADOW_SLOW") and 4 or 1
local DRAIN_MS = 4000 * SLOW
local CLIENTS = 16

describe("graceful shutdown", function()
  it("finishes every request in flight, refuses new ones, abandons the "
     .. "candidate legs and exits 0", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { content_by_lua_block {
        ngx.sleep(0.5)
        ngx.print('{"slow":true}')
      } } ]] } })
    -- The candidate never answers, and shadowd would wait for it far
    -- longer than the drain: exiting in time means the legs were dropped.
    local h = stop.add(hostile.start{ mode = "hang" })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
      candidate = h.url, rate = 1.0, candidate_timeout_ms = 60000,
      extra = ("  drain_timeout_ms = %d,"):format(DRAIN_MS) })

    local conns = {}
    for i = 1, CLIENTS do
      local c = assert(http.connect(d.port))
      stop.add(function() c:close() end)
      conns[i] = c
      assert(c:send(http.build{ path = "/in-flight-" .. i }))
    end
    -- In flight: shadowd has every request, the primary is still asleep.
    d:wait_totals("requests", CLIENTS)
    local t0 = socket.gettime()
    d.proc:kill(process.SIGTERM)

    for i, c in ipairs(conns) do
      local res, err = c:read_response()
      assert.is_truthy(res, "client " .. i .. ": " .. tostring(err))
      assert.are.equal(200, res.status)
      assert.are.equal('{"slow":true}', res.body)
    end
    -- The listener is gone: a new client is refused, not left hanging.
    assert.is_truthy(port.wait_until(function()
      return not port.accepts(d.port)
    end, 5), "shadowd still accepts after SIGTERM")

    local how, code = d.proc:wait(DRAIN_MS / 1000 + 5)
    local took = socket.gettime() - t0
    assert.are.equal("exited", how, "shadowd did not exit: " .. d:log())
    assert.are.equal(0, code, d:log())
    -- Well before the drain timer: the drain ended because the last
    -- client was answered, not because the timer cut it.
    assert.is_true(took < DRAIN_MS / 1000 / 2,
                   ("exit took %.2fs, drain is %dms"):format(took, DRAIN_MS))
    assert.is_nil(d:log():find("drain timeout", 1, true), d:log())
    d:stop() -- the sanitizer check
  end)

  it("closes idle keep-alive connections and exits at once", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 "ok"; } ]] } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"), rate = 0,
      extra = ("  drain_timeout_ms = %d,"):format(DRAIN_MS) })
    local c = assert(http.connect(d.port))
    stop.add(function() c:close() end)
    assert.are.equal(200, assert(c:request{ path = "/" }).status)
    local t0 = socket.gettime()
    d.proc:kill(process.SIGTERM)
    assert.is_true(c:wait_closed(DRAIN_MS / 1000 + 2))
    local how, code = d.proc:wait(DRAIN_MS / 1000 + 5)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    assert.is_true(socket.gettime() - t0 < DRAIN_MS / 1000 / 2,
                   "an idle connection held the drain")
    d:stop()
  end)

  -- An answer larger than the socket buffers is still being written when
  -- the last request is answered: the drain must not cut it.
  it("delivers a large answer whole", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { content_by_lua_block {
        ngx.sleep(0.5)
        ngx.print(string.rep("x", 6 * 1024 * 1024))
      } } ]] } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"), rate = 0,
      extra = ("  drain_timeout_ms = %d,"):format(DRAIN_MS) })
    local c = assert(http.connect(d.port))
    stop.add(function() c:close() end)
    assert(c:send(http.build{ path = "/big" }))
    d:wait_totals("requests", 1)
    d.proc:kill(process.SIGTERM)
    local res, err = c:read_response()
    assert.is_truthy(res, "the answer was cut: " .. tostring(err))
    assert.are.equal(200, res.status)
    assert.are.equal(6 * 1024 * 1024, #res.body)
    local how, code = d.proc:wait(DRAIN_MS / 1000 + 5)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    d:stop()
  end)

  -- A request whose head is still arriving when SIGTERM comes is in
  -- flight for the client: it must be answered, not cut.
  it("answers a request that was still arriving at SIGTERM", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 "ok"; } ]] } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"), rate = 0,
      extra = ("  drain_timeout_ms = %d,"):format(DRAIN_MS) })
    local c = assert(http.connect(d.port))
    stop.add(function() c:close() end)
    assert(c:send("GET /arriving HTTP/1.1\r\nHost: x\r\n"))
    -- Nothing shows that shadowd has read the first half (no counter
    -- moves before a whole head): a pause is the only way to order it.
    socket.sleep(0.2 * SLOW)
    d.proc:kill(process.SIGTERM)
    -- The listener closes when the drain starts.
    assert.is_truthy(port.wait_until(function()
      return not port.accepts(d.port)
    end, 5))
    c:send("X-Rest: 1\r\n\r\n")
    local res, err = c:read_response()
    assert.is_truthy(res, "the arriving request was cut: " .. tostring(err))
    assert.are.equal(200, res.status)
    local how, code = d.proc:wait(DRAIN_MS / 1000 + 5)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    d:stop()
  end)

  it("flushes every divergence to the NDJSON log before exiting",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 '{"v":1}'; } ]],
      candidate = [[ location / { return 200 '{"v":2}'; } ]] } })
    local dir = process.tmpdir("shadow-ndjson")
    stop.add(function() process.rmdir(dir) end)
    local file = dir .. "/divergences.ndjson"
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
      candidate = ng:url("candidate"), rate = 1.0,
      extra = ("  log = { capacity = 1000, file = %q },\n"
               .. "  drain_timeout_ms = %d,"):format(file, DRAIN_MS) })
    local N = 50
    local c = assert(http.connect(d.port))
    stop.add(function() c:close() end)
    for i = 1, N do
      assert.are.equal(200, assert(c:request{ path = "/d" .. i }).status)
    end
    d:wait_totals("diverged", N)
    d.proc:kill(process.SIGTERM)
    local how, code = d.proc:wait(DRAIN_MS / 1000 + 5)
    assert.are.equal("exited", how)
    assert.are.equal(0, code, d:log())
    local records = json.decode_lines(process.read_file(file))
    assert.are.equal(N, #records)
    local seen = {}
    for _, r in ipairs(records) do seen[r.path] = true end
    for i = 1, N do assert.is_true(seen["/d" .. i], "/d" .. i) end
    d:stop()
  end)
end)
