-- sbot.httpd: a real server process (tests/servers/httpd_demo.lua) driven by
-- curl and a small WebSocket client.
local helpers = require "helpers"
local json = require "sbot.json"
local httpd = require "sbot.httpd"

local function curl(args)
  local ok, code, out = helpers.sh("curl -sS --max-time 10 " .. args .. " 2>&1")
  return ok, code, out
end

describe("sbot.httpd", function()
  local dir, proc, ports
  setup(function()
    dir = helpers.tmpdir("httpd")
    proc = helpers.spawn(string.format("%s run %s/tests/servers/httpd_demo.lua %s",
      helpers.shquote(helpers.sbot_bin), helpers.shquote(helpers.source_dir), helpers.shquote(dir)))
    for _ = 1, 200 do
      local f = io.open(dir .. "/ports.json")
      if f then ports = json.decode(f:read("a")); f:close(); break end
      os.execute("sleep 0.05")
    end
    assert(ports, "demo server did not start: " .. proc:output())
  end)
  teardown(function() if proc then proc:stop() end end)

  it("hands the handler method, path, decoded query, raw query, lower-cased headers, body and remote", function()
    local ok, _, out = curl(string.format("-X PUT -H 'X-Thing: One' --data-binary 'some body' '%s/echo?a=1&b=x%%20y&b2'", ports.url))
    assert.is_true(ok, out)
    local req = assert(json.decode(out))
    assert.are.equal("PUT", req.method)
    assert.are.equal("/echo", req.path)
    assert.are.equal("1", req.query.a)
    assert.are.equal("x y", req.query.b)
    assert.are.equal("a=1&b=x%20y&b2", req.raw_query)
    assert.are.equal("One", req.headers["x-thing"])
    assert.are.equal("some body", req.body)
    assert.matches("^127%.0%.0%.1:%d+$", req.remote)
    local _, _, head = curl(string.format("-D - -o /dev/null '%s/echo'", ports.url))
    assert.matches("X%-Count: 7", head)
  end)

  it("answers 500 when the handler fails or returns nonsense, and keeps serving", function()
    local _, _, out = curl(string.format("-w '%%{http_code}' -o /dev/null '%s/error'", ports.url))
    assert.are.equal("500", out)
    _, _, out = curl(string.format("-w '%%{http_code}' -o /dev/null '%s/badstatus'", ports.url))
    assert.are.equal("500", out)
    _, _, out = curl(string.format("-w '%%{http_code}' -o /dev/null '%s/nothing'", ports.url))
    assert.are.equal("404", out)
    assert.matches("boom from the handler", proc:output())
    assert.matches("status %(1st result%) must be an integer", proc:output())
  end)

  it("closes the connection without an answer on httpd.reset()", function()
    local ok, code = curl(string.format("'%s/reset'", ports.url))
    assert.is_false(ok)
    assert.are.equal(52, code) -- CURLE_GOT_NOTHING
  end)

  it("refuses bodies over max_body with 413", function()
    local big = dir .. "/big"
    helpers.write_file(big, string.rep("x", 5000))
    local _, _, out = curl(string.format("-w '%%{http_code}' -o /dev/null --data-binary @%s '%s/echo'", big, ports.url))
    assert.are.equal("413", out)
  end)

  it("delays a response without holding up other requests", function()
    -- the slow request starts first and still finishes last
    local script = string.format(
      "(curl -s --max-time 10 '%s/slow?s=1.5' >/dev/null; echo slow >>%s/order) & sleep 0.2; " ..
      "curl -s --max-time 10 '%s/echo' >/dev/null; echo fast >>%s/order; wait",
      ports.url, dir, ports.url, dir)
    helpers.sh(script)
    assert.are.equal("fast\nslow\n", helpers.read_file(dir .. "/order"))
  end)

  it("serves TLS with the self-signed certificate and its pin", function()
    local ok, _, out = curl(string.format("--cacert %s/cert.pem '%s/echo'", dir, ports.tls_url))
    assert.is_true(ok, out)
    assert.are.equal(true, json.decode(out).tls)
    ok = curl(string.format("-k --pinnedpubkey 'sha256//%s' '%s/echo'", ports.pin, ports.tls_url))
    assert.is_true(ok)
    local _, code = curl(string.format("-k --pinnedpubkey 'sha256//%s' '%s/echo'",
      ports.pin:gsub("^.", function(c) return c == "A" and "B" or "A" end), ports.tls_url))
    assert.are.equal(90, code)
    local _, _, openssl_pin = helpers.sh(string.format(
      "openssl x509 -in %s/cert.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64", dir))
    assert.are.equal(ports.pin, (openssl_pin:gsub("%s+", "")))
  end)

  it("upgrades to WebSocket: coroutine style with ws:recv()", function()
    local ok, _, out = helpers.sh(string.format("python3 %s/tests/support/wsclient.py --expect 3 ws://127.0.0.1:%d/ws-echo one two",
      helpers.source_dir, ports.plain))
    assert.is_true(ok, out)
    assert.are.equal("HTTP/1.1 101 Switching Protocols\nhello /ws-echo\necho:one\necho:two\n", out)
  end)

  it("upgrades to WebSocket from a handler over TLS: callback style", function()
    local ok, _, out = helpers.sh(string.format("python3 %s/tests/support/wsclient.py --cafile %s/cert.pem --expect 3 wss://127.0.0.1:%d/ws-callback a b bye",
      helpers.source_dir, dir, ports.tls))
    assert.is_true(ok, out)
    assert.are.equal("HTTP/1.1 101 Switching Protocols\ncb1:a\ncb2:b\ncb3:bye\n", out)
    -- a plain request to a WebSocket route gets 400
    local _, _, code = curl(string.format("--cacert %s/cert.pem -w '%%{http_code}' -o /dev/null '%s/ws-callback'", dir, ports.tls_url))
    assert.are.equal("400", code)
  end)

  it("survives a WebSocket client that vanishes without a close frame", function()
    local ok, _, out = helpers.sh(string.format([[python3 -c '
import socket, base64, os
s = socket.create_connection(("127.0.0.1", %d), 5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /ws-echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
print(s.recv(200).split(b"\r\n")[0].decode())
s.close()
']], ports.plain))
    assert.is_true(ok, out)
    assert.matches("101", out)
    os.execute("sleep 0.2")
    local ok2, _, out2 = curl(string.format("'%s/echo'", ports.url))
    assert.is_true(ok2, out2)
    assert.are.equal("/echo", json.decode(out2).path)
  end)

  it("stops the loop when every server is closed from a handler, closing websockets with 1001", function()
    local client = helpers.spawn(string.format("python3 %s/tests/support/wsclient.py --expect 5 ws://127.0.0.1:%d/ws-echo hi",
      helpers.shquote(helpers.source_dir), ports.plain))
    for _ = 1, 100 do
      if client:output():match("echo:hi") then break end
      os.execute("sleep 0.05")
    end
    local ok = curl(string.format("'%s/quit'", ports.url))
    assert.is_true(ok)
    for _ = 1, 100 do
      if not proc:alive() then break end
      os.execute("sleep 0.05")
    end
    assert.is_false(proc:alive())
    assert.matches("all servers closed", proc:output())
    for _ = 1, 100 do
      if not client:alive() then break end
      os.execute("sleep 0.05")
    end
    assert.matches("echo:hi\nCLOSE 1001", client:output())
    client:stop()
    -- under the sanitizer build a leak or memory error shows up here
    assert.is_nil(proc:output():match("Sanitizer"), proc:output())
  end)
end)

describe("sbot.httpd in-process", function()
  it("raises on misuse and returns nil, message, errno name on a port in use", function()
    assert.has_error(function() httpd.listen({}) end, "httpd.listen: 'handler' must be a function, got nil")
    assert.has_error(function() httpd.listen({ handler = print, host = "localhost" }) end,
      "httpd.listen: host 'localhost' is not an IPv4 or IPv6 address")
    assert.has_error(function() httpd.selfsigned({ ips = { "not-an-ip" } }) end,
      "httpd.selfsigned: ips[1] is not a valid IP address")
    local a = assert(httpd.listen({ handler = function() return 204 end }))
    local b, err, code = httpd.listen({ handler = print, port = a:port() })
    assert.is_nil(b)
    assert.matches("cannot listen on 127.0.0.1 port " .. a:port(), err)
    assert.are.equal("EADDRINUSE", code)
    -- an address this host does not have (TEST-NET-1, RFC 5737)
    b, err, code = httpd.listen({ handler = print, host = "192.0.2.1" })
    assert.is_nil(b)
    assert.matches("cannot listen on 192.0.2.1 port 0: .*Cannot assign requested address", err)
    assert.are.equal("EADDRNOTAVAIL", code)
    -- a certificate the TLS library cannot use
    b, err, code = httpd.listen({ handler = print, tls = { cert = "not PEM", key = "not PEM" } })
    assert.is_nil(b)
    assert.matches("cannot listen on 127.0.0.1 port 0: .*TLS", err)
    assert.are.equal("tls", code)
    -- an IPv6 server names itself [addr]:port, as its URL does
    local v6 <close> = assert(httpd.listen({ host = "::1", handler = print }))
    assert.are.equal("httpd server ([::1]:" .. v6:port() .. ")", tostring(v6))
    assert.are.equal("http://[::1]:" .. v6:port(), v6:url())
    a:close()
    a:close() -- twice is fine
    assert.has_error(function() a:port() end, "httpd: the server is closed")
  end)

  it("a websocket closed by <close> inside its own function closes cleanly (no use after free)", function()
    local finished = false
    local srv = assert(httpd.listen({
      handler = function() return 404 end,
      websocket = function(ws)
        local c <close> = ws
        assert(ws:send("bye"))
        finished = true
      end,
    }))
    local client = helpers.spawn(string.format("python3 %s/tests/support/wsclient.py --expect 2 ws://127.0.0.1:%d/x",
      helpers.shquote(helpers.source_dir), srv:port()))
    for _ = 1, 400 do
      srv:step(0.02)
      if finished and not client:alive() then break end
    end
    srv:close()
    assert.is_true(finished)
    -- the client got the message and a normal close frame, not a dropped connection
    assert.are.equal("HTTP/1.1 101 Switching Protocols\nbye\nCLOSE 1000\n", client:output())
    client:stop()
  end)

  it("takes max_body = math.huge as no limit (it used to convert to 0: every body got 413)", function()
    local srv = assert(httpd.listen({ max_body = math.huge,
      handler = function(req) return 200, {}, "got " .. #req.body end }))
    local client = helpers.spawn(string.format("curl -sS --max-time 10 --data-binary hello http://127.0.0.1:%d/",
      srv:port()))
    for _ = 1, 400 do
      srv:step(0.02)
      if not client:alive() then break end
    end
    srv:close()
    assert.are.equal("got 5", client:output())
    assert.has_error(function() httpd.listen({ handler = print, max_body = 0 / 0 }) end,
      "httpd.listen: max_body and timeout must not be negative")
  end)

  it("streams a response body from a file (options.file, offset, length), HEAD included", function()
    local dir = helpers.tmpdir("httpdfile")
    local path = dir .. "/data"
    helpers.write_file(path, "0123456789abcdef")
    local srv = assert(httpd.listen({ handler = function(req)
      if req.path == "/whole" then return 200, { ["Content-Type"] = "application/x-test" }, nil, { file = path } end
      if req.path == "/part" then return 206, {}, nil, { file = path, offset = 3, length = 4 } end
      if req.path == "/empty" then return 200, {}, nil, { file = path, offset = 16 } end
      if req.path == "/past" then return 200, {}, nil, { file = path, offset = 10, length = 7 } end
      if req.path == "/missing" then return 200, {}, nil, { file = dir .. "/nope" } end
      if req.path == "/both" then return 200, {}, "body", { file = path } end
      return 200, {}, nil, { file = path, offset = -1 }
    end }))
    local function get(p, extra)
      local client = helpers.spawn(string.format("curl -sS --max-time 10 -w ' %%{http_code} %%{size_download}' %s http://127.0.0.1:%d%s",
        extra or "", srv:port(), p))
      for _ = 1, 400 do
        srv:step(0.02)
        if not client:alive() then break end
      end
      return client:output()
    end
    assert.are.equal("0123456789abcdef 200 16", get("/whole"))
    assert.are.equal("3456 206 4", get("/part"))
    assert.are.equal(" 200 0", get("/empty"))
    assert.matches("content%-length: 16", get("/whole", "-I"):lower())
    assert.matches(" 500 ", get("/past"))
    assert.matches(" 500 ", get("/missing"))
    assert.matches(" 500 ", get("/both"))
    assert.matches(" 500 ", get("/negative"))
    srv:close()
    os.execute("rm -rf " .. helpers.shquote(dir))
  end)

  it("makes certificates that differ each time", function()
    local c1, c2 = httpd.selfsigned(), httpd.selfsigned({ cn = "x", dns = { "y.example" }, days = 2 })
    assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE", c1.cert)
    assert.matches("^%-%-%-%-%-BEGIN PRIVATE KEY", c1.key)
    assert.are_not.equal(c1.pin_sha256, c2.pin_sha256)
    assert.are.equal(44, #c1.pin_sha256)
  end)
end)

describe("sbot.httpd WebSocket over TLS (libmicrohttpd's relay)", function()
  it("sends a large message in full TLS records, in a few poll rounds", function()
    -- libmicrohttpd 0.9.75 relays an upgraded TLS connection through 4-byte
    -- buffers: relayed, 200,000 bytes would be 50,000 records for the client
    -- to decrypt. The server sends on the TLS session itself, corked, so they
    -- leave as records of up to 16 KB (tests/support/tls_records.py counts
    -- the records on the wire).
    local cert = httpd.selfsigned { ips = { "127.0.0.1" } }
    local size = 200000
    local srv = assert(httpd.listen { host = "127.0.0.1", port = 0, tls = { cert = cert.cert, key = cert.key },
      handler = function() return 404 end,
      websocket = function(ws) ws:send(string.rep("x", size)) ws:recv() end })
    local dir = helpers.tmpdir("wsbig")
    local counter = helpers.spawn(string.format("python3 %s %d %s",
      helpers.shquote(helpers.source_dir .. "/tests/support/tls_records.py"), srv:port(),
      helpers.shquote(dir .. "/records")))
    local port = helpers.wait_for(function() return tonumber(counter:output():match("port (%d+)")) end, 10,
      "tls_records.py's port")
    helpers.write_file(dir .. "/client.lua", string.format([[
local c = assert(require("sbot.ws").connect(%q, { tls = { pin_sha256 = %q }, timeout = 20 }))
local m = assert(c:recv(20))
print("got " .. #m)
c:close()
]], "wss://127.0.0.1:" .. port .. "/", cert.pin_sha256))
    local p = helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(dir .. "/client.lua"))
    local rounds = 0
    while (p:alive() or counter:alive()) and rounds < 400 do
      httpd.poll(srv, 0.02)
      rounds = rounds + 1
    end
    local out = p:output()
    p:stop()
    counter:stop()
    srv:close()
    assert.matches("got " .. size, out)
    assert(rounds < 400, "the message took more than 400 poll rounds")
    local records, bytes = helpers.read_file(dir .. "/records"):match("records (%d+) bytes (%d+)")
    records, bytes = tonumber(records), tonumber(bytes)
    assert(bytes > size, "the server sent " .. bytes .. " bytes of records")
    -- 13 records of 16 KB carry the message; the handshake, the 101 answer,
    -- session tickets and the close add a few
    assert(records < 40, "the server sent " .. records .. " TLS records for a " .. size .. "-byte message")
  end)

  it("waits for a client that stops reading instead of spinning", function()
    -- 27 MiB to a client that reads nothing: the socket buffers fill, the
    -- session holds its 8 MiB backlog, and the last message waits in wslay.
    -- Waiting means waiting for room on the TCP socket; the socket pair the
    -- frames no longer go through is always writable, and selecting on it
    -- turned every poll round into a busy loop.
    local cert = httpd.selfsigned { ips = { "127.0.0.1" } }
    local big, sent = string.rep("x", 9 << 20), false
    local srv = assert(httpd.listen { host = "127.0.0.1", port = 0, tls = { cert = cert.cert, key = cert.key },
      handler = function() return 404 end,
      websocket = function(ws)
        for _ = 1, 3 do assert(ws:send(big)) end
        sent = true
        ws:recv()
      end })
    local script = helpers.tmpdir("wsstall") .. "/client.lua"
    helpers.write_file(script, string.format([[
local c = assert(require("sbot.ws").connect(%q, { tls = { pin_sha256 = %q }, timeout = 20 }))
os.execute("sleep 20")
]], "wss://127.0.0.1:" .. srv:port() .. "/", cert.pin_sha256))
    local p = helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(script))
    local t = httpd.now()
    while not sent and httpd.now() - t < 20 do httpd.poll(srv, 0.05) end
    t = httpd.now()
    while httpd.now() - t < 0.5 do httpd.poll(srv, 0.05) end -- the buffers fill up
    local rounds = 0
    t = httpd.now()
    while httpd.now() - t < 1 do
      httpd.poll(srv, 0.1)
      rounds = rounds + 1
    end
    p:stop()
    srv:close()
    assert(sent, "the websocket function did not get its messages queued")
    -- nothing to do: a round lasts its 0.1 s timeout (about 10 rounds)
    assert(rounds < 100, rounds .. " poll rounds in one second with nothing to do")
  end)
end)
