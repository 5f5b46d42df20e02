--- inventory: log in to every server's iDRAC and record its inventory.
-- Read-only; works against real iDRACs or `sbot lab` (see examples/lab_demo.sh).
--   SBOT_COMPONENT_PATH=examples/components sbot run examples/inventory.lua --site site.lua [--server ID]
-- (its component, bmc_inventory, is in examples/components/)

local workflow = require "sbot.workflow"
local Inventory = require "sbot.component.bmc_inventory"
local Vault = require "sbot.component.vault"

local wf = workflow.new {
  name = "inventory",
  description = "Log in to each server's iDRAC over Redfish and record model, service tag, "
    .. "power state, BIOS and NICs as an artifact of the run. Changes nothing.",
  -- a site whose secrets are in Vault: check it once before any server
  -- (unsealed, token valid, every secret reference readable)
  site_steps = function(ctx)
    if ctx.site.vault then ctx:step(Vault, ctx:config("vault")) end
  end,
  steps = function(server, ctx)
    ctx:step(Inventory, ctx:config("bmc_inventory"))
  end,
}

os.exit(wf:main(arg), true)
