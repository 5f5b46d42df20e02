--- Test workflow of tests/report (the HTML and JUnit reports): named steps -
-- a site step "bucket", then "disk" and "boot" per server - over test_kv,
-- each discover taking 0.1 s so the timeline has something to show.
local workflow = require "sbot.workflow"
local KV = require "sbot.component.test_kv"

local function cfg(ctx, name, id)
  local c = ctx:config(name, { slow_discover = 0.1 })
  c.state_file = c.state_file:gsub("{id}", id)
  return c
end

local wf = workflow.new {
  name = "report_demo",
  description = "Test workflow: a site step, then two named steps per server.",
  site_steps = function(ctx) ctx:step(KV, cfg(ctx, "bucket", "site"), { step = "bucket" }) end,
  steps = function(server, ctx)
    local disk = ctx:step(KV, cfg(ctx, "disk", server.id), { step = "disk" })
    local boot = cfg(ctx, "boot", server.id)
    boot.want = { target = disk.discovery.final and disk.discovery.final.name or "none" }
    ctx:step(KV, boot, { step = "boot" })
  end,
}

os.exit(wf:main(arg), true)
