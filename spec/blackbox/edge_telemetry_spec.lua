-- The admin side at the edge (issue 23, rows 4, 8, 9 and 10): /metrics
-- stays valid Prometheus text (checked by promtool and support.prom)
-- whatever paths clients send, with a bounded set of bounded route names;
-- the admin port refuses a foreign Host (DNS rebinding) and a cross-site
-- POST /reload, and --check warns about an admin open beyond loopback
-- without a token; redaction marks are HMAC-SHA256 under redact.key, as
-- openssl(1) computes them, and no secret (nor the key) reaches a record,
-- the log file, the capture, /divergences or the dashboard's data; a JSON
-- key with a NUL in it is a field of its own.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"
local process = require "support.process"
local port = require "support.port"
local prom = require "support.prom"

-- 1 when s is valid UTF-8 (no overlongs, no surrogates).
local function utf8_valid(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, min
    if c < 0x80 then len, min = 1, 0
    elseif c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
    elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
    else return false, i end
    if i + len - 1 > n then return false, i end
    local cp = len == 1 and c or c % (2 ^ (7 - len))
    for k = 1, len - 1 do
      local b = s:byte(i + k)
      if b < 0x80 or b > 0xBF then return false, i end
      cp = cp * 64 + (b - 0x80)
    end
    if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then
      return false, i
    end
    i = i + len
  end
  return true
end

-- promtool check metrics on text: its exit code and what it said.
local function promtool(text)
  local dir = process.tmpdir("shadow-prom")
  process.write_file(dir .. "/metrics", text)
  local rc, out, err = process.run({ "sh", "-c",
    "promtool check metrics < " .. dir .. "/metrics" })
  process.rmdir(dir)
  return rc, out .. err
end

-- One request with exactly these target bytes; the status.
local function raw_get(p, target, headers)
  local c = assert(http.connect(p))
  local lines = { "GET " .. target .. " HTTP/1.1", "Host: 127.0.0.1",
                  "Connection: close" }
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
  local res = c:read_response()
  c:close()
  return res and res.status
end

local function daemon_text(addr, primary, candidate, extra)
  return table.concat({
    'local shadow = require "shadow"',
    "return {",
    ("  listen = %q, admin = %q,"):format(addr.listen, addr.admin),
    ("  primary = shadow.http(%q),"):format(primary),
    ("  candidate = shadow.http(%q),"):format(candidate),
    "  sample = { rate = 1 },",
    extra or "",
    "}",
  }, "\n") .. "\n"
end

describe("/metrics under hostile paths", function()
  local stop, ng, d
  setup(function()
    stop = cleanup.new()
    local site = [[ location / { default_type application/json;
                                  return 200 '{"ok":true}'; } ]]
    ng = stop.add(nginx.start{ servers = { primary = site,
                                           candidate = site } })
    -- No route hook: the default route comes from the client's path.
    d = stop.add(shadowd.start{ text = function(a)
      return daemon_text(a, ng:url("primary"), ng:url("candidate"))
    end })
  end)
  teardown(function() stop.run() end)

  it("stays valid Prometheus text, with bounded routes and names", function()
    local hostile = {
      "/m\xff\xfe", "/a\"b", "/a\\b", "/a%0Ab%0D", "/e\xc0\xafv",
      "/s\xed\xa0\x80", "/t\x7f", "/" .. ("x"):rep(6000),
      "/\xe2\x82\xac-" .. ("\xe2\x82\xac"):rep(200),
    }
    for _, t in ipairs(hostile) do
      local st = raw_get(d.port, t)
      -- What the client parser refuses is refused; the rest is served.
      assert.is_true(st == 200 or st == 400, tostring(st) .. " for " .. t)
    end
    -- Thousands of distinct paths: routes past the cap count as one.
    for k = 1, 1200 do
      assert.equal(200, raw_get(d.port, ("/p-%dx"):format(k)))
    end
    d:wait_totals("compared", 1200, 60)
    local res = d:admin("/metrics")
    assert.equal(200, res.status)
    local rc, said = promtool(res.body)
    -- promtool's exit 3 is lint advice only; 1 is a page it cannot parse.
    assert.is_true(rc == 0 or rc == 3, said)
    assert.not_matches("error", said)
    assert.is_true(utf8_valid(res.body))
    local fams = prom.parse(res.body)
    local routes = {}
    for _, s in ipairs(fams.shadow_route_compared_total.samples) do
      routes[#routes + 1] = s.labels.route
      assert.is_true(#s.labels.route <= 256, s.labels.route)
    end
    assert.is_true(#routes <= 501, tostring(#routes))
    local overflow = fams.shadow_routes_overflow_total.samples[1].value
    assert.is_true(overflow > 0)
    local seen = table.concat(routes, "\n")
    assert.truthy(seen:find("GET /m\xef\xbf\xbd\xef\xbf\xbd", 1, true))
    assert.truthy(seen:find('GET /a"b', 1, true))
    -- /stats and /divergences: JSON that decodes, in valid UTF-8.
    for _, path in ipairs({ "/stats", "/divergences?limit=5000",
                            "/divergences?group=signature" }) do
      local body = d:admin(path).body
      assert.is_true(utf8_valid(body), path)
      json.decode(body)
    end
  end)
end)

describe("the admin port", function()
  local stop, ng, d
  local TOKEN = "edge-admin-token-0123456789"
  setup(function()
    stop = cleanup.new()
    local site = [[ location / { return 200 'ok'; } ]]
    ng = stop.add(nginx.start{ servers = { primary = site,
                                           candidate = site } })
    d = stop.add(shadowd.start{ text = function(a)
      return daemon_text(a, ng:url("primary"), ng:url("candidate"))
    end })
  end)
  teardown(function() stop.run() end)

  local function get(host, path)
    local headers = host and { Host = host } or nil
    return assert(http.request(d.admin_port, { path = path,
                                               headers = headers }))
  end

  it("answers 421 to a Host that is neither its own nor loopback", function()
    for _, path in ipairs({ "/divergences", "/stats", "/metrics", "/" }) do
      for _, host in ipairs({ "attacker.example",
                              "attacker.example:" .. d.admin_port,
                              "localhost.attacker.example", "127.0.0.1.nip.io" }) do
        assert.equal(421, get(host, path).status, host .. " " .. path)
      end
      for _, host in ipairs({ "127.0.0.1", "127.0.0.1:" .. d.admin_port,
                              "localhost", "LOCALHOST:" .. d.admin_port,
                              "[::1]:" .. d.admin_port, "[::1]", "10.1.2.3" }) do
        assert.equal(200, get(host, path).status, host .. " " .. path)
      end
    end
    -- /healthz says nothing: a load balancer's Host is fine.
    assert.equal(200, get("lb.example", "/healthz").status)
  end)

  it("reloads only on a JSON POST when there is no token", function()
    local function reload(ct)
      return assert(http.request(d.admin_port, { method = "POST",
        path = "/reload", body = "", headers = ct and { ["Content-Type"] = ct } }))
    end
    local gen = d:stats().generation
    for _, ct in ipairs({ "text/plain", "application/x-www-form-urlencoded",
                          "multipart/form-data; boundary=x", false,
                          "application/jsonp" }) do
      local res = reload(ct or nil)
      assert.equal(415, res.status, tostring(ct))
      assert.matches("application/json", res.body)
    end
    assert.equal(gen, d:stats().generation)
    local res = reload("application/json; charset=utf-8")
    assert.equal(200, res.status, res.body)
    assert.is_true(d:stats().generation >= gen)
  end)

  it("takes the bearer token instead, whatever the content type", function()
    local stop2 = cleanup.new()
    finally(stop2.run)
    local d2 = stop2.add(shadowd.start{ text = function(a)
      return daemon_text(a, ng:url("primary"), ng:url("candidate"),
                         ("  admin_token = %q,"):format(TOKEN))
    end })
    local res = assert(http.request(d2.admin_port, { method = "POST",
      path = "/reload", body = "",
      headers = { ["Content-Type"] = "text/plain" } }))
    assert.equal(401, res.status)
    res = assert(http.request(d2.admin_port, { method = "POST",
      path = "/reload", body = "", headers = { ["Content-Type"] = "text/plain",
      Authorization = "Bearer " .. TOKEN } }))
    assert.equal(200, res.status, res.body)
    -- The Host check comes first: a token does not make a rebinding page
    -- the admin's own.
    res = assert(http.request(d2.admin_port, { path = "/stats",
      headers = { Host = "attacker.example",
                  Authorization = "Bearer " .. TOKEN } }))
    assert.equal(421, res.status)
  end)

  it("warns in --check when it listens beyond loopback without a token",
     function()
    local dir = process.tmpdir("shadow-edge-check")
    finally(function() process.rmdir(dir) end)
    local function check(admin, extra)
      local conf = dir .. "/shadow.lua"
      process.write_file(conf, daemon_text(
        { listen = "127.0.0.1:1", admin = admin }, ng:url("primary"),
        ng:url("candidate"), extra))
      local rc, out, err = process.run({ shadowd.binary(), "--config", conf,
                                         "--check" })
      assert.equal(0, rc, out .. err)
      return out .. err
    end
    assert.matches("warning +the admin listens beyond loopback without "
                   .. "admin_token", check("0.0.0.0:9901"))
    assert.matches("admin_token", check("192.0.2.7:9901"))
    assert.not_matches("warning", check("0.0.0.0:9901",
                                        '  admin_token = "t0123456789",'))
    assert.not_matches("warning", check("127.0.0.1:9901"))
    assert.not_matches("warning", check("[::1]:9901"))
    assert.not_matches("warning", check("localhost:9901"))
  end)
end)

describe("redaction", function()
  local KEY = "edge-spec-redact-key-0123456789"
  local SECRETS = {
    authorization = "Basic " .. "dXNlcjpodW50ZXIy", -- user:hunter2
    ["proxy-authorization"] = "Basic cHJveHk6c3dvcmRmaXNo",
    ["x-api-key"] = "api-key-5f1e0c9a",
    ["x-auth-token"] = "auth-token-77aa01",
    cookie = "sid=cookie-secret-31",
  }

  -- openssl(1)'s HMAC-SHA256 under KEY: the mark the daemon must write.
  local function mark(v)
    local dir = process.tmpdir("shadow-hmac")
    process.write_file(dir .. "/v", v)
    local rc, out = process.run({ "openssl", "dgst", "-sha256", "-hmac", KEY,
                                  "-r", dir .. "/v" })
    process.rmdir(dir)
    assert(rc == 0, "openssl failed")
    return "[redacted hmac-sha256:" .. out:sub(1, 16) .. "]"
  end

  it("marks with HMAC under redact.key; no secret or key in any output",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    -- Each side echoes the API key back in its own x-auth-token header,
    -- with its name in it, so the records hold a redacted header diff.
    local function side(name)
      return ([[ location / { default_type application/json;
        add_header x-auth-token "%s-$http_x_api_key";
        return 200 '{"side":"%s"}'; } ]]):format(name, name)
    end
    local ng = stop.add(nginx.start{ servers = { primary = side("primary"),
                                                 candidate = side("candidate") } })
    local dir = process.tmpdir("shadow-edge-redact")
    stop.add(function() process.rmdir(dir) end)
    local d = stop.add(shadowd.start{ text = function(a)
      return daemon_text(a, ng:url("primary"), ng:url("candidate"), ([[
  redact = { key = %q },
  log = { file = %q },
  capture = { file = %q, rate = 1 },
  on_divergence = function(d) print("hook " .. require("cjson").encode(d)) end,
]]):format(KEY, dir .. "/log.ndjson", dir .. "/capture.ndjson"))
    end })
    local headers = {}
    for k, v in pairs(SECRETS) do headers[#headers + 1] = k .. ": " .. v end
    for _ = 1, 3 do assert.equal(200, raw_get(d.port, "/r", headers)) end
    d:wait_totals("diverged", 3)
    local texts = {}
    port.wait_until(function()
      texts.log = process.read_file(dir .. "/log.ndjson") or ""
      texts.capture = process.read_file(dir .. "/capture.ndjson") or ""
      local _, nl = texts.log:gsub("\n", "")
      local _, nc = texts.capture:gsub("\n", "")
      return nl >= 3 and nc >= 3
    end, 10, 0.05)
    texts.divergences = d:admin("/divergences?limit=100").body
    texts.grouped = d:admin("/divergences?group=signature").body
    texts.stats = d:admin("/stats").body -- the dashboard's data
    texts.metrics = d:admin("/metrics").body
    texts.dashboard = d:admin("/").body
    texts.stdout = d:log()
    for what, text in pairs(texts) do
      for name, secret in pairs(SECRETS) do
        local bare = secret:gsub("^Basic ", "")
        assert.is_nil(text:find(bare, 1, true), name .. " in " .. what)
      end
      assert.is_nil(text:find(KEY, 1, true), "the key in " .. what)
    end
    -- The capture keeps every request header, each secret as its mark.
    local line = json.decode(texts.capture:match("[^\n]+"))
    local seen = {}
    for _, h in ipairs(line.request.headers) do
      seen[h[1]:lower()] = h[2]
    end
    for name, secret in pairs(SECRETS) do
      assert.equal(mark(secret), seen[name], name)
    end
    -- The response header diff, in the log file: marks of both sides.
    local rec = json.decode(texts.log:match("[^\n]+"))
    local diff = rec.headers.diffs[1]
    assert.equal("x-auth-token", diff.name)
    assert.equal(mark("primary-" .. SECRETS["x-api-key"]), diff.primary)
    assert.equal(mark("candidate-" .. SECRETS["x-api-key"]), diff.candidate)
  end)

  it("refuses a short key and never prints it", function()
    local dir = process.tmpdir("shadow-edge-key")
    finally(function() process.rmdir(dir) end)
    local conf = dir .. "/shadow.lua"
    local function check(key)
      process.write_file(conf, daemon_text({ listen = "127.0.0.1:1",
        admin = "127.0.0.1:2" }, "http://127.0.0.1:3", "http://127.0.0.1:4",
        ("  redact = { key = %q },"):format(key)))
      local rc, out, err = process.run({ shadowd.binary(), "--config", conf,
                                         "--check" })
      return rc, out .. err
    end
    local rc, out = check("short-key")
    assert.not_equal(0, rc)
    assert.matches("redact.key must be at least 16 bytes", out, 1, true)
    assert.is_nil(out:find("short-key", 1, true))
    rc, out = check(KEY)
    assert.equal(0, rc, out)
    assert.matches("HMAC%-SHA256 with redact.key", out)
    assert.matches("proxy%-authorization", out)
    assert.matches("x%-api%-key x%-auth%-token", out)
    assert.is_nil(out:find(KEY, 1, true))
  end)
end)

describe("a JSON key with a NUL in it", function()
  it("is a field of its own, named with ~2, and a rule can name it", function()
    local stop = cleanup.new()
    finally(stop.run)
    -- Keys "e\0f" and "e\0g" differ between the sides, "e" does not.
    local function side(v)
      return ([[ location / { content_by_lua_block {
        ngx.header["content-type"] = "application/json"
        ngx.print('{"e\\u0000f":%d,"e\\u0000g":%d,"e":1}')
      } } ]]):format(v, v)
    end
    local ng = stop.add(nginx.start{ servers = { primary = side(1),
                                                 candidate = side(2) } })
    local d = stop.add(shadowd.start{ text = function(a)
      return daemon_text(a, ng:url("primary"), ng:url("candidate"))
    end })
    for _ = 1, 5 do assert.equal(200, raw_get(d.port, "/k")) end
    local st = d:wait_totals("diverged", 5)
    local fields = {}
    for name in pairs(st.fields) do fields[#fields + 1] = name end
    table.sort(fields)
    assert.same({ "body:/e~2f", "body:/e~2g" }, fields)
    local rec = d:divergences(1).divergences[1]
    local paths = {}
    for _, op in ipairs(rec.body.diffs) do paths[#paths + 1] = op.path end
    table.sort(paths)
    assert.same({ "/e~2f", "/e~2g" }, paths)
    local rc, said = promtool(d:admin("/metrics").body)
    assert.is_true(rc == 0 or rc == 3, said)
    -- An ignore rule written with ~2 silences that key and no other.
    local d2 = stop.add(shadowd.start{ text = function(a)
      return daemon_text(a, ng:url("primary"), ng:url("candidate"),
                         '  ignore = { json = { "/e~2f" } },')
    end })
    for _ = 1, 3 do assert.equal(200, raw_get(d2.port, "/k")) end
    st = d2:wait_totals("diverged", 3)
    fields = {}
    for name in pairs(st.fields) do fields[#fields + 1] = name end
    assert.same({ "body:/e~2g" }, fields)
  end)

  it("is learned as noise and proposed as a rule by that name", function()
    local stop = cleanup.new()
    finally(stop.run)
    -- "e\0f" is random on every side (noise); "e\0g" is 1 on the primary
    -- and the secondary, 2 on the candidate (a real difference).
    local function side(g)
      return ([[ location / { content_by_lua_block {
        ngx.header["content-type"] = "application/json"
        ngx.print('{"e\\u0000f":"r' .. math.random(1, 1e9)
                  .. '","e\\u0000g":%d,"e":1}')
      } } ]]):format(g)
    end
    local ng = stop.add(nginx.start{ servers = { primary = side(1),
      secondary = side(1), candidate = side(2) } })
    local d = stop.add(shadowd.start{ text = function(a)
      return table.concat({
        'local shadow = require "shadow"', "return {",
        ("  listen = %q, admin = %q,"):format(a.listen, a.admin),
        ("  primary = shadow.http(%q),"):format(ng:url("primary")),
        ("  secondary = shadow.http(%q),"):format(ng:url("secondary")),
        ("  candidate = shadow.http(%q),"):format(ng:url("candidate")),
        "  sample = { rate = 1, secondary_rate = 1 },",
        "  noise = { confidence = 0.99, min_samples = 50 },", "}" }, "\n")
    end })
    local c = assert(http.connect(d.port))
    for k = 1, 150 do
      assert.equal(200, assert(c:request{ path = "/k?i=" .. k }).status)
    end
    c:close()
    d:wait_totals("compared", 150)
    local noise = d:admin("/noise").json
    local by = {}
    for _, f in ipairs(noise.fields) do by[f.field] = f end
    assert.is_nil(by["body:/e"])
    assert.equal(0, noise.fields_dropped)
    assert.equal("noise", by["body:/e~2f"].class, json.encode(by))
    assert.equal('ignore = { json = { "/e~2f" } }', by["body:/e~2f"].proposal)
    assert.equal("real", by["body:/e~2g"].class)
    assert.matches('"/e~2f"', noise.snippet, 1, true)
    assert.not_matches('"/e"', noise.snippet, 1, true)
  end)
end)
