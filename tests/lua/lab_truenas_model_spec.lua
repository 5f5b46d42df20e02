-- The TrueNAS model called directly (no network): semantics and error shapes.
local truenas = require "sbot.lab.truenas"
local json = require "sbot.json"
local jsonschema = require "sbot.jsonschema"

local KEY = "1-labkeylabkeylabkey"
local GiB = 1024 ^ 3 // 1

local function extra_of(err)
  local t = {}
  for _, e in ipairs(err.data.extra or {}) do t[e[1]] = e[2] end
  return t
end

describe("sbot.lab.truenas model", function()
  local m, s
  before_each(function()
    m = assert(truenas.model { api_key = KEY, pool_size = 100 * GiB })
    s = m:session()
    local r = assert(m:dispatch("auth.login_ex",
      { { mechanism = "API_KEY_PLAIN", username = "root", api_key = KEY } }, s))
    assert.are.equal("SUCCESS", r.response_type)
  end)

  local function call(method, params)
    return m:dispatch(method, json.array(params or {}), s)
  end

  it("refuses calls before login, and bad keys", function()
    local anon = m:session()
    assert.are.equal("pong", m:dispatch("core.ping", {}, anon))
    local r, err = m:dispatch("pool.query", {}, anon)
    assert.is_nil(r)
    assert.are.equal(-32001, err.code)
    assert.are.equal("ENOTAUTHENTICATED", err.data.errname)
    assert.are.equal(207, err.data.error)
    assert.matches("Not authenticated", err.data.reason)
    local bad = m:dispatch("auth.login_ex", { { mechanism = "API_KEY_PLAIN", username = "root", api_key = "x" } }, anon)
    assert.are.equal("AUTH_ERR", bad.response_type)
    assert.is_false(m:dispatch("auth.login_with_api_key", { "nope" }, anon))
    assert.is_nil((m:dispatch("system.info", {}, anon)))
    assert.is_true(m:dispatch("auth.login_with_api_key", { KEY }, anon))
    assert.are.equal("25.10.0", m:dispatch("system.info", {}, anon).version)
  end)

  it("finds the schema file it ships with (no SBOT_TRUENAS_SCHEMAS) and every schema its methods name", function()
    local src = debug.getinfo(truenas.model, "S").source:sub(2)
    local file = src:match("^(.*)/[^/]*$") .. "/truenas-schemas-v25_10_0.json"
    local reg = assert(truenas.load_schemas(file))
    for name, method in pairs(truenas.methods) do
      if method.schema then assert.is_true(reg:has(method.schema), name .. ": " .. method.schema) end
    end
    local none, err = truenas.load_schemas("/nonexistent/schemas.json")
    assert.is_nil(none)
    assert.matches("/nonexistent/schemas.json", err)
    assert.matches("SBOT_TRUENAS_SCHEMAS", err)
  end)

  it("answers unknown methods with METHOD_NOT_FOUND", function()
    local _, err = call("iscsi.target.frobnicate", {})
    assert.are.equal(-32601, err.code)
  end)

  it("creates zvols under TrueNAS's rules: 80 % of the available space, sparse or not, unless force_size", function()
    local pool = call("pool.query", { { { "name", "=", "tank" } }, { get = true } })
    assert.are.equal(100 * GiB, pool.free)
    local z = assert(call("pool.dataset.create", { { name = "tank/v1", type = "VOLUME", volsize = 60 * GiB } }))
    assert.are.equal("VOLUME", z.type)
    assert.are.equal(60 * GiB, z.volsize.parsed)
    assert.is_nil(z.sparse) -- a zvol entry has no sparse key
    assert.are.equal(60 * GiB, z.refreservation.parsed)
    assert.are.equal(40 * GiB, call("pool.query", { {}, { get = true } }).free)
    -- 33 GiB > 80 % of 40 GiB: refused, thick or sparse
    for _, sparse in ipairs { false, true } do
      local _, err = call("pool.dataset.create", { { name = "tank/v2", type = "VOLUME", volsize = 33 * GiB, sparse = sparse } })
      assert.are.equal(-32602, err.code)
      assert.are.equal("It is not recommended to use more than 80% of your available space for VOLUME",
        extra_of(err)["pool_dataset_create.volsize"])
    end
    local v2 = assert(call("pool.dataset.create", { { name = "tank/v2", type = "VOLUME", volsize = 33 * GiB, sparse = true,
      force_size = true } }))
    assert.are.equal(0, v2.refreservation.parsed)
    assert.truthy(call("pool.dataset.create", { { name = "tank/v3", type = "VOLUME", volsize = 32 * GiB } }))
    -- forced past the rule, a reservation the pool cannot hold fails in ZFS
    local _, nospace = call("pool.dataset.create", { { name = "tank/v4", type = "VOLUME", volsize = 9 * GiB, force_size = true } })
    assert.are.equal(-32001, nospace.code)
    assert.matches("out of space", nospace.data.reason)
    local _, dup = call("pool.dataset.create", { { name = "tank/v1", type = "VOLUME", volsize = GiB } })
    assert.matches("already exists", extra_of(dup)["pool_dataset_create.name"])
    for _, force in ipairs { false, true } do
      local _, odd = call("pool.dataset.create", { { name = "tank/v5", type = "VOLUME", volsize = 1000, force_size = force } })
      assert.matches("multiple of volume block size", extra_of(odd)["pool_dataset_create.volsize"])
    end
    -- no invented 63-character device-path rule: ZFS's 255 is the only limit
    local long = "tank/" .. string.rep("z", 240)
    assert.truthy(call("pool.dataset.create", { { name = long, type = "VOLUME", volsize = 16384 } }))
    local _, toolong = call("pool.dataset.create", { { name = "tank/" .. string.rep("z", 260), type = "VOLUME", volsize = 16384 } })
    assert.matches("too long", extra_of(toolong)["pool_dataset_create.name"])
    local list = call("pool.dataset.query", { { { "type", "=", "VOLUME" } } })
    assert.are.equal(4, #list)
    for _, e in ipairs(list) do assert.truthy(m.schemas:validate("pool_dataset.PoolDatasetEntry", e)) end
    assert.are.equal("tank/v2", call("pool.dataset.get_instance", { "tank/v2" }).id)
    local _, nogi = call("pool.dataset.get_instance", { "tank/nope" })
    assert.are.equal(-32602, nogi.code)
    assert.are.equal("[ENOENT] None: Dataset tank/nope does not exist\n", nogi.data.reason)
    assert.is_true(call("pool.dataset.delete", { "tank/v1" }))
    assert.are.equal(68 * GiB - 16384, call("pool.query", { {}, { get = true } }).free)
    local _, gone = call("pool.dataset.query", { { { "id", "=", "tank/v1" } }, { get = true } })
    assert.are.equal("ENOENT", gone.data.errname)
  end)

  it("validates arguments against the schemas (unknown key, bad type)", function()
    local _, err = call("iscsi.target.create", { { name = "n1", bogus = true } })
    assert.are.equal(-32602, err.code)
    assert.are.equal("Extra inputs are not permitted", extra_of(err)["iscsi_target_create.bogus"])
    assert.matches("%[EINVAL%] iscsi_target_create.bogus: Extra inputs are not permitted", err.data.reason)
    local _, err2 = call("iscsi.target.create", { { name = 42 } })
    assert.are.equal("Input should be a valid string", extra_of(err2)["iscsi_target_create.name"])
  end)

  it("runs the iSCSI create/query/update/delete cycle with real semantics", function()
    local portal = assert(call("iscsi.portal.create", { { listen = { { ip = "0.0.0.0" } } } }))
    local ig = assert(call("iscsi.initiator.create", { { initiators = { "iqn.2024-01.lab:r630-01" } } }))
    local _, badname = call("iscsi.target.create", { { name = "Node_1" } })
    assert.matches("Lowercase alphanumeric", extra_of(badname)["iscsi_target_create.name"])
    local t = assert(call("iscsi.target.create",
      { { name = "r630-01", groups = { { portal = portal.id, initiator = ig.id } } } }))
    local _, dup = call("iscsi.target.create", { { name = "r630-01" } })
    assert.matches("already exists", extra_of(dup)["iscsi_target_create.name"])
    local _, noportal = call("iscsi.target.create", { { name = "x", groups = { { portal = 99 } } } })
    assert.truthy(extra_of(noportal)["iscsi_target_create.groups.0.portal"])

    local _, missing = call("iscsi.extent.create", { { name = "e1", type = "DISK", disk = "zvol/tank/nope" } })
    assert.matches("does not exist", extra_of(missing)["iscsi_extent_create.disk"])
    assert.truthy(call("pool.dataset.create", { { name = "tank/r630-01", type = "VOLUME", volsize = 8 * GiB, sparse = true } }))
    local e = assert(call("iscsi.extent.create", { { name = "r630-01", type = "DISK", disk = "zvol/tank/r630-01" } }))
    local _, dupe = call("iscsi.extent.create", { { name = "r630-01", disk = "zvol/tank/r630-01" } })
    assert.truthy(extra_of(dupe)["iscsi_extent_create.name"])
    local te = assert(call("iscsi.targetextent.create", { { target = t.id, extent = e.id } }))
    assert.are.equal(0, te.lunid)
    local _, twice = call("iscsi.targetextent.create", { { target = t.id, extent = e.id, lunid = 0 } })
    assert.truthy(extra_of(twice)["iscsi_target_to_extent_create.lunid"])

    for method, schema in pairs {
      ["iscsi.portal.query"] = "iscsi_portal.IscsiPortalEntry",
      ["iscsi.initiator.query"] = "iscsi_initiator.IscsiInitiatorEntry",
      ["iscsi.target.query"] = "iscsi_target.IscsiTargetEntry",
      ["iscsi.extent.query"] = "iscsi_extent.IscsiExtentEntry",
      ["iscsi.targetextent.query"] = "iscsi_target_to_extent.IscsiTargetToExtentEntry" } do
      local list = assert(call(method, {}))
      assert.are.equal(1, #list, method)
      local ok, errs = m.schemas:validate(schema, list[1])
      assert(ok, method .. ": " .. (errs and jsonschema.format(errs) or ""))
    end
    local got = call("iscsi.target.query", { { { "name", "=", "r630-01" } }, { get = true } })
    assert.are.equal(t.id, got.id)
    assert.are.equal("iqn.2005-10.org.freenas.ctl", call("iscsi.global.config").basename)

    local up = assert(call("iscsi.target.update", { t.id, { alias = "first" } }))
    assert.are.equal("first", up.alias)
    assert.are.equal("r630-01", up.name)

    local ext = call("iscsi.extent.get_instance", { e.id })
    assert.are.equal("zvol/tank/r630-01", ext.path)
    assert.are.equal("TrueNAS", ext.vendor)
    assert.are.equal("iSCSI Disk", ext.product_id)
    assert.matches("^%x+$", ext.serial)
    assert.are.equal(15, #ext.serial)

    assert.is_true(call("iscsi.target.delete", { t.id, false, true }))
    assert.are.equal(0, #call("iscsi.targetextent.query"))
    assert.are.equal(0, #call("iscsi.extent.query"))
    assert.is_true(call("pool.dataset.delete", { "tank/r630-01" }))
    -- "does not exist" is a validation error (-32602 EINVAL) with the reason [ENOENT]
    local _, nope = call("iscsi.target.delete", { t.id })
    assert.are.equal(-32602, nope.code)
    assert.are.equal("EINVAL", nope.data.errname)
    assert.are.equal(22, nope.data.error)
    assert.are.equal("[ENOENT] None: iSCSITarget " .. t.id .. " does not exist\n", nope.data.reason)
    assert.are.same({ "None", "iSCSITarget " .. t.id .. " does not exist", 2 }, nope.data.extra[1])
  end)

  it("filters and pages queries like TrueNAS", function()
    for i = 1, 5 do assert(call("iscsi.target.create", { { name = "t" .. i } })) end
    assert.are.equal(2, #call("iscsi.target.query", { { { "name", "in", { "t1", "t3" } } } }))
    assert.are.equal(4, #call("iscsi.target.query", { { { "name", "!=", "t1" } } }))
    assert.are.equal(5, call("iscsi.target.query", { {}, { count = true } }))
    local page = call("iscsi.target.query", { {}, { order_by = { "-name" }, limit = 2, offset = 1 } })
    assert.are.same({ "t4", "t3" }, { page[1].name, page[2].name })
    local _, bad = call("iscsi.target.query", { { { "name", "=~", "x" } } })
    assert.are.equal(-32602, bad.code)
    local _, badopt = call("iscsi.target.query", { {}, { gett = true } })
    assert.truthy(extra_of(badopt)["options.gett"])
  end)

  it("starts services", function()
    local svc = call("service.query", { { { "service", "=", "iscsitarget" } }, { get = true } })
    assert.are.equal("STOPPED", svc.state)
    assert.is_false(svc.enable)
    assert.is_true(call("service.start", { "iscsitarget" }))
    assert.are.equal("RUNNING", call("service.query", { { { "service", "=", "iscsitarget" } }, { get = true } }).state)
    local _, err = call("service.start", { "nonexistent" })
    assert.are.equal("ENOENT", err.data.errname)
    assert.are.equal(svc.id, call("service.update", { "iscsitarget", { enable = true } }))
    assert.is_true(call("service.query", { { { "service", "=", "iscsitarget" } }, { get = true } }).enable)
    local _, extra = call("service.update", { "iscsitarget", { enable = true, state = "RUNNING" } })
    assert.truthy(extra_of(extra)["service_update.state"])
  end)

  it("runs service.control as a job: an id (legacy_jobs), core.get_jobs, core.job_wait; the result after set_options", function()
    local jid = call("service.control", { "START", "iscsitarget", {} })
    assert.are.equal("integer", math.type(jid))
    local job = call("core.get_jobs", { { { "id", "=", jid } }, { get = true } })
    assert.are.equal("SUCCESS", job.state)
    assert.is_true(job.result)
    assert.are.equal("service.control", job.method)
    assert.are.equal(100, job.progress.percent)
    assert.are.equal("RUNNING", call("service.query", { { { "service", "=", "iscsitarget" } }, { get = true } }).state)
    -- core.job_wait is itself a job
    local wid = call("core.job_wait", { jid })
    assert.are_not.equal(jid, wid)
    assert.is_true(call("core.get_jobs", { { { "id", "=", wid } }, { get = true } }).result)
    local bad = call("service.control", { "START", "nonexistent" })
    local failed = call("core.get_jobs", { { { "id", "=", bad } }, { get = true } })
    assert.are.equal("FAILED", failed.state)
    assert.matches("nonexistent does not exist", failed.error)
    local _, verb = call("service.control", { "BOUNCE", "iscsitarget" })
    assert.are.equal(-32602, verb.code)

    assert.is_false(call("core.set_options", { { legacy_jobs = false, newer_option = 1 } }).legacy_jobs)
    assert.is_true(call("service.control", { "STOP", "iscsitarget" }))
    assert.are.equal("STOPPED", call("service.query", { { { "service", "=", "iscsitarget" } }, { get = true } }).state)
    assert.is_true(call("core.job_wait", { jid }))
    local _, ferr = call("service.control", { "START", "nonexistent" })
    assert.are.equal(-32001, ferr.code)
    assert.matches("nonexistent does not exist", ferr.data.reason)
    local _, nojob = call("core.job_wait", { 999 })
    assert.matches("Job with id 999 does not exist", nojob.data.reason)
    assert.is_true(call("core.get_methods", { "service" })["service.control"].job)
    assert.is_false(call("core.get_methods", { "service" })["service.query"].job)
  end)

  it("reports a start whose target cannot come up as TrueNAS does: false (silent), the service not running", function()
    -- the real target (istgt under --tgt) cannot start: TrueNAS checks a
    -- service's health after starting it and answers false, or a CallError
    -- with options.silent = false
    local tgt = { applied = 0, apply = function(self, cfg)
      self.applied = self.applied + 1
      if type(cfg) == "function" then cfg = cfg() end
      if cfg.running then return nil, "istgt on 127.0.0.1:1 did not come up: bind: Address already in use" end
      return true
    end }
    local tm = assert(truenas.model { api_key = KEY, pool_size = 100 * GiB, tgt = tgt })
    local ts = tm:session()
    assert(tm:dispatch("auth.login_with_api_key", { KEY }, ts))
    assert.is_false(tm:dispatch("core.set_options", { { legacy_jobs = false } }, ts).legacy_jobs)
    local function tcall(method, params) return tm:dispatch(method, json.array(params or {}), ts) end
    local function state() return tcall("service.query", { { { "service", "=", "iscsitarget" } }, { get = true } }).state end
    assert.is_false(tcall("service.control", { "START", "iscsitarget", {} }))
    assert.are.equal("STOPPED", state())
    local r, err = tcall("service.control", { "START", "iscsitarget", { silent = false } })
    assert.is_nil(r)
    assert.are.equal(-32001, err.code)
    assert.are.equal("EFAULT", err.data.errname)
    assert.matches("did not come up", err.data.reason)
    assert.are.equal("STOPPED", state())
    assert.is_false(tcall("service.start", { "iscsitarget" }))
    assert.are.equal("STOPPED", state())
    assert.is_false(tm:export_config().running)
    assert.matches("did not come up", tm:lab_state().tgt_errors[1])
  end)

  -- a mapped target: portal, initiator group, zvol, extent, mapping
  local function export_one(name, lunid, initiators)
    local portal = call("iscsi.portal.query", { { { "comment", "=", "p" } } })[1]
      or assert(call("iscsi.portal.create", { { listen = { { ip = "0.0.0.0" } }, comment = "p" } }))
    local ig = assert(call("iscsi.initiator.create", { { initiators = initiators } }))
    local t = assert(call("iscsi.target.create", { { name = name, groups = { { portal = portal.id, initiator = ig.id } } } }))
    assert(call("pool.dataset.create", { { name = "tank/" .. name, type = "VOLUME", volsize = GiB, sparse = true } }))
    local e = assert(call("iscsi.extent.create", { { name = name, disk = "zvol/tank/" .. name } }))
    assert(call("iscsi.targetextent.create", { { target = t.id, extent = e.id, lunid = lunid } }))
    return t, e
  end

  it("exports only while iscsitarget runs, at the LUN as given, to the initiators of the target's groups", function()
    local iqn = "iqn.2005-10.org.freenas.ctl:r630-01"
    export_one("r630-01", 3, { "iqn.2024-01.lab:r630-01" })
    assert.are.equal(0, #m:export_config().targets)
    local ok, why = m:visible(iqn, 3, "iqn.2024-01.lab:r630-01")
    assert.is_false(ok)
    assert.matches("not running", why)
    assert.is_true(call("service.start", { "iscsitarget" }))
    local cfg = m:export_config()
    assert.are.equal(1, #cfg.targets)
    assert.are.equal("r630-01", cfg.targets[1].name)
    assert.are.equal(3, cfg.targets[1].luns[1].lun)
    assert.are.same({ "iqn.2024-01.lab:r630-01" }, cfg.targets[1].groups[1].initiators)
    assert.is_true((m:visible(iqn, 3, "iqn.2024-01.lab:r630-01")))
    assert.matches("no LUN 4", select(2, m:visible(iqn, 4, "iqn.2024-01.lab:r630-01")))
    assert.matches("none of the target's groups", select(2, m:visible(iqn, 3, "iqn.2024-01.lab:other")))
    -- a target without groups shows nothing
    local bare = assert(call("iscsi.target.create", { { name = "bare" } }))
    assert(call("pool.dataset.create", { { name = "tank/bare", type = "VOLUME", volsize = GiB, sparse = true } }))
    local be = assert(call("iscsi.extent.create", { { name = "bare", disk = "zvol/tank/bare" } }))
    assert(call("iscsi.targetextent.create", { { target = bare.id, extent = be.id } }))
    assert.matches("none of the target's groups", select(2, m:visible("iqn.2005-10.org.freenas.ctl:bare", 0, "x")))
  end)

  it("maps an extent to one target only", function()
    local _, e = export_one("r630-01", 0, {})
    local other = assert(call("iscsi.target.create", { { name = "r630-02" } }))
    local _, err = call("iscsi.targetextent.create", { { target = other.id, extent = e.id } })
    assert.are.equal(-32602, err.code)
    assert.are.equal("Extent is already in use.", extra_of(err)["iscsi_target_to_extent_create.extent"])
    local _, range = call("iscsi.targetextent.create", { { target = other.id, extent = e.id, lunid = 16383 } })
    assert.truthy(extra_of(range)["iscsi_target_to_extent_create.lunid"])
  end)

  it("cascades a zvol delete: its extent, mappings and targets left without LUNs go too", function()
    local t1 = export_one("r630-01", 0, {})
    local t2 = export_one("r630-02", 0, {})
    -- t2 gets a second LUN on another zvol, so it keeps one after the cascade
    assert(call("pool.dataset.create", { { name = "tank/extra", type = "VOLUME", volsize = GiB, sparse = true } }))
    local ex = assert(call("iscsi.extent.create", { { name = "extra", disk = "zvol/tank/extra" } }))
    assert(call("iscsi.targetextent.create", { { target = t2.id, extent = ex.id, lunid = 1 } }))
    assert.is_true(call("pool.dataset.delete", { "tank/r630-01" }))
    assert.is_true(call("pool.dataset.delete", { "tank/r630-02" }))
    local names = {}
    for _, t in ipairs(call("iscsi.target.query")) do names[#names + 1] = t.name end
    assert.are.same({ "r630-02" }, names)
    assert.are.equal(1, #call("iscsi.extent.query"))
    assert.are.same({ { id = 3, target = t2.id, extent = ex.id, lunid = 1 } }, call("iscsi.targetextent.query"))
    local _, gone = call("iscsi.target.get_instance", { t1.id })
    assert.matches("does not exist", gone.data.reason)
  end)

  it("answers methods that need a login with ENOTAUTHENTICATED before login, never a rate limit", function()
    -- the middleware rate-limits only the methods callable without
    -- authentication (authorize_method_call); any other is refused at once
    local anon = m:session("127.0.0.4")
    for i = 1, 25 do
      local r, err = m:dispatch("pool.query", {}, anon)
      assert.is_nil(r)
      assert.are.equal("ENOTAUTHENTICATED", err.data.errname, "call " .. i)
    end
  end)

  it("limits calls before login to 20 per method per address per minute", function()
    local now = 1000
    local rl = assert(truenas.model { api_key = KEY, clock = function() return now end })
    local a = rl:session("127.0.0.2")
    for _ = 1, 20 do
      assert.are.equal("AUTH_ERR", rl:dispatch("auth.login_ex", { { mechanism = "API_KEY_PLAIN", username = "root", api_key = "x" } }, a).response_type)
    end
    local r, err = rl:dispatch("auth.login_ex", { { mechanism = "API_KEY_PLAIN", username = "root", api_key = KEY } }, a)
    assert.is_nil(r)
    assert.are.equal(-32001, err.code)
    assert.are.equal("EBUSY", err.data.errname)
    assert.matches("Rate Limit Exceeded", err.data.reason)
    -- per method and per address
    assert.is_true(rl:dispatch("auth.login_with_api_key", { KEY }, rl:session("127.0.0.2")))
    assert.are.equal("SUCCESS", rl:dispatch("auth.login_ex",
      { { mechanism = "API_KEY_PLAIN", username = "root", api_key = KEY } }, rl:session("127.0.0.3")).response_type)
    now = now + 60
    assert.are.equal("SUCCESS", rl:dispatch("auth.login_ex",
      { { mechanism = "API_KEY_PLAIN", username = "root", api_key = KEY } }, a).response_type)
  end)

  it("injects the zvol device race: an extent right after its zvol fails until /dev/zvol appears", function()
    local t = 0
    local mz = assert(truenas.model { api_key = KEY, now = function() return t end, scale = 1,
                                      fault = function(k) return k == "zvoldev" end })
    local sz = mz:session()
    mz:dispatch("auth.login_with_api_key", { KEY }, sz)
    assert(mz:dispatch("pool.dataset.create", { { name = "tank/z", type = "VOLUME", volsize = GiB } }, sz))
    local _, err = mz:dispatch("iscsi.extent.create", { { name = "z", disk = "zvol/tank/z" } }, sz)
    assert.are.equal("Device /dev/zvol/tank/z for volume tank/z does not exist",
      extra_of(err)["iscsi_extent_create.disk"])
    t = 0.6
    assert(mz:dispatch("iscsi.extent.create", { { name = "z", disk = "zvol/tank/z" } }, sz))
  end)

  it("counts write calls (what a second converged run must not make)", function()
    local before = m.writes
    call("iscsi.target.query")
    call("pool.dataset.query")
    assert.are.equal(before, m.writes)
    call("iscsi.target.create", { { name = "w" } })
    assert.are.equal(before + 1, m.writes)
  end)

  it("counts calls per method (every call the model answered, refused ones too)", function()
    local calls = m.calls
    call("iscsi.target.query")
    call("iscsi.target.query")
    call("iscsi.target.create", { { name = "bad_name" } })
    assert.are.equal(2, m.by_method["iscsi.target.query"])
    assert.are.equal(1, m.by_method["iscsi.target.create"])
    assert.are.equal(calls + 3, m.calls)
    assert.are.same(m.by_method, m:lab_state().by_method)
  end)

  it("keeps CHAP credentials (iscsi.auth) with the middleware's rules, and exports a target's users", function()
    -- the secret rules of plugins/iscsi_/auth.py, at the middleware's own attribute names
    local bad = {
      { { tag = 1, user = "u", secret = "short" }, "iscsi_auth_create.secret", "Secret must be between 12 and 16 characters." },
      { { tag = 1, user = "u", secret = "seventeen-chars-x" }, "iscsi_auth_create.secret", "Secret must be between 12 and 16 characters." },
      { { tag = 1, user = "u", secret = " twelve-chars" }, "iscsi_auth_create.secret", "Secret contains leading or trailing space." },
      { { tag = 1, user = "u", secret = "twelve#chars" }, "iscsi_auth_create.secret", "Secret contains invalid characters: #" },
      { { tag = 1, user = "u", secret = "twelve-chars", peersecret = "other-secret" }, "iscsi_auth_create.peersecret",
        "The peer user is required if you set a peer secret." },
      { { tag = 1, user = "u", secret = "twelve-chars", peeruser = "p" }, "iscsi_auth_create.peersecret",
        "The peer secret is required if you set a peer user." },
      { { tag = 1, user = "u", secret = "twelve-chars", peeruser = "p", peersecret = "twelve-chars" },
        "iscsi_auth_create.peersecret", "The peer secret cannot be the same as user secret." },
      -- the schema: unknown keys, missing fields
      { { tag = 1, user = "u", secret = "twelve-chars", comment = "x" }, "data.comment", "Extra inputs are not permitted" },
      { { user = "u", secret = "twelve-chars" }, "data.tag", "Field required" },
    }
    for _, b in ipairs(bad) do
      local r, err = call("iscsi.auth.create", { b[1] })
      assert.is_nil(r)
      assert.are.equal(-32602, err.code)
      assert.are.equal(b[3], extra_of(err)[b[2]], b[2])
      assert.is_nil(err.data.reason:find("twelve", 1, true), "a secret in the error: " .. err.data.reason)
    end
    local a = assert(call("iscsi.auth.create", { { tag = 7, user = "r630-01", secret = "first-secret-01" } }))
    assert.are.same({ id = a.id, tag = 7, user = "r630-01", secret = "first-secret-01", peeruser = "",
      peersecret = "", discovery_auth = "NONE" }, a)
    local ok, errs = m.schemas:validate("iscsi_auth.IscsiAuthEntry", call("iscsi.auth.get_instance", { a.id }))
    assert(ok, errs and jsonschema.format(errs))
    local _, nope = call("iscsi.auth.get_instance", { 99 })
    assert.matches("iSCSITargetAuthCredential 99 does not exist", nope.data.reason)

    -- a CHAP group needs a tag; CHAP_MUTUAL a tag whose first entry has a peer
    local p = assert(call("iscsi.portal.create", { { listen = { { ip = "127.0.0.1" } } } }))
    local _, notag = call("iscsi.target.create", { { name = "t0", groups = { { portal = p.id, authmethod = "CHAP" } } } })
    assert.are.equal("Authentication group is required for CHAP and CHAP Mutual", extra_of(notag)["iscsi_target_create.groups.0.auth"])
    local _, nomutual = call("iscsi.target.create", { { name = "t0",
      groups = { { portal = p.id, authmethod = "CHAP_MUTUAL", auth = 7 } } } })
    assert.are.equal("Authentication group 7 does not support CHAP Mutual", extra_of(nomutual)["iscsi_target_create.groups.0.auth"])
    local t = assert(call("iscsi.target.create", { { name = "t1", groups = { { portal = p.id, authmethod = "CHAP", auth = 7 } } } }))
    assert.truthy(call("pool.dataset.create", { { name = "tank/t1", type = "VOLUME", volsize = GiB, sparse = true } }))
    local e = assert(call("iscsi.extent.create", { { name = "t1", disk = "zvol/tank/t1" } }))
    assert(call("iscsi.targetextent.create", { { target = t.id, extent = e.id, lunid = 0 } }))
    assert(call("service.start", { "iscsitarget" }))

    -- exported with the tag's users; the model's visibility asks for them
    local iqn = "iqn.2005-10.org.freenas.ctl:t1"
    local x = m:export_config().targets[1]
    assert.are.same({ users = { { user = "r630-01", secret = "first-secret-01" } } }, x.auth)
    assert.is_true((m:visible(iqn, 0, "any", nil, { user = "r630-01", secret = "first-secret-01" })))
    local seen, why = m:visible(iqn, 0, "any", nil, nil)
    assert.is_false(seen)
    assert.matches("Authentication failure", why)
    assert.is_false((m:visible(iqn, 0, "any", nil, { user = "r630-01", secret = "wrong-secret-01" })))

    -- the last entry of a tag in use cannot go, nor leave the tag
    local _, inuse = call("iscsi.auth.delete", { a.id })
    assert.are.equal(-32001, inuse.code)
    assert.matches("Authorized access of %d+ is being used by following target%(s%): " .. t.id, inuse.data.reason)
    local _, retag = call("iscsi.auth.update", { a.id, { tag = 8 } })
    assert.matches("is being used by following target", extra_of(retag)["iscsi_auth_update.tag"])
    -- a new secret: exported at once
    assert(call("iscsi.auth.update", { a.id, { secret = "second-secret-2" } }))
    assert.are.equal("second-secret-2", m:export_config().targets[1].auth.users[1].secret)

    -- /lab/state never shows a secret
    local text = json.encode(m:lab_state())
    assert.is_nil(text:find("second-secret-2", 1, true))
    assert.are.equal("********", m:lab_state().iscsi.auths[1].secret)
    assert.are.same({ method = "CHAP", users = { "r630-01" } }, m:lab_state().exports.targets[1].auth)

    -- a group without CHAP: the tag is free again, and the entry can go
    assert(call("iscsi.target.update", { t.id, { groups = { { portal = p.id } } } }))
    assert.is_nil(m:export_config().targets[1].auth)
    assert.is_true(call("iscsi.auth.delete", { a.id }))
  end)
end)

