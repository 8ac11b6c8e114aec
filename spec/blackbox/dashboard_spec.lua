-- The dashboard in a real browser: Debian's chromium, headless, loads GET /
-- from a shadowd that has seen diverging traffic, runs the page's own
-- script against the live admin port, and the DOM it ends with must show
-- the verdict with its reason, a route row with both sides' latencies, a
-- grouped divergence, the side-by-side view and the chart, and no secret.
-- Screenshots (laptop and phone widths) go to $SHADOW_BUILD_DIR/test-output/.
local nginx = require "support.nginx"
local shadowd = require "support.shadowd"
local cleanup = require "support.cleanup"
local http = require "support.http"
local process = require "support.process"

local browser = require "support.browser"

local function backend(version)
  return ([[
    location /users {
      content_by_lua_block {
        ngx.header["content-type"] = "application/json"
        ngx.header["set-cookie"] = "sid=v%d-cookie-secret"
        ngx.print('{"user":{"id":7,"name":"%s","tags":["a","b"]},"version":%d}')
      }
    }
    location /same {
      content_by_lua_block {
        ngx.header["content-type"] = "application/json"
        ngx.print('{"ok":true}')
      }
    }
  ]]):format(version, version == 1 and "Ann" or "ann", version)
end

describe("the dashboard in chromium", function()
  it("shows the verdict, routes with latencies, grouped divergences and the chart",
     function()
    if not browser.available() then
      pending("chromium is not installed (scripts/bootstrap installs it)")
      return
    end
    local stop = cleanup.new()
    finally(stop.run)
    local ng = stop.add(nginx.start{ servers = { primary = backend(1),
                                                 candidate = backend(2) } })
    local d = stop.add(shadowd.start{ primary = ng:url("primary"),
                                      candidate = ng:url("candidate"),
                                      rate = 1.0 })
    for k = 1, 30 do
      assert.equal(200, assert(http.get(d.port, "/users?id=" .. k)).status)
      assert.equal(200, assert(http.get(d.port, "/same")).status)
    end
    local stats = d:wait_totals("compared", 60)
    assert.equal("hold", stats.verdict.decision)
    local dir = process.tmpdir("shadow-chromium")
    stop.add(function() process.rmdir(dir) end)
    local url = "http://127.0.0.1:" .. d.admin_port .. "/"

    local dom = browser.run(dir, url, { "--dump-dom" })
    assert.matches('data%-ready="1"', dom) -- the page's tick completed
    -- The verdict with its reason.
    assert.matches('<span id="verdict" class="hold">hold</span>', dom)
    local reason = stats.verdict.reason:gsub("%p", "%%%0")
    assert.matches('<span id="reason">' .. reason .. '</span>', dom)
    -- A route row with the latency of both sides, p50 / p99.
    local row = dom:match('<tr data%-route="GET /users">.-</tr>')
    assert.is_not_nil(row, "no route row")
    assert.matches('<td class="n">30</td><td class="n">30 ', row)
    assert.matches('<span class="p">P [%d.]+ / [%d.]+</span>', row)
    assert.matches('<span class="c">C [%d.]+ / [%d.]+</span>', row)
    local same = dom:match('<tr data%-route="GET /same">.-</tr>')
    assert.matches("insufficient%-data", same)
    -- Grouped divergences: the thirty are one signature.
    local groups = dom:match('<tbody id="groups">(.-)</tbody>')
    local n = 0
    for count in groups:gmatch('<tr data%-sig="%x+"[^>]*><td class="n">(%d+)</td>') do
      assert.equal("30", count)
      n = n + 1
    end
    assert.equal(1, n)
    assert.matches("body:/user/name", groups)
    -- One of them side by side: the path, then each side's value.
    local rows = dom:match('<tbody id="detail%-rows">(.-)</tbody>')
    assert.matches('<code>/user/name</code></td><td class="pv"><code>"Ann"</code>'
                   .. '</td><td class="cv"><code>"ann"</code>', rows)
    assert.matches("header set%-cookie", rows)
    -- The chart has a line for the rate, and bars.
    assert.matches('<path id="rate%-line" d="M[%d.,LM ]+"', dom)
    assert.matches("<rect ", dom:match('<svg id="chart%-svg".-</svg>'))
    -- Secrets stay redacted on the page too.
    assert.is_nil(dom:find("cookie-secret", 1, true))
    assert.matches("%[redacted hmac%-sha256:%x+%]", rows)

    -- Screenshots at a laptop's and a phone's width.
    local out = browser.output_dir()
    for name, size in pairs({ dashboard = "1280,1400",
                              ["dashboard-phone"] = "412,1800" }) do
      local png = out .. "/" .. name .. ".png"
      os.remove(png)
      browser.run(dir, url, { "--window-size=" .. size, "--screenshot=" .. png })
      local data = process.read_file(png)
      assert.is_not_nil(data, png)
      assert.equal("\137PNG", data:sub(1, 4))
      assert.is_true(#data > 20000, png .. " is " .. #data .. " bytes")
    end
  end)
end)
