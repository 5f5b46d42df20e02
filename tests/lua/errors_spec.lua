-- docs/errors.md: one vocabulary. sbot.http and sbot.ws meet the same failures
-- (real peers on loopback that fail on purpose) and must name each with the
-- same word; misuse raises in both.
local http = require "sbot.http"
local ws = require "sbot.ws"
local helpers = require "helpers"
local servers = require "test_servers"

local ws_py = helpers.source_dir .. "/tests/servers/ws_echo.py"

local function start_ws(extra)
  local port = helpers.free_port()
  local h = helpers.spawn(string.format("python3 %s %d %s", helpers.shquote(ws_py), port, extra or ""))
  assert(helpers.wait_port(port, 10), "ws_echo.py did not start: " .. h:output())
  return h, port
end

-- the code of a failed http.get, a failed ws.connect, a failed recv after a command
local function http_code(url, opts)
  opts = opts or {}
  opts.retries = false
  local r, err, code = http.get(url, opts)
  assert.is_nil(r, url)
  assert.is_string(err)
  return code
end

local function ws_connect_code(url, opts)
  local c, err, code = ws.connect(url, opts or { timeout = 5 })
  assert.is_nil(c, url)
  assert.is_string(err)
  return code
end

local function ws_recv_code(url, command, opts)
  local c <close> = assert(ws.connect(url, opts or { timeout = 5 }))
  assert(c:send(command))
  local text, err, code = c:recv(5)
  assert.is_nil(text, command)
  assert.is_string(err)
  return code
end

describe("the error vocabulary", function()
  local hsrv, wsrv, wport, tls_dir
  setup(function()
    hsrv = servers.httpbin()
    wsrv, wport = start_ws()
  end)
  teardown(function()
    if hsrv then hsrv:stop() end
    if wsrv then wsrv:stop() end
  end)

  local function wsurl(port) return string.format("ws://127.0.0.1:%d/x", port or wport) end

  it("resolve: the host name does not resolve", function()
    assert.are.equal("resolve", http_code("http://no-such-host.invalid/"))
    assert.are.equal("resolve", ws_connect_code("ws://no-such-host.invalid/"))
  end)

  it("connect: nothing listens", function()
    local dead = helpers.free_port()
    assert.are.equal("connect", http_code(string.format("http://127.0.0.1:%d/", dead)))
    assert.are.equal("connect", ws_connect_code(wsurl(dead)))
  end)

  it("timeout: the peer does not answer in time", function()
    local bh = servers.start("blackhole.py", { "--mode", "silent" }, { wait_output = true })
    local http_c = http_code(bh.url("/"), { timeout = 0.3 })
    local ws_c = ws_connect_code(string.format("ws://127.0.0.1:%d/", bh.port), { timeout = 0.3 })
    bh:stop()
    assert.are.equal("timeout", http_c)
    assert.are.equal("timeout", ws_c)
    local c <close> = assert(ws.connect(wsurl(), { timeout = 5 }))
    assert(c:send("silence"))
    assert.are.equal("timeout", select(3, c:recv(0.2)))
  end)

  it("tls: the certificate is not trusted", function()
    tls_dir = helpers.tmpdir("errors-tls")
    local cert, key = servers.make_cert(tls_dir)
    local hs = servers.httpbin({ tls = { cert, key } })
    local port = helpers.free_port()
    local w = helpers.spawn(string.format("python3 %s %d --tls %s %s", helpers.shquote(ws_py), port,
      helpers.shquote(cert), helpers.shquote(key)))
    assert(helpers.wait_port(port, 10))
    local http_c = http_code(hs.url("/"))
    local ws_c = ws_connect_code(string.format("wss://127.0.0.1:%d/", port))
    hs:stop()
    w:stop()
    assert.are.equal("tls", http_c)
    assert.are.equal("tls", ws_c)
  end)

  it("closed: the server closes the connection", function()
    assert.are.equal("closed", http_code(hsrv.url("/break/close")))
    assert.are.equal("closed", http_code(hsrv.url("/break/truncate")))
    assert.are.equal("closed", ws_recv_code(wsurl(), "drop"))
    assert.are.equal("closed", ws_recv_code(wsurl(), "close")) -- with a close frame
  end)

  it("io: the connection breaks (reset)", function()
    assert.are.equal("io", http_code(hsrv.url("/break/reset")))
    assert.are.equal("io", ws_recv_code(wsurl(), "reset"))
  end)

  it("protocol: the server breaks the protocol", function()
    assert.are.equal("protocol", http_code(hsrv.url("/break/garbage")))
    assert.are.equal("protocol", ws_recv_code(wsurl(), "badutf8"))
    local bad, p = start_ws("--bad-accept")
    local c = ws_connect_code(wsurl(p))
    bad:stop()
    assert.are.equal("protocol", c)
  end)

  it("too_large: an answer over the configured limit", function()
    assert.are.equal("too_large", http_code(hsrv.url("/download/5000?id=e"), { max_body = 1000 }))
    assert.are.equal("too_large", ws_recv_code(wsurl(), "big:5000", { timeout = 5, max_message = 1000 }))
  end)

  it("an OS failure is its errno name; a refused upgrade is the device's HTTP status", function()
    local _, _, code = http.put(hsrv.url("/upload"), { body_file = "/nonexistent/file", retries = false })
    assert.are.equal("ENOENT", code)
    local refuse, p = start_ws("--refuse")
    local c = ws_connect_code(wsurl(p))
    refuse:stop()
    assert.are.equal(403, c)
  end)
end)

-- Every module's expected failures speak the documented words: an errno name
-- (E + capitals), a transport word of docs/errors.md's table, or one of the
-- other words that page names; never a module's own step name ("file",
-- "login", "listen", ...). Device ids are tested with their devices.
describe("the documented words", function()
  local words = {}
  do
    local f = assert(io.open(helpers.source_dir .. "/docs/errors.md"))
    local text = f:read("a")
    f:close()
    local transport = text:match("\n## Transport words.-\n(|.-)\n\n")
    for w in transport:gmatch("\n| `([%w_]+)` |") do words[w] = true end
    for w in text:gmatch("One more word stands beside them: %*%*`\"([%w_]+)\"`%*%*") do words[w] = true end
  end
  local function documented(code)
    return type(code) == "string" and (code:match("^E[A-Z0-9]+$") ~= nil or words[code] == true)
  end

  it("reads the transport words and the data word from docs/errors.md", function()
    for _, w in ipairs({ "resolve", "connect", "timeout", "tls", "closed", "io", "protocol", "too_large", "invalid" }) do
      assert.is_true(words[w], w)
    end
  end)

  it("sbot.crypto: file reads give the errno name, base64_decode a documented word", function()
    local crypto = require "sbot.crypto"
    local dir = helpers.tmpdir("vocab")
    for _, r in ipairs({
      { crypto.sha256_file(dir .. "/missing") },
      { crypto.md5_file(dir) },
      { crypto.hmac_sha256_file("k", dir .. "/missing") },
      { crypto.sha256_ranges(dir .. "/missing", { { 0, 1 } }):wait() },
      { crypto.base64_decode("Zm9v*") },
      { crypto.base64_decode("Zm9vY") },
    }) do
      assert.is_nil(r[1])
      assert.is_true(documented(r[3]), tostring(r[2]) .. ": code " .. tostring(r[3]))
    end
  end)

  it("sbot.iscsi: a portal that refuses or closes gives a transport word", function()
    local iscsi = require "sbot.iscsi"
    local r, err, code = iscsi.probe({ portal = "127.0.0.1:" .. helpers.free_port(), target = "iqn.x:y", timeout = 3 })
    assert.is_nil(r)
    assert.are.equal("connect", code, err)
    assert.is_true(documented(code))
  end)

  it("sbot.httpd: listen failures give the errno name or a transport word", function()
    local httpd = require "sbot.httpd"
    local a <close> = assert(httpd.listen({ handler = print }))
    for _, opts in ipairs({ { port = a:port() }, { host = "192.0.2.1" }, { tls = { cert = "x", key = "y" } } }) do
      opts.handler = print
      local srv, err, code = httpd.listen(opts)
      assert.is_nil(srv)
      assert.is_true(documented(code), tostring(err) .. ": code " .. tostring(code))
    end
  end)
end)
