require "env"
local shadow = require "shadow"

describe("shadow.ring", function()
  it("keeps the newest records, newest first, bounded", function()
    local r = shadow.ring(3)
    assert.equal(0, r:len())
    assert.same({}, r:latest(5))
    for i = 1, 5 do r:push({ id = i, route = "GET /x" }) end
    assert.equal(3, r:len())
    local got = r:latest()
    assert.same({ 5, 4, 3 }, { got[1].id, got[2].id, got[3].id })
    assert.equal("GET /x", got[1].route)
    assert.equal(2, #r:latest(2))
    assert.equal(5, r:latest(1)[1].id)
  end)

  it("takes JSON text as well as tables", function()
    local r = shadow.ring(2)
    r:push('{"a":[1,2,{"b":"\\u00e9"}]}')
    assert.same({ a = { 1, 2, { b = "é" } } }, r:latest(1)[1])
    assert.has_error(function() r:push(42) end)
  end)

  it("changes capacity keeping the newest", function()
    local r = shadow.ring(5)
    for i = 1, 5 do r:push({ id = i }) end
    r:set_capacity(2)
    assert.equal(2, r:len())
    assert.equal(2, r:capacity())
    assert.same({ 5, 4 }, { r:latest()[1].id, r:latest()[2].id })
    r:set_capacity(4)
    assert.equal(2, r:len())
    for i = 6, 9 do r:push({ id = i }) end
    local ids = {}
    for _, d in ipairs(r:latest()) do ids[#ids + 1] = d.id end
    assert.same({ 9, 8, 7, 6 }, ids)
  end)

  it("refuses bad capacities", function()
    for _, c in ipairs({ 0, -1, 1.5, "3" }) do
      assert.has_error(function() shadow.ring(c) end)
    end
    local r = shadow.ring(1)
    assert.has_error(function() r:set_capacity(0) end)
  end)

  it("can be freed twice, and refuses use after free", function()
    local r = shadow.ring(2)
    r:push({ a = 1 })
    r:free()
    r:free()
    assert.has_error(function() r:len() end)
  end)

  it("stays bounded over many pushes", function()
    local r = shadow.ring(10)
    for i = 1, 10000 do r:push('{"i":' .. i .. '}') end
    assert.equal(10, r:len())
    assert.equal(10000, r:latest(1)[1].i)
    assert.equal(9991, r:latest()[10].i)
  end)
end)
