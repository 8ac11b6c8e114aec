-- Upgrade tunnels: a WebSocket request goes to the primary with its
-- Upgrade and Connection headers; on its 101 the two connections are
-- relayed both ways until either side closes, an idle timeout passes, or a
-- drain ends; nothing is mirrored. The backend is Debian nginx with the Lua
-- module answering the handshake (Sec-WebSocket-Accept) and echoing frames
-- on the raw socket.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local socket = require "socket"
local bit = require "bit"

local WS_SERVER = [[
  location /ws { content_by_lua_block {
    local key = ngx.var.http_sec_websocket_key or ""
    local accept = ngx.encode_base64(ngx.sha1_bin(key
      .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
    if ngx.var.http_upgrade ~= "websocket" then return ngx.exit(426) end
    local sock = assert(ngx.req.socket(true))
    sock:settimeout(10000)
    sock:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      .. "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. accept
      .. "\r\n\r\n")
    while true do
      local hdr = sock:receive(2)
      if not hdr then break end
      local b1, b2 = hdr:byte(1, 2)
      local len = b2 % 128
      if len == 126 then
        local e = sock:receive(2)
        len = e:byte(1) * 256 + e:byte(2)
      elseif len == 127 then
        local e = sock:receive(8)
        len = 0
        for i = 1, 8 do len = len * 256 + e:byte(i) end
      end
      local mask = b2 >= 128 and sock:receive(4) or "\0\0\0\0"
      local payload = len > 0 and sock:receive(len) or ""
      local out = {}
      for i = 1, #payload do
        out[i] = string.char(bit.bxor(payload:byte(i),
                                      mask:byte((i - 1) % 4 + 1)))
      end
      local data = table.concat(out)
      if b1 % 16 == 8 or data == "close" then break end
      local n, h = #data
      if n < 126 then h = string.char(0x81, n)
      else h = string.char(0x81, 126, math.floor(n / 256), n % 256) end
      sock:send(h .. data)
    end
  } }
  location /nows { return 426 "upgrade required\n"; }
]]

-- RFC 6455's example key and its accept value.
local KEY, ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

local function frame(text)
  local mask = { 0x12, 0x34, 0x56, 0x78 }
  local n = #text
  local head = n < 126 and string.char(0x81, 0x80 + n)
    or string.char(0x81, 0x80 + 126, math.floor(n / 256), n % 256)
  local out = { head, string.char(unpack(mask)) }
  for i = 1, n do
    out[#out + 1] = string.char(bit.bxor(text:byte(i), mask[(i - 1) % 4 + 1]))
  end
  return table.concat(out)
end

local function read_frame(c)
  local hdr, err = c.sock:receive(2)
  if not hdr then return nil, err end
  local len = hdr:byte(2) % 128
  if len == 126 then
    local e = assert(c.sock:receive(2))
    len = e:byte(1) * 256 + e:byte(2)
  end
  return c.sock:receive(len)
end

local function open_ws(d, path)
  local c = assert(http.connect(d.port, { timeout = 10 }))
  assert(c:send("GET " .. (path or "/ws") .. " HTTP/1.1\r\nHost: a\r\n"
    .. "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Key: " .. KEY .. "\r\nSec-WebSocket-Version: 13\r\n\r\n"
    .. frame("early")))
  local res = assert(c:read_response_head())
  return c, res
end

describe("an upgrade tunnel", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = { primary = WS_SERVER,
                                  candidate = WS_SERVER } }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       limits = { tunnel_idle_timeout_ms = 600 } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("relays the 101 and frames both ways, and mirrors nothing", function()
    local c, res = open_ws(d)
    finally(function() c:close() end)
    assert.are.equal(101, res.status)
    assert.are.equal(ACCEPT, res.headers["sec-websocket-accept"])
    assert.are.equal("websocket", res.headers["upgrade"]:lower())
    assert.matches("upgrade", res.headers["connection"]:lower())
    -- The frame sent right behind the request goes through first.
    assert.are.equal("early", assert(read_frame(c)))
    for i = 1, 20 do
      assert(c:send(frame("hello " .. i)))
      assert.are.equal("hello " .. i, assert(read_frame(c)))
    end
    local big = ("x"):rep(60000)
    assert(c:send(frame(big)))
    assert.are.equal(big, assert(read_frame(c)))
    local s = d:stats()
    assert.are.equal(1, s.totals.skipped.upgrade)
    assert.are.equal(1, s.totals.tunnels_open)
    assert.are.equal(0, #ng:requests_for("candidate", "/ws"))
    -- The backend closes: so does the tunnel.
    assert(c:send(frame("close")))
    assert.is_true(c:wait_closed(5))
    port.wait_until(function()
      return d:stats().totals.tunnels_open == 0
    end, 5, 0.02)
    assert.are.equal(1, #ng:wait_uri("primary", "/ws", 1))
  end)

  it("closes the backend's side when the client closes", function()
    local c, res = open_ws(d)
    assert.are.equal(101, res.status)
    assert.are.equal("early", assert(read_frame(c)))
    local before = #ng:requests_for("primary", "/ws")
    c:close()
    -- nginx logs the request once its connection has ended.
    assert.are.equal(before + 1, #ng:wait_uri("primary", "/ws", before + 1))
    port.wait_until(function()
      return d:stats().totals.tunnels_open == 0
    end, 5, 0.02)
  end)

  it("closes a tunnel idle past limits.tunnel_idle_timeout_ms", function()
    local c, res = open_ws(d)
    finally(function() c:close() end)
    assert.are.equal(101, res.status)
    assert.are.equal("early", assert(read_frame(c)))
    local t0 = socket.gettime()
    assert.is_true(c:wait_closed(5))
    local idle = socket.gettime() - t0
    assert.is_true(idle > 0.4 and idle < 3, ("closed after %.2f s"):format(
      idle))
  end)

  it("passes a non-101 answer on as an ordinary response", function()
    local c, res = open_ws(d, "/nows")
    finally(function() c:close() end)
    assert.are.equal(426, res.status)
  end)

  it("refuses CONNECT with 405", function()
    local res = assert(http.request(d.port, { method = "CONNECT",
      path = "a:443", headers = { Host = "a:443" } }))
    assert.are.equal(405, res.status)
  end)
end)

describe("an upgrade tunnel at shutdown", function()
  it("is closed once drain_timeout_ms has passed, and shadowd exits 0",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = { primary = WS_SERVER } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"), rate = 0,
                                      extra = "drain_timeout_ms = 500," })
    local c, res = open_ws(d)
    stop.add(function() c:close() end)
    assert.are.equal(101, res.status)
    assert.are.equal("early", assert(read_frame(c)))
    local t0 = socket.gettime()
    d.proc:kill(process.SIGTERM)
    -- The tunnel still works during the drain...
    assert(c:send(frame("still here")))
    assert.are.equal("still here", assert(read_frame(c)))
    -- ...and is cut when the drain times out.
    assert.is_true(c:wait_closed(5))
    -- A second SIGTERM (stop's) while shadowd exits changes nothing.
    local how, code = d:stop(5)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    assert.is_true(socket.gettime() - t0 < 3)
  end)
end)
