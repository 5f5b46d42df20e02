-- require of Lua modules (engine/runtime.c): the file searcher keeps what it
-- compiled as bytecode for the process and its fleet workers. What a user
-- sees must not change: a file edited on disk is read again, errors and
-- tracebacks name the file and line, a missing module lists where it looked.
local fleet = require "sbot.fleet"
local helpers = require "helpers"

describe("require", function()
  local dir, saved_path
  before_each(function()
    dir = helpers.tmpdir("require")
    saved_path = package.path
    package.path = dir .. "/?.lua;" .. package.path
  end)
  after_each(function()
    package.path = saved_path
    for _, m in ipairs({ "reqmod_a", "reqmod_b", "reqmod_c" }) do package.loaded[m] = nil end
  end)

  it("reads a module file again when it changed on disk (same size and second included)", function()
    helpers.write_file(dir .. "/reqmod_a.lua", "return 'one'")
    assert.are.equal("one", require "reqmod_a")
    package.loaded.reqmod_a = nil
    helpers.write_file(dir .. "/reqmod_a.lua", "return 'two'") -- same length
    assert.are.equal("two", require "reqmod_a")
    package.loaded.reqmod_a = nil
    assert.are.equal("two", require "reqmod_a") -- and again, now from what was kept
  end)

  it("names the file and the line of a runtime error in a module loaded twice", function()
    helpers.write_file(dir .. "/reqmod_b.lua", "local M = {}\n\nfunction M.boom()\n  error('boom')\nend\nreturn M\n")
    require "reqmod_b"
    package.loaded.reqmod_b = nil
    local m = require "reqmod_b"
    local ok, err = pcall(m.boom)
    assert.is_false(ok)
    -- what Lua's own compile of the file says (a long path is shortened
    -- with "..." in both)
    local _, want = pcall(assert(loadfile(dir .. "/reqmod_b.lua"))().boom)
    assert.matches("reqmod_b.lua:4: boom$", want)
    assert.are.equal(want, err)
    local tb = select(2, xpcall(m.boom, debug.traceback))
    assert.matches("reqmod_b.lua:4: in function", tb, 1, true)
  end)

  it("gives Lua's messages for a syntax error and for a module that is nowhere", function()
    helpers.write_file(dir .. "/reqmod_c.lua", "return {")
    local ok, err = pcall(require, "reqmod_c")
    assert.is_false(ok)
    assert.matches("error loading module 'reqmod_c' from file '" .. dir .. "/reqmod_c.lua':\n\t", err, 1, true)
    assert.matches("reqmod_c.lua:1: ", err, 1, true)
    ok, err = pcall(require, "reqmod_nowhere")
    assert.is_false(ok)
    assert.matches("module 'reqmod_nowhere' not found:", err, 1, true)
    assert.matches("no file '" .. dir .. "/reqmod_nowhere.lua'", err, 1, true)
  end)

  it("loads in a fleet worker what the parent loaded, and what the file says now", function()
    helpers.write_file(dir .. "/reqmod_a.lua", "return 'parent'")
    assert.are.equal("parent", require "reqmod_a")
    local path = package.path
    local res = fleet.map({ 1 }, function()
      package.path = path
      return require "reqmod_a"
    end, { jobs = 1 })
    assert(res[1].ok, res[1].error)
    assert.are.equal("parent", res[1].value)
  end)
end)
