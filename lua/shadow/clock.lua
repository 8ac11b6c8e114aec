-- A monotonic clock in milliseconds for timing legs: clock_gettime through
-- the FFI (no C library of ours needed, and the call JIT-compiles). Inside
-- nginx it is the same clock nginx uses for its timers.
local ffi = require "ffi"

local pcall = pcall

local M = {}

-- Another module in the same VM may have declared struct timespec already.
if not pcall(ffi.typeof, "struct timespec") then
  pcall(ffi.cdef, [[
    struct timespec { long tv_sec; long tv_nsec; };
  ]])
end
pcall(ffi.cdef, [[
  int clock_gettime(int clk_id, struct timespec *tp);
]])

local CLOCK_MONOTONIC = 1
local ts = ffi.new("struct timespec")
local C = ffi.C

-- Milliseconds since an arbitrary start, with microsecond resolution.
function M.now_ms()
  C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

return M
