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

-- A shared dict stand-in that keeps the order of reads.
local function recording_dict(values, order)
  local reads = {}
  return {
    get_keys = function() return order end,
    get = function(_, key)
      reads[#reads + 1] = key
      return values[key]
    end,
  }, reads
end

describe("shadow.gateway.store snapshot", function()
  it("reads every route's compared count before any other tally", function()
    local store = require "shadow.gateway.store"
    local S = "\1"
    local values = {
      ["r" .. S .. "users" .. S .. "diverged"] = 4,
      ["r" .. S .. "users" .. S .. "sampled"] = 6,
      ["f" .. S .. "body:/name"] = 4,
      ["r" .. S .. "users" .. S .. "compared"] = 5,
      ["rh" .. S .. "ignore_date"] = 5,
      ["r" .. S .. "orders" .. S .. "compared"] = 2,
      ["c:requests"] = 9,
      ["rn" .. S .. "users"] = true,
      ["ring" .. S .. "id"] = 4,
    }
    -- The zone's order: tallies and families ahead of the compared counts.
    local order = {
      "r" .. S .. "users" .. S .. "diverged", "f" .. S .. "body:/name",
      "r" .. S .. "users" .. S .. "sampled", "rh" .. S .. "ignore_date",
      "r" .. S .. "users" .. S .. "compared", "c:requests",
      "rn" .. S .. "users", "ring" .. S .. "id",
      "r" .. S .. "orders" .. S .. "compared",
    }
    local dict, reads = recording_dict(values, order)
    local snap = store.new(dict, 10):snapshot()
    local last_compared, first_other = 0, math.huge
    for i, key in ipairs(reads) do
      if key:find("^r\1[^\1]*\1compared$") then
        last_compared = i
      elseif key:find("^r\1") or key:find("^f\1") or key:find("^rh\1") then
        first_other = math.min(first_other, i)
      end
    end
    assert.is_true(last_compared > 0)
    assert.is_true(last_compared < first_other)
    -- And the snapshot holds the same numbers as before.
    assert.equal(5, snap.routes.users.compared)
    assert.equal(4, snap.routes.users.diverged)
    assert.equal(6, snap.routes.users.sampled)
    assert.equal(2, snap.routes.orders.compared)
    assert.equal(7, snap.totals.compared)
    assert.equal(4, snap.totals.diverged)
    assert.equal(9, snap.totals.requests)
    assert.equal(4, snap.families.f["body:/name"])
    assert.equal(5, snap.families.rh.ignore_date)
    assert.is_nil(snap.routes.rn)
  end)
end)
