-- The gateway's hot paths are JIT-compiled inside nginx: sampling, the
-- diff of small records and the ring push each run in a loop in a real
-- nginx worker with a trace handler attached, and any trace aborted in
-- lua/shadow/ fails the spec with its reason and place.
local gateway = require "support.gateway"
local http = require "support.http"
local port = require "support.port"
local json = require "support.json"
local env = require "support.env"

local root = require("env").root
local build = env.build_dir:sub(1, 1) == "/" and env.build_dir
  or (root .. "/" .. env.build_dir)

-- Runs in the worker: LOOP(fn, n) calls fn(i) n times with the tracer on
-- and answers the traces started and aborted, with where and why.
local PRELUDE = [[
  local vmdef = require "jit.vmdef"
  local jutil = require "jit.util"
  -- LuaJIT's own next try, not a place the JIT cannot compile: a root
  -- trace that meets an inner loop not compiled yet, or that starts in a
  -- short inner loop (a record's few headers) and leaves it, is aborted
  -- and the code around it recorded again; a hot function's own trace
  -- that returns into its caller is dropped for the caller's trace,
  -- which inlines the call. Whether the loop then runs compiled is what
  -- the profile below measures.
  local RETRY = { ["inner loop in root trace"] = true,
                  ["leaving loop in root trace"] = true,
                  ["loop unroll limit reached"] = true,
                  ["NYI: return to lower frame"] = true }
  local function run(fn, n)
    local aborts, seen, traces = {}, {}, 0
    local function on_trace(what, tr, func, pc, otr, oex)
      if what == "stop" then traces = traces + 1 end
      if what ~= "abort" then return end
      local info = jutil.funcinfo(func, pc)
      local src = info.source or "?"
      if not src:find("/lua/shadow/", 1, true) and func ~= fn then return end
      local why = vmdef.traceerr[otr] or tostring(otr)
      if type(oex) == "number" and why:find("%%d") then
        why = why:format(oex)
      elseif oex ~= nil and why:find("%%s") then
        why = why:format(type(oex) == "number" and vmdef.ffnames[oex]
                         or tostring(oex))
      end
      local at = ("%s: %s"):format(info.loc or src, why)
      seen[at] = (seen[at] or 0) + 1
      if not RETRY[why] and seen[at] == 1 then aborts[#aborts + 1] = at end
    end
    jit.flush()
    jit.attach(on_trace, "trace")
    local ok, err = pcall(fn, n)
    jit.attach(on_trace)
    -- Then the same loop again, compiled by now, under the sampling
    -- profiler: in which VM state is the time spent?
    local states = {}
    local profile = require "jit.profile"
    profile.start("vi1", function(thread, samples, vmstate)
      states[vmstate] = (states[vmstate] or 0) + samples
    end)
    -- At least 50 ms of CPU, whatever this machine's speed.
    local t0 = os.clock()
    repeat
      if ok then ok, err = pcall(fn, n) end
    until not ok or os.clock() - t0 > 0.05
    profile.stop()
    ngx.print(require("cjson").encode({ ok = ok, err = err and tostring(err),
      aborts = aborts, traces = traces, seen = seen, states = states }))
  end
]]

local SERVER = [[
  location /sampling {
    content_by_lua_block {
      ]] .. PRELUDE .. [[
      local shadow = require "shadow"
      local keys = {}
      for i = 1, 64 do keys[i] = "user-" .. i end
      run(function(n)
        local hits = 0
        for i = 1, n do
          if shadow.sampled(keys[i % 64 + 1], 0.3) then hits = hits + 1 end
        end
        assert(hits > 0)
      end, 1000000)
    }
  }
  location /diff {
    content_by_lua_block {
      ]] .. PRELUDE .. [[
      local shadow = require "shadow"
      local J = { ["content-type"] = "application/json" }
      local p = { status = 200, headers = J, body = '{"id":7,"name":"Ann"}' }
      local c = { status = 200, headers = J, body = '{"id":7,"name":"ann"}' }
      local opts = { ignore = { json = { "/meta" } } }
      run(function(n)
        local differ = 0
        for _ = 1, n do
          local text, parts = shadow.diff_json(p, c, opts)
          if parts ~= 0 then differ = differ + #text end
        end
        assert(differ > 0)
      end, 60000)
    }
  }
  location /ring {
    content_by_lua_block {
      ]] .. PRELUDE .. [[
      local shadow = require "shadow"
      local store = require("shadow.gateway.store").new(ngx.shared.jit, 100)
      local ring = shadow.ring(100)
      local text = '{"id":1,"route":"GET /x","body":{"differs":true}}'
      run(function(n)
        for i = 1, n do
          ring:push(text)
          store:push(store:next_id(), "GET /x", text)
        end
        assert(ring:len() == 100)
      end, 200000)
    }
  }
]]

describe("the JIT inside nginx", function()
  local ng, p
  setup(function()
    p = port.free()
    ng = gateway.run(table.concat({
      "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
      "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
      "worker_processes 1;",
      "pid logs/nginx.pid;",
      "error_log logs/error.log warn;",
      "events { worker_connections 64; }",
      "http {",
      "  access_log off;",
      "  client_body_temp_path tmp/body;",
      "  proxy_temp_path tmp/proxy;",
      "  fastcgi_temp_path tmp/fastcgi;",
      "  uwsgi_temp_path tmp/uwsgi;",
      "  scgi_temp_path tmp/scgi;",
      ('  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";')
        :format(root, root),
      ('  lua_package_cpath "%s/?.so;;";'):format(build),
      "  lua_shared_dict jit 4m;",
      ("  server {\n    listen 127.0.0.1:%d;\n%s\n  }"):format(p, SERVER),
      "}",
    }, "\n") .. "\n", { p })
  end)
  teardown(function() if ng then ng:stop() end end)

  for _, path in ipairs({ "sampling", "diff", "ring" }) do
    it("compiles the " .. path .. " loop with no aborted trace", function()
      local res = assert(http.get(p, "/" .. path))
      assert.equal(200, res.status, res.body .. ng:error_log())
      local r = json.decode(res.body)
      assert.is_true(r.ok, r.err)
      assert.is_true(r.traces > 0, "no trace compiled")
      -- Time spent interpreted: at most a tenth of the samples.
      local total, interpreted = 0, r.states.I or 0
      for _, n in pairs(r.states) do total = total + n end
      assert.is_true(total >= 10, "too few profile samples: " .. res.body)
      assert.is_true(interpreted <= total / 10,
                     "the loop runs interpreted: " .. res.body)
      assert.same({}, r.aborts)
    end)
  end
end)
