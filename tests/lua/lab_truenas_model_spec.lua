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
    assert.are.equal("EACCES", err.data.errname)
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

  it("creates zvols within the pool's free space unless sparse", function()
    local pool = call("pool.query", { { { "name", "=", "tank" } }, { get = true } })
    assert.are.equal(100 * GiB, pool.free)
    local z = assert(call("pool.dataset.create", { { name = "tank/v1", type = "VOLUME", volsize = 60 * GiB } }))
    assert.are.equal("VOLUME", z.type)
    assert.are.equal(60 * GiB, z.volsize.parsed)
    assert.are.equal(40 * GiB, call("pool.query", { {}, { get = true } }).free)
    local _, err = call("pool.dataset.create", { { name = "tank/v2", type = "VOLUME", volsize = 60 * GiB } })
    assert.are.equal(-32602, err.code)
    assert.truthy(extra_of(err)["pool_dataset_create.volsize"])
    assert.truthy(call("pool.dataset.create", { { name = "tank/v2", type = "VOLUME", volsize = 60 * GiB, sparse = true } }))
    local _, dup = call("pool.dataset.create", { { name = "tank/v1", type = "VOLUME", volsize = GiB } })
    assert.matches("already exists", extra_of(dup)["pool_dataset_create.name"])
    local _, odd = call("pool.dataset.create", { { name = "tank/v3", type = "VOLUME", volsize = 1000 } })
    assert.matches("multiple of volume block size", extra_of(odd)["pool_dataset_create.volsize"])
    local list = call("pool.dataset.query", { { { "type", "=", "VOLUME" } } })
    assert.are.equal(2, #list)
    for _, e in ipairs(list) do assert.truthy(m.schemas:validate("pool_dataset.PoolDatasetEntry", e)) end
    assert.is_true(call("pool.dataset.delete", { "tank/v1" }))
    assert.are.equal(100 * GiB, call("pool.query", { {}, { get = true } }).free)
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

    local _, busy = call("pool.dataset.delete", { "tank/r630-01" })
    assert.are.equal("EBUSY", busy.data.errname)
    assert.is_true(call("iscsi.target.delete", { t.id, false, true }))
    assert.are.equal(0, #call("iscsi.targetextent.query"))
    assert.are.equal(0, #call("iscsi.extent.query"))
    assert.is_true(call("pool.dataset.delete", { "tank/r630-01" }))
    local _, nope = call("iscsi.target.delete", { t.id })
    assert.are.equal("ENOENT", nope.data.errname)
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
    assert.is_true(call("service.start", { "iscsitarget" }))
    assert.are.equal("RUNNING", call("service.query", { { { "service", "=", "iscsitarget" } }, { get = true } }).state)
    local _, err = call("service.start", { "nonexistent" })
    assert.are.equal("ENOENT", err.data.errname)
  end)
end)
