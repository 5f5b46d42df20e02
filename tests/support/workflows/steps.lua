--- Test workflow over test_kv in steps (tests/lua/workflow_spec.lua): a site
-- step ("bucket"), then per server a "disk" whose value feeds a "boot" step.
local workflow = require "sbot.workflow"
local KV = require "sbot.component.test_kv"

local function per_server(cfg, id)
  cfg.state_file = cfg.state_file:gsub("{id}", id)
  if cfg.calls_file then cfg.calls_file = cfg.calls_file:gsub("{id}", id) end
  if cfg.session_log then cfg.session_log = cfg.session_log:gsub("{id}", id) end
  return cfg
end

local wf = workflow.new {
  name = "steps",
  description = "Test workflow: a site step, then two dependent steps per server.",
  arguments = function(parser)
    parser:option("--fail", "Make this step's discover fail (bucket, disk or boot)."):argname("STEP")
    parser:flag("--no-site", "Run no site step.")
    parser:flag("--bad-step", "Call ctx:step with something that is not a component.")
    parser:flag("--peek", "Before the disk step, a read-only step (phases = {\"discover\"}) over the same state.")
    parser:flag("--bad-phases", "Call ctx:step with an unknown phase in opts.phases.")
  end,
  site_steps = function(ctx)
    -- the site steps see every server; a server's steps see only their own
    assert(#ctx.site.servers == 2, "site steps see every server")
    if ctx.args.no_site then return end
    ctx:step(KV, per_server(ctx:config("bucket", { fail_discover = ctx.args.fail == "bucket" }), "site"))
  end,
  steps = function(server, ctx)
    assert(#ctx.site.servers == 1 and ctx.site.servers[1].id == server.id,
      "a server's worker gets the site with its own server only")
    if ctx.args.bad_step then ctx:step("test_kv", {}) end
    if ctx.args.bad_phases then ctx:step(KV, {}, { phases = { "discover", "apply" } }) end
    if ctx.args.peek then
      -- reads what the disk step will find, changes nothing (discover only, in every mode)
      ctx:step(KV, per_server(ctx:config("disk", { want = { name = "peeked" } }), server.id),
        { step = "peek", phases = { "discover" } })
    end
    local bucket = ctx.site_results.test_kv
    local disk = ctx:step(KV, per_server(ctx:config("disk", {
      fail_discover = ctx.args.fail == "disk",
      want = { name = "vol-" .. server.id, bucket = bucket and bucket.discovery.final.bucket or "none" },
    }), server.id))
    -- the disk's name comes from its discovery: known in --plan too; after a
    -- failed disk step this config is incomplete (no state_file) and the
    -- step is skipped without being validated
    local final = disk.discovery.final
    local boot = { want = {} }
    if final then
      boot = per_server(ctx:config("boot", { fail_discover = ctx.args.fail == "boot",
        want = { target = final.name } }), server.id)
    end
    ctx:step(KV, boot)
  end,
}

os.exit(wf:main(arg), true)
