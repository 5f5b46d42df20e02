-- examples/environment.lua: show what this sbot installation offers.
-- Prints, as JSON, the sbot and Lua versions, where the Lua library is loaded
-- from, and which sbot modules load, then logs one line per module.
--   sbot run examples/environment.lua [--pretty]
local json = require "sbot.json"
local log = require "sbot.log"

local pretty = arg[1] == "--pretty"
if arg[1] and not pretty then
  io.stderr:write("usage: sbot run examples/environment.lua [--pretty]\n")
  os.exit(2)
end

local modules = {}
for name in pairs(package.preload) do
  if name:match("^sbot%.") or name == "cjson" then modules[#modules + 1] = name end
end
for _, name in ipairs({ "sbot.json", "sbot.pretty" }) do modules[#modules + 1] = name end
table.sort(modules)

local report = { sbot = _SBOT_VERSION, lua = _VERSION, modules = json.array() }
report.library = package.searchpath("sbot.json", package.path):gsub("/sbot/json%.lua$", "")
for _, name in ipairs(modules) do
  local ok, err = pcall(require, name)
  report.modules[#report.modules + 1] = { name = name, loaded = ok, error = (not ok) and err or nil }
  if ok then log.info("module loads", { module = name })
  else log.error("module does not load", { module = name, error = err }) end
end

print(json.encode(report, { indent = pretty, secrets = "redact" }))
for _, m in ipairs(report.modules) do
  if not m.loaded then os.exit(1) end
end
