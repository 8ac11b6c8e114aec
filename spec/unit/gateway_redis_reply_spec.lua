-- shadow.gateway.redis reads RESP2 replies: scalars, nested arrays (EXEC's
-- replies hold HGETALL's), nulls, errors, and refuses what is not RESP.
-- The reader is fed from a fake cosocket handing out the bytes a few at a
-- time, so every reply also crosses buffer refills.
local NULL = setmetatable({}, { __tostring = function() return "null" end })
local saved_ngx = rawget(_G, "ngx")
_G.ngx = { null = NULL }
package.loaded["shadow.gateway.redis"] = nil
local redis = require "shadow.gateway.redis"
_G.ngx = saved_ngx

local function sock_of(bytes, piece)
  local pos = 1
  return {
    receiveany = function(_, max)
      if pos > #bytes then return nil, "closed" end
      local n = math.min(piece, max)
      local d = bytes:sub(pos, pos + n - 1)
      pos = pos + n
      return d
    end,
    receive = function(_, n)
      if pos + n - 1 > #bytes then return nil, "closed" end
      local d = bytes:sub(pos, pos + n - 1)
      pos = pos + n
      return d
    end,
  }
end

local function read_all(bytes, piece)
  local b = redis.reader(sock_of(bytes, piece or 3))
  local out = {}
  while true do
    local v, ok, why = redis.read_reply(b)
    if not ok then return out, why end
    out[#out + 1] = v == nil and "nil" or v
  end
end

describe("shadow.gateway.redis replies", function()
  it("reads scalars, a null bulk and array, errors and numbers", function()
    local out, why = read_all("+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n"
                              .. "*0\r\n-ERR no\r\n")
    assert.equal("closed", why)
    assert.equal("OK", out[1])
    assert.equal(42, out[2])
    assert.equal("hello", out[3])
    assert.equal("nil", out[4])
    assert.equal("nil", out[5])
    assert.same({}, out[6])
    assert.is_true(redis.is_err(out[7]))
    assert.equal("ERR no", out[7].err)
  end)

  it("reads nested arrays, EXEC's shape, with nulls kept in place",
     function()
    -- EXEC of HINCRBY, HGETALL and GET (missing), then a bare array.
    local exec = "*3\r\n:7\r\n*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n"
                 .. "$1\r\n2\r\n$-1\r\n"
    local out = read_all(exec .. "*2\r\n*1\r\n*1\r\n+deep\r\n:1\r\n", 1)
    assert.equal(2, #out)
    assert.equal(7, out[1][1])
    assert.same({ "a", "1", "b", "2" }, out[1][2])
    assert.equal(NULL, out[1][3])
    assert.same({ { { "deep" } }, 1 }, out[2])
  end)

  it("refuses a reply nested past sixteen arrays, and one not RESP",
     function()
    local deep = string.rep("*1\r\n", 17) .. ":1\r\n"
    local out, why = read_all(deep)
    assert.same({}, out)
    assert.equal("protocol", why)
    local ok16 = read_all(string.rep("*1\r\n", 16) .. ":1\r\n")
    assert.equal(1, #ok16)
    out, why = read_all("?what\r\n")
    assert.same({}, out)
    assert.equal("protocol", why)
    out, why = read_all("*2\r\n:1\r\n")
    assert.same({}, out)
    assert.equal("closed", why)
  end)
end)
