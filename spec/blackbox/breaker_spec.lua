-- The candidate's circuit breaker, one transition a test, with a hostile
-- candidate whose behaviour the spec switches through its control path.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local hostile = require "support.hostile"
local http = require "support.http"
local port = require "support.port"
local cleanup = require "support.cleanup"

local SLOW = os.getenv("SHADOW_SLOW") and 4 or 1
local FAILURES = 3
local COOLDOWN_MS = 400 * SLOW
local SLOW_LEG = 2 * SLOW -- seconds the hostile's "slow" answer takes

local function total(stats, group, reason)
  return tonumber(stats.totals[group] and stats.totals[group][reason]) or 0
end

local function metric(d, name)
  local body = d:admin("/metrics").body
  return tonumber(body:match("\n" .. name .. " ([%d%.]+)"))
end

describe("candidate circuit breaker", function()
  local ng, h, d, n
  before_each(function()
    ng = nginx.start{ servers = {
      primary = [[ location / { return 200 '{"ok":true}'; } ]] } }
    h = hostile.start{ mode = "ok", slow = SLOW_LEG }
    d = shadowd.start{ primary = ng:url("primary"), candidate = h.url,
      rate = 1.0, candidate_timeout_ms = (SLOW_LEG + 2) * 1000,
      extra = ("  breaker = { failures = %d, cooldown_ms = %d },")
        :format(FAILURES, COOLDOWN_MS) }
    n = 0
  end)
  after_each(function() cleanup.stop_all(d, h, ng) end)

  -- One client request; the client always gets the primary's 200.
  local function hit()
    n = n + 1
    local res = assert(http.get(d.port, "/r" .. n))
    assert.are.equal(200, res.status)
  end

  -- Fails the candidate `count` times in a row, each leg settled before
  -- the next request, so the count of consecutive failures is exact.
  local function fail_times(count, reason)
    local before = total(d:stats(), "candidate_errors", reason)
    for i = 1, count do
      hit()
      d:wait_totals("sampled", n)
      assert.is_truthy(port.wait_until(function()
        return total(d:stats(), "candidate_errors", reason) >= before + i
      end, 10), "candidate error " .. i .. " not counted")
    end
  end

  local function open_it()
    h:set_mode("reset")
    fail_times(FAILURES, "reset")
    assert.are.equal("open", d:stats().breaker.state)
  end

  local function wait_cooldown()
    require("socket").sleep(COOLDOWN_MS / 1000 + 0.1)
  end

  it("stays closed below the threshold and opens at it", function()
    h:set_mode("reset")
    fail_times(FAILURES - 1, "reset")
    local s = d:stats()
    assert.are.equal("closed", s.breaker.state)
    assert.are.equal(0, metric(d, "shadow_breaker_open"))
    fail_times(1, "reset")
    s = d:stats()
    assert.are.equal("open", s.breaker.state)
    assert.is_true(s.breaker.open)
    assert.are.equal(1, metric(d, "shadow_breaker_open"))
  end)

  it("a success in between resets the count of consecutive failures",
     function()
    h:set_mode("reset")
    fail_times(FAILURES - 1, "reset")
    h:set_mode("ok")
    hit()
    d:wait_totals("compared", 1)
    h:set_mode("reset")
    fail_times(FAILURES - 1, "reset")
    assert.are.equal("closed", d:stats().breaker.state)
  end)

  it("skips the candidate while open, counted as breaker", function()
    open_it()
    local served = h:counts().reset
    for _ = 1, 5 do hit() end
    local s = d:wait_totals("requests", n)
    assert.is_truthy(port.wait_until(function()
      s = d:stats()
      return total(s, "skipped", "breaker") >= 5
    end, 10))
    assert.are.equal(5, total(s, "skipped", "breaker"))
    assert.are.equal(served, h:counts().reset)
    assert.are.equal("open", s.breaker.state)
  end)

  it("goes half-open after the cooldown with a single probe", function()
    open_it()
    h:set_mode("hang") -- the probe stays in flight
    wait_cooldown()
    local skipped = total(d:stats(), "skipped", "breaker")
    for _ = 1, 5 do hit() end
    d:wait_totals("requests", n)
    assert.is_truthy(port.wait_until(function()
      return (h:counts().hang or 0) >= 1
    end, 10), "no probe reached the candidate")
    local s = d:stats()
    assert.are.equal("half-open", s.breaker.state)
    assert.are.equal(skipped + 4, total(s, "skipped", "breaker"))
    assert.are.equal(1, h:counts().hang)
  end)

  it("closes when the probe succeeds", function()
    open_it()
    h:set_mode("ok")
    wait_cooldown()
    hit()
    d:wait_totals("compared", 1)
    local s = d:stats()
    assert.are.equal("closed", s.breaker.state)
    assert.are.equal(0, metric(d, "shadow_breaker_open"))
    -- Closed again: the next request is mirrored.
    hit()
    d:wait_totals("compared", 2)
  end)

  -- Only the probe decides a half-open breaker: a leg that started while
  -- it was still closed and answers late proves nothing about now.
  it("is not closed by a late leg that is not the probe", function()
    assert.are.equal(200, assert(http.get(d.port, "/f/slow")).status)
    h:set_mode("reset")
    fail_times(FAILURES, "reset")
    assert.are.equal("open", d:stats().breaker.state)
    wait_cooldown()
    assert.are.equal(200, assert(http.get(d.port, "/f/hang")).status)
    assert.are.equal("half-open", d:stats().breaker.state)
    d:wait_totals("compared", 1, SLOW_LEG + 10) -- the late leg is in
    local s = d:stats()
    assert.are.equal("half-open", s.breaker.state)
    assert.are.equal(1, h:counts().hang)
  end)

  it("reopens when the probe fails", function()
    open_it()
    wait_cooldown()
    local skipped = total(d:stats(), "skipped", "breaker")
    fail_times(1, "reset") -- the probe, still on a resetting candidate
    local s = d:stats()
    assert.are.equal("open", s.breaker.state)
    assert.are.equal(1, metric(d, "shadow_breaker_open"))
    hit()
    assert.is_truthy(port.wait_until(function()
      return total(d:stats(), "skipped", "breaker") >= skipped + 1
    end, 10), "not skipped after reopening")
  end)
end)

-- The plainest failure: nothing listens on the candidate's port. The
-- breaker opens on refusals and closes once a server is there.
describe("circuit breaker on a candidate that is down, then up", function()
  it("opens on refused connections and closes when the candidate is back",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 '{"ok":true}'; } ]] } })
    local cport = port.free()
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
      candidate = "http://127.0.0.1:" .. cport, rate = 1.0,
      extra = ("  breaker = { failures = %d, cooldown_ms = %d },")
        :format(FAILURES, COOLDOWN_MS) })
    for i = 1, FAILURES do
      assert.are.equal(200, assert(http.get(d.port, "/down" .. i)).status)
      assert.is_truthy(port.wait_until(function()
        return total(d:stats(), "candidate_errors", "refused") >= i
      end, 10), "refusal " .. i .. " not counted")
    end
    assert.are.equal("open", d:stats().breaker.state)
    assert.are.equal(200, assert(http.get(d.port, "/while-open")).status)
    assert.is_truthy(port.wait_until(function()
      return total(d:stats(), "skipped", "breaker") >= 1
    end, 10))
    stop.add(hostile.start{ mode = "ok", port = cport })
    require("socket").sleep(COOLDOWN_MS / 1000 + 0.1)
    assert.are.equal(200, assert(http.get(d.port, "/up")).status)
    d:wait_totals("compared", 1)
    assert.are.equal("closed", d:stats().breaker.state)
    assert.are.equal(0, metric(d, "shadow_breaker_open"))
  end)
end)

-- The probe a half-open breaker let through may never start: the rewrite
-- hook fails for it. The breaker must let the next request probe, not
-- wait forever for a result that cannot come.
describe("circuit breaker whose probe is dropped by the rewrite hook",
         function()
  it("lets the next request probe", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 '{"ok":true}'; } ]] } })
    local h = stop.add(hostile.start{ mode = "reset" })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
      candidate = h.url, rate = 1.0,
      extra = ("  breaker = { failures = 1, cooldown_ms = %d },\n"
               .. "  rewrite = function(req)\n"
               .. "    if req.path == '/no-rewrite' then error('no') end\n"
               .. "    return req\n"
               .. "  end,"):format(COOLDOWN_MS) })
    assert.are.equal(200, assert(http.get(d.port, "/first")).status)
    assert.is_truthy(port.wait_until(function()
      return d:stats().breaker.state == "open"
    end, 10), "the breaker did not open")
    h:set_mode("ok")
    require("socket").sleep(COOLDOWN_MS / 1000 + 0.1)
    assert.are.equal(200, assert(http.get(d.port, "/no-rewrite")).status)
    assert.is_truthy(port.wait_until(function()
      return total(d:stats(), "skipped", "rewrite") >= 1
    end, 10), "the rewrite hook did not fail")
    assert.are.equal(200, assert(http.get(d.port, "/then")).status)
    d:wait_totals("compared", 1)
    assert.are.equal("closed", d:stats().breaker.state)
  end)
end)
