-- Every C module in the preload list, and the public Lua modules, have a
-- reference page docs/<name>.md that names each of their functions.
local h = require "helpers"

local function modules()
  local list = {}
  for name in pairs(package.preload) do
    if name:match("^sbot%.[%w_]+$") then list[#list + 1] = name end
  end
  for _, name in ipairs({ "sbot.json", "sbot.pretty" }) do list[#list + 1] = name end
  table.sort(list)
  return list
end

describe("API reference", function()
  for _, name in ipairs(modules()) do
    it("documents " .. name, function()
      local short = name:match("^sbot%.(.+)$")
      local path = h.source_dir .. "/docs/" .. short .. ".md"
      local f = io.open(path, "r")
      assert(f, "missing reference page " .. path .. " for " .. name)
      local doc = f:read("a")
      f:close()
      local mod = require(name)
      local missing = {}
      for k, v in pairs(mod) do
        if type(v) == "function" and not k:match("^_") and
           not doc:find(short .. "." .. k, 1, true) then
          missing[#missing + 1] = short .. "." .. k
        end
      end
      table.sort(missing)
      assert.are.same({}, missing, "undocumented in " .. path)
    end)
  end
end)
