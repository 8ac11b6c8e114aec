-- Replay as a CI job reads it: shadowd captures exchanges from real nginx
-- backends, then `shadowd replay --junit` is run against a candidate with
-- a known bug and against a dead port, and the JUnit XML is read back by
-- a real XML parser (python3's xml.etree.ElementTree): test suites, test
-- cases and failures counted, every failure naming its capture file:line
-- (and that line holds the exchange). A body key with a control byte,
-- "]]>", quotes and markup goes through as a field name. A replay that
-- compared nothing says so, exits 2, and prints no verdict.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"
local port = require "support.port"
local process = require "support.process"

-- BUGGY: the candidate upper-cases the name of users whose id is a
-- multiple of 5, and answers /api/odd/3 with a hostile key changed.
local function backend(buggy)
  return ([==[
    location /api/users/ { content_by_lua_block {
      local id = tonumber(ngx.var.uri:match("(%%d+)$"))
      local name = "user " .. id
      if %s and id %% 5 == 0 then name = name:upper() end
      ngx.header["content-type"] = "application/json"
      ngx.print('{"id":' .. id .. ',"name":"' .. name .. '"}')
    } }
    location /api/odd/ { content_by_lua_block {
      local id = tonumber(ngx.var.uri:match("(%%d+)$"))
      local v = (%s and id == 3) and 2 or 1
      ngx.header["content-type"] = "application/json"
      ngx.print('{"k\\u0001]]>\\"<&\'":' .. v .. ',"id":' .. id .. '}')
    } }
    location /ok/ { content_by_lua_block {
      ngx.header["content-type"] = "text/plain"
      ngx.print("fine " .. ngx.var.uri)
    } }
  ]==]):format(buggy and "true" or "false", buggy and "true" or "false")
end

local N_USERS, N_ODD, N_OK = 20, 6, 4
local TOTAL = N_USERS + N_ODD + N_OK
local DIVERGING = math.floor(N_USERS / 5) + 1

local function config_text(addr, primary, candidate, capture_path)
  return table.concat({
    "return {",
    ("  listen = %q, admin = %q,"):format(addr.listen, addr.admin),
    ("  primary = %q, candidate = %q,"):format(primary, candidate),
    "  sample = { rate = 0 },",
    "  route = function(req) return req.method .. ' ' .. req.path:gsub('/%d+', '/:id') end,",
    "  slo = { max_divergence_rate = 0.01, min_samples = 10 },",
    capture_path and ("  capture = { file = %q, rate = 1 },"):format(capture_path) or "",
    "}",
  }, "\n") .. "\n"
end

-- What python3's ElementTree reads in a JUnit file, as JSON.
local PARSE = [[
import json, sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = root.findall("testsuite") if root.tag == "testsuites" else [root]
out = {"root": root.tag, "suites": []}
for s in suites:
    cases = []
    for c in s.findall("testcase"):
        f = c.find("failure")
        e = c.find("error")
        cases.append({"name": c.get("name"), "classname": c.get("classname"),
                      "file": c.get("file"), "line": c.get("line"),
                      "failure": None if f is None else
                        {"message": f.get("message"), "type": f.get("type"),
                         "text": f.text or ""},
                      "error": None if e is None else e.get("message"),
                      "skipped": c.find("skipped") is not None})
    out["suites"].append({"name": s.get("name"), "tests": int(s.get("tests")),
                          "failures": int(s.get("failures")),
                          "errors": int(s.get("errors")),
                          "properties": {p.get("name"): p.get("value")
                                         for p in s.iter("property")},
                          "cases": cases})
print(json.dumps(out))
]]

-- JSON's null as Lua's nil, so a case without a failure has none.
local function strip_nulls(v)
  if type(v) ~= "table" then return v end
  for k, x in pairs(v) do
    if x == json.null then v[k] = nil else strip_nulls(x) end
  end
  return v
end

local function read_junit(path)
  local code, out, err = process.run({ "python3", "-c", PARSE, path }, nil, 30)
  assert.equal(0, code, "python3 could not parse " .. path .. ": " .. err)
  return strip_nulls(json.decode(out))
end

local function run(args)
  local argv = { shadowd.binary() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return process.run(argv, nil, 120)
end

describe("replay for CI", function()
  local stop, ng, dir, capture, lines
  setup(function()
    stop = cleanup.new()
    ng = stop.add(nginx.start{ servers = { primary = backend(false),
                                           bad = backend(true) } })
    dir = process.tmpdir("shadow-replay-ci")
    stop.add(function() process.rmdir(dir) end)
    capture = dir .. "/capture.ndjson"
    local d = shadowd.start{ text = function(addr)
      return config_text(addr, ng:url("primary"), ng:url("primary"), capture)
    end }
    stop.add(d)
    local conn = assert(http.connect(d.port))
    local function get(path)
      assert.equal(200, assert(conn:request{ path = path }).status)
    end
    for i = 1, N_USERS do get("/api/users/" .. i) end
    for i = 1, N_ODD do get("/api/odd/" .. i) end
    for i = 1, N_OK do get("/ok/" .. i) end
    conn:close()
    port.wait_until(function()
      local s = d:stats()
      return s.capture and s.capture.sink.lines >= TOTAL
    end, 20, 0.05)
    d:stop()
    lines = process.read_lines(capture)
    assert.equal(TOTAL, #lines)
  end)
  teardown(function() stop.run() end)

  -- The capture line a failure names holds that exchange's target.
  local function assert_line_holds(line, target)
    local x = json.decode(assert(lines[line], "no capture line " .. line))
    assert.equal(target, x.request.target)
  end

  it("writes one test case per route, each failure listing file:line and "
     .. "the fields", function()
    local junit = dir .. "/routes.xml"
    local code, _, err = run{ "replay", "--candidate", ng:url("bad"),
                              "--quiet", "--out", "/dev/null",
                              "--junit", junit, capture }
    assert.equal(1, code, err)
    local x = read_junit(junit)
    assert.equal("testsuites", x.root)
    assert.equal(1, #x.suites)
    local s = x.suites[1]
    assert.equal(3, s.tests)
    assert.equal(2, s.failures)
    assert.equal(0, s.errors)
    assert.equal(3, #s.cases)
    assert.equal(ng:url("bad"), s.properties.candidate)
    assert.equal("1", s.properties.exit)
    local by = {}
    for _, c in ipairs(s.cases) do by[c.name] = c end
    assert.is_nil(by["GET /ok/:id"].failure)
    local users = assert(by["GET /api/users/:id"].failure)
    assert.equal("4 of 20 exchanges diverged or failed", users.message)
    local n = 0
    for file, line, target, fields in
        users.text:gmatch("([^\n]+):(%d+): GET (%S+): differs in ([^\n]+)") do
      n = n + 1
      assert.equal(capture, file)
      assert_line_holds(tonumber(line), target)
      assert.matches("/api/users/%d*[05]$", target)
      assert.equal("body:/name", fields)
    end
    assert.equal(4, n, users.text)
    -- The hostile key arrives as it was, escaped for XML and read back.
    local odd = assert(by["GET /api/odd/:id"].failure)
    assert.truthy(odd.text:find('differs in body:/k\\x01]]>"<&\'', 1, true),
                  odd.text)
  end)

  it("writes one test case per exchange with --junit-per exchange",
     function()
    local junit = dir .. "/exchanges.xml"
    local code, _, err = run{ "replay", "--candidate", ng:url("bad"),
                              "--quiet", "--out", "/dev/null", "--junit",
                              junit, "--junit-per", "exchange", capture }
    assert.equal(1, code, err)
    local s = read_junit(junit).suites[1]
    assert.equal(TOTAL, s.tests)
    assert.equal(DIVERGING, s.failures)
    assert.equal(TOTAL, #s.cases)
    local failed = 0
    for _, c in ipairs(s.cases) do
      assert.equal(capture, c.file)
      local target = c.name:match("^GET (%S+) %(")
      assert_line_holds(tonumber(c.line), target)
      assert.truthy(c.name:find(capture .. ":" .. c.line, 1, true), c.name)
      if c.failure then
        failed = failed + 1
        assert.equal("divergence", c.failure.type)
        assert.truthy(c.failure.text:find(capture .. ":" .. c.line .. ": GET "
                                          .. target, 1, true), c.failure.text)
      end
    end
    assert.equal(DIVERGING, failed)
  end)

  it("says a replay against a dead candidate compared nothing: exit 2, no "
     .. "verdict, every failure by file:line", function()
    local dead = "http://127.0.0.1:" .. port.free()
    local junit, summary = dir .. "/dead.xml", dir .. "/dead.json"
    local code, _, err = run{ "replay", "--candidate", dead, "--quiet",
                              "--summary", summary, "--junit", junit,
                              "--junit-per", "exchange", capture }
    assert.equal(2, code, err)
    assert.matches("nothing was compared", err, 1, true)
    assert.matches("the candidate answered none of the exchanges", err, 1,
                   true)
    assert.is_nil(err:find("lower bound", 1, true), err)
    assert.is_nil(err:find("hold", 1, true), err)
    assert.is_nil(err:find("promote", 1, true), err)
    assert.matches(capture .. ":1: GET /api/users/1: ", err, 1, true)
    local sj = json.decode(assert(process.read_file(summary)))
    assert.equal(json.null, sj.verdict)
    assert.equal(2, sj.exit)
    assert.equal(10, #sj.failed_exchanges)
    assert.equal(capture, sj.failed_exchanges[1].file)
    local s = read_junit(junit).suites[1]
    assert.equal(TOTAL + 1, s.tests)
    assert.equal(TOTAL, s.failures)
    assert.equal(1, s.errors)
    assert.equal("none", s.properties.verdict)
    local errors = 0
    for _, c in ipairs(s.cases) do
      if c.error then
        errors = errors + 1
        assert.matches("candidate answered none", c.error, 1, true)
      else
        assert.equal("candidate_error", c.failure.type)
        assert.truthy(c.failure.text:find(capture .. ":" .. c.line, 1, true))
      end
    end
    assert.equal(1, errors)
  end)

  it("refuses a --junit-per it does not know, and an unwritable --junit",
     function()
    local code, _, err = run{ "replay", "--candidate", ng:url("bad"),
                              "--junit", dir .. "/x.xml", "--junit-per",
                              "suite", capture }
    assert.equal(2, code)
    assert.matches("--junit-per takes route or exchange", err, 1, true)
    code, _, err = run{ "replay", "--candidate", ng:url("bad"), "--quiet",
                        "--out", "/dev/null", "--junit",
                        dir .. "/no/such/dir/x.xml", capture }
    assert.equal(2, code)
    assert.matches("--junit " .. dir .. "/no/such/dir/x.xml", err, 1, true)
  end)
end)
