-- Prints N distinct free loopback ports, one a line: all N are bound at
-- once before any is released, so none repeats.
-- Usage: luajit bench/ports.lua N
local socket = require "socket"
local n = tonumber(arg[1]) or 1
local held, out = {}, {}
for i = 1, n do
  local s = assert(socket.tcp())
  assert(s:bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  held[i], out[i] = s, port
end
for _, s in ipairs(held) do s:close() end
print(table.concat(out, "\n"))
