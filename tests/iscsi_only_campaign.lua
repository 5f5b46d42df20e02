-- workflows/iscsi_only.lua's long campaigns against `sbot lab --tgt`
-- (tests/lua/iscsi_only_spec.lua runs two of each):
--   faults: SEEDS seeds (default 20), each a fresh lab of two servers with
--           10 % of iDRAC requests answered 503 and 5 % of TrueNAS replies
--           dropped: one run converges both servers (each boots its own
--           zvol as its initiator), no duplicate zvol/target/extent/mapping,
--           no sbot-marked orphan; a second run plans nothing and writes
--           nothing to either device.
--   kills:  POINTS points (default 10) drawn at random (seeded) in the
--           process phases, alternately the iSCSI step's and the R630's:
--           after a random one of the step's write calls (as the device
--           counts them) and a random moment more, the run's sbot process is
--           killed with SIGKILL (its workers die with it); the rerun
--           converges and leaves no sbot-marked orphan, the server boots its
--           zvol.
-- usage: build/sbot run tests/iscsi_only_campaign.lua [faults|kills|all] [N] [FIRST_SEED]
-- (from the source tree; SBOT_BIN defaults to build/sbot). Prints a table;
-- exit 0 when every run passed.
local dir = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or ".")
package.path = dir .. "/support/?.lua;" .. package.path
local campaign = require "iscsi_only_kill"

local what, n, first = arg[1] or "all", tonumber(arg[2]), tonumber(arg[3]) or 1
local rows, failures = {}, 0

local function row(name, ok, detail)
  if not ok then failures = failures + 1 end
  rows[#rows + 1] = string.format("%-16s %-4s %s", name, ok and "ok" or "FAIL", detail)
  print(rows[#rows])
  io.stdout:flush()
end

if what == "faults" or what == "all" then
  print(string.format("%-16s %-4s %s", "FAULT SEED", "", "wall, 503s, dropped replies, mappings, rerun"))
  for seed = first, first + (n or 20) - 1 do
    local ok, res = pcall(campaign.fault_seed, seed)
    row("seed " .. seed, ok, ok and res or tostring(res):gsub("\n", " "):sub(1, 400))
  end
end

if what == "kills" or what == "all" then
  print(string.format("%-16s %-4s %s", "KILL POINT", "", "killed after the step's k-th write + a delay, what was done, rerun"))
  math.randomseed(first)
  for i = 1, n or 10 do
    -- alternately in each step's process phase: after a random one of its
    -- writes, a moment later (after the last: anywhere in what follows, the
    -- iSCSI step's read-back, the R630's reboot and job waits)
    local step = i % 2 == 1 and "iscsi" or "r630"
    local k = math.random(1, campaign.WRITES[step])
    local at = math.random() * (k < campaign.WRITES[step] and 0.1 or (step == "r630" and 2 or 0.2))
    local ok, res = pcall(campaign.kill_point, step, k, at)
    row(string.format("point %d (%s)", i, step), ok, ok and res or tostring(res):gsub("\n", " "):sub(1, 400))
  end
end

print(string.format("%d of %d passed", #rows - failures, #rows))
os.exit(failures == 0 and 0 or 1)
