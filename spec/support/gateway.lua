-- Debian's nginx running examples/nginx/nginx.conf, for the gateway specs:
-- the example's ports become free loopback ports, its package paths point
-- at this checkout and build, and a spec may change named values of the
-- example (each change must match exactly once, so a spec notices when
-- the example changes under it). nginx runs with its master and two
-- workers and is stopped by the master's pid.
local process = require "support.process"
local port = require "support.port"
local env = require "support.env"
local json = require "support.json"
local http = require "support.http"

local M = {}
local Gateway = {}
Gateway.__index = Gateway

M.binary = "/usr/sbin/nginx"
M.example = "examples/nginx/nginx.conf"

local function replace_once(text, from, to)
  local s, e = text:find(from, 1, true)
  assert(s, ("the example has no %q"):format(from))
  assert(not text:find(from, e + 1, true),
         ("the example has %q more than once"):format(from))
  return text:sub(1, s - 1) .. to .. text:sub(e + 1)
end

-- The example with this run's ports, paths and changes. opts.tree: a
-- LuaRocks tree to load the module from instead of this checkout.
function M.render(opts)
  local text = assert(process.read_file(M.example))
  local root = env.root
  local build = env.build_dir:sub(1, 1) == "/" and env.build_dir
    or (root .. "/" .. env.build_dir)
  local lpath = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"
  local cpath = build .. "/?.so;;"
  if opts.tree then
    lpath = opts.tree .. "/share/lua/5.1/?.lua;" .. opts.tree
      .. "/share/lua/5.1/?/init.lua;;"
    cpath = opts.tree .. "/lib/lua/5.1/?.so;;"
  end
  text = replace_once(text, "/usr/local/share/lua/5.1/?.lua;"
    .. "/usr/local/share/lua/5.1/?/init.lua;;", lpath)
  text = replace_once(text, "/usr/local/lib/lua/5.1/?.so;;", cpath)
  for _, pair in ipairs(opts.change or {}) do
    text = replace_once(text, pair[1], pair[2])
  end
  text = text:gsub("127%.0%.0%.1:8080", "127.0.0.1:" .. opts.ports.gateway)
  text = text:gsub("127%.0%.0%.1:8081", "127.0.0.1:" .. opts.ports.primary)
  text = text:gsub("127%.0%.0%.1:8082", "127.0.0.1:" .. opts.ports.candidate)
  text = text:gsub("127%.0%.0%.1:9090", "127.0.0.1:" .. opts.ports.admin)
  return text
end

-- The environment for nginx. Under a sanitizer build the spec runner
-- preloads the sanitizer runtimes to load the instrumented libshadow;
-- nginx loads the same library, so it gets the same preload (without
-- leak checks: nginx does not free its pools at exit).
local function nginx_env()
  if not os.getenv("SHADOW_SPEC_PRELOAD") then return nil end
  return { LD_PRELOAD = os.getenv("LD_PRELOAD") or false,
           ASAN_OPTIONS = "detect_leaks=0:abort_on_error=0" }
end

-- Runs nginx on conf_text (in a fresh directory, as its prefix) and
-- waits for the given ports. Returns an instance with :stop().
function M.run(conf_text, wait_ports)
  local dir = process.tmpdir("shadow-gateway")
  -- Workers run as nobody when the spec runs as root: let them in.
  os.execute("chmod 755 '" .. dir .. "'")
  os.execute("mkdir -p '" .. dir .. "/logs' '" .. dir .. "/tmp'")
  local conf = dir .. "/nginx.conf"
  process.write_file(conf, conf_text)
  -- daemon off: the master stays the child spawned here, so stopping its
  -- pid stops nginx (a daemonizing nginx would leave an orphan running).
  local proc = process.spawn({ M.binary, "-p", dir .. "/", "-c", conf,
                               "-e", dir .. "/logs/error.log",
                               "-g", "daemon off;" },
                             { stdout = dir .. "/stdout",
                               stderr = dir .. "/stderr",
                               env = nginx_env() })
  local self = setmetatable({ dir = dir, proc = proc }, Gateway)
  for _, p in ipairs(wait_ports) do
    local ok, err = port.wait(p, 10, proc)
    if not ok then
      local log = self:error_log()
      self:stop()
      error(("gateway nginx: %s\nerror.log:\n%s"):format(err, log), 3)
    end
  end
  return self
end

-- start{ primary = port, candidate = port, change = { { from, to }, ... },
--        tree = a LuaRocks tree }
-- Returns .port (the gateway), .admin_port, :admin(path), :stats(),
-- :divergences(limit), :stop().
function M.start(opts)
  local ports = { gateway = port.free(), admin = port.free(),
                  primary = opts.primary, candidate = opts.candidate }
  local self = M.run(M.render{ ports = ports, change = opts.change,
                               tree = opts.tree },
                     { ports.gateway, ports.admin })
  self.port, self.admin_port = ports.gateway, ports.admin
  return self
end

function Gateway:error_log()
  return process.read_file(self.dir .. "/logs/error.log") or ""
end

-- The pids of the master and its workers, from /proc (no child
-- process: under a sanitizer build it would inherit the preload).
function Gateway:pids()
  local pid = self.proc.pid
  local out = { pid }
  local text = process.read_file(("/proc/%d/task/%d/children"):format(pid,
                                                                      pid))
  for child in (text or ""):gmatch("%d+") do out[#out + 1] = tonumber(child) end
  return out
end

function Gateway:admin(path)
  local res = assert(http.get(self.admin_port, "/_shadow/" .. path))
  return res
end

function Gateway:stats()
  local res = self:admin("stats")
  assert(res.status == 200, res.body)
  return json.decode(res.body)
end

function Gateway:divergences(limit)
  local res = self:admin("divergences?limit=" .. (limit or 1000))
  assert(res.status == 200, res.body)
  return json.decode(res.body)
end

-- Waits until /stats totals[field] reaches n; returns the last stats.
function Gateway:wait_totals(field, n, timeout)
  local last
  port.wait_until(function()
    last = self:stats()
    return (last.totals[field] or 0) >= n
  end, timeout or 10)
  return last
end

function Gateway:url() return "http://127.0.0.1:" .. self.port end

-- Stops nginx by its master's pid. Under a sanitizer build, a report in
-- nginx's output (libshadow runs in its workers) fails the spec.
function Gateway:stop()
  if self.stopped then return end
  self.stopped = true
  self.proc:stop(10, process.SIGTERM)
  local out = (process.read_file(self.dir .. "/stderr") or "")
    .. (process.read_file(self.dir .. "/stdout") or "")
  process.rmdir(self.dir)
  if out:find("Sanitizer", 1, true) or out:find("runtime error:", 1, true)
  then
    error("nginx reported a sanitizer error:\n" .. out, 2)
  end
end

return M
