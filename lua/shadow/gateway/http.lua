-- An HTTP/1.1 client on nginx cosockets, for the gateway's candidate leg:
-- keep-alive connections per worker (setkeepalive), connect / head / read
-- timeouts, content-length, chunked and read-until-close bodies. The body
-- is never held: each piece goes to the caller's sink as it arrives
-- (sink:put(piece)), an object rather than a closure, so a leg makes none.
-- Failures come back as nil and one of the daemon's candidate error
-- reasons: refused, reset, timeout, bad_response, too_large.
local ngx = ngx

local clock = require "shadow.clock"

local concat, find, lower, sub, tonumber, type =
  table.concat, string.find, string.lower, string.sub, tonumber, type
local byte, match = string.byte, string.match

local M = {}

local HEAD_MAX = 65536
-- Methods whose requests carry a body, so an empty one says length 0.
local WITH_BODY = { POST = true, PUT = true, PATCH = true }
local PIECE = 65536

-- What a cosocket error says, as a reason.
local function reason(err)
  if err == "timeout" then return "timeout" end
  return "reset"
end

-- A response is read through a small buffer refilled with receiveany, so
-- a short answer (head and body in one segment) costs one read. The
-- buffer b = { sock, data, pos }: data[pos..] is not consumed yet.
local function fill(b)
  local data, err = b.sock:receiveany(PIECE)
  if not data then return nil, err end
  if b.pos > #b.data then
    b.data, b.pos = data, 1
  else
    b.data, b.pos = sub(b.data, b.pos) .. data, 1
  end
  return true
end

-- Reads the response head; returns its text (without the blank line) or
-- nil, reason, whether nothing came at all. The head is bounded, as the
-- daemon's parser bounds it.
local function read_head(b)
  while true do
    local e = find(b.data, "\r\n\r\n", 1, true)
    if e then
      local head = sub(b.data, 1, e - 1)
      b.pos = e + 4
      return head
    end
    if #b.data > HEAD_MAX then return nil, "too_large" end
    local ok, err = fill(b)
    if not ok then return nil, reason(err), #b.data == 0 end
  end
end

-- One CRLF-terminated line (chunk sizes, trailers).
local function read_line(b)
  while true do
    local e = find(b.data, "\r\n", b.pos, true)
    if e then
      local line = sub(b.data, b.pos, e - 1)
      b.pos = e + 2
      return line
    end
    if #b.data - b.pos > 4096 then return nil, "bad_response" end
    local ok, err = fill(b)
    if not ok then return nil, reason(err) end
  end
end

-- n bytes to the sink, from the buffer first, then from the socket: a
-- known length is read with receive(size), pieces of up to PIECE bytes,
-- so nginx gathers the bytes of a piece in C and the sink gets one string
-- for it (receiveany returns at most lua_socket_buffer_size bytes, 4 KiB
-- by default: sixteen strings and sink calls for a 64 KiB body).
local function read_exact(b, n, sink)
  local avail = #b.data - b.pos + 1
  if avail > 0 then
    local take = avail < n and avail or n
    if b.pos == 1 and take == #b.data then
      sink:put(b.data)
    else
      sink:put(sub(b.data, b.pos, b.pos + take - 1))
    end
    b.pos = b.pos + take
    n = n - take
  end
  while n > 0 do
    local data, err = b.sock:receive(n < PIECE and n or PIECE)
    if not data then return nil, reason(err) end
    sink:put(data)
    n = n - #data
  end
  return true
end

-- Parses the head into status, headers (lower-case names; a name seen
-- several times maps to the list of its values), version minor and
-- whether the connection may be kept. A header line is "\r\n", a name
-- (no colon, CR or LF), a colon, blanks and a value up to the next CR or
-- LF; a line that is not one is passed over, and a name holding white
-- space is a bad response. Plain finds (which the JIT compiles), not a
-- pattern per line.
local function parse_head(head)
  local minor, status, rest = match(head, "^HTTP/1%.([01]) (%d%d%d)[^\r\n]*()")
  if not minor then return nil end
  local headers = {}
  local n = #head
  local pos = find(head, "\r\n", rest, true)
  while pos do
    local s = pos + 2
    local nxt = find(head, "\r\n", s, true)
    local stop = nxt and nxt - 1 or n
    local colon = find(head, ":", s, true)
    if colon and colon > s and colon <= stop then
      local name = sub(head, s, colon - 1)
      if not find(name, "\r", 1, true) and not find(name, "\n", 1, true) then
        if find(name, " ", 1, true) or find(name, "\t", 1, true)
            or find(name, "\v", 1, true) or find(name, "\f", 1, true) then
          return nil
        end
        name = lower(name)
        local v = colon + 1
        while v <= stop do
          local c = byte(head, v)
          if c ~= 32 and c ~= 9 then break end
          v = v + 1
        end
        local e = stop
        local cr = find(head, "\r", v, true)
        if cr and cr <= e then e = cr - 1 end
        local lf = find(head, "\n", v, true)
        if lf and lf <= e then e = lf - 1 end
        local value = sub(head, v, e)
        local old = headers[name]
        if old == nil then
          headers[name] = value
        elseif type(old) == "table" then
          old[#old + 1] = value
        else
          headers[name] = { old, value }
        end
      end
    end
    pos = nxt
  end
  return tonumber(status), headers, minor
end

local function first(v)
  if type(v) == "table" then return v[#v] end
  return v
end

local function has_token(v, token)
  if v == nil then return false end
  if type(v) == "table" then v = concat(v, ",") end
  return find("," .. lower(v) .. ",", "[,%s]" .. token .. "[,%s]") ~= nil
end

local function read_chunked(b, sink)
  while true do
    local line, err = read_line(b)
    if not line then return nil, err end
    local hex = match(line, "^(%x+)[ \t]*;?[^\r\n]*$")
    if not hex or #hex > 15 then return nil, "bad_response" end
    local size = tonumber(hex, 16)
    if size == 0 then
      -- Trailers, up to the blank line.
      for _ = 1, 100 do
        local t, e = read_line(b)
        if not t then return nil, e end
        if t == "" then return true end
      end
      return nil, "too_large"
    end
    local ok, e = read_exact(b, size, sink)
    if not ok then return nil, e end
    local crlf, e2 = read_line(b)
    if not crlf then return nil, e2 end
    if crlf ~= "" then return nil, "bad_response" end
  end
end

local function read_to_close(b, sink)
  if b.pos <= #b.data then sink:put(sub(b.data, b.pos)) end
  b.data, b.pos = "", 1
  while true do
    local data, err = b.sock:receiveany(PIECE)
    if data then
      sink:put(data)
    elseif err == "closed" then
      return true
    else
      return nil, reason(err)
    end
  end
end

-- One exchange on one connection. Returns the response table, or nil, a
-- reason and whether nothing at all came back (so a reused connection the
-- server had already closed may be retried on a fresh one).
local function exchange(sock, o, method, bytes, sink)
  local _, err = sock:send(bytes)
  if err then return nil, reason(err), true end
  local b = { sock = sock, data = "", pos = 1 }
  local head, why, nothing = read_head(b)
  if not head then return nil, why, nothing end
  local head_at = clock.now_ms()
  local status, headers, minor = parse_head(head)
  if not status then return nil, "bad_response" end
  local keep = minor == "1" and not has_token(headers.connection, "close")
  sock:settimeout(o.read_timeout)
  local ok, e = true, nil
  local te = headers["transfer-encoding"]
  if method == "HEAD" or status < 200 or status == 204 or status == 304 then
    -- No body, whatever the headers say.
  elseif te ~= nil then
    if not has_token(te, "chunked") then return nil, "bad_response" end
    ok, e = read_chunked(b, sink)
  elseif headers["content-length"] ~= nil then
    local cl = first(headers["content-length"])
    local n = match(cl, "^%s*(%d+)%s*$")
    if not n or #n > 15 then return nil, "bad_response" end
    ok, e = read_exact(b, tonumber(n), sink)
  else
    keep = false
    ok, e = read_to_close(b, sink)
  end
  if not ok then return nil, e end
  -- Bytes past the response: the connection is not in a known state.
  if b.pos <= #b.data then keep = false end
  return { status = status, headers = headers, keep = keep,
           head_at = head_at }
end

-- request(o, method, bytes, sink): o = { host, port, connect_timeout,
-- head_timeout, read_timeout, keepalive_ms (60 s if nil), pool_size } (the
-- candidate's settings, one table for every leg); bytes the whole
-- request; sink:put(piece) takes the body, sink:restart() drops what it
-- got before a retry. Returns { status, headers, head_at } or nil, reason.
function M.request(o, method, bytes, sink)
  for attempt = 1, 2 do
    local sock = ngx.socket.tcp()
    sock:settimeouts(o.connect_timeout, o.head_timeout, o.head_timeout)
    local ok, err = sock:connect(o.host, o.port)
    if not ok then
      if err == "timeout" then return nil, "timeout" end
      return nil, "refused"
    end
    local reused = attempt == 1 and (sock:getreusedtimes() or 0) > 0
    local res, why, nothing = exchange(sock, o, method, bytes, sink)
    if res then
      if res.keep then
        sock:setkeepalive(o.keepalive_ms or 60000, o.pool_size)
      else
        sock:close()
      end
      return res
    end
    sock:close()
    -- A kept connection the server closed while it sat idle: once more on
    -- a new one. Anything else is the candidate's answer.
    if not (reused and nothing and why == "reset") then return nil, why end
    sink:restart()
  end
  return nil, "reset"
end

-- The request bytes: request line, header lines (one string, each line
-- ended by CRLF), and the body with its length.
function M.build(method, target, header_lines, body)
  local len
  if body and #body > 0 then
    len = "content-length: " .. #body .. "\r\n\r\n"
  elseif WITH_BODY[method] then
    len = "content-length: 0\r\n\r\n"
  else
    return method .. " " .. target .. " HTTP/1.1\r\n" .. header_lines
      .. "\r\n"
  end
  return method .. " " .. target .. " HTTP/1.1\r\n" .. header_lines .. len
    .. (body or "")
end

M.parse_head = parse_head

return M
