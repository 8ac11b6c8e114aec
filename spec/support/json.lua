-- JSON for specs: decode with the text in the error, so a failing
-- assertion shows what the daemon actually sent.
local cjson = require "cjson.safe"

local M = { null = cjson.null }

function M.decode(text)
  local v, err = cjson.decode(text or "")
  if v == nil then
    error(("invalid JSON (%s): %q"):format(tostring(err),
                                            tostring(text):sub(1, 400)), 2)
  end
  return v
end

function M.encode(v) return assert(cjson.encode(v)) end

-- One value per non-empty line (NDJSON, nginx escape=json logs).
function M.decode_lines(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do out[#out + 1] = M.decode(line) end
  return out
end

return M
