-- shadow.verdict(compared, diverged [, slo]): the promotion verdict that
-- shadowd's /stats reports, decided by libshadow (src/engine/verdict.c) so
-- a gateway and the daemon reach the same decision from the same counts.
-- slo = { max_divergence_rate = 0.001, min_samples = 1000 }, the daemon's
-- defaults. Returns the table /stats holds under "verdict":
-- { decision, compared, diverged, rate, lower, upper, budget, reason }.
local ffi = require "ffi"
local loader = require "shadow.loader"

local error, floor, pairs, pcall, tostring, type =
  error, math.floor, pairs, pcall, tostring, type
local format = string.format

local M = {}

local DEFAULT_BUDGET = 0.001
local DEFAULT_MIN_SAMPLES = 1000
-- 2^53: the largest count a Lua number holds exactly.
local MAX_COUNT = 9007199254740992
-- SHADOW_VERDICT_REASON_MAX in src/engine/verdict.h.
local REASON_MAX = 192

local DECISIONS = { [1] = "promote", [0] = "insufficient-data",
  [-1] = "hold" }

-- Scratch out-parameters, one set per VM; plain memory, no library needed.
local nums = ffi.new("double[3]")
local reason = ffi.new("char[?]", REASON_MAX)

local function is_count(x)
  return type(x) == "number" and x >= 0 and x <= MAX_COUNT and floor(x) == x
end

local SLO_KEYS = { max_divergence_rate = true, min_samples = true }

local function slo_fields(slo)
  if slo == nil then return DEFAULT_BUDGET, DEFAULT_MIN_SAMPLES end
  if type(slo) ~= "table" then
    error("shadow.verdict: slo must be a table or nil", 3)
  end
  for k in pairs(slo) do
    if not SLO_KEYS[k] then
      error(format("shadow.verdict: unknown slo field %q (expected "
        .. "max_divergence_rate, min_samples)", tostring(k)), 3)
    end
  end
  local budget, min = slo.max_divergence_rate, slo.min_samples
  if budget == nil then
    budget = DEFAULT_BUDGET
  elseif type(budget) ~= "number" or not (budget >= 0 and budget <= 1) then
    error("shadow.verdict: slo.max_divergence_rate must be a number in "
      .. "[0, 1]", 3)
  end
  if min == nil then
    min = DEFAULT_MIN_SAMPLES
  elseif not is_count(min) then
    error("shadow.verdict: slo.min_samples must be a whole number >= 0", 3)
  end
  return budget, min
end

-- The C function, looked up once; a libshadow older than this module has
-- the same ABI version but not this symbol, and says so in words.
local verdict_fn

local function get_fn()
  if verdict_fn then return verdict_fn end
  local C = loader.get()
  local ok, fn = pcall(function() return C.shadow_ffi_verdict end)
  if not ok then
    error("shadow.verdict: this libshadow has no shadow_ffi_verdict; "
      .. "install the libshadow built with this module", 3)
  end
  verdict_fn = fn
  return fn
end

function M.verdict(compared, diverged, slo)
  if not is_count(compared) then
    error("shadow.verdict: compared must be a whole number >= 0", 2)
  end
  if not is_count(diverged) or diverged > compared then
    error("shadow.verdict: diverged must be a whole number from 0 to "
      .. "compared", 2)
  end
  local budget, min = slo_fields(slo)
  local code = get_fn()(compared, diverged, budget, min, nums, nums + 1,
    nums + 2, reason, REASON_MAX)
  local decision = DECISIONS[code]
  if not decision then
    -- The arguments were checked above, so C refusing them is a bug.
    error("shadow.verdict: libshadow refused the counts: "
      .. loader.strerror(code), 2)
  end
  return {
    decision = decision,
    compared = compared,
    diverged = diverged,
    rate = nums[0],
    lower = nums[1],
    upper = nums[2],
    budget = budget,
    reason = ffi.string(reason),
  }
end

return M
