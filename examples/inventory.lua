--- inventory: log in to every server's iDRAC and record its inventory.
-- Read-only; works against real iDRACs or `sbot lab` (see examples/lab_demo.sh).
--   sbot run examples/inventory.lua --site site.lua [--server ID] [--json]
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/lua/?.lua;" .. package.path

local workflow = require "sbot.workflow"
local Inventory = require "sbot.component.bmc_inventory"

local wf = workflow.new {
  name = "inventory",
  description = "Log in to each server's iDRAC over Redfish and record model, service tag, "
    .. "power state, BIOS and NICs as an artifact of the run. Changes nothing.",
  steps = function(server, ctx)
    ctx:step(Inventory, ctx:config("bmc_inventory"))
  end,
}

os.exit(wf:main(arg), true)
