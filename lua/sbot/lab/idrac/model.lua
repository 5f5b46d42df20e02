--- sbot.lab.idrac.model: the simulated server behind the iDRAC — its plain
-- state tables, its clock, configuration jobs, power and what it boots.
--
-- Time only moves when a request (or /lab/state) calls advance(): due events
-- (a job finishing, a graceful shutdown completing, the host booting) run in
-- time order. Durations are the flavour-independent defaults scaled by the
-- lab's --time-scale.
--
-- Booting follows the firmware: a one-time request (SCP BootOnce, BIOS
-- OneTimeBootMode, a Boot override with a target) is consumed, then the boot
-- sequence of the current BootMode is tried device by device. What was tried
-- and what the host finally booted lands in st.boots (shown in /lab/state);
-- sbot lab's boot hooks (the TrueNAS model) log in to the iSCSI target.
local json = require "sbot.json"
local registry = require "sbot.lab.idrac.registry"

local M = {}

M.FLAVOURS = {
  [8] = { generation = 8, firmware = "2.75.75.75", redfish = "1.4.0", model = "13G Monolithic",
    system_model = "PowerEdge R630", system_id = "0x0600", msg = "IDRAC.1.6.", base = "Base.1.2.",
    sessions = "/redfish/v1/Sessions", bios_version = "2.19.0", server = "Appweb/4.5.4",
    bios_registry = "v1_0_0", bios_registry_version = "1.0.0",
    reset_types = { "On", "ForceOff", "ForceRestart", "GracefulShutdown", "PushPowerButton", "Nmi" },
    vmedia_under = "Managers", vmedia = { { id = "RemovableDisk", types = { "USBStick" } },
      { id = "CD", types = { "CD", "DVD" } } },
    image_schemes = { http = true, nfs = true },
    scp_key = "#OemManager.v1_1_0#OemManager.ImportSystemConfiguration",
    max_sessions = 8, apply_time = false },
  [9] = { generation = 9, firmware = "6.10.30.00", redfish = "1.17.0", model = "14G Monolithic",
    system_model = "PowerEdge R640", system_id = "0x0716", msg = "IDRAC.2.8.", base = "Base.1.12.",
    sessions = "/redfish/v1/SessionService/Sessions", bios_version = "2.19.1", server = "Apache",
    bios_registry = "v1_0_3", bios_registry_version = "1.0.3",
    reset_types = { "On", "ForceOff", "ForceRestart", "GracefulRestart", "GracefulShutdown",
      "PushPowerButton", "Nmi", "PowerCycle" },
    vmedia_under = "Systems", vmedia = { { id = "2", types = { "USBStick" } },
      { id = "1", types = { "CD", "DVD" } } },
    image_schemes = { http = true, https = true, nfs = true, cifs = true },
    scp_key = "#OemManager.v1_4_0#OemManager.ImportSystemConfiguration",
    max_sessions = 8, apply_time = true },
}

M.BOOT_TARGETS = { "None", "Pxe", "Cd", "Floppy", "Hdd", "BiosSetup", "Utilities", "UefiTarget",
  "SDCard", "UefiHttp" }
M.OVERRIDE_ENABLED = { "Once", "Continuous", "Disabled" }

M.SYS = "/redfish/v1/Systems/System.Embedded.1"
M.MGR = "/redfish/v1/Managers/iDRAC.Embedded.1"
M.CHASSIS = "/redfish/v1/Chassis/System.Embedded.1"
M.JOB_SERVICE = "/redfish/v1/Dell/Managers/iDRAC.Embedded.1/DellJobService"

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return setmetatable(c, getmetatable(t))
end

--- How long the server and its iDRAC take at time scale 1 (`sbot lab
-- --pace`): durations in seconds, answer = the {min, max} milliseconds every
-- Redfish answer takes (none: at once). quick is the lab's default, for
-- tests; field is a Dell R630 with iDRAC 8 as the field notes describe it
-- (docs/lab.md): answers ~0.3 s to several seconds, a configuration job
-- applied at a reboot takes minutes, SYS518 for a while after a reset.
M.PACES = {
  quick = { durations = { job = 0.5, reboot = 1.0, not_ready = 1.0, shutdown = 0.5 } },
  field = { durations = { job = 120, reboot = 180, not_ready = 60, shutdown = 30 }, answer = { 300, 2000 } },
}

--- The model of one server. opts: index, flavour, clock, scale, pace (a
-- name in M.PACES, default quick), faults (injector), on_boot(dev, boot).
-- dev: the device table being built (gets st and the functions below).
function M.new(dev, opts)
  local F = dev.F
  local index = opts.index or 1
  local clock = opts.clock or os.time
  local pace = M.PACES[opts.pace or "quick"] or error("lab iDRAC: unknown pace " .. tostring(opts.pace), 2)
  local dur = {}
  for k, v in pairs(pace.durations) do dur[k] = v * (opts.scale or 1) end
  dev.dur = dur

  local tag = string.format("LAB%04d", index)
  dev.tag = tag
  local bios_reg = registry.bios()
  local iscsi_reg = registry.iscsi_boot()
  dev.bios_reg, dev.iscsi_reg = bios_reg, iscsi_reg
  local bios_current = registry.defaults(bios_reg)
  bios_current.SystemModelName = F.system_model
  bios_current.SystemServiceTag = tag
  bios_current.SystemBiosVersion = F.bios_version
  bios_current.IscsiInitiatorName = string.format("iqn.1988-11.com.dell:%s", tag:lower())

  local nics = {}
  for p = 1, registry.NIC_PORTS do
    nics[p] = {
      fqdd = registry.nic_fqdd(p),
      mac = string.format("24:6E:96:%02X:%02X:%02X", index // 256, index % 256, 0x10 + p),
      iscsi = registry.defaults(iscsi_reg),
      pending = {},
      legacy_boot_proto = p == 1 and "PXE" or "NONE",
    }
  end

  local vmedia = {}
  for _, v in ipairs(F.vmedia) do
    vmedia[v.id] = { id = v.id, types = v.types, inserted = false, image = json.null,
      connected_via = "NotConnected" }
  end

  local st = {
    power = "On",
    -- at rest a real R630 shows Enabled "Once" with target "None"
    boot = { target = "None", enabled = "Once", mode = "UEFI", uefi_target = "" },
    bios = { current = bios_current, pending = {} },
    nics = nics,
    sessions = {}, next_session = 1,
    jobs = {}, job_order = {}, next_job = 0,
    vmedia = vmedia,
    idrac_attrs = { ["ServerBoot.1#BootOnce"] = "Disabled", ["ServerBoot.1#FirstBootDevice"] = "Normal" },
    not_ready_until = 0,
    events = {},
    boots = {},
    resets = 0,
    counts = { requests = 0, by_status = {}, by_method = {}, gets = {}, writes = 0, write_log = {},
      logins = 0, logouts = 0, leaked_logins = 0, unchanged_attributes = {}, fetches = 0 },
  }
  dev.st = st

  -- ---- time ----------------------------------------------------------------

  function dev.now() return clock() end

  function dev.at(t, what, fn)
    st.events[#st.events + 1] = { at = t, what = what, fn = fn }
  end

  --- Run every event that is due, in time order.
  function dev.advance()
    local t = clock()
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

  -- ---- jobs ------------------------------------------------------------------

  local JOB_NAMES = { bios = "Configure: BIOS.Setup.1-1", scp = "Import Configuration" }
  local JOB_TYPES = { bios = "BIOSConfiguration", nic = "NICConfiguration", scp = "ImportConfiguration" }

  function dev.new_job(kind, target, extra)
    st.next_job = st.next_job + 1
    local id = string.format("JID_%012d", 700000000000 + index * 100000 + st.next_job)
    local job = { id = id, kind = kind, target = target, type = JOB_TYPES[kind],
      name = JOB_NAMES[kind] or ("Configure: " .. (target and target:match("NetworkDeviceFunctions/([^/]+)") or "NIC")),
      state = "Scheduled", percent = 0, message = "Task successfully scheduled.",
      message_id = "JCP001", created = clock() }
    for k, v in pairs(extra or {}) do job[k] = v end
    st.jobs[id] = job
    st.job_order[#st.job_order + 1] = id
    return job
  end

  function dev.active_job_for(target)
    for _, id in ipairs(st.job_order) do
      local j = st.jobs[id]
      if j and j.target == target and (j.state == "Scheduled" or j.state == "Running") then return j end
    end
  end

  --- Any configuration change waiting: pending values or unfinished jobs.
  function dev.pending_changes()
    if next(st.bios.pending) then return "BIOS.Setup.1-1" end
    for _, n in ipairs(nics) do
      if next(n.pending) then return n.fqdd end
    end
    for _, id in ipairs(st.job_order) do
      local j = st.jobs[id]
      if j and (j.state == "Scheduled" or j.state == "Running") then return j.id end
    end
  end

  -- The UEFI sequence after a change of the iSCSI device: a newly enabled
  -- device is put first (the lab's firmware choice), a disabled one removed.
  local function fix_uefi_seq(attrs)
    local function eff(name) return attrs[name] end
    local devices = registry.seq_devices("UefiBootSeq", eff)
    local have = {}
    for _, d in ipairs(devices) do have[d] = true end
    local seq = registry.split_seq(attrs.UefiBootSeq or "")
    local out, seen = {}, {}
    for _, d in ipairs(seq) do
      if have[d] and not seen[d] then out[#out + 1] = d; seen[d] = true end
    end
    for _, d in ipairs(devices) do
      if not seen[d] then
        if d == registry.UEFI_ISCSI_DEVICE then table.insert(out, 1, d) else out[#out + 1] = d end
      end
    end
    attrs.UefiBootSeq = table.concat(out, ",")
  end

  local function apply_bios(values)
    for k, v in pairs(values) do st.bios.current[k] = v end
    fix_uefi_seq(st.bios.current)
  end
  dev.apply_bios = apply_bios

  local function apply_changes(job)
    if job.kind == "bios" then
      apply_bios(st.bios.pending)
      st.bios.pending = {}
    elseif job.kind == "nic" then
      local nic = nics[job.port]
      for k, v in pairs(nic.pending) do nic.iscsi[k] = v end
      nic.pending = {}
    elseif job.kind == "scp" then
      local c = job.changes
      for k, v in pairs(c.idrac) do st.idrac_attrs[k] = v end
      apply_bios(c.bios)
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
      job.state, job.message, job.message_id = "Failed",
        "Unable to complete the configuration job: an internal error occurred while applying the settings (injected fault).",
        "SYS051"
      if job.kind == "bios" then st.bios.pending = {} end
      if job.kind == "nic" then nics[job.port].pending = {} end
    else
      apply_changes(job)
      job.state, job.message, job.message_id = "Completed", "Job completed successfully.", "PR19"
    end
    job.percent = 100
    job.ended = t
  end

  function dev.run_job(job, t)
    job.state, job.percent, job.started = "Running", 10, t
    job.message = "Job in progress."
    dev.at(t + dur.job / 2, "job progress " .. job.id, function()
      if job.state == "Running" then job.percent = 50 end
    end)
    dev.at(t + dur.job, "job " .. job.id, function(t2) finish_job(job, t2) end)
  end

  -- ---- booting -----------------------------------------------------------------

  -- The CHAP user and secret an iSCSI boot logs in with, by boot record:
  -- kept beside the record (which /lab/state shows), never in it.
  local boot_chap = setmetatable({}, { __mode = "k" })

  --- The CHAP credentials {user, secret} the firmware used for boot record b
  -- (nil: none); the lab's TrueNAS logs in with them (its boot_hook).
  function dev.boot_chap(b) return boot_chap[b] end

  --- Try one boot device; returns a boot record (ok = true when it booted)
  -- or nil and why it could not boot.
  local function try_device(d)
    local a = st.bios.current
    if d:match("^iSCSI%.") then
      if a.IscsiDev1EnDis ~= "Enabled" or a.IscsiDev1Con1EnDis ~= "Enabled" then
        return nil, "iSCSI device 1 connection 1 is disabled"
      end
      local chap = a.IscsiDev1Con1Auth == "Chap"
      local b = { source = "iSCSI", via = "bios", device = d,
        target = { name = a.IscsiDev1Con1TargetName, ip = a.IscsiDev1Con1TargetIp,
          port = a.IscsiDev1Con1Port, lun = tonumber(a.IscsiDev1Con1Lun) or 0,
          initiator = a.IscsiInitiatorName, interface = a.IscsiDev1Con1Interface,
          chap = chap and a.IscsiDev1Con1ChapName or nil } }
      if chap then boot_chap[b] = { user = a.IscsiDev1Con1ChapName, secret = a.IscsiDev1Con1ChapSecret or "" } end
      return b
    elseif d:match("^Optical%.iDRACVirtual") then
      local cd = dev.virtual_cd()
      if not cd or not cd.inserted then return nil, "no virtual media inserted" end
      local info, why = dev.read_image(cd.image)
      if not info then return nil, "virtual CD unreadable: " .. why end
      return { source = "VirtualCD", device = d, image = cd.image, volume_id = info.volume_id }
    elseif d:match("^NIC%.PxeDevice") then
      return nil, "PXE: no DHCP offer with a boot file on the lab network"
    elseif d:match("^NIC%.Integrated") then
      local port = tonumber(d:match("^NIC%.Integrated%.1%-(%d)"))
      local nic = port and nics[port]
      if not nic then return nil, "no such NIC" end
      local i = nic.iscsi
      if nic.legacy_boot_proto == "iSCSI" or (i.PrimaryTargetName ~= "" and not i.TargetInfoViaDHCP) then
        local chap = i.AuthenticationMethod == "CHAP" or i.AuthenticationMethod == "MutualCHAP"
        local b = { source = "iSCSI", via = "nic", device = d,
          target = { name = i.PrimaryTargetName, ip = i.PrimaryTargetIPAddress, port = i.PrimaryTargetTCPPort,
            lun = i.PrimaryLUN, initiator = i.InitiatorName, interface = nic.fqdd,
            chap = chap and i.CHAPUsername or nil } }
        if chap then boot_chap[b] = { user = i.CHAPUsername, secret = i.CHAPSecret or "" } end
        return b
      end
      return nil, "PXE: no DHCP offer with a boot file on the lab network"
    elseif d:match("^Disk%.SDInternal") then
      return nil, "internal SD card: no bootable partition"
    elseif d:match("^RAID%.") or d:match("^HardDisk") then
      return { source = "Hdd", device = d }
    end
    return nil, "unknown boot device " .. d
  end

  --- What the server boots, as the firmware decides it (one-time requests
  -- are consumed here).
  local function boot_decision()
    local tried = {}
    local function attempt(d, why_once)
      local b, why = try_device(d)
      if b then
        b.tried = json.array(tried)
        b.once = why_once
        return b
      end
      tried[#tried + 1] = { device = d, error = why, once = why_once }
    end
    -- SCP ServerBoot.1#BootOnce (iDRAC 8's way to boot the virtual CD once)
    local ia = st.idrac_attrs
    if ia["ServerBoot.1#BootOnce"] == "Enabled" and ia["ServerBoot.1#FirstBootDevice"] ~= "Normal" then
      local d = ia["ServerBoot.1#FirstBootDevice"]
      ia["ServerBoot.1#BootOnce"], ia["ServerBoot.1#FirstBootDevice"] = "Disabled", "Normal"
      local map = { ["VCD-DVD"] = "Optical.iDRACVirtual.1-1", HDD = "RAID.Integrated.1-1",
        PXE = "NIC.PxeDevice.1-1" }
      if map[d] then
        local b = attempt(map[d], "scp")
        if b then return b end
      else
        tried[#tried + 1] = { device = d, error = "one-time device not simulated", once = "scp" }
      end
    end
    -- BIOS one-time boot
    local a = st.bios.current
    if a.OneTimeBootMode ~= "Disabled" then
      local mode = a.OneTimeBootMode
      st.bios.current.OneTimeBootMode = "Disabled"
      local d = mode == "OneTimeUefiBootSeq" and a.OneTimeUefiBootSeqDev
        or mode == "OneTimeBootSeq" and a.OneTimeBootSeqDev or nil
      if d then
        local b = attempt(d, "bios")
        if b then return b end
      else
        tried[#tried + 1] = { device = mode, error = "one-time mode not simulated", once = "bios" }
      end
    end
    -- Boot override (Cd is the physical drive, which has no disc in the lab)
    if st.boot.target ~= "None" and st.boot.enabled ~= "Disabled" then
      local t = st.boot.target
      if st.boot.enabled == "Once" then st.boot.target = "None" end
      local map = { Pxe = "NIC.PxeDevice.1-1", Hdd = "RAID.Integrated.1-1", SDCard = "Disk.SDInternal.1-1" }
      if t == "Cd" then
        tried[#tried + 1] = { device = "Cd", once = "override",
          error = "physical optical drive: no bootable disc (the virtual CD is not Cd on iDRAC 8)" }
      elseif t == "UefiTarget" then
        local found
        for _, o in pairs(dev.boot_options()) do
          if o.path == st.boot.uefi_target then found = o.ref end
        end
        local b = found and attempt(found, "override")
        if b then return b end
        if not found then
          tried[#tried + 1] = { device = st.boot.uefi_target, error = "no such UEFI device path", once = "override" }
        end
      elseif map[t] then
        local b = attempt(map[t], "override")
        if b then return b end
      else
        tried[#tried + 1] = { device = t, error = "override target not simulated", once = "override" }
      end
    end
    -- the boot sequence of the boot mode
    local seq = a.BootMode == "Uefi" and a.UefiBootSeq or a.BootSeq
    for _, d in ipairs(registry.split_seq(seq)) do
      local b = attempt(d)
      if b then return b end
    end
    return { source = "none", ok = false, error = "No boot device available.", tried = json.array(tried) }
  end

  local function boot(t)
    if st.power ~= "On" then return end
    local b = boot_decision()
    if b.ok == nil then b.ok = true end
    b.time = t
    b.n = #st.boots + 1
    st.boots[#st.boots + 1] = b
    if b.ok and opts.on_boot then
      local ok, e = pcall(opts.on_boot, dev, b)
      if not ok then b.hook_error = tostring(e) end
      if type(b.iscsi_login) == "table" and b.iscsi_login.ok == false then b.ok = false end
    end
  end

  -- ---- power -------------------------------------------------------------------

  --- The host comes up at time t: the iDRAC is busy for a while (SYS518),
  -- scheduled jobs run, then it boots.
  function dev.power_on(t)
    st.power = "On"
    st.resets = st.resets + 1
    st.pending_off = nil
    st.not_ready_until = t + dur.not_ready
    for _, id in ipairs(st.job_order) do
      local j = st.jobs[id] -- nil once deleted
      if j and j.state == "Scheduled" then dev.run_job(j, t) end
    end
    dev.at(t + dur.reboot, "boot", boot)
  end

  function dev.power_off(t)
    st.power = "Off"
    st.pending_off = nil
    st.off_at = t
  end

  --- An ACPI shutdown request: the OS powers off after a while, or (fault
  -- `noshutdown`) ignores it.
  function dev.graceful_shutdown(t)
    if dev.faults and dev.faults.chance("noshutdown") then
      st.ignored_shutdowns = (st.ignored_shutdowns or 0) + 1
      return
    end
    st.pending_off = true
    dev.at(t + dur.shutdown, "graceful shutdown", function(t2)
      if st.pending_off and st.power == "On" then dev.power_off(t2) end
    end)
  end

  function dev.boot_options()
    return {
      Boot0001 = { name = "Integrated NIC 1 Port 1 Partition 1", ref = "NIC.PxeDevice.1-1",
        path = "VenHw(3A191845-5F86-4E78-8FCE-C4CFF59F9DAA)" },
      Boot0002 = { name = "Internal SD: Internal SD Card", ref = "Disk.SDInternal.1-1",
        path = "PciRoot(0x0)/Pci(0x14,0x0)/USB(0xD,0x0)" },
      Boot0003 = { name = "Integrated RAID Controller 1: Windows Boot Manager", ref = "RAID.Integrated.1-1",
        path = "HD(1,GPT,0C3A3B46-7EE8-4E21-A0C2-17F9F1D1D2E7,0x800,0x82000)" },
      Boot0004 = { name = "Virtual Optical Drive", ref = "Optical.iDRACVirtual.1-1",
        path = "PciRoot(0x0)/Pci(0x1D,0x0)/USB(0x1,0x0)/USB(0x4,0x0)/USB(0x2,0x0)" },
    }
  end

  --- The virtual media device that takes CDs (picked by MediaTypes).
  function dev.virtual_cd()
    for _, v in pairs(st.vmedia) do
      for _, ty in ipairs(v.types) do
        if ty == "CD" then return v end
      end
    end
  end

  dev.copy = copy
  return dev
end

return M
