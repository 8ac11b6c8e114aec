-- HTTP/2 to backends: an HTTP/1.1 client -> shadowd -> backends that speak
-- h2, against real servers only: Debian's nginx with `listen ... http2`
-- (h2c with prior knowledge) and with TLS + http2 (ALPN), nghttpd, a
-- python3-h2 server that resets streams, sends GOAWAY or never answers,
-- and a python3-grpcio server for the rule that gRPC always goes over h2.
-- nginx's access log says which protocol each request came in with, and
-- its $connection which connection carried it.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local json = require "support.json"
local socket = require "socket"

local PY = "/usr/bin/python3"
local SUPPORT = "spec/support/"

local JSON = [[
  location / { content_by_lua_block {
    ngx.header["content-type"] = "application/json"
    ngx.print(require("cjson").encode({ who = "%s", v = 1,
      path = ngx.var.request_uri }))
  } }
  location /big { alias %s; }
  location /md5 { content_by_lua_block {
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    if not data then
      local f = io.open(ngx.req.get_body_file(), "rb")
      data = f:read("*a")
      f:close()
    end
    ngx.print(ngx.md5(data), " ", #data)
  } }
]]

local function run(argv)
  local code, out, err = process.run(argv, nil, 60)
  assert(code == 0, table.concat(argv, " ") .. ": " .. out .. err)
  return out
end

-- A server certificate for localhost and 127.0.0.1 from a CA of its own.
local function make_pki(dir)
  local function sh(cmd) run({ "sh", "-c", "cd '" .. dir .. "' && " .. cmd }) end
  sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
     .. "-subj /CN=spec-ca -days 2 2>/dev/null")
  sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.cnf")
  sh("openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr "
     .. "-subj /CN=localhost 2>/dev/null")
  sh("openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
     .. "-out srv.crt -days 2 -extfile san.cnf 2>/dev/null")
end

-- A Python server from spec/support, on a free port, once it listens.
local function python(script, ...)
  local p = port.free()
  local dir = process.tmpdir("shadow-py")
  local argv = { PY, SUPPORT .. script, tostring(p), ... }
  local proc = process.spawn(argv, { stdout = dir .. "/stdout",
                                     stderr = dir .. "/stderr" })
  local ok, err = port.wait(p, 15, proc)
  assert(ok, script .. " did not start: " .. tostring(err)
         .. (process.read_file(dir .. "/stderr") or ""))
  return { port = p, proc = proc, dir = dir,
           lines = function()
             return process.read_lines(dir .. "/stdout") or {}
           end,
           stop = function()
             proc:stop(5)
             process.rmdir(dir)
           end }
end

local function start(primary, candidate, extra)
  return shadowd.start{ text = function(addr)
    return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = %s,
  candidate = %s,
  sample = { rate = 1.0 },
  %s
}
]]):format(addr.listen, addr.admin, primary, candidate or "nil", extra or "")
  end }
end

local function distinct(list, field)
  local seen, n = {}, 0
  for _, r in ipairs(list) do
    if not seen[r[field]] then seen[r[field]], n = true, n + 1 end
  end
  return n
end

-- Established TCP connections to 127.0.0.1:p, as ss counts them.
local function established(p)
  local out = run({ "ss", "-Htn", "state", "established",
                    ("( dport = :%d )"):format(p) })
  local n = 0
  for _ in out:gmatch("[^\n]+") do n = n + 1 end
  return n
end

-- The hex MD5 of s, as nginx's ngx.md5 gives it (md5sum from coreutils).
local function ngx_md5(s)
  local dir = process.tmpdir("shadow-md5")
  process.write_file(dir .. "/b", s)
  local out = run({ "md5sum", dir .. "/b" })
  process.rmdir(dir)
  return out:match("^(%x+)")
end

-- POSTs n pieces of 64 KiB, chunked, to /md5 through d; checks nginx
-- got every byte.
local function upload(d, n)
  local piece = ("0123456789abcdef"):rep(4096)
  local parts, whole = {}, {}
  for i = 1, n do
    parts[#parts + 1] = ("%x\r\n%s\r\n"):format(#piece, piece)
    whole[i] = piece
  end
  local conn = assert(http.connect(d.port))
  conn:settimeout(30)
  local res = assert(conn:request{ raw = "POST /md5 HTTP/1.1\r\n"
    .. "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. table.concat(parts) .. "0\r\n\r\n" })
  conn:close()
  assert.are.equal(200, res.status)
  local body = table.concat(whole)
  assert.are.equal(ngx_md5(body) .. " " .. #body, res.body)
end

local function rss_kb(pid)
  local s = process.read_file(("/proc/%d/status"):format(pid)) or ""
  return tonumber(s:match("VmRSS:%s+(%d+)")) or 0
end

describe("HTTP/2 to backends", function()
  local dir, ng, big
  local BIG = 32 * 1024 * 1024
  setup(function()
    dir = process.tmpdir("shadow-h2up")
    make_pki(dir)
    big = dir .. "/big.bin"
    run({ "sh", "-c", ("head -c %d /dev/zero > '%s'"):format(BIG, big) })
    local cert = { cert = dir .. "/srv.crt", key = dir .. "/srv.key" }
    ng = nginx.start{
      servers = { h2p = JSON:format("primary", big),
                  h2c = JSON:format("candidate", big),
                  h2same = JSON:format("primary", big),
                  h1 = JSON:format("primary", big),
                  goaway = JSON:format("primary", big) .. "keepalive_requests 3;",
                  tlsh2 = JSON:format("tls", big),
                  tlsh1 = JSON:format("tls", big) },
      listen = { h2p = " http2", h2c = " http2", h2same = " http2",
                 goaway = " http2", tlsh2 = " http2" },
      tls = { tlsh2 = cert, tlsh1 = cert },
    }
  end)
  teardown(function()
    cleanup.stop_all(ng)
    process.rmdir(dir)
  end)

  local function h2c(name, opts)
    return ("shadow.http(%q, { %s })"):format(
      ("h2c://127.0.0.1:%d"):format(ng.ports[name]), opts or "")
  end

  it("shadows an h2c primary and an h2c candidate, and compares them",
     function()
    local d = start(h2c("h2p"), h2c("h2c"))
    finally(function() d:stop() end)
    for i = 1, 3 do
      local res = assert(http.get(d.port, "/v" .. i))
      assert.are.equal(200, res.status)
      assert.are.equal("primary", json.decode(res.body).who)
      assert.are.equal("/v" .. i, json.decode(res.body).path)
    end
    local s = d:wait_totals("compared", 3)
    assert.are.equal(3, s.totals.diverged) -- "who" differs
    assert.are.same({}, s.totals.candidate_errors)
    local div = d:divergences().divergences[1]
    assert.are.equal("/who", div.body.diffs[1].path)
    for _, name in ipairs({ "h2p", "h2c" }) do
      for _, r in ipairs(ng:wait_requests(name, 3)) do
        assert.are.equal("HTTP/2.0", r.protocol)
      end
    end
  end)

  it("answers HEAD from an h2c backend with the length it names", function()
    local d = start(h2c("h2p"))
    finally(function() d:stop() end)
    local res = assert(http.request(d.port, { method = "HEAD",
                                              path = "/big?head" }))
    assert.are.equal(200, res.status)
    assert.are.equal(tostring(BIG), res.headers["content-length"])
    assert.are.equal("", res.body)
  end)

  it("mixes an HTTP/1.1 primary with an h2c candidate", function()
    local d = start(("shadow.http(%q)"):format(ng:url("h1")), h2c("h2same"),
                    'mirror_methods = { "POST" },')
    finally(function() d:stop() end)
    local res = assert(http.request(d.port, { method = "POST", path = "/m",
      body = '{"a":1}', headers = { { "content-type", "application/json" } } }))
    assert.are.equal(200, res.status)
    local s = d:wait_totals("compared", 1)
    assert.are.equal(0, s.totals.diverged)
    assert.are.equal("HTTP/1.1", ng:wait_uri("h1", "/m")[1].protocol)
    assert.are.equal("HTTP/2.0", ng:wait_uri("h2same", "/m")[1].protocol)
  end)

  it("multiplexes concurrent requests as streams of one connection",
     function()
    local d = start(h2c("h2p"))
    finally(function() d:stop() end)
    local before = #ng:requests("h2p")
    run({ "wrk", "-t1", "-c32", "-d1s", d:url() .. "/mux" })
    local reqs = ng:requests_for("h2p", "/mux")
    assert.is_true(#reqs >= 100, #reqs .. " requests")
    assert.are.equal(1, distinct(reqs, "connection"))
    assert.are.equal(1, established(ng.ports.h2p))
    assert.is_true(#ng:requests("h2p") > before)
  end)

  it("opens another connection when max_streams are in use", function()
    local d = start(h2c("h2c", "max_streams = 4"))
    finally(function() d:stop() end)
    run({ "wrk", "-t1", "-c32", "-d1s", d:url() .. "/few" })
    local reqs = ng:requests_for("h2c", "/few")
    local n = distinct(reqs, "connection")
    -- 32 at once, 4 a connection: about 8 connections, never 32.
    assert.is_true(n >= 2 and n <= 8, n .. " connections")
  end)

  it("keeps a paused stream from stalling another on the same connection",
     function()
    local d = start(h2c("h2p", "max_connections = 1, timeout_ms = 3000"))
    finally(function() d:stop() end)
    assert.are.equal(200, assert(http.get(d.port, "/warm")).status)
    local rss0 = rss_kb(d.proc.pid)
    -- A client that asks for 32 MiB and does not read it: shadowd's
    -- leg pauses, its stream's window closes, the connection goes on.
    local slow = assert(http.connect(d.port))
    assert(slow:send(http.build{ path = "/big?paused" }))
    local res = assert(http.get(d.port, "/other"))
    assert.are.equal(200, res.status)
    assert.are.equal("/other", json.decode(res.body).path)
    -- The paused stream holds a window, not the body: nginx cannot finish
    -- sending it (it logs a request once it has sent it all) while the
    -- client does not read. Two seconds is a bound, not a synchronisation:
    -- a shadowd that read the whole body into memory would let nginx
    -- finish within milliseconds.
    assert.are.equal(0, #ng:wait_uri("h2p", "/big?paused", 1, 2))
    assert.is_true(rss_kb(d.proc.pid) - rss0 < 16 * 1024,
                   (rss_kb(d.proc.pid) - rss0) .. " KiB more")
    slow:settimeout(30)
    local whole = assert(slow:read_response())
    assert.are.equal(BIG, #whole.body)
    slow:close()
  end)

  it("streams a request body into a stream (chunked, 8 MiB)", function()
    local d = start(h2c("h2p"))
    finally(function() d:stop() end)
    upload(d, 128)
  end)

  it("resets only the stream of a client that went away", function()
    local d = start(h2c("h2p", "max_connections = 1"))
    finally(function() d:stop() end)
    local gone = assert(http.connect(d.port))
    assert(gone:send(http.build{ path = "/big?gone" }))
    assert(gone:read_response_head())
    gone:close()
    for i = 1, 3 do
      local res = assert(http.get(d.port, "/still" .. i))
      assert.are.equal(200, res.status)
    end
    local reqs = ng:wait_uri("h2p", "/still3")
    assert.are.equal(1, #reqs)
    -- The same connection carried the big one and the ones after it.
    local big = ng:wait_uri("h2p", "/big?gone")
    assert.are.equal(big[#big].connection, reqs[1].connection)
  end)

  it("retries the requests a GOAWAY refused (nginx's keepalive_requests)",
     function()
    local d = start(h2c("goaway"))
    finally(function() d:stop() end)
    for i = 1, 12 do
      local res = assert(http.get(d.port, "/g" .. i))
      assert.are.equal(200, res.status)
    end
    -- nginx ends each connection after 3 requests with a GOAWAY.
    assert.is_true(distinct(ng:wait_requests("goaway", 12), "connection") >= 4)
  end)

  describe("against a server that misbehaves (python3-h2)", function()
    local py
    setup(function() py = python("h2_server.py") end)
    teardown(function() py.stop() end)

    local function daemon()
      return start(("shadow.http(%q, { timeout_ms = 500 })")
        :format("h2c://127.0.0.1:" .. py.port))
    end

    it("maps RST_STREAM to 502 reset, and a silent stream to 504", function()
      local d = daemon()
      finally(function() d:stop() end)
      local res = assert(http.get(d.port, "/rst"))
      assert.are.equal(502, res.status)
      assert.are.equal("primary failed: reset", json.decode(res.body).error)
      res = assert(http.get(d.port, "/hang"))
      assert.are.equal(504, res.status)
      -- The connection serves on.
      res = assert(http.get(d.port, "/after"))
      assert.are.equal(200, res.status)
    end)

    it("retries a stream a GOAWAY refused, on a new connection", function()
      local d = daemon()
      finally(function() d:stop() end)
      local res = assert(http.get(d.port, "/goaway-once"))
      assert.are.equal(200, res.status)
      assert.matches("^h2 /goaway%-once conn %d+$", res.body)
      local reqs = 0
      for _, l in ipairs(py.lines()) do
        if l:match("^req %d+ /goaway%-once$") then reqs = reqs + 1 end
      end
      assert.is_true(reqs >= 1)
    end)

    it("passes the trailers on", function()
      local d = daemon()
      local conn = assert(http.connect(d.port))
      finally(function() conn:close(); d:stop() end)
      assert(conn:send(http.build{ path = "/trailers",
                                   headers = { { "te", "trailers" } } }))
      conn:settimeout(5)
      local got = {}
      repeat
        local line = conn.sock:receive("*l")
        got[#got + 1] = line
      until not line or line:match("^x%-t:")
      local text = table.concat(got, "\n")
      assert.matches("grpc%-status: 0", text)
      assert.matches("x%-t: 1", text)
    end)
  end)

  it("sends gRPC to an http:// backend over h2c (python3-grpcio)", function()
    local stop = cleanup.new()
    finally(stop.run)
    local p = stop.add(python("grpc_echo.py"))
    local c = stop.add(python("grpc_echo.py", "cand"))
    local d = stop.add(start(
      ("shadow.http(%q)"):format("http://127.0.0.1:" .. p.port),
      ("shadow.http(%q)"):format("http://127.0.0.1:" .. c.port),
      'mirror_methods = { "POST" },'))
    local msg = "\0\0\0\0\2hi"
    local res = assert(http.request(d.port, { method = "POST",
      path = "/echo.Echo/Say", body = msg,
      headers = { { "content-type", "application/grpc" },
                  { "te", "trailers" } } }))
    assert.are.equal(200, res.status)
    assert.are.equal("\0\0\0\0\7echo:hi", res.body)
    local s = d:wait_totals("compared", 1)
    assert.are.equal(1, s.totals.diverged) -- echo:hi vs echo:candhi
    assert.are.same({ "listening", "call /echo.Echo/Say" }, p.lines())
    assert.are.same({ "listening", "call /echo.Echo/Say" }, c.lines())
  end)

  describe("over TLS (ALPN)", function()
    local function tls(name, protocol)
      return ("shadow.http(%q, { protocol = %q, tls = { ca_file = %q } })")
        :format(("https://localhost:%d"):format(ng.ports[name]), protocol,
                dir .. "/ca.crt")
    end

    it("speaks h2 with protocol h2 and auto, HTTP/1.1 when the server has no h2",
       function()
      local d = start(tls("tlsh2", "h2"), tls("tlsh1", "auto"))
      finally(function() d:stop() end)
      assert.are.equal(200, assert(http.get(d.port, "/alpn-h2")).status)
      d:wait_totals("compared", 1)
      assert.are.equal("HTTP/2.0", ng:wait_uri("tlsh2", "/alpn-h2")[1].protocol)
      assert.are.equal("HTTP/1.1", ng:wait_uri("tlsh1", "/alpn-h2")[1].protocol)
      local d2 = start(tls("tlsh2", "auto"))
      finally(function() d:stop(); d2:stop() end)
      for i = 1, 3 do
        assert.are.equal(200, assert(http.get(d2.port, "/auto" .. i)).status)
        assert.are.equal("HTTP/2.0",
                         ng:wait_uri("tlsh2", "/auto" .. i)[1].protocol)
      end
    end)

    it("sends a streamed upload over HTTP/1.1 when auto learns the server has no h2",
       function()
      local d = start(tls("tlsh1", "auto"))
      finally(function() d:stop() end)
      -- curl sends Expect: 100-continue, so the leg starts before the body
      -- comes and the body queues while the first connection asks.
      local file = dir .. "/upload.bin"
      run({ "sh", "-c", ("head -c 8000000 /dev/zero > '%s'"):format(file) })
      local body = process.read_file(file)
      for _ = 1, 2 do
        local out = run({ "curl", "-s", "-H", "Transfer-Encoding: chunked",
                          "--data-binary", "@" .. file, d:url() .. "/md5" })
        assert.are.equal(ngx_md5(body) .. " " .. #body, out)
      end
      upload(d, 8)
      local reqs = ng:wait_uri("tlsh1", "/md5", 3)
      assert.are.equal(3, #reqs)
      assert.are.equal("HTTP/1.1", reqs[1].protocol)
    end)

    it("holds concurrent first requests of an auto pool for its answer",
       function()
      -- The first connection asks (ALPN); requests that come meanwhile
      -- wait for the answer, then share its h2 connection.
      local d = start(tls("tlsh2", "auto"))
      finally(function() d:stop() end)
      local out = run({ "wrk", "-t1", "-c16", "-d1s", "--timeout", "4s",
                        d:url() .. "/auto-burst" })
      assert.is_nil(out:find("Socket errors", 1, true), out)
      assert.is_nil(out:find("Non-2xx", 1, true), out)
      local reqs = ng:requests_for("tlsh2", "/auto-burst")
      assert.is_true(#reqs >= 16, #reqs .. " requests")
      assert.are.equal(1, distinct(reqs, "connection"))
    end)

    it("sends gRPC over h2 to an https:// backend left at http/1.1", function()
      local d = start(tls("tlsh2", "http/1.1"))
      finally(function() d:stop() end)
      assert.are.equal(200, assert(http.get(d.port, "/plain")).status)
      local res = assert(http.request(d.port, { method = "POST",
        path = "/pkg.Svc/Call", body = "\0\0\0\0\0",
        headers = { { "content-type", "application/grpc+proto" } } }))
      assert.are.equal(200, res.status)
      assert.are.equal("HTTP/1.1", ng:wait_uri("tlsh2", "/plain")[1].protocol)
      assert.are.equal("HTTP/2.0",
                       ng:wait_uri("tlsh2", "/pkg.Svc/Call")[1].protocol)
    end)

    it("fails protocol h2 against a server without h2, naming ALPN", function()
      local d = start(tls("tlsh1", "h2"))
      finally(function() d:stop() end)
      local res = assert(http.get(d.port, "/no-h2"))
      assert.are.equal(502, res.status)
      local e = json.decode(res.body).error
      assert.matches("^primary failed: tls: ", e)
      assert.matches("application protocol", e)
    end)
  end)

  it("shadows to nghttpd as an h2c candidate", function()
    local stop = cleanup.new()
    finally(stop.run)
    local docs = dir .. "/docs"
    run({ "mkdir", "-p", docs })
    process.write_file(docs .. "/file.txt", "same bytes\n")
    local p = port.free()
    local proc = stop.add(process.spawn({ "/usr/sbin/nghttpd", "--no-tls",
      "-d", docs, tostring(p) }, { stdout = dir .. "/nghttpd.out",
                                   stderr = dir .. "/nghttpd.err" }))
    assert(port.wait(p, 10, proc))
    local d = stop.add(start(("shadow.http(%q)"):format(ng:url("h1")),
      ("shadow.http(%q)"):format("h2c://127.0.0.1:" .. p)))
    local res = assert(http.get(d.port, "/file.txt"))
    assert.are.equal(200, res.status)
    local s = d:wait_totals("compared", 1)
    assert.are.same({}, s.totals.candidate_errors)
    assert.are.equal(1, s.totals.diverged) -- nginx's JSON vs the file
  end)

  it("replays a capture to an h2c candidate", function()
    local cap = dir .. "/capture.ndjson"
    local d = start(("shadow.http(%q)"):format(ng:url("h1")), nil,
                    ("capture = { file = %q, rate = 1 },"):format(cap))
    for i = 1, 3 do
      assert.are.equal(200, assert(http.get(d.port, "/r" .. i)).status)
    end
    port.wait_until(function()
      local s = d:stats()
      return s.capture and s.capture.sink.lines >= 3
    end, 10, 0.05)
    d:stop()
    local code, out, err = process.run({ shadowd.binary(), "replay",
      "--candidate", ("h2c://127.0.0.1:%d"):format(ng.ports.h2same),
      "--quiet", cap }, nil, 60)
    assert.are.equal(0, code, out .. err)
    for i = 1, 3 do
      assert.are.equal("HTTP/2.0", ng:wait_uri("h2same", "/r" .. i)[1].protocol)
    end
  end)

  it("shows the protocol in --check and refuses what cannot work", function()
    local conf = dir .. "/check.lua"
    process.write_file(conf, [[
local shadow = require "shadow"
return { primary = shadow.http("h2c://127.0.0.1:1"),
         candidate = shadow.http("https://127.0.0.1:2",
                                 { protocol = "auto", max_streams = 10 }) }
]])
    local code, out, err = process.run({ shadowd.binary(), "--check",
                                         "--config", conf }, nil, 30)
    assert.are.equal(0, code, err)
    assert.matches("primary    h2c://127.0.0.1:1 (connect", out, 1, true)
    assert.matches("ms); h2c, 100 streams a connection\n", out, 1, true)
    assert.matches("; auto (ALPN: h2 or http/1.1), 10 streams a connection; tls",
                   out, 1, true)
    for _, bad in ipairs({
      { 'shadow.http("http://127.0.0.1:1", { protocol = "auto" })',
        'protocol = "auto" asks the server through TLS' },
      { 'shadow.http("http://127.0.0.1:1", { protocol = "h3" })',
        'protocol must be "http/1.1", "h2" or "auto", not "h3"' },
      { 'shadow.http("h2c://127.0.0.1:1", { protocol = "http/1.1" })',
        "an h2c:// URL speaks HTTP/2" },
      { 'shadow.http("h2c://127.0.0.1:1", { max_streams = 0 })',
        "max_streams" },
    }) do
      process.write_file(conf, 'local shadow = require "shadow"\n'
        .. "return { primary = " .. bad[1] .. " }\n")
      code, out, err = process.run({ shadowd.binary(), "--check",
                                     "--config", conf }, nil, 30)
      assert.are_not.equal(0, code)
      assert.matches(bad[2], err, 1, true)
    end
  end)
end)
