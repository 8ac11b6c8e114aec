-- busted keeps only the last finally() of a test, so a test that starts
-- several things registers one list and stops all of it, newest first.
--   local stop = cleanup.new(); finally(stop.run)
--   local ng = stop.add(nginx.start{ ... })
local M = {}

function M.new()
  local list = {}
  local self = {}
  function self.add(x)
    list[#list + 1] = x
    return x
  end
  function self.run()
    local first_err
    for i = #list, 1, -1 do
      local x = list[i]
      local ok, err = pcall(function()
        if type(x) == "function" then x() else x:stop() end
      end)
      if not ok and not first_err then first_err = err end
    end
    list = {}
    if first_err then error(first_err, 0) end
  end
  return self
end

-- Stops each non-nil argument in order, even when one raises; raises
-- the first error afterwards. For teardown(): stop_all(daemon, nginx).
function M.stop_all(...)
  local list = M.new()
  for i = select("#", ...), 1, -1 do
    local x = select(i, ...)
    if x then list.add(x) end
  end
  list.run()
end

return M
