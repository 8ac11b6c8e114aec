-- What the gateway's phase handlers read of the request in flight, at the
-- least cost lua-nginx-module allows: whether this request was chosen
-- (without making an ngx.ctx table for one that was not), and the body
-- filter's chunk as a pointer and a length (without making a Lua string
-- of it). Both go through the same FFI functions lua-resty-core's ngx.ctx
-- and ngx.arg use; where those are not there (an older lua-nginx-module,
-- or outside nginx), the public API is used instead, with the same
-- answers.
local ffi = require "ffi"

local ngx = ngx
local pcall, tonumber, type = pcall, tonumber, type

local M = {}

-- The request's shadow state: ngx.ctx.shadow, set by access() when the
-- request is chosen. A request that has no ngx.ctx at all (the common
-- case: nothing in this location used it) answers nil from one FFI call;
-- reading ngx.ctx would make an empty table for it, and a reference and
-- a pool cleanup to free that table.
local get_request, get_ctx_ref
local body_param, copy_body_param, body_eof, FFI_AGAIN

local function load_fast()
  if not (ngx and ngx.config and ngx.config.subsystem == "http") then
    return
  end
  -- get_ctx_ref takes (r, in_ssl_phase, ssl_ctx_ref) since 0.10.19; before
  -- it took r alone, so older modules use ngx.ctx.
  local ok, base = pcall(require, "resty.core.base")
  if not ok or (ngx.config.ngx_lua_version or 0) < 10019 then return end
  if not pcall(require, "resty.core.ctx")
      or not pcall(require, "resty.core.param") then
    return
  end
  local C = ffi.C
  local fine = pcall(function()
    get_ctx_ref = C.ngx_http_lua_ffi_get_ctx_ref
    body_param = C.ngx_http_lua_ffi_get_body_filter_param_body
    copy_body_param = C.ngx_http_lua_ffi_copy_body_filter_param_body
    body_eof = C.ngx_http_lua_ffi_get_body_filter_param_eof
  end)
  if not fine or type(base.get_request) ~= "function" then
    get_ctx_ref, body_param = nil, nil
    return
  end
  get_request, FFI_AGAIN = base.get_request, base.FFI_AGAIN
end
load_fast()

if get_ctx_ref then
  function M.state()
    local r = get_request()
    -- No ctx (LUA_NOREF), or no lua-nginx-module ctx on the request at
    -- all: nothing was kept for it.
    if r == nil or get_ctx_ref(r, nil, nil) < 0 then return nil end
    return ngx.ctx.shadow
  end
else
  function M.state()
    return ngx.ctx.shadow
  end
end

-- The body filter's chunk: pointer, length, and whether it is the last.
-- The pointer is good until the handler returns: nginx's own buffer, or,
-- when the chunk spans several buffers (a proxied body usually does),
-- this worker's scratch buffer, grown to the largest chunk seen and kept
-- (lua-resty-core's own makes a new zero-filled one for every chunk past
-- 4 KiB).
if body_param then
  local data_p = ffi.new("unsigned char *[1]")
  local len_p = ffi.new("size_t[1]")
  local scratch, scratch_size = nil, 0
  function M.chunk()
    local r = get_request()
    data_p[0] = nil
    local rc = body_param(r, data_p, len_p)
    local n = tonumber(len_p[0])
    local p = data_p[0]
    if rc == FFI_AGAIN then
      if n > scratch_size then
        scratch_size = scratch_size > 0 and scratch_size or 16384
        while scratch_size < n do scratch_size = scratch_size * 2 end
        scratch = ffi.new("unsigned char[?]", scratch_size)
      end
      p = scratch
      copy_body_param(r, p)
    end
    return p, n, body_eof(r) == 1
  end
else
  function M.chunk()
    local chunk = ngx.arg[1]
    return chunk, #chunk, ngx.arg[2]
  end
end

-- Whether the fast paths are in use (for the JIT spec and the docs).
M.fast = get_ctx_ref ~= nil

return M
