--- sbot.repl: the Lua side of `sbot repl` (engine/repl.c does the terminal):
-- Tab completion of Lua expressions and of the string arguments of the
-- explore functions, and the :help text.
--
-- Completion never runs code: it walks tables with rawget and follows
-- metatables' __index only when that is a table (never calls __index
-- functions or any other function), so Tab has no side effect.
local M = {}

--- Completers of a function's first string argument, by global name:
-- arg_completers.run = function() return {"20261126T120301Z-4f9a2c", ...} end
-- makes run("2026<Tab> complete run ids. sbot.explore fills it.
M.arg_completers = {}

--- Extra sections of :help (sbot.explore adds its own).
M.help_sections = {}

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto",
  "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

local IDENT = "^[%a_][%w_]*"
local MAX_INDEXES = 50 -- list entries offered as [1] .. [n]

-- v[key] without calling anything: rawget, then the metatable's __index
-- while it is a table.
local function safe_get(v, key)
  for _ = 1, 8 do
    if type(v) == "table" then
      local x = rawget(v, key)
      if x ~= nil then return x end
    end
    local mt = getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index")
    if type(idx) ~= "table" then return nil end
    v = idx
  end
end

-- Every key of v and of its __index tables: {key = value}.
local function keys_of(v)
  local out = {}
  for _ = 1, 8 do
    if type(v) == "table" then
      for k, x in next, v do
        if out[k] == nil then out[k] = x end
      end
    end
    local mt = getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index")
    if type(idx) ~= "table" then break end
    v = idx
  end
  return out
end

-- What comes after a completed key: "(" for a function, "." for a table.
local function suffix(x)
  if type(x) == "function" then return "(" end
  if type(x) == "table" then return "." end
  return ""
end

-- Parse text from position i as  name (.name | :name | ["str"] | [int])* <tail>
-- where <tail> is the part being completed. Returns {path = {keys...},
-- base = text up to the tail, kind = "root" | "." | ":" | "[" | '["' | "['",
-- partial} or nil.
local function parse(text, i)
  local name = text:match(IDENT, i)
  if not name then return nil end
  local p = i + #name
  if p > #text then return { path = {}, base = text:sub(1, i - 1), kind = "root", partial = name } end
  local path = { name }
  while p <= #text do
    local c = text:sub(p, p)
    if c == "." or c == ":" then
      local id = text:match(IDENT, p + 1) or ""
      if p + #id == #text then
        return { path = path, base = text:sub(1, p - 1), kind = c, partial = id }
      end
      if id == "" or c == ":" then return nil end
      path[#path + 1] = id
      p = p + 1 + #id
    elseif c == "[" then
      local q, key = text:match("^([\"'])(.-)%1%]", p + 1)
      if q then
        path[#path + 1] = key
        p = p + 1 + #key + 3
      else
        local n = text:match("^(%d+)%]", p + 1)
        if n then
          path[#path + 1] = math.tointeger(tonumber(n))
          p = p + #n + 2
        else
          local q2, part = text:match("^([\"'])([^\"']*)$", p + 1)
          if q2 then return { path = path, base = text:sub(1, p - 1), kind = "[" .. q2, partial = part } end
          if p == #text then return { path = path, base = text:sub(1, p - 1), kind = "[", partial = "" } end
          return nil
        end
      end
    else
      return nil
    end
  end
  return nil -- ends with a complete index: nothing to complete
end

local function sorted(t)
  table.sort(t)
  return t
end

-- Candidates for a string argument: fname("par<Tab>.
local function complete_argument(text, before)
  local q, partial = text:match("^([\"'])(.*)$")
  if not q then return nil end
  local fname = before:match("([%a_][%w_]*)%s*%(%s*$")
  local completer = fname and M.arg_completers[fname]
  if not completer then return nil end
  local ok, list = pcall(completer)
  if not ok or type(list) ~= "table" then return {} end
  local out = {}
  for _, s in ipairs(list) do
    s = tostring(s)
    if s:sub(1, #partial) == partial then out[#out + 1] = q .. s .. q end
  end
  return sorted(out)
end

--- Completions of `text` (the word before the cursor; `before` is the rest
-- of the line in front of it): a list of strings, each replacing text.
function M.complete(text, before)
  text, before = tostring(text or ""), tostring(before or "")
  local args = complete_argument(text, before)
  if args then return args end
  local parsed
  for i = 1, #text do
    local prev = i > 1 and text:sub(i - 1, i - 1) or ""
    if text:sub(i, i):match("[%a_]") and not prev:match("[%w_.:%]\"']") then
      parsed = parse(text, i)
      if parsed then break end
    end
  end
  if not parsed then return {} end
  local out = {}
  local partial, base = parsed.partial, parsed.base
  if parsed.kind == "root" then
    for k, x in pairs(keys_of(_G)) do
      if type(k) == "string" and k:match(IDENT .. "$") and k:sub(1, #partial) == partial then
        out[#out + 1] = base .. k .. suffix(x)
      end
    end
    for _, k in ipairs(KEYWORDS) do
      if k:sub(1, #partial) == partial then out[#out + 1] = base .. k end
    end
    return sorted(out)
  end
  local v = _G
  for _, key in ipairs(parsed.path) do
    v = safe_get(v, key)
    if v == nil then return {} end
  end
  local keys = keys_of(v)
  local ints = 0
  for k, x in pairs(keys) do
    if type(k) == "string" and k:sub(1, #partial) == partial then
      local ident = k:match(IDENT .. "$") ~= nil
      if parsed.kind == ":" then
        if type(x) == "function" and ident then out[#out + 1] = base .. ":" .. k .. "(" end
      elseif parsed.kind == "." and ident then
        out[#out + 1] = base .. "." .. k .. suffix(x)
      elseif parsed.kind == "['" then
        out[#out + 1] = base .. "['" .. k .. "']" .. suffix(x)
      else -- ".", "[" or '["': a key that is no identifier needs brackets
        out[#out + 1] = base .. '["' .. k .. '"]' .. suffix(x)
      end
    elseif math.type(k) == "integer" and partial == "" and (parsed.kind == "." or parsed.kind == "[") then
      ints = ints + 1
      if ints <= MAX_INDEXES then out[#out + 1] = base .. "[" .. k .. "]" .. suffix(x) end
    end
  end
  return sorted(out)
end

--- The :help text.
function M.help()
  local out = { [[
sbot repl: each line is evaluated as Lua in one persistent interpreter.
  expressions     are printed (tables with inspect; secrets as <redacted>)
  statements      run as they are; an unfinished one continues on the next line
  require "sbot.<name>"  loads a module, e.g. local log = require "sbot.log"
  Tab             completes globals and table fields (t.fi<Tab>, obj:me<Tab>,
                  t["key<Tab>, t.list[<Tab>) without running anything
  Ctrl-C          stops running code; Ctrl-D or :quit leaves
  :help           this text
]] }
  for _, s in ipairs(M.help_sections) do out[#out + 1] = s end
  return table.concat(out)
end

return M
