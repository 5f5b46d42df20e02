--- Test workflow: the R630 component alone on each server, with the config
-- of the site's components.r630 (tests/lua/r630_spec.lua).
local workflow = require "sbot.workflow"
local R630 = require "sbot.component.r630"

local wf = workflow.new {
  name = "r630",
  description = "Test workflow: configure each server's iDRAC with the r630 component.",
  steps = function(server, ctx)
    ctx:step(R630, ctx:config("r630"))
  end,
}

os.exit(wf:main(arg), true)
