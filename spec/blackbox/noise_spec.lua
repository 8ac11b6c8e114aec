-- Noise cancellation with three real backends (nginx + Lua): the primary
-- and the secondary run the same code, whose answers carry a timestamp, a
-- random id (in the body and a header), a shuffled array and a float
-- jittered in its 6th decimal; the candidate is that code with two bugs:
-- one field wrong on 2% of requests (id % 50 == 7), and the jittered float
-- off by 10% on another 10% (id % 10 == 3). After a few thousand requests
-- the noise is classed noise and proposed as rules, both bugs are real,
-- the divergence count is the bugs' count, and the proposed snippet,
-- pasted in and reloaded, leaves exactly the bugs.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local http = require "support.http"
local json = require "support.json"
local port = require "support.port"
local browser = require "support.browser"

local SERVICE = [[
  location /item { content_by_lua_block {
    local id = tonumber(ngx.var.arg_id) or 0
    local items = { { k = 1 }, { k = 2 }, { k = 3 }, { k = 4 }, { k = 5 } }
    for i = #items, 2, -1 do
      local j = math.random(i)
      items[i], items[j] = items[j], items[i]
    end
    local doc = {
      id = id,
      ts = os.date("!%%Y-%%m-%%dT%%H:%%M:%%S", ngx.time())
           .. string.format(".%%06dZ", math.random(0, 999999)),
      request_id = string.format("%%08x", math.random(0, 2147483647)),
      items = items,
      price = 10 + math.random(0, 9) * 1e-6,
      state = "active",
    }
    if %s then
      if id %% 50 == 7 then doc.state = "ACTIVE" end
      if id %% 10 == 3 then doc.price = doc.price * 1.1 end
    end
    ngx.header["content-type"] = "application/json"
    ngx.header["x-request-id"] = string.format("%%08x", math.random(0, 2147483647))
    ngx.print(require("cjson").encode(doc))
  } }
]]

-- The classifier calls a field of pure noise real in at most 1 -
-- confidence of runs (noise_calibration_spec.lua measures it). The shuffled
-- array varies in its shapes from request to request, so its verdict is a
-- draw: at 0.99, with four noise fields asserted, up to 4% of runs would
-- fail by design. At 0.999 that is under 0.4%, and both bugs stay far past
-- the bar (the state bug's lower margin is still about 0.7 points).
local CONFIDENCE = "0.999"

-- The config takes the proposed rules from learned_noise.lua beside it:
-- /noise's snippet saved as a module (a chunk returning the rules).
local function config(addr, ng)
  return ([[
local shadow = require "shadow"
local learned = require "learned_noise"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q),
  secondary = shadow.http(%q),
  candidate = shadow.http(%q),
  sample = { rate = 1.0, secondary_rate = 0.5,
             key = function(req) return req.query end },
  route = function(req) return "GET /item" end,
  log = { capacity = 5000 },
  noise = { confidence = %s, min_samples = 200 },
  ignore = learned.ignore, arrays = learned.arrays,
  tolerance = learned.tolerance,
}
]]):format(addr.listen, addr.admin, ng:url("primary"),
           ng:url("secondary"), ng:url("candidate"), CONFIDENCE)
end

local function save_rules(config_path, snippet)
  local dir = config_path:match("^(.*)/[^/]*$")
  process.write_file(dir .. "/learned_noise.lua", snippet)
end

-- Sends ids first..last on one keep-alive connection.
local function send(d, first, last)
  local c = assert(http.connect(d.port))
  for id = first, last do
    local res = assert(c:request{ path = "/item?id=" .. id })
    assert(res.status == 200, "status " .. res.status)
  end
  c:close()
end

local function bugs(first, last)
  local n = 0
  for id = first, last do
    if id % 50 == 7 or id % 10 == 3 then n = n + 1 end
  end
  return n
end

local function by_field(noise)
  local t = {}
  for _, f in ipairs(noise.fields) do t[f.field] = f end
  return t
end

describe("noise cancellation", function()
  local stop, ng, d, addr
  setup(function()
    stop = cleanup.new()
    ng = stop.add(nginx.start{
      http = "init_worker_by_lua_block { math.randomseed(ngx.now() * 1000 "
             .. "+ ngx.worker.pid()) }",
      servers = { primary = SERVICE:format("false"),
                  secondary = SERVICE:format("false"),
                  candidate = SERVICE:format("true") } })
    d = stop.add(shadowd.start{ text = function(a)
      addr = a
      return config(a, ng)
    end, files = { ["learned_noise.lua"] = "return {}\n" } })
    send(d, 1, 2500)
    d:wait_totals("compared", 2500, 30)
  end)
  teardown(function() stop.run() end)

  it("classes the noise as noise and both bugs as real", function()
    local noise = d:admin("/noise").json
    local f = by_field(noise)
    for _, name in ipairs({ "body:/ts", "body:/request_id",
                            "header:x-request-id", "body:/items" }) do
      assert.is_not_nil(f[name], name .. " was not learned")
      assert.are.equal("noise", f[name].class, name)
    end
    assert.are.equal("real", f["body:/state"].class)
    assert.are.equal("real", f["body:/price"].class)
    -- The state bug: the secondary never differs there.
    assert.are.equal(0, f["body:/state"].noise.differed)
    -- The price: the secondary jitters it as often as the candidate does;
    -- what makes it real is candidate moves far past the jitter's range.
    assert.is_true(f["body:/price"].noise.rate > 0.5)
    assert.is_true(f["body:/price"].candidate.beyond > 100)
    assert.is_true(f["body:/price"].noise.max_delta < 1e-5)
  end)

  it("proposes rules for the noise, and none that would hide a bug",
     function()
    local noise = d:admin("/noise").json
    local f = by_field(noise)
    assert.are.equal("ignore.json", f["body:/ts"].rule)
    assert.are.equal("ignore.json", f["body:/request_id"].rule)
    assert.are.equal("ignore.headers", f["header:x-request-id"].rule)
    assert.are.equal("arrays", f["body:/items"].rule)
    assert.are.equal("tolerance", f["body:/price"].rule)
    assert.is_not_string(f["body:/state"].rule) -- null: no rule
    local s = noise.snippet
    assert.matches('headers = { "x-request-id" }', s, 1, true)
    assert.matches('"/ts"', s, 1, true)
    assert.matches('"/request_id"', s, 1, true)
    assert.matches('["/items"] = "multiset"', s, 1, true)
    assert.matches('["/price"] = 9.1e-06', s, 1, true)
    assert.not_matches("/state", s, 1, true)
    -- A chunk that returns the rules, as a config loads it.
    local rules = assert(load(s))()
    assert.are.equal(9.1e-06, rules.tolerance["/price"])
    assert.are.equal("multiset", rules.arrays["/items"])
    -- Each field also carries the contract's summary of itself.
    local ts = f["body:/ts"]
    assert.are.equal('ignore = { json = { "/ts" } }', ts.proposal)
    assert.are.equal(ts.noise.rate, ts.noise_rate)
    assert.are.equal(ts.candidate.rate, ts.candidate_rate)
    assert.are.equal(math.min(ts.candidate.compared, ts.noise.compared),
                     ts.samples)
    assert.are.equal('tolerance = { ["/price"] = 9.1e-06 }',
                     f["body:/price"].proposal)
    -- The same snippet as text, to paste.
    local lua = d:admin("/noise?format=lua")
    assert.matches("^text/plain", lua.headers["content-type"])
    assert.are.equal(s, lua.body)
  end)

  it("counts only the bugs once the noise is learned, with or without a "
     .. "secondary leg on the request", function()
    local before = d:stats()
    send(d, 2501, 3500)
    local after = d:wait_totals("compared", 3500, 30)
    local r0, r1 = before.routes["GET /item"], after.routes["GET /item"]
    local diverged = r1.diverged - r0.diverged
    -- Every bug is a divergence; at most a handful of others slip past
    -- (a jittered float the learned range has not yet reached).
    assert.is_true(diverged >= bugs(2501, 3500), diverged)
    assert.is_true(diverged <= bugs(2501, 3500) + 10, diverged)
    assert.is_true(r1.noise_suppressed > r0.noise_suppressed)
    -- Half the requests had a secondary leg, half did not.
    local legs = r1.noise_compared - r0.noise_compared
    assert.is_true(legs > 350 and legs < 650, legs)
    assert.are.equal("hold", after.verdict.decision)
    -- What is recorded: the bugs' fields; the secondary's differences are
    -- listed as the record's noise when it ran.
    local list = d:divergences(120).divergences
    for _, rec in ipairs(list) do
      for _, op in ipairs(rec.body.diffs) do
        assert.is_true(op.path == "/state" or op.path == "/price", op.path)
      end
    end
  end)

  it("shows the noise apart on the dashboard", function()
    if not browser.available() then
      pending("chromium is not installed (scripts/bootstrap installs it)")
      return
    end
    local dir = process.tmpdir("shadow-chromium")
    finally(function() process.rmdir(dir) end)
    local dom = browser.run(dir, "http://127.0.0.1:" .. d.admin_port .. "/",
                            { "--dump-dom" })
    assert.matches('data%-ready="1"', dom)
    local section = dom:match('<section id="noise">(.-)</section>')
    assert.is_not_nil(section, "no noise section shown")
    local rows = section:match('<tbody id="noise%-rows">(.-)</tbody>')
    assert.matches('<code>body:/ts</code>.-<span class="tag noise">noise</span>',
                   rows)
    assert.matches('<code>body:/items</code>.-<code>arrays</code>', rows)
    assert.matches('tolerance = { %["/price"%] = 9.1e%-06 }', section)
    -- The real fields are tagged real where they differ most.
    local fields = dom:match('<tbody id="fields">(.-)</tbody>')
    assert.matches('<code>body:/state</code> <span class="tag real">real</span>',
                   fields)
  end)

  it("leaves exactly the bugs after the proposed snippet is reloaded",
     function()
    save_rules(d.config, d:admin("/noise?format=lua").body)
    d.proc:kill(process.SIGHUP)
    port.wait_until(function()
      local last = d:stats().last_reload
      return type(last) == "table" and last.result == "ok"
    end, 10, 0.05)
    local before = d:stats().routes["GET /item"]
    send(d, 4001, 4500)
    local after = d:wait_totals("compared", 4000, 30).routes["GET /item"]
    assert.are.equal(bugs(4001, 4500), after.diverged - before.diverged)
    local seen = {}
    for _, rec in ipairs(d:divergences(bugs(4001, 4500)).divergences) do
      local id = tonumber(rec.path:match("id=(%d+)"))
      assert.is_true(id % 50 == 7 or id % 10 == 3, rec.path)
      assert.are.same({}, rec.headers.diffs)
      for _, op in ipairs(rec.body.diffs) do
        seen[op.path] = true
        assert.are.equal(id % 50 == 7 and "/state" or "/price", op.path)
      end
    end
    assert.is_true(seen["/state"] and seen["/price"])
  end)
end)

describe("a secondary that fails", function()
  it("is counted apart, behind its own breaker, and costs the pair nothing",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = SERVICE:format("false"), candidate = SERVICE:format("true") } })
    local dead = port.free() -- nothing listens there
    local d = stop.add(shadowd.start{ text = function(a)
      return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q),
  candidate = shadow.http(%q),
  secondary = shadow.http("http://127.0.0.1:%d"),
  sample = { rate = 1.0 },
  breaker = { failures = 3, cooldown_ms = 60000 },
}
]]):format(a.listen, a.admin, ng:url("primary"), ng:url("candidate"), dead)
    end })
    send(d, 1, 50)
    local s = d:wait_totals("compared", 50)
    assert.is_true((s.totals.secondary_errors.refused or 0) >= 3)
    -- Its breaker opened; the candidate's did not, and every pair was
    -- still compared.
    assert.are.equal("open", s.breaker.secondary)
    assert.are.equal("closed", s.breaker.state)
    assert.is_true((s.totals.secondary_errors.breaker or 0) > 0)
    assert.are.same({}, s.totals.candidate_errors)
    assert.are.equal(0, s.totals.noise_compared)
    local m = d:admin("/metrics").body
    assert.matches('shadow_secondary_errors_total{reason="refused"}', m, 1,
                   true)
  end)
end)
