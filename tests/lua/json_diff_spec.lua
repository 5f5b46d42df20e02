-- sbot.json's C codec (engine/jsonc.c) against the pure-Lua encoder it
-- replaced (tests/support/json_oracle.lua, the old lua/sbot/json.lua) and
-- against lua-cjson 2.1.0's decoder (what sbot.json.decode used to be):
-- seeded random trees, byte-for-byte. JSON_DIFF_TREES (default 2000) and
-- JSON_DIFF_SEED scale or vary the campaign; a failure names its seed.
local json = require "sbot.json"
local oracle = require "json_oracle"
local cjson = require "cjson"
local secret = require "sbot.secret"
local yamlgen = require "yamlgen"

local TREES = tonumber(os.getenv("JSON_DIFF_TREES")) or 2000
local SEED = tonumber(os.getenv("JSON_DIFF_SEED")) or 20261201

local rnd = math.random

local PIECES = { "\0", "\1", "\b", "\f", "\n", "\r", "\t", "\31", "\127", '"', "\\", "/", "\\/", "é",
  "€", "😀", "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", " ", "a", "Z", "0", "[]", "{}", "<", "\u{2028}" }

local function rstring(max)
  local n = rnd(0, max)
  local t = {}
  for i = 1, n do
    if rnd() < 0.5 then
      t[i] = string.char(rnd(32, 126))
    else
      t[i] = PIECES[rnd(#PIECES)]
    end
  end
  return table.concat(t)
end

local FLOATS = { 0.1, 1e300, -1e300, -0.0, 0.0, 1 / 3, 5e-324, 2.0 ^ 53, 2.0 ^ 63, 3.0, -2.5, 1e20, 1e-7,
  123456.789, 2.2250738585072014e-308 }
local INTS = { 0, 1, -1, 42, 1000000, math.maxinteger, math.mininteger, 2 ^ 53 | 0, -(2 ^ 31 | 0) }

local function rnumber()
  local r = rnd()
  if r < 0.3 then return FLOATS[rnd(#FLOATS)] end
  if r < 0.5 then return INTS[rnd(#INTS)] end
  if r < 0.75 then return rnd(-100000, 100000) end
  return (rnd() - 0.5) * 10 ^ rnd(-20, 20)
end

local tojson_mt = { __tojson = function(self) return { wrapped = self.inner } end }

local secrets = {}
local function rsecret()
  local s = secrets[rnd(3)]
  if not s then
    s = secret.new("diff-secret-" .. rnd(1000, 9999))
    secrets[#secrets + 1] = s
  end
  return s
end

local gen

local function rkey()
  local r = rnd()
  -- string keys start with a letter, so none is the string form of a number key
  if r < 0.75 then return "k" .. rstring(6) end
  if r < 0.9 then return rnd(-3, 12) end
  return ({ 1.5, -2.25, 1e300, 2.0 ^ 63, 0.1 })[rnd(5)]
end

local function rtable(depth, opts)
  local r = rnd()
  local n = rnd(0, depth > 3 and 2 or 6)
  if r < 0.3 then -- a sequence
    local t = {}
    for i = 1, n do t[i] = gen(depth + 1, opts) end
    return t
  elseif r < 0.45 then -- a marked array, maybe with holes (encoded as nulls)
    local t = json.array()
    for i = 1, n do
      if rnd() < 0.8 then t[i] = gen(depth + 1, opts) end
    end
    return t
  elseif r < 0.5 then
    return rnd() < 0.5 and json.empty_array or oracle.array()
  elseif r < 0.55 then
    return setmetatable({ inner = gen(depth + 1, opts) }, tojson_mt)
  else -- an object, maybe with number keys
    local t = {}
    for _ = 1, n do t[rkey()] = gen(depth + 1, opts) end
    return t
  end
end

function gen(depth, opts)
  local r = rnd()
  if depth > 6 then r = r * 0.6 end
  if r < 0.15 then return rstring(12) end
  if r < 0.3 then return rnumber() end
  if r < 0.35 then return rnd() < 0.5 end
  if r < 0.4 then return json.null end
  if r < 0.42 and opts.secrets then return rsecret() end
  if r < 0.6 then return rtable(depth, opts) end
  return rtable(depth, opts)
end

-- What decoding the text of v must give (cjson's numbers: floats).
local function expected(v, opts)
  local tv = type(v)
  if v == nil or v == json.null then return json.null end
  if tv == "number" then return math.type(v) == "integer" and v + 0.0 or v end
  if tv ~= "table" and tv ~= "userdata" then return v end
  if secret.is_secret(v) then return "<redacted>" end
  local mt = getmetatable(v)
  if mt and mt.__tojson then return expected(mt.__tojson(v), opts) end
  local seq = json.is_array(v)
  if not seq then
    local n = 0
    for k in pairs(v) do
      if math.type(k) ~= "integer" or k < 1 then n = -1; break end
      n = n + 1
    end
    seq = n > 0 and n == #v
  end
  if seq then
    local n = #v
    for k in pairs(v) do if k > n then n = k end end
    local t = json.array()
    for i = 1, n do t[i] = expected(v[i], opts) end
    return t
  end
  local t = {}
  for k, x in pairs(v) do t[tostring(k)] = expected(x, opts) end
  return t
end

-- Deep equality (number types and zero signs included; array marks unless
-- marks is false): yamlgen's, which the YAML round trips use too.
local function same(a, b, marks) return yamlgen.same(a, b, nil, marks) end

local function check(cond, seed, what)
  if not cond then error(("seed %d: %s"):format(seed, what), 2) end
end

describe("sbot.json C codec against the old Lua encoder and cjson", function()
  it(("encodes %d random trees byte for byte as the Lua encoder did (plain, indent, redact, reveal)"):format(TREES),
    function()
      for i = 1, TREES do
        local seed = SEED + i
        math.randomseed(seed)
        local v = gen(0, { secrets = true })
        for _, opts in ipairs({ { secrets = "redact" }, { secrets = "redact", indent = true },
                                     { secrets = "reveal" } }) do
          local want = oracle.encode(v, opts)
          local got = json.encode(v, opts)
          check(got == want, seed, ("indent=%s\nwant %q\ngot  %q"):format(opts.indent, want, got))
        end
      end
    end)

  it("decodes each text as cjson did, arrays (empty ones too) marked, and to the tree it came from", function()
    for i = 1, TREES do
      local seed = SEED + i
      math.randomseed(seed)
      local v = gen(0, { secrets = true })
      local text = json.encode(v, { secrets = "redact", indent = rnd() < 0.3 })
      local got, err = json.decode(text)
      check(got ~= nil, seed, tostring(err))
      local ok, why = same(got, cjson.decode(text), false)
      check(ok, seed, "against cjson: " .. tostring(why) .. "\n" .. text)
      ok, why = same(got, expected(v, { secrets = "redact" }), true)
      check(ok, seed, "against the tree: " .. tostring(why) .. "\n" .. text)
    end
  end)

  it("accepts and refuses the odd texts cjson accepted and refused, with the same values", function()
    local odd = { "3\0", "\0", "\0\0", "[1]\0x", '"a\0b"', "0x10", "-0x1p3", "+1", "-inf", "inf", "Infinity",
      "nan", "NaN", "-nan", "1e999", "-1e999", '"\\ud800"', '"\\udc00"', '"\\ud800\\udc00"', '"\\ud800x"',
      '"a\tb\1"', "01", "1.", "-", ".5", "[1,]", "{,}", " ", "", "[", "{\"a\"", "{\"a\":}", '{"a":1,"a":2}',
      "truex", "nul", "tru", "[true,false,null]", "\t[ 1 , 2 ]\r\n", "1 2", '"\\x"', '"\\u00e9\\u20AC"',
      string.rep("[", 1000) .. string.rep("]", 1000), string.rep("[", 1001) .. string.rep("]", 1001),
      string.rep('{"a":', 1000) .. "1" .. string.rep("}", 1000), "12345678901234567890", "9007199254740993",
      "-0", "1E2", "1e+2", "2.5e-3" }
    for _, text in ipairs(odd) do
      local cok, cv = pcall(cjson.decode, text)
      local got, err = json.decode(text)
      assert((got ~= nil) == cok, ("%q: cjson %s, sbot.json %s"):format(text, tostring(cv), tostring(err)))
      if cok then
        local ok, why = same(got, cv, false)
        assert(ok, ("%q: %s"):format(text, why))
      else
        assert.matches("^invalid JSON: .+ at character %d+$", err)
      end
    end
  end)

  it("accepts and refuses damaged texts exactly where cjson did, with the same values", function()
    local n = math.max(200, TREES // 4)
    for i = 1, n do
      local seed = SEED + 100000 + i
      math.randomseed(seed)
      local text = json.encode(gen(0, {}))
      local r = rnd()
      if r < 0.3 then
        text = text:sub(1, rnd(0, #text))
      elseif r < 0.8 then
        local at = rnd(1, #text + 1)
        local bytes = { "[", "]", "{", "}", ",", ":", '"', "\\", "0", "-", "+", ".", "e", "x", "n", "t", "f",
          "i", " ", "\n", "\0", "\1", "\\u", "\\ud800", "\\udc00", "0x1", "inf", "nan", "1e999", "01", "1." }
        text = text:sub(1, at - 1) .. bytes[rnd(#bytes)] .. text:sub(at + (rnd() < 0.5 and 1 or 0))
      else
        local at = rnd(1, math.max(1, #text))
        text = text:sub(1, at - 1) .. text:sub(at + 1)
      end
      local cok, cv = pcall(cjson.decode, text)
      local got, err = json.decode(text)
      check((got ~= nil) == cok, seed, ("cjson %s, sbot.json %s (%s) on %q"):format(
        cok and "accepts" or "refuses (" .. tostring(cv) .. ")", got ~= nil and "accepts" or "refuses",
        tostring(err), text))
      if cok then
        local ok, why = same(got, cv, false)
        check(ok, seed, tostring(why) .. " on " .. text)
      else
        check(err:match("^invalid JSON: .+ at character %d+$"), seed, err)
      end
    end
  end)
end)

describe("sbot.json C encoder misuse", function()
  -- the same call site for both, so an error's position (level 2) is the same
  local function call(f, v, opts)
    local r = f(v, opts)
    return r
  end

  -- each case {value, opts}: both encoders succeed with the same text, or
  -- both fail with the same message
  local function agree(cases)
    for i, c in ipairs(cases) do
      local ok1, r1 = pcall(call, oracle.encode, c[1], c[2])
      local ok2, r2 = pcall(call, json.encode, c[1], c[2])
      assert.are.equal(ok1, ok2, "case " .. i .. ": " .. tostring(r1) .. " / " .. tostring(r2))
      assert.are.equal(r1, r2, "case " .. i)
    end
  end

  it("raises the errors the Lua encoder raised, naming the same path", function()
    local cyc = {}; cyc.a = { b = { cyc } }
    local deep = {}
    local t = deep
    for _ = 1, 1001 do t.x = {}; t = t.x end
    local deep_array = json.array()
    t = deep_array
    for _ = 1, 1000 do t[1] = json.array(); t = t[1] end
    local s = secret.new("misuse-secret-Zq1")
    local cases = {
      { { a = { b = 0 / 0 } } }, { { a = { 1, 2, -(0 / 0) } } }, { { x = math.huge } }, { { x = { -math.huge } } },
      { { f = print } }, { { co = coroutine.create(print) } }, { { u = io.stdout } },
      { cyc }, { deep }, { deep_array },
      { { [true] = 1 } }, { { a = { [{}] = 1 } } }, { { a = { [print] = 1 } } },
      { json.array({ 1, 2, x = 3 }) }, { { a = json.array({ [1.5] = 1 }) } }, { json.array({ [0] = 1 }) },
      { json.array({ [-1] = 1 }) },
      { { p = { q = s } } }, { { p = { q = s } }, { indent = true } }, { { p = s }, { secrets = "error" } },
      { {}, "x" }, { {}, 5 }, { {}, { secrets = "show" } }, { {}, { secrets = 1 } }, { {}, { secrets = true } },
      { setmetatable({}, { __tojson = function() return { bad = print } end }) },
      { setmetatable({}, { __tojson = function() error("tojson failed", 0) end }) },
      { { a = setmetatable({}, { __index = function() error("index called", 0) end }) } },
    }
    agree(cases)
  end)

  it("reads tables the way Lua does: __index, __len, __pairs, __metatable, __name, false opts", function()
    local proxy_data = { 10, 20, 30 }
    local cases = {
      { setmetatable({}, { __index = proxy_data, __len = function() return 3 end, __name = "sbot.json.array" }) },
      { setmetatable({ 1, 2 }, { __len = function() return 3 end }) },
      { setmetatable({ a = 1 }, { __pairs = function() return next, { b = 2, c = { 3 } }, nil end,
        __index = function(_, k) return "via index " .. k end }) },
      { setmetatable({ 1, 2 }, { __metatable = "locked" }) },
      { setmetatable({ x = 1 }, { __metatable = { __tojson = function() return "hidden" end } }) },
      { setmetatable({ x = 1 }, { __metatable = { __name = "sbot.json.array" } }) },
      { setmetatable({}, { __metatable = { __name = "sbot.json.array" } }) },
      { setmetatable({ x = 1 }, { __tojson = function(self) return self.x + 1 end }) },
      { setmetatable({}, { __tojson = false }) },
      { { a = { [2] = "two", [3] = "three" } } },
      { { [1] = "a", [2] = "b", [4] = "d" } },
      { { x = 1 }, false },
      { { 1, { 2, { a = json.empty_array } } }, { indent = true } },
      { { [1.5] = "f", [2.0 ^ 63] = "g", [-1] = "n", [0] = "z", s = "s" }, { indent = true } },
      { "" }, { json.null }, { nil }, { 1e300 }, { -0.0 }, { math.mininteger },
    }
    agree(cases)
  end)
end)
