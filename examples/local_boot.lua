--- local_boot: prepare each server's boot volume and iPXE script locally.
-- The example workflow: Lua-defined components, no network needed.
--   SBOT_COMPONENT_PATH=examples/components sbot run examples/local_boot.lua --site examples/site.lua [--plan]
-- (its components, scratch_volume and boot_script, are in examples/components/)

local workflow = require "sbot.workflow"
local ScratchVolume = require "sbot.component.scratch_volume"
local BootScript = require "sbot.component.boot_script"

local wf = workflow.new {
  name = "local_boot",
  description = "Create each server's boot volume (a sparse file standing in for a zvol) "
    .. "and the iPXE script that boots it over iSCSI.",
  arguments = function(parser)
    parser:option("--size-mb", "Boot volume size in MiB.", "64"):convert(tonumber)
  end,
  steps = function(server, ctx)
    local vol = ctx:step(ScratchVolume, ctx:config("scratch_volume", { size_mb = ctx.args.size_mb }))
    -- the volume's path is known from its discovery, also in --plan
    ctx:step(BootScript, ctx:config("boot_script", { volume = vol.discovery.path }))
  end,
}

os.exit(wf:main(arg), true)
