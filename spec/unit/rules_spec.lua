-- shadow.rules, the helpers for normalize hooks, on decoded documents and
-- records as a hook sees them.
local rules = require "shadow.rules"
local cjson = require "cjson"

describe("shadow.rules", function()
  it("sorts arrays by a member, stably, at a path with wildcards", function()
    local doc = { groups = {
      { items = { { id = 3, v = "c" }, { id = 1, v = "a" }, { id = 1, v = "b" } } },
      { items = { { id = "b" }, { id = "a" } } } } }
    assert.equal(2, rules.sort(doc, "/groups/*/items", "id"))
    assert.same({ { id = 1, v = "a" }, { id = 1, v = "b" }, { id = 3, v = "c" } },
                doc.groups[1].items)
    assert.same({ { id = "a" }, { id = "b" } }, doc.groups[2].items)
    local tags = { tags = { "b", 2, "a", 1 } }
    rules.sort(tags, "/tags")
    assert.same({ 1, 2, "a", "b" }, tags.tags)
  end)

  it("drops members and array elements, highest index first", function()
    local doc = { debug = { x = 1 }, list = { "a", "b", "c", "d" },
                  rows = { { t = 1, keep = true }, { t = 2, keep = true } } }
    assert.equal(1, rules.drop(doc, "/debug"))
    assert.is_nil(doc.debug)
    assert.equal(2, rules.drop(doc, "/rows/*/t"))
    assert.same({ { keep = true }, { keep = true } }, doc.rows)
    assert.equal(4, rules.drop(doc, "/list/*"))
    assert.same({}, doc.list)
    assert.equal(0, rules.drop(doc, "/absent/x"))
  end)

  it("reads JSON Pointers: indexes from 0, ~0 and ~1 escapes", function()
    local doc = { a = { ["x/y"] = { 10, 20 }, ["t~"] = true } }
    assert.equal(20, rules.get(doc, "/a/x~1y/1"))
    assert.is_true(rules.get(doc, "/a/t~0"))
    assert.equal(doc, rules.get(doc, ""))
    assert.has_error(function() rules.get(doc, "a/b") end,
      'shadow.rules: a/b is not a JSON Pointer ("/a/b", "*" for any key or index)')
  end)

  it("maps and changes the case of values", function()
    local doc = { users = { { name = "Ann" }, { name = "BOB" }, { name = 3 } } }
    assert.equal(3, rules.lower(doc, "/users/*/name"))
    assert.same({ { name = "ann" }, { name = "bob" }, { name = 3 } }, doc.users)
    rules.map(doc, "/users/*/name", function(v)
      if type(v) == "number" then return v * 2 end
    end)
    assert.equal(6, doc.users[3].name)
  end)

  it("changes the case of header values, by name or all", function()
    local rec = { headers = { ["content-type"] = "Application/JSON",
                              vary = { "Accept", "Origin" }, x = "Keep" } }
    rules.header_case(rec, { "Content-Type", "vary" })
    assert.same({ ["content-type"] = "application/json",
                  vary = { "accept", "origin" }, x = "Keep" }, rec.headers)
    rules.header_case(rec, nil, "upper")
    assert.equal("KEEP", rec.headers.x)
  end)

  it("rewrites a JSON body in place and leaves other bodies alone",
     function()
    local rec = { status = 200, headers = {},
                  body = '{"items":[{"id":2},{"id":1}],"debug":1}' }
    assert.equal(rec, rules.json(rec, function(body)
      rules.sort(body, "/items", "id")
      rules.drop(body, "/debug")
    end))
    assert.same({ items = { { id = 1 }, { id = 2 } } }, cjson.decode(rec.body))
    local text = { status = 200, headers = {}, body = "not json" }
    rules.json(text, function() error("not called") end)
    assert.equal("not json", text.body)
    -- fn may return a new document.
    rules.json(rec, function() return { replaced = true } end)
    assert.same({ replaced = true }, cjson.decode(rec.body))
  end)
end)
