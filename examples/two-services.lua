-- Two real HTTP services: the one you run today (primary, port 8081) and
-- the one to replace it (candidate, port 8082). Clients call port 8080;
-- the admin API and the dashboard are on port 9090.
--   shadowd --check --config examples/two-services.lua
local shadow = require "shadow"
return {
  listen    = "127.0.0.1:8080",
  admin     = "127.0.0.1:9090",
  primary   = shadow.http("http://127.0.0.1:8081"),
  candidate = shadow.http("http://127.0.0.1:8082", { timeout_ms = 1000 }),
  sample    = { rate = 1.0,  -- every request; 0.01 to 0.1 under real load
                key = function(req) return req.headers["x-user-id"] end },
  ignore    = { headers = { "x-request-id" }, json = { "/meta/generated_at" } },
  slo       = { max_divergence_rate = 0.001, min_samples = 1000 },
}
