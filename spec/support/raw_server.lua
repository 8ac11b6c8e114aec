-- A tiny misbehaving HTTP server in its own luajit process, for the
-- primary faults nginx cannot produce: garbage replies and resets.
local luaserver = require "support.luaserver"

local M = {}

-- Reads each request's head, then acts by `mode`: "garbage" sends
-- non-HTTP bytes and closes, "reset" closes with an RST, "close"
-- answers 200 with a body delimited by closing the connection.
local SERVER = [[
local socket = require "socket"
local port, mode = tonumber(arg[1]), arg[2]
local srv = assert(socket.bind("127.0.0.1", port))
while true do
  local c = srv:accept()
  c:settimeout(5)
  repeat local line = c:receive("*l") until not line or line == ""
  if mode == "garbage" then
    c:send("this is not HTTP at all\r\n\r\n\0\1\2")
  elseif mode == "close" then
    c:send("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
  elseif mode == "reset" then
    c:setoption("linger", { on = true, timeout = 0 })
  end
  c:close()
end
]]

function M.start(mode)
  return luaserver.start("shadow-raw", SERVER, { mode })
end

return M
