--- iscsi_only: give each server its own boot disk on TrueNAS and make it boot from it.
--   sbot run iscsi_only --site site.lua [--server r630-01] [--plan]
-- Per server: the iSCSI step (zvol, target, extent, LUN mapping, initiator
-- group and, when the site gives them, CHAP credentials on TrueNAS, checked
-- by a real iSCSI login), then the R630 step (the BIOS and NIC iSCSI boot
-- settings pointing at that target, with the same CHAP user and secret,
-- iSCSI first in the boot order, one reboot, everything read back). Copy it to start a
-- workflow of your own: docs/workflows.md says what it changes.

local workflow = require "sbot.workflow"
local cluster = require "sbot.cluster"
local Vault = require "sbot.component.vault"
local Iscsi = require "sbot.component.iscsi"
local R630 = require "sbot.component.r630"

-- The BIOS and NIC iSCSI settings of an R630 take LUN 0..255; TrueNAS maps up
-- to 16382. Refused before the iSCSI step makes a disk no BIOS could boot.
local MAX_BOOT_LUN = 255

-- A copy of table t (or an empty table) with the fields of `set` on top: the
-- site's configuration stays as the site file wrote it.
local function with(t, set)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  for k, v in pairs(set) do out[k] = v end
  return out
end

local wf = workflow.new {
  name = "iscsi_only",
  description = "Give each server a zvol and an iSCSI target on TrueNAS SCALE, verified by a "
    .. "real iSCSI login, and point its iDRAC at it: iSCSI first in the boot order, one reboot, "
    .. "everything read back.",
  epilog = "Changes: on TrueNAS the server's zvol, portal, initiator group, CHAP credentials (with the "
    .. "iSCSI config's chap), target, extent, LUN mapping and the iscsitarget service (never deletes a "
    .. "zvol); on the iDRAC the BIOS and NIC iSCSI boot settings and the boot order, applied by one reboot. A converged server is "
    .. "left alone. Details: docs/workflows.md.",
  arguments = function(parser)
    parser:option("--size", "Size of a new zvol, \"120G\" or bytes (default: the site's "
      .. "truenas.zvol_size, else 120G). An existing zvol is never resized."):argname("SIZE")
    parser:option("--poll-interval", "Seconds between reads of the iDRAC's jobs and power state "
      .. "(default 5; a lab run with --time-scale 0.1 is quicker with 0.2)."):argname("S")
      :convert(function(s)
        local n = tonumber(s)
        if not n or n < 0.01 or n ~= n or n == math.huge then
          return nil, "--poll-interval: expected seconds >= 0.01, got '" .. s .. "'"
        end
        return n
      end)
  end,

  -- A site whose secrets are in Vault: check it once, before any server
  -- (unsealed, token valid, every secret reference readable), so a missing
  -- secret stops the run before either device is touched.
  site_steps = function(ctx)
    if ctx.site.vault then ctx:step(Vault, ctx:config("vault")) end
  end,

  steps = function(server, ctx)
    local iscsi = ctx:config("iscsi")
    if ctx.args.size then iscsi.zvol = with(iscsi.zvol, { size = ctx.args.size }) end
    if math.type(iscsi.lun) == "integer" and iscsi.lun > MAX_BOOT_LUN then
      error(string.format("iscsi.lun %s: the R630 boots LUN 0..%d only", tostring(iscsi.lun), MAX_BOOT_LUN), 0)
    end

    -- 1. The disk. Its discover already knows the target IQN, portal, LUN and
    -- the server's initiator name, so --plan can show the R630 plan below too.
    local disk = ctx:step(Iscsi, iscsi)

    -- 2. The server. Everything the BIOS needs comes from the iSCSI step, so
    -- the two devices cannot disagree (sbot.cluster.r630_config, shared with
    -- full_deployment and switch_version; docs/workflows.md):
    -- - initiator: the iSCSI component's initiator_name hook is the one
    --   source; TrueNAS's initiator group admits exactly that name, so the
    --   BIOS must log in with it (the R630's own initiator_iqn hook, the
    --   BIOS's factory name by default, is not asked);
    -- - portal: "ip:port" on the iSCSI side (the port from the site, else
    --   TrueNAS's listen_port); the BIOS takes the two apart;
    -- - LUN: TrueNAS's LUN n is LUN n on the wire, the same number for both;
    -- - CHAP: the user and secret the target asks for (the iSCSI config's
    --   chap, e.g. the site's servers[i].components.iscsi.chap), or none;
    --   a secret the iSCSI step changed is sent again (the iDRAC never
    --   shows one, so the R630 step could not tell);
    -- - iSCSI first in the boot order. No image: no virtual media, whatever
    --   the site's components.r630 says — this workflow makes the disk
    --   bootable; installing an OS onto it is another workflow's job.
    -- The site's components.r630 still chooses the NIC, timeouts and the rest.
    -- After a failed iSCSI step this step is skipped, its config unread.
    local boot = cluster.r630_config(ctx, disk)
    local p = ctx.args.poll_interval
    if p then
      boot.power = with(boot.power, { interval = p })
      boot.jobs = with(boot.jobs, { interval = p })
    end
    -- The R630 step reboots once, only when a configuration job needs it, and
    -- its housekeep checks the values are current (not just pending) after;
    -- r630_done then notes that a CHAP secret the iSCSI step changed has
    -- reached the server (until then every run sends it again).
    cluster.r630_done(ctx, ctx:step(R630, boot))
  end,
}

os.exit(wf:main(arg), true)
