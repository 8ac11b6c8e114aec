-- The gateway's side of the fleet store: what this nginx counted, sent to
-- Redis as deltas every flush_ms, and the fleet's counts read back for the
-- admin views. The request path never touches Redis: every worker runs an
-- ngx.timer.every, and a shared-dict lock lets exactly one of them flush
-- per period what all of them counted (the counts are in the shared dict
-- already). The last counts sent live in the shared dict too (one JSON
-- document), so any worker can take the next flush and a reload keeps it.
--
-- Keys (P is the prefix as a hash tag, "{prefix}", so a cluster keeps one
-- deployment in one slot; E the epoch): P:epoch; P:E:counts (HINCRBY,
-- fields are parts joined by 0x1f), P:E:float (HINCRBYFLOAT), P:E:sig
-- (signatures: <sig>␟count, ␟first, ␟last, ␟ex), P:E:log (a stream of
-- divergence records, MAXLEN ~ log.capacity), P:instances (id ->
-- {"last_ms","kind":"gateway"}), and P:seq (instance -> the number of its
-- last flush applied, so a flush whose EXEC went unanswered is known to
-- have been applied or not at the next one). A flush is one MULTI ...
-- EXEC, so it is applied whole or not at all, and is only then taken as
-- sent. A reset of
-- the fleet (INCR P:epoch) is seen at the next flush: the counts until
-- then are taken as sent, and only what comes after goes to the new epoch.
--
-- Redis down or slow costs the requests nothing: nothing is sent, the
-- deltas stay in the counters (bounded by the families' label caps), the
-- failure is counted (store errors by reason), and the next try waits a
-- little longer each time (up to max(flush_ms, 2 s)). Divergence records
-- overwritten in the ring before they could be sent are counted as
-- dropped.
local ffi = require "ffi"
local cjson = require "cjson.safe"
local redis = require "shadow.gateway.redis"
local store_mod = require "shadow.gateway.store"

local ngx = ngx
local bit = require "bit"

local concat, floor, format, gsub, ipairs, min, pairs, pcall, sort, sub,
  tonumber, tostring, type =
  table.concat, math.floor, string.format, string.gsub, ipairs, math.min,
  pairs, pcall, table.sort, string.sub, tonumber, tostring, type
local find, match = string.find, string.match

local M = {}

local US = "\31"
local SEP = "\1"
local BASE = "st" .. SEP .. "base"
local TICK = "st" .. SEP .. "tick"
local BUSY = "st" .. SEP .. "busy"
local STATE = "st" .. SEP .. "state"
local LAST_OK = "st" .. SEP .. "last_ok"
local LAST_ERR = "st" .. SEP .. "last_error"
local FAILS = "st" .. SEP .. "fails"
local NEXT = "st" .. SEP .. "next"
local EPOCH = "st" .. SEP .. "epoch"
local FLUSHES = "st" .. SEP .. "flushes"

-- A histogram bucket's name: its index from 0, as the daemon numbers its
-- buckets (the same bounds; the last is +Inf).
local LE = {}
for i = 1, #store_mod.BOUNDS + 1 do LE[i] = tostring(i - 1) end
local LE_INDEX = {}
for i, l in ipairs(LE) do LE_INDEX[l] = i end

-- A route's tallies as the schema names them, and back.
local ROUTE_FIELD = { sampled = "sampled", compared = "compared",
                      diverged = "diverged", status = "part.status",
                      headers = "part.headers", body = "part.body",
                      -- The daemon's body kinds by number (json,
                      -- bytes, digest, protobuf).
                      body_json = "kind.0", body_bytes = "kind.1",
                      body_digest = "kind.2", body_protobuf = "kind.3" }
local ROUTE_WHAT = {}
for what, field in pairs(ROUTE_FIELD) do ROUTE_WHAT[field] = what end

-- The labelled families and their schema names.
local FAMILY_FIELD = { ce = "cerr", sk = "skip", se = "script", f = "f",
                       rh = "rule" }
local FIELD_FAMILY = {}
for fam, name in pairs(FAMILY_FIELD) do FIELD_FAMILY[name] = fam end

local TOTALS = { "requests", "sampled", "compared", "diverged",
                 "primary_errors" }

-- What a snapshot of the shared dict says, as schema fields: integer
-- counts, float sums, and signature counts.
local function fields_of(snap)
  local counts, floats = {}, {}
  local t = snap.totals
  for _, name in ipairs(TOTALS) do
    counts["t" .. US .. name] = t[name] or 0
  end
  for fam, name in pairs(FAMILY_FIELD) do
    for label, n in pairs(snap.families[fam] or {}) do
      counts[name .. US .. label] = n
    end
  end
  for route, r in pairs(snap.routes) do
    for what, n in pairs(r) do
      local field = ROUTE_FIELD[what]
      if field then counts["r" .. US .. route .. US .. field] = n end
    end
  end
  for side, h in pairs(snap.hist) do
    for i, n in ipairs(h.buckets) do
      counts["h" .. US .. side .. US .. LE[i]] = n
    end
    counts["h" .. US .. side .. US .. "count"] = h.n
    floats["h" .. US .. side .. US .. "sum"] = h.sum
  end
  return counts, floats, snap.families.sg or {}
end
M.fields_of = fields_of

-- --- signatures ----------------------------------------------------------

-- The daemon's signature (src/telemetry/signatures.c): XXH3-64 of the
-- route, the parts and the folded fields (sorted, each once, at most 32),
-- one a line, as 16 hex digits. libxxhash is libshadow's own dependency.
local xxh
local function hasher()
  if xxh == nil then
    pcall(ffi.cdef, "uint64_t XXH3_64bits(const void *, size_t);")
    local ok, lib = pcall(ffi.load, "libxxhash.so.0")
    if not ok then ok, lib = pcall(ffi.load, "xxhash") end
    xxh = ok and lib or false
  end
  return xxh
end

local FIELDS_MAX = 32

local function fold(f)
  if sub(f, 1, 5) ~= "body:" then return f end
  return (gsub(f, "/%d+%f[%z/]", "/*"))
end

-- The signature of a divergence: route, parts (the diff's bits) and its
-- fields as the diff names them, and the text it is the hash of (sent as
-- the signature's key, from which any instance renders the group). nil
-- when libxxhash cannot be loaded.
function M.signature(route, parts, fields)
  local lib = hasher()
  if not lib then return nil end
  local seen, list = {}, {}
  for i = 1, #fields do
    local f = fold(fields[i])
    if not seen[f] then
      seen[f] = true
      list[#list + 1] = f
    end
  end
  sort(list)
  local lines = { route or "", tostring(parts) }
  for i = 1, min(#list, FIELDS_MAX) do lines[#lines + 1] = list[i] end
  if #list > FIELDS_MAX then
    lines[#lines + 1] = "+" .. (#list - FIELDS_MAX) .. " more"
  end
  local text = concat(lines, "\n")
  return bit.tohex(lib.XXH3_64bits(text, #text), 16), text
end

-- The signature of a divergence from the diff's own list of fields (each
-- NUL-terminated, as one string), remembered per worker: the same fault
-- seen again costs a table lookup, not a fold, a sort and a hash.
local CACHE_MAX = 1024

function M.signature_of(gw, route, parts, raw)
  local cache = gw.sig_cache
  if cache == nil or gw.sig_cached >= CACHE_MAX then
    cache = {}
    gw.sig_cache, gw.sig_cached = cache, 0
  end
  local k = route .. "\0" .. parts .. "\0" .. raw
  local e = cache[k]
  if e then return e end
  local fields, at = {}, 1
  while at <= #raw do
    local z = find(raw, "\0", at, true) or (#raw + 1)
    fields[#fields + 1] = sub(raw, at, z - 1)
    at = z + 1
  end
  local sig, text = M.signature(route, parts, fields)
  if not sig then return nil end
  -- With its shared-dict keys made once.
  e = { sig = sig, text = text, count = "sg" .. SEP .. sig,
        last = "sgl" .. SEP .. sig }
  cache[k] = e
  gw.sig_cached = gw.sig_cached + 1
  return e
end

-- Counts one divergence under its signature (e from signature_of) in the
-- shared dict: the count (a capped family, like the daemon's 1000
-- signatures), when it was first seen and its key text (both once), and
-- the ring id of its newest record (the exemplar sent with the next
-- flush, if the ring still holds it): two shared-dict operations for a
-- signature seen before. When it was last seen is the time of the first
-- flush that finds its count grown (so within flush_ms).
function M.note(store, e, id, now_ms)
  local dict = store.dict
  if not dict:incr(e.count, 1) then
    local sig = e.sig
    store:add("sg", sig)
    dict:add("sgk" .. SEP .. sig, e.text)
    dict:add("sgf" .. SEP .. sig, now_ms)
    dict:set("sgt" .. SEP .. sig, now_ms)
  end
  dict:set(e.last, id)
end

-- When a signature was last seen (ms) and its newest record's ring id.
local function last_of(dict, sig)
  return dict:get("sgt" .. SEP .. sig), dict:get("sgl" .. SEP .. sig)
end

-- --- the flush -----------------------------------------------------------

local function key(st, epoch, what)
  if epoch == nil then return st.base .. ":" .. what end
  return st.base .. ":" .. epoch .. ":" .. what
end

local function num(v)
  -- HINCRBYFLOAT wants a plain decimal: no "inf", no exponent issues.
  return format("%.17g", v)
end

local function failed(gw, why, detail)
  local dict, st = gw.conf.dict, gw.conf.store
  gw.store:add("sx", why or "unknown")
  local fails = dict:incr(FAILS, 1, 0)
  local wait = min(st.flush_ms * 2 ^ min(fails - 1, 16),
                   st.flush_ms > 2000 and st.flush_ms or 2000)
  dict:set(NEXT, ngx.now() * 1000 + wait)
  dict:set(STATE, "down")
  dict:set(LAST_ERR, (why or "unknown") .. (detail and (": "
    .. tostring(detail)) or ""))
  return nil, why
end

-- The instance's id: store.instance, else this host and nginx's master
-- pid (the same across a reload, another for another nginx).
function M.instance_id(st)
  if st.instance then return st.instance end
  local f = io.open("/proc/sys/kernel/hostname", "r")
  local host = f and f:read("*l") or "localhost"
  if f then f:close() end
  local ok, pid = pcall(function() return ngx.worker.pid() end)
  return host .. ":" .. (ok and pid or 0)
end

-- One flush, by the worker holding the lock.
function M.flush(gw)
  local conf, store = gw.conf, gw.store
  local st, dict = conf.store, conf.dict
  local client = gw.redis_client
  if not client then
    client = redis.new(st)
    gw.redis_client = client
  end
  local snap = store:snapshot()
  local counts, floats, sigs = fields_of(snap)
  local base = cjson.decode(dict:get(BASE) or "null")
  if type(base) ~= "table" then base = { counts = {}, floats = {},
                                         sigs = {}, sent_id = 0 } end
  -- The epoch, and the number of this node's last flush Redis applied:
  -- a flush whose EXEC was sent but not answered (the connection cut, or
  -- Redis stopping right after it) may have been applied or not, and
  -- this says which, so nothing is counted twice or lost.
  local Q = key(st, nil, "seq")
  local first, why, detail = client:pipeline({
    { "GET", key(st, nil, "epoch") }, { "HGET", Q, gw.instance } })
  if not first then return failed(gw, why, detail) end
  for i = 1, 2 do
    if redis.is_err(first[i]) then
      return failed(gw, "reply", first[i].err)
    end
  end
  local epoch = first[1]
  local p = base.pending
  if p then
    if tonumber(first[2]) == p.seq then
      base.counts, base.floats, base.sigs, base.sent_id =
        p.counts, p.floats, p.sigs, p.sent_id
    end
    base.pending = nil
  end
  -- No epoch key until the first reset: nothing to keep alive then (and
  -- a key named in a transaction while its slot migrates must exist).
  local keys = { nil, nil, nil, nil, nil, Q }
  if epoch ~= nil then keys[7] = key(st, nil, "epoch") end
  epoch = tonumber(epoch) or 0
  local last_id = dict:get("ring" .. SEP .. "id") or 0
  if base.epoch ~= nil and base.epoch ~= epoch then
    -- The fleet was reset: what was counted until now belongs to the old
    -- window. Only what comes after it is sent.
    base = { epoch = epoch, counts = counts, floats = floats, sigs = sigs,
             sent_id = last_id }
    dict:safe_set(BASE, cjson.encode(base))
  end
  base.epoch = epoch
  local C, F = key(st, epoch, "counts"), key(st, epoch, "float")
  local S, L = key(st, epoch, "sig"), key(st, epoch, "log")
  local I = key(st, nil, "instances")
  local cmds = { { "MULTI" } }
  local bc, bf, bs = base.counts or {}, base.floats or {}, base.sigs or {}
  for field, n in pairs(counts) do
    local d = n - (bc[field] or 0)
    if d ~= 0 then cmds[#cmds + 1] = { "HINCRBY", C, field, d } end
  end
  for field, v in pairs(floats) do
    local d = v - (bf[field] or 0)
    if d ~= 0 then cmds[#cmds + 1] = { "HINCRBYFLOAT", F, field, num(d) } end
  end
  local now = ngx.now() * 1000
  for sig, n in pairs(sigs) do
    local d = n - (bs[sig] or 0)
    if d > 0 and sig ~= "other" then
      -- Seen since the last flush: now is when, to within flush_ms.
      if bs[sig] then dict:set("sgt" .. SEP .. sig, now) end
      cmds[#cmds + 1] = { "HINCRBY", S, sig .. US .. "count", d }
      local first = dict:get("sgf" .. SEP .. sig)
      local last, ex_id = last_of(dict, sig)
      if first then
        cmds[#cmds + 1] = { "HSETNX", S, sig .. US .. "first",
                            format("%d", first) }
      end
      if last then
        cmds[#cmds + 1] = { "HSET", S, sig .. US .. "last",
                            format("%d", last) }
      end
      local text = dict:get("sgk" .. SEP .. sig)
      if text then
        cmds[#cmds + 1] = { "HSET", S, sig .. US .. "key", text }
      end
      local ex = store:record(ex_id)
      if ex then cmds[#cmds + 1] = { "HSET", S, sig .. US .. "ex", ex } end
    end
  end
  -- The records not sent yet, oldest first; those the ring overwrote
  -- before now are lost, and counted.
  local cap = conf.capacity
  local from = (base.sent_id or 0) + 1
  local dropped = 0
  if last_id - from + 1 > cap then
    dropped = last_id - cap - from + 1
    from = last_id - cap + 1
  end
  local id_s = gw.instance
  -- XADD L MAXLEN ~ cap * d <record> i <instance> r <route>, encoded here:
  -- what every record's command shares, once.
  local bulk = redis.bulk
  local xadd = "*12\r\n" .. bulk("XADD") .. bulk(L) .. bulk("MAXLEN")
    .. bulk("~") .. bulk(tostring(cap)) .. bulk("*") .. bulk("d")
  local tail_i = bulk("i") .. bulk(id_s) .. bulk("r")
  for id = from, last_id do
    local rec, route = store:record(id)
    if rec then
      cmds[#cmds + 1] = xadd .. "$" .. #rec .. "\r\n" .. rec .. "\r\n"
        .. tail_i .. "$" .. #route .. "\r\n" .. route .. "\r\n"
    else
      dropped = dropped + 1
    end
  end
  cmds[#cmds + 1] = { "HSET", I, id_s, format('{"last_ms":%d,'
    .. '"kind":"gateway"}', now) }
  local ttl = st.ttl_s * 1000
  local seq = dict:incr("st" .. SEP .. "seq", 1, 0)
  cmds[#cmds + 1] = { "HSET", Q, id_s, seq }
  keys[1], keys[2], keys[3], keys[4], keys[5] = C, F, S, L, I
  for i = 1, #keys do
    cmds[#cmds + 1] = { "PEXPIRE", keys[i], ttl }
  end
  cmds[#cmds + 1] = { "EXEC" }
  -- What this flush sends, kept until its outcome is known.
  base.pending = { seq = seq, counts = counts, floats = floats, sigs = sigs,
                   sent_id = last_id }
  if not dict:safe_set(BASE, cjson.encode(base)) then
    dict:set(BASE, cjson.encode(base))
    store:add("sx", "memory")
  end
  base.pending = nil
  local replies
  replies, why, detail = client:pipeline(cmds)
  if not replies then return failed(gw, why, detail) end
  local exec = replies[#cmds]
  if exec == nil or redis.is_err(exec) or type(exec) ~= "table" then
    return failed(gw, "reply", exec and exec.err or "transaction aborted")
  end
  base.counts, base.floats, base.sigs, base.sent_id =
    counts, floats, sigs, last_id
  -- Redis has these counts now: were they not marked as sent, the next
  -- flush would add them again. A dict too full for the mark makes room
  -- (nginx evicts its least recently used items, ring records first in
  -- practice), and says so.
  local text = cjson.encode(base)
  if not dict:safe_set(BASE, text) then
    dict:set(BASE, text)
    store:add("sx", "memory")
  end
  if dropped > 0 then store:incr("store_dropped", dropped) end
  dict:set(STATE, "connected")
  dict:incr(FLUSHES, 1, 0)
  dict:set(EPOCH, epoch)
  dict:set(LAST_OK, now)
  dict:set(FAILS, 0)
  dict:delete(NEXT)
  return true
end

-- The timer's callback: one worker per period (TICK, taken for a little
-- less than the period) and never two at once (BUSY, held for the flush).
-- A worker exiting (reload, stop) does not flush: on a reload the counts
-- stay in the shared dict for the new workers; on a stop, what was
-- counted since the last flush (at most flush_ms of it) is not sent.
local function tick(premature, gw)
  if premature then return end
  local st, dict = gw.conf.store, gw.conf.dict
  local period = st.flush_ms / 1000
  if not dict:add(TICK, true, period * 0.9) then return end
  local next_try = dict:get(NEXT)
  if next_try and ngx.now() * 1000 < next_try then return end
  local hold = (st.connect_timeout + st.timeout * 3) / 1000 + 1
  if not dict:add(BUSY, true, hold) then return end
  local ok, err = pcall(M.flush, gw)
  dict:delete(BUSY)
  if not ok then
    gw.store:add("sx", "internal")
    ngx.log(ngx.ERR, "shadow.gateway: store flush failed: ", tostring(err))
  end
end

-- Starts this worker's flush timer (once per worker).
function M.start(gw)
  gw.fleet_pending = false
  local st = gw.conf.store
  local ok, err = ngx.timer.every(st.flush_ms / 1000, tick, gw)
  if not ok then
    gw.fleet_pending = err ~= "process exiting"
    ngx.log(ngx.WARN, "shadow.gateway: no store flush timer: ", err)
  end
end

-- --- reading the fleet back ----------------------------------------------

-- A client for the admin handler: its own, with a short timeout, so a slow
-- Redis makes /stats fall back to local quickly.
local function admin_client(gw)
  local c = gw.redis_admin
  if not c then
    local st = gw.conf.store
    local cfg = {}
    for k, v in pairs(st) do cfg[k] = v end
    cfg.timeout = min(st.timeout, 500)
    cfg.connect_timeout = min(st.connect_timeout, 500)
    c = redis.new(cfg)
    gw.redis_admin = c
  end
  return c
end

-- Splits a schema field into its parts.
local function split(field)
  local out, at = {}, 1
  while true do
    local s = find(field, US, at, true)
    if not s then
      out[#out + 1] = sub(field, at)
      return out
    end
    out[#out + 1] = sub(field, at, s - 1)
    at = s + 1
  end
end

local function hash_of(list)
  local t = {}
  if type(list) ~= "table" then return t end
  for i = 1, #list - 1, 2 do t[list[i]] = list[i + 1] end
  return t
end

-- The fleet's counts as a snapshot in store:snapshot()'s shape, from the
-- counts and float hashes.
function M.snapshot_of(counts, floats)
  local nb = #store_mod.BOUNDS + 1
  local snap = { totals = {}, families = { ce = {}, sk = {}, se = {}, f = {},
                                            rh = {}, sx = {} },
                 routes = {}, hist = {} }
  for _, side in ipairs({ "primary", "candidate" }) do
    local b = {}
    for i = 1, nb do b[i] = 0 end
    snap.hist[side] = { buckets = b, n = 0, sum = 0 }
  end
  for field, v in pairs(counts) do
    local n = tonumber(v) or 0
    local p = split(field)
    local kind = p[1]
    if kind == "t" and #p == 2 then
      snap.totals[p[2]] = n
    elseif kind == "r" and #p == 3 then
      local what = ROUTE_WHAT[p[3]]
      if what then
        local r = snap.routes[p[2]]
        if not r then
          r = {}
          snap.routes[p[2]] = r
        end
        r[what] = n
      end
    elseif kind == "h" and #p == 3 and snap.hist[p[2]] then
      local h = snap.hist[p[2]]
      local i = LE_INDEX[p[3]]
      if i then h.buckets[i] = n end
    elseif FIELD_FAMILY[kind] and #p == 2 then
      snap.families[FIELD_FAMILY[kind]][p[2]] = n
    end
  end
  for side, h in pairs(snap.hist) do
    -- The daemon sends no +Inf bucket: past the largest bound is what
    -- the count has beyond the buckets.
    local total = 0
    for i = 1, nb - 1 do total = total + h.buckets[i] end
    local count = tonumber(counts["h" .. US .. side .. US .. "count"])
    if count and count - total > h.buckets[nb] then
      h.buckets[nb] = count - total
    end
    h.n = total + h.buckets[nb]
    h.sum = tonumber(floats["h" .. US .. side .. US .. "sum"]) or 0
  end
  return snap
end

-- The instances that reported in the last minute, by kind.
local function instances(list, now_ms)
  local n, kinds = 0, {}
  for _, v in pairs(hash_of(list)) do
    -- Read by its two fields rather than as a whole document, so an entry
    -- that is cut short still counts.
    local last = tonumber(match(v, '"last_ms":%s*([%d.]+)'))
    if last and last >= now_ms - 60000 then
      n = n + 1
      local kind = match(v, '"kind":%s*"([^"]*)"') or "unknown"
      kinds[kind] = (kinds[kind] or 0) + 1
    end
  end
  return n, kinds
end

-- The fleet's view for /stats and /metrics: snapshot, store info; or nil,
-- reason.
function M.read(gw)
  local st = gw.conf.store
  local c = admin_client(gw)
  local epoch, why, detail = c:call("GET", key(st, nil, "epoch"))
  if why then return nil, why, detail end
  epoch = tonumber(epoch) or 0
  local replies
  replies, why, detail = c:pipeline({
    { "HGETALL", key(st, epoch, "counts") },
    { "HGETALL", key(st, epoch, "float") },
    { "HGETALL", key(st, nil, "instances") },
  })
  if not replies then return nil, why, detail end
  for i = 1, 3 do
    if redis.is_err(replies[i]) then return nil, "reply", replies[i].err end
  end
  local snap = M.snapshot_of(hash_of(replies[1]), hash_of(replies[2]))
  local n, kinds = instances(replies[3], ngx.now() * 1000)
  return snap, { epoch = epoch, instances = n, kinds = kinds }
end

-- The fleet's newest divergence records (of route when given), newest
-- first, as JSON texts, and how many the stream holds (that match).
function M.divergences(gw, limit, route)
  local st = gw.conf.store
  local c = admin_client(gw)
  local epoch, why, detail = c:call("GET", key(st, nil, "epoch"))
  if why then return nil, why, detail end
  epoch = tonumber(epoch) or 0
  local count = route and gw.conf.capacity or limit
  local replies
  replies, why, detail = c:pipeline({
    { "XREVRANGE", key(st, epoch, "log"), "+", "-", "COUNT",
      count > 0 and count or 1 },
    { "XLEN", key(st, epoch, "log") },
  })
  if not replies then return nil, why, detail end
  if redis.is_err(replies[1]) then return nil, "reply", replies[1].err end
  local out, total = {}, 0
  for _, entry in ipairs(type(replies[1]) == "table" and replies[1] or {}) do
    local fields = hash_of(entry[2])
    local d = fields.d
    if d then
      local keep = true
      if route then
        local doc = cjson.decode(d)
        keep = type(doc) == "table" and doc.route == route
      end
      if keep then
        total = total + 1
        if #out < limit then out[#out + 1] = d end
      end
    end
  end
  if not route then total = tonumber(replies[2]) or total end
  return out, total
end

local function iso(ms)
  ms = tonumber(ms)
  if not ms then return cjson.null end
  local s = floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", ms - s * 1000)
end

local function split_lines(text)
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- Groups as /divergences?group=signature lists them, from a table sig ->
-- { count, first, last, key, ex }, most recently seen first.
function M.groups(table_, limit, route)
  local list = {}
  for sig, g in pairs(table_) do
    -- The key: the route, the parts' bits, then the fields, a line each.
    local lines = split_lines(g.key or "")
    local r = lines[1]
    local bits = tonumber(lines[2]) or 0
    if (route == nil or r == route) and g.key then
      local parts, fields = {}, {}
      for i, p in ipairs({ "status", "headers", "body" }) do
        if floor(bits / 2 ^ (i - 1)) % 2 == 1 then parts[#parts + 1] = p end
      end
      for i = 3, #lines do fields[#fields + 1] = lines[i] end
      list[#list + 1] = { sig = sig, route = r, parts = parts,
                          fields = fields,
                          count = tonumber(g.count) or 0,
                          first = tonumber(g.first), last = tonumber(g.last),
                          ex = g.ex }
    end
  end
  sort(list, function(a, b)
    if (a.last or 0) ~= (b.last or 0) then
      return (a.last or 0) > (b.last or 0)
    end
    return a.sig < b.sig
  end)
  local out = {}
  for i = 1, min(#list, limit) do
    local g = list[i]
    local fields = {}
    for k, f in ipairs(g.fields) do fields[k] = cjson.encode(f) end
    out[i] = format('{"signature":%s,"route":%s,"parts":%s,"fields":[%s],'
      .. '"count":%d,"first_seen":%s,"last_seen":%s,"exemplar":%s}',
      cjson.encode(g.sig), cjson.encode(g.route or cjson.null),
      #g.parts > 0 and ('["' .. concat(g.parts, '","') .. '"]') or "[]",
      concat(fields, ","), g.count, cjson.encode(iso(g.first)),
      cjson.encode(iso(g.last)), g.ex or "null")
  end
  return '{"divergences":[' .. concat(out, ",") .. format('],"total":%d}',
                                                           #list)
end

-- The fleet's signature groups.
function M.fleet_groups(gw, limit, route)
  local st = gw.conf.store
  local c = admin_client(gw)
  local epoch, why, detail = c:call("GET", key(st, nil, "epoch"))
  if why then return nil, why, detail end
  local h
  h, why, detail = c:call("HGETALL", key(st, tonumber(epoch) or 0, "sig"))
  if why then return nil, why, detail end
  local t = {}
  for field, v in pairs(hash_of(h)) do
    local p = split(field)
    if #p == 2 then
      local g = t[p[1]]
      if not g then
        g = {}
        t[p[1]] = g
      end
      g[p[2]] = v
    end
  end
  return M.groups(t, limit, route)
end

-- This node's own signature groups, from the shared dict.
function M.local_groups(gw, limit, route)
  local store, dict = gw.store, gw.conf.dict
  local t = {}
  for sig, n in pairs(store:snapshot().families.sg or {}) do
    if sig ~= "other" then
      local last, ex_id = last_of(dict, sig)
      t[sig] = { count = n, first = dict:get("sgf" .. SEP .. sig),
                 key = dict:get("sgk" .. SEP .. sig), last = last,
                 ex = store:record(ex_id) }
    end
  end
  return M.groups(t, limit, route)
end

-- The flush's state for /stats, in the daemon's names where it has them:
-- { url (without its password), state (connecting, connected, down),
-- instance, flushes, last_flush_ms, last_error, flush_ms, ... }.
function M.state(gw)
  local dict, st = gw.conf.dict, gw.conf.store
  return {
    url = (gsub(st.url, "^(rediss?://[^:@/]*):[^@/]*@", "%1@")),
    state = dict:get(STATE) or "connecting",
    flushes = dict:get(FLUSHES) or 0,
    last_flush_ms = dict:get(LAST_OK) or cjson.null,
    last_error = dict:get(LAST_ERR) or cjson.null,
    flush_ms = st.flush_ms,
    -- The fleet's window this node last sent to.
    flushed_epoch = dict:get(EPOCH) or cjson.null,
    instance = gw.instance,
  }
end

-- Sets off the reset of the fleet's window: a new epoch.
function M.reset(gw)
  local c = admin_client(gw)
  return c:call("INCR", key(gw.conf.store, nil, "epoch"))
end

return M
