--- sbot.jsonschema: validate values against JSON Schemas (draft 2020-12 as
-- pydantic emits them), reporting errors the way the TrueNAS middleware does.
--
--   local jsonschema = require "sbot.jsonschema"
--   local reg = assert(jsonschema.load("/path/schemas-v25_10_0.json"))
--   local args, errs = reg:validate_args("iscsi_target.iSCSITargetCreateArgs", params)
--   -- errs = { {path = "iscsi_target_create.foo", message = "Extra inputs are not permitted"}, ... }
--
-- Supported keywords: $ref (local "#/..." pointers, $defs), type, properties,
-- additionalProperties (false or a schema), required, enum, const, anyOf,
-- oneOf (with a pydantic discriminator), allOf, items, prefixItems, minItems,
-- maxItems, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength,
-- maxLength, pattern (the regular expressions of these schemas: anchors,
-- classes, *, +, ?, {n,m} -- anything else is reported as unsupported),
-- default (missing properties are filled in, as pydantic does).
-- Checking is strict like the middleware's models: "1" is not an integer, 1.5
-- is not an integer, true is not a number.
local json = require "sbot.json"

local M = {}

local null = json.null

---------------------------------------------------------------------------
-- Key order. cjson forgets the order of object keys, but JSON-RPC passes a
-- method's arguments by position, in the order of the Args schema's
-- "properties". key_orders() scans the raw text once and records, for each
-- object (by JSON pointer), its keys in document order.
---------------------------------------------------------------------------

local function pointer_escape(k)
  return (tostring(k):gsub("~", "~0"):gsub("/", "~1"))
end

local function key_orders(text)
  local orders = {}
  local stack = { { kind = "top", ptr = "" } }
  local pos, last_string = 1, nil
  while true do
    local s, _, c = text:find('([{}%[%]":,])', pos)
    if not s then break end
    local top = stack[#stack]
    if c == '"' then
      local j = s + 1
      local q
      while true do
        q = text:find('["\\]', j)
        if not q then return nil, "unterminated string at byte " .. s end
        if text:byte(q) == 92 then j = q + 2 else break end
      end
      local raw = text:sub(s, q)
      last_string = raw:find("\\", 1, true) and json.decode(raw) or raw:sub(2, -2)
      pos = q + 1
    else
      pos = s + 1
      if c == ":" then
        top.key = last_string
        top.keys[#top.keys + 1] = last_string
      elseif c == "," then
        if top.kind == "a" then top.idx = top.idx + 1 end
      elseif c == "{" or c == "[" then
        local ptr
        if top.kind == "top" then ptr = ""
        elseif top.kind == "o" then ptr = top.ptr .. "/" .. pointer_escape(top.key)
        else ptr = top.ptr .. "/" .. top.idx end
        local frame = { kind = c == "{" and "o" or "a", ptr = ptr, keys = {}, idx = 0 }
        if frame.kind == "o" then orders[ptr] = frame.keys end
        stack[#stack + 1] = frame
      else -- } or ]
        stack[#stack] = nil
        if #stack == 0 then return nil, "unbalanced brackets at byte " .. s end
      end
    end
  end
  return orders
end

local function attach_orders(value, ptr, orders, order_of)
  if type(value) ~= "table" then return end
  if json.is_array(value) then
    for i, v in ipairs(value) do attach_orders(v, ptr .. "/" .. (i - 1), orders, order_of) end
  else
    order_of[value] = orders[ptr]
    for k, v in pairs(value) do attach_orders(v, ptr .. "/" .. pointer_escape(k), orders, order_of) end
  end
end

---------------------------------------------------------------------------
-- Value kinds
---------------------------------------------------------------------------

local function is_object(v)
  if type(v) ~= "table" or v == null then return false end
  if json.is_array(v) then return false end
  return next(v) == nil or v[1] == nil
end

local function is_array(v)
  if type(v) ~= "table" or v == null then return false end
  if json.is_array(v) then return true end
  if getmetatable(v) ~= nil then return false end
  if next(v) == nil then return true end
  local n = 0
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #v
end

local function is_integer(v)
  return math.type(v) == "integer" or (math.type(v) == "float" and v == math.floor(v)
    and v > -2^63 and v < 2^63)
end

local function type_matches(t, v)
  if t == "null" then return v == null
  elseif t == "boolean" then return type(v) == "boolean"
  elseif t == "integer" then return is_integer(v)
  elseif t == "number" then return type(v) == "number"
  elseif t == "string" then return type(v) == "string"
  elseif t == "array" then return is_array(v)
  elseif t == "object" then return is_object(v)
  end
  error("jsonschema: unknown type '" .. tostring(t) .. "'", 0)
end

local function repr(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  if v == null then return "None" end
  if type(v) == "boolean" then return v and "True" or "False" end
  if math.type(v) == "float" and v == math.floor(v) then return string.format("%d", v) end
  return tostring(v)
end

-- "'a', 'b' or 'c'", like pydantic's literal_error.
local function choices(list)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = repr(v) end
  if #parts <= 1 then return parts[1] or "" end
  return table.concat(parts, ", ", 1, #parts - 1) .. " or " .. parts[#parts]
end

local function equal(a, b)
  if a == b then return true end
  if type(a) == "number" and type(b) == "number" then return a == b end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function deep_copy(v)
  if type(v) ~= "table" or v == null then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x) end
  return setmetatable(c, getmetatable(v))
end

---------------------------------------------------------------------------
-- Patterns: translate the small ECMA-regex subset these schemas use into a
-- Lua pattern; anything richer is refused rather than half-checked.
---------------------------------------------------------------------------

local pattern_cache = setmetatable({}, { __mode = "k" })

local function translate_regex(re)
  if re:find("[|()]") then return nil end
  local out, i, n = {}, 1, #re
  while i <= n do
    local c = re:sub(i, i)
    if c == "^" and i == 1 then out[#out + 1] = "^"
    elseif c == "$" and i == n then out[#out + 1] = "$"
    elseif c == "[" then
      local j = re:find("]", i + 2, true)
      if not j then return nil end
      local body = re:sub(i + 1, j - 1):gsub("\\(.)", "%%%1"):gsub("%%d", "%%d")
      -- a literal '-' first or last stays literal in Lua classes too; escape
      -- Lua magic characters other than ranges
      body = body:gsub("([%.%+%*%?%$%(%)])", "%%%1")
      out[#out + 1] = "[" .. body .. "]"
      i = j
    elseif c == "\\" then
      local d = re:sub(i + 1, i + 1)
      local map = { d = "%d", w = "[%w_]", s = "%s", D = "%D", S = "%S" }
      out[#out + 1] = map[d] or ("%" .. d)
      i = i + 1
    elseif c == "." then out[#out + 1] = "."
    elseif c == "*" or c == "+" or c == "?" then
      if c == "*" then out[#out + 1] = "*" elseif c == "+" then out[#out + 1] = "+" else out[#out + 1] = "?" end
    elseif c == "{" then
      local a, b, close = re:match("^{(%d*),?(%d*)()}", i)
      if not a then return nil end
      local prev = out[#out]
      out[#out] = nil
      local lo = tonumber(a) or 0
      local hi = re:sub(i, close):find(",") and tonumber(b) or lo
      for _ = 1, lo do out[#out + 1] = prev end
      if hi then for _ = lo + 1, hi do out[#out + 1] = prev .. "?" end
      else out[#out + 1] = prev .. "*" end
      i = close
    elseif c:match("%p") then out[#out + 1] = "%" .. c
    else out[#out + 1] = c end
    i = i + 1
  end
  local pat = table.concat(out)
  if not pat:find("^^") then pat = pat end -- search semantics, like re.search
  return pat
end

local function regex_match(re, s)
  local pat = pattern_cache[re]
  if pat == nil then
    pat = translate_regex(re) or false
    pattern_cache[re] = pat
  end
  if not pat then return nil, "unsupported pattern " .. re end
  return s:find(pat) ~= nil
end
M._translate_regex = translate_regex

---------------------------------------------------------------------------
-- The validator
---------------------------------------------------------------------------

local Validator = {}
Validator.__index = Validator

local function join(path, key)
  if path == "" then return tostring(key) end
  return path .. "." .. tostring(key)
end

function Validator:err(path, message, literal)
  local e = self.errors
  e[#e + 1] = { path = path, message = message }
  -- a failed const/enum says the value meant another union branch
  if literal then self.literal = (self.literal or 0) + 1 end
end

function Validator:resolve(ref)
  if ref:sub(1, 1) ~= "#" then error("jsonschema: only local $ref are supported, got " .. ref, 0) end
  local node = self.root
  for part in ref:sub(3):gmatch("[^/]+") do
    part = part:gsub("~1", "/"):gsub("~0", "~")
    if type(node) ~= "table" then node = nil break end
    node = node[part]
  end
  if node == nil then error("jsonschema: unresolvable $ref " .. ref, 0) end
  return node
end

function Validator:deref(schema)
  local seen = 0
  while schema["$ref"] do
    local target = self:resolve(schema["$ref"])
    -- siblings of $ref (description, default) do not change validation
    schema = target
    seen = seen + 1
    if seen > 64 then error("jsonschema: $ref loop", 0) end
  end
  return schema
end

local function title_of(schema)
  return schema.title or "object"
end

-- Main entry: returns the value with defaults filled in (a copy for tables).
function Validator:check(schema, v, path)
  if schema == true or schema == nil then return v end
  if schema == false then self:err(path, "Not allowed") return v end
  schema = self:deref(schema)

  if schema.anyOf then return self:check_union(schema.anyOf, v, path, "anyOf") end
  if schema.oneOf then return self:check_oneof(schema, v, path) end
  if schema.allOf then
    for _, s in ipairs(schema.allOf) do v = self:check(s, v, path) end
  end

  if schema.const ~= nil and not equal(schema.const, v) then
    self:err(path, "Input should be " .. repr(schema.const), true)
    return v
  end
  local t = schema.type
  if t then
    local ok = false
    if type(t) == "table" then
      for _, tt in ipairs(t) do if type_matches(tt, v) then ok = true end end
    else
      ok = type_matches(t, v)
    end
    if not ok then
      self:err(path, self:type_message(t, schema, v))
      return v
    end
  end
  if schema.enum then
    local found = false
    for _, e in ipairs(schema.enum) do if equal(e, v) then found = true break end end
    if not found then
      self:err(path, "Input should be " .. choices(schema.enum), true)
      return v
    end
  end

  if type(v) == "string" then self:check_string(schema, v, path)
  elseif type(v) == "number" then self:check_number(schema, v, path)
  elseif is_object(v) and (schema.properties or schema.additionalProperties ~= nil or schema.required) then
    return self:check_object(schema, v, path)
  elseif is_array(v) and (schema.items ~= nil or schema.prefixItems or schema.minItems or schema.maxItems) then
    return self:check_array(schema, v, path)
  end
  return v
end

function Validator:type_message(t, schema, v)
  if type(t) == "table" then t = t[1] end
  if t == "integer" then
    if type(v) == "number" then return "Input should be a valid integer, got a number with a fractional part" end
    return "Input should be a valid integer"
  elseif t == "number" then return "Input should be a valid number"
  elseif t == "string" then return "Input should be a valid string"
  elseif t == "boolean" then return "Input should be a valid boolean"
  elseif t == "array" then return "Input should be a valid list"
  elseif t == "null" then return "Input should be None"
  elseif t == "object" then
    if schema.properties then
      return "Input should be a valid dictionary or instance of " .. title_of(schema)
    end
    return "Input should be a valid dictionary"
  end
  return "Input should be of type " .. tostring(t)
end

function Validator:check_string(schema, v, path)
  local len = utf8.len(v) or #v
  if schema.minLength and len < schema.minLength then
    self:err(path, string.format("String should have at least %d character%s", schema.minLength,
      schema.minLength == 1 and "" or "s"))
  end
  if schema.maxLength and len > schema.maxLength then
    self:err(path, string.format("String should have at most %d character%s", schema.maxLength,
      schema.maxLength == 1 and "" or "s"))
  end
  if schema.pattern then
    local ok, why = regex_match(schema.pattern, v)
    if ok == nil then error("jsonschema: " .. why .. " at " .. path, 0) end
    if not ok then self:err(path, "String should match pattern '" .. schema.pattern .. "'") end
  end
end

function Validator:check_number(schema, v, path)
  if schema.minimum and v < schema.minimum then
    self:err(path, "Input should be greater than or equal to " .. repr(schema.minimum))
  end
  if schema.maximum and v > schema.maximum then
    self:err(path, "Input should be less than or equal to " .. repr(schema.maximum))
  end
  if schema.exclusiveMinimum and v <= schema.exclusiveMinimum then
    self:err(path, "Input should be greater than " .. repr(schema.exclusiveMinimum))
  end
  if schema.exclusiveMaximum and v >= schema.exclusiveMaximum then
    self:err(path, "Input should be less than " .. repr(schema.exclusiveMaximum))
  end
end

function Validator:property_names(props)
  local order = self.order_of[props]
  if order then return order end
  local names = {}
  for k in pairs(props) do names[#names + 1] = k end
  table.sort(names)
  return names
end

function Validator:check_object(schema, v, path)
  local props = schema.properties or {}
  local out = {}
  local required = {}
  for _, r in ipairs(schema.required or {}) do required[r] = true end
  for _, name in ipairs(self:property_names(props)) do
    local ps = props[name]
    local value = v[name]
    if value == nil then
      if required[name] then
        self:err(join(path, name), "Field required")
      else
        local d = type(ps) == "table" and ps.default
        if d == nil and type(ps) == "table" and ps["$ref"] then d = self:deref(ps).default end
        if d ~= nil then out[name] = deep_copy(d) end
      end
    else
      out[name] = self:check(ps, value, join(path, name))
    end
  end
  -- keys not among the properties, in a stable order
  local extra = {}
  for k in pairs(v) do
    if props[k] == nil then extra[#extra + 1] = k end
  end
  table.sort(extra, function(a, b) return tostring(a) < tostring(b) end)
  local ap = schema.additionalProperties
  for _, k in ipairs(extra) do
    if ap == false then
      self:err(join(path, k), "Extra inputs are not permitted")
    elseif type(ap) == "table" then
      out[k] = self:check(ap, v[k], join(path, k))
    else
      out[k] = v[k]
    end
  end
  for r in pairs(required) do
    if props[r] == nil and v[r] == nil then self:err(join(path, r), "Field required") end
  end
  return out
end

function Validator:check_array(schema, v, path)
  local n = #v
  if schema.minItems and n < schema.minItems then
    self:err(path, string.format("List should have at least %d item%s after validation, not %d",
      schema.minItems, schema.minItems == 1 and "" or "s", n))
  end
  if schema.maxItems and n > schema.maxItems then
    self:err(path, string.format("List should have at most %d item%s after validation, not %d",
      schema.maxItems, schema.maxItems == 1 and "" or "s", n))
  end
  local out = json.array()
  local prefix = schema.prefixItems or {}
  for i = 1, n do
    local s = prefix[i]
    if s == nil then s = schema.items end
    if s == nil and schema.prefixItems then s = true end
    out[i] = self:check(s, v[i], join(path, i - 1))
  end
  return out
end

-- Run check in a scratch validator; returns the checked value and its errors.
function Validator:try(schema, v, path)
  local sub = setmetatable({ root = self.root, order_of = self.order_of, errors = {} }, Validator)
  local out = sub:check(schema, v, path)
  return out, sub.errors, sub.literal or 0
end

local function top_type(self, schema)
  schema = self:deref(schema)
  if schema.type then return schema.type end
  if schema.const ~= nil then return nil end
  return nil
end

function Validator:check_union(branches, v, path)
  local best_errs, best_typed, best_literal
  for _, b in ipairs(branches) do
    local out, errs, literal = self:try(b, v, path)
    if #errs == 0 then return out end
    -- prefer the errors of a branch whose type the value has: for
    -- anyOf [X, null] that is X, and the message names the real problem
    local t = top_type(self, b)
    local typed = t and type(t) == "string" and type_matches(t, v)
    if best_errs == nil or (typed and not best_typed)
        or (typed == best_typed and (literal < best_literal
          or (literal == best_literal and #errs < #best_errs))) then
      best_errs, best_typed, best_literal = errs, typed, literal
    end
  end
  if not best_typed then
    -- no branch has the value's type: one message listing the accepted types
    local names = {}
    for _, b in ipairs(branches) do
      local s = self:deref(b)
      local t = s.type or (s.const ~= nil and repr(s.const)) or "value"
      names[#names + 1] = t == "null" and "None" or tostring(t)
    end
    self:err(path, "Input should be one of: " .. table.concat(names, ", "))
    return v
  end
  for _, e in ipairs(best_errs) do self.errors[#self.errors + 1] = e end
  return v
end

function Validator:check_oneof(schema, v, path)
  local d = schema.discriminator
  if d and d.propertyName and is_object(v) then
    local tag = v[d.propertyName]
    local ref = d.mapping and d.mapping[tag]
    if not ref then
      local tags = {}
      for k in pairs(d.mapping or {}) do tags[#tags + 1] = k end
      table.sort(tags)
      if tag == nil then
        self:err(path, "Unable to extract tag using discriminator '" .. d.propertyName .. "'")
      else
        self:err(path, string.format("Input tag %s found using '%s' does not match any of the expected tags: %s",
          repr(tag), d.propertyName, choices(tags)))
      end
      return v
    end
    return self:check({ ["$ref"] = ref }, v, path)
  end
  local matches, out = 0, v
  for _, b in ipairs(schema.oneOf) do
    local o, errs = self:try(b, v, path)
    if #errs == 0 then matches = matches + 1 out = o end
  end
  if matches == 1 then return out end
  if matches == 0 then return self:check_union(schema.oneOf, v, path, "oneOf") end
  self:err(path, "Input matches more than one of the allowed schemas")
  return v
end

---------------------------------------------------------------------------
-- Public API
---------------------------------------------------------------------------

--- Validate v against schema (root: the document $refs resolve in, default
-- schema itself). Returns the value with defaults filled in, or nil and the
-- list of errors {path, message}. opts.path: prefix for error paths;
-- opts.order_of: key-order map from a registry.
function M.validate(schema, v, opts)
  opts = opts or {}
  if type(schema) ~= "table" and type(schema) ~= "boolean" then
    error("jsonschema.validate: schema must be a table, got " .. type(schema), 2)
  end
  local val = setmetatable({ root = opts.root or schema, order_of = opts.order_of or {}, errors = {} },
    Validator)
  local out = val:check(schema, v, opts.path or "")
  if #val.errors > 0 then return nil, val.errors end
  return out
end

--- Format an error list as the middleware's ValidationErrors text:
-- "[EINVAL] path: message" lines.
function M.format(errors)
  local lines = {}
  for i, e in ipairs(errors) do
    lines[i] = "[EINVAL] " .. (e.path ~= "" and (e.path .. ": ") or "") .. e.message
  end
  return table.concat(lines, "\n")
end

local Registry = {}
Registry.__index = Registry

--- Build a registry from a decoded document {name = schema} and optional
-- raw text (for property order).
function M.new(doc, text)
  if type(doc) ~= "table" then error("jsonschema.new: document must be a table", 2) end
  local order_of = setmetatable({}, { __mode = "k" })
  if text then
    local orders, err = key_orders(text)
    if not orders then return nil, "jsonschema: " .. err end
    attach_orders(doc, "", orders, order_of)
  end
  return setmetatable({ doc = doc, order_of = order_of }, Registry)
end

--- Load a schema document (a JSON object of named schemas) from a file.
function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "jsonschema: cannot open schema file: " .. err end
  local text = f:read("a")
  f:close()
  local doc, derr = json.decode(text)
  if doc == nil then return nil, "jsonschema: " .. path .. ": " .. tostring(derr) end
  if not is_object(doc) then return nil, "jsonschema: " .. path .. ": top level is not an object" end
  local reg, rerr = M.new(doc, text)
  if not reg then return nil, rerr .. " in " .. path end
  reg.path = path
  return reg
end

function Registry:schema(name)
  local s = self.doc[name]
  if s == nil then error("jsonschema: no schema named '" .. tostring(name) .. "'" ..
    (self.path and (" in " .. self.path) or ""), 2) end
  return s
end

function Registry:has(name) return self.doc[name] ~= nil end

--- Validate v against the named schema.
function Registry:validate(name, v, opts)
  local s = self:schema(name)
  opts = opts or {}
  return M.validate(s, v, { root = s, order_of = self.order_of, path = opts.path })
end

--- Names of an object schema's properties in document order.
function Registry:property_names(name)
  local s = self:schema(name)
  local val = setmetatable({ root = s, order_of = self.order_of, errors = {} }, Validator)
  return val:property_names(s.properties or {})
end

--- Validate a positional argument list (JSON-RPC params) against an Args
-- schema whose properties are the arguments in order. Returns the list of
-- arguments with defaults filled in, or nil and errors.
function Registry:validate_args(name, params)
  local s = self:schema(name)
  if params == nil or params == null then params = {} end
  if not is_array(params) then
    return nil, { { path = "", message = "Input should be a valid list of arguments" } }
  end
  local names = self:property_names(name)
  if #params > #names then
    return nil, { { path = "", message = string.format("Too many arguments (expected %d, found %d)",
      #names, #params) } }
  end
  local obj = {}
  for i = 1, #params do obj[names[i]] = params[i] end
  local out, errs = M.validate(s, obj, { root = s, order_of = self.order_of })
  if not out then return nil, errs end
  local list = json.array()
  for i, n in ipairs(names) do list[i] = out[n] end
  return list, names
end

M.null = null
M.is_object = is_object
M.is_array = is_array
M.is_integer = is_integer

return M
