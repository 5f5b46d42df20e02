--- test_kv: a Lua-defined test component. Its "device" is a JSON file of
-- key/value pairs (config.state_file); every phase call is appended to
-- config.calls_file, so tests can check order and that nothing was written,
-- also across fleet workers. Failure switches make each phase fail on demand.
local component = require "sbot.component"
local json = require "sbot.json"
local log = require "sbot.log"

local function read_json(path)
  local f = io.open(path, "rb")
  if not f then return {} end
  local s = f:read("a")
  f:close()
  return assert(json.decode(s))
end

local function write_json(path, t)
  local f = assert(io.open(path, "wb"))
  f:write(json.encode(t))
  f:close()
end

local function note(self, what)
  if not self.config.calls_file then return end
  local f = assert(io.open(self.config.calls_file, "ab"))
  f:write(self.id, " ", what, "\n")
  f:close()
end

return component.define {
  name = "test_kv",
  description = "Test component: keeps key/value pairs in a JSON file.",
  schema = {
    state_file = { type = "string", required = true, description = "the JSON file standing in for a device" },
    calls_file = { type = "string", description = "phase calls are appended here" },
    want = { type = "map", values = { type = "string" }, default = {}, description = "desired pairs" },
    fail_discover = { type = "boolean", default = false },
    hang_discover = { type = "boolean", default = false, description = "discover never returns" },
    slow_discover = { type = "number", description = "discover takes this many seconds" },
    fail_apply_on = { type = "string", description = "apply of this key raises" },
    fail_undo_on = { type = "string", description = "undo of this key raises" },
    password = { type = "secret", description = "a credential the component sends and reads back" },
    mode = { type = "string", enum = { "fast", "safe" }, default = "safe" },
    session_log = { type = "string", description = "the resource's open and close are appended here" },
    slow_close = { type = "number", description = "closing the resource takes this many seconds" },
    nested = { type = "table", fields = {
      port = { type = "integer", default = 443 },
      host = { type = "string", pattern = "^[%w.-]+$" },
    } },
  },

  -- a "session" that records its open and close (tests of graceful stops)
  open = function(self)
    local logfile = self.config.session_log
    local function mark(what)
      if not logfile then return end
      local f = assert(io.open(logfile, "ab"))
      f:write(self.id, " ", what, "\n")
      f:close()
    end
    mark("open")
    return { close = function()
      mark("closing")
      if self.config.slow_close then os.execute("sleep " .. self.config.slow_close) end
      mark("close")
      return true
    end }
  end,

  hooks = {
    value_for = { description = "the value wanted for a key (default: the configured one)",
      default = function(_, v) return v end },
  },

  discover = function(self)
    note(self, "discover")
    if self.config.fail_discover then error("cannot reach the device") end
    if self.config.hang_discover then
      local f = assert(io.open(self.config.calls_file .. ".pid", "w"))
      f:write(require "sbot.sys".getpid())
      f:close()
      while true do os.execute("sleep 0.05") end -- stopped only by an interruption
    end
    if self.config.slow_discover then os.execute("sleep " .. self.config.slow_discover) end
    local d = { pairs = read_json(self.config.state_file) }
    -- what the device will hold once converged, known before any change:
    -- the values later steps take (also in --plan)
    d.final = {}
    for k, v in pairs(d.pairs) do d.final[k] = v end
    for k, v in pairs(self.config.want) do d.final[k] = self:hook("value_for", k, v) end
    if self.config.password then
      -- a device that echoes the credential back as plain text
      d.echo = "login with " .. self.config.password:reveal()
      d.password = self.config.password
      log.info("logging in with " .. self.config.password:reveal())
    end
    return d
  end,

  plan = function(self)
    note(self, "plan")
    local have, changes = self.discovery.pairs, {}
    local keys = {}
    for k in pairs(self.config.want) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = self:hook("value_for", k, self.config.want[k])
      if have[k] ~= v then
        changes[#changes + 1] = { resource = "kv/" .. k, action = have[k] and "update" or "create",
          before = have[k], after = v, reason = "wanted" }
      end
    end
    return changes
  end,

  apply = function(self, change)
    local k = change.resource:sub(4)
    note(self, "apply " .. k)
    if k == self.config.fail_apply_on then error("device refused " .. k) end
    local t = read_json(self.config.state_file)
    t[k] = change.after
    write_json(self.config.state_file, t)
    return { written = k }
  end,

  undo = function(self, change)
    local k = change.resource:sub(4)
    note(self, "undo " .. k)
    if k == self.config.fail_undo_on then error("cannot undo " .. k) end
    local t = read_json(self.config.state_file)
    t[k] = change.before
    write_json(self.config.state_file, t)
  end,

  housekeep = function(self)
    note(self, "housekeep")
    local t = read_json(self.config.state_file)
    for k, want in pairs(self.config.want) do
      local v = self:hook("value_for", k, want)
      if t[k] ~= v then error("read back " .. k .. " = " .. tostring(t[k]) .. ", wanted " .. v) end
    end
    self:artifact { key = "state.json", content = json.encode(t), type = "application/json" }
    return { verified = true }
  end,
}
