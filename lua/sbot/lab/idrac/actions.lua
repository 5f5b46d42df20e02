--- sbot.lab.idrac.actions: what a POST makes the simulated iDRAC do —
-- ComputerSystem.Reset, configuration jobs, virtual media, SCP import.
--
-- Reset offers only the flavour's ResetTypes (an R630 has no GracefulRestart:
-- refused, never silently turned into a hard reset). InsertMedia really reads
-- the image: it fetches the ISO's volume descriptor with an HTTP Range
-- request (sbot.http) and fails with RAC0904 when it cannot (no server, 404,
-- a server that ignores Range, not an ISO); the lab's reason is kept in
-- /lab/state (vmedia_error) since the iDRAC itself does not say. Inserting
-- over an inserted image (VRM0021) or ejecting nothing (VRM0012) is HTTP 500.
-- SCP import is offered under its real key and answers 400 LC068 while
-- configuration changes are pending.
local json = require "sbot.json"
local model = require "sbot.lab.idrac.model"
local protocol = require "sbot.lab.idrac.protocol"
local registry = require "sbot.lab.idrac.registry"

local M = {}

local set_of = protocol.set_of
local SYS, MGR = model.SYS, model.MGR

-- SCP attributes a real iDRAC 8 accepts for what sbot does: one-time boot
-- from the virtual CD and NIC iSCSI settings (mapped to iSCSIBoot names).
local SCP_IDRAC = {
  ["ServerBoot.1#BootOnce"] = { "Enabled", "Disabled" },
  ["ServerBoot.1#FirstBootDevice"] = { "Normal", "PXE", "HDD", "VCD-DVD", "vFDD", "BIOS",
    "F10", "F11", "SD", "UEFIHttp" },
}
local SCP_NIC = {
  LegacyBootProto = { enum = { "NONE", "PXE", "iSCSI", "FCoE" } },
  IscsiInitiatorName = { prop = "InitiatorName" },
  TcpIpViaDHCP = { prop = "IPMaskDNSViaDHCP", bool = true },
  IscsiInitiatorIpAddr = { prop = "InitiatorIPAddress" },
  IscsiInitiatorSubnet = { prop = "InitiatorNetmask" },
  IscsiInitiatorGateway = { prop = "InitiatorDefaultGateway" },
  IscsiViaDHCP = { prop = "TargetInfoViaDHCP", bool = true },
  ConnectFirstTgt = { enum = { "Enabled", "Disabled" } },
  FirstTgtIpAddress = { prop = "PrimaryTargetIPAddress" },
  FirstTgtTcpPort = { prop = "PrimaryTargetTCPPort", int = true },
  FirstTgtBootLun = { prop = "PrimaryLUN", int = true },
  FirstTgtIscsiName = { prop = "PrimaryTargetName" },
  FirstTgtChapId = { prop = "CHAPUsername" },
  FirstTgtChapPwd = { prop = "CHAPSecret" },
  ChapAuthEnable = { enum = { "Enabled", "Disabled" } },
}

local PVD_OFFSET = 16 * 2048 -- ISO 9660: the primary volume descriptor is sector 16

function M.install(dev, opts)
  local F, st, P = dev.F, dev.st, dev.P
  local resource = dev.resource
  local nics = st.nics

  -- ---- reset -----------------------------------------------------------------

  resource(SYS .. "/Actions/ComputerSystem.Reset", { post = function(body)
    local rt = body.ResetType
    if rt == nil then
      return P.fail(400, "PropertyMissing", "The property ResetType is a required property and must be included in the request.",
        { args = { "ResetType" }, props = { "#/ResetType" } })
    end
    if not set_of(F.reset_types)[rt] then
      return P.fail(400, "PropertyValueNotInList", string.format(
        "Unable to complete the operation because the value %s entered for the property ResetType is not in the list of acceptable values.",
        tostring(rt)), { args = { tostring(rt), "ResetType" }, props = { "#/ResetType" } })
    end
    local t = dev.now()
    local on = st.power == "On"
    if rt == "On" then
      if on then return P.fail(409, "RAC0508", "Unable to perform the operation because the server is already powered on.") end
      dev.power_on(t)
    elseif rt == "ForceOff" then
      if not on then return P.fail(409, "RAC0509", "Unable to perform the operation because the server is already powered off.") end
      dev.power_off(t)
    elseif rt == "GracefulShutdown" then
      if not on then return P.fail(409, "RAC0509", "Unable to perform the operation because the server is already powered off.") end
      dev.graceful_shutdown(t)
    elseif rt == "ForceRestart" then
      if not on then return P.fail(409, "RAC0509", "Unable to perform the operation because the server is powered off; use On.") end
      dev.power_on(t)
    elseif rt == "GracefulRestart" then
      if not on then return P.fail(409, "RAC0509", "Unable to perform the operation because the server is powered off; use On.") end
      dev.at(t + dev.dur.shutdown, "graceful restart", function(t2) dev.power_on(t2) end)
    elseif rt == "PowerCycle" then
      if on then dev.power_off(t) end
      dev.at(t + dev.dur.shutdown, "power cycle", function(t2) dev.power_on(t2) end)
    elseif rt == "PushPowerButton" then
      if on then dev.graceful_shutdown(t) else dev.power_on(t) end
    end -- Nmi: nothing visible
    return P.reply(204, nil)
  end })

  -- ---- configuration jobs --------------------------------------------------------

  resource(MGR .. "/Jobs", {
    get = function()
      local m = {}
      for _, id in ipairs(st.job_order) do
        if st.jobs[id] then m[#m + 1] = MGR .. "/Jobs/" .. id end
      end
      return P.collection(MGR .. "/Jobs/", "#DellJobCollection.DellJobCollection", "JobQueue", m)
    end,
    post = function(body)
      local target = body.TargetSettingsURI
      if type(target) ~= "string" then
        return P.fail(400, "PropertyMissing", "The property TargetSettingsURI is a required property and must be included in the request.",
          { args = { "TargetSettingsURI" }, props = { "#/TargetSettingsURI" } })
      end
      for k in pairs(body) do
        if k ~= "TargetSettingsURI" and k ~= "ScheduledStartTime" and k ~= "EndTime" then
          return P.unknown_property(k)
        end
      end
      local kind, port, pending
      if target == dev.bios_settings_uri then
        kind, pending = "bios", st.bios.pending
      else
        for p = 1, registry.NIC_PORTS do
          if target == dev.nic_fn_uri(p) .. "/Settings" then kind, port, pending = "nic", p, nics[p].pending end
        end
      end
      if not kind then
        return P.fail(400, "PropertyValueNotInList", string.format(
          "The value %s for the property TargetSettingsURI is not in the list of acceptable values.", target),
          { args = { target, "TargetSettingsURI" }, props = { "#/TargetSettingsURI" } })
      end
      if dev.active_job_for(target) then
        return P.fail(400, "SYS011", "Pending configuration values are already committed, unable to perform another set operation.",
          { resolution = "Wait for the scheduled job to run, or delete it and retry." })
      end
      if next(pending) == nil then
        return P.fail(400, "SUP0518", "Unable to create a configuration job because no pending configuration changes exist for " .. target .. ".",
          { resolution = "Set pending values on the settings resource first, then create the job." })
      end
      local job = dev.new_job(kind, target, { port = port })
      return P.success(200, { Location = MGR .. "/Jobs/" .. job.id })
    end,
  })

  -- DellJobService.DeleteJobQueue: one job, or JID_CLEARALL (every job that is
  -- not running, and every pending value)
  local JS = model.JOB_SERVICE
  resource(JS, { get = function()
    return P.odata(JS, "#DellJobService.v1_1_0.DellJobService", { Id = "Job Service", Name = "DellJobService",
      Actions = { ["#DellJobService.DeleteJobQueue"] = { target = JS .. "/Actions/DellJobService.DeleteJobQueue" },
        ["#DellJobService.SetupJobQueue"] = { target = JS .. "/Actions/DellJobService.SetupJobQueue" } } })
  end })
  resource(JS .. "/Actions/DellJobService.DeleteJobQueue", { post = function(body)
    local jid = body.JobID
    if type(jid) ~= "string" then
      return P.fail(400, "PropertyMissing", "The property JobID is a required property and must be included in the request.",
        { props = { "#/JobID" } })
    end
    if jid == "JID_CLEARALL" then
      for _, id in ipairs(st.job_order) do
        local j = st.jobs[id]
        if j and j.state ~= "Running" then st.jobs[id] = nil end
      end
      st.bios.pending = {}
      for _, n in ipairs(nics) do n.pending = {} end
      return P.success(200)
    end
    local j = st.jobs[jid]
    if not j then
      return P.fail(400, "SUP011", "Unable to delete the job " .. jid .. " because it does not exist.", { args = { jid } })
    end
    if j.state == "Running" then
      return P.fail(400, "RAC0679", "Unable to delete the job because it is running.")
    end
    st.jobs[jid] = nil
    return P.success(200)
  end })

  -- ---- virtual media -----------------------------------------------------------------

  local http -- sbot.http, loaded on first use (the lab may run without the extension)

  --- Read an image's ISO 9660 volume descriptor the way the iDRAC does (an
  -- HTTP Range request). Returns {volume_id, size} or nil, reason.
  function dev.read_image(url)
    local scheme = tostring(url):match("^(%a+)://")
    scheme = scheme and scheme:lower()
    if scheme ~= "http" and scheme ~= "https" then
      return nil, "the lab reads http and https images only (" .. tostring(scheme) .. " is not simulated)"
    end
    st.counts.fetches = st.counts.fetches + 1
    if opts.fetch then
      return opts.fetch(url)
    end
    local req = { url = url, headers = { Range = string.format("bytes=%d-%d", PVD_OFFSET, PVD_OFFSET + 2047) },
      timeout = 10, connect_timeout = 5, retries = false, max_body = 1024 * 1024,
      tls = scheme == "https" and { insecure = true } or nil }
    -- the lab's own devices answer through opts.request (the lab is one
    -- thread: a socket to itself would wait for an answer it cannot give)
    local res, err
    if opts.request then res, err = opts.request(req) end
    if res == false or (res == nil and err == nil) then
      http = http or require "sbot.http"
      res, err = http.request(req)
    end
    if not res then return nil, "cannot reach the image server: " .. tostring(err) end
    if res.status == 200 then
      return nil, "the image server ignored the Range request (200 with the whole file): HTTP Range support is required"
    end
    if res.status ~= 206 then return nil, "the image server answered HTTP " .. res.status end
    local body = res.body or ""
    if body:sub(1, 6) ~= "\1CD001" then
      return nil, "not an ISO 9660 image (no CD001 volume descriptor at sector 16)"
    end
    local range = res.headers["content-range"]
    range = type(range) == "table" and range[#range] or range
    return { volume_id = (body:sub(41, 72):gsub("%s+$", "")),
      size = tonumber(tostring(range or ""):match("/(%d+)$")) }
  end

  local function vm_action(id, action)
    return dev.vm_base .. "/" .. id .. "/Actions/VirtualMedia." .. action
  end

  for _, d in ipairs(F.vmedia) do
    resource(vm_action(d.id, "InsertMedia"), { post = function(body)
      local known = { Image = true, Inserted = true, WriteProtected = true }
      if F.generation >= 9 then
        known.UserName, known.Password, known.TransferProtocolType, known.TransferMethod = true, true, true, true
      end
      for k in pairs(body) do
        if not known[k] then return P.unknown_property(k) end
      end
      local image = body.Image
      if type(image) ~= "string" or image == "" then
        return P.fail(400, "PropertyMissing", "The property Image is a required property and must be included in the request.",
          { args = { "Image" }, props = { "#/Image" } })
      end
      local v = st.vmedia[d.id]
      if v.inserted then
        return P.fail(500, "VRM0021", "Virtual Media is detached or Virtual Media devices are already in use.",
          { severity = "Critical", resolution = "Eject the media that is connected, then retry the operation." })
      end
      local function unreachable(why)
        st.vmedia_error = { image = image, reason = why }
        return P.fail(500, "RAC0904", "The remote file location is not accessible or reachable.",
          { severity = "Warning", resolution = "Confirm that the path and credentials to remote file are correct, and check that the iDRAC can connect to the network address." })
      end
      local scheme = image:match("^(%a+)://") or (image:match("^//") and "cifs") or image:match("^\\\\") and "cifs"
      scheme = scheme and scheme:lower()
      if not scheme or not F.image_schemes[scheme] then
        return unreachable(string.format("iDRAC %d cannot use %s images", F.generation, tostring(scheme or image)))
      end
      local info, why = dev.read_image(image)
      if not info then return unreachable(why) end
      st.vmedia_error = nil
      v.inserted, v.image, v.connected_via, v.volume_id = true, image, "URI", info.volume_id
      return P.reply(204, nil)
    end })
    resource(vm_action(d.id, "EjectMedia"), { post = function(body)
      for k in pairs(body) do return P.unknown_property(k) end
      local v = st.vmedia[d.id]
      if not v.inserted then
        return P.fail(500, "VRM0012", "No Virtual Media devices are currently connected.",
          { severity = "Warning", resolution = "No response action is required." })
      end
      v.inserted, v.image, v.connected_via, v.volume_id = false, json.null, "NotConnected", nil
      return P.reply(204, nil)
    end })
  end

  -- ---- SCP import --------------------------------------------------------------------

  --- Parse an SCP ImportBuffer into changes; returns changes and the first
  -- problem (the job then fails naming it, like the real import).
  local function parse_scp(xml)
    local changes = { idrac = {}, bios = {}, nic = {} }
    if not xml:match("<SystemConfiguration") then return changes, "ImportBuffer is not a SystemConfiguration document" end
    local problem
    for fqdd, inner in xml:gmatch('<Component%s+FQDD="([^"]+)"%s*>(.-)</Component>') do
      for name, value in inner:gmatch('<Attribute%s+Name="([^"]+)"%s*>(.-)</Attribute>') do
        if problem then break end
        if fqdd == "iDRAC.Embedded.1" then
          local allowed = SCP_IDRAC[name]
          if not allowed then problem = "unknown attribute " .. name .. " for " .. fqdd
          elseif not set_of(allowed)[value] then problem = "invalid value " .. value .. " for " .. name
          else changes.idrac[name] = value end
        elseif fqdd == "BIOS.Setup.1-1" then
          local spec = dev.bios_reg[name]
          local v = value
          if type(spec) == "table" and spec.type == "integer" then v = tonumber(value) end
          if type(spec) ~= "table" or spec.ro then problem = "unknown or read-only BIOS attribute " .. name
          elseif registry.check_value(name, spec, v) then problem = "invalid value " .. value .. " for " .. name
          else changes.bios[name] = v end
        else
          local port = tonumber(fqdd:match("^NIC%.Integrated%.1%-(%d)%-1$"))
          local spec = SCP_NIC[name]
          if not port or port > registry.NIC_PORTS then problem = "unknown component " .. fqdd
          elseif not spec then problem = "unknown attribute " .. name .. " for " .. fqdd
          else
            changes.nic[port] = changes.nic[port] or {}
            if spec.enum then
              if not set_of(spec.enum)[value] then problem = "invalid value " .. value .. " for " .. name
              elseif name == "LegacyBootProto" then changes.nic[port].LegacyBootProto = value end
            elseif spec.bool then
              changes.nic[port][spec.prop] = value == "Enabled"
            elseif spec.int then
              local n = math.tointeger(tonumber(value))
              if not n then problem = "invalid value " .. value .. " for " .. name else changes.nic[port][spec.prop] = n end
            else
              changes.nic[port][spec.prop] = value
            end
          end
        end
      end
    end
    return changes, problem
  end

  resource(MGR .. "/Actions/Oem/EID_674_Manager.ImportSystemConfiguration", { post = function(body)
    local sp = body.ShareParameters
    if type(sp) ~= "table" or type(sp.Target) ~= "string" then
      return P.fail(400, "PropertyMissing", "The property ShareParameters/Target is a required property and must be included in the request.",
        { props = { "#/ShareParameters/Target" } })
    end
    if type(body.ImportBuffer) ~= "string" then
      return P.fail(400, "PropertyMissing", "The lab supports ImportBuffer only (no network share); ImportBuffer is missing.",
        { props = { "#/ImportBuffer" } })
    end
    local shutdown = body.ShutdownType or "Graceful"
    if not set_of({ "Graceful", "Forced", "NoReboot" })[shutdown] then
      return P.fail(400, "PropertyValueNotInList", "The value " .. tostring(shutdown) .. " for ShutdownType is not in the list of acceptable values.",
        { props = { "#/ShutdownType" } })
    end
    local pending = dev.pending_changes()
    if pending then
      return P.fail(400, "LC068", "Unable to complete the operation because configuration changes are pending (" .. pending ..
        "). Apply or delete the pending changes, then retry the operation.",
        { single = true, resolution = "Apply the pending configuration changes by restarting the server, or delete the pending jobs, then retry." })
    end
    local changes, problem = parse_scp(body.ImportBuffer)
    local job = dev.new_job("scp", nil, { changes = changes })
    job.error = problem and ("Unable to complete application of configuration profile values: " .. problem .. ".")
    local needs_reboot = next(changes.bios) ~= nil or next(changes.nic) ~= nil
    if not needs_reboot or problem then
      dev.run_job(job, dev.now())
    elseif shutdown ~= "NoReboot" then
      dev.power_on(dev.now()) -- the iDRAC restarts the host itself to apply
    end
    return P.reply(202, nil, { Location = "/redfish/v1/TaskService/Tasks/" .. job.id })
  end })
end

return M
