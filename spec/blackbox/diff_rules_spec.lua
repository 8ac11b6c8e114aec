-- The diff engine as a user meets it: config-level ignore, arrays and
-- tolerance rules, a normalize hook using cjson, gzip bodies, and the
-- offline `shadowd diff`.
local shadowd = require "support.shadowd"
local process = require "support.process"
local http = require "support.http"
local cleanup = require "support.cleanup"

-- In-process backends answering the same document, except where the
-- candidate's version of a path says otherwise.
local function config(a, rules)
  return ([[
local shadow = require "shadow"
local cjson = require "cjson"
local docs = {
  ["/keyorder"] = { '{"a":1,"b":[1,2],"c":{"x":true}}',
                    '{"c":{"x":true},"b":[1,2],"a":1.0}' },
  ["/ignored"] = { '{"id":7,"meta":{"at":1},"items":[{"etag":"a","v":1}]}',
                   '{"id":7,"meta":{"at":2},"items":[{"etag":"b","v":1}]}' },
  ["/sets"] = { '{"tags":["a","b","c"],"users":[{"id":1,"n":"x"},{"id":2,"n":"y"}]}',
                '{"tags":["c","a","b"],"users":[{"id":2,"n":"y"},{"id":1,"n":"X"}]}' },
  ["/price"] = { '{"price":10.00,"qty":1}', '{"price":10.004,"qty":2}' },
  ["/normalized"] = { '{"name":"Ann","trace":"t-1"}', '{"name":"ann","trace":"t-2"}' },
}
local function backend(side)
  return function(req)
    local d = docs[req.path]
    return { status = 200, headers = { ["content-type"] = "application/json" },
             body = d and d[side] or "{}" }
  end
end
return {
  listen = %q, admin = %q,
  primary = backend(1), candidate = backend(2),
  sample = { rate = 1.0 },
  route = function(req) return req.path end,
  %s
}
]]):format(a.listen, a.admin, rules)
end

local RULES = [[
  ignore = { json = { "/meta/at", "/items/*/etag" } },
  arrays = { ["/tags"] = "set", ["/users"] = { key = "id" } },
  tolerance = { ["/price"] = 0.01 },
  normalize = function(rec, side, req)
    if req.path == "/normalized" then
      local doc = cjson.decode(rec.body)
      doc.name = doc.name:lower()
      doc.trace = nil
      rec.body = cjson.encode(doc)
    end
    return rec
  end,
]]

describe("diff rules in the config", function()
  local d
  setup(function()
    d = shadowd.start{ text = function(a) return config(a, RULES) end }
  end)
  teardown(function() cleanup.stop_all(d) end)

  local function divergence_of(path)
    local res = assert(http.get(d.port, path))
    assert.are.equal(200, res.status)
    return d
  end

  it("compares JSON semantically and applies ignore, arrays, tolerance, normalize",
     function()
    for _, p in ipairs({ "/keyorder", "/ignored", "/sets", "/price",
                         "/normalized" }) do
      divergence_of(p)
    end
    local stats = d:wait_totals("compared", 5)
    local by_route = {}
    for _, rec in ipairs(d:divergences().divergences) do
      by_route[rec.route] = rec
    end
    -- Key order, 1 vs 1.0, ignored pointers, a set, and a normalized
    -- difference: no divergence.
    assert.is_nil(by_route["/keyorder"])
    assert.is_nil(by_route["/ignored"])
    assert.is_nil(by_route["/normalized"])
    -- A keyed array: the one changed member, at the primary's index.
    local sets = assert(by_route["/sets"])
    assert.are.equal(1, #sets.body.diffs)
    assert.are.same({ op = "replace", path = "/users/0/n", primary = "x",
                      candidate = "X" }, sets.body.diffs[1])
    -- Within tolerance for price, but qty differs.
    local price = assert(by_route["/price"])
    assert.are.equal(1, #price.body.diffs)
    assert.are.equal("/qty", price.body.diffs[1].path)
    assert.are.equal(2, stats.totals.diverged)
    assert.are.equal(1, stats.fields["body:/qty"])
  end)
end)

describe("shadowd diff", function()
  local dir
  before_each(function() dir = process.tmpdir("shadow-offline") end)
  after_each(function() process.rmdir(dir) end)

  local function run(...)
    return process.run({ shadowd.binary(), "diff", ... })
  end

  it("exits 0 for agreeing recorded responses and 1 with the record when they differ",
     function()
    process.write_file(dir .. "/a.http", "HTTP/1.1 200 OK\r\n"
      .. "Content-Type: application/json\r\nDate: Mon, 01 Jan 2026 00:00:00 GMT\r\n"
      .. "\r\n{\"user\":{\"name\":\"Ann\",\"tags\":[\"a\"]}}")
    process.write_file(dir .. "/b.http", "HTTP/1.1 200 OK\n"
      .. "content-type: application/json\n"
      .. "Transfer-Encoding: chunked\n\n"
      .. "f\r\n{\"user\":{\"tags\"\r\n15\r\n:[\"a\"],\"name\":\"Ann\"}}\r\n0\r\n\r\n")
    process.write_file(dir .. "/c.json", '{"user":{"name":"ann","tags":["a","b"]}}')
    local code, out, err = run(dir .. "/a.http", dir .. "/b.http")
    assert.are.equal(0, code, out .. err)
    code, out, err = run(dir .. "/a.http", dir .. "/c.json")
    assert.are.equal(1, code, out .. err)
    local json = require "support.json"
    local rec = json.decode(out)
    assert.is_true(rec.body.differs)
    assert.are.equal("json", rec.body.kind)
    assert.are.same({ op = "replace", path = "/user/name", primary = "Ann",
                      candidate = "ann" }, rec.body.diffs[1])
    assert.are.same({ op = "add", path = "/user/tags/1", candidate = "b" },
                    rec.body.diffs[2])
  end)

  it("applies the config's rules", function()
    process.write_file(dir .. "/a.json", '{"name":"Ann","trace":"t-1","at":1}')
    process.write_file(dir .. "/b.json", '{"name":"ann","trace":"t-2","at":2}')
    process.write_file(dir .. "/rules.lua", [[
local cjson = require "cjson"
return {
  primary = "http://127.0.0.1:1",
  ignore = { json = { "/at" } },
  normalize = function(rec)
    local doc = cjson.decode(rec.body)
    doc.name, doc.trace = doc.name:lower(), nil
    rec.body = cjson.encode(doc)
    return rec
  end,
}
]])
    local code, out, err = run("--config", dir .. "/rules.lua",
                               dir .. "/a.json", dir .. "/b.json")
    assert.are.equal(0, code, out .. err)
  end)

  it("exits 2 on a missing file, a bad config or bad usage", function()
    local code, _, err = run(dir .. "/nope", dir .. "/nope2")
    assert.are.equal(2, code)
    assert.truthy(err:find("nope", 1, true), err)
    process.write_file(dir .. "/a.json", "{}")
    process.write_file(dir .. "/bad.lua", "return {")
    code, _, err = run("--config", dir .. "/bad.lua", dir .. "/a.json",
                       dir .. "/a.json")
    assert.are.equal(2, code)
    assert.truthy(err:find("bad.lua:1:", 1, true), err)
    code = run(dir .. "/a.json")
    assert.are.equal(2, code)
  end)
end)
