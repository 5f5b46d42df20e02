--- Test workflow over the test_kv component (tests/lua/workflow_spec.lua).
local workflow = require "sbot.workflow"
local KV = require "sbot.component.test_kv"

local wf = workflow.new {
  name = "kv",
  description = "Test workflow: converge each server's key/value file.",
  arguments = function(parser)
    parser:option("--extra-key", "Also want this key (KEY=VALUE)."):argname("KV")
  end,
  components = function(server, ctx)
    local cfg = ctx:config("test_kv")
    if ctx.args.extra_key then
      local k, v = ctx.args.extra_key:match("^([^=]+)=(.*)$")
      local want = {}
      for a, b in pairs(cfg.want or {}) do want[a] = b end
      want[k] = v
      cfg.want = want
    end
    cfg.state_file = cfg.state_file:gsub("{id}", server.id)
    if cfg.calls_file then cfg.calls_file = cfg.calls_file:gsub("{id}", server.id) end
    return { assert(KV.new(cfg, ctx:opts())) }
  end,
}

os.exit(wf:main(arg), true)
