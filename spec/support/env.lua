-- Where the specs find the build: libshadow from $SHADOW_BUILD_DIR (or
-- ./build), put first on package.cpath so `require "shadow"` loads it.
local M = {}

-- The repository root: busted runs there (ctest sets its working
-- directory), but $PWD is the caller's shell's, so ask the kernel.
M.root = require("posix.unistd").getcwd()
M.build_dir = os.getenv("SHADOW_BUILD_DIR") or "./build"
M.libshadow = os.getenv("LIBSHADOW") or (M.build_dir .. "/libshadow.so")
M.shadowd = os.getenv("SHADOWD") or (M.build_dir .. "/shadowd")

local entry = M.build_dir .. "/?.so"
if not package.cpath:find(entry, 1, true) then
  package.cpath = entry .. ";" .. package.cpath
end

return M
