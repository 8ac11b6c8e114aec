-- Debian's redis-server (7.0) for fleet-store specs: one server, a
-- three-master cluster, a sentinel, TLS and ACL users, each on free
-- loopback ports with a private directory, stopped by pid. Talks to them
-- with redis-cli (so a spec reads back exactly what a client sees).
local process = require "support.process"
local port = require "support.port"
local socket = require "socket"

local M = {}
M.server = "/usr/bin/redis-server"
M.cli = "/usr/bin/redis-cli"

local Redis = {}
Redis.__index = Redis

local function run(argv, timeout)
  local code, out, err = process.run(argv, nil, timeout or 30)
  return code, out, err
end

-- A CA and a server certificate for 127.0.0.1/localhost, made with the
-- openssl CLI in dir; returns { ca =, cert =, key = } paths.
function M.make_tls(dir)
  local function sh(cmd)
    local code, out, err = run({ "sh", "-c", "cd '" .. dir .. "' && " .. cmd },
                               60)
    assert(code == 0, cmd .. ": " .. out .. err)
  end
  sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
     .. "-subj /CN=redis-spec-ca -days 2 2>/dev/null")
  sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.cnf")
  sh("openssl req -newkey rsa:2048 -nodes -keyout redis.key -out redis.csr "
     .. "-subj /CN=localhost 2>/dev/null")
  sh("openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key "
     .. "-CAcreateserial -out redis.crt -days 2 -extfile san.cnf 2>/dev/null")
  return { ca = dir .. "/ca.crt", cert = dir .. "/redis.crt",
           key = dir .. "/redis.key" }
end

-- A free port for a cluster node: its bus listens 10000 above, so the
-- port is at most 55535 and the one 10000 above it is free too.
function M.cluster_port()
  for _ = 1, 200 do
    local p = port.free()
    if p <= 55535 then
      local s = assert(socket.tcp())
      local ok = s:bind("127.0.0.1", p + 10000)
      s:close()
      if ok then return p end
    end
  end
  error("no free port pair for a cluster node")
end

-- start{ password =, users = { "name on >pw ~* &* +@all", ... },
--        tls = true (or a table from make_tls), cluster = true,
--        args = { "--opt", "v", ... }, port = N, sentinel = false }
-- With tls, the server listens only with TLS (port 0 for plain) and
-- .tls has { ca, cert, key }. Returns an instance with .port, .dir,
-- :cli(...), :stop(), :restart().
function M.start(opts)
  opts = opts or {}
  local dir = opts.dir or process.tmpdir("shadow-redis")
  local self = setmetatable({ dir = dir, opts = opts, own_dir = not opts.dir,
                              port = opts.port or (opts.cluster
                                and M.cluster_port() or port.free()) },
                            Redis)
  if opts.tls then
    self.tls = type(opts.tls) == "table" and opts.tls or M.make_tls(dir)
  end
  local lines = {
    "bind 127.0.0.1",
    "protected-mode no",
    "save ''",
    "appendonly no",
    "daemonize no",
    ("dir %s"):format(dir),
    ("pidfile %s/redis.pid"):format(dir),
    ("logfile %s/redis.log"):format(dir),
  }
  if self.tls then
    lines[#lines + 1] = "port 0"
    lines[#lines + 1] = ("tls-port %d"):format(self.port)
    lines[#lines + 1] = ("tls-cert-file %s"):format(self.tls.cert)
    lines[#lines + 1] = ("tls-key-file %s"):format(self.tls.key)
    lines[#lines + 1] = ("tls-ca-cert-file %s"):format(self.tls.ca)
    lines[#lines + 1] = "tls-auth-clients no"
    if opts.cluster then lines[#lines + 1] = "tls-cluster yes" end
  else
    lines[#lines + 1] = ("port %d"):format(self.port)
  end
  if opts.password then
    lines[#lines + 1] = ("requirepass %s"):format(opts.password)
    if opts.cluster then
      lines[#lines + 1] = ("masterauth %s"):format(opts.password)
    end
  end
  for _, u in ipairs(opts.users or {}) do
    lines[#lines + 1] = "user " .. u
  end
  if opts.cluster then
    lines[#lines + 1] = "cluster-enabled yes"
    lines[#lines + 1] = ("cluster-config-file %s/nodes.conf"):format(dir)
    lines[#lines + 1] = "cluster-node-timeout 2000"
  end
  if opts.sentinel then
    -- A sentinel watching opts.sentinel.master at addr:port.
    local s = opts.sentinel
    lines = {
      "bind 127.0.0.1", "protected-mode no", "daemonize no",
      ("port %d"):format(self.port), ("dir %s"):format(dir),
      ("logfile %s/sentinel.log"):format(dir),
      ("sentinel monitor %s 127.0.0.1 %d 1"):format(s.name, s.port),
      ("sentinel down-after-milliseconds %s 1000"):format(s.name),
      ("sentinel failover-timeout %s 3000"):format(s.name),
    }
  end
  self.conf = dir .. (opts.sentinel and "/sentinel.conf" or "/redis.conf")
  process.write_file(self.conf, table.concat(lines, "\n") .. "\n")
  self:_spawn()
  return self
end

function Redis:_spawn()
  local argv = { M.server, self.conf }
  if self.opts.sentinel then argv[#argv + 1] = "--sentinel" end
  for _, a in ipairs(self.opts.args or {}) do argv[#argv + 1] = a end
  self.proc = process.spawn(argv, { stdout = self.dir .. "/stdout",
                                    stderr = self.dir .. "/stderr" })
  local ok, err = port.wait(self.port, 10, self.proc)
  if not ok then
    local log = process.read_file(self.dir .. "/redis.log") or ""
    self:stop()
    error("redis-server: " .. err .. "\nredis.log:\n" .. log, 3)
  end
  -- The port accepts before the server loaded; PING until it answers.
  local answered = port.wait_until(function()
    local code, out = self:cli_raw({ "PING" })
    return code == 0 and out:match("PONG")
  end, 10)
  if not answered then
    self:stop()
    error("redis-server on port " .. self.port .. " never answered PING", 3)
  end
end

-- redis-cli's arguments to reach this server (TLS, auth).
function Redis:cli_args(extra)
  local argv = { M.cli, "-h", "127.0.0.1", "-p", tostring(self.port) }
  if self.tls then
    for _, a in ipairs({ "--tls", "--cacert", self.tls.ca }) do
      argv[#argv + 1] = a
    end
  end
  if self.opts.password then
    for _, a in ipairs({ "--no-auth-warning", "-a", self.opts.password }) do
      argv[#argv + 1] = a
    end
  end
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  return argv
end

-- Runs redis-cli with args (a list); returns code, stdout, stderr.
function Redis:cli_raw(args, timeout)
  return run(self:cli_args(args), timeout)
end

-- Runs one command (its words as arguments); returns stdout, or errors.
function Redis:cli(...)
  local code, out, err = self:cli_raw({ ... })
  assert(code == 0, ("redis-cli %s: %s%s"):format(table.concat({ ... }, " "),
                                                 out, err))
  return out
end

-- One command with --raw output split into lines.
function Redis:lines(...)
  local out = self:cli("--raw", ...)
  local t = {}
  for line in out:gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

-- HGETALL key as a Lua table (in a cluster: -c follows MOVED).
function Redis:hgetall(key)
  local l = self:lines("-c", "HGETALL", key)
  local t = {}
  for i = 1, #l - 1, 2 do t[l[i]] = l[i + 1] end
  return t
end

-- INFO commandstats as { cmd = calls }.
function Redis:commandstats()
  local t = {}
  for cmd, calls in self:cli("INFO", "commandstats")
      :gmatch("cmdstat_([%w|_]+):calls=(%d+)") do
    t[cmd] = tonumber(calls)
  end
  return t
end

-- Total commands processed (INFO stats).
function Redis:commands_processed()
  return tonumber(self:cli("INFO", "stats")
                    :match("total_commands_processed:(%d+)"))
end

function Redis:running()
  return self.proc and self.proc:running()
end

-- Stops the server (SIGTERM, then SIGKILL); the directory stays so
-- :restart() brings it back on the same port.
function Redis:kill()
  if self.proc then self.proc:stop(5, process.SIGTERM) end
end

function Redis:restart()
  self:kill()
  self:_spawn()
end

function Redis:stop()
  if self.stopped then return end
  self.stopped = true
  self:kill()
  if self.own_dir then process.rmdir(self.dir) end
end

-- A cluster of n (default 3) masters made with redis-cli --cluster
-- create; opts as start's (password, tls, users, args). Returns { nodes = {..},
-- port = the first node's port, :stop(), :cli(...) on the first node }.
function M.cluster(opts)
  opts = opts or {}
  local n = opts.masters or 3
  local dir = process.tmpdir("shadow-redis-cluster")
  local tls = opts.tls and M.make_tls(dir) or nil
  local nodes = {}
  local ok, err = pcall(function()
    for i = 1, n do
      local sub = dir .. "/n" .. i
      os.execute("mkdir -p '" .. sub .. "'")
      local o = { cluster = true, dir = sub, tls = tls, args = opts.args,
                  password = opts.password, users = opts.users }
      nodes[i] = M.start(o)
    end
    local args = { "--cluster", "create" }
    for i = 1, n do args[#args + 1] = "127.0.0.1:" .. nodes[i].port end
    args[#args + 1] = "--cluster-yes"
    local code, out, e = nodes[1]:cli_raw(args, 60)
    assert(code == 0, "cluster create: " .. out .. e)
    -- Wait until every node says the cluster is ok.
    for i = 1, n do
      assert(port.wait_until(function()
        local c, o = nodes[i]:cli_raw({ "CLUSTER", "INFO" })
        return c == 0 and o:match("cluster_state:ok")
      end, 20), "cluster never became ok")
    end
  end)
  local c = { nodes = nodes, dir = dir, tls = tls, opts = opts,
              port = nodes[1] and nodes[1].port }
  function c:stop()
    for _, node in ipairs(self.nodes) do node:stop() end
    process.rmdir(self.dir)
  end
  function c.cli(_, ...) return nodes[1]:cli("-c", ...) end
  function c.hgetall(_, key) return nodes[1]:hgetall(key) end
  -- The node that holds key's slot.
  function c:node_for(key)
    local slot = tonumber(nodes[1]:cli("CLUSTER", "KEYSLOT", key):match("%d+"))
    for _, node in ipairs(self.nodes) do
      local code, out = node:cli_raw({ "CLUSTER", "COUNTKEYSINSLOT",
                                       tostring(slot) })
      if code == 0 and tonumber(out:match("%d+") or "0") > 0 then
        return node
      end
    end
  end
  if not ok then
    c:stop()
    error(err, 2)
  end
  return c
end

-- A sentinel watching master (a started instance) under name; returns
-- the sentinel's instance (.port).
function M.sentinel(master, name)
  local s = M.start({ sentinel = { name = name or "mymaster",
                                   port = master.port } })
  -- Wait until it knows the master.
  assert(port.wait_until(function()
    local code, out = s:cli_raw({ "SENTINEL", "get-master-addr-by-name",
                                  name or "mymaster" })
    return code == 0 and out:match(tostring(master.port))
  end, 10), "sentinel never learned the master")
  return s
end

-- Waits until fn() is truthy (a poll on redis state), or errors.
function M.wait(fn, timeout, what)
  local deadline = socket.gettime() + (timeout or 10)
  while true do
    local v = fn()
    if v then return v end
    if socket.gettime() > deadline then
      error("timed out waiting for " .. (what or "redis"), 2)
    end
    socket.sleep(0.05)
  end
end

return M
