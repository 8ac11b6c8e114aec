-- Compiles a Lua diff options table into C options, once per table: the
-- compiled form is cached in a weak table keyed by the options table, so a
-- hot loop passing the same table builds nothing. (A table changed after
-- its first use keeps its first compiled form; pass a new table instead.)
local ffi = require "ffi"
local loader = require "shadow.loader"

local error, format, pairs, ipairs, setmetatable, tostring, type =
  error, string.format, pairs, ipairs, setmetatable, tostring, type

local MODES = { index = 0, set = 1, multiset = 2 }
local KEY_MODE = 3

local cache = setmetatable({}, { __mode = "k" })

local M = {}

local function check(rc, what)
  if rc ~= 0 then
    error(format("%s: %s", what, loader.strerror(rc)), 0)
  end
end

local function list(t, name)
  if t == nil then return {} end
  if type(t) ~= "table" then error(name .. " must be a list of strings", 0) end
  for i, v in ipairs(t) do
    if type(v) ~= "string" then
      error(format("%s[%d] must be a string", name, i), 0)
    end
  end
  return t
end

local function build(C, o, opts)
  local ignore = opts.ignore or {}
  if type(ignore) ~= "table" then error("ignore must be a table", 0) end
  for i, h in ipairs(list(ignore.headers, "ignore.headers")) do
    check(C.shadow_ffi_opts_ignore_header(o, h),
      format("ignore.headers[%d] %q", i, h))
  end
  for i, p in ipairs(list(ignore.json, "ignore.json")) do
    check(C.shadow_ffi_opts_ignore_json(o, p), format("ignore.json[%d] %q", i, p))
  end
  local arrays = opts.arrays or {}
  if type(arrays) ~= "table" then error("arrays must be a table", 0) end
  for ptr, mode in pairs(arrays) do
    local what = format("arrays[%q]", tostring(ptr))
    if type(ptr) ~= "string" then error(what .. ": key must be a pointer", 0) end
    if type(mode) == "table" and type(mode.key) == "string" then
      check(C.shadow_ffi_opts_array_mode(o, ptr, KEY_MODE, mode.key), what)
    elseif MODES[mode] then
      check(C.shadow_ffi_opts_array_mode(o, ptr, MODES[mode], nil), what)
    else
      error(what .. ': must be "index", "set", "multiset" or { key = "name" }', 0)
    end
  end
  local tol = opts.tolerance or {}
  if type(tol) ~= "table" then error("tolerance must be a table", 0) end
  for ptr, t in pairs(tol) do
    local what = format("tolerance[%q]", tostring(ptr))
    if type(ptr) ~= "string" or type(t) ~= "number" then
      error(what .. ": must map a pointer to a number", 0)
    end
    check(C.shadow_ffi_opts_tolerance(o, ptr, t), what)
  end
  if opts.diff_bytes ~= nil then
    if type(opts.diff_bytes) ~= "number" then
      error("diff_bytes must be a number", 0)
    end
    check(C.shadow_ffi_opts_diff_bytes(o, opts.diff_bytes), "diff_bytes")
  end
  if opts.value_max ~= nil then
    if type(opts.value_max) ~= "number" then
      error("value_max must be a number", 0)
    end
    check(C.shadow_ffi_opts_value_max(o, opts.value_max), "value_max")
  end
end

-- Returns the compiled options for opts (nil for nil), or raises an error
-- whose message names the bad entry.
function M.compile(opts)
  if opts == nil then return nil end
  local o = cache[opts]
  if o then return o end
  if type(opts) ~= "table" then error("options must be a table", 0) end
  local C = loader.get()
  o = C.shadow_ffi_opts_new()
  if o == nil then error("out of memory", 0) end
  o = ffi.gc(o, C.shadow_ffi_opts_free)
  build(C, o, opts)
  cache[opts] = o
  return o
end

return M
