-- bench/fleet.lua: cost of one fleet.map worker (fork + fresh Lua state +
-- copying fn + JSON result) against a named baseline, os.execute("true")
-- (fork + exec of /bin/sh running true). Median of 7 runs, and peak RSS.
--   build/sbot run bench/fleet.lua [ITEMS] [JOBS]
local fleet = require "sbot.fleet"
local sys = require "sbot.sys"
local n, jobs = tonumber(arg[1]) or 100, tonumber(arg[2]) or 1
local RUNS = 7

local function median(f)
  local t = {}
  for r = 1, RUNS do
    local t0 = sys.monotime()
    f()
    t[r] = sys.monotime() - t0
  end
  table.sort(t)
  return t[(RUNS + 1) // 2]
end

local items = {}
for i = 1, n do items[i] = i end
local data = { factor = 2, names = { "a", "b", "c" } }
local worker = median(function()
  local res = fleet.map(items, function(x) return x * data.factor end, { jobs = jobs })
  assert(#res == n and res[n].value == n * 2)
end)
local base = median(function() for _ = 1, n do os.execute("true") end end)
local rss = "?"
for line in io.lines("/proc/self/status") do
  rss = line:match("^VmHWM:%s*(%d+ kB)") or rss
end
print(string.format("fleet.map, %d items, jobs=%d: %.2f ms/item; baseline os.execute(\"true\"): "
  .. "%.2f ms/call; ratio %.2f; parent peak RSS %s", n, jobs, worker * 1000 / n, base * 1000 / n,
  worker / base, rss))
