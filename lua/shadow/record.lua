-- Fills a C record from a Lua record { status =, headers =, trailers =,
-- body = }. headers and trailers map a name to a value, or to a list of
-- values (in order).
local loader = require "shadow.loader"

local format, pairs, ipairs, tostring, type =
  string.format, pairs, ipairs, tostring, type

local M = {}

-- The header lists of a record and the C function that adds to each.
local PARTS = { { "headers", "shadow_ffi_record_add_header" },
                { "trailers", "shadow_ffi_record_add_trailer" } }

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
  for _, part in ipairs(PARTS) do
    local key, add = part[1], C[part[2]]
    local headers = rec[key]
    if headers ~= nil and type(headers) ~= "table" then
      return nil, format("%s.%s must be a table", side, key)
    end
    for name, v in pairs(headers or {}) do
      if type(name) ~= "string" or name == "" then
        return nil, format("%s.%s: names must be non-empty strings", side, key)
      end
      if type(v) == "table" then
        for i, x in ipairs(v) do
          local s = value_string(x)
          if not s then
            return nil, format("%s.%s[%q][%d] must be a string", side, key,
                               name, i)
          end
          if add(r, name, #name, s, #s) ~= 0 then return nil, "out of memory" end
        end
      else
        local s = value_string(v)
        if not s then
          return nil, format("%s.%s[%q] must be a string or a list", side, key,
                             name)
        end
        if add(r, name, #name, s, #s) ~= 0 then return nil, "out of memory" end
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
