-- `shadowd diff --explain` lists every difference a rule absorbed: those
-- of the JSON rules, and those of normalize (the pair as received against
-- the pair normalized) and of ignore.headers (a header never compared),
-- each with the rule; the folder mode counts them too, and a normalize
-- that fails is said to have failed.
local shadowd = require "support.shadowd"
local process = require "support.process"

local PRIMARY = "HTTP/1.1 200 OK\nContent-Type: application/json\n"
  .. "X-Request-Id: aaa\nX-Trace: 1\nX-Same: s\n\n"
  .. '{"id":1,"ts":"2024-01-01","name":"x"}'
local CANDIDATE = "HTTP/1.1 200 OK\nContent-Type: application/json\n"
  .. "X-Request-Id: bbb\nX-Trace: 2\nX-Same: s\n\n"
  .. '{"id":1,"ts":"2025-02-02","name":"y"}'

local RULES = [[
return {
  primary = "http://127.0.0.1:1",
  ignore = { headers = { "x-request-id", "x-same" } },
  normalize = function(res, side)
    res.headers["x-trace"] = nil
    res.body = res.body:gsub('"ts":"[^"]*"', '"ts":"T"')
    return res
  end,
}
]]

describe("diff --explain", function()
  local dir
  before_each(function()
    dir = process.tmpdir("shadow-explain")
    process.write_file(dir .. "/n.primary", PRIMARY)
    process.write_file(dir .. "/n.candidate", CANDIDATE)
  end)
  after_each(function() process.rmdir(dir) end)

  local function diff(...)
    return process.run({ shadowd.binary(), "diff", ... }, nil, 30)
  end

  it("names what normalize and ignore.headers absorbed", function()
    process.write_file(dir .. "/rules.lua", RULES)
    local code, out, err = diff("--config", dir .. "/rules.lua", "--explain",
                                dir .. "/n.primary", dir .. "/n.candidate")
    assert.equal(1, code, err)
    local function has(text)
      assert.truthy(out:find(text, 1, true), out)
    end
    has("normalize changed the primary: header:x-trace, body:/ts\n")
    has("normalize changed the candidate: header:x-trace, body:/ts\n")
    has('absorbed  header x-trace: "1" ~ "2"  by normalize: different as '
        .. "received, the same once normalized\n")
    has('absorbed  /ts: "2024-01-01" ~ "2025-02-02"  by normalize')
    has('absorbed  header x-request-id: "aaa" ~ "bbb"  by ignore.headers '
        .. '"x-request-id"')
    -- An ignored header that agrees absorbed nothing.
    assert.is_nil(out:find("x-same", 1, true), out)
    has('reported  replace /name: "x" -> "y"')
    has("they differ; 3 differences absorbed by rules")
  end)

  it("counts them in the folder mode", function()
    process.write_file(dir .. "/rules.lua", RULES)
    process.write_file(dir .. "/n.expect", "differ\nbody:/name\n")
    local code, out, err = diff("--config", dir .. "/rules.lua", dir)
    assert.equal(0, code, out .. err)
    assert.matches("n%s+differ%s+differ%s+3%s+body:/name", out)
  end)

  it("says when normalize failed and the pair was compared as received",
     function()
    process.write_file(dir .. "/rules.lua", [[
return {
  primary = "http://127.0.0.1:1",
  normalize = function(res, side)
    if side == "candidate" then error("boom") end
    return res
  end,
}
]])
    local _, out = diff("--config", dir .. "/rules.lua", "--explain",
                        dir .. "/n.primary", dir .. "/n.candidate")
    assert.matches("normalize left the primary as received", out, 1, true)
    assert.matches("normalize failed on the candidate: it was compared as "
                   .. "received", out, 1, true)
  end)
end)
