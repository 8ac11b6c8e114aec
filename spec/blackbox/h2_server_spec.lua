-- HTTP/2 from clients, with real clients: curl with prior knowledge (h2c)
-- on the plain listener and with ALPN h2 on the TLS one, nghttp's many
-- streams on one connection, h2load for load, and an HTTP/1.1 client on
-- the same listeners; every request is compared as an HTTP/1.1 one is
-- (nginx backends, which see HTTP/1.1: Host from :authority, a body of
-- unknown length chunked, X-Forwarded-Proto https over TLS). Bad input
-- (spec/support/h2_bad.py, frames written by hand) gets the protocol's
-- error code, is counted, and the server goes on serving. A drain sends
-- GOAWAY and lets the stream in flight finish.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local json = require "support.json"

local PYTHON = io.open("/usr/bin/python3") and "/usr/bin/python3" or "python3"
local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local BAD = HERE .. "../support/h2_bad.py"

-- What a backend saw, as JSON; the candidate differs on /diff.
local ECHO = [[
  location /slow { content_by_lua_block {
    ngx.sleep(1)
    ngx.print("slow done")
  } }
  location /big { content_by_lua_block {
    ngx.header["content-type"] = "application/octet-stream"
    for i = 1, 64 do ngx.print(string.rep(string.char(64 + i %% 26), 16384)) end
  } }
  location / { content_by_lua_block {
    ngx.req.read_body()
    local body = ngx.req.get_body_data() or ""
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb"); body = f:read("*a"); f:close()
    end
    local h = ngx.req.get_headers()
    ngx.header["content-type"] = "application/json"
    ngx.print(require("cjson").encode({
      who = ngx.var.uri == "/diff" and "%s" or "same",
      method = ngx.req.get_method(), uri = ngx.var.request_uri,
      http = ngx.req.http_version(), host = h.host or "",
      proto = h["x-forwarded-proto"] or "", te = h.te or "",
      chunked = h["transfer-encoding"] or "",
      length = h["content-length"] or "", body_bytes = #body,
      cookie = h.cookie or "" }))
  } }
]]

local function run(argv, timeout)
  return process.run(argv, nil, timeout or 60)
end

local function bad(p, case, n)
  local argv = { PYTHON, BAD, tostring(p), case }
  if n then argv[#argv + 1] = tostring(n) end
  local code, out, err = run(argv, 60)
  assert(code == 0, case .. ": " .. out .. err)
  return json.decode(out)
end

-- curl's answer: body, then "\n<http_version> <status>".
local function curl(args)
  local argv = { "curl", "-sS", "-w", "\n%{http_version} %{http_code}" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local code, out, err = run(argv)
  assert(code == 0, table.concat(argv, " ") .. ": " .. err)
  local body, version, status = out:match("^(.*)\n(%S+) (%d+)$")
  return body, version, tonumber(status)
end

describe("HTTP/2 from clients", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = { primary = ECHO:format("primary"),
                                  candidate = ECHO:format("candidate") } }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       key = "nil" }
  end)
  teardown(function()
    cleanup.stop_all(d, ng)
  end)

  it("serves curl with prior knowledge: a GET, a POST, a body of unknown "
     .. "length, a streamed download, and compares each", function()
    local before = d:stats().totals.compared
    local url = "http://127.0.0.1:" .. d.port
    local body, version, status = curl({ "--http2-prior-knowledge",
      "-H", "cookie: a=1", "-H", "cookie: b=2", url .. "/get?x=1" })
    assert.are.equal("2", version)
    assert.are.equal(200, status)
    local seen = json.decode(body)
    -- The backend speaks HTTP/1.1 and gets Host from :authority; the
    -- cookie crumbs are one header again (RFC 9113 section 8.2.3).
    assert.are.equal("GET", seen.method)
    assert.are.equal("/get?x=1", seen.uri)
    assert.are.equal(1.1, seen.http)
    assert.are.equal("127.0.0.1:" .. d.port, seen.host)
    assert.are.equal("http", seen.proto)
    assert.are.equal("a=1; b=2", seen.cookie)
    -- A POST with a length, then one whose length is unknown (curl -T -
    -- streams stdin): chunked to the HTTP/1.1 backend.
    local dir = process.tmpdir("shadow-h2-post")
    finally(function() process.rmdir(dir) end)
    process.write_file(dir .. "/body", string.rep("0123456789", 30000))
    body, version, status = curl({ "--http2-prior-knowledge",
      "--data-binary", "@" .. dir .. "/body", url .. "/post" })
    assert.are.equal(200, status)
    seen = json.decode(body)
    assert.are.equal(300000, seen.body_bytes)
    assert.are.equal("300000", seen.length)
    local code, out = run({ "sh", "-c", ("cat %s/body | curl -sS "
      .. "--http2-prior-knowledge -X POST -T - %s/stream"):format(dir, url) })
    assert.are.equal(0, code)
    seen = json.decode(out)
    assert.are.equal(300000, seen.body_bytes)
    assert.are.equal("chunked", seen.chunked)
    -- 1 MiB streamed out in DATA frames, byte for byte.
    code, out = run({ "curl", "-sS", "--http2-prior-knowledge",
                      url .. "/big" })
    assert.are.equal(0, code)
    assert.are.equal(1048576, #out)
    assert.are.equal(string.rep("A", 16384), out:sub(1, 16384))
    d:wait_totals("compared", before + 5)
  end)

  it("records a divergence of a request that came over HTTP/2", function()
    local _, version, status = curl({ "--http2-prior-knowledge",
      "http://127.0.0.1:" .. d.port .. "/diff" })
    assert.are.equal("2", version)
    assert.are.equal(200, status)
    local found
    port.wait_until(function()
      for _, r in ipairs(d:divergences().divergences or d:divergences()) do
        if r.path == "/diff" then found = r end
      end
      return found
    end, 10, 0.05)
    assert.are.equal("GET", found.method)
    assert.truthy(found.body.differs)
  end)

  it("takes many streams on one connection (nghttp) and h2load's "
     .. "-n 2000 -c 4 -m 10, all 2xx", function()
    local urls = { "nghttp", "-n", "-s" }
    for i = 1, 20 do
      urls[#urls + 1] = ("http://127.0.0.1:%d/many/%d"):format(d.port, i)
    end
    local code, out, err = run(urls)
    assert.are.equal(0, code, out .. err)
    local n = 0
    for _ in out:gmatch("%s200%s+%d+ /many/") do n = n + 1 end
    assert.are.equal(20, n, out)
    code, out, err = run({ "h2load", "-n", "2000", "-c", "4", "-m", "10",
      ("http://127.0.0.1:%d/load"):format(d.port) }, 120)
    assert.are.equal(0, code, err)
    assert.truthy(out:find("status codes: 2000 2xx", 1, true), out)
    -- An HTTP/1.1 client on the same listener is untouched.
    local res = assert(http.get(d.port, "/h1"))
    assert.are.equal(200, res.status)
    assert.are.equal(1.1, json.decode(res.body).http)
  end)

  it("holds back a stream whose client does not open its window, and "
     .. "that stream only", function()
    -- /big is 1 MiB: stream 1 gets its first window (65535 bytes) and
    -- waits; stream 3 on the same connection is answered meanwhile.
    local r = bad(d.port, "slow_stream")
    assert.are.equal(200, r.status["1"])
    assert.are.equal(65535, r.data["1"])
    assert.are.same({ 3 }, r.ended)
    assert.are.equal(200, r.status["3"])
  end)

  it("answers bad input with the protocol's error code, counts it, and "
     .. "goes on serving", function()
    local r = bad(d.port, "bad_preface")
    assert.are.equal(1, r.goaway) -- PROTOCOL_ERROR
    assert.is_true(r.closed)
    r = bad(d.port, "settings_len")
    assert.are.equal(6, r.goaway) -- FRAME_SIZE_ERROR
    assert.is_true(r.closed)
    for _, case in ipairs({ "no_path", "upper_name", "conn_header" }) do
      r = bad(d.port, case)
      assert.are.equal(1, r.rst["1"], case) -- RST_STREAM PROTOCOL_ERROR
      assert.is_false(r.closed, case)
    end
    r = bad(d.port, "big_headers")
    assert.are.equal(431, r.status["1"])
    r = bad(d.port, "many_streams", 200)
    assert.are.equal(200 - 128, r.rst_codes["7"]) -- REFUSED_STREAM
    r = bad(d.port, "reset_flood", 3000)
    assert.are.equal(11, r.goaway) -- ENHANCE_YOUR_CALM
    assert.is_true(r.closed)
    r = bad(d.port, "ok")
    assert.are.equal(200, r.status["1"])
    local errors = d:stats().totals.h2_errors
    assert.are.equal(1, errors.bad_preface)
    assert.are.equal(1, errors.frame_size)
    assert.are.equal(3, errors.invalid_header)
    assert.are.equal(1, errors.header_list)
    assert.are.equal(72, errors.refused_stream)
    assert.are.equal(1, errors.reset_flood)
    local code, metrics = run({ "curl", "-sS",
      ("http://127.0.0.1:%d/metrics"):format(d.admin_port) })
    assert.are.equal(0, code)
    assert.truthy(metrics:find('shadow_h2_errors_total{reason="reset_flood"} 1',
                               1, true))
  end)
end)

describe("HTTP/2 over the TLS listener", function()
  local dir, ng
  setup(function()
    dir = process.tmpdir("shadow-h2-tls")
    assert(run({ "sh", "-c", ("cd '%s' && openssl req -x509 -newkey rsa:2048 "
      .. "-nodes -keyout srv.key -out srv.crt -subj /CN=localhost -days 2 "
      .. "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null")
      :format(dir) }) == 0)
    ng = nginx.start{ servers = { primary = ECHO:format("primary"),
                                  candidate = ECHO:format("candidate") } }
  end)
  teardown(function()
    cleanup.stop_all(ng)
    process.rmdir(dir)
  end)

  it("speaks h2 to a client that offers it (ALPN) and HTTP/1.1 to one "
     .. "that does not, and tells backends https", function()
    local d = shadowd.start{ text = function(addr)
      return ([[
local shadow = require "shadow"
return {
  listen = { addr = %q, tls = { cert_file = %q, key_file = %q } },
  admin = %q,
  primary = shadow.http(%q), candidate = shadow.http(%q),
  sample = { rate = 1.0 },
}
]]):format(addr.listen, dir .. "/srv.crt", dir .. "/srv.key", addr.admin,
           ng:url("primary"), ng:url("candidate"))
    end }
    finally(function() d:stop() end)
    local url = ("https://localhost:%d/tls"):format(d.port)
    local body, version, status = curl({ "--http2", "--cacert",
      dir .. "/srv.crt", url })
    assert.are.equal("2", version)
    assert.are.equal(200, status)
    assert.are.equal("https", json.decode(body).proto)
    body, version, status = curl({ "--http1.1", "--cacert",
      dir .. "/srv.crt", url })
    assert.are.equal("1.1", version)
    assert.are.equal(200, status)
    assert.are.equal("https", json.decode(body).proto)
    local code, out = run({ "h2load", "-n", "200", "-c", "2", "-m", "5",
      ("https://127.0.0.1:%d/load"):format(d.port) }, 120)
    assert.are.equal(0, code)
    assert.truthy(out:find("Application protocol: h2", 1, true), out)
    assert.truthy(out:find("status codes: 200 2xx", 1, true), out)
    d:wait_totals("compared", 202)
  end)
end)

describe("HTTP/2 and a drain", function()
  it("sends GOAWAY on SIGTERM and lets the stream in flight finish",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local dir = process.tmpdir("shadow-h2-drain")
    stop.add(function() process.rmdir(dir) end)
    local ng = stop.add(nginx.start{
      servers = { primary = ECHO:format("primary") } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary") })
    local client = process.spawn({ "nghttp", "-nv",
      ("http://127.0.0.1:%d/slow"):format(d.port) },
      { stdout = dir .. "/out", stderr = dir .. "/err" })
    -- The stream is in flight once nginx has it.
    port.wait_until(function()
      return d:stats().totals.requests >= 1
    end, 10, 0.02)
    d.proc:kill(process.SIGTERM)
    local how, code = client:wait(15)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    local out = process.read_file(dir .. "/out")
    assert.truthy(out:find("recv GOAWAY frame", 1, true), out)
    assert.truthy(out:find("error_code=NO_ERROR", 1, true), out)
    assert.truthy(out:find(":status: 200", 1, true), out)
    local how2 = d.proc:wait(15)
    assert.are.equal("exited", how2)
  end)
end)

describe("HTTP/2 and a reload", function()
  it("sends GOAWAY (NO_ERROR) to an idle connection when a reload applies "
     .. "a new config, and the client's next connection is served", function()
    local stop = cleanup.new()
    finally(stop.run)
    local dir = process.tmpdir("shadow-h2-reload")
    stop.add(function() process.rmdir(dir) end)
    local ng = stop.add(nginx.start{
      servers = { primary = ECHO:format("primary") } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary") })
    local client = process.spawn({ PYTHON, BAD, tostring(d.port), "idle" },
      { stdout = dir .. "/out", stderr = dir .. "/err" })
    port.wait_until(function()
      return d:stats().totals.requests >= 1
    end, 10, 0.02)
    local conf = process.read_file(d.config)
    process.write_file(d.config, conf .. "-- changed\n")
    d.proc:kill(process.SIGHUP)
    local how, code = client:wait(30)
    assert.are.equal("exited", how)
    assert.are.equal(0, code, process.read_file(dir .. "/err"))
    local r = json.decode(process.read_file(dir .. "/out"))
    assert.are.equal(200, r.status["1"])
    assert.are.equal(0, r.goaway) -- NO_ERROR
    assert.are.equal(1, r.last_stream)
    assert.is_true(r.closed)
    assert.are.equal(200, bad(d.port, "ok").status["1"])
  end)
end)

describe("HTTP/2 flow control against a primary that does not read",
         function()
  -- Accepts and never reads, with a small receive buffer: the body
  -- backs up into shadowd, which stops opening the stream's window.
  local DEAF = [[
import socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(8)
kept = []
while True:
    kept.append(ls.accept()[0])
]]

  it("answers DATA sent past the window with FLOW_CONTROL_ERROR, counted",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local p = port.free()
    stop.add(process.spawn({ PYTHON, "-c", DEAF, tostring(p) }))
    assert(port.wait(p, 10))
    local d = stop.add(shadowd.start{ primary = "http://127.0.0.1:" .. p,
                                      primary_timeout_ms = 20000 })
    -- 6 MB at once, ignoring the window: shadowd holds what it was given
    -- room for (the stream's window) and no more.
    local r = bad(d.port, "past_window", 6000000)
    assert.are.equal(3, r.goaway or r.rst["1"]) -- FLOW_CONTROL_ERROR
    -- Counted per answer sent: the stream's RST_STREAM, and the GOAWAY
    -- when the bytes past it also overran the connection's window (how
    -- much arrived before the answer depends on timing).
    local n = d:stats().totals.h2_errors.flow_control
    assert.is_true(n == 1 or n == 2, "flow_control " .. tostring(n))
  end)
end)

describe("HTTP/2 and the timeouts", function()
  it("closes a connection that sends no request within header_timeout_ms",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{
      servers = { primary = ECHO:format("primary") } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
                                      limits = { header_timeout_ms = 300 } })
    local r = bad(d.port, "silent")
    assert.are.equal(0, r.goaway)
    assert.is_true(r.closed)
  end)

  it("sends GOAWAY and closes a connection idle past idle_timeout_ms",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{
      servers = { primary = ECHO:format("primary") } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
                                      limits = { idle_timeout_ms = 300 } })
    local r = bad(d.port, "idle")
    assert.are.equal(200, r.status["1"])
    assert.are.equal(0, r.goaway)
    assert.is_true(r.closed)
  end)
end)

describe("HTTP/2 and the body limit", function()
  it("answers 413 to a body over limits.body_bytes, declared or not",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local dir = process.tmpdir("shadow-h2-limit")
    stop.add(function() process.rmdir(dir) end)
    local ng = stop.add(nginx.start{
      servers = { primary = ECHO:format("primary") } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
                                      limits = { body_bytes = 1000 } })
    process.write_file(dir .. "/body", string.rep("x", 5000))
    local url = ("http://127.0.0.1:%d/up"):format(d.port)
    local body, version, status = curl({ "--http2-prior-knowledge",
      "--data-binary", "@" .. dir .. "/body", url })
    assert.are.equal("2", version)
    assert.are.equal(413, status)
    assert.are.equal("payload too large", json.decode(body).error)
    local code, out = run({ "sh", "-c", ("cat %s/body | curl -sS -w "
      .. "' %%{http_code}' --http2-prior-knowledge -X POST -T - %s")
      :format(dir, url) })
    assert.are.equal(0, code)
    assert.truthy(out:find(" 413$"), out)
    -- The connection's other streams, and new ones, are served.
    body, version, status = curl({ "--http2-prior-knowledge", url })
    assert.are.equal(200, status)
  end)
end)
