-- shadow.shadower{ primary = f, candidate = g, rate, key, ignore, ring }:
-- in-process shadowing, for swapping a codec or a library inside one
-- process. :call(...) returns exactly what f returns, or raises what f
-- raises; for a sampled share of calls it also runs g and compares the two
-- results off to the side, timing both. g and the comparison are
-- protected: nothing they do reaches the caller. A g that raises is a
-- divergence like any other (status 500 against f's 200, the error as the
-- body), because a new implementation that fails where the old one
-- answers is the first thing a migration must see.
--
-- Results compare as JSON documents (one table), bodies (one string) or,
-- with compare = "record", as { status, headers, body } records. With
-- defer (for example ngx.timer.at), g runs later: defer(0, fn) must
-- schedule fn(premature) and return true, or nil and an error.
local cjson = require "cjson"
local clock = require "shadow.clock"
local diff_json = require("shadow.diff").diff_json
local ring = require "shadow.ring"
local sampled = require("shadow.sample").sampled
local stamp = require "shadow.stamp"

local error, pcall, select, setmetatable, tostring, type, unpack =
  error, pcall, select, setmetatable, tostring, type, unpack
local now_ms = clock.now_ms

local DEFAULT_RING = 100
local JSON = { ["content-type"] = "application/json" }
local TEXT = { ["content-type"] = "text/plain" }
local COMPARE = { auto = true, record = true }

local Shadower = {}
Shadower.__index = Shadower

local M = {}

local function pack(...)
  return { n = select("#", ...), ... }
end

-- A call's results as a record. In "auto": one table compares as a JSON
-- body, one string as a plain body; anything else is wrapped in JSON
-- ({"value": v} for one result, an array for several) so it compares by
-- value too. In "record": the one result is the record itself.
local function as_record(r, mode)
  local v = r[1]
  if mode == "record" then
    if r.n ~= 1 or type(v) ~= "table" then
      error("compare = \"record\": the result must be one table "
        .. "{ status, headers, body }", 0)
    end
    return v
  end
  if r.n == 1 and type(v) == "string" then
    return { status = 200, body = v }
  end
  local doc
  if r.n == 1 and type(v) == "table" then
    doc = v
  elseif r.n == 1 then
    doc = { value = v == nil and cjson.null or v }
  else
    doc = {}
    for i = 1, r.n do
      if r[i] == nil then doc[i] = cjson.null else doc[i] = r[i] end
    end
  end
  return { status = 200, headers = JSON, body = cjson.encode(doc) }
end

-- What a raising candidate is compared as: a failed answer.
local function raised_record(err)
  return { status = 500, headers = TEXT, body = "raised: " .. tostring(err) }
end

function M.new(spec)
  if type(spec) ~= "table" then
    error("shadow.shadower: takes a table { primary =, candidate =, ... }", 2)
  end
  if type(spec.primary) ~= "function" or type(spec.candidate) ~= "function" then
    error("shadow.shadower: primary and candidate must be functions", 2)
  end
  local rate = spec.rate
  if rate == nil then rate = 1 end
  if type(rate) ~= "number" or not (rate >= 0 and rate <= 1) then
    error("shadow.shadower: rate must be a number in [0, 1]", 2)
  end
  if spec.key ~= nil and type(spec.key) ~= "function" then
    error("shadow.shadower: key must be a function(input) -> string", 2)
  end
  if spec.defer ~= nil and type(spec.defer) ~= "function" then
    error("shadow.shadower: defer must be a function(0, fn), such as "
      .. "ngx.timer.at", 2)
  end
  if spec.on_divergence ~= nil and type(spec.on_divergence) ~= "function" then
    error("shadow.shadower: on_divergence must be a function(d)", 2)
  end
  local mode = spec.compare or "auto"
  if not COMPARE[mode] then
    error('shadow.shadower: compare must be "auto" or "record"', 2)
  end
  local log = spec.ring
  if log == nil or type(log) == "number" then
    log = ring.new(log or DEFAULT_RING)
  elseif type(log) ~= "table" or type(log.push) ~= "function" then
    error("shadow.shadower: ring must be a shadow.ring or a capacity", 2)
  end
  return setmetatable({
    primary = spec.primary,
    candidate = spec.candidate,
    rate = rate,
    key = spec.key,
    ring = log,
    compare = mode,
    defer = spec.defer,
    on_divergence = spec.on_divergence,
    -- Built once so the compiled C options are cached across calls.
    opts = { ignore = spec.ignore, arrays = spec.arrays,
             tolerance = spec.tolerance },
    stats = { calls = 0, sampled = 0, compared = 0, diverged = 0,
              candidate_errors = 0, skipped = 0, errors = 0 },
    last_error = nil,
  }, Shadower)
end

local function decide(self, ...)
  local key
  if self.key then
    local ok, k = pcall(self.key, ...)
    if ok then
      key = k
    else
      self.stats.errors = self.stats.errors + 1
      self.last_error = "key: " .. tostring(k)
    end
    if key ~= nil and type(key) ~= "string" then key = tostring(key) end
  end
  return sampled(key, self.rate)
end

-- Compares the two records; a divergence goes to the ring with both
-- durations, then to on_divergence.
local function compare(self, pr, crec, primary_ms, candidate_ms)
  local prec = as_record(pr, self.compare)
  local text, parts = diff_json(prec, crec, self.opts)
  self.stats.compared = self.stats.compared + 1
  if parts == 0 then return end
  self.stats.diverged = self.stats.diverged + 1
  text = stamp.timings(text, primary_ms, candidate_ms)
  self.ring:push(text)
  if self.on_divergence then self.on_divergence(cjson.decode(text)) end
end

local function candidate_record(self, cr)
  if not cr[1] then
    self.stats.candidate_errors = self.stats.candidate_errors + 1
    self.last_error = "candidate: " .. tostring(cr[2])
    return raised_record(cr[2])
  end
  return as_record(pack(unpack(cr, 2, cr.n)), self.compare)
end

local function shadow_leg(self, pr, primary_ms, ...)
  local t0 = now_ms()
  local cr = pack(pcall(self.candidate, ...))
  local candidate_ms = now_ms() - t0
  local ok, err = pcall(function()
    compare(self, pr, candidate_record(self, cr), primary_ms, candidate_ms)
  end)
  if not ok then
    self.stats.errors = self.stats.errors + 1
    self.last_error = "compare: " .. tostring(err)
  end
end

-- Schedules the candidate leg through defer; counts it as skipped when
-- it cannot be scheduled or the scheduler gives up on it (premature).
local function deferred_leg(self, pr, primary_ms, args)
  local stats = self.stats
  local function run(premature)
    if premature then
      stats.skipped = stats.skipped + 1
      return
    end
    shadow_leg(self, pr, primary_ms, unpack(args, 1, args.n))
  end
  local ok, started, err = pcall(self.defer, 0, run)
  if not ok or not started then
    stats.skipped = stats.skipped + 1
    self.last_error = "defer: " .. tostring(ok and err or started)
  end
end

function Shadower:call(...)
  local stats = self.stats
  stats.calls = stats.calls + 1
  if not decide(self, ...) then return self.primary(...) end
  stats.sampled = stats.sampled + 1
  local t0 = now_ms()
  local pr = pack(self.primary(...))
  local primary_ms = now_ms() - t0
  if self.defer then
    deferred_leg(self, pr, primary_ms, pack(...))
  else
    shadow_leg(self, pr, primary_ms, ...)
  end
  return unpack(pr, 1, pr.n)
end

return M
