--- Helpers for workflows/iscsi_only.lua against `sbot lab --tgt`: start a
-- lab, write a site file around the lab's (extra components, hooks or a
-- changed truenas section), run the workflow in its own process, read its
-- run record, and check what both devices hold afterwards. Used by
-- tests/lua/iscsi_only_spec.lua and tests/iscsi_only_campaign.lua.
local json = require "sbot.json"
local helpers = require "helpers"
local labclient = require "labclient"
local il = require "iscsi_lab"

local M = {}
M.WORKFLOW = helpers.source_dir .. "/workflows/iscsi_only.lua"
M.SIZE = 64 * 1024 * 1024
M.problems = il.problems

--- `sbot lab --tgt --servers N` plus extra arguments (--time-scale 0.1 unless
-- they give one).
function M.start_lab(n, extra)
  local args = { "--servers", tostring(n or 1), "--tgt" }
  local scaled = false
  for _, a in ipairs(extra or {}) do
    args[#args + 1] = a
    scaled = scaled or a == "--time-scale"
  end
  if not scaled then args[#args + 1], args[#args + 2] = "--time-scale", "0.1" end
  local lab = labclient.start_lab(args)
  lab.site_file = lab.dir .. "/site.lua"
  lab.runs = 0
  return lab
end

--- A site file that is the lab's with `patch` applied: Lua source run with
-- the site table as `s` (e.g. 's.truenas.api_key = "1-x"'). Mode 0600: the
-- lab's site holds the Vault AppRole secret in clear.
function M.site(lab, name, patch)
  local file = lab.dir .. "/site-" .. name .. ".lua"
  helpers.write_private(file, string.format("local s = dofile(%q)\n%s\nreturn s\n", lab.site_file, patch or ""))
  return file
end

-- Quick retries: 503s and SYS518 windows last milliseconds at --time-scale 0.1.
-- A TrueNAS call may wait: the call whose configuration change restarts the
-- lab's istgt answers once it is back (it lets logins in progress finish
-- first, up to istgt.IDLE_WAIT = 3 s; other connections are answered
-- meanwhile), as a busy TrueNAS answers late; 10 s (x the build's slowdown)
-- is more than that. Runs with dropped replies use M.DROPS.
M.FAST = string.format([[
s.components = s.components or {}
s.components.r630 = { redfish = { retries = { max = 8, base = 0.02, cap = 0.2 }, timeout = 10 },
  power = { timeout = 20 }, jobs = { timeout = 30 } }
s.components.iscsi = { call_timeout = %d }
]], 10 * helpers.slowdown)

-- FAST for labs that drop TrueNAS replies (truenas:drop=...): a dropped reply
-- is found by the call's timeout, so it is short (2 s x the slowdown); a
-- read that gets no answer is asked again up to 3 times (docs/truenas.md),
-- and the iSCSI component reads a write back before asking again, which also
-- covers the one call that answers late because it restarts istgt.
M.DROPS = M.FAST .. string.format("s.components.iscsi.call_timeout = %d\n", 2 * helpers.slowdown)

--- The argument list of one run (extra: more arguments, site: a site file).
function M.argv(lab, extra, site)
  local a = { "run", M.WORKFLOW, "--site", site or lab.fast_site or lab.site_file,
    "--runs-dir", lab.dir .. "/runs", "--state-dir", lab.dir .. "/state",
    "--poll-interval", "0.05", "--size", tostring(M.SIZE) }
  for _, x in ipairs(extra or {}) do a[#a + 1] = x end
  return a
end

local function record_of(out)
  local dir = out:match("run record: (%S+)")
  if not dir then return nil end
  local f = io.open(dir .. "/results.json", "rb")
  if not f then return nil end
  local r = json.decode(f:read("a"))
  f:close()
  return r, dir
end

--- Run the workflow; returns {code, stdout, stderr, record, dir}.
function M.run(lab, extra, site)
  local r = helpers.sbot(M.argv(lab, extra, site))
  r.record, r.dir = record_of(r.stdout)
  return r
end

--- Start a run in the background (helpers.spawn: .pid is sbot itself).
function M.spawn(lab, extra, site)
  local parts = {}
  for _, a in ipairs(M.argv(lab, extra, site)) do parts[#parts + 1] = helpers.shquote(a) end
  return helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " " .. table.concat(parts, " "))
end

--- The rows of a record by "server/component".
function M.rows(record)
  local out = {}
  for _, r in ipairs(record and record.results or {}) do out[r.id .. "/" .. r.component] = r end
  return out
end

--- Devices' state: {truenas = ..., idrac = {[server id] = state}}.
function M.state(lab)
  local st = lab.state()
  local out = { truenas = st.devices.truenas, idrac = {} }
  for i, s in ipairs(lab.site.servers) do out.idrac[s.id] = st.devices["idrac-" .. i] end
  return out
end

--- Write counters of both devices: {truenas = n, [server id] = n}.
function M.writes(st)
  local w = { truenas = st.truenas.writes }
  for id, s in pairs(st.idrac) do w[id] = s.writes end
  return w
end

--- Counts of TrueNAS objects (to say "nothing created").
function M.counts(tn)
  return { datasets = #tn.datasets, targets = #tn.iscsi.targets, extents = #tn.iscsi.extents,
    mappings = #tn.iscsi.targetextents, groups = #tn.iscsi.initiators, portals = #tn.iscsi.portals }
end

--- What is wrong with server `id` after a converged run, as a list of
-- strings: its last boot must be from iSCSI, logged in through istgt as the
-- initiator TrueNAS's group admits, to its own target, seeing a LUN of the
-- zvol's size, with CHAP user chap_user (nil: without CHAP); no pending
-- value or unfinished job left on the iDRAC.
function M.boot_problems(st, id, size, chap_user)
  local out = {}
  local d = st.idrac[id]
  local b = type(d.last_boot) == "table" and d.last_boot or {}
  local want_iqn = "iqn.2005-10.org.freenas.ctl:r630-" .. id .. ".openshift4.16.8"
  local want_init = "iqn.2024-01.org.sbot:" .. id
  local login = type(b.iscsi_login) == "table" and b.iscsi_login or {}
  if b.source ~= "iSCSI" then out[#out + 1] = id .. ": last boot from " .. tostring(b.source) .. ", not iSCSI" end
  if login.ok ~= true then out[#out + 1] = id .. ": no iSCSI login: " .. json.encode(login) end
  if login.checked ~= "istgt" then out[#out + 1] = id .. ": login not checked by istgt" end
  if login.target ~= want_iqn then out[#out + 1] = id .. ": logged in to " .. tostring(login.target) end
  if login.initiator ~= want_init then out[#out + 1] = id .. ": logged in as " .. tostring(login.initiator) end
  if login.lun ~= 0 then out[#out + 1] = id .. ": LUN " .. tostring(login.lun) end
  if login.chap ~= chap_user then
    out[#out + 1] = id .. ": logged in with CHAP user " .. tostring(login.chap) .. ", expected " .. tostring(chap_user)
  end
  if not (type(login.capacity) == "table" and login.capacity.bytes == size) then
    out[#out + 1] = id .. ": capacity " .. json.encode(login.capacity) .. ", expected " .. size
  end
  if next(d.bios.pending) ~= nil then out[#out + 1] = id .. ": BIOS values still pending: " .. json.encode(d.bios.pending) end
  for _, j in ipairs(d.jobs) do
    if j.state ~= "Completed" then
      out[#out + 1] = id .. ": job " .. tostring(j.id) .. " " .. tostring(j.state) .. ": " .. tostring(j.message)
    end
  end
  if d.bios.current.IscsiInitiatorName ~= want_init then
    out[#out + 1] = id .. ": BIOS initiator " .. tostring(d.bios.current.IscsiInitiatorName)
  end
  return out
end

-- The CHAP table ({user, secret}, in clear: lab.site holds plain values,
-- labclient.read_site) the lab's site gives server id (components.iscsi.chap), or nil.
local function chap_of(lab, id)
  for _, s in ipairs(lab.site.servers) do
    if s.id == id then return s.components and s.components.iscsi and s.components.iscsi.chap or nil end
  end
end

--- The CHAP user the lab's site gives server id, or nil.
function M.chap_user(lab, id)
  local chap = chap_of(lab, id)
  return chap and chap.user
end

--- Every CHAP secret of the lab's site, in clear, for the tests that look for them.
function M.chap_secrets(lab)
  local out = {}
  for _, s in ipairs(lab.site.servers) do
    local chap = chap_of(lab, s.id)
    if chap then out[#out + 1] = chap.secret end
  end
  return out
end

--- Server id's CHAP secret, in clear (nil: none).
function M.chap_secrets_of(lab, id)
  local chap = chap_of(lab, id)
  return chap and chap.secret
end

--- Give server id's CHAP secret a new value in the lab's Vault (a new
-- version of secret:iscsi/<id>:chap, written with the lab's root token), as
-- an operator rotating it would. Returns the new secret.
function M.rotate_chap(lab, id, new)
  local vault = require "sbot.vault"
  local V = lab.raw_site.vault
  local root = helpers.read_file(lab.dir .. "/vault-root-token"):gsub("%s+$", "")
  local c = vault.client { addr = V.addr, tls = V.tls, auth = { method = "token", token = root } }
  assert(c:login())
  local res, doc = c:call("POST", "secret/data/iscsi/" .. id, { body = { data = { chap = new } } })
  assert(res and res.status == 200, "vault write of iscsi/" .. id .. ": " .. tostring(res and res.status or doc))
  chap_of(lab, id).secret = new
  return new
end

--- Where a run of r (io_lab.run's answer) shows any of the secrets: its
-- output, its log, or a file of its run directory (results.json, artifacts,
-- the log). Returns a list of places, empty when none; a run without a
-- directory (no run record found) is a place too: it could not be searched.
function M.secret_leaks(r, secrets)
  local out = {}
  if not r.dir then out[1] = "no run directory to search (no run record in its output)" end
  for _, s in ipairs(secrets) do
    if r.stdout:find(s, 1, true) then out[#out + 1] = "stdout" end
    if r.stderr:find(s, 1, true) then out[#out + 1] = "stderr" end
    if r.dir then
      local ok, _, files = helpers.sh("grep -rlF " .. helpers.shquote(s) .. " " .. helpers.shquote(r.dir) .. " 2>/dev/null")
      if ok and files ~= "" then out[#out + 1] = files end
    end
  end
  return out
end

return M
