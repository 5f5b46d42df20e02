-- The iSCSI component's long campaigns against `sbot lab --tgt` (a few of
-- each run in tests/lua/iscsi_component_spec.lua):
--   faults: SEEDS seeds (default 20), each a fresh lab with 5 % of TrueNAS
--           replies dropped and the zvol device race; two servers converge in
--           one run each; no duplicate, no orphan; a rerun writes nothing.
--   kills:  KILLS points (default 10) spread over the process phase: the run
--           is SIGKILLed there, the rerun converges, no sbot-marked orphan.
-- usage: build/sbot run tests/iscsi_campaign.lua [faults|kills|all] [N] [FIRST_SEED]
-- (from the source tree; SBOT_BIN defaults to build/sbot). Exit 0 when all passed.
local dir = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or ".")
package.path = dir .. "/support/?.lua;" .. package.path
local helpers = require "helpers"
local il = require "iscsi_lab"
local json = require "sbot.json"

local what, n = arg[1] or "all", tonumber(arg[2])
local failures, lines = 0, {}
local function report(ok, msg)
  if not ok then failures = failures + 1 end
  lines[#lines + 1] = (ok and "ok   " or "FAIL ") .. msg
  print(lines[#lines])
  io.stdout:flush()
end

local function faults(seeds, first)
  for seed = first, first + seeds - 1 do
    local lab = il.start_lab { "--seed", tostring(seed), "--faults", "truenas:drop=0.05,zvoldev=0.5" }
    local ok, err = pcall(function()
      local t0 = helpers.now()
      for _, server in ipairs { "r630-01", "r630-02" } do
        local r = il.run(lab, server)
        assert(r.code == 0, server .. ": " .. tostring(r.result and r.result.error or r.stderr))
      end
      local tn = il.truenas(lab)
      local probs = il.problems(tn, { "r630-01", "r630-02" })
      assert(#probs == 0, table.concat(probs, "; "))
      assert(#tn.iscsi.targetextents == 2, #tn.iscsi.targetextents .. " mappings")
      local writes = tn.writes
      local again = il.run(lab, "r630-01")
      assert(again.code == 0, "rerun failed: " .. tostring(again.result and again.result.error or again.stderr))
      assert(#again.result.plan == 0, "rerun planned changes: " .. json.encode(again.result.plan, { secrets = "redact" }))
      assert(il.truenas(lab).writes == writes, "rerun wrote")
      return string.format("%.1f s, %d replies dropped", helpers.now() - t0, tn.faults.dropped)
    end)
    lab.stop()
    report(ok, string.format("faults seed %d: %s", seed, tostring(err)))
  end
end

local function kills(points)
  -- how long the process phase takes here, from one clean run
  local lab = il.start_lab { "--latency", "20" }
  local r = il.run(lab, "r630-01")
  lab.stop()
  assert(r.code == 0, "clean run failed: " .. r.stderr)
  local span = r.result.phases.process.ms / 1000
  print(string.format("process phase: %.2f s", span))
  for i = 1, points do
    local delay = span * (i - 0.5) / points
    lab = il.start_lab { "--latency", "20" }
    local ok, err = pcall(function()
      local p = il.spawn(lab, "r630-01")
      local started
      for _ = 1, 300 do
        if helpers.read_file(p.log):find("process", 1, true) then started = true break end
        os.execute("sleep 0.01")
      end
      assert(started, "the process phase did not start: " .. p:output())
      os.execute(string.format("sleep %.3f", delay))
      p:stop("KILL")
      local before = il.truenas(lab)
      local made = #before.datasets + #before.iscsi.targets + #before.iscsi.extents + #before.iscsi.targetextents
      local rr = il.run(lab, "r630-01")
      assert(rr.code == 0, "rerun: " .. tostring(rr.result and rr.result.error or rr.stderr))
      local probs = il.problems(il.truenas(lab), { "r630-01" })
      assert(#probs == 0, table.concat(probs, "; "))
      return string.format("killed at +%.2f s with %d object(s) made, rerun converged", delay, made)
    end)
    lab.stop()
    report(ok, string.format("kill point %d: %s", i, tostring(err)))
  end
end

if what == "faults" or what == "all" then faults(n or 20, tonumber(arg[3]) or 1) end
if what == "kills" or what == "all" then kills(n or 10) end
print(string.format("%d of %d passed", #lines - failures, #lines))
os.exit(failures == 0 and 0 or 1)
