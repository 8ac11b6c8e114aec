-- gRPC replies compared message by message: record files and live Lua
-- backends whose bodies are real length-prefixed messages, encoded by
-- python3-protobuf from a descriptor set Debian's protoc made; decoded by
-- the called method's output type (grpc.descriptors or --descriptors
-- with --path); grpc-status and trailers beside the status; streams
-- index by index; gzip; bad frames as bytes; the per-method default
-- route; a client stream past mirror_body_bytes skipped as streaming.
local shadowd = require "support.shadowd"
local process = require "support.process"
local json = require "support.json"
local http = require "support.http"
local cleanup = require "support.cleanup"

local PROTO = "spec/fixtures/proto"
local PYTHON = io.open("/usr/bin/python3") and "/usr/bin/python3" or "python3"

local function have(cmd)
  return process.run({ "sh", "-c", cmd .. " >/dev/null 2>&1" }) == 0
end

local function ready()
  return have("protoc --version")
    and have(PYTHON .. " -c 'import google.protobuf'")
end

-- protoc's descriptor set of users.proto and the record files of
-- spec/fixtures/grpc/make_records.py, in a new directory.
local function make(prefix)
  local dir = process.tmpdir(prefix)
  local code, out, err = process.run({ "protoc", "-I" .. PROTO,
    "--descriptor_set_out=" .. dir .. "/users.pb", "--include_imports",
    "users.proto" })
  assert.are.equal(0, code, out .. err)
  code, out, err = process.run({ PYTHON, "spec/fixtures/grpc/make_records.py",
                                 dir .. "/users.pb", dir })
  assert.are.equal(0, code, out .. err)
  return dir
end

local function by_path(diffs)
  local by = {}
  for _, op in ipairs(diffs) do by[op.path] = op end
  return by
end

describe("shadowd diff on gRPC replies", function()
  if not ready() then
    pending("protoc or python3-protobuf is missing (scripts/bootstrap)")
    return
  end
  local dir
  setup(function() dir = make("shadow-grpc") end)
  teardown(function() process.rmdir(dir) end)

  local function run(...)
    return process.run({ shadowd.binary(), "diff", ... })
  end
  local function pb() return dir .. "/users.pb" end

  it("decodes a unary reply by the method's output type", function()
    local code, out, err = run("--descriptors", pb(), "--path",
      "/shop.v1.Users/GetUser", dir .. "/unary_a", dir .. "/unary_b")
    assert.are.equal(1, code, out .. err)
    local rec = json.decode(out)
    assert.are.equal("protobuf", rec.body.kind)
    local by = by_path(rec.body.diffs)
    assert.are.same({ op = "replace", path = "/name", primary = "Ada",
                      candidate = "Eve" }, by["/name"])
    assert.are.same({ op = "replace", path = "/status",
                      primary = "STATUS_ACTIVE", candidate = "STATUS_BANNED" },
                    by["/status"])
    assert.are.same({ primary = 1, candidate = 1 }, rec.body.messages)
    assert.are.same({ primary = 0, candidate = 0 }, rec.status.grpc)
    assert.is_false(rec.status.differs)
    -- Without the schema: by field number.
    code, out = run(dir .. "/unary_a", dir .. "/unary_b")
    assert.are.equal(1, code)
    assert.truthy(by_path(json.decode(out).body.diffs)["/1"])
  end)

  it("inflates grpc-encoding gzip, and says when a stream is bad", function()
    local code, out, err = run(dir .. "/unary_a", dir .. "/unary_gz")
    assert.are.equal(0, code, out .. err)
    code, out = run(dir .. "/unary_a", dir .. "/unary_badgz")
    assert.are.equal(1, code)
    local rec = json.decode(out)
    assert.are.same({ "candidate message 0: bad gzip stream, compared as "
                      .. "bytes" }, rec.body.notes)
  end)

  it("compares grpc-status and grpc-message beside the status", function()
    local code, out, err = run(dir .. "/unary_a", dir .. "/not_found")
    assert.are.equal(1, code, out .. err)
    local rec = json.decode(out)
    assert.is_true(rec.status.differs)
    assert.are.equal(200, rec.status.primary)
    assert.are.equal(200, rec.status.candidate)
    assert.are.same({ primary = 0, candidate = 5 }, rec.status.grpc)
    assert.are.same({ primary = json.null, candidate = "no such user" },
                    rec.status.grpc_message)
    assert.is_false(rec.headers.differs) -- grpc-* are not headers here
  end)

  it("compares a stream message by message, unary rules on each", function()
    local code, out, err = run("--descriptors", pb(), "--path",
      "/shop.v1.Users/ListUsers", dir .. "/stream_a", dir .. "/stream_b")
    assert.are.equal(1, code, out .. err)
    local rec = json.decode(out)
    assert.are.same({ primary = 3, candidate = 2 }, rec.body.messages)
    local by = by_path(rec.body.diffs)
    assert.are.same({ op = "replace", path = "/1/age", primary = 7,
                      candidate = 8 }, by["/1/age"])
    assert.are.equal("remove", by["/2"].op)
    assert.are.equal("Cy", by["/2"].primary.name)
    assert.are.equal(2, #rec.body.diffs)
    process.write_file(dir .. "/rules.lua", [[
return { primary = "http://127.0.0.1:1", grpc = { descriptors = "]]
      .. pb() .. [[" }, ignore = { json = { "/age" } } }
]])
    code, out, err = run("--config", dir .. "/rules.lua", "--path",
      "/shop.v1.Users/ListUsers", dir .. "/stream_a", dir .. "/stream_b")
    assert.are.equal(1, code, out .. err)
    rec = json.decode(out)
    assert.are.same({ "/2" }, { rec.body.diffs[1].path })
    assert.are.equal(1, #rec.body.diffs)
  end)

  it("compares a message longer than its frame as bytes", function()
    local code, out, err = run(dir .. "/unary_a", dir .. "/cut")
    assert.are.equal(1, code, out .. err)
    local rec = json.decode(out)
    assert.are.equal("bytes", rec.body.kind)
    assert.matches("the candidate's gRPC framing is bad at byte 0 (message "
                   .. "longer than the rest of the body)", rec.body.summary, 1,
                   true)
  end)

  it("refuses a missing or bad grpc.descriptors at load, naming it",
     function()
    process.write_file(dir .. "/bad.lua", [[
return { primary = "http://127.0.0.1:1",
         grpc = { descriptors = "]] .. dir .. [[/unary_a" } }
]])
    local code, out, err = process.run({ shadowd.binary(), "--check",
                                         "--config", dir .. "/bad.lua" })
    assert.are_not.equal(0, code, out)
    assert.matches("grpc.descriptors: " .. dir .. "/unary_a: not a "
                   .. "descriptor set", out .. err, 1, true)
    process.write_file(dir .. "/missing.lua", [[
return { primary = "http://127.0.0.1:1", grpc = { descriptors = "/nope.pb" } }
]])
    code, out, err = process.run({ shadowd.binary(), "--check", "--config",
                                   dir .. "/missing.lua" })
    assert.are_not.equal(0, code, out)
    assert.matches("grpc.descriptors: cannot read /nope.pb", out .. err, 1,
                   true)
    process.write_file(dir .. "/good.lua", [[
return { primary = "http://127.0.0.1:1",
         grpc = { descriptors = "]] .. pb() .. [[" } }
]])
    code, out, err = process.run({ shadowd.binary(), "--check", "--config",
                                   dir .. "/good.lua" })
    assert.are.equal(0, code, out .. err)
    assert.matches("grpc       replies decoded by the output types of 3 "
                   .. "methods from " .. pb(), out, 1, true)
  end)
end)

describe("replies of real gRPC servers", function()
  -- python3-grpcio servers over HTTP/2, called with python3-h2 (a raw
  -- client: the reply's bytes as they came, gzip-compressed messages
  -- included), each reply written as a record file for shadowd diff.
  if not ready() or not have(PYTHON .. " -c 'import grpc, h2'") then
    pending("python3-grpcio or python3-h2 is missing (scripts/bootstrap)")
    return
  end
  local port = require "support.port"
  local dir, servers = nil, {}

  setup(function()
    dir = make("shadow-grpc-real")
    for i, spec in ipairs({ { "Ada", "none" }, { "Eve", "gzip" } }) do
      local p = port.free()
      local proc = process.spawn({ PYTHON, "spec/fixtures/grpc/users_server.py",
        dir .. "/users.pb", tostring(p), spec[1], spec[2] },
        { stdout = dir .. "/server" .. i .. ".out",
          stderr = dir .. "/server" .. i .. ".err" })
      servers[i] = { port = p, proc = proc }
      assert(port.wait(p, 20, proc))
    end
  end)
  teardown(function()
    for _, s in ipairs(servers) do s.proc:stop() end
    process.rmdir(dir)
  end)

  -- Calls path on server i with the request {name = name}; the reply's
  -- record file.
  local function call(i, path, name)
    local req = dir .. "/req-" .. name
    process.write_file(req, "\0\0\0\0" .. string.char(#name + 2) .. "\10"
                       .. string.char(#name) .. name)
    local out = ("%s/%d-%s-%s"):format(dir, i, path:match("[^/]+$"), name)
    local code, o, err = process.run({ PYTHON, "spec/fixtures/grpc/h2_call.py",
      tostring(servers[i].port), path, req, out })
    assert.are.equal(0, code, o .. err)
    return out
  end

  local function diff(path, a, b)
    local code, out, err = process.run({ shadowd.binary(), "diff",
      "--descriptors", dir .. "/users.pb", "--path", path, a, b })
    assert.are_not.equal(2, code, out .. err)
    return code, json.decode(out)
  end

  it("compares a unary reply by name, a gzip-compressed one inflated",
     function()
    local path = "/shop.v1.Users/GetUser"
    local code, rec = diff(path, call(1, path, "Ada"), call(2, path, "Ada"))
    assert.are.equal(1, code)
    assert.are.same({ { op = "replace", path = "/name", primary = "Ada",
                        candidate = "Eve" } }, rec.body.diffs)
    -- A long name, which the gzip server compresses (flag 1): the record
    -- holds its inflated value.
    local big = call(2, path, "big")
    local bytes = process.read_file(big)
    local gz = bytes:find("\31\139\8", 1, true) -- gzip's magic, deflate
    assert.truthy(gz)
    assert.are.equal(1, bytes:byte(gz - 5)) -- the compressed flag
    code, rec = diff(path, call(1, path, "big"), big)
    assert.are.equal(1, code)
    local name = by_path(rec.body.diffs)["/name"].candidate
    assert.truthy(name:find("^EveEveEve"))
    assert.truthy(name:find("...(600 bytes)", 1, true)) -- cut at value_max
    assert.is_nil(rec.body.notes)
  end)

  it("compares a NOT_FOUND reply's grpc-status and message", function()
    local path = "/shop.v1.Users/GetUser"
    local code, rec = diff(path, call(1, path, "Ada"), call(2, path, "missing"))
    assert.are.equal(1, code)
    assert.are.same({ primary = 0, candidate = 5 }, rec.status.grpc)
    assert.are.equal("no such user", rec.status.grpc_message.candidate)
  end)

  it("compares a server stream message by message", function()
    local path = "/shop.v1.Users/ListUsers"
    local code, rec = diff(path, call(1, path, "x"), call(2, path, "x"))
    assert.are.equal(1, code)
    assert.are.same({ primary = 3, candidate = 3 }, rec.body.messages)
    local by = by_path(rec.body.diffs)
    for i = 0, 2 do
      assert.are.same({ op = "replace", path = "/" .. i .. "/name",
                        primary = "Ada", candidate = "Eve" }, by["/" .. i .. "/name"])
    end
    assert.are.equal(3, #rec.body.diffs)
  end)
end)

-- A canned gRPC backend over h2c (spec/support/grpc_canned.py, on
-- python3-h2): a reply's body is a record file's messages, its grpc-status
-- (and grpc-message) come as trailers after the DATA frames. gRPC always
-- goes over HTTP/2, so an http:// backend is spoken to in h2c.
local function canned(dir, side)
  local port = require "support.port"
  local p = port.free()
  local proc = process.spawn({ PYTHON, "spec/support/grpc_canned.py",
                               tostring(p), dir, side },
                             { stdout = dir .. "/canned-" .. side .. ".out",
                               stderr = dir .. "/canned-" .. side .. ".err" })
  assert(port.wait(p, 15, proc))
  return { url = "http://127.0.0.1:" .. p,
           stop = function() proc:stop(5) end }
end

describe("live gRPC replies", function()
  if not ready() then
    pending("protoc or python3-protobuf is missing (scripts/bootstrap)")
    return
  end
  local stop, d, dir, a, b

  setup(function()
    stop = cleanup.new()
    dir = make("shadow-grpc-live")
    a = stop.add(canned(dir, "a"))
    b = stop.add(canned(dir, "b"))
    d = stop.add(shadowd.start{ text = function(addr) return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q), candidate = shadow.http(%q),
  sample = { rate = 1.0 },
  mirror_methods = { "POST" }, -- every gRPC call is a POST
  grpc = { descriptors = %q },
  limits = { mirror_body_bytes = 64 },
  capture = { file = %q },
}
]]):format(addr.listen, addr.admin, a.url, b.url, dir .. "/users.pb",
           dir .. "/cap.ndjson")
    end })
  end)
  teardown(function()
    stop.run()
    process.rmdir(dir)
  end)

  local function call(path, body)
    return assert(http.request(d.port, { method = "POST", path = path,
      headers = { ["content-type"] = "application/grpc", te = "trailers",
                  connection = "close" },
      body = body }))
  end

  it("routes by method, decodes by its output type, reads the trailers",
     function()
    for _, p in ipairs({ "/shop.v1.Users/GetUser", "/shop.v1.Users/ListUsers" })
    do
      assert.are.equal(200, call(p, "\0\0\0\0\5\10\3Ada").status)
    end
    local stats = d:wait_totals("compared", 2)
    local by_route = {}
    for _, rec in ipairs(d:divergences().divergences) do
      by_route[rec.route] = rec
    end
    local unary = assert(by_route["/shop.v1.Users/GetUser"])
    assert.are.equal("protobuf", unary.body.kind)
    assert.truthy(by_path(unary.body.diffs)["/name"])
    assert.are.same({ primary = 0, candidate = 0 }, unary.status.grpc)
    local stream = assert(by_route["/shop.v1.Users/ListUsers"])
    assert.is_true(stream.status.differs)
    assert.are.same({ primary = 0, candidate = 13 }, stream.status.grpc)
    assert.are.same({ primary = json.null, candidate = "boom" },
                    stream.status.grpc_message)
    assert.truthy(by_path(stream.body.diffs)["/1/age"])
    assert.truthy(stats.routes["/shop.v1.Users/GetUser"])
    -- Fields are named per message, as rules are: /1/age counts as /age.
    local fields = stats.routes["/shop.v1.Users/ListUsers"].fields
    assert.are.equal(1, fields["body:/age"])
    assert.are.equal(1, fields["body:"]) -- the message only the primary has
    assert.are.equal(1, fields["status"])
  end)

  it("shows each method as a route on the dashboard, grpc-status beside",
     function()
    local browser = require "support.browser"
    if not browser.available() then
      pending("chromium is not installed (scripts/bootstrap installs it)")
      return
    end
    -- The stream's group becomes the most frequent: the one shown.
    for _ = 1, 3 do
      assert.are.equal(200,
        call("/shop.v1.Users/ListUsers", "\0\0\0\0\5\10\3Ada").status)
    end
    d:wait_totals("compared", 5)
    local bdir = process.tmpdir("shadow-grpc-chromium")
    finally(function() process.rmdir(bdir) end)
    local dom = browser.run(bdir, "http://127.0.0.1:" .. d.admin_port .. "/",
                            { "--dump-dom" })
    assert.matches('data%-ready="1"', dom)
    assert.truthy(dom:find('<tr data-route="/shop.v1.Users/GetUser">', 1, true))
    local row = dom:match('<tr data%-route="/shop%.v1%.Users/ListUsers">.-</tr>')
    assert.matches('<td class="n">4</td><td class="n">4 ', row)
    local rows = dom:match('<tbody id="detail%-rows">(.-)</tbody>')
    assert.matches('<code>grpc%-status</code></td><td class="pv"><code>0</code>'
                   .. '</td><td class="cv"><code>13</code>', rows)
    assert.matches('<code>grpc%-message</code>', rows)
    assert.matches('<code>/1/age</code>', rows)
    assert.is_nil(rows:find("<code>status</code>", 1, true)) -- 200 both
  end)

  it("skips a client stream past mirror_body_bytes as streaming", function()
    local res = call("/shop.v1.Users/GetUser", ("\0\0\0\0\5\10\3Ada"):rep(10))
    assert.are.equal(200, res.status)
    local stats = d:wait_totals("requests", 6)
    assert.are.equal(1, stats.totals.skipped.streaming)
    assert.is_nil(stats.totals.skipped.body_too_large)
  end)

  it("captures the calls with their trailers; replay compares by method",
     function()
    local lines
    require("support.port").wait_until(function()
      lines = process.read_lines(dir .. "/cap.ndjson") or {}
      return #lines >= 2
    end, 10, 0.05)
    local seen = {}
    for _, line in ipairs(lines) do
      local e = json.decode(line)
      seen[e.request.target] = e
    end
    local list = assert(seen["/shop.v1.Users/ListUsers"])
    -- (Bodies that are not UTF-8 are base64; these small ones are ASCII.)
    assert.are.same({ { "grpc-status", "0" } }, list.response.trailers)
    -- Replayed against the candidate: the recorded primary's messages and
    -- status against the candidate's, decoded by each call's method.
    process.write_file(dir .. "/replay.lua", ([[
local shadow = require "shadow"
return { primary = "http://127.0.0.1:1", candidate = shadow.http(%q),
         grpc = { descriptors = %q } }
]]):format(b.url, dir .. "/users.pb"))
    local out = dir .. "/replayed.ndjson"
    local code, _, err = process.run({ shadowd.binary(), "replay", "--config",
      dir .. "/replay.lua", "--out", out, dir .. "/cap.ndjson" })
    assert.are.equal(1, code, err)
    local by_route = {}
    for _, line in ipairs(process.read_lines(out)) do
      local r = json.decode(line)
      by_route[r.route] = r
    end
    local stream = assert(by_route["/shop.v1.Users/ListUsers"])
    assert.are.same({ primary = 0, candidate = 13 }, stream.status.grpc)
    assert.truthy(by_path(stream.body.diffs)["/1/age"])
    assert.truthy(by_path(by_route["/shop.v1.Users/GetUser"].body.diffs)["/name"])
  end)
end)

describe("grpc.descriptors on reload", function()
  if not ready() then
    pending("protoc or python3-protobuf is missing (scripts/bootstrap)")
    return
  end
  local port = require "support.port"

  it("is watched: a broken set is refused, naming it; the old one stays",
     function()
    local dir = make("shadow-grpc-watch")
    local stop = cleanup.new()
    finally(function()
      stop.run()
      process.rmdir(dir)
    end)
    local pb = dir .. "/watched.pb"
    process.write_file(pb, process.read_file(dir .. "/users.pb"))
    local d = stop.add(shadowd.start{ text = function(addr) return ([[
return { listen = %q, admin = %q, watch = true,
         primary = "http://127.0.0.1:1", grpc = { descriptors = %q } }
]]):format(addr.listen, addr.admin, pb) end })
    local gen = d:stats().generation
    process.write_file(pb, "not a descriptor set")
    local s
    port.wait_until(function()
      s = d:stats()
      return s.failed_reloads.count >= 1
    end, 10, 0.05)
    assert.are.equal(1, s.failed_reloads.count)
    assert.matches("grpc.descriptors: " .. pb .. ": not a descriptor set",
                   s.failed_reloads.last.error, 1, true)
    assert.are.equal(gen, s.generation)
  end)
end)
