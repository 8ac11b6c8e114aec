-- Signals that never mislead: a normalize hook that fails on every request
-- shows on /stats (its errors, last message and time, the pairs compared
-- raw), on /metrics and as a banner on the dashboard; a failed reload
-- shows the same way; POST /stats/reset starts a new counting window;
-- breaker transitions and what a reload changed are logged; --check lists
-- the rules and the budget and runs normalize on a recorded response.
local shadowd = require "support.shadowd"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local json = require "support.json"
local cleanup = require "support.cleanup"
local browser = require "support.browser"

-- Two in-process backends that disagree on /user/email; normalize as given.
local function config(addr, normalize, extra)
  return ([[
return {
  listen = %q, admin = %q,
  primary = function(req)
    return { status = 200, headers = { ["content-type"] = "application/json" },
             body = '{"user":{"email":"a@example.com"},"n":1}' }
  end,
  candidate = function(req)
    return { status = 200, headers = { ["content-type"] = "application/json" },
             body = '{"user":{"mail":"b@example.com"},"n":1}' }
  end,
  sample = { rate = 1.0 },
  route = function(req) return req.method .. " " .. req.path end,
  normalize = %s,
  slo = { max_divergence_rate = 0.01, min_samples = 50 },
%s
}
]]):format(addr.listen, addr.admin, normalize, extra or "")
end

-- A typo: rec.bodyy is nil, so every call fails.
local TYPO = "function(rec, side) rec.bodyy.x = 1 end"
local FINE = "function(rec, side) return rec end"

local function post(d, path, headers)
  return assert(http.request(d.admin_port, { method = "POST", path = path,
    headers = headers or { ["content-type"] = "application/json" },
    body = "" }))
end

local function send(d, n, path)
  for _ = 1, n do
    assert.equal(200, assert(http.get(d.port, path or "/u")).status)
  end
end

local function metric(text, name)
  local pat = "\n" .. name:gsub("%p", "%%%0") .. " ([%d.e+-]+)"
  return tonumber(("\n" .. text):match(pat))
end

local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

describe("a normalize hook that fails on every request", function()
  local d
  setup(function()
    d = shadowd.start{ text = function(a) return config(a, TYPO) end }
  end)
  teardown(function() cleanup.stop_all(d) end)

  it("shows on /stats with its last message and time, and the raw pairs",
     function()
    send(d, 5)
    local s = d:wait_totals("compared", 5)
    local e = s.hook_errors.normalize
    assert.is_table(e, json.encode(s.hook_errors))
    -- Each pair runs normalize on both sides.
    assert.equal(10, e.count)
    assert.equal(10, s.script_errors.normalize)
    assert.matches("shadow%.lua:%d+: attempt to index field 'bodyy'",
                   e.last_error)
    assert.is_nil(e.last_error:find("\n", 1, true))
    assert.matches(ISO, e.last_time)
    assert.equal(5, s.totals.compared_raw)
    assert.equal(5, s.routes["GET /u"].compared_raw)
  end)

  it("shows on /metrics", function()
    local m = d:admin("/metrics").body
    assert.equal(5, metric(m, "shadow_compared_raw_total"))
    assert.equal(10, metric(m, 'shadow_script_errors_total{hook="normalize"}'))
    local t = metric(m, 'shadow_script_error_last_time_seconds{hook="normalize"}')
    assert.is_not_nil(t, m)
    assert.is_true(math.abs(t - os.time()) < 120, tostring(t))
    local dir = process.tmpdir("shadow-prom")
    process.write_file(dir .. "/metrics", m)
    local rc, out, err = process.run({ "sh", "-c",
      "promtool check metrics < " .. dir .. "/metrics" })
    process.rmdir(dir)
    assert.equal(0, rc, out .. err)
  end)

  it("says the verdict's reason in words", function()
    send(d, 45)
    local s = d:wait_totals("compared", 50)
    assert.equal("hold", s.verdict.decision)
    assert.matches("^at least [%d.]+%% of compared requests differ; "
      .. "the budget is 1%%$", s.verdict.reason)
  end)

  it("starts a new window on POST /stats/reset, and counts again", function()
    local before = d:stats()
    assert.is_true(before.totals.compared >= 50)
    -- Like /reload: a plain form post is refused without a token.
    local r = post(d, "/stats/reset", { ["content-type"] = "text/plain" })
    assert.equal(415, r.status)
    assert.equal(405, d:admin("/stats/reset").status)
    assert.equal(before.totals.compared, d:stats().totals.compared)
    -- window_start has millisecond resolution: let one go by.
    process.sleep(0.01)
    r = post(d, "/stats/reset")
    assert.equal(200, r.status, r.body)
    assert.same({ result = "ok", noise = "kept" }, json.decode(r.body))
    local s = d:stats()
    assert.equal(0, s.totals.compared)
    assert.equal(0, s.totals.requests)
    assert.equal(0, s.totals.compared_raw)
    assert.same({}, s.hook_errors)
    assert.equal(0, s.routes["GET /u"].compared)
    assert.equal("insufficient-data", s.verdict.decision)
    assert.equal(0, s.signatures.kept)
    assert.is_true(s.window_start > before.window_start,
                   s.window_start .. " vs " .. before.window_start)
    send(d, 3)
    s = d:wait_totals("compared", 3)
    assert.equal(3, s.totals.compared)
    assert.equal(3, s.totals.compared_raw)
    assert.equal(6, s.hook_errors.normalize.count)
    port.wait_until(function()
      return d.proc:output():find("stats reset: a new counting window", 1,
                                  true) ~= nil
    end, 5, 0.05)
    assert.matches("stats reset: a new counting window begins %(the last had "
      .. "%d+ compared, %d+ diverged%); learned noise kept", d.proc:output())
  end)

  it("keeps a failed reload on /stats, with file:line and time", function()
    process.write_file(d.config, "return { listen = ")
    local r = post(d, "/reload")
    assert.equal(422, r.status)
    local s = d:stats()
    assert.equal(1, s.failed_reloads.count)
    assert.matches("shadow%.lua:%d+:", s.failed_reloads.last.error)
    assert.matches(ISO, s.failed_reloads.last.time)
    assert.equal("error", s.last_reload.result)
    local m = d:admin("/metrics").body
    assert.is_true(metric(m, "shadow_reload_failed_last_time_seconds") > 0)
  end)

  it("shows the script error, the failed reload and the reset in chromium",
     function()
    if not browser.available() then
      pending("chromium is not installed (scripts/bootstrap installs it)")
      return
    end
    local dir = process.tmpdir("shadow-chromium")
    finally(function() process.rmdir(dir) end)
    local url = "http://127.0.0.1:" .. d.admin_port .. "/"
    local dom = browser.run(dir, url, { "--dump-dom" })
    assert.matches('data%-ready="1"', dom)
    local alerts = dom:match('<section id="alerts">(.-)</section>')
    assert.is_not_nil(alerts, "no alert banner")
    assert.matches("Script error in the normalize hook", alerts)
    assert.matches("attempt to index field 'bodyy'", alerts)
    assert.matches("pairs compared raw", alerts)
    assert.matches("Reload failed 1 time", alerts)
    assert.matches("the previous config still runs", alerts)
    -- The counting window began at the reset.
    local s = d:stats()
    local since = s.window_start:sub(12, 19)
    assert.matches("counting since</span><b>" .. since, dom)
    assert.matches('<button id="reset"', dom)
    browser.run(dir, url, { "--screenshot=" .. browser.output_dir()
      .. "/dashboard-signals.png", "--window-size=1280,1000" })
  end)
end)

describe("what changes is said in the log", function()
  it("logs what a reload changed", function()
    local d = shadowd.start{ text = function(a) return config(a, FINE) end }
    finally(function() cleanup.stop_all(d) end)
    local text = process.read_file(d.config)
    text = text:gsub("rate = 1%.0", "rate = 0.5")
      :gsub("slo = {", 'ignore = { headers = { "date" } },\n  slo = {')
    process.write_file(d.config, text)
    local r = post(d, "/reload")
    assert.equal(200, r.status, r.body)
    port.wait_until(function()
      return d.proc:output():find("generation 2", 1, true) ~= nil
    end, 5, 0.05)
    assert.matches("reloaded [^\n]*: generation 2: added: ignore; changed: "
      .. "sample; rules: 0 %-> 1", d.proc:output())
  end)

  it("logs each breaker transition once, with the backend and why",
     function()
    local dead = port.free()
    local d = shadowd.start{ text = function(a)
      return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = function(req) return { status = 200, headers = {}, body = "x" } end,
  candidate = shadow.http("http://127.0.0.1:%d", { timeout_ms = 1000 }),
  sample = { rate = 1.0 },
  breaker = { failures = 2, cooldown_ms = 200 },
}
]]):format(a.listen, a.admin, dead)
    end }
    finally(function() cleanup.stop_all(d) end)
    send(d, 2, "/x")
    assert(port.wait_until(function()
      return d:stats().breaker.state == "open"
    end, 5, 0.02))
    process.sleep(0.3) -- past the cooldown: the next request is the probe
    send(d, 1, "/x")
    assert(port.wait_until(function()
      return select(2, d.proc:output():gsub("breaker: candidate", "")) >= 3
    end, 5, 0.05))
    local out = d.proc:output()
    assert.matches("breaker: candidate closed %-> open %(2 consecutive "
      .. "failures%)", out)
    assert.matches("breaker: candidate open %-> half%-open %(cooldown "
      .. "passed, one probe let through%)", out)
    assert.matches("breaker: candidate half%-open %-> open %(the probe "
      .. "failed%)", out)
    local _, opened = out:gsub("closed %-> open", "")
    assert.equal(1, opened)
  end)
end)

describe("a record whose values rules rewrote", function()
  it("says so, keeps the values as received, and the dashboard shows both",
     function()
    -- normalize turns the primary's n from 1 to 2; rename moves its
    -- /user/email to /user/mail, where the candidate has its own.
    local d = shadowd.start{ text = function(a)
      return config(a, [[function(rec, side)
    if side == "primary" then rec.body = rec.body:gsub('"n":1', '"n":2') end
    return rec
  end]], '  rename = { ["/user/email"] = "/user/mail" },')
    end }
    finally(function() cleanup.stop_all(d) end)
    send(d, 1)
    d:wait_totals("diverged", 1)
    local rec = d:divergences(1).divergences[1]
    assert.is_table(rec.rewritten, json.encode(rec))
    assert.same({ "normalize", "rename:/user/email" }, rec.rewritten.primary)
    assert.same({}, rec.rewritten.candidate)
    local got = rec.received.primary
    assert.equal(200, got.status)
    -- /n: the primary sent 1; the diff saw 2.
    assert.equal(1, got.body["/n"])
    -- /user/mail: the primary sent nothing there (it sent /user/email).
    assert.same({ absent = true }, got.body["/user/mail"])
    assert.is_nil(rec.received.candidate)
    local paths = {}
    for _, x in ipairs(rec.body.diffs) do paths[x.path] = x end
    assert.equal(2, paths["/n"].primary)
    assert.equal("a@example.com", paths["/user/mail"].primary)

    if not browser.available() then return end
    local dir = process.tmpdir("shadow-chromium")
    local ok, dom = pcall(browser.run, dir, "http://127.0.0.1:"
      .. d.admin_port .. "/", { "--dump-dom" })
    process.rmdir(dir)
    assert(ok, dom)
    local rows = dom:match('<tbody id="detail%-rows">(.-)</tbody>')
    assert.is_not_nil(rows, "no side-by-side view")
    assert.matches('<code>/n</code>.-<code>2</code><br><span class="rw">as '
      .. 'received: 1</span>', rows)
    assert.matches('<code>/user/mail</code>.-as received: absent', rows)
    assert.matches('primary values rewritten by normalize, '
      .. 'rename:/user/email before the comparison', dom)
  end)

  it("leaves a record nothing rewrote as it was", function()
    local d = shadowd.start{ text = function(a) return config(a, FINE) end }
    finally(function() cleanup.stop_all(d) end)
    send(d, 1)
    d:wait_totals("diverged", 1)
    local rec = d:divergences(1).divergences[1]
    assert.is_nil(rec.rewritten)
    assert.is_nil(rec.received)
  end)
end)

describe("shadowd --check", function()
  local dir
  setup(function() dir = process.tmpdir("shadow-check") end)
  teardown(function() process.rmdir(dir) end)

  local function check(normalize, args)
    local conf = dir .. "/shadow.lua"
    process.write_file(conf, config({ listen = "127.0.0.1:1",
      admin = "127.0.0.1:2" }, normalize, [[
  ignore = { headers = { "date", "x-request-id" }, json = { "/ts" } },
  rename = { ["/user/email"] = "/user/mail" },
  tolerance = { ["/price"] = 0.01 },
]]))
    local argv = { shadowd.binary(), "--check", "--config", conf }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return process.run(argv, nil, 30)
  end

  it("lists every rule and the divergence budget", function()
    local rc, out = check(FINE)
    assert.equal(0, rc, out)
    assert.matches("\n  ignore     headers date, x%-request%-id", out)
    assert.matches("\n    ignore:/ts ", out)
    assert.matches("\n    rename:/user/email ", out)
    assert.matches("\n    tolerance:/price ", out)
    assert.matches("\n  slo        budget 1%% of compared requests may "
      .. "differ; promote after at least 50 compared", out)
  end)

  it("runs normalize on a --response file, before and after", function()
    local resp = dir .. "/resp.http"
    process.write_file(resp, "HTTP/1.1 200 OK\r\ncontent-type: "
      .. "application/json\r\n\r\n{\"user\":{\"email\":\"a@b\"}}")
    local rc, out = check([[function(rec, side)
    rec.body = rec.body:gsub("a@b", side)
    return rec
  end]], { "--response", resp, "--side", "candidate" })
    assert.equal(0, rc, out)
    assert.matches("response [^\n]*resp%.http, as the candidate's", out)
    assert.matches('as received:.-{"user":{"email":"a@b"}}', out)
    assert.matches('after normalize:.-{"user":{"email":"candidate"}}', out)
    -- A typo fails here, not on every live request.
    rc, out = check(TYPO, { "--response", resp })
    assert.equal(2, rc, out)
    assert.matches("normalize  FAILED: [^\n]*attempt to index field 'bodyy'",
                   out)
    -- A bare body is a response too.
    process.write_file(resp, '{"x":1}')
    rc, out = check(FINE, { "--response", resp })
    assert.equal(0, rc, out)
    assert.matches("after normalize:", out)
    rc, out = check(FINE, { "--response", dir .. "/missing" })
    assert.equal(2, rc)
    assert.matches("No such file", out)
  end)
end)
