--- sbot.explore: what `sbot repl --site FILE` sets up, so discovery can be
-- explored interactively. Globals it defines:
--   site                      the loaded site (secrets print as <redacted>)
--   server(id)                one server's table
--   component(name, id [, config])  a component instance for server id, with
--                             config = base < site.components[name] < server.components[name]
--   discover(name, id [, config])   that instance after discover(); look at .discovery
--   plan(name, id [, config])       after discover() and plan(); look at .plan (no writes)
-- discover() and plan() close the component's resource (its open()) when done;
-- component() leaves that to you (c:close()).
local site_mod = require "sbot.site"

local M = {}

function M.open(path)
  local site, err = site_mod.load(path)
  if not site then return nil, err end
  local function server(id)
    return assert(site_mod.server(site, id))
  end
  local function component(name, id, base)
    if type(name) ~= "string" then error("component(name, server_id [, config]): name must be a string", 2) end
    local s = server(id)
    local Module = require("sbot.component." .. name)
    local config = {}
    for _, t in ipairs { base or {}, site.components and site.components[name] or {},
      s.components and s.components[name] or {} } do
      for k, v in pairs(t) do config[k] = v end
    end
    return assert(Module.new(config, { id = s.id, site = site, server = s }))
  end
  _G.site = site
  _G.server = server
  _G.component = component
  _G.discover = function(name, id, base)
    local c = component(name, id, base)
    c:discover()
    c:close()
    return c
  end
  _G.plan = function(name, id, base)
    local c = component(name, id, base)
    if c:discover() then c:plan() end
    c:close()
    return c
  end
  local ids = {}
  for i, s in ipairs(site.servers) do ids[i] = s.id end
  return string.format("site %s: %d server(s): %s\n"
    .. "globals: site, server(id), component(name, id), discover(name, id), plan(name, id)\n",
    path, #ids, table.concat(ids, ", "))
end

return M
