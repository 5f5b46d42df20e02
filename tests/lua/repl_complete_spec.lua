-- sbot.repl.complete: Tab completion of the REPL (engine/repl.c hands it the
-- word before the cursor and the line in front of it); never runs code.
local repl = require "sbot.repl"

describe("sbot.repl.complete", function()
  local saved = {}
  local function global(name, v) saved[name] = rawget(_G, name); rawset(_G, name, v) end
  after_each(function()
    for k, v in pairs(saved) do rawset(_G, k, v) end
    saved = {}
    repl.arg_completers.zz_pick = nil
  end)

  it("globals and keywords, fields, methods", function()
    global("zz_table", { alpha = 1, beta = {}, gamma = function() end })
    assert.are.same({ "zz_table." }, repl.complete("zz_ta", ""))
    assert.are.same({ "zz_table.alpha", "zz_table.beta.", "zz_table.gamma(" }, repl.complete("zz_table.", ""))
    assert.are.same({ "zz_table.gamma(" }, repl.complete("zz_table.g", ""))
    assert.are.same({ "zz_table:gamma(" }, repl.complete("zz_table:", ""))
    local kw = {}
    for _, x in ipairs(repl.complete("retu", "")) do kw[#kw + 1] = x end
    assert.are.same({ "return" }, kw)
    assert.are.same({ "string.format(" }, repl.complete("string.form", ""))
  end)

  it("keys that are no identifiers go in brackets; list entries are offered", function()
    global("zz_d", { ["r630-01"] = { discovery = { nics = { { mac = "aa" }, { mac = "bb" } } } }, ["r630-02"] = 1 })
    assert.are.same({ 'zz_d["r630-01"].', 'zz_d["r630-02"]' }, repl.complete("zz_d.", ""))
    assert.are.same({ 'zz_d["r630-01"].', 'zz_d["r630-02"]' }, repl.complete('zz_d["r6', ""))
    assert.are.same({ "zz_d['r630-01']." }, repl.complete("zz_d['r630-01", ""))
    assert.are.same({ 'zz_d["r630-01"].discovery.' }, repl.complete('zz_d["r630-01"].disc', ""))
    assert.are.same({ 'zz_d["r630-01"].discovery.nics[1].', 'zz_d["r630-01"].discovery.nics[2].' },
      repl.complete('zz_d["r630-01"].discovery.nics.', ""))
    assert.are.same({ 'zz_d["r630-01"].discovery.nics[2].mac' },
      repl.complete('zz_d["r630-01"].discovery.nics[2].m', ""))
    -- an expression after an operator: what comes before is kept
    assert.are.same({ 'x-zz_d["r630-01"].discovery.' }, repl.complete('x-zz_d["r630-01"].disc', ""))
  end)

  it("runs nothing: __index functions are not called, __index tables are followed", function()
    local called = false
    global("zz_lazy", setmetatable({}, { __index = function() called = true return {} end }))
    assert.are.same({}, repl.complete("zz_lazy.x.", ""))
    assert.is_false(called)
    global("zz_obj", setmetatable({ own = 1 }, { __index = { method = function() end } }))
    assert.are.same({ "zz_obj.method(", "zz_obj.own" }, repl.complete("zz_obj.", ""))
  end)

  it("a function's string argument from its completer", function()
    repl.arg_completers.zz_pick = function() return { "r630-01", "r630-02", "x1" } end
    assert.are.same({ '"r630-01"', '"r630-02"' }, repl.complete('"r6', "d = zz_pick("))
    assert.are.same({ "'x1'" }, repl.complete("'x", "zz_pick( "))
    assert.are.same({}, repl.complete('"r6', "other("))
    repl.arg_completers.zz_pick = function() error("broken") end
    assert.are.same({}, repl.complete('"r6', "zz_pick("))
  end)

  it(":help lists the general part and the sections others add", function()
    assert.matches("completes globals and table fields", repl.help())
    table.insert(repl.help_sections, "zz section\n")
    assert.matches("zz section\n$", repl.help())
    table.remove(repl.help_sections)
  end)
end)
