-- Checks a gateway's conf (the daemon's config fields that apply inside
-- nginx, plus shared_dict) and fills in the daemon's defaults. Errors name
-- the field, and are raised at gw.new's caller, so `nginx -t` and a
-- reload show what is wrong. M.validate is everything gw.new checks, and
-- needs nothing of nginx: `shadowd check-gateway conf.lua` runs the same
-- code outside it, so a typo is found before nginx loads the conf.
local http = require "shadow.http"
local redis_url = require("shadow.gateway.redis").parse_url
local redact = require "shadow.redact"
local compile = require("shadow.opts").compile
local verdict = require("shadow.verdict").verdict

local error, format, ipairs, pairs, pcall, tonumber, tostring, type =
  error, string.format, ipairs, pairs, pcall, tonumber, tostring, type
local floor, huge, upper = math.floor, math.huge, string.upper

local M = {}

-- Fields of a daemon config that mean nothing inside nginx (nginx listens
-- and proxies to the primary itself): accepted, so one config file can
-- serve both, and ignored.
local DAEMON_ONLY = { listen = true, admin = true, primary = true,
                      secondary = true, watch = true,
                      drain_timeout_ms = true }

local KNOWN = { shared_dict = true, candidate = true, sample = true,
                mirror_methods = true, route = true, rewrite = true,
                normalize = true, ignore = true, arrays = true,
                tolerance = true, rename = true, coerce = true,
                mask = true, time = true, breaker = true,
                max_inflight_shadow = true, limits = true, slo = true,
                redact = true, log = true, on_divergence = true,
                admin_token = true, forwarded = true, store = true }

local function fail(fmt, ...)
  error("shadow.gateway: " .. format(fmt, ...), 0)
end

local function fn_or_nil(v, name)
  if v ~= nil and type(v) ~= "function" then
    fail("%s must be a function", name)
  end
  return v
end

local function number(t, name, prefix, default, lo, hi, whole)
  local v = t and t[name]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi
      or (whole and floor(v) ~= v) then
    fail("%s%s must be a %s from %s to %s", prefix, name,
         whole and "whole number" or "number", tostring(lo), tostring(hi))
  end
  return v
end

local function only(t, name, allowed)
  if t == nil then return end
  if type(t) ~= "table" then fail("%s must be a table", name) end
  for k in pairs(t) do
    if not allowed[k] then
      fail("unknown field %s.%s", name, tostring(k))
    end
  end
end

local function ms(c, name, default)
  local v = c[name]
  if v == nil then return default end
  if type(v) ~= "number" or not (v > 0) or v == huge then
    fail("candidate %s must be a positive number of milliseconds", name)
  end
  return v
end

-- The candidate: a URL or a shadow.http descriptor, checked here (the
-- gateway has no config reader of its own to do it later).
local function candidate(c)
  if type(c) == "string" then
    local ok, d = pcall(http, c)
    if not ok then fail("candidate: %s", (d:gsub("^shadow.http: ", ""))) end
    c = d
  end
  if type(c) ~= "table" or c.kind ~= "http" or type(c.url) ~= "string" then
    fail("candidate must be an http:// URL or shadow.http(url, opts)")
  end
  if c.url:find("^https://") then
    fail("candidate %q: https is not supported by the gateway yet; "
      .. "terminate TLS in front of the candidate", c.url)
  end
  local rest = c.url:match("^http://(.*)$")
  if not rest then fail("candidate %q: expected http://host[:port][/base]", c.url) end
  local authority, base = rest:match("^([^/]*)(.*)$")
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:%.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([%w%.%-_]+):?(%d*)$")
  end
  local n = tonumber(port) or 80
  if not host or n < 1 or n > 65535 then
    fail("candidate %q: expected http://host[:port][/base]", c.url)
  end
  if base:find("[%s?#]") then
    fail("candidate %q: the base path may not hold spaces, a query or a "
      .. "fragment", c.url)
  end
  if c.host ~= nil and type(c.host) ~= "string" then
    fail("candidate host must be a string")
  end
  local maxc = c.max_connections
  if maxc ~= nil and (type(maxc) ~= "number" or maxc < 1
      or floor(maxc) ~= maxc or maxc == huge) then
    fail("candidate max_connections must be a positive whole number")
  end
  base = base:gsub("/$", "")
  return {
    url = c.url,
    host = host,
    port = n,
    base = base,
    host_header = c.host,
    authority = authority,
    connect_timeout = ms(c, "connect_timeout_ms", 1000),
    head_timeout = ms(c, "timeout_ms", 5000),
    read_timeout = ms(c, "read_timeout_ms", 60000),
    pool_size = maxc,
  }
end

local function methods(list)
  if list == nil then list = { "GET", "HEAD", "OPTIONS" } end
  if type(list) ~= "table" then
    fail("mirror_methods must be a list of method names")
  end
  local set = {}
  for i, m in ipairs(list) do
    if type(m) ~= "string" or not m:match("^%a+$") then
      fail("mirror_methods[%d] is not an HTTP method", i)
    end
    if upper(m) == "CONNECT" then
      fail("mirror_methods[%d]: CONNECT is never mirrored", i)
    end
    set[upper(m)] = true
  end
  return set
end

-- The fleet store: shadow.redis(url, opts), checked here. Returns the
-- gateway's view of it: where Redis is, how to reach it, the key prefix
-- (a hash tag, so a cluster keeps all of one deployment's keys in one
-- slot), and the flush period.
local STORE_OPTS = { prefix = true, flush_ms = true, ttl_s = true,
                     password = true, username = true, user = true,
                     tls = true, timeout_ms = true,
                     connect_timeout_ms = true, instance = true,
                     db = true,
                     -- The daemon's, accepted so one file serves both: the
                     -- gateway keeps no pending queue (its deltas are its
                     -- counters) and always follows MOVED and ASK.
                     max_pending = true, cluster = true, sentinel = true }

local function store(s)
  if s == nil then return nil end
  if type(s) ~= "table" or s.kind ~= "redis" then
    fail("store must be shadow.redis(url, opts)")
  end
  local u, err = redis_url(s.url)
  if not u then fail("store: %s", err) end
  local o = s.opts or s
  for k in pairs(o) do
    if not STORE_OPTS[k] and k ~= "kind" and k ~= "url" and k ~= "opts" then
      fail("unknown field store.%s", tostring(k))
    end
  end
  local sentinel
  if o.sentinel ~= nil then
    only(o.sentinel, "store.sentinel", { addrs = true, master = true })
    local addrs = o.sentinel.addrs
    if type(addrs) ~= "table" or #addrs == 0 then
      fail("store.sentinel.addrs must be a list of \"host:port\"")
    end
    sentinel = { addrs = {} }
    for i, a in ipairs(addrs) do
      local h, p
      if type(a) == "string" then h, p = a:match("^(.+):(%d+)$") end
      if not h or tonumber(p) < 1 or tonumber(p) > 65535 then
        fail("store.sentinel.addrs: \"%s\" is not host:port", tostring(a))
      end
      sentinel.addrs[i] = { host = h:match("^%[(.*)%]$") or h,
                            port = tonumber(p) }
    end
    if type(o.sentinel.master) ~= "string" or o.sentinel.master == "" then
      fail("store.sentinel needs master (the name sentinels know the "
        .. "primary by)")
    end
    sentinel.master = o.sentinel.master
    if o.cluster then
      fail("store: sentinel and cluster do not go together")
    end
  end
  local prefix = o.prefix == nil and "shadow" or o.prefix
  if type(prefix) ~= "string" or prefix == "" or prefix:find("[%s%z]") then
    fail("store.prefix must be a non-empty string without spaces")
  end
  local tls = o.tls
  if tls ~= nil and tls ~= false and tls ~= true and type(tls) ~= "table"
  then
    fail("store.tls must be true, false or { verify =, server_name = }")
  end
  if type(tls) == "table" then
    only(tls, "store.tls", { verify = true, server_name = true,
                             ca_file = true, cert_file = true,
                             key_file = true })
    if tls.ca_file ~= nil then
      fail("store.tls.ca_file: nginx takes the CA from "
        .. "lua_ssl_trusted_certificate; set that directive instead")
    end
    if tls.cert_file ~= nil or tls.key_file ~= nil then
      fail("store.tls: a client certificate is not supported by the "
        .. "gateway yet")
    end
    if tls.server_name ~= nil and type(tls.server_name) ~= "string" then
      fail("store.tls.server_name must be a string")
    end
  end
  if tls == true or (tls == nil and u.tls) then tls = {} end
  if tls == false then tls = nil end
  local user = o.username or o.user or u.user
  local password = o.password or u.password
  if user ~= nil and type(user) ~= "string" then
    fail("store.username must be a string")
  end
  if password ~= nil and type(password) ~= "string" then
    fail("store.password must be a string")
  end
  if user and not password then
    fail("store: a user needs a password")
  end
  if o.instance ~= nil and (type(o.instance) ~= "string"
      or o.instance == "") then
    fail("store.instance must be a non-empty string")
  end
  local flush_ms = number(o, "flush_ms", "store.", 1000, 10, 3600000, true)
  local timeout = number(o, "timeout_ms", "store.", 1000, 1, 600000)
  return {
    url = s.url,
    host = u.host,
    port = u.port,
    db = number(o, "db", "store.", u.db, 0, 1e6, true),
    tls = tls,
    user = user,
    password = password,
    -- One hash tag for every key: {prefix}:..., unless the prefix has a
    -- tag of its own.
    base = prefix:find("{", 1, true) and prefix or ("{" .. prefix .. "}"),
    prefix = prefix,
    flush_ms = flush_ms,
    ttl_s = number(o, "ttl_s", "store.", 86400, 1, 1e9, true),
    timeout = timeout,
    connect_timeout = number(o, "connect_timeout_ms", "store.", timeout, 1,
                             600000),
    instance = o.instance,
    sentinel = sentinel,
    pool_size = 4,
  }
end

-- Returns the checked conf with defaults filled in. `dicts` is
-- ngx.shared (passed in so this file runs outside nginx too).
function M.check(conf, dicts)
  if type(conf) ~= "table" then fail("new takes a table") end
  for k in pairs(conf) do
    if not KNOWN[k] and not DAEMON_ONLY[k] then
      fail("unknown field %s", tostring(k))
    end
  end
  local name = conf.shared_dict
  if type(name) ~= "string" then
    fail('shared_dict must name a lua_shared_dict (lua_shared_dict %s 10m;)',
         "shadow")
  end
  local dict = dicts and dicts[name]
  if not dict then
    fail("no lua_shared_dict named %q in the http block", name)
  end
  if conf.candidate == nil then fail("candidate is required") end
  local sample = conf.sample or {}
  only(conf.sample, "sample", { rate = true, key = true, filter = true,
                                secondary_rate = true })
  only(conf.breaker, "breaker", { failures = true, cooldown_ms = true })
  only(conf.log, "log", { capacity = true, file = true })
  if conf.log and conf.log.file ~= nil then
    fail("log.file is not written by the gateway; use on_divergence, or "
      .. "read /_shadow/divergences")
  end
  only(conf.redact, "redact", { headers = true, json = true, key = true })
  local redact_key = conf.redact and conf.redact.key
  if redact_key ~= nil and (type(redact_key) ~= "string"
      or #redact_key < redact.KEY_MIN) then
    fail(("redact.key must be a string of at least %d bytes")
      :format(redact.KEY_MIN))
  end
  if conf.redact and conf.redact.json ~= nil then
    fail("redact.json is not supported by the gateway yet; only "
      .. "redact.headers")
  end
  local limits = conf.limits
  if limits ~= nil and type(limits) ~= "table" then
    fail("limits must be a table")
  end
  if conf.admin_token ~= nil and (type(conf.admin_token) ~= "string"
      or conf.admin_token == "") then
    fail("admin_token must be a non-empty string")
  end
  local redact_headers = conf.redact and conf.redact.headers
    or redact.DEFAULT_HEADERS
  if type(redact_headers) ~= "table" then
    fail("redact.headers must be a list of header names")
  end
  local out = {
    dict = dict,
    dict_name = name,
    candidate = candidate(conf.candidate),
    rate = number(sample, "rate", "sample.", 0, 0, 1),
    key = fn_or_nil(sample.key, "sample.key"),
    filter = fn_or_nil(sample.filter, "sample.filter"),
    methods = methods(conf.mirror_methods),
    route = fn_or_nil(conf.route, "route"),
    rewrite = fn_or_nil(conf.rewrite, "rewrite"),
    normalize = fn_or_nil(conf.normalize, "normalize"),
    on_divergence = fn_or_nil(conf.on_divergence, "on_divergence"),
    breaker_failures = number(conf.breaker, "failures", "breaker.", 5, 1,
                              1e9, true),
    breaker_cooldown_ms = number(conf.breaker, "cooldown_ms", "breaker.",
                                 10000, 0, 1e12),
    max_inflight = number(conf, "max_inflight_shadow", "", 256, 0, 1e9,
                          true),
    diff_bytes = number(limits, "diff_bytes", "limits.", 2 ^ 20, 0, 1e12,
                        true),
    mirror_body_bytes = number(limits, "mirror_body_bytes", "limits.",
                               8 * 2 ^ 20, 0, 1e12, true),
    capacity = number(conf.log, "capacity", "log.", 1000, 1, 1e6, true),
    slo = conf.slo,
    redact = redact.set(redact_headers),
    redact_key = redact_key,
    admin_token = conf.admin_token,
    forwarded = conf.forwarded ~= false,
    store = store(conf.store),
    diff_opts = { ignore = conf.ignore, arrays = conf.arrays,
                  tolerance = conf.tolerance, rename = conf.rename,
                  coerce = conf.coerce, mask = conf.mask, time = conf.time },
  }
  out.diff_opts.diff_bytes = out.diff_bytes
  -- Like the daemon's candidate pool: as many idle connections kept as
  -- legs may be in flight, so a slow candidate does not cost a new
  -- connection per leg.
  if not out.candidate.pool_size then
    out.candidate.pool_size = out.max_inflight > 0 and out.max_inflight or 256
  end
  if out.max_inflight == 0 then out.max_inflight = huge end
  return out
end

-- What gw.new checks, in its order and with its messages: the fields
-- (M.check), the slo (by the verdict it will compute), and the diff rules
-- (compiled by libshadow, which reports a bad ignore/arrays/tolerance).
-- Returns the checked conf and the compiled diff options, or raises.
function M.validate(conf, dicts)
  local c = M.check(conf, dicts)
  local vok, verr = pcall(verdict, 0, 0, c.slo)
  if not vok then fail("%s", verr) end
  local cok, opts = pcall(compile, c.diff_opts)
  if not cok then fail("bad diff options: %s", opts) end
  return c, opts
end

return M
