-- Request smuggling shapes are refused before they reach the primary,
-- and limits.max_connections refuses the connection past the cap cleanly.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local http = require "support.http"
local cleanup = require "support.cleanup"

local BACKENDS = {
  primary = [[ location / { return 200 "primary ok"; } ]],
  candidate = [[ location / { return 200 "primary ok"; } ]],
}

-- Each shape's bytes; every one hides a second request, /smuggled-<name>,
-- that a lenient parser would pass on.
local SHAPES = {
  cl_te = "POST /s-cl_te HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\n"
    .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    .. "GET /smuggled-cl_te HTTP/1.1\r\nHost: x\r\n\r\n",
  te_cl = "POST /s-te_cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    .. "Content-Length: 4\r\n\r\n2c\r\n"
    .. "GET /smuggled-te_cl HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
  dup_cl = "POST /s-dup_cl HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
    .. "Content-Length: 44\r\n\r\n"
    .. "GET /smuggled-dup_cl HTTP/1.1\r\nHost: x\r\n\r\n",
  obs_fold = "GET /s-obs_fold HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n"
    .. " Transfer-Encoding: chunked\r\n\r\n"
    .. "GET /smuggled-obs_fold HTTP/1.1\r\nHost: x\r\n\r\n",
  bare_lf = "GET /s-bare_lf HTTP/1.1\nHost: x\n\n"
    .. "GET /smuggled-bare_lf HTTP/1.1\nHost: x\n\n",
  te_not_chunked_last = "POST /s-te_last HTTP/1.1\r\nHost: x\r\n"
    .. "Transfer-Encoding: chunked, identity\r\n\r\n"
    .. "GET /smuggled-te_last HTTP/1.1\r\nHost: x\r\n\r\n",
  -- Shapes front ends and back ends have read differently.
  two_te = "POST /s-two_te HTTP/1.1\r\nHost: x\r\n"
    .. "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
    .. "0\r\n\r\n",
  xchunked = "POST /s-xchunked HTTP/1.1\r\nHost: x\r\n"
    .. "Transfer-Encoding: xchunked\r\n\r\n",
  te_space = "POST /s-te_space HTTP/1.1\r\nHost: x\r\n"
    .. "Transfer-Encoding: chunked \r\nContent-Length: 3\r\n\r\nabc",
  space_before_colon = "POST /s-space HTTP/1.1\r\nHost: x\r\n"
    .. "Content-Length : 5\r\n\r\nhello",
  plus_cl = "POST /s-plus_cl HTTP/1.1\r\nHost: x\r\n"
    .. "Content-Length: +5\r\n\r\nhello",
  list_cl = "POST /s-list_cl HTTP/1.1\r\nHost: x\r\n"
    .. "Content-Length: 5, 5\r\n\r\nhello",
  http10_te = "POST /s-http10_te HTTP/1.0\r\nHost: x\r\n"
    .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  chunk_lf = "POST /s-chunk_lf HTTP/1.1\r\nHost: x\r\n"
    .. "Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
  chunk_overflow = "POST /s-chunk_ovf HTTP/1.1\r\nHost: x\r\n"
    .. "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabc\r\n"
    .. "0\r\n\r\n",
  bare_cr = "GET /s-bare_cr HTTP/1.1\rHost: x\r\n\r\n",
}

describe("request smuggling shapes", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0 }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  local names = {}
  for name in pairs(SHAPES) do names[#names + 1] = name end
  table.sort(names)
  -- A coding other than a lone "chunked" is not implemented (501), as in
  -- nginx; every other shape is a bad request.
  local NOT_IMPLEMENTED = { te_not_chunked_last = true, two_te = true,
                            xchunked = true }
  for _, name in ipairs(names) do
    local status = NOT_IMPLEMENTED[name] and 501 or 400
    it(name .. " gets " .. status .. ", the connection closed, and no primary "
       .. "request", function()
      local c = assert(http.connect(d.port))
      finally(function() c:close() end)
      assert(c:send(SHAPES[name]))
      local res = assert(c:read_response())
      assert.are.equal(status, res.status)
      assert.is_true(c:wait_closed(5))
      -- A marker on a new connection: once the primary logged it, it
      -- has logged everything shadowd sent before.
      local marker = "/marker-" .. name
      assert.are.equal(200, assert(http.get(d.port, marker)).status)
      assert.are.equal(1, #ng:wait_uri("primary", marker, 1))
      for _, r in ipairs(ng:requests("primary")) do
        assert.is_nil(r.uri:find("smuggled", 1, true), r.uri)
        assert.is_nil(r.uri:find("/s-", 1, true), r.uri)
      end
    end)
  end
end)

describe("limits.max_connections", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"), rate = 0,
                       limits = { max_connections = 2 } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("refuses a third client with a clean 503, and takes one again "
     .. "when a slot frees", function()
    local stop = cleanup.new()
    finally(stop.run)
    local function conn()
      local c = assert(http.connect(d.port))
      stop.add(function() c:close() end)
      return c
    end
    -- Connections a client already closed (the start-up port probe) hold
    -- their slot until shadowd reads the close: retry until both fit.
    local a, b
    assert.is_truthy(require("support.port").wait_until(function()
      if a then a:close(); b:close() end
      a, b = conn(), conn()
      local ra, rb = a:request{ path = "/a" }, b:request{ path = "/b" }
      return ra and ra.status == 200 and rb and rb.status == 200
    end, 10, 0.05), "two clients never both got in")
    local c = conn()
    local res, err = c:request{ path = "/c" }
    assert.is_truthy(res, "third client: " .. tostring(err))
    assert.are.equal(503, res.status)
    assert.is_true(c:wait_closed(5))
    assert.are.equal(0, #ng:requests_for("primary", "/c"))
    -- The two held connections still work.
    assert.are.equal(200, assert(a:request{ path = "/a2" }).status)
    a:close()
    local ok = require("support.port").wait_until(function()
      local r = http.get(d.port, "/again")
      return r and r.status == 200
    end, 10, 0.05)
    assert.is_truthy(ok, "no slot after a client left")
  end)
end)
