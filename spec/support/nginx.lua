-- Debian's nginx with the Lua module as a real backend for specs: one
-- single-process nginx (so stopping its pid stops all of it) serving
-- named servers on free loopback ports, each with a JSON access log.
local process = require "support.process"
local port = require "support.port"
local json = require "support.json"
local socket = require "socket"

local M = {}
local Nginx = {}
Nginx.__index = Nginx

M.binary = "/usr/sbin/nginx"
M.modules = "/usr/lib/nginx/modules"

-- What a backend saw of each request, one JSON object a line. The
-- body is there only when a handler read it (ngx.req.read_body()).
local LOG_FORMAT = [[
  log_format spec escape=json '{"key":"$http_x_user_id",'
    '"shadow":"$http_x_shadow_request","method":"$request_method",'
    '"uri":"$request_uri","body":"$request_body",'
    '"content_type":"$http_content_type","status":"$status",'
    '"bytes":"$body_bytes_sent","completion":"$request_completion",'
    '"request_length":"$request_length","reused":"$ssl_session_reused",'
    '"ssl_protocol":"$ssl_protocol","connection":"$connection",'
    '"protocol":"$server_protocol"}';
]]

local function render(dir, servers, ports, http_extra, tls, addr, listen)
  local parts = {
    ("load_module %s/ndk_http_module.so;"):format(M.modules),
    ("load_module %s/ngx_http_lua_module.so;"):format(M.modules),
    "master_process off;",
    "daemon off;",
    ("pid %s/nginx.pid;"):format(dir),
    ("error_log %s/error.log info;"):format(dir),
    "events { worker_connections 1024; }",
    "http {",
    LOG_FORMAT,
    ("  client_body_temp_path %s/body;"):format(dir),
    ("  proxy_temp_path %s/proxy;"):format(dir),
    ("  fastcgi_temp_path %s/fastcgi;"):format(dir),
    ("  uwsgi_temp_path %s/uwsgi;"):format(dir),
    ("  scgi_temp_path %s/scgi;"):format(dir),
    -- Whole bodies in memory, so $request_body logs them.
    "  client_body_buffer_size 1m;",
    "  client_max_body_size 64m;",
    "  keepalive_requests 100000;",
    "  lua_code_cache on;",
    http_extra or "",
  }
  for name, body in pairs(servers) do
    local t = tls and tls[name]
    local ssl = t and ("    ssl_certificate %s;\n    ssl_certificate_key %s;\n"
      .. "%s"):format(t.cert, t.key, t.extra or "") or ""
    local flags = (t and " ssl" or "") .. (listen and listen[name] or "")
    parts[#parts + 1] = ("  server {\n    listen %s:%d%s;\n"
      .. "    access_log %s/%s.access.log spec;\n%s%s\n  }")
      :format(addr, ports[name], flags, dir, name, ssl, body)
  end
  parts[#parts + 1] = "}"
  return table.concat(parts, "\n") .. "\n"
end

-- start{ servers = { name = "location ... { ... }", ... }, http = "...",
--        tls = { name = { cert = path, key = path, extra = "..." } } }: a
-- name in tls listens with TLS, with that certificate. listen = { name =
-- " http2" } adds to that server's listen line (h2c with prior knowledge,
-- or h2 by ALPN beside ssl). addr = "127.0.0.2"
-- listens on another loopback address (default 127.0.0.1); ports = { name
-- = N } takes port N instead of a free one (the same port on two
-- addresses).
-- Returns an instance with .ports[name], :url(name), :requests(name),
-- :wait_requests(name, n), :stop().
function M.start(opts)
  local dir = process.tmpdir("shadow-nginx")
  local ports = {}
  local addr = opts.addr or "127.0.0.1"
  for name in pairs(opts.servers) do
    ports[name] = opts.ports and opts.ports[name] or port.free()
  end
  local conf = dir .. "/nginx.conf"
  process.write_file(conf, render(dir, opts.servers, ports, opts.http,
                                  opts.tls, addr, opts.listen))
  local proc = process.spawn({ M.binary, "-p", dir .. "/", "-c", conf,
                               "-e", dir .. "/error.log" },
                             { stdout = dir .. "/stdout",
                               stderr = dir .. "/stderr" })
  local self = setmetatable({ dir = dir, ports = ports, proc = proc,
                              addr = addr }, Nginx)
  for name, p in pairs(ports) do
    local ok, err = port.wait(p, 10, proc, addr)
    if not ok then
      local log = process.read_file(dir .. "/error.log") or ""
      self:stop()
      error(("nginx server %q: %s\nerror.log:\n%s"):format(name, err, log), 2)
    end
  end
  return self
end

function Nginx:url(name)
  return ("http://%s:%d"):format(self.addr, assert(self.ports[name], name))
end

-- Every request the named server logged so far, oldest first.
function Nginx:requests(name)
  return json.decode_lines(process.read_file(
    ("%s/%s.access.log"):format(self.dir, name)))
end

-- Waits until the named server logged at least n requests (nginx logs
-- after the response is sent, so a reply seen is not yet a line).
function Nginx:wait_requests(name, n, timeout)
  local deadline = socket.gettime() + (timeout or 10)
  while true do
    local reqs = self:requests(name)
    if #reqs >= n then return reqs end
    if socket.gettime() > deadline then return reqs end
    socket.sleep(0.02)
  end
end

-- The logged requests for uri (the request target, query included).
function Nginx:requests_for(name, uri)
  local out = {}
  for _, r in ipairs(self:requests(name)) do
    if r.uri == uri then out[#out + 1] = r end
  end
  return out
end

-- Waits until the named server logged n (default 1) requests for uri;
-- returns those it has by then. Lines of other requests may land in any
-- order, so specs look requests up by uri, not by position.
function Nginx:wait_uri(name, uri, n, timeout)
  local deadline = socket.gettime() + (timeout or 10)
  while true do
    local reqs = self:requests_for(name, uri)
    if #reqs >= (n or 1) or socket.gettime() > deadline then return reqs end
    socket.sleep(0.02)
  end
end

function Nginx:error_log()
  return process.read_file(self.dir .. "/error.log") or ""
end

function Nginx:stop()
  if self.stopped then return end
  self.stopped = true
  self.proc:stop(5, process.SIGTERM)
  process.rmdir(self.dir)
end

return M
