--- Random documents for sbot.yaml round-trip checks, and PyYAML as an
-- independent (YAML 1.1) reader of what sbot.yaml writes. Used by
-- tests/lua/yaml_spec.lua (a few seeds) and tests/fuzz/yaml_roundtrip.lua
-- (many seeds).
local json = require "sbot.json"
local h = require "helpers"

local M = {}

-- Fragments YAML readers trip over: words and numbers of YAML 1.1 and 1.2,
-- indicators, document markers, line breaks of every kind, escapes,
-- non-ASCII text, control characters.
M.fragments = {
  "", " ", "  ", "on", "On", "off", "yes", "no", "y", "n", "true", "False", "null", "Null", "~",
  "0755", "0o17", "0x1F", "0b101", "1e3", "1.0", "-1", "+1", ".5", "5.", "1_000", "12:30",
  "52:54:00:12:34:56", "10.0.0.0/16", "192.168.1.10", ".inf", "-.Inf", ".nan", "2001-12-14",
  ":", ": ", " :", "#", " #", "# ", "-", "- ", "--", "---", "...", "?", "? ", "[", "]", "{", "}",
  ",", "&a", "*a", "!", "!!str", "|", ">", "'", "''", "\"", "%", "@", "`", "<<", "=",
  "\n", "\n\n", "\r\n", "\r", "\t", " \n", "\n ", "\\", "\\n", "\0", "\1", "\127",
  "é", "日本語", "\u{1F600}", "\u{FEFF}", "\u{85}", "\u{A0}", "\u{2028}", "\u{2029}",
  "key", "value", "a b", "x", "ssh-ed25519 AAAA", "/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn.x-lun-0",
}

--- A random generator (xorshift-ish, deterministic per seed).
function M.rng(seed)
  local s = (seed * 2654435761 + 12345) % 4294967296
  if s == 0 then s = 1 end
  return function(n)
    s = (s * 1103515245 + 12345) % 2147483648
    return n and (s % n) + 1 or s / 2147483648
  end
end

function M.random_string(r)
  local parts = {}
  for _ = 1, r(4) - 1 do parts[#parts + 1] = M.fragments[r(#M.fragments)] end
  if r(8) == 1 then parts[#parts + 1] = tostring(r(100000)) end
  return table.concat(parts)
end

local function random_number(r)
  local k = r(8)
  if k == 1 then return r(2000) - 1000 end
  if k == 2 then return math.maxinteger - r(3) end
  if k == 3 then return math.mininteger + r(3) end
  if k == 4 then return (r() - 0.5) * 10 ^ (r(40) - 20) end
  if k == 5 then return r(100) + 0.0 end
  if k == 6 then return -0.0 end
  if k == 7 then return 0.1 * r(9) end
  return 2 ^ 53 + r(5)
end

--- A random value: nested maps and sequences of strings, numbers, booleans,
-- null and empty collections. opts.special = true adds infinities.
function M.random_value(r, depth, opts)
  depth = depth or 0
  local k = r(depth > 3 and 5 or 8)
  if k == 1 then return M.random_string(r) end
  if k == 2 then return random_number(r) end
  if k == 3 then return r(2) == 1 end
  if k == 4 then return json.null end
  if k == 5 then
    if opts and opts.special and r(3) == 1 then return r(2) == 1 and math.huge or -math.huge end
    return r(2) == 1 and json.array {} or {}
  end
  if k <= 6 then
    local t = json.array {}
    for i = 1, r(4) do t[i] = M.random_value(r, depth + 1, opts) end
    return t
  end
  local t = {}
  for _ = 1, r(5) do t[M.random_string(r)] = M.random_value(r, depth + 1, opts) end
  return t
end

--- Deep equality keeping apart what round trips must keep apart: integer vs
-- float, zero signs, sequence vs mapping (empty ones too: the JSON array
-- mark; `marks = false` leaves it out), null vs missing. Also json_diff_spec's.
function M.same(a, b, path, marks)
  path = path or "value"
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false, path .. ": " .. math.type(a) .. " vs " .. math.type(b) end
    if a ~= b and not (a ~= a and b ~= b) then return false, path .. ": " .. a .. " vs " .. b end
    if a == 0 and b == 0 and 1 / a ~= 1 / b then return false, path .. ": signed zero" end
    return true
  end
  if type(a) ~= "table" then
    if a ~= b then return false, path .. string.format(": %q vs %q", tostring(a), tostring(b)) end
    return true
  end
  if marks ~= false and json.is_array(a) ~= json.is_array(b) then return false, path .. ": sequence vs mapping" end
  for k, v in pairs(a) do
    local ok, why = M.same(v, b[k], path .. "." .. tostring(k), marks)
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing on the left" end
  end
  return true
end

--- Read a YAML stream with PyYAML (safe_load_all, YAML 1.1 rules) and return
-- its documents as Lua values (through JSON), or nil and PyYAML's message.
function M.pyyaml_load_all(text)
  local dir = h.tmpdir("pyyaml")
  h.write_file(dir .. "/in.yaml", text)
  local ok, _, out = h.sh("python3 -c " .. h.shquote([[
import json, sys, yaml
try:
    docs = list(yaml.safe_load_all(open(sys.argv[1], encoding="utf-8")))
except yaml.YAMLError as e:
    print("ERROR " + str(e).replace("\n", " ")); sys.exit(0)
print(json.dumps(docs, sort_keys=True))
]]) .. " " .. h.shquote(dir .. "/in.yaml") .. " 2>&1")
  os.execute("rm -rf " .. h.shquote(dir))
  if not ok then return nil, "python3 failed: " .. out end
  if out:sub(1, 6) == "ERROR " then return nil, out end
  return json.decode(out)
end

--- Like M.same but for what came back through PyYAML and JSON: numbers
-- compare by value (JSON loses integer vs float), empty sequences and
-- mappings may both come back as either.
function M.same_value(a, b, path)
  path = path or "value"
  if type(a) == "number" and type(b) == "number" then
    if a == b then return true end
    -- JSON (cjson) turns integers beyond 2^53 into floats
    if math.type(a) ~= math.type(b) and math.abs(a - b) <= math.abs(a) * 1e-15 then return true end
    return false, path .. ": " .. a .. " vs " .. b
  end
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) ~= "table" then
    if a ~= b then return false, path .. string.format(": %q vs %q", tostring(a), tostring(b)) end
    return true
  end
  if next(a) ~= nil and json.is_array(a) ~= json.is_array(b) then return false, path .. ": sequence vs mapping" end
  for k, v in pairs(a) do
    local ok, why = M.same_value(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. ": only on the right" end
  end
  return true
end

return M
