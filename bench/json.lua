-- bench/json.lua: sbot.json's C codec (engine/jsonc.c) against the pure-Lua
-- encoder it replaced (tests/support/json_oracle.lua: the named baseline) and,
-- for decoding, against cjson.decode followed by the old Lua mark() walk (the
-- old path minus its C scan of [] and {}, so the ratio understates the gain).
--
-- Documents (deterministic):
--   result     a fleet worker's result as engine/fleet.c encodes it (secrets =
--              "redact"): nested component results, discovery, plan, steps,
--              ~20 KB of JSON
--   extents20 / extents200   a TrueNAS iscsi.extent.query + iscsi.target.query
--              answer: 20 or 200 extent records and as many targets
-- For each: time per operation (median of BENCH_RUNS = 5 samples, each sample
-- as many repetitions as fill ~0.2 s), the ratio old / new, and the Lua heap
-- allocated per operation (collector stopped; the C encoder's output buffer is
-- malloc'ed, at most twice the text, and not counted there).
-- Usage: build/sbot run bench/json.lua
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local json = require "sbot.json"
local oracle = require "json_oracle"
local cjson = require "cjson"
local secret = require "sbot.secret"

local RUNS = tonumber(os.getenv("BENCH_RUNS") or "5")

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

local clock = os.clock

-- seconds per call of f (median of RUNS samples)
local function per_op(f)
  local reps, t0 = 1, clock()
  f()
  local once = clock() - t0
  reps = math.max(1, math.floor(0.2 / math.max(once, 1e-6)))
  local samples = {}
  for i = 1, RUNS do
    local s = clock()
    for _ = 1, reps do f() end
    samples[i] = (clock() - s) / reps
  end
  return median(samples)
end

-- KiB of Lua heap allocated by one call of f
local function heap(f)
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  f()
  local after = collectgarbage("count")
  collectgarbage("restart")
  collectgarbage("collect")
  return after - before
end

-- the old json.lua's mark(): arrays (non-empty sequences) marked, one pass
local array_mt = json.array_mt
local function mark(v)
  local n, seq = 0, true
  for k, x in pairs(v) do
    n = n + 1
    if seq and (math.type(k) ~= "integer" or k < 1) then seq = false end
    if type(x) == "table" then mark(x) end
  end
  if seq and n > 0 and n == #v then setmetatable(v, array_mt) end
end
local function old_decode(s)
  local v = cjson.decode(s)
  if type(v) == "table" then mark(v) end
  return v
end

-- ---- documents ---------------------------------------------------------------
local pw = secret.new("bench-json-password")

local function bios_attributes()
  local t = {}
  for i = 1, 120 do
    t[("Attr%03dSetting"):format(i)] = (i % 3 == 0) and ("Enabled") or (i % 3 == 1) and i * 7 or (i % 2 == 0)
  end
  return t
end

local function result_doc()
  local steps = json.array()
  for s = 1, 3 do
    local changes = json.array()
    for c = 1, 12 do
      changes[c] = { path = ("Bios.Attributes.Attr%03dSetting"):format(c * s), from = "Disabled", to = "Enabled",
        reason = "site policy: iSCSI boot needs it \"on\"", order = c, reboot = c % 4 == 0 }
    end
    steps[s] = {
      component = ({ "iscsi", "r630", "openshift" })[s],
      status = "ok",
      started = 1764560000.125 + s, finished = 1764560012.5 + s,
      discovery = { iqn = "iqn.2005-10.org.freenas.ctl:node-07", lun = 0, portal = "10.1.2.3:3260",
        bios = bios_attributes(), nics = { { mac = "24:6e:96:00:00:07", link = "Up", speed = 10000 },
          { mac = "24:6e:96:00:00:08", link = "Down", speed = json.null } },
        firmware = { idrac = "2.86.86.86", bios = "2.19.0" }, empty = {}, tags = json.empty_array },
      plan = { changes = changes, noop = false },
      applied = changes,
      credentials = { user = "root", password = pw },
      log = { "discovered 120 attributes", "planned 12 changes", "applied, job JID_123456789012 done" },
    }
  end
  return { server = "r630-07", site = "lab", run = "2026-12-01T03-36-06Z-7", ok = true, steps = steps,
    timings = { total = 12.75, discover = 1.5, plan = 0.02, apply = 11.2 }, attempt = 1 }
end

local function extents_doc(n)
  local extents, targets = json.array(), json.array()
  for i = 1, n do
    extents[i] = { id = i, name = ("node-%03d"):format(i), type = "DISK", disk = ("zvol/tank/boot/node-%03d"):format(i),
      serial = ("6c4b90%010d"):format(i), path = ("zvol/tank/boot/node-%03d"):format(i), filesize = 0,
      blocksize = 512, pblocksize = false, avail_threshold = json.null, comment = "", naa = ("0x6589cfc0%022x"):format(i),
      insecure_tpc = true, xen = false, rpm = "SSD", ro = false, enabled = true, vendor = "TrueNAS", locked = false,
      product_id = "iSCSI Disk" }
    targets[i] = { id = i, name = ("node-%03d"):format(i), alias = json.null, mode = "ISCSI",
      groups = { { portal = 1, initiator = i, authmethod = "CHAP", auth = i, initiator_auth = json.null } },
      auth_networks = json.empty_array, rel_tgt_id = i, iscsi_parameters = json.null }
  end
  return { jsonrpc = "2.0", id = 42, result = { extents = extents, targets = targets } }
end

local docs = {
  { "result", result_doc() },
  { "extents20", extents_doc(20) },
  { "extents200", extents_doc(200) },
}

print(("bench/json: median of %d samples; old = the pure-Lua encoder / cjson.decode + Lua mark(); "
  .. "new = engine/jsonc.c"):format(RUNS))
print(("%-11s %-7s %8s %11s %11s %7s %10s %10s"):format("document", "op", "bytes", "old us", "new us", "x",
  "old KiB", "new KiB"))
for _, d in ipairs(docs) do
  local name, v = d[1], d[2]
  local opts = { secrets = "redact" }
  local text = json.encode(v, opts)
  assert(text == oracle.encode(v, opts), name .. ": the encoders disagree")
  local cases = {
    { "encode", function() return oracle.encode(v, opts) end, function() return json.encode(v, opts) end },
    { "indent", function() return oracle.encode(v, { secrets = "redact", indent = true }) end,
      function() return json.encode(v, { secrets = "redact", indent = true }) end },
    { "decode", function() return old_decode(text) end, function() return json.decode(text) end },
  }
  for _, c in ipairs(cases) do
    local told, tnew = per_op(c[2]), per_op(c[3])
    print(("%-11s %-7s %8d %11.1f %11.1f %7.1f %10.1f %10.1f"):format(name, c[1], #text, told * 1e6, tnew * 1e6,
      told / tnew, heap(c[2]), heap(c[3])))
  end
end
