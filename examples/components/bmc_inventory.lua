--- bmc_inventory: a read-only component that logs in to a server's BMC over
-- Redfish (sbot.redfish) and records what it finds: BMC generation and
-- firmware, model, service tag, power state, BIOS version and boot mode, NICs.
-- It plans no change: it is the kind of discovery the R630 component starts
-- from, written as a site-level example. Nothing here knows a path beyond the
-- service root: every resource is reached through the links the BMC gives,
-- so it works on iDRAC 8 and 9 (and other Redfish services) alike.
-- The server entry of the site gives `idrac = {host, user, password, tls}`.
local component = require "sbot.component"
local redfish = require "sbot.redfish"
local json = require "sbot.json"

local function link(doc, name)
  local l = type(doc) == "table" and doc[name]
  return type(l) == "table" and l["@odata.id"] or nil
end

local function members(doc)
  local out = {}
  for _, m in ipairs(type(doc) == "table" and doc.Members or {}) do
    if type(m) == "table" and m["@odata.id"] then out[#out + 1] = m["@odata.id"] end
  end
  return out
end

-- GET that raises with the client's message (which names the request and host).
local function get(c, path)
  local doc, err = c:get(path)
  if not doc then error(err, 0) end
  return doc
end

local function inventory(c)
  local info = assert(c:identify())
  local systems = members(get(c, assert(link(c.root, "Systems"), c.host .. ": the service root links no Systems")))
  if #systems == 0 then error(c.host .. ": the Systems collection lists no system", 0) end
  local system = get(c, systems[1])
  -- the BIOS and the NIC interfaces at once (a linked resource that is absent is recorded as such)
  local wanted = { bios = link(system, "Bios"), ifaces = link(system, "NetworkInterfaces") }
  local keys, paths = {}, {}
  for k, p in pairs(wanted) do keys[#keys + 1] = k; paths[#paths + 1] = p end
  local got = {}
  for i, r in ipairs(c:get_many(paths)) do
    if r.doc then got[keys[i]] = r.doc
    elseif r.status ~= 404 then error(r.error, 0) end
  end
  local nics = json.array()
  local adapters = {}
  for _, r in ipairs(c:get_many(members(got.ifaces))) do
    local a = r.doc and r.doc.Links and link(r.doc.Links, "NetworkAdapter")
    if a then adapters[#adapters + 1] = a end
  end
  local fn_colls = {}
  for _, r in ipairs(c:get_many(adapters)) do
    local f = r.doc and link(r.doc, "NetworkDeviceFunctions")
    if f then fn_colls[#fn_colls + 1] = f end
  end
  local fns = {}
  for _, r in ipairs(c:get_many(fn_colls)) do
    for _, p in ipairs(members(r.doc)) do fns[#fns + 1] = p end
  end
  for _, r in ipairs(c:get_many(fns)) do
    local fn = r.doc
    if fn then
      nics[#nics + 1] = { id = fn.Id, mac = fn.Ethernet and fn.Ethernet.MACAddress or json.null,
        iscsi_target = fn.iSCSIBoot and fn.iSCSIBoot.PrimaryTargetName or json.null }
    end
  end
  local bios = got.bios or { Attributes = {} }
  return {
    bmc = { vendor = info.vendor or json.null, generation = info.generation or json.null,
      family = info.family or json.null, firmware = info.firmware or json.null,
      redfish_version = info.redfish_version or json.null },
    redfish_version = info.redfish_version,
    model = system.Model, service_tag = system.SKU, power_state = system.PowerState,
    bios_version = system.BiosVersion, boot_mode = bios.Attributes.BootMode or json.null,
    boot_override = system.Boot and system.Boot.BootSourceOverrideTarget or json.null,
    nics = nics,
  }
end

return component.define {
  name = "bmc_inventory",
  description = "Log in to the server's BMC over Redfish and record its inventory (read-only).",
  schema = {
    timeout = { type = "number", default = 30, description = "seconds for each Redfish request" },
  },

  discover = function(self)
    local idrac = self.server and self.server.idrac
    if not idrac then error("server " .. self.id .. " has no idrac entry in the site", 0) end
    -- the session is deleted when this scope ends, on errors too
    local c <close>, err = redfish.connect { host = idrac.host, user = idrac.user,
      password = idrac.password, tls = idrac.tls, timeout = self.config.timeout }
    if not c then error(err, 0) end
    return inventory(c)
  end,

  housekeep = function(self)
    self:artifact { key = "inventory.json", type = "application/json",
      content = json.encode(self.discovery, { indent = true, secrets = "redact" }) .. "\n" }
    return { recorded = true }
  end,
}
