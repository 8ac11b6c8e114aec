-- `shadowd --help` is complete and true for every subcommand: each option
-- a subcommand's parser accepts appears in that subcommand's usage lines
-- and is explained below them, and each option the usage shows is one
-- the subcommand accepts (running it with the option does not say
-- "unknown" or "unrecognized").
local shadowd = require "support.shadowd"
local process = require "support.process"

-- What each parser accepts (src/daemon: offline_diff.c, replay.c,
-- export.c, check_gateway.c), kept here by hand: a new option must be
-- added here and to --help.
local ACCEPTED = {
  diff = { "--config", "--explain" },
  replay = { "--config", "--candidate", "--primary", "--rate",
             "--concurrency", "--out", "--summary", "--junit", "--junit-per",
             "--fixtures", "--record", "--quiet", "--max-line-bytes" },
  export = { "--har", "--fixtures", "--out", "--max-line-bytes" },
  ["check-gateway"] = { "--nginx-conf" },
}

-- The usage lines of a subcommand: those starting "shadowd SUB" and their
-- continuations (indented lines that do not start another usage).
local function usage_of(help, sub)
  local out, inside = {}, false
  for line in help:gmatch("([^\n]*)\n") do
    local cmd = line:match("^%s*usage: shadowd (%S+)")
      or line:match("^%s+shadowd (%S+)")
    if cmd then
      inside = cmd == sub
    elseif not line:match("^%s+%[") and not line:match("^%s+[A-Z_]+%.%.%.")
    then
      inside = false
    end
    if inside then out[#out + 1] = line end
  end
  return table.concat(out, "\n")
end

describe("shadowd --help", function()
  local help
  setup(function()
    local code, out = process.run({ shadowd.binary(), "--help" }, nil, 10)
    assert.equal(0, code)
    help = out
  end)

  for sub, opts in pairs(ACCEPTED) do
    it("shows and explains every option of " .. sub, function()
      local usage = usage_of(help, sub)
      assert.truthy(#usage > 0, "no usage line for " .. sub)
      for _, opt in ipairs(opts) do
        assert.truthy(usage:find(opt, 1, true),
                      opt .. " missing from the usage of " .. sub .. ":\n"
                        .. usage)
        -- Explained somewhere below the usage lines.
        local body = help:sub((help:find("\n\n", 1, true)))
        assert.truthy(body:find(opt, 1, true),
                      opt .. " is not explained:\n" .. help)
      end
    end)

    it("accepts every option its usage shows for " .. sub, function()
      for opt in usage_of(help, sub):gmatch("%-%-[%w%-]+") do
        local _, out, err = process.run({ shadowd.binary(), sub, opt,
                                          "/nonexistent/x" }, nil, 30)
        local text = (out .. err):lower()
        assert.is_nil(text:find("unknown option", 1, true),
                      sub .. " " .. opt .. ": " .. text)
        assert.is_nil(text:find("unrecognized option", 1, true),
                      sub .. " " .. opt .. ": " .. text)
      end
    end)
  end

  it("names diff's folder mode and what --explain lists", function()
    assert.matches("shadowd diff [--config FILE] [--explain] DIR", help, 1,
                   true)
    assert.matches("normalize", usage_of(help, "diff") .. help, 1, true)
    assert.matches("ignore.headers", help, 1, true)
  end)
end)
