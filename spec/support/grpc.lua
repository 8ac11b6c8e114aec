-- Real gRPC peers for specs: Debian's python3-grpcio server and client in
-- spec/support/grpc/, over the shadowtest.Users service (users.proto).
--   local g = grpc.build()           -- protoc: descriptor set + users_pb2
--   local srv = grpc.server(g, { variant = "name", gzip = true })
--   local code, res = grpc.call(g, "127.0.0.1:" .. srv.port, "get", { id = 7 })
--   srv:stop(); g:remove()
-- Everything is made at test time in a temp dir; servers are stopped by pid.
local process = require "support.process"
local port = require "support.port"
local json = require "support.json"
local socket = require "socket"

local M = {}

M.dir = "spec/support/grpc"
-- Debian's python3 carries python3-grpcio and python3-protobuf; a python3
-- first on PATH may be another one without them.
M.python = "/usr/bin/python3"

-- true, or nil and why these peers cannot run here.
function M.available()
  local code = process.run({ "sh", "-c", "command -v protoc >/dev/null" })
  if code ~= 0 then return nil, "protoc is missing (protobuf-compiler)" end
  code = process.run({ M.python, "-c", "import grpc, google.protobuf" })
  if code ~= 0 then
    return nil, M.python .. " cannot import grpc (python3-grpcio)"
  end
  return true
end

local Build = {}
Build.__index = Build

-- Compiles users.proto into a fresh temp dir: `descriptors` (a descriptor
-- set with its imports, for `grpc = { descriptors = ... }`) and the Python
-- message classes the server and client import. :remove() deletes it.
function M.build()
  local dir = process.tmpdir("shadow-grpc")
  local code, out, err = process.run({ "protoc", "-I" .. M.dir,
    "--python_out=" .. dir, "--descriptor_set_out=" .. dir .. "/api.pb",
    "--include_imports", "users.proto" })
  if code ~= 0 then
    process.rmdir(dir)
    error("protoc failed: " .. out .. err, 2)
  end
  return setmetatable({ dir = dir, descriptors = dir .. "/api.pb",
                        proto = M.dir .. "/users.proto" }, Build)
end

function Build:remove() process.rmdir(self.dir) end
Build.stop = Build.remove

local Server = {}
Server.__index = Server

-- Starts server.py; opts: port (default: the kernel's choice, read back
-- from its READY line), variant, variant_at, gzip, label. Returns a server
-- with .port, .target ("127.0.0.1:N"), .url ("h2c://127.0.0.1:N"),
-- :calls(), :wait_calls(n, rpc), :stop().
function M.server(build, opts)
  opts = opts or {}
  local dir = process.tmpdir("shadow-grpcsrv")
  local argv = { M.python, M.dir .. "/server.py", "--pb-dir", build.dir,
                 "--port", tostring(opts.port or 0),
                 "--label", opts.label or "server" }
  if opts.variant then
    argv[#argv + 1] = "--variant"
    argv[#argv + 1] = opts.variant
  end
  if opts.variant_at then
    argv[#argv + 1] = "--variant-at"
    argv[#argv + 1] = tostring(opts.variant_at)
  end
  if opts.gzip then argv[#argv + 1] = "--gzip" end
  local proc = process.spawn(argv, { stdout = dir .. "/out",
                                     stderr = dir .. "/err" })
  local self = setmetatable({ proc = proc, dir = dir }, Server)
  local deadline = socket.gettime() + 15
  while not self.port do
    local first = (process.read_lines(dir .. "/out"))[1]
    local p = first and first:match("^READY (%d+)")
    if p then
      self.port = tonumber(p)
    elseif not proc:running() or socket.gettime() > deadline then
      local why = proc:output()
      self:stop()
      error("grpc server did not start: " .. why, 2)
    else
      socket.sleep(0.02)
    end
  end
  assert(port.wait(self.port, 10, proc))
  self.target = "127.0.0.1:" .. self.port
  self.url = "h2c://" .. self.target
  return self
end

-- Every call the server logged so far: { rpc = "/shadowtest.Users/Get",
-- label =, metadata = { ... }, time_remaining = seconds of the call's
-- deadline left when it arrived, or json.null }, oldest first.
function Server:calls()
  local out = {}
  for i, line in ipairs(process.read_lines(self.dir .. "/out")) do
    if i > 1 then out[#out + 1] = json.decode(line) end
  end
  return out
end

-- Waits until the server logged n calls (of rpc, a full path, when given);
-- returns the matching calls it has by then.
function Server:wait_calls(n, rpc, timeout)
  local deadline = socket.gettime() + (timeout or 10)
  while true do
    local got = {}
    for _, c in ipairs(self:calls()) do
      if not rpc or c.rpc == rpc then got[#got + 1] = c end
    end
    if #got >= n or socket.gettime() > deadline then return got end
    socket.sleep(0.02)
  end
end

function Server:output() return self.proc:output() end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  self.proc:stop(5)
  process.rmdir(self.dir)
end

-- Runs client.py: call is "get", "list", "fail", "slow" or "import" (a
-- client stream of count users, each with pad bytes of bio); opts: id,
-- count, code, message, delay_ms, timeout (seconds), gzip, repeat, pad,
-- metadata = { "k=v", ... }. Returns the exit code (the last call's
-- grpc status number; 100 bad usage), the last call's result ({ code =
-- "OK", status = 0, details =, messages = { ... }, trailers = { ... } }),
-- every result, and the raw stdout..stderr.
function M.call(build, target, call, opts)
  opts = opts or {}
  local argv = { M.python, M.dir .. "/client.py", "--pb-dir", build.dir,
                 "--target", target, call }
  local function opt(flag, v)
    if v ~= nil then
      argv[#argv + 1] = flag
      argv[#argv + 1] = tostring(v)
    end
  end
  opt("--id", opts.id)
  opt("--count", opts.count)
  opt("--code", opts.code)
  opt("--message", opts.message)
  opt("--delay-ms", opts.delay_ms)
  opt("--timeout", opts.timeout)
  opt("--repeat", opts["repeat"])
  opt("--pad", opts.pad)
  for _, kv in ipairs(opts.metadata or {}) do opt("--metadata", kv) end
  if opts.gzip then argv[#argv + 1] = "--gzip" end
  local code, out, err = process.run(argv, nil, opts.wait or 60)
  local results = {}
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then results[#results + 1] = json.decode(line) end
  end
  return code, results[#results], results, out .. err
end

-- One length-prefixed gRPC message, written to path: a GetUserRequest
-- (opts.id, opts.pad bytes of padding) or, with opts.user = N, a User
-- reply with opts.bio bytes of padding. For h2load -d, curl
-- --data-binary and canned backends.
function M.frame(build, path, opts)
  opts = opts or {}
  local cmd = { M.python, M.dir .. "/client.py", "--pb-dir", build.dir,
                "frame" }
  for _, k in ipairs({ "id", "pad", "user", "bio" }) do
    if opts[k] then
      cmd[#cmd + 1] = "--" .. k
      cmd[#cmd + 1] = tostring(opts[k])
    end
  end
  local code, out, err = process.run(cmd)
  assert(code == 0, "client.py frame: " .. err)
  process.write_file(path, out)
  return out
end

-- nghttpx (Debian nghttp2-proxy) as a second real gRPC proxy: h2c in on a
-- free port, h2c out to backend_port; one process (--single-process), no
-- config file, logs in its temp dir. Returns { port, target, proc, stop }.
M.nghttpx_binary = "/usr/sbin/nghttpx"

function M.nghttpx(backend_port)
  local dir = process.tmpdir("shadow-nghttpx")
  local p = port.free()
  local proc = process.spawn({ M.nghttpx_binary, "--conf=/dev/null",
    ("--frontend=127.0.0.1,%d;no-tls"):format(p),
    ("--backend=127.0.0.1,%d;;proto=h2"):format(backend_port),
    "--single-process", "--workers=1",
    "--accesslog-file=" .. dir .. "/access.log",
    "--errorlog-file=" .. dir .. "/error.log",
    "--pid-file=" .. dir .. "/nghttpx.pid" },
    { stdout = dir .. "/out", stderr = dir .. "/err" })
  local self = { port = p, target = "127.0.0.1:" .. p, proc = proc,
                 dir = dir }
  function self.stop()
    proc:stop(5)
    process.rmdir(dir)
  end
  local ok, err = port.wait(p, 10, proc)
  if not ok then
    local log = process.read_file(dir .. "/error.log") or ""
    self.stop()
    error("nghttpx: " .. err .. "\nerror.log:\n" .. log, 2)
  end
  return self
end

-- An nginx server body that proxies gRPC: h2c in on listen_port (a second
-- listen, since support.nginx's own listen is HTTP/1.1), grpc_pass to
-- backend_port. Give it to nginx.start{ servers = { name = ... } } and
-- wait for listen_port.
function M.nginx_grpc_pass(listen_port, backend_port)
  return ("    listen 127.0.0.1:%d http2;\n"
    .. "    location / { grpc_pass grpc://127.0.0.1:%d; }")
    :format(listen_port, backend_port)
end

return M
