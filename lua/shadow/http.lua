-- shadow.http(url, opts): a backend descriptor for configs, plain data:
-- { kind = "http", url = url, <opts> }. It needs no C library, so a config
-- can be written and read anywhere. What the URL and the options may be is
-- checked where they are used, once: shadowd's config reader (the fields
-- and their ranges, naming the field at fault) and its upstream client
-- (the URL grammar), so --check and a reload refuse a bad backend the same
-- way. Only what no reader could report sensibly is refused here, at the
-- caller's line (level 2).
local error, format, pairs, type = error, string.format, pairs, type

return function(url, opts)
  if type(url) ~= "string" then
    error(format("shadow.http: url must be a string, got %s", type(url)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(format("shadow.http: opts must be a table, got %s", type(opts)), 2)
  end
  local d = {}
  for k, v in pairs(opts or {}) do d[k] = v end
  d.kind, d.url = "http", url
  return d
end
