-- shadow.shadower: in-process shadowing of one function by another.
require "env"
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

  it("keeps the caller safe from a failing candidate", function()
    local s = shadow.shadower{
      primary = function() return "ok" end,
      candidate = function() error("boom") end,
    }
    assert.equal("ok", s:call())
    assert.equal(1, s.stats.candidate_errors)
    assert.matches("boom", s.last_error, 1, true)
    assert.equal(0, s.ring:len())
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
