-- Benchmark, not a test (scripts/bench-diff runs it): the migration pair
-- that bench_diff --docs wrote (DIR/v1.json, DIR/v2.json, 64 KiB each),
-- compared through libshadow's FFI with the C rules (rename, coerce, mask,
-- time), beside the same rules written as a Lua normalize hook: cjson
-- decode, change, encode each body, then the diff without rules. The
-- Lua is a plain loop over the items, the fastest way a hook would
-- write it (shadow.rules' pointer walk would be slower still).
--
-- Usage: luajit bench/rules_normalize.lua DIR [C_RULES_COST_US]
-- (package.path must reach lua/, package.cpath libshadow.so). The second
-- argument, bench_diff's cost of the C rules over the diff without rules,
-- adds the ratio of the Lua hook to that cost.
local cjson = require("cjson").new()
local diff = require "shadow.diff"

local dir, c_cost = arg[1], tonumber(arg[2])
if not dir then
  io.stderr:write("usage: luajit bench/rules_normalize.lua DIR [US]\n")
  os.exit(2)
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local v1, v2 = slurp(dir .. "/v1.json"), slurp(dir .. "/v2.json")
local headers = { ["content-type"] = "application/json" }
local function rec(body)
  return { status = 200, headers = headers, body = body }
end

local rules = {
  rename = { ["/items/*/email"] = "/items/*/email_address" },
  coerce = { ["/items/*/qty"] = "number", ["/items/*/active"] = "boolean" },
  mask = { ["/items/*/id"] = "uuid" },
  time = { ["/items/*/created_at"] = { unit = "instant" } },
}

-- Days from 1970-01-01 to y-m-d (proleptic Gregorian), for RFC 3339.
local function days(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local hex = "%x"
local uuid = "^" .. hex:rep(8) .. "%-" .. hex:rep(4) .. "%-" .. hex:rep(4)
  .. "%-" .. hex:rep(4) .. "%-" .. hex:rep(12) .. "$"

-- The four rules by hand on one decoded body.
local function change(doc, primary)
  for _, it in ipairs(doc.items) do
    if primary and it.email ~= nil and it.email_address == nil then
      it.email_address, it.email = it.email, nil
    end
    if type(it.qty) == "string" then it.qty = tonumber(it.qty) or it.qty end
    if it.active == "true" then
      it.active = true
    elseif it.active == "false" then
      it.active = false
    end
    if type(it.id) == "string" and it.id:find(uuid) then it.id = "uuid" end
    local t = it.created_at
    if type(t) == "string" then
      local y, mo, d, h, mi, s = t:match(
        "^(%d%d%d%d)-(%d%d)-(%d%d)[Tt](%d%d):(%d%d):(%d%d)[Zz]$")
      if y then
        it.created_at = days(tonumber(y), tonumber(mo), tonumber(d)) * 86400
          + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
      end
    end
  end
  return doc
end

local function normalize(body, primary)
  return cjson.encode(change(cjson.decode(body), primary))
end

local function c_rules()
  return diff.diff(rec(v1), rec(v2), rules)
end

local function lua_hook()
  return diff.diff(rec(normalize(v1, true)), rec(normalize(v2, false)))
end

local function lua_alone()
  return normalize(v1, true), normalize(v2, false)
end

-- Each is checked once: both ways must find nothing to report.
assert(c_rules() == nil, "the C rules should absorb every change")
assert(lua_hook() == nil, "the Lua hook should absorb every change")
assert(diff.diff(rec(v1), rec(v2)) ~= nil, "without rules the pair differs")

local clock = os.clock
local function time(fn)
  local n, t0 = 0, clock()
  repeat
    fn()
    n = n + 1
  until clock() - t0 >= 0.2
  return (clock() - t0) / n
end

-- Best of seven rounds, the rows taking turns so a busy machine skews
-- them alike.
local rows = {
  { "C rules (rename + coerce + mask + time), through the FFI", c_rules },
  { "Lua normalize (cjson decode, change, encode) + diff", lua_hook },
  { "Lua normalize alone, both bodies", lua_alone },
}
local best = {}
for _ = 1, 7 do
  for i, r in ipairs(rows) do
    local t = time(r[2])
    if not best[i] or t < best[i] then best[i] = t end
  end
end

print(("\n| migration pair through shadow.diff, %d and %d bytes | us per "
  .. "diff | vs C rules |\n|---|---:|---:|"):format(#v1, #v2))
for i, r in ipairs(rows) do
  print(("| %s | %.1f | %.1fx |"):format(r[1], best[i] * 1e6,
    best[i] / best[1]))
end
print(("(the Lua hook takes %.1fx the time of the C rules, whole diff "
  .. "against whole diff)"):format(best[2] / best[1]))
if c_cost and c_cost > 0 then
  print(("(what the C rules add to the diff, %.1f us in bench_diff above, "
    .. "is %.0fx less than the Lua normalize alone; target: at least 10x)"):format(c_cost,
    best[3] * 1e6 / c_cost))
end
