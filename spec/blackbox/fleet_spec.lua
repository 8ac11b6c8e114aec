-- A fleet that shares what it learns through a real redis-server: three
-- shadowd instances behind one nginx round-robin upstream report into one
-- store. The fleet's totals are the sum of the local ones; a field that
-- is noise only in aggregate (each instance under noise.min_samples) is
-- classed noise by every instance and proposed once; a signature seen by
-- all three is one group; redis stopped for 10 s under wrk costs clients
-- nothing and the views come back whole; POST /stats/reset?scope=fleet
-- starts a new window for all. Then the same against a three-master
-- Redis Cluster (the prefix's slot on another node: MOVED is followed),
-- a sentinel, TLS with an ACL user, and bad settings refused at load.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local redis = require "support.redis"
local cleanup = require "support.cleanup"
local process = require "support.process"
local http = require "support.http"
local port = require "support.port"
local json = require "support.json"
local browser = require "support.browser"
local socket = require "socket"

local FLUSH_MS = 200

-- The primary and the secondary run the same code: a random ts (noise);
-- the candidate also says "state": "ACTIVE" (a bug on every request).
local SERVICE = [[
  location /item { content_by_lua_block {
    local doc = { id = tonumber(ngx.var.arg_id) or 0,
                  ts = string.format("%%08x", math.random(0, 2147483647)),
                  state = %s }
    ngx.header["content-type"] = "application/json"
    ngx.print(require("cjson").encode(doc))
  } }
]]

local function backends()
  return nginx.start{
    http = "init_worker_by_lua_block { math.randomseed(ngx.now() * 1000 "
           .. "+ ngx.worker.pid()) }",
    servers = { primary = SERVICE:format('"active"'),
                secondary = SERVICE:format('"active"'),
                candidate = SERVICE:format('"ACTIVE"') } }
end

local function store_line(url, opts)
  return ("  store = shadow.redis(%q, %s),"):format(url, opts or
    ("{ prefix = \"fleet-spec\", flush_ms = %d }"):format(FLUSH_MS))
end

local function config(addr, ng, store, extra)
  return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q),
  secondary = shadow.http(%q),
  candidate = shadow.http(%q),
  sample = { rate = 1.0, key = function(req) return req.query end },
  route = function(req) return "GET /item" end,
  log = { capacity = 500 },
  noise = { confidence = 0.99, min_samples = 200 },
%s
%s
}
]]):format(addr.listen, addr.admin, ng:url("primary"), ng:url("secondary"),
           ng:url("candidate"), store, extra or "")
end

local function start_daemon(ng, store, extra, args)
  return shadowd.start{ text = function(a) return config(a, ng, store, extra)
  end, args = args }
end

-- nginx round-robin in front of the daemons.
local function front(daemons)
  local servers = {}
  for _, d in ipairs(daemons) do
    servers[#servers + 1] = ("    server 127.0.0.1:%d;"):format(d.port)
  end
  return nginx.start{
    http = "  upstream fleet {\n" .. table.concat(servers, "\n")
           .. "\n    keepalive 16;\n  }",
    servers = { front = [[
      location / { proxy_pass http://fleet; proxy_http_version 1.1;
                   proxy_set_header Connection ""; }]] } }
end

local function send(p, first, last)
  local c = assert(http.connect(p))
  for id = first, last do
    local res = assert(c:request{ path = "/item?id=" .. id })
    assert(res.status == 200, "status " .. res.status)
  end
  c:close()
end

local function stats(d, scope)
  return d:admin("/stats" .. (scope and ("?scope=" .. scope) or "")).json
end

-- Sum of each instance's local totals[field].
local function local_sum(daemons, field)
  local n = 0
  for _, d in ipairs(daemons) do n = n + stats(d, "local").totals[field] end
  return n
end

-- Waits until every instance's fleet view has totals[field] == want
-- (a function, re-read each time, or a number).
local function wait_fleet(daemons, field, want, timeout)
  local last
  local ok = port.wait_until(function()
    local w = type(want) == "function" and want() or want
    for _, d in ipairs(daemons) do
      local s = stats(d)
      last = ("scope %s, %s = %s, want %s, store %s"):format(s.scope, field,
        tostring(s.totals[field]), tostring(w), json.encode(s.store))
      if s.scope ~= "fleet" or s.totals[field] ~= w then return nil end
    end
    return true
  end, timeout or 10, 0.05)
  assert(ok, "fleet never reached it: " .. tostring(last))
end

local function by_field(noise)
  local t = {}
  for _, f in ipairs(noise.fields) do t[f.field] = f end
  return t
end

local function post(d, path)
  return http.request(d.admin_port, { method = "POST", path = path,
    headers = { ["content-type"] = "application/json" }, body = "{}" })
end

describe("a fleet of three shadowd behind nginx, one redis-server", function()
  local stop, ng, r, daemons, fr
  setup(function()
    stop = cleanup.new()
    ng = stop.add(backends())
    -- Appendonly, so a redis stopped and started again has what it had.
    r = stop.add(redis.start{ args = { "--appendonly", "yes" } })
    daemons = {}
    for i = 1, 3 do
      daemons[i] = stop.add(start_daemon(ng,
        store_line(("redis://127.0.0.1:%d/0"):format(r.port))))
    end
    fr = stop.add(front(daemons))
    -- 150 each: under noise.min_samples (200) on every instance.
    send(fr.ports.front, 1, 450)
  end)
  teardown(function() stop.run() end)

  it("shows fleet totals that are the sum of the local ones", function()
    assert.are.equal(450, local_sum(daemons, "requests"))
    for _, d in ipairs(daemons) do
      assert.is_true(stats(d, "local").totals.requests < 450)
    end
    wait_fleet(daemons, "requests", 450)
    wait_fleet(daemons, "compared", 450)
    local s = stats(daemons[1])
    assert.are.equal("connected", s.store.state)
    assert.are.equal(3, s.store.instances)
    assert.are.equal(0, s.store.errors_total)
    -- The fleet's keys, under the prefix's hash tag.
    local counts = r:hgetall("{fleet-spec}:0:counts")
    assert.are.equal("450", counts["t\31requests"])
    -- The fleet's verdict on /metrics: hold (the bug), on every instance.
    for _, d in ipairs(daemons) do
      local m = d:admin("/metrics").body
      assert.truthy(m:find("shadow_verdict_overall %-1"))
      assert.truthy(m:find("shadow_store_up 1", 1, true))
      assert.truthy(m:find('shadow_store_errors_total{reason="lost"} 0', 1,
                           true))
    end
  end)

  it("classes a field noise from fleet counts when no instance could",
     function()
    wait_fleet(daemons, "noise_compared", 450)
    for _, d in ipairs(daemons) do
      local loc = by_field(d:admin("/noise?scope=local").json)
      assert.are.equal("undecided", loc["body:/ts"].class)
      local fleet = by_field(d:admin("/noise").json)
      assert.are.equal("noise", fleet["body:/ts"].class)
      assert.are.equal("real", fleet["body:/state"].class)
      -- Proposed once, and alike on every instance.
      local text = d:admin("/noise?format=lua").body
      local _, n = text:gsub("/ts", "")
      assert.are.equal(1, n, text)
    end
    local a = daemons[1]:admin("/noise?format=lua").body
    assert.are.equal(a, daemons[2]:admin("/noise?format=lua").body)
    assert.are.equal(a, daemons[3]:admin("/noise?format=lua").body)
  end)

  it("merges a signature seen on all three into one group", function()
    local function group(d, scope)
      local g = d:admin("/divergences?group=signature"
                        .. (scope and "&scope=" .. scope or "")).json
      for _, x in ipairs(g.divergences) do
        if #x.fields == 1 and x.fields[1] == "body:/state" then return x end
      end
    end
    local ids, sum = {}, 0
    for _, d in ipairs(daemons) do
      local g = assert(group(d, "local"), "no local group")
      ids[#ids + 1] = g.signature
      sum = sum + g.count
    end
    assert.are.equal(ids[1], ids[2])
    assert.are.equal(ids[1], ids[3])
    assert.is_true(port.wait_until(function()
      local g = group(daemons[2])
      return g and g.count == sum
    end, 10), "the fleet's group never summed the three")
    local g = group(daemons[2])
    assert.are.equal(ids[1], g.signature)
    assert.is_table(g.exemplar)
    -- The fleet's records: every instance's, newest first, up to
    -- log.capacity.
    local recs = daemons[3]:admin("/divergences?limit=1000").json
    assert.are.equal(450, recs.total)
    local loc = daemons[3]:admin("/divergences?limit=1000&scope=local").json
    assert.is_true(loc.total < 450)
  end)

  it("shows the store and the instances reporting on the dashboard",
     function()
    if not browser.available() then
      pending("chromium is not installed (scripts/bootstrap installs it)")
      return
    end
    local dir = process.tmpdir("shadow-chromium")
    finally(function() process.rmdir(dir) end)
    local base = "http://127.0.0.1:" .. daemons[1].admin_port .. "/"
    local dom = browser.run(dir, base, { "--dump-dom" })
    assert.matches('data%-ready="1"', dom)
    local function card(name)
      return dom:match("<span>" .. name:gsub("%p", "%%%0")
                       .. "</span><b>(.-)</b>")
    end
    assert.are.equal("connected", card("fleet store"))
    assert.are.equal("3", card("instances (last minute)"))
    assert.are.equal("the fleet", card("showing"))
    assert.are.equal("450", card("requests"))
    dom = browser.run(dir, base .. "?scope=local", { "--dump-dom" })
    assert.are.equal("this instance", card("showing"))
    assert.are_not.equal("450", card("requests"))
  end)

  it("answers every client while redis is down for 10 s, then is whole",
     function()
    local wrk = process.spawn({ "wrk", "-t1", "-c8", "-d14s",
                                fr:url("front") .. "/item?id=7" })
    finally(function() wrk:stop(1) end)
    socket.sleep(2)
    r:kill()
    local down_at = socket.gettime()
    -- Every instance notices and counts it, and serves on.
    assert.is_true(port.wait_until(function()
      for _, d in ipairs(daemons) do
        local s = stats(d, "local")
        if s.store.state == "connected" or s.store.errors_total == 0 then
          return nil
        end
      end
      return true
    end, 8), "an instance never noticed redis going down")
    socket.sleep(10 - (socket.gettime() - down_at))
    r:restart()
    local how, code = wrk:wait(30)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    local out = wrk:output()
    assert.is_nil(out:find("Non%-2xx"), out)
    assert.is_nil(out:find("Socket errors"), out)
    assert.truthy(out:find("requests in"), out)
    -- Connected again (the backoff is at most 5 s), then whole within
    -- two flushes; the bound here is generous, the figure is printed.
    assert.is_true(port.wait_until(function()
      for _, d in ipairs(daemons) do
        if stats(d, "local").store.state ~= "connected" then return nil end
      end
      return true
    end, 15), "not all instances reconnected")
    local t0 = socket.gettime()
    wait_fleet(daemons, "requests", function()
      return local_sum(daemons, "requests")
    end, 10)
    print(("fleet whole %.0f ms after every instance reconnected"):format(
      (socket.gettime() - t0) * 1000))
    for _, d in ipairs(daemons) do
      local s = stats(d, "local")
      assert.is_true(s.store.errors_total > 0)
      assert.are.equal(0, s.store.dropped)
    end
  end)

  it("starts a new window for the fleet on POST /stats/reset?scope=fleet",
     function()
    local before = local_sum(daemons, "requests")
    local res = assert(post(daemons[2], "/stats/reset?scope=fleet"))
    assert.are.equal(200, res.status, res.body)
    assert.are.equal("fleet", json.decode(res.body).scope)
    wait_fleet(daemons, "requests", 0)
    -- Local counts go on; the fleet counts only what follows.
    assert.are.equal(before, local_sum(daemons, "requests"))
    send(fr.ports.front, 1, 30)
    wait_fleet(daemons, "requests", 30)
    assert.are.equal(1, stats(daemons[1]).store.epoch)
    -- Not a GET, and not without a store (see below).
    local bad = assert(http.get(daemons[1].admin_port,
                                "/stats?scope=everything"))
    assert.are.equal(400, bad.status)
  end)

  it("keeps its connection over a reload that leaves the store alone",
     function()
    local d = daemons[1]
    local id = stats(d).store.instance
    local text = process.read_file(d.config)
    process.write_file(d.config, text:gsub("capacity = 500",
                                           "capacity = 400"))
    local res = assert(post(d, "/reload"))
    assert.are.equal(200, res.status, res.body)
    assert.are.equal(id, stats(d).store.instance)
  end)
end)

describe("the fleet store", function()
  local ng
  setup(function() ng = backends() end)
  teardown(function() ng:stop() end)

  it("follows MOVED to the slot's master in a three-master cluster",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local c = stop.add(redis.cluster())
    -- A prefix whose slot is not on the node the URL names.
    local prefix
    for i = 1, 50 do
      local p = "cl" .. i
      if c:node_for("{" .. p .. "}:x") ~= c.nodes[1] then
        prefix = p
        break
      end
    end
    assert.is_not_nil(prefix)
    local daemons = {}
    for i = 1, 3 do
      daemons[i] = stop.add(start_daemon(ng, store_line(
        ("redis://127.0.0.1:%d/0"):format(c.nodes[1].port),
        ("{ prefix = %q, flush_ms = %d }"):format(prefix, FLUSH_MS))))
    end
    local fr = stop.add(front(daemons))
    send(fr.ports.front, 1, 90)
    wait_fleet(daemons, "requests", 90)
    local s = stats(daemons[1])
    assert.are.equal("connected", s.store.state)
    assert.is_true(s.store.errors.redirect >= 1)
    assert.are.equal(3, s.store.instances)
  end)

  it("in a cluster too: the slot's master stopped 10 s under wrk, then whole",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local c = stop.add(redis.cluster{ args = { "--appendonly", "yes" } })
    local daemons = {}
    for i = 1, 3 do
      daemons[i] = stop.add(start_daemon(ng, store_line(
        ("redis://127.0.0.1:%d/0"):format(c.nodes[1].port),
        ("{ prefix = \"outage\", flush_ms = %d }"):format(FLUSH_MS))))
    end
    local fr = stop.add(front(daemons))
    send(fr.ports.front, 1, 30)
    wait_fleet(daemons, "requests", 30)
    local master = c:node_for("{outage}:epoch")
    local wrk = process.spawn({ "wrk", "-t1", "-c8", "-d14s",
                                fr:url("front") .. "/item?id=7" })
    stop.add(function() wrk:stop(1) end)
    socket.sleep(2)
    master:kill()
    socket.sleep(10)
    master:restart()
    local how, code = wrk:wait(30)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    local out = wrk:output()
    assert.is_nil(out:find("Non%-2xx"), out)
    assert.is_nil(out:find("Socket errors"), out)
    wait_fleet(daemons, "requests", function()
      return local_sum(daemons, "requests")
    end, 30)
    for _, d in ipairs(daemons) do
      local s = stats(d, "local").store
      assert.is_true(s.errors_total > 0)
      assert.are.equal(0, s.dropped)
    end
  end)

  it("flushes once more when an instance stops", function()
    local stop = cleanup.new()
    finally(stop.run)
    local r = stop.add(redis.start())
    -- No flush but the first ones for a minute: what reaches redis is
    -- the last one's.
    local d = stop.add(start_daemon(ng, store_line(
      ("redis://127.0.0.1:%d/0"):format(r.port),
      "{ prefix = \"last\", flush_ms = 60000 }")))
    assert.is_true(port.wait_until(function()
      return stats(d, "local").store.flushes > 0
    end, 10))
    send(d.port, 1, 15)
    assert.is_nil(r:hgetall("{last}:0:counts")["t\31requests"])
    local how = d:stop()
    assert.are.equal("exited", how)
    assert.are.equal("15", r:hgetall("{last}:0:counts")["t\31requests"])
  end)

  it("finds the primary through a sentinel", function()
    local stop = cleanup.new()
    finally(stop.run)
    local m = stop.add(redis.start())
    local sen = stop.add(redis.sentinel(m, "shadowmaster"))
    local d = stop.add(start_daemon(ng, store_line(
      "redis://sentinel-names-the-host/0",
      ("{ flush_ms = %d, sentinel = { addrs = { \"127.0.0.1:%d\" }, "
       .. "master = \"shadowmaster\" } }"):format(FLUSH_MS, sen.port))))
    send(d.port, 1, 20)
    wait_fleet({ d }, "requests", 20)
    assert.are.equal("20", m:hgetall("{shadow}:0:counts")["t\31requests"])
  end)

  it("drops what waits past max_pending while redis is away, and counts it",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local r = stop.add(redis.start{ args = { "--appendonly", "yes" } })
    -- Two loops: the store reads the counters under the shared lock.
    local d = stop.add(start_daemon(ng, store_line(
      ("redis://127.0.0.1:%d/0"):format(r.port),
      ("{ flush_ms = %d, max_pending = 5 }"):format(FLUSH_MS)), nil,
      { "--workers", "2" }))
    send(d.port, 1, 10)
    wait_fleet({ d }, "requests", 10)
    r:kill()
    send(d.port, 11, 40)
    assert.is_true(port.wait_until(function()
      return stats(d, "local").store.dropped > 0
    end, 10), "nothing was dropped")
    r:restart()
    -- Connected again (with max_pending this small, what comes while it
    -- reconnects is dropped too), then more.
    assert.is_true(port.wait_until(function()
      return stats(d, "local").store.state == "connected"
    end, 15))
    send(d.port, 41, 50)
    -- The fleet has what came before and after, not what was dropped.
    local fleet_n
    assert.is_true(port.wait_until(function()
      fleet_n = stats(d).totals.requests
      return fleet_n >= 20
    end, 10), "fleet stuck at " .. tostring(fleet_n) .. ": "
                 .. json.encode(stats(d, "local").store))
    assert.is_true(fleet_n < 50, "nothing was lost: " .. fleet_n)
    assert.are.equal(50, stats(d, "local").totals.requests)
    local m = d:admin("/metrics").body
    assert.truthy(m:match("shadow_store_dropped_total [1-9]"), m)
  end)

  it("times out a redis that stops answering, and serves on", function()
    local signal = require "posix.signal"
    local stop = cleanup.new()
    finally(stop.run)
    local r = stop.add(redis.start())
    local d = stop.add(start_daemon(ng, store_line(
      ("redis://127.0.0.1:%d/0"):format(r.port))))
    send(d.port, 1, 10)
    wait_fleet({ d }, "requests", 10)
    -- Stopped, not gone: the connection stays open and silent.
    signal.kill(r.proc.pid, signal.SIGSTOP)
    stop.add(function() signal.kill(r.proc.pid, signal.SIGCONT) end)
    local t0 = socket.gettime()
    send(d.port, 11, 30)
    assert.is_true(socket.gettime() - t0 < 2, "requests waited for redis")
    assert.is_true(port.wait_until(function()
      return stats(d, "local").store.errors.timeout > 0
    end, 10), "no timeout counted")
    signal.kill(r.proc.pid, signal.SIGCONT)
    wait_fleet({ d }, "requests", 30, 15)
  end)

  it("speaks TLS and authenticates as an ACL user", function()
    local stop = cleanup.new()
    finally(stop.run)
    -- The default user may read but not write: only the ACL user flushes.
    local r = stop.add(redis.start{ tls = true, users = {
      "default on nopass ~* &* +@all -@write",
      "shadow on >s3cret ~* &* +@all" } })
    local opts = ("{ flush_ms = %d, username = \"shadow\", password = %%q, "
                  .. "tls = { ca_file = %q } }"):format(FLUSH_MS, r.tls.ca)
    local url = ("rediss://127.0.0.1:%d/0"):format(r.port)
    local d = stop.add(start_daemon(ng, store_line(url,
                                                   opts:format("s3cret"))))
    send(d.port, 1, 20)
    wait_fleet({ d }, "requests", 20)
    assert.are.equal(0, stats(d).store.errors_total)
    -- A wrong password: refused, counted, and the proxy serves on.
    local bad = stop.add(start_daemon(ng, store_line(url,
                                                     opts:format("wrong"))))
    send(bad.port, 1, 5)
    assert.is_true(port.wait_until(function()
      return stats(bad, "local").store.errors.auth > 0
    end, 10))
    assert.are.equal("local", stats(bad).scope)
    -- Without the CA: the certificate is refused.
    local untrusted = stop.add(start_daemon(ng, store_line(url,
      ("{ flush_ms = %d, username = \"shadow\", password = \"s3cret\" }")
      :format(FLUSH_MS))))
    assert.is_true(port.wait_until(function()
      local s = stats(untrusted, "local").store
      return s.errors.connect > 0 and s.last_error:find("tls") ~= nil
    end, 10))
  end)

  it("refuses bad settings at load, naming them", function()
    local dir = process.tmpdir("shadow-fleet-check")
    finally(function() process.rmdir(dir) end)
    local cases = {
      { 'shadow.redis("http://127.0.0.1:6379")', "redis://" },
      { 'shadow.redis("redis://127.0.0.1:99999/0")', "bad port" },
      { 'shadow.redis("redis://127.0.0.1:6379/zero")', "database" },
      { 'shadow.redis("redis://127.0.0.1:6379", { flush_ms = "1s" })',
        "store.flush_ms must be a number" },
      { 'shadow.redis("redis://127.0.0.1:6379", { flush_ms = 0 })',
        "store.flush_ms must be between" },
      { 'shadow.redis("redis://127.0.0.1:6379", { nope = 1 })',
        "unknown field store.nope" },
      { 'shadow.redis("redis://127.0.0.1:6379", { tls = { ca_file = "/x" } })',
        "store.tls is for rediss://" },
      { 'shadow.redis("rediss://127.0.0.1:6379", { tls = { ca_file = '
        .. '"/nonexistent/ca.pem" } })', "/nonexistent/ca.pem" },
      { 'shadow.redis("redis://h:1", { sentinel = { addrs = { "nope" }, '
        .. 'master = "m" } })', "not host:port" },
      { 'shadow.redis("redis://h:1", { sentinel = { addrs = { "a:1" } } })',
        "needs master" },
      { '{ url = "redis://h:1" }', "store must be shadow.redis" },
      { 'shadow.redis("redis://h:1", { username = "u" })',
        "username needs a password" },
    }
    for _, case in ipairs(cases) do
      local path = dir .. "/shadow.lua"
      process.write_file(path, ([[
local shadow = require "shadow"
return { listen = "127.0.0.1:1", admin = "127.0.0.1:2",
         primary = shadow.http("http://127.0.0.1:3"), store = %s }
]]):format(case[1]))
      local code, out, err = process.run({ shadowd.binary(), "--check",
                                           "--config", path })
      assert.are_not.equal(0, code, case[1])
      assert.truthy((out .. err):find(case[2], 1, true),
                    case[1] .. ": " .. out .. err)
    end
    -- A good one is summed up by --check.
    local path = dir .. "/shadow.lua"
    process.write_file(path, [[
local shadow = require "shadow"
return { listen = "127.0.0.1:1", admin = "127.0.0.1:2",
         primary = shadow.http("http://127.0.0.1:3"),
         store = shadow.redis("redis://u:pw@127.0.0.1:6379/2",
                              { prefix = "p", flush_ms = 500 }) }
]])
    local code, out = process.run({ shadowd.binary(), "--check", "--config",
                                    path })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("store      redis://127.0.0.1:6379/2 (prefix p, "
                           .. "flush every 500 ms", 1, true), out)
    assert.is_nil(out:find("pw", 1, true), out)
  end)

  it("needs a store for a fleet reset, and serves with a store down",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local plain = stop.add(start_daemon(ng, ""))
    local res = assert(post(plain, "/stats/reset?scope=fleet"))
    assert.are.equal(409, res.status)
    assert.are.equal(json.null, stats(plain).store)
    -- Nothing listens there: requests are served, the store is down.
    local d = stop.add(start_daemon(ng, store_line(
      ("redis://127.0.0.1:%d/0"):format(port.free()))))
    send(d.port, 1, 20)
    local s = stats(d)
    assert.are.equal("local", s.scope)
    assert.are.equal(20, s.totals.requests)
    assert.are_not.equal("connected", s.store.state)
    res = assert(post(d, "/stats/reset?scope=fleet"))
    assert.are.equal(503, res.status)
  end)
end)
