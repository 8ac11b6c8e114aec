-- shadow.diff(primary, candidate [, opts]): compares two records in C and
-- returns the divergence record as a Lua table, or nil when they agree.
local ffi = require "ffi"
local cjson = require "cjson"
local loader = require "shadow.loader"
local record = require "shadow.record"
local compile = require("shadow.opts").compile

local error, pcall, tonumber = error, pcall, tonumber

local M = {}

-- One set of scratch objects per VM: records are refilled on each call and
-- the diff handle keeps its buffers, so a hot loop does not allocate in C.
local scratch

local function get_scratch()
  if scratch then return scratch end
  local C = loader.get()
  local p, c, d = C.shadow_ffi_record_new(), C.shadow_ffi_record_new(),
    C.shadow_ffi_diff_new()
  if p == nil or c == nil or d == nil then
    C.shadow_ffi_record_free(p)
    C.shadow_ffi_record_free(c)
    C.shadow_ffi_diff_free(d)
    error("shadow.diff: out of memory", 4)
  end
  scratch = {
    C = C,
    p = ffi.gc(p, C.shadow_ffi_record_free),
    c = ffi.gc(c, C.shadow_ffi_record_free),
    d = ffi.gc(d, C.shadow_ffi_diff_free),
    json = ffi.new("const char *[1]"),
    len = ffi.new("size_t[1]"),
  }
  return scratch
end

-- Runs the diff; returns the parts mask and the record's JSON text, or
-- raises an error at the level of the caller of the public function.
local function run(primary, candidate, opts)
  local s = get_scratch()
  local ok, o = pcall(compile, opts)
  if not ok then error("shadow.diff: bad options: " .. o, 3) end
  local fine, err = record.fill(s.p, primary, "primary")
  if fine then fine, err = record.fill(s.c, candidate, "candidate") end
  if not fine then error("shadow.diff: " .. err, 3) end
  s.opts = o
  local parts = s.C.shadow_ffi_diff_run(s.d, o, s.p, s.c, s.json, s.len)
  if parts < 0 then
    error("shadow.diff: " .. loader.strerror(parts), 3)
  end
  return parts, ffi.string(s.json[0], s.len[0])
end

-- The divergence as a table, or nil when the records agree. The second
-- result is the parts bitmask (1 status, 2 headers, 4 body).
function M.diff(primary, candidate, opts)
  local parts, text = run(primary, candidate, opts)
  if parts == 0 then return nil end
  return cjson.decode(text), parts
end

-- The divergence as JSON text (written even when equal) and the parts
-- mask: for rings and sinks that store text anyway.
function M.diff_json(primary, candidate, opts)
  local parts, text = run(primary, candidate, opts)
  return text, parts
end

-- n NUL-terminated strings, len bytes in all, from p.
local function split(p, len, n)
  local out, at = {}, 0
  for i = 1, n do
    local str = ffi.string(p + at)
    out[i] = str
    at = at + #str + 1
    if at > len then break end
  end
  return out
end

-- The fields that differed in the last diff of this VM, as a list of
-- strings ("status", "header:<name>", "body:<pointer>", "body"): what the
-- per-field counters of /stats count.
function M.last_fields()
  local s = get_scratch()
  local n = ffi.new("size_t[1]")
  local p = s.C.shadow_ffi_diff_fields(s.d, s.len, n)
  return split(p, tonumber(s.len[0]), tonumber(n[0]))
end

-- The rules that decided something in the last diff of this VM (absorbed
-- a difference, renamed a member), by name ("coerce:/qty"): what
-- shadow_rule_hits_total counts. Also when the records agreed.
function M.last_hits()
  local s = get_scratch()
  local n = ffi.new("size_t[1]")
  local p = s.C.shadow_ffi_diff_hits(s.d, s.opts, s.len, n)
  return split(p, tonumber(s.len[0]), tonumber(n[0]))
end

-- The names of every JSON rule in opts (a diff options table), in the
-- engine's order: the labels hit counters can have.
function M.rule_names(opts)
  local ok, o = pcall(compile, opts)
  if not ok then error("shadow.diff: bad options: " .. o, 2) end
  if o == nil then return {} end
  local s = get_scratch()
  local n = ffi.new("size_t[1]")
  local p = s.C.shadow_ffi_opts_rules(o, s.len, n)
  return split(p, tonumber(s.len[0]), tonumber(n[0]))
end

return M
