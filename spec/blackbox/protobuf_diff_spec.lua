-- Protobuf bodies compared as trees, as `shadowd diff` shows them: message
-- files and a descriptor set made by Debian's protoc, and the JSON a real
-- protobuf library (python3-protobuf's json_format) prints for the same
-- message, for the JSON-to-protobuf migration case.
local shadowd = require "support.shadowd"
local process = require "support.process"
local json = require "support.json"
local http = require "support.http"
local cleanup = require "support.cleanup"

local PROTO = "spec/fixtures/proto"
-- Debian's python3, which python3-protobuf installs into (a python3 from
-- elsewhere may come first on PATH).
local PYTHON = io.open("/usr/bin/python3") and "/usr/bin/python3" or "python3"

local function have(cmd)
  return process.run({ "sh", "-c", cmd .. " >/dev/null 2>&1" }) == 0
end

describe("shadowd diff with protobuf", function()
  local dir
  if not have("protoc --version") then
    pending("protoc is missing (Debian's protobuf-compiler; scripts/bootstrap)")
    return
  end
  before_each(function()
    dir = process.tmpdir("shadow-protobuf")
    local code, out, err = process.run({ "protoc", "-I" .. PROTO,
      "--descriptor_set_out=" .. dir .. "/api.pb", "--include_imports",
      "api.proto" })
    assert.are.equal(0, code, out .. err)
  end)
  after_each(function() process.rmdir(dir) end)

  -- protoc's text-format encoder writes the message's bytes to name.
  local function encode(name, type, text)
    process.write_file(dir .. "/" .. name .. ".txt", text)
    local code, out, err = process.run({ "sh", "-c", ("protoc -I%s --encode=%s "
      .. "api.proto < %s/%s.txt > %s/%s"):format(PROTO, type, dir, name, dir,
                                                  name) })
    assert.are.equal(0, code, out .. err)
  end

  local function run(...)
    return process.run({ shadowd.binary(), "diff", ... })
  end

  it("compares two message files by field name with --descriptors", function()
    encode("a", "shop.v1.Order", 'id: 7 user { name: "Ada" status: STATUS_ACTIVE }'
      .. ' quantities: [1, 2] counts { key: "x" value: 1 } delta: -2')
    encode("b", "shop.v1.Order", 'id: 7 user { name: "Eve" status: STATUS_BANNED }'
      .. ' quantities: [1, 2, 3] counts { key: "x" value: 2 } delta: -2')
    local pb = dir .. "/api.pb"
    local code, out, err = run("--descriptors", pb, "--message", "shop.v1.Order",
                               dir .. "/a", dir .. "/a")
    assert.are.equal(0, code, out .. err)
    code, out, err = run("--descriptors", pb, "--message", "shop.v1.Order",
                         dir .. "/a", dir .. "/b")
    assert.are.equal(1, code, out .. err)
    local rec = json.decode(out)
    assert.are.equal("protobuf", rec.body.kind)
    local by = {}
    for _, op in ipairs(rec.body.diffs) do by[op.path] = op end
    assert.are.same({ op = "replace", path = "/user/name", primary = "Ada",
                      candidate = "Eve" }, by["/user/name"])
    assert.are.same({ op = "replace", path = "/user/status",
                      primary = "STATUS_ACTIVE", candidate = "STATUS_BANNED" },
                    by["/user/status"])
    assert.are.same({ op = "add", path = "/quantities/2", candidate = 3 },
                    by["/quantities/2"])
    assert.are.same({ op = "replace", path = "/counts/x", primary = 1,
                      candidate = 2 }, by["/counts/x"])
    assert.are.equal(4, #rec.body.diffs)
  end)

  it("applies the config's rules to field paths", function()
    encode("a", "shop.v1.Order", 'id: 7 user { name: "Ada" } price: 1.0')
    encode("b", "shop.v1.Order", 'id: 7 user { name: "Eve" } price: 1.004')
    process.write_file(dir .. "/rules.lua", [[
return { primary = "http://127.0.0.1:1",
         ignore = { json = { "/user/name" } },
         tolerance = { ["/price"] = 0.01 } }
]])
    local code, out, err = run("--config", dir .. "/rules.lua", "--descriptors",
      dir .. "/api.pb", "--message", "shop.v1.Order", dir .. "/a", dir .. "/b")
    assert.are.equal(0, code, out .. err)
  end)

  it("reads recorded protobuf responses by field number without a schema",
     function()
    encode("a", "shop.v1.User", 'name: "Ada" age: 36')
    encode("b", "shop.v1.User", 'name: "Ada" age: 37')
    for _, n in ipairs({ "a", "b" }) do
      local body = process.read_file(dir .. "/" .. n)
      process.write_file(dir .. "/" .. n .. ".http", "HTTP/1.1 200 OK\r\n"
        .. "Content-Type: application/x-protobuf\r\nContent-Length: "
        .. #body .. "\r\n\r\n" .. body)
    end
    local code, out, err = run(dir .. "/a.http", dir .. "/b.http")
    assert.are.equal(1, code, out .. err)
    local rec = json.decode(out)
    assert.are.equal("protobuf", rec.body.kind)
    assert.are.same({ { op = "replace", path = "/2", primary = 36,
                        candidate = 37 } }, rec.body.diffs)
  end)

  it("compares a JSON body with a protobuf body as trees (a migration)",
     function()
    if not have(PYTHON .. " -c 'import google.protobuf'") then
      pending("python3-protobuf is missing (scripts/bootstrap installs it)")
      return
    end
    -- python3-protobuf builds the types from the descriptor set, prints
    -- the JSON a JSON service would send and encodes the message.
    process.write_file(dir .. "/mk.py", [[
import sys
from google.protobuf import descriptor_pb2, json_format, message_factory
fds = descriptor_pb2.FileDescriptorSet()
fds.ParseFromString(open(sys.argv[1], "rb").read())
User = message_factory.GetMessages(fds.file)["shop.v1.User"]
u = User(name="Ada", age=36, tags=["a", "b"])
u.status = 1
u.address.city = "Paris"
open(sys.argv[2] + "/user.json", "w").write(
    json_format.MessageToJson(u, preserving_proto_field_name=True))
open(sys.argv[2] + "/user.bin", "wb").write(u.SerializeToString())
u.address.city = "Lyon"
open(sys.argv[2] + "/user2.bin", "wb").write(u.SerializeToString())
]])
    local code, out, err = process.run({ PYTHON, dir .. "/mk.py",
                                         dir .. "/api.pb", dir })
    assert.are.equal(0, code, out .. err)
    -- The content types differ by design: the migration's own change.
    process.write_file(dir .. "/rules.lua", [[
return { primary = "http://127.0.0.1:1",
         ignore = { headers = { "content-type" } } }
]])
    local args = { "--config", dir .. "/rules.lua", "--descriptors",
                   dir .. "/api.pb", "--message", "shop.v1.User" }
    code, out, err = run(args[1], args[2], args[3], args[4], args[5], args[6],
                         dir .. "/user.json", dir .. "/user.bin")
    assert.are.equal(0, code, out .. err)
    assert.are.equal("protobuf", json.decode(out).body.kind)
    code, out, err = run(args[1], args[2], args[3], args[4], args[5], args[6],
                         dir .. "/user.json", dir .. "/user2.bin")
    assert.are.equal(1, code, out .. err)
    assert.are.same({ { op = "replace", path = "/address/city",
                        primary = "Paris", candidate = "Lyon" } },
                    json.decode(out).body.diffs)
  end)

  it("refuses a file that is not a descriptor set, or a type it lacks",
     function()
    encode("a", "shop.v1.User", 'name: "Ada"')
    local code, _, err = run("--descriptors", dir .. "/a", "--message",
                             "shop.v1.User", dir .. "/a", dir .. "/a")
    assert.are.equal(2, code)
    assert.matches("not a descriptor set", err, 1, true)
    code, _, err = run("--descriptors", dir .. "/api.pb", "--message",
                       "shop.v1.Nope", dir .. "/a", dir .. "/a")
    assert.are.equal(2, code)
    assert.matches("no message type shop.v1.Nope", err, 1, true)
    code, _, err = run("--message", "shop.v1.User", dir .. "/a", dir .. "/a")
    assert.are.equal(2, code)
    assert.matches("go together", err, 1, true)
  end)
end)

describe("live protobuf responses", function()
  if not have("protoc --version") then
    pending("protoc is missing (Debian's protobuf-compiler; scripts/bootstrap)")
    return
  end
  local d, dir

  -- protoc's bytes for a message, as a Lua string literal of \ddd escapes.
  local function literal(type, text)
    process.write_file(dir .. "/m.txt", text)
    local code, out, err = process.run({ "sh", "-c", ("protoc -I%s --encode=%s "
      .. "api.proto < %s/m.txt > %s/m.bin"):format(PROTO, type, dir, dir) })
    assert.are.equal(0, code, out .. err)
    local bin = process.read_file(dir .. "/m.bin")
    return '"' .. bin:gsub(".", function(c) return ("\\%d"):format(c:byte()) end)
      .. '"'
  end

  setup(function()
    dir = process.tmpdir("shadow-protobuf-live")
    local a = literal("shop.v1.User", 'name: "Ada" age: 36 tags: "a"')
    local b = literal("shop.v1.User", 'name: "Ada" age: 37 tags: "a"')
    local c = literal("shop.v1.User", 'name: "Bob" age: 36 tags: "a"')
    d = shadowd.start{ text = function(addr) return ([[
local bodies = { ["/age"] = { %s, %s }, ["/name"] = { %s, %s },
                 ["/same"] = { %s, %s } }
local function backend(side)
  return function(req)
    return { status = 200,
             headers = { ["content-type"] = "application/x-protobuf" },
             body = bodies[req.path][side] }
  end
end
return {
  listen = %q, admin = %q,
  primary = backend(1), candidate = backend(2),
  sample = { rate = 1.0 },
  route = function(req) return req.path end,
  ignore = { json = { "/1" } },
}
]]):format(a, b, a, c, a, a, addr.listen, addr.admin) end }
  end)
  teardown(function()
    cleanup.stop_all(d)
    process.rmdir(dir)
  end)

  it("compares them field by field by number, under the config's rules",
     function()
    for _, p in ipairs({ "/age", "/name", "/same" }) do
      local res = assert(http.get(d.port, p))
      assert.are.equal(200, res.status)
    end
    d:wait_totals("compared", 3)
    local by_route = {}
    for _, rec in ipairs(d:divergences().divergences) do
      by_route[rec.route] = rec
    end
    assert.is_nil(by_route["/same"])
    assert.is_nil(by_route["/name"]) -- field 1 (name) is ignored
    local age = assert(by_route["/age"])
    assert.are.equal("protobuf", age.body.kind)
    assert.are.same({ { op = "replace", path = "/2", primary = 36,
                        candidate = 37 } }, age.body.diffs)
  end)
end)
