-- bench/iscsi_only: a whole `sbot run iscsi_only` against `sbot lab --tgt
-- --time-scale 0.1` (jobs and reboots at a tenth of their time; the lab's
-- TrueNAS exporting through istgt), on 1 and on 20 servers, each run on a
-- fresh lab: wall time, sbot's own CPU (user + system of the sbot process
-- and its fleet workers, from GNU time around sbot only — the lab is another
-- process, measured apart from /proc), its share of the wall time (goal:
-- under 5 %), and the peak RSS of the largest sbot process. Then the same
-- for the converged rerun (nothing to change). Median of RUNS runs.
-- The workflow polls the iDRAC every --poll-interval 0.2 s (the demo's value;
-- at --time-scale 0.1 that is 2 s on a real iDRAC, whose default is 5 s), with
-- --jobs N (every server at once). SCALE (default 0.1) is the lab's
-- --time-scale: 1 runs the devices at their own pace (the lab's jobs and
-- reboots as long as a real R630's), the poll interval scaled with it.
-- Usage: build/sbot run bench/iscsi_only/run.lua [RUNS=3] [SIZES=1,20] [SCALE=0.1]
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local labclient = require "labclient"

local RUNS = tonumber(arg[1]) or 3
local SIZES = {}
for n in (arg[2] or "1,20"):gmatch("%d+") do SIZES[#SIZES + 1] = tonumber(n) end
local SCALE = tonumber(arg[3]) or 0.1
assert(SCALE > 0 and SCALE <= 1, "SCALE must be in (0, 1]")
local POLL = string.format("%g", 2 * SCALE)
helpers.tmp_root = os.getenv("SBOT_TEST_TMP") or "/tmp/sbot-bench"
local TICK = tonumber(select(3, helpers.sh("getconf CLK_TCK"))) or 100

local function median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- CPU seconds (user + system) a live process has used (/proc/PID/stat).
local function proc_cpu(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  local fields = {}
  for x in s:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = x end
  return (tonumber(fields[12]) + tonumber(fields[13])) / TICK
end

-- One workflow run under GNU time: {wall, cpu, rss_kb, code, out}.
local function timed_run(lab, n, extra)
  local dir = helpers.tmpdir("bench-iscsi")
  local argv = { "/usr/bin/time", "-f", "%e %U %S %M", "-o", dir .. "/time", helpers.sbot_bin, "run",
    src .. "/workflows/iscsi_only.lua", "--site", lab.site_file, "--runs-dir", lab.dir .. "/runs",
    "--state-dir", lab.dir .. "/state", "--jobs", tostring(n), "--poll-interval", POLL }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local q = {}
  for i, a in ipairs(argv) do q[i] = helpers.shquote(a) end
  local lab_cpu0 = proc_cpu(lab.proc.pid)
  local ok, code, out = helpers.sh(table.concat(q, " ") .. " 2>" .. helpers.shquote(dir .. "/err"))
  local lab_cpu = proc_cpu(lab.proc.pid) - lab_cpu0
  local e, u, s, m = helpers.read_file(dir .. "/time"):match("([%d.]+) ([%d.]+) ([%d.]+) (%d+)")
  if not ok then
    error(string.format("the run on %d server(s) failed (exit %s):\n%s\n%s", n, tostring(code), out,
      helpers.read_file(dir .. "/err"):sub(-2000)), 0)
  end
  return { wall = tonumber(e), cpu = tonumber(u) + tonumber(s), rss_kb = tonumber(m), lab_cpu = lab_cpu }
end

local function row(label, runs)
  local wall, cpu, share, rss, lab_cpu = {}, {}, {}, {}, {}
  for i, r in ipairs(runs) do
    wall[i], cpu[i], share[i], rss[i], lab_cpu[i] = r.wall, r.cpu, 100 * r.cpu / r.wall, r.rss_kb, r.lab_cpu
  end
  print(string.format("%-26s %8.2f s %8.3f s %7.2f %% %8.1f MiB %9.2f s", label, median(wall), median(cpu),
    median(share), median(rss) / 1024, median(lab_cpu)))
end

print(string.format("iscsi_only on sbot lab --tgt --time-scale %g (--poll-interval %s), median of %d run(s), each on a fresh lab",
  SCALE, POLL, RUNS))
print(string.format("%-26s %10s %10s %9s %12s %11s", "", "wall", "sbot CPU", "share", "peak RSS", "lab CPU"))
for _, n in ipairs(SIZES) do
  local first, again = {}, {}
  for i = 1, RUNS do
    local lab = labclient.start_lab { "--servers", tostring(n), "--tgt", "--time-scale", string.format("%g", SCALE) }
    lab.site_file = lab.dir .. "/site.lua"
    local ok, err = pcall(function()
      first[i] = timed_run(lab, n)
      -- TrueNAS takes 20 logins a minute from one address (the lab's minute
      -- is 60 s x the time scale): let the window pass, so that the rerun
      -- measures sbot rather than the wait for it
      if n > 10 then os.execute(string.format("sleep %g", 60 * SCALE + 0.5)) end
      again[i] = timed_run(lab, n)
    end)
    lab.stop()
    assert(ok, err)
  end
  row(string.format("%d server(s), converge", n), first)
  row(string.format("%d server(s), rerun", n), again)
end
