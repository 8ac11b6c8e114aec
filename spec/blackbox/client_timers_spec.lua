-- A client connection's deadlines are kept lazily (a deadline that only
-- moves later does not restart the timer; it fires early and sleeps for
-- the rest), so these hold the deadlines to what they were: a deadline
-- that moves earlier still fires on time, and one that keeps moving later
-- never fires early.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local http = require "support.http"
local cleanup = require "support.cleanup"
local socket = require "socket"

local BACKENDS = {
  primary = [[ location / { return 200 "primary ok"; } ]],
  candidate = [[ location / { return 200 "candidate ok"; } ]],
}

describe("a keep-alive client connection's timers", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       limits = { idle_timeout_ms = 400,
                                  header_timeout_ms = 300 } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("stays open while requests keep coming past idle_timeout_ms, "
     .. "then closes once idle for it", function()
    local c = assert(http.connect(d.port))
    finally(function() c:close() end)
    -- Requests back to back for three idle timeouts: the timer armed by
    -- the first fires meanwhile and must find the deadline moved on.
    local t0, n = socket.gettime(), 0
    while socket.gettime() - t0 < 1.2 do
      local res = assert(c:request{ path = "/k" .. n })
      assert.are.equal(200, res.status)
      n = n + 1
    end
    local idle0 = socket.gettime()
    assert.is_true(c:wait_closed(5))
    local idle = socket.gettime() - idle0
    assert.is_true(idle >= 0.35, ("closed after %.3fs idle"):format(idle))
    assert.is_true(idle < 3, ("closed after %.3fs idle"):format(idle))
  end)

end)

describe("a keep-alive client connection's header deadline", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    -- The idle deadline armed after each answer is far later than the
    -- header deadline a next request's first bytes start.
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       limits = { idle_timeout_ms = 4000,
                                  header_timeout_ms = 300 } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("answers a stalled next head with 408 at header_timeout_ms, "
     .. "an earlier deadline than the idle one already armed", function()
    local c = assert(http.connect(d.port))
    finally(function() c:close() end)
    -- Requests back to back past the header deadline armed at accept:
    -- the timer has fired and slept on to the idle deadline by now.
    local t1, n = socket.gettime(), 0
    while socket.gettime() - t1 < 0.6 do
      assert.are.equal(200, assert(c:request{ path = "/h" .. n }).status)
      n = n + 1
    end
    local t0 = socket.gettime()
    assert(c:send("GET /stalled HTTP/1.1\r\nHost: x\r\n"))
    local res = assert(c:read_response())
    local elapsed = socket.gettime() - t0
    assert.are.equal(408, res.status)
    assert.is_true(elapsed >= 0.25, ("408 after %.3fs"):format(elapsed))
    assert.is_true(elapsed < 3, ("408 after %.3fs"):format(elapsed))
  end)
end)
