--- workflows/full_deployment.lua: install the site's OpenShift cluster on its
-- servers — the agent ISO built and published once (site steps), then per
-- server its iSCSI boot disk on TrueNAS and the R630 set up to boot from it,
-- the ISO booted once from the virtual CD: one reboot per server.
--
--   sbot run full_deployment --site site.lua --plan     # every step's changes, nothing written
--   sbot run full_deployment --site site.lua [--server r630-01 ...]
--
-- Site steps (once, before the servers; sbot.cluster, docs/workflows.md):
--   s3 (buckets, policy, lifecycle), disk.<id> (each node's iSCSI disk, read
--   only: the ISO's rootDeviceHints), openshift (the agent ISO, kept in the
--   private bucket), publish (the public copy under the ISO's SHA-256, or a
--   presigned URL: site openshift.iso.publish).
-- Per server (role master, worker or sno):
--   iscsi  the zvol, target, extent, mapping; verified by a real login
--   r630   iSCSI boot (BIOS device 1 and the NIC), iSCSI first in the boot
--          order, the ISO inserted and booted once from the virtual CD, one
--          reboot, ejected once the one-time boot is consumed
local workflow = require "sbot.workflow"
local cluster = require "sbot.cluster"
local Iscsi = require "sbot.component.iscsi"
local R630 = require "sbot.component.r630"

local wf = workflow.new {
  name = "full_deployment",
  description = "Build and publish the cluster's agent ISO, then give each server its iSCSI boot "
    .. "disk and boot it once from the ISO on the virtual CD, with the disk first in the boot order "
    .. "(one reboot per server).",
  epilog = "The ISO reaches the iDRACs at s3.public_endpoint (iDRAC 8: http only). It embeds the pull "
    .. "secret: read docs/openshift.md, \"Publishing the ISO\", before exposing that endpoint.",
  site_steps = function(ctx)
    cluster.iso_site_steps(ctx)
  end,
  steps = function(server, ctx)
    if not cluster.is_node(server) then
      error("server " .. server.id .. " has role " .. tostring(server.role) .. ": it is not a node of the "
        .. "cluster (roles master, worker, sno); pick the nodes with --server", 0)
    end
    local url = cluster.iso_url(ctx)
    if not url then error("the site steps gave no URL for the agent ISO", 0) end
    local disk = ctx:step(Iscsi, cluster.iscsi_config(ctx.site, server))
    -- r630_done: a CHAP secret the iSCSI step changed has reached the server
    cluster.r630_done(ctx, ctx:step(R630, cluster.r630_config(ctx, disk, url)))
  end,
}
os.exit(wf:main(arg), true)
