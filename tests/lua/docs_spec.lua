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

-- docs/<short>.md, or the page whose title line names the module (one page
-- may document several related modules: "# sbot.site, sbot.schema, ...").
local function page_for(name, short)
  local path = h.source_dir .. "/docs/" .. short .. ".md"
  local f = io.open(path, "r")
  if f then
    local doc = f:read("a")
    f:close()
    return path, doc
  end
  local _, _, list = h.sh("ls " .. h.shquote(h.source_dir .. "/docs") .. "/*.md")
  for p in list:gmatch("[^\n]+") do
    local text = h.read_file(p)
    local title = text:match("^#[^\n]*")
    if title and (" " .. title .. " "):find("[%s,]" .. name:gsub("%p", "%%%0") .. "[%s,]") then
      return p, text
    end
  end
end

describe("API reference", function()
  for _, name in ipairs(modules()) do
    it("documents " .. name, function()
      local short = name:match("^sbot%.(.+)$")
      local path, doc = page_for(name, short)
      assert(doc, "no reference page for " .. name .. " (docs/" .. short ..
        ".md, or a page titled '# ... " .. name .. " ...')")
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
