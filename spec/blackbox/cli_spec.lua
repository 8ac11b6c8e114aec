-- The command line of the README: --check, --version, --help, unknown
-- options, and a clean stop on SIGTERM.
local process = require "support.process"
local shadowd = require "support.shadowd"
local nginx = require "support.nginx"
local port = require "support.port"
local cleanup = require "support.cleanup"

describe("shadowd's command line", function()
  local dir
  setup(function() dir = process.tmpdir("shadow-cli") end)
  teardown(function() process.rmdir(dir) end)

  local function run(...)
    local code, out, err = process.run({ shadowd.binary(), ... }, nil, 30)
    return code, out .. err
  end

  local function write(name, text)
    local path = dir .. "/" .. name
    process.write_file(path, text)
    return path
  end

  it("prints its version", function()
    local code, out = run("--version")
    assert.are.equal(0, code)
    assert.matches("%d+%.%d+%.%d+", out)
  end)

  it("prints its usage with --help", function()
    local code, out = run("--help")
    assert.are.equal(0, code)
    for _, opt in ipairs({ "--config", "--listen", "--admin", "--check" }) do
      assert.matches(opt, out, 1, true)
    end
  end)

  it("refuses an unknown option", function()
    local code, out = run("--no-such-option")
    assert.are_not.equal(0, code)
    assert.matches("no-such-option", out, 1, true)
  end)

  it("--check accepts a good config without serving", function()
    local listen = port.free()
    local path = write("good.lua", shadowd.config{
      listen = "127.0.0.1:" .. listen, admin = "127.0.0.1:" .. port.free(),
      primary = "http://127.0.0.1:" .. port.free(),
      candidate = "http://127.0.0.1:" .. port.free(),
      rate = 0.1, mirror_methods = { "GET", "HEAD" },
      limits = { header_bytes = 65536, body_bytes = 8 * 2^20 } })
    local code, out = run("--check", "--config", path)
    assert.are.equal(0, code, out)
    assert.is_false(port.accepts(listen))
  end)

  it("--check names file:line of a syntax error", function()
    local path = write("syntax.lua", table.concat({
      'local shadow = require "shadow"',
      "return {",
      '  primary = shadow.http("http://127.0.0.1:1", { timeout_ms = 100 }),',
      "  sample = { rate = 0.5 ,, },",
      "}" }, "\n"))
    local code, out = run("--check", "--config", path)
    assert.are_not.equal(0, code)
    assert.matches("syntax.lua:4", out, 1, true)
  end)

  it("--check names file:line of an error raised by the script", function()
    local path = write("raises.lua", table.concat({
      'local shadow = require "shadow"',
      "",
      'error("no backends today")' }, "\n"))
    local code, out = run("--check", "--config", path)
    assert.are_not.equal(0, code)
    assert.matches("raises.lua:3", out, 1, true)
    assert.matches("no backends today", out, 1, true)
  end)

  -- The URL grammar and the options' ranges live in shadowd, once: a
  -- shadow.http descriptor and a plain URL string are refused alike,
  -- naming the field.
  local BAD_BACKENDS = {
    { 'shadow.http("ftp://x")', "expected http" },
    { '"127.0.0.1:8080"', "expected http" },
    { 'shadow.http("http://")', "no host" },
    { 'shadow.http("http://:8080")', "no host" },
    { 'shadow.http("http://x:0")', "bad port" },
    { '"http://x:65536"', "bad port" },
    { 'shadow.http("http://x:80a")', "unexpected" },
    { 'shadow.http("http://x/a b")', "base path" },
    { 'shadow.http("http://x/a?q=1")', "base path" },
    { 'shadow.http("http://x", { timeout_ms = 0 })', "timeout_ms" },
    { 'shadow.http("http://x", { timeout_ms = "5" })', "timeout_ms" },
    { 'shadow.http("http://x", { connect_timeout_ms = -1 })',
      "connect_timeout_ms" },
    { 'shadow.http("http://x", { read_timeout_ms = 0 })', "read_timeout_ms" },
    { 'shadow.http("http://x", { host = 7 })', "host" },
    { 'shadow.http("http://x", { timeout = 5 })', "unknown field primary.timeout" },
  }
  for _, case in ipairs(BAD_BACKENDS) do
    it("--check refuses primary = " .. case[1], function()
      local path = write("bad-backend.lua", 'local shadow = require "shadow"\n'
        .. "return { primary = " .. case[1] .. " }\n")
      local code, out = run("--check", "--config", path)
      assert.are_not.equal(0, code, out)
      assert.matches("primary", out, 1, true)
      assert.matches(case[2], out, 1, true)
    end)
  end

  it("--check refuses a config without a primary", function()
    local path = write("noprimary.lua",
      'return { listen = "127.0.0.1:1", sample = { rate = 1 } }\n')
    local code, out = run("--check", "--config", path)
    assert.are_not.equal(0, code)
    assert.matches("primary", out, 1, true)
  end)

  it("--check refuses a missing file", function()
    local code, out = run("--check", "--config", dir .. "/absent.lua")
    assert.are_not.equal(0, code)
    assert.matches("absent.lua", out, 1, true)
  end)
end)

describe("shadowd on SIGTERM", function()
  it("exits 0 with no sanitizer report", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{
      servers = { p = "location / { return 200; }" } })
    local d = stop.add(shadowd.start{ primary = ng:url("p"),
                                      candidate = ng:url("p") })
    assert(require("support.http").get(d.port, "/", { ["x-user-id"] = "x" }))
    d:wait_totals("compared", 1)
    local how, code = d:stop(10)
    local log = d:log()
    assert.are.equal("exited", how, log)
    assert.are.equal(0, code, log)
    assert.is_nil(log:find("Sanitizer", 1, true), log)
    assert.is_nil(log:find("runtime error:", 1, true), log)
  end)
end)

describe("the examples", function()
  local shadowd_ = require "support.shadowd"
  local process_ = require "support.process"
  for _, name in ipairs({ "demo.lua", "shadow.lua" }) do
    it("examples/" .. name .. " passes --check", function()
      local code, out, err = process_.run({ shadowd_.binary(), "--check",
                                            "--config", "examples/" .. name })
      assert.are.equal(0, code, out .. err)
      assert.truthy(out:find("is valid", 1, true), out)
    end)
  end

  it("shadow.lua's summary names both backends, and the candidate's TLS",
     function()
    local code, out = process_.run({ shadowd_.binary(), "--check",
                                     "--config", "examples/shadow.lua" })
    assert.are.equal(0, code, out)
    assert.matches("\n  primary    http://127%.0%.0%.1:8081 %(connect", out)
    assert.matches("\n  candidate  https://127%.0%.0%.1:8443 %(.-%); tls "
                   .. "verified against the system CAs, name "
                   .. "candidate%.internal%.example\n", out)
    assert.matches("\n  secondary  http://127%.0%.0%.1:8082 %(.-%); rate 0%.02, "
                   .. "noise classed at confidence 0%.99 after 100 samples\n", out)
  end)
end)

describe("the diff rules", function()
  local shadowd_ = require "support.shadowd"
  local process_ = require "support.process"
  require "support.env" -- puts the build's libshadow on package.cpath
  local shadow = require "shadow"
  -- One reader (shadow_diff_opts_parse) checks them for the daemon's
  -- config and for shadow.diff: the same bad rule, the same words.
  local BAD = {
    { ignore = { json = { "no-slash" } } },
    { ignore = { headers = { "bad name" } } },
    { ignore = { header = {} } },
    { arrays = { ["/a"] = "sorted" } },
    { arrays = { ["/a"] = { key = "" } } },
    { tolerance = { ["/a"] = -1 } },
  }
  local function lua_of(v)
    if type(v) ~= "table" then return ("%q"):format(v) end
    local parts = {}
    for k, x in pairs(v) do
      local key = type(k) == "number" and "" or ("[%q] = "):format(k)
      parts[#parts + 1] = key .. lua_of(x)
    end
    return "{ " .. table.concat(parts, ", ") .. " }"
  end
  for i, rules in ipairs(BAD) do
    it("are refused alike by --check and shadow.diff (" .. i .. ")", function()
      local ok, ffi_err = pcall(shadow.diff, {}, {}, rules)
      assert.is_false(ok)
      local why = ffi_err:match("bad options: (.*)$")
      assert.is_not_nil(why, ffi_err)
      local conf = os.tmpname()
      local f = assert(io.open(conf, "w"))
      local body = lua_of(rules):sub(3, -3) -- the members, unbraced
      f:write('local shadow = require "shadow"\nreturn { primary = '
              .. 'shadow.http("http://127.0.0.1:1"), ' .. body .. ' }\n')
      f:close()
      local code, out, err = process_.run({ shadowd_.binary(), "--check",
                                            "--config", conf })
      os.remove(conf)
      assert.are.equal(1, code, out .. err)
      assert.matches("config: " .. why, out .. err, 1, true)
    end)
  end
end)
