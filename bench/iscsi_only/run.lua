-- bench/iscsi_only: a whole `sbot run iscsi_only` against `sbot lab --tgt`
-- (the lab's TrueNAS exporting through istgt), on 1 and on 20 servers, each
-- run on a fresh lab: wall time, sbot's own CPU (user + system of the sbot
-- process and its fleet workers, from GNU time around sbot only — the lab is
-- another process, measured apart from /proc), its share of the wall time
-- (goal: under 5 %), and the peak RSS of the largest sbot process. Then the
-- same for the converged rerun (nothing to change). Median of RUNS runs.
--
-- SCALE (default 0.1) is the lab's --time-scale, PACE its --pace:
--   field (default): the iDRACs take the time a real R630 takes (answers
--     0.3-2 s, a config job 120 s, a reboot 180 s; docs/lab.md), times SCALE;
--     the workflow polls at its default interval (5 s) times SCALE. This is
--     the run the 5 % goal is about: a tenth of a real rack's time.
--   quick: the lab's test pace (a job 0.5 s, a reboot 1 s, answers at once),
--     polled every 2 s x SCALE; the wall time is then mostly the lab's and
--     sbot's own work, so the share says how much work sbot does, not how
--     much of a real run it takes.
-- --jobs N (every server at once).
-- Usage: build/sbot run bench/iscsi_only/run.lua [RUNS=3] [SIZES=1,20] [SCALE=0.1] [PACE=field]
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local labclient = require "labclient"

local RUNS = tonumber(arg[1]) or 3
local SIZES = {}
for n in (arg[2] or "1,20"):gmatch("%d+") do SIZES[#SIZES + 1] = tonumber(n) end
local SCALE = tonumber(arg[3]) or 0.1
assert(SCALE > 0 and SCALE <= 1, "SCALE must be in (0, 1]")
local PACE = arg[4] or "field"
assert(PACE == "field" or PACE == "quick", "PACE must be field or quick")
local POLL = string.format("%g", (PACE == "field" and 5 or 2) * SCALE)
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

print(string.format("iscsi_only on sbot lab --tgt --pace %s --time-scale %g (--poll-interval %s), median of %d run(s), each on a fresh lab",
  PACE, SCALE, POLL, RUNS))
print(string.format("%-26s %10s %10s %9s %12s %11s", "", "wall", "sbot CPU", "share", "peak RSS", "lab CPU"))
for _, n in ipairs(SIZES) do
  local first, again = {}, {}
  for i = 1, RUNS do
    local lab = labclient.start_lab { "--servers", tostring(n), "--tgt", "--pace", PACE,
      "--time-scale", string.format("%g", SCALE) }
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
