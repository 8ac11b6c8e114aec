-- The property of DESIGN.md: applying body.diffs as a JSON Patch to the
-- primary gives the candidate; a document against a reshuffled, respelled
-- copy of itself gives no diff. Thousands of random pairs through the FFI.
require "env"
local cjson = require "cjson"
local gen = require "jsongen"
local patch = require "patch"
local shadow = require "shadow"

local SEED = tonumber(os.getenv("SHADOW_SEED")) or os.time()
local PAIRS = tonumber(os.getenv("SHADOW_PAIRS")) or 3000
local JSON = { ["content-type"] = "application/json" }
-- Values whole, so the patch carries everything it needs.
local OPTS = { value_max = 0 }

local function body(text) return { status = 200, headers = JSON, body = text } end

describe("JSON diffs as JSON Patch (seed " .. SEED .. ")", function()
  math.randomseed(SEED)

  it("patching the primary with the diffs gives the candidate", function()
    local changed = 0
    for n = 1, PAIRS do
      local tree = gen.doc(4)
      local ptext = gen.write(tree)
      local ctext = gen.write(gen.mutate(tree, 4))
      local d = shadow.diff(body(ptext), body(ctext), OPTS)
      local want = cjson.decode(ctext)
      local got = cjson.decode(ptext)
      if d then
        changed = changed + 1
        assert.equal("json", d.body.kind, ptext .. "\n" .. ctext)
        assert.is_nil(d.truncated)
        local ok, res = pcall(patch.apply, got, d.body.diffs)
        assert(ok, string.format("pair %d: %s\nprimary   %s\ncandidate %s\n"
          .. "diffs %s", n, tostring(res), ptext, ctext,
          cjson.encode(d.body.diffs)))
        got = res
        local count = tonumber(d.body.summary:match("^(%d+) field"))
        assert.equal(#d.body.diffs, count)
      end
      assert(patch.equal(got, want), string.format("pair %d differs after "
        .. "patching\nprimary   %s\ncandidate %s\ndiffs %s", n, ptext, ctext,
        d and cjson.encode(d.body.diffs) or "none"))
    end
    -- The mutation changes most pairs: the property is not vacuous.
    assert.is_true(changed > PAIRS / 2, "only " .. changed .. " pairs differ")
  end)

  it("finds no diff against a reshuffled, respelled copy", function()
    for n = 1, PAIRS do
      local tree = gen.doc(4)
      local a, b = gen.write(tree), gen.write(gen.copy(tree))
      local d = shadow.diff(body(a), body(b))
      assert(d == nil, string.format("copy %d: %s\n%s\ndiffs %s", n, a, b,
        d and cjson.encode(d.body.diffs)))
    end
  end)
end)
