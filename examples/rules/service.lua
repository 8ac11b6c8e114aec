-- The demo's service in its two versions, as in-process backends for
-- rules.lua: v1 in production, and v2, the rewrite, which changed its
-- JSON on purpose in the ways the rules in rules.lua absorb, and kept
-- one real bug (a 500 for an unknown user) that they must not hide.
local cjson = require "cjson"

local users = {
  [1] = { name = "Ann", email = "ann@example.com", tags = { "admin" } },
  [2] = { name = "Bob", email = "bob@example.com", tags = { "new" } },
  [7] = { name = "Eve", email = "eve@example.com", tags = { "beta", "ops" } },
}

local function uuid()
  local r = math.random
  return ("%08x-%04x-4%03x-%04x-%012x"):format(r(0, 0xffffffff), r(0, 0xffff),
    r(0, 0xfff), 0x8000 + r(0, 0x3fff), r(0, 0xffffff) * 0x1000000
      + r(0, 0xffffff))
end

local function json(status, body)
  return { status = status, body = cjson.encode(body),
           headers = { ["content-type"] = "application/json",
                       ["cache-control"] = "max-age=60" } }
end

local M = {}

-- v1: ids are numbers, the e-mail is "email", names as entered, search
-- hits by id, and the time a response was made is epoch seconds.
function M.v1(req)
  local id = tonumber(req.path:match("^/users/(%d+)$"))
  local meta = { generated_at = os.time(), request_id = uuid() }
  if id then
    local u = users[id]
    if not u then return json(404, { error = "no such user", meta = meta }) end
    return json(200, { user = { id = id, name = u.name, email = u.email,
                                tags = u.tags }, meta = meta })
  elseif req.path == "/search" then
    local hits = {}
    for uid, u in pairs(users) do hits[#hits + 1] = { id = uid, name = u.name } end
    table.sort(hits, function(a, b) return a.id < b.id end)
    return json(200, { hits = hits, total = #hits, meta = meta })
  end
  return json(404, { error = "not found", meta = meta })
end

-- v2: ids are strings, "email" is now "email_address", names are stored
-- lower-cased, hits come ordered by name, and times are RFC 3339.
function M.v2(req)
  local id = tonumber(req.path:match("^/users/(%d+)$"))
  local meta = { generated_at = os.date("!%Y-%m-%dT%H:%M:%SZ"),
                 request_id = uuid() }
  if id then
    local u = users[id]
    if not u then return json(500, { error = "user lookup failed", meta = meta }) end
    return json(200, { user = { id = tostring(id), name = u.name:lower(),
                                email_address = u.email, tags = u.tags },
                       meta = meta })
  elseif req.path == "/search" then
    local hits = {}
    for uid, u in pairs(users) do
      hits[#hits + 1] = { id = tostring(uid), name = u.name:lower() }
    end
    table.sort(hits, function(a, b) return a.name < b.name end)
    return json(200, { hits = hits, total = #hits, meta = meta })
  end
  return json(404, { error = "not found", meta = meta })
end

return M
