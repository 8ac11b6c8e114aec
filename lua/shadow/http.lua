-- shadow.http(url, opts): a backend descriptor for configs. Plain data: it
-- needs no C library, so a config can be checked anywhere. Errors name the
-- caller's line (level 2), where the config wrote the bad value.
local error, format, tonumber, type = error, string.format, tonumber, type
local floor, huge = math.floor, math.huge

-- Returns nil when url is http://host[:port][/base], else what is wrong.
local function url_problem(url)
  if type(url) ~= "string" then
    return format("url must be a string, got %s", type(url))
  end
  if url:find("^https://") then
    return format("%q: https is not supported; terminate TLS in front of "
      .. "the backend", url)
  end
  local rest = url:match("^http://(.*)$")
  if not rest then
    return format("%q: expected http://host[:port][/base]", url)
  end
  local authority, base = rest:match("^([^/]*)(.*)$")
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^(%[[%x:%.]+%])(.*)$")
  else
    host, port = authority:match("^([%w%.%-_]+)(.*)$")
  end
  if not host then return format("%q: missing or malformed host", url) end
  if port ~= "" then
    local n = tonumber(port:match("^:(%d+)$"))
    if not n or n < 1 or n > 65535 then
      return format("%q: port must be a number from 1 to 65535", url)
    end
  end
  if base ~= "" and base:find("[%s?#]") then
    return format("%q: the base path may not hold spaces, a query or a "
      .. "fragment", url)
  end
  return nil
end

local function ms_problem(opts, name)
  local v = opts[name]
  if v == nil then return nil end
  if type(v) ~= "number" or not (v > 0) or v == huge then
    return format("opts.%s must be a positive number of milliseconds", name)
  end
  return nil
end

local function opts_problem(opts)
  if type(opts) ~= "table" then return "opts must be a table" end
  local p = ms_problem(opts, "timeout_ms")
    or ms_problem(opts, "connect_timeout_ms")
  if p then return p end
  local maxc = opts.max_connections
  if maxc ~= nil and (type(maxc) ~= "number" or maxc < 1
      or floor(maxc) ~= maxc or maxc == huge) then
    return "opts.max_connections must be a positive integer"
  end
  if opts.host ~= nil and type(opts.host) ~= "string" then
    return "opts.host must be a string"
  end
  return nil
end

return function(url, opts)
  if opts == nil then opts = {} end
  local problem = url_problem(url) or opts_problem(opts)
  if problem then error("shadow.http: " .. problem, 2) end
  return {
    kind = "http",
    url = url,
    timeout_ms = opts.timeout_ms or 5000,
    connect_timeout_ms = opts.connect_timeout_ms or 1000,
    max_connections = opts.max_connections,
    host = opts.host,
  }
end
