-- Sticky sampling: the daemon mirrors exactly the keys the README's
-- rule selects, computed here from libxxhash itself.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local xxh3 = require "support.xxh3"

describe("sampling at rate 0.3 over 1000 keys", function()
  local ng, d
  setup(function()
    local ok = [[ location / { return 200 "ok\n"; } ]]
    ng = nginx.start{ servers = { primary = ok, candidate = ok } }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 0.3,
                       key = 'req.headers["x-user-id"]' }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("mirrors exactly the keys XXH3 selects", function()
    local expected = {}
    local c = assert(http.connect(d.port))
    finally(function() c:close() end)
    for i = 1, 1000 do
      local key = "user-" .. i
      if xxh3.sampled(key, 0.3) then expected[#expected + 1] = key end
      local res = assert(c:request{ path = "/s",
                                    headers = { ["x-user-id"] = key } })
      assert.are.equal(200, res.status)
      assert.are.equal("ok\n", res.body)
    end
    assert.is_true(#expected > 200 and #expected < 400)
    -- Every request reached the primary, each key once.
    assert.are.equal(1000, #ng:wait_requests("primary", 1000, 10))
    local seen = {}
    for _, r in ipairs(ng:wait_requests("candidate", #expected, 30)) do
      seen[#seen + 1] = r.key
    end
    table.sort(expected)
    table.sort(seen)
    assert.are.same(expected, seen)
    local stats = d:wait_totals("compared", #expected, 10)
    assert.are.equal(1000, stats.totals.requests)
    assert.are.equal(#expected, stats.totals.sampled)
    assert.are.equal(#expected, stats.totals.compared)
    assert.are.equal(0, stats.totals.diverged)
    -- A key seen again, on another connection, gets the same decision.
    for i = 1, 20 do
      assert(http.get(d.port, "/again", { ["x-user-id"] = expected[i] }))
    end
    local again = 0
    for _, r in ipairs(ng:wait_requests("candidate", #expected + 20, 10)) do
      if r.uri == "/again" then again = again + 1 end
    end
    assert.are.equal(20, again)
  end)
end)
