-- shadow.diff on gRPC replies: bodies of length-prefixed messages,
-- grpc-status and grpc-message in trailers (ABI 3) or in the headers of a
-- trailers-only reply, streams index by index under the same rules.
require "env"
local shadow = require "shadow"

-- One length-prefixed message (flag 0).
local function frame(msg)
  local n = #msg
  return string.char(0, math.floor(n / 16777216) % 256,
                     math.floor(n / 65536) % 256, math.floor(n / 256) % 256,
                     n % 256) .. msg
end

-- A User by hand: name = 1 (string), age = 2 (varint, < 128).
local function user(name, age)
  return "\10" .. string.char(#name) .. name .. "\16" .. string.char(age)
end

local function reply(body, trailers, headers)
  local h = { ["content-type"] = "application/grpc" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return { status = 200, headers = h, trailers = trailers, body = body }
end

describe("shadow.diff on gRPC", function()
  it("compares a unary message as its tree, grpc-status beside the status",
     function()
    local a = reply(frame(user("Ada", 36)), { ["grpc-status"] = "0" })
    assert.is_nil(shadow.diff(a, reply(frame(user("Ada", 36)),
                                       { ["grpc-status"] = "0" })))
    local d, parts = shadow.diff(a, reply(frame(user("Ada", 37)),
                                          { ["grpc-status"] = "0" }))
    assert.equal(4, parts)
    assert.equal("protobuf", d.body.kind)
    assert.same({ { op = "replace", path = "/2", primary = 36,
                    candidate = 37 } }, d.body.diffs)
    -- A trailers-only error reply: grpc-status in its headers.
    d, parts = shadow.diff(a, reply("", nil, { ["grpc-status"] = "14",
                                               ["grpc-message"] = "down" }))
    assert.equal(1, parts % 2)
    assert.same({ primary = 0, candidate = 14 }, d.status.grpc)
    assert.same({ primary = nil, candidate = "down" },
                { candidate = d.status.grpc_message.candidate })
  end)

  it("compares other trailers as headers, under ignore.headers", function()
    local a = reply(frame(user("Ada", 36)), { ["grpc-status"] = "0",
                                              ["x-cost"] = "1" })
    local b = reply(frame(user("Ada", 36)), { ["grpc-status"] = "0",
                                              ["x-cost"] = "2" })
    local d, parts = shadow.diff(a, b)
    assert.equal(2, parts)
    assert.same({ { name = "x-cost", primary = "1", candidate = "2" } },
                d.trailers.diffs)
    assert.is_nil(shadow.diff(a, b, { ignore = { headers = { "x-cost" } } }))
  end)

  it("compares a stream index by index, a unary rule on each message",
     function()
    local a = reply(frame(user("Ada", 36)) .. frame(user("Bob", 7)))
    local b = reply(frame(user("Eve", 36)) .. frame(user("Bob", 8))
                    .. frame(user("Cy", 9)))
    local d = shadow.diff(a, b, { ignore = { json = { "/1" } } })
    assert.same({ primary = 2, candidate = 3 }, d.body.messages)
    assert.same({ { op = "replace", path = "/1/2", primary = 7, candidate = 8 },
                  { op = "add", path = "/2", candidate = { ["1"] = "Cy",
                                                           ["2"] = 9 } } },
                d.body.diffs)
  end)

  it("refuses trailers that are not a table", function()
    assert.has_error(function()
      shadow.diff(reply(""), { trailers = 5 })
    end, "shadow.diff: candidate.trailers must be a table")
  end)
end)
