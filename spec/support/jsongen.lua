-- Random JSON documents for the property spec: a tree with explicit array
-- and object nodes, written out with random key order, number spellings
-- and string escapes, so two texts of one tree differ only in form.
local M = {}

local NULL = setmetatable({}, { __tostring = function() return "null" end })
M.NULL = NULL

-- Keys are never all digits, so a pointer token that is a number always
-- means an array index when the spec applies a patch.
local KEYS = { "a", "b", "c", "id", "name", "é", "a/b", "m~n", "~1", "",
  "x y", "日本", "😀k", "tags", "meta" }
local STRINGS = { "", "Ann", "ann", "é", "日本語", "😀", 'quo"te',
  "back\\slash", "line\nbreak", "tab\t", "ctl\1", "/slash", "x" }

local random = math.random

local function gen_number()
  local r = random(4)
  if r == 1 then return random(-1000, 1000) end
  if r == 2 then return random(-400, 400) / 4 end
  if r == 3 then return 2 ^ 40 + random(0, 1000) end
  return random(0, 9)
end

function M.gen(depth)
  local r = random(depth > 0 and 9 or 6)
  if r == 1 then return NULL end
  if r == 2 then return random(2) == 1 end
  if r <= 4 then return gen_number() end
  if r <= 6 then return STRINGS[random(#STRINGS)] end
  if r <= 7 then
    local items = {}
    for i = 1, random(0, 5) do items[i] = M.gen(depth - 1) end
    return { kind = "array", items = items }
  end
  local map, n = {}, 0
  for _ = 1, random(0, 5) do
    local k = KEYS[random(#KEYS)]
    if map[k] == nil then n = n + 1 end
    map[k] = M.gen(depth - 1)
  end
  return { kind = "object", map = map }
end

-- A document: an object or an array at the top, as APIs answer.
function M.doc(depth)
  local v
  repeat v = M.gen(depth) until type(v) == "table" and v ~= NULL
  return v
end

local function copy(v)
  if type(v) ~= "table" or v == NULL then return v end
  if v.kind == "array" then
    local items = {}
    for i, x in ipairs(v.items) do items[i] = copy(x) end
    return { kind = "array", items = items }
  end
  local map = {}
  for k, x in pairs(v.map) do map[k] = copy(x) end
  return { kind = "object", map = map }
end
M.copy = copy

-- A changed copy: each node changes with a small probability.
function M.mutate(v, depth)
  if random(8) == 1 then return M.gen(depth) end
  if type(v) ~= "table" or v == NULL then return v end
  if v.kind == "array" then
    local items = {}
    for i, x in ipairs(v.items) do items[i] = M.mutate(x, depth - 1) end
    local r = random(10)
    if r == 1 and #items > 0 then table.remove(items, random(#items)) end
    if r == 2 and #items > 0 then table.remove(items) end
    if r == 3 then items[#items + 1] = M.gen(depth - 1) end
    if r == 4 then table.insert(items, random(#items + 1), M.gen(depth - 1)) end
    return { kind = "array", items = items }
  end
  local map = {}
  for k, x in pairs(v.map) do map[k] = M.mutate(x, depth - 1) end
  local r = random(8)
  if r == 1 then map[KEYS[random(#KEYS)]] = nil end
  if r == 2 then map[KEYS[random(#KEYS)]] = M.gen(depth - 1) end
  return { kind = "object", map = map }
end

local function spell_number(n)
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then
    local s = string.format("%d", n)
    local r = random(5)
    if r == 1 then return s .. ".0" end
    if r == 2 then return s .. "e0" end
    if r == 3 and n ~= 0 then return s .. "0E-1" end
    if r == 4 and n ~= 0 then return s .. ".000" end
    return s
  end
  -- Quarters are exact in binary and in two decimals.
  local s = string.format("%.2f", n)
  local r = random(3)
  if r == 1 then return s end
  if r == 2 then return string.format("%de-2", n * 100) end
  return string.format("%.17g", n)
end

local function utf8_decode(s, i)
  local c = s:byte(i)
  if c < 0x80 then return c, 1 end
  if c < 0xE0 then return (c % 0x20) * 64 + s:byte(i + 1) % 64, 2 end
  if c < 0xF0 then
    return ((c % 0x10) * 64 + s:byte(i + 1) % 64) * 64 + s:byte(i + 2) % 64, 3
  end
  return (((c % 8) * 64 + s:byte(i + 1) % 64) * 64 + s:byte(i + 2) % 64) * 64
    + s:byte(i + 3) % 64, 4
end

local function spell_string(s)
  local out, i = { '"' }, 1
  while i <= #s do
    local cp, n = utf8_decode(s, i)
    local ch = s:sub(i, i + n - 1)
    if ch == '"' then out[#out + 1] = '\\"'
    elseif ch == "\\" then out[#out + 1] = "\\\\"
    elseif ch == "/" and random(2) == 1 then out[#out + 1] = "\\/"
    elseif ch == "\n" then out[#out + 1] = random(2) == 1 and "\\n" or "\\u000a"
    elseif cp < 0x20 then out[#out + 1] = string.format("\\u%04x", cp)
    elseif cp >= 0x80 and random(2) == 1 then
      if cp >= 0x10000 then
        local v = cp - 0x10000
        out[#out + 1] = string.format("\\u%04x\\u%04X", 0xD800 + math.floor(v / 1024),
          0xDC00 + v % 1024)
      else
        out[#out + 1] = string.format("\\u%04X", cp)
      end
    else
      out[#out + 1] = ch
    end
    i = i + n
  end
  out[#out + 1] = '"'
  return table.concat(out)
end

local function shuffle(t)
  for i = #t, 2, -1 do
    local j = random(i)
    t[i], t[j] = t[j], t[i]
  end
  return t
end

-- Writes v as JSON text: random key order, spellings and spacing.
function M.write(v)
  if v == NULL then return "null" end
  local t = type(v)
  if t == "boolean" then return tostring(v) end
  if t == "number" then return spell_number(v) end
  if t == "string" then return spell_string(v) end
  local sp = random(4) == 1 and " " or ""
  if v.kind == "array" then
    local parts = {}
    for i, x in ipairs(v.items) do parts[i] = M.write(x) end
    return "[" .. sp .. table.concat(parts, "," .. sp) .. sp .. "]"
  end
  local keys = {}
  for k in pairs(v.map) do keys[#keys + 1] = k end
  table.sort(keys)
  shuffle(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = spell_string(k) .. sp .. ":" .. sp .. M.write(v.map[k])
  end
  return "{" .. sp .. table.concat(parts, "," .. sp) .. sp .. "}"
end

return M
