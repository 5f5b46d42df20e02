-- bench/redfish: the R630 component's Redfish discovery against `sbot lab`.
--  1. One lab R630 (iDRAC 8) with 50 ms latency per request: the component's
--     discovery (get_many rounds, per_host 2, $expand on collections the
--     service offers it for) versus the same resources fetched one after
--     another (one GET per resource, sequential: the naive client), and versus
--     the very requests the discovery made, one after another. Median of RUNS.
--  2. 50 lab BMCs discovered through the fleet (one worker each) versus one
--     BMC alone; peak RSS of the parent (VmHWM).
-- Usage: build/sbot run bench/redfish/run.lua [RUNS=5] [BMCS=50] [LATENCY_MS=50]
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local labclient = require "labclient"
local redfish = require "sbot.redfish"
local log = require "sbot.log"
local json = require "sbot.json"
local sys = require "sbot.sys"
local fleet = require "sbot.fleet"
local R630 = require "sbot.component.r630"

local RUNS = tonumber(arg[1]) or 5
local BMCS = tonumber(arg[2]) or 50
local LATENCY = tonumber(arg[3]) or 50
helpers.tmp_root = os.getenv("SBOT_TEST_TMP") or "/tmp/sbot-bench"

local function median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function connect(server)
  return assert(redfish.connect { host = server.idrac.host, user = server.idrac.user,
    password = server.idrac.password, tls = server.idrac.tls, per_host = 2 })
end

local function discover(c)
  return R630.spec.discover({}, c)
end

-- ---- 1. one BMC --------------------------------------------------------------
local lab = labclient.start_lab({ "--servers", "1", "--latency", tostring(LATENCY), "--time-scale", "0.1" })
local server = lab.site.servers[1]

-- which requests does discovery make? (sbot.http logs each at debug level)
local logfile = helpers.tmpdir("bench-redfish") .. "/log.jsonl"
do
  local c <close> = connect(server)
  assert(log.configure { file = logfile, file_level = "debug" })
  discover(c)
  assert(log.configure { file = false })
end
local requests = {}
for line in io.lines(logfile) do
  local e = json.decode(line)
  local url = e and e.msg and e.msg:match("^http GET (https://%S+) 200 ")
  if url then requests[#requests + 1] = url:gsub("^https://[^/]+", "") end
end

-- the same resources one by one: an expanded collection is its plain GET plus
-- one GET per member
local resources = {}
do
  local c <close> = connect(server)
  for _, p in ipairs(requests) do
    local plain = p:gsub("%?%$expand=.*$", "")
    resources[#resources + 1] = plain
    if plain ~= p then
      local doc = assert(c:get(plain))
      for _, m in ipairs(doc.Members or {}) do resources[#resources + 1] = m["@odata.id"] end
    end
  end
end

local t_disc, t_naive, t_same = {}, {}, {}
for r = 1, RUNS do
  local c = connect(server)
  local t0 = sys.monotime()
  discover(c)
  t_disc[r] = sys.monotime() - t0
  c:close()
  c = connect(server)
  t0 = sys.monotime()
  for _, p in ipairs(resources) do assert(c:get(p)) end
  t_naive[r] = sys.monotime() - t0
  c:close()
  c = connect(server)
  t0 = sys.monotime()
  for _, p in ipairs(requests) do assert(c:get(p)) end
  t_same[r] = sys.monotime() - t0
  c:close()
end
lab.stop()
local d, n, s = median(t_disc), median(t_naive), median(t_same)
print(string.format("1. one iDRAC 8, %d ms latency, median of %d runs", LATENCY, RUNS))
print(string.format("   discovery (get_many, per_host 2, $expand):        %6.3f s  %3d requests", d, #requests))
print(string.format("   same resources one after another (one GET each):  %6.3f s  %3d requests  ratio %.2fx",
  n, #resources, n / d))
print(string.format("   the discovery's requests one after another:        %6.3f s  %3d requests  ratio %.2fx",
  s, #requests, s / d))

-- ---- 2. the fleet --------------------------------------------------------------
lab = labclient.start_lab({ "--servers", tostring(BMCS), "--latency", tostring(LATENCY), "--time-scale", "0.1" })
-- fn goes to each worker as bytecode: it requires what it uses itself
local function one(srv)
  local rf = require "sbot.redfish"
  local c <close> = assert(rf.connect { host = srv.idrac.host, user = srv.idrac.user,
    password = srv.idrac.password, tls = srv.idrac.tls, per_host = 2 })
  local D = require("sbot.component.r630").spec.discover({}, c)
  return D.system.service_tag
end
local t_one, t_all = {}, {}
for r = 1, math.max(3, RUNS // 2) do
  local t0 = sys.monotime()
  local res = fleet.map({ lab.site.servers[1] }, one, { jobs = 1 })
  assert(res[1].ok, res[1].error)
  t_one[r] = sys.monotime() - t0
  t0 = sys.monotime()
  res = fleet.map(lab.site.servers, one, { jobs = BMCS })
  for i, x in ipairs(res) do assert(x.ok, "server " .. i .. ": " .. tostring(x.error)) end
  t_all[r] = sys.monotime() - t0
end
local st = lab.state()
local leaked = 0
for _, dv in pairs(st.devices) do if dv.kind == "idrac" then leaked = leaked + dv.sessions end end
lab.stop()
local hwm = "?"
for line in io.lines("/proc/self/status") do
  local kb = line:match("^VmHWM:%s+(%d+)")
  if kb then hwm = string.format("%.1f MiB", tonumber(kb) / 1024) end
end
local o, a = median(t_one), median(t_all)
print(string.format("2. %d lab BMCs through the fleet (%d workers) vs one alone, %d ms latency", BMCS, BMCS, LATENCY))
print(string.format("   one BMC: %.3f s   %d BMCs: %.3f s   ratio %.2fx   parent peak RSS %s   sessions left %d",
  o, BMCS, a, a / o, hwm, leaked))
