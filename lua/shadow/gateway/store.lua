-- The gateway's counters, latency histograms and divergence ring in one
-- lua_shared_dict, so every nginx worker adds to the same numbers and
-- /_shadow/* shows all of them at once. Everything survives a reload
-- (nginx keeps a shared zone whose name and size did not change).
--
-- Keys: "c:<name>" totals; "<family>\1<label>" counted families (bounded,
-- like the daemon's: past the cap new labels count under "other");
-- "r\1<route>\1<what>" per-route tallies (sampled, compared and diverged
-- totals are their sums); "h\1<side>\1<i>" histogram buckets with
-- "..\1sum"; "ring\1id" the last record id and "ring\1<slot>" the
-- records, each "<id> <#route> <route><json>". Each is kept in as few
-- shared-memory operations per request as the numbers allow.
local find, ipairs, pairs, setmetatable, sort, sub, tonumber =
  string.find, ipairs, pairs, setmetatable, table.sort, string.sub, tonumber

local Store = {}
Store.__index = Store

local M = {}

-- The daemon's bucket bounds (src/telemetry/stats.c), in seconds.
M.BOUNDS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
             0.5, 1, 2.5, 5, 10 }

-- Label caps per family, as the daemon's shadow_stats_new sets them.
-- "sx" counts the fleet store's errors by reason, "sg" divergences by
-- signature (the daemon keeps 1000 signatures).
local CAPS = { ce = 32, sk = 32, se = 32, f = 1000, rh = 512, route = 500,
               sx = 32, sg = 1000 }

local SEP = "\1"

function M.new(dict, capacity)
  local hist_keys = {}
  for _, side in ipairs({ "primary", "candidate" }) do
    local keys = { sum = "h" .. SEP .. side .. SEP .. "sum" }
    for i = 1, #M.BOUNDS + 1 do keys[i] = "h" .. SEP .. side .. SEP .. i end
    hist_keys[side] = keys
  end
  return setmetatable({ dict = dict, capacity = capacity, route_cache = {},
                        cached = 0, hist_keys = hist_keys }, Store)
end

-- The key of every request's count, made once: counting a request is one
-- shared-dict operation and nothing else.
local REQUESTS = "c:requests"

function Store:count_request()
  self.dict:incr(REQUESTS, 1, 0)
end

function Store:incr(name, n)
  self.dict:incr("c:" .. name, n or 1, 0)
end

function Store:get(name)
  return self.dict:get("c:" .. name) or 0
end

-- Adds n to a labelled counter: "ce" candidate errors by reason, "sk"
-- skipped by reason, "se" script errors by hook, "f" differing fields,
-- "rh" diff rule hits by rule.
-- A label already counted costs one operation; a new one is checked
-- against its family's cap ("other" once the family is full).
function Store:add(family, label, n)
  local dict = self.dict
  local key = family .. SEP .. label
  if dict:incr(key, n or 1) then return end
  local count = dict:incr("n" .. SEP .. family, 1, 0)
  if count and count > CAPS[family] then
    dict:incr("n" .. SEP .. family, -1, 0)
    key = family .. SEP .. "other"
  end
  dict:incr(key, n or 1, 0)
end

-- The keys of a route's tallies, made once per route and worker (routes
-- are a bounded set, and so is this cache).
local WHATS = { "sampled", "compared", "diverged", "status", "headers",
                "body", "body_json", "body_bytes", "body_digest",
                "body_protobuf" }
local ROUTE_CACHE_MAX = 1000

local function route_keys(self, route)
  local cache = self.route_cache
  local keys = cache[route]
  if keys then return keys end
  local dict = self.dict
  local name = route
  if not dict:get("rn" .. SEP .. route) then
    -- A new route: is there room for one more?
    local count = dict:incr("n" .. SEP .. "route", 1, 0)
    if count and count > CAPS.route then
      dict:incr("n" .. SEP .. "route", -1, 0)
      name = "other"
    end
    dict:set("rn" .. SEP .. name, true)
  end
  keys = {}
  for i = 1, #WHATS do
    keys[WHATS[i]] = "r" .. SEP .. name .. SEP .. WHATS[i]
  end
  if self.cached >= ROUTE_CACHE_MAX then
    cache = {}
    self.route_cache, self.cached = cache, 0
  end
  cache[route] = keys
  self.cached = self.cached + 1
  return keys
end

-- Adds to one of a route's tallies: sampled, compared, diverged, status,
-- headers, body.
function Store:route_add(route, what)
  self.dict:incr(route_keys(self, route)[what], 1, 0)
end

-- One latency observation: its bucket (the last one past the largest
-- bound) and the sum; the count is the buckets' total.
function Store:observe(side, seconds)
  local dict = self.dict
  local bounds = M.BOUNDS
  local n = #bounds
  local i = n + 1
  for b = 1, n do
    if seconds <= bounds[b] then
      i = b
      break
    end
  end
  local keys = self.hist_keys[side]
  dict:incr(keys[i], 1, 0)
  dict:incr(keys.sum, seconds, 0)
end

-- The next record id, shared by all workers.
function Store:next_id()
  return self.dict:incr("ring" .. SEP .. "id", 1, 0)
end

-- Keeps the record under its id's slot; the oldest is overwritten. A dict
-- too small for the record does not push counters out (safe_set): the
-- record is dropped and false returned.
function Store:push(id, route, json)
  route = route or ""
  local slot = "ring" .. SEP .. (id % self.capacity)
  local ok = self.dict:safe_set(slot, id .. " " .. #route .. " " .. route
    .. json)
  return ok and true or false
end

-- The record with this id and its route, if the ring still holds it (a
-- newer one may have taken its slot).
function Store:record(id)
  id = tonumber(id)
  if not id or id < 1 then return nil end
  local v = self.dict:get("ring" .. SEP .. (id % self.capacity))
  if not v then return nil end
  local s, e, vid, rlen = find(v, "^(%d+) (%d+) ")
  if not s or tonumber(vid) ~= id then return nil end
  rlen = tonumber(rlen)
  return sub(v, e + rlen + 1), sub(v, e + 1, e + rlen)
end

-- The newest records (limit of them, matching route when given), newest
-- first, as JSON texts; and how many held records match.
function Store:latest(limit, route)
  local dict, cap = self.dict, self.capacity
  local last = dict:get("ring" .. SEP .. "id") or 0
  local out, total = {}, 0
  for id = last, last - cap + 1, -1 do
    if id < 1 then break end
    local v = dict:get("ring" .. SEP .. (id % cap))
    if v then
      local s, e, vid, rlen = find(v, "^(%d+) (%d+) ")
      if s and tonumber(vid) == id then
        rlen = tonumber(rlen)
        local r = sub(v, e + 1, e + rlen)
        if route == nil or r == route then
          total = total + 1
          if #out < limit then out[#out + 1] = sub(v, e + rlen + 1) end
        end
      end
    end
  end
  return out, total
end

-- The route and the tally a "r\1<route>\1<what>" key names, else nil.
local function route_tally(key)
  if sub(key, 1, 2) ~= "r" .. SEP then return nil end
  local b = find(key, SEP, 3, true)
  if not b then return nil end
  return sub(key, 3, b - 1), sub(key, b + 1)
end

local function route_of(snap, route)
  local r = snap.routes[route]
  if not r then
    r = {}
    snap.routes[route] = r
  end
  return r
end

-- Everything counted, as plain tables: { totals = {...}, families =
-- { ce = {label = n}, ... }, routes = { route = { sampled =, ... } },
-- hist = { primary = { buckets, n, sum }, candidate = ... } }.
function Store:snapshot()
  local dict = self.dict
  local snap = {
    totals = {},
    families = { ce = {}, sk = {}, se = {}, f = {}, rh = {}, sx = {},
                 sg = {} },
    routes = {},
    hist = {},
  }
  for _, side in ipairs({ "primary", "candidate" }) do
    local keys = self.hist_keys[side]
    local b, n = {}, 0
    for i = 1, #M.BOUNDS + 1 do
      b[i] = dict:get(keys[i]) or 0
      n = n + b[i]
    end
    snap.hist[side] = { buckets = b, n = n, sum = dict:get(keys.sum) or 0 }
  end
  -- get_keys locks the zone while it walks it: only the admin calls this.
  -- The routes' compared counts are read first. A worker counts a pair
  -- compared after everything else it counts and keeps for that pair
  -- (init.lua), so whatever a reading counts as compared is already in
  -- the tallies read after it, and in the ring.
  local keys = dict:get_keys(0)
  local later = {}
  for _, key in ipairs(keys) do
    local route, what = route_tally(key)
    if what == "compared" then
      route_of(snap, route).compared = dict:get(key)
    else
      later[#later + 1] = key
    end
  end
  for _, key in ipairs(later) do
    local a = find(key, SEP, 1, true)
    if sub(key, 1, 2) == "c:" then
      snap.totals[sub(key, 3)] = dict:get(key)
    elseif a then
      local fam = snap.families[sub(key, 1, a - 1)]
      if fam then
        fam[sub(key, a + 1)] = dict:get(key)
      else
        local route, what = route_tally(key)
        if route then route_of(snap, route)[what] = dict:get(key) end
      end
    end
  end
  -- The totals of what routes count are the sums over the routes (a
  -- route past the cap counts under "other", so nothing is lost).
  local t = snap.totals
  t.sampled, t.compared, t.diverged = 0, 0, 0
  for _, r in pairs(snap.routes) do
    t.sampled = t.sampled + (r.sampled or 0)
    t.compared = t.compared + (r.compared or 0)
    t.diverged = t.diverged + (r.diverged or 0)
  end
  return snap
end

-- Sorted keys of a table, so renderings are stable.
function M.keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  sort(out)
  return out
end

-- A route's tallies by name (the gateway counts each body kind's).
M.WHATS = WHATS

return M
