--- sbot.help: text for `sbot help component NAME`.
local schema = require "sbot.schema"

local M = {}

--- Help text of component `name` (its description, phases and config
-- schema with defaults), or nil and why it cannot be found.
function M.component(name)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    return nil, "component name must be an identifier, got " .. tostring(name)
  end
  local ok, mod = pcall(require, "sbot.component." .. name)
  if not ok then
    local modname = "sbot.component." .. name
    if package.searchpath(modname, package.path) or package.preload[modname] then
      -- it exists but does not load: say why instead of "no component"
      return nil, "component '" .. name .. "' does not load: " .. tostring(mod)
    end
    return nil, "no component '" .. name .. "': " .. tostring(mod):gsub("\n.*", ""):gsub(":$", "")
      .. " (Lua components are found on package.path as sbot/component/" .. name
      .. ".lua; add a directory with LUA_PATH=\"DIR/?.lua;;\")"
  end
  if type(mod) ~= "table" or type(mod.new) ~= "function" then
    return nil, "sbot.component." .. name .. " is not a component module (no .new)"
  end
  local phases = {}
  for _, p in ipairs { "discover", "plan", "apply", "undo", "housekeep" } do
    if mod.spec and mod.spec[p] then phases[#phases + 1] = p end
  end
  local out = { "component " .. name }
  if mod.description then out[#out + 1] = "\n" .. mod.description end
  out[#out + 1] = "\nphases: " .. (#phases > 0 and table.concat(phases, ", ") or "none")
  if mod.spec and mod.spec.open then
    out[#out + 1] = "resource: open(self) once before the first phase; closed after the last"
  end
  local hooks = {}
  for h in pairs(mod.hooks or {}) do hooks[#hooks + 1] = h end
  table.sort(hooks)
  if #hooks > 0 then
    out[#out + 1] = "\nhooks (the site file's hooks = { NAME = function(...) end } overrides the default):"
    local w = 0
    for _, h in ipairs(hooks) do w = math.max(w, #h) end
    for _, h in ipairs(hooks) do
      local d = mod.hooks[h]
      out[#out + 1] = string.format("  %-" .. w .. "s  %s%s", h, d.description,
        d.default and "" or " (no default: the site must define it)")
    end
  end
  out[#out + 1] = "\nconfig (require \"sbot.component." .. name .. "\".new(config)):"
  if mod.schema and next(mod.schema) then
    out[#out + 1] = schema.describe(mod.schema)
  else
    out[#out + 1] = "  (no configuration)"
  end
  return table.concat(out, "\n") .. "\n"
end

return M
