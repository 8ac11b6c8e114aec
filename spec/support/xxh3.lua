-- the README's sticky-sampling rule computed straight from Debian's
-- libxxhash, independent of libshadow: what the daemon must agree with.
local ffi = require "ffi"

-- busted reloads modules per file while ffi declarations are global to
-- the process, so a second declaration is not an error here.
pcall(ffi.cdef, "uint64_t XXH3_64bits(const void *data, size_t len);")
local lib = ffi.load("libxxhash.so.0")

local M = {}

function M.hash(key) return lib.XXH3_64bits(key, #key) end

-- sampled(key, rate) = XXH3_64bits(key) % 1000000 < floor(rate*1e6 + 0.5)
function M.sampled(key, rate)
  local threshold = math.floor(rate * 1000000 + 0.5)
  return tonumber(M.hash(key) % 1000000ULL) < threshold
end

return M
