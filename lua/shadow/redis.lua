-- shadow.redis(url, opts): the fleet store's descriptor for configs, plain
-- data like shadow.http: { kind = "redis", url = url, opts = opts } with
-- the options also copied to the top level, so a reader may take either.
-- It needs no C library and no connection: shadowd's config reader and
-- the gateway (shadow.gateway.conf) check the URL and the options where
-- they are used. Only what no reader could report sensibly is refused
-- here, at the caller's line (level 2).
local error, format, pairs, type = error, string.format, pairs, type

return function(url, opts)
  if type(url) ~= "string" then
    error(format("shadow.redis: url must be a string, got %s", type(url)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(format("shadow.redis: opts must be a table, got %s", type(opts)), 2)
  end
  local d = {}
  for k, v in pairs(opts or {}) do d[k] = v end
  d.kind, d.url, d.opts = "redis", url, opts or {}
  return d
end
