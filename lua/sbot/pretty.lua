--- sbot.pretty: human-readable rendering of Lua values (the REPL's printer).
-- Tables are rendered with lua-inspect; secret objects (log.is_secret) print
-- as <redacted>, and every string
-- registered with sbot.log.add_secret is redacted from the output too.
local log = require "sbot.log"

local M = {}

local ok, inspect = pcall(require, "inspect")
if not ok then inspect = nil end

local is_secret = log.is_secret -- the one test of the secret type

local function process(item, path)
  if is_secret(item) then return log.REDACTED end
  if path[#path] == inspect.METATABLE then return nil end
  return item
end

--- Render one value as a string. A table whose metatable has a
-- `__pretty(t) -> text` function renders as that text (the REPL's aligned
-- tables: discover_all, runs, run); every other table with inspect.
function M.format(v)
  if is_secret(v) then return log.REDACTED end
  local s
  local mt = type(v) == "table" and getmetatable(v)
  if type(mt) == "table" and type(rawget(mt, "__pretty")) == "function" then
    s = tostring(mt.__pretty(v))
  elseif type(v) == "string" then
    s = string.format("%q", v)
  elseif type(v) == "table" and inspect then
    s = inspect(v, { process = process })
  else
    s = tostring(v)
  end
  return log.redact(s)
end

--- Print each argument on its own line; returns its arguments (like vim.print).
function M.print(...)
  local n = select("#", ...)
  for i = 1, n do
    io.stdout:write(M.format((select(i, ...))), "\n")
  end
  io.stdout:flush()
  return ...
end

return M
