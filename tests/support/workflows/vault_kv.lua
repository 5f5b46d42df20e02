--- Test workflow: the Vault pre-flight as a site step (components/vault.c),
-- then the test_kv component per server (tests/lua/vault_spec.lua).
-- --wait S: the site steps wait S seconds before the pre-flight (a token
-- handed over by the parent is then due for renewal).
local workflow = require "sbot.workflow"
local KV = require "sbot.component.test_kv"
local Vault = require "sbot.component.vault"

local wf = workflow.new {
  name = "vault_kv",
  description = "Test workflow: check the site's Vault once, then converge each server's key/value file.",
  arguments = function(parser)
    parser:option("--wait", "Seconds the site steps wait before the Vault check."):argname("S")
  end,
  site_steps = function(ctx)
    if ctx.args.wait then os.execute("sleep " .. tonumber(ctx.args.wait)) end
    ctx:step(Vault, ctx:config("vault"))
  end,
  components = function(server, ctx)
    local cfg = ctx:config("test_kv")
    cfg.state_file = cfg.state_file:gsub("{id}", server.id)
    return { assert(KV.new(cfg, ctx:opts())) }
  end,
}

os.exit(wf:main(arg), true)
