-- Components and workflows found by name: require "sbot.component.<name>"
-- searches $SBOT_COMPONENT_PATH, then the tree's components/ (or the installed
-- share/sbot/components); `sbot run NAME` and `sbot help workflows` search
-- $SBOT_WORKFLOW_PATH, then the tree's workflows/ (tests/install covers the
-- installed tree).
local helpers = require "helpers"
local component = require "sbot.component"

local function sbot(args, env)
  return helpers.sbot(args, { env = env })
end

describe("components by name", function()
  it("searches $SBOT_COMPONENT_PATH in order, then the tree's components/", function()
    local path = component.path()
    assert.are.equal(helpers.source_dir .. "/tests/support/components", path[1]) -- the test env's
    assert.are.equal(helpers.source_dir .. "/components", path[#path])
    local a, b = helpers.tmpdir("compa"), helpers.tmpdir("compb")
    for _, d in ipairs { a, b } do
      helpers.write_file(d .. "/dup.lua", string.format([[
        return require("sbot.component").define { name = "dup", description = "from %s" }]], d))
    end
    local script = a .. "/which.lua"
    helpers.write_file(script, [[
      local M = require "sbot.component.dup"
      print(M.description)
      print(table.concat(require("sbot.component").path(), ";"))
    ]])
    local r = sbot({ "run", script }, "SBOT_COMPONENT_PATH=" .. helpers.shquote(a .. "::" .. b))
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("from " .. a .. "\n" .. a .. ";" .. b .. ";" .. helpers.source_dir .. "/components\n", r.stdout)
  end)

  it("says where it looked when a component is missing, and why one does not load", function()
    local d = helpers.tmpdir("compc")
    helpers.write_file(d .. "/w.lua", 'require "sbot.component.absent"\n')
    local r = sbot({ "run", d .. "/w.lua" }, "SBOT_COMPONENT_PATH=" .. helpers.shquote(d))
    assert.are.equal(1, r.code)
    assert.matches("module 'sbot.component.absent' not found:", r.stderr, 1, true)
    assert.matches("no file '" .. d .. "/absent.lua'", r.stderr, 1, true)
    assert.matches("no file '" .. helpers.source_dir .. "/components/absent.lua'", r.stderr, 1, true)
    local h = sbot({ "help", "component", "absent" }, "SBOT_COMPONENT_PATH=" .. helpers.shquote(d))
    assert.are.equal(2, h.code)
    assert.matches("no component 'absent' (looked for absent.lua in " .. d .. ", "
      .. helpers.source_dir .. "/components; add a directory with SBOT_COMPONENT_PATH=DIR)", h.stderr, 1, true)
    helpers.write_file(d .. "/syntax.lua", "return {\n")
    h = sbot({ "help", "component", "syntax" }, "SBOT_COMPONENT_PATH=" .. helpers.shquote(d))
    assert.are.equal(2, h.code)
    assert.matches("component 'syntax' does not load: error loading module 'sbot.component.syntax' from file '"
      .. d .. "/syntax.lua'", h.stderr, 1, true)
  end)

  it("fleet workers find components by name the same way", function()
    local fleet = require "sbot.fleet"
    local res = fleet.map({ 1 }, function()
      return require("sbot.component.test_kv").name
    end)
    assert.is_true(res[1].ok, res[1].error)
    assert.are.equal("test_kv", res[1].value)
  end)
end)

describe("workflows by name", function()
  local WFDIR = helpers.source_dir .. "/tests/support/workflows"

  it("sbot run NAME runs NAME.lua from $SBOT_WORKFLOW_PATH; arg[0] is that file", function()
    local d = helpers.tmpdir("wfname")
    helpers.write_file(d .. "/hello.lua", 'print(arg[0], ...)\n')
    local r = sbot({ "run", "hello", "a", "b" }, "SBOT_WORKFLOW_PATH=" .. helpers.shquote(d))
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(d .. "/hello.lua\ta\tb\n", r.stdout)
    r = sbot({ "run", "kv", "--help" }, "SBOT_WORKFLOW_PATH=" .. helpers.shquote(d .. ":" .. WFDIR))
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("Test workflow: converge each server's key/value file.", r.stdout, 1, true)
    r = sbot({ "run", "no_such_workflow" }, "SBOT_WORKFLOW_PATH=" .. helpers.shquote(d))
    assert.are.equal(2, r.code)
    assert.matches("sbot run: no file no_such_workflow and no workflow no_such_workflow (looked for "
      .. d .. "/no_such_workflow.lua, " .. helpers.source_dir .. "/workflows/no_such_workflow.lua; "
      .. "sbot help workflows lists them)", r.stderr, 1, true)
    -- a path is a path: no lookup
    r = sbot { "run", d .. "/nope.lua" }
    assert.are.equal(2, r.code)
    assert.matches("sbot run: cannot open " .. d .. "/nope.lua: No such file or directory", r.stderr, 1, true)
  end)

  it("sbot help workflows lists each workflow with its description, and says which do not load", function()
    local d = helpers.tmpdir("wflist")
    helpers.write_file(d .. "/broken.lua", 'error("broken on purpose")\n')
    helpers.write_file(d .. "/plain.lua", 'print("a script, not a workflow")\nos.exit(3)\n')
    helpers.write_file(d .. "/syntax.lua", 'local x = \n')
    helpers.write_file(d .. "/kv.lua", 'error("hidden by the first kv")\n')
    local r = sbot({ "help", "workflows" }, "SBOT_WORKFLOW_PATH=" .. helpers.shquote(WFDIR .. ":" .. d))
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("workflows (sbot run NAME --site FILE; sbot run NAME --help for its options):\n", r.stdout, 1, true)
    -- names padded to the longest one listed (the tree's workflows/ are listed too)
    local function row(name, text)
      local line = r.stdout:match("\n  " .. name .. " +([^\n]*)\n")
      assert.are.equal(text, line, name .. " in:\n" .. r.stdout)
    end
    row("kv", "Test workflow: converge each server's key/value file.")
    row("steps", "Test workflow: a site step, then two dependent steps per server.")
    row("broken", "(does not load: " .. d .. "/broken.lua:1: broken on purpose)")
    row("plain", "(defines no workflow (no workflow.new{...}))")
    row("syntax", "(does not load: " .. d .. "/syntax.lua:2: unexpected symbol near <eof>)")
    assert.is_nil(r.stdout:find("a script, not a workflow", 1, true)) -- loaded, its print muted
    assert.matches("searched: " .. WFDIR .. ", " .. d .. ", " .. helpers.source_dir .. "/workflows", r.stdout, 1, true)
    local empty = sbot({ "help", "workflows" }, "SBOT_WORKFLOW_PATH=" .. helpers.shquote(helpers.tmpdir("none")))
    assert.are.equal(0, empty.code)
  end)
end)
