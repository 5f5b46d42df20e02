--- workflows/switch_version.lua: point servers at another OpenShift
-- version's disk, one that is already installed (the previous tool's
-- switch_openshift): the iSCSI step for that version must find its zvol
-- (it never creates an empty disk to boot from), the R630 retargets its
-- iSCSI boot, one reboot.
--
--   sbot run switch_version --site site.lua 4.14.3 --server r630-01 [--plan]
--
-- Per server:
--   iscsi  the version's zvol must exist (zvol.existing); its target, extent
--          and mapping are checked (made if missing: they only point at the
--          disk) and a real login as the server's initiator verifies it
--   r630   iSCSI boot retargeted to that disk (BIOS device 1 and the NIC),
--          iSCSI first in the boot order, one reboot, read back
local workflow = require "sbot.workflow"
local cluster = require "sbot.cluster"
local Iscsi = require "sbot.component.iscsi"
local R630 = require "sbot.component.r630"

local wf = workflow.new {
  name = "switch_version",
  description = "Point each server's iSCSI boot at the disk of another, already installed OpenShift "
    .. "version, verified by a real iSCSI login; one reboot per server. Never creates a disk.",
  epilog = "The version's disk must exist (made by full_deployment or iscsi_only with that version): "
    .. "otherwise the server's run fails before anything is written.",
  arguments = function(p)
    p:argument("version", "The OpenShift version (x.y.z) whose disk the servers boot.")
      :convert(function(v)
        if not v:match("^%d+%.%d+%.%d+$") then return nil, "version must be x.y.z (e.g. 4.14.3), got '" .. v .. "'" end
        return v
      end)
  end,
  steps = function(server, ctx)
    local disk = ctx:step(Iscsi, cluster.iscsi_config(ctx.site, server, ctx.args.version, true))
    -- no virtual media: nothing to reinstall; r630_done: a changed CHAP secret has reached the server
    cluster.r630_done(ctx, ctx:step(R630, cluster.r630_config(ctx, disk, nil)))
  end,
}
os.exit(wf:main(arg), true)
