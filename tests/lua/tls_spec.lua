-- sbot.tls: the one parser of tls = {ca_file, pin_sha256, insecure, server_name}.
-- The same table is accepted or refused, with the same words, by tls.check (the
-- site schema), sbot.http and sbot.ws; and the settings mean the same on the wire
-- for both clients (real TLS servers on loopback: httpbin.py and ws_echo.py).
local tls = require "sbot.tls"
local http = require "sbot.http"
local ws = require "sbot.ws"
local crypto = require "sbot.crypto"
local helpers = require "helpers"
local servers = require "test_servers"

local PIN_BYTES = crypto.sha256("a public key")
local B64 = crypto.base64_encode(PIN_BYTES)
local HEX = crypto.hex(PIN_BYTES)

describe("sbot.tls", function()
  it("accepts one pin in three forms and gives it back as base64", function()
    local colons = HEX:upper():gsub("(%x%x)", "%1:"):sub(1, -2)
    for _, form in ipairs({ B64, "sha256//" .. B64, HEX, HEX:upper(), colons }) do
      assert.are.same({ pin_sha256 = B64 }, assert(tls.check({ pin_sha256 = form })), form)
    end
    assert.are.same({ ca_file = "/etc/ca.pem", pin_sha256 = B64, server_name = "bmc.lab" },
      assert(tls.check({ ca_file = "/etc/ca.pem", pin_sha256 = HEX, server_name = "bmc.lab" })))
    assert.are.same({ insecure = true }, assert(tls.check({ insecure = true, server_name = nil })))
    assert.are.same({}, assert(tls.check({ insecure = false })))
    assert.are.same({}, assert(tls.check({})))
    assert.are.same({}, assert(tls.check(nil)))
  end)

  it("refuses a bad table naming every problem and where", function()
    local function refused(t, url, want)
      local ok, err = tls.check(t, "site x: servers[1].idrac.tls", url)
      assert.is_nil(ok)
      assert.are.equal(want, err)
    end
    local p = "site x: servers[1].idrac.tls"
    local pin_help = "is not a SHA-256 public-key pin: give its 44 base64 characters ending in '=' "
      .. "(optionally after sha256//) or its 64 hex digits (colons allowed between bytes)"
    refused({ pin = B64 }, nil, p .. ": unknown key 'pin' (expected ca_file, pin_sha256, insecure, server_name)")
    refused({ pin_sha256 = "abcd=" }, nil, p .. ".pin_sha256: 'abcd=' " .. pin_help)
    refused({ pin_sha256 = B64:sub(1, 43) }, nil, p .. ".pin_sha256: '" .. B64:sub(1, 43) .. "' " .. pin_help)
    refused({ pin_sha256 = "sha256//" .. HEX }, nil, p .. ".pin_sha256: 'sha256//" .. HEX .. "' " .. pin_help)
    refused({ pin_sha256 = HEX:sub(3) }, nil, p .. ".pin_sha256: '" .. HEX:sub(3) .. "' " .. pin_help)
    refused({ pin_sha256 = B64 .. ";sha256//" .. B64 }, nil,
      p .. ".pin_sha256: '" .. B64 .. ";sha256//" .. B64 .. "' " .. pin_help)
    refused({ pin_sha256 = 12 }, nil, p .. ".pin_sha256: expected a string, got number")
    refused({ ca_file = "" }, nil, p .. ".ca_file: must not be empty")
    refused({ ca_file = true }, nil, p .. ".ca_file: expected a string, got boolean")
    refused({ insecure = "yes" }, nil, p .. ".insecure: expected a boolean, got string")
    refused({ server_name = "a b" }, nil, p .. ".server_name: 'a b' is not a host name")
    refused({ insecure = true, ca_file = "/ca.pem" }, nil,
      p .. ".insecure: insecure = true cannot be combined with ca_file or pin_sha256")
    refused({ pin_sha256 = B64 }, "http://bmc/", p .. ": TLS settings given for the plain-text URL http://bmc/; use https://")
    refused({ server_name = "n" }, "ws://nas/api", p .. ": TLS settings given for the plain-text URL ws://nas/api; use wss://")
    refused("tls", nil, p .. ": expected a table {ca_file, pin_sha256, insecure, server_name}, got string")
    -- every problem at once, one per line
    refused({ pin_sha256 = "x", insecure = 1, extra = 1 }, "http://h/", table.concat({
      p .. ": unknown key 'extra' (expected ca_file, pin_sha256, insecure, server_name)",
      p .. ".pin_sha256: 'x' " .. pin_help,
      p .. ".insecure: expected a boolean, got number",
      p .. ": TLS settings given for the plain-text URL http://h/; use https://" }, "\n"))
    assert.is_true(tls.check({ insecure = false }, "w", "http://h/") ~= nil) -- false is no setting
  end)

  it("gives http and ws the same verdict and the same words", function()
    local bad = {
      { pin_sha256 = "abcd=" },
      { pin_sha256 = "sha256//" .. HEX },
      { bogus = 1 },
      { insecure = true, pin_sha256 = B64 },
      { server_name = 5 },
      { ca_file = "" },
    }
    for _, t in ipairs(bad) do
      local _, want = tls.check(t, "W")
      local ok, herr = pcall(http.get, "https://127.0.0.1:9/", { tls = t })
      assert.is_false(ok)
      assert.are.equal(want:gsub("^W", "http.request: tls"), herr)
      local wok, werr = pcall(ws.connect, "wss://127.0.0.1:9/", { tls = t })
      assert.is_false(wok)
      assert.are.equal(want:gsub("^W", "ws.connect: opts.tls"), werr)
    end
    for _, t in ipairs({ { pin_sha256 = HEX }, { pin_sha256 = "sha256//" .. B64 }, { server_name = "x" } }) do
      local ok, herr = pcall(http.get, "http://127.0.0.1:9/", { tls = t, retries = false })
      assert.is_false(ok)
      assert.are.equal("http.request: tls: TLS settings given for the plain-text URL http://127.0.0.1:9/; use https://", herr)
      local wok, werr = pcall(ws.connect, "ws://127.0.0.1:9/", { tls = t })
      assert.is_false(wok)
      assert.are.equal("ws.connect: opts.tls: TLS settings given for the plain-text URL ws://127.0.0.1:9/; use wss://", werr)
    end
  end)

  it("computes the pin of a PEM certificate as openssl does", function()
    local dir = helpers.tmpdir("tls")
    local cert, _, pin = servers.make_cert(dir)
    assert.are.equal(pin, tls.pin_sha256(helpers.read_file(cert)))
    local pub = dir .. "/pub.pem"
    assert(helpers.sh(string.format("openssl x509 -in %s -pubkey -noout > %s", helpers.shquote(cert), helpers.shquote(pub))))
    assert.are.equal(pin, tls.pin_sha256(helpers.read_file(pub)))
    local none, err = tls.pin_sha256("not a certificate")
    assert.is_nil(none)
    assert.are.equal("tls.pin_sha256: no PEM certificate or public key in the text", err)
  end)

  describe("on the wire (http and ws alike)", function()
    local pki, other, hsrv, wsrv, wport
    setup(function()
      pki = servers.make_ca_cert(helpers.tmpdir("tls-ca"), "bmc.lab.test")
      other = servers.make_ca_cert(helpers.tmpdir("tls-ca2"), "bmc.lab.test") -- another CA, another key
      hsrv = servers.httpbin({ tls = { pki.cert, pki.key } })
      wport = helpers.free_port()
      wsrv = helpers.spawn(string.format("python3 %s %d --tls %s %s",
        helpers.shquote(helpers.source_dir .. "/tests/servers/ws_echo.py"), wport,
        helpers.shquote(pki.cert), helpers.shquote(pki.key)))
      assert(helpers.wait_port(wport, 10), "ws_echo.py did not start: " .. wsrv:output())
    end)
    teardown(function()
      if hsrv then hsrv:stop() end
      if wsrv then wsrv:stop() end
    end)

    -- {ok = true} or {code = ..., err = ...} for each client
    local function try(t)
      local r, err, code = http.get(hsrv.url("/status/200"), { tls = t, retries = false, timeout = 10 })
      local hres = r and { ok = r.status == 200 } or { code = code, err = err }
      local c, werr, wcode = ws.connect(string.format("wss://127.0.0.1:%d/x", wport), { tls = t, timeout = 10 })
      local wres
      if c then
        assert(c:send("hi"))
        wres = { ok = c:recv(5) == "hi" }
        c:close()
      else
        wres = { code = wcode, err = werr }
      end
      return hres, wres
    end

    local function both_ok(t)
      local h, w = try(t)
      assert.are.same({ ok = true }, h)
      assert.are.same({ ok = true }, w)
    end

    local function both_refuse(t, hmsg, wmsg)
      local h, w = try(t)
      assert.are.equal("tls", h.code, h.err)
      assert.matches(hmsg, h.err)
      assert.are.equal("tls", w.code, w.err)
      assert.matches(wmsg, w.err)
    end

    it("checks the host name with ca_file; server_name names the host the certificate is for", function()
      -- the CA is right but the certificate is for bmc.lab.test, not 127.0.0.1
      both_refuse({ ca_file = pki.ca }, "TLS certificate verification failed %(.*127%.0%.0%.1",
        "TLS certificate verification failed for 127%.0%.0%.1: IP address mismatch")
      both_ok({ ca_file = pki.ca, server_name = "bmc.lab.test" })
      both_refuse({ ca_file = pki.ca, server_name = "other.lab.test" }, "other%.lab%.test",
        "verification failed for 127%.0%.0%.1 %(as other%.lab%.test%): [Hh]ostname mismatch")
      -- another CA does not vouch for it, whatever the name
      both_refuse({ ca_file = other.ca, server_name = "bmc.lab.test" }, "TLS certificate verification failed",
        "TLS certificate verification failed")
    end)

    it("with a pin and no ca_file, the pin alone is trusted (no chain, no name)", function()
      both_ok({ pin_sha256 = pki.pin })
      both_ok({ pin_sha256 = crypto.hex(crypto.base64_decode(pki.pin)) }) -- the hex form on the wire
      both_refuse({ pin_sha256 = other.pin }, "does not match tls%.pin_sha256", "does not match the pinned SHA%-256")
    end)

    it("with a pin and ca_file, both must hold", function()
      both_ok({ ca_file = pki.ca, server_name = "bmc.lab.test", pin_sha256 = pki.pin })
      -- right CA and name, wrong pin
      both_refuse({ ca_file = pki.ca, server_name = "bmc.lab.test", pin_sha256 = other.pin },
        "does not match tls%.pin_sha256", "does not match the pinned SHA%-256")
      -- right pin, CA that did not sign the certificate
      both_refuse({ ca_file = other.ca, server_name = "bmc.lab.test", pin_sha256 = pki.pin },
        "TLS certificate verification failed", "TLS certificate verification failed")
      -- right pin and CA, wrong name: the name is checked too when ca_file is given
      both_refuse({ ca_file = pki.ca, pin_sha256 = pki.pin }, "TLS certificate verification failed",
        "IP address mismatch")
    end)

    it("keeps the URL's host in the Host header when server_name is given", function()
      local r = assert(http.get(hsrv.url("/echo"), { tls = { ca_file = pki.ca, server_name = "bmc.lab.test" } }))
      local seen = require("sbot.json").decode(r.body)
      assert.are.equal("127.0.0.1:" .. hsrv.port, seen.headers.host or seen.headers.Host)
      assert.are.equal(hsrv.url("/echo"), r.url)
    end)
  end)
end)
