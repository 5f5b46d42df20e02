--- boot_script: writes each server's iPXE script that boots it from its iSCSI
-- volume (sanboot), as a file under a directory an HTTP server would serve.
-- Local only: no network, so it runs anywhere.
local component = require "sbot.component"
local fsio = require "sbot.fsio"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  assert(f:write(text))
  assert(f:close())
  assert(os.rename(tmp, path))
end

-- The script this server should have (the site's name_target hook may
-- choose the target name).
local function wanted(self)
  local name = self:hook("name_target", self.server or { id = self.id })
  if type(name) ~= "string" or name == "" then
    error("site hook name_target(" .. self.id .. ") returned " .. type(name) .. ", expected a target name", 0)
  end
  local target = self.config.basename .. ":" .. name
  local volume = self.config.volume and (" volume " .. self.config.volume) or ""
  return string.format("#!ipxe\n# %s%s\nsanboot iscsi:%s::::%s\n", self.id, volume, self.config.portal, target)
end

return component.define {
  name = "boot_script",
  description = "The iPXE script that boots a server from its iSCSI target.",
  schema = {
    dir = { type = "string", required = true, description = "directory of the scripts" },
    portal = { type = "string", required = true, pattern = "^[%w.:%-]+$",
      description = "iSCSI portal (IP or IP:port)" },
    basename = { type = "string", default = "iqn.2005-10.org.freenas.ctl",
      description = "target IQN basename; the target name follows after ':'" },
    volume = { type = "string", description = "the volume the target serves (a comment in the script)" },
  },

  hooks = {
    name_target = { description = "name_target(server): the server's iSCSI target name "
      .. "(after the basename and ':'); default the server id",
      default = function(server) return server.id end },
  },

  discover = function(self)
    local path = self.config.dir .. "/" .. self.id .. ".ipxe"
    return { path = path, content = read(path) }
  end,

  plan = function(self)
    local want = wanted(self)
    local have = self.discovery.content
    if have == want then return {} end
    return { { resource = self.discovery.path, action = have and "update" or "create",
      before = have, after = want } }
  end,

  apply = function(self, change)
    assert(fsio.mkdirs(self.config.dir))
    write_atomic(change.resource, change.after)
  end,

  undo = function(self, change)
    if change.before then write_atomic(change.resource, change.before)
    else assert(os.remove(change.resource)) end
  end,

  housekeep = function(self)
    local path = self.discovery.path
    -- verify against the desired script, not against what this run planned:
    -- with --phases discover,housekeep nothing was planned or written
    if read(path) ~= wanted(self) then
      error(path .. ": content read back differs from the script this server should have", 0)
    end
    self:artifact { key = self.id .. ".ipxe", file = path, type = "text/plain" }
    return { verified = true }
  end,
}
