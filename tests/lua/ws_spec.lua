-- sbot.ws against a real WebSocket server (tests/servers/ws_echo.py) on loopback,
-- plain and TLS.
local ws = require "sbot.ws"
local json = require "sbot.json"
local sys = require "sbot.sys"
local helpers = require "helpers"

local server_py = helpers.source_dir .. "/tests/servers/ws_echo.py"

local function start(extra)
  local port = helpers.free_port()
  local h = helpers.spawn(string.format("python3 %s %d %s", helpers.shquote(server_py), port, extra or ""))
  assert(helpers.wait_port(port, 10), "ws_echo.py did not start: " .. h:output())
  return h, port
end

  -- In a separate sbot process bounded by sys.spawn's timeout: before the fix
  -- the second recv never returned (the deadline was not looked at while
  -- bytes stayed buffered, and wslay reads nothing after a protocol error).
  local function bad_frame_run(connect_url, first, tls_opts)
    local dir = helpers.tmpdir("ws-bad")
    local script = dir .. "/bad.lua"
    helpers.write_file(script, string.format([[
local ws = require "sbot.ws"
local c = assert(ws.connect(%q, { timeout = 5, tls = %s }))
if %q ~= "" then assert(c:send(%q)) end
print("first", c:recv(5))
print("open", c:is_open())
print("second", c:recv(0.1))
print("send", c:send("x"))
]], connect_url, tls_opts or "nil", first, first))
    local r = assert(sys.spawn { argv = { helpers.sbot_bin, "run", script }, timeout = 20 })
    assert.is_nil(r.timed_out, "recv after a bad frame did not return: " .. r.stdout .. r.stderr)
    assert.are.equal(0, r.status, r.stderr)
    return r.stdout
  end

describe("sbot.ws", function()
  local plain, port
  setup(function() plain, port = start() end)
  teardown(function() plain:stop() end)

  local function url(path) return string.format("ws://127.0.0.1:%d%s", port, path or "/api/current") end

  it("connects, sends and receives text messages in order", function()
    local c <close> = assert(ws.connect(url(), { timeout = 5 }))
    assert.is_true(c:send("hello"))
    assert.is_true(c:send('{"jsonrpc":"2.0","id":1}'))
    assert.are.equal("hello", c:recv(5))
    assert.are.equal('{"jsonrpc":"2.0","id":1}', c:recv(5))
    assert.is_true(c:is_open())
  end)

  it("answers pings itself and reads large messages", function()
    local c <close> = assert(ws.connect(url(), { timeout = 5 }))
    assert(c:send("ping"))
    assert.are.equal("pinged", c:recv(5))
    assert(c:send("big:300000"))
    local big = assert(c:recv(5))
    assert.are.equal(300000, #big)
    assert.are.equal(string.rep("x", 300000), big)
    local text = string.rep("y", 70000)
    assert(c:send(text))
    assert.are.equal(text, c:recv(5))
  end)

  it("sends extra headers, secret values revealed only on the wire", function()
    local secret = require("sbot.secret").new("Bearer s3cr3t")
    local c <close> = assert(ws.connect(url(), { headers = { Authorization = secret, ["X-Lab"] = "1" } }))
    assert(c:send("headers"))
    local seen = json.decode(assert(c:recv(5)))
    assert.are.equal("Bearer s3cr3t", seen.authorization)
    assert.are.equal("1", seen["x-lab"])
    assert.are.equal("13", seen["sec-websocket-version"])
    assert.matches("^127%.0%.0%.1:%d+$", seen.host)
  end)

  it("times out a recv with nothing to read", function()
    local c <close> = assert(ws.connect(url(), { timeout = 5 }))
    assert(c:send("silence"))
    local text, err, code = c:recv(0.3)
    assert.is_nil(text)
    assert.are.equal("timeout", code)
    assert.matches("timed out", err)
    assert(c:send("after"))
    assert.are.equal("after", c:recv(5))
  end)

  it("reports a server close with its status", function()
    local c = assert(ws.connect(url(), { timeout = 5 }))
    assert(c:send("close"))
    local text, err, code = c:recv(5)
    assert.is_nil(text)
    assert.are.equal("closed", code)
    assert.matches("status 1000", err)
    local ok, serr, scode = c:send("more")
    assert.is_nil(ok)
    assert.are.equal("closed", scode)
    assert.truthy(serr)
    c:close()
    c:close() -- twice is safe
    assert.are.equal("closed", select(3, c:recv(0)))
  end)

  it("fails cleanly when nothing listens or the name does not resolve", function()
    local dead = helpers.free_port()
    local c, err, code = ws.connect(string.format("ws://127.0.0.1:%d/", dead), { timeout = 2 })
    assert.is_nil(c)
    assert.are.equal("connect", code)
    assert.are.equal(string.format("ws.connect ws://127.0.0.1:%d/: connect to 127.0.0.1 port %d failed: "
      .. "Connection refused", dead, dead), err)
    c, err, code = ws.connect("ws://no-such-host.invalid/", { timeout = 5 })
    assert.is_nil(c)
    assert.are.equal("resolve", code) -- the word sbot.http uses for the same failure
    assert.matches("^ws.connect ws://no%-such%-host.invalid/: cannot resolve no%-such%-host.invalid: ", err)
  end)

  it("receives an empty message", function()
    -- wslay hands an empty message over as (NULL, 0): memcpy from NULL was undefined (UBSan abort)
    local c <close> = assert(ws.connect(url(), { timeout = 5 }))
    assert(c:send(""))
    assert.are.equal("", c:recv(5))
    assert(c:send("after empty"))
    assert.are.equal("after empty", c:recv(5))
  end)

  it("reassembles a fragmented message, a ping between its fragments", function()
    local c <close> = assert(ws.connect(url(), { timeout = 5, max_message = 300000 }))
    local function letters(n)
      local t = {}
      for i = 0, n - 1 do t[#t + 1] = string.char(97 + i % 26) end
      return table.concat(t)
    end
    for _, case in ipairs({ { 100000, 7 }, { 300000, 3 }, { 26, 26 }, { 5, 1 } }) do
      assert(c:send(string.format("frag:%d:%d", case[1], case[2])))
      assert.are.equal(letters(case[1]), c:recv(5))
    end
    -- a fragmented message over max_message is refused too (wslay checks single frames only)
    assert(c:send("frag:300001:3"))
    local text, err, code = c:recv(5)
    assert.is_nil(text)
    assert.are.equal("too_large", code)
    assert.matches("a message larger than max_message (300000 bytes)", err, 1, true)
  end)

  it("fails and closes the connection on a message over max_message", function()
    local c <close> = assert(ws.connect(url(), { timeout = 5, max_message = 1000 }))
    assert(c:send("big:1000"))
    assert.are.equal(1000, #assert(c:recv(5)))
    assert(c:send("big:5000"))
    local text, err, code = c:recv(5)
    assert.is_nil(text)
    assert.are.equal("too_large", code)
    assert.are.equal(string.format("ws recv from %s: a message larger than max_message (1000 bytes); the "
      .. "connection was closed (status 1009)", url()), err)
    assert.is_false(c:is_open())
    text, err, code = c:recv(0.1)
    assert.are.equal("closed", code)
    assert.are.equal("ws recv: connection is closed (ws recv from " .. url() .. ": a message larger than "
      .. "max_message (1000 bytes); the connection was closed (status 1009))", err)
  end)

  it("fails and closes the connection on text that is not UTF-8", function()
    local c <close> = assert(ws.connect(url(), { timeout = 5 }))
    assert(c:send("badutf8"))
    local text, err, code = c:recv(5)
    assert.is_nil(text)
    assert.are.equal("protocol", code)
    assert.are.equal("ws recv from " .. url() .. ": protocol error: the server sent text that is not UTF-8; the "
      .. "connection was closed (status 1007)", err)
    assert.are.equal("closed", select(3, c:send("more")))
  end)

  it("raises on misuse", function()
    assert.has_error(function() ws.connect("http://127.0.0.1/") end,
      "ws.connect: URL 'http://127.0.0.1/' must start with ws:// or wss://")
    assert.has_error(function() ws.connect(url(), { timeout = -1 }) end,
      "ws.connect: opts.timeout must be a positive number of seconds")
    -- NaN passed "<= 0" and left every wait unbounded
    assert.has_error(function() ws.connect(url(), { timeout = 0 / 0 }) end,
      "ws.connect: opts.timeout must be a positive number of seconds")
    -- a huge timeout is fine (poll waits in int-sized slices)
    local c <close> = assert(ws.connect(url(), { timeout = math.huge }))
    assert(c:send("big timeout", math.huge))
    assert.are.equal("big timeout", c:recv(1e12))
    assert.has_error(function() ws.connect(url(), { bogus = 1 }) end, "ws.connect: unknown option 'bogus'")
    assert.has_error(function() ws.connect(url(), { tls = { insecure = true } }) end,
      "ws.connect: opts.tls: TLS settings given for the plain-text URL " .. url() .. "; use wss://")
    -- credentials in the URL are refused without echoing them
    local ok, err = pcall(ws.connect, "wss://root:hunter2@127.0.0.1:9/api/current")
    assert.is_false(ok)
    assert.matches("credentials in the URL", err, 1, true)
    assert.is_nil(tostring(err):find("hunter2", 1, true))
  end)

  describe("against a misbehaving server", function()
    it("rejects a wrong Sec-WebSocket-Accept", function()
      local h, p = start("--bad-accept")
      local c, err, code = ws.connect(string.format("ws://127.0.0.1:%d/", p), { timeout = 5 })
      h:stop()
      assert.is_nil(c)
      assert.are.equal("protocol", code)
      assert.matches("Sec%-WebSocket%-Accept", err)
    end)

    it("fails and closes the connection after a bad frame, bytes still buffered behind it", function()
      local h, p = start("--bad-frame-after-upgrade")
      local u = string.format("ws://127.0.0.1:%d/", p)
      local out = bad_frame_run(u, "")
      h:stop()
      local why = "ws recv from " .. u .. ": protocol error: the server sent an invalid frame; the connection "
        .. "was closed"
      assert.matches("first\tnil\t" .. why .. "\tprotocol\n", out, 1, true)
      assert.matches("open\tfalse\n", out, 1, true)
      assert.matches("second\tnil\tws recv: connection is closed (" .. why .. ")\tclosed\n", out, 1, true)
      assert.matches("send\tnil\tws send: connection is closed (" .. why .. ")\tclosed\n", out, 1, true)
    end)

    it("reports a refused upgrade with the HTTP status and body", function()
      local h, p = start("--refuse")
      local c, err, code = ws.connect(string.format("ws://127.0.0.1:%d/", p), { timeout = 5 })
      h:stop()
      assert.is_nil(c)
      assert.are.equal(403, code)
      assert.matches("403 Forbidden", err)
      assert.matches("upgrade refused by test", err)
    end)
  end)

  describe("over TLS", function()
    local tls_server, tls_port, dir, pin
    setup(function()
      dir = helpers.tmpdir("ws-tls")
      local ok = helpers.sh(string.format(
        "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 " ..
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null", helpers.shquote(dir)))
      assert(ok, "openssl failed")
      local _, _, out = helpers.sh(string.format(
        "cd %s && openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der | " ..
        "openssl dgst -sha256 -binary | base64", helpers.shquote(dir)))
      pin = "sha256//" .. out:gsub("%s+", "")
      tls_server, tls_port = start(string.format("--tls %s/cert.pem %s/key.pem", dir, dir))
    end)
    teardown(function() tls_server:stop() end)

    local function turl() return string.format("wss://127.0.0.1:%d/api/current", tls_port) end

    it("verifies by default and refuses a self-signed certificate", function()
      local c, err, code = ws.connect(turl(), { timeout = 5 })
      assert.is_nil(c)
      assert.are.equal("tls", code)
      assert.matches("verif", err)
    end)

    it("accepts the server with its CA file", function()
      local c <close> = assert(ws.connect(turl(), { timeout = 5, tls = { ca_file = dir .. "/cert.pem" } }))
      assert(c:send("over tls"))
      assert.are.equal("over tls", c:recv(5))
    end)

    it("accepts a matching public-key pin and refuses another", function()
      local c <close> = assert(ws.connect(turl(), { timeout = 5, tls = { pin_sha256 = pin } }))
      assert(c:send("pinned"))
      assert.are.equal("pinned", c:recv(5))
      local wrong = "sha256//" .. string.rep("A", 43) .. "="
      local c2, err, code = ws.connect(turl(), { timeout = 5, tls = { pin_sha256 = wrong } })
      assert.is_nil(c2)
      assert.are.equal("tls", code)
      assert.matches("does not match the pinned", err)
      -- a pin in hex is the same pin: refused the same way, not raised on
      local c3, herr, hcode = ws.connect(turl(), { timeout = 5, tls = { pin_sha256 = ("ab"):rep(32) } })
      assert.is_nil(c3)
      assert.are.equal("tls", hcode)
      assert.matches("does not match the pinned SHA%-256 %(server has " .. pin:gsub("%p", "%%%0") .. "%)", herr)
    end)

    it("reports a send to a server that went away as an error instead of dying of SIGPIPE", function()
      -- OpenSSL's socket BIO writes with write(): the second write after
      -- the peer's reset would raise SIGPIPE and kill the process (sbot.ws
      -- sends through a BIO of its own, with MSG_NOSIGNAL). A separate
      -- sbot process, so the signal cannot take the test runner with it.
      local srv, sport = start(string.format("--tls %s/cert.pem %s/key.pem", dir, dir))
      local script = dir .. "/drop.lua"
      helpers.write_file(script, string.format([[
local ws = require "sbot.ws"
local c = assert(ws.connect("wss://127.0.0.1:%d/x", { timeout = 5, tls = { ca_file = %q } }))
assert(c:send("one"))
assert(c:recv(5) == "one")
os.execute("kill -9 %d")
os.execute("sleep 0.3")
for i = 1, 50 do
  local ok, err, code = c:send("more " .. i)
  if not ok then print("send failed: " .. code .. ": " .. err); os.exit(0) end
  os.execute("sleep 0.02")
end
print("every send succeeded")
]], sport, dir .. "/cert.pem", srv.pid))
      local r = helpers.sbot({ "run", script })
      srv:stop()
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("^send failed: io: ws send to wss://127.0.0.1:%d+/x: TLS write", r.stdout)
    end)

    it("fails and closes the connection after a bad frame with TLS bytes still pending", function()
      local u = turl()
      local out = bad_frame_run(u, "badping", string.format("{ ca_file = %q }", dir .. "/cert.pem"))
      local why = "ws recv from " .. u .. ": protocol error: the server sent an invalid frame; the connection "
        .. "was closed"
      assert.matches("first\tnil\t" .. why .. "\tprotocol\n", out, 1, true)
      assert.matches("second\tnil\tws recv: connection is closed (" .. why .. ")\tclosed\n", out, 1, true)
    end)

    it("waits in poll, not in a loop of reads, while a TLS record arrives in two parts", function()
      -- With read-ahead OpenSSL holds the first half of the record and
      -- SSL_has_pending says so; before the fix recv took that for data to
      -- read and looped on SSL_read (WANT_READ) without waiting, burning a
      -- CPU until the second half came a second later.
      local srv, sport = start(string.format("--tls %s/cert.pem %s/key.pem --tls-bio", dir, dir))
      local c <close> = assert(ws.connect(string.format("wss://127.0.0.1:%d/x", sport),
        { timeout = 5, tls = { ca_file = dir .. "/cert.pem" } }))
      assert(c:send("hello"))
      assert.are.equal("hello", c:recv(5))
      assert(c:send("slowrecord:1000"))
      -- os.clock is clock(3): this process's CPU time, every thread
      local cpu0, wall0 = os.clock(), sys.monotime()
      local m = c:recv(5)
      local cpu, wall = os.clock() - cpu0, sys.monotime() - wall0
      srv:stop()
      assert.are.equal(string.rep("x", 1000), m)
      assert.is_true(wall >= 0.9, "the record came in two parts a second apart (" .. wall .. " s)")
      assert.is_true(cpu < 0.25, string.format("recv used %.2f s of CPU in %.2f s of waiting", cpu, wall))
    end)

    it("skips verification only when insecure is explicit", function()
      local c <close> = assert(ws.connect(turl(), { timeout = 5, tls = { insecure = true } }))
      assert(c:send("insecure"))
      assert.are.equal("insecure", c:recv(5))
    end)
  end)
end)
