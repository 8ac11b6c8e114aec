-- shadow.shadower: in-process shadowing of one function by another.
require "env"
local cjson = require "cjson"
local socket = require "socket"
local shadow = require "shadow"

describe("shadow.shadower", function()
  it("returns every result of the primary, nils included", function()
    local s = shadow.shadower{
      primary = function(x) return x, nil, "three" end,
      candidate = function(x) return x, nil, "three" end,
    }
    local n = select("#", s:call(7))
    assert.equal(3, n)
    local a, b, c = s:call(7)
    assert.same({ 7, nil, "three" }, { a, b, c })
    assert.equal(2, s.stats.compared)
    assert.equal(0, s.stats.diverged)
  end)

  it("records a divergence when the candidate's table differs", function()
    local ring = shadow.ring(10)
    local s = shadow.shadower{
      primary = function(id) return { id = id, name = "Ann" } end,
      candidate = function(id) return { name = "ann", id = id } end,
      ring = ring,
    }
    assert.same({ id = 1, name = "Ann" }, s:call(1))
    assert.equal(1, s.stats.diverged)
    local d = ring:latest(1)[1]
    assert.equal("json", d.body.kind)
    assert.same({ op = "replace", path = "/name", primary = "Ann",
      candidate = "ann" }, d.body.diffs[1])
  end)

  it("compares strings as bodies and wraps other values", function()
    local s = shadow.shadower{
      primary = function(v) return v end,
      candidate = function(v)
        if type(v) == "string" then return v .. "!" end
        return v + 1
      end,
    }
    assert.equal("abc", s:call("abc"))
    assert.equal(1, s:call(1))
    local got = s.ring:latest()
    assert.equal(2, #got)
    assert.equal("/value", got[1].body.diffs[1].path)
    assert.equal("bytes", got[2].body.kind)
    assert.matches("at byte 3", got[2].body.summary, 1, true)
  end)

  it("keeps the caller safe from a raising candidate, and records it", function()
    local s = shadow.shadower{
      primary = function() return "ok" end,
      candidate = function() error("boom") end,
    }
    assert.equal("ok", s:call())
    assert.equal(1, s.stats.candidate_errors)
    assert.matches("boom", s.last_error, 1, true)
    assert.equal(1, s.stats.compared)
    assert.equal(1, s.stats.diverged)
    local d = s.ring:latest(1)[1]
    assert.same({ differs = true, primary = 200, candidate = 500 }, d.status)
    assert.matches('candidate "raised: ', d.body.summary, 1, true)
  end)

  it("records both a raise and a difference from an old/new pair", function()
    local old = function(n) return { n = n, half = math.floor(n / 2) } end
    local new = function(n)
      if n == 3 then error("new codec cannot do 3") end
      if n == 5 then return { n = n, half = 2.5 } end
      return { n = n, half = math.floor(n / 2) }
    end
    local s = shadow.shadower{ primary = old, candidate = new }
    for n = 1, 6 do assert.same(old(n), s:call(n)) end
    assert.equal(6, s.stats.compared)
    assert.equal(2, s.stats.diverged)
    local got = s.ring:latest()
    assert.equal(2, #got)
    -- Newest first: the difference on 5, then the raise on 3.
    assert.same({ op = "replace", path = "/half", primary = 2,
                  candidate = 2.5 }, got[1].body.diffs[1])
    assert.equal(500, got[2].status.candidate)
  end)

  it("times both legs and says the first byte is unknown", function()
    local s = shadow.shadower{
      primary = function() return { v = 1 } end,
      candidate = function()
        local t = socket.gettime() + 0.02
        while socket.gettime() < t do end
        return { v = 2 }
      end,
    }
    s:call()
    local d = s.ring:latest(1)[1]
    assert.is_number(d.latency_ms.primary)
    assert.is_true(d.latency_ms.candidate >= 19, d.latency_ms.candidate)
    assert.is_true(d.latency_ms.primary < d.latency_ms.candidate)
    assert.equal(cjson.null, d.first_byte_ms.primary)
    assert.equal(cjson.null, d.first_byte_ms.candidate)
  end)

  it("compares records when told to", function()
    local s = shadow.shadower{
      primary = function() return { status = 200, body = "a" } end,
      candidate = function() return { status = 404, body = "a" } end,
      compare = "record",
    }
    assert.same({ status = 200, body = "a" }, s:call())
    local d = s.ring:latest(1)[1]
    assert.same({ differs = true, primary = 200, candidate = 404 }, d.status)
    assert.is_false(d.body.differs)
  end)

  it("runs the candidate later through defer", function()
    local queue = {}
    local ran = 0
    local s = shadow.shadower{
      primary = function(x) return { x = x } end,
      candidate = function(x) ran = ran + 1 return { x = x + 1 } end,
      defer = function(delay, fn)
        assert.equal(0, delay)
        queue[#queue + 1] = fn
        return true
      end,
    }
    assert.same({ x = 1 }, s:call(1))
    assert.equal(0, ran)
    assert.equal(0, s.stats.compared)
    queue[1](false)
    assert.equal(1, ran)
    assert.equal(1, s.stats.diverged)
    -- A scheduler that refuses, and one that gives up (premature).
    s.defer = function() return nil, "too many timers" end
    assert.same({ x = 2 }, s:call(2))
    assert.equal(1, s.stats.skipped)
    assert.matches("too many timers", s.last_error, 1, true)
    s.defer = function(_, fn) fn(true) return true end
    s:call(3)
    assert.equal(2, s.stats.skipped)
    assert.equal(1, ran)
  end)

  it("keeps the caller safe from a result that cannot be compared", function()
    local s = shadow.shadower{
      primary = function() return { f = print } end,
      candidate = function() return {} end,
    }
    local r = s:call()
    assert.equal(print, r.f)
    assert.equal(1, s.stats.errors)
  end)

  it("lets a primary error reach the caller", function()
    local s = shadow.shadower{
      primary = function() error("primary down") end,
      candidate = function() return 1 end,
    }
    assert.has_error(function() s:call() end)
  end)

  it("never calls the candidate at rate 0", function()
    local called = 0
    local s = shadow.shadower{
      primary = function() return 1 end,
      candidate = function() called = called + 1 return 2 end,
      rate = 0,
    }
    for _ = 1, 100 do s:call() end
    assert.equal(0, called)
    assert.equal(100, s.stats.calls)
    assert.equal(0, s.stats.sampled)
  end)

  it("samples by key exactly as shadow.sampled does", function()
    local seen = {}
    local s = shadow.shadower{
      primary = function(u) return u end,
      candidate = function(u) seen[u.id] = true return u end,
      rate = 0.5,
      key = function(u) return u.id end,
    }
    for i = 1, 200 do s:call({ id = "u" .. i }) end
    for i = 1, 200 do
      local k = "u" .. i
      assert.equal(shadow.sampled(k, 0.5), seen[k] == true, k)
    end
  end)

  it("applies ignore rules", function()
    local n = 0
    local s = shadow.shadower{
      primary = function() return { v = 1, at = 1 } end,
      candidate = function() n = n + 1 return { v = 1, at = n + 100 } end,
      ignore = { json = { "/at" } },
    }
    for _ = 1, 5 do s:call() end
    assert.equal(5, s.stats.compared)
    assert.equal(0, s.stats.diverged)
  end)

  it("refuses a bad spec", function()
    assert.has_error(function() shadow.shadower{ primary = 1, candidate = print } end)
    assert.has_error(function()
      shadow.shadower{ primary = print, candidate = print, rate = 2 }
    end)
    assert.has_error(function()
      shadow.shadower{ primary = print, candidate = print, ring = "x" }
    end)
  end)
end)
