-- The README's quick start, as a newcomer follows it: `shadowd --config
-- examples/demo.lua` (what scripts/demo runs once it has built) in a
-- scratch working directory, then the README's curl lines, read from the
-- README itself. Only the demo's two fixed ports (8080, 9090) are
-- replaced by free ones, in examples/demo.lua and in the curl lines; the
-- spec fails when either text no longer holds them. Checked: what the
-- README says shows up does (the renamed email, the lower-cased name,
-- the dropped cache-control, 404 against 500, the search order, the
-- ignored generated_at), the record has the keys of the README's sample,
-- the dashboard answers, and capture.ndjson lands in the directory
-- shadowd runs in. Then "In front of two real services": the README's
-- config is examples/two-services.lua (without the file's opening
-- comment), and the README's five lines run as written from a scratch
-- checkout, its four ports replaced, in front of two nginx backends.
local docs = require "support.docs"
local process = require "support.process"
local port = require "support.port"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"
local shadowd = require "support.shadowd"
local nginx = require "support.nginx"

local README, QUICK = "README.md", "Quick start"

-- The demo config and the README's curl lines on this run's ports.
local function ported(lport, aport)
  local demo = docs.substitute(docs.read("examples/demo.lua"), {
    { '"127.0.0.1:8080"', ('"127.0.0.1:%d"'):format(lport) },
    { '"127.0.0.1:9090"', ('"127.0.0.1:%d"'):format(aport) },
  }, "examples/demo.lua")
  local curls = docs.substitute(docs.block(README, QUICK, 2, "sh"), {
    { "localhost:8080/", ("localhost:%d/"):format(lport) },
    { "localhost:9090/", ("localhost:%d/"):format(aport) },
  }, README .. "'s quick-start curl lines")
  return demo, docs.commands(curls)
end

local function by_path(records)
  local out = {}
  for _, r in ipairs(records) do out[r.path] = out[r.path] or r end
  return out
end

local function ops_of(rec)
  local ops = {}
  for _, op in ipairs(rec.body.diffs or {}) do
    ops[op.op .. " " .. op.path] = op
  end
  return ops
end

describe("the README's quick start", function()
  it("says what scripts/demo runs, and scripts/demo runs it", function()
    local readme = docs.section(README, QUICK)
    assert.truthy(readme:find("`scripts/demo` runs `shadowd --config "
      .. "examples/demo.lua`", 1, true), readme)
    local demo = docs.read("scripts/demo")
    assert.truthy(demo:find('\nexec "$root/build/shadowd" --config '
      .. '"$root/examples/demo.lua"\n', 1, true), demo)
    assert.truthy(demo:find('\nbash scripts/build\n', 1, true), demo)
  end)

  it("shows each divergence the README promises, in the record's shape",
     function()
    local stop = cleanup.new()
    finally(stop.run)
    local lport, aport = port.free(), port.free()
    local demo, cmds = ported(lport, aport)
    assert.are.equal(5, #cmds, table.concat(cmds, "\n"))
    local dir = docs.checkout{ ["examples/demo.lua"] = demo }
    stop.add(function() process.rmdir(dir) end)
    local proc = process.spawn({ shadowd.binary(), "--config",
                                 "examples/demo.lua" },
      { cwd = dir, stdout = dir .. "/stdout", stderr = dir .. "/stderr" })
    stop.add(function()
      proc:stop(10)
      local report = shadowd.sanitizer_report(proc:output())
      assert(not report, report)
    end)
    assert(port.wait(lport, 15, proc))
    assert(port.wait(aport, 15, proc))
    local function admin_stats()
      return json.decode(assert(http.get(aport, "/stats")).body)
    end

    -- The three requests, each line run by sh as written.
    local out = {}
    for i = 1, 3 do
      local code, o, e = docs.sh(cmds[i] .. "\n", dir)
      assert.are.equal(0, code, cmds[i] .. "\n" .. o .. e)
      out[i] = o
    end
    local u7 = json.decode(out[1])
    assert.are.equal("Eve", u7.user.name)           -- v1's answer
    assert.are.equal("eve@example.com", u7.user.email)
    assert.are.equal("no such user", json.decode(out[2]).error)
    assert.truthy(json.decode(out[3]).hits, out[3])
    -- The candidate's legs run to the side: wait for them by counter.
    assert(port.wait_until(function()
      return (admin_stats().totals.compared or 0) >= 3
    end, 10))

    local code, o, e = docs.sh(cmds[4] .. "\n", dir)
    assert.are.equal(0, code, cmds[4] .. "\n" .. o .. e)
    local list = json.decode(o).divergences
    assert.are.equal(3, #list, o)
    local recs = by_path(list)

    -- /users/7: renamed email, lower-cased name, dropped cache-control.
    local u = assert(recs["/users/7"], o)
    assert.are.equal("GET /users/:id", u.route)
    local ops = ops_of(u)
    assert.are.same({ "Eve", "eve" }, { ops["replace /user/name"].primary,
                                        ops["replace /user/name"].candidate })
    assert.are.equal("eve@example.com", ops["remove /user/email"].primary)
    assert.are.equal("eve@example.com",
                     ops["add /user/email_address"].candidate)
    assert.are.equal("3 fields differ", u.body.summary)
    for k in pairs(ops) do
      assert.is_nil(k:find("generated_at", 1, true), k) -- ignored
    end
    assert.is_true(u.headers.differs)
    local h = u.headers.diffs[1]
    assert.are.same({ "cache-control", "max-age=60", json.null },
                    { h.name, h.primary, h.candidate })

    -- /users/99: 404 against 500.
    local miss = assert(recs["/users/99"], o)
    assert.is_true(miss.status.differs)
    assert.are.same({ 404, 500 }, { miss.status.primary,
                                    miss.status.candidate })

    -- /search: the same hits in another order.
    local s = assert(recs["/search"], o)
    assert.is_false(s.status.differs)
    assert.is_true(s.body.differs)
    for _, op in ipairs(s.body.diffs) do
      assert.truthy(op.path:find("^/hits/"), json.encode(s.body))
    end

    -- The README's sample record: the same keys, at every level it shows;
    -- no top-level key the sample leaves out.
    local sample = json.decode(docs.block(README, QUICK, 1, "json"))
    assert.are.same({}, docs.missing_keys(sample, u))
    local extra = {}
    for k in pairs(u) do
      if sample[k] == nil then extra[#extra + 1] = k end
    end
    table.sort(extra)
    assert.are.same({}, extra)

    code, o, e = docs.sh(cmds[5] .. "\n", dir)
    assert.are.equal(0, code, cmds[5] .. "\n" .. o .. e)
    local stats = json.decode(o)
    assert.are.equal(3, stats.totals.compared)
    assert.are.equal(3, stats.totals.diverged)
    assert.are.equal("hold", stats.verdict.decision)

    -- "open http://127.0.0.1:9090/ for the dashboard"
    assert.truthy(docs.section(README, QUICK):find(
      "<http://127.0.0.1:9090/> for the dashboard", 1, true))
    local page = assert(http.get(aport, "/"))
    assert.are.equal(200, page.status)
    assert.truthy((page.headers["content-type"] or ""):find("text/html", 1,
                                                            true))

    -- "The demo also records every exchange into capture.ndjson", in the
    -- directory shadowd runs in (the checkout, under scripts/demo).
    proc:stop(10)
    local lines = process.read_lines(dir .. "/capture.ndjson")
    assert.are.equal(3, #lines)
    assert.are.equal("/users/7", json.decode(lines[1]).request.target)
  end)
end)

-- A user service and its rewrite (the candidate renamed `email`), each
-- with a request id and a timestamp that differ on every call.
local function users(email_field)
  return ([[
    location ~ ^/users/(\d+)$ { content_by_lua_block {
      local id = tonumber(ngx.var[1])
      ngx.header["content-type"] = "application/json"
      ngx.header["x-request-id"] = tostring(math.random(1e9))
      ngx.print(string.format(
        '{"user":{"id":%%d,"%s":"u%%d@example.com"},'
        .. '"meta":{"generated_at":%%.6f}}', id, id, ngx.now() + math.random()))
    } }
  ]]):format(email_field)
end

describe("the README's two real services", function()
  local TWO = "In front of two real services"
  local FILE = "examples/two-services.lua"

  it("shows the config file as it is", function()
    local file, n = docs.read(FILE), 1
    while n > 0 do file, n = file:gsub("^%-%-[^\n]*\n", "") end
    assert.are.equal(file, docs.block(README, TWO, 1, "lua"))
  end)

  it("runs the README's lines as written", function()
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = {
      primary = users("email"), candidate = users("email_address") } })
    local lport, aport = port.free(), port.free()
    local conf = docs.substitute(docs.read(FILE), {
      { '"127.0.0.1:8080"', ('"127.0.0.1:%d"'):format(lport) },
      { '"127.0.0.1:9090"', ('"127.0.0.1:%d"'):format(aport) },
      { '"http://127.0.0.1:8081"', ('%q'):format(ng:url("primary")) },
      { '"http://127.0.0.1:8082"', ('%q'):format(ng:url("candidate")) },
    }, FILE)
    local cmds = docs.commands(docs.substitute(
      docs.block(README, TWO, 1, "sh"), {
        { "localhost:8080/", ("localhost:%d/"):format(lport) },
        { "localhost:9090/", ("localhost:%d/"):format(aport) },
      }, README .. " (" .. TWO .. ")"))
    assert.are.equal(5, #cmds, table.concat(cmds, "\n"))
    local dir = docs.checkout{ [FILE] = conf }
    stop.add(function() process.rmdir(dir) end)

    local check = docs.command(cmds, " --check ")
    local code, out, err = docs.sh(check .. "\n", dir)
    assert.are.equal(0, code, check .. "\n" .. out .. err)
    assert.truthy(out:find("is valid", 1, true), out)

    -- The serving line, in the foreground as written: exec'd by sh, so
    -- the pid stopped is shadowd's.
    local serve = cmds[2]
    assert.truthy(serve:find("^build/shadowd %-%-config "), serve)
    local proc = process.spawn({ "sh", "-c", "exec " .. serve }, { cwd = dir,
      stdout = dir .. "/stdout", stderr = dir .. "/stderr" })
    stop.add(function()
      proc:stop(10)
      local report = shadowd.sanitizer_report(proc:output())
      assert(not report, report)
    end)
    assert(port.wait(lport, 15, proc))
    assert(port.wait(aport, 15, proc))

    code, out, err = docs.sh(cmds[3] .. "\n", dir)
    assert.are.equal(0, code, cmds[3] .. "\n" .. out .. err)
    assert.are.equal("u7@example.com", json.decode(out).user.email)
    assert(port.wait_until(function()
      local s = json.decode(assert(http.get(aport, "/stats")).body)
      return (s.totals.compared or 0) >= 1
    end, 10))

    code, out, err = docs.sh(cmds[4] .. "\n", dir)
    assert.are.equal(0, code, cmds[4] .. "\n" .. out .. err)
    local list = json.decode(out).divergences
    assert.are.equal(1, #list, out)
    assert.are.equal("7", list[1].key)
    assert.is_false(list[1].headers.differs)   -- x-request-id is ignored
    local ops = ops_of(list[1])
    assert.truthy(ops["remove /user/email"] and ops["add /user/email_address"],
                  out)
    for k in pairs(ops) do assert.is_nil(k:find("generated_at", 1, true), k) end

    code, out, err = docs.sh(cmds[5] .. "\n", dir)
    assert.are.equal(0, code, cmds[5] .. "\n" .. out .. err)
    local stats = json.decode(out)
    assert.are.equal(1, stats.totals.diverged)
    assert.truthy(stats.verdict and stats.verdict.decision, out)
  end)
end)
