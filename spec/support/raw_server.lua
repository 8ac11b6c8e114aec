-- A tiny misbehaving HTTP server in its own luajit process, for the
-- primary faults nginx cannot produce: garbage replies and resets.
local process = require "support.process"
local port = require "support.port"

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
  local p = port.free()
  local dir = process.tmpdir("shadow-raw")
  process.write_file(dir .. "/server.lua", SERVER)
  local proc = process.spawn({ "luajit", dir .. "/server.lua",
                               tostring(p), mode },
                             { stdout = dir .. "/out", stderr = dir .. "/err" })
  local ok, err = port.wait(p, 10, proc)
  if not ok then
    proc:stop()
    process.rmdir(dir)
    error(err, 2)
  end
  return {
    port = p, proc = proc,
    url = "http://127.0.0.1:" .. p,
    stop = function() proc:stop(); process.rmdir(dir) end,
  }
end

return M
