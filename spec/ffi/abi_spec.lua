-- The module refuses a library with another ABI, and uses the one shadowd
-- presets in package.loaded["shadow.clib"].
local env = require "env"
local sub = require "sub"

describe("loading libshadow", function()
  it("refuses a library that reports another ABI version", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local f = assert(io.open(dir .. "/abi.c", "w"))
    f:write("int shadow_abi_version(void) { return 999; }\n")
    f:close()
    assert.equal(0, os.execute("cc -shared -fPIC -o " .. dir
      .. "/libshadow.so " .. dir .. "/abi.c"))
    local rc, out = sub.run([[
      package.cpath = "]] .. dir .. [[/?.so;" .. package.cpath
      local shadow = require "shadow"
      local ok, err = pcall(shadow.diff, {}, {})
      print("ok=" .. tostring(ok))
      print(err)
    ]])
    os.execute("rm -rf " .. dir)
    assert.equal(0, rc, out)
    assert.matches("ok=false", out, 1, true)
    assert.matches("ABI version mismatch", out, 1, true)
    assert.matches("has ABI 999", out, 1, true)
  end)

  it("uses package.loaded['shadow.clib'] when it is set", function()
    local rc, out = sub.run([[
      local ffi = require "ffi"
      package.cpath = "/nonexistent/?.so;" .. package.cpath
      package.loaded["shadow.clib"] = ffi.load("]] .. env.libshadow .. [[")
      local shadow = require "shadow"
      print("sampled=" .. tostring(shadow.sampled("k", 1)))
    ]])
    assert.equal(0, rc, out)
    assert.matches("sampled=true", out, 1, true)
  end)

  it("finds libshadow on package.cpath", function()
    local rc, out = sub.run([[
      package.cpath = "]] .. env.build_dir .. [[/?.so;" .. package.cpath
      local shadow = require "shadow"
      print("sampled=" .. tostring(shadow.sampled("k", 0)))
    ]], { LD_LIBRARY_PATH = "/nonexistent" })
    assert.equal(0, rc, out)
    assert.matches("sampled=false", out, 1, true)
  end)
end)
