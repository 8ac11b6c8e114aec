-- The property docs/diff.md states: applying body.diffs as a JSON Patch to
-- the primary gives the candidate; a document against a reshuffled, respelled
-- copy of itself gives no diff. Thousands of random pairs through the FFI,
-- then arrays of up to 1000 elements with inserts, deletes and moves at
-- random places, where one such edit is at most two ops; and the rules for
-- repeated keys and for values cut short.
require "env"
local cjson = require "cjson"
local gen = require "jsongen"
local patch = require "patch"
local shadow = require "shadow"

local SEED = tonumber(os.getenv("SHADOW_SEED")) or os.time()
local PAIRS = tonumber(os.getenv("SHADOW_PAIRS")) or 3000
local ARRAYS = tonumber(os.getenv("SHADOW_ARRAY_PAIRS")) or 300
local JSON = { ["content-type"] = "application/json" }
-- Values whole, so the patch carries everything it needs.
local OPTS = { value_max = 0 }

local function body(text) return { status = 200, headers = JSON, body = text } end

-- Diffs two texts and patches the primary; returns the ops (none: {}).
local function check(ptext, ctext, what)
  local d = shadow.diff(body(ptext), body(ctext), OPTS)
  local want = cjson.decode(ctext)
  local got = cjson.decode(ptext)
  local diffs = {}
  if d then
    assert.equal("json", d.body.kind, ptext .. "\n" .. ctext)
    assert.is_nil(d.truncated)
    assert.is_nil(d.body.truncated)
    diffs = d.body.diffs
    for _, op in ipairs(diffs) do assert.is_nil(op.truncated) end
    local ok, res = pcall(patch.apply, got, diffs)
    assert(ok, string.format("%s: %s\nprimary   %s\ncandidate %s\n"
      .. "diffs %s", what, tostring(res), ptext, ctext, cjson.encode(diffs)))
    got = res
    local count = tonumber(d.body.summary:match("^(%d+) field"))
    assert.equal(#diffs, count)
  end
  assert(patch.equal(got, want), string.format("%s differs after "
    .. "patching\nprimary   %s\ncandidate %s\ndiffs %s", what, ptext, ctext,
    d and cjson.encode(diffs) or "none"))
  return diffs
end

-- Writes a tree of jsongen's shape the same way every time (keys sorted,
-- no spaces), so two documents share every byte they do not change.
local function plain(v)
  if v == gen.NULL then return "null" end
  if type(v) ~= "table" then return cjson.encode(v) end
  local parts = {}
  if v.kind == "array" then
    for i, x in ipairs(v.items) do parts[i] = plain(x) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v.map) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do
    parts[i] = cjson.encode(k) .. ":" .. plain(v.map[k])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- An element: mostly a record with an id, sometimes a small value (which
-- repeats, so alignment meets duplicates).
local function element(id)
  if math.random(3) == 1 then return gen.gen(1) end
  return { kind = "object", map = { id = id, name = "user " .. id,
    tags = gen.gen(1) } }
end

local function edit(items, kind, next_id)
  if kind == "insert" then
    table.insert(items, math.random(#items + 1), element(next_id))
    return true
  end
  if #items == 0 then return false end
  local i = math.random(#items)
  if kind == "delete" then
    table.remove(items, i)
  elseif kind == "move" then
    local v = table.remove(items, i)
    table.insert(items, math.random(#items + 1), v)
  else
    items[i] = gen.mutate(items[i], 2)
  end
  return true
end

describe("JSON diffs as JSON Patch (seed " .. SEED .. ")", function()
  math.randomseed(SEED)

  it("patching the primary with the diffs gives the candidate", function()
    local changed = 0
    for n = 1, PAIRS do
      local tree = gen.doc(4)
      local cand = gen.mutate(tree, 4)
      -- Re-spelled, and spelled alike (unchanged parts byte-identical).
      local diffs = check(gen.write(tree), gen.write(cand), "pair " .. n)
      check(plain(tree), plain(cand), "plain pair " .. n)
      if #diffs > 0 then changed = changed + 1 end
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

  it("aligns arrays: one insert, delete or move is at most two ops",
    function()
      local kinds = { "insert", "delete", "move" }
      local single, most = 0, 0
      for n = 1, ARRAYS do
        local items, next_id = {}, 1
        for i = 1, math.random(0, 1000) do
          items[i] = element(next_id)
          next_id = next_id + 1
        end
        local before = { kind = "object", map = { meta = gen.gen(1),
          items = { kind = "array", items = items } } }
        local copy = gen.copy(before)
        local citems = copy.map.items.items
        local one = math.random(2) == 1
        local did = false
        if one then
          did = edit(citems, kinds[math.random(3)], next_id)
        else
          local edits = { "insert", "delete", "move", "change" }
          for _ = 1, math.random(20) do
            edit(citems, edits[math.random(4)], next_id)
            next_id = next_id + 1
          end
        end
        local write = math.random(2) == 1 and plain or gen.write
        local diffs = check(write(before), write(copy), "array pair " .. n)
        if one and did then
          single = single + 1
          if #diffs > most then most = #diffs end
          assert(#diffs <= 2, string.format("array pair %d: one edit gave "
            .. "%d ops: %s", n, #diffs, cjson.encode(diffs)))
        end
      end
      assert.is_true(single > ARRAYS / 4, "only " .. single .. " single edits")
      assert.is_true(most >= 1, "no single edit was seen as a change")
    end)

  it("compares repeated keys as the last member wins", function()
    assert.is_nil(shadow.diff(body('{"a":1,"a":2}'), body('{"a":3,"a":2}')))
    local d = shadow.diff(body('{"a":2,"a":1}'), body('{"a":2}'))
    assert.same({ { op = "replace", path = "/a", primary = 1, candidate = 2 } },
      d.body.diffs)
    -- 100000 repeated keys that differ only in their last value.
    local p, c = {}, {}
    for i = 1, 100000 do
      p[i] = '"k":' .. i
      c[i] = '"k":' .. (i == 100000 and -1 or i + 1)
    end
    d = shadow.diff(body("{" .. table.concat(p, ",") .. "}"),
      body("{" .. table.concat(c, ",") .. "}"))
    assert.equal("1 field differs", d.body.summary)
    assert.same({ op = "replace", path = "/k", primary = 100000,
      candidate = -1 }, d.body.diffs[1])
  end)

  it("marks an op whose value was cut, and only that one", function()
    local long = string.rep("x", 300)
    local d = shadow.diff(body('{"s":"' .. long .. '","n":1}'),
      body('{"s":"y","n":2}'))
    assert.equal(2, #d.body.diffs)
    local cut, whole = d.body.diffs[1], d.body.diffs[2]
    assert.equal("/s", cut.path)
    assert.is_true(cut.truncated)
    assert.equal(string.rep("x", 256) .. "...(300 bytes)", cut.primary)
    assert.equal("/n", whole.path)
    assert.is_nil(whole.truncated)
    -- With values whole, the same pair is a complete patch.
    d = shadow.diff(body('{"s":"' .. long .. '","n":1}'),
      body('{"s":"y","n":2}'), OPTS)
    assert.is_nil(d.body.diffs[1].truncated)
  end)
end)
