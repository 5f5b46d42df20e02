--- bench/runner.lua: costs of the workflow runner that grow with the site.
--   sbot run bench/runner.lua [--quick]
-- Prints medians of several runs and ratios; a regression shows as a ratio
-- that grows with the input instead of staying flat. No test asserts these.
--
-- 1. summary of a run whose server ids are L characters long, L = 1k, 4k,
--    16k: time per character, against the baseline "v0" (the summary before
--    this change: every cell padded, trailing blanks stripped with
--    gsub("%s+$"), which backtracks over each run of padding: quadratic).
-- 2. loading and validating a site of N servers (no secrets), N = 2.5k, 5k,
--    10k: time per server (flat = linear).
-- 3. what one worker gets copied: the whole site vs the runner's per-server
--    view (the site with that server only), for a 10k-server site.
-- 4. end to end: `sbot run kv.lua --server <one>` over a site of N servers,
--    CPU seconds of sbot and its worker (getrusage of children, via
--    /usr/bin/time), N = 2.5k, 10k.
local sys = require "sbot.sys"
local json = require "sbot.json"
local run = require "sbot.run"
local fleet = require "sbot.fleet"

local quick = arg and arg[1] == "--quick"
local REPEAT = quick and 3 or 5
local src = os.getenv("SBOT_SOURCE_DIR") or "."
local sbot = os.getenv("SBOT_BIN") or (src .. "/build/sbot")
local tmp = os.getenv("TMPDIR") or "/tmp"

local function median(f)
  local t = {}
  for i = 1, REPEAT do
    collectgarbage("collect")
    local t0 = sys.monotime()
    f()
    t[i] = sys.monotime() - t0
  end
  table.sort(t)
  return t[(REPEAT + 1) // 2]
end

-- the summary as it was (named baseline "v0")
local function summary_v0(record)
  local function pad(s, n) s = tostring(s); return s .. string.rep(" ", n - #s) end
  local rows = { { "SERVER", "COMPONENT", "STATUS", "PLANNED", "APPLIED", "TIME" } }
  for _, r in ipairs(record.results) do
    rows[#rows + 1] = { r.id, r.component, r.status, "-", "-", "0 ms" }
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for i, c in ipairs(row) do widths[i] = math.max(widths[i] or 0, #tostring(c)) end
  end
  local out = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(row) do cells[i] = pad(c, widths[i]) end
    out[#out + 1] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  return table.concat(out, "\n")
end

print("== 1. summary, server ids of L characters (3 rows: the long id, two short ones)")
print(string.format("%8s  %14s  %14s  %12s  %12s", "L", "now us/char", "v0 us/char", "now growth", "v0 growth"))
local first_now, first_v0
for _, L in ipairs { 1000, 4000, 16000 } do
  local record = { run_id = "r", mode = "apply", ok = true, results = {
    { id = string.rep("x", L), component = "c", status = "ok", phases = {} },
    { id = "s2", component = "c", status = "ok", phases = {} },
    { id = "s3", component = "c", status = "ok", phases = {} } } }
  local now = median(function() run.summary(record) end) / L * 1e6
  local v0 = (L <= 4000 or not quick) and median(function() summary_v0(record) end) / L * 1e6 or 0 / 0
  first_now, first_v0 = first_now or now, first_v0 or v0
  print(string.format("%8d  %14.3f  %14.3f  %11.1fx  %11.1fx", L, now, v0, now / first_now, v0 / first_v0))
end
print("   (growth = time per character relative to L = 1000: ~1x is linear; v0 grows with L)")

local function site_file(n)
  local path = string.format("%s/sbot-bench-site-%d.lua", tmp, n)
  local f = assert(io.open(path, "w"))
  f:write("return { servers = {\n")
  for i = 1, n do
    f:write(string.format('  { id = "r630-%05d", hostname = "node%d.example", macs = { "24:6e:96:00:%02x:%02x" },'
      .. ' labels = { rack = "r%d" } },\n', i, i, (i // 256) % 256, i % 256, i % 40))
  end
  f:write(string.format('}, components = { test_kv = { state_file = "%s/sbot-bench-{id}.json", want = { a = "1" } } } }\n', tmp))
  f:close()
  return path
end

print("\n== 2. site load + validation, N servers")
print(string.format("%8s  %10s  %14s  %10s", "N", "ms", "us/server", "growth"))
local site_mod = require "sbot.site"
local base
for _, n in ipairs { 2500, 5000, 10000 } do
  local path = site_file(n)
  local t = median(function() assert(site_mod.load(path)) end)
  local per = t / n * 1e6
  base = base or per
  print(string.format("%8d  %10.1f  %14.1f  %9.1fx", n, t * 1000, per, per / base))
end

print("\n== 3. copied into one worker, 10k-server site")
local site = assert(site_mod.load(site_file(10000)))
local view = {}
for k, v in pairs(site) do view[k] = v end
view.servers = json.array { site.servers[1] }
local whole = median(function() fleet.map({ { site = site } }, function(j) return #j.site.servers end) end)
local one = median(function() fleet.map({ { site = view } }, function(j) return #j.site.servers end) end)
local none = median(function() fleet.map({ {} }, function() return 0 end) end)
print(string.format("   whole site: %.1f ms   per-server view (what the runner sends): %.1f ms   empty job: %.1f ms",
  whole * 1000, one * 1000, none * 1000))
print(string.format("   ratio whole/view: %.1fx (a full run pays this once per server)", whole / one))

print("\n== 4. sbot run kv.lua --server r630-00001, CPU s of sbot + worker")
local function cpu(n)
  local path = site_file(n)
  local dir = tmp .. "/sbot-bench-runs"
  local cmd = string.format("SBOT_COMPONENT_PATH=%s/tests/support/components /usr/bin/time -f '%%U %%S %%M' %s run "
    .. "%s/tests/support/workflows/kv.lua --site %s --server r630-00001 --runs-dir %s --state-dir %s 2>&1 >/dev/null | tail -1",
    src, sbot, src, path, dir, dir)
  local samples = {}
  for i = 1, REPEAT do
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    local u, s, m = out:match("([%d.]+) ([%d.]+) (%d+)")
    samples[i] = { cpu = tonumber(u) + tonumber(s), rss = tonumber(m) }
  end
  table.sort(samples, function(a, b) return a.cpu < b.cpu end)
  return samples[(REPEAT + 1) // 2]
end
local small = cpu(2500)
local big = cpu(10000)
print(string.format("   N=2500: %.2f s, %d KB max RSS   N=10000: %.2f s, %d KB   ratio %.1fx for 4x the servers",
  small.cpu, small.rss, big.cpu, big.rss, big.cpu / small.cpu))
os.execute("rm -rf " .. tmp .. "/sbot-bench-runs " .. tmp .. "/sbot-bench-*.json " .. tmp .. "/sbot-bench-site-*.lua")
