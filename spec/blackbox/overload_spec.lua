-- max_inflight_shadow: a candidate that hangs can hold at most that many
-- legs; the rest are skipped and counted, and clients never wait for it.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local hostile = require "support.hostile"
local http = require "support.http"
local port = require "support.port"
local cleanup = require "support.cleanup"

local SLOW = os.getenv("SHADOW_SLOW") and 4 or 1
local CAP = 4
local CLIENTS = 12
local HANG_MS = 3000 * SLOW

local function total(stats, group, reason)
  return tonumber(stats.totals[group] and stats.totals[group][reason]) or 0
end

describe("max_inflight_shadow", function()
  local ng, h, d
  before_each(function()
    ng = nginx.start{ servers = {
      primary = [[ location / { return 200 '{"ok":true}'; } ]] } }
    h = hostile.start{ mode = "hang" }
    d = shadowd.start{ primary = ng:url("primary"), candidate = h.url,
      rate = 1.0, candidate_timeout_ms = HANG_MS,
      extra = ("  max_inflight_shadow = %d,\n"
               .. "  breaker = { failures = 1000000, cooldown_ms = 10 },")
        :format(CAP) }
  end)
  after_each(function() cleanup.stop_all(d, h, ng) end)

  it("skips legs over the cap as overload; clients get the primary's 200 "
     .. "promptly", function()
    local stop = cleanup.new()
    finally(stop.run)
    local conns = {}
    for i = 1, CLIENTS do
      local c = assert(http.connect(d.port))
      stop.add(function() c:close() end)
      conns[i] = c
    end
    -- Every request is sent before any answer is read: they are all in
    -- shadowd at once, and the hung legs are all still in flight.
    for i, c in ipairs(conns) do
      assert(c:send(http.build{ path = "/o" .. i }))
    end
    local t0 = require("socket").gettime()
    for _, c in ipairs(conns) do
      local res = assert(c:read_response())
      assert.are.equal(200, res.status)
      assert.are.equal('{"ok":true}', res.body)
    end
    local elapsed = require("socket").gettime() - t0
    -- Well under the candidate's timeout: nobody waited for it.
    assert.is_true(elapsed < HANG_MS / 1000 / 2,
                   ("clients took %.3fs"):format(elapsed))
    local s = d:wait_totals("requests", CLIENTS)
    -- sampled counts the legs mirrored; the rest are skipped.
    assert.are.equal(CAP, s.totals.sampled)
    assert.are.equal(CLIENTS - CAP, total(s, "skipped", "overload"))
    assert.is_truthy(port.wait_until(function()
      return (h:counts().hang or 0) >= CAP
    end, 10))
    assert.are.equal(CAP, h:counts().hang)
  end)

  it("frees the slots when the hung legs time out", function()
    local stop = cleanup.new()
    finally(stop.run)
    local conns = {}
    for i = 1, CAP + 2 do
      local c = assert(http.connect(d.port))
      stop.add(function() c:close() end)
      conns[i] = c
      assert(c:send(http.build{ path = "/p" .. i }))
    end
    for _, c in ipairs(conns) do
      assert.are.equal(200, assert(c:read_response()).status)
    end
    local s = d:wait_totals("requests", CAP + 2)
    assert.are.equal(2, total(s, "skipped", "overload"))
    assert.is_truthy(port.wait_until(function()
      return total(d:stats(), "candidate_errors", "timeout") >= CAP
    end, HANG_MS / 1000 + 10), "the hung legs never timed out")
    assert.are.equal(200, assert(http.get(d.port, "/after")).status)
    assert.is_truthy(port.wait_until(function()
      return (h:counts().hang or 0) >= CAP + 1
    end, 10), "no leg started after the slots were freed")
    assert.are.equal(2, total(d:stats(), "skipped", "overload"))
  end)
end)

-- The candidate pool's own cap: legs beyond max_connections wait in its
-- queue instead of opening connections, and fail by timeout there.
describe("the candidate's max_connections", function()
  it("never opens more connections than the cap", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 '{"ok":true}'; } ]] } })
    local h = stop.add(hostile.start{ mode = "hang" })
    local timeout_ms = 1000 * SLOW
    local d = stop.add(shadowd.start{ primary = ng:url("primary"), rate = 1.0,
      extra = ("  candidate = shadow.http(%q, { timeout_ms = %d, "
               .. "max_connections = 2 }),\n"
               .. "  breaker = { failures = 1000000, cooldown_ms = 10 },")
        :format(h.url, timeout_ms) })
    for i = 1, 8 do
      assert.are.equal(200, assert(http.get(d.port, "/q" .. i)).status)
    end
    assert.is_truthy(port.wait_until(function()
      return total(d:stats(), "candidate_errors", "timeout") >= 8
    end, timeout_ms / 1000 * 8 + 10), "the queued legs never timed out")
    -- Every leg failed, and never were more than two at the candidate at
    -- once (a queued leg may still get a freed connection before its own
    -- deadline, so the total may be more).
    local counts = h:counts()
    assert.is_true(counts.hang >= 2)
    assert.are.equal(2, counts.max_hanging)
  end)
end)
