-- shadow.redis builds the fleet store's descriptor without the C library.
describe("shadow.redis", function()
  local redis = require("shadow").redis

  it("returns a plain descriptor: kind, url and the options as given",
     function()
    assert.same({ kind = "redis", url = "redis://127.0.0.1:6379/0" },
                redis("redis://127.0.0.1:6379/0"))
    assert.same({ kind = "redis", url = "rediss://h:1/2", prefix = "p",
                  flush_ms = 500, tls = { ca_file = "ca.pem" } },
                redis("rediss://h:1/2", { prefix = "p", flush_ms = 500,
                                          tls = { ca_file = "ca.pem" } }))
    assert.same({ kind = "redis", url = "redis://x" },
                redis("redis://x", { kind = "http", url = "redis://y" }))
  end)

  it("refuses what is not a URL string or an options table, at the "
     .. "caller's line", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() redis(6379) end)
    assert.is_false(ok)
    assert.matches("redis_spec.lua:" .. line .. ": shadow.redis: url must "
                   .. "be a string", err, 1, true)
    ok, err = pcall(redis, "redis://x", "fast")
    assert.is_false(ok)
    assert.matches("opts must be a table", err, 1, true)
  end)
end)
