-- shadow.http builds backend descriptors without the C library.
local sub = require "sub"

describe("shadow.http", function()
  local http = require("shadow").http

  it("returns a plain descriptor with defaults", function()
    assert.same({ kind = "http", url = "http://127.0.0.1:8081",
      timeout_ms = 5000, connect_timeout_ms = 1000 },
      http("http://127.0.0.1:8081"))
  end)

  it("keeps the options it is given", function()
    local d = http("http://backend.internal:80/api/v2", { timeout_ms = 250,
      connect_timeout_ms = 50, max_connections = 8, host = "api.example" })
    assert.same({ kind = "http", url = "http://backend.internal:80/api/v2",
      timeout_ms = 250, connect_timeout_ms = 50, max_connections = 8,
      host = "api.example" }, d)
  end)

  it("accepts hosts without a port and IPv6 literals", function()
    assert.equal("http://localhost", http("http://localhost").url)
    assert.equal("http://[::1]:8080/", http("http://[::1]:8080/").url)
  end)

  local bad = {
    { "https://x:1", "https is not supported" },
    { "ftp://x", "expected http://host" },
    { "127.0.0.1:8080", "expected http://host" },
    { "http://", "host" },
    { "http://:8080", "host" },
    { "http://x:0", "port" },
    { "http://x:65536", "port" },
    { "http://x:80a", "port" },
    { "http://x/a b", "base path" },
    { "http://x/a?q=1", "base path" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1], function()
      local ok, err = pcall(http, case[1])
      assert.is_false(ok)
      assert.matches("shadow.http: ", err, 1, true)
      assert.matches(case[2], err, 1, true)
    end)
  end

  it("refuses bad options and names them", function()
    for _, o in ipairs({ { timeout_ms = 0 }, { timeout_ms = "5" },
        { connect_timeout_ms = -1 }, { max_connections = 1.5 },
        { host = 7 } }) do
      local ok, err = pcall(http, "http://x", o)
      assert.is_false(ok)
      local name = next(o)
      assert.matches(name, err, 1, true)
    end
    assert.has_error(function() http(42) end)
  end)

  it("points its errors at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() http("nope") end)
    assert.is_false(ok)
    assert.matches("http_spec.lua:" .. line .. ":", err, 1, true)
  end)

  it("works on a machine without libshadow", function()
    local rc, out = sub.run([[
      package.cpath = "/nonexistent/?.so;" .. package.cpath
      local shadow = require "shadow"
      local d = shadow.http("http://127.0.0.1:1")
      print("url=" .. d.url)
      local ok, err = pcall(shadow.sampled, "k", 0.5)
      print("sampled_ok=" .. tostring(ok))
      print(err)
    ]], { LD_LIBRARY_PATH = "/nonexistent" })
    assert.equal(0, rc, out)
    assert.matches("url=http://127.0.0.1:1", out, 1, true)
    assert.matches("sampled_ok=false", out, 1, true)
    assert.matches("libshadow not found", out, 1, true)
  end)
end)
