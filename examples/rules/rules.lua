-- A worked migration: the demo's service from v1 to v2 (service.lua),
-- with the rules that say which of v2's changes are intended. Run it as
-- a live shadow:
--   shadowd --config examples/rules/rules.lua
--   curl -s localhost:8080/users/7; curl -s localhost:9090/metrics | grep rule
-- or test the rules offline against the known pairs beside it:
--   shadowd diff --config examples/rules/rules.lua examples/rules/pairs
--   shadowd diff --config examples/rules/rules.lua --explain \
--     examples/rules/pairs/user-7.primary examples/rules/pairs/user-7.candidate
local rules = require "shadow.rules"
local service = require "service"

return {
  listen    = "127.0.0.1:8080",
  admin     = "127.0.0.1:9090",
  primary   = service.v1,
  candidate = service.v2,
  sample    = { rate = 1.0 },
  route     = function(req)
    return req.method .. " " .. req.path:gsub("/%d+", "/:id")
  end,

  -- v2 calls the e-mail "email_address": compare it with v1's "email".
  rename = { ["/user/email"] = "/user/email_address" },
  -- v2 sends ids as strings: "7" is 7.
  coerce = { ["/user/id"] = "number", ["/hits/*/id"] = "number" },
  -- Each response has a fresh request id: any two uuids are alike, but
  -- a request id that is not a uuid is a bug.
  mask = { ["/meta/request_id"] = "uuid" },
  -- Epoch seconds became RFC 3339: compare the instants, 2 s apart at
  -- most (the two legs answer at slightly different times).
  time = { ["/meta/generated_at"] = { unit = "instant", tolerance_ms = 2000 } },
  -- v2 orders search hits by name: pair them by id instead.
  arrays = { ["/hits"] = { key = "id" } },
  -- v2 stores names lower-cased, on purpose. No declarative rule says
  -- "equal ignoring case", so that one stays in Lua.
  normalize = function(rec)
    return rules.json(rec, function(body)
      rules.lower(body, "/user/name")
      rules.lower(body, "/hits/*/name")
    end)
  end,
}
