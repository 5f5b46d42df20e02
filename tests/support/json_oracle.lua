--- The pure-Lua encoder sbot.json had before engine/jsonc.c (lua/sbot/json.lua
-- at af9b8b5, its decoder left out): the oracle json_diff_spec and bench/json.lua
-- compare the C encoder with. Not used by sbot itself.
--
-- sbot.json: JSON for sbot, on lua-cjson.
--
-- Decoding is cjson's. Encoding is done here so that the output is what an
-- operator wants to diff and a server expects:
--   * object keys are sorted, so the same table always gives the same text;
--   * `json.null` encodes as null (and is what null decodes to);
--   * an empty table encodes as {} unless marked as an array: `json.array{}`
--     or `json.empty_array` encode as [];
--   * a decoded JSON array is marked with the array metatable, so [] decodes
--     to an empty table that encodes back as [];
--   * a secret object is encoded only as the caller says: `secrets =
--     "redact"` writes "<redacted>" (records, logs, display), `secrets =
--     "reveal"` writes its value (only a protocol client building a request
--     body asks for that); without either (`secrets = "error"`, the default)
--     it is refused, so no JSON carries a secret, redacted or not, by accident;
--   * NaN and infinities are errors (they are not JSON).
-- `json.encode(v, {indent = true})` pretty-prints with two-space indentation.
local cjson = require "cjson"
local log = require "sbot.log"

local M = {}

M.null = cjson.null

local array_mt = { __name = "sbot.json.array" }
M.array_mt = array_mt

--- Mark t (or a new table) as a JSON array; returns it.
function M.array(t)
  return setmetatable(t or {}, array_mt)
end

M.empty_array = setmetatable({}, {
  __name = "sbot.json.array",
  __newindex = function() error("json.empty_array is read-only", 2) end,
})

function M.is_array(t)
  local mt = getmetatable(t)
  return mt == array_mt or (mt and mt.__name == "sbot.json.array") or false
end

-- cjson.encode of a string gives it quoted and escaped; it also escapes "/",
-- which JSON allows but nobody wants to read in a URL.
local function quote(s)
  return (cjson.encode(s):gsub("\\/", "/"))
end

local function is_sequence(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n > 0 and n == #t
end

local SECRETS = { redact = true, reveal = true, error = true }

local function encode_value(v, out, opts, depth, path, seen)
  local indent = opts.indent
  local tv = type(v)
  if v == nil or v == M.null then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("json.encode: " .. path .. " is " .. tostring(v) .. ", which JSON cannot represent", 0)
    end
    if math.type(v) == "integer" then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif tv == "string" then
    out[#out + 1] = quote(v)
  elseif tv == "table" or tv == "userdata" then
    if log.is_secret(v) then
      if opts.secrets == "reveal" then
        out[#out + 1] = quote(v:reveal())
      elseif opts.secrets == "redact" then
        out[#out + 1] = '"' .. log.REDACTED .. '"'
      else
        error("json.encode: " .. path .. " is a secret, and this JSON was asked to carry none "
          .. "(secrets = \"error\", the default): a record or a display encodes with secrets = \"redact\", "
          .. "a protocol client that must send it with secrets = \"reveal\"", 0)
      end
      return
    end
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__tojson then
      return encode_value(mt.__tojson(v), out, opts, depth, path, seen)
    end
    if tv == "userdata" then
      error("json.encode: " .. path .. " is a userdata, which JSON cannot represent", 0)
    end
    if seen[v] then error("json.encode: " .. path .. " refers to itself (cycle)", 0) end
    if depth > 1000 then error("json.encode: " .. path .. " is nested too deeply", 0) end
    seen[v] = true
    local nl = indent and ("\n" .. string.rep("  ", depth + 1)) or ""
    local close_nl = indent and ("\n" .. string.rep("  ", depth)) or ""
    local colon = indent and ": " or ":"
    if M.is_array(v) or is_sequence(v) then
      local n = #v
      for k in pairs(v) do
        if math.type(k) ~= "integer" or k < 1 then
          error("json.encode: " .. path .. " is an array with a non-integer key " .. tostring(k), 0)
        end
        if k > n then n = k end
      end
      if n == 0 then
        out[#out + 1] = "[]"
      else
        out[#out + 1] = "["
        for i = 1, n do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl
          encode_value(v[i], out, opts, depth + 1, path .. "[" .. i .. "]", seen)
        end
        out[#out + 1] = close_nl .. "]"
      end
    else
      local keys = {}
      for k in pairs(v) do
        local tk = type(k)
        if tk == "string" then
          keys[#keys + 1] = k
        elseif tk == "number" then
          keys[#keys + 1] = k -- numbers become string keys, like cjson
        else
          error("json.encode: " .. path .. " has a " .. tk .. " key, which JSON cannot represent", 0)
        end
      end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      if #keys == 0 then
        out[#out + 1] = "{}"
      else
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl
          out[#out + 1] = quote(tostring(k))
          out[#out + 1] = colon
          encode_value(v[k], out, opts, depth + 1, path .. "." .. tostring(k), seen)
        end
        out[#out + 1] = close_nl .. "}"
      end
    end
    seen[v] = nil
  else
    error("json.encode: " .. path .. " is a " .. tv .. ", which JSON cannot represent", 0)
  end
end

--- Encode v as JSON text. opts.indent = true pretty-prints; opts.secrets is
-- "error" (default), "redact" or "reveal" (see the header).
-- Raises on values JSON cannot represent (misuse), naming their path.
function M.encode(v, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("json.encode: opts must be a table, got " .. type(opts), 2) end
  if opts.secrets ~= nil and not SECRETS[opts.secrets] then
    error("json.encode: secrets must be \"error\", \"redact\" or \"reveal\", got " .. tostring(opts.secrets), 2)
  end
  local out = {}
  encode_value(v, out, opts, 0, "value", {})
  return table.concat(out)
end

return M
