-- Redaction of header values in records, as the daemon does it: a value is
-- replaced by "[redacted sha256:<first 8 hex>]", so equal secrets still
-- compare equal and no secret reaches a record. SHA-256 is OpenSSL's,
-- through the FFI: inside nginx libcrypto is already loaded (ffi.C has
-- it); elsewhere libcrypto.so.3 is loaded on first use.
local ffi = require "ffi"

local format, lower, pairs, pcall, type =
  string.format, string.lower, pairs, pcall, type

local M = {}

M.DEFAULT_HEADERS = { "authorization", "cookie", "set-cookie" }

pcall(ffi.cdef, [[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]])

local crypto
local md = ffi.new("unsigned char[32]")

local function lib()
  if crypto then return crypto end
  if pcall(function() return ffi.C.SHA256 end) then
    crypto = ffi.C
  else
    crypto = ffi.load("libcrypto.so.3")
  end
  return crypto
end

function M.mark(value)
  lib().SHA256(value, #value, md)
  return format("[redacted sha256:%02x%02x%02x%02x]", md[0], md[1], md[2],
                md[3])
end

-- A set of lower-case names from a list.
function M.set(names)
  local s = {}
  for i = 1, #names do s[lower(names[i])] = true end
  return s
end

-- headers: name -> value or list of values (lower-case names). Replaces
-- in place the values of names in set.
function M.headers(headers, set)
  for name, v in pairs(headers) do
    if set[name] then
      if type(v) == "table" then
        local out = {}
        for i = 1, #v do out[i] = M.mark(v[i]) end
        headers[name] = out
      else
        headers[name] = M.mark(v)
      end
    end
  end
  return headers
end

return M
