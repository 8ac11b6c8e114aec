-- The FFI path is there so a gateway's hot loop can be JIT-compiled: the
-- sampling decision, called in a loop, must end up in a trace.
require "env"
local shadow = require "shadow"

describe("the JIT", function()
  it("traces a loop over shadow.sampled", function()
    if not jit or not jit.status() then
      pending("the JIT is off")
      return
    end
    local function loop(keys, n)
      local hits = 0
      for i = 1, n do
        if shadow.sampled(keys[i % #keys + 1], 0.3) then hits = hits + 1 end
      end
      return hits
    end
    local keys = {}
    for i = 1, 64 do keys[i] = "user-" .. i end
    shadow.sampled("warm", 0.3) -- loads the library outside the loop
    local traced = 0
    local function on_trace(what, tr, func)
      if what == "stop" and func == loop then traced = traced + 1 end
    end
    jit.attach(on_trace, "trace")
    local hits = loop(keys, 200000)
    jit.attach(on_trace)
    assert.is_true(hits > 0)
    assert.is_true(traced > 0, "no trace compiled for the sampling loop")
  end)
end)
