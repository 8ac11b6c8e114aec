-- The black-box harness itself, checked against real processes and
-- Debian's nginx, so a failing daemon spec points at the daemon.
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local nginx = require "support.nginx"
local xxh3 = require "support.xxh3"
local raw_server = require "support.raw_server"
local json = require "support.json"

describe("support.process", function()
  it("captures stdout, stderr and the exit code", function()
    local code, out, err = process.run({ "sh", "-c",
      "echo out; echo err >&2; exit 3" })
    assert.are.equal(3, code)
    assert.are.equal("out\n", out)
    assert.are.equal("err\n", err)
  end)

  it("stops a child with SIGTERM", function()
    local p = process.spawn({ "sleep", "30" })
    finally(function() p:stop(1) end)
    assert.is_true(p:running())
    local how, code = p:stop(5)
    assert.are.equal("killed", how)
    assert.are.equal(process.SIGTERM, code)
  end)

  it("falls back to SIGKILL when SIGTERM is ignored", function()
    local p = process.spawn({ "sh", "-c", "trap '' TERM; exec sleep 30" })
    finally(function() p:stop(1) end)
    -- The trap is set once the shell has run its first command; give
    -- it a moment by waiting for its stdin-less exec to happen.
    port.wait_until(function()
      local f = io.open("/proc/" .. p.pid .. "/comm")
      local comm = f and f:read("*l")
      if f then f:close() end
      return comm == "sleep"
    end, 5)
    local how, code = p:stop(0.3)
    assert.are.equal("killed", how)
    assert.are.equal(process.SIGKILL, code)
    assert.is_true(p.forced)
  end)
end)

describe("support.port", function()
  it("hands out a port nobody listens on", function()
    local p = port.free()
    assert.is_true(p > 0 and p < 65536)
    assert.is_false(port.accepts(p))
  end)

  it("fails fast, with the output, when the child exits first", function()
    local p = process.spawn({ "sh", "-c", "echo goodbye; exit 0" })
    finally(function() p:stop(1) end)
    local t0 = require("socket").gettime()
    local ok, err = port.wait(port.free(), 20, p)
    assert.is_nil(ok)
    assert.matches("exited before listening", err)
    assert.matches("goodbye", err)
    assert.is_true(require("socket").gettime() - t0 < 5)
  end)
end)

describe("support.nginx and support.http", function()
  local ng
  setup(function()
    ng = nginx.start{ servers = {
      a = [[
        location /hello { content_by_lua_block {
          ngx.header["x-backend"] = "a"
          ngx.say("hello ", ngx.var.http_x_user_id or "nobody")
        } }
        location /chunked { content_by_lua_block {
          ngx.print("one,") ngx.flush(true) ngx.print("two")
        } }
        location /slow { content_by_lua_block {
          ngx.sleep(0.3) ngx.print("late")
        } }
        location /echo { content_by_lua_block {
          ngx.req.read_body()
          ngx.status = 201
          ngx.print(ngx.req.get_body_data() or "")
        } }
      ]],
      b = [[ location / { return 418 "b"; } ]],
    } }
  end)
  teardown(function() if ng then ng:stop() end end)

  it("serves each named server on its own port", function()
    local res = assert(http.get(ng.ports.a, "/hello", { ["x-user-id"] = "u1" }))
    assert.are.equal(200, res.status)
    assert.are.equal("hello u1\n", res.body)
    assert.are.equal("a", res.headers["x-backend"])
    res = assert(http.get(ng.ports.b, "/"))
    assert.are.equal(418, res.status)
    assert.are.equal("b", res.body)
  end)

  it("reuses one keep-alive connection and reads chunked bodies", function()
    local c = assert(http.connect(ng.ports.a))
    finally(function() c:close() end)
    local r1 = assert(c:request{ path = "/chunked" })
    assert.are.equal("chunked", r1.headers["transfer-encoding"])
    assert.are.equal("one,two", r1.body)
    assert.is_true(r1.keep_alive)
    local r2 = assert(c:request{ path = "/hello" })
    assert.are.equal("hello nobody\n", r2.body)
    local r3 = assert(c:request{ method = "HEAD", path = "/hello" })
    assert.are.equal(200, r3.status)
    assert.are.equal("", r3.body)
    local r4 = assert(c:request{ path = "/hello", headers = { ["x-user-id"] = "z" } })
    assert.are.equal("hello z\n", r4.body)
  end)

  it("measures elapsed time", function()
    local res = assert(http.get(ng.ports.a, "/slow"))
    assert.are.equal("late", res.body)
    assert.is_true(res.elapsed >= 0.25, "elapsed " .. res.elapsed)
    assert.is_true(res.elapsed < 5)
  end)

  it("logs what each server saw, body included", function()
    local body = ("x"):rep(5000) .. "\"quoted\"\n"
    local res = assert(http.request(ng.ports.a, { method = "POST",
      path = "/echo", body = body,
      headers = { ["x-user-id"] = "k1", ["x-shadow-request"] = "1",
                  ["content-type"] = "text/plain" } }))
    assert.are.equal(201, res.status)
    assert.are.equal(body, res.body)
    local reqs = ng:wait_uri("a", "/echo", 1, 5)
    assert.are.equal(1, #reqs)
    local r = reqs[1]
    -- What a whole exchange logs: the bytes sent back, and "OK".
    assert.is_true(tonumber(r.bytes) >= #body) -- chunk framing included
    assert.are.equal("OK", r.completion)
    assert.is_true(tonumber(r.request_length) > #body)
    -- Plain HTTP: no TLS session; the connection serial is nginx's own.
    assert.are.equal("", r.reused)
    assert.are.equal("", r.ssl_protocol)
    assert.is_true(tonumber(r.connection) > 0)
    assert.are.equal("HTTP/1.1", r.protocol) -- HTTP/2 legs log HTTP/2.0
    r.bytes, r.completion, r.request_length = nil, nil, nil
    r.reused, r.ssl_protocol, r.connection = nil, nil, nil
    r.protocol = nil
    assert.are.same({ key = "k1", shadow = "1", method = "POST",
                      uri = "/echo", body = body,
                      content_type = "text/plain", status = "201" }, r)
  end)

  it("sees a connection closed by the server", function()
    local c = assert(http.connect(ng.ports.b))
    local res = assert(c:request{ path = "/", headers = { Connection = "close" } })
    assert.are.equal(418, res.status)
    assert.is_false(res.keep_alive)
    assert.is_true(c:wait_closed(5))
    c:close()
  end)

  it("stops nginx by pid", function()
    local other = nginx.start{ servers = { x = "location / { return 204; }" } }
    finally(function() other:stop() end)
    local p = other.ports.x
    assert.is_true(port.accepts(p))
    other:stop()
    assert.is_false(other.proc:running())
    assert.is_false(port.accepts(p))
  end)
end)

describe("support.raw_server", function()
  it("answers garbage that no HTTP parser accepts", function()
    local srv = raw_server.start("garbage")
    finally(function() srv.stop() end)
    local res, err = http.get(srv.port, "/")
    assert.is_nil(res)
    assert.matches("bad status line", err)
  end)

  it("resets the connection", function()
    local srv = raw_server.start("reset")
    finally(function() srv.stop() end)
    local code, out, err = process.run({ "curl", "-sS", srv.url .. "/" })
    assert.are_not.equal(0, code)
    assert.matches("reset by peer", out .. err)
  end)

  it("answers with a close-delimited body", function()
    local srv = raw_server.start("close")
    finally(function() srv.stop() end)
    local res = assert(http.get(srv.port, "/"))
    assert.are.equal(200, res.status)
    assert.are.equal("until the end", res.body)
    assert.is_true(res.closed)
    assert.is_false(res.keep_alive)
  end)
end)

describe("support.xxh3", function()
  it("is XXH3_64bits from libxxhash", function()
    -- The reference value of XXH3_64bits on empty input.
    assert.are.equal(0x2D06800538D394C2ULL, xxh3.hash(""))
  end)

  it("applies the README's threshold", function()
    local n03, n05 = 0, 0
    for i = 1, 1000 do
      local k = "user-" .. i
      assert.is_false(xxh3.sampled(k, 0))
      assert.is_true(xxh3.sampled(k, 1))
      if xxh3.sampled(k, 0.3) then
        n03 = n03 + 1
        assert.is_true(xxh3.sampled(k, 0.5), "raising the rate keeps " .. k)
      end
      if xxh3.sampled(k, 0.5) then n05 = n05 + 1 end
    end
    assert.is_true(n03 > 230 and n03 < 370, "sampled " .. n03)
    assert.is_true(n05 > n03)
  end)
end)

describe("support.json", function()
  it("names the text it could not decode", function()
    local ok, err = pcall(json.decode, "{nope")
    assert.is_false(ok)
    assert.matches("{nope", err, 1, true)
  end)
end)
