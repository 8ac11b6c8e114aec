-- Sticky sampling through libshadow against the rule of the README computed
-- independently here, with XXH3 from Debian's libxxhash directly.
require "env"
local ffi = require "ffi"
local shadow = require "shadow"

if not pcall(ffi.typeof, "struct spec_xxh_marker") then
  ffi.cdef [[
    struct spec_xxh_marker { int x; };
    uint64_t XXH3_64bits(const void *data, size_t len);
  ]]
end
local xxh = ffi.load("libxxhash.so.0")

local function expected(key, rate)
  local threshold = math.floor(rate * 1000000 + 0.5)
  return tonumber(xxh.XXH3_64bits(key, #key) % 1000000ULL) < threshold
end

local keys = {}
for i = 1, 1000 do keys[i] = "user-" .. i end

describe("shadow.sampled", function()
  it("selects exactly the keys the XXH3 rule selects at 0.3", function()
    local picked, mismatches = 0, {}
    for _, k in ipairs(keys) do
      local got = shadow.sampled(k, 0.3)
      if got ~= expected(k, 0.3) then mismatches[#mismatches + 1] = k end
      if got then picked = picked + 1 end
    end
    assert.same({}, mismatches)
    -- The rule is a hash: about 300 of 1000, far from none or all.
    assert.is_true(picked > 200 and picked < 400, "picked " .. picked)
  end)

  it("keeps every sampled key when the rate rises", function()
    local rates = { 0.01, 0.1, 0.3, 0.5, 0.9 }
    for i = 2, #rates do
      for _, k in ipairs(keys) do
        if shadow.sampled(k, rates[i - 1]) then
          assert.is_true(shadow.sampled(k, rates[i]), k)
        end
      end
    end
  end)

  it("samples nothing at 0 (or NaN) and everything at 1", function()
    for _, k in ipairs(keys) do
      assert.is_false(shadow.sampled(k, 0))
      assert.is_false(shadow.sampled(k, 0 / 0))
      assert.is_true(shadow.sampled(k, 1))
    end
  end)

  it("agrees with the rule on awkward keys", function()
    for _, k in ipairs({ "", "\0", "é", string.rep("x", 10000), "a\0b" }) do
      for _, r in ipairs({ 0.25, 0.5, 0.75 }) do
        assert.equal(expected(k, r), shadow.sampled(k, r))
      end
    end
  end)

  it("draws at random for a nil key, at the same rate", function()
    local n, hits = 20000, 0
    for _ = 1, n do
      if shadow.sampled(nil, 0.3) then hits = hits + 1 end
    end
    -- 0.3 +- 0.05 is more than ten standard deviations wide.
    assert.is_true(math.abs(hits / n - 0.3) < 0.05, "rate " .. hits / n)
    assert.is_false(shadow.sampled(nil, 0))
    assert.is_true(shadow.sampled(nil, 1))
  end)

  it("takes numbers as keys and refuses other types", function()
    assert.equal(expected("42", 0.5), shadow.sampled(42, 0.5))
    assert.has_error(function() shadow.sampled({}, 0.5) end)
    assert.has_error(function() shadow.sampled("k", "0.5") end)
  end)
end)
