-- The gRPC peers of the other specs, proved against real proxies before
-- shadowd is trusted with them: Debian python3-grpcio's client and server
-- (spec/support/grpc) talk directly, through nginx's grpc_pass and through
-- nghttpx, for each kind of call: unary, server streaming, client
-- streaming, a status error with its message, a deadline, gzip both ways. The candidate variants
-- differ where they say, and --gzip really compresses on the wire.
local grpc = require "support.grpc"
local nginx = require "support.nginx"
local port = require "support.port"
local process = require "support.process"
local cleanup = require "support.cleanup"

local GET = "/shadowtest.Users/Get"

describe("gRPC peers", function()
  local ok, why = grpc.available()
  if not ok then
    pending(why)
    return
  end

  local build, primary, gz, variant, ng, nx
  local targets = {}

  setup(function()
    build = grpc.build()
    primary = grpc.server(build, { label = "primary" })
    gz = grpc.server(build, { label = "gzip", gzip = true })
    variant = grpc.server(build, { label = "candidate", variant = "name" })
    local h2 = port.free()
    ng = nginx.start{ servers = { grpc = grpc.nginx_grpc_pass(h2, primary.port) } }
    assert(port.wait(h2, 10, ng.proc))
    nx = grpc.nghttpx(primary.port)
    targets = { direct = primary.target, ["nginx grpc_pass"] = "127.0.0.1:" .. h2,
                nghttpx = nx.target }
  end)

  teardown(function()
    cleanup.stop_all(build, primary, gz, variant, ng, nx)
  end)

  for _, via in ipairs({ "direct", "nginx grpc_pass", "nghttpx" }) do
    describe(via, function()
      it("answers a unary call", function()
        local code, res, _, out = grpc.call(build, targets[via], "get", { id = 7 })
        assert.are.equal(0, code, out)
        assert.are.equal("OK", res.code)
        local u = res.messages[1]
        assert.are.equal("7", u.id) -- int64 prints as a string in JSON
        assert.are.equal("user-7", u.name)
        assert.are.equal("ROLE_USER", u.role)
        assert.are.equal("Paris", u.address.city)
        assert.are.same({ "a", "b" }, u.tags)
        assert.are.same({ x = 7 }, u.scores)
      end)

      it("streams the messages of a server-streaming call in order", function()
        local code, res, _, out = grpc.call(build, targets[via], "list", { count = 5 })
        assert.are.equal(0, code, out)
        assert.are.equal(5, #res.messages)
        for i, u in ipairs(res.messages) do
          assert.are.equal("user-" .. i, u.name)
        end
        assert.are.equal("ROLE_ADMIN", res.messages[2].role)
      end)

      it("carries a status error and its grpc-message", function()
        local code, res, _, out = grpc.call(build, targets[via], "fail",
          { code = 7, message = "no entry for you" })
        assert.are.equal(7, code, out)
        assert.are.equal("PERMISSION_DENIED", res.code)
        assert.are.equal("no entry for you", res.details)
        assert.are.equal(0, #res.messages)
      end)

      it("ends a call past its deadline, and the next call still works", function()
        local code, res, _, out = grpc.call(build, targets[via], "slow",
          { delay_ms = 3000, timeout = 0.3 })
        assert.are.equal(4, code, out)
        assert.are.equal("DEADLINE_EXCEEDED", res.code)
        -- The server saw the deadline (grpc-timeout passed on; its unit
        -- rounds, so a little over the 0.3 s asked is still it).
        local calls = primary:wait_calls(1, "/shadowtest.Users/Slow")
        local left = calls[#calls].time_remaining
        assert.is_number(left)
        assert.is_true(left > 0 and left < 1, tostring(left))
        code, res, _, out = grpc.call(build, targets[via], "slow",
          { delay_ms = 10, timeout = 10 })
        assert.are.equal(0, code, out)
        assert.are.equal(10, res.messages[1].slept_ms)
      end)

      it("takes a gzip request message", function()
        local code, res, _, out = grpc.call(build, targets[via], "get",
          { id = 9, gzip = true, pad = 600 })
        assert.are.equal(0, code, out)
        assert.are.equal("user-9", res.messages[1].name)
        assert.are.equal(600, #res.messages[1].bio)
      end)

      it("carries a client stream and its one reply", function()
        local code, res, _, out = grpc.call(build, targets[via], "import",
          { count = 4, pad = 100 })
        assert.are.equal(0, code, out)
        assert.are.equal(4, res.messages[1].count)
        assert.are.same({ "user-1", "user-2", "user-3", "user-4" },
                        res.messages[1].names)
      end)

      it("makes several calls on one channel", function()
        local code, _, all, out = grpc.call(build, targets[via], "get",
          { id = 3, ["repeat"] = 4 })
        assert.are.equal(0, code, out)
        assert.are.equal(4, #all)
      end)
    end)
  end

  it("logs each call it serves, so a spec can wait for one", function()
    local before = #primary:calls()
    grpc.call(build, primary.target, "get", { id = 1, metadata = { "x-user-id=u-1" } })
    local calls = primary:wait_calls(before + 1)
    assert.are.equal(before + 1, #calls)
    assert.are.equal(GET, calls[#calls].rpc)
    assert.are.equal("u-1", calls[#calls].metadata["x-user-id"])
  end)

  it("the name variant differs in the name field only", function()
    local _, a = grpc.call(build, primary.target, "get", { id = 7 })
    local _, b = grpc.call(build, variant.target, "get", { id = 7 })
    assert.are.equal("USER-7", b.messages[1].name)
    b.messages[1].name = a.messages[1].name
    assert.are.same(a.messages, b.messages)
  end)

  it("other variants: a nested field, one message of a stream, a status", function()
    local stop = cleanup.new()
    finally(stop.run)
    local city = stop.add(grpc.server(build, { variant = "address.city" }))
    local at = stop.add(grpc.server(build, { variant = "tags", variant_at = 1 }))
    local status = stop.add(grpc.server(build, { variant = "status" }))
    local _, r = grpc.call(build, city.target, "get", { id = 7 })
    assert.are.equal("Lyon", r.messages[1].address.city)
    _, r = grpc.call(build, at.target, "list", { count = 3 })
    assert.are.same({ "a", "b" }, r.messages[1].tags)
    assert.are.same({ "a", "b", "c" }, r.messages[2].tags)
    assert.are.same({ "a", "b" }, r.messages[3].tags)
    local code
    code, r = grpc.call(build, status.target, "get", { id = 7 })
    assert.are.equal(5, code)
    assert.are.equal("user 7 not found", r.details)
  end)

  it("--gzip compresses response messages on the wire, and they decode", function()
    local dir = process.tmpdir("shadow-grpcwire")
    finally(function() process.rmdir(dir) end)
    grpc.frame(build, dir .. "/req", { id = 7 })
    local function post(target)
      local code, out, err = process.run({ "curl", "-s", "--http2-prior-knowledge",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-H", "grpc-accept-encoding: gzip", "--data-binary", "@" .. dir .. "/req",
        "-D", dir .. "/head", "-o", dir .. "/body", "http://" .. target .. GET })
      assert.are.equal(0, code, out .. err)
      return process.read_file(dir .. "/head"), process.read_file(dir .. "/body")
    end
    local head, body = post(gz.target)
    assert.matches("grpc%-encoding: gzip", head)
    assert.matches("grpc%-status: 0", head) -- the trailer
    assert.are.equal(1, body:byte(1)) -- the message's compressed flag
    head, body = post(primary.target)
    assert.are.equal(0, body:byte(1))
    -- The python client decodes it as the same message.
    local _, a = grpc.call(build, primary.target, "get", { id = 7 })
    local _, b = grpc.call(build, gz.target, "get", { id = 7 })
    assert.are.same(a.messages, b.messages)
  end)
end)
