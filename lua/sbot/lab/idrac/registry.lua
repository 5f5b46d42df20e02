--- sbot.lab.idrac.registry: the attribute registries of the simulated iDRAC
-- and the checks a write goes through.
--
-- The BIOS attributes are declared once here, with the limits a real R630
-- publishes (FIELD_NOTES: iSCSI Retry 0-5, Timeout 1000-30000 ms, CHAP secret
-- 12-16 characters, names starting "iqn."). From the declarations come both
-- the Redfish AttributeRegistry document a client reads (ValueExpression as a
-- POSIX extended regular expression, Dependencies as ReadOnly maps) and the
-- lab's own validation of every PATCH (a Lua pattern, checked the same way).
--
-- Declaration fields: type ("enum", "string", "integer", "ip", "password",
-- "boolean"), values (enum), min/max (integer), minlen/maxlen (strings),
-- pat (Lua pattern) with expr (the same rule as an ERE, published), ro,
-- default, dep = {attr, value}: read-only unless that attribute is (or
-- becomes in the same PATCH) the value; display, menu.
local json = require "sbot.json"

local M = {}

M.NIC_PORTS = 4

function M.nic_fqdd(port) return string.format("NIC.Integrated.1-%d-1", port) end

local IQN_PAT = "^iqn%.%d%d%d%d%-%d%d%.[^%s]+$"
local IQN_EXPR = "^iqn\\.[0-9]{4}-[0-9]{2}\\.[^[:space:]]+$"
local IP_EXPR = "^([0-9]{1,3}\\.){3}[0-9]{1,3}$"

-- UEFI boot devices the simulated R630 has, in their factory order; the
-- iSCSI device exists only while IscsiDev1Con1EnDis is Enabled.
M.UEFI_DEVICES = { "NIC.PxeDevice.1-1", "Disk.SDInternal.1-1", "RAID.Integrated.1-1",
  "Optical.iDRACVirtual.1-1" }
M.UEFI_ISCSI_DEVICE = "iSCSI.Dev1.Con1"
M.LEGACY_DEVICES = { "HardDisk.List.1-1", "NIC.Integrated.1-1-1", "Optical.iDRACVirtual.1-1" }

--- The BIOS attributes (the subset sbot and its tests use), in menu order.
function M.bios()
  local nics = {}
  for p = 1, M.NIC_PORTS do nics[#nics + 1] = M.nic_fqdd(p) end
  local endis = { "Enabled", "Disabled" }
  local iscsi = { "IscsiDev1EnDis", "Enabled" }
  local con1 = { "IscsiDev1Con1EnDis", "Enabled" }
  local uefi_once = {}
  for _, d in ipairs(M.UEFI_DEVICES) do uefi_once[#uefi_once + 1] = d end
  uefi_once[#uefi_once + 1] = M.UEFI_ISCSI_DEVICE
  local list = {
    { "SystemModelName", type = "string", ro = true, menu = "SysInfo" },
    { "SystemServiceTag", type = "string", ro = true, menu = "SysInfo" },
    { "SystemBiosVersion", type = "string", ro = true, menu = "SysInfo" },
    { "BootMode", type = "enum", values = { "Bios", "Uefi" }, default = "Uefi", menu = "BootSettings" },
    { "BootSeq", type = "string", maxlen = 1024, default = table.concat(M.LEGACY_DEVICES, ","),
      menu = "BootSettings", display = "Boot Sequence (BIOS boot mode)" },
    { "UefiBootSeq", type = "string", maxlen = 1024, default = table.concat(M.UEFI_DEVICES, ","),
      menu = "BootSettings", display = "UEFI Boot Sequence" },
    { "OneTimeBootMode", type = "enum", default = "Disabled", menu = "OneTimeBoot", values = { "Disabled",
      "OneTimeBootSeq", "OneTimeHddSeq", "OneTimeUefiBootSeq", "OneTimeCustomBootSeqStr",
      "OneTimeCustomHddSeqStr", "OneTimeCustomUefiBootSeqStr" } },
    { "OneTimeBootSeqDev", type = "enum", values = M.LEGACY_DEVICES, default = M.LEGACY_DEVICES[1],
      dep = { "OneTimeBootMode", "OneTimeBootSeq" }, menu = "OneTimeBoot" },
    { "OneTimeUefiBootSeqDev", type = "enum", values = uefi_once, default = M.UEFI_DEVICES[1],
      dep = { "OneTimeBootMode", "OneTimeUefiBootSeq" }, menu = "OneTimeBoot" },
    { "ProcVirtualization", type = "enum", values = endis, default = "Enabled", menu = "ProcSettings" },
    { "IscsiInitiatorName", type = "string", maxlen = 223, pat = IQN_PAT, expr = IQN_EXPR,
      default = "", menu = "NetworkSettings", display = "ISCSI Initiator Name" },
    { "IscsiDev1EnDis", type = "enum", values = endis, default = "Disabled", menu = "NetworkSettings" },
    { "IscsiDev1Con1EnDis", type = "enum", values = endis, default = "Disabled", dep = iscsi, menu = "IscsiDev1" },
    { "IscsiDev1Con1Interface", type = "enum", values = nics, default = nics[1], dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Protocol", type = "enum", values = { "IPv4", "IPv6" }, default = "IPv4", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1VlanEnDis", type = "enum", values = endis, default = "Disabled", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Retry", type = "integer", min = 0, max = 5, default = 3, dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Timeout", type = "integer", min = 1000, max = 30000, default = 10000, dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1DhcpEnDis", type = "enum", values = endis, default = "Enabled", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Ip", type = "ip", default = "0.0.0.0", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Mask", type = "ip", default = "0.0.0.0", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Gateway", type = "ip", default = "0.0.0.0", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1TgtDhcpEnDis", type = "enum", values = endis, default = "Enabled", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1TargetName", type = "string", maxlen = 223, pat = IQN_PAT, expr = IQN_EXPR, default = "",
      dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1TargetIp", type = "ip", default = "0.0.0.0", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Port", type = "integer", min = 1, max = 65535, default = 3260, dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Lun", type = "string", maxlen = 20, pat = "^%d+$", expr = "^[0-9]+$", default = "0",
      dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1Auth", type = "enum", values = { "None", "Chap" }, default = "None", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1ChapType", type = "enum", values = { "OneWay", "Mutual" }, default = "OneWay", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1ChapName", type = "string", maxlen = 128, default = "", dep = con1, menu = "IscsiDev1Con1" },
    { "IscsiDev1Con1ChapSecret", type = "password", minlen = 12, maxlen = 16, default = "", dep = con1, menu = "IscsiDev1Con1" },
    { "PxeDev1EnDis", type = "enum", values = endis, default = "Enabled", menu = "NetworkSettings" },
    { "PxeDev1Interface", type = "enum", values = nics, default = nics[1], menu = "PxeDev1" },
    { "PxeDev1Protocol", type = "enum", values = { "IPv4", "IPv6" }, default = "IPv4", menu = "PxeDev1" },
    { "PxeDev1VlanEnDis", type = "enum", values = endis, default = "Disabled", menu = "PxeDev1" },
  }
  local reg = { order = {} }
  for _, a in ipairs(list) do
    local name = a[1]
    a[1] = nil
    a.name = name
    reg[name] = a
    reg.order[#reg.order + 1] = name
  end
  return reg
end

--- DMTF iSCSIBoot properties of a NetworkDeviceFunction, with the same
-- limits the NIC firmware applies. dep as above, on the iSCSIBoot object
-- itself (R630: the static fields are read-only while the DHCP switches are
-- on; set the switch in the same or an earlier PATCH).
function M.iscsi_boot()
  local no_dhcp_ip = { "IPMaskDNSViaDHCP", false }
  local no_dhcp_tgt = { "TargetInfoViaDHCP", false }
  local t = {
    IPAddressType = { type = "enum", values = { "IPv4", "IPv6" }, default = "IPv4" },
    InitiatorName = { type = "string", maxlen = 223, pat = IQN_PAT, default = "" },
    IPMaskDNSViaDHCP = { type = "boolean", default = true },
    InitiatorIPAddress = { type = "ip", default = "0.0.0.0", dep = no_dhcp_ip },
    InitiatorNetmask = { type = "ip", default = "0.0.0.0", dep = no_dhcp_ip },
    InitiatorDefaultGateway = { type = "ip", default = "0.0.0.0", dep = no_dhcp_ip },
    PrimaryDNS = { type = "ip", default = "0.0.0.0", dep = no_dhcp_ip },
    TargetInfoViaDHCP = { type = "boolean", default = true },
    PrimaryTargetName = { type = "string", maxlen = 223, pat = IQN_PAT, default = "", dep = no_dhcp_tgt },
    PrimaryTargetIPAddress = { type = "ip", default = "0.0.0.0", dep = no_dhcp_tgt },
    PrimaryTargetTCPPort = { type = "integer", min = 1, max = 65535, default = 3260, dep = no_dhcp_tgt },
    PrimaryLUN = { type = "integer", min = 0, max = 255, default = 0, dep = no_dhcp_tgt },
    PrimaryVLANEnable = { type = "boolean", default = false },
    PrimaryVLANId = { type = "integer", min = 0, max = 4094, default = 0 },
    SecondaryTargetName = { type = "string", maxlen = 223, pat = IQN_PAT, default = "", dep = no_dhcp_tgt },
    SecondaryTargetIPAddress = { type = "ip", default = "0.0.0.0", dep = no_dhcp_tgt },
    SecondaryTargetTCPPort = { type = "integer", min = 1, max = 65535, default = 3260, dep = no_dhcp_tgt },
    SecondaryLUN = { type = "integer", min = 0, max = 255, default = 0, dep = no_dhcp_tgt },
    AuthenticationMethod = { type = "enum", values = { "None", "CHAP", "MutualCHAP" }, default = "None" },
    CHAPUsername = { type = "string", maxlen = 128, default = "" },
    CHAPSecret = { type = "password", minlen = 12, maxlen = 16, default = "" },
    MutualCHAPUsername = { type = "string", maxlen = 128, default = "" },
    MutualCHAPSecret = { type = "password", minlen = 12, maxlen = 16, default = "" },
  }
  for k, v in pairs(t) do v.name = k end
  return t
end

function M.defaults(reg)
  local t = {}
  for k, spec in pairs(reg) do
    if type(spec) == "table" and spec.default ~= nil then t[k] = spec.default end
  end
  return t
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

function M.is_ipv4(s)
  if type(s) ~= "string" then return false end
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs({ a, b, c, d }) do
    if #x > 3 or tonumber(x) > 255 then return false end
  end
  return true
end

--- Check one value against a declaration; returns nil or message id, message.
function M.check_value(name, spec, v)
  local function bad(kind)
    return "PropertyValueTypeError", string.format(
      "The value %s for the property %s is of a different type than the property can accept (%s).",
      spec.type == "password" and '"<hidden>"' or json.encode(v), name, kind)
  end
  local t = spec.type
  if t == "enum" then
    if type(v) ~= "string" then return bad("string") end
    if not set_of(spec.values)[v] then
      return "PropertyValueNotInList", string.format(
        "The value %s for the property %s is not in the list of acceptable values.", v, name)
    end
  elseif t == "string" or t == "password" then
    if type(v) ~= "string" then return bad("string") end
    if (spec.maxlen and #v > spec.maxlen) or (spec.minlen and #v < spec.minlen and v ~= "") then
      return "PropertyValueFormatError", string.format(
        "The length of the value for the property %s is not between %d and %d characters.",
        name, spec.minlen or 0, spec.maxlen or 0)
    end
    if spec.pat and v ~= "" and not v:match(spec.pat) then
      return "PropertyValueFormatError", string.format(
        "The value %s for the property %s is of a different format than the property can accept.", v, name)
    end
  elseif t == "ip" then
    if type(v) ~= "string" then return bad("string") end
    if not M.is_ipv4(v) then
      return "PropertyValueFormatError", string.format(
        "The value %s for the property %s is not a valid IPv4 address.", v, name)
    end
  elseif t == "integer" then
    if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
      return bad("integer")
    end
    if (spec.min and v < spec.min) or (spec.max and v > spec.max) then
      return "PropertyValueOutOfRange", string.format(
        "The value %s for the property %s is not in the range %d to %d.", tostring(v), name, spec.min, spec.max)
    end
  elseif t == "boolean" then
    if type(v) ~= "boolean" then return bad("boolean") end
  end
  return nil
end

--- Validate a PATCH of attributes. effective(name) gives the value an
-- attribute will have (this patch, else pending, else current). Returns nil
-- or message id, message, attribute name.
function M.validate(reg, patch, effective)
  local names = {}
  for name in pairs(patch) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local v = patch[name]
    local spec = reg[name]
    if type(spec) ~= "table" or name == "order" then
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
    local id, msg = M.check_value(name, spec, v)
    if id then return id, msg, name end
  end
  return nil
end

--- The boot devices a sequence attribute may list, given the effective
-- values (the iSCSI device exists only while its connection is enabled).
function M.seq_devices(name, effective)
  if name == "UefiBootSeq" then
    local d = {}
    for _, x in ipairs(M.UEFI_DEVICES) do d[#d + 1] = x end
    if effective("IscsiDev1EnDis") == "Enabled" and effective("IscsiDev1Con1EnDis") == "Enabled" then
      d[#d + 1] = M.UEFI_ISCSI_DEVICE
    end
    return d
  end
  return M.LEGACY_DEVICES
end

function M.split_seq(s)
  local out = {}
  for item in tostring(s):gmatch("[^,]+") do out[#out + 1] = item:match("^%s*(.-)%s*$") end
  return out
end

--- A boot sequence must list every device the system has, once each.
function M.check_seq(name, value, effective)
  local want = set_of(M.seq_devices(name, effective))
  local seen, n = {}, 0
  for _, d in ipairs(M.split_seq(value)) do
    if not want[d] or seen[d] then
      return "PropertyValueFormatError", string.format(
        "The value %s for the property %s is invalid: %s is %s.", value, name, d,
        seen[d] and "listed twice" or "not a boot device of this system")
    end
    seen[d] = true
    n = n + 1
  end
  local count = 0
  for _ in pairs(want) do count = count + 1 end
  if n ~= count then
    return "PropertyValueFormatError", string.format(
      "The value %s for the property %s is invalid: it must list each of the %d boot devices once.",
      value, name, count)
  end
end

local REDFISH_TYPE = { enum = "Enumeration", string = "String", integer = "Integer", ip = "String",
  password = "Password", boolean = "Boolean" }

--- The Redfish AttributeRegistry document of the BIOS registry.
function M.document(reg, path, F)
  local attrs, deps = {}, {}
  for _, name in ipairs(reg.order) do
    local s = reg[name]
    local e = { AttributeName = name, DisplayName = s.display or name, HelpText = "",
      Type = REDFISH_TYPE[s.type], ReadOnly = s.ro == true, Hidden = false, Immutable = false,
      ResetRequired = true, MenuPath = "./" .. (s.menu or "Misc"), CurrentValue = json.null,
      DefaultValue = s.default ~= nil and s.default or json.null }
    if s.type == "enum" then
      local v = {}
      for _, x in ipairs(s.values) do v[#v + 1] = { ValueName = x, ValueDisplayName = x } end
      e.Value = json.array(v)
    elseif s.type == "integer" then
      e.LowerBound, e.UpperBound, e.ScalarIncrement = s.min, s.max, 1
    elseif s.type == "string" or s.type == "password" then
      e.MinLength, e.MaxLength = s.minlen or 0, s.maxlen
      if s.expr then e.ValueExpression = s.expr end
    elseif s.type == "ip" then
      e.MinLength, e.MaxLength, e.ValueExpression = 7, 15, IP_EXPR
    end
    attrs[#attrs + 1] = e
    if s.dep then
      deps[#deps + 1] = { DependencyFor = name, Type = "Map", Dependency = {
        MapFrom = json.array({ { MapFromAttribute = s.dep[1], MapFromCondition = "NEQ",
          MapFromProperty = "CurrentValue", MapFromValue = s.dep[2] } }),
        MapToAttribute = name, MapToProperty = "ReadOnly", MapToValue = true } }
    end
  end
  return {
    ["@odata.id"] = path, ["@odata.type"] = "#AttributeRegistry.v1_1_0.AttributeRegistry",
    ["@odata.context"] = "/redfish/v1/$metadata#AttributeRegistry.AttributeRegistry",
    Id = "BiosAttributeRegistry." .. F.bios_registry, Name = "BIOS Attribute Registry",
    Language = "en", OwningEntity = "Dell", RegistryVersion = F.bios_registry_version,
    SupportedSystems = json.array({ { ProductName = F.system_model, SystemId = F.system_id,
      FirmwareVersion = F.bios_version } }),
    RegistryEntries = { Attributes = json.array(attrs), Dependencies = json.array(deps),
      Menus = json.array() },
  }
end

return M
