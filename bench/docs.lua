-- Writes the bench's JSON documents: DIR/primary/{1k,64k}.json and
-- DIR/candidate/{1k,64k}.json. Each candidate document is its primary
-- with one field changed ("version": "v1" -> "v2") and the same length,
-- so Content-Length, ETag and Last-Modified (set by the caller) agree
-- and only the body differs.
-- Usage: luajit bench/docs.lua DIR
local dir = assert(arg[1], "usage: docs.lua DIR")

local function document(size)
  local items, n = {}, 0
  local head = '{"version":"v1","generated":"2026-11-26","items":['
  local used = #head + 16
  while true do
    n = n + 1
    local item = ('{"id":%d,"name":"item-%06d","price":%d.%02d,'
      .. '"tags":["a","b"],"active":%s}')
      :format(n, n, n % 97, n % 100, n % 2 == 0 and "true" or "false")
    if used + #item + 1 > size - 16 then break end
    items[#items + 1] = item
    used = used + #item + 1
  end
  local text = head .. table.concat(items, ",") .. '],"pad":"'
  local pad = size - #text - 3
  return text .. ("x"):rep(pad) .. '"}\n'
end

for name, size in pairs({ ["1k"] = 1024, ["64k"] = 65536 }) do
  local doc = document(size)
  assert(#doc == size, name)
  for side, text in pairs({ primary = doc,
                            candidate = doc:gsub('"v1"', '"v2"', 1) }) do
    local f = assert(io.open(("%s/%s/%s.json"):format(dir, side, name), "wb"))
    f:write(text)
    f:close()
  end
end
