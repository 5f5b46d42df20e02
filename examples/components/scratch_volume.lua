--- scratch_volume: a local stand-in for a TrueNAS zvol - one sparse file per
-- server under a directory. It has the whole contract (discover, plan, apply,
-- undo, housekeep) and needs no network, so it is the example workflow's
-- "main job" until the lab exists.
local component = require "sbot.component"
local fsio = require "sbot.fsio"

local function size_of(path)
  local st = fsio.stat(path, true)
  return st and st.type == "file" and st.size or nil
end

-- Create the file at `bytes`, or resize an existing one keeping its content
-- (a volume's data survives a resize, and the undo of one).
local function make_sparse(path, bytes)
  local have = size_of(path)
  if have and have > bytes then -- Lua has no truncate: coreutils' does it in place
    local ok, _, code = os.execute(string.format("truncate -s %d '%s'", bytes, (path:gsub("'", "'\\''"))))
    if not ok then error(string.format("%s: truncate to %d bytes failed (exit %s)", path, bytes, tostring(code)), 0) end
    return
  end
  local f = assert(io.open(path, have and "r+b" or "wb"))
  if bytes > 0 and bytes ~= have then
    assert(f:seek("set", bytes - 1))
    assert(f:write("\0"))
  end
  assert(f:close())
end

return component.define {
  name = "scratch_volume",
  description = "A sparse file standing in for a server's boot volume (zvol).",
  schema = {
    dir = { type = "string", required = true, description = "directory holding the volumes" },
    size_mb = { type = "integer", default = 64, min = 1, max = 1048576, description = "volume size in MiB" },
    prefix = { type = "string", default = "boot-", pattern = "^[%w_.-]*$",
      description = "file name prefix; the server id follows" },
  },

  discover = function(self)
    local path = self.config.dir .. "/" .. self.config.prefix .. self.id .. ".img"
    return { path = path, exists = size_of(path) ~= nil, size = size_of(path) }
  end,

  plan = function(self)
    local d, want = self.discovery, self.config.size_mb * 1048576
    if not d.exists then
      return { { resource = d.path, action = "create", after = { size = want },
        reason = "volume missing" } }
    elseif d.size ~= want then
      return { { resource = d.path, action = "update", before = { size = d.size },
        after = { size = want }, reason = "size differs" } }
    end
    return {}
  end,

  apply = function(self, change)
    assert(fsio.mkdirs(self.config.dir))
    make_sparse(change.resource, change.after.size)
    return { size = size_of(change.resource) }
  end,

  undo = function(self, change)
    if change.action == "create" then
      assert(os.remove(change.resource))
    else
      make_sparse(change.resource, change.before.size)
    end
  end,

  housekeep = function(self)
    local want = self.config.size_mb * 1048576
    local size = size_of(self.discovery.path)
    if size ~= want then
      error(string.format("%s: read back size %s, expected %d", self.discovery.path, tostring(size), want))
    end
    return { verified = true, size = size }
  end,
}
