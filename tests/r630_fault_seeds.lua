-- The R630 component under injected faults, for many seeds: for each seed a
-- fresh `sbot lab` (one iDRAC 8, --faults idrac:503=0.1,reset=0.05), a run
-- from factory state that must converge (with the one-time virtual-CD boot),
-- a second run that must plan nothing and write nothing, and no session left.
-- A few seeds run in the suite (tests/lua/r630_spec.lua); this runs them all:
--   sbot run tests/r630_fault_seeds.lua [FIRST [LAST]] [--idrac 9] [--faults SPEC]
-- Prints one line per seed and a summary; exits 1 if any seed failed.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "tests"
package.path = here .. "/support/?.lua;" .. package.path
os.getenv("SBOT_BIN") -- helpers reads it; default build/sbot
local helpers = require "helpers"
local labclient = require "labclient"
local images = require "images"
local R630 = require "sbot.component.r630"

local first, last, idrac, spec = 1, 20, "8", "idrac:503=0.1,reset=0.05"
local pos = {}
local i = 1
while arg[i] do
  if arg[i] == "--idrac" then i = i + 1; idrac = arg[i]
  elseif arg[i] == "--faults" then i = i + 1; spec = arg[i]
  else pos[#pos + 1] = tonumber(arg[i]) end
  i = i + 1
end
first = pos[1] or first
last = pos[2] or (pos[1] or last)

local dir = helpers.tmpdir("seeds")
images.make_iso(dir .. "/agent.iso", "AGENT_SEEDS")
local imgs = images.server(dir)

local function config()
  return {
    iscsi_boot = { target_iqn = "iqn.2005-10.org.freenas.ctl:seed", target_ip = "127.0.0.1",
      initiator_iqn = "iqn.2024-01.org.sbot:seed" },
    boot = { mode = "Uefi", first = "iscsi" },
    virtual_media = { image_url = imgs.url("agent.iso") },
    power = { timeout = 10, interval = 0.05 },
    jobs = { timeout = 30, interval = 0.05 },
    redfish = { retries = { max = 8, base = 0.02, cap = 0.2 }, timeout = 10 },
  }
end

local failed = 0
for seed = first, last do
  local t0 = helpers.now()
  local lab = labclient.start_lab({ "--servers", "1", "--idrac", idrac, "--time-scale", "0.1",
    "--seed", tostring(seed), "--faults", spec })
  local server = lab.site.servers[1]
  local problems = {}
  local ok, err = pcall(function()
    local r = assert(R630.new(config(), { id = server.id, server = server, artifact_dir = dir .. "/art" }))
      :execute { mode = "apply" }
    if r.status ~= "ok" then problems[#problems + 1] = "first run: " .. tostring(r.error) end
    local before = lab.state().devices["idrac-1"]
    local r2 = assert(R630.new(config(), { id = server.id, server = server, artifact_dir = dir .. "/art" }))
      :execute { mode = "apply" }
    local st = lab.state().devices["idrac-1"]
    if r2.status ~= "ok" then problems[#problems + 1] = "second run: " .. tostring(r2.error) end
    if #(r2.plan or {}) ~= 0 then problems[#problems + 1] = "second run planned " .. #r2.plan .. " change(s)" end
    if st.writes ~= before.writes then problems[#problems + 1] = "second run wrote " .. (st.writes - before.writes) .. " time(s)" end
    if st.sessions ~= 0 then problems[#problems + 1] = st.sessions .. " session(s) left" end
    if st.resets ~= 1 then problems[#problems + 1] = st.resets .. " reboots (want 1)" end
    local cd = 0
    for _, b in ipairs(st.boots) do if b.source == "VirtualCD" then cd = cd + 1 end end
    if cd ~= 1 then problems[#problems + 1] = cd .. " virtual-CD boots (want 1)" end
    io.stdout:write(string.format("seed %2d: %s  faults %s  %.1f s%s\n", seed, #problems == 0 and "ok    " or "FAILED",
      require("sbot.json").encode(st.faults or {}), helpers.now() - t0,
      #problems > 0 and ("\n    " .. table.concat(problems, "\n    ")) or ""))
  end)
  if not ok then problems[#problems + 1] = tostring(err); io.stdout:write("seed " .. seed .. ": ERROR " .. tostring(err) .. "\n") end
  if #problems > 0 then failed = failed + 1 end
  lab.stop()
end
imgs.stop()
io.stdout:write(string.format("%d of %d seed(s) converged (%s, iDRAC %s)\n", last - first + 1 - failed,
  last - first + 1, spec, idrac))
os.exit(failed == 0 and 0 or 1, true)
