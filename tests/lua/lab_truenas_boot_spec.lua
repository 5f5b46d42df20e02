-- `sbot lab --tgt` end to end: the TrueNAS device from the site file (wss with
-- the pinned certificate, sbot.ws), a zvol exported by istgt, and an iDRAC whose
-- iSCSI boot logs in to it for real (sbot.iscsi in the lab's boot hook).
local ws = require "sbot.ws"
local json = require "sbot.json"
local labclient = require "labclient"

local SYS = "/redfish/v1/Systems/System.Embedded.1"
local MGR = "/redfish/v1/Managers/iDRAC.Embedded.1"
local MiB = 1024 * 1024

local function wait_for(fn, timeout, what)
  local deadline = os.time() + timeout
  while os.time() <= deadline do
    local v = fn()
    if v then return v end
    os.execute("sleep 0.1")
  end
  error("timed out waiting for " .. what)
end

describe("sbot lab --tgt", function()
  local lab
  setup(function()
    lab = labclient.start_lab { "--servers", "1", "--tgt", "--time-scale", "0.1" }
  end)
  teardown(function()
    local out, clean = lab.stop()
    assert(clean, "the lab did not stop cleanly: " .. out)
    local st = io.open(lab.dir .. "/iscsi/istgt.pid")
    if st then
      local pid = tonumber(st:read("a"))
      st:close()
      local alive = pid and os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
      if alive then os.execute("kill -KILL " .. pid) end
      assert.is_false(alive, "istgt outlived the lab")
    end
  end)

  it("boots a server from a zvol the TrueNAS model exported", function()
    local tn = lab.site.truenas
    assert.matches("^wss://127%.0%.0%.1:%d+/api/current$", tn.url)
    local c <close> = assert(ws.connect(tn.url, { tls = tn.tls, timeout = 5 }))
    local id = 0
    local function call(method, params)
      id = id + 1
      assert(c:send(json.encode { jsonrpc = "2.0", id = id, method = method, params = json.array(params or {}) }))
      local msg = json.decode(assert(c:recv(10)))
      assert(msg.error == nil, msg.error and json.encode(msg.error))
      return msg.result
    end
    assert.are.equal("SUCCESS", call("auth.login_ex",
      { { mechanism = "API_KEY_PLAIN", username = "root", api_key = tn.api_key } }).response_type)
    local initiator = "iqn.2024-01.org.sbot:r630-01"
    local portal = call("iscsi.portal.create", { { listen = { { ip = "0.0.0.0" } } } })
    local ig = call("iscsi.initiator.create", { { initiators = { initiator } } })
    call("pool.dataset.create", { { name = "tank/r630-01", type = "VOLUME", volsize = 48 * MiB, sparse = true } })
    local t = call("iscsi.target.create", { { name = "r630-01", groups = { { portal = portal.id, initiator = ig.id } } } })
    local e = call("iscsi.extent.create", { { name = "r630-01", disk = "zvol/tank/r630-01" } })
    call("iscsi.targetextent.create", { { target = t.id, extent = e.id } })
    assert.are.equal(1, call("service.update", { "iscsitarget", { enable = true } }) and 1)
    assert.is_true(call("core.set_options", { { legacy_jobs = false } }).legacy_jobs == false)
    assert.is_true(call("service.control", { "START", "iscsitarget", {} }))
    local global = call("iscsi.global.config")
    local iqn = global.basename .. ":r630-01"

    local idrac = lab.client("idrac-1")
    assert.are.equal(201, assert(idrac:login()).status)
    local attrs = { IscsiDev1EnDis = "Enabled", IscsiDev1Con1EnDis = "Enabled",
      IscsiInitiatorName = initiator,
      IscsiDev1Con1TargetName = iqn, IscsiDev1Con1TargetIp = "127.0.0.1",
      IscsiDev1Con1Port = global.listen_port, IscsiDev1Con1Lun = "0", IscsiDev1Con1TgtDhcpEnDis = "Disabled" }
    local p = assert(idrac:request("PATCH", SYS .. "/Bios/Settings", { body = { Attributes = attrs } }))
    assert.are.equal(200, p.status, p.body)
    local j = assert(idrac:request("POST", MGR .. "/Jobs", { body = { TargetSettingsURI = SYS .. "/Bios/Settings" } }))
    assert.are.equal(200, j.status, j.body)
    local rs = assert(idrac:request("POST", SYS .. "/Actions/ComputerSystem.Reset", { body = { ResetType = "ForceRestart" } }))
    assert.are.equal(204, rs.status, rs.body)
    local boot = wait_for(function()
      local s = lab.state().devices["idrac-1"]
      local b = type(s.last_boot) == "table" and s.last_boot
      return b and b.source == "iSCSI" and b.iscsi_login and b
    end, 30, "the iSCSI boot")
    local login = boot.iscsi_login
    assert(login.ok, json.encode(login))
    assert.are.equal("istgt", login.checked)
    assert.are.equal(48 * MiB, login.capacity.bytes)
    assert.are.equal("TrueNAS", login.inquiry.vendor)
    assert.are.equal("tank/r630-01", login.zvol)
    local tstate = lab.state().devices.truenas
    assert.are.equal("r630-01", tstate.tgt.targets[1].name)
    assert.are.equal(0, tstate.tgt.targets[1].luns[1].lun)
  end)

  -- A TrueNAS applies a target reload without freezing its API: while istgt
  -- restarts for a change (held up by a login in progress, up to IDLE_WAIT),
  -- another connection's call, an iDRAC and /lab/state answer at once; the
  -- call that made the change answers once istgt is back.
  it("keeps answering other connections while istgt restarts", function()
    local IDLE_WAIT = require("sbot.lab.istgt").IDLE_WAIT
    local tn = lab.site.truenas
    local function connect()
      local c = assert(ws.connect(tn.url, { tls = tn.tls, timeout = 5 }))
      local id = 0
      local conn = { ws = c }
      function conn.send(method, params)
        id = id + 1
        assert(c:send(json.encode { jsonrpc = "2.0", id = id, method = method, params = json.array(params or {}) }))
      end
      function conn.reply(timeout)
        local msg = json.decode(assert(c:recv(timeout or 10)))
        assert(msg.error == nil, msg.error and json.encode(msg.error))
        return msg.result
      end
      function conn.call(method, params)
        conn.send(method, params)
        return conn.reply()
      end
      assert.are.equal("SUCCESS", conn.call("auth.login_ex",
        { { mechanism = "API_KEY_PLAIN", username = "root", api_key = tn.api_key } }).response_type)
      return conn
    end
    local a, b = connect(), connect()
    local target = b.call("iscsi.target.query", { { { "name", "=", "r630-01" } } })[1]
    assert(target, "the previous test's target r630-01")
    local before = lab.state().devices.truenas.tgt
    assert.is_true(before.alive)
    -- a login in progress: a connection to the portal that sends nothing yet
    local port = before.portal:match(":(%d+)$")
    os.execute("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "; sleep " .. (2 * IDLE_WAIT)
      .. "' </dev/null >/dev/null 2>&1 &")
    wait_for(function() return lab.state().devices.truenas.tgt.sessions > 0 end, 10, "the held connection")

    local idrac = lab.client("idrac-1")
    assert.are.equal(201, assert(idrac:login()).status)
    local now = require("sbot.httpd").now
    local t0 = now()
    a.send("iscsi.target.update", { target.id, { alias = "restart-" .. math.floor(t0) } })
    os.execute("sleep 0.2") -- the lab has taken the change and waits for the login
    local slowest = 0
    local function timed(what, fn)
      local t = now()
      local v = fn()
      local dt = now() - t
      slowest = math.max(slowest, dt)
      -- well under IDLE_WAIT: the restart's wait did not hold this up
      assert(dt < IDLE_WAIT / 3, string.format("%s took %.2f s while istgt restarted (IDLE_WAIT %g s)",
        what, dt, IDLE_WAIT))
      return v
    end
    local info = timed("system.info on another connection", function() return b.call("system.info") end)
    assert.is_string(info.version)
    local r = timed("an iDRAC GET", function() return assert(idrac:request("GET", SYS)) end)
    assert.are.equal(200, r.status, r.body)
    local mid = timed("GET /lab/state", function() return lab.state().devices.truenas.tgt end)
    assert.are.equal(before.restarts, mid.restarts) -- the restart had not happened yet
    -- a server that boots now logs in once the new istgt listens, never in between
    local boots = #lab.state().devices["idrac-1"].boots
    local rs = timed("an iDRAC reset", function()
      return assert(idrac:request("POST", SYS .. "/Actions/ComputerSystem.Reset", { body = { ResetType = "ForceRestart" } }))
    end)
    assert.are.equal(204, rs.status, rs.body)
    local st = wait_for(function()
      local s = lab.state().devices
      local b = s["idrac-1"].boots
      return #b > boots and b[#b].iscsi_login and s
    end, 30, "the boot during the restart")
    local login = st["idrac-1"].last_boot.iscsi_login
    assert(login.ok, json.encode(login))
    assert.are.equal(before.restarts + 1, st.truenas.tgt.restarts, "the boot logged in before istgt restarted")
    -- the call that made the change answers once istgt is back
    local updated = a.reply(30)
    assert.are.equal("restart-" .. math.floor(t0), updated.alias)
    local after = lab.state().devices.truenas.tgt
    assert.are.equal(before.restarts + 1, after.restarts)
    assert.is_true(after.alive)
    local timing = after.timings[#after.timings]
    assert(timing.waited_ms >= 1000 * IDLE_WAIT * 2 / 3, "the restart waited for the login: " .. json.encode(timing))
    assert(now() - t0 >= IDLE_WAIT * 2 / 3)
    a.ws:close()
    b.ws:close()
  end)
end)
