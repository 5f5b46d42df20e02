-- The API reference covers everything a script can call:
--   * every C module (the preload list): each function is named in its page
--     docs/<name>.md (as `short.fn`) and has a LuaCATS stub with ---@param /
--     ---@return in types/sbot/<short>.lua (installed as share/sbot/types);
--   * every method of the objects C modules return (the registry's "sbot.*"
--     metatables, and component instances): named in the module's page as
--     `:method` and stubbed on the class named like the metatable;
--   * every Lua module lua/sbot/*.lua: each exported function named in a page,
--     and the methods of the objects they hand out (s3 clients, stores, run
--     records, workflows, Vault clients, schema registries).
local h = require "helpers"

local DOCS = h.source_dir .. "/docs"
local TYPES = h.source_dir .. "/types/sbot"

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local pages = {}
do
  local _, _, list = h.sh("ls " .. h.shquote(DOCS) .. "/*.md")
  for p in list:gmatch("[^\n]+") do pages[#pages + 1] = { path = p, text = read(p) } end
end

-- docs/<short>.md, or a page whose title line names the module (one page may
-- document several related modules: "# sbot.site, sbot.schema, ...").
local function page_for(name, short)
  local own = read(DOCS .. "/" .. short:gsub("%.", "-") .. ".md") or read(DOCS .. "/" .. short .. ".md")
  if own then return DOCS .. "/" .. short .. ".md", own end
  for _, p in ipairs(pages) do
    local title = p.text:match("^#[^\n]*")
    if title and (" " .. title .. " "):find("[%s,]" .. name:gsub("%p", "%%%0") .. "[%s,]") then
      return p.path, p.text
    end
  end
end

local function sorted_keys(t, pred)
  local out = {}
  for k, v in pairs(t) do
    if type(k) == "string" and not k:match("^_") and (not pred or pred(k, v)) then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

local function is_fn(_, v) return type(v) == "function" end

-- The methods of an object: its metatable's __index table (or `methods`).
local function methods_of(mt)
  if type(mt) ~= "table" then return {} end
  local idx = rawget(mt, "__index")
  local t = type(idx) == "table" and idx or rawget(mt, "methods")
  if type(t) ~= "table" then return {} end
  return sorted_keys(t, is_fn)
end

local C_MODULES, LUA_MODULES = {}, {}
for name in pairs(package.preload) do
  if name:match("^sbot%.[%w_.]+$") then C_MODULES[#C_MODULES + 1] = name end
end
table.sort(C_MODULES)
do
  local _, _, list = h.sh("ls " .. h.shquote(h.source_dir .. "/lua/sbot") .. "/*.lua")
  for p in list:gmatch("[^\n]+") do LUA_MODULES[#LUA_MODULES + 1] = "sbot." .. p:match("([%w_]+)%.lua$") end
  LUA_MODULES[#LUA_MODULES + 1] = "sbot.lab" -- lua/sbot/lab/init.lua (its device models are internal)
  table.sort(LUA_MODULES)
end

-- A stub of fn exists in text: `function <name><sep>fn(params)` right below
-- a block of `---` lines holding ---@param or ---@return (a function without
-- parameters and results: any `---` description).
local function stubbed(text, sep, fn)
  local pat = "\nfunction [%w_.]+" .. sep:gsub("%p", "%%%0") .. fn .. "%(([^)]*)%)"
  local init = 1
  while true do
    local s, e, params = text:find(pat, init)
    if not s then return false end
    local block = {}
    local before = text:sub(1, s)
    for line in before:gmatch("[^\n]*\n") do
      if line:match("^%-%-%-") then block[#block + 1] = line else block = {} end
    end
    local annotated = false
    for _, l in ipairs(block) do
      if l:match("^%-%-%-@param") or l:match("^%-%-%-@return") then annotated = true end
    end
    if annotated or (params == "" and #block > 0) then return true end
    init = e + 1
  end
end

local all_types = ""
do
  local _, _, list = h.sh("ls " .. h.shquote(TYPES) .. "/*.lua 2>/dev/null")
  for p in list:gmatch("[^\n]+") do all_types = all_types .. "\n" .. read(p) end
end

describe("API reference", function()
  it("the type stubs are Lua that loads, each ---@meta", function()
    local _, _, list = h.sh("ls " .. h.shquote(TYPES) .. "/*.lua")
    local n = 0
    for p in list:gmatch("[^\n]+") do
      n = n + 1
      assert(loadfile(p), "types: " .. p .. " does not compile")
      assert.matches("^%-%-%-@meta sbot%.", read(p), 1)
    end
    assert.is_true(n >= #C_MODULES, "a stub per C module")
  end)

  for _, name in ipairs(C_MODULES) do
    it("documents and types every function of the C module " .. name, function()
      local short = name:match("^sbot%.(.+)$")
      local path, doc
      if short:match("^component%.") then -- docs/component-<name>.md, else docs/<name>.md
        local last = short:match("[^.]+$")
        path, doc = page_for(name, "component-" .. last)
        if not doc then path, doc = page_for(name, last) end
      else
        path, doc = page_for(name, short)
      end
      assert(doc, "no reference page for " .. name .. " (docs/" .. short .. ".md, or a page titled '# ... "
        .. name .. " ...')")
      local mod = require(name)
      local undocumented, untyped = {}, {}
      local stub = read(TYPES .. "/" .. short .. ".lua")
      assert(stub, "no LuaCATS stub types/sbot/" .. short .. ".lua for " .. name)
      assert(stub:match("^%-%-%-@meta"), "types/sbot/" .. short .. ".lua must start with ---@meta")
      local prefix = short:match("[^.]+$")
      for _, k in ipairs(sorted_keys(mod, is_fn)) do
        if not doc:find(prefix .. "." .. k, 1, true) and not doc:find(short .. "." .. k, 1, true) then
          undocumented[#undocumented + 1] = prefix .. "." .. k
        end
        if not stubbed(stub, ".", k) then untyped[#untyped + 1] = k end
      end
      assert.are.same({}, undocumented, "undocumented in " .. path)
      assert.are.same({}, untyped, "no ---@param/---@return stub in types/sbot/" .. short .. ".lua")
    end)
  end

  it("documents and types every method of every object a C module returns", function()
    for _, name in ipairs(C_MODULES) do require(name) end
    local reg = debug.getregistry()
    local classes = {}
    for k, v in pairs(reg) do
      if type(k) == "string" and k:match("^sbot%.") and type(v) == "table" and #methods_of(v) > 0 then
        classes[k] = methods_of(v)
      end
    end
    -- component instances keep their methods in a table of their own
    local component = require "sbot.component"
    local Probe = component.define { name = "docs_probe", description = "docs_spec" }
    local inst = assert(Probe.new({}))
    classes["sbot.component.instance"] = methods_of(getmetatable(inst))
    assert.is_true(#classes["sbot.component.instance"] > 5)
    local missing = {}
    for class, meths in pairs(classes) do
      local module = class:match("^(sbot%.[%w_]+)")
      if class == "sbot.component.instance" then module = "sbot.component" end
      if class == "sbot.secret" then module = "sbot.log" end
      local short = module:match("^sbot%.(.+)$")
      local _, doc = page_for(module, short)
      local stubbed_class = all_types:find("---@class " .. class .. "\n", 1, true)
        or all_types:find("---@class " .. class .. " ", 1, true) or all_types:find("---@class " .. class .. ":", 1, true)
      for _, m in ipairs(meths) do
        if not (doc and doc:find(":" .. m, 1, true)) then missing[#missing + 1] = class .. ":" .. m .. " (docs)" end
        if not stubbed_class or not stubbed(all_types, ":", m) then
          missing[#missing + 1] = class .. ":" .. m .. " (types: ---@class " .. class .. ")"
        end
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  for _, name in ipairs(LUA_MODULES) do
    it("documents every function of the Lua module " .. name, function()
      local short = name:match("^sbot%.(.+)$")
      local path, doc = page_for(name, short)
      assert(doc, "no reference page for " .. name)
      local mod = require(name)
      local missing = {}
      for _, k in ipairs(sorted_keys(mod, is_fn)) do
        -- a module that is its objects' metatable (M.__index = M) documents
        -- their methods as obj:fn
        if not doc:find(short .. "." .. k, 1, true) and not doc:find(":" .. k .. "(", 1, true) then
          missing[#missing + 1] = short .. "." .. k
        end
      end
      assert.are.same({}, missing, "undocumented in " .. path)
    end)
  end

  it("documents the methods of the objects Lua modules hand out", function()
    local dir = h.tmpdir("docs")
    local objects = {
      { "sbot.s3", "s3.md", assert(require("sbot.s3").client { endpoint = "http://127.0.0.1:1", region = "us-east-1",
        access_key = "AKIDEXAMPLE", secret_key = "wJalrXUtnFEMI/K7MDENG" }) },
      { "sbot.store", "store.md", assert(require("sbot.store").open("file://" .. dir .. "/store")) },
      { "sbot.run", "workflow.md", assert(require("sbot.run").records(dir)) },
      { "sbot.workflow", "workflow.md", require("sbot.workflow").new { name = "w", steps = function() end } },
      { "sbot.vault", "vault.md", assert(require("sbot.vault").client { addr = "https://127.0.0.1:1",
        auth = { method = "token", token = "s.token-for-docs-spec" } }) },
      { "sbot.jsonschema", "jsonschema.md", require("sbot.jsonschema").new { type = "object" } },
    }
    local missing = {}
    for _, o in ipairs(objects) do
      local doc = assert(read(DOCS .. "/" .. o[2]))
      local module = require(o[1])
      for _, m in ipairs(methods_of(getmetatable(o[3]))) do
        local short = o[1]:match("[^.]+$")
        if not doc:find(":" .. m, 1, true) and not (module[m] and doc:find(short .. "." .. m, 1, true)) then
          missing[#missing + 1] = o[1] .. " object :" .. m .. " (" .. o[2] .. ")"
        end
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)
end)
