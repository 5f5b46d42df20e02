-- sbot.iscsi: argument checks and a portal that refuses (no iSCSI target is
-- needed for these).
local iscsi = require "sbot.iscsi"
local helpers = require "helpers"

describe("sbot.iscsi.probe", function()
  it("raises on bad options, a NaN timeout included (it made the deadline unreachable)", function()
    assert.has_error(function() iscsi.probe({ target = "iqn.x:y" }) end,
      "iscsi.probe: 'portal' (string) is required")
    assert.has_error(function() iscsi.probe({ portal = "127.0.0.1", target = "iqn.x:y" }) end,
      "iscsi.probe: portal '127.0.0.1' must be HOST:PORT")
    for _, t in ipairs({ 0, -1, 0 / 0, 1e300 }) do
      assert.has_error(function()
        iscsi.probe({ portal = "127.0.0.1:1", target = "iqn.x:y", timeout = t })
      end, "iscsi.probe: 'timeout' must be a positive number of seconds (at most a day)")
    end
  end)

  it("returns nil, message, code when nothing listens on the portal", function()
    local port = helpers.free_port()
    local r, err, code = iscsi.probe({ portal = "127.0.0.1:" .. port, target = "iqn.x:y", timeout = 3 })
    assert.is_nil(r)
    assert.are.equal("iscsi probe 127.0.0.1:" .. port .. " iqn.x:y lun 0: login: cannot connect to the portal "
      .. "(connection refused or closed before login)", err)
    assert.are.equal("login", code)
  end)

  it("returns nil, message, code when the portal closes the connection before the login", function()
    -- a target restarting its listener; under ASan this also checks that a
    -- failed login leaks nothing (libiscsi's full connect leaked its task here)
    local fwd = helpers.spawn(string.format("python3 %s --close 100 --to 1",
      helpers.shquote(helpers.source_dir .. "/tests/servers/reloading_portal.py")))
    local port
    for _ = 1, 200 do
      port = tonumber(helpers.read_file(fwd.log):match("^(%d+)\n"))
      if port then break end
      os.execute("sleep 0.02")
    end
    local r, err, code
    if port then
      r, err, code = iscsi.probe({ portal = "127.0.0.1:" .. port, target = "iqn.x:y", timeout = 3 })
    end
    fwd:stop()
    assert(port, "the portal did not start")
    assert.is_nil(r)
    assert.are.equal("iscsi probe 127.0.0.1:" .. port .. " iqn.x:y lun 0: login: cannot connect to the portal "
      .. "(connection refused or closed before login)", err)
    assert.are.equal("login", code)
  end)

  it("takes a CHAP secret as a string or a secret object, nothing that only names itself one", function()
    local forged = setmetatable({}, { __name = "sbot.secret", __index = { reveal = function() return "xxxxxxxx" end } })
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
