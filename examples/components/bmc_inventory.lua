--- bmc_inventory: a read-only component that logs in to a server's iDRAC
-- over Redfish and records what it finds (model, service tag, power state,
-- BIOS version and boot mode, NICs). It plans no change: it is the kind of
-- discovery the R630 component starts from, written as a site-level example.
-- The server entry of the site gives `idrac = {host, user, password, tls}`.
local component = require "sbot.component"
local http = require "sbot.http"
local json = require "sbot.json"
local log = require "sbot.log"

-- One Redfish session; every request goes through it and it is always
-- deleted, on error paths too (iDRACs allow few sessions).
local Session = {}
Session.__index = Session

local function fail(what, res)
  local msg = res.body and res.body:match('"Message"%s*:%s*"([^"]*)"') or ""
  error(string.format("%s: HTTP %d %s", what, res.status, msg), 0)
end

function Session.open(idrac, timeout)
  local base = "https://" .. idrac.host
  local s = setmetatable({ base = base, tls = idrac.tls, timeout = timeout }, Session)
  local res, err = http.post(base .. "/redfish/v1/Sessions", {
    headers = { ["Content-Type"] = "application/json" },
    body = json.encode { UserName = idrac.user, Password = idrac.password:reveal() },
    tls = idrac.tls, timeout = timeout,
  })
  if not res then error("login to " .. base .. ": " .. err, 0) end
  if res.status ~= 201 and res.status ~= 200 then fail("login to " .. base, res) end
  s.token = res.headers["x-auth-token"]
  s.location = res.headers["location"]
  if not s.token then error("login to " .. base .. ": no X-Auth-Token in the answer", 0) end
  return s
end

function Session:get(path)
  local res, err = http.get(self.base .. path, { headers = { ["X-Auth-Token"] = self.token },
    tls = self.tls, timeout = self.timeout })
  if not res then error(err, 0) end
  if res.status ~= 200 then fail("GET " .. path, res) end
  local doc, jerr = json.decode(res.body)
  if not doc then error("GET " .. path .. ": " .. jerr, 0) end
  return doc
end

function Session:close()
  if not self.location then return end
  local path = self.location:gsub("^https?://[^/]+", "")
  local res, err = http.delete(self.base .. path, { headers = { ["X-Auth-Token"] = self.token },
    tls = self.tls, timeout = self.timeout })
  self.location = nil
  if not res or (res.status ~= 200 and res.status ~= 204) then
    -- say so: a leaked session counts against the BMC's few until it times out
    log.warn("could not delete Redfish session " .. self.base .. path .. " (it stays until the BMC times it out): "
      .. (res and ("HTTP " .. res.status) or tostring(err)))
  end
end

local function link(doc, name)
  local l = doc[name]
  return type(l) == "table" and l["@odata.id"] or nil
end

local function inventory(s)
  local root = s:get("/redfish/v1")
  local systems = s:get(assert(link(root, "Systems"), "service root has no Systems link"))
  local first = type(systems.Members) == "table" and systems.Members[1]
  if not (first and first["@odata.id"]) then
    error(s.base .. "/redfish/v1: the Systems collection lists no system", 0)
  end
  local system = s:get(first["@odata.id"])
  local bios = link(system, "Bios") and s:get(link(system, "Bios")) or { Attributes = {} }
  local nics = json.array()
  local ifaces = link(system, "NetworkInterfaces")
  if ifaces then
    for _, m in ipairs(s:get(ifaces).Members or {}) do
      local iface = s:get(m["@odata.id"])
      local adapter = iface.Links and iface.Links.NetworkAdapter
      if adapter then
        local a = s:get(adapter["@odata.id"])
        local fns = link(a, "NetworkDeviceFunctions")
        for _, f in ipairs(fns and s:get(fns).Members or {}) do
          local fn = s:get(f["@odata.id"])
          nics[#nics + 1] = { id = fn.Id, mac = fn.Ethernet and fn.Ethernet.MACAddress,
            iscsi_target = fn.iSCSIBoot and fn.iSCSIBoot.PrimaryTargetName or json.null }
        end
      end
    end
  end
  return {
    redfish_version = root.RedfishVersion,
    model = system.Model, service_tag = system.SKU, power_state = system.PowerState,
    bios_version = system.BiosVersion, boot_mode = bios.Attributes.BootMode or json.null,
    boot_override = system.Boot and system.Boot.BootSourceOverrideTarget or json.null,
    nics = nics,
  }
end

return component.define {
  name = "bmc_inventory",
  description = "Log in to the server's iDRAC over Redfish and record its inventory (read-only).",
  schema = {
    timeout = { type = "number", default = 30, description = "seconds for each Redfish request" },
  },

  discover = function(self)
    local idrac = self.server and self.server.idrac
    if not idrac then error("server " .. self.id .. " has no idrac entry in the site", 0) end
    local s = Session.open(idrac, self.config.timeout)
    local ok, result = pcall(inventory, s)
    s:close()
    if not ok then error(result, 0) end
    return result
  end,

  housekeep = function(self)
    self:artifact { key = "inventory.json", type = "application/json",
      content = json.encode(self.discovery, { indent = true, secrets = "redact" }) .. "\n" }
    return { recorded = true }
  end,
}
