-- shadow.rules: helpers for what stays in a `normalize` hook, working on
-- the decoded record. The declarative rules (rename, coerce, mask, time,
-- ignore, arrays, tolerance) run in C and are faster; these are for the
-- rest: a list whose order is meaningless but that no key pairs, a debug
-- field, a value whose case changed on purpose.
--
--   local rules = require "shadow.rules"
--   normalize = function(rec, side)
--     return rules.json(rec, function(body)
--       rules.sort(body, "/items", "id")       -- order items by their id
--       rules.drop(body, "/debug")             -- remove a member
--       rules.lower(body, "/users/*/name")     -- compare names lower-cased
--     end)
--   end
--
-- Paths are JSON Pointers as in the config's rules: "/a/0/b", "*" for any
-- key or index (indexes count from 0, as JSON Pointer does). Requiring
-- the module builds nothing; cjson is loaded on the first rules.json.
-- Like any cjson round trip, rules.json writes an empty array as {} and
-- numbers with 14 significant digits: keep such values out of a body you
-- rewrite, or use the C rules, which never re-encode.
local error, ipairs, next, pairs, remove, sort, tonumber, tostring, type =
  error, ipairs, next, pairs, table.remove, table.sort, tonumber, tostring,
  type
local find, gsub, lower, sub, upper = string.find, string.gsub, string.lower,
  string.sub, string.upper

local M = {}

-- Parsed pointers, kept for the next call with the same text (a config
-- uses a handful); dropped wholesale past the cap.
local parsed, nparsed = {}, 0
local PARSED_MAX = 256

local function segments(pointer)
  local segs = parsed[pointer]
  if segs then return segs end
  if type(pointer) ~= "string" or (pointer ~= "" and pointer:sub(1, 1) ~= "/")
  then
    error("shadow.rules: " .. tostring(pointer)
          .. " is not a JSON Pointer (\"/a/b\", \"*\" for any key or index)", 3)
  end
  segs = {}
  local at = 2
  while pointer ~= "" do
    local slash = find(pointer, "/", at, true)
    local s = sub(pointer, at, slash and slash - 1 or #pointer)
    -- ~2 is a NUL in a key, as the engine writes it.
    segs[#segs + 1] = (gsub(gsub(gsub(s, "~1", "/"), "~2", "\0"), "~0", "~"))
    if not slash then break end
    at = slash + 1
  end
  if nparsed >= PARSED_MAX then parsed, nparsed = {}, 0 end
  parsed[pointer] = segs
  nparsed = nparsed + 1
  return segs
end

-- A decoded JSON array is a Lua sequence (or an empty table).
local function is_array(t)
  return t[1] ~= nil or next(t) == nil
end

-- Calls fn(value, parent, key) for every place the segments name below
-- t, depth first, in document order (arrays by index).
local function walk(t, segs, i, fn)
  if type(t) ~= "table" then return end
  local s = segs[i]
  local last = i == #segs
  local function visit(k, v)
    if last then fn(v, t, k) else walk(v, segs, i + 1, fn) end
  end
  if s == "*" then
    if is_array(t) then
      for k, v in ipairs(t) do visit(k, v) end
    else
      for k, v in pairs(t) do visit(k, v) end
    end
    return
  end
  local v = t[s]
  if v ~= nil then return visit(s, v) end
  local n = s:match("^%d+$") and tonumber(s)
  if n and t[n + 1] ~= nil then visit(n + 1, t[n + 1]) end
end

-- Calls fn(value, parent, key) for each value at pointer; returns how
-- many there were. The root itself (pointer "") is fn(doc, nil, nil).
function M.each(doc, pointer, fn)
  local segs = segments(pointer)
  if #segs == 0 then
    fn(doc, nil, nil)
    return 1
  end
  local n = 0
  walk(doc, segs, 1, function(v, parent, k)
    n = n + 1
    fn(v, parent, k)
  end)
  return n
end

-- The first value at pointer, or nil.
function M.get(doc, pointer)
  local found
  M.each(doc, pointer, function(v) if found == nil then found = v end end)
  return found
end

-- Replaces each value at pointer by fn(value) (nil keeps it); returns how
-- many were seen.
function M.map(doc, pointer, fn)
  return M.each(doc, pointer, function(v, parent, k)
    local w = fn(v)
    if w ~= nil and parent then parent[k] = w end
  end)
end

-- Removes every member or element at pointer; returns how many. Elements
-- of one array are removed from the highest index down, so each removal
-- leaves the others' places alone.
function M.drop(doc, pointer)
  local arrays, n = {}, 0
  M.each(doc, pointer, function(_, parent, k)
    if not parent then return end
    n = n + 1
    if type(k) == "number" and is_array(parent) then
      local list = arrays[parent]
      if not list then
        list = {}
        arrays[parent] = list
      end
      list[#list + 1] = k
    else
      parent[k] = nil
    end
  end)
  for parent, list in pairs(arrays) do
    sort(list, function(a, b) return a > b end)
    for _, k in ipairs(list) do remove(parent, k) end
  end
  return n
end

local TYPE_ORDER = { boolean = 1, number = 2, string = 3, table = 4 }

-- a before b: by type, then numbers and strings by value; tables and
-- booleans tie (the sort is stable, so ties keep their order).
local function before(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (TYPE_ORDER[ta] or 5) < (TYPE_ORDER[tb] or 5) end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return not a and b end
  return false
end

-- Sorts each array at pointer by the member key of its elements (or by
-- the elements themselves when key is nil), stably, so that two sides
-- holding the same elements in another order come out alike. Returns how
-- many arrays were sorted.
function M.sort(doc, pointer, key)
  local n = 0
  M.each(doc, pointer, function(list)
    if type(list) ~= "table" or not is_array(list) then return end
    n = n + 1
    local keyed = {}
    for i, v in ipairs(list) do
      local k = v
      if key ~= nil then k = type(v) == "table" and v[key] or nil end
      keyed[i] = { k = k, i = i, v = v }
    end
    sort(keyed, function(a, b)
      if before(a.k, b.k) then return true end
      if before(b.k, a.k) then return false end
      return a.i < b.i
    end)
    for i, e in ipairs(keyed) do list[i] = e.v end
  end)
  return n
end

-- Lower-cases (or upper-cases) each string at pointer; returns how many
-- values were seen.
function M.lower(doc, pointer)
  return M.map(doc, pointer, function(v)
    if type(v) == "string" then return lower(v) end
  end)
end

function M.upper(doc, pointer)
  return M.map(doc, pointer, function(v)
    if type(v) == "string" then return upper(v) end
  end)
end

-- Changes the case of header values: names is a header name or a list of
-- them (nil: every header), how is "lower" (the default) or "upper".
-- Header names already compare without case; this is for values such as
-- a content-type written "Application/JSON". Returns rec.
function M.header_case(rec, names, how)
  local f = how == "upper" and upper or lower
  if how ~= nil and how ~= "lower" and how ~= "upper" then
    error("shadow.rules.header_case: how must be \"lower\" or \"upper\"", 2)
  end
  local headers = rec and rec.headers
  if type(headers) ~= "table" then return rec end
  local only
  if type(names) == "string" then names = { names } end
  if names ~= nil then
    only = {}
    for _, n in ipairs(names) do only[lower(n)] = true end
  end
  for name, v in pairs(headers) do
    if only == nil or only[lower(name)] then
      if type(v) == "string" then
        headers[name] = f(v)
      elseif type(v) == "table" then
        for i, s in ipairs(v) do v[i] = f(s) end
      end
    end
  end
  return rec
end

local cjson

-- Decodes rec.body as JSON, calls fn(doc, rec), and encodes the document
-- back (fn may also return a new document). A body that is not JSON is
-- left as it is, so the comparison falls back to bytes as it would have.
-- Returns rec, so a normalize hook can end with `return rules.json(...)`.
function M.json(rec, fn)
  if type(rec) ~= "table" or type(rec.body) ~= "string" then return rec end
  if not cjson then cjson = require("cjson.safe").new() end
  local doc = cjson.decode(rec.body)
  if type(doc) ~= "table" then return rec end
  local out = fn(doc, rec)
  local text = cjson.encode(out == nil and doc or out)
  if text then rec.body = text end
  return rec
end

return M
