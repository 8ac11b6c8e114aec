-- The promotion verdict as an SRE watching a rollout sees it, with the
-- default slo (0.1% budget, 1000 samples): a candidate that always differs
-- is held within the first comparisons, long before min_samples, and says
-- why; an agreeing route waits for min_samples and says how many; the
-- dashboard shows each decision beside its reason.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local json = require "support.json"
local process = require "support.process"

-- The primary answers v1 everywhere; the candidate agrees on /same only.
local function answer(version)
  return ([[content_by_lua_block {
      ngx.header["content-type"] = "application/json"
      ngx.print('{"version":%d,"path":"' .. ngx.var.uri .. '"}')
    }]]):format(version)
end

local BACKENDS = {
  primary = "location / { " .. answer(1) .. " }",
  candidate = "location /same { " .. answer(1) .. " }\n"
    .. "    location / { " .. answer(2) .. " }",
}

-- The Wilson lower bound of n failures in n, written here from its
-- definition: the smaller root of (n + z^2) p^2 - (2n + z^2) p + n = 0,
-- which is n / (n + z^2).
local Z = 1.959963984540054
local function lower_all_failed(n) return n / (n + Z * Z) end

-- Runs the dashboard's own script under node against the live admin
-- port, with just enough of a DOM to record what it writes, and returns
-- what a person would see: { verdict, class, reason, routes (HTML) }.
local RENDER_JS = [[
const vm = require('vm');
const admin = process.argv[2];
(async () => {
  const page = await (await fetch(admin + '/')).text();
  const script = page.match(/<script>([\s\S]*?)<\/script>/)[1];
  const els = {};
  const el = id => els[id] || (els[id] = { textContent: '', innerHTML: '',
                                           className: '' });
  const ctx = vm.createContext({
    document: { getElementById: el }, location: { hash: '' },
    fetch: (u, o) => fetch(new URL(u, admin + '/'), o),
    setInterval: () => 0, URL, JSON, Object, String, console,
  });
  vm.runInContext(script, ctx);
  await ctx.tick();
  console.log(JSON.stringify({ verdict: el('verdict').textContent,
    class: el('verdict').className, reason: el('reason').textContent,
    routes: el('routes').innerHTML }));
})().catch(e => { console.error(e); process.exit(1); });
]]

local function have_node()
  return os.execute("command -v node >/dev/null 2>&1") == 0
end

describe("the verdict", function()
  local ng, d
  setup(function()
    ng = nginx.start{ servers = BACKENDS }
    d = shadowd.start{ primary = ng:url("primary"),
                       candidate = ng:url("candidate"), rate = 1.0 }
  end)
  teardown(function() cleanup.stop_all(d, ng) end)

  local held_at

  it("is insufficient-data before any comparison, saying what it needs",
     function()
    local v = d:stats().verdict
    assert.equal("insufficient-data", v.decision)
    assert.equal(0, v.compared)
    assert.equal("1000 comparisons needed, 0 so far", v.reason)
  end)

  it("holds a candidate that always differs within 50 comparisons",
     function()
    local stats
    for i = 1, 50 do
      local res = assert(http.get(d.port, "/differs",
                                  { ["x-user-id"] = "u" .. i }))
      assert.equal(200, res.status)
      assert.matches('"version":1', res.body, 1, true)
      stats = d:wait_totals("compared", i)
      assert.equal(i, stats.totals.compared)
      if stats.verdict.decision == "hold" then
        held_at = i
        break
      end
    end
    assert.is_not_nil(held_at, "still " .. stats.verdict.decision
      .. " after 50: " .. tostring(stats.verdict.reason))
    local v = stats.verdict
    assert.equal(held_at, v.diverged)
    assert.is_true(v.compared < 1000) -- min_samples did not hold it back
    assert.equal(0.001, v.budget)
    local bound = v.reason:match("^lower bound (%S+) above budget 0%.001$")
    assert.is_not_nil(bound, v.reason)
    assert.equal(tonumber(("%.3g"):format(lower_all_failed(held_at))),
                 tonumber(bound))
    assert.is_true(math.abs(v.lower - lower_all_failed(held_at)) < 1e-6)
  end)

  it("holds the route too, for the same reason", function()
    assert.is_not_nil(held_at)
    local stats = d:stats()
    local route = stats.routes["GET /differs"]
    assert.is_table(route, json.encode(stats.routes))
    assert.equal("hold", route.verdict.decision)
    assert.matches("^lower bound [%d.]+ above budget 0%.001$",
                   route.verdict.reason)
  end)

  it("keeps an agreeing route at insufficient-data below min_samples",
     function()
    assert.is_not_nil(held_at)
    for i = 1, 20 do
      local res = assert(http.get(d.port, "/same", { ["x-user-id"] = "s" .. i }))
      assert.equal(200, res.status)
    end
    local stats = d:wait_totals("compared", held_at + 20)
    local v = stats.routes["GET /same"].verdict
    assert.equal("insufficient-data", v.decision)
    assert.equal(20, v.compared)
    assert.equal(0, v.diverged)
    assert.equal("1000 comparisons needed, 20 so far", v.reason)
    -- Overall, the failing route's evidence still holds the candidate.
    assert.equal("hold", stats.verdict.decision)
  end)

  it("shows each decision beside its reason on the dashboard", function()
    if not have_node() then
      pending("node is not installed: cannot run the dashboard's script")
      return
    end
    local stats = d:stats()
    local dir = process.tmpdir("shadow-dashboard")
    process.write_file(dir .. "/render.js", RENDER_JS)
    local rc, out, err = process.run({ "node", dir .. "/render.js",
      "http://127.0.0.1:" .. d.admin_port }, nil, 30)
    process.rmdir(dir)
    assert.equal(0, rc, err)
    local seen = json.decode(out)
    assert.equal("hold", seen.verdict)
    assert.equal("hold", seen.class)
    assert.equal(stats.verdict.reason, seen.reason)
    -- Each route's row: the decision, then its reason.
    local differs = stats.routes["GET /differs"].verdict.reason
    assert.matches("hold</span> <span class=muted>" .. differs:gsub("%p", "%%%0")
                   .. "</span>", seen.routes)
    assert.matches("insufficient%-data</span> <span class=muted>1000 "
                   .. "comparisons needed, 20 so far</span>", seen.routes)
  end)
end)
