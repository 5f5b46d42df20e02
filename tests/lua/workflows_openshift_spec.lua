-- workflows/full_deployment.lua, openshift_only.lua and switch_version.lua
-- against `sbot lab --tgt` (3 servers, --time-scale 0.1): the agent ISO built
-- by the stand-in installer, kept in the lab's S3, published (or presigned)
-- for the iDRACs, which read it over plain HTTP with Range requests; the
-- servers' iSCSI disks on the TrueNAS model exported by istgt; the R630s set
-- up with one reboot. Every lab device counts its writes: a rerun must make
-- none. The boot records show what each simulated server booted.
local h = require "helpers"
local labclient = require "labclient"
local json = require "sbot.json"
local http = require "sbot.http"

local SYS = "/redfish/v1/Systems/System.Embedded.1"
local MGR = "/redfish/v1/Managers/iDRAC.Embedded.1"

local wait_for = h.wait_for

describe("the OpenShift workflows against sbot lab --tgt", function()
  local lab, tmp, n_site = nil, nil, 0
  local site_path, url

  -- A site file from the lab's (secret: references left as they are), with
  -- fast polling for the R630 and its own state and runs directories;
  -- edit(t) may change the raw table first.
  local function write_site(edit)
    n_site = n_site + 1
    local dir = tmp .. "/site" .. n_site
    os.execute("mkdir -p " .. h.shquote(dir))
    local t = dofile(lab.dir .. "/site.lua")
    t.components = { r630 = { power = { interval = 0.1 }, jobs = { interval = 0.1 } } }
    t.state_dir = tmp .. "/state"
    t.runs_dir = tmp .. "/runs"
    if edit then edit(t) end
    local path = dir .. "/site.lua"
    h.write_private(path, "return " .. require("sbot.lab").lua_literal(t) .. "\n")
    return path
  end

  local function run(wf, args, site)
    local all = { "run", h.source_dir .. "/workflows/" .. wf .. ".lua", "--site", site or site_path }
    for _, a in ipairs(args or {}) do all[#all + 1] = a end
    return h.sbot(all, { cwd = tmp })
  end

  -- the run record a run printed ("run record: DIR")
  local function record(r)
    local dir = assert(r.stdout:match("run record: (%S+)"), r.stdout .. r.stderr)
    return json.decode(h.read_file(dir .. "/results.json"))
  end

  local function devices() return lab.state().devices end

  -- writes of every device that counts them
  local function writes(d)
    local w = {}
    for name, s in pairs(d or devices()) do
      if type(s) == "table" and s.writes then w[name] = s.writes end
    end
    return w
  end

  local function client(i)
    return lab.client("idrac-" .. i, { password = lab.site.servers[i].idrac.password })
  end

  -- the installer's own reboot, at the end of an installation: the server
  -- comes back up from its boot order
  local function restart(i)
    local n = #devices()["idrac-" .. i].boots
    wait_for(function() return not devices()["idrac-" .. i].not_ready end, 10, "idrac-" .. i)
    local r = assert(client(i):request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "ForceRestart" } }))
    assert.are.equal(204, r.status, r.body)
    return wait_for(function()
      local s = devices()["idrac-" .. i]
      return #s.boots > n and s.last_boot
    end, 15, "the next boot of idrac-" .. i)
  end

  setup(function()
    lab = labclient.start_lab { "--servers", "3", "--tgt", "--time-scale", "0.1" }
    tmp = h.tmpdir("ocpwf")
    site_path = write_site()
  end)

  teardown(function()
    if lab then lab.stop() end
    if tmp then os.execute("rm -rf " .. h.shquote(tmp)) end
  end)

  it("full_deployment: --plan shows every step's changes and writes nothing; the run converges three "
    .. "servers with one reboot each, the ISO booted once from the lab's S3 over HTTP, then the iSCSI disk; "
    .. "a rerun plans zero changes and writes nothing", function()
    local before = devices()
    local p = run("full_deployment", { "--plan" })
    assert.are.equal(0, p.code, p.stdout .. p.stderr)
    -- every step's changes: the site steps', then each server's
    assert.matches("%(site%) / s3: %d+ change%(s%)", p.stdout)
    assert.matches("(site) / openshift: 2 change(s)", p.stdout, 1, true)
    assert.matches("(site) / s3 (publish): ", p.stdout, 1, true)
    assert.matches("+ create s3://sbot-public/isos/openshift/lab/4.16.8/{sha256}/agent.x86_64.iso", p.stdout, 1, true)
    assert.matches("WARNING: the agent ISO embeds the cluster's pull secret", p.stdout, 1, true)
    for i = 1, 3 do
      -- with the server's CHAP credentials (the lab's site: user <id>, the secret in Vault)
      assert.matches(string.format("r630-0%d / iscsi: 9 change(s)", i), p.stdout, 1, true)
      assert.matches(string.format("+ create chap:r630-0%d", i), p.stdout, 1, true)
      assert.matches(string.format("r630-0%d / r630: 4 change(s)", i), p.stdout, 1, true)
    end
    assert.matches("IscsiDev1Con1Auth: \"None\" -> \"Chap\"", p.stdout, 1, true)
    assert.matches("IscsiDev1Con1ChapName: \"\" -> \"r630-01\"", p.stdout, 1, true)
    assert.matches("IscsiDev1Con1TargetName: \"\" -> \"iqn.2005-10.org.freenas.ctl:r630-r630-01.openshift4.16.8\"",
      p.stdout, 1, true)
    assert.matches("OneTimeUefiBootSeqDev: \"NIC.PxeDevice.1-1\" -> \"Optical.iDRACVirtual.1-1\"", p.stdout, 1, true)
    assert.are.same(writes(before), writes())
    assert.are.same({}, devices().installer.downloads)

    -- the run
    local vault_before = devices().vault.counts
    local r = run("full_deployment")
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    -- the site's secrets come from the lab's Vault: one AppRole login for the whole run
    -- (site steps and three servers' workers), and that token revoked at its end
    local vault_after = devices().vault.counts
    assert.are.equal(vault_before.logins + 1, vault_after.logins)
    assert.are.equal(vault_before.revocations + 1, vault_after.revocations)
    local rec = record(r)
    local rows = {}
    for _, row in ipairs(rec.results) do rows[#rows + 1] = row.id .. " " .. (row.step or row.component) end
    assert.are.same({ "(site) s3", "(site) openshift", "(site) publish", "r630-01 iscsi", "r630-01 r630",
      "r630-02 iscsi", "r630-02 r630", "r630-03 iscsi", "r630-03 r630" }, rows)
    -- the ISO's public URL: in the results, at the readers' (plain HTTP) address,
    -- under a key that is the ISO's SHA-256
    local pub = rec.results[3].discovery.artifacts[1]
    url = pub.url
    local iso_sha = rec.results[2].housekeeping.iso.sha256
    assert.are.equal(lab.site.s3.public_endpoint .. "/sbot-public/isos/openshift/lab/4.16.8/" .. iso_sha
      .. "/agent.x86_64.iso", url)
    assert.matches("^http://", url)
    -- the index lists it, with the private copy it was copied from
    local s3c = assert(require("sbot.s3").client { endpoint = lab.site.s3.endpoint, tls = lab.site.s3.tls,
      access_key = lab.site.s3.access_key, secret_key = lab.site.s3.secret_key })
    local index = json.decode(assert(s3c:get_object { bucket = "sbot", key = "metadata/index.json" }).body)
    local entry = index.objects["isos/openshift/lab/4.16.8/" .. iso_sha .. "/agent.x86_64.iso"]
    assert.are.equal(rec.results[2].discovery.iso.key, entry.object)
    assert.are.equal(iso_sha, entry.sha256)
    assert.are.equal(url, entry.public.url)
    -- anyone may read it with a Range request; the private copy is refused
    local g = assert(http.get(url, { headers = { Range = "bytes=32768-34815" } }))
    assert.are.equal(206, g.status)
    assert.are.equal("\1CD001", g.body:sub(1, 6))
    local priv = assert(http.get(lab.site.s3.public_endpoint .. "/sbot/" .. rec.results[2].discovery.iso.key))
    assert.are.equal(403, priv.status)

    local after = devices()
    for i = 1, 3 do
      local name = "idrac-" .. i
      local b0, s = before[name], after[name]
      assert.are.equal(b0.resets + 1, s.resets, name .. ": exactly one reboot")
      assert.are.equal(#b0.boots + 1, #s.boots, name)
      local boot = s.last_boot
      assert.are.equal("VirtualCD", boot.source, json.encode(boot))
      assert.are.equal("bios", boot.once)
      assert.are.equal(url, boot.image)
      assert.are.equal("agent-sbot-lab-4.16.8", boot.volume_id)
      assert.is_false(s.vmedia.CD.inserted, name .. ": ejected after the one-time boot")
      assert.are.equal("Disabled", s.bios.current.OneTimeBootMode)
      assert.matches("^iSCSI%.Dev1%.Con1,", s.bios.current.UefiBootSeq)
      assert.are.equal(0, s.sessions)
    end
    -- the installer reboots each node when it is done: the next boot is the iSCSI disk
    for i = 1, 3 do
      local b = restart(i)
      assert.are.equal("iSCSI", b.source, json.encode(b))
      assert.are.equal("iqn.2005-10.org.freenas.ctl:r630-r630-0" .. i .. ".openshift4.16.8", b.target.name)
      assert(b.iscsi_login and b.iscsi_login.ok, json.encode(b.iscsi_login))
      assert.are.equal("istgt", b.iscsi_login.checked)
      assert.are.equal("tank/openshift_installations/r630_r630-0" .. i .. "_4_16_8", b.iscsi_login.zvol)
      -- with the CHAP user and secret the R630 step gave the BIOS (istgt checked the secret)
      assert.are.equal("r630-0" .. i, b.iscsi_login.chap)
    end
    -- no CHAP secret in the output, the log or the record of either run
    for _, out in ipairs { p, r } do
      local dir = out.stdout:match("run record: (%S+)")
      for i = 1, 3 do
        local secret = lab.site.servers[i].components.iscsi.chap.secret
        assert.is_nil((out.stdout .. out.stderr):find(secret, 1, true))
        assert.is_false(h.sh("grep -rqF " .. h.shquote(secret) .. " " .. h.shquote(dir)), "secret in " .. dir)
      end
    end

    -- converged: a rerun plans zero changes and writes nothing on any device
    for i = 1, 3 do
      wait_for(function() return not devices()["idrac-" .. i].not_ready end, 10, "idrac-" .. i)
    end
    local w = writes()
    local again = run("full_deployment")
    assert.are.equal(0, again.code, again.stdout .. again.stderr)
    for _, row in ipairs(record(again).results) do
      assert.are.equal("ok", row.status, json.encode(row))
      assert.are.equal(0, #(row.plan or {}), row.id .. " " .. tostring(row.step) .. " plans " .. json.encode(row.plan))
    end
    assert.are.same(w, writes())
    assert.are.equal(1, #devices().installer.downloads, "one download of the installer in all")
  end)

  it("openshift_only reuses the ISO: no build, no upload, no write anywhere", function()
    assert(url, "needs the deployment above")
    local w = writes()
    local r = run("openshift_only")
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("agent ISO URL: " .. url:gsub("%p", "%%%0") .. "\n", r.stdout)
    local rec = record(r)
    for _, row in ipairs(rec.results) do
      assert.are.equal(0, #(row.plan or {}), (row.step or row.component) .. ": " .. json.encode(row.plan))
    end
    assert.is_true(rec.results[2].discovery.iso.exists)
    assert.are.same(w, writes())
  end)

  it("switch_version refuses a version without a disk, then moves a server to another version's disk and "
    .. "back: one reboot each, the boot logs in to the new target", function()
    assert(url, "needs the deployment above")
    local w = writes()
    local no = run("switch_version", { "4.17.3", "--server", "r630-01" })
    assert.are.equal(1, no.code, no.stdout .. no.stderr)
    assert.matches("zvol tank/openshift_installations/r630_r630-01_4_17_3 does not exist, and zvol.existing is set",
      no.stdout, 1, true)
    assert.matches("skipped: r630-01 r630: an earlier step (iscsi) failed", no.stdout, 1, true)
    assert.are.same(w, writes(), "nothing was written")

    -- another version's disk, made by the iSCSI component as full_deployment would
    local site = labclient.read_site(site_path)
    local Iscsi = require "sbot.component.iscsi"
    local c = assert(Iscsi.new({ version = "4.17.3", chap = site.servers[1].components.iscsi.chap },
      { id = "r630-01", site = site, server = site.servers[1],
      artifact_dir = tmp .. "/art" }))
    local made = c:execute()
    assert.are.equal("ok", made.status, made.error)

    local function switch(version)
      local before = devices()["idrac-1"]
      local r = run("switch_version", { version, "--server", "r630-01" })
      assert.are.equal(0, r.code, r.stdout .. r.stderr)
      local rec = record(r)
      assert.are.equal(0, #rec.results[1].plan, "the disk exists: " .. json.encode(rec.results[1].plan))
      local iqn = "iqn.2005-10.org.freenas.ctl:r630-r630-01.openshift" .. version
      assert.are.equal(iqn, rec.results[1].discovery.iqn)
      assert.is_true(rec.results[1].housekeeping.login.capacity > 0, "logged in as the server's initiator")
      local s = devices()["idrac-1"]
      assert.are.equal(before.resets + 1, s.resets, "one reboot")
      assert.are.equal(#before.boots + 1, #s.boots)
      local b = s.last_boot
      assert.are.equal("iSCSI", b.source, json.encode(b))
      assert.is_nil(b.once, "no one-time boot: nothing to reinstall")
      assert.are.equal(iqn, b.target.name)
      assert(b.iscsi_login and b.iscsi_login.ok, json.encode(b.iscsi_login))
      assert.are.equal("tank/openshift_installations/r630_r630-01_" .. version:gsub("%.", "_"), b.iscsi_login.zvol)
      assert.are.equal("r630-01", b.iscsi_login.chap, "the same CHAP credentials on the new target")
      assert.is_false(s.vmedia.CD.inserted)
      wait_for(function() return not devices()["idrac-1"].not_ready end, 10, "idrac-1")
    end
    switch("4.17.3")
    switch("4.16.8")
  end)

  it("presigned: the ISO stays private; the lab's iDRAC 8 reads it through a presigned http URL (a query "
    .. "string) with Range requests", function()
    assert(url, "needs the deployment above")
    local path = write_site(function(t) t.openshift.iso = { publish = "presigned", expires = 3600 } end)
    local r = run("openshift_only", {}, path)
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    local signed = assert(r.stdout:match("agent ISO URL: (%S+)"), r.stdout)
    assert.matches("^" .. lab.site.s3.public_endpoint:gsub("%p", "%%%0") .. "/sbot/openshift/lab/4%.16%.8/%x+/agent%.x86_64%.iso%?", signed)
    assert.matches("X-Amz-Expires=3600", signed, 1, true)
    assert.matches("X%-Amz%-Signature=%x+", signed)
    local rec = record(r)
    assert.is_nil(rec.results[3].discovery.artifacts[1].public_url, "not published")
    -- and the public copy the deployment published is gone: the site wants the ISO private now
    assert.are.equal(url, rec.results[3].discovery.superseded[1].url)
    assert.are.equal("unpublish", rec.results[3].discovery.superseded[1].action)
    assert.are.equal(403, assert(http.get(url)).status)
    -- a server takes it as virtual media (InsertMedia reads the volume descriptor), and ejects it
    wait_for(function() return not devices()["idrac-3"].not_ready end, 10, "idrac-3")
    local c = client(3)
    local ins = assert(c:request("POST", MGR .. "/VirtualMedia/CD/Actions/VirtualMedia.InsertMedia",
      { auth = "basic", body = { Image = signed, Inserted = true, WriteProtected = true } }))
    assert.are.equal(204, ins.status, ins.body .. json.encode(devices()["idrac-3"].vmedia_error))
    local s = devices()["idrac-3"]
    assert.is_true(s.vmedia.CD.inserted)
    assert.are.equal(signed, s.vmedia.CD.image)
    assert.are.equal(204, assert(c:request("POST", MGR .. "/VirtualMedia/CD/Actions/VirtualMedia.EjectMedia",
      { auth = "basic", body = {} })).status)
    -- the same URL with its signature changed is refused (RAC0904: the S3 answered 403)
    local bad = signed:gsub("X%-Amz%-Signature=(%x)", function(x) return "X-Amz-Signature=" .. (x == "0" and "1" or "0") end)
    local no = assert(c:request("POST", MGR .. "/VirtualMedia/CD/Actions/VirtualMedia.InsertMedia",
      { auth = "basic", body = { Image = bad } }))
    assert.are.equal(500, no.status)
    assert.are.equal("RAC0904", labclient.message_id(no))
    assert.matches("HTTP 403", devices()["idrac-3"].vmedia_error.reason, 1, true)
  end)

  it("reads the iSCSI basename and port from TrueNAS when the site does not give them: the same disks, "
    .. "the same ISO", function()
    assert(url, "needs the deployment above")
    local path = write_site(function(t)
      t.truenas.basename = nil
      t.truenas.portal = t.truenas.portal:match("^(.*):%d+$") -- the port: iSCSI's global listen port
    end)
    local r = run("full_deployment", { "--plan", "--server", "r630-01" }, path)
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    local rec = record(r)
    assert.are.equal("iscsi-global", rec.results[1].step)
    assert.are.equal("r630-01", rec.results[1].id)
    assert.is_nil(rec.results[1].phases.process, "discover only")
    -- the names are the ones the site gave before: the stored ISO is found, nothing to build
    assert.matches("(site) / openshift: no changes", r.stdout, 1, true)
    assert.is_true(rec.results[3].discovery.iso.exists)
  end)

  it("openshift_only for another version: its ISO published, the earlier public copy deleted (--plan shows "
    .. "it), both private ISOs kept, the index says which copy was unpublished", function()
    assert(url, "needs the deployment above")
    local s3c = assert(require("sbot.s3").client { endpoint = lab.site.s3.endpoint, tls = lab.site.s3.tls,
      access_key = lab.site.s3.access_key, secret_key = lab.site.s3.secret_key })
    -- 4.16.8 published again (the presigned run above took its public copy away)
    local r1 = run("openshift_only")
    assert.are.equal(0, r1.code, r1.stdout .. r1.stderr)
    assert.are.equal(200, assert(http.get(url)).status)
    local old_key = record(r1).results[2].discovery.iso.key
    os.execute("sleep 1.1") -- the index's `updated` has whole seconds
    local v2 = write_site(function(t) t.openshift.version = "4.17.3" end)
    local p = run("openshift_only", { "--plan" }, v2)
    assert.are.equal(0, p.code, p.stdout .. p.stderr)
    assert.matches("- delete " .. url:gsub("^http://[^/]+/", "s3://"), p.stdout, 1, true)
    assert.are.equal(200, assert(http.get(url)).status, "--plan deletes nothing")
    local r2 = run("openshift_only", {}, v2)
    assert.are.equal(0, r2.code, r2.stdout .. r2.stderr)
    local new_url = assert(r2.stdout:match("agent ISO URL: (%S+)"), r2.stdout)
    assert.matches("/isos/openshift/lab/4%.17%.3/%x+/agent%.x86_64%.iso$", new_url)
    assert.are.equal(403, assert(http.get(url)).status, "the 4.16.8 public copy is gone")
    assert.are.equal(206, assert(http.get(new_url, { headers = { Range = "bytes=0-9" } })).status)
    local rec = record(r2)
    local new_key = rec.results[2].discovery.iso.key
    for _, k in ipairs { old_key, new_key } do -- the private ISOs are kept
      assert.truthy(s3c:head_object { bucket = "sbot", key = k })
    end
    local un = rec.results[3].housekeeping.unpublished
    assert.are.equal(1, #un)
    local index = json.decode(assert(s3c:get_object { bucket = "sbot", key = "metadata/index.json" }).body)
    local entry = index.objects[url:match("/sbot%-public/(.*)$")]
    assert.is_nil(entry.public)
    assert.are.equal(url:match("/sbot%-public/(.*)$"), entry.unpublished.key)
    assert.are.equal(old_key, entry.object)
  end)

  it("earlier agent ISOs stay published while another run holds a node (its lock file, or its lease in an "
    .. "s3:// store); openshift.iso.keep_previous = 1 keeps the newest earlier one, 0 unpublishes it", function()
    assert(url, "needs the deployment above")
    local sys = require "sbot.sys"
    local v2 = write_site(function(t) t.openshift.version = "4.17.3" end)
    local r0 = run("openshift_only", {}, v2)
    assert.are.equal(0, r0.code, r0.stdout .. r0.stderr)
    local url2 = assert(r0.stdout:match("agent ISO URL: (%S+)"), r0.stdout)
    assert.are.equal(403, assert(http.get(url)).status)
    local function run_log(r)
      return h.read_file(assert(r.stdout:match("run record: (%S+)"), r.stdout) .. "/log.jsonl")
    end
    -- another run holds r630-02's lock file: back to 4.16.8, and 4.17.3 stays public
    os.execute("sleep 1.1") -- the index's `updated` has whole seconds
    local l = assert(require("sbot.lock").acquire(tmp .. "/state/locks/r630-02.lock", { name = "server r630-02" }))
    local r1 = run("openshift_only")
    l:release()
    assert.are.equal(0, r1.code, r1.stdout .. r1.stderr)
    assert.are.equal(200, assert(http.get(url)).status)
    assert.are.equal(200, assert(http.get(url2)).status, "not unpublished while r630-02 is in use")
    assert.matches("earlier agent ISOs stay published this run: another run is working on r630-02 (pid "
      .. sys.getpid(), run_log(r1), 1, true)
    assert.are.same({}, record(r1).results[3].discovery.superseded)
    -- with an s3:// store, another machine's run holds r630-03's lease there (no lock file here)
    os.execute("sleep 1.1")
    local store = require "sbot.store"
    local surl, sopts = store.for_site("s3://sbot/records", lab.site)
    local lease = assert(store.lock(surl, sopts, "r630-03", { run_id = "elsewhere-1" }))
    local held = assert(store.lock_info(surl, sopts, "r630-03"))
    assert.are.equal("elsewhere-1", held.holder.run_id)
    assert.is_falsy(held.stale)
    local r2 = run("openshift_only", { "--store", "s3://sbot/records" }, v2)
    lease:release()
    assert.are.equal(0, r2.code, r2.stdout .. r2.stderr)
    assert.is_false(store.lock_info(surl, sopts, "r630-03"), "released")
    assert.are.equal(200, assert(http.get(url)).status, "not unpublished while r630-03 is in use")
    assert.are.equal(200, assert(http.get(url2)).status)
    assert.matches("another run is working on r630-03 (pid " .. sys.getpid() .. " on " .. sys.hostname()
      .. ", run elsewhere-1)", run_log(r2), 1, true)
    -- nobody else now; keep_previous = 1: 4.16.8 (the newest earlier copy) stays
    os.execute("sleep 1.1")
    local keep1 = write_site(function(t)
      t.openshift.version = "4.17.3"
      t.openshift.iso = t.openshift.iso or {}
      t.openshift.iso.keep_previous = 1
    end)
    local r3 = run("openshift_only", {}, keep1)
    assert.are.equal(0, r3.code, r3.stdout .. r3.stderr)
    local sup = record(r3).results[3].discovery.superseded
    assert.are.equal(1, #sup)
    assert.are.equal("kept", sup[1].action)
    assert.are.equal(url, sup[1].url)
    assert.are.equal(200, assert(http.get(url)).status)
    assert.are.equal(200, assert(http.get(url2)).status)
    -- keep_previous = 0 (the default): it goes
    local r4 = run("openshift_only", {}, v2)
    assert.are.equal(0, r4.code, r4.stdout .. r4.stderr)
    assert.are.equal("unpublish", record(r4).results[3].discovery.superseded[1].action)
    assert.are.equal(403, assert(http.get(url)).status)
    assert.are.equal(200, assert(http.get(url2)).status)
  end)

  describe("refuses an invalid site before anything runs", function()
    local cases = {
      { "a missing pull secret", function(t) t.openshift.pull_secret = nil end, 2,
        "openshift.pull_secret: required secret is missing" },
      { "a rendezvous IP outside the nodes", function(t) t.openshift.rendezvous_ip = "10.99.0.99" end, 1,
        "openshift.rendezvous_ip: 10.99.0.99 is not the node IP of any cluster server" },
      { "a duplicate MAC", function(t) t.servers[3].macs = { t.servers[1].macs[1]:upper() } end, 1,
        "servers[3] (r630-03).macs[1]: MAC 24:6e:96:00:01:11 is also servers[1] (r630-01)'s" },
      { "a single node with VIPs", function(t)
          t.servers[1].role = "sno"
          t.servers[2].role = "other"
          t.servers[3].role = "other"
        end, 1, "openshift.api_vip: a single-node cluster (role sno) has no VIPs" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local path = write_site(case[2])
        local w = writes()
        local downloads = #devices().installer.downloads
        local r = run("full_deployment", {}, path)
        assert.are.equal(case[3], r.code, r.stdout .. r.stderr)
        assert.matches(case[4], r.stdout .. r.stderr, 1, true)
        if case[3] == 1 then
          -- the site steps stopped at the check: no step ran, no server was touched
          local rec = record(r)
          assert.are.equal("(workflow)", rec.results[1].component)
          assert.matches("^site_steps%(%) failed: site ", rec.results[1].error)
          for i = 2, #rec.results do
            assert.are.equal("skipped", rec.results[i].status)
          end
        end
        assert.are.same(w, writes())
        assert.are.equal(downloads, #devices().installer.downloads)
      end)
    end
  end)
end)
