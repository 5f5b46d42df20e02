-- The TrueNAS lab device over the network: JSON-RPC 2.0 on WebSocket (with
-- sbot.ws), REST v2.0 (with curl), the drop fault, and real iSCSI through istgt.
local ws = require "sbot.ws"
local json = require "sbot.json"
local helpers = require "helpers"

local KEY = "1-Lab0123456789abcdef"
local MiB = 1024 * 1024

local function start_lab(args)
  local port = helpers.free_port()
  local cmd = string.format("%s run %s port=%d api_key=%s %s", helpers.shquote(helpers.sbot_bin),
    helpers.shquote(helpers.source_dir .. "/tests/servers/truenas_lab.lua"), port, KEY, args or "")
  local h = helpers.spawn(cmd)
  assert(helpers.wait_port(port, 15), "lab did not start: " .. h:output())
  return h, port
end

local function rpc_client(conn)
  local id = 0
  return function(method, params)
    id = id + 1
    assert(conn:send(json.encode { jsonrpc = "2.0", id = id, method = method, params = json.array(params or {}) }))
    local text = assert(conn:recv(10))
    local msg = assert(json.decode(text))
    assert.are.equal("2.0", msg.jsonrpc)
    assert.are.equal(id, msg.id)
    if msg.error then return nil, msg.error end
    return msg.result
  end
end

local function extra_of(err)
  local t = {}
  for _, e in ipairs(err.data.extra or {}) do t[e[1]] = e[2] end
  return t
end

local function curl(port, method, path, body, auth)
  local dir = helpers.tmpdir("curl")
  local cmd = string.format("curl -s -o %s/body -w '%%{http_code}' -X %s %s %s http://127.0.0.1:%d%s",
    dir, method, auth == false and "" or ("-H " .. helpers.shquote("Authorization: Bearer " .. (auth or KEY))),
    body and ("-H 'Content-Type: application/json' --data-binary " .. helpers.shquote(json.encode(body))) or "",
    port, path)
  local _, _, code = helpers.sh(cmd)
  local text = helpers.read_file(dir .. "/body")
  os.execute("rm -rf " .. helpers.shquote(dir))
  return tonumber(code), json.decode(text)
end

describe("TrueNAS lab device", function()
  local lab, port
  setup(function() lab, port = start_lab() end)
  teardown(function() lab:stop("INT") end)

  local function connect()
    return assert(ws.connect(string.format("ws://127.0.0.1:%d/api/current", port), { timeout = 5 }))
  end

  local function login(call)
    local r = assert(call("auth.login_ex", { { mechanism = "API_KEY_PLAIN", username = "root", api_key = KEY } }))
    assert.are.equal("SUCCESS", r.response_type)
  end

  it("fails calls before login like the real middleware", function()
    local c <close> = connect()
    local call = rpc_client(c)
    assert.are.equal("pong", call("core.ping"))
    local r, err = call("iscsi.target.query")
    assert.is_nil(r)
    assert.are.equal(-32001, err.code)
    assert.are.equal("ENOTAUTHENTICATED", err.data.errname)
    local bad = call("auth.login_ex", { { mechanism = "API_KEY_PLAIN", username = "root", api_key = "wrong" } })
    assert.are.equal("AUTH_ERR", bad.response_type)
    assert.is_nil((call("system.info")))
    login(call)
    assert.are.equal("25.10.0", call("system.info").version)
  end)

  it("rejects an unknown key and a bad type with the field path (JSON-RPC)", function()
    local c <close> = connect()
    local call = rpc_client(c)
    login(call)
    local _, err = call("iscsi.target.create", { { name = "node1", nmae = "typo" } })
    assert.are.equal(-32602, err.code)
    assert.are.equal("Invalid params", err.message)
    assert.are.equal("Extra inputs are not permitted", extra_of(err)["iscsi_target_create.nmae"])
    local _, err2 = call("pool.dataset.create", { { name = "tank/z", type = "VOLUME", volsize = "1G" } })
    assert.are.equal("Input should be a valid integer", extra_of(err2)["data.volsize"])
    assert.are.equal(0, #call("iscsi.target.query"))
  end)

  it("rejects an extent on a missing zvol", function()
    local c <close> = connect()
    local call = rpc_client(c)
    login(call)
    local _, err = call("iscsi.extent.create", { { name = "ghost", type = "DISK", disk = "zvol/tank/ghost" } })
    assert.are.equal(-32602, err.code)
    assert.matches("does not exist", extra_of(err)["iscsi_extent_create.disk"])
  end)

  it("runs a full create / query / delete cycle over WebSocket", function()
    local c <close> = connect()
    local call = rpc_client(c)
    login(call)
    local portal = assert(call("iscsi.portal.create", { { listen = { { ip = "127.0.0.1" } } } }))
    local zvol = assert(call("pool.dataset.create",
      { { name = "tank/r630-01", type = "VOLUME", volsize = 64 * MiB, sparse = true } }))
    assert.are.equal(64 * MiB, zvol.volsize.parsed)
    local target = assert(call("iscsi.target.create", { { name = "r630-01", groups = { { portal = portal.id } } } }))
    local extent = assert(call("iscsi.extent.create", { { name = "r630-01", disk = "zvol/tank/r630-01" } }))
    local map = assert(call("iscsi.targetextent.create", { { target = target.id, extent = extent.id } }))
    assert.are.equal(0, map.lunid)
    local global = call("iscsi.global.config")
    local got = call("iscsi.target.query", { { { "name", "=", "r630-01" } }, { get = true } })
    assert.are.equal(target.id, got.id)
    -- the lab's state endpoint shows the IQN a client would log in to
    local code, state = curl(port, "GET", "/lab/state", nil, false)
    assert.are.equal(200, code)
    assert.are.equal(global.basename .. ":r630-01", state.mappings[1].iqn)
    assert.are.equal("tank/r630-01", state.mappings[1].zvol)
    assert.is_true(call("iscsi.target.delete", { target.id, false, true }))
    assert.are.equal(0, #call("iscsi.extent.query"))
    assert.are.equal(0, #call("iscsi.targetextent.query"))
    assert.is_true(call("pool.dataset.delete", { "tank/r630-01", { recursive = false } }))
    assert.are.equal(0, #call("pool.dataset.query", { { { "type", "=", "VOLUME" } } }))
    assert.is_true(call("iscsi.portal.delete", { portal.id }))
  end)

  it("serves REST v2.0 with Bearer keys and 422 field errors", function()
    local code, body = curl(port, "GET", "/api/v2.0/iscsi/target", nil, false)
    assert.are.equal(401, code)
    code, body = curl(port, "POST", "/api/v2.0/iscsi/target", { name = "rest1", bogus = 1 })
    assert.are.equal(422, code)
    assert.are.equal("Extra inputs are not permitted", body["iscsi_target_create.bogus"][1].message)
    code, body = curl(port, "POST", "/api/v2.0/iscsi/target", { name = 7 })
    assert.are.equal(422, code)
    assert.truthy(body["iscsi_target_create.name"])
    local t
    code, t = curl(port, "POST", "/api/v2.0/iscsi/target", { name = "rest1" })
    assert.are.equal(200, code)
    code, body = curl(port, "GET", "/api/v2.0/iscsi/target?name=rest1")
    assert.are.equal(200, code)
    assert.are.equal(t.id, body[1].id)
    code, body = curl(port, "PUT", "/api/v2.0/iscsi/target/id/" .. t.id, { alias = "via-rest" })
    assert.are.equal("via-rest", body.alias)
    code, body = curl(port, "DELETE", "/api/v2.0/iscsi/target/id/" .. t.id, { force = true, delete_extents = true })
    assert.are.equal(200, code)
    assert.is_true(body)
    code = curl(port, "GET", "/api/v2.0/iscsi/target/id/" .. t.id)
    assert.are.equal(404, code)
    code, body = curl(port, "POST", "/api/v2.0/pool/dataset", { name = "tank/rz", type = "VOLUME", volsize = 16 * MiB })
    assert.are.equal(200, code)
    code, body = curl(port, "DELETE", "/api/v2.0/pool/dataset/id/tank%2Frz", { recursive = true, force = false })
    assert.are.equal(200, code)
  end)

  it("serves wss with a pinned self-signed certificate", function()
    local dir = helpers.tmpdir("tnas-tls")
    local h, p = start_lab("tls=" .. dir)
    local pin = helpers.read_file(dir .. "/pin")
    local c, err = ws.connect(string.format("wss://127.0.0.1:%d/api/current", p), { timeout = 5 })
    assert.is_nil(c)
    assert.matches("verif", err)
    local c2 = assert(ws.connect(string.format("wss://127.0.0.1:%d/api/current", p),
      { timeout = 5, tls = { pin_sha256 = pin } }))
    local call = rpc_client(c2)
    assert(call("auth.login_with_api_key", { KEY }))
    assert.are.equal("tank", call("pool.query", { {}, { get = true } }).name)
    c2:close()
    h:stop("INT")
  end)
end)

describe("TrueNAS lab drop fault", function()
  -- 400 pipelined pings at drop=0.2: replies missing must be the same set
  -- for the same seed, and their number within 4 standard deviations.
  local N, RATE = 400, 0.2
  local function dropped_ids(seed)
    local h, port = start_lab(string.format("seed=%d drop=%s", seed, RATE))
    local c <close> = assert(ws.connect(string.format("ws://127.0.0.1:%d/api/current", port), { timeout = 5 }))
    for i = 1, N do
      assert(c:send(json.encode { jsonrpc = "2.0", id = i, method = "core.ping", params = json.array() }))
    end
    local seen = {}
    while true do
      local text = c:recv(1.5)
      if not text then break end
      seen[json.decode(text).id] = true
    end
    local missing = {}
    for i = 1, N do if not seen[i] then missing[#missing + 1] = i end end
    local _, state = curl(port, "GET", "/lab/state", nil, false)
    h:stop("INT")
    return missing, state
  end

  it("drops replies at the configured rate, deterministically under a seed", function()
    local a, state = dropped_ids(7)
    local b = dropped_ids(7)
    local sd = math.sqrt(N * RATE * (1 - RATE))
    assert.is_true(math.abs(#a - N * RATE) <= 4 * sd, "dropped " .. #a .. " of " .. N)
    assert.are.same(a, b)
    assert.are.equal(#a, state.faults.dropped)
    local other = dropped_ids(8)
    assert.are_not.same(a, other)
  end)
end)

describe("TrueNAS lab with a real iSCSI target (istgt)", function()
  local lab, port, tgt_port, dir
  local iscsi = require "sbot.iscsi"
  local GOOD, OTHER = "iqn.2024-01.org.sbot:r630-01", "iqn.2024-01.org.sbot:r630-99"

  setup(function()
    assert(os.execute("command -v istgt >/dev/null || test -x /usr/sbin/istgt") == true,
      "istgt must be installed (vendor/bootstrap)")
    dir = helpers.tmpdir("istgt")
    tgt_port = assert(require("sbot.lab.istgt").free_port()) -- not an ephemeral port (see sbot.lab.istgt)
    lab, port = start_lab(string.format("tgt_port=%d tgt_dir=%s", tgt_port, dir))
  end)
  teardown(function()
    lab:stop("INT")
    -- safety net: never leave an istgt behind
    local f = io.open(dir .. "/istgt.pid")
    if f then
      local pid = tonumber(f:read("a"))
      f:close()
      if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    end
  end)

  local function probe(iqn, lun, initiator)
    return iscsi.probe { portal = "127.0.0.1:" .. tgt_port, target = iqn, lun = lun, initiator = initiator, timeout = 10 }
  end

  it("exports only while iscsitarget runs, at the mapped LUN, to the target's initiator group", function()
    local c <close> = assert(ws.connect(string.format("ws://127.0.0.1:%d/api/current", port), { timeout = 5 }))
    local call = rpc_client(c)
    assert(call("auth.login_with_api_key", { KEY }))
    local portal = assert(call("iscsi.portal.create", { { listen = { { ip = "127.0.0.1" } } } }))
    local ig = assert(call("iscsi.initiator.create", { { initiators = { GOOD } } }))
    assert(call("pool.dataset.create", { { name = "tank/node1", type = "VOLUME", volsize = 48 * MiB, sparse = true } }))
    local t = assert(call("iscsi.target.create", { { name = "node1", groups = { { portal = portal.id, initiator = ig.id } } } }))
    local e = assert(call("iscsi.extent.create", { { name = "node1", disk = "zvol/tank/node1" } }))
    local m = assert(call("iscsi.targetextent.create", { { target = t.id, extent = e.id, lunid = 0 } }))
    local iqn = call("iscsi.global.config").basename .. ":node1"

    -- the service is stopped: nothing answers
    local none, err, code = probe(iqn, 0, GOOD)
    assert.is_nil(none)
    assert.matches("cannot connect to the portal", err)
    assert.are.equal("connect", code)
    local _, state = curl(port, "GET", "/lab/state", nil, false)
    assert.is_false(state.exports.running)

    local jid = call("service.control", { "START", "iscsitarget", {} })
    assert.is_true(call("core.get_jobs", { { { "id", "=", jid } }, { get = true } }).result)
    local r = assert(probe(iqn, 0, GOOD))
    assert.are.equal(48 * MiB, r.capacity.bytes)
    assert.are.equal(512, r.capacity.block_size)
    assert.are.equal("TrueNAS", r.inquiry.vendor)
    assert.are.equal("iSCSI Disk", r.inquiry.product)

    -- an initiator outside the group: "Target not found", as TrueNAS answers
    local no, oerr, ocode = probe(iqn, 0, OTHER)
    assert.is_nil(no)
    assert.are.equal("TARGET_NOT_FOUND", ocode)
    assert.matches("[Nn]ot found", oerr)

    -- a wrong target name is the target's refusal, not a crash
    local none2, err2, code2 = probe(iqn .. "x", 0, GOOD)
    assert.is_nil(none2)
    assert.are.equal("TARGET_NOT_FOUND", code2)
    assert.matches("lun 0", err2)

    -- the same LUN number on the wire as in the mapping: LUN 1 is another zvol
    assert(call("pool.dataset.create", { { name = "tank/node1b", type = "VOLUME", volsize = 32 * MiB, sparse = true } }))
    local e2 = assert(call("iscsi.extent.create", { { name = "node1b", disk = "zvol/tank/node1b" } }))
    assert(call("iscsi.targetextent.create", { { target = t.id, extent = e2.id, lunid = 1 } }))
    assert.are.equal(32 * MiB, assert(probe(iqn, 1, GOOD)).capacity.bytes)
    assert.are.equal(48 * MiB, assert(probe(iqn, 0, GOOD)).capacity.bytes)

    -- deleting the zvol under LUN 0 takes its extent and mapping along
    assert.is_true(call("pool.dataset.delete", { "tank/node1" }))
    assert.are.equal(0, #call("iscsi.targetextent.query", { { { "id", "=", m.id } } }))
    assert.is_nil((probe(iqn, 0, GOOD)))
    -- LUN 1 alone: TrueNAS would show it; istgt cannot, and the lab says so
    local _, st2 = curl(port, "GET", "/lab/state", nil, false)
    assert.matches("LUN 0", st2.tgt.unexported[1].reason)

    -- stopped again: gone
    assert.is_true(call("service.control", { "STOP", "iscsitarget" }) ~= nil)
    assert.is_nil((probe(iqn, 1, GOOD)))

    -- nothing listening: a connect error naming the portal
    local dead = helpers.free_port()
    local none3, err3, code3 = iscsi.probe { portal = "127.0.0.1:" .. dead, target = iqn, lun = 1, timeout = 5 }
    assert.is_nil(none3)
    assert.are.equal("connect", code3)
    assert.matches("127.0.0.1:" .. dead, err3)
    assert.matches("cannot connect", err3)
  end)

  it("runs istgt under libfaketime, so that its whole-second sleeps are short", function()
    local _, st = curl(port, "GET", "/lab/state", nil, false)
    assert.are.equal("libfaketime x20", st.tgt.pace)
  end)
end)

describe("TrueNAS lab with istgt at its own pace (a login takes it a second)", function()
  local lab, port, tgt_port, dir
  local iscsi = require "sbot.iscsi"
  local GOOD = "iqn.2024-01.org.sbot:r630-01"
  setup(function()
    dir = helpers.tmpdir("istgt")
    tgt_port = helpers.free_port()
    lab, port = start_lab(string.format("tgt_port=%d tgt_dir=%s tgt_faketime=no", tgt_port, dir))
  end)
  teardown(function()
    lab:stop("INT")
    local f = io.open(dir .. "/istgt.pid")
    if f then
      local pid = tonumber(f:read("a"))
      f:close()
      if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    end
  end)
  local function probe(iqn, lun, initiator)
    return iscsi.probe { portal = "127.0.0.1:" .. tgt_port, target = iqn, lun = lun, initiator = initiator, timeout = 10 }
  end

  it("applies a configuration change without dropping a login in progress, as TrueNAS does", function()
    local c <close> = assert(ws.connect(string.format("ws://127.0.0.1:%d/api/current", port), { timeout = 5 }))
    local call = rpc_client(c)
    assert(call("auth.login_with_api_key", { KEY }))
    local portal = assert(call("iscsi.portal.query"))[1] or assert(call("iscsi.portal.create", { { listen = { { ip = "127.0.0.1" } } } }))
    local ig = assert(call("iscsi.initiator.create", { { initiators = { GOOD } } }))
    local function disk(name)
      assert(call("pool.dataset.create", { { name = "tank/" .. name, type = "VOLUME", volsize = 16 * MiB, sparse = true } }))
      local t = assert(call("iscsi.target.create", { { name = name, groups = { { portal = portal.id, initiator = ig.id } } } }))
      local e = assert(call("iscsi.extent.create", { { name = name, disk = "zvol/tank/" .. name } }))
      assert(call("iscsi.targetextent.create", { { target = t.id, extent = e.id, lunid = 0 } }))
      return call("iscsi.global.config").basename .. ":" .. name
    end
    local iqn = disk("live1")
    assert(call("service.control", { "START", "iscsitarget", {} }))
    local _, st = curl(port, "GET", "/lab/state", nil, false)
    local restarts = st.tgt.restarts
    -- a login in another process (istgt takes a second over each login)
    local script = helpers.tmpdir("login") .. "/login.lua"
    helpers.write_file(script, string.format([[
local r, err = require("sbot.iscsi").probe { portal = %q, target = %q, lun = 0, initiator = %q, timeout = 10 }
print(r and ("ok " .. r.capacity.bytes) or ("failed " .. err))
]], "127.0.0.1:" .. tgt_port, iqn, GOOD))
    local p = helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(script))
    local connected
    for _ = 1, 200 do
      local _, s = curl(port, "GET", "/lab/state", nil, false)
      if s.tgt.sessions > 0 then connected = true break end
      os.execute("sleep 0.01")
    end
    assert(connected, "the login did not reach istgt: " .. p:output())
    -- meanwhile another target is added: istgt restarts, after the login
    local iqn2 = disk("live2")
    local _, st2 = curl(port, "GET", "/lab/state", nil, false)
    assert.are.equal(restarts + 1, st2.tgt.restarts)
    for _ = 1, 100 do
      if not p:alive() then break end
      os.execute("sleep 0.05")
    end
    assert.matches("^ok " .. 16 * MiB, p:output())
    assert.are.equal(16 * MiB, assert(probe(iqn2, 0, GOOD)).capacity.bytes)
  end)
end)
