--- Test workflow: the Vault pre-flight as a site step followed by a long
-- site step (an ISO build stands in: --site-wait S seconds of sleep), then the
-- Vault check again in each server's worker after --server-wait S seconds of
-- other work (tests/lua/vault_spec.lua: the token the workers are handed
-- must still be usable then; Ctrl-C during the long site step revokes it).
local workflow = require "sbot.workflow"
local Vault = require "sbot.component.vault"

local sys = require "sbot.sys"

-- S seconds in short sleeps: back in Lua often, so a stop request (Ctrl-C)
-- interrupts the wait at once (docs/fleet.md)
local function wait(s)
  if not s then return end
  local done = sys.monotime() + tonumber(s)
  while sys.monotime() < done do os.execute("sleep " .. math.min(0.1, done - sys.monotime())) end
end

local wf = workflow.new {
  name = "vault_long",
  description = "Test workflow: check the site's Vault, a long site step, then check it from every server.",
  arguments = function(parser)
    parser:option("--site-wait", "Seconds the site steps take after the Vault check."):argname("S")
    parser:option("--server-wait", "Seconds each server works before its Vault check."):argname("S")
  end,
  site_steps = function(ctx)
    ctx:step(Vault, ctx:config("vault"))
    wait(ctx.args.site_wait)
  end,
  steps = function(_, ctx)
    wait(ctx.args.server_wait)
    ctx:step(Vault, ctx:config("vault"))
  end,
}

os.exit(wf:main(arg), true)
