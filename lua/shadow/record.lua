-- Fills a C record from a Lua record { status =, headers =, body = }.
-- headers map a name to a value, or to a list of values (in order).
local loader = require "shadow.loader"

local format, pairs, ipairs, tostring, type =
  string.format, pairs, ipairs, tostring, type

local M = {}

local function value_string(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  return nil
end

-- Returns true, or nil and what is wrong with rec (side names it).
function M.fill(r, rec, side)
  local C = loader.get()
  if type(rec) ~= "table" then
    return nil, format("%s record must be a table, got %s", side, type(rec))
  end
  C.shadow_ffi_record_clear(r)
  local status = rec.status
  if status == nil then status = 200 end
  if type(status) ~= "number" or C.shadow_ffi_record_set_status(r, status) ~= 0 then
    return nil, format("%s.status must be a number from 0 to 999", side)
  end
  local headers = rec.headers
  if headers ~= nil and type(headers) ~= "table" then
    return nil, format("%s.headers must be a table", side)
  end
  for name, v in pairs(headers or {}) do
    if type(name) ~= "string" or name == "" then
      return nil, format("%s.headers: names must be non-empty strings", side)
    end
    if type(v) == "table" then
      for i, x in ipairs(v) do
        local s = value_string(x)
        if not s then
          return nil, format("%s.headers[%q][%d] must be a string", side, name, i)
        end
        if C.shadow_ffi_record_add_header(r, name, #name, s, #s) ~= 0 then
          return nil, "out of memory"
        end
      end
    else
      local s = value_string(v)
      if not s then
        return nil, format("%s.headers[%q] must be a string or a list", side, name)
      end
      if C.shadow_ffi_record_add_header(r, name, #name, s, #s) ~= 0 then
        return nil, "out of memory"
      end
    end
  end
  local body = rec.body
  if body == nil then body = "" end
  if type(body) ~= "string" then
    return nil, format("%s.body must be a string, got %s", side, type(body))
  end
  if C.shadow_ffi_record_set_body(r, body, #body) ~= 0 then
    return nil, "out of memory"
  end
  return true
end

return M
