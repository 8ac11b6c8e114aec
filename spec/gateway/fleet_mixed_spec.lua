-- A gateway nginx and a shadowd instance in one fleet view: both in front
-- of the same nginx backends, both with a store on one real redis-server
-- under one prefix. Each answers for the fleet: the totals are the sum of
-- the two local ones, the instance list has one of each kind, a fault
-- seen by both is one signature group, and the stream holds the records
-- of both. Pending when this shadowd has no fleet store (the daemon's
-- half is another branch of the same issue).
local nginx = require "support.nginx"
local gateway = require "support.gateway"
local shadowd = require "support.shadowd"
local redis = require "support.redis"
local http = require "support.http"
local json = require "support.json"
local process = require "support.process"
local port = require "support.port"
local cleanup = require "support.cleanup"

local PREFIX = "mixed-spec"
local FLUSH_MS = 100

local BACKEND = [[
    location /users/ {
      default_type application/json;
      return 200 '{"id":"$uri","version":"%s","name":"Ann"}';
    }
]]

local function store_line(url)
  return ('store = require("shadow").redis(%q, { prefix = %q, '
    .. "flush_ms = %d }),"):format(url, PREFIX, FLUSH_MS)
end

-- Whether this shadowd takes a store (`shadowd --check` on a config
-- with one).
local function daemon_has_store(url)
  local dir = process.tmpdir("shadow-mixed-check")
  local path = dir .. "/check.lua"
  process.write_file(path, ([[
local shadow = require "shadow"
return {
  listen = "127.0.0.1:1", admin = "127.0.0.1:2",
  primary = shadow.http("http://127.0.0.1:3"),
  candidate = shadow.http("http://127.0.0.1:4"),
  %s
}
]]):format(store_line(url)))
  local code = process.run({ shadowd.binary(), "--check", "--config", path },
                           nil, 30)
  process.rmdir(dir)
  return code == 0
end

local function admin_json(res)
  assert.equal(200, res.status, res.body)
  return json.decode(res.body)
end

describe("a gateway nginx and a shadowd in one fleet", function()
  local stop, ng, r, gw, d, url
  setup(function()
    stop = cleanup.new()
    ng = stop.add(nginx.start{ servers = {
      primary = BACKEND:format("v1"), candidate = BACKEND:format("v2") } })
    r = stop.add(redis.start())
    url = ("redis://127.0.0.1:%d/0"):format(r.port)
  end)
  teardown(function() stop.run() end)

  it("shows one view from either, the sum of both", function()
    if not daemon_has_store(url) then
      pending("this shadowd has no fleet store")
      return
    end
    gw = stop.add(gateway.start{
      primary = ng.ports.primary, candidate = ng.ports.candidate,
      change = { { "log = { capacity = 1000 },",
                   "log = { capacity = 1000 }, " .. store_line(url) } } })
    d = stop.add(shadowd.start{ text = function(a)
      return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q),
  candidate = shadow.http(%q),
  sample = { rate = 1.0, key = function(req) return req.headers["x-user-id"] end },
  log = { capacity = 1000 },
  %s
}
]]):format(a.listen, a.admin, ng:url("primary"), ng:url("candidate"),
           store_line(url))
    end })
    for i = 1, 5 do
      local res = assert(http.get(gw.port, "/users/" .. i,
                                  { ["x-user-id"] = "u" .. i }))
      assert.equal(200, res.status)
    end
    for i = 1, 3 do
      local res = assert(http.get(d.port, "/users/" .. i,
                                  { ["x-user-id"] = "u" .. i }))
      assert.equal(200, res.status)
    end
    local function gstats(scope)
      return admin_json(gw:admin("stats" .. (scope and ("?scope=" .. scope)
                                             or "")))
    end
    local function dstats(scope)
      return d:admin("/stats" .. (scope and ("?scope=" .. scope) or "")).json
    end
    -- Each has compared its own pairs.
    assert(port.wait_until(function()
      return gstats("local").totals.compared == 5
        and dstats("local").totals.compared == 3
    end, 10), "the pairs were not all compared")
    -- Then both see the fleet: 8 requests, 8 divergences.
    local last
    local ok = port.wait_until(function()
      local g, s = gstats(), dstats()
      last = { gateway = g.totals, shadowd = s.totals, gs = g.store,
               ds = s.store }
      return g.totals.diverged == 8 and s.totals.diverged == 8
        and g.store.instances == 2 and s.store.instances == 2
    end, 15)
    assert(ok, "no common view: " .. json.encode(last))
    local g, s = gstats(), dstats()
    assert.equal("fleet", g.scope)
    assert.equal("fleet", s.scope)
    for _, f in ipairs({ "requests", "sampled", "compared", "diverged" }) do
      assert.equal(gstats("local").totals[f] + dstats("local").totals[f],
                   g.totals[f], f)
      assert.equal(g.totals[f], s.totals[f], f)
    end
    assert.equal(8, g.routes["GET /users/:id"].diverged)
    assert.equal(8, s.routes["GET /users/:id"].diverged)
    assert.same({ gateway = 1, shadowd = 1 }, g.store.kinds)
    -- The same fault, seen by both: one group of 8, in both views.
    local gg = admin_json(gw:admin("divergences?group=signature"))
    local dg = d:admin("/divergences?group=signature").json
    assert.equal(1, #gg.divergences, json.encode(gg))
    assert.equal(1, #dg.divergences, json.encode(dg))
    assert.equal(8, gg.divergences[1].count)
    assert.equal(8, dg.divergences[1].count)
    assert.equal(gg.divergences[1].signature, dg.divergences[1].signature)
    -- The records of both are in the stream.
    assert.equal(8, admin_json(gw:admin("divergences?limit=100")).total)
  end)
end)
