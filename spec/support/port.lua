-- Loopback ports for servers started by specs.
local socket = require "socket"

local M = {}

-- Ports handed out by this process lately: the kernel may give a closed
-- port out again at once, and two servers of one spec must not collide.
local recent, order = {}, {}

-- A port the kernel just handed out, nobody listens on now, and this
-- process has not handed out in its last 256 calls.
function M.free()
  for _ = 1, 100 do
    local s = assert(socket.tcp())
    assert(s:bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    port = tonumber(port)
    if not recent[port] then
      recent[port] = true
      order[#order + 1] = port
      if #order > 256 then recent[table.remove(order, 1)] = nil end
      return port
    end
  end
  error("no fresh free port after 100 tries")
end

function M.accepts(port, host)
  local c = socket.tcp()
  c:settimeout(0.2)
  local ok = c:connect(host or "127.0.0.1", port)
  c:close()
  return ok ~= nil
end

-- Waits until something accepts on port. `proc` (optional, from
-- support.process) makes the wait fail at once, with the child's
-- output, when the child exits first: that is the usual reason.
function M.wait(port, timeout, proc, host)
  local deadline = socket.gettime() + (timeout or 10)
  while true do
    if M.accepts(port, host) then return true end
    if proc and not proc:running() then
      return nil, ("%s exited before listening on %s:%d; output:\n%s")
        :format(proc:describe(), host or "127.0.0.1", port, proc:output())
    end
    if socket.gettime() > deadline then
      return nil, ("nothing listens on %s:%d after %ss%s")
        :format(host or "127.0.0.1", port, timeout or 10,
                proc and ("; " .. proc:describe() .. " output:\n"
                          .. proc:output()) or "")
    end
    socket.sleep(0.02)
  end
end

-- Polls fn until it returns a truthy value or timeout seconds pass;
-- returns that value, or nil and the last value fn gave.
function M.wait_until(fn, timeout, interval)
  local deadline = socket.gettime() + (timeout or 10)
  local last
  while true do
    last = { fn() }
    if last[1] then return unpack(last) end
    if socket.gettime() > deadline then return nil, last[2] end
    socket.sleep(interval or 0.02)
  end
end

M.wait_for_port = M.wait
return M
