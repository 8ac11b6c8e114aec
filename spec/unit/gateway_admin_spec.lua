-- shadow.gateway.admin renders a store snapshot; these are the readings a
-- snapshot can hold while other workers count.
require "env" -- libshadow on package.cpath, for shadow.verdict
local admin = require "shadow.gateway.admin"
local cjson = require "cjson"

-- A reading that caught a route's diverged a pair ahead of its compared:
-- the dict is read a key at a time, and a pair counts compared first.
local function ahead()
  return {
    totals = { requests = 9, sampled = 7, compared = 5, diverged = 6 },
    routes = { users = { sampled = 7, compared = 5, diverged = 6 } },
    families = { ce = {}, sk = {}, se = {}, rh = {}, f = {} },
  }
end

describe("shadow.gateway.admin", function()
  it("holds diverged to compared in /stats when a reading caught it ahead",
     function()
    local doc = cjson.decode(admin.stats(ahead(), "closed"))
    assert.equal(5, doc.totals.compared)
    assert.equal(5, doc.totals.diverged)
    assert.equal(5, doc.routes.users.diverged)
    assert.equal(5, doc.verdict.compared)
    assert.equal(5, doc.routes.users.verdict.diverged)
  end)
end)
