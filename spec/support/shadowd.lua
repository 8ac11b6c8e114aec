-- The real shadowd for black-box specs: write a config script into a
-- temp dir, start the binary on free loopback ports, wait until both
-- the listener and the admin port accept, stop by pid.
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local json = require "support.json"
local unistd = require "posix.unistd"

local M = {}
local Daemon = {}
Daemon.__index = Daemon

local function cwd()
  local p = io.popen("pwd")
  local dir = p:read("*l")
  p:close()
  return dir
end

-- $SHADOWD (set by ctest), else ./build/shadowd from the repo root.
function M.binary()
  local bin = os.getenv("SHADOWD")
  if not bin or bin == "" then bin = "build/shadowd" end
  if bin:sub(1, 1) ~= "/" then bin = cwd() .. "/" .. bin end
  if not unistd.access(bin, "x") then
    error("no shadowd binary at " .. bin
          .. " (build it with scripts/build, or set SHADOWD)", 3)
  end
  return bin
end

-- The config text, following the README's config script. opts:
--   listen, admin           "127.0.0.1:N" (filled in by start)
--   primary, candidate      URL strings; *_timeout_ms
--   rate, key               key: Lua expression of `req` (default the
--                           x-user-id header)
--   mirror_methods          list of strings; log_capacity; limits (a
--                           table of numbers); extra (raw fields)
function M.config(opts)
  local lines = { 'local shadow = require "shadow"', "return {",
    ("  listen = %q,"):format(opts.listen),
    ("  admin = %q,"):format(opts.admin) }
  local function add(fmt, ...) lines[#lines + 1] = fmt:format(...) end
  if opts.primary then
    add("  primary = shadow.http(%q, { timeout_ms = %d }),", opts.primary,
        opts.primary_timeout_ms or 5000)
  end
  if opts.candidate then
    add("  candidate = shadow.http(%q, { timeout_ms = %d }),",
        opts.candidate, opts.candidate_timeout_ms or 5000)
  end
  add("  sample = {")
  add("    rate = %s,", tostring(opts.rate or 1.0))
  add("    key = function(req) return %s end,",
      opts.key or 'req.headers["x-user-id"]')
  add("  },")
  if opts.mirror_methods then
    local q = {}
    for i, m in ipairs(opts.mirror_methods) do q[i] = ("%q"):format(m) end
    add("  mirror_methods = { %s },", table.concat(q, ", "))
  end
  add('  route = function(req) return req.method .. " " .. req.path end,')
  add("  log = { capacity = %d },", opts.log_capacity or 1000)
  if opts.limits then
    local l, names = {}, {}
    for k in pairs(opts.limits) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do l[#l + 1] = ("%s = %s"):format(k, opts.limits[k]) end
    add("  limits = { %s },", table.concat(l, ", "))
  end
  if opts.extra then add("%s", opts.extra) end
  add("}")
  return table.concat(lines, "\n") .. "\n"
end

-- start(opts): opts as for config(), or opts.text = function(addr)
-- returning the whole config given addr.listen and addr.admin; opts.args
-- adds command-line arguments; opts.files = { [name] = text } are written
-- beside the config first (modules it requires); opts.hosts = path runs
-- shadowd in a private mount namespace where that file is /etc/hosts
-- (root and util-linux's unshare; see M.private_hosts_works).
function M.start(opts)
  local bin = M.binary()
  local dir = process.tmpdir("shadow-daemon")
  local lport, aport = port.free(), port.free()
  local addr = { listen = "127.0.0.1:" .. lport, admin = "127.0.0.1:" .. aport }
  local text
  if opts.text then
    text = opts.text(addr)
  else
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.listen, o.admin = addr.listen, addr.admin
    text = M.config(o)
  end
  for name, body in pairs(opts.files or {}) do
    process.write_file(dir .. "/" .. name, body)
  end
  local conf = dir .. "/shadow.lua"
  process.write_file(conf, text)
  local argv = { bin, "--config", conf }
  if opts.hosts then
    -- unshare and sh exec in turn, so the pid is shadowd's own.
    argv = { "unshare", "--mount", "sh", "-c",
             'mount --bind "$0" /etc/hosts && exec "$@"', opts.hosts,
             bin, "--config", conf }
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local proc = process.spawn(argv,
    { stdout = dir .. "/stdout", stderr = dir .. "/stderr", cwd = dir })
  local self = setmetatable({ dir = dir, proc = proc, port = lport,
                              admin_port = aport, config = conf }, Daemon)
  for _, p in ipairs({ lport, aport }) do
    local ok, err = port.wait(p, 15, proc)
    if not ok then
      proc:stop(5)
      self.stopped = true
      process.rmdir(dir)
      error("shadowd did not start: " .. err .. "\nconfig:\n" .. text, 2)
    end
  end
  return self
end

-- Whether opts.hosts can work here: nil and the reason when not root, or
-- when the kernel refuses a mount namespace or the bind mount.
function M.private_hosts_works()
  if unistd.geteuid() ~= 0 then return nil, "not root" end
  local dir = process.tmpdir("shadow-hosts")
  process.write_file(dir .. "/hosts", "127.0.0.1 localhost\n")
  local ok, code, out, err = pcall(process.run, { "unshare", "--mount", "sh",
    "-c", 'mount --bind "$0" /etc/hosts', dir .. "/hosts" }, nil, 10)
  process.rmdir(dir)
  if not ok then return nil, "unshare: " .. tostring(code) end
  if code ~= 0 then
    return nil, ("unshare --mount and a bind mount on /etc/hosts refused: %s%s")
      :format(out, err)
  end
  return true
end

function Daemon:log() return self.output or self.proc:output() end

-- GET on the admin port; returns the response, with .json decoded when
-- the body is JSON.
function Daemon:admin(path)
  local res = assert(http.get(self.admin_port, path))
  local ct = res.headers["content-type"] or ""
  if ct:find("json", 1, true) then res.json = json.decode(res.body) end
  return res
end

function Daemon:stats()
  local res = self:admin("/stats")
  assert(res.status == 200, "/stats answered " .. res.status)
  return json.decode(res.body)
end

function Daemon:divergences(limit)
  local res = self:admin("/divergences?limit=" .. (limit or 1000))
  assert(res.status == 200, "/divergences answered " .. res.status)
  return json.decode(res.body)
end

-- Waits until /stats totals[field] reaches n; returns the stats.
function Daemon:wait_totals(field, n, timeout)
  local stats
  port.wait_until(function()
    stats = self:stats()
    return (tonumber(stats.totals and stats.totals[field]) or 0) >= n
  end, timeout or 10, 0.05)
  return stats
end

-- What a sanitizer build reports, found in the daemon's output.
function M.sanitizer_report(output)
  return output:match("==%d+==ERROR: %w+Sanitizer.*")
    or output:match("WARNING: ThreadSanitizer:.*")
    or output:match("[^\n]*runtime error:.*")
end

-- SIGTERM, then SIGKILL after timeout seconds. Returns how, code. Raises
-- when the daemon's output holds a sanitizer report, so every spec
-- that stops a daemon in its teardown also checks the ASan build.
function Daemon:stop(timeout)
  if self.stopped then return self.how, self.code end
  self.stopped = true
  self.how, self.code = self.proc:stop(timeout or 10)
  self.output = self.proc:output()
  process.rmdir(self.dir)
  local report = M.sanitizer_report(self.output)
  if report then error("shadowd's sanitizer report:\n" .. report, 2) end
  return self.how, self.code
end

function Daemon:url() return "http://127.0.0.1:" .. self.port end

return M
