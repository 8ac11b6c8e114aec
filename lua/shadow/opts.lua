-- Compiles a Lua diff options table into C options, once per table: the
-- compiled form is cached in a weak table keyed by the options table, so a
-- hot loop passing the same table builds nothing. (A table changed after
-- its first use keeps its first compiled form; pass a new table instead.)
--
-- The table goes to C as JSON, and C (shadow_diff_opts_parse) is the one
-- reader of the rules: the daemon hands its config's rules over the same
-- way, through encode() below, so both refuse a bad rule with the same
-- words.
local ffi = require "ffi"
local loader = require "shadow.loader"
local cjson = require("cjson.safe").new()

local error, format, setmetatable, tostring, type = error, string.format,
  setmetatable, tostring, type

-- 14 significant digits, the most Debian's lua-cjson writes: whole
-- numbers are exact to 10^14, far past any byte limit.
cjson.encode_number_precision(14)

local cache = setmetatable({}, { __mode = "k" })
local ERR_LEN = 256

local M = {}

-- The JSON form of an options table, or raises an error naming why it
-- has none (a function in it, a sparse list, an infinite number).
function M.encode(opts)
  if type(opts) ~= "table" then error("options must be a table", 0) end
  local text, why = cjson.encode(opts)
  if not text then error("the rules are not plain data: " .. tostring(why), 0) end
  return text
end

-- Returns the compiled options for opts (nil for nil), or raises an error
-- whose message names the bad entry.
function M.compile(opts)
  if opts == nil then return nil end
  local o = cache[opts]
  if o then return o end
  local text = M.encode(opts)
  local C = loader.get()
  o = C.shadow_ffi_opts_new()
  if o == nil then error("out of memory", 0) end
  o = ffi.gc(o, C.shadow_ffi_opts_free)
  local err = ffi.new("char[?]", ERR_LEN)
  local rc = C.shadow_ffi_opts_parse(o, text, #text, err, ERR_LEN)
  if rc ~= 0 then
    local why = ffi.string(err)
    error(why ~= "" and why or format("options: %s", loader.strerror(rc)), 0)
  end
  cache[opts] = o
  return o
end

return M
