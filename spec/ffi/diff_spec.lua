-- shadow.diff through libshadow: status, headers, and the body kinds.
require "env"
local cjson = require "cjson"
local compress = require "compress"
local shadow = require "shadow"

local JSON = "application/json"

local function rec(status, headers, body)
  return { status = status, headers = headers or {}, body = body or "" }
end

local function json_rec(body, extra)
  local h = { ["content-type"] = JSON }
  for k, v in pairs(extra or {}) do h[k] = v end
  return rec(200, h, body)
end

describe("shadow.diff", function()
  it("returns nil for equal records", function()
    assert.is_nil(shadow.diff(rec(200, { a = "1" }, "x"),
      rec(200, { a = "1" }, "x")))
    assert.is_nil(shadow.diff({}, {}))
  end)

  it("reports a status change and nothing else", function()
    local d, parts = shadow.diff(rec(200, {}, "x"), rec(500, {}, "x"))
    assert.equal(1, parts)
    assert.same({ differs = true, primary = 200, candidate = 500 }, d.status)
    assert.is_false(d.headers.differs)
    assert.is_false(d.body.differs)
  end)

  it("writes a whole record: id, ISO time, null request facts", function()
    local d = shadow.diff(rec(200), rec(201))
    local d2 = shadow.diff(rec(200), rec(201))
    assert.is_number(d.id)
    assert.is_true(d2.id > d.id)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", d.time)
    assert.equal(cjson.null, d.key)
    assert.equal(cjson.null, d.route)
    assert.is_table(d.latency_ms)
    assert.same({}, d.noise)
  end)

  describe("headers", function()
    it("compare names case-insensitively", function()
      assert.is_nil(shadow.diff(rec(200, { ["Content-Type"] = "text/plain" }),
        rec(200, { ["content-type"] = "text/plain" })))
    end)

    it("compare values exactly", function()
      local d, parts = shadow.diff(rec(200, { ["X-Ver"] = "1" }),
        rec(200, { ["x-ver"] = "2" }))
      assert.equal(2, parts)
      assert.same({ differs = true, diffs = {
        { name = "x-ver", primary = "1", candidate = "2" } } }, d.headers)
    end)

    it("compare several values as an ordered list", function()
      local p = rec(200, { ["set-cookie"] = { "a=1", "b=2" } })
      assert.is_nil(shadow.diff(p, rec(200, { ["Set-Cookie"] = { "a=1", "b=2" } })))
      local d = shadow.diff(p, rec(200, { ["set-cookie"] = { "b=2", "a=1" } }))
      assert.same({ "a=1", "b=2" }, d.headers.diffs[1].primary)
      assert.same({ "b=2", "a=1" }, d.headers.diffs[1].candidate)
      d = shadow.diff(p, rec(200, { ["set-cookie"] = "a=1" }))
      assert.equal("a=1", d.headers.diffs[1].candidate)
    end)

    it("write null for a missing side", function()
      local d = shadow.diff(rec(200, { ["x-only-p"] = "1" }),
        rec(200, { ["x-only-c"] = "2" }))
      table.sort(d.headers.diffs, function(a, b) return a.name < b.name end)
      assert.same({
        { name = "x-only-c", primary = cjson.null, candidate = "2" },
        { name = "x-only-p", primary = "1", candidate = cjson.null },
      }, d.headers.diffs)
    end)

    it("never compare hop-by-hop and framing headers, nor date", function()
      local p = rec(200, { connection = "close", ["keep-alive"] = "5",
        ["transfer-encoding"] = "chunked", ["content-length"] = "1",
        te = "trailers", trailer = "x", upgrade = "h2c",
        ["proxy-authenticate"] = "Basic", date = "Mon" }, "x")
      local c = rec(200, { Connection = "keep-alive", ["Content-Length"] = "2",
        ["Proxy-Connection"] = "x", Date = "Tue" }, "x")
      assert.is_nil(shadow.diff(p, c))
    end)

    it("skip ignore.headers, whatever their case", function()
      local p = rec(200, { server = "v1", ["x-request-id"] = "a" })
      local c = rec(200, { Server = "v2", ["X-Request-Id"] = "b" })
      assert.is_table(shadow.diff(p, c))
      assert.is_nil(shadow.diff(p, c,
        { ignore = { headers = { "SERVER", "x-request-id" } } }))
    end)

    it("truncate long values with a marker", function()
      local long = string.rep("v", 1000)
      local d = shadow.diff(rec(200, { x = long }), rec(200, { x = "short" }))
      local v = d.headers.diffs[1].primary
      assert.is_true(#v < 400)
      assert.matches("(1000 bytes)", v, 1, true)
    end)
  end)

  describe("json bodies", function()
    it("compare semantically: key order, number spelling, escapes", function()
      assert.is_nil(shadow.diff(
        json_rec('{"a":1,"b":[1.0,"\\u00e9"],"c":{"x":true,"y":null}}'),
        json_rec('{"c":{"y":null,"x":true},"b":[1e0,"é"],"a":1.00}')))
    end)

    it("report JSON Patch ops and a count", function()
      local d, parts = shadow.diff(
        json_rec('{"user":{"name":"Ann","tags":["a","b"]}}'),
        json_rec('{"user":{"name":"ann","tags":["a","b","x"]}}'))
      assert.equal(4, parts)
      assert.equal("json", d.body.kind)
      assert.is_true(d.body.differs)
      assert.equal("2 fields differ", d.body.summary)
      local by_path = {}
      for _, op in ipairs(d.body.diffs) do by_path[op.path] = op end
      assert.same({ op = "replace", path = "/user/name", primary = "Ann",
        candidate = "ann" }, by_path["/user/name"])
      assert.same({ op = "add", path = "/user/tags/2", candidate = "x" },
        by_path["/user/tags/2"])
    end)

    it("say 1 field differs in the singular", function()
      local d = shadow.diff(json_rec('{"a":1}'), json_rec('{"a":2}'))
      assert.equal("1 field differs", d.body.summary)
    end)

    it("take +json types and parameters", function()
      local p = rec(200, { ["content-type"] = "application/problem+json; charset=utf-8" },
        '{"a":1}')
      local c = rec(200, { ["Content-Type"] = "Application/JSON;charset=UTF-8" },
        '{"a":2}')
      local d = shadow.diff(p, c)
      assert.equal("json", d.body.kind)
      assert.equal("/a", d.body.diffs[1].path)
      -- The content-type values differ too, and that is reported.
      assert.is_true(d.headers.differs)
    end)

    it("apply ignore.json with wildcards", function()
      local p = json_rec('{"meta":{"at":1},"items":[{"etag":"a","v":1}]}')
      local c = json_rec('{"meta":{"at":2},"items":[{"etag":"b","v":1}]}')
      assert.is_table(shadow.diff(p, c))
      assert.is_nil(shadow.diff(p, c,
        { ignore = { json = { "/meta/at", "/items/*/etag" } } }))
    end)

    it("apply array modes and tolerances", function()
      local p = json_rec('{"ids":[1,2,3],"price":10.0}')
      local c = json_rec('{"ids":[3,1,2],"price":10.004}')
      local d = shadow.diff(p, c)
      assert.is_table(d)
      assert.is_nil(shadow.diff(p, c, { arrays = { ["/ids"] = "multiset" },
        tolerance = { ["/price"] = 0.01 } }))
    end)

    it("fall back to bytes when a side does not parse", function()
      local d = shadow.diff(json_rec('{"a":1}'), json_rec('{"a":1'))
      assert.equal("bytes", d.body.kind)
    end)

    it("are bytes when only one side is JSON", function()
      local d = shadow.diff(json_rec('{"a":1}'),
        rec(200, { ["content-type"] = JSON }, '{"a":2}'))
      assert.equal("json", d.body.kind)
      d = shadow.diff(json_rec('{"a":1}'),
        rec(200, { ["content-type"] = "text/plain" }, '{"a":2}'))
      assert.equal("bytes", d.body.kind)
    end)
  end)

  describe("byte bodies", function()
    it("name the first differing offset and both lengths", function()
      local d = shadow.diff(rec(200, {}, "hello world"),
        rec(200, {}, "hello there!"))
      assert.equal("bytes", d.body.kind)
      assert.matches("differ at byte 6 ", d.body.summary, 1, true)
      assert.matches("primary 11 bytes", d.body.summary, 1, true)
      assert.matches("candidate 12 bytes", d.body.summary, 1, true)
      assert.matches('"hello world"', d.body.summary, 1, true)
    end)

    it("put the offset at the shorter length for a prefix", function()
      local d = shadow.diff(rec(200, {}, "abc"), rec(200, {}, "abcd"))
      assert.matches("at byte 3 ", d.body.summary, 1, true)
      d = shadow.diff(rec(200, {}, ""), rec(200, {}, "x"))
      assert.matches("at byte 0 ", d.body.summary, 1, true)
    end)

    it("escape binary excerpts and keep them short", function()
      local p = string.rep("a", 5000) .. "\0\1\255" .. string.rep("b", 5000)
      local c = string.rep("a", 5000) .. "\0\2\255" .. string.rep("b", 5000)
      local d = shadow.diff(rec(200, {}, p), rec(200, {}, c))
      assert.matches("at byte 5001 ", d.body.summary, 1, true)
      assert.matches("\\x00\\x01\\xff", d.body.summary, 1, true)
      assert.is_true(#d.body.summary < 300)
    end)
  end)

  describe("digest bodies", function()
    it("compare by hash above diff_bytes", function()
      local opts = { diff_bytes = 8 }
      local d = shadow.diff(rec(200, {}, string.rep("a", 20)),
        rec(200, {}, string.rep("a", 19) .. "b"), opts)
      assert.equal("digest", d.body.kind)
      assert.matches("xxh3", d.body.summary, 1, true)
      assert.matches("primary 20 bytes", d.body.summary, 1, true)
      assert.is_nil(shadow.diff(rec(200, {}, string.rep("a", 20)),
        rec(200, {}, string.rep("a", 20)), opts))
    end)

    it("apply to JSON bodies too", function()
      local d = shadow.diff(json_rec('{"a":1,"b":2}'), json_rec('{"b":2,"a":1}'),
        { diff_bytes = 4 })
      assert.equal("digest", d.body.kind)
    end)
  end)

  describe("compressed bodies", function()
    local doc = '{"items":[' .. string.rep('{"id":1,"name":"x"},', 50)
      .. '{"id":2}]}'

    it("equal a plain body with the same content", function()
      local p = json_rec(doc)
      for _, c in ipairs({
        json_rec(compress.gzip(doc), { ["content-encoding"] = "gzip" }),
        json_rec(compress.deflate(doc), { ["Content-Encoding"] = "deflate" }),
        json_rec(compress.raw_deflate(doc), { ["content-encoding"] = "deflate" }),
      }) do
        assert.is_nil(shadow.diff(p, c))
        assert.is_nil(shadow.diff(c, p))
      end
    end)

    it("are diffed after inflating", function()
      local other = doc:gsub('"id":2', '"id":3')
      local d = shadow.diff(json_rec(doc),
        json_rec(compress.gzip(other), { ["content-encoding"] = "gzip" }))
      assert.equal("json", d.body.kind)
      assert.equal("/items/50/id", d.body.diffs[1].path)
    end)

    it("are compared by digest when inflating would pass diff_bytes", function()
      local big = string.rep("\0", 1000000)
      local z = compress.gzip(big)
      assert.is_true(#z < 5000)
      local d = shadow.diff(rec(200, {}, "small"),
        rec(200, { ["content-encoding"] = "gzip" }, z), { diff_bytes = 1000 })
      assert.equal("digest", d.body.kind)
      assert.matches("compressed", d.body.summary, 1, true)
    end)

    it("are compared as sent when corrupt", function()
      local d = shadow.diff(rec(200, {}, "abc"),
        rec(200, { ["content-encoding"] = "gzip" }, "not gzip at all"))
      assert.equal("bytes", d.body.kind)
      assert.is_true(d.headers.differs)
    end)
  end)

  describe("records stay bounded", function()
    it("under the hard cap, marked truncated", function()
      local p, c = {}, {}
      for i = 1, 3000 do
        p[#p + 1] = string.format('"k%d":"%s"', i, string.rep("p", 200))
        c[#c + 1] = string.format('"k%d":"%s"', i, string.rep("c", 200))
      end
      local text, parts = shadow.diff_json(json_rec("{" .. table.concat(p, ",") .. "}"),
        json_rec("{" .. table.concat(c, ",") .. "}"))
      assert.equal(4, parts)
      assert.is_true(#text <= 64 * 1024, "record is " .. #text .. " bytes")
      local d = cjson.decode(text)
      assert.is_true(d.truncated)
      assert.equal("3000 fields differ", d.body.summary)
      assert.is_true(#d.body.diffs > 10)
      assert.is_true(#d.body.diffs < 3000)
    end)
  end)

  describe("options", function()
    it("refuse bad entries with a message naming them", function()
      local cases = {
        { { ignore = { headers = { "bad name" } } }, "ignore.headers" },
        { { ignore = { json = { "no-slash" } } }, "ignore.json" },
        { { arrays = { ["/a"] = "sorted" } }, "arrays" },
        { { tolerance = { ["/a"] = "x" } }, "tolerance" },
        { { tolerance = { ["/a"] = -1 } }, "tolerance" },
        { { diff_bytes = "big" }, "diff_bytes" },
        { { ignore = { header = { "x" } } }, "unknown field ignore.header" },
        { { arrays = { "/a" } }, "arrays must be a table" },
        { { tolerance = { ["/a"] = print } }, "not plain data" },
        { { colour = 1 }, "unknown field colour" },
      }
      for _, case in ipairs(cases) do
        local ok, err = pcall(shadow.diff, {}, {}, case[1])
        assert.is_false(ok)
        assert.matches(case[2], err, 1, true)
      end
    end)

    it("are compiled once per table", function()
      local compile = require("shadow.opts").compile
      local opts = { ignore = { headers = { "server" } } }
      assert.equal(compile(opts), compile(opts))
      assert.are_not.equal(compile(opts), compile({}))
    end)

    it("refuse bad records", function()
      assert.has_error(function() shadow.diff({ status = "200" }, {}) end)
      assert.has_error(function() shadow.diff({}, { body = {} }) end)
      assert.has_error(function() shadow.diff({}, { headers = { x = {} ~= nil and function() end } }) end)
      assert.has_error(function() shadow.diff(nil, {}) end)
    end)
  end)
end)
