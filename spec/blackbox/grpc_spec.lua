-- gRPC and HTTP/2 end to end, with real peers only: Debian python3-grpcio's
-- client (spec/support/grpc) calls shadowd's plain listener (h2c), which
-- answers from a primary gRPC server and compares a candidate's replies
-- message by message: a differing field named by number without a schema
-- and by name with `grpc = { descriptors = ... }`, a server stream message
-- by message, a client stream mirrored within mirror_body_bytes and
-- skipped as streaming past it, a status error on one side in the status
-- part, a deadline, gzip on one side only, /stats per method; curl's h2c
-- requests through shadowd to HTTP/1.1 and h2c nginx backends; capture of
-- gRPC calls and `shadowd replay --candidate h2c://...`.
local grpc = require "support.grpc"
local shadowd = require "support.shadowd"
local nginx = require "support.nginx"
local process = require "support.process"
local port = require "support.port"
local json = require "support.json"
local cleanup = require "support.cleanup"
local socket = require "socket"

local GET, LIST = "/shadowtest.Users/Get", "/shadowtest.Users/List"
local FAIL, SLOW = "/shadowtest.Users/Fail", "/shadowtest.Users/Slow"
local IMPORT = "/shadowtest.Users/Import"

-- The config every case starts from: both legs over h2c, every call
-- mirrored (gRPC calls are POSTs), no route function (gRPC's default route
-- is the method's path).
local function config(addr, o)
  return table.concat({
    'local shadow = require "shadow"',
    "return {",
    ("  listen = %q, admin = %q,"):format(addr.listen, addr.admin),
    ("  primary = shadow.http(%q, { timeout_ms = 5000 }),"):format(o.primary),
    o.candidate and ("  candidate = shadow.http(%q, { timeout_ms = 5000 }),")
      :format(o.candidate) or "",
    ("  sample = { rate = %s },"):format(o.rate or "1.0"),
    '  mirror_methods = { "GET", "POST" },',
    "  log = { capacity = 1000 },",
    o.descriptors and ("  grpc = { descriptors = %q },"):format(o.descriptors)
      or "",
    o.capture and ("  capture = { file = %q, rate = 1 },"):format(o.capture)
      or "",
    o.extra or "",
    "}",
  }, "\n") .. "\n"
end

-- The diffs of the only divergence shadowd logged for route.
local function only_divergence(d, route)
  local list = d:divergences().divergences
  local mine = {}
  for _, r in ipairs(list) do
    if r.route == route then mine[#mine + 1] = r end
  end
  assert.are.equal(1, #mine, "divergences: " .. json.encode(list))
  return mine[1]
end

describe("gRPC through shadowd", function()
  local ok, why = grpc.available()
  if not ok then
    pending(why)
    return
  end

  local build, primary
  setup(function()
    build = grpc.build()
    primary = grpc.server(build, { label = "primary" })
  end)
  teardown(function() cleanup.stop_all(build, primary) end)

  -- Starts a candidate (opts for grpc.server) and shadowd in front of the
  -- primary and it; both are stopped by stop.
  local function pair(stop, cand_opts, o)
    o = o or {}
    local cand = stop.add(grpc.server(build, cand_opts))
    local d = stop.add(shadowd.start{ text = function(addr)
      return config(addr, { primary = primary.url,
                            candidate = o.candidate_url and o.candidate_url(cand)
                              or cand.url,
                            descriptors = o.descriptors and build.descriptors,
                            capture = o.capture, extra = o.extra })
    end })
    return d, cand, "127.0.0.1:" .. d.port
  end

  it("answers a unary call from the primary and compares an equal candidate", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, cand, target = pair(stop, { label = "same" })
    local code, res, _, out = grpc.call(build, target, "get", { id = 7 })
    assert.are.equal(0, code, out .. d:log())
    assert.are.equal("user-7", res.messages[1].name)
    assert.are.equal(1, #cand:wait_calls(1, GET))
    local s = d:wait_totals("compared", 1)
    assert.are.equal(1, s.totals.compared, json.encode(s.totals))
    assert.are.equal(0, s.totals.diverged)
    assert.are.equal(0, #d:divergences().divergences)
    -- The default route of a gRPC call is its method.
    assert.is_table(s.routes[GET], json.encode(s.routes))
    assert.are.equal(1, s.routes[GET].compared)
  end)

  it("names a differing field by number without a schema", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, _, target = pair(stop, { variant = "name" })
    local code, res, _, out = grpc.call(build, target, "get", { id = 7 })
    assert.are.equal(0, code, out)
    assert.are.equal("user-7", res.messages[1].name) -- the primary's
    d:wait_totals("diverged", 1)
    local r = only_divergence(d, GET)
    assert.are.equal("POST", r.method)
    assert.is_false(r.status.differs)
    assert.is_true(r.body.differs)
    assert.are.equal("protobuf", r.body.kind)
    assert.are.same({ { op = "replace", path = "/2", primary = "user-7",
                        candidate = "USER-7" } }, r.body.diffs)
  end)

  it("names a nested field by number path without a schema", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, _, target = pair(stop, { variant = "address.city" })
    assert.are.equal(0, (grpc.call(build, target, "get", { id = 7 })))
    d:wait_totals("diverged", 1)
    local r = only_divergence(d, GET)
    assert.are.same({ { op = "replace", path = "/5/1", primary = "Paris",
                        candidate = "Lyon" } }, r.body.diffs)
  end)

  it("names fields and enums by name with grpc.descriptors", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, _, target = pair(stop, { variant = "name" }, { descriptors = true })
    assert.are.equal(0, (grpc.call(build, target, "get", { id = 7 })))
    d:wait_totals("diverged", 1)
    local r = only_divergence(d, GET)
    assert.are.equal("protobuf", r.body.kind)
    assert.are.same({ { op = "replace", path = "/name", primary = "user-7",
                        candidate = "USER-7" } }, r.body.diffs)

    local d2, _, target2 = pair(stop, { variant = "address.city" },
                                { descriptors = true })
    assert.are.equal(0, (grpc.call(build, target2, "get", { id = 7 })))
    d2:wait_totals("diverged", 1)
    r = only_divergence(d2, GET)
    assert.are.same({ { op = "replace", path = "/address/city",
                        primary = "Paris", candidate = "Lyon" } }, r.body.diffs)

    local d3, _, target3 = pair(stop, { variant = "role" }, { descriptors = true })
    assert.are.equal(0, (grpc.call(build, target3, "get", { id = 7 })))
    d3:wait_totals("diverged", 1)
    r = only_divergence(d3, GET)
    local diff = r.body.diffs[1]
    assert.are.equal(1, #r.body.diffs, json.encode(r.body))
    assert.are.equal("/role", diff.path)
    assert.are.equal("ROLE_USER", diff.primary) -- the enum's name
  end)

  it("compares a server stream message by message", function()
    local stop = cleanup.new()
    finally(stop.run)
    -- Only the second message differs: one more tag.
    local d, _, target = pair(stop, { variant = "tags", variant_at = 1 },
                              { descriptors = true })
    local code, res, _, out = grpc.call(build, target, "list", { count = 3 })
    assert.are.equal(0, code, out)
    assert.are.equal(3, #res.messages)
    assert.are.same({ "a", "b" }, res.messages[2].tags) -- the primary's
    d:wait_totals("diverged", 1)
    local r = only_divergence(d, LIST)
    assert.are.equal("protobuf", r.body.kind)
    assert.are.same({ { op = "add", path = "/1/tags/2", candidate = "c" } },
                    r.body.diffs)

    -- A candidate that streams one message more.
    local d2, _, target2 = pair(stop, { variant = "count" }, { descriptors = true })
    code, res = grpc.call(build, target2, "list", { count = 2 })
    assert.are.equal(0, code)
    assert.are.equal(2, #res.messages)
    d2:wait_totals("diverged", 1)
    r = only_divergence(d2, LIST)
    assert.are.equal(1, #r.body.diffs, json.encode(r.body))
    assert.are.equal("add", r.body.diffs[1].op)
    assert.are.equal("/2", r.body.diffs[1].path)
    -- A long value is cut with a marker: the added message may come as
    -- the start of its JSON text.
    local added = r.body.diffs[1].candidate
    if type(added) == "string" then
      assert.matches('"name":"user-3"', added, 1, true)
    else
      assert.are.equal("user-3", added.name)
    end
  end)

  it("shows a status error on one side in the status part", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, _, target = pair(stop, { variant = "status" })
    local code, res, _, out = grpc.call(build, target, "get", { id = 7 })
    assert.are.equal(0, code, out) -- the client has the primary's answer
    assert.are.equal("user-7", res.messages[1].name)
    d:wait_totals("diverged", 1)
    local r = only_divergence(d, GET)
    assert.is_true(r.status.differs, json.encode(r.status))
    assert.are.same({ primary = 0, candidate = 5 }, r.status.grpc)
    assert.are.equal("user 7 not found", r.status.grpc_message.candidate)
    -- A candidate's status error is an answer to compare, not a failure.
    assert.are.equal(1, d:stats().totals.compared)
  end)

  it("mirrors a client stream that ends within mirror_body_bytes", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, cand, target = pair(stop, { variant = "name" }, { descriptors = true })
    local code, res, _, out = grpc.call(build, target, "import", { count = 3 })
    assert.are.equal(0, code, out)
    assert.are.same({ "user-1", "user-2", "user-3" }, res.messages[1].names)
    assert.are.equal(1, #cand:wait_calls(1, IMPORT))
    d:wait_totals("diverged", 1)
    local r = only_divergence(d, IMPORT)
    assert.are.same({ "/names/0", "/names/1", "/names/2" },
      { r.body.diffs[1].path, r.body.diffs[2].path, r.body.diffs[3].path })
  end)

  it("serves a client stream past mirror_body_bytes from the primary only", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, cand, target = pair(stop, { label = "same" }, {
      extra = "  limits = { mirror_body_bytes = 4096 }," })
    -- Eight messages of ~1 KiB: the stream outgrows the limit.
    local code, res, _, out = grpc.call(build, target, "import", { count = 8, pad = 1000 })
    assert.are.equal(0, code, out .. d:log())
    assert.are.equal(8, res.messages[1].count)
    local s = d:wait_totals("requests", 1)
    port.wait_until(function()
      s = d:stats()
      return (s.totals.skipped or {}).streaming == 1
    end, 10, 0.05)
    assert.are.equal(1, (s.totals.skipped or {}).streaming, json.encode(s.totals))
    assert.are.equal(0, s.totals.compared)
    assert.are.equal(0, #cand:calls())
  end)

  it("compares equal status errors as equal, and their grpc-message", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, _, target = pair(stop, { label = "same" })
    local code, res = grpc.call(build, target, "fail",
                                { code = 7, message = "no entry" })
    assert.are.equal(7, code)
    assert.are.equal("no entry", res.details)
    local s = d:wait_totals("compared", 1)
    assert.are.equal(0, s.totals.diverged)

    local d2, _, target2 = pair(stop, { variant = "message" })
    code = grpc.call(build, target2, "fail", { code = 7, message = "no entry" })
    assert.are.equal(7, code)
    d2:wait_totals("diverged", 1)
    local r = only_divergence(d2, FAIL)
    assert.is_true(r.status.differs)
    assert.are.same({ primary = 7, candidate = 7 }, r.status.grpc)
    assert.are.same({ primary = "no entry", candidate = "otherwise: no entry" },
                    r.status.grpc_message)
  end)

  it("ends a call at its deadline and serves the next one", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, cand, target = pair(stop, { label = "same" })
    local t0 = socket.gettime()
    local code, res, _, out = grpc.call(build, target, "slow",
                                        { delay_ms = 5000, timeout = 0.5 })
    assert.are.equal(4, code, out)
    assert.are.equal("DEADLINE_EXCEEDED", res.code)
    assert.is_true(socket.gettime() - t0 < 4.5, "the deadline did not end it")
    -- Both legs got the call, with the deadline passed on (grpc-timeout).
    local calls = primary:wait_calls(1, SLOW)
    assert.are.equal(1, #calls)
    local left = calls[1].time_remaining
    assert.is_number(left, "the primary got no deadline")
    assert.is_true(left > 0 and left < 1, tostring(left))
    calls = cand:wait_calls(1, SLOW)
    assert.are.equal(1, #calls)
    assert.is_number(calls[1].time_remaining, "the candidate got no deadline")
    code, res, _, out = grpc.call(build, target, "slow", { delay_ms = 10, timeout = 10 })
    assert.are.equal(0, code, out)
    assert.are.equal(10, res.messages[1].slept_ms)
    assert.is_true(d.proc:running())
  end)

  it("compares gzip messages on one side only as equal when they are", function()
    local stop = cleanup.new()
    finally(stop.run)
    -- The candidate compresses every reply (grpc-encoding: gzip).
    local d, cand, target = pair(stop, { gzip = true }, { descriptors = true })
    assert.are.equal(0, (grpc.call(build, target, "get", { id = 7 })))
    assert.are.equal(0, (grpc.call(build, target, "list", { count = 3 })))
    -- A gzip request message: both legs get it as the client sent it.
    local code, res = grpc.call(build, target, "get", { id = 9, gzip = true, pad = 600 })
    assert.are.equal(0, code)
    assert.are.equal(600, #res.messages[1].bio)
    assert.are.equal(2, #cand:wait_calls(2, GET))
    local s = d:wait_totals("compared", 3)
    assert.are.equal(3, s.totals.compared, json.encode(s.totals))
    assert.are.equal(0, s.totals.diverged, json.encode(d:divergences()))
  end)

  it("goes over h2 to a gRPC backend given as http://", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, cand, target = pair(stop, { variant = "name" }, {
      candidate_url = function(c) return "http://" .. c.target end })
    assert.are.equal(0, (grpc.call(build, target, "get", { id = 7 })))
    assert.are.equal(1, #cand:wait_calls(1, GET))
    d:wait_totals("diverged", 1)
    assert.are.equal("/2", only_divergence(d, GET).body.diffs[1].path)
  end)

  it("counts each method as its own route on /stats", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d, _, target = pair(stop, { variant = "name" }, { descriptors = true })
    assert.are.equal(0, (grpc.call(build, target, "get", { id = 1, ["repeat"] = 3 })))
    assert.are.equal(0, (grpc.call(build, target, "list", { count = 2 })))
    local s = d:wait_totals("compared", 4)
    assert.are.equal(4, s.totals.compared, json.encode(s.totals))
    local routes = s.routes
    assert.are.equal(3, routes[GET].compared, json.encode(routes))
    assert.are.equal(3, routes[GET].diverged)
    assert.are.equal(1, routes[LIST].compared)
    assert.are.equal(1, routes[LIST].diverged)
    assert.is_table(routes[GET].verdict)
    -- The method's route in /metrics too.
    local m = d:admin("/metrics").body
    assert.matches('route="/shadowtest.Users/Get"', m, 1, true)
    -- A status error is a method's answer like any other.
    local code, res, _, out = grpc.call(build, target, "fail", { code = 5 })
    assert.are.equal(5, code, out)
    assert.are.equal("failed on purpose", res.details)
    routes = d:wait_totals("compared", 5).routes
    assert.are.equal(1, routes[FAIL].compared, json.encode(routes))
    assert.are.equal(0, routes[FAIL].diverged)
  end)
end)

describe("HTTP/2 plain requests through shadowd", function()
  local DOC = [[
    location /doc { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print('{"name":"%s","proto":"' .. ngx.var.server_protocol .. '"}')
    } }]]

  local function curl(args)
    local argv = { "curl", "-s", "--max-time", "10", "-w", "\n%{http_version} %{http_code}" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local code, out, err = process.run(argv)
    assert.are.equal(0, code, out .. err)
    local body, version, status = out:match("^(.*)\n(%S+) (%d+)$")
    return tonumber(status), version, body
  end

  it("serves curl --http2-prior-knowledge from HTTP/1.1 backends and compares", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = DOC:format("ann"), candidate = DOC:format("bob") } })
    local d = stop.add(shadowd.start{ text = function(addr)
      return config(addr, { primary = ng:url("primary"),
                            candidate = ng:url("candidate") })
    end })
    local status, version, body = curl({ "--http2-prior-knowledge",
      ("http://127.0.0.1:%d/doc/1"):format(d.port) })
    assert.are.equal(200, status, body .. d:log())
    assert.are.equal("2", version)
    local doc = json.decode(body)
    assert.are.equal("ann", doc.name)
    assert.are.equal("HTTP/1.1", doc.proto) -- the backend leg stays HTTP/1.1
    d:wait_totals("diverged", 1)
    local r = d:divergences().divergences[1]
    assert.are.equal("GET", r.method)
    assert.are.equal("json", r.body.kind)
    assert.are.same({ { op = "replace", path = "/name", primary = "ann",
                        candidate = "bob" } }, r.body.diffs)
    -- HTTP/1.1 clients on the same listener are unchanged.
    status, version = curl({ ("http://127.0.0.1:%d/doc/2"):format(d.port) })
    assert.are.equal(200, status)
    assert.are.equal("1.1", version)
  end)

  it("sends plain requests to h2c:// backends", function()
    local stop = cleanup.new()
    finally(stop.run)
    local pp, cp = port.free(), port.free()
    local ng = stop.add(nginx.start{ servers = {
      primary = ("    listen 127.0.0.1:%d http2;\n"):format(pp) .. DOC:format("ann"),
      candidate = ("    listen 127.0.0.1:%d http2;\n"):format(cp) .. DOC:format("bob") } })
    assert(port.wait(pp, 10, ng.proc))
    assert(port.wait(cp, 10, ng.proc))
    local d = stop.add(shadowd.start{ text = function(addr)
      return config(addr, { primary = "h2c://127.0.0.1:" .. pp,
                            candidate = "h2c://127.0.0.1:" .. cp })
    end })
    for _, args in ipairs({ {}, { "--http2-prior-knowledge" } }) do
      args[#args + 1] = ("http://127.0.0.1:%d/doc/1"):format(d.port)
      local status, _, body = curl(args)
      assert.are.equal(200, status, body .. d:log())
      local doc = json.decode(body)
      assert.are.equal("ann", doc.name)
      assert.are.equal("HTTP/2.0", doc.proto)
    end
    d:wait_totals("diverged", 2)
    local r = d:divergences().divergences[1]
    assert.are.same({ { op = "replace", path = "/name", primary = "ann",
                        candidate = "bob" } }, r.body.diffs)
  end)
end)

describe("capture and replay of gRPC calls", function()
  local ok, why = grpc.available()
  if not ok then
    pending(why)
    return
  end

  it("captures calls over h2 and replays them to an h2c:// candidate", function()
    local stop = cleanup.new()
    finally(stop.run)
    local build = stop.add(grpc.build())
    local primary = stop.add(grpc.server(build, { label = "primary" }))
    local dir = process.tmpdir("shadow-grpc-replay")
    stop.add(function() process.rmdir(dir) end)
    local capture = dir .. "/capture.ndjson"
    -- No candidate at all: capture records what the primary answered.
    local text
    local d = shadowd.start{ text = function(addr)
      text = config(addr, { primary = primary.url, rate = 0,
                            descriptors = build.descriptors, capture = capture })
      return text
    end }
    stop.add(d)
    local target = "127.0.0.1:" .. d.port
    assert.are.equal(0, (grpc.call(build, target, "get", { id = 7, ["repeat"] = 2 })))
    assert.are.equal(0, (grpc.call(build, target, "list", { count = 3 })))
    -- Checked last, so the rest is checked whatever this call gives.
    local fail_code, fail_res, _, fail_out = grpc.call(build, target, "fail",
      { code = 5, message = "gone" })
    d:stop()
    local lines = process.read_lines(capture)
    assert.are.equal(4, #lines, (process.read_file(capture) or "") .. d:log())
    local first = json.decode(lines[1])
    assert.are.equal("h2", first.request.protocol, lines[1])
    assert.are.equal(GET, first.request.target)
    local saw_status = false
    for _, l in ipairs(lines) do
      local x = json.decode(l)
      for _, t in ipairs(x.response.trailers or {}) do
        if t[1] == "grpc-status" then saw_status = true end
      end
    end
    assert.is_true(saw_status, "no grpc-status trailer in the capture")

    -- The replay's config is the daemon's (its descriptors, its rules).
    local cfg = dir .. "/replay.lua"
    process.write_file(cfg, text)
    local function replay(cand)
      return process.run({ shadowd.binary(), "replay", "--config", cfg,
                           "--candidate", cand.url, capture }, nil, 60)
    end
    local same = stop.add(grpc.server(build, { label = "same" }))
    local code, out, err = replay(same)
    assert.are.equal(0, code, out .. err)
    assert.are.equal(4, #same:calls())

    local changed = stop.add(grpc.server(build, { variant = "name" }))
    code, out, err = replay(changed)
    assert.are.equal(1, code, out .. err)
    local recs = json.decode_lines(out)
    -- The two Get calls and the List: every name is upper-cased.
    assert.are.equal(3, #recs, out)
    for _, r in ipairs(recs) do
      if r.route == GET then
        assert.are.same({ { op = "replace", path = "/name", primary = "user-7",
                            candidate = "USER-7" } }, r.body.diffs)
      else
        assert.are.equal(LIST, r.route)
        assert.are.same({ "/0/name", "/1/name", "/2/name" },
          { r.body.diffs[1].path, r.body.diffs[2].path, r.body.diffs[3].path })
      end
    end
    -- The status error went through shadowd as the client's answer.
    assert.are.equal(5, fail_code, fail_out)
    assert.are.equal("gone", fail_res.details)
  end)
end)
