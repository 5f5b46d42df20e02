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
    local other = text:match("\nMore words stand beside them.-\n(|.-)\n\n")
    for w in other:gmatch("\n| `([%w_]+)` |") do words[w] = true end
  end
  -- an errno name, a documented word, or (a device's answer without an id
  -- of its own) an HTTP status, an integer
  local function documented(code)
    if math.type(code) == "integer" then return code >= 100 and code <= 599 end
    return type(code) == "string" and (code:match("^E[A-Z0-9]+$") ~= nil or words[code] == true)
  end

  it("reads the transport words and the other words from docs/errors.md", function()
    for _, w in ipairs({ "resolve", "connect", "timeout", "tls", "closed", "io", "protocol", "too_large",
      "invalid", "not_found", "locked" }) do
      assert.is_true(words[w], w)
    end
    -- what the old codes were is not a word
    for _, w in ipairs({ "config", "foreign", "job_failed", "http_409" }) do assert.is_nil(words[w], w) end
  end)

  it("sbot.lock: a lock another process holds is locked; a failed call on the file its errno name", function()
    local lock = require "sbot.lock"
    local dir = helpers.tmpdir("vocab-lock")
    local path = dir .. "/x.lock"
    -- flock(1) holds the file's flock, as another sbot would
    local holder = helpers.spawn(string.format("flock %s -c %s", helpers.shquote(path),
      helpers.shquote("touch " .. helpers.shquote(dir .. "/held") .. "; exec sleep 30")))
    helpers.wait_for(function()
      local f = io.open(dir .. "/held")
      if f then f:close() end
      return f
    end, 10)
    local l, err, code = lock.acquire(path, { name = "vocab" })
    holder:stop()
    assert.is_nil(l)
    assert.are.equal("locked", code, err)
    assert.is_true(documented(code))
    l, err, code = lock.acquire(dir .. "/missing/x.lock")
    assert.is_nil(l)
    assert.are.equal("ENOENT", code, err)
    assert.is_true(documented(code))
  end)

  it("sbot.component: Module.new of a config that does not validate, for every component", function()
    local component = require "sbot.component"
    local M = component.define { name = "vocab_test", schema = { host = { type = "string", required = true } },
      discover = function() return {} end }
    local mods = { vocab_test = M }
    for _, name in ipairs({ "s3", "iscsi", "vault", "openshift", "r630" }) do
      mods[name] = require("sbot.component." .. name)
    end
    for name, mod in pairs(mods) do
      local c, err, code = mod.new({ no_such_key_anywhere = true })
      assert.is_nil(c, name)
      assert.matches("^component " .. name .. " config: ", err)
      assert.are.equal("invalid", code, name)
      assert.is_true(documented(code), name .. ": code " .. tostring(code))
    end
  end)

  describe("sbot.redfish against the DMTF-style mockup", function()
    local redfish = require "sbot.redfish"
    local mock, c
    setup(function()
      mock = servers.redfish_mockup()
      c = assert(redfish.connect({ host = mock.host, user = "admin", password = "mockup-pw",
        tls = { pin_sha256 = mock.pin }, retries = false }))
    end)
    teardown(function()
      if c then c:close() end
      if mock then mock.stop() end
    end)

    it("a device error with a MessageId gives the id; without one, the HTTP status", function()
      local r, err, code, status = c:get("/redfish/v1/Systems/no-such-node")
      assert.is_nil(r)
      assert.are.equal("ResourceMissingAtURI", code, err)
      assert.are.equal(404, status)
      r, err, code, status = c:get("/redfish/v1/Plain/409")
      assert.is_nil(r)
      assert.are.equal(409, code, err)
      assert.are.equal(409, status)
      assert.matches("^HTTP 409", err)
      assert.is_true(documented(code))
      local many = c:get_many({ "/redfish/v1/Plain/403" })
      assert.are.equal(403, many[1].code, many[1].error)
    end)

    it("a link to another host is refused with a documented word", function()
      local r, err, code = c:get("https://198.51.100.7/redfish/v1")
      assert.is_nil(r)
      assert.matches("refusing to follow", err)
      assert.are.equal("invalid", code)
      assert.is_true(documented(code))
    end)

    it("wait_job: a task that failed without a MessageId gives its TaskState; an unknown job id not_found", function()
      local r, err, code, doc = c:wait_job("/redfish/v1/TaskService/Tasks/7", { interval = 0.05, timeout = 5 })
      assert.is_nil(r)
      assert.are.equal(doc.TaskState, code, err) -- the device's own word, read from its answer
      assert.are.equal("Exception", code)
      assert.matches("^job 7 Exception: ", err)
      local none, nerr, ncode = c:wait_job("JID_000000000001", { interval = 0.05, timeout = 2 })
      assert.is_nil(none)
      assert.matches("JID_000000000001 is not in the job queue", nerr)
      assert.are.equal("not_found", ncode)
      assert.is_true(documented(ncode))
      -- the id of a task that is there is found by following links
      local found, _, fcode = c:wait_job("7", { interval = 0.05, timeout = 5 })
      assert.is_nil(found)
      assert.are.equal("Exception", fcode)
    end)
  end)

  it("sbot.crypto: file reads give the errno name, base64_decode a documented word", function()
    local crypto = require "sbot.crypto"
    local dir = helpers.tmpdir("vocab")
    -- each with the code the failure has: what the OS said (ENOENT, EISDIR), or invalid
    for _, r in ipairs({
      { "ENOENT", crypto.sha256_file(dir .. "/missing") },
      { "EISDIR", crypto.md5_file(dir) },
      { "ENOENT", crypto.hmac_sha256_file("k", dir .. "/missing") },
      { "ENOENT", crypto.sha256_ranges(dir .. "/missing", { { 0, 1 } }):wait() },
      { "invalid", crypto.base64_decode("Zm9v*") },
      { "invalid", crypto.base64_decode("Zm9vY") },
    }) do
      assert.is_nil(r[2])
      assert.are.equal(r[1], r[4], tostring(r[3]))
      assert.is_true(documented(r[4]), tostring(r[3]) .. ": code " .. tostring(r[4]))
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
