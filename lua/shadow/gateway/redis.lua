-- A small Redis client on nginx cosockets, for the gateway's fleet store
-- (Debian packages no lua-resty-redis): RESP2 requests and replies,
-- pipelining (every command of a batch written at once, the replies read
-- in order), AUTH (a password, or an ACL user and its password), SELECT,
-- TLS (sslhandshake, verified unless verify = false), keep-alive
-- connections per worker (setkeepalive), and Redis Cluster's redirects:
-- a MOVED reply moves the client to the node it names, for this batch and
-- the next ones; an ASK reply sends the batch once to the node it names,
-- behind ASKING. A batch is meant to be one MULTI ... EXEC transaction on
-- keys of one hash slot, so a redirect resends it whole and it is applied
-- once or not at all.
--
-- Failures come back as nil and a reason for
-- shadow_store_errors_total{reason}: connect, timeout, closed, tls, auth,
-- protocol, reply (Redis answered an error), redirect (too many).
local ngx = ngx

local char, concat, find, getmetatable, gsub, ipairs, match, setmetatable,
  sub, tonumber, tostring, type = string.char, table.concat, string.find,
  getmetatable, string.gsub, ipairs, string.match, setmetatable, string.sub,
  tonumber, tostring, type

local M = {}
local Client = {}
Client.__index = Client

-- Redirects followed for one batch: a cluster being resharded answers
-- MOVED once per slot move, so a few are plenty; a loop is an error.
local MAX_REDIRECTS = 5
-- The largest bulk reply read (a stream entry, an exemplar, HGETALL of a
-- big hash is many bulks, each bounded on its own).
local BULK_MAX = 64 * 1024 * 1024

-- A reply that is a Redis error: { err = "ERR ..." }.
local ErrMT = {}
local function is_err(v)
  return type(v) == "table" and getmetatable(v) == ErrMT
end
M.is_err = is_err

-- The RESP encoding of one command (a list of strings and numbers), or a
-- command already encoded (a string, e.g. M.raw's).
local function encode(cmd, out, n)
  if type(cmd) == "string" then
    out[n + 1] = cmd
    return n + 1
  end
  n = n + 1
  out[n] = "*" .. #cmd .. "\r\n"
  for i = 1, #cmd do
    local a = cmd[i]
    if type(a) ~= "string" then a = tostring(a) end
    out[n + 1], out[n + 2], out[n + 3] = "$" .. #a .. "\r\n", a, "\r\n"
    n = n + 3
  end
  return n
end
M.encode = function(cmds)
  local out, n = {}, 0
  for i = 1, #cmds do n = encode(cmds[i], out, n) end
  return concat(out, "", 1, n)
end

local function sock_reason(err)
  if err == "timeout" then return "timeout" end
  return "closed"
end

-- Replies are read through a buffer refilled with receiveany, so a
-- pipeline's thousand short replies cost a few reads, not a thousand.
-- b = { sock, data, pos }: data[pos..] is not consumed yet.
local PIECE = 65536
local LINE_MAX = 65536

local function reader(sock)
  return { sock = sock, data = "", pos = 1 }
end

local function fill(b)
  local d, err = b.sock:receiveany(PIECE)
  if not d then return nil, err end
  if b.pos > #b.data then
    b.data, b.pos = d, 1
  else
    b.data, b.pos = sub(b.data, b.pos) .. d, 1
  end
  return true
end

local function read_line(b)
  while true do
    local e = find(b.data, "\r\n", b.pos, true)
    if e then
      local l = sub(b.data, b.pos, e - 1)
      b.pos = e + 2
      return l
    end
    if #b.data - b.pos > LINE_MAX then return nil, "protocol" end
    local ok, err = fill(b)
    if not ok then return nil, sock_reason(err) end
  end
end

-- n bytes and their CRLF: from the buffer, the rest read at once.
local function read_bytes(b, n)
  local pos = b.pos
  if #b.data - pos + 1 >= n + 2 then
    b.pos = pos + n + 2
    return sub(b.data, pos, pos + n - 1)
  end
  local head = sub(b.data, pos)
  b.data, b.pos = "", 1
  local rest, err = b.sock:receive(n + 2 - #head)
  if not rest then return nil, sock_reason(err) end
  return sub(head .. rest, 1, n)
end

-- Reads one reply: a string, a number, nil (a null bulk or array), a list,
-- or { err = text } (ErrMT). nil, false, reason on a socket or protocol
-- failure. Arrays nest (EXEC's replies hold HGETALL's): the open ones are
-- kept on a stack of their own, not in recursive calls, which LuaJIT's
-- recorder cannot follow down without restarting the trace; and a reply
-- nested past MAX_DEPTH is refused rather than followed.
local MAX_DEPTH = 16

local function read_reply(b)
  local open, depth = nil, 0 -- open[d] = { list, count wanted }
  while true do
    local line, err = read_line(b)
    if not line then return nil, false, err end
    local t, rest = sub(line, 1, 1), sub(line, 2)
    local v, complete = nil, true
    if t == "+" then
      v = rest
    elseif t == "-" then
      v = setmetatable({ err = rest }, ErrMT)
    elseif t == ":" then
      v = tonumber(rest)
      if not v then return nil, false, "protocol" end
    elseif t == "$" then
      local n = tonumber(rest)
      if not n or n > BULK_MAX then return nil, false, "protocol" end
      if n >= 0 then
        local data, e = read_bytes(b, n)
        if not data then return nil, false, e end
        v = data
      end
    elseif t == "*" then
      local n = tonumber(rest)
      if not n then return nil, false, "protocol" end
      if n == 0 then
        v = {}
      elseif n > 0 then
        if depth == MAX_DEPTH then return nil, false, "protocol" end
        depth = depth + 1
        open = open or {}
        open[depth] = { {}, n }
        complete = false
      end
    else
      return nil, false, "protocol"
    end
    -- A complete value goes into the array it belongs to; an array it
    -- fills is complete in turn.
    while complete do
      if depth == 0 then return v, true end
      local a = open[depth]
      local list = a[1]
      list[#list + 1] = v == nil and ngx.null or v
      if #list < a[2] then break end
      v = list
      open[depth] = nil
      depth = depth - 1
    end
  end
end

-- Parses redis://[user[:password]@]host[:port][/db] and rediss://...
-- Returns { tls, host, port, user, password, db } or nil, message.
function M.parse_url(url)
  if type(url) ~= "string" then return nil, "url must be a string" end
  local scheme, rest = match(url, "^(rediss?)://(.*)$")
  if not scheme then
    return nil, ("%q: expected redis://[user:password@]host[:port][/db] or "
      .. "rediss://..."):format(url)
  end
  local u = { tls = scheme == "rediss", port = 6379, db = 0 }
  local auth, hostpart = match(rest, "^(.*)@([^@]*)$")
  if not auth then hostpart = rest end
  if auth then
    -- %xx escapes, as in any URL's user information.
    local function unescape(v)
      return (gsub(v, "%%(%x%x)", function(h)
        return char(tonumber(h, 16))
      end))
    end
    local user, pw = match(auth, "^([^:]*):(.*)$")
    if user then
      u.user = user ~= "" and unescape(user) or nil
      u.password = unescape(pw)
    else
      u.user = auth ~= "" and unescape(auth) or nil
    end
  end
  local authority, db = match(hostpart, "^([^/]*)/?(.*)$")
  local host, port
  if sub(authority, 1, 1) == "[" then
    host, port = match(authority, "^%[([%x:%.]+)%]:?(%d*)$")
  else
    host, port = match(authority, "^([%w%.%-_]+):?(%d*)$")
  end
  if not host then
    return nil, ("%q: expected a host after %s://"):format(url, scheme)
  end
  u.host = host
  if port ~= "" then
    u.port = tonumber(port)
    if u.port < 1 or u.port > 65535 then
      return nil, ("%q: port out of range"):format(url)
    end
  end
  if db ~= "" then
    u.db = tonumber(match(db, "^%d+$") or "")
    if not u.db then
      return nil, ("%q: the database must be a number"):format(url)
    end
  end
  return u
end

-- cfg: { host, port, tls = { verify, server_name } or nil, user, password,
-- db, connect_timeout, timeout (ms), pool_size }.
function M.new(cfg)
  return setmetatable({ cfg = cfg, host = cfg.host, port = cfg.port,
                        redirected = false }, Client)
end

-- A connected socket to host:port, authenticated and on the database.
-- A connection from the keep-alive pool was set up when it was made.
local function connect(self, host, port)
  local cfg = self.cfg
  local sock = ngx.socket.tcp()
  sock:settimeouts(cfg.connect_timeout, cfg.timeout, cfg.timeout)
  local pool = ("shadow-redis:%s:%d:%d:%s"):format(host, port, cfg.db,
                                                   cfg.user or "")
  local ok, err = sock:connect(host, port, { pool = pool,
                                             pool_size = cfg.pool_size })
  if not ok then
    return nil, err == "timeout" and "timeout" or "connect", err
  end
  if sock:getreusedtimes() > 0 then return sock end
  if cfg.tls then
    -- nginx checks a certificate against a host name only: an address
    -- is checked for its chain alone, unless tls.server_name names it.
    local name = cfg.tls.server_name
    if name == nil and not match(host, "^[%d.]+$") and not match(host, ":")
    then
      name = host
    end
    local sess
    sess, err = sock:sslhandshake(false, name, cfg.tls.verify ~= false)
    if not sess then
      sock:close()
      return nil, err == "timeout" and "timeout" or "tls", err
    end
  end
  local setup = {}
  if cfg.password then
    setup[#setup + 1] = cfg.user and { "AUTH", cfg.user, cfg.password }
      or { "AUTH", cfg.password }
  end
  -- A cluster has only database 0 and refuses SELECT.
  if cfg.db ~= 0 then setup[#setup + 1] = { "SELECT", cfg.db } end
  if #setup > 0 then
    local _, e = sock:send(M.encode(setup))
    if e then
      sock:close()
      return nil, sock_reason(e), e
    end
    local b = reader(sock)
    for i = 1, #setup do
      local v, fine, why = read_reply(b)
      if not fine then
        sock:close()
        return nil, why, why
      end
      if is_err(v) then
        sock:close()
        return nil, i == 1 and cfg.password and "auth" or "reply", v.err
      end
    end
  end
  return sock
end

-- Sends the commands to host:port as one write and reads their replies.
-- Returns the list of replies, or nil, reason, detail.
local function run(self, host, port, cmds, asking)
  local sock, why, detail = connect(self, host, port)
  if not sock then return nil, why, detail end
  -- ASKING holds for the next command only, except that a transaction
  -- keeps it from MULTI to EXEC: one before a MULTI, else one before
  -- each command.
  local sent = cmds
  if asking then
    sent = {}
    if cmds[1][1] == "MULTI" then
      sent[1] = { "ASKING" }
      for i = 1, #cmds do sent[i + 1] = cmds[i] end
    else
      for i = 1, #cmds do
        sent[2 * i - 1], sent[2 * i] = { "ASKING" }, cmds[i]
      end
    end
  end
  local _, err = sock:send(M.encode(sent))
  if err then
    sock:close()
    return nil, sock_reason(err), err
  end
  local replies, n = {}, 0
  local b = reader(sock)
  for i = 1, #sent do
    local v, fine, w = read_reply(b)
    if not fine then
      sock:close()
      return nil, w, w
    end
    if sent[i][1] == "ASKING" then
      if is_err(v) then
        sock:close()
        return nil, "reply", v.err
      end
    else
      -- A null reply is nil: count, do not append.
      n = n + 1
      replies[n] = v
    end
  end
  sock:setkeepalive(60000, self.cfg.pool_size)
  return replies, n
end

-- The node a MOVED or ASK error names: kind, host, port.
local function redirect_of(v)
  if not is_err(v) then return nil end
  local kind, host, port = match(v.err, "^(%u+) %d+ (.*):(%d+)$")
  if kind ~= "MOVED" and kind ~= "ASK" then return nil end
  -- An empty host means "the address you reached me on" (Redis 7).
  if host == "" then host = nil end
  return kind, host, tonumber(port)
end

-- With sentinels: asks each in turn where the master named is, and
-- moves the client there. true, or nil, "sentinel", detail.
local function locate(self)
  local sn = self.cfg.sentinel
  local last
  for _, a in ipairs(sn.addrs) do
    local sock = ngx.socket.tcp()
    sock:settimeouts(self.cfg.connect_timeout, self.cfg.timeout,
                     self.cfg.timeout)
    local ok, err = sock:connect(a.host, a.port)
    if ok then
      ok, err = sock:send(M.encode({ { "SENTINEL", "get-master-addr-by-name",
                                       sn.master } }))
    end
    if ok then
      local v, fine, why = read_reply(reader(sock))
      if fine and type(v) == "table" and tonumber(v[2]) then
        sock:close()
        self.host, self.port, self.located = v[1], tonumber(v[2]), true
        return true
      end
      err = fine and ("it does not know " .. sn.master) or why
    end
    sock:close()
    last = ("%s:%d: %s"):format(a.host, a.port, tostring(err))
  end
  return nil, "sentinel", last
end

-- Runs a batch and follows redirects: a MOVED in any reply moves the
-- client and resends the batch; an ASK resends it once to the node named,
-- behind ASKING. With sentinels, the master is looked up first, and again
-- after any failure to reach it. Returns the replies of the last run, or
-- nil, reason, detail.
function Client:pipeline(cmds)
  if self.cfg.sentinel and not self.located then
    local ok, why, detail = locate(self)
    if not ok then return nil, why, detail end
  end
  local replies, why, detail = self:send_batch(cmds)
  if self.cfg.sentinel then
    -- The master may have moved (unreachable, or a replica now): ask
    -- again next time.
    if not replies and why ~= "reply" then self.located = false end
    for i = 1, replies and #cmds or 0 do
      local v = replies[i]
      if is_err(v) and v.err:find("READONLY", 1, true) then
        self.located = false
        break
      end
    end
  end
  return replies, why, detail
end

function Client:send_batch(cmds)
  local host, port, asking = self.host, self.port, false
  for _ = 0, MAX_REDIRECTS do
    local replies, why, detail = run(self, host, port, cmds, asking)
    if not replies then return nil, why, detail end
    local kind, h, p
    for i = 1, #cmds do
      kind, h, p = redirect_of(replies[i])
      if kind then break end
    end
    if not kind then return replies end
    h = h or host
    if kind == "MOVED" then
      self.host, self.port, self.redirected = h, p, true
      host, port, asking = h, p, false
    else
      host, port, asking = h, p, true
    end
  end
  return nil, "redirect", "too many MOVED/ASK redirects"
end

-- One command; its reply (a Redis error as nil, "reply", text).
function Client:call(...)
  local replies, why, detail = self:pipeline({ { ... } })
  if not replies then return nil, why, detail end
  local v = replies[1]
  if is_err(v) then return nil, "reply", v.err end
  return v
end

-- Splits "host:port" when a caller needs to.
function M.addr(s)
  local h, p = match(s or "", "^(.+):(%d+)$")
  return h, tonumber(p)
end

M.read_reply = read_reply
M.reader = reader

-- The RESP encoding of a bulk string, for callers that build a command
-- themselves (a pipeline's thousand XADDs, without a table each).
function M.bulk(s)
  return "$" .. #s .. "\r\n" .. s .. "\r\n"
end

return M
