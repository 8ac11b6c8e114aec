-- shadow.verdict through the FFI, as a gateway calls it, against the rule
-- of the README with the 95% Wilson interval computed here, in Lua, as the
-- roots of the quadratic that defines it (the engine uses another form).
require "env"
local shadow = require "shadow"

local sqrt = math.sqrt
-- The 0.975 quantile of the standard normal distribution.
local Z = 1.959963984540054

-- Where n (k/n - p)^2 = z^2 p (1 - p):
-- (n + z^2) p^2 - (2k + z^2) p + k^2/n = 0.
local function wilson(n, k)
  if n == 0 then return 0, 1 end
  local a, b, c = n + Z * Z, 2 * k + Z * Z, k * k / n
  local d = sqrt(b * b - 4 * a * c)
  local lo, hi = (b - d) / (2 * a), (b + d) / (2 * a)
  if k == 0 then lo = 0 end
  if k == n then hi = 1 end
  return lo, hi
end

-- The rule, restated from the README.
local function expected(n, k, budget, min)
  local lo, hi = wilson(n, k)
  if n > 0 and lo > budget then return "hold", lo, hi end
  if n == 0 or n < min then return "insufficient-data", lo, hi end
  if hi <= budget then return "promote", lo, hi end
  return "hold", lo, hi
end

local function near(a, b)
  return math.abs(a - b) <= 1e-9 * math.max(1e-12, math.abs(b))
end

-- The percentage the reason names ("at least" for the lower bound, "at
-- most" or "up to" for the upper one), checked against the bound at the two
-- significant digits it is written with.
local WORDS = { lower = { "at least" }, upper = { "at most", "up to" } }
local function named(reason, which)
  for _, w in ipairs(WORDS[which]) do
    local x = reason:match("^" .. w .. " ([%d.]+)%% of compared requests")
    if x then return tonumber(x) end
  end
end

local function sig2(x)
  return tonumber(("%.2g"):format(x * 100))
end

describe("shadow.verdict", function()
  it("holds 80 of 80 at once, naming the lower bound", function()
    local v = shadow.verdict(80, 80)
    local lo, hi = wilson(80, 80)
    assert.equal("hold", v.decision)
    assert.is_true(near(v.lower, lo), v.lower .. " vs " .. lo)
    assert.equal(1, v.upper)
    assert.equal(1, v.rate)
    assert.equal("at least 95% of compared requests differ; "
      .. "the budget is 0.1%", v.reason)
    assert.equal(sig2(lo), named(v.reason, "lower"))
  end)

  it("waits for min_samples when 0 of 80 differ", function()
    local v = shadow.verdict(80, 0)
    local lo, hi = wilson(80, 0)
    assert.equal("insufficient-data", v.decision)
    assert.equal(0, v.lower)
    assert.is_true(near(v.upper, hi))
    -- Clean so far, but the upper bound is still well over the budget.
    assert.is_true(v.upper > 0.04)
    assert.equal("1000 comparisons needed, 80 so far", v.reason)
  end)

  it("promotes 0 of 4000 at a 0.1% budget", function()
    local v = shadow.verdict(4000, 0, { max_divergence_rate = 0.001 })
    local _, hi = wilson(4000, 0)
    assert.equal("promote", v.decision)
    assert.is_true(near(v.upper, hi))
    assert.is_true(hi < 0.001)
    assert.equal("at most 0.096% of compared requests differ; "
      .. "the budget is 0.1%", v.reason)
    assert.equal(sig2(hi), named(v.reason, "upper"))
  end)

  it("holds 10 of 2000 at 0.1%, past min_samples and on the lower bound",
     function()
    local v = shadow.verdict(2000, 10, { max_divergence_rate = 0.001,
                                         min_samples = 1000 })
    local lo, hi = wilson(2000, 10)
    assert.equal("hold", v.decision)
    assert.equal(0.005, v.rate)
    assert.is_true(near(v.lower, lo) and near(v.upper, hi))
    assert.equal(sig2(lo), named(v.reason, "lower"))
    assert.matches("^at least [%d.]+%% of compared requests differ; "
      .. "the budget is 0%.1%%$", v.reason)
  end)

  it("holds past min_samples when the interval still reaches over",
     function()
    local v = shadow.verdict(1000, 0)
    local _, hi = wilson(1000, 0)
    assert.equal("hold", v.decision)
    assert.equal("up to 0.38% of compared requests may differ; "
      .. "the budget is 0.1%", v.reason)
    assert.equal(sig2(hi), named(v.reason, "upper"))
  end)

  it("gives nothing compared insufficient-data, whatever min_samples",
     function()
    local v = shadow.verdict(0, 0)
    assert.equal("insufficient-data", v.decision)
    assert.same({ 0, 0, 1 }, { v.rate, v.lower, v.upper })
    assert.equal("1000 comparisons needed, 0 so far", v.reason)
    v = shadow.verdict(0, 0, { min_samples = 0 })
    assert.equal("insufficient-data", v.decision)
    assert.equal("no comparisons yet", v.reason)
  end)

  it("lets the interval alone decide with min_samples 0", function()
    local v = shadow.verdict(4000, 0, { min_samples = 0 })
    assert.equal("promote", v.decision)
    v = shadow.verdict(80, 0, { min_samples = 0 })
    assert.equal("hold", v.decision)
    assert.equal(sig2(select(2, wilson(80, 0))), named(v.reason, "upper"))
    assert.matches("^up to [%d.]+%% of compared requests may differ; "
      .. "the budget is 0%.1%%$", v.reason)
  end)

  it("tells bounds near the budget apart in the reason", function()
    -- 3838 clean comparisons are the fewest that promote at 0.1%.
    assert.equal("promote", shadow.verdict(3838, 0).decision)
    local v = shadow.verdict(3837, 0)
    assert.equal("hold", v.decision)
    assert.equal("up to 0.10002% of compared requests may differ; "
      .. "the budget is 0.1%", v.reason)
  end)

  it("agrees with the rule over a sweep of counts, budgets and minimums",
     function()
    local budgets = { 0, 0.0001, 0.001, 0.01, 0.05, 0.5, 1 }
    local mins = { 0, 1, 30, 1000 }
    local swept, wrong = 0, {}
    local n = 0
    while n <= 5000 do
      for k = 0, n, 1 + math.floor(n / 17) do
        for _, b in ipairs(budgets) do
          for _, m in ipairs(mins) do
            local want, lo, hi = expected(n, k, b, m)
            -- Within rounding of the budget either answer is noise.
            if math.abs(lo - b) > 1e-12 and math.abs(hi - b) > 1e-12 then
              local v = shadow.verdict(n, k, { max_divergence_rate = b,
                                               min_samples = m })
              swept = swept + 1
              if v.decision ~= want or not near(v.upper, hi)
                  or not (near(v.lower, lo) or (lo < 1e-12 and v.lower == 0))
              then
                wrong[#wrong + 1] = ("%d of %d at %g, min %d: %s, want %s")
                  :format(k, n, b, m, v.decision, want)
              end
            end
          end
        end
      end
      n = n < 60 and n + 1 or n + 113
    end
    assert.is_true(swept > 5000, "swept " .. swept)
    assert.same({}, wrong)
  end)

  it("returns the shape of /stats' verdict", function()
    local v = shadow.verdict(700, 3, { max_divergence_rate = 0.01,
                                       min_samples = 500 })
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "budget", "compared", "decision", "diverged", "lower",
                  "rate", "reason", "upper" }, keys)
    assert.equal(700, v.compared)
    assert.equal(3, v.diverged)
    assert.equal(0.01, v.budget)
    assert.equal(3 / 700, v.rate)
  end)

  it("refuses counts and slo fields that make no sense", function()
    local bad = {
      { -1, 0 }, { 1, 2 }, { 0.5, 0 }, { 1 / 0, 0 }, { 0 / 0, 0 },
      { 10, -1 }, { 10, 0.5 }, { 10, 0 / 0 }, { "1", 0 }, { nil, 0 },
      { 10 },
      { 10, 0, { max_divergence_rate = 2 } },
      { 10, 0, { max_divergence_rate = -0.1 } },
      { 10, 0, { min_samples = -1 } },
      { 10, 0, { min_samples = 1.5 } },
      { 10, 0, { min_sample = 100 } }, -- a typo is not silently ignored
      { 10, 0, "strict" },
    }
    for _, args in ipairs(bad) do
      local ok, err = pcall(shadow.verdict, args[1], args[2], args[3])
      assert.is_false(ok)
      assert.matches("shadow%.verdict: ", err)
    end
    local _, err = pcall(shadow.verdict, 10, 0, { min_sample = 100 })
    assert.matches('"min_sample"', err, 1, true)
  end)
end)
