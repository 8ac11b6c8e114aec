-- A raw HTTP/1.1 client over luasocket: specs control every byte sent,
-- and can reuse one connection for sequential requests (keep-alive).
local socket = require "socket"

local M = {}

local Conn = {}
Conn.__index = Conn

function M.connect(port, opts)
  opts = opts or {}
  local sock = assert(socket.tcp())
  sock:settimeout(opts.timeout or 10)
  local ok, err = sock:connect(opts.host or "127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, ("connect 127.0.0.1:%d: %s"):format(port, err)
  end
  sock:setoption("tcp-nodelay", true)
  return setmetatable({ sock = sock, port = port }, Conn)
end

function Conn:settimeout(t) self.sock:settimeout(t) end

function Conn:close() self.sock:close() end

-- Sends raw bytes as they are.
function Conn:send(bytes)
  local i = 1
  while i <= #bytes do
    local last, err, partial = self.sock:send(bytes, i)
    if not last then
      if partial and partial >= i then i = partial + 1 end
      return nil, err
    end
    i = last + 1
  end
  return true
end

-- The bytes of a request. headers: list of { name, value } or a map.
function M.build(req)
  local lines = { ("%s %s HTTP/%s"):format(req.method or "GET",
                                           req.path or "/",
                                           req.version or "1.1") }
  local has = {}
  local function add(name, value)
    has[name:lower()] = true
    lines[#lines + 1] = name .. ": " .. value
  end
  local headers = req.headers or {}
  if headers[1] then
    for _, h in ipairs(headers) do add(h[1], h[2]) end
  else
    local names = {}
    for k in pairs(headers) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do add(k, headers[k]) end
  end
  if not has.host then add("Host", "127.0.0.1") end
  if req.body and not has["content-length"]
     and not has["transfer-encoding"] then
    add("Content-Length", tostring(#req.body))
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (req.body or "")
end

local function read_exact(sock, n)
  if n == 0 then return "" end
  local data, err, partial = sock:receive(n)
  if not data then return nil, err, partial end
  return data
end

local function read_chunked(sock)
  local parts = {}
  while true do
    local line, err = sock:receive("*l")
    if not line then return nil, "chunk size: " .. err end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then return nil, "bad chunk size line: " .. line end
    if size == 0 then
      -- Trailers, up to the empty line.
      repeat
        line, err = sock:receive("*l")
        if not line then return nil, "trailer: " .. err end
      until line == ""
      return table.concat(parts)
    end
    local data
    data, err = read_exact(sock, size)
    if not data then return nil, "chunk data: " .. err end
    parts[#parts + 1] = data
    sock:receive("*l")
  end
end

-- Reads a response head: { status, reason, version, headers (lower-case
-- name -> value, repeated ones joined with ", "), header_list }. Interim
-- 1xx responses are skipped. The body is left to read.
function Conn:read_response_head()
  local sock = self.sock
  local res
  repeat
    local line, err = sock:receive("*l")
    if not line then return nil, "status line: " .. err end
    local version, status, reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
    if not version then return nil, "bad status line: " .. line end
    res = { version = version, status = tonumber(status), reason = reason,
            headers = {}, header_list = {} }
    while true do
      line, err = sock:receive("*l")
      if not line then return nil, "header: " .. err end
      if line == "" then break end
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if not name then return nil, "bad header line: " .. line end
      name = name:lower()
      res.header_list[#res.header_list + 1] = { name, value }
      res.headers[name] = res.headers[name]
        and (res.headers[name] .. ", " .. value) or value
    end
  until res.status >= 200 or res.status == 101
  return res
end

-- Reads one response: the head as read_response_head(), and its body.
-- opts.method = "HEAD" for no body.
function Conn:read_response(opts)
  opts = opts or {}
  local sock = self.sock
  local res, err = self:read_response_head()
  if not res then return nil, err end
  local h = res.headers
  if opts.method == "HEAD" or res.status == 204 or res.status == 304 then
    res.body = ""
  elseif h["transfer-encoding"] and h["transfer-encoding"]:lower()
                                     :find("chunked", 1, true) then
    local body, err = read_chunked(sock)
    if not body then return nil, err end
    res.body = body
  elseif h["content-length"] then
    local body, err = read_exact(sock, tonumber(h["content-length"]))
    if not body then return nil, "body: " .. err end
    res.body = body
  else
    local body, err, partial = sock:receive("*a")
    res.body = body or partial
    res.closed = true
    if not res.body then return nil, "body: " .. err end
  end
  local conn = h.connection and h.connection:lower() or ""
  res.keep_alive = not res.closed and conn ~= "close"
    and (res.version == "1.1" or conn == "keep-alive")
  return res
end

-- Sends a request and reads its response; res.elapsed is the time in
-- seconds from the first byte sent to the last byte read.
function Conn:request(req)
  local t0 = socket.gettime()
  local ok, err = self:send(req.raw or M.build(req))
  if not ok then return nil, "send: " .. err end
  local res
  res, err = self:read_response({ method = req.method })
  if not res then return nil, err end
  res.elapsed = socket.gettime() - t0
  return res
end

-- True when the peer closed the connection within timeout seconds
-- (EOF or reset), false if it stayed open (or sent more bytes).
function Conn:wait_closed(timeout)
  self.sock:settimeout(timeout or 5)
  local data, err, partial = self.sock:receive(1)
  if data or (partial and #partial > 0) then return false, "got data" end
  if err == "closed" or err == "connection reset by peer" then
    return true
  end
  return false, err
end

-- One request on a new connection, closed afterwards.
function M.request(port, req)
  local conn, err = M.connect(port, { timeout = req.timeout })
  if not conn then return nil, err end
  local res
  res, err = conn:request(req)
  conn:close()
  return res, err
end

function M.get(port, path, headers)
  return M.request(port, { method = "GET", path = path, headers = headers })
end

return M
