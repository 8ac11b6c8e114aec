-- shadow.redis(url, opts): the fleet store's descriptor for configs, plain
-- data: { kind = "redis", url = url, <opts> }, as shadow.http is for a
-- backend. The URL (redis://[user:password@]host:port/db or rediss://)
-- and the options are checked where they are used: shadowd's config reader
-- (naming the field at fault) and the gateway module's. Only what no
-- reader could report sensibly is refused here, at the caller's line.
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
  d.kind, d.url = "redis", url
  return d
end
