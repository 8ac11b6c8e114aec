-- shadow.gateway in a fleet: two nginx gateway nodes (examples/nginx/
-- nginx.conf with a store) in front of the same nginx backends, sending
-- their counts to one real redis-server, and the fleet read back through
-- their admin APIs; Redis stopped under wrk load; a three-master Redis
-- Cluster whose redirects the gateway follows.
local nginx = require "support.nginx"
local gateway = require "support.gateway"
local redis = require "support.redis"
local http = require "support.http"
local json = require "support.json"
local process = require "support.process"
local port = require "support.port"
local cleanup = require "support.cleanup"
local luaserver = require "support.luaserver"
local xxh3 = require "support.xxh3"
local bit = require "bit"

local US = "\31"

local BACKEND = [[
    location /users/ {
      default_type application/json;
      return 200 '{"id":"$uri","version":"%s","name":"Ann"}';
    }
    location /same { return 200 "same\n"; }
]]

local function backends()
  return nginx.start{ servers = { primary = BACKEND:format("v1"),
                                  candidate = BACKEND:format("v2") } }
end

-- A gateway node with a store on redis_port (prefix and flush_ms given).
-- ca: a CA file for rediss:// (lua_ssl_trusted_certificate).
local function node(ng, redis_url, prefix, extra, ca)
  local change = {
    { "log = { capacity = 1000 },",
      ("log = { capacity = 1000 }, store = require('shadow').redis(%q, "
       .. "{ prefix = %q, flush_ms = 100, timeout_ms = 300%s }),")
        :format(redis_url, prefix, extra or "") },
  }
  if ca then
    change[2] = { "lua_socket_log_errors off;",
                  ("lua_socket_log_errors off; lua_ssl_trusted_certificate "
                   .. "%s;"):format(ca) }
  end
  return gateway.start{
    primary = ng.ports.primary, candidate = ng.ports.candidate,
    change = change,
  }
end

-- The node's store errors by reason, from its /metrics.
local function store_errors(gw)
  local t = {}
  for reason, n in gw:admin("metrics").body
      :gmatch('shadow_store_errors_total{reason="([%w_]+)"} (%d+)') do
    t[reason] = tonumber(n)
  end
  return t
end

local function get(gw, path)
  local res = assert(http.get(gw.port, path, { ["x-user-id"] = path }))
  assert.equal(200, res.status)
  return res
end

local function admin_json(gw, path)
  local res = gw:admin(path)
  assert.equal(200, res.status, res.body)
  return json.decode(res.body)
end

-- Waits until every pair a node sampled is compared (the legs run after
-- the responses).
local function settle(gw, n)
  assert(port.wait_until(function()
    return admin_json(gw, "stats?scope=local").totals.compared >= n
  end, 10), "legs still in flight")
end

local function counts(r, prefix)
  local epoch = tonumber(r:cli("--raw", "GET", "{" .. prefix .. "}:epoch")
                          :match("%d+") or "0")
  return r:hgetall(("{%s}:%d:counts"):format(prefix, epoch))
end

describe("two gateway nodes with one Redis", function()
  local ng, r, a, b
  local PREFIX = "shadow:gw-spec"
  setup(function()
    ng = backends()
    r = redis.start()
    local url = "redis://127.0.0.1:" .. r.port .. "/0"
    a = node(ng, url, PREFIX)
    b = node(ng, url, PREFIX)
  end)
  teardown(function() cleanup.stop_all(a, b, r, ng) end)

  it("sends their counts under the schema's names, and the fleet is "
     .. "their sum", function()
    for i = 1, 6 do get(a, "/users/" .. i) end
    for i = 1, 4 do get(b, "/users/" .. i) end
    get(b, "/same")
    settle(a, 6)
    settle(b, 5)
    local c = redis.wait(function()
      local c = counts(r, PREFIX)
      return tonumber(c["t" .. US .. "compared"] or "0") == 11 and c
    end, 10, "11 compared pairs in Redis")
    assert.equal("11", c["t" .. US .. "requests"])
    assert.equal("11", c["t" .. US .. "sampled"])
    assert.equal("10", c["t" .. US .. "diverged"])
    local route = "r" .. US .. "GET /users/:id" .. US
    assert.equal("10", c[route .. "compared"])
    assert.equal("10", c[route .. "diverged"])
    assert.equal("10", c[route .. "part.body"])
    -- Body kinds by the daemon's numbers: 0 is json.
    assert.equal("10", c[route .. "kind.0"])
    assert.equal("1", c["r" .. US .. "GET /same" .. US .. "compared"])
    assert.equal("10", c["f" .. US .. "body:/version"])
    assert.equal("11", c["h" .. US .. "primary" .. US .. "count"])
    -- The fleet's view, from either node, is the sum of the two.
    local fa = admin_json(a, "stats")
    local fb = admin_json(b, "stats")
    local la = admin_json(a, "stats?scope=local")
    local lb = admin_json(b, "stats?scope=local")
    assert.equal("fleet", fa.scope)
    assert.equal("fleet", fa.store.scope)
    assert.equal("local", la.scope)
    assert.equal("connected", la.store.state)
    assert.equal("redis://127.0.0.1:" .. r.port .. "/0", la.store.url)
    assert.equal(6, la.totals.requests)
    assert.equal(5, lb.totals.requests)
    for _, f in ipairs({ "requests", "sampled", "compared", "diverged" }) do
      assert.equal(la.totals[f] + lb.totals[f], fa.totals[f], f)
      assert.equal(fa.totals[f], fb.totals[f], f)
    end
    assert.equal(10, fa.routes["GET /users/:id"].diverged)
    assert.equal(2, fa.store.instances)
    assert.equal(2, fa.store.kinds.gateway)
    -- One signature for the same fault seen on both nodes.
    local groups = admin_json(a, "divergences?group=signature")
    assert.equal(1, groups.total)
    assert.equal(10, groups.divergences[1].count)
    assert.equal("GET /users/:id", groups.divergences[1].route)
    -- The daemon's signature: XXH3-64 of route, parts and folded fields.
    local text = "GET /users/:id\n4\nbody:/version"
    assert.equal(bit.tohex(xxh3.hash(text), 16),
                 groups.divergences[1].signature)
    assert.same({ "body" }, groups.divergences[1].parts)
    assert.same({ "body:/version" }, groups.divergences[1].fields)
    assert.equal(text .. "\n", r:cli("--raw", "HGET",
      ("{%s}:0:sig"):format(PREFIX),
      groups.divergences[1].signature .. US .. "key"))
    -- Every record of both nodes is in the fleet's stream.
    local d = admin_json(b, "divergences?limit=100")
    assert.equal(10, d.total)
    assert.equal(10, #d.divergences)
    assert.equal(6, admin_json(a, "divergences?scope=local").total)
    -- The fleet's verdict gauges; the counters stay the node's own.
    local m = a:admin("metrics").body
    assert.matches("shadow_requests_total 6\n", m, 1, true)
    assert.matches("shadow_store_errors_total", m, 1, true)
    assert.matches("shadow_store_dropped_total 0", m, 1, true)
    local inst = r:hgetall("{" .. PREFIX .. "}:instances")
    local n = 0
    for _, v in pairs(inst) do
      n = n + 1
      assert.equal("gateway", json.decode(v).kind)
    end
    assert.equal(2, n)
    -- Every key expires.
    local ttl = tonumber(r:cli("PTTL", ("{%s}:0:counts"):format(PREFIX))
                          :match("%-?%d+"))
    assert.is_true(ttl > 0)
  end)

  it("starts a new window for the fleet on POST stats/reset?scope=fleet",
     function()
    -- Without a token: only a JSON request, which no web page's form
    -- can make.
    local plain = assert(http.request(a.admin_port, { method = "POST",
      path = "/_shadow/stats/reset?scope=fleet" }))
    assert.equal(415, plain.status)
    local res = assert(http.request(a.admin_port, { method = "POST",
      path = "/_shadow/stats/reset?scope=fleet",
      headers = { ["Content-Type"] = "application/json" } }))
    assert.equal(200, res.status, res.body)
    assert.equal("ok", json.decode(res.body).result)
    local epoch = json.decode(res.body).epoch
    assert.is_true(epoch >= 1)
    -- Once both nodes sent to the new window (a request counted before a
    -- node saw the reset belongs to the old one).
    for _, gw in ipairs({ a, b }) do
      assert(port.wait_until(function()
        return admin_json(gw, "stats?scope=local").store.flushed_epoch
          == epoch
      end, 10), "a node never saw the new epoch")
    end
    get(b, "/users/99")
    settle(b, 6)
    -- Its request may reach Redis a flush before its comparison does.
    local c = redis.wait(function()
      local c = counts(r, PREFIX)
      return tonumber(c["t" .. US .. "diverged"] or "0") >= 1 and c
    end, 10, "the new window's counts")
    -- Only what came after the reset.
    assert.equal("1", c["t" .. US .. "requests"])
    assert.equal("1", c["t" .. US .. "diverged"])
    assert.equal(1, admin_json(a, "stats").totals.requests)
    local bad = assert(http.request(a.admin_port, { method = "POST",
      path = "/_shadow/stats/reset",
      headers = { ["Content-Type"] = "application/json" } }))
    assert.equal(400, bad.status)
  end)
end)

describe("a gateway node reloaded", function()
  it("keeps sending across nginx -s reload, nothing counted twice",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(backends())
    local r = stop.add(redis.start())
    local gw = stop.add(node(ng, "redis://127.0.0.1:" .. r.port, "reload"))
    for i = 1, 4 do get(gw, "/users/" .. i) end
    settle(gw, 4)
    redis.wait(function()
      return counts(r, "reload")["t" .. US .. "compared"] == "4"
    end, 10, "the first counts")
    local before = gw:pids()
    gw.proc:kill(process.SIGHUP)
    assert(port.wait_until(function()
      local now = gw:pids()
      for _, p in ipairs(now) do
        for j = 2, #before do if before[j] == p then return false end end
      end
      return #now >= 3
    end, 10), "the workers were not replaced")
    for i = 5, 7 do get(gw, "/users/" .. i) end
    settle(gw, 7)
    redis.wait(function()
      return counts(r, "reload")["t" .. US .. "compared"] == "7"
    end, 10, "the counts after the reload")
    -- A few more flushes: still 7, and one instance.
    local flushes = admin_json(gw, "stats?scope=local").store.flushes
    assert(port.wait_until(function()
      return admin_json(gw, "stats?scope=local").store.flushes
        >= flushes + 3
    end, 10), "no more flushes")
    local c = counts(r, "reload")
    assert.equal("7", c["t" .. US .. "requests"])
    assert.equal("7", c["t" .. US .. "compared"])
    local n = 0
    for _ in pairs(r:hgetall("{reload}:instances")) do n = n + 1 end
    assert.equal(1, n)
  end)
end)

-- A TCP proxy in front of Redis that, for the Nth transaction with
-- counts in it (HINCRBY ... EXEC), waits for Redis's answer and then
-- closes the client's connection without it: a flush Redis applied that
-- the gateway never hears of.
local LOSSY = [==[
local socket = require "socket"
local port, rport, drop_at = tonumber(arg[1]), tonumber(arg[2]),
  tonumber(arg[3])
local srv = assert(socket.bind("127.0.0.1", port))
srv:settimeout(0)
local peer, client, dropping, execs, counting = {}, {}, {}, 0, {}
local function close(s)
  local o = peer[s]
  s:close()
  peer[s], client[s] = nil, nil
  if o then
    o:close()
    peer[o], client[o], dropping[o] = nil, nil, nil
  end
end
while true do
  local list = { srv }
  for s in pairs(peer) do list[#list + 1] = s end
  local ready = socket.select(list, nil, 1)
  for _, s in ipairs(ready) do
    if s == srv then
      local c = srv:accept()
      if c then
        local u = socket.tcp()
        assert(u:connect("127.0.0.1", rport))
        c:settimeout(0)
        u:settimeout(0)
        peer[c], peer[u], client[c] = u, c, true
      end
    elseif peer[s] then
      local data, err, partial = s:receive(65536)
      data = data or partial
      if data and #data > 0 then
        if client[s] and data:find("HINCRBY", 1, true) then
          counting[s] = true
        end
        if client[s] and counting[s] and data:find("EXEC", 1, true) then
          counting[s] = nil
          execs = execs + 1
          if execs == drop_at then dropping[peer[s]] = true end
        end
        if dropping[s] then
          close(s)
          io.stdout:write("dropped\n")
          io.stdout:flush()
        else
          local o = peer[s]
          o:settimeout(5)
          o:send(data)
          o:settimeout(0)
        end
      end
      if err == "closed" and peer[s] then close(s) end
    end
  end
end
]==]

describe("a gateway that never hears its flush answered", function()
  it("counts it once when Redis applied it", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(backends())
    local r = stop.add(redis.start())
    local proxy = stop.add(luaserver.start("shadow-lossy", LOSSY,
                                           { r.port, 1 }))
    local gw = stop.add(node(ng, "redis://127.0.0.1:" .. proxy.port,
                             "lossy"))
    for i = 1, 5 do get(gw, "/users/" .. i) end
    assert(port.wait_until(function()
      return (process.read_file(proxy.dir .. "/out") or "")
        :find("dropped", 1, true)
    end, 10), "the proxy dropped no answer")
    settle(gw, 5)
    redis.wait(function()
      return counts(r, "lossy")["t" .. US .. "compared"] == "5"
    end, 10, "5 compared in Redis")
    local flushes = admin_json(gw, "stats?scope=local").store.flushes
    assert(port.wait_until(function()
      return admin_json(gw, "stats?scope=local").store.flushes
        >= flushes + 3
    end, 10), "no more flushes")
    local c = counts(r, "lossy")
    assert.equal("5", c["t" .. US .. "requests"])
    assert.equal("5", c["t" .. US .. "compared"])
    assert.is_true((store_errors(gw).closed or 0) > 0)
  end)
end)

describe("a gateway whose flush goes unanswered", function()
  it("counts it once whether Redis applied it or not", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(backends())
    local r = stop.add(redis.start())
    local gw = stop.add(node(ng, "redis://127.0.0.1:" .. r.port, "paused"))
    get(gw, "/users/1")
    settle(gw, 1)
    redis.wait(function()
      return counts(r, "paused")["t" .. US .. "requests"] == "1"
    end, 10, "the first counts")
    -- Reads are answered, writes wait 1.5 s: a flush's EXEC outlives the
    -- gateway's 300 ms timeout, and the connection is closed under it.
    r:cli("CLIENT", "PAUSE", "1500", "WRITE")
    for i = 2, 4 do get(gw, "/users/" .. i) end
    assert(port.wait_until(function()
      return (store_errors(gw).timeout or 0) > 0
    end, 10), "no flush timed out")
    settle(gw, 4)
    redis.wait(function()
      return counts(r, "paused")["t" .. US .. "requests"] == "4"
    end, 10, "the counts after the pause")
    -- And they stay right.
    local flushes = admin_json(gw, "stats?scope=local").store.flushes
    assert(port.wait_until(function()
      return admin_json(gw, "stats?scope=local").store.flushes
        >= flushes + 3
    end, 10), "no more flushes")
    assert.equal("4", counts(r, "paused")["t" .. US .. "requests"])
    assert.equal("4", counts(r, "paused")["t" .. US .. "compared"])
  end)
end)

describe("a gateway whose Redis stops under load", function()
  it("serves every client, counts the errors and sends the counts whole "
     .. "once Redis is back", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(backends())
    -- Persisted, so the restarted server has what was sent before.
    local r = stop.add(redis.start{ args = { "--appendonly", "yes",
                                             "--appendfsync", "always" } })
    local url = "redis://127.0.0.1:" .. r.port .. "/0"
    local a = stop.add(node(ng, url, "outage"))
    local b = stop.add(node(ng, url, "outage"))
    get(a, "/users/1")
    get(b, "/users/2")
    redis.wait(function()
      return counts(r, "outage")["t" .. US .. "requests"] == "2"
    end, 10, "the first counts")
    local wrk = stop.add(process.spawn({ "wrk", "-t1", "-c8", "-d4s",
                                         "-H", "x-user-id: k",
                                         a:url() .. "/users/7" }))
    stop.add(function() wrk:stop(1) end)
    r:kill()
    -- While it is down: the fleet view says so and falls back to local,
    -- and the failed flushes are counted.
    local down = port.wait_until(function()
      local s = admin_json(a, "stats")
      return s.store.state == "down" and s
    end, 10)
    assert(down, "the store never showed down")
    assert.equal("local", down.store.scope)
    assert.equal("unavailable", down.store.fleet)
    assert.equal("exited", wrk:wait(30))
    local out = wrk:output()
    assert.not_matches("Non%-2xx", out)
    assert.not_matches("Socket errors", out)
    local sent = tonumber(out:match("(%d+) requests in"))
    assert.is_true(sent > 100, out)
    local m = a:admin("metrics").body
    local errs = 0
    for n in m:gmatch('shadow_store_errors_total{reason="[%w_]+"} (%d+)') do
      errs = errs + tonumber(n)
    end
    assert.is_true(errs > 0, m)
    r:restart()
    -- Back: every request of both nodes is in the fleet's counts, and b's
    -- own flush has gone through again. b reads the fleet on each /stats
    -- but flushes on its backoff (up to 2 s after its last failure), so
    -- the counts can be whole while its state still says down.
    local total, last = 0, nil
    local fleet = port.wait_until(function()
      local la = admin_json(a, "stats?scope=local").totals.requests
      local lb = admin_json(b, "stats?scope=local").totals.requests
      total = la + lb
      local s = admin_json(b, "stats")
      last = s
      return s.store.scope == "fleet" and s.totals.requests == total
        and s.store.state == "connected" and s
    end, 15)
    assert(fleet, "the fleet's counts never became whole again, or b "
      .. "never flushed again: "
      .. total .. " " .. json.encode(last.totals) .. json.encode(last.store))
    -- wrk does not count the requests still in flight when it stops (at
    -- most one per connection).
    assert.is_true(total >= sent + 2 and total <= sent + 2 + 8,
                   total .. " counted, " .. sent .. " sent")
  end)
end)

describe("a gateway with a three-master Redis Cluster", function()
  it("follows MOVED to the node of its slot, and ASK while the slot "
     .. "migrates", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(backends())
    -- A cluster node also listens on its port + 10000 (the cluster bus):
    -- its port must leave room for that, and the bus port must be free.
    local free = port.free
    port.free = function()
      for _ = 1, 200 do
        local p = free()
        if p <= 55535 and not port.accepts(p + 10000) then return p end
      end
      error("no port with a free cluster bus port")
    end
    local ok, cl = pcall(redis.cluster)
    port.free = free
    assert(ok, cl)
    stop.add(cl)
    local prefix = "cluster-spec"
    -- The slot's owner answers a GET of the key itself; the others MOVED.
    local owner
    for _, n in ipairs(cl.nodes) do
      local _, out, err = n:cli_raw({ "GET", "{" .. prefix .. "}:epoch" })
      if not (out .. err):find("MOVED", 1, true) then owner = n end
    end
    -- Point the gateway at a node that does not own the slot.
    local other
    for _, n in ipairs(cl.nodes) do
      if n.port ~= owner.port then other = n end
    end
    local gw = stop.add(node(ng, "redis://127.0.0.1:" .. other.port,
                             prefix))
    for i = 1, 3 do get(gw, "/users/" .. i) end
    settle(gw, 3)
    local c = redis.wait(function()
      local c = owner:hgetall("{" .. prefix .. "}:0:counts")
      return c["t" .. US .. "compared"] == "3" and c
    end, 10, "the counts on the slot's owner")
    assert.equal("3", c["t" .. US .. "diverged"])
    assert.equal(3, admin_json(gw, "stats").totals.requests)
    assert.equal("fleet", admin_json(gw, "stats").store.scope)
    -- The slot migrates to another node: the owner answers ASK for its
    -- keys, and the flush goes to the importing node behind ASKING.
    local target
    for _, n in ipairs(cl.nodes) do
      if n.port ~= owner.port then target = n end
    end
    local slot = owner:cli("CLUSTER", "KEYSLOT", "{" .. prefix .. "}")
      :match("%d+")
    local function id(n) return n:cli("CLUSTER", "MYID"):match("%x+") end
    target:cli("CLUSTER", "SETSLOT", slot, "IMPORTING", id(owner))
    owner:cli("CLUSTER", "SETSLOT", slot, "MIGRATING", id(target))
    -- The slot's keys move, as redis-cli --cluster reshard moves them;
    -- every key then answers ASK on the owner.
    local keys = owner:lines("CLUSTER", "GETKEYSINSLOT", slot, "100")
    local migrate = { "MIGRATE", "127.0.0.1", tostring(target.port), "", "0",
                      "5000", "KEYS" }
    for _, k in ipairs(keys) do
      if k ~= "" then migrate[#migrate + 1] = k end
    end
    assert.matches("OK", owner:cli(unpack(migrate)))
    get(gw, "/users/4")
    settle(gw, 4)
    -- Read on the importing node, as a client that was sent there by ASK.
    local key = "{" .. prefix .. "}:0:counts"
    local got
    port.wait_until(function()
      local code, out = process.run({ "sh", "-c", ("printf 'ASKING\\n"
        .. "HGET %s t\\037requests\\n' | %s -p %d --raw")
        :format(key, redis.cli, target.port) })
      got = code == 0 and out:match("\n(%d+)\n?$")
      return got == "4"
    end, 10)
    assert.equal("4", got, json.encode(admin_json(gw, "stats").store)
      .. " keys " .. json.encode(keys) .. " owner now "
      .. owner:cli("CLUSTER", "GETKEYSINSLOT", slot, "100"))
    -- The owner no longer has it: it sends the client on.
    assert.matches("ASK", owner:cli("EXISTS", key))
    -- The admin's reads follow ASK too.
    assert.equal(4, admin_json(gw, "stats").totals.requests)
  end)
end)

describe("a gateway with a TLS Redis and an ACL user", function()
  it("authenticates as the user over verified TLS, and counts a wrong "
     .. "password and an unverified name apart", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(backends())
    local r = stop.add(redis.start{ tls = true,
      users = { "gw on >gw-secret ~* &* +@all" } })
    local good = stop.add(node(ng, ("rediss://gw:gw-secret@127.0.0.1:%d/0")
      :format(r.port), "tls", "", r.tls.ca))
    local wrong = stop.add(node(ng, ("rediss://gw:nope@127.0.0.1:%d/0")
      :format(r.port), "tls", "", r.tls.ca))
    local badname = stop.add(node(ng, ("rediss://gw:gw-secret@127.0.0.1:%d")
      :format(r.port), "tls", ", tls = { server_name = 'wrong.example' }",
      r.tls.ca))
    get(good, "/users/1")
    settle(good, 1)
    assert(port.wait_until(function()
      return counts(r, "tls")["t" .. US .. "compared"] == "1"
    end, 10), "the TLS node's counts: "
      .. json.encode(admin_json(good, "stats?scope=local").store)
      .. good:error_log())
    -- /stats names the store without its password.
    assert.equal(("rediss://gw@127.0.0.1:%d/0"):format(r.port),
                 admin_json(good, "stats").store.url)
    assert(port.wait_until(function()
      return (store_errors(wrong).auth or 0) > 0
    end, 10), "no auth error counted")
    assert(port.wait_until(function()
      return (store_errors(badname).tls or 0) > 0
    end, 10), "no tls error counted")
    local inst = r:hgetall("{tls}:instances")
    local n = 0
    for _ in pairs(inst) do n = n + 1 end
    assert.equal(1, n)
  end)
end)

describe("a gateway with a Redis behind Sentinel", function()
  it("asks the sentinel where the master is", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(backends())
    local master = stop.add(redis.start())
    local sentinel = stop.add(redis.sentinel(master, "gwmaster"))
    -- The URL's own address is not the master's: the sentinel's answer is
    -- what counts.
    local gw = stop.add(node(ng, "redis://127.0.0.1:1/0", "sentinel",
      (", sentinel = { addrs = { '127.0.0.1:%d' }, master = 'gwmaster' }")
        :format(sentinel.port)))
    for i = 1, 2 do get(gw, "/users/" .. i) end
    settle(gw, 2)
    redis.wait(function()
      return counts(master, "sentinel")["t" .. US .. "compared"] == "2"
    end, 10, "the counts on the master")
    assert.equal(2, admin_json(gw, "stats").totals.requests)
  end)
end)
