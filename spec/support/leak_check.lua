-- busted's helper (see .busted): every spec stops what it started. A
-- process a spec file spawned (support.process) that still runs when the
-- file ends is stopped here, and the file fails with its command line, so
-- a forgotten stop (or a second finally(), which busted keeps only the
-- last of) shows up at once instead of as a stray daemon.
local busted = require "busted"
local process = require "support.process"

local first = 1

busted.subscribe({ "file", "start" }, function()
  first = #process.spawned + 1
  return nil, true
end)

busted.subscribe({ "file", "end" }, function()
  local leaked = {}
  for i = first, #process.spawned do
    local p = process.spawned[i]
    if p:running() then
      leaked[#leaked + 1] = p:describe()
      p:stop(2)
    end
  end
  first = #process.spawned + 1
  if #leaked > 0 then
    error("left running by this file (now stopped):\n  "
          .. table.concat(leaked, "\n  "), 0)
  end
  return nil, true
end)
