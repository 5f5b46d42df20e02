--- sbot.help: text for `sbot help component NAME` and `sbot help workflows`.
local schema = require "sbot.schema"

local M = {}

--- Help text of component `name` (its description, phases and config
-- schema with defaults), or nil and why it cannot be found.
function M.component(name)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    return nil, "component name must be an identifier, got " .. tostring(name)
  end
  local modname = "sbot.component." .. name
  local ok, mod = pcall(require, modname)
  if not ok then
    if not tostring(mod):find("module '" .. modname .. "' not found:", 1, true) then
      -- it exists but does not load: say why instead of "no component"
      return nil, "component '" .. name .. "' does not load: " .. tostring(mod)
    end
    return nil, "no component '" .. name .. "' (looked for " .. name .. ".lua in "
      .. table.concat(require("sbot.component").path(), ", ")
      .. "; add a directory with SBOT_COMPONENT_PATH=DIR)"
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

-- The spec a workflow file declares, loaded without running it:
-- sbot.workflow.new raises it back to us (workflow._describe). Returns the
-- spec, or nil and why not.
local function describe_workflow(path)
  -- Lua shortens a long chunk name to "..." and its last characters: the
  -- whole path is what names the file
  local function whole(msg)
    msg = tostring(msg):match("^[^\n]*")
    if #path + 1 > 60 then
      local short = "..." .. path:sub(-56)
      local at = msg:find(short, 1, true)
      if at then msg = msg:sub(1, at - 1) .. path .. msg:sub(at + #short) end
    end
    return msg
  end
  local chunk, err = loadfile(path, "t")
  if not chunk then return nil, "does not load: " .. whole(err) end
  local workflow = require "sbot.workflow"
  local found, exit_mark = {}, {}
  local saved_arg, saved_exit, saved_print = _G.arg, os.exit, _G.print
  workflow._describe = found
  _G.arg = { [0] = path }
  os.exit = function() error(exit_mark, 0) end
  _G.print = function() end
  local ok, e = pcall(chunk)
  workflow._describe, _G.arg, os.exit, _G.print = nil, saved_arg, saved_exit, saved_print
  if not ok and getmetatable(e) == found then return e.spec end
  if not ok and e ~= exit_mark then return nil, "does not load: " .. whole(e) end
  return nil, "defines no workflow (no workflow.new{...})"
end

--- Text of `sbot help workflows`: each NAME.lua in the directories `dirs`
-- (an earlier directory's NAME hides a later one's, as for `sbot run NAME`)
-- with its description.
function M.workflows(dirs)
  local fsio = require "sbot.fsio"
  local rows, seen = {}, {}
  for _, dir in ipairs(dirs) do
    local names = {}
    for _, e in ipairs(fsio.list(dir) or {}) do
      local name = e.name:match("^([%w_.%-]+)%.lua$")
      if name and e.type ~= "directory" then names[#names + 1] = name end
    end
    table.sort(names)
    for _, name in ipairs(names) do
      if not seen[name] then
        seen[name] = true
        local spec, why = describe_workflow(dir .. "/" .. name .. ".lua")
        local text = spec and (spec.description or "(no description)") or ("(" .. why .. ")")
        rows[#rows + 1] = { name, (tostring(text):gsub("%s+", " ")) }
      end
    end
  end
  local out = {}
  if #rows == 0 then
    out[1] = "no workflows"
  else
    out[1] = "workflows (sbot run NAME --site FILE; sbot run NAME --help for its options):"
    local w = 0
    for _, r in ipairs(rows) do w = math.max(w, #r[1]) end
    for _, r in ipairs(rows) do out[#out + 1] = "  " .. r[1] .. string.rep(" ", w - #r[1]) .. "  " .. r[2] end
  end
  out[#out + 1] = "searched: " .. table.concat(dirs, ", ")
    .. " (more directories: SBOT_WORKFLOW_PATH=DIR[:DIR...])"
  return table.concat(out, "\n") .. "\n"
end

return M
