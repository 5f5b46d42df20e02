-- sbot.iscsi: argument checks, portals that refuse or close (no iSCSI target
-- is needed for these), and the codes of docs/errors.md: a transport word
-- when the connection fails, the target's own id when it refuses (against
-- istgt, the lab's real target).
local iscsi = require "sbot.iscsi"
local helpers = require "helpers"

local MiB = 1024 * 1024

-- a portal that accepts and closes its first `close` connections (100 unless
-- told), then forwards to port `to` (tests/servers/reloading_portal.py)
local function closing_portal(host, close, to, extra)
  return helpers.reloading_portal(string.format("--close %d --to %d --host %s %s", close or 100, to or 1, host,
    extra or ""))
end

describe("sbot.iscsi.probe", function()
  it("raises on bad options, a NaN timeout included (it made the deadline unreachable)", function()
    assert.has_error(function() iscsi.probe({ target = "iqn.x:y" }) end,
      "iscsi.probe: 'portal' (string) is required")
    assert.has_error(function() iscsi.probe({ portal = "127.0.0.1", target = "iqn.x:y" }) end,
      "iscsi.probe: portal '127.0.0.1' must be HOST:PORT (IPv6 as [addr]:port)")
    for _, t in ipairs({ 0, -1, 0 / 0, 1e300 }) do
      assert.has_error(function()
        iscsi.probe({ portal = "127.0.0.1:1", target = "iqn.x:y", timeout = t })
      end, "iscsi.probe: 'timeout' must be a positive number of seconds (at most a day)")
    end
  end)

  it("takes an IPv6 portal only in brackets, and always with its port", function()
    local function refused(portal)
      local ok, err = pcall(iscsi.probe, { portal = portal, target = "iqn.x:y", timeout = 1 })
      assert.is_false(ok, portal)
      return err
    end
    -- libiscsi would read these as port 3260 of fe80::1, and as [::1] on its default port
    assert.matches("portal 'fe80::1:3260' holds an IPv6 address without brackets: write [addr]:port",
      refused("fe80::1:3260"), 1, true)
    assert.matches("portal '[::1]' must be HOST:PORT (IPv6 as [addr]:port)", refused("[::1]"), 1, true)
    assert.matches("portal '::1' holds an IPv6 address without brackets", refused("::1"), 1, true)
    assert.matches("portal '[::1]:' has no port 1..65535 after its ':'", refused("[::1]:"), 1, true)
    assert.matches("portal '[nothost]:3260' has no IPv6 address in its brackets", refused("[nothost]:3260"), 1, true)
    assert.matches("portal '[1.2.3.4]:3260' has no IPv6 address in its brackets", refused("[1.2.3.4]:3260"), 1, true)
    assert.matches("portal '127.0.0.1:0' has no port 1..65535", refused("127.0.0.1:0"), 1, true)
    assert.matches("portal '127.0.0.1:65536' has no port", refused("127.0.0.1:65536"), 1, true)
    assert.matches("portal 'a b:3260' is not a host name or an IP address", refused("a b:3260"), 1, true)
    assert.matches("portal 'host:3260,1' has no port", refused("host:3260,1"), 1, true)
  end)

  it("returns nil, message, \"connect\" when nothing listens on the portal", function()
    for _, host in ipairs({ "127.0.0.1", "[::1]" }) do
      local port = helpers.free_port()
      local portal = host .. ":" .. port
      local r, err, code = iscsi.probe({ portal = portal, target = "iqn.x:y", timeout = 3 })
      assert.is_nil(r)
      assert.are.equal("iscsi probe " .. portal .. " iqn.x:y lun 0: connect: cannot connect to the portal "
        .. "(connection refused or closed before login)", err)
      assert.are.equal("connect", code)
    end
  end)

  it("returns nil, message, \"closed\" when the portal closes the connection before the login", function()
    -- a target restarting its listener; under ASan this also checks that a
    -- failed login leaks nothing (libiscsi's full connect leaked its task here)
    for _, host in ipairs({ "127.0.0.1", "::1" }) do
      local fwd, port = closing_portal(host)
      local portal = (host:find(":") and "[" .. host .. "]" or host) .. ":" .. tostring(port)
      local r, err, code
      if port then
        r, err, code = iscsi.probe({ portal = portal, target = "iqn.x:y", timeout = 3 })
      end
      fwd:stop()
      assert(port, "the portal did not start: " .. helpers.read_file(fwd.log))
      assert.is_nil(r)
      assert.are.equal("iscsi probe " .. portal .. " iqn.x:y lun 0: login: cannot connect to the portal "
        .. "(connection refused or closed before login)", err)
      assert.are.equal("closed", code)
    end
  end)

  it("takes a CHAP secret as a string or a secret object, nothing that only names itself one", function()
    local forged = setmetatable({}, { __name = "sbot.secret", __index = { reveal = function() return "forged-secret-value" end } })
    assert.has_error(function()
      iscsi.probe({ portal = "127.0.0.1:1", target = "iqn.x:y", timeout = 1, chap = { user = "u", secret = forged } })
    end, "iscsi.probe: chap.secret must be a string or a secret")
  end)

  it("registers a plain-string CHAP secret with the log redactor", function()
    local log = require "sbot.log"
    local secret = "plain-chap-secret-" .. tostring(os.time())
    assert.are.equal("x " .. secret, log.redact("x " .. secret))
    local port = helpers.free_port()
    iscsi.probe({ portal = "127.0.0.1:" .. port, target = "iqn.x:y", timeout = 3,
      chap = { user = "u", secret = secret } })
    assert.are.equal("x <redacted>", log.redact("x " .. secret))
  end)
end)

-- istgt through the lab's controller (lua/sbot/lab/istgt.lua), on IPv4 and
-- IPv6 loopback: a target only the initiator "good" may log in to, with
-- LUN 0; for CHAP, the same target asking for CHAP (istgt's AuthGroup).
describe("sbot.iscsi.probe against istgt", function()
  local istgt = require "sbot.lab.istgt"
  local NODE = "iqn.2005-10.org.freenas.ctl"
  local GOOD, BAD = "iqn.2024-01.org.sbot:good", "iqn.2024-01.org.sbot:bad"

  local function start(host, chap)
    local addr = host:gsub("[%[%]]", "")
    local port = assert(istgt.free_port(addr))
    local dir = helpers.tmpdir("istgtcodes")
    local ctl = assert(istgt.start { port = port, dir = dir, host = host })
    if chap then -- the controller renders AuthMethod None: ask for CHAP on the way out
      local render = ctl.render
      ctl.render = function(self, config)
        local text, skipped = render(self, config)
        text = text:gsub("(TargetName node1\n.-)  AuthMethod None", "%1  AuthMethod CHAP\n  AuthGroup AuthGroup1")
        helpers.write_file(dir .. "/auth.conf", string.format('[AuthGroup1]\n  Auth "%s" "%s"\n', chap.user, chap.secret))
        return text, skipped
      end
    end
    local ok, err = ctl:apply { nodebase = NODE, targets = { { name = "node1",
      groups = { { portals = { addr }, initiators = { chap and "ALL" or GOOD }, netmasks = { "ALL" } } },
      luns = { { lun = 0, zvol = "tank/node1", size = 16 * MiB, serial = "1e0a0b0c0d0e001" } } } } }
    if not ok then
      ctl:stop()
      error(err)
    end
    return ctl, host .. ":" .. port
  end

  for _, host in ipairs({ "127.0.0.1", "[::1]" }) do
    it("gives the target's login status or the SCSI sense as the code (" .. host .. ")", function()
      local ctl, portal = start(host)
      local function probe(target, initiator, lun)
        return iscsi.probe { portal = portal, target = target, initiator = initiator, lun = lun, timeout = 10 }
      end
      local good = { probe(NODE .. ":node1", GOOD, 0) }
      local outsider = { probe(NODE .. ":node1", BAD, 0) }
      local unknown = { probe(NODE .. ":nosuch", GOOD, 0) }
      local nolun = { probe(NODE .. ":node1", GOOD, 3) }
      ctl:stop()
      assert(good[1], good[2])
      assert.are.equal(16 * MiB, good[1].capacity.bytes)
      assert.are.equal(portal, good[1].portal)
      -- an initiator outside the group, an unknown target: "Target not found" (0x0203)
      for _, r in ipairs({ outsider, unknown }) do
        assert.is_nil(r[1])
        assert.matches(": login: refused by the target: Target not found (status 0x0203)", r[2], 1, true)
        assert.are.equal("TARGET_NOT_FOUND", r[3])
      end
      -- a LUN the target does not have: ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED
      assert.is_nil(nolun[1])
      assert.matches("lun 3: TEST UNIT READY: CHECK CONDITION, sense key ILLEGAL_REQUEST, ascq 0x2500", nolun[2], 1, true)
      assert.are.equal("LOGICAL_UNIT_NOT_SUPPORTED", nolun[3])
    end)
  end

  it("takes a target that closes the connection at the logout as logged out: no reconnect, no busy loop", function()
    -- libiscsi reconnected after such a close and spun on the socket until the
    -- probe's 2 s logout bound: a whole CPU for 2 s, once in a few runs of
    -- a 20-server fleet (bench/iscsi_only)
    local ctl, portal = start("127.0.0.1")
    local fwd, port = closing_portal("127.0.0.1", 0, tonumber(portal:match(":(%d+)$")), "--drop-at logout")
    local r, err
    local cpu0 = os.clock()
    if port then
      r, err = iscsi.probe { portal = "127.0.0.1:" .. port, target = NODE .. ":node1", initiator = GOOD, timeout = 10 }
    end
    local cpu = os.clock() - cpu0
    os.execute("sleep 0.3") -- a reconnect would show as a second connection
    fwd:stop()
    ctl:stop()
    local log = helpers.read_file(fwd.log)
    assert(port, "the portal did not start: " .. log)
    assert(r, err)
    assert.are.equal(16 * MiB, r.capacity.bytes)
    local _, forwarded = log:gsub("forwarded", "")
    assert.are.equal(1, forwarded, log)
    assert.matches("dropped at logout", log, 1, true)
    -- the spin burnt the whole bound; a probe's own work is milliseconds
    assert.is_true(cpu < 1.0, string.format("the probe used %.2f s of CPU", cpu))
  end)

  it("fails a connection lost in the middle of the session as \"closed\", without logging in again", function()
    -- the portal drops the connection at the first SCSI command; libiscsi's
    -- reconnect did not get anywhere (the probe sat out its whole timeout and
    -- said "timeout"): the command in flight fails at once instead
    local ctl, portal = start("127.0.0.1")
    local fwd, port = closing_portal("127.0.0.1", 0, tonumber(portal:match(":(%d+)$")), "--drop-at command --drops 1")
    local r, err, code
    if port then
      r, err, code = iscsi.probe { portal = "127.0.0.1:" .. port, target = NODE .. ":node1", initiator = GOOD,
        timeout = 10 }
    end
    os.execute("sleep 0.3") -- a reconnect would show as a second connection
    fwd:stop()
    ctl:stop()
    local log = helpers.read_file(fwd.log)
    assert(port, "the portal did not start: " .. log)
    assert.is_nil(r)
    assert.are.equal("iscsi probe 127.0.0.1:" .. port .. " " .. NODE .. ":node1 lun 0: TEST UNIT READY: "
      .. "the connection was lost (the target closed it)", err)
    assert.are.equal("closed", code)
    local _, forwarded = log:gsub("forwarded", "")
    assert.are.equal(1, forwarded, log)
    assert.matches("dropped at command", log, 1, true)
  end)

  it("gives AUTHENTICATION_FAILURE for a login without CHAP or with a wrong secret", function()
    local chap = { user = "chapuser", secret = "chapsecret1234" }
    local ctl, portal = start("127.0.0.1", chap)
    local function probe(c)
      return iscsi.probe { portal = portal, target = NODE .. ":node1", chap = c, timeout = 10 }
    end
    local none = { probe(nil) }
    local wrong = { probe({ user = chap.user, secret = "wrongsecret123" }) }
    local right = { probe(chap) }
    ctl:stop()
    for _, r in ipairs({ none, wrong }) do
      assert.is_nil(r[1])
      assert.matches("login: refused by the target: Authentication failure (status 0x0201)", r[2], 1, true)
      assert.are.equal("AUTHENTICATION_FAILURE", r[3])
    end
    assert(right[1], right[2])
    assert.is_nil(right[2])
  end)
end)
