-- Finds libshadow, declares its C ABI (src/shadow_ffi.h) and checks that
-- the library speaks the ABI version this module was written for. Nothing
-- here runs until a function that needs C is first called, so a config
-- that only uses shadow.http works on a machine without libshadow.
local ffi = require "ffi"

local error, pcall, tonumber, tostring, type =
  error, pcall, tonumber, tostring, type
local format = string.format

-- Must match SHADOW_ABI_VERSION in src/shadow_ffi.h.
local ABI_VERSION = 3

local CDEF = [[
typedef struct shadow_record_s shadow_record_t;
typedef struct shadow_diff_opts_s shadow_diff_opts_t;
typedef struct shadow_ring_s shadow_ring_t;
typedef struct shadow_ffi_diff_s shadow_ffi_diff_t;

int shadow_abi_version(void);

shadow_record_t *shadow_ffi_record_new(void);
void shadow_ffi_record_clear(shadow_record_t *r);
int shadow_ffi_record_set_status(shadow_record_t *r, int status);
int shadow_ffi_record_add_header(shadow_record_t *r, const char *name,
                                 size_t name_len, const char *value,
                                 size_t value_len);
int shadow_ffi_record_set_body(shadow_record_t *r, const char *body,
                               size_t len);
int shadow_ffi_record_add_trailer(shadow_record_t *r, const char *name,
                                  size_t name_len, const char *value,
                                  size_t value_len);
int shadow_ffi_record_body_feed(shadow_record_t *r, const char *data,
                                size_t len, double keep);
int shadow_ffi_record_body_end(shadow_record_t *r);
double shadow_ffi_record_body_len(const shadow_record_t *r, int *cut);
void shadow_ffi_record_free(shadow_record_t *r);

shadow_diff_opts_t *shadow_ffi_opts_new(void);
int shadow_ffi_opts_ignore_header(shadow_diff_opts_t *o, const char *name);
int shadow_ffi_opts_ignore_json(shadow_diff_opts_t *o, const char *pointer);
int shadow_ffi_opts_array_mode(shadow_diff_opts_t *o, const char *pointer,
                               int mode, const char *key);
int shadow_ffi_opts_tolerance(shadow_diff_opts_t *o, const char *pointer,
                              double tolerance);
int shadow_ffi_opts_diff_bytes(shadow_diff_opts_t *o, double n);
int shadow_ffi_opts_value_max(shadow_diff_opts_t *o, double n);
int shadow_ffi_opts_parse(shadow_diff_opts_t *o, const char *json,
                          size_t len, char *err, size_t errlen);
const char *shadow_ffi_opts_rules(const shadow_diff_opts_t *o, size_t *len,
                                  size_t *n);
void shadow_ffi_opts_free(shadow_diff_opts_t *o);

shadow_ffi_diff_t *shadow_ffi_diff_new(void);
int shadow_ffi_diff_meta(shadow_ffi_diff_t *d, const char *route,
                         const char *method, const char *path,
                         const char *key);
int shadow_ffi_diff_run(shadow_ffi_diff_t *d, const shadow_diff_opts_t *o,
                        const shadow_record_t *p, const shadow_record_t *c,
                        const char **json, size_t *len);
const char *shadow_ffi_diff_fields(const shadow_ffi_diff_t *d, size_t *len,
                                   size_t *n);
const char *shadow_ffi_diff_hits(shadow_ffi_diff_t *d,
                                 const shadow_diff_opts_t *o, size_t *len,
                                 size_t *n);
void shadow_ffi_diff_free(shadow_ffi_diff_t *d);

int shadow_ffi_sampled(const char *key, size_t len, double rate);

int shadow_ffi_verdict(double compared, double diverged, double budget,
                       double min_samples, double *rate, double *lower,
                       double *upper, char *reason, size_t reason_len);

shadow_ring_t *shadow_ffi_ring_new(size_t capacity);
int shadow_ffi_ring_push(shadow_ring_t *r, const char *json, size_t len,
                         const char *route, size_t route_len);
size_t shadow_ffi_ring_len(const shadow_ring_t *r);
size_t shadow_ffi_ring_capacity(const shadow_ring_t *r);
int shadow_ffi_ring_set_capacity(shadow_ring_t *r, size_t capacity);
const char *shadow_ffi_ring_get(const shadow_ring_t *r, size_t i,
                                size_t *len);
void shadow_ffi_ring_free(shadow_ring_t *r);
]]

local M = { ABI_VERSION = ABI_VERSION }

local lib

-- ffi.cdef refuses to redefine a type, and this module may be loaded again
-- in the same VM (a reload, or a spec that clears package.loaded).
local function declare()
  if pcall(ffi.typeof, "shadow_ffi_diff_t") then return end
  ffi.cdef(CDEF)
end

-- shadowd links the engine into its binary and sets
-- package.loaded["shadow.clib"] = ffi.C; a gateway has libshadow.so on its
-- lua_package_cpath; a system install has it on the linker's path.
local function find()
  local preset = package.loaded["shadow.clib"]
  if preset ~= nil then return preset, 'package.loaded["shadow.clib"]' end
  local path = package.searchpath("libshadow", package.cpath)
  if path then return ffi.load(path), path end
  local ok, l = pcall(ffi.load, "shadow")
  if ok then return l, "libshadow" end
  error(format("shadow: libshadow not found: not on package.cpath (%s), "
    .. "and ffi.load(\"shadow\") failed: %s", package.cpath, l), 0)
end

-- Loads and checks the library once. Kept apart from M.get because a
-- function that makes closures cannot be JIT-compiled, and M.get is on
-- every hot path.
local function load()
  declare()
  local l, where = find()
  local ok, v = pcall(function() return l.shadow_abi_version() end)
  if not ok then
    error(format("shadow: %s is not libshadow (no shadow_abi_version: %s)",
      where, v), 0)
  end
  v = tonumber(v)
  if v ~= ABI_VERSION then
    error(format("shadow: ABI version mismatch: %s has ABI %s, this Lua "
      .. "module needs ABI %d; install the libshadow built with it",
      where, type(v) == "number" and v or "?", ABI_VERSION), 0)
  end
  lib = l
  return lib
end

-- Returns the library's namespace, loading and checking it on first use.
function M.get()
  return lib or load()
end

-- Turns a negative errno from C into words for an error message.
function M.strerror(rc)
  local names = { [-12] = "out of memory", [-22] = "invalid argument" }
  return names[rc] or ("error " .. tostring(rc))
end

return M
