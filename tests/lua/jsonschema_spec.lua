-- sbot.jsonschema against the real TrueNAS 25.10 schemas (the subset the
-- repository ships with the lab: lua/sbot/lab/truenas-schemas-v25_10_0.json).
local jsonschema = require "sbot.jsonschema"
local json = require "sbot.json"
local helpers = require "helpers"

local schema_file = helpers.source_dir .. "/lua/sbot/lab/truenas-schemas-v25_10_0.json"

local function by_path(errs)
  local t = {}
  for _, e in ipairs(errs) do t[e.path] = e.message end
  return t
end

describe("sbot.jsonschema", function()
  local reg
  setup(function()
    reg = assert(jsonschema.load(schema_file))
  end)

  it("keeps the argument order of Args schemas", function()
    assert.are.same({ "id", "force", "delete_extents" },
      reg:property_names("iscsi_target.iSCSITargetDeleteArgs"))
    assert.are.same({ "id", "remove", "force" },
      reg:property_names("iscsi_extent.iSCSITargetExtentDeleteArgs"))
  end)

  it("accepts a valid target create and fills in the defaults", function()
    local args = assert(reg:validate_args("iscsi_target.iSCSITargetCreateArgs",
      json.decode('[{"name": "node1", "groups": [{"portal": 1}]}]')))
    assert.are.equal("node1", args[1].name)
    assert.are.equal("ISCSI", args[1].mode)
    assert.are.equal("NONE", args[1].groups[1].authmethod)
    assert.are.equal(json.null, args[1].groups[1].initiator)
    assert.is_true(json.is_array(args[1].auth_networks))
  end)

  it("rejects an unknown key with its field path", function()
    local args, errs = reg:validate_args("iscsi_target.iSCSITargetCreateArgs",
      json.decode('[{"name": "node1", "nmae": "x"}]'))
    assert.is_nil(args)
    assert.are.same({ ["iscsi_target_create.nmae"] = "Extra inputs are not permitted" }, by_path(errs))
  end)

  it("rejects wrong types, also inside lists, strictly", function()
    local _, errs = reg:validate_args("iscsi_target.iSCSITargetCreateArgs",
      json.decode('[{"name": 5, "groups": [{"portal": "1"}, {"portal": 1.5}]}]'))
    local e = by_path(errs)
    assert.are.equal("Input should be a valid string", e["iscsi_target_create.name"])
    assert.are.equal("Input should be a valid integer", e["iscsi_target_create.groups.0.portal"])
    assert.matches("fractional", e["iscsi_target_create.groups.1.portal"])
  end)

  it("checks enums, lengths and nullable unions", function()
    local long = string.rep("a", 121)
    local _, errs = reg:validate_args("iscsi_target.iSCSITargetCreateArgs", {
      { name = long, mode = "SCSI", alias = 7, iscsi_parameters = { QueuedCommands = 64 } } })
    local e = by_path(errs)
    assert.are.equal("String should have at most 120 characters", e["iscsi_target_create.name"])
    assert.are.equal("Input should be 'ISCSI', 'FC' or 'BOTH'", e["iscsi_target_create.mode"])
    assert.are.equal("Input should be 32 or 128", e["iscsi_target_create.iscsi_parameters.QueuedCommands"])
    assert.matches("string", e["iscsi_target_create.alias"])
    assert.truthy(reg:validate_args("iscsi_target.iSCSITargetCreateArgs",
      { { name = "x", alias = json.null } }))
    local _, e2 = reg:validate_args("iscsi_target.iSCSITargetCreateArgs", { { name = "" } })
    assert.are.equal("String should have at least 1 character", by_path(e2)["iscsi_target_create.name"])
  end)

  it("reports missing required fields and too many arguments", function()
    local _, errs = reg:validate_args("iscsi_target_to_extent.iSCSITargetToExtentCreateArgs", { { target = 1 } })
    assert.are.equal("Field required", by_path(errs)["iscsi_target_to_extent_create.extent"])
    local _, e2 = reg:validate_args("iscsi_target.iSCSITargetDeleteArgs", { 1, false, false, true })
    assert.matches("Too many arguments %(expected 3, found 4%)", e2[1].message)
    local _, e3 = reg:validate_args("iscsi_target.iSCSITargetDeleteArgs", {})
    assert.are.equal("Field required", by_path(e3)["id"])
  end)

  it("picks the union branch the value meant (zvol vs filesystem)", function()
    local ok = assert(reg:validate_args("pool_dataset.PoolDatasetCreateArgs",
      { { name = "tank/v1", type = "VOLUME", volsize = 1073741824, sparse = true } }))
    assert.are.equal("VOLUME", ok[1].type)
    local _, errs = reg:validate_args("pool_dataset.PoolDatasetCreateArgs",
      { { name = "tank/v1", type = "VOLUME" } })
    assert.are.same({ ["data.volsize"] = "Field required" }, by_path(errs))
    local _, e2 = reg:validate_args("pool_dataset.PoolDatasetCreateArgs",
      { { name = "tank/v1", type = "VOLUME", volsize = 1, volsze = 2 } })
    assert.are.same({ ["data.volsze"] = "Extra inputs are not permitted" }, by_path(e2))
  end)

  it("checks patterns and numeric bounds", function()
    local s = { type = "object", additionalProperties = false,
      properties = { n = { type = "integer", minimum = 1, maximum = 3 },
                     t = { type = "string", pattern = "^[-a-z0-9.:]+$" },
                     l = { type = "array", items = { type = "string" }, minItems = 1, maxItems = 2 } } }
    assert.truthy(jsonschema.validate(s, { n = 2, t = "iqn.x:y-1", l = { "a" } }))
    local _, errs = jsonschema.validate(s, { n = 4, t = "Bad_Name", l = { "a", "b", "c" } })
    local e = by_path(errs)
    assert.are.equal("Input should be less than or equal to 3", e.n)
    assert.are.equal("String should match pattern '^[-a-z0-9.:]+$'", e.t)
    assert.matches("at most 2 items", e.l)
    local _, e2 = jsonschema.validate(s, { n = 0, l = {} })
    assert.are.equal("Input should be greater than or equal to 1", by_path(e2).n)
    assert.matches("at least 1 item", by_path(e2).l)
    -- the pattern in the TrueNAS file (portal/initiator entries)
    assert.is_true(jsonschema.validate({ type = "string", pattern = ".*:.*" }, "a:b") == "a:b")
  end)

  it("follows a discriminator for oneOf", function()
    local s = { oneOf = { { ["$ref"] = "#/$defs/A" }, { ["$ref"] = "#/$defs/B" } },
      discriminator = { propertyName = "kind", mapping = { a = "#/$defs/A", b = "#/$defs/B" } },
      ["$defs"] = {
        A = { type = "object", additionalProperties = false, required = { "kind" },
              properties = { kind = { const = "a" }, x = { type = "integer" } } },
        B = { type = "object", additionalProperties = false, required = { "kind" },
              properties = { kind = { const = "b" }, y = { type = "string" } } } } }
    assert.truthy(jsonschema.validate(s, { kind = "b", y = "z" }))
    local _, errs = jsonschema.validate(s, { kind = "b", x = 1 })
    assert.are.same({ x = "Extra inputs are not permitted" }, by_path(errs))
    local _, e2 = jsonschema.validate(s, { kind = "c" })
    assert.matches("does not match any of the expected tags: 'a' or 'b'", e2[1].message)
  end)

  it("fails clearly on a missing file or schema name", function()
    local r, err = jsonschema.load("/nonexistent/schemas.json")
    assert.is_nil(r)
    assert.matches("/nonexistent/schemas.json", err)
    assert.has_error(function() reg:schema("nope.Nope") end)
  end)

  it("names the file and the fault of a schema file that is not JSON, once", function()
    local bad = helpers.tmpdir("jsonschema") .. "/bad.json"
    helpers.write_file(bad, '{"a": ')
    local r, err = jsonschema.load(bad)
    assert.is_nil(r)
    assert.matches("^jsonschema: " .. bad:gsub("%p", "%%%0") .. ": invalid JSON: ", err)
    assert.is_nil(err:find("invalid JSON: invalid JSON", 1, true), err)
  end)
end)
