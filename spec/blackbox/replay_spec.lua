-- Capture and replay as a CI job uses them: shadowd records a few hundred
-- exchanges from real nginx backends (JSON with secrets, POST bodies,
-- chunked and large responses, redacted headers) into capture.file, then
-- `shadowd replay` compares candidates with the recording: one with two
-- known bugs is reported with exactly those, exit 1; an identical one
-- exits 0; damaged lines are named by line number and skipped; export
-- writes HAR 1.2 and pairs of files `shadowd diff` reads.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"
local port = require "support.port"
local process = require "support.process"
local dirent = require "posix.dirent"

local SECRET_AUTH = "Bearer replay-secret-credential-4242"
local SECRET_COOKIE = "session=cookie-secret-9999"
local SECRET_TOKEN = "json-token-secret-7777"

-- The primary's code; the candidates are the same code with bugs
-- switched on. BUGS: "name" upper-cases users' names; "total" adds one
-- to an order's total.
local function backend(bugs)
  local upper = bugs and "true" or "false"
  local plus = bugs and 1 or 0
  return ([[
    location /api/users/ { content_by_lua_block {
      local id = tonumber(ngx.var.uri:match("(%%d+)$"))
      local name = "user " .. id
      if %s then name = name:upper() end
      ngx.header["content-type"] = "application/json"
      ngx.header["set-cookie"] = "]] .. SECRET_COOKIE .. [["
      ngx.print('{"id":' .. id .. ',"name":"' .. name .. '","token":"]]
        .. SECRET_TOKEN .. [[","tags":["a","b"]}')
    } }
    location = /api/orders { content_by_lua_block {
      ngx.req.read_body()
      local body = ngx.req.get_body_data() or ""
      local total = 0
      for n in body:gmatch('"price":(%%d+)') do total = total + tonumber(n) end
      ngx.header["content-type"] = "application/json"
      ngx.print('{"ok":true,"total":' .. (total + %d) .. '}')
    } }
    location /chunked/ { content_by_lua_block {
      ngx.header["content-type"] = "text/plain"
      for i = 1, 5 do
        ngx.print("part " .. i .. " of " .. ngx.var.uri .. "\n")
        ngx.flush(true)
      end
    } }
    location /large/ { content_by_lua_block {
      ngx.header["content-type"] = "application/octet-stream"
      local seed = tonumber(ngx.var.uri:match("(%%d+)$"))
      local t = {}
      for i = 1, 3000 do t[i] = string.char(((i * 7 + seed) %% 256)) end
      ngx.print(string.rep(table.concat(t), 100))
    } }
  ]]):format(upper, plus)
end

local N_USERS, N_ORDERS, N_CHUNKED, N_LARGE = 150, 60, 45, 45
local TOTAL = N_USERS + N_ORDERS + N_CHUNKED + N_LARGE

local function config_text(addr, primary, candidate, capture_path, extra)
  return table.concat({
    'local shadow = require "shadow"',
    "return {",
    ("  listen = %q, admin = %q,"):format(addr.listen, addr.admin),
    ("  primary = shadow.http(%q),"):format(primary),
    ("  candidate = shadow.http(%q),"):format(candidate),
    "  sample = { rate = 0, key = function(req) return req.headers['x-user-id'] end },",
    '  mirror_methods = { "GET", "POST" },',
    "  route = function(req) return req.method .. ' ' .. req.path:gsub('/%d+', '/:id') end,",
    '  redact = { headers = { "authorization", "cookie", "set-cookie" }, json = { "/token" },'
      .. ' key = "replay-spec-redact-key-0123456789" },',
    "  slo = { max_divergence_rate = 0.01, min_samples = 100 },",
    capture_path and ("  capture = { file = %q, rate = 1 },"):format(capture_path) or "",
    extra or "",
    "}",
  }, "\n") .. "\n"
end

-- The directory of case id under dir ("<id>-<route and path>").
local function case_dir(dir, id)
  local prefix = ("%04d-"):format(id)
  for name in dirent.files(dir) do
    if name:sub(1, #prefix) == prefix then return dir .. "/" .. name end
  end
end

local function run(args)
  local argv = { shadowd.binary() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local code, out, err = process.run(argv, nil, 120)
  return code, out, err
end

local function send_all(d)
  local conn = assert(http.connect(d.port))
  local function req(r)
    local res = assert(conn:request(r))
    assert.equal(200, res.status)
    return res
  end
  for i = 1, N_USERS do
    req{ path = "/api/users/" .. i, headers = { { "x-user-id", "u" .. i },
      { "authorization", SECRET_AUTH }, { "cookie", SECRET_COOKIE } } }
  end
  for i = 1, N_ORDERS do
    local body = ('{"items":[{"sku":"s%d","price":%d},{"sku":"t","price":3}]}')
      :format(i, i * 10)
    req{ method = "POST", path = "/api/orders", body = body,
         headers = { { "content-type", "application/json" },
                     { "content-length", tostring(#body) },
                     { "x-user-id", "u" .. i } } }
  end
  for i = 1, N_CHUNKED do req{ path = "/chunked/" .. i } end
  for i = 1, N_LARGE do
    local res = req{ path = "/large/" .. i }
    assert.equal(300000, #res.body)
  end
  conn:close()
end

describe("capture and replay", function()
  local stop, ng, dir, capture, cfg_bad, cfg_good
  setup(function()
    stop = cleanup.new()
    ng = stop.add(nginx.start{ servers = {
      primary = backend(false), good = backend(false), bad = backend(true) } })
    dir = process.tmpdir("shadow-replay")
    stop.add(function() process.rmdir(dir) end)
    capture = dir .. "/capture.ndjson"
    local d = shadowd.start{ text = function(addr)
      return config_text(addr, ng:url("primary"), ng:url("good"), capture)
    end }
    stop.add(d)
    send_all(d)
    local s
    port.wait_until(function()
      s = d:stats()
      return s.capture and s.capture.sink.lines >= TOTAL
    end, 20, 0.05)
    assert.equal(TOTAL, s.capture.captured)
    assert.equal(TOTAL, s.capture.sink.lines)
    assert.equal(0, s.totals.compared) -- sample.rate 0: capture has its own
    d:stop()
    local addr = { listen = "127.0.0.1:1", admin = "127.0.0.1:2" }
    cfg_bad = dir .. "/bad.lua"
    process.write_file(cfg_bad, config_text(addr, ng:url("primary"), ng:url("bad")))
    cfg_good = dir .. "/good.lua"
    process.write_file(cfg_good, config_text(addr, ng:url("primary"), ng:url("good")))
  end)
  teardown(function() stop.run() end)

  it("writes one versioned line per exchange, secrets as marks only", function()
    local text = assert(process.read_file(capture))
    for _, secret in ipairs({ SECRET_AUTH, SECRET_COOKIE, SECRET_TOKEN,
                              "replay-secret", "cookie-secret", "json-token" }) do
      assert.is_nil(text:find(secret, 1, true), secret .. " in the capture")
    end
    local lines = process.read_lines(capture)
    assert.equal(TOTAL, #lines)
    local seen = { users = 0, orders = 0, chunked = 0, large = 0 }
    for _, line in ipairs(lines) do
      local x = json.decode(line)
      assert.equal(1, x.v)
      assert.equal(200, x.response.status)
      local t = x.request.target
      if t:find("^/api/users/") then
        seen.users = seen.users + 1
        local h = {}
        for _, kv in ipairs(x.request.headers) do h[kv[1]:lower()] = kv[2] end
        assert.matches("^%[redacted hmac%-sha256:%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%]$", h.authorization)
        assert.matches("^%[redacted hmac%-sha256:%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%]$", h.cookie)
        local body = json.decode(x.response.body)
        assert.matches("^%[redacted hmac%-sha256:%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%]$", body.token)
        assert.equal("user " .. t:match("%d+$"), body.name)
      elseif t == "/api/orders" then
        seen.orders = seen.orders + 1
        assert.equal("POST", x.request.method)
        assert.matches('"price":', x.request.body)
      elseif t:find("^/chunked/") then
        seen.chunked = seen.chunked + 1
        assert.matches("part 5 of " .. t, x.response.body, 1, true)
      else
        seen.large = seen.large + 1
        assert.equal(300000, x.response.length)
        assert.equal("base64", x.response.encoding)
        assert.matches("^%x+$", x.response.digest)
      end
    end
    assert.same({ users = N_USERS, orders = N_ORDERS, chunked = N_CHUNKED,
                  large = N_LARGE }, seen)
  end)

  it("reports exactly the candidate's two bugs, exit 1", function()
    local out, summary = dir .. "/bad.ndjson", dir .. "/bad-summary.json"
    local code, _, err = run{ "replay", "--config", cfg_bad, "--out", out,
                              "--summary", summary, capture }
    assert.equal(1, code, err)
    local s = json.decode(assert(process.read_file(summary)))
    assert.equal(TOTAL, s.read)
    assert.equal(TOTAL, s.compared)
    assert.equal(N_USERS + N_ORDERS, s.diverged)
    assert.equal(0, s.failed)
    local users = s.routes["GET /api/users/:id"]
    assert.equal(N_USERS, users.diverged)
    assert.same({ { field = "body:/name", count = N_USERS } }, users.top_fields)
    assert.equal("hold", users.verdict.decision)
    assert.equal("hold", s.verdict.decision)
    local orders = s.routes["POST /api/orders"]
    assert.equal(N_ORDERS, orders.diverged)
    assert.same({ { field = "body:/total", count = N_ORDERS } }, orders.top_fields)
    assert.equal(0, s.routes["GET /chunked/:id"].diverged)
    assert.equal(N_CHUNKED, s.routes["GET /chunked/:id"].compared)
    assert.equal(0, s.routes["GET /large/:id"].diverged)
    assert.equal(1, s.exit)
    -- The summary on stderr names the routes and the verdict.
    assert.matches("GET /api/users/:id", err, 1, true)
    assert.matches("body:/name", err, 1, true)
    -- One divergence record a line, with where it came from.
    local records = process.read_lines(out)
    assert.equal(N_USERS + N_ORDERS, #records)
    for _, line in ipairs(records) do
      local r = json.decode(line)
      assert.is_true(r.route == "GET /api/users/:id" or r.route == "POST /api/orders")
      assert.equal(capture, r.replay.file)
      assert.is_true(r.replay.line >= 1 and r.replay.line <= TOTAL)
      assert.is_nil(line:find(SECRET_TOKEN, 1, true))
    end
  end)

  it("applies the config's rules: a mask and a tolerance absorb both bugs", function()
    local cfg = dir .. "/rules.lua"
    process.write_file(cfg, config_text({ listen = "127.0.0.1:1", admin = "127.0.0.1:2" },
      ng:url("primary"), ng:url("bad"), nil,
      '  mask = { ["/name"] = "[%w ]+" },\n  tolerance = { ["/total"] = 1.5 },'))
    local summary = dir .. "/rules-summary.json"
    local code, out, err = run{ "replay", "--config", cfg, "--summary", summary, capture }
    assert.equal(0, code, err)
    assert.equal("", out)
    local s = json.decode(assert(process.read_file(summary)))
    assert.equal(TOTAL, s.compared)
    assert.equal(0, s.diverged)
  end)

  it("exits 0 against an identical candidate", function()
    local code, out, err = run{ "replay", "--config", cfg_good, capture }
    assert.equal(0, code, err)
    assert.equal("", out) -- no divergence records
    assert.matches("exit 0", err, 1, true)
  end)

  it("takes --candidate over the config's, and --primary for both legs", function()
    local code, _, err = run{ "replay", "--config", cfg_good, "--candidate",
                              ng:url("bad"), "--primary", ng:url("primary"),
                              "--concurrency", "4", "--quiet", "--out", "/dev/null",
                              capture }
    assert.equal(1, code, err)
    assert.matches("primary " .. ng:url("primary"), err, 1, true)
    assert.matches("body:/total", err, 1, true)
  end)

  it("names damaged lines by number, skips them, exit 2 only when nothing is read", function()
    local lines = process.read_lines(capture)
    lines[3] = lines[3]:sub(1, math.floor(#lines[3] / 2))        -- truncated
    lines[7] = "this is not json"                     -- corrupt
    lines[11] = lines[11]:gsub('"v":1', '"v":9', 1)   -- a version it does not know
    local damaged = dir .. "/damaged.ndjson"
    process.write_file(damaged, table.concat(lines, "\n") .. "\n")
    local summary = dir .. "/damaged-summary.json"
    local code, _, err = run{ "replay", "--config", cfg_good, "--summary",
                              summary, damaged }
    assert.equal(0, code, err)
    for _, n in ipairs({ 3, 7, 11 }) do
      local at = err:find(damaged .. ":" .. n .. ": ", 1, true)
      assert.truthy(at, "line " .. n .. " not reported")
      assert.matches("^[^\n]*skipped", err:sub(at))
    end
    local s = json.decode(assert(process.read_file(summary)))
    assert.equal(TOTAL - 3, s.read)
    assert.equal(3, s.skipped_lines)
    assert.equal(TOTAL - 3, s.compared)

    local garbage = dir .. "/garbage.ndjson"
    process.write_file(garbage, '{"v":1,"id":\nnot json\n' .. lines[1]:sub(1, 40) .. "\n")
    code, _, err = run{ "replay", "--config", cfg_good, garbage }
    assert.equal(2, code, err)
    assert.matches(garbage .. ":1:", err, 1, true)
    assert.matches(garbage .. ":3:", err, 1, true)
    code, _, err = run{ "replay", "--config", cfg_good, dir .. "/missing.ndjson" }
    assert.equal(2, code, err)
    assert.matches("missing.ndjson", err, 1, true)
  end)

  it("exports HAR 1.2 with its required fields", function()
    local har_path = dir .. "/capture.har"
    local code, _, err = run{ "export", "--har", "--out", har_path, capture }
    assert.equal(0, code, err)
    local har = json.decode(assert(process.read_file(har_path)))
    local log = har.log
    assert.equal("1.2", log.version)
    assert.equal("string", type(log.creator.name))
    assert.equal("string", type(log.creator.version))
    assert.equal(TOTAL, #log.entries)
    local function nv_list(l)
      assert.equal("table", type(l))
      for _, h in ipairs(l) do
        assert.equal("string", type(h.name))
        assert.equal("string", type(h.value))
      end
    end
    local posts = 0
    for _, e in ipairs(log.entries) do
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$", e.startedDateTime)
      assert.equal("number", type(e.time))
      local q, r = e.request, e.response
      assert.equal("string", type(q.method))
      assert.matches("^http://", q.url)
      assert.equal("string", type(q.httpVersion))
      nv_list(q.cookies); nv_list(q.headers); nv_list(q.queryString)
      assert.equal("number", type(q.headersSize))
      assert.equal("number", type(q.bodySize))
      assert.equal(200, r.status)
      assert.equal("string", type(r.statusText))
      assert.equal("string", type(r.httpVersion))
      nv_list(r.cookies); nv_list(r.headers)
      assert.equal("number", type(r.content.size))
      assert.equal("string", type(r.content.mimeType))
      assert.equal("string", type(r.redirectURL))
      assert.equal("number", type(r.headersSize))
      assert.equal("number", type(r.bodySize))
      assert.equal("table", type(e.cache))
      for _, t in ipairs({ "send", "wait", "receive" }) do
        assert.equal("number", type(e.timings[t]))
      end
      if q.method == "POST" then
        posts = posts + 1
        assert.equal("application/json", q.postData.mimeType)
        assert.matches('"price":', q.postData.text)
      end
    end
    assert.equal(N_ORDERS, posts)
    local text = process.read_file(har_path)
    assert.is_nil(text:find(SECRET_TOKEN, 1, true))
    assert.is_nil(text:find(SECRET_AUTH, 1, true))
  end)

  it("writes pairs of files shadowd diff reads, from replay and from records", function()
    local fx = dir .. "/fixtures"
    local out = dir .. "/fx.ndjson"
    local code, _, err = run{ "replay", "--config", cfg_bad, "--rate", "0.2",
                              "--fixtures", fx, "--out", out, capture }
    assert.equal(1, code, err)
    local records = process.read_lines(out)
    assert.is_true(#records > 0 and #records < N_USERS + N_ORDERS, #records)
    local r = json.decode(records[1])
    local field = r.route == "POST /api/orders" and "/total" or "/name"
    local cdir = case_dir(fx, r.id)
    assert.truthy(cdir, "no fixture for record " .. r.id)
    code, out, err = run{ "diff", "--config", cfg_bad, cdir .. "/primary.http",
                          cdir .. "/candidate.http" }
    assert.equal(1, code, err)
    assert.matches(field, out, 1, true)
    -- export --fixtures from the records alone.
    local fx2 = dir .. "/fixtures2"
    code, _, err = run{ "export", "--fixtures", fx2, dir .. "/fx.ndjson" }
    assert.equal(0, code, err)
    cdir = case_dir(fx2, r.id)
    assert.truthy(cdir, "no exported fixture for record " .. r.id)
    code, out = run{ "diff", cdir .. "/primary.http", cdir .. "/candidate.http" }
    assert.equal(1, code)
    assert.matches(field, out, 1, true)
  end)
end)

describe("replay with --primary", function()
  it("masks what the two primaries disagree on, as noise", function()
    local stop = cleanup.new()
    finally(stop.run)
    -- Every answer carries a fresh request id: noise, not a bug.
    local noisy = [[location / { content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print(('{"request_id":"%08x%08x","uri":"%s"}'):format(
        math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), ngx.var.uri))
    } }]]
    local ng = stop.add(nginx.start{ servers = { primary = noisy, candidate = noisy } })
    local dir = process.tmpdir("shadow-replay-noise")
    stop.add(function() process.rmdir(dir) end)
    local capture = dir .. "/capture.ndjson"
    local d = stop.add(shadowd.start{ text = function(addr)
      return config_text(addr, ng:url("primary"), ng:url("candidate"), capture)
    end })
    local conn = assert(http.connect(d.port))
    for i = 1, 30 do
      assert.equal(200, assert(conn:request{ path = "/items/" .. i }).status)
    end
    conn:close()
    port.wait_until(function()
      local s = d:stats()
      return s.capture.sink.lines >= 30
    end, 10, 0.05)
    d:stop()
    local cfg = dir .. "/cfg.lua"
    process.write_file(cfg, config_text({ listen = "127.0.0.1:1", admin = "127.0.0.1:2" },
      ng:url("primary"), ng:url("candidate")))
    -- Against the recording alone, the ids differ every time.
    local code, _, err = run{ "replay", "--config", cfg, "--out", "/dev/null", capture }
    assert.equal(1, code, err)
    assert.matches("body:/request_id", err, 1, true)
    -- With a live primary, the recording shows the same field moving.
    local rec = dir .. "/refreshed.ndjson"
    code, _, err = run{ "replay", "--config", cfg, "--primary", ng:url("primary"),
                        "--record", rec, capture }
    assert.equal(0, code, err)
    assert.equal(30, #process.read_lines(rec))
    assert.equal(1, json.decode(process.read_lines(rec)[1]).v)
  end)
end)

describe("capture's sampling", function()
  it("is sticky by key at capture.rate, and a full disk only counts", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = { primary = backend(false) } })
    local d = stop.add(shadowd.start{ text = function(addr)
      return config_text(addr, ng:url("primary"), ng:url("primary"), nil,
        '  capture = { file = "/dev/full", rate = 0.5 },')
    end })
    local conn = assert(http.connect(d.port))
    for round = 1, 3 do
      for u = 1, 40 do
        local res = assert(conn:request{ path = "/api/users/" .. u,
          headers = { { "x-user-id", "user-" .. u } } })
        assert.equal(200, res.status, round)
      end
    end
    conn:close()
    local s
    port.wait_until(function()
      s = d:stats()
      local sk = s.capture.sink
      return sk.lines + sk.dropped >= s.capture.captured and s.capture.captured > 0
    end, 10, 0.05)
    -- Each user is in all three rounds or none: a multiple of 3, near half.
    assert.equal(0, s.capture.captured % 3)
    assert.is_true(s.capture.captured >= 30 and s.capture.captured <= 90,
                   s.capture.captured)
    assert.equal(0, s.capture.sink.lines)
    assert.is_true(s.capture.sink.errors.write >= 1, json.encode(s.capture.sink))
    assert.equal(200, assert(http.get(d.port, "/api/users/1")).status)
  end)
end)
