-- Puts what only the caller knows into a divergence record that libshadow
-- formatted: the record's id (a gateway numbers records across all its
-- workers) and the legs' timings, latency_ms and first_byte_ms. The record
-- is edited as text, so it keeps the engine's key order and is never
-- decoded and encoded again.
local find, format, sub = string.find, string.format, string.sub

local M = {}

local LATENCY = '"latency_ms":{'
local FIRST_BYTE = ',"first_byte_ms":{'

-- A duration for the record: milliseconds, or null when unknown.
local function ms(v)
  if v == nil or v ~= v or v < 0 or v == math.huge then return "null" end
  return format("%.3f", v)
end

-- Where the record's own latency_ms starts and where what we replace
-- ends. The engine writes latency_ms after the diff parts, so its last
-- occurrence is the record's own (a value quoted inside a diff may hold
-- the same key); it is near the end, so that is searched first. Its
-- members are numbers or null, so the first "}" after it closes it. A
-- first_byte_ms right after it (an engine that writes one) is replaced
-- too, never doubled.
local function tail(text)
  local n = #text
  local from = n > 512 and n - 512 or 1
  local at
  while true do
    local i = from
    while true do
      local s = find(text, LATENCY, i, true)
      if not s then break end
      at, i = s, s + 1
    end
    if at or from == 1 then break end
    from = 1
  end
  if not at then return nil end
  local stop = find(text, "}", at + #LATENCY, true)
  if not stop then return nil end
  if sub(text, stop + 1, stop + #FIRST_BYTE) == FIRST_BYTE then
    stop = find(text, "}", stop + #FIRST_BYTE, true) or stop
  end
  return at, stop
end

local function timing_text(primary_ms, candidate_ms, primary_fb, candidate_fb)
  return format('"latency_ms":{"primary":%s,"candidate":%s},'
    .. '"first_byte_ms":{"primary":%s,"candidate":%s}', ms(primary_ms),
    ms(candidate_ms), ms(primary_fb), ms(candidate_fb))
end

-- The record with its timings replaced.
function M.timings(text, primary_ms, candidate_ms, primary_fb, candidate_fb)
  local at, stop = tail(text)
  if not at then return text end
  return sub(text, 1, at - 1)
    .. timing_text(primary_ms, candidate_ms, primary_fb, candidate_fb)
    .. sub(text, stop + 1)
end

-- The record with its id and its timings replaced, in one copy.
function M.record(text, id, primary_ms, candidate_ms, primary_fb,
                  candidate_fb)
  local s, e = find(text, '^{"id":%d+')
  local at, stop = tail(text)
  if not s or not at then
    return M.timings(M.id(text, id), primary_ms, candidate_ms, primary_fb,
                     candidate_fb)
  end
  return format('{"id":%d', id) .. sub(text, e + 1, at - 1)
    .. timing_text(primary_ms, candidate_ms, primary_fb, candidate_fb)
    .. sub(text, stop + 1)
end

-- The record with its id replaced (records start {"id":N,).
function M.id(text, id)
  local s, e = find(text, '^{"id":%d+')
  if not s then return text end
  return format('{"id":%d', id) .. sub(text, e + 1)
end

return M
