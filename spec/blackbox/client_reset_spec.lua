-- A client that resets its connection in the middle of a large response:
-- the reset is found by the write of the primary's next bytes, which ends
-- the request (and, with no candidate leg still running, the exchange)
-- from inside the primary's body callback. shadowd must let go of the
-- exchange only after that callback, count the abort, and go on serving.
-- Under the sanitizer build a use after free here is reported by
-- cleanup.stop_all.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local http = require "support.http"
local cleanup = require "support.cleanup"
local process = require "support.process"
local port = require "support.port"
local socket = require "socket"

local MiB = 1024 * 1024
local RESETS = 12

local function reset_midway(d, path)
  local c = assert(socket.tcp())
  assert(c:connect("127.0.0.1", d.port))
  assert(c:send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n"):format(path)))
  -- The head and some of the body: shadowd is then writing straight from
  -- the primary's reads.
  c:settimeout(10)
  assert(c:receive(256 * 1024))
  c:setoption("linger", { on = true, timeout = 0 }) -- close sends RST
  c:close()
end

for _, rate in ipairs({ 0, 1.0 }) do
  describe(("a client that resets mid-response, at rate %s"):format(rate),
           function()
    local dir, ng, d
    setup(function()
      dir = process.tmpdir("shadow-reset")
      process.run({ "sh", "-c", ("head -c %d /dev/urandom > '%s/big.bin'")
                      :format(32 * MiB, dir) })
      local files = ([[ location /files/ { alias %s/; } ]]):format(dir)
      ng = nginx.start{ servers = { primary = files, candidate = files } }
      d = shadowd.start{ primary = ng:url("primary"),
                         candidate = ng:url("candidate"), rate = rate }
    end)
    teardown(function()
      cleanup.stop_all(d, ng)
      process.rmdir(dir)
    end)

    it("ends each such request as a client abort and goes on serving",
       function()
      local before = d:stats().totals
      for i = 1, RESETS do reset_midway(d, "/files/big.bin?reset=" .. i) end
      -- Every reset request was counted, and the primary's response was
      -- cut, not drained.
      port.wait_until(function()
        return d:stats().totals.requests >= before.requests + RESETS
      end, 20, 0.05)
      for i = 1, RESETS do
        local reqs = ng:wait_uri("primary", "/files/big.bin?reset=" .. i, 1,
                                 20)
        assert.are.equal(1, #reqs)
        assert.is_true(tonumber(reqs[1].bytes) < 32 * MiB)
      end
      local res = assert(http.get(d.port, "/files/none"))
      assert.are.equal(404, res.status)
      assert.is_true(d.proc:running())
    end)
  end)
end
