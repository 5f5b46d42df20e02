--- workflows/openshift_only.lua: build (or reuse) the cluster's agent ISO and
-- publish it; no server is touched.
--
--   sbot run openshift_only --site site.lua --plan
--   sbot run openshift_only --site site.lua          # prints the URL the iDRACs get
--
-- A site-wide workflow (sbot.cluster's site steps, docs/workflows.md): s3
-- (buckets, policy, lifecycle), disk.<id> (each node's iSCSI disk, read only:
-- the ISO's rootDeviceHints), openshift (render, build with openshift-install,
-- verify, keep in the private bucket; reused when the same version and
-- configs were built before), publish (the public copy under the ISO's
-- SHA-256, or a presigned URL: site openshift.iso.publish).
local workflow = require "sbot.workflow"
local cluster = require "sbot.cluster"
local log = require "sbot.log"

local wf = workflow.new {
  name = "openshift_only",
  description = "Build (or reuse) the cluster's agent ISO from the site and publish it for the "
    .. "iDRACs; prints its URL. Touches no server.",
  epilog = "The ISO embeds the pull secret: read docs/openshift.md, \"Publishing the ISO\".",
  site_steps = function(ctx)
    local p = cluster.iso_site_steps(ctx)
    local a = p and p.discovery and p.discovery.artifacts and p.discovery.artifacts[1]
    if not a or not a.url or ctx.args.json then return end
    local pending = p.status ~= "ok" or (ctx.args.plan and #(p.plan or {}) > 0)
    io.stdout:write(pending and "agent ISO URL (after an apply run): " or "agent ISO URL: ", a.url, "\n")
    io.stdout:flush()
    log.info("agent ISO", { url = a.url, ok = not pending })
  end,
}
os.exit(wf:main(arg), true)
