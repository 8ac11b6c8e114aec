-- Child processes for black-box specs: spawn with fork/exec, output to
-- files (so a chatty child never blocks on a full pipe), stop by pid.
local unistd = require "posix.unistd"
local wait = require "posix.sys.wait"
local signal = require "posix.signal"
local fcntl = require "posix.fcntl"
local stdlib = require "posix.stdlib"
local socket = require "socket"

local M = {}

local Proc = {}
Proc.__index = Proc

-- A fresh private directory; every helper puts its files in one.
function M.tmpdir(prefix)
  local dir, err = stdlib.mkdtemp("/tmp/" .. (prefix or "shadow-spec")
                                  .. "-XXXXXX")
  assert(dir, err)
  return dir
end

-- Removes a directory made by tmpdir, unless SHADOW_KEEP_TMP is set
-- (handy when a failing spec's logs are wanted afterwards).
function M.rmdir(dir)
  if dir and not os.getenv("SHADOW_KEEP_TMP")
     and dir:match("^/tmp/[%w%-%.]+$") then
    os.execute("rm -rf '" .. dir .. "'")
  end
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The newline-terminated lines of path (none when it is missing); a last
-- line without its newline is left out, as a writer may be mid-line.
function M.read_lines(path)
  local out = {}
  for line in (M.read_file(path) or ""):gmatch("([^\n]*)\n") do
    out[#out + 1] = line
  end
  return out
end

function M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function M.sleep(seconds)
  socket.sleep(seconds)
end

-- The environment changes for a child. Under a sanitizer build the
-- spec runner itself may run with the sanitizer runtime preloaded (so
-- it can load an instrumented libshadow) and leak checks off; children
-- get neither the preload (SHADOW_SPEC_PRELOAD set) nor the runner's
-- ASAN_OPTIONS (SHADOW_CHILD_ASAN_OPTIONS replaces them).
function M.child_env(extra)
  local env = {}
  if os.getenv("SHADOW_SPEC_PRELOAD") then env.LD_PRELOAD = false end
  local asan = os.getenv("SHADOW_CHILD_ASAN_OPTIONS")
  if asan then env.ASAN_OPTIONS = asan end
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

-- Runs in the child between fork and exec: nothing here may return.
local function exec_child(argv, opts)
  local devnull = fcntl.open("/dev/null", fcntl.O_RDONLY)
  if devnull then unistd.dup2(devnull, 0) end
  local flags = fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC
  local out = fcntl.open(opts.stdout, flags, tonumber("644", 8))
  local err = fcntl.open(opts.stderr, flags, tonumber("644", 8))
  if out then unistd.dup2(out, 1) end
  if err then unistd.dup2(err, 2) end
  for k, v in pairs(M.child_env(opts.env)) do
    stdlib.setenv(k, v ~= false and tostring(v) or nil)
  end
  if opts.cwd then unistd.chdir(opts.cwd) end
  local args = {}
  for i = 2, #argv do args[i - 1] = argv[i] end
  args[0] = argv[1]
  unistd.execp(argv[1], args)
  io.stderr:write("exec " .. tostring(argv[1]) .. " failed\n")
  unistd._exit(127)
end

-- spawn({ "prog", "arg", ... }, { stdout =, stderr =, env =, cwd = })
-- Output goes to the given files, or to files in a new temp dir that
-- :stop() removes (it is safe on a child that already exited).
-- Every process spawned, in order: support/leak_check.lua stops and
-- reports the ones a spec file left running.
M.spawned = {}

function M.spawn(argv, opts)
  opts = opts or {}
  local own_dir
  if not opts.stdout or not opts.stderr then
    own_dir = M.tmpdir("shadow-proc")
    opts.stdout = opts.stdout or (own_dir .. "/stdout")
    opts.stderr = opts.stderr or (own_dir .. "/stderr")
  end
  io.stdout:flush()
  io.stderr:flush()
  local pid, err = unistd.fork()
  assert(pid, err)
  if pid == 0 then exec_child(argv, opts) end
  local p = setmetatable({ pid = pid, argv = argv, stdout = opts.stdout,
                           stderr = opts.stderr, own_dir = own_dir }, Proc)
  M.spawned[#M.spawned + 1] = p
  return p
end

-- Reaps the child if it has exited. Returns true while it runs.
function Proc:running()
  if self.status then return false end
  local pid, how, code = wait.wait(self.pid, wait.WNOHANG)
  if pid == 0 then return true end
  if pid == nil then
    -- Already reaped elsewhere, or not our child: nothing left to wait for.
    self.status, self.code = "gone", -1
    return false
  end
  self.status, self.code = how, code
  return false
end

-- Waits up to timeout seconds. Returns how ("exited"/"killed"), code;
-- or nil, "timeout" if the child still runs.
function Proc:wait(timeout)
  local deadline = socket.gettime() + (timeout or 10)
  while self:running() do
    if socket.gettime() > deadline then return nil, "timeout" end
    socket.sleep(0.01)
  end
  return self.status, self.code
end

function Proc:kill(sig)
  if self:running() then signal.kill(self.pid, sig or signal.SIGTERM) end
end

-- SIGTERM (or sig), then SIGKILL when it has not gone after timeout
-- seconds. Returns how and code of the exit; safe to call twice.
function Proc:stop(timeout, sig)
  if self:running() then
    signal.kill(self.pid, sig or signal.SIGTERM)
    if not self:wait(timeout or 5) then
      signal.kill(self.pid, signal.SIGKILL)
      self:wait(5)
      self.forced = true
    end
  end
  if self.own_dir then
    -- Keep what it printed: the caller may still want to show it.
    self.saved_output = self:output()
    M.rmdir(self.own_dir)
    self.own_dir = nil
  end
  return self.status, self.code
end

function Proc:output()
  if self.saved_output then return self.saved_output end
  return (M.read_file(self.stdout) or "") .. (M.read_file(self.stderr) or "")
end

function Proc:describe()
  local state = self:running() and "running"
    or (tostring(self.status) .. " " .. tostring(self.code))
  return ("%s (pid %d, %s)"):format(table.concat(self.argv, " "), self.pid,
                                    state)
end

-- Runs to completion; returns exit code (or -signal), stdout, stderr.
function M.run(argv, opts, timeout)
  local p = M.spawn(argv, opts)
  local how, code = p:wait(timeout or 30)
  if not how then
    p:stop(1)
    error(("%s did not finish in %ss"):format(table.concat(argv, " "),
                                               timeout or 30))
  end
  local out, err = M.read_file(p.stdout) or "", M.read_file(p.stderr) or ""
  M.rmdir(p.own_dir)
  return how == "exited" and code or -code, out, err
end

M.SIGTERM, M.SIGKILL, M.SIGHUP = signal.SIGTERM, signal.SIGKILL,
                                  signal.SIGHUP
return M
