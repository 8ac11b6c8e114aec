-- the README's bad-input and fault table, row by row.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local http = require "support.http"
local port = require "support.port"
local json = require "support.json"
local raw_server = require "support.raw_server"
local cleanup = require "support.cleanup"

local BACKENDS = {
  primary = [[
    location /slow { content_by_lua_block {
      ngx.sleep(2)
      ngx.print("too late")
    } }
    location / { content_by_lua_block {
      ngx.req.read_body()
      ngx.header["content-type"] = "text/plain"
      ngx.print("primary ok")
    } }
  ]],
  candidate = [[
    location /cslow { content_by_lua_block {
      ngx.sleep(1)
      ngx.print("candidate late")
    } }
    location / { return 200 "candidate ok"; }
  ]],
}

local stop_all = cleanup.stop_all

-- A 502/504 carries a short JSON error body.
local function assert_json_error(res, status)
  assert.are.equal(status, res.status)
  assert.matches("application/json", res.headers["content-type"] or "",
                 1, true)
  assert.is_true(#res.body < 1024, "error body of " .. #res.body .. " bytes")
  assert.is_table(json.decode(res.body))
end

describe("client faults", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       limits = { header_bytes = 4096, body_bytes = 1024,
                                  header_timeout_ms = 300 } }
  end)
  teardown(function() stop_all(d, ng) end)

  it("answers a malformed request with 400 and closes", function()
    local c = assert(http.connect(d.port))
    finally(function() c:close() end)
    local res = assert(c:request{ raw = "GET / HTTP/1.1\r\nHost: x\r\n"
                                     .. "this line has no colon\r\n\r\n" })
    assert.are.equal(400, res.status)
    assert.is_true(c:wait_closed(5))
  end)

  it("answers a request line that is not HTTP with 400", function()
    local c = assert(http.connect(d.port))
    finally(function() c:close() end)
    local res = assert(c:request{ raw = "\1\2\3 nonsense\r\n\r\n" })
    assert.are.equal(400, res.status)
    assert.is_true(c:wait_closed(5))
  end)

  it("answers headers over limits.header_bytes with 431", function()
    local res = assert(http.get(d.port, "/", { ["x-big"] = ("a"):rep(8000) }))
    assert.are.equal(431, res.status)
  end)

  it("answers a body over limits.body_bytes with 413", function()
    local res = assert(http.request(d.port, { method = "POST", path = "/big",
                                              body = ("b"):rep(4096) }))
    assert.are.equal(413, res.status)
  end)

  it("answers a chunked body over limits.body_bytes with 413", function()
    local chunk = ("c"):rep(512)
    local raw = "POST /big-chunked HTTP/1.1\r\nHost: x\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n"
      .. ("200\r\n" .. chunk .. "\r\n"):rep(4) .. "0\r\n\r\n"
    local res = assert(http.request(d.port, { raw = raw }))
    assert.are.equal(413, res.status)
  end)

  it("answers a client too slow to send its headers with 408", function()
    local c = assert(http.connect(d.port))
    finally(function() c:close() end)
    local t0 = require("socket").gettime()
    assert(c:send("GET / HTTP/1.1\r\nHost: x\r\n"))
    local res = assert(c:read_response())
    local elapsed = require("socket").gettime() - t0
    assert.are.equal(408, res.status)
    assert.is_true(elapsed >= 0.25, ("408 after %.3fs"):format(elapsed))
    assert.is_true(c:wait_closed(5))
  end)

  it("passed none of them to the primary, and still serves", function()
    local res = assert(http.get(d.port, "/fine", { ["x-user-id"] = "f" }))
    assert.are.equal(200, res.status)
    assert.are.equal("primary ok", res.body)
    assert.are.equal(1, #ng:wait_uri("primary", "/fine"))
    for _, r in ipairs(ng:requests("primary")) do
      assert.are.equal("/fine", r.uri)
    end
  end)
end)

describe("primary faults", function()
  local ng
  setup(function() ng = nginx.start{ servers = BACKENDS } end)
  teardown(function() stop_all(ng) end)

  -- A daemon in front of the given primary, stopped with the test.
  local function with_primary(url, opts, fn)
    local stop = cleanup.new()
    finally(stop.run)
    if opts.raw then
      url = stop.add(raw_server.start(opts.raw)).url
    end
    local d = stop.add(shadowd.start{ primary = url, rate = 1.0,
      candidate = ng:url("candidate"),
      primary_timeout_ms = opts.timeout_ms or 5000 })
    fn(d)
  end

  it("answers 502 when the primary refuses", function()
    with_primary("http://127.0.0.1:" .. port.free(), {}, function(d)
      assert_json_error(assert(http.get(d.port, "/")), 502)
    end)
  end)

  it("answers 502 when the primary sends garbage", function()
    with_primary(nil, { raw = "garbage" }, function(d)
      assert_json_error(assert(http.get(d.port, "/")), 502)
    end)
  end)

  it("answers 502 when the primary resets", function()
    with_primary(nil, { raw = "reset" }, function(d)
      assert_json_error(assert(http.get(d.port, "/")), 502)
    end)
  end)

  it("answers 504 when the primary times out", function()
    with_primary(ng:url("primary"), { timeout_ms = 300 }, function(d)
      local res = assert(http.get(d.port, "/slow"))
      assert_json_error(res, 504)
      assert.is_true(res.elapsed < 1.5, ("504 after %.3fs"):format(res.elapsed))
      -- The daemon keeps serving afterwards.
      res = assert(http.get(d.port, "/after"))
      assert.are.equal(200, res.status)
      assert.are.equal("primary ok", res.body)
    end)
  end)
end)

describe("candidate faults", function()
  local ng
  setup(function() ng = nginx.start{ servers = BACKENDS } end)
  teardown(function() stop_all(ng) end)

  local function errors_total(d)
    local n, reasons = 0, {}
    for reason, count in pairs(d:stats().totals.candidate_errors or {}) do
      n = n + count
      if count > 0 then reasons[#reasons + 1] = reason end
    end
    return n, reasons
  end

  it("hides a refusing candidate from the client and counts it", function()
    local d = shadowd.start{ primary = ng:url("primary"), rate = 1.0,
                             candidate = "http://127.0.0.1:" .. port.free() }
    finally(function() d:stop() end)
    for i = 1, 3 do
      local res = assert(http.get(d.port, "/c" .. i, { ["x-user-id"] = "c" }))
      assert.are.equal(200, res.status)
      assert.are.equal("primary ok", res.body)
    end
    local n = port.wait_until(function()
      local total = errors_total(d)
      return total >= 3 and total
    end, 10)
    assert.are.equal(3, n)
    assert.are.equal(0, d:stats().totals.diverged)
    local m = d:admin("/metrics").body
    assert.matches("\nshadow_candidate_errors_total{reason=\"[^\"]+\"} 3",
                   "\n" .. m)
  end)

  it("times out a slow candidate without the client noticing", function()
    local d = shadowd.start{ primary = ng:url("primary"),
                             candidate = ng:url("candidate"), rate = 1.0,
                             candidate_timeout_ms = 200 }
    finally(function() d:stop() end)
    -- Fast on the primary, 1 s on the candidate: over its 200 ms.
    local res = assert(http.get(d.port, "/cslow", { ["x-user-id"] = "t" }))
    assert.are.equal(200, res.status)
    assert.are.equal("primary ok", res.body)
    assert.is_true(res.elapsed < 0.5, ("took %.3fs"):format(res.elapsed))
    local n, reasons = port.wait_until(function()
      local total, r = errors_total(d)
      if total >= 1 then return total, r end
    end, 10)
    assert.are.equal(1, n)
    assert.matches("timeout", table.concat(reasons, ","))
  end)
end)
