-- First comparison and the admin API: differing status, headers and
-- bodies land in /divergences in the README's shape; agreeing ones do
-- not; /stats and /metrics count them.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"

-- Same routes on both sides; the candidate disagrees on three of them.
local function backend(status, version, body)
  return ([[
    location /status { content_by_lua_block {
      ngx.status = %d
      ngx.header["content-type"] = "text/plain"
      ngx.print("same body")
    } }
    location /header { content_by_lua_block {
      ngx.header["content-type"] = "text/plain"
      ngx.header["x-version"] = %q
      ngx.print("h")
    } }
    location /body { content_by_lua_block {
      ngx.header["content-type"] = "text/plain"
      ngx.print(%q)
    } }
    location /same { content_by_lua_block {
      ngx.header["content-type"] = "text/plain"
      ngx.header["x-version"] = "v1"
      ngx.print("identical")
    } }
  ]]):format(status, version, body)
end

local BACKENDS = {
  primary = backend(200, "v1", "abcdef"),
  candidate = backend(500, "v2", "abcXefgh"),
}

local function by_path(list)
  local out = {}
  for _, d in ipairs(list) do out[d.path] = d end
  return out
end

describe("divergences and the admin API", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       log_capacity = 100 }
    -- One at a time, each compared before the next, so the ring's order
    -- is the order sent.
    for i, path in ipairs({ "/status", "/header", "/same", "/body" }) do
      local res = assert(http.get(d.port, path,
                                  { ["x-user-id"] = "k" .. path }))
      assert(res.status == 200, path .. " answered " .. res.status)
      d:wait_totals("compared", i)
    end
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("records a status divergence", function()
    local res = d:admin("/divergences")
    assert.are.equal(200, res.status)
    assert.matches("application/json", res.headers["content-type"], 1, true)
    local rec = by_path(res.json.divergences)["/status"]
    assert.is_table(rec)
    assert.is_number(rec.id)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", rec.time)
    assert.are.equal("GET /status", rec.route)
    assert.are.equal("GET", rec.method)
    assert.are.equal("k/status", rec.key)
    assert.are.same({ differs = true, primary = 200, candidate = 500 },
                    rec.status)
    assert.is_false(rec.headers.differs)
    assert.is_false(rec.body.differs)
    assert.is_number(rec.latency_ms.primary)
    assert.is_number(rec.latency_ms.candidate)
    assert.is_true(rec.latency_ms.primary >= 0)
  end)

  it("records a header divergence, ignoring date and framing", function()
    local rec = by_path(d:divergences().divergences)["/header"]
    assert.is_table(rec)
    assert.is_false(rec.status.differs)
    assert.are.equal(200, rec.status.primary)
    assert.is_true(rec.headers.differs)
    assert.are.same({ { name = "x-version", primary = "v1",
                        candidate = "v2" } }, rec.headers.diffs)
    assert.is_false(rec.body.differs)
  end)

  it("records a body divergence as bytes", function()
    local rec = by_path(d:divergences().divergences)["/body"]
    assert.is_table(rec)
    assert.is_false(rec.status.differs)
    -- content-length differs (6 vs 8) but is framing: not compared.
    assert.is_false(rec.headers.differs)
    assert.is_true(rec.body.differs)
    assert.are.equal("bytes", rec.body.kind)
    -- The summary names the first differing offset and both lengths.
    assert.matches("%f[%d]3%f[%D]", rec.body.summary)
    assert.matches("%f[%d]6%f[%D]", rec.body.summary)
    assert.matches("%f[%d]8%f[%D]", rec.body.summary)
  end)

  it("records nothing for identical responses", function()
    local list = d:divergences()
    assert.are.equal(3, list.total)
    assert.are.equal(3, #list.divergences)
    assert.is_nil(by_path(list.divergences)["/same"])
  end)

  it("lists newest first and honours limit", function()
    local list = d:divergences().divergences
    assert.are.equal("/body", list[1].path)
    assert.are.equal("/status", list[3].path)
    assert.is_true(list[1].id > list[2].id and list[2].id > list[3].id)
    local one = d:divergences(1)
    assert.are.equal(1, #one.divergences)
    assert.are.equal("/body", one.divergences[1].path)
  end)

  it("counts in /stats", function()
    local t = d:stats().totals
    assert.are.equal(4, t.requests)
    assert.are.equal(4, t.sampled)
    assert.are.equal(4, t.compared)
    assert.are.equal(3, t.diverged)
    -- By reason; a reason may be listed with 0.
    assert.is_table(t.candidate_errors)
    for reason, n in pairs(t.candidate_errors) do
      assert.are.equal(0, n, "candidate error " .. reason)
    end
    assert.is_table(t.skipped)
  end)

  it("exports the counters in /metrics", function()
    local res = d:admin("/metrics")
    assert.are.equal(200, res.status)
    assert.matches("^text/plain", res.headers["content-type"])
    local m = "\n" .. res.body
    assert.matches("\nshadow_requests_total 4%f[%s]", m)
    assert.matches("\nshadow_sampled_total 4%f[%s]", m)
    assert.matches("\nshadow_compared_total 4%f[%s]", m)
    for _, part in ipairs({ "status", "headers", "body" }) do
      local found
      for labels, v in m:gmatch("\nshadow_divergences_total{([^}]*)} (%S+)") do
        if labels:find('part="' .. part .. '"', 1, true) then
          assert.matches('route="GET /' .. (part == "headers" and "header"
                         or part) .. '"', labels, 1, true)
          assert.are.equal(1, tonumber(v))
          found = true
        end
      end
      assert.is_true(found, "no shadow_divergences_total for " .. part)
    end
    for _, name in ipairs({ "shadow_candidate_errors_total",
        "shadow_skipped_total", "shadow_primary_latency_seconds",
        "shadow_candidate_latency_seconds", "shadow_breaker_open",
        "shadow_script_errors_total", "shadow_reloads_total" }) do
      assert.matches("\n# TYPE " .. name .. " ", m, 1, true)
    end
  end)

  it("answers /healthz", function()
    assert.are.equal(200, d:admin("/healthz").status)
  end)
end)

describe("the ring log", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       log_capacity = 2 }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("keeps only the newest log.capacity records", function()
    for i, path in ipairs({ "/status", "/header", "/body" }) do
      assert(http.get(d.port, path, { ["x-user-id"] = "r" .. i }))
      d:wait_totals("compared", i)
    end
    local list = d:divergences()
    assert.are.equal(2, #list.divergences)
    assert.are.equal("/body", list.divergences[1].path)
    assert.are.equal("/header", list.divergences[2].path)
    assert.are.equal(3, d:stats().totals.diverged)
  end)
end)

describe("a body compared by digest", function()
  -- The same JSON object with its keys in another order: a semantic diff
  -- agrees, but past limits.diff_bytes the bodies are compared by digest,
  -- which cannot see that. It is a divergence, and counted as a digest
  -- one, so the user sees why no field is named.
  local JSON = [[
    location /doc { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print(%q)
    } }
  ]]
  local ng, d
  setup(function()
    local fill = string.rep("x", 200)
    ng = nginx.start{ servers = {
      primary = JSON:format('{"a":1,"b":"' .. fill .. '"}'),
      candidate = JSON:format('{"b":"' .. fill .. '","a":1}') } }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       limits = { diff_bytes = 64 } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("is a digest divergence in the record, /stats and /metrics", function()
    assert.are.equal(200, assert(http.get(d.port, "/doc")).status)
    d:wait_totals("compared", 1)
    local rec = d:divergences().divergences[1]
    assert.are.equal("digest", rec.body.kind)
    local route = d:stats().routes["GET /doc"]
    assert.are.same({ json = 0, bytes = 0, digest = 1, protobuf = 0 },
                   route.body_kinds)
    assert.matches('\nshadow_divergences_total{route="GET /doc",part="body",'
                   .. 'kind="digest"} 1\n', "\n" .. d:admin("/metrics").body,
                   1, true)
  end)
end)
