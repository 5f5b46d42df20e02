-- Modules never create globals: loading every Lua module of lua/sbot and every
-- C module of the preload list leaves _G as it was (reads of undefined globals
-- during loading are reported too, since they are usually typos).
local h = require "helpers"

local function lua_modules()
  local _, _, out = h.sh("cd " .. h.shquote(h.source_dir .. "/lua") .. " && find sbot -name '*.lua' | sort")
  local list = {}
  for path in out:gmatch("[^\n]+") do
    list[#list + 1] = path:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  end
  return list
end

describe("modules", function()
  it("create no globals when loaded", function()
    local names = lua_modules()
    for name in pairs(package.preload) do
      if name:match("^sbot%.") then names[#names + 1] = name end
    end
    table.sort(names)
    local before = {}
    for k in pairs(_G) do before[k] = true end
    local created, undefined = {}, {}
    local mt = getmetatable(_G)
    setmetatable(_G, {
      __newindex = function(t, k, v) created[#created + 1] = tostring(k); rawset(t, k, v) end,
      __index = function(_, k) undefined[tostring(k)] = true end,
    })
    local failures = {}
    for _, name in ipairs(names) do
      local ok, err = pcall(require, name)
      if not ok then failures[#failures + 1] = name .. ": " .. tostring(err) end
    end
    setmetatable(_G, mt)
    for k in pairs(_G) do
      if not before[k] then created[#created + 1] = tostring(k) end
    end
    local seen, unique = {}, {}
    for _, k in ipairs(created) do
      if not seen[k] then seen[k] = true; unique[#unique + 1] = k end
    end
    created = unique
    assert.are.same({}, failures)
    table.sort(created)
    assert.are.same({}, created)
    local reads = {}
    for k in pairs(undefined) do reads[#reads + 1] = k end
    table.sort(reads)
    assert.are.same({}, reads)
    assert.is_true(#names > 20)
  end)
end)
