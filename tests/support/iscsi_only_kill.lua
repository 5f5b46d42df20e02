--- One fault seed and one kill point of workflows/iscsi_only.lua against a
-- fresh `sbot lab --tgt`, each raising on a problem and returning a line for
-- the table (tests/iscsi_only_campaign.lua; two of each in
-- tests/lua/iscsi_only_spec.lua).
local json = require "sbot.json"
local helpers = require "helpers"
local io_lab = require "iscsi_only_lab"

local M = {}
M.FAULTS = "idrac:503=0.1;truenas:drop=0.05"

local function check(cond, msg) if not cond then error(msg, 0) end end

local function failed_rows(r)
  local out = {}
  for _, row in ipairs(r.record and r.record.results or {}) do
    if row.status ~= "ok" then out[#out + 1] = row.id .. " " .. row.component .. ": " .. tostring(row.error or row.reason) end
  end
  if #out == 0 then out[1] = "exit " .. tostring(r.code) .. ": " .. r.stderr:sub(-800) end
  return table.concat(out, "; ")
end

local function converged(lab, st, ids)
  local probs = io_lab.problems(st.truenas, ids)
  for _, id in ipairs(ids) do
    for _, p in ipairs(io_lab.boot_problems(st, id, io_lab.SIZE, io_lab.chap_user(lab, id))) do probs[#probs + 1] = p end
  end
  check(#probs == 0, table.concat(probs, "; "))
  check(#st.truenas.iscsi.targetextents == #ids, #st.truenas.iscsi.targetextents .. " mappings for " .. #ids .. " servers")
end

--- A fresh lab of two servers under faults: one run converges; the rerun plans
-- and writes nothing.
function M.fault_seed(seed)
  local lab = io_lab.start_lab(2, { "--seed", tostring(seed), "--faults", M.FAULTS })
  local ok, res = pcall(function()
    lab.fast_site = io_lab.site(lab, "fast", io_lab.DROPS)
    local t0 = helpers.now()
    local r = io_lab.run(lab)
    local wall = helpers.now() - t0
    local st = io_lab.state(lab)
    check(r.code == 0, "run failed: " .. failed_rows(r) .. " (istgt: " .. json.encode(st.truenas.tgt_errors)
      .. ", " .. tostring(st.truenas.tgt.restarts) .. " restarts)")
    converged(lab, st, { "r630-01", "r630-02" })
    local again = io_lab.run(lab)
    check(again.code == 0, "rerun failed: " .. failed_rows(again))
    local planned = 0
    for _, row in ipairs(again.record.results) do planned = planned + #(row.plan or {}) end
    check(planned == 0, "the rerun planned " .. planned .. " change(s)")
    local st2 = io_lab.state(lab)
    check(json.encode(io_lab.writes(st)) == json.encode(io_lab.writes(st2)),
      "the rerun wrote: " .. json.encode(io_lab.writes(st)) .. " -> " .. json.encode(io_lab.writes(st2)))
    local n503 = 0
    for _, d in pairs(st2.idrac) do n503 = n503 + (d.faults["503"] or 0) end
    return string.format("%5.1f s, %3d x 503, %2d dropped, %d mappings, rerun: 0 changes, 0 writes",
      wall, n503, st2.truenas.faults.dropped, #st2.truenas.iscsi.targetextents)
  end)
  lab.stop()
  if not ok then error(res, 0) end
  return res
end

-- Write calls each step makes on a fresh server (TrueNAS: zvol, portal,
-- initiator group, target, extent, mapping, service enable and start; the
-- iDRAC: BIOS PATCH and job, NIC PATCH and job, GracefulShutdown, On).
M.WRITES = { iscsi = 8, r630 = 6 }

-- The lab of a kill point: a slower clock (jobs 0.25 s, a boot 0.5 s) and the
-- zvol device race (a new zvol's device appears 0.25 s after it), so that the
-- process phases last long enough for a kill to land between their calls.
M.KILL_LAB = { "--time-scale", "0.5", "--faults", "truenas:zvoldev=1" }

--- Kill the run's sbot process (SIGKILL) `at` seconds after the k-th write
-- of step `step` ("iscsi": TrueNAS's, "r630": the iDRAC's) reached its
-- device; the rerun must converge and leave no sbot-marked orphan.
function M.kill_point(step, k, at)
  local lab = io_lab.start_lab(1, M.KILL_LAB)
  local ok, res = pcall(function()
    lab.fast_site = io_lab.site(lab, "fast", io_lab.FAST)
    local function writes()
      local st = lab.state().devices
      return step == "iscsi" and st.truenas.writes or st["idrac-1"].writes
    end
    local p = io_lab.spawn(lab)
    local started
    for _ = 1, 3000 do
      if writes() >= k then started = true break end
      if not p:alive() then break end
    end
    check(started, "write " .. k .. " of the " .. step .. " step did not come: " .. p:output():sub(-1500))
    if at > 0 then os.execute(string.format("sleep %.3f", at)) end
    local finished = not p:alive()
    os.execute("kill -KILL " .. p.pid)
    -- the workers die with it (PR_SET_PDEATHSIG); nothing of the run is left
    for _ = 1, 200 do
      if not helpers.sh("pgrep -g " .. p.pid .. " >/dev/null") then break end
      os.execute("sleep 0.01")
    end
    local survivors = select(3, helpers.sh("pgrep -g " .. p.pid .. " || true"))
    p:stop("KILL")
    check(survivors == "", "processes of the killed run still running: " .. survivors)
    local st = io_lab.state(lab)
    local tn, d = st.truenas, st.idrac["r630-01"]
    local done = string.format("%d TrueNAS write(s), %d iDRAC write(s), %d reset(s)", tn.writes, d.writes, d.resets)
    local r = io_lab.run(lab)
    check(r.code == 0, "rerun after a kill at write " .. k .. " +" .. at .. " s (" .. done .. ") failed: " .. failed_rows(r))
    converged(lab, io_lab.state(lab), { "r630-01" })
    return string.format("write %d +%.3f s%s: %s; rerun converged", k, at, finished and " (the run had ended)" or "", done)
  end)
  lab.stop()
  if not ok then error(res, 0) end
  return res
end

return M
