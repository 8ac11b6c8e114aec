-- A hostile HTTP backend in its own luajit process: for each request it
-- commits one fault, picked by path or at random, so specs can put every
-- way a backend can misbehave behind shadowd at once. One process serves
-- many connections (coroutines over socket.select), and is stopped by pid.
--
--   local h = hostile.start{ mode = "random" }   -- or a fault name
--   h.url, h.port, h:set_mode("ok"), h:counts(), h:stop()
--
-- Faults (GET /f/<name>... picks one; other paths use the current mode):
--   refuse    close at once, nothing sent       (shadowd: reset)
--   down      as refuse, and stop listening for DOWN seconds, so new
--             connections are refused           (refused)
--   reset     close with an RST (SO_LINGER 0)   (reset)
--   hang      never answer, keep the socket     (timeout)
--   garbage   bytes that are not HTTP           (bad_response)
--   lie       Content-Length 1000, 10 bytes, close   (reset)
--   huge      200 KiB of response headers       (too_large)
--   midbody   half a chunked body, then close   (reset)
--   badchunk  a chunk size that is not hex      (bad_response)
--   slow      a valid answer after SLOW seconds (ok, unless it times out)
--   ok        a valid answer at once            (ok)
--   endless   a chunked body that never ends, 4 KiB a chunk as fast as the
--             peer reads (timeout, by total_timeout_ms); only by path
--             (/f/endless), never picked at random
-- Control: GET /__mode/<name> sets the mode ("random" included) and
-- answers 200; GET /__counts answers the faults served so far as JSON,
-- with max_hanging: the most connections hanging at one time, and
-- endless_open: endless bodies still being sent.
local process = require "support.process"
local luaserver = require "support.luaserver"
local port = require "support.port"
local json = require "support.json"
local http = require "support.http"

local M = {}

M.FAULTS = { "refuse", "down", "reset", "hang", "garbage", "lie", "huge",
             "midbody", "badchunk", "slow", "ok" }

-- What shadowd's upstream reports for each fault.
M.REASON = { refuse = "reset", down = "refused", reset = "reset",
             hang = "timeout", garbage = "bad_response", lie = "reset",
             huge = "too_large", midbody = "reset",
             badchunk = "bad_response" }

local SERVER = [==[
local socket = require "socket"
local port, mode, slow = tonumber(arg[1]), arg[2], tonumber(arg[3])
local FAULTS = { "refuse", "down", "reset", "hang", "garbage", "lie",
                 "huge", "midbody", "badchunk", "slow", "ok" }
local DOWN = 0.02
local known = { endless = true }
for _, f in ipairs(FAULTS) do known[f] = true end
local counts = {}   -- fault -> times served; max_hanging: most at once
local hanging = {}  -- socket -> true while its peer keeps it open

-- Drops the hanging sockets whose peer has closed them.
local function reap_hanging()
  local list = {}
  for h in pairs(hanging) do list[#list + 1] = h end
  if #list == 0 then return end
  local ready = socket.select(list, nil, 0)
  for _, h in ipairs(ready) do
    local data, err = h:receive(1)
    if not data and err ~= "timeout" then hanging[h] = nil end
  end
end
math.randomseed(os.time() + port)

local function listen()
  local s = assert(socket.bind("127.0.0.1", port, 512))
  s:settimeout(0)
  return s
end
local srv = listen()
local up_at -- while down: when to listen again

-- Each connection is a coroutine; it yields what it waits for.
local tasks = {}   -- co -> { read = sock } | { write = sock } | { at = t }

local function wait_read(s) coroutine.yield({ read = s }) end
local function wait_write(s) coroutine.yield({ write = s }) end
local function sleep(t) coroutine.yield({ at = socket.gettime() + t }) end

-- A line, or nil when the peer closed or broke the connection.
local function read_line(s)
  local acc = ""
  while true do
    local line, err, partial = s:receive("*l", acc)
    if line then return line end
    if err ~= "timeout" then return nil end
    acc = partial
    wait_read(s)
  end
end

local function read_n(s, n)
  local acc = ""
  while #acc < n do
    local data, err, partial = s:receive(n - #acc)
    data = data or partial
    acc = acc .. (data or "")
    if err and err ~= "timeout" then return nil end
    if #acc < n then wait_read(s) end
  end
  return acc
end

local function send_all(s, bytes)
  local i = 1
  while i <= #bytes do
    local last, err, partial = s:send(bytes, i)
    if last then
      i = last + 1
    else
      if err ~= "timeout" then return nil end
      i = partial + 1
      if i <= #bytes then wait_write(s) end
    end
  end
  return true
end

local function answer(s, status, body, extra)
  return send_all(s, ("HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
    .. "Content-Length: %d\r\n%s\r\n%s"):format(status, #body, extra or "",
                                              body))
end

local function encode_counts()
  local parts = {}
  for k, v in pairs(counts) do parts[#parts + 1] = ('"%s":%d'):format(k, v) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Serves one connection until a fault ends it; true to keep it.
local function serve_one(s)
  local line = read_line(s)
  if not line then return false end
  local path = line:match("^%S+ (%S+)") or "/"
  local length = 0
  while true do
    local h = read_line(s)
    if not h then return false end
    if h == "" then break end
    local v = h:lower():match("^content%-length:%s*(%d+)")
    if v then length = tonumber(v) end
  end
  if length > 0 and not read_n(s, length) then return false end

  local set = path:match("^/__mode/(%w+)")
  if set then
    mode = set
    return answer(s, 200, '{"mode":"' .. set .. '"}')
  end
  if path == "/__counts" then return answer(s, 200, encode_counts()) end

  local fault = path:match("^/f/(%w+)")
  if not known[fault] then fault = mode end
  if not known[fault] then fault = FAULTS[math.random(#FAULTS)] end
  counts[fault] = (counts[fault] or 0) + 1

  if fault == "ok" then
    return answer(s, 200, '{"ok":true,"path":"' .. path .. '"}')
  elseif fault == "slow" then
    sleep(slow)
    return answer(s, 200, '{"ok":true,"slow":true}')
  elseif fault == "refuse" then
    return false
  elseif fault == "down" then
    if srv then
      srv:close()
      srv = nil
    end
    up_at = socket.gettime() + DOWN
    return false
  elseif fault == "reset" then
    s:setoption("linger", { on = true, timeout = 0 })
    return false
  elseif fault == "hang" then
    -- Until the peer gives up: then the read fails and the task ends.
    -- Those that gave up already but were not woken yet are not counted:
    -- a peer closing one connection and opening the next one is not two.
    reap_hanging()
    hanging[s] = true
    local n = 0
    for _ in pairs(hanging) do n = n + 1 end
    if n > (counts.max_hanging or 0) then counts.max_hanging = n end
    while hanging[s] do
      wait_read(s)
      if hanging[s] then
        local data, err = s:receive(1)
        if not data and err ~= "timeout" then hanging[s] = nil end
      end
    end
    return false
  elseif fault == "garbage" then
    send_all(s, "\0\1\2 this is not HTTP \255\254\r\n\r\n")
    return false
  elseif fault == "lie" then
    send_all(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
    return false
  elseif fault == "huge" then
    local h = { "HTTP/1.1 200 OK\r\n" }
    local line = "X-Filler: " .. ("h"):rep(1000) .. "\r\n"
    for i = 1, 205 do h[#h + 1] = line end
    h[#h + 1] = "Content-Length: 2\r\n\r\n{}"
    send_all(s, table.concat(h))
    return false
  elseif fault == "midbody" then
    send_all(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             .. "a\r\n0123456789\r\n10\r\n01234")
    return false
  elseif fault == "endless" then
    -- Until the peer hangs up: each chunk waits for the socket to take
    -- more, so the other connections are served meanwhile.
    counts.endless_open = (counts.endless_open or 0) + 1
    local chunk = ("1000\r\n%s\r\n"):format(("e"):rep(4096))
    if send_all(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                .. "Transfer-Encoding: chunked\r\n\r\n") then
      while send_all(s, chunk) do wait_write(s) end
    end
    counts.endless_open = counts.endless_open - 1
    return false
  elseif fault == "badchunk" then
    send_all(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             .. "zz\r\nnot a chunk\r\n0\r\n\r\n")
    return false
  end
  return false
end

local function serve(s)
  while serve_one(s) do end
  s:close()
end

local function wake(co, s)
  local ok, want = coroutine.resume(co, s)
  if not ok then io.stderr:write("task: ", tostring(want), "\n") end
  if coroutine.status(co) == "dead" then tasks[co] = nil
  else tasks[co] = want end
end

while true do
  local now, next_at = socket.gettime(), nil
  if not srv then
    if now >= up_at then srv = listen() else next_at = up_at end
  end
  local readers, writers, by_sock = { srv }, {}, {}
  for co, w in pairs(tasks) do
    if w.read then readers[#readers + 1] = w.read; by_sock[w.read] = co
    elseif w.write then writers[#writers + 1] = w.write; by_sock[w.write] = co
    elseif w.at then
      if w.at <= now then next_at = now
      elseif not next_at or w.at < next_at then next_at = w.at end
    end
  end
  local timeout = next_at and math.max(0, next_at - now) or 1
  local r, w = socket.select(readers, writers, timeout)
  -- Connections first, new ones last: a peer that closes one connection
  -- and opens another is seen closing first, so max_hanging is exact.
  local accept = false
  for _, s in ipairs(r) do
    if srv and s == srv then accept = true
    elseif by_sock[s] then wake(by_sock[s]) end
  end
  for _ = 1, accept and 64 or 0 do
    if not srv then break end -- a "down" served meanwhile
    local c = srv:accept()
    if not c then break end
    c:settimeout(0)
    c:setoption("tcp-nodelay", true)
    local co = coroutine.create(serve)
    wake(co, c)
  end
  for _, s in ipairs(w) do if by_sock[s] then wake(by_sock[s]) end end
  now = socket.gettime()
  for co, want in pairs(tasks) do
    if want.at and want.at <= now then wake(co) end
  end
end
]==]

local Hostile = {}
Hostile.__index = Hostile

-- start{ mode = "random" | fault name, slow = seconds (default 0.2),
--        port = a given port (default a free one) }
function M.start(opts)
  opts = opts or {}
  local s = luaserver.start("shadow-hostile", SERVER,
                            { opts.mode or "random", opts.slow or 0.2 },
                            opts.port)
  return setmetatable({ port = s.port, proc = s.proc, dir = s.dir,
                        url = s.url }, Hostile)
end

-- A control request; retried while a "down" fault has the port closed.
local function control(self, path)
  local res, err
  port.wait_until(function()
    res, err = http.get(self.port, path)
    return res
  end, 10, 0.02)
  assert(res, "hostile " .. path .. ": " .. tostring(err))
  assert(res.status == 200, "hostile " .. path .. " answered " .. res.status)
  return res
end

function Hostile:set_mode(mode)
  control(self, "/__mode/" .. mode)
end

-- The faults served so far: name -> count, and max_hanging.
function Hostile:counts()
  return json.decode(control(self, "/__counts").body)
end

function Hostile:stop()
  if self.stopped then return end
  self.stopped = true
  self.proc:stop(5, process.SIGKILL)
  process.rmdir(self.dir)
end

return M
