-- A divergence record into the gateway's ring, from where libshadow wrote
-- it: the engine's text stays in C memory, is stamped (the gateway's id,
-- the legs' timings) and prefixed ("<id> <#route> <route>", store.lua's
-- slot format) into one per-worker buffer, and that buffer goes to the
-- shared dict through the FFI function lua-resty-core's safe_set calls.
-- The string path (ffi.string, stamp.record, Store:push) made four or five
-- Lua strings of the record's size per divergence, each hashed, interned
-- and collected; records alike but for their numbers share length and
-- LuaJIT's sampled hash, so each new one was compared with the others
-- still alive. The bytes stored are the string path's, byte for byte
-- (stamp.lua's rules); a record the engine shaped otherwise, or a
-- lua-nginx-module without the FFI function, takes the string path.
local ffi = require "ffi"
local stamp = require "shadow.stamp"

local ngx = ngx
local pcall, tonumber, type = pcall, tonumber, type
local ffi_copy, ffi_string = ffi.copy, ffi.string

local M = {}

local C = ffi.C
local store_fn, to_zone

-- lua-resty-core declares the store function (http subsystem).
pcall(ffi.cdef, [[
void *memmem(const void *haystack, size_t haystacklen, const void *needle,
             size_t needlelen);
]])
local has_memmem = pcall(function() return C.memmem end)

local function load_fast()
  if not has_memmem
      or not (ngx and ngx.config and ngx.config.subsystem == "http") then
    return
  end
  if not pcall(require, "resty.core.shdict") then return end
  if not pcall(function()
    store_fn = C.ngx_http_lua_ffi_shdict_store
    to_zone = C.ngx_http_lua_ffi_shdict_udata_to_zone
  end) then
    store_fn = nil
  end
end
load_fast()

-- Whether the fast path is in use (for the JIT spec).
M.fast = store_fn ~= nil

local SAFE_SET, LUA_TSTRING = 0x0004, 4
local ID = '{"id":'
local LATENCY = '"latency_ms":{'
local FIRST_BYTE = ',"first_byte_ms":{'
local CLOSE = "}"

local buf, buf_size = nil, 0
local errmsg, forcible

local function reserve(n)
  if n > buf_size then
    local size = buf_size > 0 and buf_size or 4096
    while size < n do size = size * 2 end
    buf, buf_size = ffi.new("char[?]", size), size
  end
  return buf
end

-- The offset (from 0) of needle in p[from, n), or nil.
local function find_at(p, n, from, needle)
  if from >= n then return nil end
  local q = C.memmem(p + from, n - from, needle, #needle)
  if q == nil then return nil end
  return tonumber(ffi.cast("const char *", q) - p)
end

-- The engine's record: where its id's digits end, where its own
-- latency_ms starts and where the timings end (stamp.lua's rules: the
-- last latency_ms, searched in the last 512 bytes first; the first "}"
-- after it; a first_byte_ms right after it replaced too). nil if the
-- record is not of that shape.
local function shape(p, n)
  -- Short strings rather than byte loops: the leg runs in a timer's
  -- coroutine, mostly interpreted, where each FFI access is a call.
  if n < 8 or ffi_string(p, #ID) ~= ID then return nil end
  local e = #ID
  while e < n and p[e] >= 48 and p[e] <= 57 do e = e + 1 end
  if e == #ID then return nil end
  local from = n > 512 and n - 513 or 0
  local at
  while true do
    local i = from
    while true do
      local s = find_at(p, n, i, LATENCY)
      if not s then break end
      at, i = s, s + 1
    end
    if at or from == 0 then break end
    from = 0
  end
  if not at then return nil end
  local stop = find_at(p, n, at + #LATENCY, CLOSE)
  if not stop then return nil end
  if stop + #FIRST_BYTE < n
      and ffi_string(p + stop + 1, #FIRST_BYTE) == FIRST_BYTE then
    stop = find_at(p, n, stop + #FIRST_BYTE, CLOSE) or stop
  end
  return e, at, stop
end

-- The kind a record's body part names ("json", "bytes", ...), read where
-- the record is; nil if it names none.
local BODY_KIND = '"body":{"differs":true,"kind":"'

function M.body_kind(p, n)
  if not has_memmem then
    local text = ffi_string(p, n)
    local at = text:find(BODY_KIND, 1, true)
    local q = at and text:find('"', at + #BODY_KIND, true)
    return q and text:sub(at + #BODY_KIND, q - 1) or nil
  end
  local at = find_at(p, n, 0, BODY_KIND)
  if not at then return nil end
  local s = at + #BODY_KIND
  local q = find_at(p, n, s, '"')
  if not q then return nil end
  return ffi_string(p + s, q - s)
end

-- The ring's slot value for the record p[0, n) stamped with id and the
-- timings, in this worker's buffer: the buffer, its length, and where the
-- record starts in it. nil if the record is not of the engine's shape.
function M.build(p, n, id, route, primary_ms, candidate_ms, primary_fb,
                 candidate_fb)
  local e, at, stop = shape(p, n)
  if not e then return nil end
  local pre = id .. " " .. #route .. " " .. route
  local head = ID .. id
  local timing = stamp.timing_text(primary_ms, candidate_ms, primary_fb,
                                   candidate_fb)
  local mid, rest = at - e, n - stop - 1
  local len = #pre + #head + mid + #timing + rest
  local b = reserve(len)
  local k = 0
  ffi_copy(b, pre, #pre)
  k = k + #pre
  ffi_copy(b + k, head, #head)
  k = k + #head
  ffi_copy(b + k, p + e, mid)
  k = k + mid
  ffi_copy(b + k, timing, #timing)
  k = k + #timing
  ffi_copy(b + k, p + stop + 1, rest)
  return b, len, #pre
end

-- Stamps the record p[0, n) with id and the timings and keeps it in the
-- ring's slot for id. Returns whether the dict took it, and, when `text`
-- is asked for, the stamped record as a Lua string.
function M.push(store, id, route, p, n, primary_ms, candidate_ms,
                primary_fb, candidate_fb, text)
  route = route or ""
  -- The dict's zone, as lua-resty-core's own methods find it (once).
  local zone = store.zone
  if zone == nil and store_fn ~= nil then
    local u = store.dict[1]
    zone = type(u) == "userdata" and to_zone(u) or false
    if zone == nil then zone = false end
    store.zone = zone
  end
  local b, len, at
  if zone then
    b, len, at = M.build(p, n, id, route, primary_ms, candidate_ms,
                         primary_fb, candidate_fb)
  end
  if not b then
    local s = stamp.record(ffi_string(p, n), id, primary_ms, candidate_ms,
                          primary_fb, candidate_fb)
    return store:push(id, route, s), text and s or nil
  end
  if errmsg == nil then
    errmsg, forcible = ffi.new("char *[1]"), ffi.new("int[1]")
  end
  local key = store:slot_key(id)
  local rc = store_fn(zone, SAFE_SET, key, #key, LUA_TSTRING, b, len, 0, 0,
                      0, errmsg, forcible)
  return rc == 0, text and ffi_string(b + at, len - at) or nil
end

return M
