-- shadowd as a streaming proxy: responses of any size pass with bounded
-- memory and are still compared (by digest past diff_bytes), event
-- streams flow event by event, uploads stream to the primary, a client
-- that leaves ends the primary leg, and interim responses and trailers
-- reach the client. Real nginx backends, real clients (curl and raw
-- sockets).
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local luaserver = require "support.luaserver"
local http = require "support.http"
local json = require "support.json"
local socket = require "socket"

local MiB = 1024 * 1024
-- Sanitizer builds run several times slower, and their allocator keeps
-- freed memory in quarantine; under scripts/valgrind (SHADOW_SLOW) the
-- RSS is valgrind's own: there the bodies are smaller and memory is not
-- measured (the normal build measures it).
local SANITIZED = os.getenv("SHADOW_SPEC_PRELOAD") ~= nil
  or os.getenv("SHADOW_SLOW") ~= nil
local SLOW = SANITIZED and 3 or 1
local BIG = (SANITIZED and 16 or 64) * MiB
local CHANGED_AT = math.floor(BIG * 5 / 8) -- 40 MiB into 64

-- Asserts shadowd's memory (kB) stays under limit_kb, where it means
-- something.
local function assert_memory(kb, limit_kb, what)
  if SANITIZED then return end
  assert.is_true(kb < limit_kb, ("%s %d kB"):format(what, kb))
end

local function status_kb(pid, field)
  local s = process.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

-- Commands run through process.run, which gives children a clean
-- environment (no sanitizer preload from an ASan build's spec runner).
local function run(argv, timeout)
  local code, out, err = process.run(argv, nil, timeout or 120)
  assert(code == 0, table.concat(argv, " ") .. ": " .. err)
  return out
end

local function md5(path)
  return (run({ "md5sum", path }):match("^(%x+)"))
end

local function curl(args)
  local argv = { "curl", "-sS" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return run(argv)
end

-- dir/a/big.bin: BIG random bytes; dir/b/big.bin: the same with one byte
-- changed at CHANGED_AT.
local function make_files(dir)
  run({ "mkdir", "-p", dir .. "/a", dir .. "/b" })
  run({ "sh", "-c", ("head -c %d /dev/urandom > '%s/a/big.bin'"):format(BIG,
                                                                      dir) })
  run({ "cp", dir .. "/a/big.bin", dir .. "/b/big.bin" })
  local f = assert(io.open(dir .. "/b/big.bin", "r+b"))
  f:seek("set", CHANGED_AT)
  local c = f:read(1)
  f:seek("set", CHANGED_AT)
  f:write(string.char((c:byte() + 1) % 256))
  f:close()
  -- What slow readers pull: always 64 MiB, more than the kernel's socket
  -- buffers can hold, so a reader that leaves has not been sent it all.
  if SANITIZED then
    run({ "sh", "-c", ("head -c %d /dev/urandom > '%s/a/slow.bin'"):format(
      64 * MiB, dir) })
  else
    run({ "ln", dir .. "/a/big.bin", dir .. "/a/slow.bin" })
  end
end

local function servers(dir)
  return {
    primary = ([[
      location /files/ { alias %s/a/; }
      location /diff/ { alias %s/a/; }
      location /sse { content_by_lua_block {
        ngx.header["content-type"] = "text/event-stream"
        for i = 1, 4 do
          ngx.print(("data: %%d %%.6f\n\n"):format(i, ngx.now()))
          ngx.flush(true)
          if i < 4 then ngx.sleep(0.8) end
          ngx.update_time()
        end
      } }
      location /upload { content_by_lua_block {
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        if not body then
          local path = ngx.req.get_body_file()
          local f = path and io.open(path, "rb")
          body = f and f:read("*a") or ""
          if f then f:close() end
        end
        ngx.header["content-type"] = "text/plain"
        ngx.print(ngx.md5(body), " ", #body)
      } }
    ]]):format(dir, dir),
    candidate = ([[
      location /files/ { alias %s/a/; }
      location /diff/ { alias %s/b/; }
      location / { content_by_lua_block {
        ngx.req.read_body()
        ngx.print("candidate")
      } }
    ]]):format(dir, dir),
  }
end

describe("shadowd streaming, with the default limits", function()
  local dir, ng, d
  setup(function()
    dir = process.tmpdir("shadow-stream")
    make_files(dir)
    ng = nginx.start{ servers = servers(dir) }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       primary_timeout_ms = 2000,
                       candidate_timeout_ms = 5000 }
  end)
  teardown(function()
    cleanup.stop_all(d, ng)
    process.rmdir(dir)
  end)

  it("passes a 64 MiB download intact, first byte at once, in bounded "
     .. "memory, and compares it by digest", function()
    local out = dir .. "/got.bin"
    -- Time to the first byte of the response, from a raw socket.
    local c = assert(http.connect(d.port))
    local t0 = socket.gettime()
    assert(c:send("GET /files/big.bin HTTP/1.1\r\nHost: x\r\n"
                  .. "Connection: close\r\n\r\n"))
    local line = assert(c.sock:receive("*l"))
    local ttfb = socket.gettime() - t0
    c:close()
    assert.are.equal("HTTP/1.1 200 OK", line)
    assert.is_true(ttfb < 0.5 * SLOW, ("first byte after %.3f s"):format(ttfb))

    curl({ "-o", out, "-D", out .. ".h", d:url() .. "/files/big.bin" })
    assert.are.equal(md5(dir .. "/a/big.bin"), md5(out))
    -- A length stays a length.
    local head = process.read_file(out .. ".h")
    assert.matches("[Cc]ontent%-[Ll]ength: " .. BIG, head)

    -- The pair was compared by digest and agrees.
    local s = d:wait_totals("compared", 2, 30 * SLOW)
    assert.are.equal(0, s.totals.diverged)
    local hwm = status_kb(d.proc.pid, "VmHWM")
    assert_memory(hwm, 48 * 1024, "VmHWM")
    print(("\n  %d MiB x2 streamed: shadowd VmHWM %d kB"):format(BIG / MiB,
                                                                hwm))
  end)

  it("finds a one-byte difference deep into the body (40 MiB of 64), as a "
     .. "digest divergence", function()
    local before = d:stats().totals
    curl({ "-o", "/dev/null", d:url() .. "/diff/big.bin" })
    local s = d:wait_totals("compared", before.compared + 1, 30 * SLOW)
    assert.are.equal(before.diverged + 1, s.totals.diverged)
    local dv = d:divergences(1).divergences[1]
    assert.are.equal("/diff/big.bin", dv.path)
    assert.is_true(dv.body.differs)
    assert.are.equal("digest", dv.body.kind)
    assert.matches("primary " .. BIG .. " bytes", dv.body.summary)
    assert.is_number(dv.first_byte_ms.primary)
    assert.is_true(dv.first_byte_ms.primary <= dv.latency_ms.primary)
    assert_memory(status_kb(d.proc.pid, "VmHWM"), 48 * 1024, "VmHWM")
  end)

  it("keeps memory bounded with four slow readers, and ends the primary "
     .. "leg of each reader that goes away", function()
    local before = d:stats().totals.skipped.client_abort or 0
    local curls = {}
    for i = 1, 4 do
      curls[i] = process.spawn({ "curl", "-sS", "-o", "/dev/null",
                                 "--limit-rate", "2M",
                                 d:url() .. "/files/slow.bin?reader=" .. i })
    end
    local peak = 0
    local deadline = socket.gettime() + 3
    while socket.gettime() < deadline do
      peak = math.max(peak, status_kb(d.proc.pid, "VmRSS") or 0)
      socket.sleep(0.1)
    end
    for _, c in ipairs(curls) do c:stop(1, process.SIGKILL) end
    assert_memory(peak, 64 * 1024, "VmRSS reached")
    print(("\n  4 slow readers of 64 MiB: shadowd VmRSS peak %d kB"):format(
      peak))
    -- Each reader that left is a skipped pair, and the primary saw its
    -- response cut short (its connection was closed, not drained).
    d:wait_totals("requests", 1)
    port.wait_until(function()
      local s = d:stats()
      return (s.totals.skipped.client_abort or 0) >= before + 4
    end, 10 * SLOW, 0.05)
    local s = d:stats()
    assert.are.equal(before + 4, s.totals.skipped.client_abort)
    for i = 1, 4 do
      local reqs = ng:wait_uri("primary", "/files/slow.bin?reader=" .. i, 1,
                               10 * SLOW)
      assert.are.equal(1, #reqs)
      assert.are_not.equal("OK", reqs[1].completion)
      assert.is_true(tonumber(reqs[1].bytes) < 64 * MiB)
    end
  end)

  it("streams an event stream event by event, past timeout_ms", function()
    local c = assert(http.connect(d.port, { timeout = 10 }))
    finally(function() c:close() end)
    assert(c:send("GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"))
    local res = assert(c:read_response_head())
    assert.are.equal(200, res.status)
    -- Chunked stays chunked.
    assert.are.equal("chunked", res.headers["transfer-encoding"])
    local got = 0
    while got < 4 do
      local size = assert(c.sock:receive("*l"))
      local n = tonumber(size, 16)
      assert.is_true(n > 0)
      local data = assert(c.sock:receive(n))
      c.sock:receive("*l")
      local i, sent = data:match("^data: (%d+) ([%d%.]+)")
      if i then
        got = got + 1
        local lag = socket.gettime() - tonumber(sent)
        assert.is_true(lag < 0.3 * SLOW,
                       ("event %s reached the client %.3f s after it was "
                        .. "sent"):format(i, lag))
      end
    end
    -- The stream lasted 2.4 s, longer than the 2 s until the head.
    assert.are.equal("0", c.sock:receive("*l"))
  end)
end)

-- A backend nginx cannot be: 103 Early Hints before a chunked response
-- with a trailer.
local HINTS_SERVER = [[
local socket = require "socket"
local srv = assert(socket.bind("127.0.0.1", tonumber(arg[1])))
while true do
  local c = srv:accept()
  c:settimeout(5)
  while true do
    local line = c:receive("*l")
    if not line or line == "" then break end
  end
  c:send("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    .. "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    .. "Transfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
    .. "5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n")
  c:close()
end
]]

describe("shadowd passes on", function()
  local stop, d
  setup(function()
    stop = cleanup.new()
    local srv = stop.add(luaserver.start("shadow-hints", HINTS_SERVER))
    d = stop.add(shadowd.start{ primary = srv.url,
                                rate = 0 })
  end)
  teardown(function() stop.run() end)

  it("a 103 before the response, and a chunked body's trailers", function()
    local stop = cleanup.new()
    finally(stop.run)
    local c = assert(http.connect(d.port))
    stop.add(function() c:close() end)
    assert(c:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local all = c.sock:receive("*a")
    assert.matches("^HTTP/1.1 103 Early Hints\r\n[Ll]ink: </a.css>; "
                   .. "rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n", all)
    assert.matches("\r\n5\r\nhello\r\n0\r\nx%-checksum: abc123\r\n\r\n$", all)
    -- HTTP/1.0 clients get no 1xx (RFC 9110), and a body read to the close.
    local c10 = assert(http.connect(d.port))
    stop.add(function() c10:close() end)
    assert(c10:send("GET / HTTP/1.0\r\nHost: x\r\n\r\n"))
    all = c10.sock:receive("*a")
    assert.matches("^HTTP/1.1 200 OK\r\n", all)
    assert.matches("\r\n\r\nhello$", all)
  end)
end)

describe("shadowd streaming uploads", function()
  local dir, ng, d
  setup(function()
    dir = process.tmpdir("shadow-upload")
    ng = nginx.start{ servers = servers(dir) }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0,
                       mirror_methods = { "POST" },
                       limits = { body_bytes = 0 } }
    run({ "sh", "-c", ("head -c %d /dev/urandom > '%s/up.bin'"):format(
      20 * 1000 * 1000, dir) })
  end)
  teardown(function()
    cleanup.stop_all(d, ng)
    process.rmdir(dir)
  end)

  local function upload(...)
    local args = { ... }
    args[#args + 1] = "--data-binary"
    args[#args + 1] = "@" .. dir .. "/up.bin"
    args[#args + 1] = d:url() .. "/upload"
    return curl(args)
  end

  it("streams 20 MB to the primary intact and does not mirror it past "
     .. "mirror_body_bytes", function()
    local want = md5(dir .. "/up.bin") .. " " .. 20 * 1000 * 1000
    assert.are.equal(want, upload())
    -- The same body sent chunked reaches the primary the same.
    assert.are.equal(want, upload("-H", "Transfer-Encoding: chunked"))
    local s = d:stats()
    assert.are.equal(2, s.totals.skipped.body_too_large)
    -- A small upload is mirrored with its body.
    local res = assert(http.request(d.port, { method = "POST",
                                              path = "/upload",
                                              body = "small body" }))
    assert.are.equal(200, res.status)
    local reqs = ng:wait_uri("candidate", "/upload", 1, 10 * SLOW)
    assert.are.equal(1, #reqs)
    assert.are.equal("small body", reqs[1].body)
    -- The large ones never reached the candidate.
    assert.are.equal(1, #ng:requests_for("candidate", "/upload"))
    assert_memory(status_kb(d.proc.pid, "VmHWM"), 48 * 1024, "VmHWM")
  end)
end)
