-- A config to copy for a real migration: the primary is an HTTP service on
-- this machine, the candidate a managed one reached over HTTPS. Check it with
--   shadowd --check --config examples/shadow.lua
--   shadowd --check --config examples/shadow.lua --request 'GET /users/7' --header 'x-user-id: 7'
local shadow = require "shadow"
local cjson = require "cjson"

return {
  listen    = "127.0.0.1:8080",
  -- To terminate TLS for clients too (ALPN http/1.1; SIGHUP re-reads the
  -- files, so a renewed certificate needs no restart):
  -- listen = { addr = "0.0.0.0:8443",
  --            tls = { cert_file = "/etc/shadowd/tls.crt",
  --                    key_file = "/etc/shadowd/tls.key" } },
  admin     = "127.0.0.1:9090",
  -- timeout_ms runs from the request's last byte to the response head (a
  -- slow upload does not eat it); read_timeout_ms between two reads of a
  -- body (or two writes of an upload), so streams live while they move.
  primary   = shadow.http("http://127.0.0.1:8081", { timeout_ms = 5000,
                                                      read_timeout_ms = 60000 }),
  -- Verified against the system CA store, the name checked against
  -- server_name (sent as SNI). A private CA: tls.ca_file; mutual TLS:
  -- tls.cert_file and tls.key_file. Connections are pooled and sessions
  -- resumed; connect_timeout_ms bounds the handshake.
  candidate = shadow.http("https://127.0.0.1:8443", {
    timeout_ms = 250, max_connections = 256,
    tls = { server_name = "candidate.internal.example" },
  }),
  -- A second copy of the primary (same build, another instance): what
  -- differs between it and the primary is noise (timestamps, ids, order),
  -- learned per field and not counted. GET /noise proposes the rules.
  secondary = shadow.http("http://127.0.0.1:8082", { timeout_ms = 500 }),
  sample = {
    rate   = 0.10,
    secondary_rate = 0.02,   -- a fifth of the sampled requests get a 3rd leg
    key    = function(req) return req.headers["x-user-id"] end,
    filter = function(req) return req.path ~= "/healthz" end,
  },
  mirror_methods = { "GET", "HEAD", "OPTIONS" },
  route = function(req)
    return req.method .. " " .. req.path:gsub("/%d+", "/:id")
  end,
  -- The candidate lower-cases e-mail addresses on purpose: compare them
  -- lower-cased on both sides.
  normalize = function(rec, side, req)
    local ct = rec.headers["content-type"] or ""
    if ct:find("json", 1, true) then
      local ok, doc = pcall(cjson.decode, rec.body)
      if ok and type(doc) == "table" and type(doc.email) == "string" then
        doc.email = doc.email:lower()
        rec.body = cjson.encode(doc)
      end
    end
    return rec
  end,
  ignore = {
    headers = { "server", "x-request-id" },
    json    = { "/meta/generated_at", "/items/*/etag" },
  },
  arrays    = { ["/items"] = { key = "id" }, ["/tags"] = "set" },
  tolerance = { ["/price"] = 0.01 },
  -- Secrets become "[redacted hmac-sha256:<16 hex>]" in every record: an
  -- HMAC of the value under a random key per process, or under
  -- key = "..." (16 bytes or more) so marks agree across processes and
  -- with shadowd replay. These headers are the default; json takes JSON
  -- Pointers.
  redact  = { headers = { "authorization", "proxy-authorization", "cookie",
                          "set-cookie", "x-api-key", "x-auth-token" },
              json = { "/session/token" } },
  -- The file is rotated past 64 MiB, five old ones kept; SIGUSR1 reopens it.
  log     = { capacity = 1000, file = "divergences.ndjson",
              max_bytes = 64 * 2^20, keep = 5 },
  breaker = { failures = 5, cooldown_ms = 10000 },
  max_inflight_shadow = 256,
  -- Responses of any size stream; diff_bytes of each side is kept for the
  -- diff and the rest compared by digest. Uploads over mirror_body_bytes go
  -- to the primary only.
  limits  = { header_bytes = 65536, body_bytes = 8 * 2^20,
              mirror_body_bytes = 8 * 2^20, diff_bytes = 2^20,
              header_timeout_ms = 10000, idle_timeout_ms = 60000,
              -- Default: from RLIMIT_NOFILE (shadowd --check shows it).
              max_connections = 10000,
              -- A WebSocket (any 101 Upgrade) is relayed to the primary,
              -- never mirrored, and closed after this long without a byte;
              -- at most max_tunnels at once (default: half the connections).
              tunnel_idle_timeout_ms = 60000, max_tunnels = 5000,
              -- Request-body copies for the candidate, secondary and
              -- capture, all requests together; past it: not mirrored.
              copy_memory_bytes = 64 * 2^20 },
  -- A field is noise unless the candidate differs on it more often than
  -- the secondary at 99% confidence; decided after 100 pairs of each.
  noise   = { confidence = 0.99, min_samples = 100 },
  -- Hold, too, when the candidate's p99 is over 1.5 times the primary's.
  slo     = { max_divergence_rate = 0.001, min_samples = 1000,
              max_latency_ratio = 1.5 },
  watch   = true,
}
