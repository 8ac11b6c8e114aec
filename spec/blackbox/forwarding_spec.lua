-- What the backends receive. Each payload of a corpus (request smuggling
-- shapes: CL.TE, TE.CL, TE.TE, lenient chunk framing, and the forwarding
-- defects a proxy can have) goes to shadowd on its own connection, in
-- front of two nginx backends that log every request head exactly as it
-- arrived (ngx.req.raw_header()) with its body. For each payload the spec
-- checks the client's answers and what each backend got: refused payloads
-- reach no backend; accepted ones reach each backend exactly once, and the
-- two legs get the same bytes but for the candidate's x-shadow-request.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local json = require "support.json"
local socket = require "socket"

-- Each backend appends { raw, body } per request to <prefix>/<name>.raw.
local function logging_backend(name)
  return ([[
    location / { content_by_lua_block {
      ngx.req.read_body()
      local cjson = require "cjson"
      local f = io.open(ngx.config.prefix() .. "/%s.raw", "a")
      f:write(cjson.encode({ raw = ngx.req.raw_header(),
                             body = ngx.req.get_body_data() or "" }), "\n")
      f:close()
      ngx.header["content-type"] = "text/plain"
      ngx.print("%s")
    } }
  ]]):format(name, name)
end

local BACKENDS = { primary = logging_backend("primary"),
                   candidate = logging_backend("candidate") }

local function raw_log(ng, name)
  return json.decode_lines(process.read_file(ng.dir .. "/" .. name .. ".raw")
                           or "")
end

-- Sends bytes on a fresh connection and reads until shadowd closes it (or
-- 2 s pass): the statuses of every response, in order.
local function exchange(d, bytes)
  local c = assert(http.connect(d.port, { timeout = 2 }))
  assert(c:send(bytes))
  local statuses = {}
  while true do
    local res = c:read_response()
    if not res then break end
    statuses[#statuses + 1] = res.status
    if not res.keep_alive then break end
  end
  c:close()
  return statuses
end

local CHUNK40 = ("x"):rep(40)

-- name = { bytes, statuses the client gets, requests each backend gets }.
-- Refused shapes get one error and the connection closes; the second
-- request they hide must reach no one.
local CORPUS = {
  -- Lenient chunk framing (llhttp's loose build takes these; nginx does
  -- not): a size line ended by CR and another byte, chunk data followed by
  -- two bytes that are not CRLF, a last CRLF that is CR and another byte.
  lenient_size_cr = { "POST /c1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
    .. "chunked\r\n\r\n28\rX" .. CHUNK40 .. "\r\n0\r\n\r\nGET /smuggled "
    .. "HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n", { 400 }, 0 },
  lenient_data_end = { "POST /c2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
    .. "chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", { 400 }, 0 },
  lenient_size_cr_any = { "POST /c3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
    .. "chunked\r\n\r\n3\rXabc\r\n0\r\n\r\n", { 400 }, 0 },
  lenient_last_crlf = { "POST /c4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
    .. "chunked\r\n\r\n3\r\nabc\r\n0\r\n\rX", { 400 }, 0 },
  chunk_bare_lf = { "POST /c5 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
    .. "chunked\r\n\r\n3\nabc\n0\n\n", { 400 }, 0 },
  -- The classic shapes.
  cl_te = { "POST /c6 HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\n"
    .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    .. "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", { 400 }, 0 },
  te_cl = { "POST /c7 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    .. "Content-Length: 4\r\n\r\n2c\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n"
    .. "\r\n\r\n0\r\n\r\n", { 400 }, 0 },
  te_te_two_lines = { "POST /c8 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x"
    .. "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", { 501 }, 0 },
  te_gzip_chunked = { "POST /c9 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
    .. "gzip, chunked\r\n\r\n0\r\n\r\n", { 501 }, 0 },
  te_obs_fold = { "POST /c10 HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding:"
    .. " chunked\r\n\r\n0\r\n\r\n", { 400 }, 0 },
  te_empty_with_cl = { "POST /c11 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n"
    .. "Content-Length: 3\r\n\r\nabc", { 400 }, 0 },
  dup_cl = { "POST /c12 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
    .. "Content-Length: 44\r\n\r\n", { 400 }, 0 },
  te_http10 = { "POST /c13 HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked"
    .. "\r\n\r\n0\r\n\r\n", { 400 }, 0 },
  -- The request line and Host.
  tab_in_target = { "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", { 400 }, 0 },
  host_empty = { "GET /h1 HTTP/1.1\r\nHost: \r\n\r\n", { 400 }, 0 },
  host_space = { "GET /h2 HTTP/1.1\r\nHost: a b\r\n\r\n", { 400 }, 0 },
  host_slash = { "GET /h3 HTTP/1.1\r\nHost: a/evil\r\n\r\n", { 400 }, 0 },
  host_list = { "GET /h4 HTTP/1.1\r\nHost: a, b\r\n\r\n", { 400 }, 0 },
  host_two = { "GET /h5 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", { 400 }, 0 },
  absolute_bad_host = { "GET http://a b/x HTTP/1.1\r\nHost: a\r\n\r\n",
    { 400 }, 0 },
  connect = { "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", { 405 }, 0 },
  -- Accepted, and forwarded exactly once to each backend.
  plain = { "GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    { 200 }, 1 },
  chunked_ok = { "POST /ok2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
    .. "chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n0\r\n"
    .. "X-Trailer: t\r\n\r\n", { 200 }, 1 },
  pipelined = { "GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\n"
    .. "Host: a\r\nConnection: close\r\n\r\n", { 200, 200 }, 2 },
}

describe("what the backends receive: the corpus", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       mirror_methods = { "GET", "POST" } }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  local names = {}
  for name in pairs(CORPUS) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local case = CORPUS[name]
    it(name, function()
      local before_p = #raw_log(ng, "primary")
      local before_c = #raw_log(ng, "candidate")
      local before_requests = d:stats().totals.requests
      assert.are.same(case[2], exchange(d, case[1]))
      local want = case[3]
      if want > 0 then
        d:wait_totals("compared", 0) -- admin still answers
        port.wait_until(function()
          return #raw_log(ng, "candidate") >= before_c + want
        end, 5, 0.02)
      else
        -- A refused payload is never handed on: the request counter did
        -- not move (and a short wait shows no late arrival).
        assert.are.equal(before_requests, d:stats().totals.requests)
        socket.sleep(0.05)
      end
      local p, c = raw_log(ng, "primary"), raw_log(ng, "candidate")
      assert.are.equal(before_p + want, #p, "primary requests")
      assert.are.equal(before_c + want, #c, "candidate requests")
      for i = 1, want do
        local pr, cr = p[before_p + i], c[before_c + i]
        -- Same bytes on both legs, but the candidate's one mark.
        local stripped = cr.raw:gsub("x%-shadow%-request: 1\r\n", "", 1)
        assert.are.equal(pr.raw, stripped)
        assert.are.equal(pr.body, cr.body)
        assert.is_nil(pr.raw:lower():find("x-shadow-request", 1, true))
        local _, marks = cr.raw:lower():gsub("x%-shadow%-request:", "")
        assert.are.equal(1, marks)
      end
    end)
  end
end)

-- The forwarding rules, one at a time, reading what each backend got.
describe("what the backends receive", function()
  local ng, d
  local function config(addr)
    return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q),
  candidate = shadow.http(%q),
  sample = { rate = 1.0, filter = function(req) return req.path ~= "/healthz" end },
  mirror_methods = { "GET", "POST" },
  route = function(req) return req.method .. " " .. req.path end,
}
]]):format(addr.listen, addr.admin, ng:url("primary"), ng:url("candidate"))
  end
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ text = config }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  -- One request; returns what the primary and the candidate got (the
  -- candidate's entry is nil when it was not mirrored).
  local function send(bytes, mirrored)
    local np, nc = #raw_log(ng, "primary"), #raw_log(ng, "candidate")
    local statuses = exchange(d, bytes)
    assert.are.same({ 200 }, statuses)
    if mirrored ~= false then
      port.wait_until(function()
        return #raw_log(ng, "candidate") > nc
      end, 5, 0.02)
    end
    return raw_log(ng, "primary")[np + 1], raw_log(ng, "candidate")[nc + 1]
  end

  local function header(raw, name)
    return raw:match("\r\n" .. name .. ": ([^\r\n]*)")
  end

  it("removes a client's own x-shadow-request on both legs", function()
    local p, c = send("GET /mark HTTP/1.1\r\nHost: a\r\nX-Shadow-Request: 0\r\n"
                      .. "Connection: close\r\n\r\n")
    assert.is_nil(p.raw:lower():find("x-shadow-request", 1, true))
    local _, n = c.raw:lower():gsub("x%-shadow%-request: ([^\r]*)", "")
    assert.are.equal(1, n)
    assert.are.equal("1", c.raw:lower():match("x%-shadow%-request: ([^\r]*)"))
  end)

  it("turns an absolute-form target into origin-form before the hooks",
     function()
    -- /healthz is filtered out by the config's hook: the absolute form
    -- must not get past it, and must not name its own Host.
    local p, c = send("GET http://evil.example/healthz HTTP/1.1\r\n"
                      .. "Host: good.example\r\nConnection: close\r\n\r\n",
                      false)
    assert.matches("^GET /healthz HTTP/1.1\r\n", p.raw)
    assert.are.equal("evil.example", header(p.raw, "Host"))
    assert.is_nil(c) -- filtered: not mirrored
    p, c = send("GET http://api.example:8080?q=1 HTTP/1.1\r\nHost: x\r\n"
                .. "Connection: close\r\n\r\n")
    assert.matches("^GET /%?q=1 HTTP/1.1\r\n", p.raw)
    assert.are.equal("api.example:8080", header(p.raw, "Host"))
    assert.are.equal("api.example:8080", header(c.raw, "Host"))
  end)

  it("sends one X-Forwarded-For and X-Forwarded-Proto on both legs",
     function()
    local p, c = send("GET /xff HTTP/1.1\r\nHost: a\r\n"
                      .. "X-Forwarded-For: 203.0.113.9\r\n"
                      .. "X-Forwarded-For: 198.51.100.1\r\n"
                      .. "X-Forwarded-Proto: gopher\r\nConnection: close\r\n\r\n")
    for _, leg in ipairs({ p, c }) do
      local _, n = leg.raw:gsub("\r\nX%-Forwarded%-For:", "")
      assert.are.equal(1, n)
      assert.are.equal("203.0.113.9, 198.51.100.1, 127.0.0.1",
                       header(leg.raw, "X%-Forwarded%-For"))
      assert.are.equal("http", header(leg.raw, "X%-Forwarded%-Proto"))
    end
  end)

  it("drops what Connection names, and names that alias framing", function()
    local p, c = send("POST /conn HTTP/1.1\r\nHost: a\r\n"
                      .. "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\n"
                      .. "Transfer_Encoding: chunked\r\nContent_Length: 99\r\n"
                      .. "X_Ok: kept\r\nContent-Length: 3\r\n"
                      .. "Connection: close\r\n\r\nabc")
    for _, leg in ipairs({ p, c }) do
      local raw = leg.raw:lower()
      assert.is_nil(raw:find("x-secret", 1, true))
      assert.is_nil(raw:find("transfer_encoding", 1, true))
      assert.is_nil(raw:find("content_length", 1, true))
      assert.is_truthy(raw:find("x_ok: kept", 1, true))
      assert.are.equal("abc", leg.body)
    end
  end)

  it("gives an HTTP/1.0 request without Host the same Host on both legs",
     function()
    local p, c = send("GET /old HTTP/1.0\r\n\r\n")
    local hp, hc = header(p.raw, "Host"), header(c.raw, "Host")
    assert.are.equal("127.0.0.1:" .. d.port, hp)
    assert.are.equal(hp, hc)
  end)

  it("keeps repeated headers as separate lines in order", function()
    local p, c = send("GET /rep HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\n"
                      .. "Accept: a\r\nCookie: t=2\r\nConnection: close\r\n\r\n")
    for _, leg in ipairs({ p, c }) do
      assert.matches("\r\nCookie: s=1\r\nAccept: a\r\nCookie: t=2\r\n",
                     leg.raw)
    end
  end)
end)

describe("what the backends receive after a rewrite", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       extra = [[
  rewrite = function(req)
    if req.path == "/edit" then
      req.headers["x-added"] = "new"
      req.headers["accept"] = nil
      req.headers["cookie"] = "only=1"
    end
    return req
  end,]] }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  local function legs(bytes)
    local np, nc = #raw_log(ng, "primary"), #raw_log(ng, "candidate")
    assert.are.same({ 200 }, exchange(d, bytes))
    port.wait_until(function()
      return #raw_log(ng, "candidate") > nc
    end, 5, 0.02)
    return raw_log(ng, "primary")[np + 1], raw_log(ng, "candidate")[nc + 1]
  end

  it("an identity rewrite sends what no rewrite sends", function()
    local p, c = legs("GET /same HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\n"
                      .. "X-Mixed-Case: v\r\nCookie: t=2\r\nConnection: close"
                      .. "\r\n\r\n")
    assert.are.equal(p.raw, (c.raw:gsub("x%-shadow%-request: 1\r\n", "", 1)))
    assert.matches("\r\nCookie: s=1\r\nX%-Mixed%-Case: v\r\nCookie: t=2\r\n",
                   c.raw)
  end)

  it("a rewrite's changes land where the header was, additions last",
     function()
    local p, c = legs("GET /edit HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\n"
                      .. "Accept: x\r\nCookie: t=2\r\nConnection: close\r\n\r\n")
    assert.matches("\r\nCookie: s=1\r\nAccept: x\r\nCookie: t=2\r\n", p.raw)
    assert.matches("\r\nCookie: only=1\r\n", c.raw)
    assert.is_nil(c.raw:find("Accept:", 1, true))
    assert.matches("\r\nx%-added: new\r\n", c.raw)
  end)
end)

-- The secondary leg forwards what the candidate does: the same head, one
-- mark. Requests follow one another on one connection, so each exchange's
-- legs are built while the last one's may still be in memory.
describe("a request on three legs", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = {
      primary = logging_backend("primary"),
      candidate = logging_backend("candidate"),
      secondary = logging_backend("secondary"),
    } }
    d = shadowd.start{ text = function(addr)
      return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = shadow.http(%q),
  candidate = shadow.http(%q),
  secondary = shadow.http(%q),
  sample = { rate = 1.0, secondary_rate = 1.0 },
}
]]):format(addr.listen, addr.admin, ng:url("primary"), ng:url("candidate"),
           ng:url("secondary"))
    end }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  it("gives the secondary the candidate's bytes, each head its own",
     function()
    local heads = {
      "GET /one HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n"
        .. "X-Shadow-Request: 0\r\nAccept: one\r\n\r\n",
      "GET /two HTTP/1.1\r\nHost: b\r\nKeep-Alive: 5\r\n"
        .. "Connection: keep-alive, X-Drop\r\nX-Drop: y\r\nAccept: two\r\n\r\n",
      "GET /three HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n",
    }
    assert.are.same({ 200, 200, 200 }, exchange(d, table.concat(heads)))
    port.wait_until(function()
      return #raw_log(ng, "candidate") >= 3 and #raw_log(ng, "secondary") >= 3
    end, 5, 0.02)
    local p, c, s = raw_log(ng, "primary"), raw_log(ng, "candidate"),
                    raw_log(ng, "secondary")
    assert.are.equal(3, #p)
    -- Legs may finish out of order: match them by path.
    local function by_path(list)
      local t = {}
      for _, e in ipairs(list) do t[e.raw:match("^GET (%S+)")] = e.raw end
      return t
    end
    local pp, cc, ss = by_path(p), by_path(c), by_path(s)
    for _, path in ipairs{ "/one", "/two", "/three" } do
      local _, marks_c = cc[path]:gsub("x%-shadow%-request: 1\r\n", "")
      local _, marks_s = ss[path]:gsub("x%-shadow%-request: 1\r\n", "")
      assert.are.equal(1, marks_c, path)
      assert.are.equal(1, marks_s, path)
      assert.are.equal(cc[path], ss[path], path)
      assert.are.equal(pp[path],
                       (cc[path]:gsub("x%-shadow%-request: 1\r\n", "", 1)),
                       path)
    end
    assert.matches("\r\nAccept: one\r\n", pp["/one"])
    assert.matches("\r\nAccept: two\r\n", pp["/two"])
    assert.is_nil(pp["/two"]:find("X-Drop", 1, true))
    assert.is_nil(pp["/three"]:find("Accept:", 1, true))
  end)
end)
