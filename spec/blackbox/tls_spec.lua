-- HTTPS backends and the TLS listener, against Debian nginx with
-- certificates from a CA the spec makes with the openssl CLI: verified and
-- compared when ca_file names the CA; an untrusted primary is a 502 naming
-- tls, an untrusted candidate a counted tls error the client never sees; a
-- name mismatch is refused; mutual TLS; sessions resumed on new
-- connections; the listener serves curl and tells backends https.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local json = require "support.json"
local socket = require "socket"

local function run(argv)
  local code, out, err = process.run(argv, nil, 60)
  assert(code == 0, table.concat(argv, " ") .. ": " .. out .. err)
  return out
end

-- A CA, a server certificate for localhost and 127.0.0.1 signed by it, one
-- from another CA (untrusted), and a client certificate for mutual TLS.
local function make_pki(dir)
  local function sh(cmd) run({ "sh", "-c", "cd '" .. dir .. "' && " .. cmd }) end
  sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
     .. "-subj /CN=spec-ca -days 2 2>/dev/null")
  sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key "
     .. "-out other.crt -subj /CN=other-ca -days 2 2>/dev/null")
  sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.cnf")
  for _, name in ipairs({ "srv", "evil" }) do
    sh(("openssl req -newkey rsa:2048 -nodes -keyout %s.key -out %s.csr "
        .. "-subj /CN=localhost 2>/dev/null"):format(name, name))
  end
  sh("openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
     .. "-out srv.crt -days 2 -extfile san.cnf 2>/dev/null")
  sh("openssl x509 -req -in evil.csr -CA other.crt -CAkey other.key "
     .. "-CAcreateserial -out evil.crt -days 2 -extfile san.cnf 2>/dev/null")
  sh("openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
     .. "-subj /CN=shadowd 2>/dev/null")
  sh("openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key "
     .. "-CAcreateserial -out client.crt -days 2 2>/dev/null")
  -- One the CA signed for a day in 2020: expired. `openssl ca` is the
  -- CLI that takes explicit dates.
  sh("openssl req -newkey rsa:2048 -nodes -keyout old.key -out old.csr "
     .. "-subj /CN=localhost 2>/dev/null")
  sh("touch index.txt && echo 01 > serial && printf '"
     .. "[ca]\\ndefault_ca=c\\n[c]\\ndatabase=index.txt\\nnew_certs_dir=.\\n"
     .. "serial=serial\\ndefault_md=sha256\\npolicy=p\\n[p]\\n"
     .. "commonName=supplied\\n[ext]\\n"
     .. "subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ca.cnf")
  sh("openssl ca -config ca.cnf -batch -cert ca.crt -keyfile ca.key "
     .. "-in old.csr -out old.crt -startdate 20200101000000Z "
     .. "-enddate 20200102000000Z -extensions ext 2>/dev/null")
end

local ECHO = [[
  location / { content_by_lua_block {
    ngx.header["content-type"] = "application/json"
    ngx.print(require("cjson").encode({ who = "%s",
      proto = ngx.var.http_x_forwarded_proto or "" }))
  } }
]]

describe("HTTPS backends", function()
  local dir, ng
  setup(function()
    dir = process.tmpdir("shadow-tls")
    make_pki(dir)
    local good = { cert = dir .. "/srv.crt", key = dir .. "/srv.key" }
    ng = nginx.start{
      servers = { primary = ECHO:format("primary"),
                  candidate = ECHO:format("candidate"),
                  untrusted = ECHO:format("untrusted"),
                  mtls = ECHO:format("mtls"),
                  expired = ECHO:format("expired"),
                  once = ECHO:format("once"),
                  plain = ECHO:format("plain") },
      tls = { primary = good, candidate = good,
              untrusted = { cert = dir .. "/evil.crt", key = dir .. "/evil.key" },
              expired = { cert = dir .. "/old.crt", key = dir .. "/old.key" },
              once = { cert = good.cert, key = good.key,
                       extra = "    keepalive_requests 1;\n" },
              mtls = { cert = good.cert, key = good.key,
                       extra = ("    ssl_client_certificate %s/ca.crt;\n"
                                .. "    ssl_verify_client on;\n"):format(dir) } },
    }
  end)
  teardown(function()
    cleanup.stop_all(ng)
    process.rmdir(dir)
  end)

  local function https(name, host)
    return ("https://%s:%d"):format(host or "localhost", ng.ports[name])
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

  local function backend(url, tls)
    return ("shadow.http(%q, { tls = { %s } })"):format(url, tls)
  end

  it("verifies against ca_file, and compares", function()
    local ca = ("ca_file = %q"):format(dir .. "/ca.crt")
    local d = start(backend(https("primary"), ca),
                    backend(https("candidate", "127.0.0.1"), ca))
    finally(function() d:stop() end)
    for i = 1, 3 do
      local res = assert(http.get(d.port, "/v" .. i))
      assert.are.equal(200, res.status)
      assert.are.equal("primary", json.decode(res.body).who)
    end
    local s = d:wait_totals("compared", 3)
    assert.are.equal(3, s.totals.diverged) -- "who" differs
    assert.are.same({}, s.totals.candidate_errors)
    assert.matches("TLS", ng:requests("primary")[1].ssl_protocol)
  end)

  it("answers 502 naming tls for an untrusted primary", function()
    local d = start(backend(https("untrusted"),
                            ("ca_file = %q"):format(dir .. "/ca.crt")))
    finally(function() d:stop() end)
    local res = assert(http.get(d.port, "/x"))
    assert.are.equal(502, res.status)
    local e = json.decode(res.body).error
    assert.matches("^primary failed: tls: ", e)
    assert.matches("certificate", e)
  end)

  it("counts an untrusted candidate as a tls error, unseen by clients",
     function()
    local ca = ("ca_file = %q"):format(dir .. "/ca.crt")
    local d = start(backend(https("primary"), ca),
                    backend(https("untrusted"), ca))
    finally(function() d:stop() end)
    local res = assert(http.get(d.port, "/y"))
    assert.are.equal(200, res.status)
    port.wait_until(function()
      return (d:stats().totals.candidate_errors.tls or 0) >= 1
    end, 5, 0.02)
    assert.are.equal(1, d:stats().totals.candidate_errors.tls)
  end)

  it("refuses a certificate for another name", function()
    local d = start(backend(https("primary"),
      ("ca_file = %q, server_name = %q"):format(dir .. "/ca.crt",
                                                "other.example")))
    finally(function() d:stop() end)
    local res = assert(http.get(d.port, "/z"))
    assert.are.equal(502, res.status)
    assert.matches("tls: .*mismatch", json.decode(res.body).error)
  end)

  it("refuses an expired certificate", function()
    local d = start(backend(https("expired"),
                            ("ca_file = %q"):format(dir .. "/ca.crt")))
    finally(function() d:stop() end)
    local res = assert(http.get(d.port, "/old"))
    assert.are.equal(502, res.status)
    assert.matches("^primary failed: tls: .*expired",
                   json.decode(res.body).error)
  end)

  it("gives up a handshake the server never answers, as a tls failure",
     function()
    -- A listener that takes connections (the kernel completes them) and
    -- never says a word.
    local stop = cleanup.new()
    finally(stop.run)
    local mute = assert(socket.bind("127.0.0.1", 0))
    stop.add(function() mute:close() end)
    local _, mute_port = mute:getsockname()
    local d = stop.add(start(("shadow.http(%q, { connect_timeout_ms = 300 })")
                             :format("https://127.0.0.1:" .. mute_port)))
    local res = assert(http.get(d.port, "/hang"))
    assert.are.equal(502, res.status)
    assert.are.equal("primary failed: tls: handshake timed out",
                     json.decode(res.body).error)
  end)

  it("presents a client certificate for mutual TLS", function()
    local ca = ("ca_file = %q"):format(dir .. "/ca.crt")
    local stop = cleanup.new()
    finally(stop.run)
    local d = stop.add(start(backend(https("mtls"), ca .. (", cert_file = %q, "
      .. "key_file = %q"):format(dir .. "/client.crt", dir .. "/client.key"))))
    local res = assert(http.get(d.port, "/m"))
    assert.are.equal(200, res.status)
    assert.are.equal("mtls", json.decode(res.body).who)
    -- Without it, nginx refuses (its 400 passes through).
    local d2 = stop.add(start(backend(https("mtls"), ca)))
    res = assert(http.get(d2.port, "/m"))
    assert.are.equal(400, res.status)
  end)

  it("keeps TLS connections pooled, and resumes sessions on new ones",
     function()
    local ca = ("ca_file = %q"):format(dir .. "/ca.crt")
    local stop = cleanup.new()
    finally(stop.run)
    local d = stop.add(start(backend(https("primary"), ca), nil))
    local before = #ng:requests("primary")
    local c = assert(http.connect(d.port))
    for i = 1, 10 do
      assert.are.equal(200, assert(c:request{ path = "/p" .. i }).status)
    end
    c:close()
    -- Ten requests, one TLS connection: the pool kept it.
    local reqs = ng:wait_requests("primary", before + 10)
    local conns = {}
    for i = before + 1, #reqs do conns[reqs[i].connection] = true end
    assert.are.equal(1, #(function() local t = {} for k in pairs(conns) do
      t[#t + 1] = k end return t end)())
    -- "once" closes each connection after one request: every request is
    -- a new connection, and the ones after the first resume its session.
    local d2 = stop.add(start(backend(https("once"), ca), nil))
    for i = 1, 5 do
      assert.are.equal(200, assert(http.get(d2.port, "/o" .. i)).status)
    end
    local once = ng:wait_requests("once", 5)
    local resumed = 0
    for i = 2, #once do if once[i].reused == "r" then resumed = resumed + 1 end end
    assert.are.equal(".", once[1].reused)
    assert.are.equal(#once - 1, resumed)
  end)

  it("fails --check on a certificate file it cannot read", function()
    local conf = dir .. "/bad.lua"
    process.write_file(conf, ([[
local shadow = require "shadow"
return { primary = shadow.http("https://localhost:1", { tls = { ca_file = %q } }) }
]]):format(dir .. "/missing.crt"))
    local code, out, err = process.run({ shadowd.binary(), "--check",
                                         "--config", conf })
    assert.are_not.equal(0, code)
    assert.matches("cannot read ca_file", out .. err)
  end)
end)

describe("the TLS listener", function()
  local dir, ng
  setup(function()
    dir = process.tmpdir("shadow-tls-listen")
    make_pki(dir)
    ng = nginx.start{ servers = { primary = ECHO:format("primary") } }
  end)
  teardown(function()
    cleanup.stop_all(ng)
    process.rmdir(dir)
  end)

  local function curl(d, path)
    local code, out, err = process.run({ "curl", "-sS", "--cacert",
      dir .. "/ca.crt", "-w", "\n%{http_code} %{ssl_verify_result}",
      ("https://localhost:%d%s"):format(d.port, path) }, nil, 30)
    return code, out, err
  end

  it("serves curl with the CA, tells backends https, and re-reads its "
     .. "certificate on SIGHUP", function()
    local cert = dir .. "/listen.crt"
    run({ "cp", dir .. "/srv.crt", cert })
    local d = shadowd.start{ text = function(addr)
      return ([[
local shadow = require "shadow"
return {
  listen = { addr = %q, tls = { cert_file = %q, key_file = %q } },
  admin = %q,
  primary = shadow.http(%q),
}
]]):format(addr.listen, cert, dir .. "/srv.key", addr.admin,
           ng:url("primary"))
    end }
    finally(function() d:stop() end)
    local code, out, err = curl(d, "/hello")
    assert.are.equal(0, code, err)
    local body, status = out:match("^(.*)\n(%d+) 0$")
    assert.are.equal("200", status)
    assert.are.equal("https", json.decode(body).proto)
    -- Plain HTTP to the TLS port gets a plain 400 that says so (nginx
    -- answers its own 400 page), and the connection is closed.
    local plain = assert(http.get(d.port, "/plain"))
    assert.are.equal(400, plain.status)
    assert.are.equal("plain HTTP sent to the TLS port",
                     json.decode(plain.body).error)
    -- A certificate from another CA replaces it; SIGHUP re-reads it, and
    -- curl (trusting only spec-ca) now refuses the listener.
    run({ "cp", dir .. "/evil.crt", cert })
    run({ "cp", dir .. "/evil.key", dir .. "/srv.key" })
    d.proc:kill(process.SIGHUP)
    port.wait_until(function()
      -- null until the first reload has run
      local last = d:stats().last_reload
      return type(last) == "table" and last.result == "ok"
    end, 10, 0.05)
    code = curl(d, "/again")
    assert.are_not.equal(0, code)
  end)
end)
