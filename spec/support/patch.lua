-- A small RFC 6902 applier (add, remove, replace, move) over documents
-- decoded by cjson, and a deep equality for them. Pointer tokens that are
-- digits or "-" address arrays; the generator never makes such object keys.
local cjson = require "cjson"

local M = {}

local function tokens(ptr)
  if ptr == "" then return {} end
  assert(ptr:sub(1, 1) == "/", "bad pointer " .. ptr)
  local out = {}
  for tok in (ptr:sub(2) .. "/"):gmatch("(.-)/") do
    out[#out + 1] = tok:gsub("~1", "/"):gsub("~0", "~")
  end
  return out
end

local function is_index(tok)
  return tok == "-" or tok:match("^%d+$") ~= nil
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = deep_copy(x) end
  return t
end

-- The container that holds the last token of toks, and that token.
local function parent_of(doc, toks, path)
  local parent = doc
  for i = 1, #toks - 1 do
    local tok = toks[i]
    parent = parent[is_index(tok) and tonumber(tok) + 1 or tok]
    assert(type(parent) == "table", "no parent at " .. path)
  end
  return parent, toks[#toks]
end

local function remove(doc, path)
  local parent, last = parent_of(doc, tokens(path), path)
  if is_index(last) then
    local i = tonumber(last) + 1
    assert(parent[i] ~= nil, "remove of nothing at " .. path)
    return table.remove(parent, i)
  end
  local v = parent[last]
  assert(v ~= nil, "remove of nothing at " .. path)
  parent[last] = nil
  return v
end

local function add(doc, path, value)
  local toks = tokens(path)
  if #toks == 0 then return value end
  local parent, last = parent_of(doc, toks, path)
  if is_index(last) then
    local i = last == "-" and #parent + 1 or tonumber(last) + 1
    assert(i <= #parent + 1, "add past the end at " .. path)
    table.insert(parent, i, value)
  else
    parent[last] = value
  end
  return doc
end

-- Returns the patched document (doc is changed in place where possible).
function M.apply(doc, ops)
  for _, op in ipairs(ops) do
    local toks = tokens(op.path)
    if op.op == "move" then
      assert(type(op.from) == "string", "move without from")
      assert(op.path:sub(1, #op.from + 1) ~= op.from .. "/",
        "move into itself at " .. op.path)
      doc = add(doc, op.path, remove(doc, op.from))
    elseif op.op == "remove" then
      assert(#toks > 0, "remove of the root")
      remove(doc, op.path)
    elseif op.op == "add" then
      doc = add(doc, op.path, deep_copy(op.candidate))
    else
      assert(op.op == "replace", "unknown op " .. tostring(op.op))
      if #toks == 0 then
        doc = deep_copy(op.candidate)
      else
        local parent, last = parent_of(doc, toks, op.path)
        local k = is_index(last) and tonumber(last) + 1 or last
        assert(parent[k] ~= nil, "replace of nothing at " .. op.path)
        parent[k] = deep_copy(op.candidate)
      end
    end
  end
  return doc
end

function M.equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not M.equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

M.null = cjson.null

return M
