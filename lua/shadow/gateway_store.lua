-- The gateway's counters, latency histograms and divergence ring in one
-- lua_shared_dict, so every nginx worker adds to the same numbers and
-- /_shadow/* shows all of them at once. Everything survives a reload
-- (nginx keeps a shared zone whose name and size did not change).
--
-- Keys: "c:<name>" totals; "<family>\1<label>" counted families (bounded,
-- like the daemon's: past the cap new labels count under "other");
-- "r\1<route>\1<what>" per-route tallies; "h\1<side>\1<i>" histogram
-- buckets with "..\1n" and "..\1sum"; "ring\1id" the last record id and
-- "ring\1<slot>" the records, each "<id> <#route> <route><json>".
local find, ipairs, pairs, setmetatable, sort, sub, tonumber =
  string.find, ipairs, pairs, setmetatable, table.sort, string.sub, tonumber

local Store = {}
Store.__index = Store

local M = {}

-- The daemon's bucket bounds (src/telemetry/stats.c), in seconds.
M.BOUNDS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
             0.5, 1, 2.5, 5, 10 }

-- Label caps per family, as the daemon's shadow_stats_new sets them.
local CAPS = { ce = 32, sk = 32, se = 32, f = 1000, route = 500 }

local SEP = "\1"

function M.new(dict, capacity)
  return setmetatable({ dict = dict, capacity = capacity }, Store)
end

function Store:incr(name, n)
  self.dict:incr("c:" .. name, n or 1, 0)
end

function Store:get(name)
  return self.dict:get("c:" .. name) or 0
end

-- The key of label in family, "other" once the family holds its cap.
local function label_key(self, family, label)
  local key = family .. SEP .. label
  if self.dict:get(key) ~= nil then return key end
  local n = self.dict:incr("n" .. SEP .. family, 1, 0)
  if n and n > CAPS[family] then
    self.dict:incr("n" .. SEP .. family, -1, 0)
    return family .. SEP .. "other"
  end
  return key
end

-- Adds n to a labelled counter: "ce" candidate errors by reason, "sk"
-- skipped by reason, "se" script errors by hook, "f" differing fields.
function Store:add(family, label, n)
  self.dict:incr(label_key(self, family, label), n or 1, 0)
end

-- Adds to one of a route's tallies: sampled, compared, diverged, status,
-- headers, body.
function Store:route_add(route, what)
  local key = "r" .. SEP .. route .. SEP .. what
  local n = self.dict:incr(key, 1)
  if n then return end
  -- First tally of this route: is there room for one more?
  local seen = self.dict:get("rn" .. SEP .. route)
  if not seen then
    local count = self.dict:incr("n" .. SEP .. "route", 1, 0)
    if count and count > CAPS.route then
      self.dict:incr("n" .. SEP .. "route", -1, 0)
      route = "other"
    end
    self.dict:set("rn" .. SEP .. route, true)
    key = "r" .. SEP .. route .. SEP .. what
  end
  self.dict:incr(key, 1, 0)
end

function Store:observe(side, seconds)
  local dict = self.dict
  local prefix = "h" .. SEP .. side .. SEP
  local bounds = M.BOUNDS
  for i = 1, #bounds do
    if seconds <= bounds[i] then
      dict:incr(prefix .. i, 1, 0)
      break
    end
  end
  dict:incr(prefix .. "n", 1, 0)
  dict:incr(prefix .. "sum", seconds, 0)
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

-- Everything counted, as plain tables: { totals = {...}, families =
-- { ce = {label = n}, ... }, routes = { route = { sampled =, ... } },
-- hist = { primary = { buckets, n, sum }, candidate = ... } }.
function Store:snapshot()
  local dict = self.dict
  local snap = {
    totals = {},
    families = { ce = {}, sk = {}, se = {}, f = {} },
    routes = {},
    hist = {},
  }
  for _, side in ipairs({ "primary", "candidate" }) do
    local prefix = "h" .. SEP .. side .. SEP
    local b = {}
    for i = 1, #M.BOUNDS do b[i] = dict:get(prefix .. i) or 0 end
    snap.hist[side] = { buckets = b, n = dict:get(prefix .. "n") or 0,
                        sum = dict:get(prefix .. "sum") or 0 }
  end
  -- get_keys locks the zone while it walks it: only the admin calls this.
  for _, key in ipairs(dict:get_keys(0)) do
    local a = find(key, SEP, 1, true)
    if sub(key, 1, 2) == "c:" then
      snap.totals[sub(key, 3)] = dict:get(key)
    elseif a then
      local family = sub(key, 1, a - 1)
      local fam = snap.families[family]
      if fam then
        fam[sub(key, a + 1)] = dict:get(key)
      elseif family == "r" then
        local b = find(key, SEP, a + 1, true)
        if b then
          local route, what = sub(key, a + 1, b - 1), sub(key, b + 1)
          local r = snap.routes[route]
          if not r then
            r = {}
            snap.routes[route] = r
          end
          r[what] = dict:get(key)
        end
      end
    end
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

return M
