-- The README's config for two real HTTP services, examples/two-services.lua,
-- run as written (only its four ports replaced by free ones) in front of
-- two nginx backends: the client gets the primary's answer, and the
-- candidate's renamed field shows as a divergence while the ignored
-- timestamp does not.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local process = require "support.process"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"

-- A user service and its rewrite: the candidate renamed `email`.
local function users(email_field)
  return ([[
    location ~ ^/users/(\d+)$ { content_by_lua_block {
      local id = tonumber(ngx.var[1])
      ngx.header["content-type"] = "application/json"
      ngx.header["x-request-id"] = tostring(math.random(1e9))
      ngx.print(string.format(
        '{"user":{"id":%%d,"name":"u%%d","%s":"u%%d@example.com"},'
        .. '"meta":{"generated_at":%%.6f}}', id, id, id, ngx.now() + math.random()))
    } }
    location = /health { content_by_lua_block { ngx.print("ok\n") } }
  ]]):format(email_field)
end

local EXAMPLE = "examples/two-services.lua"

-- The example's text with its addresses moved to free ports; fails when
-- an address it is expected to hold is not there, so the README's
-- config and this spec cannot drift apart silently.
local function example_on(addr, ng)
  local text = process.read_file(EXAMPLE)
  local subs = {
    ["127.0.0.1:8080"] = addr.listen,
    ["127.0.0.1:9090"] = addr.admin,
    ["http://127.0.0.1:8081"] = ng:url("primary"),
    ["http://127.0.0.1:8082"] = ng:url("candidate"),
  }
  for from, to in pairs(subs) do
    local n
    text, n = text:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
    assert(n >= 1, EXAMPLE .. " no longer holds " .. from)
  end
  return text
end

describe("examples/two-services.lua", function()
  it("passes --check as it is", function()
    local code, out, err = process.run({ shadowd.binary(), "--check",
                                         "--config", EXAMPLE })
    assert.are.equal(0, code, out .. err)
    assert.truthy(out:find("is valid", 1, true), out)
  end)

  it("shadows one real service with another and reports what differs",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = users("email"), candidate = users("email_address") } })
    local d = stop.add(shadowd.start{ text = function(addr)
      return example_on(addr, ng)
    end })

    local res = assert(http.get(d.port, "/users/7", { ["x-user-id"] = "7" }))
    assert.are.equal(200, res.status)
    local body = json.decode(res.body)
    assert.are.equal("u7@example.com", body.user.email) -- the primary's
    assert.are.equal(200, http.get(d.port, "/health").status)
    local stats = d:wait_totals("compared", 2)
    assert.are.equal(1, stats.totals.diverged)

    local list = d:divergences(10).divergences
    assert.are.equal(1, #list)
    local rec = list[1]
    assert.are.equal("/users/7", rec.path)
    assert.is_false(rec.status.differs)
    assert.is_false(rec.headers.differs) -- x-request-id is ignored
    local ops = {}
    for _, op in ipairs(rec.body.diffs) do ops[op.op .. " " .. op.path] = op end
    assert.truthy(ops["remove /user/email"], json.encode(rec.body))
    assert.truthy(ops["add /user/email_address"], json.encode(rec.body))
    for _, op in ipairs(rec.body.diffs) do
      assert.is_nil(op.path:find("generated_at", 1, true), op.path)
    end
    -- One of one compared pairs differs: held at once.
    assert.are.equal("hold", stats.verdict.decision)
  end)
end)
