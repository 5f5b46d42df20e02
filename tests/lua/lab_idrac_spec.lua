-- sbot lab, iDRAC model: driven over HTTPS by sbot.http against a real `sbot lab`
-- process, the way a Redfish client would see it.
local helpers = require "helpers"
local labclient = require "labclient"
local images = require "images"

local SYS = "/redfish/v1/Systems/System.Embedded.1"
local MGR = "/redfish/v1/Managers/iDRAC.Embedded.1"

local wait_for = helpers.wait_for

-- GET that waits out SYS518 (the iDRAC is busy right after a reset).
local function get_ready(c, path, opts)
  return wait_for(function()
    local r = assert(c:get(path, opts))
    if r.status == 503 and labclient.message_id(r) == "SYS518" then return nil end
    return r
  end, 20, "the iDRAC to be ready for " .. path)
end

describe("sbot lab iDRAC 8", function()
  local lab
  setup(function()
    lab = labclient.start_lab({ "--servers", "6", "--time-scale", "0.4", "--seed", "3" })
  end)
  teardown(function() if lab then lab.stop() end end)

  it("writes a site file whose entries reach each BMC with its pinned certificate", function()
    assert.are.equal(6, #lab.site.servers)
    local s1 = lab.site.servers[1]
    assert.are.equal("root", s1.idrac.user)
    assert.are.equal(lab.info.devices["idrac-1"].port, tonumber(s1.idrac.host:match(":(%d+)$")))
    -- the pin is the SHA-256 of the certificate's public key, as openssl computes it
    local ok, _, pin = helpers.sh(string.format(
      "openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
      helpers.shquote(lab.info.devices["idrac-1"].cert_file)))
    assert.is_true(ok)
    assert.are.equal(s1.idrac.tls.pin_sha256, (pin:gsub("%s+", "")))
    -- the right pin connects (chain not checked: only the pin), a wrong one fails
    local good = labclient.new({ base = "https://" .. s1.idrac.host, pin = s1.idrac.tls.pin_sha256, insecure = true })
    assert.are.equal(200, assert(good:get("/redfish/v1")).status)
    local wrong = labclient.new({ base = "https://" .. s1.idrac.host, pin = lab.site.servers[2].idrac.tls.pin_sha256,
      insecure = true })
    local r, err, code = wrong:get("/redfish/v1")
    assert.is_nil(r)
    assert.are.equal("tls", code, err)
    assert.matches("does not match tls.pin_sha256", err, 1, true)
    -- and without -k the certificate chain verifies against the written PEM
    local strict = labclient.new({ base = "https://" .. s1.idrac.host, cacert = lab.info.devices["idrac-1"].cert_file })
    assert.are.equal(200, assert(strict:get("/redfish/v1")).status)
  end)

  it("allows 8 sessions, answers the 9th with 503 RAC0218, and frees a slot on DELETE", function()
    local root = assert(lab.client("idrac-1"):get("/redfish/v1"))
    local sessions = root.json.Links.Sessions["@odata.id"]
    assert.are.equal("/redfish/v1/Sessions", sessions)
    local clients = {}
    for i = 1, 8 do
      local c = lab.client("idrac-1")
      local r = assert(c:login(sessions))
      assert.are.equal(201, r.status, r.body)
      assert.is_truthy(r.headers["x-auth-token"])
      assert.matches("^/redfish/v1/Sessions/%d+$", r.headers["location"])
      clients[i] = c
    end
    local ninth = lab.client("idrac-1")
    local r = assert(ninth:login(sessions))
    assert.are.equal(503, r.status)
    assert.are.equal("RAC0218", labclient.message_id(r))
    -- tokens work, and a deleted session frees a slot
    assert.are.equal(200, assert(clients[1]:get(SYS)).status)
    assert.are.equal(200, assert(clients[1]:logout()).status)
    assert.are.equal(401, assert(clients[1]:get(SYS, { auth = "none" })).status)
    assert.are.equal(201, assert(ninth:login(sessions)).status)
    for i = 2, 8 do clients[i]:logout() end
    ninth:logout()
    -- a password handed over as a secret object: the request body carries
    -- its value (a protocol body encodes with secrets = "reveal")
    local sc = lab.client("idrac-1")
    sc.password = require("sbot.secret").new(sc.password, "test")
    local sr = assert(sc:login(sessions))
    assert.are.equal(201, sr.status, sr.body)
    sc:logout()
    -- Basic auth also works; wrong credentials and no credentials get 401
    local c = lab.client("idrac-1")
    assert.are.equal(200, assert(c:get(SYS, { auth = "basic" })).status)
    c.password = "wrong"
    assert.are.equal(401, assert(c:get(SYS, { auth = "basic" })).status)
    assert.are.equal(401, assert(c:get(SYS, { auth = "none" })).status)
    local bad = assert(c:login(sessions))
    assert.are.equal(401, bad.status)
    assert.are.equal("ResourceAtUriUnauthorized", labclient.message_id(bad))
    assert.is_nil(bad.json.error["@Message.ExtendedInfo"][1], "ExtendedInfo as one object")
    -- iDRAC 8 refuses logins at the DMTF path with 405 -- and creates the session anyway
    local before = lab.state().devices["idrac-1"]
    local d = lab.client("idrac-1")
    local r405 = assert(d:login("/redfish/v1/SessionService/Sessions"))
    assert.are.equal(405, r405.status)
    assert.are.equal("SYS402", labclient.message_id(r405))
    assert.is_nil(r405.headers["x-auth-token"])
    local after = lab.state().devices["idrac-1"]
    assert.are.equal(before.sessions + 1, after.sessions)
    assert.are.equal(before.leaked_logins + 1, after.leaked_logins)
  end)

  it("answers a PATCH with a stale If-Match with 412", function()
    local c = lab.client("idrac-2")
    local settings = SYS .. "/Bios/Settings"
    local r1 = assert(c:get(settings, { auth = "basic" }))
    local etag1 = r1.headers["etag"]
    assert.is_truthy(etag1)
    local p = assert(c:request("PATCH", settings, { auth = "basic", headers = { ["If-Match"] = etag1 },
      body = { Attributes = { ProcVirtualization = "Disabled" } } }))
    assert.are.equal(200, p.status, p.body)
    local etag2 = assert(c:get(settings, { auth = "basic" })).headers["etag"]
    assert.are_not.equal(etag1, etag2)
    local stale = assert(c:request("PATCH", settings, { auth = "basic", headers = { ["If-Match"] = etag1 },
      body = { Attributes = { ProcVirtualization = "Enabled" } } }))
    assert.are.equal(412, stale.status)
    assert.are.equal("PreconditionFailed", labclient.message_id(stale))
    assert.are.equal(etag2, stale.headers["etag"])
    local fresh = assert(c:request("PATCH", settings, { auth = "basic", headers = { ["If-Match"] = etag2 },
      body = { Attributes = { ProcVirtualization = "Enabled" } } }))
    assert.are.equal(200, fresh.status)
  end)

  it("keeps values pending until a job runs at the next reset, then makes them current", function()
    local c = lab.client("idrac-3")
    assert.are.equal(201, assert(c:login()).status)
    -- nothing pending: no job
    local none = assert(c:request("POST", MGR .. "/Jobs", { body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
    assert.are.equal(400, none.status)
    assert.are.equal("SUP0518", labclient.message_id(none))
    -- a connection attribute is read-only until iSCSI is enabled
    local early = assert(c:request("PATCH", SYS .. "/Bios/Settings",
      { body = { Attributes = { IscsiDev1Con1TargetName = "iqn.2005-10.org.freenas.ctl:r630-03" } } }))
    assert.are.equal(400, early.status)
    local attrs = { IscsiDev1EnDis = "Enabled", IscsiDev1Con1EnDis = "Enabled",
      IscsiDev1Con1TargetName = "iqn.2005-10.org.freenas.ctl:r630-03", IscsiDev1Con1TargetIp = "127.0.0.1",
      IscsiDev1Con1Port = 3260, IscsiDev1Con1Lun = "0", IscsiDev1Con1TgtDhcpEnDis = "Disabled" }
    local p = assert(c:request("PATCH", SYS .. "/Bios/Settings", { body = { Attributes = attrs } }))
    assert.are.equal(200, p.status, p.body)
    -- bad values and unknown attributes are refused with a Dell-style body
    local bad = assert(c:request("PATCH", SYS .. "/Bios/Settings", { body = { Attributes = { BootMode = "Legacy" } } }))
    assert.are.equal(400, bad.status)
    assert.are.equal("PropertyValueNotInList", labclient.message_id(bad))
    local unknown = assert(c:request("PATCH", SYS .. "/Bios/Settings", { body = { Attributes = { NoSuchAttr = 1 } } }))
    assert.are.equal(400, unknown.status)
    assert.are.equal("PropertyUnknown", labclient.message_id(unknown))
    assert.matches("NoSuchAttr", unknown.json.error["@Message.ExtendedInfo"][1].Message)
    -- /Bios still shows current values; /Bios/Settings the pending ones
    assert.are.equal("Disabled", assert(c:get(SYS .. "/Bios")).json.Attributes.IscsiDev1EnDis)
    assert.are.equal("Enabled", assert(c:get(SYS .. "/Bios/Settings")).json.Attributes.IscsiDev1EnDis)
    -- the job
    local j = assert(c:request("POST", MGR .. "/Jobs", { body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
    assert.are.equal(200, j.status, j.body)
    local job_uri = j.headers["location"]
    assert.matches("/Jobs/JID_%d+$", job_uri)
    assert.are.equal("Scheduled", assert(c:get(job_uri)).json.JobState)
    local again = assert(c:request("POST", MGR .. "/Jobs", { body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
    assert.are.equal(400, again.status)
    assert.are.equal("SYS011", labclient.message_id(again))
    assert.matches("already committed", again.json.error["@Message.ExtendedInfo"][1].Message)
    -- no GracefulRestart on this generation; ForceRestart runs the job
    local gr = assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset", { body = { ResetType = "GracefulRestart" } }))
    assert.are.equal(400, gr.status)
    assert.are.equal("Scheduled", assert(c:get(job_uri)).json.JobState)
    local rs = assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset", { body = { ResetType = "ForceRestart" } }))
    assert.are.equal(204, rs.status, rs.body)
    local states = {}
    local final = wait_for(function()
      local r = get_ready(c, job_uri)
      states[r.json.JobState] = true
      if r.json.JobState == "Completed" or r.json.JobState == "Failed" then return r.json end
    end, 20, "the job to finish")
    assert.are.equal("Completed", final.JobState)
    assert.are.equal(100, final.PercentComplete)
    assert.are.equal("Enabled", get_ready(c, SYS .. "/Bios").json.Attributes.IscsiDev1EnDis)
    assert.is_nil(next(get_ready(c, SYS .. "/Bios/Settings").json.Attributes))
    -- the server booted from the iSCSI target it was given
    local boot = wait_for(function()
      local s = lab.state().devices["idrac-3"]
      return type(s.last_boot) == "table" and s.last_boot
    end, 20, "the boot")
    assert.are.equal("iSCSI", boot.source)
    assert.are.equal("iqn.2005-10.org.freenas.ctl:r630-03", boot.target.name)
    assert.are.equal(0, boot.target.lun)
    c:logout()
  end)

  it("answers 503 SYS518 for a while after a reset", function()
    local c = lab.client("idrac-4")
    local before = assert(c:get(SYS, { auth = "basic" }))
    assert.are.equal(200, before.status)
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "ForceRestart" } })).status)
    local busy = assert(c:get(SYS, { auth = "basic" }))
    assert.are.equal(503, busy.status)
    assert.are.equal("SYS518", labclient.message_id(busy))
    assert.is_true(lab.state().devices["idrac-4"].not_ready)
    local r = get_ready(c, SYS, { auth = "basic" })
    assert.are.equal(200, r.status)
    assert.is_false(lab.state().devices["idrac-4"].not_ready)
    -- power transitions: ForceOff, then On again
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "ForceOff" } })).status)
    assert.are.equal("Off", assert(c:get(SYS, { auth = "basic" })).json.PowerState)
    assert.are.equal(409, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "ForceOff" } })).status)
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "On" } })).status)
    assert.are.equal("On", get_ready(c, SYS, { auth = "basic" }).json.PowerState)
  end)

  it("publishes its BIOS attribute registry through /redfish/v1/Registries and enforces its limits", function()
    local c = lab.client("idrac-5")
    assert.are.equal(201, assert(c:login()).status)
    local bios = assert(c:get(SYS .. "/Bios")).json
    local regs = assert(c:get(assert(c:get("/redfish/v1")).json.Registries["@odata.id"])).json
    local file
    for _, m in ipairs(regs.Members) do
      local f = assert(c:get(m["@odata.id"])).json
      if f.Id == bios.AttributeRegistry then file = f end
    end
    assert.is_truthy(file, "no registry file named " .. bios.AttributeRegistry)
    local doc = assert(c:get(file.Location[1].Uri)).json
    local by = {}
    for _, a in ipairs(doc.RegistryEntries.Attributes) do by[a.AttributeName] = a end
    assert.are.equal(0, by.IscsiDev1Con1Retry.LowerBound)
    assert.are.equal(5, by.IscsiDev1Con1Retry.UpperBound)
    assert.are.equal(1000, by.IscsiDev1Con1Timeout.LowerBound)
    assert.are.equal(30000, by.IscsiDev1Con1Timeout.UpperBound)
    assert.are.equal(12, by.IscsiDev1Con1ChapSecret.MinLength)
    assert.are.equal(16, by.IscsiDev1Con1ChapSecret.MaxLength)
    assert.are.equal("Password", by.IscsiDev1Con1ChapSecret.Type)
    assert.matches("^%^iqn", by.IscsiDev1Con1TargetName.ValueExpression)
    assert.is_true(by.SystemServiceTag.ReadOnly)
    local dep
    for _, d in ipairs(doc.RegistryEntries.Dependencies) do
      if d.DependencyFor == "IscsiDev1Con1TargetName" then dep = d.Dependency end
    end
    assert.are.equal("IscsiDev1Con1EnDis", dep.MapFrom[1].MapFromAttribute)
    assert.are.equal("ReadOnly", dep.MapToProperty)
    -- the limits hold on writes
    local en = { IscsiDev1EnDis = "Enabled", IscsiDev1Con1EnDis = "Enabled" }
    local function patch(extra)
      local a = {}
      for k, v in pairs(en) do a[k] = v end
      for k, v in pairs(extra) do a[k] = v end
      return assert(c:request("PATCH", SYS .. "/Bios/Settings", { body = { Attributes = a } }))
    end
    local r = patch({ IscsiDev1Con1Retry = 6 })
    assert.are.equal(400, r.status)
    assert.are.equal("PropertyValueOutOfRange", labclient.message_id(r))
    r = patch({ IscsiDev1Con1Timeout = 999 })
    assert.are.equal("PropertyValueOutOfRange", labclient.message_id(r))
    r = patch({ IscsiDev1Con1ChapSecret = "short" })
    assert.are.equal("PropertyValueFormatError", labclient.message_id(r))
    assert.is_nil(r.body:find("short", 1, true), "a secret is never echoed")
    r = patch({ IscsiDev1Con1TargetName = "r630-05" })
    assert.are.equal("PropertyValueFormatError", labclient.message_id(r))
    r = patch({ SystemServiceTag = "X" })
    assert.are.equal("PropertyNotWritable", labclient.message_id(r))
    -- a boot sequence lists every device once; the iSCSI device only while enabled
    local seq = assert(c:get(SYS .. "/Bios")).json.Attributes.UefiBootSeq
    r = assert(c:request("PATCH", SYS .. "/Bios/Settings", { body = { Attributes = {
      UefiBootSeq = "iSCSI.Dev1.Con1," .. seq } } }))
    assert.are.equal(400, r.status)
    assert.matches("not a boot device", r.json.error["@Message.ExtendedInfo"][1].Message)
    r = patch({ UefiBootSeq = "iSCSI.Dev1.Con1," .. seq, IscsiDev1Con1Retry = 5 })
    assert.are.equal(200, r.status, r.body)
    assert.are.equal("iSCSI.Dev1.Con1," .. seq, assert(c:get(SYS .. "/Bios/Settings")).json.Attributes.UefiBootSeq)
    -- writing a value that is already current is recorded (old firmware hangs on it)
    assert.are.equal(200, assert(c:request("PATCH", SYS .. "/Bios/Settings",
      { body = { Attributes = { ProcVirtualization = "Enabled" } } })).status)
    local st = lab.state().devices["idrac-5"]
    assert.are.same({ "bios:ProcVirtualization" }, st.unchanged_attributes)
    c:logout()
  end)

  it("serves NICs through NetworkInterfaces links, with pending iSCSIBoot settings checked against limits", function()
    local c = lab.client("idrac-5")
    local sys = assert(c:get(SYS, { auth = "basic" })).json
    local nis = assert(c:get(sys.NetworkInterfaces["@odata.id"], { auth = "basic" })).json
    local ni = assert(c:get(nis.Members[1]["@odata.id"], { auth = "basic" })).json
    local adapter = assert(c:get(ni.Links.NetworkAdapter["@odata.id"], { auth = "basic" })).json
    assert.matches("^/redfish/v1/Systems/System.Embedded.1/NetworkAdapters/", adapter["@odata.id"])
    local fns = assert(c:get(adapter.NetworkDeviceFunctions["@odata.id"], { auth = "basic" })).json
    local fn_uri = fns.Members[1]["@odata.id"]
    assert.matches("NIC.Integrated.1%-1%-1$", fn_uri)
    local fn = assert(c:get(fn_uri, { auth = "basic" })).json
    assert.matches("^%x%x:%x%x:%x%x:%x%x:%x%x:%x%x$", fn.Ethernet.MACAddress)
    assert.is_true(fn.iSCSIBoot.TargetInfoViaDHCP)
    local settings = fn["@Redfish.Settings"].SettingsObject["@odata.id"]
    local iqn = "iqn.2005-10.org.freenas.ctl:r630-05"
    -- static target fields are read-only while TargetInfoViaDHCP is on
    local ro = assert(c:request("PATCH", settings, { auth = "basic",
      body = { iSCSIBoot = { PrimaryTargetName = iqn } } }))
    assert.are.equal(400, ro.status)
    local ok = assert(c:request("PATCH", settings, { auth = "basic",
      body = { iSCSIBoot = { TargetInfoViaDHCP = false, PrimaryTargetName = iqn, PrimaryLUN = 1 } } }))
    assert.are.equal(200, ok.status, ok.body)
    assert.are.equal("", assert(c:get(fn_uri, { auth = "basic" })).json.iSCSIBoot.PrimaryTargetName)
    assert.are.equal(iqn, assert(c:get(settings, { auth = "basic" })).json.iSCSIBoot.PrimaryTargetName)
    -- limits: a bad type, a LUN out of range, a short CHAP secret, a name that is no IQN
    for body, id in pairs({ [{ PrimaryLUN = "one" }] = "PropertyValueTypeError",
      [{ PrimaryLUN = 256 }] = "PropertyValueOutOfRange", [{ CHAPSecret = "abc" }] = "PropertyValueFormatError",
      [{ InitiatorName = "r630-05" }] = "PropertyValueFormatError" }) do
      local bad = assert(c:request("PATCH", settings, { auth = "basic", body = { iSCSIBoot = body } }))
      assert.are.equal(400, bad.status, bad.body)
      assert.are.equal(id, labclient.message_id(bad))
    end
    -- a job per Settings target, applied at the next reset
    local j = assert(c:request("POST", MGR .. "/Jobs", { auth = "basic", body = { TargetSettingsURI = settings } }))
    assert.are.equal(200, j.status, j.body)
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "ForceRestart" } })).status)
    wait_for(function()
      return get_ready(c, j.headers["location"], { auth = "basic" }).json.JobState == "Completed"
    end, 20, "the NIC job")
    assert.are.equal(iqn, get_ready(c, fn_uri, { auth = "basic" }).json.iSCSIBoot.PrimaryTargetName)
  end)

  it("writes collections with a trailing slash and member ids with ':' and '%7C', served verbatim", function()
    local c = lab.client("idrac-5")
    local root = assert(c:get("/redfish/v1", { auth = "basic" })).json
    assert.are.equal("/redfish/v1/Systems/", root.Systems["@odata.id"])
    local systems = assert(c:get(root.Systems["@odata.id"], { auth = "basic" })).json
    assert.are.equal("/redfish/v1/Systems/", systems["@odata.id"])
    local sys = assert(c:get(systems.Members[1]["@odata.id"], { auth = "basic" })).json
    local storage = assert(c:get(sys.Storage["@odata.id"], { auth = "basic" })).json
    local ctrl = assert(c:get(storage.Members[1]["@odata.id"], { auth = "basic" })).json
    local drive_uri = ctrl.Drives[1]["@odata.id"]
    assert.matches(":Enclosure", drive_uri, 1, true)
    assert.are.equal(200, assert(c:get(drive_uri, { auth = "basic" })).status)
    local us = assert(c:get(root.UpdateService["@odata.id"], { auth = "basic" })).json
    local fw = assert(c:get(us.FirmwareInventory["@odata.id"], { auth = "basic" })).json
    local member = fw.Members[1]["@odata.id"]
    assert.matches("%7C", member, 1, true)
    assert.are.equal(200, assert(c:get(member, { auth = "basic" })).status)
    -- a client that encodes the id again does not find it
    local twice = member:gsub("%%7C", "%%257C")
    assert.are.equal(404, assert(c:get(twice, { auth = "basic" })).status)
  end)

  it("supports $select and $expand=.($levels=1) as advertised", function()
    local c = lab.client("idrac-5")
    local root = assert(c:get("/redfish/v1")).json
    assert.are.equal(1, root.ProtocolFeaturesSupported.ExpandQuery.MaxLevels)
    assert.is_true(root.ProtocolFeaturesSupported.SelectQuery)
    local sel = assert(c:get(SYS, { auth = "basic", query = "$select=PowerState,SKU" })).json
    assert.are.equal("On", sel.PowerState)
    assert.are.equal("LAB0005", sel.SKU)
    assert.is_nil(sel.Boot)
    local ex = assert(c:get("/redfish/v1/Systems", { auth = "basic", query = "$expand=.($levels=1)" })).json
    assert.are.equal("PowerEdge R630", ex.Members[1].Model)
    assert.are.equal(400, assert(c:get("/redfish/v1/Systems", { auth = "basic", query = "$expand=.($levels=2)" })).status)
  end)

  describe("virtual media", function()
    local imgs
    setup(function()
      local dir = helpers.tmpdir("images")
      images.make_iso(dir .. "/agent.iso", "AGENT_4_14")
      images.make_iso(dir .. "/other.iso", "OTHER")
      helpers.write_file(dir .. "/notiso.img", string.rep("x", 40000))
      imgs = images.server(dir)
    end)
    teardown(function() if imgs then imgs.stop() end end)

    local function vm_members(c)
      local mgr = assert(c:get(MGR, { auth = "basic" })).json
      local coll = assert(c:get(mgr.VirtualMedia["@odata.id"], { auth = "basic" })).json
      local cd, ids = nil, {}
      for _, m in ipairs(coll.Members) do
        local v = assert(c:get(m["@odata.id"], { auth = "basic" })).json
        ids[#ids + 1] = v.Id
        for _, t in ipairs(v.MediaTypes) do if t == "CD" then cd = v end end
      end
      return cd, ids, coll
    end

    it("reads an image from the lab's own S3 over plain HTTP (handed to the S3 device in-process: the lab is "
      .. "one thread), judged by the bucket policy like any anonymous read", function()
      local s3site = lab.site.s3
      local s3c = assert(require("sbot.s3").client { endpoint = s3site.endpoint, tls = s3site.tls,
        access_key = s3site.access_key, secret_key = s3site.secret_key })
      local dir = helpers.tmpdir("s3img")
      images.make_iso(dir .. "/lab.iso", "FROM_LAB_S3")
      assert(s3c:put_object { bucket = s3site.public_bucket, key = "published/lab.iso", file = dir .. "/lab.iso" })
      assert(s3c:put_object { bucket = s3site.bucket, key = "private/lab.iso", file = dir .. "/lab.iso" })
      local c = lab.client("idrac-5")
      local cd = vm_members(c)
      local insert = cd.Actions["#VirtualMedia.InsertMedia"].target
      local eject = cd.Actions["#VirtualMedia.EjectMedia"].target
      local before = lab.state().devices.s3
      local url = s3site.public_endpoint .. "/" .. s3site.public_bucket .. "/published/lab.iso"
      local r = assert(c:request("POST", insert, { auth = "basic", body = { Image = url } }))
      assert.are.equal(204, r.status, r.body)
      local st = lab.state().devices
      assert.are.equal("FROM_LAB_S3", st["idrac-5"].vmedia.CD.volume_id)
      assert.are.equal(before.requests + 1, st.s3.requests, "the read reached the S3 device")
      assert.are.equal(204, assert(c:request("POST", eject, { auth = "basic", body = {} })).status)
      -- the private bucket is not for anonymous readers: the iDRAC cannot read it
      local no = assert(c:request("POST", insert, { auth = "basic",
        body = { Image = s3site.public_endpoint .. "/" .. s3site.bucket .. "/private/lab.iso" } }))
      assert.are.equal(500, no.status)
      assert.are.equal("RAC0904", labclient.message_id(no))
      assert.matches("HTTP 403", lab.state().devices["idrac-5"].vmedia_error.reason, 1, true)
      os.execute("rm -rf " .. helpers.shquote(dir))
    end)

    it("lists [RemovableDisk, CD], reads the image with a Range request, refuses what iDRAC 8 refuses", function()
      local c = lab.client("idrac-6")
      local cd, ids, coll = vm_members(c)
      assert.are.same({ "RemovableDisk", "CD" }, ids)
      assert.matches("/$", coll["@odata.id"])
      local insert = cd.Actions["#VirtualMedia.InsertMedia"].target
      local eject = cd.Actions["#VirtualMedia.EjectMedia"].target
      local function try(image)
        return assert(c:request("POST", insert, { auth = "basic", body = { Image = image } }))
      end
      local function refused(r, why)
        assert.are.equal(500, r.status, r.body)
        assert.are.equal("RAC0904", labclient.message_id(r))
        assert.matches(why, lab.state().devices["idrac-6"].vmedia_error.reason)
      end
      refused(try("https://127.0.0.1:" .. imgs.port .. "/agent.iso"), "cannot use https")
      refused(try("//127.0.0.1/share/agent.iso"), "cannot use cifs")
      refused(try("cifs://127.0.0.1/share/agent.iso"), "cannot use cifs")
      refused(try(imgs.url("missing.iso")), "HTTP 404")
      refused(try(imgs.url("notiso.img")), "not an ISO 9660 image")
      refused(try("http://127.0.0.1:" .. helpers.free_port() .. "/agent.iso"), "cannot reach the image server")
      -- eject with nothing inserted: 500 VRM0012
      local e = assert(c:request("POST", eject, { auth = "basic", body = {} }))
      assert.are.equal(500, e.status)
      assert.are.equal("VRM0012", labclient.message_id(e))
      -- a good image: read with a Range request for its volume descriptor
      assert.are.equal(204, try(imgs.url("agent.iso")).status)
      assert.matches("GET /agent.iso range=bytes=32768%-", imgs.log())
      local got = assert(c:get(cd["@odata.id"], { auth = "basic" })).json
      assert.is_true(got.Inserted)
      assert.are.equal(imgs.url("agent.iso"), got.Image)
      assert.are.equal("AGENT_4_14", lab.state().devices["idrac-6"].vmedia.CD.volume_id)
      -- insert over an inserted image: 500 VRM0021; eject first
      local again = try(imgs.url("other.iso"))
      assert.are.equal(500, again.status)
      assert.are.equal("VRM0021", labclient.message_id(again))
      assert.are.equal(204, assert(c:request("POST", eject, { auth = "basic", body = {} })).status)
      assert.are.equal(204, try(imgs.url("other.iso")).status)
      assert.are.equal(204, assert(c:request("POST", eject, { auth = "basic", body = {} })).status)
    end)

    it("refuses an image server without Range support", function()
      local dir = helpers.tmpdir("images")
      images.make_iso(dir .. "/agent.iso", "AGENT")
      local plain = images.server(dir, { no_range = true })
      local c = lab.client("idrac-6")
      local cd = vm_members(c)
      local r = assert(c:request("POST", cd.Actions["#VirtualMedia.InsertMedia"].target,
        { auth = "basic", body = { Image = plain.url("agent.iso") } }))
      plain.stop()
      assert.are.equal(500, r.status)
      assert.are.equal("RAC0904", labclient.message_id(r))
      assert.matches("Range", lab.state().devices["idrac-6"].vmedia_error.reason)
    end)

    it("boots the virtual CD once through SCP import (LC068 while changes are pending), then the disk again", function()
      local c = lab.client("idrac-6")
      local sys = assert(c:get(SYS, { auth = "basic" })).json
      -- at rest: Once with target None
      assert.are.equal("Once", sys.Boot.BootSourceOverrideEnabled)
      assert.are.equal("None", sys.Boot.BootSourceOverrideTarget)
      local cd = vm_members(c)
      assert.are.equal(204, assert(c:request("POST", cd.Actions["#VirtualMedia.InsertMedia"].target,
        { auth = "basic", body = { Image = imgs.url("agent.iso") } })).status)
      -- the import action under its real key, found by suffix
      local mgr = assert(c:get(MGR, { auth = "basic" })).json
      local action
      for k, v in pairs(mgr.Actions.Oem) do
        if k:match("OemManager%.ImportSystemConfiguration$") then action = v.target; assert.are.equal(
          "#OemManager.v1_1_0#OemManager.ImportSystemConfiguration", k) end
      end
      assert.is_truthy(action)
      local scp = [[<SystemConfiguration><Component FQDD="iDRAC.Embedded.1">
<Attribute Name="ServerBoot.1#BootOnce">Enabled</Attribute>
<Attribute Name="ServerBoot.1#FirstBootDevice">VCD-DVD</Attribute>
</Component></SystemConfiguration>]]
      local body = { ShareParameters = { Target = "ALL" }, ImportBuffer = scp, ShutdownType = "NoReboot" }
      -- a pending BIOS change blocks the import: 400 LC068, ExtendedInfo as one object
      assert.are.equal(200, assert(c:request("PATCH", SYS .. "/Bios/Settings",
        { auth = "basic", body = { Attributes = { ProcVirtualization = "Disabled" } } })).status)
      local blocked = assert(c:request("POST", action, { auth = "basic", body = body }))
      assert.are.equal(400, blocked.status)
      local info = blocked.json.error["@Message.ExtendedInfo"]
      assert.is_nil(info[1], "one object, not a list")
      assert.matches("LC068$", info.MessageId)
      assert.are.equal("LC068", labclient.message_id(blocked))
      -- apply the pending change (job + reset), then import
      local j = assert(c:request("POST", MGR .. "/Jobs", { auth = "basic", body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
      assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
        { auth = "basic", body = { ResetType = "ForceRestart" } })).status)
      wait_for(function() return get_ready(c, j.headers["location"], { auth = "basic" }).json.JobState == "Completed" end,
        20, "the BIOS job")
      local imp = assert(c:request("POST", action, { auth = "basic", body = body }))
      assert.are.equal(202, imp.status, imp.body)
      local done = wait_for(function()
        local t = get_ready(c, imp.headers["location"], { auth = "basic" }).json
        return (t.TaskState == "Completed" or t.TaskState == "Exception") and t
      end, 20, "the import")
      assert.are.equal("Completed", done.TaskState)
      local n0 = #lab.state().devices["idrac-6"].boots
      assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
        { auth = "basic", body = { ResetType = "ForceRestart" } })).status)
      local boot = wait_for(function()
        local s = lab.state().devices["idrac-6"]
        return #s.boots > n0 and s.last_boot
      end, 20, "the boot")
      assert.are.equal("VirtualCD", boot.source)
      assert.are.equal("scp", boot.once)
      assert.are.equal("AGENT_4_14", boot.volume_id)
      -- once: the next boot is the disk again
      local n = #lab.state().devices["idrac-6"].boots
      get_ready(c, SYS, { auth = "basic" })
      assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
        { auth = "basic", body = { ResetType = "ForceRestart" } })).status)
      local next_boot = wait_for(function()
        local s = lab.state().devices["idrac-6"]
        return #s.boots > n and s.last_boot
      end, 20, "the next boot")
      assert.are.equal("Hdd", next_boot.source)
      -- an unknown SCP attribute makes the job fail, naming it
      get_ready(c, SYS, { auth = "basic" })
      local badscp = scp:gsub("ServerBoot.1#BootOnce", "ServerBoot.1#NoSuch")
      local imp2 = assert(c:request("POST", action, { auth = "basic", body = { ShareParameters = { Target = "ALL" },
        ImportBuffer = badscp, ShutdownType = "NoReboot" } }))
      local failed = wait_for(function()
        local t = get_ready(c, imp2.headers["location"], { auth = "basic" }).json
        return (t.TaskState == "Completed" or t.TaskState == "Exception") and t
      end, 20, "the failing import")
      assert.are.equal("Exception", failed.TaskState)
      assert.matches("ServerBoot.1#NoSuch", failed.Messages[1].Message, 1, true)
      assert.are.equal(204, assert(c:request("POST", cd.Actions["#VirtualMedia.EjectMedia"].target,
        { auth = "basic", body = {} })).status)
    end)

    it("boots the virtual CD once through BIOS OneTimeUefiBootSeq, not through the Cd override (the physical drive)", function()
      local c = lab.client("idrac-4")
      local cd = vm_members(c)
      assert.are.equal(204, assert(c:request("POST", cd.Actions["#VirtualMedia.InsertMedia"].target,
        { auth = "basic", body = { Image = imgs.url("agent.iso") } })).status)
      -- BootSourceOverrideTarget Cd: the physical drive, which has no disc
      assert.are.equal(200, assert(c:request("PATCH", SYS, { auth = "basic",
        body = { Boot = { BootSourceOverrideTarget = "Cd", BootSourceOverrideEnabled = "Once" } } })).status)
      local function reset_and_boot()
        get_ready(c, SYS, { auth = "basic" })
        local n = #lab.state().devices["idrac-4"].boots
        assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
          { auth = "basic", body = { ResetType = "ForceRestart" } })).status)
        return wait_for(function()
          local s = lab.state().devices["idrac-4"]
          return #s.boots > n and s.last_boot
        end, 20, "a boot")
      end
      local b = reset_and_boot()
      assert.are_not.equal("VirtualCD", b.source)
      assert.are.equal("Cd", b.tried[1].device)
      assert.matches("physical optical drive", b.tried[1].error)
      local sys = get_ready(c, SYS, { auth = "basic" }).json
      assert.are.equal("None", sys.Boot.BootSourceOverrideTarget)
      assert.are.equal("Once", sys.Boot.BootSourceOverrideEnabled)
      -- the BIOS one-time UEFI boot sequence with the iDRAC's virtual optical drive
      assert.are.equal(200, assert(c:request("PATCH", SYS .. "/Bios/Settings", { auth = "basic", body = { Attributes = {
        OneTimeBootMode = "OneTimeUefiBootSeq", OneTimeUefiBootSeqDev = "Optical.iDRACVirtual.1-1" } } })).status)
      assert.are.equal(200, assert(c:request("POST", MGR .. "/Jobs", { auth = "basic",
        body = { TargetSettingsURI = SYS .. "/Bios/Settings" } })).status)
      b = reset_and_boot()
      assert.are.equal("VirtualCD", b.source)
      assert.are.equal("bios", b.once)
      assert.are.equal("Disabled", get_ready(c, SYS .. "/Bios", { auth = "basic" }).json.Attributes.OneTimeBootMode)
      assert.are_not.equal("VirtualCD", reset_and_boot().source)
      assert.are.equal(204, assert(c:request("POST", cd.Actions["#VirtualMedia.EjectMedia"].target,
        { auth = "basic", body = {} })).status)
    end)
  end)

  it("counts write requests apart from logins and logouts", function()
    local c = lab.client("idrac-2")
    local before = lab.state().devices["idrac-2"]
    assert.are.equal(201, assert(c:login()).status)
    assert.are.equal(200, assert(c:get(SYS)).status)
    local mid = lab.state().devices["idrac-2"]
    assert.are.equal(before.writes, mid.writes)
    assert.are.equal(before.logins + 1, mid.logins)
    assert.are.equal(before.sessions + 1, mid.sessions)
    assert.are.equal(200, assert(c:request("PATCH", SYS, { body = { Boot = { BootSourceOverrideTarget = "None" } } })).status)
    assert.are.equal(200, assert(c:logout()).status)
    local after = lab.state().devices["idrac-2"]
    assert.are.equal(before.writes + 1, after.writes)
    assert.matches("^PATCH /redfish/v1/Systems/System.Embedded.1 200$", after.write_log[#after.write_log])
    assert.are.equal(before.sessions, after.sessions)
    assert.are.equal(before.logouts + 1, after.logouts)
  end)

  it("offers only the R630's ResetTypes and ignores graceful shutdowns under the noshutdown fault", function()
    local c = lab.client("idrac-2")
    local sys = assert(c:get(SYS, { auth = "basic" })).json
    local allowed = sys.Actions["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
    assert.are.same({ "On", "ForceOff", "ForceRestart", "GracefulShutdown", "PushPowerButton", "Nmi" }, allowed)
    for _, rt in ipairs({ "GracefulRestart", "PowerCycle", "ForceOn" }) do
      local r = assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset", { auth = "basic", body = { ResetType = rt } }))
      assert.are.equal(400, r.status)
      assert.are.equal("PropertyValueNotInList", labclient.message_id(r))
    end
    -- a graceful shutdown takes a while, then the host is off
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "GracefulShutdown" } })).status)
    assert.are.equal("On", assert(c:get(SYS, { auth = "basic" })).json.PowerState)
    wait_for(function() return assert(c:get(SYS, { auth = "basic" })).json.PowerState == "Off" end, 10, "power off")
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "On" } })).status)
    get_ready(c, SYS, { auth = "basic" })
    -- an OS that ignores the ACPI request stays on
    local f = labclient.new({ base = lab.info.devices["idrac-2"].url, cacert = lab.info.devices["idrac-2"].cert_file })
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "idrac-2:noshutdown=1" })).status)
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "GracefulShutdown" } })).status)
    os.execute("sleep 0.5")
    assert.are.equal("On", assert(c:get(SYS, { auth = "basic" })).json.PowerState)
    assert.are.equal(1, lab.state().devices["idrac-2"].ignored_shutdowns)
    assert.are.equal(200, assert(f:request("POST", "/lab/faults", { body = "" })).status)
  end)

  it("stops cleanly on POST /lab/stop", function()
    local out, clean = lab.stop()
    lab = nil
    assert.is_true(clean, out)
    assert.matches("sbot lab: stopped", out)
    assert.is_nil(out:match("Sanitizer"), out)
  end)
end)

describe("sbot lab iDRAC 9 flavour", function()
  local lab
  setup(function() lab = labclient.start_lab({ "--servers", "1", "--idrac", "9", "--time-scale", "0.4" }) end)
  teardown(function() if lab then lab.stop() end end)

  it("logs in at SessionService/Sessions, moves NICs under Chassis and schedules jobs from the PATCH", function()
    local c = lab.client("idrac-1")
    local root = assert(c:get("/redfish/v1")).json
    assert.are.equal("1.17.0", root.RedfishVersion)
    assert.are.equal("/redfish/v1/SessionService/Sessions", root.Links.Sessions["@odata.id"])
    assert.are.equal(201, assert(c:login(root.Links.Sessions["@odata.id"])).status)
    local mgr = assert(c:get(MGR)).json
    assert.matches("^6%.", mgr.FirmwareVersion)
    local ni = assert(c:get(SYS .. "/NetworkInterfaces/NIC.Integrated.1")).json
    assert.matches("^/redfish/v1/Chassis/", ni.Links.NetworkAdapter["@odata.id"])
    local p = assert(c:request("PATCH", SYS .. "/Bios/Settings", { body = {
      ["@Redfish.SettingsApplyTime"] = { ApplyTime = "OnReset" }, Attributes = { ProcVirtualization = "Disabled" } } }))
    assert.are.equal(202, p.status, p.body)
    assert.matches("/Jobs/JID_%d+$", p.headers["location"])
    local again = assert(c:request("POST", MGR .. "/Jobs", { body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
    assert.are.equal(400, again.status)
    assert.matches("already committed", again.json.error["@Message.ExtendedInfo"][1].Message)
    c:logout()
  end)

  it("lists GracefulRestart and PowerCycle, and puts virtual media under the System (6.x)", function()
    local c = lab.client("idrac-1")
    local sys = assert(c:get(SYS, { auth = "basic" })).json
    local allowed = sys.Actions["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
    local set = {}
    for _, v in ipairs(allowed) do set[v] = true end
    assert.is_true(set.GracefulRestart and set.PowerCycle and set.GracefulShutdown and set.On)
    assert.is_nil(assert(c:get(MGR, { auth = "basic" })).json.VirtualMedia)
    local coll = assert(c:get(sys.VirtualMedia["@odata.id"], { auth = "basic" })).json
    assert.matches("^/redfish/v1/Systems/System.Embedded.1/VirtualMedia/", coll["@odata.id"])
    local types = {}
    for _, m in ipairs(coll.Members) do
      local v = assert(c:get(m["@odata.id"], { auth = "basic" })).json
      types[v.Id] = v.MediaTypes[1]
    end
    assert.are.same({ ["1"] = "CD", ["2"] = "USBStick" }, types)
    assert.are.equal("2", coll.Members[1]["@odata.id"]:match("(%d)$"), "members are not in MediaTypes order")
    -- a GracefulRestart restarts the host (jobs run, the iDRAC is busy for a while)
    local before = lab.state().devices["idrac-1"].resets
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "GracefulRestart" } })).status)
    wait_for(function() return lab.state().devices["idrac-1"].resets > before end, 10, "the restart")
    get_ready(c, SYS, { auth = "basic" })
  end)
end)

describe("sbot lab fault injection", function()
  -- the outcome of each of N sequential requests: "ok", "503" or "reset"
  local function outcomes(seed, n)
    local lab = labclient.start_lab({ "--servers", "1", "--seed", tostring(seed),
      "--faults", "idrac:503=0.2,reset=0.1" })
    local c = lab.client("idrac-1")
    local seq = {}
    for i = 1, n do
      local r, _, code = c:get("/redfish/v1")
      if r and r.status == 200 then seq[i] = "ok"
      elseif r and r.status == 503 then seq[i] = "503"
      elseif not r and code == "closed" then seq[i] = "reset"
      else seq[i] = "other:" .. tostring(r and r.status or code) end
    end
    local counts = lab.state().devices["idrac-1"].faults
    lab.stop()
    return seq, counts
  end

  it("injects 503s and resets at the configured rates, the same way for the same seed", function()
    local n = 150
    local a, counts = outcomes(11, n)
    local tally = { ok = 0, ["503"] = 0, reset = 0 }
    for _, o in ipairs(a) do tally[o] = (tally[o] or 0) + 1 end
    assert.are.equal(n, tally.ok + tally["503"] + tally.reset, "unexpected outcomes")
    -- reset drawn first (0.1), then 503 (0.2 of the rest): expected 15 and 27
    assert.is_true(tally.reset >= 5 and tally.reset <= 27, "resets: " .. tally.reset)
    assert.is_true(tally["503"] >= 13 and tally["503"] <= 43, "503s: " .. tally["503"])
    -- the lab's own counters agree with what the client saw
    assert.are.equal(tally.reset, counts.reset)
    assert.are.equal(tally["503"], counts["503"])
    local b = outcomes(11, n)
    assert.are.same(a, b)
    local c = outcomes(12, n)
    assert.are_not.same(a, c)
  end)

  it("fails configuration jobs under the jobfail fault and drops their pending values", function()
    local lab = labclient.start_lab({ "--servers", "1", "--time-scale", "0.3", "--faults", "idrac-1:jobfail=1" })
    local c = lab.client("idrac-1")
    assert.are.equal(200, assert(c:request("PATCH", SYS .. "/Bios/Settings",
      { auth = "basic", body = { Attributes = { ProcVirtualization = "Disabled" } } })).status)
    local j = assert(c:request("POST", MGR .. "/Jobs", { auth = "basic", body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
    assert.are.equal(200, j.status)
    assert.are.equal(204, assert(c:request("POST", SYS .. "/Actions/ComputerSystem.Reset",
      { auth = "basic", body = { ResetType = "ForceRestart" } })).status)
    local job = wait_for(function()
      local r = get_ready(c, j.headers["location"], { auth = "basic" }).json
      return (r.JobState == "Completed" or r.JobState == "Failed") and r
    end, 20, "the job")
    assert.are.equal("Failed", job.JobState)
    assert.are.equal("Enabled", get_ready(c, SYS .. "/Bios", { auth = "basic" }).json.Attributes.ProcVirtualization)
    assert.is_nil(next(get_ready(c, SYS .. "/Bios/Settings", { auth = "basic" }).json.Attributes))
    local out, clean = lab.stop()
    assert.is_true(clean, out)
  end)

  it("delays one device without holding up the others", function()
    local lab = labclient.start_lab({ "--servers", "2", "--faults", "idrac-1:latency=1500" })
    local d1, d2 = lab.info.devices["idrac-1"], lab.info.devices["idrac-2"]
    local order = lab.dir .. "/order"
    helpers.sh(string.format(
      "(curl -s --max-time 10 --cacert %s %s/redfish/v1 >/dev/null; echo slow >>%s) & sleep 0.3; " ..
      "curl -s --max-time 10 --cacert %s %s/redfish/v1 >/dev/null; echo fast >>%s; wait",
      helpers.shquote(d1.cert_file), d1.url, order, helpers.shquote(d2.cert_file), d2.url, order))
    assert.are.equal("fast\nslow\n", helpers.read_file(order))
    local out, clean = lab.stop()
    assert.is_true(clean, out)
  end)

  it("rejects a bad fault spec naming the problem", function()
    local r = helpers.sbot({ "lab", "--faults", "idrac:503=2" })
    assert.are.equal(2, r.code)
    assert.matches("503 must be a rate between 0 and 1", r.stderr)
    r = helpers.sbot({ "lab", "--faults", "idrac:boom=0.1" })
    assert.are.equal(2, r.code)
    assert.matches("unknown fault 'boom'", r.stderr)
  end)
end)
