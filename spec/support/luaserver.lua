-- A small server written in Lua, in its own luajit process: for the
-- backends nginx cannot be (garbage, resets, interim responses, trailers
-- on demand). start(prefix, source, args, at_port) writes source into a
-- fresh temp dir, runs `luajit source port args...` on at_port or a free
-- loopback port, waits until it accepts, and returns { port, url, proc,
-- dir, stop }; stop() stops it by pid and removes the dir.
local process = require "support.process"
local port = require "support.port"

local M = {}

function M.start(prefix, source, args, at_port)
  local p = at_port or port.free()
  local dir = process.tmpdir(prefix)
  process.write_file(dir .. "/server.lua", source)
  local argv = { "luajit", dir .. "/server.lua", tostring(p) }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = tostring(a) end
  local proc = process.spawn(argv, { stdout = dir .. "/out",
                                     stderr = dir .. "/err" })
  local ok, err = port.wait(p, 10, proc)
  if not ok then
    proc:stop()
    process.rmdir(dir)
    error(err, 3)
  end
  return {
    port = p, proc = proc, dir = dir,
    url = "http://127.0.0.1:" .. p,
    stop = function()
      proc:stop()
      process.rmdir(dir)
    end,
  }
end

return M
