-- The site file `sbot lab --site-out` writes is a valid site (sbot.site.load
-- accepts it) and, with nothing but what it holds, the real clients reach every
-- lab device: sbot.http to each iDRAC (Redfish session, system, logout) and
-- sbot.ws to TrueNAS (JSON-RPC login with the API key, ping, pool).
local helpers = require "helpers"
local json = require "sbot.json"
local http = require "sbot.http"
local ws = require "sbot.ws"
local secret = require "sbot.secret"
local site_mod = require "sbot.site"

-- Start `sbot lab` writing its site file to <dir>/site.lua; returns the
-- process handle and the site path once the file is there.
local function start_lab(extra)
  local dir = helpers.tmpdir("labsite")
  local site_path = dir .. "/site.lua"
  local parts = { helpers.shquote(helpers.sbot_bin), "lab", "--dir", helpers.shquote(dir),
    "--site-out", helpers.shquote(site_path) }
  for _, a in ipairs(extra or {}) do parts[#parts + 1] = helpers.shquote(a) end
  local proc = helpers.spawn(table.concat(parts, " "))
  for _ = 1, 300 do
    -- lab.json is written after the site file: both are complete then
    if io.open(dir .. "/lab.json", "rb") then return proc, site_path, dir end
    if not proc:alive() then break end
    os.execute("sleep 0.05")
  end
  local out = proc:output()
  proc:stop()
  error("sbot lab did not write its site file: " .. out)
end

-- One JSON-RPC 2.0 call on a sbot.ws connection; returns result or nil, error.
local function rpc(conn)
  local id = 0
  return function(method, params)
    id = id + 1
    assert(conn:send(json.encode({ jsonrpc = "2.0", id = id, method = method, params = params or json.array {} })))
    while true do
      local text, err, code = conn:recv(10)
      if not text then return nil, "recv: " .. tostring(err), code end
      local msg = assert(json.decode(text))
      if msg.id == id then
        if msg.error then return nil, msg.error end
        return msg.result
      end
    end
  end
end

local function header(r, name)
  local v = r.headers[name]
  return type(v) == "table" and v[#v] or v
end

describe("sbot lab --site-out", function()
  local proc, site_path, site

  setup(function()
    proc, site_path = start_lab({ "--servers", "2", "--seed", "5", "--time-scale", "0.2" })
  end)
  teardown(function()
    if proc then proc:stop("INT") end -- by its PID (and its process group)
  end)

  it("writes a 0600 site file that sbot.site.load accepts, with secrets as secret objects", function()
    local ok, _, mode = helpers.sh("stat -c %a " .. helpers.shquote(site_path))
    assert.is_true(ok)
    assert.are.equal("600", (mode:gsub("%s+", "")))
    local err, code
    site, err, code = site_mod.load(site_path)
    assert.is_truthy(site, tostring(err) .. " (" .. tostring(code) .. ")")
    assert.are.equal(2, #site.servers)
    for _, s in ipairs(site.servers) do
      assert.matches("^127%.0%.0%.1:%d+$", s.idrac.host)
      assert.is_true(secret.is_secret(s.idrac.password))
      assert.are.equal(44, #s.idrac.tls.pin_sha256)
    end
    assert.matches("^wss://127%.0%.0%.1:%d+/api/current$", site.truenas.url)
    assert.is_true(secret.is_secret(site.truenas.api_key))
    assert.are.equal("tank", site.truenas.pool)
    -- without --tgt the portal is the model's iSCSI listen port on the lab host
    assert.are.equal("127.0.0.1:3260", site.truenas.portal)
    -- the revealed values appear nowhere the site is shown
    local shown = json.encode(site, { secrets = "redact" }) .. require("sbot.pretty").format(site)
    assert.is_nil(shown:find(site.truenas.api_key:reveal(), 1, true))
    assert.is_nil(shown:find(site.servers[1].idrac.password:reveal(), 1, true))
  end)

  it("reaches each iDRAC with sbot.http using only the site's host, user, password and tls", function()
    assert.is_truthy(site, "site not loaded")
    for _, s in ipairs(site.servers) do
      local base = "https://" .. s.idrac.host
      local opts = { tls = s.idrac.tls, timeout = 10 }
      local r = assert(http.post(base .. "/redfish/v1/Sessions", {
        tls = opts.tls, timeout = opts.timeout, headers = { ["Content-Type"] = "application/json" },
        body = json.encode({ UserName = s.idrac.user, Password = s.idrac.password:reveal() }) }))
      assert.are.equal(201, r.status, r.body)
      local token, session = header(r, "x-auth-token"), header(r, "location")
      assert.is_truthy(token)
      assert.matches("^/redfish/v1/Sessions/", session)
      local auth = { ["X-Auth-Token"] = secret.new(token, "session token") }
      -- follow the links to the system, as a client must
      local systems = assert(http.get(base .. "/redfish/v1/Systems", { tls = opts.tls, headers = auth }))
      assert.are.equal(200, systems.status, systems.body)
      local sys_path = json.decode(systems.body).Members[1]["@odata.id"]
      local sys = assert(http.get(base .. sys_path, { tls = opts.tls, headers = auth }))
      assert.are.equal(200, sys.status, sys.body)
      assert.are.equal("PowerEdge R630", json.decode(sys.body).Model)
      local d = assert(http.delete(base .. session, { tls = opts.tls, headers = auth }))
      assert.are.equal(200, d.status, d.body)
      -- the token is gone with the session
      local after = assert(http.get(base .. sys_path, { tls = opts.tls, headers = auth }))
      assert.are.equal(401, after.status)
    end
  end)

  it("fails with the tls code when the pin is left out (verification stays on)", function()
    assert.is_truthy(site, "site not loaded")
    local s = site.servers[1]
    local r, err, code = http.get("https://" .. s.idrac.host .. "/redfish/v1", { timeout = 10, retries = false })
    assert.is_nil(r)
    assert.are.equal("tls", code, err)
    -- another server's pin is refused too
    r, err, code = http.get("https://" .. s.idrac.host .. "/redfish/v1",
      { timeout = 10, retries = false, tls = site.servers[2].idrac.tls })
    assert.is_nil(r)
    assert.are.equal("tls", code, err)
    assert.matches("does not match tls.pin_sha256", err, 1, true)
    local c, werr, wcode = ws.connect(site.truenas.url, { timeout = 10 })
    assert.is_nil(c)
    assert.are.equal("tls", wcode, werr)
  end)

  it("reaches TrueNAS with sbot.ws using only the site's url, tls, user and api_key", function()
    assert.is_truthy(site, "site not loaded")
    local tn = site.truenas
    local conn <close> = assert(ws.connect(tn.url, { tls = tn.tls, timeout = 10 }))
    local call = rpc(conn)
    -- before login the middleware refuses with a JSON-RPC call error, not a
    -- transport failure (rpc() gives a string for those). The errname is not
    -- checked: the real middleware says ENOTAUTHENTICATED (errno 207), the lab
    -- EACCES (13) -- a lab difference reported to the lab's owner.
    local before, berr = call("pool.query")
    assert.is_nil(before)
    assert.is_table(berr, tostring(berr))
    assert.are.equal(-32001, berr.code)
    assert.are.equal("Method call error", berr.message)
    assert.matches("^%[E[%u]+%] Not authenticated$", berr.data.reason)
    local login = assert(call("auth.login_ex",
      { { mechanism = "API_KEY_PLAIN", username = tn.user, api_key = tn.api_key:reveal() } }))
    assert.are.equal("SUCCESS", login.response_type)
    assert.are.equal("pong", assert(call("core.ping")))
    local pools = assert(call("pool.query"))
    local names = {}
    for _, p in ipairs(pools) do names[#names + 1] = p.name end
    assert.are.same({ tn.pool }, names)
    local global = assert(call("iscsi.global.config"))
    assert.are.equal(tn.basename, global.basename)
    assert.are.equal(tonumber(tn.portal:match(":(%d+)$")), global.listen_port)
  end)
end)

describe("sbot lab --tgt --site-out", function()
  it("names the portal of the lab's istgt, where nothing listens before the iscsitarget service runs", function()
    local proc, site_path = start_lab({ "--servers", "1", "--tgt" })
    local ok, site, err = pcall(site_mod.load, site_path)
    if ok and site then
      local port = tonumber(site.truenas.portal:match("^127%.0%.0%.1:(%d+)$"))
      assert.is_truthy(port, site.truenas.portal)
      assert.are_not.equal(3260, port)
      -- as on TrueNAS: no listener until something is exported (lab_truenas_boot_spec logs in there)
      assert.is_false(helpers.wait_port(port, 1))
    end
    proc:stop("INT")
    assert.is_true(ok, tostring(site))
    assert.is_truthy(site, tostring(err))
  end)
end)
