-- The OpenShift component against `sbot lab` (its S3 and its stand-in
-- openshift-install mirror): render -> the installer accepts -> a verified ISO
-- in the store; reuse; invalid sites refused before anything runs; a release
-- whose checksum does not match is never run; a corrupt stored ISO fails
-- housekeeping.
local h = require "helpers"
local labclient = require "labclient"
local yaml = require "sbot.yaml"
local site_mod = require "sbot.site"
local OpenShift = require "sbot.component.openshift"

describe("OpenShift component", function()
  local lab, tmp, s3_url, n_site = nil, nil, nil, 0

  setup(function()
    lab = labclient.start_lab { "--servers", "3" }
    tmp = h.tmpdir("openshift")
    s3_url = lab.info.devices.s3.url
  end)

  teardown(function()
    if lab then lab.stop() end
    if tmp then os.execute("rm -rf " .. h.shquote(tmp)) end
  end)

  -- A site loaded from the lab's site file, in its own directory (its own
  -- state_dir: installer cache, work dirs, file store); edit(t) may change the
  -- raw table before it is written and validated.
  local function load_site(edit)
    n_site = n_site + 1
    local dir = tmp .. "/site" .. n_site
    os.execute("mkdir -p " .. h.shquote(dir))
    local t = dofile(lab.dir .. "/site.lua")
    if edit then edit(t) end
    h.write_file(dir .. "/site.lua", "return " .. require("sbot.lab").lua_literal(t) .. "\n")
    os.execute("chmod 600 " .. h.shquote(dir .. "/site.lua"))
    return site_mod.load(dir .. "/site.lua")
  end

  local function disks(site)
    local d = {}
    for _, s in ipairs(site.servers) do
      d[s.id] = { portal = "127.0.0.1:3260", iqn = "iqn.2005-10.org.freenas.ctl:r630-" .. s.id .. ".openshift4.16.8" }
    end
    return d
  end

  local function run(site, config, mode)
    config = config or {}
    config.disks = config.disks or disks(site)
    local c = assert(OpenShift.new(config, { site = site, artifact_dir = site.dir .. "/artifacts" }))
    return c:execute { mode = mode or "apply" }, c
  end

  local function installer_state() return lab.state().devices.installer end
  local function bucket() return lab.state().devices.s3.buckets.sbot end

  it("renders the configs, the stand-in installer accepts them, the ISO is verified and stored; a rerun changes nothing", function()
    local site = assert(load_site())
    local store = "s3://sbot/clusters?endpoint=" .. s3_url
    local before = installer_state().downloads
    local r = run(site, { store = store })
    assert(r.status == "ok", r.error)
    -- discovery: every host, its disk by path, the rendered configs (pull secret redacted)
    assert.are.equal(3, #r.discovery.hosts)
    assert.are.equal("/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2005-10.org.freenas.ctl:r630-r630-02"
      .. ".openshift4.16.8-lun-0", r.discovery.hosts[2].root_device)
    assert.matches("pullSecret: <redacted>\n", r.discovery.rendered.install_config, 1, true)
    -- the plan: fetch the installer, build the ISO
    assert.are.equal(2, #r.plan)
    assert.are.equal("openshift-install 4.16.8", r.plan[1].resource)
    assert.matches("^s3://sbot/clusters%?endpoint=.* openshift/lab/4%.16%.8/%x+/agent%.x86_64%.iso$", r.plan[2].resource)
    -- one download of the release, its checksum checked
    assert.are.equal(#before + 1, #installer_state().downloads)
    assert.are.equal(r.discovery.installer.expected, r.processing.applied[1].result.tarball_sha256)
    -- the ISO, read back from S3 and verified
    local iso = r.housekeeping.iso
    assert.is_true(iso.verified)
    assert.are.equal("agent-sbot-lab-4.16.8", iso.volume_id)
    assert.are.same({ bootable = true, emulation = "none", platform = "BIOS", load_rba = iso.el_torito.entries[1].load_rba,
      sectors = 4 }, iso.el_torito.entries[1])
    assert.matches("^s3://sbot/clusters/openshift/lab/4%.16%.8/%x+/agent%.x86_64%.iso$", iso.stored)
    -- artifacts: the configs (pull secret redacted, MACs quoted) and the installer's log
    local arts = {}
    for _, a in ipairs(r.artifacts) do arts[a.key] = h.read_file(a.path) end
    local ic = assert(yaml.decode(arts["install-config.yaml"]))
    assert.are.equal("<redacted>", ic.pullSecret)
    assert.are.same({ "10.99.0.5" }, ic.platform.baremetal.apiVIPs)
    assert.are.equal(3, ic.controlPlane.replicas)
    local ac = assert(yaml.decode(arts["agent-config.yaml"]))
    assert.are.equal("10.99.0.11", ac.rendezvousIP)
    assert.are.equal(r.discovery.hosts[1].mac, ac.hosts[1].interfaces[1].macAddress)
    assert.matches("macAddress: '24:6e:96:00:01:11'", arts["agent-config.yaml"], 1, true)
    assert.matches("Generated ISO", arts["openshift_install.log"], 1, true)
    assert.is_nil(arts["openshift_install.log"]:find(site.openshift.pull_secret:reveal(), 1, true))
    -- the work directory is gone; the installer is cached
    local _, _, left = h.sh("ls " .. h.shquote(site.state_dir .. "/openshift/work"))
    assert.are.equal("", left)
    local versions = bucket().versions

    -- a second run: nothing to change, no download, no upload
    local r2 = run(site, { store = store })
    assert(r2.status == "ok", r2.error)
    assert.are.equal(0, #r2.plan)
    assert.is_true(r2.discovery.iso.exists)
    assert.is_true(r2.discovery.installer.cached)
    assert.is_true(r2.housekeeping.iso.verified)
    assert.are.equal(iso.sha256, r2.housekeeping.iso.sha256)
    assert.are.equal(#before + 1, #installer_state().downloads)
    assert.are.equal(versions, bucket().versions)
    assert.are.equal(0, #r2.artifacts)
  end)

  it("plans the same in --plan mode and changes nothing", function()
    local site = assert(load_site())
    local r = run(site, nil, "plan")
    assert(r.status == "ok", r.error)
    assert.are.equal(2, #r.plan)
    assert.is_false(r.discovery.iso.exists)
    assert.is_true(r.phases.housekeep.skipped)
    -- discover and plan are read-only: not even a directory was made
    assert.is_nil(io.open(site.state_dir .. "/openshift"))
    assert.is_nil(io.open(site.state_dir))
  end)

  local invalid = {
    { "a rendezvous IP outside the nodes",
      function(t) t.openshift.rendezvous_ip = "10.99.0.99" end,
      "openshift.rendezvous_ip: 10.99.0.99 is not the node IP of any cluster server (it must be a master's: "
        .. "the agent there runs the installation)" },
    { "a duplicate MAC",
      function(t) t.servers[3].macs = { t.servers[1].macs[1]:upper() } end,
      "servers[3] (r630-03).macs[1]: MAC 24:6e:96:00:01:11 is also servers[1] (r630-01)'s" },
    { "a single node with VIPs",
      function(t)
        t.servers[1].role = "sno"
        t.servers[2].role = "other"
        t.servers[3].role = "other"
      end,
      "openshift.api_vip: a single-node cluster (role sno) has no VIPs (its platform is none: the node's own IP "
        .. "serves the API and ingress); remove api_vip and ingress_vip" },
    { "a node IP outside the machine network",
      function(t) t.servers[2].node_ip = "10.98.0.12/24" end,
      "servers[2] (r630-02).node_ip: 10.98.0.12 is outside openshift.machine_network 10.99.0.0/24" },
    { "two masters",
      function(t) t.servers[3].role = "worker" end,
      "servers: 2 server(s) with role master; a cluster has 3, 4 or 5 control-plane nodes, or one server with role sno" },
    { "a VIP that is a node's IP",
      function(t) t.openshift.ingress_vip = "10.99.0.12" end,
      "openshift.ingress_vip: 10.99.0.12 is a node's own IP" },
    { "a pull secret that is not one",
      function(t) t.openshift.pull_secret = '{"registry":"x"}' end,
      'openshift.pull_secret: not a pull secret (JSON with a non-empty "auths" object, as downloaded from console.redhat.com)' },
  }
  for _, case in ipairs(invalid) do
    it("refuses " .. case[1] .. " in discover, before anything runs", function()
      local site = assert(load_site(case[2]))
      local downloads, requests = #installer_state().downloads, installer_state().requests
      local r = run(site)
      assert.are.equal("failed", r.status)
      assert.are.equal("discover: site " .. site.file .. ": " .. case[3], r.error)
      assert.is_true(r.phases.process.skipped)
      -- nothing ran: no request to the mirror, nothing in the store or the cache
      assert.are.equal(downloads, #installer_state().downloads)
      assert.are.equal(requests, installer_state().requests)
      assert.is_nil(io.open(site.state_dir .. "/openshift/store/openshift"))
    end)
  end

  it("check() runs discover's site checks alone: no store, no cache, no mirror", function()
    local site = assert(load_site())
    local requests = installer_state().requests
    local c = assert(OpenShift.new({ disks = disks(site) }, { site = site }))
    assert.are.same({ cluster = "lab", version = "4.16.8", platform = "baremetal", masters = 3, workers = 0,
      rendezvous_ip = "10.99.0.11" }, OpenShift.check(c))
    local bad = assert(load_site(invalid[1][2]))
    local ok, err = pcall(OpenShift.check, assert(OpenShift.new({ disks = disks(bad) }, { site = bad })))
    assert.is_false(ok)
    assert.are.equal("site " .. bad.file .. ": " .. invalid[1][3], err)
    assert.are.equal(requests, installer_state().requests)
    assert.is_nil(io.open(site.state_dir))
  end)

  it("keeps an s3:// store at the site's S3 endpoint, with its keys; a store naming another endpoint is refused", function()
    local site = assert(load_site())
    local r = run(site, { store = "s3://sbot/st" }, "plan")
    assert(r.status == "ok", r.error)
    assert.is_false(r.discovery.iso.exists)
    assert.are.equal("s3://sbot/st", r.discovery.iso.store)
    local other = run(site, { store = "s3://sbot/st?endpoint=https://127.0.0.1:9" }, "plan")
    assert.are.equal("failed", other.status)
    assert.matches("endpoint https://127.0.0.1:9 is not the site's s3.endpoint " .. site.s3.endpoint, other.error, 1, true)
    assert.matches("sent only to the endpoint the site names", other.error, 1, true)
  end)

  it("refuses a site without a pull secret when it is loaded", function()
    local site, err = load_site(function(t) t.openshift.pull_secret = nil end)
    assert.is_nil(site)
    assert.matches("openshift.pull_secret: required secret is missing", err, 1, true)
  end)

  it("names every problem of a site at once, one per line", function()
    local site = assert(load_site(function(t)
      t.openshift.rendezvous_ip = "10.99.0.99"
      t.servers[2].macs = nil
      t.openshift.version = "4.16"
    end))
    local r = run(site)
    local lines = {}
    for l in r.error:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(3, #lines)
    assert.matches('openshift.version: "4.16" names no release', lines[1], 1, true)
    assert.matches("servers[2] (r630-02).macs: a cluster server needs its primary NIC's MAC", lines[2], 1, true)
    assert.matches("openshift.rendezvous_ip: 10.99.0.99", lines[3], 1, true)
  end)

  it("names the iSCSI disk by path with the portal's port (3260 when the portal has none), or a local device", function()
    local site = assert(load_site())
    local d = disks(site)
    d["r630-01"] = { portal = "10.0.0.2", iqn = "iqn.x:a", lun = 3 }
    d["r630-02"] = { portal = "[fd00::2]:3261", iqn = "iqn.x:b" }
    d["r630-03"] = { device = "/dev/sda" }
    local r = run(site, { disks = d }, "plan")
    assert(r.status == "ok", r.error)
    assert.are.equal("/dev/disk/by-path/ip-10.0.0.2:3260-iscsi-iqn.x:a-lun-3", r.discovery.hosts[1].root_device)
    assert.are.equal("/dev/disk/by-path/ip-[fd00::2]:3261-iscsi-iqn.x:b-lun-0", r.discovery.hosts[2].root_device)
    assert.are.equal("/dev/sda", r.discovery.hosts[3].root_device)
  end)

  it("needs each cluster server's boot disk", function()
    local site = assert(load_site())
    local d = disks(site)
    d["r630-02"] = nil
    local r = run(site, { disks = d })
    assert.are.equal("discover: site " .. site.file .. ": servers[2] (r630-02): no boot disk for this server in the "
      .. "component's config (disks[\"r630-02\"] = {portal, iqn, lun} from the iSCSI step, or {device = \"/dev/...\"})",
      r.error)
  end)

  it("refuses to run an installer whose download does not match the release's SHA-256", function()
    local site = assert(load_site())
    local c = lab.client("installer")
    assert.are.equal(200, c:request("POST", "/lab/faults", { body = "installer:corrupt=1" }).status)
    local ok, r = pcall(run, site)
    assert.are.equal(200, c:request("POST", "/lab/faults", { body = "" }).status)
    assert(ok, r)
    assert.are.equal("failed", r.status)
    local function lit(x) return (x:gsub("%p", "%%%0")) end
    assert.matches("^process: " .. lit("change 1 of 2 (create openshift-install 4.16.8) failed: openshift-install 4.16.8: "
      .. "the download's SHA-256 is ") .. "%x+ but https://[^ ]+/4%.16%.8/sha256sum%.txt says "
      .. r.discovery.installer.expected .. lit(": refused, not unpacked and not run (removed "), r.error)
    -- nothing left to run by mistake, nothing stored
    local _, _, left = h.sh("ls -A " .. h.shquote(site.state_dir .. "/openshift/cache/4.16.8"))
    assert.are.equal("", left)
    assert.are.equal(0, #r.processing.applied)
  end)

  it("reports the installer's own refusal as the step's error, with its message, and stores nothing", function()
    local site = assert(load_site(function(t)
      t.servers[1].role, t.servers[2].role, t.servers[3].role = "sno", "other", "other"
      t.openshift.api_vip, t.openshift.ingress_vip = nil, nil
      t.openshift.network_type = "OpenShiftSDN"
    end))
    local r = run(site)
    assert.are.equal("failed", r.status)
    assert.matches("change 2 of 2 (create file://" .. site.state_dir, r.error, 1, true)
    assert.matches("failed: openshift-install 4.16.8 agent create image: exit status 1: level=fatal msg=\"failed to "
      .. "fetch Agent Installer ISO: failed to load asset \\\"Install Config\\\": invalid install-config "
      .. "configuration: networking.networkType: Invalid value: \\\"OpenShiftSDN\\\": Only OVNKubernetes network type "
      .. "is allowed for Single Node OpenShift (SNO) cluster\"; 1 applied change(s) undone", r.error, 1, true)
    -- the verified installer stays cached (undo says so); no ISO, no work directory left
    assert.are.equal("a verified installer stays in the cache", r.processing.undone[1].result.kept)
    assert.is_nil(io.open(site.state_dir .. "/openshift/store/openshift"))
    local _, _, left = h.sh("ls -A " .. h.shquote(site.state_dir .. "/openshift/work"))
    assert.are.equal("", left)
  end)

  it("refuses a pin that is not the mirror's release before downloading", function()
    local site = assert(load_site(function(t) t.openshift.installer.sha256 = string.rep("ab", 32) end))
    local downloads = #installer_state().downloads
    local r = run(site)
    assert.are.equal("failed", r.status)
    assert.matches("discover: openshift: openshift.installer.sha256 pins " .. string.rep("ab", 32) .. " but https://[^ ]+"
      .. "/sha256sum.txt lists %x+ for openshift%-install%-linux%-4%.16%.8%.tar%.gz: the mirror serves another release "
      .. "than the one pinned; nothing downloaded", r.error)
    assert.are.equal(downloads, #installer_state().downloads)
  end)

  it("fails housekeeping on a corrupt stored ISO, and re-fetches a tampered cached installer", function()
    local site = assert(load_site())
    local r = run(site)
    assert(r.status == "ok", r.error)
    local key = r.housekeeping.iso.key
    -- the stored ISO loses its El Torito boot record (bit rot, a bad copy)
    local st = assert(require("sbot.store").open(r.discovery.iso.store))
    local bytes = assert(st:get(key))
    local bad = bytes:sub(1, 17 * 2048) .. string.rep("\0", 2048) .. bytes:sub(18 * 2048 + 1)
    assert(st:put(key, bad))
    local r2 = run(site)
    assert.are.equal("failed", r2.status)
    assert.are.equal(0, #r2.plan)
    assert.matches("^housekeep: openshift: the stored agent ISO " .. key:gsub("%p", "%%%0")
      .. " fails verification: ISO [^ ]+: sector 17 is not a volume descriptor$", r2.error)
    -- the cached binary changed: not trusted, fetched again
    h.write_file(site.state_dir .. "/openshift/cache/4.16.8/openshift-install", "#!/bin/sh\necho pwned\n")
    local r3 = run(site, nil, "plan")
    assert.is_false(r3.discovery.installer.cached)
    assert.are.equal("the cached binary's SHA-256 differs from the manifest (changed since it was unpacked)",
      r3.discovery.installer.cache)
  end)

  it("verify_iso names what is wrong with a file that is not a bootable ISO", function()
    local p = tmp .. "/not.iso"
    h.write_file(p, string.rep("x", 100))
    local v, err = OpenShift.verify_iso(p)
    assert.is_nil(v)
    assert.are.equal("ISO " .. p .. ": 100 bytes, too small for an ISO 9660 image (no volume descriptors at sector 16)", err)
    h.write_file(p, string.rep("\0", 40 * 2048))
    v, err = OpenShift.verify_iso(p)
    assert.matches("no ISO 9660 primary volume descriptor at sector 16", err, 1, true)
    v, err = OpenShift.verify_iso(tmp .. "/missing.iso")
    assert.matches("No such file or directory", err, 1, true)
  end)

  it("asks the site's hooks for the interface name, host name and root device", function()
    local site = assert(load_site())
    site.hooks = {
      interface_name = function(server) return "ens" .. server.id:sub(-1) end,
      hostname = function(server) return server.id .. ".lab" end,
      root_device_hints = function(_, disk) return { deviceName = "/dev/sda", model = disk.iqn:sub(-7) } end,
    }
    local r = run(site, nil, "plan")
    assert(r.status == "ok", r.error)
    local ac = assert(yaml.decode(r.discovery.rendered.agent_config))
    assert.are.equal("ens2", ac.hosts[2].interfaces[1].name)
    assert.are.equal("ens2", ac.hosts[2].networkConfig.interfaces[1].name)
    assert.are.equal("r630-02.lab", ac.hosts[2].hostname)
    assert.are.same({ deviceName = "/dev/sda", model = "t4.16.8" }, ac.hosts[2].rootDeviceHints)
  end)
end)
