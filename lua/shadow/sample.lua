-- shadow.sampled(key, rate): the sticky sampling rule (README), decided
-- by libshadow so a gateway and the daemon always agree.
local loader = require "shadow.loader"

local error, tostring, type = error, tostring, type

local M = {}

function M.sampled(key, rate)
  if type(rate) ~= "number" then
    error("shadow.sampled: rate must be a number in [0, 1]", 2)
  end
  local C = loader.get()
  if key == nil then return C.shadow_ffi_sampled(nil, 0, rate) ~= 0 end
  local kt = type(key)
  if kt == "number" then
    key = tostring(key)
  elseif kt ~= "string" then
    error("shadow.sampled: key must be a string, a number or nil", 2)
  end
  return C.shadow_ffi_sampled(key, #key, rate) ~= 0
end

return M
