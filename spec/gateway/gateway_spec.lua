-- shadow.gateway inside Debian's nginx: examples/nginx/nginx.conf on
-- loopback ports (a master and two workers) in front of real nginx
-- backends, driven by raw HTTP clients and wrk.
local nginx = require "support.nginx"
local gateway = require "support.gateway"
local hostile = require "support.hostile"
local http = require "support.http"
local json = require "support.json"
local process = require "support.process"
local port = require "support.port"
local cleanup = require "support.cleanup"
local xxh3 = require "support.xxh3"
local socket = require "socket"

-- 300 KiB of chunked body from the primary, one byte changed in the
-- candidate's; small JSON documents that differ in one field.
local BIG = [[
    location /big {
      default_type application/octet-stream;
      content_by_lua_block {
        local piece = ("0123456789abcdef"):rep(1024)
        for i = 1, 19 do ngx.print(piece) ngx.flush(true) end
        ngx.print(%q)
      }
    }]]

local function backend(version, last)
  return ([[
    location /users/ {
      default_type application/json;
      return 200 '{"id":"$uri","version":"%s","name":"Ann"}';
    }
    location /echo {
      default_type application/json;
      content_by_lua_block {
        ngx.req.read_body()
        ngx.print('{"method":"', ngx.req.get_method(), '","body":"',
                  ngx.req.get_body_data() or "", '"}')
      }
    }
    location /same { return 200 "same\n"; }
    location /down { return 502 "primary down\n"; }
]]):format(version) .. BIG:format(last)
end

local function headers_of(key) return { ["x-user-id"] = key } end

describe("the gateway example config", function()
  local ng, gw
  setup(function()
    ng = nginx.start{ servers = { primary = backend("v1", "P"),
                                  candidate = backend("v2", "C") } }
    gw = gateway.start{
      primary = ng.ports.primary, candidate = ng.ports.candidate,
      change = {
        { "limits = { diff_bytes = 1048576 }",
          "limits = { diff_bytes = 65536 }" },
        { 'mirror_methods = { "GET", "HEAD", "OPTIONS" }',
          'mirror_methods = { "GET", "HEAD", "OPTIONS", "POST" }' },
        -- Which worker answered, so the spec can see both at work.
        { 'proxy_set_header Connection "";',
          'proxy_set_header Connection ""; add_header x-worker $pid;' },
        { 'ignore = { headers = { "x-request-id" } }',
          'ignore = { headers = { "x-request-id", "x-worker" } }' },
      },
    }
  end)
  teardown(function() cleanup.stop_all(gw, ng) end)

  it("answers with the primary's bytes and compares the candidate's",
     function()
    local res = assert(http.get(gw.port, "/users/7", headers_of("u-7")))
    assert.equal(200, res.status)
    assert.equal('{"id":"/users/7","version":"v1","name":"Ann"}', res.body)
    local big = assert(http.get(gw.port, "/big", headers_of("u-8")))
    assert.equal(200, big.status)
    assert.equal(("0123456789abcdef"):rep(1024):rep(19) .. "P", big.body)
    -- The candidate was asked as a shadow, with the client's key.
    local seen = ng:wait_uri("candidate", "/users/7")
    assert.equal(1, #seen)
    assert.equal("1", seen[1].shadow)
    assert.equal("u-7", seen[1].key)
    assert.equal("", ng:requests_for("primary", "/users/7")[1].shadow)

    local d
    port.wait_until(function()
      for _, r in ipairs(gw:divergences().divergences) do
        if r.path == "/users/7" then d = r end
      end
      return d
    end, 10)
    assert(d, "no divergence for /users/7")
    -- The daemon's record shape.
    assert.is_number(d.id)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", d.time)
    assert.equal("GET /users/:id", d.route)
    assert.equal("GET", d.method)
    assert.equal("u-7", d.key)
    assert.same({ differs = false, primary = 200, candidate = 200 }, d.status)
    assert.is_false(d.headers.differs)
    assert.equal("json", d.body.kind)
    assert.same({ { op = "replace", path = "/version", primary = "v1",
                    candidate = "v2" } }, d.body.diffs)
    assert.is_number(d.latency_ms.primary)
    assert.is_number(d.latency_ms.candidate)
    assert.is_number(d.first_byte_ms.primary)
    assert.is_number(d.first_byte_ms.candidate)
    assert.same({}, d.noise)

    -- Past diff_bytes the bodies compare by length and digest.
    local b
    port.wait_until(function()
      for _, r in ipairs(gw:divergences().divergences) do
        if r.path == "/big" then b = r end
      end
      return b
    end, 10)
    assert(b, "no divergence for /big")
    assert.equal("digest", b.body.kind)
    assert.is_true(b.body.differs)
    -- Each pair counted under the kind its record names.
    local routes = gw:stats().routes
    assert.equal(1, routes["GET /big"].body_kinds.digest)
    assert.equal(0, routes["GET /big"].body_kinds.json)
    assert.equal(1, routes["GET /users/:id"].body_kinds.json)
  end)

  it("leaves equal answers out of the ring and counts them", function()
    local before = gw:stats().totals
    for i = 1, 5 do
      local res = assert(http.get(gw.port, "/same", headers_of("s" .. i)))
      assert.equal("same\n", res.body)
    end
    local st = gw:wait_totals("compared", before.compared + 5)
    assert.equal(before.compared + 5, st.totals.compared)
    assert.equal(before.diverged, st.totals.diverged)
    for _, r in ipairs(gw:divergences().divergences) do
      assert.not_equal("/same", r.path)
    end
  end)

  it("mirrors a POST body when POST is allowed, and never HEAD's body",
     function()
    local res = assert(http.request(gw.port, { method = "POST",
      path = "/echo", body = "hello", headers = headers_of("p1") }))
    assert.equal('{"method":"POST","body":"hello"}', res.body)
    local seen = ng:wait_uri("candidate", "/echo")
    assert.equal(1, #seen)
    assert.equal("hello", seen[1].body)
    assert.equal("POST", seen[1].method)
    local head = assert(http.request(gw.port, { method = "HEAD",
      path = "/users/9", headers = headers_of("h1") }))
    assert.equal(200, head.status)
    assert.equal(1, #ng:wait_uri("candidate", "/users/9"))
  end)

  it("skips a pair whose primary failed and tells the client what it said",
     function()
    local before = gw:stats().totals.skipped.primary_error or 0
    local res = assert(http.get(gw.port, "/down", headers_of("d1")))
    assert.equal(502, res.status)
    assert.equal("primary down\n", res.body)
    -- A 502 the primary sent is an answer like any other: compared.
    assert.equal(1, #ng:wait_uri("candidate", "/down"))
    assert.equal(before, gw:stats().totals.skipped.primary_error or 0)
  end)

  it("shows all workers' divergences and counts at one address", function()
    local before = gw:stats().totals
    local workers, n = {}, 40
    local conns = {}
    for i = 1, 16 do conns[i] = assert(http.connect(gw.port)) end
    for i = 1, n do
      local c = conns[i % #conns + 1]
      local res = assert(c:request{ path = "/users/w" .. i,
                                    headers = headers_of("w" .. i) })
      assert.equal(200, res.status)
      workers[res.headers["x-worker"]] = true
    end
    for _, c in ipairs(conns) do c:close() end
    local count = 0
    for _ in pairs(workers) do count = count + 1 end
    assert.equal(2, count, "both workers answered")
    -- A pair counts compared after its diverged count and its record, and
    -- /stats reads compared first: once compared reads n more, whichever
    -- worker compared them, their counts and records are all there.
    local st = gw:wait_totals("compared", before.compared + n)
    assert.equal(before.diverged + n, st.totals.diverged)
    assert.equal(before.compared + n, st.totals.compared)
    assert.equal(before.requests + n, st.totals.requests)
    local paths = {}
    for _, r in ipairs(gw:divergences().divergences) do
      paths[r.path] = (paths[r.path] or 0) + 1
    end
    for i = 1, n do assert.equal(1, paths["/users/w" .. i], i) end
    -- Every admin request, whichever worker takes it, says the same.
    for _ = 1, 6 do
      assert.equal(st.totals.compared, gw:stats().totals.compared)
    end
    local metrics = gw:admin("metrics").body
    assert.matches("\nshadow_compared_total " .. st.totals.compared .. "\n",
                   metrics, 1, true)
    assert.matches('shadow_divergences_total{route="GET /users/:id",'
                   .. 'part="body",kind="json"}', metrics, 1, true)
    assert.matches("shadow_candidate_latency_seconds_bucket{le=\"+Inf\"}",
                   metrics, 1, true)
    -- The route's verdict as shadowd exports it: -1 for a hold.
    assert.matches('\nshadow_verdict{route="GET /users/:id"} -1\n', metrics,
                   1, true)
    require("support.prom").parse(metrics)
    -- The verdict is the daemon's for these counts.
    local v = st.verdict
    assert.equal("hold", v.decision)
    assert.equal(st.totals.compared, v.compared)
    assert.equal(st.totals.diverged, v.diverged)
  end)

  it("answers the admin API in the daemon's shapes", function()
    local res = gw:admin("divergences?limit=2")
    local doc = json.decode(res.body)
    assert.equal(2, #doc.divergences)
    assert.is_true(doc.total >= 2)
    assert.is_true(doc.divergences[1].id > doc.divergences[2].id)
    local by_route = json.decode(gw:admin(
      "divergences?route=GET%20/big&limit=10").body)
    assert.equal(1, by_route.total)
    assert.equal("/big", by_route.divergences[1].path)
    assert.equal(400, gw:admin("divergences?limit=x").status)
    assert.equal(404, gw:admin("nothing").status)
    local st = gw:stats()
    assert.is_table(st.totals.candidate_errors)
    assert.is_table(st.totals.skipped)
    assert.is_table(st.routes["GET /users/:id"].verdict)
    assert.same({ state = "closed", open = false }, st.breaker)
    assert.is_true((st.fields["body:/version"] or 0) > 0)
  end)

  it("keeps /metrics valid Prometheus text after a path that is not UTF-8",
     function()
    local before = gw:stats().totals
    for _, path in ipairs({ "/m\xff\xfe", "/" .. ("y"):rep(600) }) do
      local c = assert(http.connect(gw.port))
      assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        .. "x-user-id: hostile\r\nConnection: close\r\n\r\n"))
      local res = c:read_response()
      c:close()
      assert.is_number(res and res.status) -- the primary's 404, as it is
    end
    gw:wait_totals("compared", before.compared + 2)
    local text = gw:admin("metrics").body
    local dir = process.tmpdir("shadow-prom")
    process.write_file(dir .. "/metrics", text)
    local rc, out, err = process.run({ "sh", "-c",
      "promtool check metrics < " .. dir .. "/metrics" })
    process.rmdir(dir)
    assert.is_true(rc == 0 or rc == 3, out .. err)
    assert.truthy(text:find('route="GET /m\xef\xbf\xbd\xef\xbf\xbd"', 1, true))
    for route in text:gmatch('route="([^"]*)"') do
      assert.is_true(#route <= 256, route)
    end
  end)
end)

describe("the gateway with a candidate that takes 1 s", function()
  -- A fast primary, a candidate that answers after 1 s, and the gateway
  -- with a candidate timeout above that; both stopped by stop. Returns
  -- the gateway and the backends.
  local function start_slow(stop)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 "fast\n"; } ]],
      candidate = [[ location / {
        content_by_lua_block { ngx.sleep(1) ngx.print("slow\n") }
      } ]] } })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
                                       candidate = ng.ports.candidate,
                                       change = { { "timeout_ms = 1000",
                                                    "timeout_ms = 3000" } } })
    return gw, ng
  end

  it("never holds the client's keep-alive connection, and compares later",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local gw = start_slow(stop)
    local c = assert(http.connect(gw.port))
    local t0 = socket.gettime()
    for i = 1, 20 do
      local res = assert(c:request{ path = "/k" .. i,
                                    headers = headers_of("k" .. i) })
      assert.equal(200, res.status)
      assert.equal("fast\n", res.body)
    end
    local elapsed = socket.gettime() - t0
    c:close()
    assert.is_true(elapsed < 0.5, ("20 requests took %.3f s"):format(elapsed))
    local st = gw:wait_totals("compared", 20, 10)
    assert.equal(20, st.totals.compared)
    assert.equal(20, st.totals.diverged)
    assert.same({}, st.totals.candidate_errors)
    local d = gw:divergences(1).divergences[1]
    assert.is_true(d.latency_ms.candidate >= 990, d.latency_ms.candidate)
    assert.is_true(d.latency_ms.primary < 100, d.latency_ms.primary)
  end)

  it("finishes the legs in flight across nginx -s reload, counts kept",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local gw, ng = start_slow(stop)
    local before = gw:pids()
    for i = 1, 10 do
      local res = assert(http.get(gw.port, "/r" .. i, headers_of("r" .. i)))
      assert.equal("fast\n", res.body)
    end
    -- The legs are now waiting on the candidate: reload (SIGHUP).
    gw.proc:kill(process.SIGHUP)
    port.wait_until(function()
      local now = gw:pids()
      for _, p in ipairs(now) do
        for j = 2, #before do if before[j] == p then return false end end
      end
      return #now >= 3
    end, 10)
    local st = gw:wait_totals("compared", 10, 10)
    assert.equal(10, st.totals.compared)
    assert.equal(10, st.totals.requests)
    assert.same({}, st.totals.candidate_errors)
    assert.equal(10, #ng:wait_requests("candidate", 10))
    -- New workers serve and count on top of the old ones' counts.
    assert(http.get(gw.port, "/after", headers_of("after")))
    assert.equal(11, gw:wait_totals("compared", 11, 10).totals.compared)
  end)
end)

describe("the gateway's sampling", function()
  it("selects exactly the keys the daemon's rule selects", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ok = [[ location / { return 200 "ok\n"; } ]]
    local ng = stop.add(nginx.start{ servers = { primary = ok,
                                                 candidate = ok } })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
      candidate = ng.ports.candidate,
      change = { { "rate = 1.0", "rate = 0.3" } } })
    local expected = {}
    local c = assert(http.connect(gw.port))
    for i = 1, 600 do
      local key = "user-" .. i
      if xxh3.sampled(key, 0.3) then expected[#expected + 1] = key end
      local res = assert(c:request{ path = "/s", headers = headers_of(key) })
      assert.equal("ok\n", res.body)
    end
    c:close()
    local seen = {}
    for _, r in ipairs(ng:wait_requests("candidate", #expected, 10)) do
      seen[#seen + 1] = r.key
    end
    table.sort(expected)
    table.sort(seen)
    assert.is_true(#expected > 120 and #expected < 240)
    assert.same(expected, seen)
    local st = gw:wait_totals("compared", #expected)
    assert.equal(600, st.totals.requests)
    assert.equal(#expected, st.totals.sampled)
  end)
end)

describe("the gateway in front of a hostile candidate", function()
  it("holds its in-flight cap with a candidate that never answers",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 "ok\n"; } ]] } })
    local h = stop.add(hostile.start{ mode = "hang" })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
      candidate = h.port,
      change = { { "max_inflight_shadow = 256", "max_inflight_shadow = 3" },
                 { "timeout_ms = 1000", "timeout_ms = 2000" },
                 { "failures = 5", "failures = 1000" } } })
    local conns = {}
    for i = 1, 4 do conns[i] = assert(http.connect(gw.port)) end
    for i = 1, 60 do
      local res = assert(conns[i % 4 + 1]:request{ path = "/h" .. i,
        headers = headers_of("h" .. i) })
      assert.equal(200, res.status)
      assert.equal("ok\n", res.body)
    end
    for _, c in ipairs(conns) do c:close() end
    local st = gw:stats()
    -- Three legs per worker at most; the rest skipped as overload.
    assert.is_true(st.totals.sampled <= 6 + 2, st.totals.sampled)
    assert.is_true((st.totals.skipped.overload or 0) >= 50,
                   json.encode(st.totals.skipped))
    assert.is_true(h:counts().max_hanging <= 6,
                   json.encode(h:counts()))
    -- The hanging legs time out and are counted.
    st = port.wait_until(function()
      local s = gw:stats()
      return (s.totals.candidate_errors.timeout or 0) >= 2 and s
    end, 10)
    assert(st, "no timeouts counted")
  end)

  it("opens its breaker on a refusing candidate, and probes after the "
     .. "cooldown", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 "ok\n"; } ]] } })
    local h = stop.add(hostile.start{ mode = "refuse" })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
      candidate = h.port,
      change = { { "cooldown_ms = 10000", "cooldown_ms = 700" } } })
    local c = assert(http.connect(gw.port))
    local function burst(from, n)
      for i = from, from + n - 1 do
        local res = assert(c:request{ path = "/b" .. i,
                                      headers = headers_of("b" .. i) })
        assert.equal("ok\n", res.body)
        -- Each leg ends before the next request is chosen.
        port.wait_until(function()
          local s = gw:stats().totals
          local done = 0
          for _, v in pairs(s.candidate_errors) do done = done + v end
          for _, v in pairs(s.skipped) do done = done + v end
          return done + s.compared >= i
        end, 5)
      end
    end
    burst(1, 10)
    local st = gw:stats()
    assert.same({ state = "open", open = true }, st.breaker)
    assert.equal(5, st.totals.candidate_errors.reset)
    assert.equal(5, st.totals.skipped.breaker)
    assert.equal(5, h:counts().refuse)
    -- After the cooldown one probe goes through, fails, and reopens it.
    socket.sleep(0.8)
    burst(11, 3)
    st = gw:stats()
    assert.equal(6, h:counts().refuse)
    assert.equal("open", st.breaker.state)
    assert.equal(7, st.totals.skipped.breaker)
    -- A candidate that answers again closes it at the next probe.
    h:set_mode("ok")
    socket.sleep(0.8)
    burst(14, 3)
    assert.equal("closed", gw:stats().breaker.state)
    assert.matches("shadow_breaker_open 0", gw:admin("metrics").body, 1,
                   true)
    c:close()
  end)

  it("shows the client nothing of a candidate committing every fault",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 '{"ok":true}'; } ]] } })
    local h = stop.add(hostile.start{ mode = "random", slow = 0.05 })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
      candidate = h.port,
      change = { { "timeout_ms = 1000", "timeout_ms = 300" },
                 { "failures = 5", "failures = 1000000" } } })
    local wrk = process.spawn({ "wrk", "-t1", "-c32", "-d5s",
                                gw:url() .. "/chaos" })
    stop.add(function() wrk:stop(1) end)
    local how = wrk:wait(30)
    assert.equal("exited", how, "wrk did not finish")
    local out = wrk:output()
    assert.not_matches("Non%-2xx", out)
    assert.not_matches("Socket errors", out)
    local reqs = tonumber(out:match("(%d+) requests in"))
    assert.is_true(reqs > 500, out)
    local st = port.wait_until(function()
      local s = gw:stats()
      local done = s.totals.compared
      for _, v in pairs(s.totals.candidate_errors) do done = done + v end
      for _, v in pairs(s.totals.skipped) do done = done + v end
      return done >= s.totals.sampled and s
    end, 10)
    assert(st, "legs still in flight 10 s after wrk")
    local errors = 0
    for _, v in pairs(st.totals.candidate_errors) do errors = errors + v end
    assert.is_true(errors > 0)
    assert.is_true(st.totals.compared > 0)
    assert.not_matches("%[alert%]", gw:error_log())
    assert.not_matches("%[crit%]", gw:error_log())
  end)
end)

describe("the gateway's counts", function()
  -- A worker counts a pair compared after its other tallies and its
  -- record (the admin reads compared first): so a client that sees
  -- compared reach n finds those n pairs in diverged and /divergences.
  -- Every write to the shadow dict is numbered here, in its order.
  it("counts a pair compared after its diverged count and its record",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = backend("v1", "P"), candidate = backend("v2", "C") } })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
      candidate = ng.ports.candidate,
      change = {
        { "lua_shared_dict shadow 16m;", [[lua_shared_dict shadow 16m;
  lua_shared_dict writes 1m;
  init_worker_by_lua_block {
    local shadow, writes = ngx.shared.shadow, ngx.shared.writes
    local methods = getmetatable(shadow).__index
    for _, name in ipairs({ "incr", "set", "safe_set", "add" }) do
      local f = methods[name]
      methods[name] = function(dict, key, ...)
        local a, b, c = f(dict, key, ...)
        if dict == shadow then
          writes:set(key, writes:incr("#", 1, 0))
        end
        return a, b, c
      end
    end
  }]] },
        { "location /_shadow/ {", [[location = /_writes {
      content_by_lua_block {
        local w = ngx.shared.writes
        local out = {}
        for _, k in ipairs(w:get_keys(0)) do
          out[#out + 1] = ('"%s":%d'):format((k:gsub("\1", "/")), w:get(k))
        end
        ngx.print("{", table.concat(out, ","), "}")
      }
    }
    location /_shadow/ {]] },
      } })
    local res = assert(http.get(gw.port, "/users/7", headers_of("u-7")))
    assert.equal(200, res.status)
    gw:wait_totals("compared", 1, 10)
    local d = gw:divergences().divergences[1]
    assert(d, "no record")
    local w = json.decode(assert(http.get(gw.admin_port, "/_writes")).body)
    local route = "r/GET /users/:id/"
    assert.is_number(w[route .. "compared"])
    assert.is_number(w[route .. "diverged"])
    assert.is_number(w["ring/" .. d.id % 1000])
    assert.is_true(w[route .. "compared"] > w[route .. "diverged"])
    assert.is_true(w[route .. "compared"] > w["ring/" .. d.id % 1000])
    assert.is_true(w[route .. "compared"] > w["f/body:/version"])
  end)
end)

describe("the gateway's hooks and rules", function()
  it("normalizes, routes, redacts and survives a failing hook", function()
    local stop = cleanup.new()
    finally(stop.run)
    local function side(v, cookie)
      return ([[ location / {
        default_type application/json;
        add_header set-cookie "sid=%s";
        return 200 '{"version":"%s","at":"%s"}';
      } ]]):format(cookie, v, v)
    end
    local ng = stop.add(nginx.start{ servers = {
      primary = side("v1", "secret-1"), candidate = side("v2", "secret-2") } })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
      candidate = ng.ports.candidate,
      change = {
        { 'key = function(req) return req.headers["x-user-id"] end,',
          [[key = function(req)
          local k = req.headers["x-user-id"]
          if k == "boom" then error("no key for you") end
          return k
        end,]] },
        { 'ignore = { headers = { "x-request-id" } },',
          [[ignore = { json = { "/at" } },
      redact = { key = "gateway-spec-redact-key-0123456789" },
      route = function(req) return "all " .. req.method end,
      normalize = function(rec, side, req)
        rec.body = rec.body:gsub('"v%d"', '"v"')
        assert(req.path == "/n" and req.headers["x-user-id"])
        return rec
      end,]] },
      } })
    for _, k in ipairs({ "a", "b", "boom" }) do
      local res = assert(http.get(gw.port, "/n", headers_of(k)))
      assert.equal(200, res.status)
      assert.matches('"version":"v1"', res.body, 1, true)
    end
    local st = gw:wait_totals("compared", 2)
    assert.equal(1, st.script_errors.key)
    assert.equal(3, st.totals.requests)
    assert.equal(2, st.totals.sampled)
    -- The bodies agree once normalized and /at is ignored; the cookies
    -- differ, and the record shows neither secret.
    assert.equal(2, st.totals.diverged)
    assert.equal(2, st.routes["all GET"].compared)
    local d = gw:divergences(1).divergences[1]
    assert.equal("all GET", d.route)
    assert.is_false(d.body.differs)
    assert.equal(1, #d.headers.diffs, json.encode(d.headers))
    local h = d.headers.diffs[1]
    assert.equal("set-cookie", h.name)
    -- The marks are HMAC-SHA256 under redact.key, as openssl(1) makes it.
    local function mark(v)
      local dir = process.tmpdir("shadow-hmac")
      process.write_file(dir .. "/v", v)
      local rc, out = process.run({ "openssl", "dgst", "-sha256", "-hmac",
        "gateway-spec-redact-key-0123456789", "-r", dir .. "/v" })
      process.rmdir(dir)
      assert(rc == 0, "openssl failed")
      return "[redacted hmac-sha256:" .. out:sub(1, 16) .. "]"
    end
    assert.equal(mark("sid=secret-1"), h.primary)
    assert.equal(mark("sid=secret-2"), h.candidate)
    assert.not_equal(h.primary, h.candidate)
    assert.not_matches("secret", json.encode(gw:divergences()))
    -- A page rebound to loopback under its own name is refused (421).
    local res = assert(http.request(gw.admin_port, { path = "/_shadow/stats",
      headers = { Host = "attacker.example:" .. gw.admin_port } }))
    assert.equal(421, res.status)
    res = assert(http.request(gw.admin_port, { path = "/_shadow/stats",
      headers = { Host = "localhost:" .. gw.admin_port } }))
    assert.equal(200, res.status)
  end)

  it("applies rename, coerce, mask and time rules and counts their hits",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { default_type application/json;
        return 200 '{"user":{"email":"a@x","qty":"12","at":1700000000}}'; } ]],
      candidate = [[ location / { default_type application/json;
        return 200 '{"user":{"email_address":"a@x","qty":12,"at":"2023-11-14T22:13:20Z"}}'; } ]],
    } })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
      candidate = ng.ports.candidate,
      change = {
        { 'ignore = { headers = { "x-request-id" } },',
          [[ignore = { headers = { "x-request-id" } },
      rename = { ["/user/email"] = "/user/email_address" },
      coerce = { ["/user/qty"] = "number" },
      time = { ["/user/at"] = { unit = "instant", tolerance_ms = 0 } },
      mask = { ["/user/id"] = "uuid" },]] },
      } })
    for _, k in ipairs({ "a", "b" }) do
      assert.equal(200, assert(http.get(gw.port, "/r", headers_of(k))).status)
    end
    -- A pair counts its rule hits before compared, which /stats reads
    -- first: once both pairs are compared, their hits are counted.
    local st = gw:wait_totals("compared", 2)
    assert.equal(0, st.totals.diverged)
    assert.same({ ["rename:/user/email"] = 2, ["coerce:/user/qty"] = 2,
                  ["time:/user/at"] = 2, ["mask:/user/id"] = 0 },
                st.rule_hits)
    local metrics = gw:admin("metrics").body
    assert.matches('shadow_rule_hits_total{rule="rename:/user/email"} 2',
                   metrics, 1, true)
    assert.matches('shadow_rule_hits_total{rule="mask:/user/id"} 0',
                   metrics, 1, true)
  end)

  it("refuses a bad conf at startup, naming the field", function()
    local ok, err = pcall(gateway.start, { primary = 1, candidate = 2,
      change = { { "max_inflight_shadow = 256,",
                   "max_inflight_shadow = 256, lisen = 1," } } })
    assert.is_false(ok)
    assert.matches("unknown field lisen", err, 1, true)
    -- A redaction key short enough to guess is refused, and not quoted.
    ok, err = pcall(gateway.start, { primary = 1, candidate = 2,
      change = { { "max_inflight_shadow = 256,",
                   'max_inflight_shadow = 256, redact = { key = "k3y" },' } } })
    assert.is_false(ok)
    assert.matches("redact.key must be a string of at least 16 bytes", err,
                   1, true)
    assert.is_nil(err:find("k3y", 1, true))
  end)
end)
