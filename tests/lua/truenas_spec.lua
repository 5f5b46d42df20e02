-- sbot.truenas against the lab's TrueNAS (a real process on loopback): login,
-- errors as the middleware gives them, jobs, reconnect after dropped replies,
-- REST v2.0, secrets.
local truenas = require "sbot.truenas"
local log = require "sbot.log"
local helpers = require "helpers"

local KEY = "1-TnClientKey0123456789abcdef"
local GiB = 1024 ^ 3 // 1

local function start_server(args)
  local port = helpers.free_port()
  local cmd = string.format("%s run %s port=%d api_key=%s %s", helpers.shquote(helpers.sbot_bin),
    helpers.shquote(helpers.source_dir .. "/tests/servers/truenas_lab.lua"), port, KEY, args or "")
  local h = helpers.spawn(cmd)
  assert(helpers.wait_port(port, 15), "lab did not start: " .. h:output())
  return h, port
end

describe("sbot.truenas (JSON-RPC over WebSocket)", function()
  local srv, port
  setup(function() srv, port = start_server() end)
  teardown(function() srv:stop("INT") end)

  local function connect(extra)
    local o = { url = string.format("ws://127.0.0.1:%d/api/current", port), api_key = KEY, timeout = 5 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return truenas.connect(o)
  end

  it("logs in and calls, with the middleware's reason and every field error on failure", function()
    local c <close> = assert(connect())
    local pools = assert(c:call("pool.query"))
    assert.are.equal("tank", pools[1].name)
    local r, err, errname = c:call("iscsi.extent.create", { name = "e1", disk = "zvol/tank/nope" })
    assert.is_nil(r)
    assert.are.equal("iscsi.extent.create: disk: Device /dev/zvol/tank/nope for volume tank/nope does not exist", err)
    assert.are.equal("EINVAL", errname)
    local _, two = c:call("iscsi.target.create", { name = "Bad_Name", groups = { { portal = 99 } } })
    assert.matches("^iscsi%.target%.create: ", two)
    assert.matches("name: Lowercase alphanumeric", two)
    assert.matches("groups%.0%.portal: 99 Portal not found", two)
    local _, nf, nfname = c:call("iscsi.target.get_instance", 99)
    assert.are.equal("iscsi.target.get_instance: iSCSITarget 99 does not exist", nf)
    assert.are.equal("EINVAL", nfname)
    local _, nm, nmname = c:call("iscsi.target.frobnicate")
    assert.matches("^iscsi%.target%.frobnicate: ", nm)
    assert.are.equal("ENOMETHOD", nmname)
    local _, big, bigname = c:call("pool.dataset.create", { name = "tank/huge", type = "VOLUME", volsize = 2048 * GiB,
                                                            force_size = true })
    assert.are.equal("pool.dataset.create: Failed to create dataset: cannot create 'tank/huge': out of space", big)
    assert.are.equal("EFAULT", bigname)
    assert.are.equal("jsonrpc", c:stats().transport)
    assert.are.equal(1, c:stats().logins)
  end)

  it("follows job methods to their end (core.get_methods, core.get_jobs) with progress", function()
    local seen = {}
    local c <close> = assert(connect { progress = function(job) seen[#seen + 1] = job end })
    assert.is_true(c:call("service.control", "START", "iscsitarget", {}))
    assert.are.equal("RUNNING", c:call("service.query", { { "service", "=", "iscsitarget" } }, { get = true }).state)
    assert.are.equal(1, #seen)
    assert.are.equal("service.control", seen[1].method)
    assert.are.equal(100, seen[1].progress.percent)
    local r, err, errname = c:call("service.control", "START", "nonexistent")
    assert.is_nil(r)
    assert.matches("^service%.control: job %d+ failed: The service nonexistent does not exist$", err)
    assert.are.equal("ENOENT", errname)
    -- a non-job integer result stays what it is
    local svc = c:call("service.query", { { "service", "=", "iscsitarget" } }, { get = true })
    assert.are.equal(svc.id, c:call("service.update", "iscsitarget", { enable = true }))
  end)

  it("refuses a wrong API key without showing it, and a missing server", function()
    local c, err, code = connect { api_key = "1-wrong-key-value" }
    assert.is_nil(c)
    assert.matches("refused", err)
    assert.not_matches("wrong%-key", err)
    assert.are.equal("AUTH_ERR", code)
    local dead = helpers.free_port()
    local c2, err2, code2 = truenas.connect { url = "ws://127.0.0.1:" .. dead .. "/api/current", api_key = KEY, timeout = 3 }
    assert.is_nil(c2)
    assert.matches("127.0.0.1:" .. dead, err2)
    assert.are.equal("connect", code2)
  end)

  it("takes the key as a secret object, reveals secrets in arguments, and keeps both out of the log", function()
    local secret = require "sbot.secret"
    local c <close> = assert(connect { api_key = secret.new(KEY, "test") })
    assert.are.equal("<redacted>", log.redact(KEY))
    local comment = secret.new("comment-from-a-secret", "test")
    local p = assert(c:call("iscsi.portal.create", { listen = { { ip = "127.0.0.9" } }, comment = comment }))
    assert.are.equal("comment-from-a-secret", p.comment)
  end)

  it("raises on misuse", function()
    assert.has_error(function() truenas.connect { url = "ftp://x", api_key = KEY } end,
      "truenas.connect: opts.url 'ftp://x' must be ws(s)://HOST/api/current or http(s)://HOST/api/v2.0")
    assert.has_error(function() truenas.connect { url = "ws://x/api/current" } end,
      "truenas.connect: opts.api_key (string or secret) is required")
    assert.has_error(function() truenas.connect { url = "ws://x/api/current", api_key = KEY, bogus = 1 } end,
      "truenas.connect: unknown option 'bogus'")
    assert.has_error(function() truenas.connect { url = "https://x/api/current", api_key = KEY } end)
    local c = assert(connect())
    c:close()
    c:close()
    assert.has_error(function() c:call("core.ping") end, "truenas: the client is closed")
  end)
end)

describe("sbot.truenas with dropped replies", function()
  local srv, port
  setup(function() srv, port = start_server("drop=0.3 seed=5") end)
  teardown(function() srv:stop("INT") end)

  it("asks an idempotent call again when its answer is lost, and reports a lost write as a timeout", function()
    local c <close> = assert(truenas.connect { url = string.format("ws://127.0.0.1:%d/api/current", port),
      api_key = KEY, timeout = 5, call_timeout = 0.3 })
    for i = 1, 20 do assert(c:call("iscsi.target.query"), "query " .. i) end
    assert.is_true(c:stats().resends > 0)
    assert.are.equal(0, c:stats().reconnects)
    local lost = 0
    for i = 1, 10 do
      local r, err, code = c:call("iscsi.initiator.create", { comment = "n" .. i })
      if not r then
        assert.are.equal("timeout", code, err)
        assert.matches("iscsi%.initiator%.create: no answer within 0%.3 s", err)
        lost = lost + 1
      end
    end
    assert.is_true(lost > 0, "no create reply was dropped")
  end)
end)

describe("sbot.truenas when the connection drops", function()
  it("reconnects and logs in again once for an idempotent call, never for a write", function()
    local srv, port = start_server()
    local url = string.format("ws://127.0.0.1:%d/api/current", port)
    local c <close> = assert(truenas.connect { url = url, api_key = KEY, timeout = 5, call_timeout = 2 })
    assert(c:call("pool.query"))
    local function restart()
      srv:stop("KILL")
      local cmd = string.format("%s run %s port=%d api_key=%s", helpers.shquote(helpers.sbot_bin),
        helpers.shquote(helpers.source_dir .. "/tests/servers/truenas_lab.lua"), port, KEY)
      srv = helpers.spawn(cmd)
      assert(helpers.wait_port(port, 15), "lab did not restart: " .. srv:output())
    end
    restart()
    assert.are.equal("tank", c:call("pool.query")[1].name)
    assert.are.equal(1, c:stats().reconnects)
    assert.are.equal(2, c:stats().logins)
    restart()
    local r, err, code = c:call("iscsi.initiator.create", { comment = "x" })
    assert.is_nil(r)
    assert.is_truthy(code == "closed" or code == "io", tostring(code) .. ": " .. tostring(err))
    srv:stop("INT")
  end)
end)

describe("sbot.truenas over REST v2.0", function()
  local srv, port
  setup(function() srv, port = start_server() end)
  teardown(function() srv:stop("INT") end)

  it("maps calls onto /api/v2.0 paths, with field errors", function()
    local c <close> = assert(truenas.connect { url = string.format("http://127.0.0.1:%d/api/v2.0", port), api_key = KEY,
      timeout = 5 })
    assert.are.equal("rest", c:stats().transport)
    local p = assert(c:call("iscsi.portal.create", { listen = { { ip = "127.0.0.1" } } }))
    local t = assert(c:call("iscsi.target.create", { name = "r1", groups = { { portal = p.id } } }))
    assert.are.equal("r1", c:call("iscsi.target.get_instance", t.id).name)
    assert.are.equal(t.id, c:call("iscsi.target.query", { { "name", "=", "r1" } }, { get = true }).id)
    assert.are.equal(0, #c:call("iscsi.target.query", { { "name", "=", "none" } }))
    assert.are.equal("first", c:call("iscsi.target.update", t.id, { alias = "first" }).alias)
    local _, err, code = c:call("iscsi.target.create", { name = "Bad_Name" })
    assert.matches("^iscsi%.target%.create: name: Lowercase", err)
    assert.are.equal("EINVAL", code)
    local _, ne = c:call("iscsi.target.query", { { "name", "~", "r" } })
    assert.matches("only %[field, \"=\", value%] filters", ne)
    assert(c:call("pool.dataset.create", { name = "tank/z", type = "VOLUME", volsize = GiB }))
    assert.are.equal("tank/z", c:call("pool.dataset.get_instance", "tank/z").id)
    assert.is_true(c:call("iscsi.target.delete", t.id))
    assert.is_true(c:call("pool.dataset.delete", "tank/z"))
    assert.are.equal("iqn.2005-10.org.freenas.ctl", c:call("iscsi.global.config").basename)
    local bad, berr, bcode = truenas.connect { url = string.format("http://127.0.0.1:%d/api/v2.0", port),
      api_key = "1-nope", timeout = 5 }
    assert.is_nil(bad)
    assert.matches("auth%.me", berr)
    assert.are.equal("ENOTAUTHENTICATED", bcode)
  end)
end)

describe("sbot.truenas and the login rate limit", function()
  local srv, port
  setup(function() srv, port = start_server() end)
  teardown(function() srv:stop("INT") end)

  it("reports the server's EBUSY once 20 logins failed in a minute", function()
    local url = string.format("ws://127.0.0.1:%d/api/current", port)
    for _ = 1, 20 do
      local _, _, code = truenas.connect { url = url, api_key = "1-nope", timeout = 5 }
      assert.are.equal("AUTH_ERR", code)
    end
    local c, err, code = truenas.connect { url = url, api_key = KEY, timeout = 5 }
    assert.is_nil(c)
    assert.are.equal("auth.login_ex: Rate Limit Exceeded", err)
    assert.are.equal("EBUSY", code)
  end)
end)
