-- The promotion verdict as an SRE watching a rollout sees it, with the
-- default slo (0.1% budget, 1000 samples): a candidate that always differs
-- is held within the first comparisons, long before min_samples, and says
-- why; an agreeing route waits for min_samples and says how many. The
-- dashboard's view of it is dashboard_spec.lua's (in a real browser).
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"

-- The primary answers v1 everywhere; the candidate agrees on /same only.
local function answer(version)
  return ([[content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print('{"version":%d,"path":"' .. ngx.var.uri .. '"}')
    }]]):format(version)
end

local BACKENDS = {
  primary = "location / { " .. answer(1) .. " }",
  candidate = "location /same { " .. answer(1) .. " }\n"
    .. "    location / { " .. answer(2) .. " }",
}

-- The Wilson lower bound of n failures in n, written here from its
-- definition: the smaller root of (n + z^2) p^2 - (2n + z^2) p + n = 0,
-- which is n / (n + z^2).
local Z = 1.959963984540054
local function lower_all_failed(n) return n / (n + Z * Z) end

describe("the verdict", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0 }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  local held_at

  it("is insufficient-data before any comparison, saying what it needs",
     function()
    local v = d:stats().verdict
    assert.equal("insufficient-data", v.decision)
    assert.equal(0, v.compared)
    assert.equal("1000 comparisons needed, 0 so far", v.reason)
  end)

  it("holds a candidate that always differs within 50 comparisons",
     function()
    local stats
    for i = 1, 50 do
      local res = assert(http.get(d.port, "/differs",
                                  { ["x-user-id"] = "u" .. i }))
      assert.equal(200, res.status)
      assert.matches('"version":1', res.body, 1, true)
      stats = d:wait_totals("compared", i)
      assert.equal(i, stats.totals.compared)
      if stats.verdict.decision == "hold" then
        held_at = i
        break
      end
    end
    assert.is_not_nil(held_at, "still " .. stats.verdict.decision
      .. " after 50: " .. tostring(stats.verdict.reason))
    local v = stats.verdict
    assert.equal(held_at, v.diverged)
    assert.is_true(v.compared < 1000) -- min_samples did not hold it back
    assert.equal(0.001, v.budget)
    local bound = v.reason:match("^at least ([%d.]+)%% of compared "
      .. "requests differ; the budget is 0%.1%%$")
    assert.is_not_nil(bound, v.reason)
    assert.equal(tonumber(("%.2g"):format(100 * lower_all_failed(held_at))),
                 tonumber(bound))
    assert.is_true(math.abs(v.lower - lower_all_failed(held_at)) < 1e-6)
  end)

  it("holds the route too, for the same reason", function()
    assert.is_not_nil(held_at)
    local stats = d:stats()
    local route = stats.routes["GET /differs"]
    assert.is_table(route, json.encode(stats.routes))
    assert.equal("hold", route.verdict.decision)
    assert.matches("^at least [%d.]+%% of compared requests differ; "
      .. "the budget is 0%.1%%$", route.verdict.reason)
  end)

  it("keeps an agreeing route at insufficient-data below min_samples",
     function()
    assert.is_not_nil(held_at)
    for i = 1, 20 do
      local res = assert(http.get(d.port, "/same", { ["x-user-id"] = "s" .. i }))
      assert.equal(200, res.status)
    end
    local stats = d:wait_totals("compared", held_at + 20)
    local v = stats.routes["GET /same"].verdict
    assert.equal("insufficient-data", v.decision)
    assert.equal(20, v.compared)
    assert.equal(0, v.diverged)
    assert.equal("1000 comparisons needed, 20 so far", v.reason)
    -- Overall, the failing route's evidence still holds the candidate.
    assert.equal("hold", stats.verdict.decision)
  end)
end)
