-- Migration rules as a user of shadowd meets them: rename, coerce, mask
-- and time in the config, applied to live traffic by the C diff, counted
-- per rule in /stats and /metrics, hot-reloaded, listed by --check (and a
-- bad one named with file:line); shadow.rules in a normalize hook; and the
-- offline test of rules, `shadowd diff --explain` and the directory mode
-- on examples/rules.
local shadowd = require "support.shadowd"
local process = require "support.process"
local http = require "support.http"
local json = require "support.json"
local port = require "support.port"
local cleanup = require "support.cleanup"

-- In-process v1 and v2 backends: per path, the v1 body and the v2 body.
local DOCS = [[
local docs = {
  ["/user"] = {
    '{"user":{"id":7,"email":"e@x","name":"Eve","at":1700000000,'
      .. '"trace":"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}}',
    '{"user":{"id":"7","email_address":"e@x","name":"eve",'
      .. '"at":"2023-11-14T22:13:20.250Z",'
      .. '"trace":"d7c9a0b1-2e3f-4a5b-9c8d-7e6f5a4b3c2d"}}' },
  ["/items"] = {
    '{"items":[{"id":1,"qty":"2"},{"id":2,"qty":"5"}]}',
    '{"items":[{"id":2,"qty":5},{"id":1,"qty":2}]}' },
  -- A format change the mask must not hide.
  ["/broken"] = {
    '{"user":{"trace":"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}}',
    '{"user":{"trace":"trace-17"}}' },
}
local function backend(side)
  return function(req)
    local d = docs[req.path]
    return { status = 200, headers = { ["content-type"] = "application/json" },
             body = d and d[side] or "{}" }
  end
end
]]

local RULES = [[
  rename = { ["/user/email"] = "/user/email_address" },
  coerce = { ["/user/id"] = "number", ["/items/*/qty"] = "number" },
  mask   = { ["/user/trace"] = "uuid" },
  time   = { ["/user/at"] = { unit = "instant", tolerance_ms = 500 } },
  arrays = { ["/items"] = { key = "id" } },
  tolerance = { ["/never"] = 1 },
  normalize = function(rec)
    return rules.json(rec, function(body) rules.lower(body, "/user/name") end)
  end,
]]

local function config(a, rules)
  return ([[
local rules = require "shadow.rules"
%s
return {
  listen = %q, admin = %q,
  primary = backend(1), candidate = backend(2),
  sample = { rate = 1.0 },
  route = function(req) return req.path end,
%s
}
]]):format(DOCS, a.listen, a.admin, rules)
end

local function post(p, path)
  local res = assert(http.request(p, { method = "POST", path = path, body = "",
    headers = { ["Content-Type"] = "application/json" } }))
  return res.status, json.decode(res.body)
end

describe("migration rules in the daemon", function()
  local d, addr
  setup(function()
    d = shadowd.start{ text = function(a)
      addr = a
      return config(a, RULES)
    end }
  end)
  teardown(function() cleanup.stop_all(d) end)

  it("absorb what they describe, report the rest, and count each rule",
     function()
    for _, p in ipairs({ "/user", "/items", "/broken", "/user" }) do
      assert.equal(200, assert(http.get(d.port, p)).status)
    end
    local st = d:wait_totals("compared", 4)
    -- Only the format change diverged.
    assert.equal(1, st.totals.diverged)
    local recs = d:divergences().divergences
    assert.equal(1, #recs)
    assert.equal("/broken", recs[1].route)
    assert.same({ { op = "replace", path = "/user/trace",
                    primary = "0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                    candidate = "trace-17" } }, recs[1].body.diffs)
    -- Comparisons each rule decided something in; a dead rule shows 0.
    assert.same({ ["rename:/user/email"] = 2, ["coerce:/user/id"] = 2,
                  ["coerce:/items/*/qty"] = 1, ["mask:/user/trace"] = 2,
                  ["time:/user/at"] = 2, ["arrays:/items"] = 1,
                  ["tolerance:/never"] = 0 }, st.rule_hits)
    local metrics = d:admin("/metrics").body
    assert.matches("# TYPE shadow_rule_hits_total counter", metrics, 1, true)
    assert.matches('shadow_rule_hits_total{rule="rename:/user/email"} 2',
                   metrics, 1, true)
    assert.matches('shadow_rule_hits_total{rule="tolerance:/never"} 0',
                   metrics, 1, true)
  end)

  it("reload: a new rule counts from 0, a bad one is refused with file:line",
     function()
    local before = d:stats()
    local more = RULES:gsub('mask   = { %["/user/trace"%] = "uuid" },',
      'mask   = { ["/user/trace"] = "uuid", ["/user/x"] = "hex" },')
    process.write_file(d.config, config(addr, more))
    local status = post(d.admin_port, "/reload")
    assert.equal(200, status)
    port.wait_until(function()
      return d:stats().rule_hits["mask:/user/x"] ~= nil
    end, 5, 0.05)
    local st = d:stats()
    assert.equal(0, st.rule_hits["mask:/user/x"])
    -- Counters of the rules that stayed carry over.
    assert.equal(before.rule_hits["rename:/user/email"],
                 st.rule_hits["rename:/user/email"])
    assert.equal(200, assert(http.get(d.port, "/user")).status)
    port.wait_until(function()
      return d:stats().rule_hits["rename:/user/email"]
        == before.rule_hits["rename:/user/email"] + 1
    end, 5, 0.05)

    -- A misspelt class: refused, the running rules stay, the error names
    -- the line the entry is on.
    local text = config(addr, RULES:gsub('"uuid"', '"uuid4"'))
    process.write_file(d.config, text)
    local line = 0
    for l in (text .. "\n"):gmatch("(.-)\n") do
      line = line + 1
      if l:find('"uuid4"', 1, true) then break end
    end
    local code, body = post(d.admin_port, "/reload")
    assert.equal(422, code)
    assert.matches(('shadow.lua:%d: config: mask%%["/user/trace"%%]: unknown '
                    .. 'class "uuid4"'):format(line), body.error)
    assert.equal(st.generation, d:stats().generation)
  end)
end)

describe("shadowd --check", function()
  local dir
  before_each(function() dir = process.tmpdir("shadow-rules-check") end)
  after_each(function() process.rmdir(dir) end)

  it("lists the rules by the names their counters have", function()
    local code, out, err = process.run({ shadowd.binary(), "--check",
      "--config", "examples/rules/rules.lua" })
    assert.equal(0, code, err)
    assert.matches("rules      6 JSON rules", out, 1, true)
    assert.matches("rename:/user/email%s+compared with the candidate's "
                   .. "/user/email_address", out)
    assert.matches("time:/meta/generated_at%s+instants", out)
  end)

  it("names a bad rule with file:line, in a module the config requires too",
     function()
    process.write_file(dir .. "/migration.lua", [[
return {
  coerce = { ["/qty"] = "integer" },
}
]])
    process.write_file(dir .. "/shadow.lua", [[
local m = require "migration"
return {
  primary = "http://127.0.0.1:1",
  coerce = m.coerce,
}
]])
    local code, _, err = process.run({ shadowd.binary(), "--check", "--config",
                                       dir .. "/shadow.lua" })
    assert.equal(1, code)
    assert.matches('migration.lua:2: config: coerce%["/qty"%] must be '
                   .. '"number" or "boolean"', err)
  end)
end)

describe("testing rules offline", function()
  local dir
  before_each(function() dir = process.tmpdir("shadow-rules-offline") end)
  after_each(function() process.rmdir(dir) end)

  local function diff(...)
    return process.run({ shadowd.binary(), "diff", ... })
  end

  it("--explain names the rule that absorbed each difference and what was "
     .. "tried for each reported one", function()
    process.write_file(dir .. "/a.json",
      '{"user":{"email":"a","n":"1","at":1700000000,"x":1}}')
    process.write_file(dir .. "/b.json",
      '{"user":{"email_address":"a","n":1,"at":"2023-11-14T22:13:25Z","x":2}}')
    process.write_file(dir .. "/rules.lua", [[
return {
  primary = "http://127.0.0.1:1",
  rename = { ["/user/email"] = "/user/email_address" },
  coerce = { ["/user/n"] = "number" },
  time = { ["/user/at"] = { unit = "instant", tolerance_ms = 1000 } },
}
]])
    local code, out, err = diff("--config", dir .. "/rules.lua", "--explain",
                                dir .. "/a.json", dir .. "/b.json")
    assert.equal(1, code, err)
    local function has(text)
      assert.truthy(out:find(text, 1, true), out)
    end
    has('reported  replace /user/at: 1700000000 -> "2023-11-14T22:13:25Z"\n'
        .. '            tried time["/user/at"]: 5000 ms apart, more than 1000 ms')
    has('reported  replace /user/x: 1 -> 2\n            tried no rule')
    has('absorbed  /user/email -> /user/email_address  by '
        .. 'rename["/user/email"]')
    has('absorbed  /user/n: "1" ~ 1  by coerce["/user/n"]: equal as numbers')
    assert.matches("they differ; 2 differences absorbed by rules", out, 1, true)
  end)

  it("checks the examples/rules pairs: every one as expected", function()
    local code, out, err = diff("--config", "examples/rules/rules.lua",
                                "examples/rules/pairs")
    assert.equal(0, code, out .. err)
    assert.matches("5 pairs: 5 as expected, 0 not, 0 could not be read", out,
                   1, true)
    assert.matches("user%-7%s+same%s+same", out)
    assert.matches("unknown%-user%s+differ%s+differ%s+%d+%s+status, "
                   .. "body:/error", out)
    assert.matches("rename:/user/email%s+3", out)
  end)

  it("fails a pair that is not as expected, and one it cannot read",
     function()
    for _, f in ipairs({ "user-7.primary", "user-7.candidate",
                         "clock-skew.primary", "clock-skew.candidate" }) do
      process.write_file(dir .. "/" .. f,
        process.read_file("examples/rules/pairs/" .. f))
    end
    -- The clock-skew pair is said to agree: it does not.
    process.write_file(dir .. "/clock-skew.expect", "same\n")
    local code, out = diff("--config", "examples/rules/rules.lua", dir)
    assert.equal(1, code, out)
    assert.matches("clock%-skew%s+same%s+differ.*NOT AS EXPECTED", out)
    assert.matches("2 pairs: 1 as expected, 1 not", out, 1, true)
    -- A primary without its candidate cannot be compared.
    process.write_file(dir .. "/lonely.primary", "{}")
    code, out = diff("--config", "examples/rules/rules.lua", dir)
    assert.equal(2, code, out)
    assert.matches("lonely%s+error", out)
    -- An empty folder is an error too.
    local empty = process.tmpdir("shadow-rules-empty")
    local c2, _, e2 = diff(empty)
    process.rmdir(empty)
    assert.equal(2, c2)
    assert.matches("holds no NAME.primary", e2, 1, true)
  end)
end)
