-- Runs a Lua chunk in a fresh luajit process, for what must not leak into
-- the spec's own VM (a library that reports the wrong ABI, a machine with
-- no libshadow). Returns the exit status and the combined output.
local M = {}

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function M.run(code, env)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write('package.path = "lua/?.lua;lua/?/init.lua;" .. package.path\n')
  f:write(code)
  f:close()
  local prefix = ""
  for k, v in pairs(env or {}) do
    prefix = prefix .. k .. "=" .. shell_quote(v) .. " "
  end
  local p = io.popen(prefix .. "luajit " .. shell_quote(file)
    .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  os.remove(file)
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, out:gsub("rc=%d+%s*$", "")
end

return M
