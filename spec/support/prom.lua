-- A strict parser of the Prometheus text exposition format (0.0.4), for
-- specs that read /metrics: every line must be a HELP, a TYPE or a sample;
-- each family has its HELP and its TYPE before its first sample and its
-- samples together; label values use only the three escapes the format
-- has; no series twice; a histogram's buckets are cumulative, ordered by
-- le, and end with +Inf equal to _count. parse(text) returns the families
-- or raises naming the line.
local M = {}

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*"
local TYPES = { counter = true, gauge = true, histogram = true,
                summary = true, untyped = true }

local function number(s)
  if s == "+Inf" or s == "Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  if s == "NaN" then return 0 / 0 end
  if not s:match("^[-+]?%d*%.?%d+[eE]?[-+]?%d*$")
     and not s:match("^[-+]?%d+%.?%d*[eE]?[-+]?%d*$") then
    return nil
  end
  return tonumber(s)
end

-- Reads {a="x",b="y"} at s[i] == "{"; returns labels, the index after.
local function labels(s, i, fail)
  local out, order = {}, {}
  i = i + 1
  if s:sub(i, i) == "}" then return out, i + 1, order end
  while true do
    local name = s:match(LABEL, i)
    if not name then fail("bad label name") end
    i = i + #name
    if s:sub(i, i + 1) ~= '="' then fail("label " .. name .. " needs =\"") end
    i = i + 2
    local v = {}
    while true do
      local c = s:sub(i, i)
      if c == "" then fail("unterminated label value") end
      if c == '"' then break end
      if c == "\n" then fail("raw newline in a label value") end
      if c == "\\" then
        local e = s:sub(i + 1, i + 1)
        if e == "\\" then v[#v + 1] = "\\"
        elseif e == '"' then v[#v + 1] = '"'
        elseif e == "n" then v[#v + 1] = "\n"
        else fail("bad escape \\" .. e .. " in a label value") end
        i = i + 2
      else
        v[#v + 1] = c
        i = i + 1
      end
    end
    if out[name] then fail("label " .. name .. " twice") end
    out[name] = table.concat(v)
    order[#order + 1] = name
    i = i + 1
    local c = s:sub(i, i)
    if c == "}" then return out, i + 1, order end
    if c ~= "," then fail("expected , or } after a label") end
    i = i + 1
  end
end

local function series_key(name, l)
  local names = {}
  for k in pairs(l) do names[#names + 1] = k end
  table.sort(names)
  local parts = { name }
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. l[k] end
  return table.concat(parts, "\0")
end

-- The family a sample name belongs to, given the TYPEs seen so far.
local function family_of(fams, name)
  if fams[name] then return name end
  for _, suffix in ipairs({ "_bucket", "_sum", "_count" }) do
    local base = name:sub(1, -#suffix - 1)
    if name:sub(-#suffix) == suffix and fams[base]
       and (fams[base].type == "histogram" or fams[base].type == "summary") then
      return base
    end
  end
  return nil
end

local function check_histogram(fam, fail)
  -- Group the buckets by their labels other than le.
  local groups = {}
  for _, smp in ipairs(fam.samples) do
    local l = {}
    for k, v in pairs(smp.labels) do if k ~= "le" then l[k] = v end end
    local key = series_key("", l)
    local g = groups[key] or { buckets = {} }
    groups[key] = g
    if smp.name == fam.name .. "_bucket" then
      if not smp.labels.le then fail(smp.line, "a bucket without le") end
      local le = number(smp.labels.le)
      if not le then fail(smp.line, "le is not a number") end
      g.buckets[#g.buckets + 1] = { le = le, v = smp.value, line = smp.line }
    elseif smp.name == fam.name .. "_count" then
      g.count = smp.value
    elseif smp.name == fam.name .. "_sum" then
      g.sum = smp.value
    end
  end
  for _, g in pairs(groups) do
    local b = g.buckets
    if #b == 0 then fail(0, fam.name .. ": no buckets") end
    for i = 2, #b do
      if not (b[i].le > b[i - 1].le) then
        fail(b[i].line, fam.name .. ": buckets not ordered by le")
      end
      if b[i].v < b[i - 1].v then
        fail(b[i].line, fam.name .. ": buckets are not cumulative")
      end
    end
    if b[#b].le ~= math.huge then fail(b[#b].line, fam.name .. ": no +Inf bucket") end
    if g.count == nil or g.sum == nil then
      fail(0, fam.name .. ": _count or _sum missing")
    end
    if b[#b].v ~= g.count then
      fail(b[#b].line, fam.name .. ": +Inf bucket differs from _count")
    end
  end
end

function M.parse(text)
  local fams, order, seen = {}, {}, {}
  local current, closed = nil, {}
  local lineno = 0
  local function fail(n, why)
    error(("/metrics line %d: %s"):format(n, why), 3)
  end
  if text:sub(-1) ~= "\n" then fail(0, "the text does not end with a newline") end
  for line in text:gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local function bad(why) fail(lineno, why .. ": " .. line) end
    if line == "" then bad("empty line") end
    local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
    if line:sub(1, 1) == "#" then
      if kind ~= "HELP" and kind ~= "TYPE" then bad("a comment that is not HELP or TYPE") end
      if not name:match(NAME .. "$") then bad("bad metric name") end
      if closed[name] then bad("family " .. name .. " is split") end
      local f = fams[name]
      if not f then
        f = { name = name, samples = {} }
        fams[name] = f
        order[#order + 1] = name
      end
      if current and current ~= name then closed[current] = true end
      current = name
      if kind == "HELP" then
        if f.help then bad("HELP twice") end
        if rest:find("\\[^\\n]") then bad("bad escape in HELP") end
        f.help = rest
      else
        if f.type then bad("TYPE twice") end
        if #f.samples > 0 then bad("TYPE after samples") end
        if not TYPES[rest] then bad("unknown type " .. rest) end
        f.type = rest
      end
    else
      local sname = line:match(NAME)
      if not sname then bad("bad metric name") end
      local i = #sname + 1
      local l = {}
      if line:sub(i, i) == "{" then
        l, i = labels(line, i, bad)
      end
      if line:sub(i, i) ~= " " then bad("expected a space before the value") end
      local value, ts = line:sub(i + 1):match("^(%S+)( ?%-?%d*)$")
      local v = value and number(value)
      if not v then bad("bad value") end
      if ts ~= "" and not ts:match("^ %-?%d+$") then bad("bad timestamp") end
      local fname = family_of(fams, sname)
      if not fname then bad("sample before its TYPE") end
      local f = fams[fname]
      if not f.help then bad("no HELP for " .. fname) end
      if fname ~= current then bad("samples of " .. fname .. " are not together") end
      local key = series_key(sname, l)
      if seen[key] then bad("the same series twice") end
      seen[key] = true
      if f.type == "counter" and not (v >= 0) then bad("a negative counter") end
      if f.type == "histogram" and sname == fname then
        bad("a histogram sample without _bucket, _sum or _count")
      end
      f.samples[#f.samples + 1] = { name = sname, labels = l, value = v,
                                    line = lineno }
    end
  end
  for _, name in ipairs(order) do
    local f = fams[name]
    if not f.help or not f.type then fail(0, name .. " lacks HELP or TYPE") end
    if f.type == "histogram" and #f.samples > 0 then
      check_histogram(f, function(n, why) fail(n, why) end)
    end
  end
  return fams
end

-- The value of the sample of family name whose labels include want.
function M.value(fams, name, want)
  local f = fams[name]
  if not f then return nil end
  for _, s in ipairs(f.samples) do
    local ok = true
    for k, v in pairs(want or {}) do
      if s.labels[k] ~= v then ok = false break end
    end
    if ok and s.name == name then return s.value end
  end
  return nil
end

return M
