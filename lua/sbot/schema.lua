--- sbot.schema: declarative validation of configuration tables.
--
-- A schema is a table of field specs keyed by field name:
--   { hostname = { type = "string", required = true, description = "BMC host" },
--     port     = { type = "integer", default = 443 },
--     mode     = { type = "string", enum = { "uefi", "bios" } },
--     bmc      = { type = "table", fields = { password = { type = "secret" } } },
--     macs     = { type = "list", items = { type = "string", pattern = "^%x%x:" } },
--     labels   = { type = "map", values = { type = "string" } } }
-- Types: string, number, integer, boolean, table (with `fields`: closed, every
-- key declared; without: any table), list (`items`), map (string keys,
-- `values`), function, secret (a secret object; a plain string is wrapped),
-- any. Other keys of a spec: required, default, enum, pattern (Lua pattern),
-- min, max (numbers; lengths for strings and lists), description.
local json = require "sbot.json"
local secret = require "sbot.secret"

local M = {}

local TYPES = { string = true, number = true, integer = true, boolean = true, table = true,
  list = true, map = true, ["function"] = true, secret = true, any = true }
local SPEC_KEYS = { type = true, required = true, default = true, enum = true, pattern = true,
  description = true, fields = true, items = true, values = true, min = true, max = true }

-- Which strings are identifiers (asked for every field of every server of a
-- site: remembered rather than matched each time).
local is_ident = setmetatable({}, { __index = function(t, k)
  local v = k:match("^[%a_][%w_]*$") ~= nil
  t[k] = v
  return v
end })

local function key_path(prefix, k)
  if type(k) == "number" then return prefix .. "[" .. k .. "]" end
  if type(k) ~= "string" or not is_ident[k] then
    return prefix .. "[" .. string.format("%q", tostring(k)) .. "]"
  end
  if prefix == "" then return k end
  return prefix .. "." .. k
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

---------------------------------------------------------------------------
-- Checking the schema itself (a bad schema is a programming error: raises).

local check_fields

local function check_spec(spec, path)
  if type(spec) ~= "table" then
    error("schema " .. path .. ": field spec must be a table, got " .. type(spec), 0)
  end
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then error("schema " .. path .. ": unknown spec key '" .. tostring(k) .. "'", 0) end
  end
  if not TYPES[spec.type] then
    error("schema " .. path .. ": type must be one of string, number, integer, boolean, table, "
      .. "list, map, function, secret, any; got " .. tostring(spec.type), 0)
  end
  if spec.fields ~= nil then
    if spec.type ~= "table" then error("schema " .. path .. ": 'fields' needs type table", 0) end
    check_fields(spec.fields, path)
  end
  if spec.items ~= nil then
    if spec.type ~= "list" then error("schema " .. path .. ": 'items' needs type list", 0) end
    check_spec(spec.items, path .. "[]")
  end
  if spec.values ~= nil then
    if spec.type ~= "map" then error("schema " .. path .. ": 'values' needs type map", 0) end
    check_spec(spec.values, path .. ".*")
  end
  if spec.enum ~= nil and (type(spec.enum) ~= "table" or #spec.enum == 0) then
    error("schema " .. path .. ": enum must be a non-empty list", 0)
  end
  if spec.pattern ~= nil and type(spec.pattern) ~= "string" then
    error("schema " .. path .. ": pattern must be a string", 0)
  end
  if spec.description ~= nil and type(spec.description) ~= "string" then
    error("schema " .. path .. ": description must be a string", 0)
  end
end

function check_fields(fields, path)
  if type(fields) ~= "table" then
    error("schema " .. (path == "" and "" or path .. " ") .. "must be a table of field specs, got "
      .. type(fields), 0)
  end
  for _, k in ipairs(sorted_keys(fields)) do
    if type(k) ~= "string" then error("schema " .. path .. ": field names must be strings", 0) end
    check_spec(fields[k], key_path(path, k))
  end
end

--- Raise if `fields` is not a valid schema (names the bad spec's path).
function M.check(fields)
  check_fields(fields, "")
  return fields
end

---------------------------------------------------------------------------
-- Validation.

--- Deepest nesting a config value may have below a schema field (a table
-- nested deeper, or one that contains itself, is an error, not a crash).
M.MAX_DEPTH = 64

--- The source of a secret written in clear in a config (sbot.site refuses
-- a file readable by others that holds one).
M.LITERAL_SOURCE = "literal in config"

-- Copy of v; a cycle or nesting deeper than MAX_DEPTH is an error at its
-- key path (ancestors: the tables being copied above this one).
local function deep_copy(v, path, errors, ancestors, depth)
  if type(v) ~= "table" or secret.is_secret(v) then return v end
  ancestors, depth = ancestors or {}, depth or 0
  if ancestors[v] then
    errors[#errors + 1] = path .. ": refers to itself (a cycle); a config value must be a tree"
    return nil
  end
  if depth >= M.MAX_DEPTH then
    errors[#errors + 1] = path .. ": nested deeper than " .. M.MAX_DEPTH .. " levels"
    return nil
  end
  ancestors[v] = true
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x, key_path(path, k), errors, ancestors, depth + 1) end
  ancestors[v] = nil
  return setmetatable(c, getmetatable(v))
end

local function type_name(v)
  if secret.is_secret(v) then return "secret" end
  if math.type(v) == "float" then return "number" end
  if math.type(v) == "integer" then return "integer" end
  return type(v)
end

local function is_list(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

local validate_fields

local function validate_value(spec, v, path, errors)
  local t = spec.type
  local function bad(msg) errors[#errors + 1] = path .. ": " .. msg; return nil end
  local function expected(what)
    local shown = ""
    if t == "secret" then shown = "" -- a mistyped secret (password = 1234) is still a secret
    elseif type(v) == "string" then shown = string.format(" %q", v)
    elseif type(v) == "number" or type(v) == "boolean" then shown = " " .. tostring(v) end
    return bad("expected " .. what .. ", got " .. type_name(v) .. shown)
  end
  if t == "any" then
    return deep_copy(v, path, errors)
  elseif t == "secret" then
    if secret.is_secret(v) then return v end
    if type(v) == "string" then
      local short = secret.too_short(v)
      if short then return bad("the secret written here " .. short) end
      return secret.new(v, M.LITERAL_SOURCE)
    end
    return expected("a secret (secret:PATH:KEY or a string)")
  elseif t == "string" then
    if type(v) ~= "string" then return expected("string") end
  elseif t == "number" then
    if type(v) ~= "number" then return expected("number") end
  elseif t == "integer" then
    if math.type(v) ~= "integer" then
      if math.type(v) == "float" and v == math.floor(v) and v >= math.mininteger and v <= math.maxinteger then
        v = math.tointeger(v)
      else
        return expected("integer")
      end
    end
  elseif t == "boolean" then
    if type(v) ~= "boolean" then return expected("boolean") end
  elseif t == "function" then
    if type(v) ~= "function" then return expected("function") end
    return v
  elseif t == "table" then
    if type(v) ~= "table" or secret.is_secret(v) then return expected("table") end
    if spec.fields then return validate_fields(spec.fields, v, path, errors) end
    return deep_copy(v, path, errors)
  elseif t == "list" then
    if type(v) ~= "table" or secret.is_secret(v) or not is_list(v) then
      return expected("list")
    end
    local out = json.array {}
    for i, x in ipairs(v) do
      out[i] = spec.items and validate_value(spec.items, x, key_path(path, i), errors)
        or deep_copy(x, key_path(path, i), errors)
    end
    v = out
  elseif t == "map" then
    if type(v) ~= "table" or secret.is_secret(v) then return expected("table (map)") end
    local out = {}
    for _, k in ipairs(sorted_keys(v)) do
      if type(k) ~= "string" then
        bad("map keys must be strings, got " .. type(k) .. " " .. tostring(k))
      else
        out[k] = spec.values and validate_value(spec.values, v[k], key_path(path, k), errors)
          or deep_copy(v[k], key_path(path, k), errors)
      end
    end
    v = out
  end
  if spec.enum then
    local found = false
    for _, e in ipairs(spec.enum) do if e == v then found = true break end end
    if not found then
      local names = {}
      for i, e in ipairs(spec.enum) do names[i] = tostring(e) end
      return bad("expected one of " .. table.concat(names, ", ") .. ", got " .. tostring(v))
    end
  end
  if spec.pattern and type(v) == "string" and not v:match(spec.pattern) then
    return bad(string.format("%q does not match pattern %s", v, spec.pattern))
  end
  local size = type(v) == "number" and v or (type(v) == "string" or type(v) == "table") and #v or nil
  if size and spec.min and size < spec.min then
    return bad((type(v) == "number" and "must be at least " or "length must be at least ") .. spec.min)
  end
  if size and spec.max and size > spec.max then
    return bad((type(v) == "number" and "must be at most " or "length must be at most ") .. spec.max)
  end
  return v
end

-- The sorted names of a schema's fields, sorted once per schema table (a
-- site's schema is applied to every one of its servers) and again only when
-- the number of fields changed (site.add_section adds one).
local field_names = setmetatable({}, { __mode = "k" })
local function names_of(fields)
  local n = 0
  for _ in pairs(fields) do n = n + 1 end
  local ks = field_names[fields]
  if not ks or #ks ~= n then
    ks = sorted_keys(fields)
    field_names[fields] = ks
  end
  return ks
end

function validate_fields(fields, t, path, errors)
  local out = {}
  local unknown = false
  for k in pairs(t) do
    if fields[k] == nil then unknown = true break end
  end
  if unknown then -- sorted, so the messages come in a stable order
    for _, k in ipairs(sorted_keys(t)) do
      if fields[k] == nil then
        local known = names_of(fields)
        errors[#errors + 1] = key_path(path, k) .. ": unknown key (expected one of: "
          .. (#known > 0 and table.concat(known, ", ") or "none") .. ")"
      end
    end
  end
  for _, k in ipairs(names_of(fields)) do
    local spec, v = fields[k], t[k]
    local p = key_path(path, k)
    if v == nil then
      if spec.default ~= nil then
        out[k] = deep_copy(spec.default, p, errors)
      elseif spec.required then
        errors[#errors + 1] = p .. ": required " .. spec.type .. " is missing"
          .. (spec.description and (" (" .. spec.description .. ")") or "")
      end
    else
      out[k] = validate_value(spec, v, p, errors)
    end
  end
  return out
end

--- Validate t against the schema `fields`. Returns a normalised copy
-- (defaults filled in, lists marked as JSON arrays, strings for secret
-- fields wrapped), or nil and every problem, one per line, each as
-- "<where>: <key path>: <what was expected>".
function M.validate(fields, t, where)
  local prefix = where and (where .. ": ") or ""
  if type(t) ~= "table" then
    return nil, prefix .. "expected a table, got " .. type_name(t)
  end
  local errors = {}
  local out = validate_fields(fields, t, "", errors)
  if #errors > 0 then
    for i, e in ipairs(errors) do errors[i] = prefix .. e end
    return nil, table.concat(errors, "\n")
  end
  return out
end

---------------------------------------------------------------------------
-- Help text.

local function render_default(d)
  if type(d) == "string" then return string.format("%q", d) end
  if type(d) == "table" then
    local ok, s = pcall(json.encode, d, { secrets = "redact" })
    return ok and s or "{...}"
  end
  return tostring(d)
end

local function describe_spec(spec)
  local t = spec.type
  if t == "list" and spec.items then t = "list of " .. spec.items.type end
  if t == "map" and spec.values then t = "map of " .. spec.values.type end
  local parts = { t }
  if spec.required then parts[#parts + 1] = "required" end
  if spec.default ~= nil then parts[#parts + 1] = "default " .. render_default(spec.default) end
  if spec.enum then
    local names = {}
    for i, e in ipairs(spec.enum) do names[i] = tostring(e) end
    parts[#parts + 1] = "one of " .. table.concat(names, "|")
  end
  if spec.pattern then parts[#parts + 1] = "pattern " .. spec.pattern end
  if spec.min then parts[#parts + 1] = "min " .. spec.min end
  if spec.max then parts[#parts + 1] = "max " .. spec.max end
  return table.concat(parts, ", ")
end

--- Human-readable description of a schema: one line per field (nested
-- fields indented), with type, required/default, enum, pattern, description.
function M.describe(fields, indent)
  local lines = {}
  local function walk(fs, depth)
    for _, k in ipairs(sorted_keys(fs)) do
      local spec = fs[k]
      local pad = string.rep("  ", depth)
      local name = pad .. k
      local line = name .. string.rep(" ", math.max(1, 26 - #name)) .. describe_spec(spec)
      if spec.description then line = line .. "\n" .. string.rep(" ", 26) .. spec.description end
      lines[#lines + 1] = line
      if spec.fields then walk(spec.fields, depth + 1) end
      local inner = spec.items or spec.values
      if inner and inner.fields then walk(inner.fields, depth + 1) end
    end
  end
  walk(fields, indent or 1)
  return table.concat(lines, "\n")
end

return M
