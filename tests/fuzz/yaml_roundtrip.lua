--- Round-trip campaign for sbot.yaml: random documents (tests/support/yamlgen.lua)
-- must decode back to what was encoded (types kept), re-encode to the same
-- text, and read the same with PyYAML (an independent YAML 1.1 reader).
-- Usage: sbot run tests/fuzz/yaml_roundtrip.lua [SEEDS [FIRST]]   (default 2000 seeds from 1)
-- The suite runs a few seeds of the same checks (tests/lua/yaml_spec.lua).
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local yaml = require "sbot.yaml"
local gen = require "yamlgen"

local seeds, first = tonumber(arg[1]) or 2000, tonumber(arg[2]) or 1
local failures, batch = 0, {}

local function check(seed)
  local r = gen.rng(seed)
  local v = gen.random_value(r, 0, { special = true })
  local text = yaml.encode(v)
  local back, err = yaml.decode(text)
  if back == nil then return "decode failed: " .. err .. "\n" .. text end
  local ok, why = gen.same(v, back)
  if not ok then return "round trip differs at " .. why .. "\n" .. text end
  local again = yaml.encode(back)
  if again ~= text then return "re-encoding differs:\n" .. text .. "\n--- vs ---\n" .. again end
  return nil, v
end

local function flush()
  if #batch == 0 then return end
  local docs = {}
  for i, b in ipairs(batch) do docs[i] = b.v end
  local got, err = gen.pyyaml_load_all(yaml.encode_all(docs))
  if not got then
    -- find the document PyYAML refuses
    for _, b in ipairs(batch) do
      local one, e1 = gen.pyyaml_load_all(yaml.encode(b.v))
      if not one then
        failures = failures + 1
        print(("seed %d: PyYAML refuses: %s\n%s"):format(b.seed, e1, yaml.encode(b.v)))
      end
    end
    if failures == 0 then print("PyYAML failed on the batch: " .. err) failures = 1 end
  else
    for i, b in ipairs(batch) do
      local ok, why = gen.same_value(b.v, got[i])
      if not ok then
        failures = failures + 1
        print(("seed %d: PyYAML reads it differently at %s\n%s"):format(b.seed, why, yaml.encode(b.v)))
      end
    end
  end
  batch = {}
end

local function has_special(v)
  if type(v) == "number" then return v ~= v or v == math.huge or v == -math.huge end
  if type(v) == "table" then
    for k, x in pairs(v) do if has_special(x) or has_special(k) then return true end end
  end
  return false
end

for seed = first, first + seeds - 1 do
  local err, v = check(seed)
  if err then
    failures = failures + 1
    print(("seed %d: %s"):format(seed, err))
  elseif not has_special(v) then
    batch[#batch + 1] = { seed = seed, v = v }
    if #batch >= 200 then flush() end
  end
  if failures > 20 then break end
end
flush()
print(("yaml round trip: %d seed(s) from %d, %d failure(s)"):format(seeds, first, failures))
os.exit(failures == 0 and 0 or 1)
