-- The R630 component (components/r630.c) against `sbot lab`, iDRAC 8 and 9.
-- The lab is the witness: it counts write requests, open sessions and
-- resets, and records what the server booted, so "one reboot", "no write on
-- a converged server" and "no leaked session" are checked on the device.
local helpers = require "helpers"
local labclient = require "labclient"
local images = require "images"
local json = require "sbot.json"
local R630 = require "sbot.component.r630"

local SYS = "/redfish/v1/Systems/System.Embedded.1"
local MGR = "/redfish/v1/Managers/iDRAC.Embedded.1"
local TARGET = "iqn.2005-10.org.freenas.ctl:r630-boot"

local wait_for = helpers.wait_for

local function merge(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
end

--- A config with the lab's fast clock (--time-scale 0.1) in mind.
local function config(image_url, extra)
  return merge({
    iscsi_boot = { target_iqn = TARGET, target_ip = "127.0.0.1", target_port = 3260, lun = 0,
      initiator_iqn = "iqn.2024-01.org.sbot:node" },
    boot = { mode = "Uefi", first = "iscsi" },
    virtual_media = image_url and { image_url = image_url } or nil,
    power = { timeout = 10, interval = 0.05 },
    jobs = { timeout = 30, interval = 0.05 },
    redfish = { retries = { max = 6, base = 0.02, cap = 0.2 }, timeout = 10 },
  }, extra)
end

local function dev(lab, name) return lab.state().devices[name] end

--- Run the component on server i of the lab in this process.
local function run(lab, i, cfg, mode)
  local server = lab.site.servers[i]
  local c = assert(R630.new(cfg, { id = server.id, server = server, artifact_dir = helpers.tmpdir("r630art") }))
  local r = c:execute { mode = mode or "apply" }
  return r, c
end

local function kinds(plan)
  local out = {}
  for i, ch in ipairs(plan or {}) do out[i] = ch.kind end
  return out
end

local function count(list, pattern)
  local n = 0
  for _, s in ipairs(list) do if s:match(pattern) then n = n + 1 end end
  return n
end

describe("r630 on an iDRAC 8 (sbot lab)", function()
  local lab, imgs, image
  setup(function()
    lab = labclient.start_lab({ "--servers", "6", "--time-scale", "0.1", "--seed", "7" })
    local dir = helpers.tmpdir("r630img")
    images.make_iso(dir .. "/agent.iso", "AGENT_4_16")
    imgs = images.server(dir)
    image = imgs.url("agent.iso")
  end)
  teardown(function()
    if imgs then imgs.stop() end
    if lab then lab.stop() end
  end)

  it("converges from factory state: registry-checked values, one job per target, one reboot, the CD once, then iSCSI", function()
    local before = dev(lab, "idrac-1")
    local r = run(lab, 1, config(image))
    assert.are.equal("ok", r.status, r.error)
    assert.are.same({ "insert", "bios", "nic", "reboot" }, kinds(r.plan))
    local st = dev(lab, "idrac-1")
    assert.are.equal(before.resets + 1, st.resets, "exactly one reboot")
    assert.are.equal(0, st.sessions, "the session is closed")
    assert.are.same({}, st.unchanged_attributes, "no attribute is sent at its current value")
    -- the writes, in order: insert, one PATCH + one job per Settings target, then the reboot
    local log = st.write_log
    assert.matches("InsertMedia 204$", log[1])
    assert.matches("^PATCH .*/Bios/Settings 200$", log[2])
    assert.matches("^POST .*/Jobs/ 200$", log[3])
    assert.matches("^PATCH .*NIC%.Integrated%.1%-1%-1/Settings 200$", log[4])
    assert.matches("^POST .*/Jobs/ 200$", log[5])
    assert.are.equal(2, count(log, "ComputerSystem.Reset"), json.encode(log)) -- GracefulShutdown, On
    assert.are.equal(1, count(log, "EjectMedia"))
    -- only ResetTypes the R630 lists (GracefulShutdown then On)
    assert.are.equal(2, #r.processing.applied[4].result.resets)
    assert.are.same({ "GracefulShutdown", "On" }, r.processing.applied[4].result.resets)
    assert.is_true((st.by_status["503"] or 0) > 0, "the SYS518 window after the reset was ridden out")
    -- values applied, not only pending
    assert.are.equal("Enabled", st.bios.current.IscsiDev1EnDis)
    assert.are.equal(TARGET, st.bios.current.IscsiDev1Con1TargetName)
    assert.are.equal("iqn.2024-01.org.sbot:node", st.bios.current.IscsiInitiatorName)
    assert.matches("^iSCSI%.Dev1%.Con1,", st.bios.current.UefiBootSeq)
    assert.are.same({}, st.bios.pending)
    assert.are.equal(TARGET, st.nics[1].iscsi.PrimaryTargetName)
    assert.is_false(st.nics[1].iscsi.TargetInfoViaDHCP)
    -- it booted the virtual CD once (the image, read over HTTP), and the media is out again
    assert.are.equal(1, #st.boots - #before.boots)
    assert.are.equal("VirtualCD", st.last_boot.source)
    assert.are.equal("bios", st.last_boot.once)
    assert.are.equal("AGENT_4_16", st.last_boot.volume_id)
    assert.is_false(st.vmedia.CD.inserted)
    assert.is_true(r.housekeeping.verified)
    assert.is_true(r.housekeeping.ejected)
    assert.are.equal("consumed", r.housekeeping.one_time_boot)
    -- the housekeeping reads everything again but the attribute registry the
    -- BIOS still names (a real one is hundreds of KB): read once, in discover
    local reg = r.discovery.registry.path
    assert.are.equal(1, st.gets[reg] - ((before.gets or {})[reg] or 0), reg)
    for _, j in ipairs(st.jobs) do
      assert.are.equal("Completed", r.housekeeping.jobs[j.id])
    end
    -- the artifact records before/after and the job ids
    local art
    for _, a in ipairs(r.artifacts) do if a.key == "r630.json" then art = a end end
    local rec = json.decode(helpers.read_file(art.path))
    assert.are.equal("Disabled", rec.before.bios.attributes.IscsiDev1EnDis)
    assert.are.equal("Enabled", rec.after.bios.attributes.IscsiDev1EnDis)
    assert.are.equal(2, #(function() local t = {} for k in pairs(rec.jobs) do t[#t + 1] = k end return t end)())
    -- the next boot is the iSCSI disk
    local c = lab.client("idrac-1")
    local n = #st.boots
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "ForceRestart" } })).status)
    local b = wait_for(function()
      local s = dev(lab, "idrac-1")
      return #s.boots > n and s.last_boot
    end, 10, "the next boot")
    assert.are.equal("iSCSI", b.source)
    assert.are.equal(TARGET, b.target.name)
    assert.are.equal("iqn.2024-01.org.sbot:node", b.target.initiator)
  end)

  it("plans zero changes and makes no write request on a converged server", function()
    wait_for(function() return not dev(lab, "idrac-1").not_ready end, 10, "the iDRAC")
    local before = dev(lab, "idrac-1")
    local r = run(lab, 1, config(image))
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal(0, #r.plan)
    local after = dev(lab, "idrac-1")
    assert.are.equal(before.writes, after.writes, json.encode(after.write_log))
    assert.are.equal(before.resets, after.resets)
    assert.are.equal(0, after.sessions)
    assert.is_true(r.housekeeping.verified)
  end)

  it("shows the plan without writing anything (--plan)", function()
    local before = dev(lab, "idrac-2")
    local r = run(lab, 2, config(image), "plan")
    assert.are.equal("ok", r.status, r.error)
    assert.are.same({ "insert", "bios", "nic", "reboot" }, kinds(r.plan))
    local bios = r.plan[2]
    assert.are.equal("Disabled", bios.before.IscsiDev1EnDis)
    assert.are.equal("Enabled", bios.after.IscsiDev1EnDis)
    assert.are.equal("OneTimeUefiBootSeq", bios.after.OneTimeBootMode)
    assert.are.equal("Optical.iDRACVirtual.1-1", bios.after.OneTimeUefiBootSeqDev)
    assert.is_nil(bios.after.IscsiDev1Con1Port, "a value already current is not sent")
    local after = dev(lab, "idrac-2")
    assert.are.equal(before.writes, after.writes)
    assert.are.equal(0, after.sessions)
    assert.are.equal(8, r.discovery.service.generation)
    assert.are.equal("1.4.0", r.discovery.service.redfish_version)
  end)

  it("refuses a value the BIOS attribute registry refuses, before writing anything", function()
    local before = dev(lab, "idrac-2")
    local cfg = config(image)
    cfg.iscsi_boot = merge(cfg.iscsi_boot, { target_iqn = "iqn.not-a-date:disk" })
    local r = run(lab, 2, cfg)
    assert.are.equal("failed", r.status)
    assert.matches("iscsi_boot.target_iqn: 127%.0%.0%.1:%d+ would refuse IscsiDev1Con1TargetName = 'iqn.not%-a%-date:disk': 'iqn.not%-a%-date:disk' does not match", r.error)
    local after = dev(lab, "idrac-2")
    assert.are.equal(before.writes, after.writes)
    assert.are.equal(0, after.sessions, "the session is closed after a failed run too")
  end)

  it("reports a failing job with its message, fails, and takes back what it can", function()
    local f = labclient.new({ base = lab.info.devices["idrac-2"].url, cacert = lab.info.devices["idrac-2"].cert_file })
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "idrac-2:jobfail=1" })).status)
    local r = run(lab, 2, config(image))
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "" })).status)
    assert.are.equal("failed", r.status)
    assert.matches("SYS051: Unable to complete the configuration job", r.error)
    assert.matches("^process: change 4 of 4 %(update /redfish/v1/Systems/System.Embedded.1%) failed: job JID_%d+ Failed", r.error)
    -- rollback: the inserted image is ejected again; the failed jobs applied nothing
    local undone = {}
    for _, u in ipairs(r.processing.undone) do undone[u.index] = u end
    assert.is_true(undone[1].ok, json.encode(undone[1]))
    assert.is_true(undone[2].ok and undone[3].ok)
    local st = dev(lab, "idrac-2")
    assert.is_false(st.vmedia.CD.inserted)
    assert.are.equal("Disabled", st.bios.current.IscsiDev1EnDis)
    assert.are.equal(0, st.sessions)
  end)

  it("checks a CHAP secret against the registry without showing it, and sends it only with the CHAP settings", function()
    local secret = require "sbot.secret"
    local cfg = config(nil)
    cfg.iscsi_boot = merge(cfg.iscsi_boot, { chap = { user = "r630-06", secret = secret.new("short-pw") } })
    local before = dev(lab, "idrac-6")
    local r = run(lab, 6, cfg)
    assert.are.equal("failed", r.status)
    assert.matches("iscsi_boot.chap.secret: 127%.0%.0%.1:%d+ would refuse IscsiDev1Con1ChapSecret = <secret>: its length 8 is outside 12..16", r.error)
    assert.is_nil(r.error:find("short-pw", 1, true))
    assert.are.equal(before.writes, dev(lab, "idrac-6").writes)
    cfg.iscsi_boot.chap.secret = secret.new("long-enough-pw")
    r = run(lab, 6, cfg)
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal("<redacted>", json.decode(require("sbot.json").encode(r.plan[1].after, { secrets = "redact" })).IscsiDev1Con1ChapSecret)
    local st = dev(lab, "idrac-6")
    assert.are.equal("Chap", st.bios.current.IscsiDev1Con1Auth)
    assert.are.equal("r630-06", st.bios.current.IscsiDev1Con1ChapName)
    assert.are.equal("CHAP", st.nics[1].iscsi.AuthenticationMethod)
    -- the secret cannot be read back: a second run does not resend it
    local again = run(lab, 6, cfg)
    assert.are.equal("ok", again.status, again.error)
    assert.are.equal(0, #again.plan)
    assert.are.equal(st.writes, dev(lab, "idrac-6").writes)
  end)

  it("refuses a conflicting pending job, naming it, and clears it with clear_pending", function()
    local c = lab.client("idrac-3")
    assert.are.equal(200, assert(c:request("PATCH", SYS .. "/Bios/Settings",
      { auth = "basic", body = { Attributes = { ProcVirtualization = "Disabled" } } })).status)
    local j = assert(c:request("POST", MGR .. "/Jobs", { auth = "basic", body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
    local jid = j.headers["location"]:match("(JID_%d+)$")
    local before = dev(lab, "idrac-3")
    local r = run(lab, 3, config(nil))
    assert.are.equal("failed", r.status)
    assert.matches("pending configuration on 127%.0%.0%.1:%d+ conflicts with this run", r.error)
    assert.matches("ProcVirtualization is pending as 'Disabled'", r.error)
    assert.matches(jid, r.error, 1, true)
    assert.matches("clear_pending", r.error)
    assert.are.equal(before.writes, dev(lab, "idrac-3").writes, "nothing written")
    -- with clear_pending the queue is cleared first, then the run converges
    r = run(lab, 3, config(nil, { clear_pending = true }))
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal("clear_pending", r.plan[1].kind)
    local st = dev(lab, "idrac-3")
    assert.are.equal("Enabled", st.bios.current.ProcVirtualization, "the foreign pending value was dropped, not applied")
    assert.are.equal("Enabled", st.bios.current.IscsiDev1EnDis)
    assert.are.equal(0, st.sessions)
  end)

  it("reuses a scheduled job that already carries the desired values", function()
    -- an earlier run (or an operator) left exactly our BIOS values pending with a job
    local cfg = config(nil)
    local planned = run(lab, 4, cfg, "plan")
    local bios_change = planned.plan[1]
    assert.are.equal("bios", bios_change.kind)
    local c = lab.client("idrac-4")
    local attrs = {}
    for k, v in pairs(bios_change.after) do attrs[k] = v end
    assert.are.equal(200, assert(c:request("PATCH", SYS .. "/Bios/Settings", { auth = "basic", body = { Attributes = attrs } })).status)
    local j = assert(c:request("POST", MGR .. "/Jobs", { auth = "basic", body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
    local jid = j.headers["location"]:match("(JID_%d+)$")
    local r = run(lab, 4, cfg)
    assert.are.equal("ok", r.status, r.error)
    assert.are.same({ "nic", "reboot" }, kinds(r.plan), "no second BIOS job")
    assert.are.equal("Completed", r.housekeeping.jobs[jid])
    local bios_jobs = 0
    for _, job in ipairs(dev(lab, "idrac-4").jobs) do
      if job.target == SYS .. "/Bios/Settings" then bios_jobs = bios_jobs + 1 end
    end
    assert.are.equal(1, bios_jobs)
  end)

  it("forces the power off when the OS ignores the graceful shutdown, with listed ResetTypes only", function()
    local f = labclient.new({ base = lab.info.devices["idrac-5"].url, cacert = lab.info.devices["idrac-5"].cert_file })
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "idrac-5:noshutdown=1" })).status)
    local cfg = config(nil, { power = { timeout = 0.5, interval = 0.05 } })
    local r = run(lab, 5, cfg)
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "" })).status)
    assert.are.equal("ok", r.status, r.error)
    local reboot = r.processing.applied[#r.processing.applied].result
    assert.are.same({ "GracefulShutdown", "ForceOff", "On" }, reboot.resets)
    assert.is_true(reboot.forced)
    assert.are.equal(1, dev(lab, "idrac-5").ignored_shutdowns)
  end)

  it("boots the CD once through a Server Configuration Profile import when asked (via = scp), on the site's say-so", function()
    -- idrac-5 is converged (the test above): only the site's boot_from_cd hook asks for the installer
    local server = lab.site.servers[5]
    local site = { hooks = { boot_from_cd = function(srv, discovery, changing)
      assert.are.equal("r630-05", srv.id)
      assert.is_false(changing)
      return true
    end } }
    local cfg = config(image)
    cfg.virtual_media.via = "scp"
    local before = dev(lab, "idrac-5")
    local c = assert(R630.new(cfg, { id = server.id, server = server, site = site, artifact_dir = helpers.tmpdir("r630art") }))
    local r = c:execute { mode = "apply" }
    assert.are.equal("ok", r.status, r.error)
    assert.are.same({ "insert", "scp_boot_once", "reboot" }, kinds(r.plan))
    local st = dev(lab, "idrac-5")
    assert.are.equal(before.resets + 1, st.resets)
    assert.are.equal("VirtualCD", st.last_boot.source)
    assert.are.equal("scp", st.last_boot.once)
    assert.matches("Server Configuration Profile", r.housekeeping.one_time_boot)
    assert.are.equal(0, st.sessions)
    -- without the hook's say-so a converged server is left alone
    local again = run(lab, 5, config(image))
    assert.are.equal("ok", again.status, again.error)
    assert.are.equal(0, #again.plan)
  end)

  it("fails a wrong password with a message naming the host, without a retry storm", function()
    local server = merge(lab.site.servers[6], {})
    server.idrac = merge(server.idrac, { password = "not-the-password" })
    local before = dev(lab, "idrac-6")
    local c = assert(R630.new(config(nil), { id = server.id, server = server }))
    local r = c:execute { mode = "apply" }
    assert.are.equal("failed", r.status)
    assert.matches("^discover: open: login to 127%.0%.0%.1:%d+: ResourceAtUriUnauthorized", r.error)
    assert.matches("check the user name and password", r.error)
    assert.is_nil(r.error:find("not-the-password", 1, true))
    local after = dev(lab, "idrac-6")
    assert.are.equal((before.by_method.POST or 0) + 1, after.by_method.POST, "one login attempt")
    assert.are.equal(0, after.sessions)
  end)
end)

describe("r630 on an iDRAC 9 (sbot lab --idrac 9)", function()
  local lab, imgs, image
  setup(function()
    lab = labclient.start_lab({ "--servers", "1", "--idrac", "9", "--time-scale", "0.1" })
    local dir = helpers.tmpdir("r630img")
    images.make_iso(dir .. "/agent.iso", "AGENT_9")
    imgs = images.server(dir)
    image = imgs.url("agent.iso")
  end)
  teardown(function()
    if imgs then imgs.stop() end
    if lab then lab.stop() end
  end)

  it("converges with @Redfish.SettingsApplyTime and virtual media under Systems, then makes no write", function()
    local r = run(lab, 1, config(image))
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal(9, r.discovery.service.generation)
    assert.matches("^/redfish/v1/Systems/System.Embedded.1/VirtualMedia/1$", r.discovery.virtual_media.path)
    assert.is_true(r.plan[2].apply_time)
    local st = dev(lab, "idrac-1")
    -- the BIOS PATCH scheduled its own job: one job POST only (the NIC's)
    assert.are.equal(1, count(st.write_log, "^POST .*/Jobs/"), json.encode(st.write_log))
    assert.are.equal("VirtualCD", st.last_boot.source)
    assert.are.equal(0, st.sessions)
    local again = run(lab, 1, config(image))
    assert.are.equal("ok", again.status, again.error)
    assert.are.equal(0, #again.plan)
    assert.are.equal(st.writes, dev(lab, "idrac-1").writes)
  end)
end)

describe("r630 under faults", function()
  -- a few seeds here; tests/r630_fault_seeds.sh runs all 20
  for _, seed in ipairs({ 1, 2, 3 }) do
    it("converges with idrac:503=0.1,reset=0.05 (seed " .. seed .. ") and leaves no session", function()
      local lab = labclient.start_lab({ "--servers", "1", "--time-scale", "0.1", "--seed", tostring(seed),
        "--faults", "idrac:503=0.1,reset=0.05" })
      local ok, err = pcall(function()
        local r = run(lab, 1, config(nil))
        assert.are.equal("ok", r.status, r.error)
        local again = run(lab, 1, config(nil))
        assert.are.equal("ok", again.status, again.error)
        assert.are.equal(0, #again.plan)
        local st = dev(lab, "idrac-1")
        assert.are.equal(0, st.sessions)
        assert.are.equal(1, st.resets)
        assert.is_true((st.faults.reset or 0) + (st.faults["503"] or 0) > 0)
      end)
      lab.stop()
      assert(ok, err)
    end)
  end
end)

describe("r630 in a workflow: the session is closed on every way out", function()
  local lab
  setup(function()
    -- real durations (scale 1): a job takes 0.5 s, a reboot 1 s
    lab = labclient.start_lab({ "--servers", "2", "--time-scale", "1" })
  end)
  teardown(function() if lab then lab.stop() end end)

  local function site_file(cfg)
    local dir = helpers.tmpdir("r630wf")
    local site = dofile(lab.dir .. "/site.lua")
    site.components = { r630 = cfg }
    site.runs_dir = dir .. "/runs"
    site.state_dir = dir .. "/state"
    local path = dir .. "/site.lua"
    helpers.write_file(path, "return " .. require("sbot.lab").lua_literal(site) .. "\n")
    os.execute("chmod 600 " .. helpers.shquote(path))
    return path, dir
  end

  local function start(args, dir)
    local parts = { helpers.shquote(helpers.sbot_bin), "run",
      helpers.shquote(helpers.source_dir .. "/tests/support/workflows/r630.lua") }
    for _, a in ipairs(args) do parts[#parts + 1] = helpers.shquote(a) end
    return helpers.spawn(table.concat(parts, " "), { log = dir .. "/out.log" })
  end

  it("on Ctrl-C while it waits for the power to go off", function()
    local f = labclient.new({ base = lab.info.devices["idrac-1"].url, cacert = lab.info.devices["idrac-1"].cert_file })
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "idrac-1:noshutdown=1" })).status)
    local site, dir = site_file(config(nil, { power = { timeout = 120, interval = 0.2 } }))
    local p = start({ "--site", site, "--server", "r630-01" }, dir)
    wait_for(function()
      local s = dev(lab, "idrac-1")
      return s.ignored_shutdowns > 0 and s.sessions == 1
    end, 30, "the run to wait for the power")
    os.execute("kill -INT " .. p.pid)
    wait_for(function() return not p:alive() end, 30, "the run to stop")
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "" })).status)
    assert.are.equal(0, dev(lab, "idrac-1").sessions, p:output())
  end)

  it("on --timeout", function()
    local f = labclient.new({ base = lab.info.devices["idrac-2"].url, cacert = lab.info.devices["idrac-2"].cert_file })
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "idrac-2:noshutdown=1" })).status)
    local site, dir = site_file(config(nil, { power = { timeout = 120, interval = 0.2 } }))
    local p = start({ "--site", site, "--server", "r630-02", "--timeout", "3" }, dir)
    wait_for(function() return not p:alive() end, 40, "the run to time out")
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "" })).status)
    assert.matches("r630%-02", p:output())
    assert.are.equal(0, dev(lab, "idrac-2").sessions, p:output())
  end)
end)

describe("r630 with the lab's TrueNAS exporting through istgt (sbot lab --tgt)", function()
  local lab
  setup(function() lab = labclient.start_lab({ "--servers", "1", "--tgt", "--time-scale", "0.1" }) end)
  teardown(function() if lab then lab.stop() end end)

  it("configures the iSCSI boot of a zvol the TrueNAS model exports; the next boot logs in to it", function()
    -- the disk, made the way the iSCSI component will (JSON-RPC over wss)
    local ws = require "sbot.ws"
    local tn = lab.site.truenas
    local conn <close> = assert(ws.connect(tn.url, { tls = tn.tls, timeout = 5 }))
    local id = 0
    local function call(method, params)
      id = id + 1
      assert(conn:send(json.encode { jsonrpc = "2.0", id = id, method = method, params = json.array(params or {}) }))
      local msg = json.decode(assert(conn:recv(10)))
      assert(msg.error == nil, msg.error and json.encode(msg.error))
      return msg.result
    end
    call("auth.login_ex", { { mechanism = "API_KEY_PLAIN", username = "root", api_key = tn.api_key } })
    local initiator = "iqn.2024-01.org.sbot:r630-01"
    local portal = call("iscsi.portal.create", { { listen = { { ip = "0.0.0.0" } } } })
    local ig = call("iscsi.initiator.create", { { initiators = { initiator } } })
    call("pool.dataset.create", { { name = "tank/r630-01", type = "VOLUME", volsize = 32 * 1024 * 1024, sparse = true } })
    local t = call("iscsi.target.create", { { name = "r630-01", groups = { { portal = portal.id, initiator = ig.id } } } })
    local e = call("iscsi.extent.create", { { name = "r630-01", disk = "zvol/tank/r630-01" } })
    call("iscsi.targetextent.create", { { target = t.id, extent = e.id } })
    call("service.update", { "iscsitarget", { enable = true } })
    call("core.set_options", { { legacy_jobs = false } })
    assert.is_true(call("service.control", { "START", "iscsitarget", {} }))
    local global = call("iscsi.global.config")
    local iqn = global.basename .. ":r630-01"

    local cfg = config(nil)
    cfg.iscsi_boot = merge(cfg.iscsi_boot, { target_iqn = iqn, target_port = global.listen_port,
      initiator_iqn = initiator })
    local r = run(lab, 1, cfg)
    assert.are.equal("ok", r.status, r.error)
    -- the reboot of the run booted the disk (no virtual CD asked): logged in through istgt
    local b = wait_for(function()
      local s = dev(lab, "idrac-1")
      return s.last_boot ~= json.null and s.last_boot.iscsi_login and s.last_boot
    end, 20, "the iSCSI boot")
    assert.are.equal("iSCSI", b.source)
    assert.are.equal(iqn, b.target.name)
    assert(b.iscsi_login.ok, json.encode(b.iscsi_login))
    assert.are.equal("istgt", b.iscsi_login.checked)
    assert.are.equal("127.0.0.1:" .. math.tointeger(global.listen_port), b.iscsi_login.portal)
    assert.are.equal("tank/r630-01", b.iscsi_login.zvol)
  end)
end)
