-- shadow.gateway: shadow-and-compare inside nginx with lua-nginx-module.
--
--   init_by_lua_block   { shadow_gw = require("shadow.gateway").new(conf) }
--   access_by_lua_block { shadow_gw:access() }       -- sample, keep a copy
--   body_filter_by_lua_block { shadow_gw:body_filter() }  -- capture
--   log_by_lua_block    { shadow_gw:log() }          -- schedule the leg
--   location /_shadow/  { content_by_lua_block { shadow_gw:admin() } }
--
-- The client's response is never held: the candidate leg starts from an
-- ngx.timer after the response is sent (log phase), on a cosocket with
-- keep-alive, and its answer is compared with the primary's by libshadow.
-- The primary's body is captured as it streams to the client, the first
-- limits.diff_bytes kept and the rest digested, as the daemon does.
-- Counters, the breaker and the ring live in the lua_shared_dict, so the
-- admin location shows all workers at once.
local ffi = require "ffi"
local cjson = require "cjson"
local loader = require "shadow.loader"
local record = require "shadow.record"
local sampled = require("shadow.sample").sampled
local clock = require "shadow.clock"
local stamp = require "shadow.stamp"
local redact = require "shadow.redact"
local validate = require("shadow.gateway.conf").validate
local store_mod = require "shadow.gateway.store"
local breaker_mod = require "shadow.gateway.breaker"
local admin = require "shadow.gateway.admin"
local http = require "shadow.gateway.http"
local phase = require "shadow.gateway.phase"
local fleet = require "shadow.gateway.fleet"

local ngx = ngx

local byte, concat, error, find, gsub, lower, match, pairs, pcall,
  setmetatable, sub, tonumber, tostring, type =
  string.byte, table.concat, error, string.find, string.gsub, string.lower,
  string.match, pairs, pcall, setmetatable, string.sub, tonumber, tostring,
  type
local now_ms = clock.now_ms
local state, chunk_of = phase.state, phase.chunk

local M = {}
local Gateway = {}
Gateway.__index = Gateway

-- Request headers never forwarded: hop-by-hop ones, the framing we set
-- ourselves, and a client's own x-shadow-request.
local HOP = { connection = true, ["keep-alive"] = true,
              ["proxy-connection"] = true, te = true, trailer = true,
              ["transfer-encoding"] = true, upgrade = true,
              ["content-length"] = true, ["x-shadow-request"] = true,
              ["x-forwarded-for"] = true, ["x-forwarded-proto"] = true,
              host = true }

-- Response headers nginx's proxy module does not pass to the client by
-- default (proxy_hide_header): the primary's record is what nginx sends,
-- so the candidate's is compared without them too.
local PROXY_HIDDEN = { server = true, date = true, ["x-pad"] = true }

-- How many C records a worker keeps for reuse (two per leg in flight, so
-- a slow candidate does not turn every leg into mallocs and finalizers),
-- and the largest body a kept record may have held: a record keeps its
-- buffer, and the pool must not pin diff_bytes per slot.
local POOL_MAX = 1024
local POOL_BODY_MAX = 65536

-- Script errors are logged at most once a second per hook and worker.
local ERROR_LOG_INTERVAL = 1

function M.new(conf)
  -- Compiling the diff options now reports a bad ignore/arrays/tolerance
  -- at startup, and loads libshadow once in the master process.
  local ok, c, opts = pcall(validate, conf, ngx and ngx.shared)
  if not ok then error(c, 2) end
  local self = setmetatable({
    conf = c,
    opts = opts,
    C = loader.get(),
    store = store_mod.new(c.dict, c.capacity),
    -- A probe slot outlives any leg: connect + head + a long read.
    breaker = breaker_mod.new(c.dict, c.breaker_failures,
                              c.breaker_cooldown_ms,
                              (c.candidate.connect_timeout
                               + c.candidate.head_timeout
                               + c.candidate.read_timeout) / 1000 + 1),
    inflight = 0,
    pool = {},
    logged = {},
    -- With a store, each worker starts its flush timer on its first
    -- request or admin call (init_by_lua cannot make timers).
    fleet_pending = c.store ~= nil,
    instance = c.store and fleet.instance_id(c.store),
  }, Gateway)
  -- Every rule is counted from 0, so /_shadow/metrics shows a dead one.
  if opts ~= nil then
    local n, len = ffi.new("size_t[1]"), ffi.new("size_t[1]")
    local p = self.C.shadow_ffi_opts_rules(opts, len, n)
    local at = 0
    for _ = 1, tonumber(n[0]) do
      local name = ffi.string(p + at)
      self.store:add("rh", name, 0)
      at = at + #name + 1
    end
  end
  return self
end

-- --- small helpers -------------------------------------------------------

local function script_error(self, hook, err)
  self.store:add("se", hook)
  local t = ngx.now()
  if (self.logged[hook] or 0) + ERROR_LOG_INTERVAL <= t then
    self.logged[hook] = t
    ngx.log(ngx.ERR, "shadow.gateway: ", hook, " hook failed: ",
            tostring(err))
  end
end

local function skip(self, reason)
  self.store:add("sk", reason)
end

local function acquire(self)
  local pool = self.pool
  local n = #pool
  if n > 0 then
    local r = pool[n]
    pool[n] = nil
    return r
  end
  local C = self.C
  local r = C.shadow_ffi_record_new()
  if r == nil then error("shadow.gateway: out of memory") end
  return ffi.gc(r, C.shadow_ffi_record_free)
end

local function release(self, r)
  if r == nil then return end
  local pool = self.pool
  if #pool < POOL_MAX
      and self.C.shadow_ffi_record_body_len(r, nil) <= POOL_BODY_MAX then
    self.C.shadow_ffi_record_clear(r)
    pool[#pool + 1] = r
  end
end

-- The daemon's default route: the method and the path, numeric segments
-- folded to :id, so routes stay a bounded label set.
local function default_route(method, path)
  return method .. " " .. gsub(path, "/%d+%f[%z/]", "/:id")
end

-- A route as a label, as the daemon makes it (src/engine/utf8.c): each
-- byte that is not part of valid UTF-8, and each control character,
-- becomes U+FFFD, and past ROUTE_MAX bytes it is cut on a character
-- boundary and ends in an ellipsis, so /metrics stays valid Prometheus
-- text whatever path a client sends.
local ROUTE_MAX = 256
local FFFD, ELLIPSIS = "\239\191\189", "\226\128\166"

local function utf8_len(s, i, n)
  local c = byte(s, i)
  local len, min
  if c < 0x80 then return 1
  elseif c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
  elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
  else return 0 end
  if i + len - 1 > n then return 0 end
  local cp = c % (2 ^ (7 - len))
  for k = 1, len - 1 do
    local b = byte(s, i + k)
    if b < 0x80 or b > 0xBF then return 0 end
    cp = cp * 64 + b - 0x80
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then
    return 0
  end
  return len
end

local function route_label(s)
  local n = #s
  if n <= ROUTE_MAX and not find(s, "[%z\1-\31\127-\255]") then return s end
  local out, size, cut, i = {}, 0, 0, 1
  while i <= n do
    local c = byte(s, i)
    local l = (c < 32 or c == 127) and 0 or utf8_len(s, i, n)
    local piece = l > 0 and sub(s, i, i + l - 1) or FFFD
    i = i + (l > 0 and l or 1)
    if size + #piece > ROUTE_MAX then
      for k = #out, cut + 1, -1 do out[k] = nil end
      out[#out + 1] = ELLIPSIS
      break
    end
    out[#out + 1] = piece
    size = size + #piece
    if size <= ROUTE_MAX - 3 then cut = #out end
  end
  return concat(out)
end

-- A request as hooks see it: { method, path, query, headers, body }, the
-- headers read only if a hook looks at them.
local lazy_req = {
  __index = function(t, k)
    if k == "headers" then
      local h = ngx.req.get_headers(100)
      t.headers = h
      return h
    end
  end,
}

local function hook_req(method, uri)
  local q = find(uri, "?", 1, true)
  local path, query = uri, nil
  if q then path, query = sub(uri, 1, q - 1), sub(uri, q + 1) end
  return setmetatable({ method = method, path = path, query = query },
                      lazy_req)
end

-- The last of nginx's comma-separated upstream times, in ms (nil if none
-- or "-", nginx's "no value").
local function upstream_ms(v)
  if v == nil then return nil end
  local last = match(v, "([^,%s]+)%s*$")
  local n = tonumber(last)
  return n and n * 1000 or nil
end

-- --- access --------------------------------------------------------------

-- A chosen request's state, kept in ngx.ctx.shadow from access to log and
-- handed to the candidate leg. It is also the leg's body sink (http.lua
-- calls sink:put(piece) and sink:restart()), so a leg makes no closures.
local Leg = {}
Leg.__index = Leg

function Leg:put(piece)
  self.C.shadow_ffi_record_body_feed(self.crec, piece, #piece, self.keep)
  local lua_body = self.lua_body
  if lua_body and self.lua_n < self.keep then
    lua_body[#lua_body + 1] = piece
    self.lua_n = self.lua_n + #piece
  end
end

-- Before a retry on a new connection: what the sink got is dropped.
function Leg:restart()
  self.C.shadow_ffi_record_clear(self.crec)
  if self.lua_body then self.lua_body, self.lua_n = {}, 0 end
end

-- Decides whether this request is shadowed and keeps what the candidate
-- leg needs. Nothing here can fail the client's request: hooks are
-- protected, and anything unexpected leaves the request unshadowed.
function Gateway:access()
  local conf, store = self.conf, self.store
  if self.fleet_pending then fleet.start(self) end
  -- A request not chosen costs this one shared-dict operation (and, at a
  -- rate above 0, the sampling decision); nothing is kept for it, so the
  -- body filter and the log phase find no state and return at once.
  store:count_request()
  if conf.rate <= 0 then return end
  local method = ngx.req.get_method()
  if not conf.methods[method] then return end
  local uri = ngx.var.request_uri
  local req
  -- Hooks get the daemon's req; normalize and rewrite get it later, in
  -- the leg, where the headers read here are all there is of it.
  if conf.filter or conf.key or conf.route or conf.normalize or conf.rewrite
  then
    req = hook_req(method, uri)
  end
  if conf.filter then
    local ok, v = pcall(conf.filter, req)
    if not ok then
      script_error(self, "filter", v)
      return
    end
    if not v then return end
  end
  local key
  if conf.key then
    local ok, k = pcall(conf.key, req)
    if not ok then
      script_error(self, "key", k)
      return
    end
    if k ~= nil then key = tostring(k) end
  end
  if not sampled(key, conf.rate) then return end
  local headers = req and req.headers or ngx.req.get_headers(100)
  if headers.upgrade then
    skip(self, "upgrade")
    return
  end
  local allowed, probe = self.breaker:allow(ngx.now() * 1000)
  if not allowed then
    skip(self, "breaker")
    return
  end
  if self.inflight >= conf.max_inflight then
    self.breaker:release(probe)
    skip(self, "overload")
    return
  end
  local body
  if headers["content-length"] or headers["transfer-encoding"] then
    ngx.req.read_body()
    body = ngx.req.get_body_data()
    if body == nil then
      -- nginx put the body in a file: mirror it if it is small enough.
      local file = ngx.req.get_body_file()
      local f = file and io.open(file, "rb")
      local size = f and f:seek("end")
      if not f or size > conf.mirror_body_bytes then
        if f then f:close() end
        self.breaker:release(probe)
        skip(self, "body_too_large")
        return
      end
      f:seek("set")
      body = f:read("*a")
      f:close()
    elseif #body > conf.mirror_body_bytes then
      self.breaker:release(probe)
      skip(self, "body_too_large")
      return
    end
  end
  local route
  if conf.route then
    local ok, r = pcall(conf.route, req)
    if ok and r ~= nil then
      route = tostring(r)
    else
      if not ok then script_error(self, "route", r) end
      route = "unknown"
    end
  else
    route = default_route(method, (gsub(uri, "%?.*$", "")))
  end
  route = route_label(route)
  store:route_add(route, "sampled")
  if req then req.body = body end
  ngx.ctx.shadow = setmetatable({
    key = key, route = route, method = method, uri = uri,
    headers = headers, body = body, probe = probe, req = req,
    scheme = ngx.var.scheme, peer = ngx.var.remote_addr,
    rec = nil, eof = false, chunks = nil, kept = 0,
    -- The candidate leg's sink (Leg above): its record, how much of its
    -- body to keep, and its Lua copy for normalize.
    C = self.C, crec = nil, keep = conf.diff_bytes, lua_body = nil,
    lua_n = 0,
  }, Leg)
end

-- --- body_filter ---------------------------------------------------------

-- Feeds the primary's body, as it streams to the client, into a C record
-- that keeps the first diff_bytes and digests the rest. The chunk itself
-- goes on to the client unchanged.
function Gateway:body_filter()
  local ctx = state()
  if not ctx then return end
  local C = self.C
  local rec = ctx.rec
  if rec == nil then
    rec = acquire(self)
    C.shadow_ffi_record_clear(rec)
    ctx.rec = rec
  end
  -- The chunk as nginx holds it, fed to the record without a Lua string
  -- made of it (phase.lua).
  local chunk, n, eof = chunk_of()
  if n > 0 then
    local keep = ctx.keep
    if C.shadow_ffi_record_body_feed(rec, chunk, n, keep) ~= 0 then
      ctx.failed = true
    end
    if self.conf.normalize and ctx.kept < keep then
      -- normalize works on Lua records: keep the same prefix in Lua.
      local chunks = ctx.chunks or {}
      ctx.chunks = chunks
      chunks[#chunks + 1] = type(chunk) == "string" and chunk
        or ffi.string(chunk, n)
      ctx.kept = ctx.kept + n
    end
  end
  if eof then
    C.shadow_ffi_record_body_end(rec)
    ctx.eof = true
  end
end

-- --- log: the candidate leg ------------------------------------------------

local leg

-- The header lines the candidate gets: the client's, as a careful proxy
-- forwards them, with x-shadow-request: 1. One string, "name: value\r\n"
-- a line.
local function forward_headers(self, ctx, headers)
  local conf = self.conf
  local cand = conf.candidate
  local drop = HOP
  local conn = headers.connection
  if conn then
    drop = setmetatable({}, { __index = HOP })
    if type(conn) == "table" then conn = concat(conn, ",") end
    for token in conn:gmatch("[^,%s]+") do drop[lower(token)] = true end
  end
  local host = cand.host_header or headers.host
  if type(host) == "table" then host = host[1] end
  local parts = { "host: ", host or cand.authority, "\r\n" }
  local n = 3
  for name, v in pairs(headers) do
    if type(name) == "string" and not drop[name] then
      if type(v) == "table" then
        for i = 1, #v do
          parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] =
            name, ": ", v[i], "\r\n"
          n = n + 4
        end
      else
        parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] =
          name, ": ", v, "\r\n"
        n = n + 4
      end
    end
  end
  if conf.forwarded then
    local xff = headers["x-forwarded-for"]
    if type(xff) == "table" then xff = concat(xff, ", ") end
    parts[n + 1] = "x-forwarded-for: "
    parts[n + 2] = xff and (xff .. ", " .. ctx.peer) or ctx.peer
    parts[n + 3] = "\r\nx-forwarded-proto: "
    parts[n + 4] = ctx.scheme
    parts[n + 5] = "\r\n"
    n = n + 5
  end
  parts[n + 1] = "x-shadow-request: 1\r\n"
  return concat(parts)
end

-- Fills status and headers into a record whose body is already in.
local function fill_head(self, rec, status, headers, hidden)
  local C, red = self.C, self.conf.redact
  C.shadow_ffi_record_set_status(rec, status)
  for name, v in pairs(headers) do
    if type(name) == "string" and not (hidden and hidden[name]) then
      if type(v) ~= "table" then v = { v } end
      for i = 1, #v do
        local s = tostring(v[i])
        if red[name] then s = redact.mark(s, self.conf.redact_key) end
        C.shadow_ffi_record_add_header(rec, name, #name, s, #s)
      end
    end
  end
end

-- The headers as they are compared: hidden ones dropped, redacted ones
-- replaced. For normalize, which works on Lua records.
local function clean_headers(self, headers, hidden)
  local red, out = self.conf.redact, {}
  for name, v in pairs(headers) do
    if type(name) == "string" and not (hidden and hidden[name]) then
      if red[name] then
        if type(v) == "table" then
          local list = {}
          for i = 1, #v do
            list[i] = redact.mark(tostring(v[i]), self.conf.redact_key)
          end
          v = list
        else
          v = redact.mark(tostring(v), self.conf.redact_key)
        end
      end
      out[name] = v
    end
  end
  return out
end

-- Runs normalize on one side, refilling the record when the hook changed
-- it. A body that was cut (compared by digest) is left as it is.
local function normalize(self, ctx, rec, status, headers, body, side)
  local cut = ffi.new("int[1]")
  self.C.shadow_ffi_record_body_len(rec, cut)
  if cut[0] ~= 0 then return end
  local lrec = { status = status, headers = headers, body = body }
  local ok, out = pcall(self.conf.normalize, lrec, side, ctx.req)
  if not ok then
    script_error(self, "normalize", out)
    return
  end
  if out == nil then out = lrec end
  local fine, err = record.fill(rec, out, side)
  if not fine then script_error(self, "normalize", err) end
end

-- Where a divergence record says how its bodies were compared, and the
-- per-route tally each kind counts under (every "body_<kind>" the store
-- keeps: json, bytes, digest, ...).
local BODY_KIND = '"body":{"differs":true,"kind":"'
local KINDS = {}
for _, what in ipairs(store_mod.WHATS) do
  if sub(what, 1, 5) == "body_" then KINDS[sub(what, 6)] = what end
end

-- Compares the two records and counts the pair; a divergence is numbered,
-- timed and pushed to the shared ring.
local function compare(self, ctx, prec, crec, candidate_ms, candidate_fb)
  local C, store = self.C, self.store
  local d = self.diff
  if d == nil then
    d = ffi.gc(C.shadow_ffi_diff_new(), C.shadow_ffi_diff_free)
    self.diff = d
    self.json_out = ffi.new("const char *[1]")
    self.len_out = ffi.new("size_t[1]")
  end
  local path = ctx.uri
  C.shadow_ffi_diff_meta(d, ctx.route, ctx.method, path, ctx.key)
  local parts = C.shadow_ffi_diff_run(d, self.opts, prec, crec,
                                      self.json_out, self.len_out)
  if parts < 0 then
    skip(self, "diff_error")
    return
  end
  local route = ctx.route
  -- "compared" is counted last, after the pair's other tallies and its
  -- record: /stats reads it first (store.lua), so every pair it counts
  -- already shows in diverged, the fields, the rule hits and
  -- /divergences, whichever worker compared it.
  -- The rules that decided something, agreeing records or not.
  local hn = self.hits_n
  if hn == nil then
    hn = ffi.new("size_t[2]")
    self.hits_n = hn
  end
  local hp = C.shadow_ffi_diff_hits(d, self.opts, hn + 1, hn)
  if hn[0] > 0 then
    local at = 0
    for _ = 1, tonumber(hn[0]) do
      local name = ffi.string(hp + at)
      store:add("rh", name)
      at = at + #name + 1
    end
  end
  if parts == 0 then
    store:route_add(route, "compared")
    return
  end
  store:route_add(route, "diverged")
  if parts % 2 == 1 then store:route_add(route, "status") end
  if parts % 4 >= 2 then store:route_add(route, "headers") end
  local text = ffi.string(self.json_out[0], self.len_out[0])
  if parts >= 4 then
    store:route_add(route, "body")
    -- How the bodies were compared, as the record says ("kind"), so a
    -- digest divergence (no field named) is counted apart. A plain find
    -- (compiled) rather than a pattern match over the record.
    local at = find(text, BODY_KIND, 1, true)
    local q = at and find(text, '"', at + #BODY_KIND, true)
    local kind = q and KINDS[sub(text, at + #BODY_KIND, q - 1)]
    if kind then store:route_add(route, kind) end
  end
  local n = ffi.new("size_t[1]")
  local fields = C.shadow_ffi_diff_fields(d, self.len_out, n)
  local at = 0
  for _ = 1, tonumber(n[0]) do
    local f = ffi.string(fields + at)
    store:add("f", f)
    at = at + #f + 1
  end
  local id = store:next_id()
  if self.conf.store then
    -- Grouped by the daemon's signature, for the fleet's groups.
    local sig = fleet.signature_of(self, route, parts,
      ffi.string(fields, self.len_out[0]))
    if sig then fleet.note(store, sig, id, ngx.now() * 1000) end
  end
  text = stamp.record(text, id, ctx.primary_ms, candidate_ms, ctx.primary_fb,
                      candidate_fb)
  if not store:push(id, route, text) then
    skip(self, "ring_full")
  end
  store:route_add(route, "compared")
  if self.conf.on_divergence then
    local ok, err = pcall(self.conf.on_divergence, cjson.decode(text))
    if not ok then script_error(self, "on_divergence", err) end
  end
end

local function run_leg(self, ctx)
  local conf, C, store = self.conf, self.C, self.store
  local cand = conf.candidate
  local method, target, body = ctx.method, ctx.uri, ctx.body
  local headers = forward_headers(self, ctx, ctx.headers)
  if conf.rewrite then
    local ok, r = pcall(conf.rewrite, ctx.req)
    if not ok or type(r) ~= "table" then
      script_error(self, "rewrite", ok and "rewrite must return a request"
                   or r)
      self.breaker:release(ctx.probe)
      skip(self, "rewrite")
      return
    end
    method = r.method or method
    target = (r.path or "/") .. (r.query and ("?" .. r.query) or "")
    body = r.body
    if r.headers ~= ctx.headers then
      headers = forward_headers(self, ctx, r.headers or {})
    end
  end
  local crec = acquire(self)
  ctx.crec = crec
  C.shadow_ffi_record_clear(crec)
  if conf.normalize then ctx.lua_body, ctx.lua_n = {}, 0 end
  local t0 = now_ms()
  -- ctx is the sink (Leg): the candidate's body goes into crec as it
  -- arrives.
  local res, why = http.request(cand, method,
    http.build(method, cand.base .. target, headers, body), ctx)
  local t1 = now_ms()
  if not res then
    store:add("ce", why)
    self.breaker:result(false, ctx.probe, ngx.now() * 1000)
    return
  end
  self.breaker:result(true, ctx.probe, ngx.now() * 1000)
  local candidate_ms = t1 - t0
  store:observe("candidate", candidate_ms / 1000)
  C.shadow_ffi_record_body_end(crec)
  fill_head(self, crec, res.status, res.headers, PROXY_HIDDEN)
  if conf.normalize then
    normalize(self, ctx, ctx.rec, ctx.status,
              clean_headers(self, ctx.resp_headers, nil),
              concat(ctx.chunks or {}), "primary")
    normalize(self, ctx, crec, res.status,
              clean_headers(self, res.headers, PROXY_HIDDEN),
              concat(ctx.lua_body), "candidate")
  end
  compare(self, ctx, ctx.rec, crec, candidate_ms, res.head_at - t0)
end

-- The timer's callback: the leg, protected, then the slot and the
-- records given back whatever happened.
leg = function(premature, self, ctx)
  if premature then
    -- The worker is exiting (a reload or a stop) before the leg began.
    self.store:add("ce", "canceled")
    self.breaker:release(ctx.probe)
  else
    local ok, err = pcall(run_leg, self, ctx)
    if not ok then
      self.breaker:release(ctx.probe)
      skip(self, "internal_error")
      ngx.log(ngx.ERR, "shadow.gateway: candidate leg failed: ", err)
    end
  end
  self.inflight = self.inflight - 1
  release(self, ctx.rec)
  release(self, ctx.crec)
  ctx.rec, ctx.crec = nil, nil
end

-- After the response is sent: the primary's record is completed and the
-- candidate leg scheduled. The client is not waiting on anything here.
function Gateway:log()
  local ctx = state()
  if not ctx then return end
  ngx.ctx.shadow = nil
  local var = ngx.var
  local store = self.store
  -- A primary that nginx could not reach answers with nginx's own 502 or
  -- 504: no response header ever came from it.
  local addr = var.upstream_addr
  local header_ms = upstream_ms(var.upstream_header_time)
  if addr and not header_ms then
    store:incr("primary_errors")
    self.breaker:release(ctx.probe)
    release(self, ctx.rec)
    skip(self, "primary_error")
    return
  end
  local status = ngx.status
  if ctx.rec == nil and (ctx.method == "HEAD" or status < 200
                         or status == 204 or status == 304) then
    -- A response without a body never reaches the body filter.
    ctx.rec = acquire(self)
    self.C.shadow_ffi_record_clear(ctx.rec)
    ctx.eof = true
  end
  if not ctx.eof or ctx.failed then
    self.breaker:release(ctx.probe)
    release(self, ctx.rec)
    skip(self, "client_abort")
    return
  end
  local primary_ms = upstream_ms(var.upstream_response_time)
  if not primary_ms then
    primary_ms = (ngx.now() - ngx.req.start_time()) * 1000
  end
  ctx.primary_ms, ctx.primary_fb = primary_ms, header_ms
  store:observe("primary", primary_ms / 1000)
  local headers = ngx.resp.get_headers(100)
  fill_head(self, ctx.rec, status, headers, nil)
  ctx.status, ctx.resp_headers = status, headers
  self.inflight = self.inflight + 1
  local ok, err = ngx.timer.at(0, leg, self, ctx)
  if not ok then
    self.inflight = self.inflight - 1
    self.breaker:release(ctx.probe)
    release(self, ctx.rec)
    skip(self, "overload")
    if err ~= "process exiting" then
      ngx.log(ngx.WARN, "shadow.gateway: no timer for a candidate leg: ",
              err)
    end
  end
end

-- --- admin ---------------------------------------------------------------

local function loopback(addr)
  return addr ~= nil and (find(addr, "^127%.") ~= nil or addr == "::1"
                          or addr == "unix:")
end

-- A Host the admin serves, as the daemon's admin (admin_guard.c): an IP
-- literal (a DNS-rebinding page's origin is a name, never an address),
-- localhost, or this machine's name; with or without a port. No Host is
-- not a browser.
local function host_ok(host)
  if host == nil then return true end
  host = lower(host)
  local h = match(host, "^%[([%x:.]+)%]:?%d*$")
  if h then return true end
  h = match(host, "^([^:]+):?%d*$")
  if not h then return false end
  h = match(h, "^(.-)%.?$")
  return match(h, "^%d+%.%d+%.%d+%.%d+$") ~= nil or h == "localhost"
    or h == lower(ngx.var.hostname or "")
end

local function reply(status, ctype, body)
  ngx.status = status
  ngx.header["content-type"] = ctype
  ngx.header["cache-control"] = "no-store"
  ngx.print(body)
end

local function reply_json(status, body)
  reply(status, "application/json", body)
end

-- The content handler of a loopback-only location: /.../divergences,
-- /.../stats, /.../metrics (and /.../healthz), the daemon's admin API over
-- every worker's counts.
function Gateway:admin()
  local conf = self.conf
  local token = conf.admin_token
  if not host_ok(ngx.var.http_host)
     and not match(ngx.var.uri, "healthz/?$") then
    return reply_json(421, '{"error":"Host is not this admin\'s address '
      .. 'or a loopback name"}')
  end
  if token then
    local auth = ngx.var.http_authorization
    if auth ~= "Bearer " .. token then
      return reply_json(401, '{"error":"a bearer token is required"}')
    end
  elseif not loopback(ngx.var.remote_addr) then
    return reply_json(403, '{"error":"the admin API answers loopback '
      .. 'clients only"}')
  end
  if self.fleet_pending then fleet.start(self) end
  local method = ngx.req.get_method()
  local name = match(ngx.var.uri, "([^/]+)/?$")
  local args = ngx.req.get_uri_args(10)
  local scope = args.scope
  if scope ~= nil and scope ~= "local" and scope ~= "fleet" then
    return reply_json(400, '{"error":"scope must be local or fleet"}')
  end
  if method == "POST" and match(ngx.var.uri, "stats/reset/?$") then
    return self:admin_reset(scope)
  end
  if method ~= "GET" and method ~= "HEAD" then name = nil end
  local store = self.store
  -- With a store, the views are the fleet's unless ?scope=local.
  local fleet_on = conf.store ~= nil and scope ~= "local"
  if name == "divergences" then
    local limit = 50
    if args.limit ~= nil then
      limit = type(args.limit) == "string" and match(args.limit, "^%d+$")
        and tonumber(args.limit)
      if not limit then
        return reply_json(400, '{"error":"limit must be a whole number"}')
      end
    end
    local route = args.route
    if type(route) ~= "string" then route = nil end
    if args.group ~= nil and args.group ~= "signature" then
      return reply_json(400, '{"error":"group must be signature"}')
    end
    if args.group == "signature" then
      if conf.store == nil then
        return reply_json(400, '{"error":"group=signature needs a store '
          .. 'on the gateway"}')
      end
      local doc = fleet_on and fleet.fleet_groups(self, limit, route)
      return reply_json(200, doc or fleet.local_groups(self, limit, route))
    end
    if fleet_on then
      local texts, total = fleet.divergences(self, limit, route)
      if texts then
        return reply_json(200, admin.divergences(texts, total))
      end
    end
    local texts, total = store:latest(limit, route)
    return reply_json(200, admin.divergences(texts, total))
  elseif name == "stats" then
    local snap = store:snapshot()
    local extra
    if conf.store then
      local st = fleet.state(self)
      st.errors = snap.families.sx
      st.dropped = snap.totals.store_dropped or 0
      st.scope = "local"
      if fleet_on then
        local fsnap, info, detail = fleet.read(self)
        if fsnap then
          snap, st.scope = fsnap, "fleet"
          st.epoch, st.instances, st.kinds = info.epoch, info.instances,
            info.kinds
        else
          -- Redis cannot be read: this node's own view, saying so.
          st.fleet = "unavailable"
          st.fleet_error = tostring(info) .. (detail and (": "
            .. tostring(detail)) or "")
        end
      end
      extra = { store = st, scope = st.scope }
    else
      extra = { scope = "local" }
    end
    return reply_json(200, admin.stats(snap, self.breaker:state_name(),
                                       conf.slo, extra))
  elseif name == "metrics" then
    local snap = store:snapshot()
    local opts = { store = conf.store ~= nil }
    if fleet_on then
      local fsnap = fleet.read(self)
      if fsnap then opts.verdict_routes = fsnap.routes end
    end
    return reply(200, "text/plain; version=0.0.4",
                 admin.metrics(snap, self.breaker:state_name() == "open",
                               conf.slo, opts))
  elseif name == "healthz" then
    return reply_json(200, '{"status":"ok"}')
  end
  return reply_json(404, '{"error":"not found"}')
end

-- Content-Type: application/json, with parameters or not.
local function json_request(ct)
  if type(ct) ~= "string" then return false end
  ct = lower(ct)
  if sub(ct, 1, 16) ~= "application/json" then return false end
  local rest = sub(ct, 17)
  return match(rest, "^[ \t]*$") ~= nil or match(rest, "^[ \t]*;") ~= nil
end

-- POST /_shadow/stats/reset?scope=fleet: a new counting window for the
-- whole fleet (a new epoch in the store; every instance rebases at its
-- next flush). The gateway's own counters are not reset (Prometheus
-- counters only grow), so scope=local is refused.
function Gateway:admin_reset(scope)
  -- Without a token, a form on any web page could post here: a JSON
  -- request needs a CORS preflight, which this location never grants
  -- (the daemon's rule, admin.c).
  if not self.conf.admin_token
      and not json_request(ngx.var.http_content_type) then
    return reply_json(415, '{"error":"POST /stats/reset needs '
      .. 'Content-Type: application/json (or admin_token and its bearer '
      .. 'token)"}')
  end
  if scope ~= "fleet" then
    return reply_json(400, '{"error":"the gateway resets only the fleet\'s '
      .. 'window: POST stats/reset?scope=fleet"}')
  end
  if not self.conf.store then
    return reply_json(409, '{"error":"scope=fleet needs a store"}')
  end
  local epoch, why, detail = fleet.reset(self)
  if not epoch then
    return reply_json(503, cjson.encode({ error = "the store did not "
      .. "answer: " .. tostring(why) .. (detail and (": " .. tostring(detail))
      or "") }))
  end
  return reply_json(200, ('{"result":"ok","scope":"fleet","epoch":%d}')
    :format(epoch))
end

M.default_route = default_route
M.route_label = route_label

return M
