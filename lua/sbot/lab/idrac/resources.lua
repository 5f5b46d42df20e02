--- sbot.lab.idrac.resources: the Redfish resources of the simulated iDRAC
-- (GET bodies) and the PATCHable ones (System Boot, BIOS and NIC Settings).
--
-- Shapes follow what real iDRACs send, quirks included: collections carry a
-- trailing slash in their @odata.id (and in the links to them), member ids
-- may hold ':' (storage) or '%7C' (firmware inventory), /Bios shows current
-- values only while /Bios/Settings holds pending ones, the BIOS attribute
-- registry is reached through /redfish/v1/Registries, NICs only through
-- NetworkInterfaces links (under Chassis on iDRAC 9), virtual media under the
-- Manager (iDRAC 8) or the System (iDRAC 9 6.x) listed [RemovableDisk, CD].
local json = require "sbot.json"
local model = require "sbot.lab.idrac.model"
local protocol = require "sbot.lab.idrac.protocol"
local registry = require "sbot.lab.idrac.registry"

local M = {}

local arr, link, copy, set_of = protocol.arr, protocol.link, protocol.copy, protocol.set_of
local SYS, MGR, CHASSIS = model.SYS, model.MGR, model.CHASSIS

--- The path of a collection as the iDRAC writes it (trailing slash).
local function C(path) return path .. "/" end
M.C = C

function M.install(dev)
  local F, st, P = dev.F, dev.st, dev.P
  local resource = dev.resource
  local nics = st.nics
  local flavour = F.generation
  local index = dev.index

  local function hide(reg, t)
    local out = {}
    for k, v in pairs(t) do
      out[k] = (reg[k] and reg[k].type == "password") and json.null or v
    end
    return out
  end
  dev.bios_view = function(t) return hide(dev.bios_reg, t) end
  dev.iscsi_view = function(t) return hide(dev.iscsi_reg, t) end

  -- ---- service root and top-level collections -------------------------------

  resource("/redfish/v1", { public = true, get = function()
    return P.odata("/redfish/v1", "#ServiceRoot.v1_3_0.ServiceRoot", {
      Id = "RootService", Name = "Root Service", RedfishVersion = F.redfish,
      Product = "Integrated Dell Remote Access Controller", Vendor = "Dell",
      Systems = link(C"/redfish/v1/Systems"), Managers = link(C"/redfish/v1/Managers"),
      Chassis = link(C"/redfish/v1/Chassis"), SessionService = link("/redfish/v1/SessionService"),
      AccountService = link("/redfish/v1/Managers/iDRAC.Embedded.1/AccountService"),
      Registries = link(C"/redfish/v1/Registries"),
      UpdateService = link("/redfish/v1/UpdateService"),
      Tasks = link("/redfish/v1/TaskService"),
      Links = { Sessions = link(F.sessions) },
      Oem = { Dell = { ["@odata.type"] = "#DellServiceRoot.v1_0_0.ServiceRootSummary",
        ServiceTag = dev.tag, ManagerMACAddress = string.format("24:6E:96:%02X:%02X:01", index // 256, index % 256),
        IsBranded = 0 } },
      ProtocolFeaturesSupported = { ExpandQuery = { ExpandAll = true, Levels = true, Links = true,
        NoLinks = true, MaxLevels = 1 }, SelectQuery = true, FilterQuery = false },
    })
  end })

  resource("/redfish/v1/Systems", { get = function()
    return P.collection(C"/redfish/v1/Systems", "#ComputerSystemCollection.ComputerSystemCollection",
      "Computer System Collection", { SYS })
  end })

  -- ---- the system --------------------------------------------------------------

  local function boot_order()
    local refs = {}
    for id, o in pairs(dev.boot_options()) do refs[o.ref] = id end
    local out = {}
    for _, d in ipairs(registry.split_seq(st.bios.current.UefiBootSeq)) do
      if refs[d] then out[#out + 1] = refs[d] end
    end
    return out
  end

  resource(SYS, {
    get = function()
      local order = boot_order()
      local body = P.odata(SYS, "#ComputerSystem.v1_5_0.ComputerSystem", {
        Id = "System.Embedded.1", Name = "System", SystemType = "Physical",
        Manufacturer = "Dell Inc.", Model = F.system_model, SKU = dev.tag, SerialNumber = "CN7016" .. dev.tag,
        PartNumber = "0599V5A00", AssetTag = "", HostName = "", IndicatorLED = "Off",
        PowerState = st.power, BiosVersion = st.bios.current.SystemBiosVersion,
        UUID = string.format("4c4c4544-00%02x-4d10-8053-b4c04f4c%04d", index % 256, index % 10000),
        Status = { State = "Enabled", Health = "OK", HealthRollup = "OK" },
        ProcessorSummary = { Count = 2, Model = "Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz" },
        MemorySummary = { TotalSystemMemoryGiB = 128 },
        Boot = {
          BootSourceOverrideTarget = st.boot.target,
          ["BootSourceOverrideTarget@Redfish.AllowableValues"] = arr(copy(model.BOOT_TARGETS)),
          BootSourceOverrideEnabled = st.boot.enabled,
          BootSourceOverrideMode = st.boot.mode,
          UefiTargetBootSourceOverride = st.boot.uefi_target,
          BootOrder = arr(order),
          ["BootOrder@odata.count"] = #order,
          BootOptions = link(C(SYS .. "/BootOptions")),
        },
        Bios = link(SYS .. "/Bios"),
        EthernetInterfaces = link(C(SYS .. "/EthernetInterfaces")),
        NetworkInterfaces = link(C(SYS .. "/NetworkInterfaces")),
        Storage = link(C(SYS .. "/Storage")),
        Links = { Chassis = arr({ link(CHASSIS) }), ManagedBy = arr({ link(MGR) }) },
        Actions = { ["#ComputerSystem.Reset"] = { target = SYS .. "/Actions/ComputerSystem.Reset",
          ["ResetType@Redfish.AllowableValues"] = arr(copy(F.reset_types)) } },
      })
      if F.vmedia_under == "Systems" then body.VirtualMedia = link(C(SYS .. "/VirtualMedia")) end
      return body
    end,
    patch = function(body)
      for k in pairs(body) do
        if k ~= "Boot" then
          return P.fail(400, "PropertyNotWritable", string.format(
            "The property %s is a read only property and cannot be assigned a value.", k), { props = { "#/" .. k } })
        end
      end
      local b = body.Boot
      if type(b) ~= "table" then
        return P.fail(400, "PropertyValueTypeError", "The value for the property Boot is of a different type than the property can accept.",
          { props = { "#/Boot" } })
      end
      local new = copy(st.boot)
      for k, v in pairs(b) do
        if k == "BootSourceOverrideTarget" then
          if not set_of(model.BOOT_TARGETS)[v] then
            return P.fail(400, "PropertyValueNotInList", string.format(
              "The value %s for the property BootSourceOverrideTarget is not in the list of acceptable values.", tostring(v)),
              { args = { tostring(v), "BootSourceOverrideTarget" }, props = { "#/Boot/BootSourceOverrideTarget" } })
          end
          new.target = v
        elseif k == "BootSourceOverrideEnabled" then
          if not set_of(model.OVERRIDE_ENABLED)[v] then
            return P.fail(400, "PropertyValueNotInList", string.format(
              "The value %s for the property BootSourceOverrideEnabled is not in the list of acceptable values.", tostring(v)),
              { props = { "#/Boot/BootSourceOverrideEnabled" } })
          end
          new.enabled = v
        elseif k == "BootSourceOverrideMode" then
          if v ~= "UEFI" and v ~= "Legacy" then
            return P.fail(400, "PropertyValueNotInList", "The value for BootSourceOverrideMode is not in the list of acceptable values.",
              { props = { "#/Boot/BootSourceOverrideMode" } })
          end
          new.mode = v
        elseif k == "UefiTargetBootSourceOverride" then
          if type(v) ~= "string" then
            return P.fail(400, "PropertyValueTypeError", "UefiTargetBootSourceOverride must be a string.",
              { props = { "#/Boot/UefiTargetBootSourceOverride" } })
          end
          new.uefi_target = v
        elseif k == "BootOrder" then
          return P.fail(400, "PropertyNotWritable",
            "The property BootOrder is a read only property and cannot be assigned a value; change the BIOS boot sequence (UefiBootSeq) instead.",
            { props = { "#/Boot/BootOrder" } })
        else
          return P.unknown_property(k, "Boot/")
        end
      end
      if new.target == "UefiTarget" and new.enabled ~= "Disabled" and new.uefi_target == "" then
        return P.fail(400, "PropertyMissing", "UefiTargetBootSourceOverride is required when BootSourceOverrideTarget is UefiTarget.",
          { props = { "#/Boot/UefiTargetBootSourceOverride" } })
      end
      st.boot = new
      return P.success(200)
    end,
  })

  resource(SYS .. "/BootOptions", { get = function()
    local ids = {}
    for id in pairs(dev.boot_options()) do ids[#ids + 1] = SYS .. "/BootOptions/" .. id end
    table.sort(ids)
    return P.collection(C(SYS .. "/BootOptions"), "#BootOptionCollection.BootOptionCollection", "Boot Options Collection", ids)
  end })
  for id, o in pairs(dev.boot_options()) do
    local path = SYS .. "/BootOptions/" .. id
    resource(path, { get = function()
      return P.odata(path, "#BootOption.v1_0_0.BootOption", {
        Id = id, Name = "Uefi Boot Option", BootOptionReference = id, DisplayName = o.name,
        UefiDevicePath = o.path, BootOptionEnabled = true, Oem = { Dell = { FQDD = o.ref } } })
    end })
  end

  -- ---- BIOS, its pending settings and its attribute registry --------------------

  local bios_settings = SYS .. "/Bios/Settings"
  local bios_registry = SYS .. "/Bios/BiosRegistry"
  local reg_id = "BiosAttributeRegistry." .. F.bios_registry
  dev.bios_settings_uri = bios_settings

  resource(SYS .. "/Bios", { get = function()
    return P.odata(SYS .. "/Bios", "#Bios.v1_0_1.Bios", {
      Id = "Bios", Name = "BIOS Configuration Current Settings",
      AttributeRegistry = reg_id,
      Attributes = dev.bios_view(st.bios.current),
      ["@Redfish.Settings"] = { ["@odata.type"] = "#Settings.v1_1_0.Settings",
        SettingsObject = link(bios_settings),
        SupportedApplyTimes = F.apply_time and arr({ "OnReset", "Immediate", "AtMaintenanceWindowStart",
          "InMaintenanceWindowOnReset" }) or nil },
      Actions = { ["#Bios.ResetBios"] = { target = SYS .. "/Bios/Actions/Bios.ResetBios" },
        ["#Bios.ChangePassword"] = { target = SYS .. "/Bios/Actions/Bios.ChangePassword" } },
    })
  end })

  resource("/redfish/v1/Registries", { get = function()
    return P.collection(C"/redfish/v1/Registries", "#MessageRegistryFileCollection.MessageRegistryFileCollection",
      "Registry File Collection", { "/redfish/v1/Registries/Messages", "/redfish/v1/Registries/" .. reg_id })
  end })
  resource("/redfish/v1/Registries/Messages", { get = function()
    return P.odata("/redfish/v1/Registries/Messages", "#MessageRegistryFile.v1_0_2.MessageRegistryFile", {
      Id = "Messages", Name = "Message Registry File", Registry = "Messages.1.0",
      Languages = arr({ "en" }), Location = arr({ { Language = "en", Uri = "/redfish/v1/Registries/Messages/EEMIRegistry" } }) })
  end })
  resource("/redfish/v1/Registries/" .. reg_id, { get = function()
    return P.odata("/redfish/v1/Registries/" .. reg_id, "#MessageRegistryFile.v1_0_2.MessageRegistryFile", {
      Id = reg_id, Name = "BIOS Attribute Registry File", Description = "BIOS Attribute Registry File locations",
      Registry = "BiosAttributeRegistry1.0", Languages = arr({ "en" }),
      Location = arr({ { Language = "en", Uri = bios_registry } }) })
  end })
  local registry_doc
  resource(bios_registry, { static = true, get = function()
    registry_doc = registry_doc or registry.document(dev.bios_reg, bios_registry, F)
    return registry_doc
  end })

  local function effective_bios(patch)
    return function(name)
      if patch[name] ~= nil then return patch[name] end
      if st.bios.pending[name] ~= nil then return st.bios.pending[name] end
      return st.bios.current[name]
    end
  end

  --- PATCH of a settings object: validate against the registry, store as
  -- pending, maybe schedule a job (iDRAC 9 @Redfish.SettingsApplyTime).
  -- what: {uri, key, kind, port, registry, pending, current, check}
  local function settings_patch(body, what)
    local target = what.uri
    if dev.active_job_for(target) then
      return P.fail(400, "SYS011", "Pending configuration values are already committed, unable to perform another set operation.",
        { resolution = "Delete the scheduled job, then retry the operation." })
    end
    local apply = body["@Redfish.SettingsApplyTime"]
    if apply ~= nil and not F.apply_time then
      return P.unknown_property("@Redfish.SettingsApplyTime")
    end
    for k in pairs(body) do
      if k ~= what.key and k ~= "@Redfish.SettingsApplyTime" then return P.unknown_property(k) end
    end
    local patch = body[what.key]
    if type(patch) ~= "table" or json.is_array(patch) then
      return P.fail(400, "PropertyValueTypeError", "The value for the property " .. what.key ..
        " is of a different type than the property can accept.", { props = { "#/" .. what.key } })
    end
    local function effective(name)
      if patch[name] ~= nil then return patch[name] end
      if what.pending[name] ~= nil then return what.pending[name] end
      return what.current[name]
    end
    local id, msg, prop = registry.validate(what.registry, patch, effective)
    if not id and what.check then id, msg, prop = what.check(patch, effective) end
    if id then
      return P.fail(400, id, msg, { args = { prop }, props = { "#/" .. what.key .. "/" .. prop } })
    end
    local when
    if apply ~= nil then
      when = type(apply) == "table" and apply.ApplyTime
      if when ~= "OnReset" and when ~= "Immediate" then
        return P.fail(400, "PropertyValueNotInList", string.format(
          "The value %s for the property ApplyTime is not in the list of values the lab supports (OnReset, Immediate).",
          tostring(when)), { props = { "#/@Redfish.SettingsApplyTime/ApplyTime" } })
      end
    end
    for k, v in pairs(patch) do
      -- a write of the value already current is legal but harmful on old
      -- firmware (a BootSeq job that never ends): the lab remembers it
      if what.pending[k] == nil and what.current[k] == v then
        local u = st.counts.unchanged_attributes
        if #u < 100 then u[#u + 1] = what.kind .. ":" .. k end
      end
      -- JSON numbers decode as floats: an Integer attribute keeps an integer
      local spec = what.registry[k]
      if type(spec) == "table" and spec.type == "integer" then v = math.tointeger(v) or v end
      what.pending[k] = v
    end
    if when then
      local job = dev.new_job(what.kind, target, { port = what.port })
      if when == "Immediate" then dev.power_on(dev.now()) end -- the iDRAC restarts the host
      return P.success(202, { Location = MGR .. "/Jobs/" .. job.id })
    end
    return P.success(200)
  end

  local function check_bios_seq(patch, effective)
    for _, name in ipairs({ "UefiBootSeq", "BootSeq" }) do
      if patch[name] ~= nil then
        local id, msg = registry.check_seq(name, patch[name], effective)
        if id then return id, msg, name end
      end
    end
  end

  resource(bios_settings, {
    get = function()
      local body = P.odata(bios_settings, "#Bios.v1_0_1.Bios", {
        Id = "Settings", Name = "BIOS Configuration Pending Settings",
        AttributeRegistry = reg_id,
        Attributes = dev.bios_view(st.bios.pending),
      })
      if F.apply_time then
        body["@Redfish.SettingsApplyTime"] = { ["@odata.type"] = "#Settings.v1_1_0.PreferredApplyTime",
          ApplyTime = "OnReset", ["ApplyTime@Redfish.AllowableValues"] = arr({ "OnReset", "Immediate" }) }
      end
      return body
    end,
    patch = function(body)
      return settings_patch(body, { uri = bios_settings, key = "Attributes", kind = "bios",
        registry = dev.bios_reg, pending = st.bios.pending, current = st.bios.current, check = check_bios_seq })
    end,
  })
  dev.effective_bios = effective_bios

  -- ---- NICs ------------------------------------------------------------------------

  local adapters = (flavour == 9 and CHASSIS or SYS) .. "/NetworkAdapters"
  local nic_base = adapters .. "/NIC.Integrated.1"
  local function nic_fn_uri(p) return nic_base .. "/NetworkDeviceFunctions/" .. registry.nic_fqdd(p) end
  dev.nic_fn_uri = nic_fn_uri

  resource(SYS .. "/EthernetInterfaces", { get = function()
    local m = {}
    for p = 1, registry.NIC_PORTS do m[p] = SYS .. "/EthernetInterfaces/" .. registry.nic_fqdd(p) end
    return P.collection(C(SYS .. "/EthernetInterfaces"), "#EthernetInterfaceCollection.EthernetInterfaceCollection",
      "System Ethernet Interface Collection", m)
  end })
  resource(SYS .. "/NetworkInterfaces", { get = function()
    return P.collection(C(SYS .. "/NetworkInterfaces"), "#NetworkInterfaceCollection.NetworkInterfaceCollection",
      "Network Interface Collection", { SYS .. "/NetworkInterfaces/NIC.Integrated.1" })
  end })
  resource(SYS .. "/NetworkInterfaces/NIC.Integrated.1", { get = function()
    return P.odata(SYS .. "/NetworkInterfaces/NIC.Integrated.1", "#NetworkInterface.v1_1_0.NetworkInterface", {
      Id = "NIC.Integrated.1", Name = "NetworkInterface",
      Status = { State = "Enabled", Health = "OK" },
      Links = { NetworkAdapter = link(nic_base) },
      NetworkDeviceFunctions = link(C(nic_base .. "/NetworkDeviceFunctions")),
      NetworkPorts = link(C(nic_base .. "/NetworkPorts")),
    })
  end })
  resource(adapters, { get = function()
    return P.collection(C(adapters), "#NetworkAdapterCollection.NetworkAdapterCollection",
      "Network Adapter Collection", { nic_base })
  end })
  resource(nic_base, { get = function()
    return P.odata(nic_base, "#NetworkAdapter.v1_1_0.NetworkAdapter", {
      Id = "NIC.Integrated.1", Name = "Network Adapter", Manufacturer = "Broadcom Corp",
      Model = "BRCM 4P 10G-2P 1G-BASE-T", Status = { State = "Enabled", Health = "OK" },
      NetworkDeviceFunctions = link(C(nic_base .. "/NetworkDeviceFunctions")),
      NetworkPorts = link(C(nic_base .. "/NetworkPorts")),
    })
  end })
  resource(nic_base .. "/NetworkDeviceFunctions", { get = function()
    local m = {}
    for p = 1, registry.NIC_PORTS do m[p] = nic_fn_uri(p) end
    return P.collection(C(nic_base .. "/NetworkDeviceFunctions"),
      "#NetworkDeviceFunctionCollection.NetworkDeviceFunctionCollection", "Network Device Function Collection", m)
  end })
  resource(nic_base .. "/NetworkPorts", { get = function()
    return P.collection(C(nic_base .. "/NetworkPorts"), "#NetworkPortCollection.NetworkPortCollection",
      "Network Port Collection", {})
  end })

  for p = 1, registry.NIC_PORTS do
    local nic = nics[p]
    local uri = nic_fn_uri(p)
    resource(SYS .. "/EthernetInterfaces/" .. nic.fqdd, { get = function()
      return P.odata(SYS .. "/EthernetInterfaces/" .. nic.fqdd, "#EthernetInterface.v1_4_0.EthernetInterface", {
        Id = nic.fqdd, Name = "System Ethernet Interface", MACAddress = nic.mac,
        PermanentMACAddress = nic.mac, SpeedMbps = p <= 2 and 10240 or 1024,
        Status = { State = "Enabled", Health = "OK" }, LinkStatus = p == 1 and "LinkUp" or "LinkDown",
      })
    end })
    resource(uri, { get = function()
      return P.odata(uri, "#NetworkDeviceFunction.v1_2_0.NetworkDeviceFunction", {
        Id = nic.fqdd, Name = "NetworkDeviceFunction", NetDevFuncType = "Ethernet",
        NetDevFuncCapabilities = arr({ "Ethernet", "iSCSI" }),
        Ethernet = { MACAddress = nic.mac, PermanentMACAddress = nic.mac, MTUSize = 1500 },
        iSCSIBoot = dev.iscsi_view(nic.iscsi),
        Status = { State = "Enabled", Health = "OK" },
        ["@Redfish.Settings"] = { ["@odata.type"] = "#Settings.v1_1_0.Settings",
          SettingsObject = link(uri .. "/Settings") },
        Oem = { Dell = { LegacyBootProto = nic.legacy_boot_proto } },
      })
    end })
    resource(uri .. "/Settings", {
      get = function()
        return P.odata(uri .. "/Settings", "#NetworkDeviceFunction.v1_2_0.NetworkDeviceFunction", {
          Id = nic.fqdd, Name = "NetworkDeviceFunction Pending Settings",
          iSCSIBoot = dev.iscsi_view(nic.pending),
        })
      end,
      patch = function(body)
        return settings_patch(body, { uri = uri .. "/Settings", key = "iSCSIBoot", kind = "nic", port = p,
          registry = dev.iscsi_reg, pending = nic.pending, current = nic.iscsi })
      end,
    })
  end

  -- ---- storage (member ids with ':') and firmware inventory (with '%7C') -----------

  local storage = SYS .. "/Storage"
  local ctrl = storage .. "/RAID.Integrated.1-1"
  local disks = { "Disk.Bay.0:Enclosure.Internal.0-1:RAID.Integrated.1-1",
    "Disk.Bay.1:Enclosure.Internal.0-1:RAID.Integrated.1-1" }
  resource(storage, { get = function()
    return P.collection(C(storage), "#StorageCollection.StorageCollection", "Storage Collection", { ctrl })
  end })
  resource(ctrl, { get = function()
    local d = {}
    for i, id in ipairs(disks) do d[i] = link(ctrl .. "/Drives/" .. id) end
    return P.odata(ctrl, "#Storage.v1_3_0.Storage", { Id = "RAID.Integrated.1-1", Name = "PERC H730 Mini",
      Drives = arr(d), ["Drives@odata.count"] = #d, Status = { State = "Enabled", Health = "OK" } })
  end })
  for i, id in ipairs(disks) do
    local path = ctrl .. "/Drives/" .. id
    resource(path, { get = function()
      return P.odata(path, "#Drive.v1_3_0.Drive", { Id = id, Name = "Physical Disk " .. (i - 1),
        CapacityBytes = 599550590976, MediaType = "HDD", Protocol = "SAS", Model = "ST600MM0208",
        SerialNumber = string.format("S0M%05d", index * 10 + i), Status = { State = "Enabled", Health = "OK" } })
    end })
  end

  local fw = "/redfish/v1/UpdateService/FirmwareInventory"
  local firmware = {
    { id = "Installed-25227-" .. F.firmware .. "__iDRAC.Embedded.1-1|iDRAC", name = "Integrated Dell Remote Access Controller", version = F.firmware },
    { id = "Installed-159-" .. F.bios_version .. "__BIOS.Setup.1-1|BIOS", name = "BIOS", version = F.bios_version },
  }
  resource("/redfish/v1/UpdateService", { get = function()
    return P.odata("/redfish/v1/UpdateService", "#UpdateService.v1_0_0.UpdateService", {
      Id = "UpdateService", Name = "Update Service", ServiceEnabled = true,
      FirmwareInventory = link(C(fw)) })
  end })
  resource(fw, { get = function()
    local m = {}
    for i, f in ipairs(firmware) do m[i] = fw .. "/" .. f.id end
    return P.collection(C(fw), "#SoftwareInventoryCollection.SoftwareInventoryCollection", "Firmware Inventory Collection", m)
  end })
  for _, f in ipairs(firmware) do
    local path = fw .. "/" .. f.id
    resource(path, { get = function()
      return P.odata(path, "#SoftwareInventory.v1_0_0.SoftwareInventory", { Id = protocol.encode(f.id),
        Name = f.name, Version = f.version, Updateable = true, Status = { State = "Enabled", Health = "OK" } })
    end })
  end

  -- ---- chassis and manager -----------------------------------------------------------

  resource("/redfish/v1/Chassis", { get = function()
    return P.collection(C"/redfish/v1/Chassis", "#ChassisCollection.ChassisCollection", "Chassis Collection", { CHASSIS })
  end })
  resource(CHASSIS, { get = function()
    return P.odata(CHASSIS, "#Chassis.v1_6_0.Chassis", {
      Id = "System.Embedded.1", Name = "Computer System Chassis", ChassisType = "RackMount",
      Manufacturer = "Dell Inc.", Model = F.system_model, SKU = dev.tag, PowerState = st.power,
      NetworkAdapters = flavour == 9 and link(C(adapters)) or nil,
      Links = { ComputerSystems = arr({ link(SYS) }), ManagedBy = arr({ link(MGR) }) },
    })
  end })

  resource("/redfish/v1/Managers", { get = function()
    return P.collection(C"/redfish/v1/Managers", "#ManagerCollection.ManagerCollection", "Manager", { MGR })
  end })
  resource(MGR, { get = function()
    local oem = { Oem = {} }
    oem.Oem[F.scp_key] = {
      target = MGR .. "/Actions/Oem/EID_674_Manager.ImportSystemConfiguration",
      ["ShutdownType@Redfish.AllowableValues"] = arr({ "Graceful", "Forced", "NoReboot" }),
      ["HostPowerState@Redfish.AllowableValues"] = arr({ "On", "Off" }),
      ["ShareParameters@Redfish.AllowableValues"] = arr({ "ALL", "IDRAC", "BIOS", "NIC", "RAID" }),
    }
    local body = P.odata(MGR, "#Manager.v1_3_3.Manager", {
      Id = "iDRAC.Embedded.1", Name = "Manager", ManagerType = "BMC", Model = F.model,
      FirmwareVersion = F.firmware, Description = "BMC",
      UUID = string.format("3256444f-c0b2-3780-4c10-00%02x4c4c4544", index % 256),
      Status = { State = "Enabled", Health = "OK" },
      DateTime = protocol.iso(os.time()),
      Links = { ManagerForServers = arr({ link(SYS) }),
        Oem = { Dell = { Jobs = link(C(MGR .. "/Jobs")), DellJobService = link(model.JOB_SERVICE) } } },
      Actions = {
        ["#Manager.Reset"] = { target = MGR .. "/Actions/Manager.Reset",
          ["ResetType@Redfish.AllowableValues"] = arr({ "GracefulRestart" }) },
        Oem = oem.Oem,
      },
    })
    if F.vmedia_under == "Managers" then body.VirtualMedia = link(C(MGR .. "/VirtualMedia")) end
    return body
  end })

  -- ---- jobs and tasks ------------------------------------------------------------------

  function dev.job_body(j, path)
    return P.odata(path or (MGR .. "/Jobs/" .. j.id), "#DellJob.v1_0_0.DellJob", {
      Id = j.id, Name = j.name, JobType = j.type, JobState = j.state,
      Message = j.message, MessageId = j.message_id, MessageArgs = arr(),
      PercentComplete = j.percent, StartTime = "TIME_NOW",
      EndTime = j.ended and protocol.iso(os.time()) or "TIME_NA",
      CompletionTime = j.ended and protocol.iso(os.time()) or json.null,
      TargetSettingsURI = j.target or json.null,
    })
  end

  resource("/redfish/v1/TaskService", { get = function()
    return P.odata("/redfish/v1/TaskService", "#TaskService.v1_1_0.TaskService", {
      Id = "TaskService", Name = "Task Service", ServiceEnabled = true,
      Tasks = link(C"/redfish/v1/TaskService/Tasks") })
  end })
  resource("/redfish/v1/TaskService/Tasks", { get = function()
    local m = {}
    for _, id in ipairs(st.job_order) do
      if st.jobs[id] then m[#m + 1] = "/redfish/v1/TaskService/Tasks/" .. id end
    end
    return P.collection(C"/redfish/v1/TaskService/Tasks", "#TaskCollection.TaskCollection", "Task Collection", m)
  end })

  --- Dynamic resources: job and task members.
  function dev.job_resource(path)
    local jid = path:match("^" .. MGR:gsub("%p", "%%%0") .. "/Jobs/(JID_%d+)$")
    local tid = path:match("^/redfish/v1/TaskService/Tasks/(JID_%d+)$")
    local j = st.jobs[jid or tid or ""]
    if not j then return nil end
    if jid then
      return {
        get = function() return dev.job_body(j) end,
        delete = function()
          if j.state == "Running" then
            return P.fail(400, "RAC0679", "Unable to delete the job because it is running.",
              { resolution = "Wait for the job to finish, then retry the operation." })
          end
          -- deleting a scheduled configuration job keeps its pending values
          st.jobs[j.id] = nil
          return P.success(200)
        end,
      }
    end
    return { get = function()
      return P.odata(path, "#Task.v1_1_0.Task", {
        Id = j.id, Name = j.name,
        TaskState = ({ Scheduled = "Pending", Running = "Running", Completed = "Completed", Failed = "Exception" })[j.state],
        TaskStatus = j.state == "Failed" and "Critical" or "OK",
        PercentComplete = j.percent,
        Messages = arr({ { Message = j.message, MessageId = j.message_id } }),
        Oem = { Dell = dev.job_body(j, MGR .. "/Jobs/" .. j.id) },
      })
    end }
  end

  -- ---- virtual media ---------------------------------------------------------------------

  local vm_base = (F.vmedia_under == "Systems" and SYS or MGR) .. "/VirtualMedia"
  dev.vm_base = vm_base
  resource(vm_base, { get = function()
    local m = {}
    for _, v in ipairs(F.vmedia) do m[#m + 1] = vm_base .. "/" .. v.id end
    return P.collection(C(vm_base), "#VirtualMediaCollection.VirtualMediaCollection", "Virtual Media Services", m)
  end })
  for _, d in ipairs(F.vmedia) do
    local path = vm_base .. "/" .. d.id
    resource(path, { get = function()
      local v = st.vmedia[d.id]
      return P.odata(path, "#VirtualMedia.v1_2_0.VirtualMedia", {
        Id = d.id, Name = d.types[1] == "USBStick" and "Virtual Removable Disk" or "Virtual CD",
        Description = "iDRAC Virtual Media Services Settings",
        MediaTypes = arr(copy(d.types)),
        Image = v.image, ImageName = v.image ~= json.null and v.image:match("[^/]*$") or json.null,
        Inserted = v.inserted, WriteProtected = true, ConnectedVia = v.connected_via,
        Actions = {
          ["#VirtualMedia.InsertMedia"] = { target = path .. "/Actions/VirtualMedia.InsertMedia" },
          ["#VirtualMedia.EjectMedia"] = { target = path .. "/Actions/VirtualMedia.EjectMedia" },
        },
      })
    end })
  end
end

return M
