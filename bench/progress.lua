-- bench/progress.lua: what a progress report costs the work that makes it
-- (sbot.progress: docs/progress.md), per call, in each mode, with the wait
-- already begun, so the call is the throttled path a transfer callback or a
-- poll loop takes thousands of times.
--
-- Baseline: `math.abs(0.5)`, a Lua call of a C function that does nothing
-- worth measuring: the least a report from Lua can cost. Also: the same
-- update through sbot.http's own callback rate (4 per second) would be
-- negligible whatever it cost; the ratio shows it stays so when called in a
-- tight loop.
--
-- Median of BENCH_RUNS (default 5) runs of N calls each (default 200,000),
-- peak RSS at the end.
--   build/sbot run bench/progress.lua [N] 2>/dev/null   (tty mode draws on stderr)
local progress = require "sbot.progress"
local sys = require "sbot.sys"

local N = tonumber(arg and arg[1]) or 200000
local RUNS = tonumber(os.getenv("BENCH_RUNS") or "5")

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function time(fn)
  local runs = {}
  for r = 1, RUNS do
    local t0 = sys.monotime()
    fn()
    runs[r] = (sys.monotime() - t0) / N * 1e9
  end
  return median(runs)
end

local base = time(function()
  local abs = math.abs
  for i = 1, N do abs(i / N) end
end)

local rows = { { "baseline math.abs", base } }
for _, mode in ipairs { "log", "off", "tty" } do
  progress.configure { mode = mode, log_interval = 1e9 }
  local update = progress.update
  update("bench wait", 0)
  local ns = time(function()
    for i = 1, N do update("bench wait", i / N, "Running") end
  end)
  progress.done("bench wait")
  rows[#rows + 1] = { "progress.update (" .. mode .. ")", ns }
end
progress.configure { mode = "auto" }

print(string.format("%d calls per run, median of %d runs", N, RUNS))
for _, r in ipairs(rows) do
  print(string.format("  %-28s %8.1f ns/call  %6.1fx baseline", r[1], r[2], r[2] / base))
end
local f = io.open("/proc/self/status")
local rss = f and f:read("a"):match("VmHWM:%s*(%d+)")
if f then f:close() end
print("peak RSS " .. (rss or "?") .. " kB")
