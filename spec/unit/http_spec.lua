-- shadow.http builds backend descriptors without the C library.
local sub = require "sub"

describe("shadow.http", function()
  local http = require("shadow").http

  it("returns a plain descriptor: kind, url and the options as given",
     function()
    assert.same({ kind = "http", url = "http://127.0.0.1:8081" },
      http("http://127.0.0.1:8081"))
    local d = http("http://backend.internal:80/api/v2", { timeout_ms = 250,
      connect_timeout_ms = 50, read_timeout_ms = 1000, max_connections = 8,
      max_idle = 4, host = "api.example" })
    assert.same({ kind = "http", url = "http://backend.internal:80/api/v2",
      timeout_ms = 250, connect_timeout_ms = 50, read_timeout_ms = 1000,
      max_connections = 8, max_idle = 4, host = "api.example" }, d)
    -- kind and url are the constructor's, whatever opts say.
    assert.same({ kind = "http", url = "http://x" },
                http("http://x", { kind = "lua", url = "http://y" }))
  end)

  it("refuses what is not a URL string or an options table, at the "
     .. "caller's line", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() http(42) end)
    assert.is_false(ok)
    assert.matches("http_spec.lua:" .. line .. ": shadow.http: url must be "
                   .. "a string", err, 1, true)
    ok, err = pcall(http, "http://x", "fast")
    assert.is_false(ok)
    assert.matches("opts must be a table", err, 1, true)
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
