-- sbot.redfish against `sbot lab` (iDRAC 8 and 9) and against a DMTF-style
-- static mockup (tests/servers/redfish_mockup.lua over tests/fixtures).
-- The lab counts logins, open and leaked sessions and write requests, so
-- "no leaked session" and "no retry storm" are checked on the device side.
local redfish = require "sbot.redfish"
local json = require "sbot.json"
local helpers = require "helpers"
local labclient = require "labclient"
local servers = require "test_servers"

local SYS = "/redfish/v1/Systems/System.Embedded.1"
local MGR = "/redfish/v1/Managers/iDRAC.Embedded.1"

local wait_for = helpers.wait_for

-- fast retries: the lab runs at --time-scale 0.1
local FAST = { max = 5, base = 0.05, cap = 0.3 }

local function opts_for(server, extra)
  local o = { host = server.idrac.host, user = server.idrac.user, password = server.idrac.password,
    tls = server.idrac.tls, retries = FAST, timeout = 10 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function dev(lab, name) return lab.state().devices[name] end

--- Run a Lua script with sbot in the background; returns the process.
local function spawn_script(dir, text)
  local path = dir .. "/script.lua"
  helpers.write_file(path, text)
  return helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(path))
end

describe("sbot.redfish against the lab's iDRAC 8", function()
  local lab, site
  setup(function()
    lab = labclient.start_lab({ "--servers", "4", "--time-scale", "0.1", "--seed", "5" })
    site = lab.site
  end)
  teardown(function() if lab then lab.stop() end end)

  it("reads the service root, logs in at Links.Sessions, tells the generation from the firmware, and deletes the session on close", function()
    local before = dev(lab, "idrac-1")
    local c = assert(redfish.connect(opts_for(site.servers[1])))
    assert.are.equal("session", c.auth)
    assert.are.equal("/redfish/v1/Sessions", c.sessions)
    assert.matches("^/redfish/v1/Sessions/%d+$", c.session)
    assert.are.equal("1.4.0", c.root.RedfishVersion)
    local mid = dev(lab, "idrac-1")
    assert.are.equal(before.sessions + 1, mid.sessions)
    assert.are.equal(before.logins + 1, mid.logins)
    assert.are.equal(0, mid.leaked_logins, "never a login at /redfish/v1/SessionService/Sessions on iDRAC 8")
    local info = assert(c:identify())
    assert.are.equal(8, info.generation)
    assert.are.equal("iDRAC 8", info.family)
    assert.are.equal("2.75.75.75", info.firmware)
    assert.are.equal(MGR, info.manager)
    local sys, meta = assert(c:get(SYS))
    assert.are.equal("PowerEdge R630", sys.Model)
    assert.matches('^"%x+"$', meta.etag)
    assert.is_true(assert(c:close()))
    assert.is_true(assert(c:close()), "close is idempotent")
    local after = dev(lab, "idrac-1")
    assert.are.equal(before.sessions, after.sessions)
    assert.are.equal(before.logouts + 1, after.logouts)
    assert.are.equal(before.writes, after.writes, "reading makes no write request")
    assert.has_error(function() c:get(SYS) end, "redfish: get on a closed client")
  end)

  it("returns errors as nil, 'ID: message (METHOD path on host)', ID, status — ExtendedInfo as a list or one object", function()
    local c <close> = assert(redfish.connect(opts_for(site.servers[2])))
    local doc, err, code, status = c:get("/redfish/v1/NoSuchThing")
    assert.is_nil(doc)
    assert.are.equal("SYS403", code)
    assert.are.equal(404, status)
    assert.matches("^SYS403: Unable to complete the operation because the resource /redfish/v1/NoSuchThing", err)
    assert.matches("%(GET /redfish/v1/NoSuchThing on 127%.0%.0%.1:%d+%)$", err)
    -- a PATCH the registry refuses
    local r, perr, pcode, pstatus = c:patch(SYS .. "/Bios/Settings", { Attributes = { IscsiDev1Con1Retry = 9 } })
    assert.is_nil(r)
    assert.are.equal("SYS409", pcode)
    assert.are.equal(400, pstatus)
    assert.matches("%(PATCH /redfish/v1/Systems/System.Embedded.1/Bios/Settings on ", perr)
    -- LC068 comes with ExtendedInfo as one object
    assert(c:patch(SYS .. "/Bios/Settings", { Attributes = { ProcVirtualization = "Disabled" } }))
    local mgr = assert(c:get(MGR))
    local action
    for k, v in pairs(mgr.Actions.Oem) do
      if k:match("ImportSystemConfiguration$") then action = v.target end
    end
    local scp, serr, scode, sstatus = c:post(action, { ShareParameters = { Target = "ALL" }, ShutdownType = "NoReboot",
      ImportBuffer = "<SystemConfiguration></SystemConfiguration>" })
    assert.is_nil(scp)
    assert.are.equal("LC068", scode)
    assert.are.equal(400, sstatus)
    assert.matches("^LC068: Unable to complete the operation because configuration changes are pending", serr)
    assert.matches("%(POST /redfish/v1/Managers/iDRAC.Embedded.1/Actions/Oem/EID_674_Manager.ImportSystemConfiguration on ", serr)
    -- a link to another host is never followed (the token stays home)
    local f, ferr, fcode = c:get("https://198.51.100.7/redfish/v1")
    assert.is_nil(f)
    assert.are.equal("invalid", fcode)
    assert.matches("refusing to follow", ferr)
    assert.has_error(function() c:get("Systems") end)
  end)

  it("patches with If-Match, reads again and retries once on 412; posts return {status, location, job_id}", function()
    local c <close> = assert(redfish.connect(opts_for(site.servers[2])))
    local settings = SYS .. "/Bios/Settings"
    local _, meta = assert(c:get(settings))
    local stale = meta.etag
    -- someone else changes the resource: our ETag is stale
    local other = lab.client("idrac-2")
    local now = assert(c:get(settings)).Attributes.ProcVirtualization
    local flip = now == "Disabled" and "Enabled" or "Disabled"
    assert.are.equal(200, assert(other:request("PATCH", settings, { auth = "basic",
      body = { Attributes = { ProcVirtualization = flip } } })).status)
    local before = dev(lab, "idrac-2").by_status["412"] or 0
    local r = assert(c:patch(settings, { Attributes = { ProcVirtualization = now or "Disabled" } }, { etag = stale }))
    assert.are.equal(200, r.status)
    assert.are.equal(before + 1, dev(lab, "idrac-2").by_status["412"], "one 412, then a re-read and one retry")
    assert.are.equal(now or "Disabled", assert(c:get(settings)).Attributes.ProcVirtualization)
    local j = assert(c:post(MGR .. "/Jobs", { TargetSettingsURI = settings }))
    assert.are.equal(200, j.status)
    assert.matches("^JID_%d+$", j.job_id)
    assert.are.equal(MGR .. "/Jobs/" .. j.job_id, j.location)
    -- a job found by its id through the manager's job queue link, waited for with progress
    assert(c:post(SYS .. "/Actions/ComputerSystem.Reset", { ResetType = "ForceRestart" }))
    local seen = {}
    local done = assert(c:wait_job(j.job_id, { interval = 0.05, timeout = 20, progress = function(v)
      seen[#seen + 1] = v.state .. ":" .. tostring(v.percent)
      assert.are.equal(j.job_id, v.id)
    end }))
    assert.are.equal("Completed", done.JobState)
    assert.are.equal("Completed:100", seen[#seen])
  end)

  it("rides out the 503 SYS518 window after a reset, for reads and writes", function()
    local c <close> = assert(redfish.connect(opts_for(site.servers[3])))
    assert(c:post(SYS .. "/Actions/ComputerSystem.Reset", { ResetType = "ForceRestart" }))
    assert.is_true(dev(lab, "idrac-3").not_ready)
    local retries = c:stats().retries
    local sys = assert(c:get(SYS))
    assert.are.equal("On", sys.PowerState)
    assert(c:post(SYS .. "/Actions/ComputerSystem.Reset", { ResetType = "ForceRestart" }))
    local r = assert(c:patch(SYS, { Boot = { BootSourceOverrideTarget = "None" } }))
    assert.are.equal(200, r.status)
    assert.is_true(c:stats().retries > retries)
  end)

  it("logs in again once when the session is gone, and the lab sees one session at a time", function()
    local c <close> = assert(redfish.connect(opts_for(site.servers[4])))
    local first = c.session
    -- the session disappears (deleted elsewhere, or expired)
    assert.are.equal(200, assert(lab.client("idrac-4"):request("DELETE", first, { auth = "basic" })).status)
    local sys = assert(c:get(SYS))
    assert.are.equal("PowerEdge R630", sys.Model)
    assert.are_not.equal(first, c.session)
    assert.are.equal(1, c:stats().reauths)
    assert.are.equal(1, dev(lab, "idrac-4").sessions)
    c:close()
    assert.are.equal(0, dev(lab, "idrac-4").sessions)
  end)

  it("fails a wrong password at once with a message naming the host, without a retry storm", function()
    local before = dev(lab, "idrac-1")
    local c, err, code = redfish.connect(opts_for(site.servers[1], { password = "wrong-password" }))
    assert.is_nil(c)
    assert.are.equal("ResourceAtUriUnauthorized", code)
    assert.matches("^login to 127%.0%.0%.1:%d+: ResourceAtUriUnauthorized", err)
    assert.matches(site.servers[1].idrac.host, err, 1, true)
    assert.matches("check the user name and password", err)
    assert.is_nil(err:find("wrong-password", 1, true), "the password is never in a message")
    local after = dev(lab, "idrac-1")
    assert.are.equal((before.by_method.POST or 0) + 1, after.by_method.POST, "one login attempt")
    assert.are.equal(before.sessions, after.sessions)
  end)

  it("answers RAC0218 (too many sessions) with a clear error and no retry", function()
    local others = {}
    for i = 1, 8 - dev(lab, "idrac-3").sessions do
      local o = lab.client("idrac-3")
      assert.are.equal(201, assert(o:login()).status)
      others[i] = o
    end
    local before = dev(lab, "idrac-3")
    local c, err, code, status = redfish.connect(opts_for(site.servers[3]))
    for _, o in ipairs(others) do o:logout() end
    assert.is_nil(c)
    assert.are.equal("RAC0218", code)
    assert.are.equal(503, status)
    assert.matches("^login to 127%.0%.0%.1:%d+: RAC0218: The maximum number of user sessions is reached", err)
    assert.matches("close unused ones", err)
    assert.are.equal((before.by_method.POST or 0) + 1, dev(lab, "idrac-3").by_method.POST, "no retry storm")
  end)

  it("reports a failed job with its message and id", function()
    local f = labclient.new({ base = lab.info.devices["idrac-2"].url, cacert = lab.info.devices["idrac-2"].cert_file })
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "idrac-2:jobfail=1" })).status)
    local c <close> = assert(redfish.connect(opts_for(site.servers[2])))
    assert(c:patch(SYS .. "/Bios/Settings", { Attributes = { ProcVirtualization = "Disabled" } }))
    local j = assert(c:post(MGR .. "/Jobs", { TargetSettingsURI = SYS .. "/Bios/Settings" }))
    assert(c:post(SYS .. "/Actions/ComputerSystem.Reset", { ResetType = "ForceRestart" }))
    local ok, err, code, doc = c:wait_job(j.location, { interval = 0.05, timeout = 20 })
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "" })).status)
    assert.is_nil(ok)
    assert.are.equal("SYS051", code)
    assert.matches("^job " .. j.job_id .. " Failed: SYS051: Unable to complete the configuration job", err)
    assert.are.equal("Failed", doc.JobState)
    -- an unknown job: found nowhere
    local none, nerr, ncode = c:wait_job("JID_000000000001", { interval = 0.05, timeout = 2 })
    assert.is_nil(none)
    assert.are.equal("not_found", ncode)
    assert.matches("JID_000000000001 is not in the job queue", nerr)
  end)

  it("gets many resources concurrently, each a document or an error", function()
    local c <close> = assert(redfish.connect(opts_for(site.servers[1], { per_host = 2 })))
    local paths = { "/redfish/v1/Systems/", SYS, SYS .. "/Bios", MGR, "/redfish/v1/Missing", SYS .. "/EthernetInterfaces/" }
    local rs = c:get_many(paths)
    assert.are.equal(#paths, #rs)
    assert.are.equal("/redfish/v1/Systems/", rs[1].doc["@odata.id"])
    assert.are.equal("PowerEdge R630", rs[2].doc.Model)
    assert.is_truthy(rs[3].doc.Attributes.BootMode)
    assert.are.equal(404, rs[5].status)
    assert.are.equal("SYS403", rs[5].code)
    assert.matches("GET /redfish/v1/Missing on", rs[5].error)
    assert.is_nil(rs[5].doc)
    assert.are.equal(4, #rs[6].doc.Members)
  end)

  it("logs in through 503 and connection-reset faults and leaves no session behind", function()
    local f = labclient.new({ base = lab.info.devices["idrac-1"].url, cacert = lab.info.devices["idrac-1"].cert_file })
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "idrac-1:503=0.3,reset=0.2" })).status)
    local ok_all = true
    for _ = 1, 6 do
      local c, err = redfish.connect(opts_for(site.servers[1], { retries = { max = 8, base = 0.01, cap = 0.05 } }))
      if not c then ok_all = false; print(err) else
        assert(c:get(SYS))
        c:close()
      end
    end
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "" })).status)
    assert.is_true(ok_all)
    local st = dev(lab, "idrac-1")
    assert.are.equal(0, st.sessions, "no session leaked")
    assert.is_true((st.faults.reset or 0) > 0 and (st.faults["503"] or 0) > 0, json.encode(st.faults))
  end)

  it("cleans up the session a timed-out login created, and says so", function()
    local f = labclient.new({ base = lab.info.devices["idrac-4"].url, cacert = lab.info.devices["idrac-4"].cert_file })
    local before = dev(lab, "idrac-4")
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "idrac-4:latency=400" })).status)
    local c, err, code = redfish.connect(opts_for(site.servers[4], { login_timeout = 0.2, retries = { max = 1, base = 0.01, cap = 0.02 } }))
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "" })).status)
    assert.is_nil(c)
    assert.are.equal("timeout", code)
    assert.matches("^login to 127%.0%.0%.1:%d+: ", err)
    local after = wait_for(function()
      local s = dev(lab, "idrac-4")
      return s.sessions == before.sessions and s
    end, 10, "the leaked sessions to be deleted")
    assert.are.equal(before.logins + 2, after.logins, "two login attempts, each created a session")
    assert.are.equal(before.sessions, after.sessions, "both were found and deleted")
  end)

  describe("on every way out", function()
    local function scheduled_job_script(server, extra)
      return string.format([[
local redfish = require "sbot.redfish"
local o = %s
o.password = %q
%s
]], string.format("{host = %q, user = %q, tls = {pin_sha256 = %q}, retries = {max = 3, base = 0.05, cap = 0.2}}",
        server.idrac.host, server.idrac.user, server.idrac.tls.pin_sha256), server.idrac.password, extra)
    end
    local WAIT = [[
assert(c:patch("]] .. SYS .. [[/Bios/Settings", {Attributes = {ProcVirtualization = "Disabled"}}))
local j = c:post("]] .. MGR .. [[/Jobs", {TargetSettingsURI = "]] .. SYS .. [[/Bios/Settings"})
if not j then -- already scheduled by an earlier case
  for _, m in ipairs(assert(c:get("]] .. MGR .. [[/Jobs/")).Members) do j = {location = m["@odata.id"]} end
end
io.stdout:write("waiting\n"); io.stdout:flush()
c:wait_job(j.location, {interval = 0.05, timeout = 600})
]]

    local function run_until_waiting(text)
      local dir = helpers.tmpdir("rfscript")
      local p = spawn_script(dir, text)
      wait_for(function() return p:output():find("waiting", 1, true) or not p:alive() end, 20, "the script to wait")
      return p
    end

    it("deletes the session on Ctrl-C (a <close> variable)", function()
      local base = dev(lab, "idrac-3").sessions
      local p = run_until_waiting(scheduled_job_script(site.servers[3],
        "local c <close> = assert(redfish.connect(o))\n" .. WAIT))
      assert.are.equal(base + 1, dev(lab, "idrac-3").sessions)
      os.execute("kill -INT " .. p.pid)
      wait_for(function() return not p:alive() end, 15, "the script to stop")
      assert.matches("interrupted!", p:output())
      assert.are.equal(base, dev(lab, "idrac-3").sessions, p:output())
    end)

    it("sleeps between job polls in one wake-up, and a Ctrl-C still ends the sleep at once", function()
      -- sleeping in 0.1 s slices (to look for Ctrl-C) woke every worker ten
      -- times a second for the whole wait; the sleep now ends on the signal
      -- itself (sbot_sleep: blocked between the check and the wait)
      local p = run_until_waiting(scheduled_job_script(site.servers[3],
        "local c <close> = assert(redfish.connect(o))\n" -- (an earlier case may have the values pending already)
          .. WAIT:gsub("interval = 0.05", "interval = 30"):gsub("assert%(c:patch", "local _ = (c:patch")))
      local function switches()
        local st = helpers.read_file("/proc/" .. p.pid .. "/status")
        return tonumber(st:match("voluntary_ctxt_switches:%s*(%d+)"))
      end
      os.execute("sleep 0.5") -- the first poll is done: asleep until the next
      assert(p:alive(), p:output())
      local before = switches()
      os.execute("sleep 1.5")
      local woke = switches() - before
      assert(woke <= 3, "the waiting process woke " .. woke .. " times in 1.5 s")
      local t = helpers.now()
      os.execute("kill -INT " .. p.pid)
      wait_for(function() return not p:alive() end, 15, "the script to stop")
      assert(helpers.now() - t < 5, "Ctrl-C took " .. (helpers.now() - t) .. " s to end a 30 s sleep")
      assert.matches("interrupted!", p:output())
    end)

    it("deletes the session when the script fails with the client in a plain local (collected at exit)", function()
      local base = dev(lab, "idrac-3").sessions
      local q = spawn_script(helpers.tmpdir("rfscript"), scheduled_job_script(site.servers[3],
        "local c = assert(redfish.connect(o))\nassert(c:get('/redfish/v1'))\nio.stdout:write('connected\\n')\nerror('boom after login')\n"))
      wait_for(function() return not q:alive() end, 15, "the failing script")
      assert.matches("connected", q:output())
      assert.matches("boom after login", q:output())
      assert.are.equal(base, dev(lab, "idrac-3").sessions, q:output())
    end)
  end)

  it("never puts the password in logs, even at debug level", function()
    local dir = helpers.tmpdir("rflog")
    local s = site.servers[2]
    helpers.write_file(dir .. "/s.lua", string.format([[
local redfish = require "sbot.redfish"
local secret = require "sbot.secret"
local c = assert(redfish.connect{host = %q, user = "root", password = secret.new(%q), tls = {pin_sha256 = %q}})
assert(c:get("/redfish/v1/Systems/System.Embedded.1"))
print(c:close())
local bad, err = redfish.connect{host = %q, user = "root", password = secret.new("Sup3r-Secret-Pw"), tls = {pin_sha256 = %q}}
print(err)
]], s.idrac.host, s.idrac.password, s.idrac.tls.pin_sha256, s.idrac.host, s.idrac.tls.pin_sha256))
    local r = helpers.sbot({ "-v", "run", dir .. "/s.lua" })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("true", r.stdout)
    assert.matches("login to", r.stdout)
    local all = r.stdout .. r.stderr
    assert.is_nil(all:find("Sup3r-Secret-Pw", 1, true))
    assert.is_nil(all:find('"Password":"calvin"', 1, true))
    assert.matches("X%-Auth%-Token: <redacted>", r.stderr)
  end)
end)

describe("sbot.redfish against the lab's iDRAC 9", function()
  local lab
  setup(function() lab = labclient.start_lab({ "--servers", "1", "--idrac", "9", "--time-scale", "0.1" }) end)
  teardown(function() if lab then lab.stop() end end)

  it("logs in where the root says (SessionService/Sessions) and tells iDRAC 9 from the firmware", function()
    local c <close> = assert(redfish.connect(opts_for(lab.site.servers[1])))
    assert.are.equal("/redfish/v1/SessionService/Sessions", c.sessions)
    local info = assert(c:identify())
    assert.are.equal(9, info.generation)
    assert.are.equal("PowerEdge R640", assert(c:get(SYS)).Model, "the model string is not what tells the generation")
    -- a PATCH with @Redfish.SettingsApplyTime creates the job: the write result names it
    local r = assert(c:patch(SYS .. "/Bios/Settings", { ["@Redfish.SettingsApplyTime"] = { ApplyTime = "OnReset" },
      Attributes = { ProcVirtualization = "Disabled" } }))
    assert.are.equal(202, r.status)
    assert.matches("^JID_%d+$", r.job_id)
    c:close()
    assert.are.equal(0, lab.state().devices["idrac-1"].sessions)
  end)
end)

describe("sbot.redfish against a DMTF-style mockup", function()
  local start_mockup = servers.redfish_mockup

  local mock
  setup(function() mock = start_mockup() end)
  teardown(function() if mock then mock.stop() end end)

  local function connect(extra)
    local o = { host = mock.host, user = "admin", password = "mockup-pw", tls = { pin_sha256 = mock.pin },
      retries = FAST }
    for k, v in pairs(extra or {}) do o[k] = v end
    return redfish.connect(o)
  end

  it("follows links verbatim, logs in at Links.Sessions, and identifies a non-Dell service", function()
    local c = assert(connect())
    assert.are.equal("/redfish/v1/SessionService/Sessions", c.sessions)
    assert.are.equal(1, mock.state().sessions)
    local info = assert(c:identify())
    assert.are.equal("Acme", info.vendor)
    assert.are.equal("/redfish/v1/Managers/bmc-1", info.manager)
    assert.are.equal("2.81.1", info.firmware)
    assert.is_nil(info.generation, "a 2.x firmware is not an iDRAC 8 unless the vendor is Dell")
    local systems = assert(c:get(c.root.Systems["@odata.id"]))
    local sys = assert(c:get(systems.Members[1]["@odata.id"]))
    assert.are.equal("AX-200", sys.Model)
    -- a linked resource that answers 404 is an error with status 404 (absent), not a crash
    local none, err, code, status = c:get(sys.SimpleStorage["@odata.id"])
    assert.is_nil(none)
    assert.are.equal(404, status)
    assert.are.equal("ResourceMissingAtURI", code)
    assert.matches("ResourceMissingAtURI: The resource at the URI /redfish/v1/Systems/node%-7/SimpleStorage was not found", err)
    local rs = c:get_many({ sys.Bios["@odata.id"], sys.EthernetInterfaces["@odata.id"], sys.SimpleStorage["@odata.id"] })
    assert.are.equal("Uefi", rs[1].doc.Attributes.BootMode)
    assert.are.equal(1, #rs[2].doc.Members)
    assert.are.equal(404, rs[3].status)
    -- If-Match PATCH, and an action POST with an empty answer
    local p = assert(c:patch(rs[1].doc["@Redfish.Settings"].SettingsObject["@odata.id"], { Attributes = { PxeRetries = 5 } }))
    assert.are.equal(204, p.status)
    assert.are.equal(5, assert(c:get("/redfish/v1/Systems/node-7/Bios/Settings")).Attributes.PxeRetries)
    local reset = assert(c:post(sys.Actions["#ComputerSystem.Reset"].target, { ResetType = "GracefulRestart" }))
    assert.are.equal(204, reset.status)
    assert.is_true(c:close())
    assert.are.equal(0, mock.state().sessions)
  end)

  it("keeps at most per_host requests in flight in get_many", function()
    for _, cap in ipairs({ 2, 3 }) do
      local c <close> = assert(connect({ per_host = cap }))
      local reset = labclient.new({ base = "https://" .. mock.host, pin = mock.pin, insecure = true })
      assert(reset:get("/mockup/reset-inflight"))
      local paths = {}
      for i = 1, 7 do paths[i] = "/redfish/v1/Slow/" .. i end
      local rs = c:get_many(paths)
      for i = 1, 7 do assert.are.equal(paths[i], rs[i].doc["@odata.id"]) end
      assert.are.equal(cap, mock.state().max_inflight)
    end
  end)

  it("takes a wrong password as an error and leaves no session", function()
    local c, err, code = connect({ password = "nope" })
    assert.is_nil(c)
    assert.are.equal("ResourceAtUriUnauthorized", code)
    assert.matches("login to 127%.0%.0%.1:%d+", err)
    assert.are.equal(0, mock.state().sessions)
  end)

  it("reaches a service on an IPv6 address given as [addr]:port", function()
    local v6 = start_mockup(nil, true)
    local c, err = redfish.connect { host = v6.host, user = "admin", password = "mockup-pw",
      tls = { pin_sha256 = v6.pin }, retries = FAST }
    local ok, model, sessions
    if c then
      model = (c:get("/redfish/v1/Systems/node-7") or {}).Model
      sessions = v6.state().sessions
      ok = c:close()
    end
    local after = v6.state().sessions
    v6.stop()
    assert(c, err)
    assert.are.equal("session", c.auth)
    assert.are.equal("AX-200", model)
    assert.are.equal(1, sessions)
    assert.is_true(ok)
    assert.are.equal(0, after)
  end)

  it("uses Basic auth only where the service has no session service", function()
    local basic = start_mockup("--no-sessions")
    local o = { host = basic.host, user = "admin", password = "mockup-pw", tls = { pin_sha256 = basic.pin }, retries = FAST }
    local c = assert(redfish.connect(o))
    assert.are.equal("basic", c.auth)
    assert.is_nil(c.session)
    assert.are.equal("AX-200", assert(c:get("/redfish/v1/Systems/node-7")).Model)
    assert.is_true(c:close())
    o.password = "nope"
    local bad, err = redfish.connect(o)
    assert.is_nil(bad)
    assert.matches("^login to 127%.0%.0%.1:%d+ %(Basic auth%): ", err)
    assert.are.equal(0, basic.state().logins)
    basic.stop()
  end)
end)

describe("sbot.redfish misuse", function()
  it("raises on bad options, naming them", function()
    assert.has_error(function() redfish.connect({ host = "x", password = "pw-x1", bogus = 1 }) end,
      "redfish.connect: unknown option 'bogus'")
    assert.has_error(function() redfish.connect({ host = "https://x", password = "pw-x1" }) end,
      "redfish.connect: 'host' must be name-or-ip[:port], not 'https://x'")
    -- an IPv6 address goes in brackets: https://fe80::1:443 would not be a URL
    assert.has_error(function() redfish.connect({ host = "fe80::1", password = "pw-x1" }) end,
      "redfish.connect: 'host' 'fe80::1' holds an IPv6 address without brackets: write [addr]:port")
    assert.has_error(function() redfish.connect({ host = "[::1]:0", password = "pw-x1" }) end,
      "redfish.connect: 'host' '[::1]:0' has no port 1..65535 after its ':'")
    assert.has_error(function() redfish.connect({ host = "[::1", password = "pw-x1" }) end,
      "redfish.connect: 'host' '[::1' must be HOST[:PORT] (IPv6 as [addr]:port)")
    assert.has_error(function() redfish.connect({ host = "x", password = 5 }) end,
      "redfish.connect: 'password' must be a string or a secret, got number")
    assert.has_error(function() redfish.connect({ host = "x", password = "pw-x1", per_host = 99 }) end)
  end)

  it("says why a host cannot be reached", function()
    local port = helpers.free_port()
    local c, err, code = redfish.connect({ host = "127.0.0.1:" .. port, password = "pw-x1", tls = { insecure = true },
      retries = { max = 1, base = 0.01, cap = 0.01 } })
    assert.is_nil(c)
    assert.are.equal("connect", code)
    assert.matches("^redfish.connect to 127%.0%.0%.1:" .. port .. ": ", err)
  end)

  it("encodes request bodies with sorted keys and real secret values, and decodes arrays as arrays", function()
    local secret = require "sbot.secret"
    assert.are.equal('{"a":[1,2],"b":{"c":"x"},"s":"hunter2-x"}',
      redfish.encode({ s = secret.new("hunter2-x"), b = { c = "x" }, a = { 1, 2 } }))
    local v = assert(redfish.decode('{"Members": [], "x": {}}'))
    assert.are.equal("[]", json.encode(v.Members))
    assert.are.equal("{}", json.encode(v.x))
    local bad, err = redfish.decode('{"a": }')
    assert.is_nil(bad)
    assert.matches("redfish.decode:", err)
  end)

  it("encodes and decodes with sbot.json's codec: integers kept, secrets revealed, misuse named by path", function()
    local secret = require "sbot.secret"
    -- integers stay integers (ids are compared), unlike sbot.json's cjson-compatible floats
    local v = assert(redfish.decode('{"Id": 7, "f": 1.5, "l": [1, null]}'))
    assert.are.equal("integer", math.type(v.Id))
    assert.are.equal(json.null, v.l[2])
    assert.is_true(json.is_array(v.l))
    -- the same text sbot.json writes (number keys as strings, DEL escaped as cjson does)
    local body = { [1.5] = "\127", n = 2, t = json.empty_array }
    assert.are.equal(json.encode(body), redfish.encode(body))
    assert.are.equal('{"p":"reveal-me-Q7"}', redfish.encode({ p = secret.new("reveal-me-Q7") }))
    assert.has_error(function() redfish.encode({ a = { { f = print } } }) end,
      "sbot.redfish: request body: value.a[1].f is a function, which JSON cannot represent")
  end)

  it("decodes only JSON's own number spellings (docs/redfish.md), integers as integers", function()
    for _, text in ipairs({ "01", "-01", "00", "1.", "1.e5", ".5", "+1", "-", "1e", "1e+", "0x10", "1-2",
      "[01]", '{"a":1.}', "inf", "nan" }) do
      local v, err = redfish.decode(text)
      assert(v == nil, ("%q decoded to %s"):format(text, tostring(v)))
      assert.matches("^redfish.decode: ", err)
    end
    for text, want in pairs({ ["0"] = 0, ["-0"] = 0, ["10"] = 10, ["-7"] = -7, ["1.5"] = 1.5, ["1e2"] = 100.0,
      ["1E+2"] = 100.0, ["-2.5e-3"] = -2.5e-3, ["0.0"] = 0.0, ["9223372036854775807"] = math.maxinteger }) do
      local v = redfish.decode(text)
      assert(v == want and math.type(v) == math.type(want), ("%q decoded to %s"):format(text, tostring(v)))
    end
  end)
end)
