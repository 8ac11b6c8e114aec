-- The gateway's hot paths are JIT-compiled inside nginx: sampling, the
-- diff of small records and the ring push each run in a loop in a real
-- nginx worker with a trace handler attached, and any trace aborted in
-- lua/shadow/ fails the spec with its reason and place.
local gateway = require "support.gateway"
local http = require "support.http"
local port = require "support.port"
local json = require "support.json"
local env = require "support.env"
local redis = require "support.redis"

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

-- The gateway's phase handlers themselves, in the phases nginx runs them
-- in: requests that are not chosen (rate 0, and rate 0.5 with keys the
-- rule leaves out) and requests that are (rate 1.0), driven by a
-- keep-alive client inside the same worker, proxied to a primary in the
-- same nginx (a `return` location would answer before the access phase).
-- Every trace aborted in
-- lua/shadow/ while they run fails the spec, and access, body_filter and
-- log must each have been compiled (a trace started in the handler).
local GATEWAYS = [[
  lua_shared_dict gw_off 1m;
  lua_shared_dict gw_half 1m;
  lua_shared_dict gw_on 4m;
  lua_shared_dict gw_store 4m;
  lua_max_running_timers 256;
  lua_max_pending_timers 512;
  lua_socket_log_errors off;
  keepalive_requests 100000;
  init_by_lua_block {
    local gw = require "shadow.gateway"
    local cand = "http://127.0.0.1:CPORT"
    gw_off = gw.new{ shared_dict = "gw_off", candidate = cand,
                     sample = { rate = 0 } }
    gw_half = gw.new{ shared_dict = "gw_half", candidate = cand,
                      sample = { rate = 0.5, key = function(req)
                        return req.headers["x-user-id"] end } }
    gw_on = gw.new{ shared_dict = "gw_on", candidate = cand,
                    sample = { rate = 1.0 } }
    -- The same with a fleet store, flushing to a real redis-server.
    gw_store = gw.new{ shared_dict = "gw_store", candidate = cand,
                       sample = { rate = 1.0 },
                       store = require("shadow").redis(
                         "redis://127.0.0.1:RPORT", { flush_ms = 50 }) }
  }
  upstream primary {
    server 127.0.0.1:CPORT;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:CPORT;
    location /primary/ {
      default_type application/json;
      return 200 '{"id":7,"name":"Ann","tags":["a","b"]}';
    }
    location / {
      default_type application/json;
      return 200 '{"id":7,"name":"ann","tags":["a","b"]}';
    }
  }
]]

local PHASES = [[
  location = /off {
    access_by_lua_block { gw_off:access() }
    body_filter_by_lua_block { gw_off:body_filter() }
    log_by_lua_block { gw_off:log() }
    proxy_pass http://primary/primary/;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
  }
  location = /half {
    access_by_lua_block { gw_half:access() }
    body_filter_by_lua_block { gw_half:body_filter() }
    log_by_lua_block { gw_half:log() }
    proxy_pass http://primary/primary/;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
  }
  location = /on {
    access_by_lua_block { gw_on:access() }
    body_filter_by_lua_block { gw_on:body_filter() }
    log_by_lua_block { gw_on:log() }
    proxy_pass http://primary/primary/;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
  }
  location = /store {
    access_by_lua_block { gw_store:access() }
    body_filter_by_lua_block { gw_store:body_filter() }
    log_by_lua_block { gw_store:log() }
    proxy_pass http://primary/primary/;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
  }
  location = /watch {
    content_by_lua_block {
      local jutil = require "jit.util"
      local vmdef = require "jit.vmdef"
      -- As above, and one more: a recording that a yield (the leg's
      -- cosockets, or another request's coroutine taking its turn) or a
      -- finalizer (__gc of a pooled record) interrupted is dropped and
      -- recorded again later ("error thrown or hook called during
      -- recording"): a matter of timing, not code the JIT cannot compile.
      local RETRY = { ["inner loop in root trace"] = true,
                      ["leaving loop in root trace"] = true,
                      ["loop unroll limit reached"] = true,
                      ["NYI: return to lower frame"] = true,
                      ["error thrown or hook called during recording"]
                        = true }
      local gw = ({ off = gw_off, half = gw_half, on = gw_on,
                    store = gw_store })[ngx.var.arg_gw]
      local n = tonumber(ngx.var.arg_n)
      -- Traces by the function they start in: recording (pending) and
      -- completed (compiled).
      local aborts, seen, pending, compiled = {}, {}, {}, {}
      local function on_trace(what, tr, func, pc, otr, oex)
        if what == "stop" then
          local key = pending[tr]
          if key then compiled[key] = true end
          pending[tr] = nil
          return
        end
        local info = jutil.funcinfo(func, pc)
        local src = info.source or "?"
        if what == "start" then
          pending[tr] = src:find("/lua/shadow/", 1, true)
            and (jutil.funcinfo(func).linedefined .. "@" .. src) or nil
          return
        end
        if what ~= "abort" then return end
        pending[tr] = nil
        if not src:find("/lua/shadow/", 1, true) then return end
        local why = vmdef.traceerr[otr] or tostring(otr)
        if type(oex) == "number" and why:find("%%d") then
          why = why:format(oex)
        elseif oex ~= nil and why:find("%%s") then
          why = why:format(type(oex) == "number" and vmdef.ffnames[oex]
                           or tostring(oex))
        end
        local at = ("%s: %s"):format(info.loc or src, why)
        if not RETRY[why] and not seen[at] then aborts[#aborts + 1] = at end
        seen[at] = true
      end
      local dict = ngx.shared["gw_" .. ngx.var.arg_gw]
      local function compared()
        local total = 0
        for _, key in ipairs(dict:get_keys(0)) do
          if key:find("\1compared$") then total = total + dict:get(key) end
        end
        return total
      end
      local before, compared_before = dict:get("c:requests") or 0, compared()
      jit.flush()
      jit.attach(on_trace, "trace")
      -- n requests on one keep-alive connection to this very worker.
      local sock = ngx.socket.tcp()
      local ok, err = sock:connect("127.0.0.1", ngx.var.server_port)
      local done = 0
      while ok and done < n do
        -- Keys the rate-0.5 rule leaves out (shadow.sampled says which).
        local key = "k" .. done
        if gw == gw_half then
          while require("shadow").sampled(key, 0.5) do key = key .. "x" end
        end
        ok, err = sock:send("GET /" .. ngx.var.arg_gw .. " HTTP/1.1\r\n"
          .. "Host: t\r\nx-user-id: " .. key .. "\r\n\r\n")
        if not ok then break end
        local head
        head, err = sock:receiveuntil("\r\n\r\n")()
        if not head then ok = false break end
        local len = tonumber(head:match("[Cc]ontent%-[Ll]ength: (%d+)"))
        local body
        body, err = sock:receive(len)
        ok = body ~= nil
        if ok then done = done + 1 end
      end
      -- The last legs (rate 1.0) finish before the tracer is detached.
      for _ = 1, 500 do
        if (gw ~= gw_on and gw ~= gw_store)
            or compared() - compared_before >= done then
          break
        end
        ngx.sleep(0.01)
      end
      jit.attach(on_trace)
      local function defined(f)
        local info = jutil.funcinfo(f)
        return info.linedefined .. "@" .. info.source
      end
      local G = getmetatable(gw).__index
      ngx.print(require("cjson").encode({
        ok = ok, err = err and tostring(err), done = done, aborts = aborts,
        fast = require("shadow.gateway.phase").fast,
        compiled = { access = compiled[defined(G.access)] or false,
                     body_filter = compiled[defined(G.body_filter)] or false,
                     log = compiled[defined(G.log)] or false },
        requests = (dict:get("c:requests") or 0) - before }))
    }
  }
]]

describe("the JIT inside nginx, the gateway's phase handlers", function()
  local ng, p, rs
  setup(function()
    p = port.free()
    local cport = port.free()
    rs = redis.start()
    ng = gateway.run(table.concat({
      "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
      "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
      "worker_processes 1;",
      "pid logs/nginx.pid;",
      "error_log logs/error.log warn;",
      "events { worker_connections 256; }",
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
      (GATEWAYS:gsub("CPORT", tostring(cport))
        :gsub("RPORT", tostring(rs.port))),
      ("  server {\n    listen 127.0.0.1:%d;\n%s\n  }"):format(p, PHASES),
      "}",
    }, "\n") .. "\n", { p, cport })
  end)
  teardown(function()
    if ng then ng:stop() end
    if rs then rs:stop() end
  end)

  for _, case in ipairs({
    { "off", "a request at rate 0" },
    { "half", "a request the rate-0.5 rule leaves out" },
    { "on", "a request chosen at rate 1.0" },
    { "store", "a request chosen at rate 1.0 with a fleet store" },
  }) do
    it("compiles access, body_filter and log for " .. case[2], function()
      local n = 3000
      -- A recording cut short (see RETRY) is tried again by LuaJIT; on a
      -- busy machine a handler may not get its trace within one run, so
      -- a run that compiled less is done again, twice at most. An abort
      -- for any other reason fails at once.
      local r
      for _ = 1, 3 do
        local res = assert(http.get(p, ("/watch?gw=%s&n=%d"):format(case[1],
                                                                    n)))
        assert.equal(200, res.status, res.body .. ng:error_log())
        r = json.decode(res.body)
        assert.is_true(r.ok, r.err)
        assert.equal(n, r.done)
        assert.equal(n, r.requests)
        -- lua-resty-core's FFI paths, not ngx.ctx and ngx.arg.
        assert.is_true(r.fast, "phase.lua fell back to ngx.ctx and ngx.arg")
        assert.same({}, r.aborts)
        local c = r.compiled
        if c.access and c.body_filter and c.log then break end
      end
      assert.same({ access = true, body_filter = true, log = true },
                  r.compiled)
      if case[1] == "store" then
        -- And the flushes reached Redis meanwhile.
        redis.wait(function()
          local c = rs:hgetall("{shadow}:0:counts")
          return tonumber(c["t\31requests"] or "0") >= n
        end, 10, "the store's counts")
      end
    end)
  end
end)
