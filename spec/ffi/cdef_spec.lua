-- The FFI boundary is checked, not trusted: lua/shadow/loader.lua's
-- ffi.cdef declares exactly the functions of src/shadow_ffi.h, in order and
-- with the same types; the ABI versions agree; and libshadow.so exports
-- those functions and nothing else of the engine (-fvisibility=hidden, the
-- ABI marked SHADOW_API).
local env = require "env"
local process = require "process"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The declarations of C text, one normalised string each: comments and
-- preprocessor lines gone, SHADOW_API dropped, whitespace collapsed.
local function declarations(text)
  text = text:gsub("/%*.-%*/", " "):gsub("\n%s*#[^\n]*", "\n")
  local out = {}
  for decl in text:gmatch("([^;]+);") do
    decl = decl:gsub("SHADOW_API", " "):gsub("%s+", " ")
      :gsub("^ ", ""):gsub(" $", ""):gsub(" ?([%(%)%*,]) ?", "%1")
    if decl:find("(", 1, true) and not decl:find("^typedef") then
      out[#out + 1] = decl
    end
  end
  return out
end

local function name_of(decl) return decl:match("([%w_]+)%(") end

local function first_difference(a, b)
  for i = 1, math.max(#a, #b) do
    if a[i] ~= b[i] then
      return ("declaration %d:\n  header: %s\n  cdef:   %s"):format(
        i, tostring(a[i]), tostring(b[i]))
    end
  end
end

local header = read("src/shadow_ffi.h")
local loader = read("lua/shadow/loader.lua")
local cdef = assert(loader:match("local CDEF = %[%[(.-)%]%]"))

describe("the FFI boundary", function()
  it("declares in the cdef exactly what src/shadow_ffi.h declares", function()
    local h, c = declarations(header), declarations(cdef)
    assert.is_true(#h > 20, "too few declarations found in the header")
    assert.is_nil(first_difference(h, c))
  end)

  it("notices a header and a cdef that disagree", function()
    -- The check itself must fail on a changed type, a dropped function and
    -- a changed order, or the spec above proves nothing.
    local h = declarations(header)
    local changed = declarations((header:gsub("size_t len, double keep",
                                              "int len, double keep", 1)))
    assert.is_not_nil(first_difference(h, changed))
    local dropped = declarations((header:gsub(
      "int shadow_ffi_record_body_end%(shadow_record_t %*r%);", "", 1)))
    assert.is_not_nil(first_difference(h, dropped))
    local swapped = { table.unpack or unpack(h) }
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert.is_not_nil(first_difference(h, swapped))
  end)

  it("names every opaque type of the cdef in the engine's headers", function()
    for t in cdef:gmatch("typedef struct ([%w_]+) [%w_]+;") do
      local found = false
      for _, f in ipairs({ "src/shadow_ffi.h", "src/engine/record.h",
                           "src/engine/diff.h", "src/engine/ring.h" }) do
        if read(f):find("struct " .. t, 1, true) then found = true end
      end
      assert.is_true(found, t .. " is in no engine header")
    end
  end)

  it("agrees on the ABI version", function()
    local hv = header:match("#define SHADOW_ABI_VERSION (%d+)")
    local lv = loader:match("local ABI_VERSION = (%d+)")
    assert.is_not_nil(hv)
    assert.are.equal(hv, lv)
  end)

  it("exports from libshadow.so the ABI and nothing else", function()
    local code, out = process.run({ "nm", "-D", "--defined-only", env.libshadow })
    assert.are.equal(0, code, out)
    local exported = {}
    for kind, sym in out:gmatch("%x+ (%a) ([%w_%.@]+)") do
      -- Text symbols only; _init/_fini and compiler or sanitizer helpers
      -- (leading underscore) are the toolchain's, not ours.
      if (kind == "T" or kind == "W") and not sym:find("^_") then
        exported[#exported + 1] = sym
      end
    end
    table.sort(exported)
    local abi = {}
    for _, d in ipairs(declarations(header)) do abi[#abi + 1] = name_of(d) end
    table.sort(abi)
    assert.are.same(abi, exported)
  end)
end)
