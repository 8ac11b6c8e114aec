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
-- config as shadow.lua and the walkthrough's capture; every file it
-- names is written, and the JUnit file parses. The spec fails when a
-- text it replaces is no longer in the doc.
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
    local sect = docs.section(DOC, WALK)
    assert.truthy(sect:find("prints its summary to stderr and exits 1:", 1,
                            true), sect)
    assert.are.equal(1, r.code, r.out .. r.err .. log)
    local sample = docs.block(DOC, WALK, 1, "")
    assert.are.same(squash(sample), squash(r.err))

    -- The three requests were captured, and the records name their line.
    local lines = process.read_lines(r.scratch .. "/capture.ndjson")
    assert.are.equal(3, #lines, log)
    local recs = json.decode_lines(process.read_file(r.scratch
                                                     .. "/divergences.ndjson"))
    assert.truthy(sect:find("`divergences.ndjson` holds the three records",
                            1, true))
    assert.are.equal(3, #recs)
    for _, rec in ipairs(recs) do
      assert.are.equal("capture.ndjson", rec.replay.file)
      local captured = json.decode(lines[rec.replay.line])
      assert.are.equal(captured.id, rec.replay.capture_id)
      assert.are.equal(captured.request.target, rec.path)
    end
  end)

  it("A CI recipe: runs as written, with nginx as the build under test",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local r = walkthrough(stop)
    assert.are.equal(1, r.code, r.err)

    -- The stand-in: my-service is v1 served by nginx, so the replay of
    -- the demo's capture finds nothing diverged.
    local ci_port = port.free()
    local script = docs.substitute(docs.block(DOC, CI, 1, "sh"), {
      { "127.0.0.1:8081", "127.0.0.1:" .. ci_port },
    }, DOC .. " (" .. CI .. ")")
    local dir = r.scratch
    local ng_conf = table.concat({
      "load_module " .. nginx.modules .. "/ndk_http_module.so;",
      "load_module " .. nginx.modules .. "/ngx_http_lua_module.so;",
      "master_process off; daemon off; pid nginx.pid;",
      "error_log stderr warn;",
      "events { worker_connections 64; }",
      "http { access_log off;",
      "  client_body_temp_path tmp; proxy_temp_path tmp;",
      "  fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;",
      "  server { listen LISTEN;",
      -- v1 sends no Server header: neither does its stand-in.
      "    header_filter_by_lua_block { ngx.header['server'] = nil }",
      [[    location = /health { return 200 "ok\n"; }
    location ~ ^/users/(\d+)$ { content_by_lua_block {
      local users = { ["1"] = '{"user":{"id":1,"name":"Ann","email":"ann@example.com","tags":["admin"]},"meta":{"generated_at":0}}',
                      ["7"] = '{"user":{"id":7,"name":"Eve","email":"eve@example.com","tags":["beta","ops"]},"meta":{"generated_at":0}}' }
      ngx.header["content-type"] = "application/json"
      local u = users[ngx.var[1] ]
      if not u then ngx.status = 404; ngx.print('{"error":"no such user"}') return end
      ngx.header["cache-control"] = "max-age=60"
      ngx.print(u)
    } }
    location = /search { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print('{"hits":[{"id":1,"name":"Ann"},{"id":2,"name":"Bob"},{"id":7,"name":"Eve"}],"total":3}')
    } }
  } }
]] }, "\n")
    process.write_file(dir .. "/my-service.conf", ng_conf)
    os.execute(("mkdir -p '%s/build' '%s/bin' '%s/tmp'"):format(dir, dir,
                                                                 dir))
    -- ./build/my-service --listen ADDR: nginx in the foreground on ADDR.
    process.write_file(dir .. "/build/my-service", table.concat({
      "#!/bin/sh",
      '[ "$1" = --listen ] || exit 2',
      'sed "s/LISTEN/$2/" my-service.conf > my-service.run.conf',
      'exec ' .. nginx.binary .. ' -p "$PWD/" -c "$PWD/my-service.run.conf"'
        .. ' -e /dev/stderr',
    }, "\n") .. "\n")
    os.execute(("chmod +x '%s/build/my-service'"):format(dir))
    os.execute(("ln -s '%s' '%s/bin/shadowd'"):format(shadowd.binary(), dir))
    process.write_file(dir .. "/shadow.lua", docs.read("examples/demo.lua"))

    local code, out, err, left = docs.sh(script, dir, { env = {
      PATH = dir .. "/bin:" .. os.getenv("PATH") } })
    assert.is_nil(left, left)
    -- 0 when nothing diverged.
    assert.truthy(docs.section(DOC, CI):find(
      "0 when nothing diverged", 1, true))
    assert.are.equal(0, code, out .. err)
    assert.truthy(err:find("nothing diverged", 1, true) or err == "", err)
    assert.is_nil(port.accepts(ci_port) or nil, "my-service still runs")

    local summary = json.decode(process.read_file(dir
                                                  .. "/replay-summary.json"))
    assert.are.equal(0, summary.exit_code or summary.exit, json.encode(summary))
    assert.are.equal("", process.read_file(dir .. "/divergences.ndjson"))
    -- The JUnit file, read back by a real XML parser.
    local pcode, pout, perr = process.run({ "python3", "-c", [[
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = root.findall("./testsuite/testcase")
fails = [c for c in cases if c.find("failure") is not None]
print(root.tag, len(cases), len(fails))
]], dir .. "/replay-junit.xml" })
    assert.are.equal(0, pcode, perr)
    assert.are.equal("testsuites 2 0\n", pout)
  end)
end)
