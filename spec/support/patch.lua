-- A small RFC 6902 applier (add, remove, replace) over documents decoded by
-- cjson, and a deep equality for them. Pointer tokens that are digits or
-- "-" address arrays; the generator never makes such object keys.
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

-- Returns the patched document (doc is changed in place where possible).
function M.apply(doc, ops)
  for _, op in ipairs(ops) do
    local toks = tokens(op.path)
    local value = deep_copy(op.candidate)
    if #toks == 0 then
      assert(op.op == "replace" or op.op == "add", "root op " .. op.op)
      doc = value
    else
      local parent = doc
      for i = 1, #toks - 1 do
        local tok = toks[i]
        parent = parent[is_index(tok) and tonumber(tok) + 1 or tok]
        assert(type(parent) == "table", "no parent at " .. op.path)
      end
      local last = toks[#toks]
      if is_index(last) then
        local i = last == "-" and #parent + 1 or tonumber(last) + 1
        if op.op == "add" then
          assert(i <= #parent + 1, "add past the end at " .. op.path)
          table.insert(parent, i, value)
        elseif op.op == "remove" then
          assert(parent[i] ~= nil, "remove of nothing at " .. op.path)
          table.remove(parent, i)
        else
          assert(parent[i] ~= nil, "replace of nothing at " .. op.path)
          parent[i] = value
        end
      else
        if op.op == "remove" then
          assert(parent[last] ~= nil, "remove of nothing at " .. op.path)
          parent[last] = nil
        else
          if op.op == "replace" then
            assert(parent[last] ~= nil, "replace of nothing at " .. op.path)
          end
          parent[last] = value
        end
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
