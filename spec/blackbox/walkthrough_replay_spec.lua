-- docs/capture-replay.md as a newcomer follows it. "Record today, replay
-- in CI": the doc's shell block, read from the doc and run by sh as
-- written from a scratch checkout (build/shadowd this build's binary,
-- examples/demo.lua the real one with its two fixed ports, 8080 and 9090,
-- replaced by free ones; the curl lines' ports likewise), with mktemp's
-- directory inside the spec's own. Its printed summary must be the doc's
-- sample line for line (blanks collapsed), its exit code the doc's, the
-- records where the doc says. "A CI recipe": the doc's script, run as
-- written, with a small nginx standing in for ./build/my-service (its
-- fixed port 8081 replaced by a free one), shadowd on PATH, the demo's
-- config as shadow.lua and the walkthrough's capture. A stand-in that
-- answers as recorded exits 0 with a JUnit file of passing cases; one
-- with v2's lower-cased names exits 1, its failed case names the capture
-- line, and its fixture is a pair `shadowd diff` reads (JUnit read back
-- by python3's ElementTree). The spec fails when a text it replaces is no
-- longer in the doc.
local docs = require "support.docs"
local process = require "support.process"
local port = require "support.port"
local cleanup = require "support.cleanup"
local json = require "support.json"
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"

local DOC = "docs/capture-replay.md"
local WALK, CI = "Record today, replay in CI", "A CI recipe"

local function ported_demo(lport, aport)
  return docs.substitute(docs.read("examples/demo.lua"), {
    { '"127.0.0.1:8080"', ('"127.0.0.1:%d"'):format(lport) },
    { '"127.0.0.1:9090"', ('"127.0.0.1:%d"'):format(aport) },
  }, "examples/demo.lua")
end

local function squash(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    out[#out + 1] = (line:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
  end
  return out
end

-- The one directory `mktemp -d` made under tmp.
local function made_dir(tmp)
  local p = io.popen(("ls -1 '%s'"):format(tmp))
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  assert(#names == 1, "expected one scratch directory, found: "
         .. table.concat(names, " "))
  return tmp .. "/" .. names[1]
end

-- Runs the walkthrough; returns its scratch directory and what sh gave.
local function walkthrough(stop)
  local lport, aport = port.free(), port.free()
  local script = docs.substitute(docs.block(DOC, WALK, 1, "sh"), {
    { "localhost:9090/", ("localhost:%d/"):format(aport) },
    { "localhost:8080/", ("localhost:%d/"):format(lport) },
  }, DOC .. " (" .. WALK .. ")")
  local root = docs.checkout{ ["examples/demo.lua"] = ported_demo(lport,
                                                                  aport) }
  stop.add(function() process.rmdir(root) end)
  os.execute(("mkdir '%s/tmp'"):format(root))
  local code, out, err, left = docs.sh(script, root,
                                       { env = { TMPDIR = root .. "/tmp" } })
  local scratch = made_dir(root .. "/tmp")
  -- Nothing lands in the checkout.
  assert.is_nil(process.read_file(root .. "/capture.ndjson"))
  return { code = code, out = out, err = err, left = left,
           scratch = scratch, root = root }
end

-- ./build/my-service for the CI recipe: nginx in the foreground on the
-- --listen address, answering the demo's requests as v1 does (no Server
-- header, as v1 sends none), or with v2's lower-cased names (`buggy`).
local function my_service(dir, buggy)
  local conf = table.concat({
    "load_module " .. nginx.modules .. "/ndk_http_module.so;",
    "load_module " .. nginx.modules .. "/ngx_http_lua_module.so;",
    "master_process off; daemon off; pid nginx.pid;",
    "error_log stderr warn;",
    "events { worker_connections 64; }",
    "http { access_log off;",
    "  client_body_temp_path tmp; proxy_temp_path tmp;",
    "  fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;",
    "  server { listen LISTEN;",
    "    header_filter_by_lua_block { ngx.header['server'] = nil }",
    ([[    location = /health { return 200 "ok\n"; }
    location ~ ^/users/(\d+)$ { content_by_lua_block {
      local users = { ["1"] = { "Ann", "ann@example.com", '["admin"]' },
                      ["7"] = { "Eve", "eve@example.com", '["beta","ops"]' } }
      ngx.header["content-type"] = "application/json"
      local u = users[ngx.var[1] ]
      if not u then
        ngx.status = 404
        return ngx.print('{"error":"no such user"}')
      end
      local name = %s and u[1]:lower() or u[1]
      ngx.header["cache-control"] = "max-age=60"
      ngx.print('{"user":{"id":' .. ngx.var[1] .. ',"name":"' .. name
                .. '","email":"' .. u[2] .. '","tags":' .. u[3]
                .. '},"meta":{"generated_at":0}}')
    } }
    location = /search { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print('{"hits":[{"id":1,"name":"Ann"},{"id":2,"name":"Bob"},'
                .. '{"id":7,"name":"Eve"}],"total":3}')
    } }
  } }
]]):format(buggy and "true" or "false") }, "\n")
  process.write_file(dir .. "/my-service.conf", conf)
  os.execute(("mkdir -p '%s/build' '%s/tmp'"):format(dir, dir))
  process.write_file(dir .. "/build/my-service", table.concat({
    "#!/bin/sh",
    '[ "$1" = --listen ] || exit 2',
    'sed "s/LISTEN/$2/" my-service.conf > my-service.run.conf',
    "exec " .. nginx.binary .. ' -p "$PWD/" -c "$PWD/my-service.run.conf"'
      .. " -e /dev/stderr",
  }, "\n") .. "\n")
  os.execute(("chmod +x '%s/build/my-service'"):format(dir))
end

-- The CI recipe, as written, in a directory of its own holding the
-- walkthrough's capture, the demo config as shadow.lua, my-service and
-- shadowd on PATH; its one fixed port (8081) replaced by a free one.
-- Returns the directory and what sh gave.
local function ci_recipe(stop, r, buggy)
  local ci_port = port.free()
  local script = docs.substitute(docs.block(DOC, CI, 1, "sh"), {
    { "127.0.0.1:8081", "127.0.0.1:" .. ci_port },
  }, DOC .. " (" .. CI .. ")")
  local dir = process.tmpdir("shadow-docs-ci")
  stop.add(function() process.rmdir(dir) end)
  process.write_file(dir .. "/capture.ndjson",
                     process.read_file(r.scratch .. "/capture.ndjson"))
  process.write_file(dir .. "/shadow.lua", docs.read("examples/demo.lua"))
  my_service(dir, buggy)
  os.execute(("mkdir '%s/bin' && ln -s '%s' '%s/bin/shadowd'")
    :format(dir, shadowd.binary(), dir))
  local code, out, err, left = docs.sh(script, dir, { env = {
    PATH = dir .. "/bin:" .. os.getenv("PATH") } })
  assert.is_nil(left, left)
  assert.is_nil(shadowd.sanitizer_report(err))
  assert.is_false(port.accepts(ci_port), "my-service still runs")
  return dir, code, out, err
end

-- The JUnit file read back by python3's ElementTree: the root's tag, the
-- number of test cases and of failures, then each failure's text.
local function junit(dir)
  local code, out, err = process.run({ "python3", "-c", [[
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = root.findall("./testsuite/testcase")
fails = [c for c in cases if c.find("failure") is not None]
print(root.tag, len(cases), len(fails))
for c in fails:
    for l in (c.find("failure").text or "").splitlines():
        print(c.get("name") + ": " + l)
]], dir .. "/replay-junit.xml" })
  assert.are.equal(0, code, err)
  return out
end

describe(DOC, function()
  it("Record today, replay in CI: runs as written and prints the sample",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local r = walkthrough(stop)
    local log = process.read_file(r.scratch .. "/shadowd.log") or ""
    assert.is_nil(r.left, r.left)
    local report = shadowd.sanitizer_report(log)
    assert.is_nil(report, report)

    -- "prints its summary to stderr and exits 1"
    assert.is_true(docs.says(DOC, WALK,
                             "prints its summary to stderr and exits 1:"))
    assert.are.equal(1, r.code, r.out .. r.err .. log)
    local sample = docs.block(DOC, WALK, 1, "")
    assert.are.same(squash(sample), squash(r.err))

    -- The three requests were captured, and the records name their line.
    local lines = process.read_lines(r.scratch .. "/capture.ndjson")
    assert.are.equal(3, #lines, log)
    local recs = json.decode_lines(process.read_file(r.scratch
                                                     .. "/divergences.ndjson"))
    assert.is_true(docs.says(DOC, WALK,
                             "`divergences.ndjson` holds the three records"))
    assert.are.equal(3, #recs)
    for _, rec in ipairs(recs) do
      assert.are.equal("capture.ndjson", rec.replay.file)
      local captured = json.decode(lines[rec.replay.line])
      assert.are.equal(captured.id, rec.replay.capture_id)
      assert.are.equal(captured.request.target, rec.path)
    end
  end)

  it("A CI recipe: a build that answers as recorded passes", function()
    local stop = cleanup.new()
    finally(stop.run)
    local dir, code, out, err = ci_recipe(stop, walkthrough(stop), false)
    -- "0 when nothing diverged"
    assert.is_true(docs.says(DOC, CI, "0 when nothing diverged"))
    assert.are.equal(0, code, out .. err)
    assert.truthy(err:find("exit 0: nothing diverged", 1, true), err)
    local summary = json.decode(process.read_file(dir
                                                  .. "/replay-summary.json"))
    assert.are.equal(0, summary.exit, json.encode(summary))
    -- "an empty list when none failed"
    assert.truthy(process.read_file(dir .. "/replay-summary.json")
      :find('"failed_exchanges":[]', 1, true))
    assert.are.equal("", process.read_file(dir .. "/divergences.ndjson"))
    assert.are.equal("testsuites 2 0\n", junit(dir))
  end)

  it("A CI recipe: a build that differs fails, naming capture lines",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local dir, code, out, err = ci_recipe(stop, walkthrough(stop), true)
    assert.is_true(docs.says(DOC, CI, "1 when something diverged"))
    assert.are.equal(1, code, out .. err)
    local summary = json.decode(process.read_file(dir
                                                  .. "/replay-summary.json"))
    assert.are.equal(1, summary.exit, json.encode(summary))
    -- Ann is "ann" now; /users/99 and /search agree.
    local recs = json.decode_lines(process.read_file(dir
                                                     .. "/divergences.ndjson"))
    assert.are.equal(1, #recs)
    assert.are.equal("/users/1", recs[1].path)
    -- "Each failing route is a failed test whose text names the capture
    -- lines to look at."
    assert.is_true(docs.says(DOC, CI, "Each failing route is a failed test "
      .. "whose text names the capture lines to look at."))
    local parsed = junit(dir)
    assert.truthy(parsed:find("^testsuites 2 1\n"), parsed)
    assert.truthy(parsed:find("GET /users/:id: capture.ndjson:1: GET "
                              .. "/users/1: differs in", 1, true), parsed)
    -- "each fixture is a pair `shadowd diff` reads"
    local p = io.popen(("ls -1 '%s/replay-fixtures'"):format(dir))
    local fixtures = {}
    for name in p:lines() do fixtures[#fixtures + 1] = name end
    p:close()
    assert.are.equal(1, #fixtures)
    local fx = dir .. "/replay-fixtures/" .. fixtures[1]
    local dcode, dout, derr = process.run({ shadowd.binary(), "diff",
      "--config", dir .. "/shadow.lua", fx .. "/primary.http",
      fx .. "/candidate.http" })
    assert.are.equal(1, dcode, dout .. derr)
    assert.truthy(dout:find("/user/name", 1, true), dout)
  end)
end)
