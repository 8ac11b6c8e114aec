-- The client gets the primary's bytes, never waits for the candidate,
-- and the candidate gets what the README says it gets.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"

-- The primary echoes the request; the candidate answers differently,
-- and slowly on /slow.
local BACKENDS = {
  primary = [[
    location / { content_by_lua_block {
      ngx.req.read_body()
      ngx.status = 201
      ngx.header["content-type"] = "text/plain"
      ngx.header["x-from"] = "primary"
      ngx.print("primary ", ngx.var.request_method, " ", ngx.var.request_uri,
                " ", ngx.req.get_body_data() or "")
    } }
  ]],
  candidate = [[
    location /slow { content_by_lua_block {
      ngx.sleep(1)
      ngx.print("candidate, late")
    } }
    location / { content_by_lua_block {
      ngx.req.read_body()
      ngx.status = 404
      ngx.header["x-from"] = "candidate"
      ngx.print("candidate")
    } }
  ]],
}

local function random_body(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(32, 126)) end
  return table.concat(t)
end

describe("shadowd with default mirror_methods", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       candidate_timeout_ms = 5000 }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("answers with the primary's status, headers and body", function()
    local res = assert(http.get(d.port, "/bytes?x=1", { ["x-user-id"] = "u1" }))
    assert.are.equal(201, res.status)
    assert.are.equal("primary", res.headers["x-from"])
    assert.are.equal("text/plain", res.headers["content-type"])
    assert.are.equal("primary GET /bytes?x=1 ", res.body)
    -- The candidate did get it, and said something else.
    assert.are.equal(1, #ng:wait_uri("candidate", "/bytes?x=1"))
  end)

  it("does not wait for a candidate that answers after 1 s", function()
    local c = assert(http.connect(d.port))
    finally(function() c:close() end)
    local headers = { ["x-user-id"] = "slow-user" }
    local r1 = assert(c:request{ path = "/slow", headers = headers })
    assert.are.equal(201, r1.status)
    assert.are.equal("primary GET /slow ", r1.body)
    assert.is_true(r1.elapsed < 0.5, ("first took %.3fs"):format(r1.elapsed))
    assert.is_true(r1.keep_alive)
    -- The next request on the same connection is not held up either.
    local r2 = assert(c:request{ path = "/slow?again", headers = headers })
    assert.are.equal("primary GET /slow?again ", r2.body)
    assert.is_true(r2.elapsed < 0.5, ("second took %.3fs"):format(r2.elapsed))
    -- Both were mirrored: the candidate really was the slow one.
    assert.are.equal(1, #ng:wait_uri("candidate", "/slow"))
    assert.are.equal(1, #ng:wait_uri("candidate", "/slow?again"))
  end)

  it("marks the candidate's copy with x-shadow-request: 1", function()
    assert(http.get(d.port, "/marked", { ["x-user-id"] = "m" }))
    local cand = ng:wait_uri("candidate", "/marked")
    assert.are.equal(1, #cand)
    assert.are.equal("1", cand[1].shadow)
    assert.are.equal("m", cand[1].key)
    local prim = ng:wait_uri("primary", "/marked")
    assert.are.equal(1, #prim)
    assert.are.equal("", prim[1].shadow)
  end)

  it("mirrors HEAD but not POST", function()
    local body = "a=1&b=2"
    local res = assert(http.request(d.port, { method = "POST",
      path = "/post-default", body = body, headers = { ["x-user-id"] = "p" } }))
    assert.are.equal(201, res.status)
    assert.are.equal("primary POST /post-default " .. body, res.body)
    local prim = ng:wait_uri("primary", "/post-default")
    assert.are.equal(1, #prim)
    assert.are.equal(body, prim[1].body)
    -- A HEAD sent after the POST reaches the candidate; by then a mirrored
    -- POST would have been sent too.
    res = assert(http.request(d.port, { method = "HEAD", path = "/head",
                                        headers = { ["x-user-id"] = "p" } }))
    assert.are.equal(201, res.status)
    local head = ng:wait_uri("candidate", "/head")
    assert.are.equal(1, #head)
    assert.are.equal("HEAD", head[1].method)
    assert.are.same({}, ng:requests_for("candidate", "/post-default"))
  end)
end)

describe("shadowd with POST in mirror_methods", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       mirror_methods = { "GET", "POST" } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("mirrors a POST with its body intact", function()
    local body = random_body(3000)
    local res = assert(http.request(d.port, { method = "POST",
      path = "/post-listed", body = body,
      headers = { ["x-user-id"] = "p1", ["content-type"] = "text/plain" } }))
    assert.are.equal(201, res.status)
    assert.are.equal("primary POST /post-listed " .. body, res.body)
    local cand = ng:wait_uri("candidate", "/post-listed")
    assert.are.equal(1, #cand)
    assert.are.equal("POST", cand[1].method)
    assert.are.equal(body, cand[1].body)
    assert.are.equal("text/plain", cand[1].content_type)
    assert.are.equal("1", cand[1].shadow)
  end)

  it("mirrors a chunked POST body as its bytes", function()
    local raw = "POST /post-chunked HTTP/1.1\r\nHost: x\r\n"
      .. "x-user-id: p2\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    local c = assert(http.connect(d.port))
    finally(function() c:close() end)
    local res = assert(c:request{ raw = raw, method = "POST" })
    assert.are.equal(201, res.status)
    assert.are.equal("primary POST /post-chunked hello, world", res.body)
    local cand = ng:wait_uri("candidate", "/post-chunked")
    assert.are.equal(1, #cand)
    assert.are.equal("hello, world", cand[1].body)
  end)

  it("still does not mirror methods it does not list", function()
    assert(http.request(d.port, { method = "DELETE", path = "/delete",
                                  headers = { ["x-user-id"] = "p3" } }))
    assert(http.get(d.port, "/after-delete", { ["x-user-id"] = "p3" }))
    assert.are.equal(1, #ng:wait_uri("candidate", "/after-delete"))
    assert.are.same({}, ng:requests_for("candidate", "/delete"))
    assert.are.equal(1, #ng:wait_uri("primary", "/delete"))
  end)
end)
