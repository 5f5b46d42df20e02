-- workflows/iscsi_only.lua end to end against `sbot lab --tgt` (istgt exports
-- what the TrueNAS model holds; each simulated iDRAC logs in to its target
-- when it boots from iSCSI). The devices are the witnesses: TrueNAS's write
-- calls and objects, each iDRAC's writes, resets and boot record. The long
-- campaigns (20 fault seeds, 10 kill points) are tests/iscsi_only_campaign.lua;
-- two of each run here.
local json = require "sbot.json"
local helpers = require "helpers"
local io_lab = require "iscsi_only_lab"
local campaign = require "iscsi_only_kill"
local iscsi = require "sbot.iscsi"

local function rows_summary(r)
  local out = {}
  for _, row in ipairs(r.record and r.record.results or {}) do
    out[#out + 1] = row.id .. " " .. row.component .. " " .. row.status .. " " .. tostring(row.error or row.reason or "")
  end
  return table.concat(out, "\n")
end

local function assert_ok(r)
  assert(r.code == 0, "exit " .. tostring(r.code) .. "\n" .. r.stdout .. r.stderr:sub(-3000))
end

local function planned(r)
  local n = 0
  for _, row in ipairs(r.record.results) do n = n + #(row.plan or {}) end
  return n
end

describe("iscsi_only on a fresh lab (two servers)", function()
  local lab
  setup(function()
    lab = io_lab.start_lab(2)
    lab.fast_site = io_lab.site(lab, "fast", io_lab.FAST)
  end)
  teardown(function() if lab then lab.stop() end end)

  it("--plan shows both steps' plans from the iSCSI discovery and writes nothing", function()
    local before = io_lab.state(lab)
    local r = io_lab.run(lab, { "--plan" })
    assert_ok(r)
    local rows = io_lab.rows(r.record)
    for _, id in ipairs { "r630-01", "r630-02" } do
      local disk, boot = rows[id .. "/iscsi"], rows[id .. "/r630"]
      assert.are.equal("ok", disk.status)
      assert.are.equal("ok", boot.status, boot.error)
      assert.are.equal(9, #disk.plan)
      -- the server's CHAP credentials (the lab's site gives them, from its Vault)
      local chap
      for _, ch in ipairs(disk.plan) do if ch.resource == "chap:" .. id then chap = ch end end
      assert(chap and chap.action == "create", json.encode(disk.plan))
      assert.are.equal(id, disk.discovery.chap.user)
      -- the R630's plan carries what the iSCSI discover found
      local bios
      for _, ch in ipairs(boot.plan) do if ch.kind == "bios" then bios = ch end end
      assert(bios, json.encode(boot.plan))
      assert.are.equal(disk.discovery.iqn, bios.after.IscsiDev1Con1TargetName)
      assert.are.equal(disk.discovery.initiator, bios.after.IscsiInitiatorName)
      -- with the same CHAP user (and a secret, shown as no value)
      assert.are.equal("Chap", bios.after.IscsiDev1Con1Auth)
      assert.are.equal(id, bios.after.IscsiDev1Con1ChapName)
      assert.are.equal("iqn.2024-01.org.sbot:" .. id, disk.discovery.initiator)
      assert.matches("^iSCSI%.Dev1%.Con1,", bios.after.UefiBootSeq)
      assert.matches("r630%-" .. id:gsub("%-", "%%-") .. "%.openshift4%.16%.8", r.stdout)
    end
    assert.matches("IscsiDev1Con1TargetName: \"\" %-> \"iqn%.2005%-10%.org%.freenas%.ctl:r630%-r630%-01", r.stdout)
    assert.are.same(io_lab.writes(before), io_lab.writes(io_lab.state(lab)))
    assert.are.same(io_lab.counts(before.truenas), io_lab.counts(io_lab.state(lab).truenas))
    assert.are.same({}, io_lab.secret_leaks(r, io_lab.chap_secrets(lab)))
  end)

  it("converges: each server boots its own zvol over iSCSI as its initiator with its CHAP user and secret, after one reboot", function()
    local before = io_lab.state(lab)
    local r = io_lab.run(lab)
    assert_ok(r)
    assert.matches("%(apply%) ok", r.stdout)
    local st = io_lab.state(lab)
    for _, id in ipairs { "r630-01", "r630-02" } do
      -- the lab's iDRAC logged in with the BIOS's CHAP name and secret: istgt
      -- took them (a wrong secret or none: no boot from iSCSI)
      assert.are.same({}, io_lab.boot_problems(st, id, io_lab.SIZE, id))
      local bios = st.idrac[id].bios.current
      assert.are.equal("Chap", bios.IscsiDev1Con1Auth)
      assert.are.equal(id, bios.IscsiDev1Con1ChapName)
      assert.are.equal(before.idrac[id].resets + 1, st.idrac[id].resets, "exactly one reboot")
      assert.are.equal(#before.idrac[id].boots + 1, #st.idrac[id].boots, "exactly one boot")
      assert.are.equal(0, st.idrac[id].sessions, "no Redfish session left open")
      local row = io_lab.rows(r.record)[id .. "/iscsi"]
      -- the component's own login (housekeep) saw the same LUN
      assert.are.equal(io_lab.SIZE, row.housekeeping.login.capacity)
      assert.are.equal("iqn.2024-01.org.sbot:" .. id, row.housekeeping.login.initiator)
      assert.are.equal(id, row.housekeeping.login.chap_user)
      assert.is_true(row.housekeeping.login.refused_without_chap)
      -- and a login of the test's own: with the server's credentials it sees
      -- the LUN; without them, or with another secret, the target refuses it
      local want = { portal = row.discovery.portal, target = row.discovery.iqn, lun = 0,
        initiator = row.discovery.initiator, timeout = 10 }
      local function probe(chap)
        local o = {}
        for k, v in pairs(want) do o[k] = v end
        o.chap = chap
        return iscsi.probe(o)
      end
      local ok, err = probe { user = id, secret = io_lab.chap_secrets_of(lab, id) }
      assert(ok, err)
      assert.are.equal(io_lab.SIZE, ok.capacity.bytes)
      local no, nerr, ncode = probe(nil)
      assert.is_nil(no)
      assert.are.equal("AUTHENTICATION_FAILURE", ncode)
      assert.matches("[Aa]uthentication", nerr)
      no, nerr, ncode = probe { user = id, secret = "not-the-secret-1" }
      assert.is_nil(no)
      assert.are.equal("AUTHENTICATION_FAILURE", ncode)
      assert.not_matches("not%-the%-secret", nerr)
    end
    -- each target's group asks for CHAP, with the users of its own tag only
    for _, t in ipairs(st.truenas.exports.targets) do
      local server = t.alias:match("^sbot:(%S+)")
      assert.are.equal("CHAP", t.auth and t.auth.method, json.encode(t))
      assert.are.same({ server }, t.auth.users)
    end
    -- the secrets: nowhere in the output, the log, the record, nor the state directory
    assert.are.same({}, io_lab.secret_leaks(r, io_lab.chap_secrets(lab)))
    assert.are.same({}, io_lab.secret_leaks({ stdout = "", stderr = "", dir = lab.dir .. "/state" },
      io_lab.chap_secrets(lab)))
    -- one portal for both, shared; each target admits only its own server
    assert.are.equal(1, #st.truenas.iscsi.portals)
    assert.are.equal(2, #st.truenas.exports.targets)
    for _, t in ipairs(st.truenas.exports.targets) do
      local server = t.alias:match("^sbot:(%S+)")
      assert.are.same({ "iqn.2024-01.org.sbot:" .. server }, t.groups[1].initiators)
    end
    assert.are.same({}, io_lab.problems(st.truenas, { "r630-01", "r630-02" }))
  end)

  it("a second run plans nothing and writes nothing to either device", function()
    local before = io_lab.state(lab)
    local r = io_lab.run(lab)
    assert_ok(r)
    assert.are.equal(0, planned(r))
    local st = io_lab.state(lab)
    assert.are.same(io_lab.writes(before), io_lab.writes(st))
    for _, id in ipairs { "r630-01", "r630-02" } do
      assert.are.equal(before.idrac[id].resets, st.idrac[id].resets, "no reboot")
    end
    -- and --plan says the same: nothing to change, CHAP secret included
    -- (the iDRAC reads it back as null: it is not sent again for nothing)
    local p = io_lab.run(lab, { "--plan" })
    assert_ok(p)
    assert.are.equal(0, planned(p))
    for _, id in ipairs { "r630-01", "r630-02" } do
      assert.matches(id .. " / iscsi: no changes", p.stdout, 1, true)
      assert.matches(id .. " / r630: no changes", p.stdout, 1, true)
    end
    assert.are.same({}, io_lab.secret_leaks(p, io_lab.chap_secrets(lab)))
  end)

  it("a rotated CHAP secret (a new version in Vault): TrueNAS and the BIOS get it, one reboot, the boot logs in with it", function()
    local old = io_lab.chap_secrets_of(lab, "r630-01")
    local new = io_lab.rotate_chap(lab, "r630-01", "Rotated-Chap-01x")
    -- --plan: the iSCSI step updates the secret; the R630 step cannot tell
    -- (the iDRAC never shows one) until the iSCSI step has changed it
    local p = io_lab.run(lab, { "--plan" })
    assert_ok(p)
    local prow = io_lab.rows(p.record)
    local upd
    for _, ch in ipairs(prow["r630-01/iscsi"].plan) do if ch.resource == "chap:r630-01" then upd = ch end end
    assert(upd and upd.action == "update", json.encode(prow["r630-01/iscsi"].plan))
    assert.are.equal(0, #prow["r630-02/iscsi"].plan)
    assert.are.same({}, io_lab.secret_leaks(p, { old, new }))
    local before = io_lab.state(lab)
    local r = io_lab.run(lab)
    assert_ok(r)
    local rows = io_lab.rows(r.record)
    assert.are.equal(1, #rows["r630-01/iscsi"].plan)
    -- the R630 step sent the secret again (BIOS and NIC) and rebooted once
    local sent = {}
    for _, a in ipairs(rows["r630-01/r630"].processing.applied) do
      for k in pairs(type(a.result) == "table" and a.result.set or {}) do sent[k] = true end
    end
    assert.is_true(sent.IscsiDev1Con1ChapSecret, json.encode(rows["r630-01/r630"].processing.applied))
    assert.is_true(sent.CHAPSecret, json.encode(rows["r630-01/r630"].processing.applied))
    local st = io_lab.state(lab)
    assert.are.equal(before.idrac["r630-01"].resets + 1, st.idrac["r630-01"].resets, "one reboot")
    assert.are.equal(before.idrac["r630-02"].resets, st.idrac["r630-02"].resets, "the other server left alone")
    assert.are.same({}, io_lab.boot_problems(st, "r630-01", io_lab.SIZE, "r630-01"))
    assert.are.equal(#before.idrac["r630-01"].boots + 1, #st.idrac["r630-01"].boots)
    -- the old secret no longer logs in
    local row = rows["r630-01/iscsi"]
    local no, _, ncode = iscsi.probe { portal = row.discovery.portal, target = row.discovery.iqn, lun = 0,
      initiator = row.discovery.initiator, timeout = 10, chap = { user = "r630-01", secret = old } }
    assert.is_nil(no)
    assert.are.equal("AUTHENTICATION_FAILURE", ncode)
    assert.are.same({}, io_lab.secret_leaks(r, { old, new }))
    -- converged again: nothing to send, the marker gone
    local again = io_lab.run(lab, { "--plan" })
    assert_ok(again)
    assert.are.equal(0, planned(again))
    assert.is_nil(io.open(lab.dir .. "/state/chap/r630-01.resend", "r"))
  end)

  it("a rotated secret the R630 step could not send: the next run still sends it", function()
    local new = io_lab.rotate_chap(lab, "r630-02", "Rotated-Chap-02y")
    -- the R630 step fails its plan (a boot mode the BIOS does not offer)
    -- after the iSCSI step changed the secret on TrueNAS
    local bad = io_lab.site(lab, "badmode", io_lab.FAST .. "s.components.r630.boot = { mode = 'Floppy' }")
    local r = io_lab.run(lab, { "--server", "r630-02" }, bad)
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    local rows = io_lab.rows(r.record)
    assert.are.equal("ok", rows["r630-02/iscsi"].status)
    assert.are.equal(1, #rows["r630-02/iscsi"].plan)
    assert.are.equal("failed", rows["r630-02/r630"].status)
    -- the marker says so (it names the user, never the secret)
    local marker = helpers.read_file(lab.dir .. "/state/chap/r630-02.resend")
    assert.matches("r630%-02", marker)
    assert.not_matches(new, marker, 1, true)
    -- TrueNAS is converged, yet --plan shows the R630 step sending the secret
    local p = io_lab.run(lab, { "--plan", "--server", "r630-02" })
    assert_ok(p)
    local prow = io_lab.rows(p.record)
    assert.are.equal(0, #prow["r630-02/iscsi"].plan)
    assert.is_true(#prow["r630-02/r630"].plan > 0, "the R630 step must send the new secret")
    -- and the run sends it: the boot logs in with the new secret
    local ok = io_lab.run(lab, { "--server", "r630-02" })
    assert_ok(ok)
    assert.are.same({}, io_lab.boot_problems(io_lab.state(lab), "r630-02", io_lab.SIZE, "r630-02"))
    assert.is_nil(io.open(lab.dir .. "/state/chap/r630-02.resend", "r"))
    local again = io_lab.run(lab, { "--plan" })
    assert.are.equal(0, planned(again))
    assert.are.same({}, io_lab.secret_leaks(r, { new }))
    assert.are.same({}, io_lab.secret_leaks(ok, { new }))
  end)

  it("--help says what it does, its arguments and what it changes", function()
    local r = helpers.sbot({ "run", io_lab.WORKFLOW, "--help" })
    assert.are.equal(0, r.code)
    assert.matches("zvol and an iSCSI target", r.stdout)
    assert.matches("%-%-size SIZE", r.stdout)
    assert.matches("%-%-poll%-interval S", r.stdout)
    assert.matches("Changes: on TrueNAS", r.stdout)
    local bad = helpers.sbot({ "run", io_lab.WORKFLOW, "--site", lab.site_file, "--poll-interval", "0" })
    assert.are.equal(2, bad.code)
    assert.matches("%-%-poll%-interval: expected seconds >= 0%.01, got '0'", bad.stderr)
  end)
end)

describe("iscsi_only refuses bad inputs clearly and creates nothing on either device", function()
  local lab
  setup(function()
    lab = io_lab.start_lab(1)
    lab.fast_site = io_lab.site(lab, "fast", io_lab.FAST)
  end)
  teardown(function() if lab then lab.stop() end end)

  local function refused(pattern, opts)
    local before = io_lab.state(lab)
    local site = opts.patch and io_lab.site(lab, opts.name, io_lab.FAST .. opts.patch) or nil
    local r = io_lab.run(lab, opts.args, site)
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    local rows = io_lab.rows(r.record)
    local failed = rows[opts.row or "r630-01/iscsi"]
    assert(failed and failed.status == "failed", rows_summary(r))
    assert.matches(pattern, failed.error)
    assert.matches("error: r630%-01 [%w()]+: ", r.stdout) -- the summary says it
    if rows["r630-01/r630"] then assert.are.equal("skipped", rows["r630-01/r630"].status) end
    local after = io_lab.state(lab)
    assert.are.same(io_lab.writes(before), io_lab.writes(after))
    assert.are.same(io_lab.counts(before.truenas), io_lab.counts(after.truenas))
    assert.are.equal(before.idrac["r630-01"].resets, after.idrac["r630-01"].resets)
    return r
  end

  it("an unknown pool", function()
    refused("pool 'nope' does not exist on the TrueNAS %(pools: tank%)",
      { name = "pool", patch = "s.components.iscsi.pool = 'nope'" })
  end)
  it("a zvol bigger than TrueNAS allows", function()
    refused("more than 80%% of the %d+ bytes available under tank", { args = { "--size", "900G" } })
  end)
  it("an invalid target name", function()
    refused("target name 'r630%-01_4_16_8' is invalid: .*no underscores", { name = "target",
      patch = "s.hooks = { target_name = function(server, version) return server .. '_' .. version:gsub('%.', '_') end }" })
  end)
  it("a wrong API key (never shown)", function()
    local r = refused("discover: open: truenas: .*API key was refused",
      { name = "key", patch = "s.truenas.api_key = '1-wrongkeywrongkey'" })
    assert.not_matches("wrongkey", r.stdout .. r.stderr .. helpers.read_file(r.dir .. "/results.json"))
  end)
  it("TrueNAS unreachable", function()
    local port = helpers.free_port()
    refused("discover: open: truenas: .*127%.0%.0%.1:" .. port .. ".*Connection refused", { name = "dead",
      patch = string.format("s.truenas.url = 'wss://127.0.0.1:%d/api/current'", port) })
  end)
  it("the server's initiator not in the initiator group", function()
    refused("the server's initiator iqn%.2024%-01%.org%.sbot:r630%-01 is not in the initiator group",
      { name = "group", patch = "s.components.iscsi.initiators = { 'iqn.2024-01.org.sbot:someone-else' }" })
  end)
  it("a LUN the R630 cannot boot", function()
    refused("iscsi%.lun 300: the R630 boots LUN 0%.%.255 only",
      { name = "lun", patch = "s.components.iscsi.lun = 300", row = "r630-01/(workflow)" })
  end)
end)

describe("iscsi_only under faults (503 on the iDRAC, dropped TrueNAS replies)", function()
  for _, seed in ipairs { 4, 17 } do
    it("converges in one run without duplicates, seed " .. seed, function()
      local lab = io_lab.start_lab(2, { "--seed", tostring(seed), "--faults", "idrac:503=0.1;truenas:drop=0.05" })
      local ok, err = pcall(function()
        lab.fast_site = io_lab.site(lab, "fast", io_lab.DROPS)
        local r = io_lab.run(lab)
        assert_ok(r)
        local st = io_lab.state(lab)
        assert.are.same({}, io_lab.problems(st.truenas, { "r630-01", "r630-02" }))
        assert.are.equal(2, #st.truenas.iscsi.targetextents)
        for _, id in ipairs { "r630-01", "r630-02" } do
          assert.are.same({}, io_lab.boot_problems(st, id, io_lab.SIZE, id))
        end
        assert.is_true(st.truenas.faults.dropped + st.idrac["r630-01"].faults["503"] > 0, "faults were injected")
      end)
      lab.stop()
      assert(ok, err)
    end)
  end
end)

describe("iscsi_only killed with SIGKILL in its process phase", function()
  it("converges on the rerun with nothing orphaned: killed between TrueNAS calls", function()
    -- after the 5th write (zvol, portal, group, target made; the extent waits for the zvol's device)
    assert.matches("rerun converged", campaign.kill_point("iscsi", 5, 0.05))
  end)
  it("converges on the rerun: killed with the server powered off for its one reboot", function()
    -- after the iDRAC's 5th write (GracefulShutdown): jobs scheduled, the server going off
    assert.matches("rerun converged", campaign.kill_point("r630", 5, 0.02))
  end)
end)

describe("iscsi_only on twelve servers converging at once (CHAP)", function()
  -- every server's iSCSI step picks the same free CHAP tag at the same
  -- moment: the oldest entry keeps it and the others must each find one of
  -- their own (before the rank-spread, 20 servers failed "taken 6 times in a row")
  it("gives every server its own CHAP tag, each boots with its own user", function()
    local ids = {}
    for i = 1, 12 do ids[i] = string.format("r630-%02d", i) end
    local lab = io_lab.start_lab(12)
    local ok, err = pcall(function()
      lab.fast_site = io_lab.site(lab, "fast", io_lab.FAST)
      local r = io_lab.run(lab, { "--jobs", "12" })
      assert_ok(r)
      local st = io_lab.state(lab)
      assert.are.same({}, io_lab.problems(st.truenas, ids))
      local tags = {}
      for _, a in ipairs(st.truenas.iscsi.auths) do
        assert.is_nil(tags[a.tag], "two entries in CHAP tag " .. tostring(a.tag))
        tags[a.tag] = a.user
      end
      for _, id in ipairs(ids) do
        assert.are.same({}, io_lab.boot_problems(st, id, io_lab.SIZE, io_lab.chap_user(lab, id)))
      end
    end)
    lab.stop()
    assert(ok, err)
  end)
end)

describe("iscsi_only when TrueNAS rate-limits logins (20 a minute from one address)", function()
  local lab
  setup(function()
    -- --time-scale 0.1: the lab's minute lasts 6 s
    lab = io_lab.start_lab(1)
    lab.fast_site = io_lab.site(lab, "fast", io_lab.FAST)
  end)
  teardown(function() if lab then lab.stop() end end)

  -- 20 logins from this address, as 20 other servers' runs would make
  local function use_up_logins()
    local truenas = require "sbot.truenas"
    local tn = lab.site.truenas
    for _ = 1, 20 do
      local c = truenas.connect { url = tn.url, api_key = tn.api_key, user = tn.user, tls = tn.tls }
      if not c then break end
      c:close()
    end
    local c, err, code = truenas.connect { url = tn.url, api_key = tn.api_key, user = tn.user, tls = tn.tls }
    if c then c:close() end
    assert.are.equal("EBUSY", code, err)
  end

  it("fails clearly, creating nothing, when the wait it is allowed is too short", function()
    use_up_logins()
    local site = io_lab.site(lab, "nowait", io_lab.FAST .. "s.components.iscsi.login_wait = 1")
    local before = io_lab.state(lab)
    local r = io_lab.run(lab, nil, site)
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("discover: open: truenas: auth.login_ex: Rate Limit Exceeded %(still after %d+ s of waiting: "
      .. "TrueNAS takes 20 logins a minute from one address; login_wait sets how long to wait%)",
      io_lab.rows(r.record)["r630-01/iscsi"].error)
    assert.are.same(io_lab.writes(before), io_lab.writes(io_lab.state(lab)))
  end)

  it("waits its turn and converges", function()
    use_up_logins()
    local r = io_lab.run(lab)
    assert(r.code == 0, r.stdout .. r.stderr)
    assert.matches("iscsi %(r630%-01%): TrueNAS refuses logins for now", r.stderr)
    assert.are.same({}, io_lab.boot_problems(io_lab.state(lab), "r630-01", io_lab.SIZE, "r630-01"))
  end)
end)
