--- sbot.cluster: what the OpenShift workflows share (workflows/full_deployment.lua,
-- openshift_only.lua, switch_version.lua; docs/cluster.md) — which servers are
-- the cluster's nodes, a server's iSCSI step config, the R630's iSCSI boot
-- settings from that step's results, and the site steps that build and publish
-- the cluster's agent ISO:
--
--   s3          the buckets, versioning, the public-read policy, lifecycle rules
--   (check)     the site against itself (openshift.check), each
--               node's iSCSI disk address from the iSCSI component's names
--               (iscsi.address): the ISO's rootDeviceHints
--   openshift   the agent ISO, rendered, built, verified, kept in the private bucket
--   publish     the S3 component publishes it (server-side copy, index), or
--               presigns it (site openshift.iso.publish)
--
-- Policy lives here and in the workflows; the components only do their part.
local fsio = require "sbot.fsio"
local Iscsi = require "sbot.component.iscsi"
local OpenShift = require "sbot.component.openshift"
local S3 = require "sbot.component.s3"

local M = {}

--- Server roles that are nodes of the cluster (the OpenShift component's).
M.ROLES = { master = true, worker = true, sno = true }

--- The file name of the agent ISO (the installer's, kept in the key).
M.ISO_NAME = "agent.x86_64.iso"

--- What the public copy of the ISO gives whoever reads it (shown with the
-- publish change in --plan, and logged when it is made).
M.PUBLIC_WARNING = "the agent ISO embeds the cluster's pull secret and the credentials the installer "
  .. "generated: anyone who can reach the public endpoint and learns this URL can read them. Its key "
  .. "is the ISO's SHA-256 (unguessable, never listed), and the URL is kept in the run records, which "
  .. "must stay private; openshift.iso.publish = \"presigned\" keeps the ISO in the private bucket "
  .. "instead (docs/openshift.md, \"Publishing the ISO\")"

function M.is_node(server) return M.ROLES[server.role] == true end

--- The cluster's servers (roles master, worker, sno), in site order.
function M.nodes(site)
  local out = {}
  for _, s in ipairs(site.servers or {}) do
    if M.is_node(s) then out[#out + 1] = s end
  end
  return out
end

--- A component's config for one server, as the runner merges it in the
-- server's own steps: base < site.components[name] < server.components[name].
function M.config(site, server, name, base)
  local out = {}
  local function merge(t) for k, v in pairs(t or {}) do out[k] = v end end
  merge(base)
  merge(site.components and site.components[name])
  merge(server and server.components and server.components[name])
  return out
end

--- The iSCSI step's config for a server. version: the OpenShift version in
-- the disk's names (default: the config's, else the site's). existing = true:
-- the disk must already be there (zvol.existing: never an empty disk).
function M.iscsi_config(site, server, version, existing)
  local cfg = M.config(site, server, "iscsi", {})
  if version then cfg.version = version end
  if existing then
    local z = {}
    for k, v in pairs(cfg.zvol or {}) do z[k] = v end
    z.existing = true
    cfg.zvol = z
  end
  return cfg
end

--- Did an iSCSI step's results set the server's CHAP secret on TrueNAS (its
-- chap: change applied: new credentials, or a new secret)? In a --plan run
-- (nothing applied): does its plan have a chap: change, i.e. would it?
function M.chap_changed(disk)
  local p = disk and disk.processing
  if type(p) == "table" and p.mode == "apply" then
    for _, a in ipairs(p.applied or {}) do
      if a.ok and tostring(a.resource):match("^chap:") then return true end
    end
    return false
  end
  for _, ch in ipairs(disk and disk.plan or {}) do
    if tostring(ch.resource):match("^chap:") then return true end
  end
  return false
end

-- Did this step apply a chap: change (not just plan one)?
local function chap_applied(disk)
  local p = disk and disk.processing
  return type(p) == "table" and p.mode == "apply" and M.chap_changed(disk)
end

--- The R630's iscsi_boot settings from an iSCSI step's results: the target,
-- its portal, the LUN and the initiator the server logs in with (the iSCSI
-- component's initiator_name hook: the initiator group lets only that one in),
-- and with CHAP the user and the secret the target asks for (`chap = {user,
-- secret}`: the iSCSI config's, as its discover carries them; the secret a
-- secret object). `resend` (with CHAP): send the secret although the BIOS
-- and NIC already use CHAP with that user — the target's secret changed.
-- The portal is "ip:port" or "[ipv6]:port"; the BIOS takes the address bare.
function M.iscsi_boot(disk, resend)
  local d = disk and disk.discovery or {}
  local portal = tostring(d.portal or "")
  local ip, port = portal:match("^%[([^%]]+)%]:(%d+)$")
  if not ip then ip, port = portal:match("^([^:]+):(%d+)$") end
  local pip = d.portal_ip and tostring(d.portal_ip):gsub("^%[(.*)%]$", "%1")
  local chap
  if type(d.chap) == "table" and d.chap.user then
    chap = { user = d.chap.user, secret = d.chap.secret, resend = resend or M.chap_changed(disk) or nil }
  end
  return { target_iqn = d.iqn, target_ip = pip or ip, target_port = tonumber(port),
    lun = d.lun, initiator_iqn = d.initiator, chap = chap }
end

-- <state_dir>/chap/<server>.resend: this server's CHAP secret changed on
-- TrueNAS and its R630 step has not yet sent it (the iDRAC never shows a
-- secret, so nothing else could tell a later run). Holds no secret.
local function resend_marker(ctx)
  local dir = (ctx.args and ctx.args.state_dir) or (ctx.site and ctx.site.state_dir)
  if not dir or not ctx.id then return nil end
  return dir .. "/chap", dir .. "/chap/" .. ctx.id .. ".resend"
end

local function over(base, top)
  local out = {}
  for k, v in pairs(type(base) == "table" and base or {}) do out[k] = v end
  for k, v in pairs(type(top) == "table" and top or {}) do out[k] = v end
  return out
end

--- The R630 step's config for a server booting the disk of an iSCSI step's
-- results: the site's components.r630 (and the server's) with, on top,
-- iscsi_boot from the disk (target, portal, LUN, initiator, and CHAP or
-- none: the target's say, never the site's components.r630), boot.first =
-- "iscsi" (boot.mode default Uefi), and with image_url the virtual media
-- booted once and ejected after (image_url nil: no virtual media at all,
-- whatever the site says — a switch must not boot an installer).
-- When the iSCSI step set a new CHAP secret, the secret is sent (chap.resend)
-- and a marker in the state directory keeps saying so until r630_done sees
-- the R630 step succeed: a run stopped in between sends it on the next run.
function M.r630_config(ctx, disk, image_url)
  local cfg = ctx:config("r630", {})
  local dir, marker = resend_marker(ctx)
  local resend = M.chap_changed(disk) -- applied now, or planned (--plan writes no marker)
  if marker and chap_applied(disk) then
    local ok, err = fsio.mkdirs(dir)
    if ok then
      ok, err = fsio.write_atomic(marker, "the CHAP secret of " .. tostring(disk.discovery.chap.user)
        .. " changed on TrueNAS; the R630 step has not sent it yet\n")
    end
    if not ok then error("CHAP resend marker " .. marker .. ": " .. tostring(err), 0) end
  elseif marker and not resend then
    resend = fsio.stat(marker) ~= nil
  end
  local boot = M.iscsi_boot(disk, resend)
  cfg.iscsi_boot = over(cfg.iscsi_boot, boot)
  cfg.iscsi_boot.chap = boot.chap -- the target's CHAP, or none (both sides agree)
  cfg.boot = over({ mode = "Uefi" }, over(cfg.boot, { first = "iscsi" }))
  if image_url then
    cfg.virtual_media = over(over({ boot_once = true, eject_after = true }, cfg.virtual_media),
      { image_url = image_url })
  else
    cfg.virtual_media = nil
  end
  return cfg
end

--- After the R630 step (its results r): once it has sent the CHAP secret
-- (process ran in apply mode and the step is ok), the state directory's
-- marker goes (r630_config). Returns r.
function M.r630_done(ctx, r)
  local _, marker = resend_marker(ctx)
  if marker and r and r.status == "ok" and type(r.processing) == "table" and r.processing.mode == "apply" then
    os.remove(marker)
  end
  return r
end

-- "s3://bucket/prefix?..." -> bucket, prefix ("" or ending in "/")
local function split_s3(url)
  local bucket, prefix = url:match("^s3://([^/?]+)/?([^?]*)")
  if not bucket then return nil end
  if prefix ~= "" and prefix:sub(-1) ~= "/" then prefix = prefix .. "/" end
  return bucket, prefix
end

--- Where the OpenShift step keeps the ISO: the S3 component's private bucket
-- and prefix (so that publishing is a server-side copy, never a second
-- upload). config.store (components.openshift.store), else the site's
-- store when it is s3://, else s3://<s3.bucket>/<s3.prefix>. Raises when the
-- site has no s3 section or the store is elsewhere.
function M.iso_store(site, config)
  local s3 = site.s3
  if not s3 then
    error("the site has no s3 section: the agent ISO is kept in its private bucket and published "
      .. "from there (endpoint, bucket, public_bucket, public_endpoint)", 0)
  end
  local _, want_prefix = split_s3("s3://" .. s3.bucket .. "/" .. (s3.prefix or ""))
  local url = config and config.store
  if not url and site.store and site.store:match("^s3://") then url = site.store end
  url = url or ("s3://" .. s3.bucket .. "/" .. want_prefix)
  local bucket, prefix = split_s3(url)
  if bucket ~= s3.bucket or prefix ~= want_prefix then
    error("the OpenShift step's store " .. url .. " is not the S3 component's private bucket and prefix (s3://"
      .. s3.bucket .. "/" .. want_prefix .. "): the ISO is published from there by a server-side copy; "
      .. "leave components.openshift.store out, or make it that", 0)
  end
  return url
end

--- Every node's iSCSI disk address {portal, iqn, lun}, by server id, as the
-- iSCSI component names it (iscsi.address: its config, the site
-- and its hooks — the names its own step will give the disk). Without
-- TrueNAS when the site gives truenas.basename and the portal's port;
-- otherwise one read-only look at the first node's disk (a discover-only
-- step, "iscsi-global") learns them. Returns the table, or nil when that
-- step failed (its row says why).
function M.disks(ctx)
  local site = ctx.site
  local global
  local function address(server)
    local c, err = Iscsi.new(M.iscsi_config(site, server), { id = server.id, site = site, server = server })
    if not c then error("server " .. server.id .. ": iscsi config: " .. tostring(err), 0) end
    return Iscsi.address(c, global)
  end
  local disks = {}
  for _, server in ipairs(M.nodes(site)) do
    local a, err = address(server)
    if not a and not global then
      local r = ctx:step(Iscsi, M.iscsi_config(site, server), { step = "iscsi-global",
        phases = { "discover" }, id = server.id, server = server })
      if r.status ~= "ok" then return nil end
      global = { basename = r.discovery.basename, listen_port = r.discovery.listen_port }
      a, err = address(server)
    end
    if not a then error("server " .. server.id .. ": " .. tostring(err), 0) end
    disks[server.id] = { portal = a.portal, iqn = a.iqn, lun = a.lun }
  end
  return disks
end

--- The cluster's nodes another run is working on now: their lock is held
-- (the run's lock file <lock_dir>/<id>.lock, and with an s3:// store the
-- lease in it), so their BMCs may be booting an earlier agent ISO from its
-- public copy. A list of "r630-01 (pid P on host H)"; in a run's site steps
-- the run holds no server lock of its own yet. The lock directory and the
-- store are the ones the runner resolved and locks with (ctx.lock_dir,
-- ctx.store, ctx.store_opts).
function M.nodes_in_use(ctx)
  local lock, store = require "sbot.lock", require "sbot.store"
  local out = {}
  for _, s in ipairs(M.nodes(ctx.site)) do
    local p, perr, pcode
    if ctx.lock_dir then p, perr, pcode = lock.probe(ctx.lock_dir .. "/" .. s.id .. ".lock") end
    if not p and perr and pcode ~= "ENOENT" then -- cannot tell: counted as in use
      out[#out + 1] = s.id .. " (its lock file cannot be read: " .. tostring(perr) .. ")"
    elseif p and p.held then
      out[#out + 1] = string.format("%s (pid %s on %s)", s.id, tostring(math.tointeger(p.pid) or p.pid), tostring(p.host))
    elseif ctx.store then
      local info, err = store.lock_info(ctx.store, ctx.store_opts, s.id)
      if info and not info.stale then
        local h = info.holder or {}
        out[#out + 1] = string.format("%s (pid %s on %s, run %s)", s.id, tostring(math.tointeger(h.pid) or h.pid),
          tostring(h.host), tostring(h.run_id))
      elseif info == nil then -- cannot tell: counted as in use
        out[#out + 1] = s.id .. " (its lease cannot be read: " .. tostring(err) .. ")"
      end
    end
  end
  return out
end

--- The site steps that build and publish the cluster's agent ISO (see the
-- file's header). The site is checked against itself first (the OpenShift
-- component's checks: hosts vs replicas, rendezvous IP, CIDRs, MACs, VIPs),
-- so an inconsistent site fails before any step runs. Returns the publish
-- step's results (`publish.discovery.artifacts[1].url` is what the BMCs are
-- given; M.iso_url reads it), or nil.
function M.iso_site_steps(ctx)
  local site = ctx.site
  local oscfg = ctx:config("openshift", {})
  local disks = M.disks(ctx)
  if not disks then return nil end
  for id, d in pairs(oscfg.disks or {}) do disks[id] = d end -- the site's own say wins
  oscfg.disks = disks
  oscfg.store = M.iso_store(site, oscfg)
  local check, err = OpenShift.new(oscfg, ctx:opts())
  if not check then error("openshift config: " .. tostring(err), 0) end
  OpenShift.check(check) -- raises with every problem of the site, before anything runs

  local s3cfg = ctx:config("s3", {})
  local artifacts = s3cfg.artifacts
  s3cfg.artifacts = nil
  ctx:step(S3, s3cfg)
  local os_r = ctx:step(OpenShift, oscfg)

  local iso = os_r.discovery and os_r.discovery.iso or {}
  local mode = site.openshift and site.openshift.iso or {}
  local published = (s3cfg.publish or { "isos/" })[1]
  local cluster_dir = published .. "openshift/" .. tostring(os_r.discovery and os_r.discovery.cluster) .. "/"
  local art
  if mode.publish == "presigned" then
    art = { key = iso.key, source = iso.key, publish = false, presign = mode.expires,
      content_type = "application/x-iso9660-image" }
  else
    art = { key = cluster_dir .. tostring(os_r.discovery and os_r.discovery.version) .. "/{sha256}/" .. M.ISO_NAME,
      source = iso.key, publish = true, warning = M.PUBLIC_WARNING,
      content_type = "application/x-iso9660-image" }
  end
  -- the public copies of this cluster's earlier ISOs (other versions, other
  -- configs, or all of them once the site says presigned) hold the pull
  -- secret: the S3 component deletes them, but for openshift.iso.keep_previous;
  -- not while another run works on a node (it may be booting one of them)
  local busy = M.nodes_in_use(ctx)
  if #busy == 0 then
    art.supersedes = cluster_dir
    art.keep_previous = mode.keep_previous or 0
  else
    require("sbot.log").warn("earlier agent ISOs stay published this run: another run is working on "
      .. table.concat(busy, ", ") .. " and may be booting one of them", { step = "publish" })
  end
  local list = { art }
  for _, a in ipairs(artifacts or {}) do list[#list + 1] = a end
  s3cfg.artifacts = list
  return ctx:step(S3, s3cfg, { step = "publish" })
end

--- The URL the BMCs get the ISO from, in a server's steps (the publish site
-- step's results): the public copy's URL, or the presigned one. nil when the
-- site steps did not publish it.
function M.iso_url(ctx)
  local p = ctx.site_results and ctx.site_results.publish
  local a = p and p.discovery and p.discovery.artifacts and p.discovery.artifacts[1]
  return a and a.url or nil
end

return M
