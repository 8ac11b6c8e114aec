-- docs/gateway.md's "The example, step by step", as a newcomer runs it
-- from a checkout: the doc's own shell lines, each run by sh as written
-- from a scratch checkout whose examples/nginx/nginx.conf is the real one
-- with its package paths set as the doc says for a checkout install
-- (`<checkout>` the repository, `<checkout>/build` this run's build
-- directory) and, where a port the example names (8080, 8081, 8082,
-- 9090) is taken on this machine, a free one instead. /tmp/gw, a fixed
-- path, becomes a directory of the spec's own. The install lines
-- (apt-get, luarocks) are left out: scripts/bootstrap installed the
-- packages, and a checkout install does without the rock. The primary
-- and the candidate are real nginx backends; nginx starts as a daemon, as
-- the doc's line starts it, and stops by the doc's `-s quit`. The spec
-- fails when a text it replaces is no longer in the doc or the example.
-- examples/nginx/README.md's short version must be the doc's lines.
local docs = require "support.docs"
local env = require "support.env"
local nginx = require "support.nginx"
local process = require "support.process"
local port = require "support.port"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"
local signal = require "posix.signal"

local DOC, STEPS = "docs/gateway.md", "The example, step by step"
local EXAMPLE = "examples/nginx/nginx.conf"

local function users(email_field)
  return ([[
    location ~ ^/users/(\d+)$ { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print('{"id":' .. ngx.var[1]
                .. ',"name":"Eve","%s":"eve@example.com"}')
    } }
  ]]):format(email_field)
end

-- The package paths the doc gives for a checkout, with <checkout> filled.
local function checkout_paths()
  local text = docs.section(DOC, STEPS):gsub("\n", " ")
  local lpath = assert(text:match("`lua_package_path` to `([^`]+)`"),
                       DOC .. ": no lua_package_path for a checkout")
  local cpath = assert(text:match("`lua_package_cpath` to `([^`]+)`"),
                       DOC .. ": no lua_package_cpath for a checkout")
  assert.truthy(cpath:find("<checkout>/build/", 1, true), cpath)
  local build = env.build_dir:sub(1, 1) == "/" and env.build_dir
    or (env.root .. "/" .. env.build_dir)
  cpath = docs.substitute(cpath, { { "<checkout>/build/", build .. "/" } },
                          "the doc's lua_package_cpath")
  lpath = docs.substitute(lpath, { { "<checkout>", env.root } },
                          "the doc's lua_package_path")
  return lpath, cpath
end

-- nginx needs the sanitizer runtime to load an instrumented libshadow.
local function nginx_env()
  if not os.getenv("SHADOW_SPEC_PRELOAD") then return nil end
  return { LD_PRELOAD = os.getenv("LD_PRELOAD") or false,
           ASAN_OPTIONS = "detect_leaks=0:abort_on_error=0" }
end

local function pid_alive(pid)
  return pid and signal.kill(pid, 0) == 0
end

describe(DOC, function()
  it("examples/nginx/README.md gives the doc's own commands", function()
    local function bare(cmds)
      local out = {}
      for _, c in ipairs(cmds) do out[(c:gsub("%s+#%s.*$", ""))] = true end
      return out
    end
    local steps = bare(docs.commands(docs.block(DOC, STEPS, 1, "sh")))
    local readme = docs.read("examples/nginx/README.md")
    local b = assert(docs.blocks(readme)[1],
                     "examples/nginx/README.md: no block")
    for c in pairs(bare(docs.commands(b.body))) do
      assert.is_true(steps[c] or false, c)
    end
  end)

  it("The example, step by step: runs as written from a checkout", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ports = { gateway = docs.port_for(8080, true),
                    primary = docs.port_for(8081, true),
                    candidate = docs.port_for(8082, true),
                    admin = docs.port_for(9090, true) }
    local ng = stop.add(nginx.start{
      servers = { primary = users("email"),
                  candidate = users("email_address") },
      ports = { primary = ports.primary, candidate = ports.candidate } })

    local lpath, cpath = checkout_paths()
    local conf = docs.substitute(docs.read(EXAMPLE), {
      { "127.0.0.1:8080", "127.0.0.1:" .. ports.gateway },
      { "127.0.0.1:8081", "127.0.0.1:" .. ports.primary },
      { "127.0.0.1:8082", "127.0.0.1:" .. ports.candidate },
      { "127.0.0.1:9090", "127.0.0.1:" .. ports.admin },
      { 'lua_package_path "/usr/local/share/lua/5.1/?.lua;'
        .. '/usr/local/share/lua/5.1/?/init.lua;;"',
        ('lua_package_path "%s"'):format(lpath) },
      { 'lua_package_cpath "/usr/local/lib/lua/5.1/?.so;;"',
        ('lua_package_cpath "%s"'):format(cpath) },
    }, EXAMPLE)
    local root = docs.checkout{ [EXAMPLE] = conf }
    stop.add(function() process.rmdir(root) end)
    local prefix = root .. "/gw"

    local cmds = docs.commands(docs.substitute(
      docs.block(DOC, STEPS, 1, "sh"), {
        { "/tmp/gw", prefix },
        { "127.0.0.1:8080/", ("127.0.0.1:%d/"):format(ports.gateway) },
        { "127.0.0.1:9090/", ("127.0.0.1:%d/"):format(ports.admin) },
      }, DOC .. " (" .. STEPS .. ")"))
    local function line(needle) return docs.command(cmds, needle) end
    -- The install line names Debian packages, all installed here.
    for pkg in line("apt-get install "):match("apt%-get install (.*)$")
                 :gsub("%s+#.*$", ""):gmatch("%S+") do
      local code, out = process.run({ "dpkg-query", "-W", "-f",
                                      "${Status}", pkg })
      assert.are.equal("install ok installed", code == 0 and out or pkg)
    end
    assert.truthy(line("luarocks --lua-version 5.1 make "))
    assert.are.equal(9, #cmds, table.concat(cmds, "\n"))

    local function run(cmd, extra_env)
      local code, out, err, left = docs.sh(cmd .. "\n", root,
                                           { env = extra_env })
      assert.are.equal(0, code, cmd .. "\n" .. out .. err)
      assert.is_nil(left, cmd)
      return out, err
    end

    run(line("mkdir -p "))
    -- nginx daemonizes: its master's pid is in the prefix's logs/.
    local pid
    stop.add(function()
      if pid_alive(pid) then
        signal.kill(pid, signal.SIGTERM)
        port.wait_until(function() return not pid_alive(pid) end, 10)
      end
      local log = process.read_file(prefix .. "/logs/error.log") or ""
      assert(not log:find("Sanitizer", 1, true), log)
    end)
    local _, err = run(line(" -e " .. prefix .. "/logs/error.log"),
                       nginx_env())
    pid = tonumber(process.read_file(prefix .. "/logs/nginx.pid"))
    assert.truthy(pid, err)
    assert(port.wait(ports.gateway, 10))
    assert(port.wait(ports.admin, 10))

    local body = json.decode((run(line("/users/7"))))
    assert.are.equal("eve@example.com", body.email)    -- the primary's
    -- The candidate's leg runs after the response: wait for its count.
    local admin = port.wait_until(function()
      local res = http.get(ports.admin, "/_shadow/stats")
      local s = res and res.status == 200 and json.decode(res.body)
      return s and (s.totals.compared or 0) >= 1 and s
    end, 10)
    assert.truthy(admin, "no comparison counted")

    local list = json.decode((run(line("/_shadow/divergences")))).divergences
    assert.are.equal(1, #list)
    assert.are.equal("/users/7", list[1].path)
    assert.are.equal("u-7", list[1].key)
    local ops = {}
    for _, op in ipairs(list[1].body.diffs) do
      ops[op.op .. " " .. op.path] = 1
    end
    assert.truthy(ops["remove /email"] and ops["add /email_address"],
                  json.encode(list[1].body))

    local stats = json.decode((run(line("/_shadow/stats"))))
    assert.are.equal(1, stats.totals.diverged)
    assert.are.equal("hold", stats.verdict.decision)
    local metrics = run(line("/_shadow/metrics"))
    assert.truthy(metrics:find("\nshadow_compared_total", 1, true)
                  or metrics:find("^shadow_compared_total"), metrics)

    run(line(" -s quit"), nginx_env())
    assert.truthy(port.wait_until(function() return not pid_alive(pid) end,
                                  15), "nginx still runs after -s quit")
    local log = process.read_file(prefix .. "/logs/error.log") or ""
    assert.is_nil(log:find("[error]", 1, true), log)
    assert.is_nil(log:find("[emerg]", 1, true), log)
    assert.truthy(ng.ports.primary)
  end)
end)
