-- What an SRE reads off the admin port once the candidate disagrees: the
-- same divergence grouped under one signature with its count, the fields
-- folded so /hits/0/id and /hits/2/id are one, latency percentiles per
-- route that match what the records say, a verdict held back by a slow
-- candidate (slo.max_latency_ratio) and shown in /metrics, a status-class
-- matrix, and secrets (set-cookie, a JSON token) redacted in every output.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"
local process = require "support.process"
local prom = require "support.prom"

-- Both sides answer /hits after ?d= (primary) or ?cd= (candidate) ms, with
-- a session cookie and a token that differ; the candidate gets the id of
-- hit ?i= wrong. /fast and /slow agree on the body; both sides of /fast
-- take 10 ms (so sub-millisecond jitter cannot double a p99), /slow's
-- candidate takes 100 ms where its primary takes 2 (a p99 of 25 samples is
-- their largest, so the gap must outlast a loaded machine's hiccups). /gone is 404 on the primary and 500 on the candidate.
local function backend(side)
  local delay = side == "primary" and "ngx.var.arg_d" or "ngx.var.arg_cd"
  return ([[
    location /hits {
      content_by_lua_block {
        local d = tonumber(%s) or 0
        if d > 0 then ngx.sleep(d / 1000) end
        ngx.header["content-type"] = "application/json"
        ngx.header["set-cookie"] = "sid=%s-secret-cookie"
        local i = tonumber(ngx.var.arg_i) or 0
        local hits = {}
        for k = 0, 2 do
          local id = k + 1
          if "%s" == "candidate" and k == i then id = id + 100 end
          hits[#hits + 1] = '{"id":' .. id .. ',"name":"n' .. k .. '"}'
        end
        ngx.print('{"token":"%s-secret-token","hits":[' ..
                  table.concat(hits, ",") .. ']}')
      }
    }
    location /fast {
      content_by_lua_block {
        ngx.sleep(0.010)
        ngx.header["content-type"] = "application/json"
        ngx.print('{"ok":true}')
      }
    }
    location /slow {
      content_by_lua_block {
        ngx.sleep(%s)
        ngx.header["content-type"] = "application/json"
        ngx.print('{"ok":true}')
      }
    }
    location /gone {
      content_by_lua_block {
        ngx.status = %d
        ngx.header["content-type"] = "application/json"
        ngx.print('{"error":"gone"}')
      }
    }
  ]]):format(delay, side, side, side, side == "primary" and "0.002" or "0.100",
             side == "primary" and 404 or 500)
end

-- The redaction key the daemon is given (redact.key).
local REDACT_KEY = "telemetry-spec-redact-key-0123456789"

-- The hex HMAC-SHA256 of s under REDACT_KEY, from openssl(1): an
-- implementation apart from the daemon's and the gateway's.
local function hmac(s)
  local dir = process.tmpdir("shadow-sha")
  process.write_file(dir .. "/v", s)
  local rc, out = process.run({ "openssl", "dgst", "-sha256", "-hmac",
                                REDACT_KEY, "-r", dir .. "/v" })
  process.rmdir(dir)
  assert(rc == 0, "openssl failed")
  return out:match("^(%x+)")
end

local function mark(s)
  return "[redacted hmac-sha256:" .. hmac(s):sub(1, 16) .. "]"
end

-- The nearest-rank q-quantile of a list of numbers.
local function quantile(list, q)
  local v = {}
  for i, x in ipairs(list) do v[i] = x end
  table.sort(v)
  return v[math.max(1, math.ceil(q * #v))]
end

local SECRETS = { "primary-secret-cookie", "candidate-secret-cookie",
                  "primary-secret-token", "candidate-secret-token" }

describe("telemetry", function()
  local ng, d, dir
  local N = 90
  setup(function()
    ng = nginx.start{ servers = { primary = backend("primary"),
                                  candidate = backend("candidate") } }
    dir = process.tmpdir("shadow-telemetry")
    d = shadowd.start{
      primary = ng:url("primary"), candidate = ng:url("candidate"), rate = 1.0,
      extra = ([[
  slo = { max_divergence_rate = 1.0, min_samples = 20, max_latency_ratio = 2 },
  redact = { headers = { "set-cookie" }, json = { "/token" }, key = %q },
  log = { capacity = 1000, file = %q },
  on_divergence = function(d) print("on_divergence " .. require("cjson").encode(d)) end,
]]):format(REDACT_KEY, dir .. "/divergences.ndjson") }
    -- /hits: delays from 0 to 87 ms on the primary (so that over all routes
-- its p99 stays well above half of /slow's candidate), another spread on the
    -- candidate; the wrong id at index 0, 1 or 2 in turn.
    for k = 1, N do
      local res = assert(http.get(d.port, ("/hits?i=%d&d=%d&cd=%d"):format(
        k % 3, 3 * ((k * 7) % 30), (k * 11) % 23)))
      assert.equal(200, res.status)
    end
    for _ = 1, 25 do
      assert.equal(200, assert(http.get(d.port, "/fast")).status)
      assert.equal(200, assert(http.get(d.port, "/slow")).status)
      assert.equal(404, assert(http.get(d.port, "/gone")).status)
    end
    d:wait_totals("compared", N + 75)
  end)
  teardown(function()
    cleanup.stop_all(d, ng)
    process.rmdir(dir)
  end)

  it("groups the same divergence under one signature, with its count",
     function()
    local res = d:admin("/divergences?group=signature&route=GET%20/hits")
    assert.equal(200, res.status)
    local g = res.json
    assert.equal(1, g.total, res.body)
    local sig = g.divergences[1]
    assert.equal(N, sig.count)
    assert.equal("GET /hits", sig.route)
    assert.same({ "headers", "body" }, sig.parts)
    assert.same({ "body:/hits/*/id", "body:/token", "header:set-cookie" },
                sig.fields)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT", sig.first_seen)
    assert.is_true(sig.first_seen <= sig.last_seen)
    -- The exemplar is the newest record of the group.
    local raw = d:divergences(1000)
    local newest
    for _, rec in ipairs(raw.divergences) do
      if rec.route == "GET /hits" then newest = newest or rec end
    end
    assert.equal(newest.id, sig.exemplar.id)
    assert.equal(sig.last_seen, newest.time)
    -- The raw listing still has every one of them.
    local n = 0
    for _, rec in ipairs(raw.divergences) do
      if rec.route == "GET /hits" then n = n + 1 end
    end
    assert.equal(N, n)
    -- All routes: /hits and /gone; /fast and /slow agree.
    local all = d:admin("/divergences?group=signature").json
    assert.equal(2, all.total)
    assert.equal(0, all.evicted)
    assert.equal(25, d:admin("/divergences?group=signature&route=GET%20/gone")
      .json.divergences[1].count)
    assert.equal(400, d:admin("/divergences?group=nope").status)
  end)

  it("counts fields with array indexes folded, per route", function()
    local s = d:stats()
    local f = s.routes["GET /hits"].fields
    assert.equal(N, f["body:/hits/*/id"])
    assert.equal(N, f["body:/token"])
    assert.is_nil(f["body:/hits/0/id"])
    assert.equal(N, s.fields["body:/hits/*/id"])
    assert.equal(25, s.routes["GET /gone"].fields["status"])
  end)

  it("has a primary x candidate status-class matrix", function()
    local s = d:stats()
    assert.same({ ["2xx"] = { ["2xx"] = N } }, s.routes["GET /hits"].classes)
    assert.same({ ["4xx"] = { ["5xx"] = 25 } }, s.routes["GET /gone"].classes)
    assert.equal(N + 50, s.totals.classes["2xx"]["2xx"])
  end)

  it("reports latency percentiles that match the records' own timings",
     function()
    local lat = d:stats().routes["GET /hits"].latency_ms
    local seen = { primary = { first_byte = {}, last_byte = {} },
                   candidate = { first_byte = {}, last_byte = {} } }
    for _, rec in ipairs(d:divergences(1000).divergences) do
      if rec.route == "GET /hits" then
        for _, side in ipairs({ "primary", "candidate" }) do
          table.insert(seen[side].last_byte, rec.latency_ms[side])
          table.insert(seen[side].first_byte, rec.first_byte_ms[side])
        end
      end
    end
    for _, side in ipairs({ "primary", "candidate" }) do
      for _, to in ipairs({ "first_byte", "last_byte" }) do
        local h = lat[side][to]
        assert.equal(N, h.count)
        for _, q in ipairs({ 50, 90, 99 }) do
          local want = quantile(seen[side][to], q / 100)
          local got = h["p" .. q]
          -- Half a bucket of 2^(1/8), and the records' 1 us rounding.
          assert.is_true(math.abs(got - want) <= want * 0.0443 + 0.001,
            ("%s %s p%d: /stats %.3f, records %.3f"):format(side, to, q, got,
                                                          want))
        end
      end
    end
    -- The delays were spread: the percentiles tell them apart.
    assert.is_true(lat.primary.last_byte.p90 > lat.primary.last_byte.p50 + 5)
  end)

  it("holds a route whose candidate is slow by more than the ratio",
     function()
    local s = d:stats()
    local slow, fast = s.routes["GET /slow"], s.routes["GET /fast"]
    assert.equal("hold", slow.verdict.decision)
    local c, ratio, p = slow.verdict.reason:match(
      "^candidate p99 ([%d.]+) ms over (%S+) x primary p99 ([%d.]+) ms$")
    assert.is_not_nil(c, slow.verdict.reason)
    assert.equal("2", ratio)
    assert.is_true(tonumber(c) > 2 * tonumber(p))
    assert.is_true(tonumber(c) >= 99) -- the candidate sleeps 100 ms
    assert.equal("promote", fast.verdict.decision, fast.verdict.reason)
    -- Over all routes the candidate's p99 is near the primary's (/hits
    -- is slower on the primary): no latency hold there.
    assert.equal("promote", s.verdict.decision, s.verdict.reason)
    assert.equal(2, s.slo.max_latency_ratio)
  end)

  it("puts each route's verdict in /metrics, in a valid exposition",
     function()
    local res = d:admin("/metrics")
    assert.equal(200, res.status)
    local fams = prom.parse(res.body)
    assert.equal("gauge", fams.shadow_verdict.type)
    assert.equal(-1, prom.value(fams, "shadow_verdict", { route = "GET /slow" }))
    assert.equal(1, prom.value(fams, "shadow_verdict", { route = "GET /fast" }))
    assert.equal(1, prom.value(fams, "shadow_verdict_overall"))
    assert.equal(N, prom.value(fams, "shadow_route_diverged_total",
                               { route = "GET /hits" }))
    assert.equal(N + 25, prom.value(fams, "shadow_diverged_total"))
    assert.equal(1, prom.value(fams, "shadow_slo_max_divergence_rate"))
    -- The contract's names are all there.
    for _, name in ipairs({ "shadow_requests_total", "shadow_sampled_total",
        "shadow_compared_total", "shadow_divergences_total",
        "shadow_candidate_errors_total", "shadow_skipped_total",
        "shadow_primary_latency_seconds", "shadow_candidate_latency_seconds",
        "shadow_breaker_open", "shadow_script_errors_total",
        "shadow_reloads_total", "shadow_sink_errors_total" }) do
      assert.is_table(fams[name], name)
    end
  end)

  it("redacts secrets in every record, log line and hook, marking them alike",
     function()
    local texts = {
      raw = d:admin("/divergences?limit=1000").body,
      grouped = d:admin("/divergences?group=signature").body,
      stats = d:admin("/stats").body,
    }
    -- What the sink holds is written within a second.
    local path = dir .. "/divergences.ndjson"
    local lines
    require("support.port").wait_until(function()
      lines = {}
      for line in (process.read_file(path) or ""):gmatch("[^\n]+") do
        lines[#lines + 1] = line
      end
      return #lines >= N + 25
    end, 10, 0.1)
    assert.equal(N + 25, #lines)
    texts.ndjson = table.concat(lines, "\n")
    texts.hook = d:log()
    for what, text in pairs(texts) do
      for _, secret in ipairs(SECRETS) do
        assert.is_nil(text:find(secret, 1, true), secret .. " in " .. what)
      end
    end
    -- The marks are the first 16 hex digits of the value's HMAC-SHA256
    -- under redact.key, which itself appears nowhere.
    for what, text in pairs(texts) do
      assert.is_nil(text:find(REDACT_KEY, 1, true), "the key in " .. what)
    end
    local rec = json.decode(lines[1])
    local cookie = rec.headers.diffs[1]
    assert.equal("set-cookie", cookie.name)
    assert.equal(mark("sid=primary-secret-cookie"), cookie.primary)
    assert.equal(mark("sid=candidate-secret-cookie"), cookie.candidate)
    local token
    for _, op in ipairs(rec.body.diffs) do
      if op.path == "/token" then token = op end
    end
    assert.equal(mark("primary-secret-token"), token.primary)
    assert.equal(mark("candidate-secret-token"), token.candidate)
    assert.matches('"primary":"' .. mark("primary-secret-token"):gsub("%p", "%%%0"),
                   texts.hook)
    -- What is not secret is left alone: the wrong id, with its index.
    for _, op in ipairs(rec.body.diffs) do
      if op.path:match("^/hits/%d/id$") then
        assert.equal(100, op.candidate - op.primary)
      end
    end
  end)
end)

describe("telemetry under many routes", function()
  it("keeps signatures and route labels within their bounds, and counts the rest",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[location / { content_by_lua_block { ngx.print("a") } }]],
      candidate = [[location / { content_by_lua_block { ngx.print("b") } }]],
    } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
                                      candidate = ng:url("candidate"),
                                      rate = 1.0, log_capacity = 100 })
    local M = 1100
    for k = 1, M do
      assert.equal(200, assert(http.get(d.port, "/r/" .. k)).status)
    end
    local s = d:wait_totals("compared", M)
    -- 1000 signatures at most: the 100 least recently seen went.
    assert.same({ kept = 1000, max = 1000, evicted = 100,
                  bytes = s.signatures.bytes }, s.signatures)
    local g = d:admin("/divergences?group=signature&limit=5000").json
    assert.equal(1000, g.total)
    assert.equal(100, g.evicted)
    assert.equal("GET /r/" .. M, g.divergences[1].route) -- newest first
    for _, grp in ipairs(g.divergences) do
      assert.is_true(tonumber(grp.route:match("^GET /r/(%d+)$")) > 100, grp.route)
    end
    -- 500 routes, then "other", counted.
    local names = 0
    for _ in pairs(s.routes) do names = names + 1 end
    assert.equal(501, names)
    assert.equal(M - 500, s.routes.other.sampled)
    assert.same({ max_routes = 500, sampled = M - 500 }, s.route_overflow)
    local fams = prom.parse(d:admin("/metrics").body)
    assert.equal(501, #fams.shadow_verdict.samples)
    assert.equal(M - 500, prom.value(fams, "shadow_routes_overflow_total"))
    -- The ring keeps its own bound.
    assert.equal(100, #d:divergences(5000).divergences)
  end)
end)

describe("the telemetry settings", function()
  -- shadowd --check on a config with one bad field: exit 1 and its name.
  local function check(fields)
    local dir = process.tmpdir("shadow-check")
    local conf = dir .. "/shadow.lua"
    process.write_file(conf, 'return { primary = "http://127.0.0.1:1",\n'
      .. fields .. "\n}\n")
    local rc, out, err = process.run({ shadowd.binary(), "--check",
                                       "--config", conf })
    process.rmdir(dir)
    return rc, out .. err
  end

  it("refuses what is not a pointer, a header name or in range", function()
    for fields, why in pairs({
      ['redact = { json = { "token" } }'] = "redact.json%[1%] is not a valid JSON Pointer",
      ['redact = { headers = { "bad name" } }'] = "redact.headers%[1%] is not a valid header name",
      ['redact = { cookies = {} }'] = "redact",
      ["slo = { max_latency_ratio = -1 }"] = "slo.max_latency_ratio must be between",
      ["log = { keep = 1.5e9 }"] = "log.keep must be between",
      ["log = { max_bytes = -1 }"] = "log.max_bytes must be between",
    }) do
      local rc, out = check(fields)
      assert.equal(1, rc, fields)
      assert.matches(why, out)
    end
  end)

  it("says what it redacts, how it rotates and the latency objective", function()
    local rc, out = check([[
  redact = { headers = { "X-Api-Key" }, json = { "/users/*/password" } },
  log = { file = "d.ndjson", max_bytes = 1000000, keep = 3 },
  slo = { max_latency_ratio = 1.5 },]])
    assert.equal(0, rc, out)
    assert.matches("redact     x%-api%-key body:/users/%*/password\n", out)
    assert.matches("rotated past 1000000 bytes, 3 kept\n", out)
    assert.matches("over 1.5 x the primary's\n", out)
  end)
end)
