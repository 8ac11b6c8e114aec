-- The candidate's circuit breaker for a gateway, kept in the shared dict
-- so all nginx workers see one breaker, with the daemon's rules
-- (src/proxy/breaker.c): closed -> open after `failures` consecutive
-- failures; open -> half-open after the cooldown, letting one probe
-- through; the probe's result closes or reopens it. While half-open only
-- the probe's result counts. The probe slot is a key with an expiry, so a
-- worker that dies holding it (a reload, a crash) cannot wedge the
-- breaker half-open.
local CLOSED, OPEN, HALF_OPEN = 0, 1, 2
local NAMES = { [CLOSED] = "closed", [OPEN] = "open",
                [HALF_OPEN] = "half-open" }

local KEY_STATE, KEY_FAILURES, KEY_OPENED, KEY_PROBE =
  "b:state", "b:failures", "b:opened", "b:probe"

local setmetatable = setmetatable

local Breaker = {}
Breaker.__index = Breaker

local M = {}

-- probe_ttl: seconds after which an unreported probe frees its slot
-- (longer than any candidate leg can last).
function M.new(dict, failures, cooldown_ms, probe_ttl)
  return setmetatable({ dict = dict, threshold = failures,
                        cooldown_ms = cooldown_ms, probe_ttl = probe_ttl },
                      Breaker)
end

function Breaker:state()
  return self.dict:get(KEY_STATE) or CLOSED
end

function Breaker:state_name()
  return NAMES[self:state()] or "closed"
end

-- Returns allowed, probe: whether a leg may start now, and whether it is
-- the half-open breaker's one probe (whose result must be reported, or
-- its slot released).
function Breaker:allow(now_ms)
  local dict = self.dict
  local state = dict:get(KEY_STATE) or CLOSED
  if state == CLOSED then return true, false end
  if state == OPEN then
    local opened = dict:get(KEY_OPENED) or 0
    if now_ms - opened < self.cooldown_ms then return false, false end
  end
  -- Open past its cooldown, or half-open: one probe at a time.
  if not dict:add(KEY_PROBE, true, self.probe_ttl) then
    return false, false
  end
  if state == OPEN then dict:set(KEY_STATE, HALF_OPEN) end
  return true, true
end

-- A probe that will report nothing (its leg never ran) frees the slot.
function Breaker:release(probe)
  if probe then self.dict:delete(KEY_PROBE) end
end

function Breaker:result(ok, probe, now_ms)
  local dict = self.dict
  local state = dict:get(KEY_STATE) or CLOSED
  if state == HALF_OPEN and not probe then return end
  if ok then
    if state == HALF_OPEN then
      dict:set(KEY_STATE, CLOSED)
      dict:delete(KEY_PROBE)
      state = CLOSED
    end
    if state == CLOSED then dict:set(KEY_FAILURES, 0) end
    return
  end
  if state == HALF_OPEN then
    dict:set(KEY_OPENED, now_ms)
    dict:set(KEY_STATE, OPEN)
    dict:delete(KEY_PROBE)
  elseif state == CLOSED then
    local n = dict:incr(KEY_FAILURES, 1, 0)
    if n and n >= self.threshold then
      dict:set(KEY_OPENED, now_ms)
      dict:set(KEY_STATE, OPEN)
      dict:set(KEY_FAILURES, 0)
    end
  end
end

return M
