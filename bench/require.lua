-- bench/require.lua: what a fleet worker pays to load sbot's Lua modules.
-- The parent requires them (as `sbot run` does before its workers start);
-- then N workers each load them again, either by require (engine/runtime.c:
-- the bytecode the parent compiled, inherited by the fork) or, the named
-- baseline, by compiling each module's file (loadfile over package.path, what
-- require did before). CPU of the workers (user + system of the reaped
-- children, /proc/self/stat), median of 5 runs.
--   build/sbot run bench/require.lua [WORKERS=20]
local fleet = require "sbot.fleet"
local N = tonumber(arg[1]) or 20
local RUNS = 5
local MODS = { "sbot.run", "sbot.site", "sbot.component", "sbot.vault", "sbot.store", "sbot.workflow",
  "sbot.schema", "sbot.secret", "sbot.s3", "sbot.lease", "sbot.report", "sbot.json" }
for _, m in ipairs(MODS) do require(m) end
local TICK = 100
do
  local p = io.popen("getconf CLK_TCK")
  TICK = tonumber(p:read("l")) or 100
  p:close()
end

-- CPU seconds of this process's reaped children so far
local function children_cpu()
  local s = io.open("/proc/self/stat"):read("a")
  local f = {}
  for x in s:match("%) (.*)$"):gmatch("%S+") do f[#f + 1] = x end
  return (tonumber(f[14]) + tonumber(f[15])) / TICK
end

local items = {}
for i = 1, N do items[i] = i end
local function measure(compile)
  local t = {}
  for r = 1, RUNS do
    local c0 = children_cpu()
    local res = fleet.map(items, function()
      for _, m in ipairs(MODS) do
        if compile then
          assert(loadfile(assert(package.searchpath(m, package.path))))
        else
          require(m)
        end
      end
      return true
    end, { jobs = N })
    for _, x in ipairs(res) do assert(x.ok, x.error) end
    t[r] = children_cpu() - c0
  end
  table.sort(t)
  return t[(RUNS + 1) // 2]
end
local cached, compiled = measure(false), measure(true)
print(string.format("%d workers loading %d modules: require %.0f ms CPU, compiling the files (baseline) %.0f ms; ratio %.2f",
  N, #MODS, cached * 1000, compiled * 1000, cached / compiled))
