-- Compressed bodies for the diff specs: gzip from the gzip tool, deflate
-- (zlib format, and raw) from zlib through the FFI.
local ffi = require "ffi"

local M = {}

function M.gzip(s)
  local file = os.tmpname()
  local f = assert(io.open(file, "wb"))
  f:write(s)
  f:close()
  local p = io.popen("gzip -c -n " .. file)
  local out = p:read("*a")
  p:close()
  os.remove(file)
  return out
end

if not pcall(ffi.typeof, "struct spec_zlib_marker") then
  ffi.cdef [[
    struct spec_zlib_marker { int x; };
    int compress2(uint8_t *dest, unsigned long *destLen,
                  const uint8_t *source, unsigned long sourceLen, int level);
    unsigned long compressBound(unsigned long sourceLen);
  ]]
end
local z = ffi.load("z")

-- The zlib format: what RFC 9110 calls deflate.
function M.deflate(s)
  local cap = z.compressBound(#s)
  local buf = ffi.new("uint8_t[?]", cap)
  local len = ffi.new("unsigned long[1]", cap)
  assert(z.compress2(buf, len, s, #s, 6) == 0)
  return ffi.string(buf, len[0])
end

-- Raw deflate: the zlib format without its 2-byte header and 4-byte trailer.
function M.raw_deflate(s)
  local d = M.deflate(s)
  return d:sub(3, -5)
end

return M
