-- Backend names as a resolver does them, on a machine whose /etc/hosts is
-- Debian's standard one: `::1 localhost` listed before `127.0.0.1
-- localhost`. shadowd runs in a private mount namespace with its own hosts
-- file bind-mounted on /etc/hosts (root, util-linux's unshare), against
-- nginx listening on IPv4 only. Every address of a name is tried in order,
-- a dead one is skipped afterwards, and a name whose address changes is
-- followed within resolve_ms, the old address's pooled connections closed.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local json = require "support.json"
local socket = require "socket"

local ECHO = [[
  location / { content_by_lua_block {
    ngx.header["content-type"] = "application/json"
    ngx.print(require("cjson").encode({ who = "%s", uri = ngx.var.uri }))
  } }
]]

local usable, why_not = shadowd.private_hosts_works()

-- shadowd's own connections to addr:port that are open now (ss sees the
-- whole machine: only shadowd connects to these backends).
local function connections_to(addr, p)
  local code, out = process.run({ "ss", "-Htn", "state", "established",
                                  "dst", ("%s:%d"):format(addr, p) })
  assert(code == 0, "ss failed")
  local n = 0
  for _ in out:gmatch("[^\n]+") do n = n + 1 end
  return n
end

local function count(text, plain)
  local n, i = 0, 1
  while true do
    local s, e = text:find(plain, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

local function config(addr, primary, candidate)
  return ([[
local shadow = require "shadow"
return {
  listen = %q, admin = %q,
  primary = %s,
  candidate = %s,
  sample = { rate = 1.0 },
}
]]):format(addr.listen, addr.admin, primary, candidate or "nil")
end

describe("backend names with ::1 listed first in /etc/hosts", function()
  if not usable then
    pending("needs a private /etc/hosts: " .. tostring(why_not))
    return
  end

  local dir, ng, hosts
  setup(function()
    dir = process.tmpdir("shadow-resolver")
    local code, out, err = process.run({ "sh", "-c", "cd '" .. dir .. "' && "
      .. "openssl req -x509 -newkey rsa:2048 -nodes -keyout srv.key "
      .. "-out srv.crt -subj /CN=localhost -days 2 "
      .. "-addext subjectAltName=DNS:localhost,DNS:multi" }, nil, 60)
    assert(code == 0, out .. err)
    local cert = { cert = dir .. "/srv.crt", key = dir .. "/srv.key" }
    -- closing has keepalive_timeout 0: nginx closes after each response,
    -- so every request is a new connect and goes through the address
    -- choice.
    ng = nginx.start{
      servers = { plain = ECHO:format("plain"), tls = ECHO:format("tls"),
                  closing = "keepalive_timeout 0;\n" .. ECHO:format("closing") },
      tls = { tls = cert },
    }
    hosts = dir .. "/hosts"
  end)
  teardown(function()
    cleanup.stop_all(ng)
    process.rmdir(dir)
  end)

  local function write_hosts(text)
    -- In place: the bind mount follows the file's inode, not its name.
    local f = assert(io.open(hosts, "w"))
    f:write(text)
    f:close()
  end

  local DEBIAN = "::1 localhost ip6-localhost ip6-loopback\n"
                 .. "127.0.0.1 localhost\n"

  it("reaches IPv4-only http:// and https:// backends named localhost",
     function()
    write_hosts(DEBIAN)
    local http_url = ("http://localhost:%d"):format(ng.ports.plain)
    local https_url = ("https://localhost:%d"):format(ng.ports.tls)
    local tls = ("{ tls = { ca_file = %q } }"):format(dir .. "/srv.crt")
    local pairs_ = {
      { ("shadow.http(%q)"):format(http_url),
        ("shadow.http(%q, %s)"):format(https_url, tls), "plain" },
      { ("shadow.http(%q, %s)"):format(https_url, tls),
        ("shadow.http(%q)"):format(http_url), "tls" },
    }
    -- The last again with two workers: each has its own loop and pools,
    -- so each resolves and fails over on its own.
    pairs_[3] = { pairs_[2][1], pairs_[2][2], "tls", { "--workers", "2" } }
    local stop = cleanup.new()
    finally(stop.run)
    for _, p in ipairs(pairs_) do
      local d = stop.add(shadowd.start{ hosts = hosts, args = p[4],
        text = function(addr) return config(addr, p[1], p[2]) end })
      for i = 1, 10 do
        local res = assert(http.get(d.port, "/r" .. i))
        assert.are.equal(200, res.status, res.body)
        assert.are.equal(p[3], json.decode(res.body).who)
      end
      local s = d:wait_totals("compared", 10)
      assert.are.equal(10, s.totals.compared)
      assert.are.same({}, s.totals.candidate_errors)
      d:stop()
    end
  end)

  it("tries a name's next address, then skips the dead one", function()
    -- ::1 first (nothing listens there), then the live 127.0.0.1.
    write_hosts("::1 multi\n127.0.0.1 multi\n")
    local d = shadowd.start{ hosts = hosts, text = function(addr)
      return config(addr, ("shadow.http(%q)"):format(
        ("http://multi:%d"):format(ng.ports.closing)))
    end }
    finally(function() d:stop() end)
    local before = #ng:requests("closing")
    for i = 1, 20 do
      local res = assert(http.get(d.port, "/m" .. i))
      assert.are.equal(200, res.status, res.body)
    end
    local reqs = ng:wait_requests("closing", before + 20)
    -- Twenty connections reached nginx...
    local conns = {}
    for i = before + 1, #reqs do conns[reqs[i].connection] = true end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.are.equal(20, n)
    -- ...and only the first tried ::1: the failure that starts the skip
    -- is logged once per address and skip, so one line is one try.
    local log = d:log()
    assert.are.equal(1, count(log, ("[::1]:%d failed"):format(
      ng.ports.closing)), log)
  end)

  it("follows a name whose address changes, within resolve_ms", function()
    local stop = cleanup.new()
    finally(stop.run)
    local p = port.free()
    local a = stop.add(nginx.start{ servers = { a = ECHO:format("a") },
                                    ports = { a = p } })
    stop.add(nginx.start{ servers = { b = ECHO:format("b") },
                          ports = { b = p }, addr = "127.0.0.2" })
    write_hosts("127.0.0.1 moving\n")
    local d = stop.add(shadowd.start{ hosts = hosts, text = function(addr)
      return config(addr, ("shadow.http(%q, { resolve_ms = 100 })"):format(
        ("http://moving:%d"):format(p)))
    end })
    local function who()
      local res = assert(http.get(d.port, "/w"))
      assert.are.equal(200, res.status, res.body)
      return json.decode(res.body).who
    end
    assert.are.equal("a", who())
    -- Lookups that find the same address keep the pooled connection:
    -- several rounds of resolve_ms pass, and the next request reuses it.
    -- (Time passing is the point here, not a synchronisation.)
    socket.sleep(0.5)
    assert.are.equal("a", who())
    local ra = a:wait_requests("a", 2)
    assert.are.equal(ra[1].connection, ra[2].connection)
    assert.are.equal(1, connections_to("127.0.0.1", p))

    -- A lookup that fails keeps the last good address, said once.
    write_hosts("127.0.0.1 other\n")
    assert.truthy(port.wait_until(function()
      return d:log():find("moving:" .. p .. ": cannot resolve", 1, true)
    end, 10), d:log())
    assert.are.equal("a", who())
    socket.sleep(0.3)
    assert.are.equal(1, count(d:log(), "moving:" .. p .. ": cannot resolve"))

    -- The name moves: followed, and the old address's connection closed.
    write_hosts("127.0.0.2 moving\n")
    assert.truthy(port.wait_until(function()
      return who() == "b"
    end, 10), "never followed the new address")
    assert.truthy(port.wait_until(function()
      return connections_to("127.0.0.1", p) == 0
    end, 5), "the old address's pooled connection stayed open")
    assert.matches("moving:" .. p .. ": now resolves to 127.0.0.2:" .. p,
                   d:log(), 1, true)
  end)

  it("shows resolve_ms in --check and refuses a bad one", function()
    local path = dir .. "/check.lua"
    local function check(opts)
      process.write_file(path, ([[
local shadow = require "shadow"
return { primary = shadow.http("http://localhost:1", %s),
         candidate = shadow.http("http://127.0.0.1:2", %s) }
]]):format(opts, opts))
      return process.run({ shadowd.binary(), "--check", "--config", path })
    end
    local code, out = check("{}")
    assert.are.equal(0, code, out)
    assert.matches("localhost:1 %(.*resolved every 30000 ms%)", out)
    assert.not_matches("127.0.0.1:2 %([^\n]*resolved", out)
    code, out = check("{ resolve_ms = 0 }")
    assert.are.equal(0, code, out)
    assert.matches("resolved at load only", out, 1, true)
    local err
    code, out, err = check("{ resolve_ms = -1 }")
    assert.are_not.equal(0, code)
    assert.matches("resolve_ms", out .. err, 1, true)
  end)
end)
