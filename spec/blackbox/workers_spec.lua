-- --workers N: several event loops on one address, one set of counters,
-- one ring log, one reload.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local http = require "support.http"
local json = require "support.json"
local port = require "support.port"

local BACKENDS = {
  primary = [[
    location / { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print('{"v":1,"who":"primary"}')
    } }
  ]],
  candidate = [[
    location / { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print('{"v":2,"who":"primary"}')
    } }
  ]],
}

describe("shadowd --workers 2", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       log_capacity = 100000, args = { "--workers", "2" } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("serves from both loops and counts everything once", function()
    -- Many short connections, so the kernel spreads them over both
    -- listeners.
    local n = 200
    for i = 1, n do
      local res = assert(http.get(d.port, "/item/" .. i))
      assert.are.equal(200, res.status)
      assert.are.equal('{"v":1,"who":"primary"}', res.body)
    end
    local stats = d:wait_totals("compared", n)
    assert.are.equal(n, stats.totals.requests)
    assert.are.equal(n, stats.totals.diverged)
    local routed = 0
    for _, r in pairs(stats.routes) do routed = routed + r.compared end
    assert.are.equal(n, routed)
    -- One ring: every record, with ids unique across loops.
    local list = d:divergences(1000).divergences
    assert.are.equal(n, #list)
    local ids = {}
    for _, rec in ipairs(list) do
      assert.is_nil(ids[rec.id])
      ids[rec.id] = true
    end
    assert.truthy(d:admin("/metrics").body:find("shadow_requests_total " .. n,
                                                1, true))
    -- Every request reached the candidate exactly once.
    local seen, count = {}, 0
    for _, r in ipairs(ng:wait_requests("candidate", n)) do
      if not seen[r.uri] then count = count + 1 end
      seen[r.uri] = true
    end
    assert.are.equal(n, count)
  end)

  it("reloads every loop", function()
    local text = process.read_file(d.config)
    process.write_file(d.config, text:gsub("rate = 1", "rate = 0"))
    local res = assert(http.request(d.admin_port,
                                    { method = "POST", path = "/reload",
                                      headers = { ["Content-Type"] = "application/json" } }))
    assert.are.equal(200, res.status)
    assert.are.equal(2, json.decode(res.body).generation)
    -- The swap happens on each loop's own thread, just after the answer;
    -- /stats shows each loop's generation.
    port.wait_until(function()
      local g = d:stats().loop_generations
      return #g == 2 and g[1] == 2 and g[2] == 2
    end, 10, 0.02)
    local before = d:stats().totals.sampled
    for i = 1, 50 do
      assert.are.equal(200, assert(http.get(d.port, "/after/" .. i)).status)
    end
    local after = d:wait_totals("requests", 250)
    assert.are.equal(before, after.totals.sampled)
  end)

  it("stops on SIGTERM with exit 0", function()
    local how, code = d:stop()
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
  end)
end)

-- The runaway-hook guard is per thread: two workers each running a hook
-- that never returns, while the main thread loads a reload's script, all
-- get stopped (a shared deadline let one thread clear another's).
describe("shadowd --workers 2 with runaway hooks", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       key = '(function() if req.path == "/spin" then '
                         .. 'while true do end end return "k" end)()',
                       limits = { hook_timeout_ms = 100 },
                       args = { "--workers", "2" } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("stops each of them, and a reload meanwhile", function()
    local clients = {}
    for i = 1, 12 do
      clients[i] = process.spawn({ "curl", "-s", "-o", "/dev/null",
                                   "--max-time", "10", "-w", "%{http_code}",
                                   d:url() .. "/spin?c=" .. i })
    end
    -- A reload loads the script on the main thread while hooks run.
    local text = process.read_file(d.config)
    process.write_file(d.config, text .. "\n-- changed\n")
    local res = assert(http.request(d.admin_port,
                                    { method = "POST", path = "/reload",
                                      headers = { ["Content-Type"] = "application/json" } }))
    assert.are.equal(200, res.status)
    for i, c in ipairs(clients) do
      local how, code = c:wait(15)
      assert.are.equal("exited", how, "client " .. i .. " still waits")
      assert.are.equal(0, code)
      assert.are.equal("200", process.read_file(c.stdout))
      c:stop()
    end
    local s = d:stats()
    assert.are.equal(12, s.script_errors.key)
  end)
end)

-- The noise table is shared by the loops: both learn into it while the
-- admin renders it.
describe("shadowd --workers 2 with a secondary", function()
  local SERVICE = [[
    location / { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print(string.format('{"rid":"%%08x","v":%d}',
                              math.random(0, 2147483647)))
    } }
  ]]
  local ng, d
  setup(function()
    ng = nginx.start{ servers = { primary = SERVICE:format(1),
                                  secondary = SERVICE:format(1),
                                  candidate = SERVICE:format(2) } }
    d = shadowd.start{ text = function(a)
      return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q), secondary = shadow.http(%q),
  candidate = shadow.http(%q),
  sample = { rate = 1.0 },
  route = function(req) return "GET /" end,
  noise = { min_samples = 50 },
}
]]):format(a.listen, a.admin, ng:url("primary"), ng:url("secondary"),
           ng:url("candidate"))
    end, args = { "--workers", "2" } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("learns from both loops into one table", function()
    local n = 300
    for i = 1, n do
      assert.are.equal(200, assert(http.get(d.port, "/item/" .. i)).status)
      if i % 50 == 0 then assert.are.equal(200, d:admin("/noise").status) end
    end
    local stats = d:wait_totals("compared", n)
    assert.are.equal(n, stats.totals.noise_compared)
    local class = {}
    for _, f in ipairs(d:admin("/noise").json.fields) do
      class[f.field] = f.class
    end
    assert.are.equal("noise", class["body:/rid"])
    assert.are.equal("real", class["body:/v"])
  end)
end)
