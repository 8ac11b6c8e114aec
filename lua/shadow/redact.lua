-- Redaction of header values in records, as the daemon's redact.c does
-- it: a value is replaced by "[redacted hmac-sha256:<16 hex>]", the first
-- 64 bits of HMAC-SHA256 of the value under a key: redact.key when the
-- config sets one, else a random key made when this module is first loaded
-- (in nginx's init phase, so every worker forked after shares it). Equal
-- secrets still compare equal, no secret reaches a record, and a mark
-- cannot be turned back into a password by trying a dictionary. HMAC and
-- the random bytes are OpenSSL's, through the FFI: inside nginx libcrypto
-- is already loaded (ffi.C has it); elsewhere libcrypto.so.3 is loaded.
local ffi = require "ffi"

local concat, format, ipairs, lower, pairs, pcall, type =
  table.concat, string.format, ipairs, string.lower, pairs, pcall, type

local M = {}

M.DEFAULT_HEADERS = { "authorization", "proxy-authorization", "cookie",
                      "set-cookie", "x-api-key", "x-auth-token" }
-- redact.key: at least this many bytes (as the daemon).
M.KEY_MIN = 16

-- One declaration a call: one already made elsewhere (with OpenSSL's own
-- types) leaves the others to be made here.
for _, decl in ipairs {
  "const void *EVP_sha256(void);",
  "unsigned char *HMAC(const void *evp_md, const void *key, int key_len, "
    .. "const unsigned char *d, size_t n, unsigned char *md, "
    .. "unsigned int *md_len);",
  "int RAND_bytes(unsigned char *buf, int num);",
} do pcall(ffi.cdef, decl) end

local crypto
local md = ffi.new("unsigned char[64]")
local mdlen = ffi.new("unsigned int[1]")

local function lib()
  if crypto then return crypto end
  if pcall(function() return ffi.C.HMAC end) then
    crypto = ffi.C
  else
    crypto = ffi.load("libcrypto.so.3")
  end
  return crypto
end

local process_key
local function default_key()
  if process_key then return process_key end
  local buf = ffi.new("unsigned char[32]")
  if lib().RAND_bytes(buf, 32) ~= 1 then
    error("redact: no random bytes for the process key")
  end
  process_key = ffi.string(buf, 32)
  return process_key
end
-- Made now: a module loaded in nginx's master hands it to every worker.
pcall(default_key)

-- The mark of value under key (nil: the process's random key).
function M.mark(value, key)
  key = key or default_key()
  local C = lib()
  if C.HMAC(C.EVP_sha256(), key, #key, value, #value, md, mdlen) == nil then
    error("redact: HMAC failed")
  end
  local hex = {}
  for i = 0, 7 do hex[i + 1] = format("%02x", md[i]) end
  return "[redacted hmac-sha256:" .. concat(hex) .. "]"
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
