-- Debian's chromium, headless, for specs that look at the dashboard the
-- way a user does: run(dir, url, flags) prints the DOM (--dump-dom) or
-- writes a screenshot; output_dir() is where screenshots are kept.
local process = require "support.process"
local unistd = require "posix.unistd"

local M = {}

M.CHROMIUM = "/usr/bin/chromium"

function M.available()
  return unistd.access(M.CHROMIUM, "x") ~= nil
end

-- Runs chromium on url; flags are its output flags. Returns what it
-- printed. dir holds its profile.
function M.run(dir, url, flags)
  local argv = { M.CHROMIUM, "--headless", "--disable-gpu", "--no-first-run",
                 "--hide-scrollbars", "--user-data-dir=" .. dir .. "/profile",
                 -- Let the page's fetches and its first ticks finish.
                 "--virtual-time-budget=5000" }
  -- Chromium's sandbox refuses to run as root.
  if unistd.geteuid() == 0 then argv[#argv + 1] = "--no-sandbox" end
  for _, a in ipairs(flags) do argv[#argv + 1] = a end
  argv[#argv + 1] = url
  local rc, out, err = process.run(argv, nil, 90)
  assert(rc == 0, "chromium failed: " .. tostring(err))
  return out
end

-- $SHADOW_BUILD_DIR/test-output, made if missing.
function M.output_dir()
  local build = os.getenv("SHADOW_BUILD_DIR") or "build"
  local dir = build .. "/test-output"
  process.run({ "mkdir", "-p", dir })
  return dir
end

return M
