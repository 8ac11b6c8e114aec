-- The demo: a "v1" service and its "v2" rewrite, both as in-process Lua
-- backends, so shadowd shows real divergences with nothing else running.
--
--   scripts/demo                        # runs: shadowd --config examples/demo.lua
--   curl -s localhost:8080/users/7      # answered by v1, mirrored to v2
--   curl -s localhost:9090/divergences  # what v2 got wrong
--   open http://127.0.0.1:9090/         # the dashboard
local shadow = require "shadow"
local cjson = require "cjson"

local users = {
  [1] = { name = "Ann", email = "ann@example.com", tags = { "admin" } },
  [2] = { name = "Bob", email = "bob@example.com", tags = {} },
  [7] = { name = "Eve", email = "eve@example.com", tags = { "beta", "ops" } },
}

local function json(status, body, extra)
  local headers = { ["content-type"] = "application/json" }
  for k, v in pairs(extra or {}) do headers[k] = v end
  return { status = status, headers = headers, body = cjson.encode(body) }
end

-- v1: the service in production today.
local function v1(req)
  local id = tonumber(req.path:match("^/users/(%d+)$"))
  if id then
    local u = users[id]
    if not u then return json(404, { error = "no such user" }) end
    return json(200, { user = { id = id, name = u.name, email = u.email,
                                tags = u.tags },
                       meta = { generated_at = os.time() } },
                { ["cache-control"] = "max-age=60" })
  elseif req.path == "/health" then
    return { status = 200, headers = { ["content-type"] = "text/plain" },
             body = "ok\n" }
  elseif req.path == "/search" then
    local hits = {}
    for id, u in pairs(users) do hits[#hits + 1] = { id = id, name = u.name } end
    table.sort(hits, function(a, b) return a.id < b.id end)
    return json(200, { hits = hits, total = #hits })
  end
  return json(404, { error = "not found" })
end

-- v2: the rewrite. It renamed a field, lower-cases names, forgot a cache
-- header, returns 500 for an unknown user, and orders search hits by name.
local function v2(req)
  local id = tonumber(req.path:match("^/users/(%d+)$"))
  if id then
    local u = users[id]
    if not u then return json(500, { error = "user lookup failed" }) end
    return json(200, { user = { id = id, name = u.name:lower(),
                                email_address = u.email, tags = u.tags },
                       meta = { generated_at = os.time() + 1 } })
  elseif req.path == "/health" then
    return { status = 200, headers = { ["content-type"] = "text/plain" },
             body = "ok\n" }
  elseif req.path == "/search" then
    local hits = {}
    for uid, u in pairs(users) do hits[#hits + 1] = { id = uid, name = u.name } end
    table.sort(hits, function(a, b) return a.name > b.name end)
    return json(200, { hits = hits, total = #hits })
  end
  return json(404, { error = "not found" })
end

return {
  listen    = "127.0.0.1:8080",
  admin     = "127.0.0.1:9090",
  primary   = v1,
  candidate = v2,
  sample = {
    rate   = 1.0,
    key    = function(req) return req.headers["x-user-id"] end,
    filter = function(req) return req.path ~= "/health" end,
  },
  route = function(req)
    return req.method .. " " .. req.path:gsub("/%d+", "/:id")
  end,
  ignore = {
    headers = { "x-request-id" },
    json    = { "/meta/generated_at" },
  },
  log = { capacity = 1000 },
  -- Every exchange recorded too (in the directory shadowd runs in), for
  -- `shadowd replay` (docs/capture-replay.md).
  capture = { file = "capture.ndjson", rate = 1.0 },
}
