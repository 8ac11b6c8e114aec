-- The gateway's admin answers, in the shapes and names of shadowd's admin
-- API (src/telemetry/stats_render.c): /divergences, /stats with the
-- verdict overall and per route, and /metrics in Prometheus text. Pure
-- rendering from a store snapshot; gateway.lua serves them.
local cjson = require "cjson"
local store_mod = require "shadow.gateway.store"
local verdict = require("shadow.verdict").verdict

local concat, format, gsub, ipairs, pairs, tostring =
  table.concat, string.format, string.gsub, ipairs, pairs, tostring

local keys = store_mod.keys
local BOUNDS = store_mod.BOUNDS

local M = {}

-- { "divergences": [ records, newest first ], "total": N }: the records
-- are the engine's text, spliced in as they are.
function M.divergences(texts, total)
  return '{"divergences":[' .. concat(texts, ",")
    .. format('],"total":%d}', total)
end

local function num(v) return v or 0 end

-- A route's compared and diverged as one count taken at once would show
-- them. The dict is read a key at a time while other workers count (and
-- the fleet's sums arrive flush by flush), and a pair counts compared
-- before diverged, so a reading can catch diverged a few pairs ahead:
-- the view holds it to compared (the verdict refuses it otherwise).
local function pair_counts(c, d)
  c, d = c or 0, d or 0
  if d > c then d = c end
  return c, d
end

-- The /stats document. breaker_state: "closed" | "open" | "half-open".
function M.stats(snap, breaker_state, slo, extra)
  local t = snap.totals
  local route_docs = {}
  for _, name in ipairs(keys(snap.routes)) do
    local r = snap.routes[name]
    local compared, diverged = pair_counts(r.compared, r.diverged)
    route_docs[name] = {
      sampled = num(r.sampled),
      compared = compared,
      diverged = diverged,
      parts = { status = num(r.status), headers = num(r.headers),
                body = num(r.body) },
      body_kinds = { json = num(r.body_json), bytes = num(r.body_bytes),
                     digest = num(r.body_digest),
                     protobuf = num(r.body_protobuf) },
      verdict = verdict(compared, diverged, slo),
    }
  end
  local compared, diverged = pair_counts(t.compared, t.diverged)
  local doc = {
    totals = {
      requests = num(t.requests),
      sampled = num(t.sampled),
      compared = compared,
      diverged = diverged,
      primary_errors = num(t.primary_errors),
      candidate_errors = snap.families.ce,
      skipped = snap.families.sk,
    },
    routes = route_docs,
    fields = snap.families.f,
    rule_hits = snap.families.rh,
    breaker = { state = breaker_state, open = breaker_state == "open" },
    script_errors = snap.families.se,
    reloads = {},
    last_reload = cjson.null,
    generation = 0,
    verdict = verdict(compared, diverged, slo),
  }
  for k, v in pairs(extra or {}) do doc[k] = v end
  return cjson.encode(doc)
end

-- Prometheus label values escape backslash, double quote and newline.
local function label(v)
  return (gsub(gsub(gsub(tostring(v), "\\", "\\\\"), '"', '\\"'), "\n",
               "\\n"))
end

local function scalar(out, metric, kind, help, v)
  out[#out + 1] = format("# HELP %s %s\n# TYPE %s %s\n%s %s\n", metric,
                         help, metric, kind, metric, format("%d", v))
end

local function family(out, metric, help, lname, counts)
  out[#out + 1] = format("# HELP %s %s\n# TYPE %s counter\n", metric, help,
                         metric)
  for _, k in ipairs(keys(counts)) do
    out[#out + 1] = format('%s{%s="%s"} %d\n', metric, lname, label(k),
                           counts[k])
  end
end

local function histogram(out, metric, help, h)
  out[#out + 1] = format("# HELP %s %s\n# TYPE %s histogram\n", metric, help,
                         metric)
  local cum = 0
  for i = 1, #BOUNDS do
    cum = cum + h.buckets[i]
    out[#out + 1] = format('%s_bucket{le="%g"} %d\n', metric, BOUNDS[i], cum)
  end
  out[#out + 1] = format('%s_bucket{le="+Inf"} %d\n%s_sum %.9g\n'
    .. "%s_count %d\n", metric, h.n, metric, h.sum, metric, h.n)
end

-- DECISIONS' numbers, as shadowd's shadow_verdict{route} has them.
local VERDICT_CODE = { promote = 1, ["insufficient-data"] = 0, hold = -1 }

-- opts (optional): { store = true } adds the fleet store's error and
-- drop counters; verdict_routes = the routes of the fleet's snapshot,
-- whose verdicts the shadow_verdict gauges then show (the counters stay
-- this node's own, so Prometheus sums them over the fleet).
function M.metrics(snap, breaker_open, slo, opts)
  opts = opts or {}
  local t, fam, out = snap.totals, snap.families, {}
  scalar(out, "shadow_requests_total", "counter",
         "Client requests received.", num(t.requests))
  scalar(out, "shadow_sampled_total", "counter",
         "Requests mirrored to the candidate.", num(t.sampled))
  scalar(out, "shadow_compared_total", "counter",
         "Primary and candidate response pairs compared.", num(t.compared))
  scalar(out, "shadow_primary_errors_total", "counter",
         "Requests the primary failed (answered 502 or 504).",
         num(t.primary_errors))
  out[#out + 1] = "# HELP shadow_divergences_total Compared pairs that "
    .. "differed, by route and part.\n# TYPE shadow_divergences_total "
    .. "counter\n"
  for _, name in ipairs(keys(snap.routes)) do
    local r = snap.routes[name]
    for _, part in ipairs({ "status", "headers" }) do
      if num(r[part]) > 0 then
        out[#out + 1] = format('shadow_divergences_total{route="%s",'
          .. 'part="%s"} %d\n', label(name), part, r[part])
      end
    end
    -- Body series by how the bodies were compared, as the daemon's.
    for _, kind in ipairs({ "json", "bytes", "digest", "protobuf" }) do
      local n = num(r["body_" .. kind])
      if n > 0 then
        out[#out + 1] = format('shadow_divergences_total{route="%s",'
          .. 'part="body",kind="%s"} %d\n', label(name), kind, n)
      end
    end
  end
  family(out, "shadow_candidate_errors_total",
         "Candidate legs that failed, by reason.", "reason", fam.ce)
  family(out, "shadow_skipped_total",
         "Requests that would have been mirrored but were not, by reason.",
         "reason", fam.sk)
  histogram(out, "shadow_primary_latency_seconds",
            "Primary response latency.", snap.hist.primary)
  histogram(out, "shadow_candidate_latency_seconds",
            "Candidate response latency.", snap.hist.candidate)
  scalar(out, "shadow_breaker_open", "gauge",
         "1 while the candidate's circuit breaker is open.",
         breaker_open and 1 or 0)
  family(out, "shadow_script_errors_total", "Lua hook errors, by hook.",
         "hook", fam.se)
  family(out, "shadow_reloads_total", "Script reloads, by result.",
         "result", {})
  family(out, "shadow_rule_hits_total", "Comparisons in which a diff rule "
         .. "absorbed a difference or renamed a member, by rule.", "rule",
         snap.families.rh)
  if opts.store then
    family(out, "shadow_store_errors_total", "Fleet store flushes that "
           .. "failed, by reason.", "reason", fam.sx or {})
    scalar(out, "shadow_store_dropped_total", "counter", "Divergence "
           .. "records the ring overwrote before the fleet store got them.",
           num(t.store_dropped))
  end
  out[#out + 1] = "# HELP shadow_verdict Promotion verdict per route: 1 "
    .. "promote, 0 insufficient data, -1 hold.\n# TYPE shadow_verdict gauge\n"
  local vroutes = opts.verdict_routes or snap.routes
  for _, name in ipairs(keys(vroutes)) do
    local r = vroutes[name]
    local compared, diverged = pair_counts(r.compared, r.diverged)
    local v = verdict(compared, diverged, slo)
    out[#out + 1] = format('shadow_verdict{route="%s"} %d\n', label(name),
                           VERDICT_CODE[v.decision])
  end
  return concat(out)
end

return M
