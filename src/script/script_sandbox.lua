-- The environment config scripts and their hooks run in. Compiled into
-- shadowd (cmake/EmbedText.cmake) and run once per Lua state by
-- script_sandbox.c with the config's directory, the table that collects
-- the paths of required modules, a function that gives the state's memory
-- cap, and one that says whether the running call's budget is spent. It
-- first closes the state itself (what any code in it could reach through
-- a string's metatable), then returns make_env(), which builds the sandbox.
local dir, sources, memory_cap, spent = ...

local error, format, ipairs, loadfile, pairs, setfenv, setmetatable,
  tostring, type =
  error, string.format, ipairs, loadfile, pairs, setfenv, setmetatable,
  tostring, type
local real_require, searchpath = require, package.searchpath
local real_pcall, real_xpcall = pcall, xpcall
local char = string.char
local raw = { find = string.find, match = string.match,
              gmatch = string.gmatch, gsub = string.gsub, rep = string.rep }

---------------------------------------------------------------------------
-- Bounded pattern calls. The count hook that stops a runaway hook only runs
-- between Lua instructions, and one string.find is one C call: a pattern
-- such as ("a-"):rep(6) .. "b" backtracks for minutes inside it. So each
-- pattern call first bounds the matcher's worst case on a subject of this
-- length, and refuses the call when that bound is over PATTERN_STEPS. The
-- bound follows how the matcher works: a single item costs one step per
-- try; a quantified item (*, +, -) tries the rest of the pattern at each
-- of up to n positions, so its cost multiplies what follows, except
--   * when everything after it always matches (then the first try ends
--     the match, and what it scanned is consumed): it adds n once;
--   * when its runs cannot overlap (each start reaches it at most once,
--     right after a character outside its class, and what follows cannot
--     begin with a character of its class or, for '-', is one last item):
--     then the runs of all tries together cover the subject at most once,
--     and it adds n once.
-- So '"id":"(.-)"', '"ts":%d+,' and '%s+' are linear, 'a*b' is quadratic
-- and ("a-"):rep(6) .. "b" is n^7.
---------------------------------------------------------------------------
local PATTERN_STEPS = 5e7

-- One item of a pattern: kind "char" (a single character class, with its
-- source text in class and its quantifier in q), "open"/"close"/"pos"
-- (captures), "end" ($ at the end), "b" (%bxy), "f" (%f[set]), "ref" (%1).
local function parse(p)
  local items, i, n = {}, 1, #p
  local anchored = false
  if p:sub(1, 1) == "^" then anchored, i = true, 2 end
  while i <= n do
    local c = p:sub(i, i)
    if c == "(" then
      if p:sub(i + 1, i + 1) == ")" then
        items[#items + 1] = { kind = "pos" }
        i = i + 2
      else
        items[#items + 1] = { kind = "open" }
        i = i + 1
      end
    elseif c == ")" then
      items[#items + 1] = { kind = "close" }
      i = i + 1
    elseif c == "$" and i == n then
      items[#items + 1] = { kind = "end" }
      i = i + 1
    elseif c == "%" and p:sub(i + 1, i + 1) == "b" then
      items[#items + 1] = { kind = "b" }
      i = i + 4
    elseif c == "%" and p:sub(i + 1, i + 1) == "f" then
      local j = i + 2
      if p:sub(j, j) == "[" then
        j = j + 1
        if p:sub(j, j) == "^" then j = j + 1 end
        repeat
          if p:sub(j, j) == "%" then j = j + 1 end
          j = j + 1
        until j > n or p:sub(j, j) == "]"
      end
      items[#items + 1] = { kind = "f" }
      i = j + 1
    elseif c == "%" and raw.find(p, "^%d", i + 1) then
      items[#items + 1] = { kind = "ref" }
      i = i + 2
    else
      local j = i
      if c == "%" then
        j = i + 1
      elseif c == "[" then
        j = i + 1
        if p:sub(j, j) == "^" then j = j + 1 end
        repeat -- the first ']' of a set is a member, not its end
          if p:sub(j, j) == "%" then j = j + 1 end
          j = j + 1
        until j > n or p:sub(j, j) == "]"
      end
      local q = p:sub(j + 1, j + 1)
      if q ~= "*" and q ~= "+" and q ~= "-" and q ~= "?" then q = "" end
      items[#items + 1] = { kind = "char", class = p:sub(i, j), q = q }
      i = j + 1 + #q
    end
  end
  return items, anchored
end

-- The bytes a class matches, as a set, asked of the matcher itself.
local function members(it)
  if it.set then return it.set end
  local set, class = {}, "^" .. it.class .. "$"
  for b = 0, 255 do
    if raw.find(char(b), class) then set[b] = true end
  end
  it.set = set
  return set
end

local function disjoint(a, b)
  for k in pairs(a) do
    if b[k] then return false end
  end
  return true
end

local function union(a, b)
  local out = {}
  for k in pairs(a) do out[k] = true end
  for k in pairs(b) do out[k] = true end
  return out
end

local function minus(a, b)
  local out = {}
  for k in pairs(a) do
    if not b[k] then out[k] = true end
  end
  return out
end

-- The nearest item before/after i that is not a capture mark.
local function neighbour(items, i, step)
  i = i + step
  while items[i] and (items[i].kind == "open" or items[i].kind == "close"
      or items[i].kind == "pos") do
    i = i + step
  end
  return items[i], i
end

-- Whether the items from i on always match wherever they are tried:
-- each may match the empty string, and a '$' among them is reached by a
-- '.*' or '.-' before it, which can run to the end.
local function sure_from(items, i)
  local dot = false
  for j = i, #items do
    local it = items[j]
    local k = it.kind
    if k == "end" then
      if not dot then return false end
    elseif k == "char" and (it.q == "*" or it.q == "-" or it.q == "?") then
      if it.class == "." and it.q ~= "?" then dot = true end
    elseif k ~= "open" and k ~= "close" and k ~= "pos" then
      return false
    end
  end
  return true
end

local cache, cached = {}, 0

-- The worst-case number of matcher steps for pattern p on n bytes; each
-- is one or a few nanoseconds. many: gsub and gmatch, which try every
-- position and may match many times.
-- What a pattern's cost depends on, worked out once per pattern: its
-- items, which of them are followed by a tail that always matches (sure),
-- and which quantified items are linear (their runs cannot overlap).
local function analyse(p)
  local items, anchored = parse(p)
  local sure, first, linear = {}, {}, {}
  for i = 1, #items + 1 do sure[i] = sure_from(items, i) end
  -- first[i]: the bytes a match of the items from i on can begin with,
  -- or nil when it may be empty or is not known.
  for i = #items, 1, -1 do
    local it = items[i]
    local k = it.kind
    if k == "open" or k == "close" or k == "pos" then
      first[i] = first[i + 1]
    elseif k == "char" and (it.q == "" or it.q == "+") then
      first[i] = members(it)
    elseif k == "char" and first[i + 1] then
      first[i] = union(members(it), first[i + 1])
    end
  end
  -- A quantified item is linear when each start reaches it at most once,
  -- at a position right after a character outside what it runs over, and
  -- only the end of its run is a real try of what follows. Then the runs
  -- of all starts are disjoint. Each start reaches an item at most once
  -- while everything before it is fixed-width or linear; pre is the set
  -- of characters that can stand right before the item (nil: any).
  local unique, pre = true, nil
  for i = 1, #items do
    local it = items[i]
    local k = it.kind
    if k == "char" and it.q ~= "" and it.q ~= "?" and unique then
      local nxt, ni = neighbour(items, i, 1)
      if pre then
        local x, f = members(it), first[i + 1]
        local run
        if f and disjoint(x, f) then
          -- What follows cannot begin inside the run: each step back
          -- fails at once.
          run = x
        elseif it.q == "-" and nxt and nxt.kind == "char" and nxt.q == ""
            and sure[ni + 1] then
          -- The first character of nxt in the run ends the match.
          run = minus(x, members(nxt))
        end
        linear[i] = run ~= nil and disjoint(pre, run)
      end
    end
    if k == "char" and (it.q == "" or it.q == "+") then
      pre = members(it)
    elseif k == "char" then
      pre = pre and union(members(it), pre)
    elseif k ~= "open" and k ~= "close" and k ~= "pos" and k ~= "f" then
      pre = nil
    end
    if not (k == "open" or k == "close" or k == "pos" or k == "f"
        or (k == "char" and (it.q == "" or linear[i]))) then
      unique = false
    end
  end
  return { items = items, anchored = anchored, sure = sure, linear = linear }
end

-- The worst-case number of matcher steps for pattern p on n bytes; each
-- is one or a few nanoseconds. many: gsub and gmatch, which may match
-- many times; gmatch: which tries every start even when anchored.
local function cost(p, n, many, gmatch)
  local e = cache[p]
  if not e then
    e = analyse(p)
    if cached >= 256 then cache, cached = {}, 0 end
    cache[p], cached = e, cached + 1
  end
  local items, sure, linear = e.items, e.sure, e.linear
  local matches = many and n + 1 or 1
  local once = 0  -- paid once per call (or per match)
  local after = 1 -- per try of the items after the current one
  for i = #items, 1, -1 do
    local it = items[i]
    local k = it.kind
    local here
    if k == "open" or k == "close" or k == "pos" then
      here = after
    elseif k == "end" then
      here = 1
    elseif k == "f" then
      here = 1 + after
    elseif k == "b" or k == "ref" then
      here = n + 1 + after
    elseif it.q == "" then
      here = 1 + after
    elseif sure[i + 1] then
      once = once + (n + 1) + matches * after
      here = 2
    elseif it.q == "?" then
      here = 1 + 2 * after
    elseif linear[i] then
      once = once + 2 * (n + 1)
      here = 2 + after
    else
      here = (n + 1) * (1 + after)
    end
    after = here
    if after > 1e30 then after = 1e30 end
  end
  -- gsub stops after one try when anchored; gmatch has no anchor.
  local starts = (e.anchored and not gmatch) and 1 or n + 1
  return starts * after + once
end

local function check(name, s, p, init, many, gmatch)
  if type(s) == "number" then s = tostring(s) end
  if type(p) == "number" then p = tostring(p) end
  -- Anything else: the real function gives its own error.
  if type(s) ~= "string" or type(p) ~= "string" then return end
  local n = #s
  if type(init) == "number" and init > 1 then n = n - init + 1 end
  if n < 0 then n = 0 end
  local steps = cost(p, n, many, gmatch)
  if steps > PATTERN_STEPS then
    error(format("%s: pattern %q may take %.3g steps on a subject of %d "
      .. "bytes (the limit is %.3g); use a plain find, anchor it, or "
      .. "split the subject", name, #p > 40 and p:sub(1, 40) .. "..." or p,
      steps, n, PATTERN_STEPS), 3)
  end
end

local function find(s, p, init, plain)
  if not plain then check("string.find", s, p, init, false) end
  return raw.find(s, p, init, plain)
end

local function match(s, p, init)
  check("string.match", s, p, init, false)
  return raw.match(s, p, init)
end

local function gmatch(s, p)
  check("string.gmatch", s, p, nil, true, true)
  return raw.gmatch(s, p)
end

local function gsub(s, p, repl, max)
  check("string.gsub", s, p, nil, true)
  return raw.gsub(s, p, repl, max)
end

-- A result over the state's memory cap could never be kept: say so rather
-- than "not enough memory".
local function rep(s, n, sep)
  if type(s) == "string" and type(n) == "number" and n > 1 then
    local len = #s * n + (type(sep) == "string" and #sep * (n - 1) or 0)
    local cap = memory_cap()
    if len > cap then
      error(format("string.rep: a result of %.0f bytes is over "
        .. "limits.hook_memory_bytes (%.0f)", len, cap), 2)
    end
  end
  return raw.rep(s, n, sep)
end

-- The string library is shared by every string's metatable: what a
-- script reaches as ("").find is string.find. So the bounded functions
-- replace the real ones, string.dump (bytecode, which LuaJIT never
-- verifies) goes, and the metatable itself is hidden from getmetatable.
string.find, string.match, string.gmatch, string.gsub, string.rep =
  find, match, gmatch, gsub, rep
string.dump = nil
getmetatable("").__metatable = false

-- table.sort without a comparator compares in C, where no count hook runs,
-- and quicksort has inputs that make it quadratic: a body's array could
-- hold one. With a Lua comparator every comparison is an instruction the
-- hook sees.
local raw_sort = table.sort
local function less(a, b) return a < b end
table.sort = function(t, cmp)
  return raw_sort(t, cmp or less)
end

---------------------------------------------------------------------------
-- What require gives a config. Modules are the documented ones, compiled
-- into shadowd, or files beside the config (loaded as text, in the
-- sandbox). shadow's own modules reach C through LuaJIT's FFI; what they
-- return to a config is plain data, and objects that keep C handles (a
-- ring, a shadower) are handed out as closures over the real object.
---------------------------------------------------------------------------
local PUBLIC = { shadow = true, ["shadow.rules"] = true,
                 ["shadow.http"] = true, cjson = true, ["cjson.safe"] = true }
local CLOSED = { __metatable = false }

local function close_ring(r)
  local o = {}
  for _, m in ipairs({ "push", "latest", "len", "capacity", "set_capacity",
                       "free" }) do
    local f = r[m]
    o[m] = function(_, ...) return f(r, ...) end
  end
  return setmetatable(o, CLOSED)
end

local function public_shadow()
  local s = real_require("shadow")
  local out = {}
  for k, v in pairs(s) do out[k] = v end
  out.ring = function(capacity) return close_ring(s.ring(capacity)) end
  out.shadower = function(spec)
    local sh = s.shadower(spec)
    local o = { stats = sh.stats }
    o.call = function(_, ...) return sh:call(...) end
    return setmetatable(o, {
      __metatable = false,
      __index = function(_, k)
        if k == "last_error" then return sh.last_error end
      end,
    })
  end
  return out
end

---------------------------------------------------------------------------
-- pcall and xpcall that cannot keep a spent budget. The host's count hook
-- raises again at every instruction once a call's time is up, which takes
-- the error past any pcall. But LuaJIT runs an xpcall handler for an
-- error raised in a hook while that hook still counts as running, so no
-- hook runs in the handler: one that loops would loop for good. So the
-- handler is not called for a spent budget, and both re-raise it.
---------------------------------------------------------------------------
local function pass(ok, ...)
  if not ok and spent() then error((...), 0) end
  return ok, ...
end

local function sandbox_pcall(f, ...)
  return pass(real_pcall(f, ...))
end

local function sandbox_xpcall(f, handler, ...)
  local function guarded(e)
    if spent() then return e end
    return handler(e)
  end
  return pass(real_xpcall(f, guarded, ...))
end

local function copy(t, names)
  local c = {}
  for _, k in ipairs(names) do c[k] = t[k] end
  return c
end

-- A module beside the config: text only (a binary chunk is refused).
local function load_beside(name, env, loaded)
  local path = dir and searchpath(name, dir .. "/?.lua;" .. dir
    .. "/?/init.lua")
  if not path then
    error(format("module '%s' not found beside the config (only shadow, "
      .. "shadow.rules, cjson and modules in %s may be required)", name,
      tostring(dir)), 3)
  end
  local chunk, err = loadfile(path, "t")
  if not chunk then
    -- A binary chunk's error names no file.
    if not raw.find(err, path, 1, true) then
      err = path .. ": " .. err .. " (modules are loaded as Lua text only)"
    end
    error(err, 3)
  end
  setfenv(chunk, env)
  sources[#sources + 1] = path
  local m = chunk(name)
  if m == nil then m = true end
  loaded[name] = m
  return m
end

local function make_env()
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next,
    pairs = pairs, pcall = sandbox_pcall, xpcall = sandbox_xpcall,
    select = select,
    tonumber = tonumber, tostring = tostring, type = type,
    unpack = unpack, rawequal = rawequal, rawget = rawget,
    rawset = rawset, setmetatable = setmetatable,
    getmetatable = getmetatable, _VERSION = _VERSION,
    string = copy(string, { "byte", "char", "find", "format", "gmatch",
      "gsub", "len", "lower", "match", "rep", "reverse", "sub", "upper" }),
    table = copy(table, { "concat", "insert", "remove", "sort", "maxn" }),
    math = copy(math, { "abs", "ceil", "floor", "fmod", "huge", "max",
      "min", "modf", "pi", "random", "sqrt", "exp", "log", "pow" }),
    os = copy(os, { "time", "clock", "date", "getenv" }),
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring(select(i, ...)) end
      io.stderr:write("script: ", table.concat(parts, "\t"), "\n")
    end,
  }
  env._G = env
  local loaded = {}
  env.require = function(name)
    if type(name) ~= "string" then error("require needs a module name", 2) end
    local m = loaded[name]
    if m ~= nil then return m end
    if PUBLIC[name] then
      m = name == "shadow" and public_shadow() or real_require(name)
      loaded[name] = m
      return m
    end
    if name == "ffi" or name:match("^shadow[%./]") or name:match("^jit") then
      error(format("module '%s' is not available to configs (only shadow, "
        .. "shadow.rules, cjson and modules beside the config may be "
        .. "required)", name), 2)
    end
    return load_beside(name, env, loaded)
  end
  return setmetatable(env, {
    __metatable = false,
    __index = function(_, k)
      error("undeclared global '" .. tostring(k) .. "'", 2)
    end,
    __newindex = function(_, k)
      error("assignment to undeclared global '" .. tostring(k)
        .. "' (use local)", 2)
    end,
  })
end

return make_env
