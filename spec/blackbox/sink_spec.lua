-- log.file as an operator lives with it: rotated by size without losing or
-- cutting a record, reopened on SIGUSR1 after logrotate moved it, and a
-- full disk or an unwritable path counted in /stats and /metrics while
-- shadowd goes on serving, never stopping for it.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"
local port = require "support.port"
local process = require "support.process"
local prom = require "support.prom"
local signal = require "posix.signal"

-- Every answer differs, so every request is one record. The pads differ
-- too, so a record is near 1 KiB (each value cut at 256 bytes).
local BACKENDS = {
  primary = ([[location / { content_by_lua_block {
    ngx.header["content-type"] = "application/json"
    ngx.print('{"v":1,"pad":"%s","uri":"' .. ngx.var.uri .. '"}') } }]]):format(("x"):rep(600)),
  candidate = ([[location / { content_by_lua_block {
    ngx.header["content-type"] = "application/json"
    ngx.print('{"v":2,"pad":"%s","uri":"' .. ngx.var.uri .. '"}') } }]]):format(("y"):rep(600)),
}

local function start(stop, log)
  local ng = stop.add(nginx.start{ servers = BACKENDS })
  return stop.add(shadowd.start{ primary = ng:url("primary"),
    candidate = ng:url("candidate"), rate = 1.0,
    extra = "  log = " .. log .. ",\n" })
end

local function send(d, from, to)
  for k = from, to do
    assert.equal(200, assert(http.get(d.port, "/r" .. k)).status)
  end
end

-- Waits until the sink's counter (default "lines") reaches n; returns
-- /stats.
local function wait_sink(d, n, counter)
  local s
  port.wait_until(function()
    s = d:stats()
    return s.sink and s.sink[counter or "lines"] >= n
  end, 10, 0.05)
  return s
end

describe("the NDJSON sink", function()
  it("rotates by size, keeping log.keep files of whole records", function()
    local stop = cleanup.new()
    finally(stop.run)
    local dir = process.tmpdir("shadow-sink")
    stop.add(function() process.rmdir(dir) end)
    local path = dir .. "/d.ndjson"
    local d = start(stop, ("{ file = %q, max_bytes = 20000, keep = 2 }"):format(path))
    send(d, 1, 100)
    local s = wait_sink(d, 100)
    assert.equal(100, s.sink.lines)
    assert.equal(0, s.sink.dropped)
    assert.is_true(s.sink.rotations >= 3, json.encode(s.sink))
    -- Each file within the size, each line a whole record; the three
    -- files hold the newest records, in order.
    local ids = {}
    for _, f in ipairs({ path .. ".2", path .. ".1", path }) do
      local text = assert(process.read_file(f), f)
      assert.is_true(#text <= 20000, f .. " is " .. #text .. " bytes")
      for _, line in ipairs(process.read_lines(f)) do
        ids[#ids + 1] = json.decode(line).id
      end
    end
    assert.is_nil(process.read_file(path .. ".3")) -- keep = 2
    for i = 2, #ids do assert.equal(ids[i - 1] + 1, ids[i]) end
    assert.equal(100, ids[#ids])
    assert.is_true(#ids >= 40 and #ids < 100, #ids .. " records kept")
  end)

  it("reopens the file on SIGUSR1, after logrotate moved it", function()
    local stop = cleanup.new()
    finally(stop.run)
    local dir = process.tmpdir("shadow-sink")
    stop.add(function() process.rmdir(dir) end)
    local path = dir .. "/d.ndjson"
    local d = start(stop, ("{ file = %q }"):format(path))
    send(d, 1, 10)
    wait_sink(d, 10)
    assert(os.rename(path, path .. ".old"))
    d.proc:kill(signal.SIGUSR1)
    port.wait_until(function() return d:stats().sink.reopens >= 1 end, 10, 0.05)
    send(d, 11, 15)
    wait_sink(d, 15)
    local old, new = process.read_lines(path .. ".old"), process.read_lines(path)
    assert.equal(10, #old)
    assert.equal(5, #new)
    assert.equal(11, json.decode(new[1]).id)
    assert.equal(1, d:stats().sink.reopens)
  end)

  it("counts a full disk, goes on serving, and exits cleanly", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d = start(stop, '{ file = "/dev/full" }')
    send(d, 1, 20)
    local s = wait_sink(d, 20, "dropped")
    assert.equal(0, s.sink.lines)
    assert.is_true(s.sink.errors.write >= 1)
    assert.matches("No space left on device", s.sink.last_error.message)
    assert.equal(20, s.totals.compared)
    local fams = prom.parse(d:admin("/metrics").body)
    assert.is_true(prom.value(fams, "shadow_sink_errors_total",
                              { reason = "write" }) >= 1)
    assert.equal(20, prom.value(fams, "shadow_sink_dropped_total"))
    -- Still serving, and a clean exit.
    send(d, 21, 22)
    local how, code = d:stop()
    assert.equal("exited", how)
    assert.equal(0, code)
  end)

  it("counts a path it cannot open, and starts anyway", function()
    local stop = cleanup.new()
    finally(stop.run)
    local d = start(stop, '{ file = "/nonexistent-dir/sub/d.ndjson" }')
    send(d, 1, 3)
    local s = wait_sink(d, 3, "dropped")
    assert.is_false(s.sink.open)
    assert.is_true(s.sink.errors.open >= 1)
    assert.matches("cannot open /nonexistent%-dir/sub/d.ndjson: No such file",
                   s.sink.last_error.message)
  end)

  it("fills a tiny disk, counts it, and writes again once there is room",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local dir = process.tmpdir("shadow-tmpfs")
    stop.add(function() process.rmdir(dir) end)
    local rc, _, err = process.run({ "mount", "-t", "tmpfs", "-o", "size=64k",
                                     "tmpfs", dir })
    if rc ~= 0 then
      pending("cannot mount a tmpfs here (needs root): " .. err)
      return
    end
    stop.add(function() process.run({ "umount", dir }) end)
    local path = dir .. "/d.ndjson"
    local d = start(stop, ("{ file = %q }"):format(path))
    send(d, 1, 120) -- about 120 KiB of records into 64 KiB
    local s
    port.wait_until(function()
      s = d:stats()
      return s.sink.lines + s.sink.dropped >= 120
    end, 10, 0.05)
    assert.is_true(s.sink.dropped > 0)
    assert.is_true(s.sink.errors.write >= 1)
    assert.matches("No space left on device", s.sink.last_error.message)
    -- Every line on disk is a whole record.
    for _, line in ipairs(process.read_lines(path)) do
      assert.is_table(json.decode(line))
    end
    -- Room again (what logrotate would do): the next records are written.
    assert(os.rename(path, dir .. "/old"))
    assert(os.remove(dir .. "/old"))
    local before = s.sink.lines
    send(d, 121, 125)
    port.wait_until(function() return d:stats().sink.lines >= before + 5 end,
                    10, 0.05)
    assert.equal(5, #process.read_lines(path))
  end)
end)
