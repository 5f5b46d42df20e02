--- iscsi_proof: what each simulated server booted after an iscsi_only run
-- against `sbot lab --tgt`, from two witnesses: the lab's /lab/state (the
-- iDRAC's last boot: the lab logged in to istgt as the server's initiator,
-- INQUIRY + READ CAPACITY) and the run record (the iSCSI step's own login in
-- its housekeep), and a third: a login of its own to each target as the
-- server's initiator but without CHAP, which a target asking for CHAP must
-- refuse. Used by examples/iscsi_demo.sh.
--   sbot run examples/iscsi_proof.lua LAB_DIR RUN_DIR
-- Exit 0 when every server of the run booted its own LUN with the zvol's size,
-- with CHAP when the iSCSI step asked for it (and then no login without it).
local json = require "sbot.json"
local http = require "sbot.http"
local iscsi = require "sbot.iscsi"

local lab_dir, run_dir = arg[1], arg[2]
if not lab_dir or not run_dir then
  io.stderr:write("usage: sbot run examples/iscsi_proof.lua LAB_DIR RUN_DIR\n")
  os.exit(2)
end

local function read_json(path)
  local f = assert(io.open(path, "rb"))
  local v = json.decode(f:read("a"))
  f:close()
  return v
end

-- /lab/state from any device of the lab (its certificate is pinned)
local lab = read_json(lab_dir .. "/lab.json")
local truenas = lab.devices.truenas
local res = assert(http.request { url = truenas.url .. "/lab/state", tls = { pin_sha256 = truenas.pin_sha256 },
  timeout = 10 })
local state = json.decode(res.body)
local record = read_json(run_dir .. "/results.json")

local function gib(bytes) return string.format("%.1f GiB", bytes / 2 ^ 30) end

-- each server's iDRAC device: the one listening on the port of its idrac.host
local idrac_of = {}
for _, server in ipairs(dofile(lab.site).servers) do
  local port = tonumber(server.idrac.host:match(":(%d+)$"))
  for name, d in pairs(lab.devices) do
    if d.kind == "idrac" and d.port == port then idrac_of[server.id] = state.devices[name] end
  end
end

local ok = true
print("iSCSI login proof")
for _, row in ipairs(record.results) do
  if row.component == "iscsi" then
    local id, login = row.id, row.housekeeping and row.housekeeping.login
    local dev = idrac_of[id]
    local boot = dev and type(dev.last_boot) == "table" and dev.last_boot or {}
    local l = type(boot.iscsi_login) == "table" and boot.iscsi_login or {}
    if boot.source == "iSCSI" and l.ok then
      print(string.format("%s: booted from iSCSI (%s boot, boot #%d) as %s", id, boot.via or "?", boot.n or 0, l.initiator))
      print(string.format("  logged in to %s at %s, LUN %d", l.target, l.portal, l.lun))
      print(string.format("  saw %s %s, %d bytes (%s): zvol %s", l.inquiry.vendor, l.inquiry.product,
        l.capacity.bytes, gib(l.capacity.bytes), l.zvol or "?"))
      -- CHAP: the iSCSI step's config had credentials (its discovery shows the
      -- user; the secret never leaves the site's Vault and the devices)
      local want = type(row.discovery.chap) == "table" and row.discovery.chap.user or nil
      if want then
        print(string.format("  with CHAP user %s", tostring(l.chap)))
        ok = ok and l.chap == want
        -- the same login without credentials must be refused by the target
        local r, err, code = iscsi.probe { portal = l.portal, target = l.target, lun = l.lun,
          initiator = l.initiator, timeout = 10 }
        if r then
          ok = false
          print("  a login without CHAP: ACCEPTED (the target does not ask for CHAP)")
        elseif code == "AUTHENTICATION_FAILURE" then -- the target's own id (docs/errors.md)
          print("  a login without CHAP: refused (authentication failure)")
        else
          ok = false
          print(string.format("  a login without CHAP: failed, but not for want of CHAP: %s (%s)", err, code))
        end
      elseif l.chap then
        ok = false
        print(string.format("  with CHAP user %s, which the iSCSI step did not ask for", tostring(l.chap)))
      end
    else
      ok = false
      print(string.format("%s: did NOT boot from its iSCSI disk: %s", id,
        json.encode { source = boot.source, iscsi_login = boot.iscsi_login }))
    end
    if login then
      print(string.format("  sbot's own check (iscsi housekeep): logged in as %s, LUN %d, %d bytes%s",
        login.initiator, row.discovery.lun, login.capacity,
        login.chap_user and string.format(", CHAP user %s; without CHAP: %s", login.chap_user,
          login.refused_without_chap and "refused" or "NOT refused") or ""))
      ok = ok and login.capacity == l.capacity.bytes
        and (login.chap_user == nil or login.refused_without_chap == true)
    else
      ok = false
      print(string.format("  sbot's own check: none (%s)", row.error or row.status))
    end
  end
end
os.exit(ok and 0 or 1)
