-- The migration rules (rename, coerce, mask, time) through shadow.diff's
-- options, as a gateway or a Lua shadower uses them: each kind, its edge
-- cases, rules under array wildcards in every array mode, and each rule's
-- hit counter.
require "env"
local shadow = require "shadow"
local diff = require "shadow.diff"

local function body(text)
  return { status = 200, headers = { ["content-type"] = "application/json" },
           body = text }
end

-- The body ops of primary vs candidate under opts ({} when they agree).
local function ops(p, c, opts)
  local d = shadow.diff(body(p), body(c), opts)
  return d and d.body.diffs or {}
end

-- The rules that fired in the last diff, as a set.
local function hits()
  local set = {}
  for _, n in ipairs(diff.last_hits()) do set[n] = true end
  return set
end

describe("rename rules", function()
  local opts = { rename = { ["/user/email"] = "/user/email_address" } }

  it("compare the primary's member with the candidate's under its new name",
     function()
    assert.same({}, ops('{"user":{"email":"a@x","name":"Ann"}}',
                        '{"user":{"name":"Ann","email_address":"a@x"}}', opts))
    assert.same({ ["rename:/user/email"] = true }, hits())
    assert.same({ { op = "replace", path = "/user/email_address",
                    primary = "a@x", candidate = "b@x" } },
                ops('{"user":{"email":"a@x"}}',
                    '{"user":{"email_address":"b@x"}}', opts))
  end)

  it("report a candidate that kept the old name, even byte for byte",
     function()
    local same = '{"user":{"email":"a@x"}}'
    assert.same({ { op = "remove", path = "/user/email_address",
                    primary = "a@x" },
                  { op = "add", path = "/user/email", candidate = "a@x" } },
                ops(same, same, opts))
  end)

  it("do not overwrite a path the primary also has", function()
    assert.same({ { op = "remove", path = "/user/email", primary = "a" },
                  { op = "replace", path = "/user/email_address",
                    primary = "old", candidate = "a" } },
                ops('{"user":{"email":"a","email_address":"old"}}',
                    '{"user":{"email_address":"a"}}', opts))
    assert.same({}, hits())
  end)

  it("bind wildcards in order, under aligned, keyed and set arrays",
     function()
    local p = '{"items":[{"id":1,"mail":"a"},{"id":2,"mail":"b"}]}'
    local r = { rename = { ["/items/*/mail"] = "/items/*/email" } }
    assert.same({}, ops(p, '{"items":[{"id":1,"email":"a"},{"id":2,"email":"b"}]}', r))
    -- aligned: an inserted element is one add
    assert.same({ { op = "add", path = "/items/0",
                    candidate = { id = 0, email = "z" } } },
                ops(p, '{"items":[{"id":0,"email":"z"},{"id":1,"email":"a"},'
                       .. '{"id":2,"email":"b"}]}', r))
    -- (shadow.diff compiles an options table once: a new one each time)
    r = { rename = r.rename, arrays = { ["/items"] = { key = "id" } } }
    assert.same({ { op = "replace", path = "/items/0/email", primary = "a",
                    candidate = "A" } },
                ops(p, '{"items":[{"id":2,"email":"b"},{"id":1,"email":"A"}]}', r))
    r = { rename = r.rename, arrays = { ["/items"] = "set" } }
    assert.same({}, ops(p, '{"items":[{"id":2,"email":"b"},{"id":1,"email":"a"}]}', r))
  end)

  it("move a member into another object, creating it", function()
    assert.same({}, ops('{"email":"a","id":1}',
                        '{"id":1,"contact":{"email":"a"}}',
                        { rename = { ["/email"] = "/contact/email" } }))
  end)
end)

describe("coerce rules", function()
  local opts = { coerce = { ["/qty"] = "number", ["/flags/*"] = "boolean" } }

  it("read numbers and booleans held in strings", function()
    assert.same({}, ops('{"qty":"12","flags":{"a":"true"}}',
                        '{"qty":12,"flags":{"a":true}}', opts))
    assert.same({ ["coerce:/qty"] = true, ["coerce:/flags/*"] = true }, hits())
    assert.same({}, ops('{"qty":"1.50"}', '{"qty":1.5}', opts))
  end)

  it("still report a string that holds no number, or another one", function()
    assert.same({ { op = "replace", path = "/qty", primary = "abc",
                    candidate = 12 } }, ops('{"qty":"abc"}', '{"qty":12}', opts))
    assert.same({ { op = "replace", path = "/qty", primary = "12",
                    candidate = 13 } }, ops('{"qty":"12"}', '{"qty":13}', opts))
    assert.same({ { op = "replace", path = "/flags/a", primary = "yes",
                    candidate = true } },
                ops('{"flags":{"a":"yes"}}', '{"flags":{"a":true}}', opts))
  end)

  it("pair keyed array elements whose keys became strings", function()
    local r = { coerce = { ["/items/*/id"] = "number" },
                arrays = { ["/items"] = { key = "id" } } }
    assert.same({ { op = "replace", path = "/items/1/v", primary = 2,
                    candidate = 3 } },
                ops('{"items":[{"id":1,"v":1},{"id":2,"v":2}]}',
                    '{"items":[{"id":"2","v":3},{"id":"1","v":1}]}', r))
  end)
end)

describe("mask rules", function()
  local opts = { mask = { ["/id"] = "uuid", ["/trace"] = "hex",
                          ["/token"] = "%w+", ["/at"] = "iso8601",
                          ["/ts"] = "epoch" } }

  it("treat two values of the class as equal", function()
    assert.same({}, ops(
      '{"id":"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b","trace":"00ff","token":"abc",'
        .. '"at":"2026-01-01","ts":1}',
      '{"id":"D7C9A0B1-2E3F-4A5B-9C8D-7E6F5A4B3C2D","trace":"9a","token":"Z9",'
        .. '"at":"2026-01-02T03:04:05Z","ts":"17"}', opts))
    assert.same({ ["mask:/id"] = true, ["mask:/trace"] = true,
                  ["mask:/token"] = true, ["mask:/at"] = true,
                  ["mask:/ts"] = true }, hits())
  end)

  it("report a value that matches on one side only", function()
    assert.same({ { op = "replace", path = "/id",
                    primary = "0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                    candidate = "42" } },
                ops('{"id":"0b8f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}', '{"id":"42"}',
                    opts))
    -- A pattern matches the whole value.
    assert.same({ { op = "replace", path = "/token", primary = "abc",
                    candidate = "a-b" } },
                ops('{"token":"abc"}', '{"token":"a-b"}', opts))
    assert.same({}, hits())
  end)

  it("line up aligned elements that differ only in a masked id", function()
    local r = { mask = { ["/rows/*/id"] = "hex" } }
    assert.same({ { op = "remove", path = "/rows/0", primary = { id = "aa", v = 0 } } },
                ops('{"rows":[{"id":"aa","v":0},{"id":"ab","v":1},{"id":"ac","v":2}]}',
                    '{"rows":[{"id":"ff","v":1},{"id":"fe","v":2}]}', r))
  end)
end)

describe("time rules", function()
  local opts = { time = { ["/t"] = { unit = "instant", tolerance_ms = 1000 },
                          ["/exact"] = "instant" } }

  it("compare RFC 3339 strings and epoch seconds or milliseconds as instants",
     function()
    assert.same({}, ops('{"t":1700000000,"exact":1700000000123}',
                        '{"t":"2023-11-14T22:13:20.9Z",'
                          .. '"exact":"2023-11-14T23:13:20.123+01:00"}', opts))
    assert.same({ ["time:/t"] = true, ["time:/exact"] = true }, hits())
  end)

  it("read time zones, lower-case t and z, and leap-second-free forms",
     function()
    assert.same({}, ops('{"exact":"2023-11-14t17:13:20-05:00"}',
                        '{"exact":"2023-11-14 22:13:20z"}', opts))
    assert.same({}, ops('{"exact":"2016-12-31T23:59:60Z"}',
                        '{"exact":"2017-01-01T00:00:00Z"}', opts))
  end)

  it("report instants too far apart, and values that are not times",
     function()
    assert.same({ { op = "replace", path = "/t", primary = 1700000000,
                    candidate = "2023-11-14T22:13:22Z" } },
                ops('{"t":1700000000}', '{"t":"2023-11-14T22:13:22Z"}', opts))
    assert.same({ { op = "replace", path = "/exact", primary = "yesterday",
                    candidate = 1700000000 } },
                ops('{"exact":"yesterday"}', '{"exact":1700000000}', opts))
  end)
end)

describe("rule names and options", function()
  it("name every rule, in a fixed order", function()
    local names = diff.rule_names{
      ignore = { json = { "/meta" } }, tolerance = { ["/p"] = 0.1 },
      rename = { ["/a"] = "/b" }, coerce = { ["/n"] = "number" },
      mask = { ["/id"] = "uuid" }, time = { ["/t"] = "s" } }
    assert.same({ "ignore:/meta", "tolerance:/p", "coerce:/n", "mask:/id",
                  "time:/t", "rename:/a" }, names)
  end)

  it("count hits when the records agree, and nothing without rules",
     function()
    assert.is_nil(shadow.diff(body('{"n":"1"}'), body('{"n":1}'),
                              { coerce = { ["/n"] = "number" } }))
    assert.same({ "coerce:/n" }, diff.last_hits())
    shadow.diff(body('{"n":"1"}'), body('{"n":1}'))
    assert.same({}, diff.last_hits())
  end)

  it("refuse a bad rule, naming it", function()
    local function err(opts)
      local ok, e = pcall(shadow.diff, body("{}"), body("{}"), opts)
      assert.is_false(ok)
      return e
    end
    assert.matches('mask%["/id"%]: unknown class "uuid4"',
                   err{ mask = { ["/id"] = "uuid4" } })
    assert.matches('coerce%["/q"%] must be "number" or "boolean"',
                   err{ coerce = { ["/q"] = "int" } })
    assert.matches('rename%["/a"%] = "/a/b": one of its paths lies inside',
                   err{ rename = { ["/a"] = "/a/b" } })
    assert.matches('unknown field time%["/t"%]%.zone',
                   err{ time = { ["/t"] = { zone = "UTC" } } })
  end)
end)
