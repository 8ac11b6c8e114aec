-- shadow.ring(capacity): a bounded log of divergence records kept in C,
-- newest first, the same ring the daemon's admin API reads.
local ffi = require "ffi"
local cjson = require "cjson"
local loader = require "shadow.loader"

local error, floor, huge, setmetatable, tonumber, type =
  error, math.floor, math.huge, setmetatable, tonumber, type

local Ring = {}
Ring.__index = Ring

local M = {}

local function check_capacity(n)
  return type(n) == "number" and n >= 1 and floor(n) == n and n < huge
end

local function handle(self)
  local p = self._p
  if p == nil then error("shadow.ring: used after free", 3) end
  return p
end

function M.new(capacity)
  if not check_capacity(capacity) then
    error("shadow.ring: capacity must be a positive integer", 2)
  end
  local C = loader.get()
  local p = C.shadow_ffi_ring_new(capacity)
  if p == nil then error("shadow.ring: out of memory", 2) end
  return setmetatable({ _C = C, _p = ffi.gc(p, C.shadow_ffi_ring_free),
    _len = ffi.new("size_t[1]") }, Ring)
end

-- d is a divergence table (encoded as JSON) or JSON text.
function Ring:push(d)
  local p = handle(self)
  local text, route = d, nil
  if type(d) == "table" then
    text = cjson.encode(d)
    if type(d.route) == "string" then route = d.route end
  elseif type(d) ~= "string" then
    error("shadow.ring: push takes a table or a JSON string", 2)
  end
  if self._C.shadow_ffi_ring_push(p, text, #text, route, route and #route or 0)
      ~= 0 then
    error("shadow.ring: out of memory", 2)
  end
end

-- The newest n records (all when n is nil), newest first, as tables.
function Ring:latest(n)
  local p = handle(self)
  local len = tonumber(self._C.shadow_ffi_ring_len(p))
  if n == nil or n > len then n = len end
  local out = {}
  for i = 0, n - 1 do
    local s = self._C.shadow_ffi_ring_get(p, i, self._len)
    out[i + 1] = cjson.decode(ffi.string(s, self._len[0]))
  end
  return out
end

function Ring:len()
  return tonumber(self._C.shadow_ffi_ring_len(handle(self)))
end

function Ring:capacity()
  return tonumber(self._C.shadow_ffi_ring_capacity(handle(self)))
end

-- Keeps the newest min(len, capacity) records.
function Ring:set_capacity(capacity)
  if not check_capacity(capacity) then
    error("shadow.ring: capacity must be a positive integer", 2)
  end
  if self._C.shadow_ffi_ring_set_capacity(handle(self), capacity) ~= 0 then
    error("shadow.ring: out of memory", 2)
  end
end

-- Releases the C ring now rather than at collection; safe twice.
function Ring:free()
  local p = self._p
  if p == nil then return end
  self._p = nil
  ffi.gc(p, nil)
  self._C.shadow_ffi_ring_free(p)
end

return M
