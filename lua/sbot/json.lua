--- sbot.json: JSON for sbot, on lua-cjson.
--
-- Decoding is cjson's. Encoding is done here so that the output is what an
-- operator wants to diff and a server expects:
--   * object keys are sorted, so the same table always gives the same text;
--   * `json.null` encodes as null (and is what null decodes to);
--   * an empty table encodes as {} unless marked as an array: `json.array{}`
--     or `json.empty_array` encode as [];
--   * a decoded JSON array is marked with the array metatable, so [] decodes
--     to an empty table that encodes back as [];
--   * secret objects (metatable __name "sbot.secret") encode as "<redacted>";
--   * NaN and infinities are errors (they are not JSON).
-- `json.encode(v, {indent = true})` pretty-prints with two-space indentation.
local cjson = require "cjson"

local M = {}

local math_type = math.type

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

local function encode_value(v, out, indent, depth, path, seen)
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
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__name == "sbot.secret" then
      out[#out + 1] = '"<redacted>"'
      return
    end
    if type(mt) == "table" and mt.__tojson then
      return encode_value(mt.__tojson(v), out, indent, depth, path, seen)
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
          encode_value(v[i], out, indent, depth + 1, path .. "[" .. i .. "]", seen)
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
          encode_value(v[k], out, indent, depth + 1, path .. "." .. tostring(k), seen)
        end
        out[#out + 1] = close_nl .. "}"
      end
    end
    seen[v] = nil
  else
    error("json.encode: " .. path .. " is a " .. tv .. ", which JSON cannot represent", 0)
  end
end

--- Encode v as JSON text. opts.indent = true pretty-prints.
-- Raises on values JSON cannot represent (misuse), naming their path.
function M.encode(v, opts)
  local out = {}
  encode_value(v, out, opts and opts.indent, 0, "value", {})
  return table.concat(out)
end

-- cjson decodes [] and {} to the same empty table. To keep the difference,
-- empty arrays outside strings are rewritten to hold one sentinel string
-- before decoding (sbot.jsonscan, one pass in C), and turned back into
-- marked empty arrays after. The sentinel is short (a 60 MB answer may hold
-- millions of []): a string of one NUL byte, which JSON can only spell
-- "\u0000"; a text that holds that string itself gets the long sentinel.
local SHORT, SHORT_JSON = "\0", '["\\u0000"]'
local LONG, LONG_JSON = "\0sbot.json.empty-array\0", '["\\u0000sbot.json.empty-array\\u0000"]'

-- Mark the arrays of a decoded tree (tables with keys 1..n, n > 0) and turn
-- sentinel arrays into empty marked ones; one pass over each table.
local function mark_arrays(v, sentinel)
  if v[1] == sentinel and next(v, 1) == nil then
    v[1] = nil
    return setmetatable(v, array_mt)
  end
  local n, seq = 0, true
  for k, x in pairs(v) do
    n = n + 1
    if seq and (math_type(k) ~= "integer" or k < 1) then seq = false end
    if type(x) == "table" then mark_arrays(x, sentinel) end
  end
  if seq and n > 0 and n == #v then setmetatable(v, array_mt) end
  return v
end

--- Decode JSON text. Returns the value, or nil and "invalid JSON: ..." for bad input.
-- null becomes json.null; arrays (empty ones too) are marked as arrays, so a
-- decoded document encodes back to the same structure.
function M.decode(s)
  if type(s) ~= "string" then
    error("json.decode: expected a string, got " .. type(s), 2)
  end
  local sentinel, text = SHORT, s
  if s:find("%[%s*%]") then
    local long = s:find('"\\u0000"', 1, true) ~= nil
    sentinel = long and LONG or SHORT
    text = require("sbot.jsonscan").empty_arrays(s, long and LONG_JSON or SHORT_JSON)
  end
  local ok, v = pcall(cjson.decode, text)
  text = nil -- the rewritten copy can go while the tree is marked
  if not ok then
    return nil, "invalid JSON: " .. (tostring(v):gsub("^Expected", "expected"))
  end
  if type(v) ~= "table" then return v end
  return mark_arrays(v, sentinel)
end

return M
