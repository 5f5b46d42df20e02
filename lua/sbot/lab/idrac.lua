--- Simulated Dell iDRAC 8 (PowerEdge R630, firmware 2.75.75.75, Redfish 1.4.0)
-- and, with flavour 9, an iDRAC 9 (firmware 6.x, Redfish 1.17). Readable
-- rather than clever: every resource is a function that builds its JSON body
-- from the plain state tables in `dev.st`, and time only moves when a request
-- (or /lab/state) calls advance().
--
-- Quirks modelled on purpose (see docs/lab.md): 8 sessions then 503 RAC0218;
-- no GracefulRestart; /Bios shows current values only, pending ones live in
-- /Bios/Settings until a config job runs at the next reset; one job per
-- target; ETag/If-Match 412; 503 SYS518 for a while after every reset; NICs
-- only reachable by following NetworkInterfaces links (and under Chassis on
-- iDRAC 9); one-time boot from virtual CD only through SCP import on iDRAC 8.
local json = require "sbot.json"

local M = {}

M.RESET_TYPES = { "On", "ForceOff", "ForceRestart", "GracefulShutdown", "PushPowerButton", "Nmi" }
M.BOOT_TARGETS = { "None", "Pxe", "Cd", "Floppy", "Hdd", "BiosSetup", "Utilities", "UefiTarget",
  "SDCard", "UefiHttp" }
M.OVERRIDE_ENABLED = { "Once", "Continuous", "Disabled" }
M.MAX_SESSIONS = 8

local FLAVOURS = {
  [8] = { firmware = "2.75.75.75", redfish = "1.4.0", model = "13G Monolithic",
    system_model = "PowerEdge R630", msg = "IDRAC.1.6.", base = "Base.1.2.",
    sessions = "/redfish/v1/Sessions", bios_version = "2.19.0" },
  [9] = { firmware = "6.10.30.00", redfish = "1.17.0", model = "14G Monolithic",
    system_model = "PowerEdge R640", msg = "IDRAC.2.8.", base = "Base.1.12.",
    sessions = "/redfish/v1/SessionService/Sessions", bios_version = "2.19.1" },
}

local SYS = "/redfish/v1/Systems/System.Embedded.1"
local MGR = "/redfish/v1/Managers/iDRAC.Embedded.1"
local CHASSIS = "/redfish/v1/Chassis/System.Embedded.1"
local NIC_PORTS = 4

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return setmetatable(c, getmetatable(t))
end

local function arr(t) return json.array(t or {}) end

local function link(path) return { ["@odata.id"] = path } end

local function fnv1a(s)
  local h = 0x811c9dc5
  for i = 1, #s do
    h = ((h ~ s:byte(i)) * 0x01000193) & 0xffffffff
  end
  return string.format("%08x", h)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64decode(s)
  s = s:gsub("[^%w%+/=]", "")
  local bits = s:gsub("=", ""):gsub(".", function(c)
    local n = B64:find(c, 1, true) - 1
    local r = ""
    for i = 5, 0, -1 do r = r .. ((n >> i) & 1) end
    return r
  end)
  return (bits:gsub("%d%d%d%d%d%d%d%d", function(b) return string.char(tonumber(b, 2)) end)
    :sub(1, math.floor(#bits / 8)))
end

local function is_ipv4(s)
  if type(s) ~= "string" then return false end
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs({ a, b, c, d }) do
    if tonumber(x) > 255 then return false end
  end
  return true
end

local function nic_fqdd(port) return string.format("NIC.Integrated.1-%d-1", port) end

-- BIOS attribute registry (the subset sbot and its tests use). type: enum,
-- string, integer; ro = read-only; dep = {attr, value}: read-only unless
-- that attribute is (or becomes in the same PATCH) the value.
local function bios_registry()
  local nics = {}
  for p = 1, NIC_PORTS do nics[#nics + 1] = nic_fqdd(p) end
  local endis = { "Enabled", "Disabled" }
  local iscsi = { "IscsiDev1EnDis", "Enabled" }
  local con1 = { "IscsiDev1Con1EnDis", "Enabled" }
  return {
    SystemModelName = { type = "string", ro = true },
    SystemServiceTag = { type = "string", ro = true },
    SystemBiosVersion = { type = "string", ro = true },
    BootMode = { type = "enum", values = { "Bios", "Uefi" }, default = "Uefi" },
    BootSeq = { type = "string", max = 1024, default = "HardDisk.List.1-1,NIC.Integrated.1-1-1" },
    UefiBootSeq = { type = "string", max = 1024,
      default = "NIC.PxeDevice.1-1,Disk.SDInternal.1-1,RAID.Integrated.1-1" },
    OneTimeBootMode = { type = "enum", default = "Disabled", values = { "Disabled",
      "OneTimeBootSeq", "OneTimeHddSeq", "OneTimeUefiBootSeq", "OneTimeCustomBootSeqStr",
      "OneTimeCustomHddSeqStr", "OneTimeCustomUefiBootSeqStr" } },
    ProcVirtualization = { type = "enum", values = endis, default = "Enabled" },
    IscsiInitiatorName = { type = "string", max = 223, default = "" },
    IscsiDev1EnDis = { type = "enum", values = endis, default = "Disabled" },
    IscsiDev1Con1EnDis = { type = "enum", values = endis, default = "Disabled", dep = iscsi },
    IscsiDev1Con1Interface = { type = "enum", values = nics, default = nics[1], dep = con1 },
    IscsiDev1Con1Protocol = { type = "enum", values = { "IPv4", "IPv6" }, default = "IPv4", dep = con1 },
    IscsiDev1Con1VlanEnDis = { type = "enum", values = endis, default = "Disabled", dep = con1 },
    IscsiDev1Con1DhcpEnDis = { type = "enum", values = endis, default = "Enabled", dep = con1 },
    IscsiDev1Con1Ip = { type = "ip", default = "0.0.0.0", dep = con1 },
    IscsiDev1Con1Mask = { type = "ip", default = "0.0.0.0", dep = con1 },
    IscsiDev1Con1Gateway = { type = "ip", default = "0.0.0.0", dep = con1 },
    IscsiDev1Con1TgtDhcpEnDis = { type = "enum", values = endis, default = "Enabled", dep = con1 },
    IscsiDev1Con1TargetName = { type = "string", max = 223, default = "", dep = con1 },
    IscsiDev1Con1TargetIp = { type = "ip", default = "0.0.0.0", dep = con1 },
    IscsiDev1Con1Port = { type = "integer", min = 1, max = 65535, default = 3260, dep = con1 },
    IscsiDev1Con1Lun = { type = "string", pattern = "^%d+$", max = 20, default = "0", dep = con1 },
    IscsiDev1Con1Auth = { type = "enum", values = { "None", "Chap" }, default = "None", dep = con1 },
    IscsiDev1Con1ChapType = { type = "enum", values = { "OneWay", "Mutual" }, default = "OneWay", dep = con1 },
    IscsiDev1Con1ChapName = { type = "string", max = 128, default = "", dep = con1 },
    IscsiDev1Con1ChapSecret = { type = "string", max = 16, default = "", secret = true, dep = con1 },
    IscsiDev1Con1Retry = { type = "integer", min = 0, max = 60, default = 3, dep = con1 },
    IscsiDev1Con1Timeout = { type = "integer", min = 100, max = 65535, default = 10000, dep = con1 },
    PxeDev1EnDis = { type = "enum", values = endis, default = "Enabled" },
    PxeDev1Interface = { type = "enum", values = nics, default = nics[1] },
    PxeDev1Protocol = { type = "enum", values = { "IPv4", "IPv6" }, default = "IPv4" },
    PxeDev1VlanEnDis = { type = "enum", values = endis, default = "Disabled" },
  }
end

-- DMTF iSCSIBoot properties of a NetworkDeviceFunction. dep as above, on the
-- iSCSIBoot object itself (R630: the static fields are read-only while the
-- DHCP switches are on; set the switch in the same or an earlier PATCH).
local ISCSI_BOOT = {
  IPAddressType = { type = "enum", values = { "IPv4", "IPv6" }, default = "IPv4" },
  InitiatorName = { type = "string", max = 223, default = "" },
  IPMaskDNSViaDHCP = { type = "boolean", default = true },
  InitiatorIPAddress = { type = "ip", default = "0.0.0.0", dep = { "IPMaskDNSViaDHCP", false } },
  InitiatorNetmask = { type = "ip", default = "0.0.0.0", dep = { "IPMaskDNSViaDHCP", false } },
  InitiatorDefaultGateway = { type = "ip", default = "0.0.0.0", dep = { "IPMaskDNSViaDHCP", false } },
  PrimaryDNS = { type = "ip", default = "0.0.0.0", dep = { "IPMaskDNSViaDHCP", false } },
  TargetInfoViaDHCP = { type = "boolean", default = true },
  PrimaryTargetName = { type = "string", max = 223, default = "", dep = { "TargetInfoViaDHCP", false } },
  PrimaryTargetIPAddress = { type = "ip", default = "0.0.0.0", dep = { "TargetInfoViaDHCP", false } },
  PrimaryTargetTCPPort = { type = "integer", min = 1, max = 65535, default = 3260, dep = { "TargetInfoViaDHCP", false } },
  PrimaryLUN = { type = "integer", min = 0, max = 255, default = 0, dep = { "TargetInfoViaDHCP", false } },
  PrimaryVLANEnable = { type = "boolean", default = false },
  PrimaryVLANId = { type = "integer", min = 0, max = 4094, default = 0 },
  SecondaryTargetName = { type = "string", max = 223, default = "", dep = { "TargetInfoViaDHCP", false } },
  SecondaryTargetIPAddress = { type = "ip", default = "0.0.0.0", dep = { "TargetInfoViaDHCP", false } },
  SecondaryTargetTCPPort = { type = "integer", min = 1, max = 65535, default = 3260, dep = { "TargetInfoViaDHCP", false } },
  SecondaryLUN = { type = "integer", min = 0, max = 255, default = 0, dep = { "TargetInfoViaDHCP", false } },
  AuthenticationMethod = { type = "enum", values = { "None", "CHAP", "MutualCHAP" }, default = "None" },
  CHAPUsername = { type = "string", max = 128, default = "" },
  CHAPSecret = { type = "string", max = 16, default = "", secret = true },
  MutualCHAPUsername = { type = "string", max = 128, default = "" },
  MutualCHAPSecret = { type = "string", max = 16, default = "", secret = true },
}

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

--- Check one value against a registry entry; returns nil or an error
-- (message id, message).
local function check_value(name, spec, v)
  local function bad(kind)
    return "PropertyValueTypeError", string.format(
      "The value %s for the property %s is of a different type than the property can accept (%s).",
      json.encode(v), name, kind)
  end
  if spec.type == "enum" then
    if type(v) ~= "string" then return bad("string") end
    if not set_of(spec.values)[v] then
      return "PropertyValueNotInList", string.format(
        "The value %s for the property %s is not in the list of acceptable values.", v, name)
    end
  elseif spec.type == "string" then
    if type(v) ~= "string" then return bad("string") end
    if spec.max and #v > spec.max then
      return "PropertyValueFormatError", string.format(
        "The value for the property %s is longer than %d characters.", name, spec.max)
    end
    if spec.pattern and not v:match(spec.pattern) then
      return "PropertyValueFormatError", string.format(
        "The value %s for the property %s is of a different format than the property can accept.", v, name)
    end
  elseif spec.type == "ip" then
    if type(v) ~= "string" then return bad("string") end
    if not is_ipv4(v) then
      return "PropertyValueFormatError", string.format(
        "The value %s for the property %s is not a valid IPv4 address.", v, name)
    end
  elseif spec.type == "integer" then
    if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
      return bad("integer")
    end
    if (spec.min and v < spec.min) or (spec.max and v > spec.max) then
      return "PropertyValueOutOfRange", string.format(
        "The value %s for the property %s is not in the range %d to %d.", tostring(v), name, spec.min, spec.max)
    end
  elseif spec.type == "boolean" then
    if type(v) ~= "boolean" then return bad("boolean") end
  end
  return nil
end

--- Validate a PATCH of attributes against a registry. effective(name) gives
-- the value an attribute will have (current, pending, this patch).
local function validate_attrs(registry, patch, effective)
  for name, v in pairs(patch) do
    local spec = registry[name]
    if not spec then
      return "PropertyUnknown", string.format(
        "The property %s is not in the list of valid properties for the resource.", name), name
    end
    if spec.ro then
      return "PropertyNotWritable", string.format(
        "The property %s is a read only property and cannot be assigned a value.", name), name
    end
    if spec.dep and effective(spec.dep[1]) ~= spec.dep[2] then
      return "SYS409", string.format(
        "Unable to modify the attribute %s because it is read-only while %s is %s; set %s to %s first.",
        name, spec.dep[1], tostring(effective(spec.dep[1])), spec.dep[1], tostring(spec.dep[2])), name
    end
    local id, msg = check_value(name, spec, v)
    if id then return id, msg, name end
  end
  return nil
end

local function defaults(registry)
  local t = {}
  for k, spec in pairs(registry) do
    if spec.default ~= nil then t[k] = spec.default end
  end
  return t
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S+00:00", math.floor(t))
end

--- Create an iDRAC device.
-- opts: index (1..), flavour (8|9), user, password, clock (function ->
-- seconds), scale (duration multiplier), faults (injector, optional),
-- on_boot (function(dev, boot), optional), durations {job, reboot, not_ready,
-- shutdown} in unscaled seconds, session_timeout (seconds).
function M.new(opts)
  opts = opts or {}
  local flavour = tonumber(opts.flavour or 8)
  local F = FLAVOURS[flavour]
  if not F then error("lab idrac: flavour must be 8 or 9, got " .. tostring(opts.flavour), 2) end
  local index = opts.index or 1
  local clock = opts.clock or os.time
  local scale = opts.scale or 1
  local dur = { job = 0.5, reboot = 1.0, not_ready = 1.0, shutdown = 0.5 }
  for k, v in pairs(opts.durations or {}) do dur[k] = v end
  for k, v in pairs(dur) do dur[k] = v * scale end

  local tag = string.format("LAB%04d", index)
  local bios_reg = bios_registry()
  local bios_current = defaults(bios_reg)
  bios_current.SystemModelName = F.system_model
  bios_current.SystemServiceTag = tag
  bios_current.SystemBiosVersion = F.bios_version
  bios_current.IscsiInitiatorName = string.format("iqn.1988-11.com.dell:%s", tag:lower())

  local nics = {}
  for p = 1, NIC_PORTS do
    nics[p] = {
      fqdd = nic_fqdd(p),
      mac = string.format("24:6E:96:%02X:%02X:%02X", index // 256, index % 256, 0x10 + p),
      iscsi = defaults(ISCSI_BOOT),
      pending = {},
      legacy_boot_proto = p == 1 and "PXE" or "NONE",
    }
  end

  local dev = {
    name = "idrac-" .. index,
    kind = "idrac",
    flavour = flavour,
    user = opts.user or "root",
    password = opts.password or "calvin",
    faults = opts.faults,
    on_boot = opts.on_boot,
  }
  local st = {
    power = "On",
    boot = { target = "None", enabled = "Disabled", mode = "UEFI", uefi_target = "",
      order = { "Boot0001", "Boot0002", "Boot0003", "Boot0004" } },
    boot_options = {
      Boot0001 = { name = "Integrated NIC 1 Port 1 Partition 1", ref = "NIC.PxeDevice.1-1",
        path = "VenHw(3A191845-5F86-4E78-8FCE-C4CFF59F9DAA)" },
      Boot0002 = { name = "Internal SD: Internal SD Card", ref = "Disk.SDInternal.1-1",
        path = "PciRoot(0x0)/Pci(0x14,0x0)/USB(0xD,0x0)" },
      Boot0003 = { name = "Integrated RAID Controller 1: Windows Boot Manager", ref = "RAID.Integrated.1-1",
        path = "HD(1,GPT,0C3A3B46-7EE8-4E21-A0C2-17F9F1D1D2E7,0x800,0x82000)" },
      Boot0004 = { name = "iSCSI Device 1 Connection 1", ref = "iSCSI.Dev1.Con1",
        path = "PciRoot(0x0)/Pci(0x2,0x2)/Pci(0x0,0x0)/MAC(246E96000011,0x1)/iSCSI" },
    },
    bios = { current = bios_current, pending = {} },
    nics = nics,
    sessions = {},
    next_session = 1,
    jobs = {},
    job_order = {},
    next_job = 0,
    vmedia = { inserted = false, image = json.null, connected_via = "NotConnected" },
    idrac_attrs = { ["ServerBoot.1#BootOnce"] = "Disabled", ["ServerBoot.1#FirstBootDevice"] = "Normal" },
    not_ready_until = 0,
    events = {},
    boots = {},
    resets = 0,
    counts = { requests = 0, by_status = {} },
  }
  dev.st = st

  -- ---- time ----------------------------------------------------------------

  local function now() return clock() end

  local function at(t, what, fn)
    st.events[#st.events + 1] = { at = t, what = what, fn = fn }
  end

  --- Run every event that is due, in time order.
  function dev.advance()
    local t = now()
    while true do
      local best
      for i, e in ipairs(st.events) do
        if e.at <= t and (not best or e.at < st.events[best].at) then best = i end
      end
      if not best then break end
      local e = table.remove(st.events, best)
      e.fn(e.at)
    end
  end

  -- ---- responses -------------------------------------------------------------

  local function reply(status, body, headers)
    headers = headers or {}
    headers["Content-Type"] = "application/json;odata.metadata=minimal;charset=utf-8"
    headers["OData-Version"] = "4.0"
    headers["Server"] = "Appweb/4.5.4"
    headers["Cache-Control"] = "no-cache"
    return status, headers, body ~= nil and json.encode(body) or ""
  end

  --- A Dell-style Redfish error body. id: a Dell id (RAC0218) or a Base
  -- registry name (PropertyUnknown), prefixed with the flavour's registry.
  local function fail(status, id, message, o)
    o = o or {}
    local full = id:match("^%u%u%u%d") and (F.msg .. id) or (F.base .. id)
    local args = o.args or {}
    local props = o.props or {}
    local info = {
      Message = message,
      MessageArgs = arr(args),
      ["MessageArgs@odata.count"] = #args,
      MessageId = full,
      RelatedProperties = arr(props),
      ["RelatedProperties@odata.count"] = #props,
      Resolution = o.resolution or "Retry the operation with correct values.",
      Severity = o.severity or "Warning",
    }
    return reply(status, { error = {
      ["@Message.ExtendedInfo"] = { info },
      code = F.base .. "GeneralError",
      message = "A general error has occurred. See ExtendedInfo for more information",
    } }, o.headers)
  end
  dev.fail = fail

  local function success(status, headers)
    return reply(status or 200, { ["@Message.ExtendedInfo"] = { {
      Message = "Successfully Completed Request", MessageArgs = arr(),
      ["MessageArgs@odata.count"] = 0, MessageId = F.base .. "Success",
      RelatedProperties = arr(), ["RelatedProperties@odata.count"] = 0,
      Resolution = "None", Severity = "OK" } } }, headers)
  end

  -- ---- jobs and power --------------------------------------------------------

  local function new_job(kind, target, changes)
    st.next_job = st.next_job + 1
    local id = string.format("JID_%012d", 700000000000 + index * 100000 + st.next_job)
    local names = { bios = "Configure: BIOS", nic = "Configure: " .. (target and target:match("NetworkDeviceFunctions/([^/]+)") or "NIC"),
      scp = "Import Configuration" }
    local types = { bios = "BIOSConfiguration", nic = "NICConfiguration", scp = "ImportConfiguration" }
    local job = { id = id, kind = kind, name = names[kind], type = types[kind], target = target,
      state = "Scheduled", percent = 0, message = "Task successfully scheduled.",
      message_id = "JCP001", created = now(), changes = changes }
    st.jobs[id] = job
    st.job_order[#st.job_order + 1] = id
    return job
  end

  local function active_job_for(target)
    for _, id in ipairs(st.job_order) do
      local j = st.jobs[id]
      if j and j.target == target and (j.state == "Scheduled" or j.state == "Running") then return j end
    end
  end

  local bios_settings_uri = SYS .. "/Bios/Settings"
  local function nic_base()
    return (flavour == 9 and CHASSIS or SYS) .. "/NetworkAdapters/NIC.Integrated.1"
  end
  local function nic_fn_uri(p)
    return nic_base() .. "/NetworkDeviceFunctions/" .. nic_fqdd(p)
  end

  local function apply_changes(job)
    if job.kind == "bios" then
      for k, v in pairs(st.bios.pending) do st.bios.current[k] = v end
      st.bios.pending = {}
    elseif job.kind == "nic" then
      local nic = nics[job.port]
      for k, v in pairs(nic.pending) do nic.iscsi[k] = v end
      nic.pending = {}
    elseif job.kind == "scp" then
      local c = job.changes
      for k, v in pairs(c.idrac) do st.idrac_attrs[k] = v end
      for k, v in pairs(c.bios) do st.bios.current[k] = v end
      for p, attrs in pairs(c.nic) do
        for k, v in pairs(attrs) do
          if k == "LegacyBootProto" then nics[p].legacy_boot_proto = v else nics[p].iscsi[k] = v end
        end
      end
    end
  end

  local function finish_job(job, t)
    if job.state ~= "Running" then return end
    if job.error then
      job.state, job.message, job.message_id = "Failed", job.error, "SYS067"
    elseif dev.faults and dev.faults.chance("jobfail") then
      job.state, job.message, job.message_id = "Failed", "Job failed (injected fault).", "SYS067"
      if job.kind == "bios" then st.bios.pending = {} end
      if job.kind == "nic" then nics[job.port].pending = {} end
    else
      apply_changes(job)
      job.state, job.message, job.message_id = "Completed", "Job completed successfully.", "PR19"
    end
    job.percent = 100
    job.ended = t
  end

  local function run_job(job, t)
    job.state, job.percent, job.started = "Running", 10, t
    job.message = "Task successfully scheduled."
    at(t + dur.job, "job " .. job.id, function(t2) finish_job(job, t2) end)
  end

  --- What the server boots from, as the firmware would decide it.
  local function boot_decision()
    local b = { }
    local once = st.idrac_attrs["ServerBoot.1#BootOnce"] == "Enabled"
    if once and st.idrac_attrs["ServerBoot.1#FirstBootDevice"] ~= "Normal" then
      local d = st.idrac_attrs["ServerBoot.1#FirstBootDevice"]
      st.idrac_attrs["ServerBoot.1#BootOnce"] = "Disabled"
      st.idrac_attrs["ServerBoot.1#FirstBootDevice"] = "Normal"
      if d == "VCD-DVD" then
        b.source = "VirtualCD"
        b.image = st.vmedia.inserted and st.vmedia.image or nil
        b.ok = st.vmedia.inserted
        if not b.ok then b.error = "no virtual media inserted" end
        return b
      end
      b.source = d
      return b
    end
    if st.boot.enabled ~= "Disabled" and st.boot.target ~= "None" then
      b.source = st.boot.target
      if st.boot.target == "UefiTarget" then b.uefi_target = st.boot.uefi_target end
      if st.boot.target == "Cd" then
        b.note = "physical optical drive (virtual CD needs SCP FirstBootDevice=VCD-DVD on iDRAC 8)"
      end
      if st.boot.enabled == "Once" then
        st.boot.enabled = "Disabled"
        st.boot.target = "None"
      end
      return b
    end
    local a = st.bios.current
    if a.BootMode == "Uefi" and a.IscsiDev1EnDis == "Enabled" and a.IscsiDev1Con1EnDis == "Enabled" then
      b.source = "iSCSI"
      b.via = "bios"
      b.target = { name = a.IscsiDev1Con1TargetName, ip = a.IscsiDev1Con1TargetIp,
        port = a.IscsiDev1Con1Port, lun = tonumber(a.IscsiDev1Con1Lun) or 0,
        initiator = a.IscsiInitiatorName, interface = a.IscsiDev1Con1Interface }
      return b
    end
    for p, nic in ipairs(nics) do
      local i = nic.iscsi
      if nic.legacy_boot_proto == "iSCSI" or (i.PrimaryTargetName ~= "" and not i.TargetInfoViaDHCP) then
        b.source = "iSCSI"
        b.via = "nic"
        b.target = { name = i.PrimaryTargetName, ip = i.PrimaryTargetIPAddress,
          port = i.PrimaryTargetTCPPort, lun = i.PrimaryLUN, initiator = i.InitiatorName,
          interface = nic_fqdd(p) }
        return b
      end
    end
    b.source = "Hdd"
    return b
  end

  local function boot(t)
    if st.power ~= "On" then return end
    local b = boot_decision()
    b.time = t
    b.n = #st.boots + 1
    st.boots[#st.boots + 1] = b
    if dev.on_boot then
      local ok, e = pcall(dev.on_boot, dev, b)
      if not ok then b.hook_error = tostring(e) end
    end
  end

  --- The host comes up at time t: iDRAC busy for a while, jobs run, it boots.
  local function power_on(t)
    st.power = "On"
    st.resets = st.resets + 1
    st.not_ready_until = t + dur.not_ready
    for _, id in ipairs(st.job_order) do
      local j = st.jobs[id]
      if j.state == "Scheduled" then run_job(j, t) end
    end
    at(t + dur.reboot, "boot", boot)
  end

  local function power_off(t)
    st.power = "Off"
    st.off_at = t
  end

  -- ---- request context -------------------------------------------------------

  local function decode_body(req)
    if req.body == "" then return nil, "empty" end
    local v = json.decode(req.body)
    if type(v) ~= "table" then return nil, "bad" end
    return v
  end

  local function malformed()
    return fail(400, "MalformedJSON", "The request body submitted was malformed JSON and could not be parsed by the receiving service.")
  end

  local function session_by_token(tok)
    for id, s in pairs(st.sessions) do
      if s.token == tok then
        if now() - s.last > (opts.session_timeout or 1800) then
          st.sessions[id] = nil
          return nil
        end
        s.last = now()
        return s
      end
    end
  end

  local function authenticate(req)
    local tok = req.headers["x-auth-token"]
    if tok then return session_by_token(tok) end
    local auth = req.headers["authorization"]
    if auth then
      local b = auth:match("^[Bb]asic%s+(%S+)")
      if b then
        local user, pass = b64decode(b):match("^([^:]*):(.*)$")
        if user == dev.user and pass == dev.password then return { user = user, basic = true } end
      end
    end
    return nil
  end

  local function count_sessions()
    local n = 0
    local t = now()
    for id, s in pairs(st.sessions) do
      if t - s.last > (opts.session_timeout or 1800) then st.sessions[id] = nil else n = n + 1 end
    end
    return n
  end

  local function random_token()
    local f = io.open("/dev/urandom", "rb")
    local raw = f and f:read(16) or tostring(now()) .. tostring({})
    if f then f:close() end
    return (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end))
  end

  -- ---- resources (GET bodies) ------------------------------------------------

  local R = {} -- path -> {get=, patch=, post=, delete=, public=}

  local function resource(path, def) R[path] = def end

  local function odata(path, typ, extra)
    local t = { ["@odata.id"] = path, ["@odata.type"] = typ,
      ["@odata.context"] = "/redfish/v1/$metadata#" .. (typ:match("^#([^%.]+)") or "") .. "." .. (typ:match("%.([%w_]+)$") or "") }
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end

  local function collection(path, typ, name, members)
    local m = {}
    for _, p in ipairs(members) do m[#m + 1] = link(p) end
    return odata(path, typ, { Name = name, Members = arr(m), ["Members@odata.count"] = #m })
  end

  resource("/redfish/v1", { public = true, get = function()
    return odata("/redfish/v1", "#ServiceRoot.v1_3_0.ServiceRoot", {
      Id = "RootService", Name = "Root Service", RedfishVersion = F.redfish,
      Product = "Integrated Dell Remote Access Controller", Vendor = "Dell",
      Systems = link("/redfish/v1/Systems"), Managers = link("/redfish/v1/Managers"),
      Chassis = link("/redfish/v1/Chassis"), SessionService = link("/redfish/v1/SessionService"),
      AccountService = link("/redfish/v1/Managers/iDRAC.Embedded.1/AccountService"),
      TaskService = link("/redfish/v1/TaskService"),
      Links = { Sessions = link(F.sessions) },
      Oem = { Dell = { ["@odata.type"] = "#DellServiceRoot.v1_0_0.ServiceRootSummary",
        ServiceTag = tag, ManagerMACAddress = string.format("24:6E:96:%02X:%02X:01", index // 256, index % 256),
        IsBranded = 0 } },
      ProtocolFeaturesSupported = { ExpandQuery = { ExpandAll = true, Levels = true, Links = true,
        NoLinks = true, MaxLevels = 1 }, SelectQuery = true, FilterQuery = false },
    })
  end })

  resource("/redfish/v1/SessionService", { get = function()
    return odata("/redfish/v1/SessionService", "#SessionService.v1_1_3.SessionService", {
      Id = "SessionService", Name = "Session Service", ServiceEnabled = true,
      SessionTimeout = opts.session_timeout or 1800, Sessions = link(F.sessions) })
  end })

  resource("/redfish/v1/Systems", { get = function()
    return collection("/redfish/v1/Systems", "#ComputerSystemCollection.ComputerSystemCollection",
      "Computer System Collection", { SYS })
  end })

  resource(SYS, {
    get = function()
      local allow = arr(copy(M.BOOT_TARGETS))
      return odata(SYS, "#ComputerSystem.v1_5_0.ComputerSystem", {
        Id = "System.Embedded.1", Name = "System", SystemType = "Physical",
        Manufacturer = "Dell Inc.", Model = F.system_model, SKU = tag, SerialNumber = "CN7016" .. tag,
        PartNumber = "0599V5A00", AssetTag = "", HostName = "", IndicatorLED = "Off",
        PowerState = st.power, BiosVersion = st.bios.current.SystemBiosVersion,
        UUID = string.format("4c4c4544-00%02x-4d10-8053-b4c04f4c%04d", index % 256, index % 10000),
        Status = { State = "Enabled", Health = "OK", HealthRollup = "OK" },
        ProcessorSummary = { Count = 2, Model = "Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz" },
        MemorySummary = { TotalSystemMemoryGiB = 128 },
        Boot = {
          BootSourceOverrideTarget = st.boot.target,
          ["BootSourceOverrideTarget@Redfish.AllowableValues"] = allow,
          BootSourceOverrideEnabled = st.boot.enabled,
          BootSourceOverrideMode = st.boot.mode,
          UefiTargetBootSourceOverride = st.boot.uefi_target,
          BootOrder = arr(copy(st.boot.order)),
          ["BootOrder@odata.count"] = #st.boot.order,
          BootOptions = link(SYS .. "/BootOptions"),
        },
        Bios = link(SYS .. "/Bios"),
        EthernetInterfaces = link(SYS .. "/EthernetInterfaces"),
        NetworkInterfaces = link(SYS .. "/NetworkInterfaces"),
        Storage = link(SYS .. "/Storage"),
        Links = { Chassis = arr({ link(CHASSIS) }), ManagedBy = arr({ link(MGR) }) },
        Actions = { ["#ComputerSystem.Reset"] = { target = SYS .. "/Actions/ComputerSystem.Reset",
          ["ResetType@Redfish.AllowableValues"] = arr(copy(M.RESET_TYPES)) } },
      })
    end,
    patch = function(body)
      local b = body.Boot
      for k in pairs(body) do
        if k ~= "Boot" then
          return fail(400, "PropertyNotWritable", string.format(
            "The property %s is a read only property and cannot be assigned a value.", k), { props = { "#/" .. k } })
        end
      end
      if type(b) ~= "table" then
        return fail(400, "PropertyValueTypeError", "The value for the property Boot is of a different type than the property can accept.", { props = { "#/Boot" } })
      end
      local new = copy(st.boot)
      for k, v in pairs(b) do
        if k == "BootSourceOverrideTarget" then
          if not set_of(M.BOOT_TARGETS)[v] then
            return fail(400, "PropertyValueNotInList", string.format(
              "The value %s for the property BootSourceOverrideTarget is not in the list of acceptable values.", tostring(v)),
              { args = { tostring(v), "BootSourceOverrideTarget" }, props = { "#/Boot/BootSourceOverrideTarget" } })
          end
          new.target = v
        elseif k == "BootSourceOverrideEnabled" then
          if not set_of(M.OVERRIDE_ENABLED)[v] then
            return fail(400, "PropertyValueNotInList", string.format(
              "The value %s for the property BootSourceOverrideEnabled is not in the list of acceptable values.", tostring(v)),
              { props = { "#/Boot/BootSourceOverrideEnabled" } })
          end
          new.enabled = v
        elseif k == "BootSourceOverrideMode" then
          if v ~= "UEFI" and v ~= "Legacy" then
            return fail(400, "PropertyValueNotInList", "The value for BootSourceOverrideMode is not in the list of acceptable values.",
              { props = { "#/Boot/BootSourceOverrideMode" } })
          end
          new.mode = v
        elseif k == "UefiTargetBootSourceOverride" then
          if type(v) ~= "string" then
            return fail(400, "PropertyValueTypeError", "UefiTargetBootSourceOverride must be a string.", { props = { "#/Boot/UefiTargetBootSourceOverride" } })
          end
          new.uefi_target = v
        elseif k == "BootOrder" then
          if type(v) ~= "table" or #v ~= #st.boot.order then
            return fail(400, "PropertyValueFormatError", "BootOrder must list every boot option exactly once.", { props = { "#/Boot/BootOrder" } })
          end
          local seen = {}
          for _, id in ipairs(v) do
            if not st.boot_options[id] or seen[id] then
              return fail(400, "PropertyValueNotInList", string.format(
                "The value %s for the property BootOrder is not in the list of acceptable values.", tostring(id)), { props = { "#/Boot/BootOrder" } })
            end
            seen[id] = true
          end
          new.order = copy(v)
        else
          return fail(400, "PropertyUnknown", string.format(
            "The property %s is not in the list of valid properties for the resource.", k), { props = { "#/Boot/" .. k } })
        end
      end
      if new.target == "UefiTarget" and new.enabled ~= "Disabled" and new.uefi_target == "" then
        return fail(400, "PropertyMissing", "UefiTargetBootSourceOverride is required when BootSourceOverrideTarget is UefiTarget.",
          { props = { "#/Boot/UefiTargetBootSourceOverride" } })
      end
      st.boot = new
      return success(200)
    end,
  })

  resource(SYS .. "/BootOptions", { get = function()
    local ids = {}
    for id in pairs(st.boot_options) do ids[#ids + 1] = SYS .. "/BootOptions/" .. id end
    table.sort(ids)
    return collection(SYS .. "/BootOptions", "#BootOptionCollection.BootOptionCollection", "Boot Options Collection", ids)
  end })

  resource(SYS .. "/Actions/ComputerSystem.Reset", { post = function(body)
    local rt = body.ResetType
    if rt == nil then
      return fail(400, "PropertyMissing", "The property ResetType is a required property and must be included in the request.",
        { args = { "ResetType" }, props = { "#/ResetType" } })
    end
    if not set_of(M.RESET_TYPES)[rt] then
      return fail(400, "PropertyValueNotInList", string.format(
        "Unable to complete the operation because the value %s entered for the property ResetType is not in the list of acceptable values.",
        tostring(rt)), { args = { tostring(rt), "ResetType" }, props = { "#/ResetType" } })
    end
    local t = now()
    if rt == "On" then
      if st.power == "On" then
        return fail(409, "GeneralError", "The server is already powered on.", { severity = "Warning" })
      end
      power_on(t)
    elseif rt == "ForceOff" then
      if st.power == "Off" then
        return fail(409, "GeneralError", "The server is already powered off.")
      end
      power_off(t)
    elseif rt == "GracefulShutdown" then
      if st.power == "Off" then
        return fail(409, "GeneralError", "The server is already powered off.")
      end
      at(t + dur.shutdown, "graceful shutdown", power_off)
    elseif rt == "ForceRestart" then
      if st.power == "Off" then
        return fail(409, "GeneralError", "The server is powered off; use On.")
      end
      power_on(t)
    elseif rt == "PushPowerButton" then
      if st.power == "On" then at(t + dur.shutdown, "power button", power_off) else power_on(t) end
    end -- Nmi: nothing visible
    return reply(204, nil)
  end })

  -- Bios and Bios/Settings
  local function bios_attrs(t)
    local out = {}
    for k, v in pairs(t) do
      out[k] = (bios_reg[k] and bios_reg[k].secret) and json.null or v
    end
    return out
  end

  resource(SYS .. "/Bios", { get = function()
    return odata(SYS .. "/Bios", "#Bios.v1_0_1.Bios", {
      Id = "Bios", Name = "BIOS Configuration Current Settings",
      AttributeRegistry = "BiosAttributeRegistry.v1_0_0",
      Attributes = bios_attrs(st.bios.current),
      ["@Redfish.Settings"] = { ["@odata.type"] = "#Settings.v1_1_0.Settings",
        SettingsObject = link(bios_settings_uri),
        SupportedApplyTimes = flavour == 9 and arr({ "OnReset", "Immediate", "AtMaintenanceWindowStart", "InMaintenanceWindowOnReset" }) or nil },
      Actions = { ["#Bios.ResetBios"] = { target = SYS .. "/Bios/Actions/Bios.ResetBios" },
        ["#Bios.ChangePassword"] = { target = SYS .. "/Bios/Actions/Bios.ChangePassword" } },
    })
  end })

  --- PATCH of a settings object: validate, store pending, maybe schedule a
  -- job (iDRAC 9 @Redfish.SettingsApplyTime).
  local function settings_patch(body, what)
    local target = what.uri
    if active_job_for(target) then
      return fail(400, "SYS011", "Pending configuration values are already committed, unable to perform another set operation.",
        { resolution = "Delete the scheduled job, then retry the operation." })
    end
    local apply = body["@Redfish.SettingsApplyTime"]
    if apply ~= nil and flavour == 8 then
      return fail(400, "PropertyUnknown", "The property @Redfish.SettingsApplyTime is not in the list of valid properties for the resource.",
        { props = { "#/@Redfish.SettingsApplyTime" } })
    end
    local patch = body[what.key]
    for k in pairs(body) do
      if k ~= what.key and k ~= "@Redfish.SettingsApplyTime" then
        return fail(400, "PropertyUnknown", string.format(
          "The property %s is not in the list of valid properties for the resource.", k), { props = { "#/" .. k } })
      end
    end
    if type(patch) ~= "table" or json.is_array(patch) then
      return fail(400, "PropertyValueTypeError", "The value for the property " .. what.key .. " is of a different type than the property can accept.",
        { props = { "#/" .. what.key } })
    end
    local function effective(name)
      if patch[name] ~= nil then return patch[name] end
      if what.pending[name] ~= nil then return what.pending[name] end
      return what.current[name]
    end
    local id, msg, prop = validate_attrs(what.registry, patch, effective)
    if id then
      return fail(400, id, msg, { args = { prop }, props = { "#/" .. what.key .. "/" .. prop } })
    end
    local when
    if apply ~= nil then
      when = type(apply) == "table" and apply.ApplyTime
      if when ~= "OnReset" and when ~= "Immediate" then
        return fail(400, "PropertyValueNotInList", string.format(
          "The value %s for the property ApplyTime is not in the list of values the lab supports (OnReset, Immediate).", tostring(when)),
          { props = { "#/@Redfish.SettingsApplyTime/ApplyTime" } })
      end
    end
    for k, v in pairs(patch) do what.pending[k] = v end
    if when then
      local job = new_job(what.kind, target)
      job.port = what.port
      if when == "Immediate" then power_on(now()) end -- the iDRAC restarts the host
      return success(202, { Location = MGR .. "/Jobs/" .. job.id })
    end
    return success(200)
  end

  resource(bios_settings_uri, {
    get = function()
      local body = odata(bios_settings_uri, "#Bios.v1_0_1.Bios", {
        Id = "Settings", Name = "BIOS Configuration Pending Settings",
        AttributeRegistry = "BiosAttributeRegistry.v1_0_0",
        Attributes = bios_attrs(st.bios.pending),
      })
      if flavour == 9 then
        body["@Redfish.SettingsApplyTime"] = { ["@odata.type"] = "#Settings.v1_1_0.PreferredApplyTime",
          ApplyTime = "OnReset", ["ApplyTime@Redfish.AllowableValues"] = arr({ "OnReset", "Immediate" }) }
      end
      return body
    end,
    patch = function(body)
      return settings_patch(body, { uri = bios_settings_uri, key = "Attributes", kind = "bios",
        registry = bios_reg, pending = st.bios.pending, current = st.bios.current })
    end,
  })

  -- NICs: Systems/.../EthernetInterfaces, NetworkInterfaces -> NetworkAdapter
  -- -> NetworkDeviceFunctions (under Systems on iDRAC 8, Chassis on 9)
  resource(SYS .. "/EthernetInterfaces", { get = function()
    local m = {}
    for p = 1, NIC_PORTS do m[p] = SYS .. "/EthernetInterfaces/" .. nic_fqdd(p) end
    return collection(SYS .. "/EthernetInterfaces", "#EthernetInterfaceCollection.EthernetInterfaceCollection",
      "System Ethernet Interface Collection", m)
  end })
  resource(SYS .. "/NetworkInterfaces", { get = function()
    return collection(SYS .. "/NetworkInterfaces", "#NetworkInterfaceCollection.NetworkInterfaceCollection",
      "Network Interface Collection", { SYS .. "/NetworkInterfaces/NIC.Integrated.1" })
  end })
  resource(SYS .. "/NetworkInterfaces/NIC.Integrated.1", { get = function()
    return odata(SYS .. "/NetworkInterfaces/NIC.Integrated.1", "#NetworkInterface.v1_1_0.NetworkInterface", {
      Id = "NIC.Integrated.1", Name = "NetworkInterface",
      Status = { State = "Enabled", Health = "OK" },
      Links = { NetworkAdapter = link(nic_base()) },
      NetworkDeviceFunctions = link(nic_base() .. "/NetworkDeviceFunctions"),
      NetworkPorts = link(nic_base() .. "/NetworkPorts"),
    })
  end })
  local adapters = (flavour == 9 and CHASSIS or SYS) .. "/NetworkAdapters"
  resource(adapters, { get = function()
    return collection(adapters, "#NetworkAdapterCollection.NetworkAdapterCollection",
      "Network Adapter Collection", { nic_base() })
  end })
  resource(nic_base(), { get = function()
    return odata(nic_base(), "#NetworkAdapter.v1_1_0.NetworkAdapter", {
      Id = "NIC.Integrated.1", Name = "Network Adapter", Manufacturer = "Broadcom Corp",
      Model = "BRCM 4P 10G-2P 1G-BASE-T", Status = { State = "Enabled", Health = "OK" },
      NetworkDeviceFunctions = link(nic_base() .. "/NetworkDeviceFunctions"),
      NetworkPorts = link(nic_base() .. "/NetworkPorts"),
    })
  end })
  resource(nic_base() .. "/NetworkDeviceFunctions", { get = function()
    local m = {}
    for p = 1, NIC_PORTS do m[p] = nic_fn_uri(p) end
    return collection(nic_base() .. "/NetworkDeviceFunctions",
      "#NetworkDeviceFunctionCollection.NetworkDeviceFunctionCollection", "Network Device Function Collection", m)
  end })

  local function iscsi_view(t)
    local out = {}
    for k, v in pairs(t) do
      out[k] = (ISCSI_BOOT[k] and ISCSI_BOOT[k].secret) and json.null or v
    end
    return out
  end

  for p = 1, NIC_PORTS do
    local nic = nics[p]
    local uri = nic_fn_uri(p)
    resource(SYS .. "/EthernetInterfaces/" .. nic.fqdd, { get = function()
      return odata(SYS .. "/EthernetInterfaces/" .. nic.fqdd, "#EthernetInterface.v1_4_0.EthernetInterface", {
        Id = nic.fqdd, Name = "System Ethernet Interface", MACAddress = nic.mac,
        PermanentMACAddress = nic.mac, SpeedMbps = p <= 2 and 10240 or 1024,
        Status = { State = "Enabled", Health = "OK" }, LinkStatus = p == 1 and "LinkUp" or "LinkDown",
      })
    end })
    resource(uri, { get = function()
      return odata(uri, "#NetworkDeviceFunction.v1_2_0.NetworkDeviceFunction", {
        Id = nic.fqdd, Name = "NetworkDeviceFunction", NetDevFuncType = "Ethernet",
        NetDevFuncCapabilities = arr({ "Ethernet", "iSCSI" }),
        Ethernet = { MACAddress = nic.mac, PermanentMACAddress = nic.mac, MTUSize = 1500 },
        iSCSIBoot = iscsi_view(nic.iscsi),
        Status = { State = "Enabled", Health = "OK" },
        ["@Redfish.Settings"] = { ["@odata.type"] = "#Settings.v1_1_0.Settings",
          SettingsObject = link(uri .. "/Settings") },
        Oem = { Dell = { LegacyBootProto = nic.legacy_boot_proto } },
      })
    end })
    resource(uri .. "/Settings", {
      get = function()
        return odata(uri .. "/Settings", "#NetworkDeviceFunction.v1_2_0.NetworkDeviceFunction", {
          Id = nic.fqdd, Name = "NetworkDeviceFunction Pending Settings",
          iSCSIBoot = iscsi_view(nic.pending),
        })
      end,
      patch = function(body)
        return settings_patch(body, { uri = uri .. "/Settings", key = "iSCSIBoot", kind = "nic", port = p,
          registry = ISCSI_BOOT, pending = nic.pending, current = nic.iscsi })
      end,
    })
  end

  resource("/redfish/v1/Chassis", { get = function()
    return collection("/redfish/v1/Chassis", "#ChassisCollection.ChassisCollection", "Chassis Collection", { CHASSIS })
  end })
  resource(CHASSIS, { get = function()
    return odata(CHASSIS, "#Chassis.v1_6_0.Chassis", {
      Id = "System.Embedded.1", Name = "Computer System Chassis", ChassisType = "RackMount",
      Manufacturer = "Dell Inc.", Model = F.system_model, SKU = tag, PowerState = st.power,
      NetworkAdapters = flavour == 9 and link(adapters) or nil,
      Links = { ComputerSystems = arr({ link(SYS) }), ManagedBy = arr({ link(MGR) }) },
    })
  end })

  -- Managers, Jobs, VirtualMedia, SCP import
  resource("/redfish/v1/Managers", { get = function()
    return collection("/redfish/v1/Managers", "#ManagerCollection.ManagerCollection", "Manager", { MGR })
  end })
  resource(MGR, { get = function()
    return odata(MGR, "#Manager.v1_3_3.Manager", {
      Id = "iDRAC.Embedded.1", Name = "Manager", ManagerType = "BMC", Model = F.model,
      FirmwareVersion = F.firmware, Description = "BMC",
      UUID = string.format("3256444f-c0b2-3780-4c10-00%02x4c4c4544", index % 256),
      Status = { State = "Enabled", Health = "OK" },
      DateTime = iso(os.time()),
      VirtualMedia = link(MGR .. "/VirtualMedia"),
      Links = { ManagerForServers = arr({ link(SYS) }),
        Oem = { Dell = { Jobs = link(MGR .. "/Jobs") } } },
      Actions = {
        ["#Manager.Reset"] = { target = MGR .. "/Actions/Manager.Reset",
          ["ResetType@Redfish.AllowableValues"] = arr({ "GracefulRestart" }) },
        Oem = {
          ["OemManager.v1_0_0#OemManager.ImportSystemConfiguration"] = {
            target = MGR .. "/Actions/Oem/EID_674_Manager.ImportSystemConfiguration",
            ["ShutdownType@Redfish.AllowableValues"] = arr({ "Graceful", "Forced", "NoReboot" }),
            ["HostPowerState@Redfish.AllowableValues"] = arr({ "On", "Off" }),
            ["ShareParameters@Redfish.AllowableValues"] = arr({ "ALL", "IDRAC", "BIOS", "NIC", "RAID" }),
          },
        },
      },
    })
  end })

  local function job_body(j, path)
    return odata(path or (MGR .. "/Jobs/" .. j.id), "#DellJob.v1_0_0.DellJob", {
      Id = j.id, Name = j.name, JobType = j.type, JobState = j.state,
      Message = j.message, MessageId = j.message_id, MessageArgs = arr(),
      PercentComplete = j.percent, StartTime = "TIME_NOW",
      EndTime = j.ended and iso(os.time()) or "TIME_NA",
      CompletionTime = j.ended and iso(os.time()) or json.null,
      TargetSettingsURI = j.target or json.null,
    })
  end

  resource(MGR .. "/Jobs", {
    get = function()
      local m = {}
      for _, id in ipairs(st.job_order) do
        if st.jobs[id] then m[#m + 1] = MGR .. "/Jobs/" .. id end
      end
      return collection(MGR .. "/Jobs", "#DellJobCollection.DellJobCollection", "JobQueue", m)
    end,
    post = function(body)
      local target = body.TargetSettingsURI
      if type(target) ~= "string" then
        return fail(400, "PropertyMissing", "The property TargetSettingsURI is a required property and must be included in the request.",
          { args = { "TargetSettingsURI" }, props = { "#/TargetSettingsURI" } })
      end
      local kind, port, pending
      if target == bios_settings_uri then
        kind, pending = "bios", st.bios.pending
      else
        for p = 1, NIC_PORTS do
          if target == nic_fn_uri(p) .. "/Settings" then kind, port, pending = "nic", p, nics[p].pending end
        end
      end
      if not kind then
        return fail(400, "PropertyValueNotInList", string.format(
          "The value %s for the property TargetSettingsURI is not in the list of acceptable values.", target),
          { args = { target, "TargetSettingsURI" }, props = { "#/TargetSettingsURI" } })
      end
      if active_job_for(target) then
        return fail(400, "SYS011", "Pending configuration values are already committed, unable to perform another set operation.",
          { resolution = "Wait for the scheduled job to run, or delete it and retry." })
      end
      if next(pending) == nil then
        return fail(400, "SUP0518", "Unable to create a configuration job because no pending configuration changes exist for " .. target .. ".",
          { resolution = "Set pending values on the settings resource first, then create the job." })
      end
      for k in pairs(body) do
        if k ~= "TargetSettingsURI" and k ~= "ScheduledStartTime" and k ~= "EndTime" then
          return fail(400, "PropertyUnknown", string.format(
            "The property %s is not in the list of valid properties for the resource.", k), { props = { "#/" .. k } })
        end
      end
      local job = new_job(kind, target)
      job.port = port
      return success(200, { Location = MGR .. "/Jobs/" .. job.id })
    end,
  })

  resource("/redfish/v1/TaskService", { get = function()
    return odata("/redfish/v1/TaskService", "#TaskService.v1_1_0.TaskService", {
      Id = "TaskService", Name = "Task Service", ServiceEnabled = true,
      Tasks = link("/redfish/v1/TaskService/Tasks") })
  end })

  resource(MGR .. "/VirtualMedia", { get = function()
    return collection(MGR .. "/VirtualMedia", "#VirtualMediaCollection.VirtualMediaCollection",
      "Virtual Media Services", { MGR .. "/VirtualMedia/CD", MGR .. "/VirtualMedia/RemovableDisk" })
  end })
  local function vm_body(id, types)
    local v = st.vmedia
    local body = odata(MGR .. "/VirtualMedia/" .. id, "#VirtualMedia.v1_2_0.VirtualMedia", {
      Id = id, Name = "Virtual " .. id, MediaTypes = arr(types),
      Image = id == "CD" and v.image or json.null, ImageName = id == "CD" and v.image ~= json.null and v.image:match("[^/]*$") or json.null,
      Inserted = id == "CD" and v.inserted or false, WriteProtected = true,
      ConnectedVia = id == "CD" and v.connected_via or "NotConnected",
      Actions = {
        ["#VirtualMedia.InsertMedia"] = { target = MGR .. "/VirtualMedia/" .. id .. "/Actions/VirtualMedia.InsertMedia" },
        ["#VirtualMedia.EjectMedia"] = { target = MGR .. "/VirtualMedia/" .. id .. "/Actions/VirtualMedia.EjectMedia" },
      },
    })
    return body
  end
  resource(MGR .. "/VirtualMedia/CD", { get = function() return vm_body("CD", { "CD", "DVD" }) end })
  resource(MGR .. "/VirtualMedia/RemovableDisk", { get = function() return vm_body("RemovableDisk", { "USBStick" }) end })
  resource(MGR .. "/VirtualMedia/CD/Actions/VirtualMedia.InsertMedia", { post = function(body)
    local image = body.Image
    if type(image) ~= "string" or image == "" then
      return fail(400, "PropertyMissing", "The property Image is a required property and must be included in the request.",
        { args = { "Image" }, props = { "#/Image" } })
    end
    local scheme = image:match("^(%a+)://") or image:match("^//") and "cifs"
    scheme = scheme and scheme:lower()
    if not ({ http = true, https = true, nfs = true, cifs = true })[scheme or ""] then
      return fail(400, "RAC0904", "Unable to connect to the virtual media image: only http, https, nfs and cifs images are supported.",
        { args = { image }, props = { "#/Image" } })
    end
    if flavour == 8 and (scheme == "https" or scheme == "cifs") and (image:match("^%a+://[^/]*@") or body.UserName) then
      return fail(400, "RAC0904", "Unable to connect to the virtual media image: iDRAC 8 cannot use credentials with " .. scheme .. ".",
        { props = { "#/Image" } })
    end
    if st.vmedia.inserted then
      return fail(400, "RAC0904", "Unable to insert the virtual media because an image is already connected; eject it first.",
        { resolution = "Eject the media, then insert the new image." })
    end
    st.vmedia = { inserted = true, image = image, connected_via = "URI" }
    return reply(204, nil)
  end })
  resource(MGR .. "/VirtualMedia/CD/Actions/VirtualMedia.EjectMedia", { post = function()
    if not st.vmedia.inserted then
      return fail(400, "RAC0904", "Unable to eject the virtual media because no image is connected.")
    end
    st.vmedia = { inserted = false, image = json.null, connected_via = "NotConnected" }
    return reply(204, nil)
  end })

  --- Parse an SCP ImportBuffer into changes; returns changes, or nil and the
  -- first problem (the job then fails, like the real import).
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
          local spec = bios_reg[name]
          local v = value
          if spec and spec.type == "integer" then v = tonumber(value) end
          if not spec or spec.ro then problem = "unknown or read-only BIOS attribute " .. name
          elseif check_value(name, spec, v) then problem = "invalid value " .. value .. " for " .. name
          else changes.bios[name] = v end
        else
          local port = fqdd:match("^NIC%.Integrated%.1%-(%d)%-1$")
          port = tonumber(port)
          local spec = SCP_NIC[name]
          if not port or port > NIC_PORTS then problem = "unknown component " .. fqdd
          elseif not spec then problem = "unknown attribute " .. name .. " for " .. fqdd
          else
            changes.nic[port] = changes.nic[port] or {}
            if spec.enum then
              if not set_of(spec.enum)[value] then problem = "invalid value " .. value .. " for " .. name
              elseif name == "LegacyBootProto" then changes.nic[port].LegacyBootProto = value end
            elseif spec.bool then
              changes.nic[port][spec.prop] = value == "Enabled"
            elseif spec.int then
              local n = tonumber(value)
              if not n then problem = "invalid value " .. value .. " for " .. name else changes.nic[port][spec.prop] = math.tointeger(n) end
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
      return fail(400, "PropertyMissing", "The property ShareParameters/Target is a required property and must be included in the request.",
        { props = { "#/ShareParameters/Target" } })
    end
    if type(body.ImportBuffer) ~= "string" then
      return fail(400, "PropertyMissing", "The lab supports ImportBuffer only (no network share); ImportBuffer is missing.",
        { props = { "#/ImportBuffer" } })
    end
    local shutdown = body.ShutdownType or "Graceful"
    if not set_of({ "Graceful", "Forced", "NoReboot" })[shutdown] then
      return fail(400, "PropertyValueNotInList", "The value " .. tostring(shutdown) .. " for ShutdownType is not in the list of acceptable values.",
        { props = { "#/ShutdownType" } })
    end
    local changes, problem = parse_scp(body.ImportBuffer)
    local job = new_job("scp", nil, changes)
    job.error = problem and ("Unable to complete application of configuration profile values: " .. problem .. ".")
    local needs_reboot = next(changes.bios) ~= nil or next(changes.nic) ~= nil
    if not needs_reboot or problem then
      run_job(job, now())
    elseif shutdown ~= "NoReboot" then
      power_on(now()) -- the iDRAC restarts the host itself to apply
    end
    return reply(202, nil, { Location = "/redfish/v1/TaskService/Tasks/" .. job.id })
  end })

  -- ---- dynamic paths ---------------------------------------------------------

  local function session_body(id, s)
    return odata(F.sessions .. "/" .. id, "#Session.v1_0_2.Session", {
      Id = tostring(id), Name = "User Session", UserName = s.user, Description = "User Session" })
  end

  local function lookup(path)
    local r = R[path]
    if r then return r end
    local sid = path:match("^" .. F.sessions:gsub("%p", "%%%0") .. "/(%d+)$")
    if sid then
      local s = st.sessions[tonumber(sid)]
      if not s then return nil end
      return {
        get = function() return session_body(tonumber(sid), s) end,
        delete = function()
          st.sessions[tonumber(sid)] = nil
          return success(200)
        end,
      }
    end
    local jid = path:match("^" .. MGR:gsub("%p", "%%%0") .. "/Jobs/(JID_%d+)$")
    local tid = path:match("^/redfish/v1/TaskService/Tasks/(JID_%d+)$")
    local j = st.jobs[jid or tid or ""]
    if j and jid then
      return {
        get = function() return job_body(j) end,
        delete = function()
          if j.state == "Running" then
            return fail(400, "RAC0679", "Unable to delete the job because it is running.")
          end
          st.jobs[j.id] = nil
          return success(200)
        end,
      }
    end
    if j and tid then
      return { get = function()
        local b = odata(path, "#Task.v1_1_0.Task", {
          Id = j.id, Name = j.name,
          TaskState = ({ Scheduled = "Pending", Running = "Running", Completed = "Completed", Failed = "Exception" })[j.state],
          TaskStatus = j.state == "Failed" and "Critical" or "OK",
          PercentComplete = j.percent,
          Messages = arr({ { Message = j.message, MessageId = j.message_id } }),
          Oem = { Dell = job_body(j, MGR .. "/Jobs/" .. j.id) },
        })
        return b
      end }
    end
    local bo = path:match("^" .. SYS:gsub("%p", "%%%0") .. "/BootOptions/(Boot%x%x%x%x)$")
    if bo and st.boot_options[bo] then
      local o = st.boot_options[bo]
      return { get = function()
        return odata(path, "#BootOption.v1_0_0.BootOption", {
          Id = bo, Name = "Uefi Boot Option", BootOptionReference = bo, DisplayName = o.name,
          UefiDevicePath = o.path, BootOptionEnabled = true, Oem = { Dell = { FQDD = o.ref } } })
      end }
    end
    return nil
  end

  -- sessions collection and login
  local sessions_def = {
    public_post = true,
    get = function()
      local ids = {}
      for id in pairs(st.sessions) do ids[#ids + 1] = id end
      table.sort(ids)
      local m = {}
      for _, id in ipairs(ids) do m[#m + 1] = F.sessions .. "/" .. id end
      return collection(F.sessions, "#SessionCollection.SessionCollection", "Session Collection", m)
    end,
    post = function(body)
      local user, pass = body.UserName, body.Password
      if type(user) ~= "string" or type(pass) ~= "string" then
        return fail(400, "PropertyMissing", "The properties UserName and Password are required.",
          { props = { "#/UserName", "#/Password" } })
      end
      if user ~= dev.user or pass ~= dev.password then
        return fail(401, "ResourceAtUriUnauthorized",
          "While accessing the resource at " .. F.sessions .. ", the service received an authorization error: invalid user name or password.",
          { severity = "Critical" })
      end
      if count_sessions() >= M.MAX_SESSIONS then
        return fail(503, "RAC0218", "The maximum number of user sessions is reached.",
          { severity = "Critical", resolution = "Close one or more sessions and retry the operation." })
      end
      local id = st.next_session
      st.next_session = id + 1
      local s = { user = user, token = random_token(), created = now(), last = now() }
      st.sessions[id] = s
      local st_, h, b = reply(201, session_body(id, s))
      h["X-Auth-Token"] = s.token
      h["Location"] = F.sessions .. "/" .. id
      return st_, h, b
    end,
  }
  resource(F.sessions, sessions_def)
  if flavour == 8 then
    -- the DMTF path exists on iDRAC 8 but does not take logins
    resource("/redfish/v1/SessionService/Sessions", {
      get = function()
        return collection("/redfish/v1/SessionService/Sessions", "#SessionCollection.SessionCollection", "Session Collection", {})
      end,
      public_post = true,
      post_forbidden = true,
    })
  end

  -- ---- $select / $expand -------------------------------------------------------

  local function etag_of(body)
    return '"' .. fnv1a(json.encode(body)) .. '"'
  end

  local function get_body(path)
    local r = lookup(path)
    if r and r.get then return r.get() end
  end

  local function expand(body, mode)
    local function is_link(x)
      if type(x) ~= "table" or type(x["@odata.id"]) ~= "string" then return false end
      for k in pairs(x) do if k ~= "@odata.id" then return false end end
      return true
    end
    local function walk(v, in_links)
      for k, x in pairs(v) do
        if type(x) == "table" then
          local links = in_links or k == "Links"
          if is_link(x) and k ~= "@odata.id" then
            if mode == "*" or (mode == "." and not links) or (mode == "~" and links) then
              local sub = get_body(x["@odata.id"])
              if sub then v[k] = sub end
            end
          else
            walk(x, links)
          end
        end
      end
    end
    walk(body, false)
    return body
  end

  local function shape(req, body)
    local q = req.query
    local ex = q["$expand"]
    if ex then
      local mode, levels = ex:match("^([%.%*~])%(%$levels=(%d+)%)$")
      if not mode then mode = ex:match("^([%.%*~])$") end
      levels = tonumber(levels or 1)
      if not mode then
        return nil, { fail(400, "QueryParameterValueFormatError", string.format(
          "The value %s for the parameter $expand is of a different format than the parameter can accept.", ex)) }
      end
      if levels > 1 then
        return nil, { fail(400, "QueryParameterOutOfRange", string.format(
          "The value %d for the query parameter $levels is out of range (MaxLevels is 1).", levels)) }
      end
      body = expand(body, mode)
    end
    local sel = q["$select"]
    if sel then
      local keep = {}
      for name in sel:gmatch("[^,]+") do keep[name:match("^%s*(.-)%s*$")] = true end
      local out = {}
      for k, v in pairs(body) do
        if keep[k] or k:match("^@odata%.") then out[k] = v end
      end
      body = out
    end
    return body
  end

  -- ---- the handler -------------------------------------------------------------

  local function count(status)
    st.counts.by_status[tostring(status)] = (st.counts.by_status[tostring(status)] or 0) + 1
  end

  local function route(req)
    local path = req.path:gsub("/+$", "")
    if path == "" then path = "/" end
    if path == "/redfish" then
      return reply(200, { v1 = "/redfish/v1/" })
    end
    if now() < st.not_ready_until then
      return fail(503, "SYS518", "iDRAC is not ready. The configuration values cannot be accessed. Please retry after a few minutes.",
        { severity = "Critical", resolution = "Retry the operation after a few seconds." })
    end
    local r = lookup(path)
    local method = req.method
    if method == "HEAD" then method = "GET" end
    if not r then
      return fail(404, "SYS403", "Unable to complete the operation because the resource " .. path .. " entered is not found.",
        { args = { path }, resolution = "Enter the correct resource and retry the operation." })
    end
    local public = (method == "GET" and r.public) or (method == "POST" and r.public_post)
    local who = authenticate(req)
    if not public and not who then
      return fail(401, "NoValidSession", "There is no valid session established with the implementation.",
        { severity = "Critical", resolution = "Establish a session before attempting any operations." })
    end
    local handler = ({ GET = r.get, PATCH = r.patch, POST = r.post, DELETE = r.delete })[method]
    if method == "POST" and r.post_forbidden then handler = nil end
    if not handler then
      return fail(405, "SYS402", "Unable to complete the operation because an invalid method " .. method .. " is entered for " .. path .. ".",
        { resolution = "Enter a valid method and retry the operation." })
    end
    if method == "GET" then
      local body = r.get()
      local etag = etag_of(body)
      local shaped, err = shape(req, body)
      if not shaped then return table.unpack(err) end
      local s, h, b = reply(200, shaped, { ETag = etag })
      if req.method == "HEAD" then b = "" end
      return s, h, b
    end
    local body = {}
    if method == "POST" or method == "PATCH" then
      local why
      body, why = decode_body(req)
      if not body then
        if why == "empty" and method == "POST" then body = {} else return malformed() end
      end
    end
    if method == "PATCH" then
      local want = req.headers["if-match"]
      if want and want ~= "*" and r.get then
        local have = etag_of(r.get())
        local norm = function(e) return (e:gsub("^%s*W/", ""):gsub("%s+$", "")) end
        local ok = false
        for e in want:gmatch("[^,]+") do
          if norm(e:match("^%s*(.-)%s*$")) == have then ok = true end
        end
        if not ok then
          return fail(412, "PreconditionFailed",
            "The ETag supplied did not match the ETag required to change this resource.",
            { resolution = "Read the resource again (GET) and retry with its current ETag.",
              headers = { ETag = have } })
        end
      end
    end
    return handler(body, req)
  end

  function dev.handler(req)
    dev.advance()
    st.counts.requests = st.counts.requests + 1
    local s, h, b = route(req)
    count(s)
    return s, h, b
  end

  --- Plain-table snapshot for /lab/state.
  function dev.state()
    dev.advance()
    local t = now()
    local jobs = {}
    for _, id in ipairs(st.job_order) do
      local j = st.jobs[id]
      if j then
        jobs[#jobs + 1] = { id = j.id, kind = j.kind, state = j.state, percent = j.percent,
          target = j.target, message = j.message }
      end
    end
    local nic_state = {}
    for p, n in ipairs(nics) do
      nic_state[p] = { fqdd = n.fqdd, mac = n.mac, iscsi = iscsi_view(n.iscsi),
        pending = iscsi_view(n.pending), legacy_boot_proto = n.legacy_boot_proto }
    end
    return {
      name = dev.name, kind = dev.kind, flavour = flavour, service_tag = tag,
      power = st.power, not_ready = t < st.not_ready_until,
      not_ready_for = math.max(0, st.not_ready_until - t),
      sessions = count_sessions(), max_sessions = M.MAX_SESSIONS,
      boot_override = copy(st.boot),
      bios = { current = bios_attrs(st.bios.current), pending = bios_attrs(st.bios.pending) },
      nics = nic_state, jobs = arr(jobs), vmedia = copy(st.vmedia),
      idrac_attrs = copy(st.idrac_attrs), resets = st.resets,
      boots = arr(copy(st.boots)), last_boot = st.boots[#st.boots] and copy(st.boots[#st.boots]) or json.null,
      requests = st.counts.requests, by_status = copy(st.counts.by_status),
      faults = dev.faults and copy(dev.faults.counts) or nil,
    }
  end

  --- The site file entry for this BMC. endpoint: {host, port, url, pin_sha256}.
  function dev.site_entry(_, _, endpoint)
    return "server", {
      id = string.format("r630-%02d", index),
      idrac = { host = endpoint.host .. ":" .. endpoint.port, user = dev.user, password = dev.password,
        tls = { pin_sha256 = endpoint.pin_sha256 } },
    }
  end

  --- The 503 a fault-injected request gets (what a busy iDRAC answers).
  function dev.fault_503()
    return fail(503, "SYS446", "Internal error occurred (injected fault); retry the operation.",
      { severity = "Critical", resolution = "Retry the operation." })
  end

  return dev
end

return M
