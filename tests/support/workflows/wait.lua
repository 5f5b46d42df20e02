--- Test workflow over the test_wait component: each server waits, showing
-- its progress (tests/repl/test_progress.sh, tests/lua/progress_spec.lua).
local workflow = require "sbot.workflow"
local Wait = require "sbot.component.test_wait"

local wf = workflow.new {
  name = "wait",
  description = "Test workflow: every server waits a while, reporting progress.",
  steps = function(server, ctx)
    ctx:step(Wait, ctx:config("test_wait"))
  end,
}

os.exit(wf:main(arg), true)
