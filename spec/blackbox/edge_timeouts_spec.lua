-- Timeouts that start when they should, and inputs that cannot hold
-- shadowd for good: a slow upload to the primary is not cut by the
-- primary's timeout_ms (it runs from the request body's last byte, as
-- nginx's proxy_read_timeout does), a shadow leg whose body never ends is
-- ended by its total_timeout_ms, and `shadowd replay` / `export` read past
-- a capture line longer than --max-line-bytes without holding it. Real
-- nginx backends (and nginx as a proxy, to compare), the hostile Lua
-- backend, curl and raw sockets.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local hostile = require "support.hostile"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local http = require "support.http"
local socket = require "socket"

local SANITIZED = os.getenv("SHADOW_SPEC_PRELOAD") ~= nil
local KiB = 1024

local function note(fmt, ...)
  io.stderr:write(("\n  [figure] " .. fmt .. "\n"):format(...))
end

local function total(stats, group, reason)
  return tonumber(stats.totals[group] and stats.totals[group][reason]) or 0
end

-- Commands run to completion; children get a clean environment.
local function run(argv, timeout)
  return process.run(argv, nil, timeout or 120)
end

-- A POST of `size` bytes sent `piece` bytes every `every` seconds on a raw
-- socket (pacing a client, not waiting for shadowd). Returns the status,
-- whether an answer came while the body was still going out, and the
-- times: body (first byte to last byte sent), after (last byte sent to
-- the response head).
local function slow_post(p, path, size, piece, every)
  local c = assert(http.connect(p, { timeout = 30 }))
  local t0 = socket.gettime()
  assert(c:send(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    .. "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n"
    .. "\r\n"):format(path, size)))
  local sent, early, data = 0, false, ("u"):rep(piece)
  while sent < size do
    local readable = socket.select({ c.sock }, nil, 0)
    if #readable > 0 then
      early = true
      break
    end
    local n = math.min(piece, size - sent)
    if not c:send(data:sub(1, n)) then
      early = true
      break
    end
    sent = sent + n
    if sent < size then socket.sleep(every) end
  end
  local t_body = socket.gettime()
  local res, err = c:read_response()
  local t_head = socket.gettime()
  c:close()
  assert(res, err)
  return { status = res.status, body = res.body, early = early,
           sent = sent, body_s = t_body - t0, after = t_head - t_body }
end

-- curl uploading file at rate; returns status, seconds, body.
local function curl_upload(url, file, rate)
  local code, out, err = run({ "curl", "-sS", "--limit-rate", rate,
    "-H", "Content-Type: application/octet-stream", "--data-binary",
    "@" .. file, "-w", "\n%{http_code} %{time_total}", url })
  assert(code == 0, "curl: " .. err)
  local body, status, secs = out:match("^(.*)\n(%d+) ([%d.]+)$")
  return tonumber(status), tonumber(secs), body
end

local UPLOAD_SERVER = [[
  location = /upload { content_by_lua_block {
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then
      local f = io.open(ngx.req.get_body_file() or "", "rb")
      body = f and f:read("*a") or ""
      if f then f:close() end
    end
    ngx.print(ngx.md5(body), " ", #body)
  } }
  location = /late { content_by_lua_block {
    ngx.req.read_body()
    ngx.sleep(3)
    ngx.print("too late")
  } }
]]

describe("the primary's timeout_ms", function()
  local dir, ng, proxy, d
  local SIZE = 256 * KiB -- at 100 KB/s: about 2.6 s, timeout_ms is 1 s
  setup(function()
    dir = process.tmpdir("shadow-edge-timeouts")
    ng = nginx.start{ servers = { primary = UPLOAD_SERVER } }
    -- nginx as the proxy in front of the same backend, its read timeout
    -- as shadowd's timeout_ms: what shadowd is compared with.
    proxy = nginx.start{ servers = { proxy = ([[
      location / {
        proxy_pass %s;
        proxy_http_version 1.1;
        proxy_read_timeout 1s;
      } ]]):format(ng:url("primary")) } }
    d = shadowd.start{ primary = ng:url("primary"), primary_timeout_ms = 1000,
                       rate = 0 }
    assert(run({ "sh", "-c", ("head -c %d /dev/urandom > '%s/up.bin'")
                 :format(SIZE, dir) }) == 0)
  end)
  teardown(function()
    cleanup.stop_all(d, proxy, ng)
    process.rmdir(dir)
  end)

  it("runs from the end of the request body: a slow upload gets its 200, "
     .. "as through nginx", function()
    local _, sum = run({ "md5sum", dir .. "/up.bin" })
    local want = sum:match("^(%x+)") .. " " .. SIZE
    local status, secs, body = curl_upload(d:url() .. "/upload",
                                           dir .. "/up.bin", "100k")
    local nstatus, nsecs, nbody = curl_upload(
      "http://127.0.0.1:" .. proxy.ports.proxy .. "/upload", dir .. "/up.bin",
      "100k")
    note("256 KiB at 100 KB/s, timeout 1 s: shadowd %d in %.2f s; "
         .. "nginx proxy %d in %.2f s", status, secs, nstatus, nsecs)
    assert.are.equal(200, nstatus)
    assert.are.equal(want, nbody)
    assert.are.equal(200, status)
    assert.are.equal(want, body)
    assert.is_true(secs > 2, ("the upload took only %.2f s"):format(secs))
  end)

  it("still holds once the body is sent: a late head is a 504 timeout_ms "
     .. "after the body's last byte", function()
    local r = slow_post(d.port, "/late", 64 * KiB, 8 * KiB, 0.2)
    local n = slow_post(proxy.ports.proxy, "/late", 64 * KiB, 8 * KiB, 0.2)
    note("64 KiB over %.2f s to a primary that answers 3 s after the body, "
         .. "timeout 1 s: shadowd %d %.2f s after the body; nginx proxy %d "
         .. "%.2f s after it", r.body_s, r.status, r.after, n.status, n.after)
    assert.are.equal(504, n.status)
    assert.is_false(r.early, "shadowd answered while the body was sent")
    assert.are.equal(64 * KiB, r.sent)
    assert.are.equal(504, r.status)
    assert.is_true(r.after >= 0.8 and r.after < 2.9,
                   ("504 came %.2f s after the body"):format(r.after))
    local s = d:stats()
    assert.is_true(s.totals.primary_errors >= 1)
  end)
end)

-- /proc/PID/stat: user + system CPU time, in clock ticks (1/100 s).
local function cpu_ticks(pid)
  local stat = process.read_file("/proc/" .. pid .. "/stat") or ""
  local rest = stat:match("%) (.*)$") or ""
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- rest starts at field 3 (state): utime is field 14, stime 15.
  return (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)
end

describe("total_timeout_ms", function()
  local ng, h, d
  local CAP = 4
  setup(function()
    ng = nginx.start{ servers = {
      primary = [[ location / { return 200 '{"ok":true}'; } ]] } }
    h = hostile.start{ mode = "ok" }
    d = shadowd.start{ text = function(addr)
      return table.concat({
        'local shadow = require "shadow"',
        "return {",
        ("  listen = %q, admin = %q,"):format(addr.listen, addr.admin),
        ("  primary = shadow.http(%q),"):format(ng:url("primary")),
        ("  candidate = shadow.http(%q, { total_timeout_ms = 1000 }),")
          :format(h.url),
        ("  secondary = shadow.http(%q, { total_timeout_ms = 1000 }),")
          :format(h.url),
        "  sample = { rate = 1, secondary_rate = 1,",
        "             key = function(req) return req.path end },",
        ("  max_inflight_shadow = %d,"):format(CAP),
        "  breaker = { failures = 1000000, cooldown_ms = 10 },",
        "}" }, "\n") .. "\n"
    end }
  end)
  teardown(function() cleanup.stop_all(d, h, ng) end)

  it("shows in --check for the shadow legs, and the primary refuses it",
     function()
    local check = run({ shadowd.binary(), "--config", d.config, "--check" })
    assert.are.equal(0, check)
    local _, out = run({ shadowd.binary(), "--config", d.config, "--check" })
    assert.is_truthy(out:find("candidate .-total 1000 ms"), out)
    assert.is_truthy(out:find("secondary .-total 1000 ms"), out)
    local bad = d.dir .. "/bad.lua"
    process.write_file(bad, ([[
      local shadow = require "shadow"
      return { primary = shadow.http(%q, { total_timeout_ms = 5 }) }
    ]]):format(ng:url("primary")))
    local code, o, e = run({ shadowd.binary(), "--config", bad, "--check" })
    assert.are.equal(1, code)
    assert.is_truthy((o .. e):find("primary.total_timeout_ms", 1, true),
                     o .. e)
  end)

  it("ends legs whose body never ends: a timeout, the slots free, "
     .. "mirroring goes on, no CPU spent after", function()
    local t0 = socket.gettime()
    for i = 1, CAP do
      local res = assert(http.get(d.port, "/f/endless?n=" .. i))
      assert.are.equal(200, res.status)
      assert.are.equal('{"ok":true}', res.body)
    end
    -- The client had its answer at once; the legs run on.
    assert.is_truthy(port.wait_until(function()
      return (h:counts().endless or 0) >= 2 * CAP
    end, 10), "the endless legs did not all reach the backend")
    local s
    assert.is_truthy(port.wait_until(function()
      s = d:stats()
      return total(s, "candidate_errors", "timeout") >= CAP
        and total(s, "secondary_errors", "timeout") >= CAP
    end, 15), "the endless legs did not time out")
    local took = socket.gettime() - t0
    note("%d endless candidate + secondary legs, total_timeout_ms 1000: "
         .. "all ended as timeouts %.2f s after the first request", CAP, took)
    assert.is_true(took >= 0.9, ("ended after %.2f s"):format(took))
    assert.are.equal(CAP, total(s, "candidate_errors", "timeout"))
    assert.are.equal(CAP, total(s, "secondary_errors", "timeout"))
    -- The legs' connections were closed, not pooled: the backend sees
    -- its endless bodies refused.
    assert.is_truthy(port.wait_until(function()
      return (h:counts().endless_open or 0) == 0
    end, 10), "shadowd kept reading an endless body")
    -- Nothing keeps the loop busy once the legs are gone.
    local c0 = cpu_ticks(d.proc.pid)
    socket.sleep(1) -- a measuring window, not a synchronisation
    local spent = cpu_ticks(d.proc.pid) - c0
    note("shadowd CPU in the second after the deadline: %d ticks of 100",
         spent)
    assert.is_true(spent < 20, ("%d ticks of CPU"):format(spent))
    -- The in-flight slots are back: every next request is mirrored.
    local before = s.totals.sampled
    for i = 1, CAP + 2 do
      assert.are.equal(200, assert(http.get(d.port, "/ok/" .. i)).status)
    end
    s = d:stats()
    assert.are.equal(before + CAP + 2, s.totals.sampled)
    assert.are.equal(0, total(s, "skipped", "overload"))
  end)
end)

describe("replay and export --max-line-bytes", function()
  local dir, ng, d, capture
  local HUGE = 200 * 1000 * 1000
  setup(function()
    dir = process.tmpdir("shadow-edge-replay")
    ng = nginx.start{ servers = { primary = [[
      location / { default_type application/json;
                   return 200 '{"ok":true,"uri":"$uri"}'; } ]] } }
    local recorded = dir .. "/recorded.ndjson"
    d = shadowd.start{ primary = ng:url("primary"), rate = 0,
      extra = ("  capture = { file = %q, rate = 1 },"):format(recorded) }
    for i = 1, 3 do
      assert.are.equal(200, assert(http.get(d.port, "/r/" .. i)).status)
    end
    local lines
    assert.is_truthy(port.wait_until(function()
      lines = process.read_lines(recorded)
      return #lines >= 3
    end, 10), "the capture was not written")
    -- The capture with a 200 MB line between the first and second
    -- exchanges: written by the shell, never held by this process.
    capture = dir .. "/capture.ndjson"
    process.write_file(capture, lines[1] .. "\n")
    assert(run({ "sh", "-c", ([[
      printf '{"v":1,"pad":"' >> '%s'
      head -c %d /dev/zero | tr '\0' x >> '%s'
      printf '"}\n' >> '%s']]):format(capture, HUGE, capture, capture) }) == 0)
    local f = assert(io.open(capture, "ab"))
    f:write(lines[2], "\n", lines[3], "\n")
    f:close()
  end)
  teardown(function()
    cleanup.stop_all(d, ng)
    process.rmdir(dir)
  end)

  -- Runs shadowd with args under /usr/bin/time; returns code, stdout,
  -- stderr, peak RSS in kB.
  local function measured(args)
    local argv = { "/usr/bin/time", "-f", "maxrss_kb=%M", shadowd.binary() }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local code, out, err = run(argv, 300)
    local kb = tonumber(err:match("maxrss_kb=(%d+)"))
    local report = shadowd.sanitizer_report(err)
    assert(not report, "sanitizer report:\n" .. tostring(report))
    -- /usr/bin/time reports the command's exit as its own.
    return code, out, err, kb
  end

  -- Peak RSS allowed: the line is 200 MB; shadowd holds at most
  -- --max-line-bytes of it (64 MiB by default, 4 MiB below) before it
  -- knows the line is too long, and nothing after.
  local BASE_KB = (SANITIZED and 60 or 20) * 1024

  it("replay skips a line over the cap with file:line, replays the rest, "
     .. "and its memory stays bounded", function()
    local code, _, err, kb = measured{ "replay", "--candidate",
      ng:url("primary"), "--out", dir .. "/div.ndjson", capture }
    note("replay of a capture with a %d MB line: peak RSS %d kB", HUGE / 1e6,
         kb or -1)
    assert.are_not.equal(2, code, err)
    assert.is_truthy(err:find(capture .. ":2: a line of " .. (HUGE + 16)
                              .. " bytes, longer than --max-line-bytes "
                              .. 64 * 1024 * 1024, 1, true), err)
    assert.is_truthy(err:find("3 exchanges read from 1 file, 1 line skipped",
                              1, true), err)
    -- A sanitizer's allocator keeps freed blocks in quarantine, so the
    -- buffer's growth to 64 MiB costs more there: measured in the normal
    -- build only (the 4 MiB cap below is measured in both).
    if not SANITIZED then
      assert.is_truthy(kb and kb < 64 * 1024 + BASE_KB,
                       ("peak RSS %s kB"):format(kb))
    end
    code, _, err, kb = measured{ "replay", "--max-line-bytes", "4M",
      "--candidate", ng:url("primary"), "--out", dir .. "/div.ndjson",
      capture }
    note("the same with --max-line-bytes 4M: peak RSS %d kB", kb or -1)
    assert.are_not.equal(2, code, err)
    assert.is_truthy(err:find("3 exchanges read from 1 file, 1 line skipped",
                              1, true), err)
    assert.is_truthy(kb and kb < 4 * 1024 + BASE_KB,
                     ("peak RSS %s kB"):format(kb))
  end)

  it("export --har does the same", function()
    local code, out, err, kb = measured{ "export", "--har",
                                         "--max-line-bytes", "4M", capture }
    note("export --har --max-line-bytes 4M of the same capture: peak RSS %d "
         .. "kB", kb or -1)
    assert.are.equal(0, code, err)
    assert.is_truthy(err:find(capture .. ":2: a line of", 1, true), err)
    assert.is_truthy(err:find("3 entries written, some lines skipped", 1,
                              true), err)
    assert.is_truthy(out:find('"entries":[', 1, true))
    assert.is_truthy(kb and kb < 4 * 1024 + BASE_KB,
                     ("peak RSS %s kB"):format(kb))
  end)

  it("takes --max-line-bytes, and refuses a size it cannot use", function()
    local code, _, err = run({ shadowd.binary(), "export", "--har",
                               "--max-line-bytes", "1K", capture })
    assert.are.equal(0, code)
    assert.is_truthy(err:find(capture .. ":2: a line of", 1, true), err)
    assert.is_truthy(err:find("longer than --max-line-bytes 1024", 1, true))
    for _, bad in ipairs({ "12", "1T", "x", "-1M" }) do
      code, _, err = run({ shadowd.binary(), "replay", "--max-line-bytes",
                           bad, "--candidate", ng:url("primary"), capture })
      assert.are.equal(2, code)
      assert.is_truthy(err:find("--max-line-bytes takes a size", 1, true),
                       err)
    end
    local _, help = run({ shadowd.binary(), "--help" })
    assert.is_truthy(help:find("--max-line-bytes", 1, true))
  end)
end)
