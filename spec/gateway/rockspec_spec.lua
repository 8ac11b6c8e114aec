-- request-shadow-scm-1.rockspec: `luarocks make` from a copy of this
-- checkout into a scratch tree (Debian's luarocks, no network), then the
-- installed module alone: in plain LuaJIT, and inside nginx with the
-- example config loading it from that tree.
local process = require "support.process"
local nginx = require "support.nginx"
local gateway = require "support.gateway"
local http = require "support.http"
local port = require "support.port"
local cleanup = require "support.cleanup"

local ROCKSPEC = "request-shadow-scm-1.rockspec"

-- Runs a shell command as a spec's child (so a sanitizer build's preload
-- is not passed on); returns its exit code and its output.
local function sh(cmd)
  local rc, out, err = process.run({ "sh", "-c", cmd }, nil, 300)
  return rc, out .. err
end

describe("the rockspec", function()
  local dir, tree
  setup(function()
    dir = process.tmpdir("shadow-rock")
    os.execute("chmod 755 '" .. dir .. "'")
    tree = dir .. "/tree"
    -- A copy of the working tree (tracked and new files, not the build
    -- directories), so the build never touches this checkout.
    local rc, out = sh("git ls-files -co --exclude-standard -z | "
      .. "tar --null -T - -cf - | tar -xf - -C '" .. dir .. "'")
    assert.equal(0, rc, out)
  end)
  teardown(function() process.rmdir(dir) end)

  it("builds libshadow with CMake and installs every Lua module", function()
    local rc, out = sh("cd '" .. dir .. "' && luarocks --lua-version 5.1 "
      .. "--tree '" .. tree .. "' make " .. ROCKSPEC)
    assert.equal(0, rc, out)
    assert.matches("request-shadow scm-1 is now installed", out, 1, true)
    assert.truthy(process.read_file(tree .. "/lib/lua/5.1/libshadow.so"))
    assert.truthy(process.read_file(tree .. "/share/lua/5.1/shadow.lua"))
    -- A module added to lua/shadow/ without a line in the rockspec would
    -- be missing from every install.
    local _, names = sh("ls lua/shadow")
    for name in names:gmatch("[^\n]+") do
      local mod = name:match("^(.+)%.lua$")
      if mod and mod ~= "init" then
        assert.truthy(process.read_file(tree .. "/share/lua/5.1/shadow/"
                                        .. name), name .. " not installed")
      end
    end
  end)

  it("gives a working module from the tree alone", function()
    local script = dir .. "/use.lua"
    process.write_file(script, ([[
      package.path = "%s/share/lua/5.1/?.lua;" .. package.path
      package.cpath = "%s/lib/lua/5.1/?.so;" .. package.cpath
      local shadow = require "shadow"
      local J = { ["content-type"] = "application/json" }
      local d = shadow.diff({ status = 200, headers = J, body = '{"a":1}' },
                            { status = 200, headers = J, body = '{"a":2}' })
      print(d.body.diffs[1].path, shadow.sampled("k", 1),
            shadow.verdict(10, 0).decision)
    ]]):format(tree, tree))
    local rc, out, err = process.run({ "luajit", script })
    assert.equal(0, rc, out .. err)
    assert.equal("/a\ttrue\tinsufficient-data\n", out)
  end)

  it("shadows inside nginx loaded from the tree", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = [[ location / { return 200 "one\n"; } ]],
      candidate = [[ location / { return 200 "two\n"; } ]] } })
    local gw = stop.add(gateway.start{ primary = ng.ports.primary,
                                       candidate = ng.ports.candidate,
                                       tree = tree })
    local res = assert(http.get(gw.port, "/x", { ["x-user-id"] = "t" }))
    assert.equal("one\n", res.body)
    local st = gw:wait_totals("diverged", 1, 10)
    assert.equal(1, st.totals.diverged)
    assert.equal("bytes", gw:divergences(1).divergences[1].body.kind)
    -- The module was the tree's, not this checkout's.
    assert.not_matches(require("env").root .. "/lua",
                       process.read_file(gw.dir .. "/nginx.conf"), 1, true)
    assert.is_true(port.accepts(gw.port))
  end)
end)
