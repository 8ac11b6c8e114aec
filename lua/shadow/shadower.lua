-- shadow.shadower{ primary = f, candidate = g, rate, key, ignore, ring }:
-- in-process shadowing, for swapping a codec or a library inside one
-- process. :call(...) returns exactly what f returns; for a sampled share of
-- calls it also runs g and compares the two results off to the side. g and
-- the comparison are protected: nothing they do reaches the caller.
local cjson = require "cjson"
local diff = require("shadow.diff").diff
local ring = require "shadow.ring"
local sampled = require("shadow.sample").sampled

local error, pcall, select, setmetatable, tostring, type, unpack =
  error, pcall, select, setmetatable, tostring, type, unpack

local DEFAULT_RING = 100
local JSON = { ["content-type"] = "application/json" }

local Shadower = {}
Shadower.__index = Shadower

local M = {}

local function pack(...)
  return { n = select("#", ...), ... }
end

-- A call's results as a record: one table compares as a JSON body, one
-- string as a plain body; anything else is wrapped in JSON ({"value": v}
-- for one result, an array for several) so it compares by value too.
local function as_record(r)
  local v = r[1]
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
    on_divergence = spec.on_divergence,
    -- Built once so the compiled C options are cached across calls.
    opts = { ignore = spec.ignore, arrays = spec.arrays,
             tolerance = spec.tolerance },
    stats = { calls = 0, sampled = 0, compared = 0, diverged = 0,
              candidate_errors = 0, errors = 0 },
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

local function compare(self, pr, cr)
  local d = diff(as_record(pr), as_record(cr), self.opts)
  self.stats.compared = self.stats.compared + 1
  if not d then return end
  self.stats.diverged = self.stats.diverged + 1
  self.ring:push(d)
  if self.on_divergence then self.on_divergence(d) end
end

local function shadow_leg(self, pr, ...)
  local cr = pack(pcall(self.candidate, ...))
  if not cr[1] then
    self.stats.candidate_errors = self.stats.candidate_errors + 1
    self.last_error = "candidate: " .. tostring(cr[2])
    return
  end
  cr = pack(unpack(cr, 2, cr.n))
  local ok, err = pcall(compare, self, pr, cr)
  if not ok then
    self.stats.errors = self.stats.errors + 1
    self.last_error = "compare: " .. tostring(err)
  end
end

function Shadower:call(...)
  local stats = self.stats
  stats.calls = stats.calls + 1
  if not decide(self, ...) then return self.primary(...) end
  stats.sampled = stats.sampled + 1
  local pr = pack(self.primary(...))
  shadow_leg(self, pr, ...)
  return unpack(pr, 1, pr.n)
end

return M
