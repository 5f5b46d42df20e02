-- The component lifecycle (sbot.component) with Lua-defined test components.
local component = require "sbot.component"
local json = require "sbot.json"
local helpers = require "helpers"

-- A component whose "device" is a Lua table, recording every call.
local function recorder(name, opts)
  opts = opts or {}
  local calls, device = {}, opts.device or {}
  local M = component.define {
    name = name,
    schema = { want = { type = "map", values = { type = "string" }, default = {} } },
    discover = function(self)
      calls[#calls + 1] = "discover"
      if opts.fail_discover then error("no route to host") end
      local copy = {}
      for k, v in pairs(device) do copy[k] = v end
      return { pairs = copy }
    end,
    plan = function(self)
      calls[#calls + 1] = "plan"
      local out, keys = {}, {}
      for k in pairs(self.config.want) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        if self.discovery.pairs[k] ~= self.config.want[k] then
          out[#out + 1] = { resource = k, action = self.discovery.pairs[k] and "update" or "create",
            before = self.discovery.pairs[k], after = self.config.want[k] }
        end
      end
      return out
    end,
    apply = function(self, c)
      calls[#calls + 1] = "apply " .. c.resource
      if c.resource == opts.fail_apply_on then error("refused " .. c.resource) end
      device[c.resource] = c.after
      return { wrote = c.resource }
    end,
    undo = function(self, c)
      calls[#calls + 1] = "undo " .. c.resource
      if c.resource == opts.fail_undo_on then error("cannot undo " .. c.resource) end
      device[c.resource] = c.before
    end,
    housekeep = function(self)
      calls[#calls + 1] = "housekeep"
      if opts.fail_housekeep then error("verification failed") end
      return { verified = true }
    end,
  }
  return M, calls, device
end

describe("sbot.component", function()
  it("runs discover, plan, apply (each change in order), housekeep in that order", function()
    local M, calls = recorder("order_test")
    local c = assert(M.new({ want = { a = "1", b = "2" } }, { id = "srv1" }))
    local r = c:execute()
    assert.are.equal("ok", r.status)
    assert.are.same({ "discover", "plan", "apply a", "apply b", "housekeep" }, calls)
    assert.are.equal("srv1", r.id)
    assert.are.equal("order_test", r.component)
    for _, p in ipairs { "discover", "process", "housekeep" } do
      assert.is_true(r.phases[p].ok, p)
      assert.is_string(r.phases[p].started)
      assert.is_number(r.phases[p].ms)
    end
    assert.are.equal(2, #r.processing.applied)
    assert.are.same({ wrote = "b" }, r.processing.applied[2].result)
    -- registered as a module
    assert.are.equal(M, require "sbot.component.order_test")
  end)

  it("skips process and housekeep after a discover error, recording it with a traceback", function()
    local M, calls = recorder("discover_fail", { fail_discover = true })
    local c = assert(M.new({ want = { a = "1" } }))
    local r = c:execute()
    assert.are.equal("failed", r.status)
    assert.are.same({ "discover" }, calls)
    assert.is_false(r.phases.discover.ok)
    assert.matches("no route to host", r.phases.discover.error)
    assert.matches("stack traceback", r.phases.discover.traceback)
    assert.is_true(r.phases.process.skipped)
    assert.is_true(r.phases.housekeep.skipped)
    assert.matches("^discover: .*no route to host", r.error)
    assert.is_nil(r.plan)
  end)

  it("undoes the changes already applied, in reverse, and records each undo", function()
    local M, calls, device = recorder("rollback", { fail_apply_on = "c", fail_undo_on = "a",
      device = { a = "old" } })
    local c = assert(M.new({ want = { a = "new", b = "2", c = "3", d = "4" } }))
    local r = c:execute()
    assert.are.equal("failed", r.status)
    assert.are.same({ "discover", "plan", "apply a", "apply b", "apply c", "undo b", "undo a" }, calls)
    assert.are.same({ "b", "a" }, { r.processing.undone[1].resource, r.processing.undone[2].resource })
    assert.is_true(r.processing.undone[1].ok)
    assert.is_false(r.processing.undone[2].ok)
    assert.matches("cannot undo a", r.processing.undone[2].error)
    assert.are.equal(3, r.processing.failed.index)
    assert.matches("refused c", r.processing.failed.error)
    assert.matches("change 3 of 4 (create c) failed", r.error, 1, true)
    assert.is_nil(device.b) -- undone
    assert.is_true(r.phases.housekeep.skipped)
  end)

  it("calls no apply function in plan mode, and skips housekeep", function()
    local M, calls, device = recorder("plan_only")
    local c = assert(M.new({ want = { a = "1", b = "2" } }))
    local r = c:execute { mode = "plan" }
    assert.are.equal("ok", r.status)
    assert.are.same({ "discover", "plan" }, calls)
    assert.are.equal(2, #r.plan)
    assert.are.equal(0, #r.processing.applied)
    assert.are.equal("plan mode", r.phases.housekeep.reason)
    assert.is_nil(next(device))
  end)

  it("plans zero changes and makes no write over converged state", function()
    local M, calls = recorder("converge")
    local c = assert(M.new({ want = { a = "1", b = "2" } }))
    assert.are.equal("ok", c:execute().status)
    for k in pairs(calls) do calls[k] = nil end
    local c2 = assert(M.new({ want = { a = "1", b = "2" } }))
    local r = c2:execute()
    assert.are.equal("ok", r.status)
    assert.are.equal(0, #r.plan)
    assert.are.same({ "discover", "plan", "housekeep" }, calls)
    assert.are.equal("[]", json.encode(r.plan))
  end)

  it("keeps c:plan() callable after c.plan holds the list", function()
    local M = recorder("callable_plan")
    local c = assert(M.new({ want = { a = "1" } }))
    assert.is_table(c:discover())
    local p = c:plan()
    assert.are.equal(1, #p)
    assert.are.equal(p, c.plan)
    assert.are.equal(1, #c:plan())
  end)

  it("returns results from execute, or raises with strict = true", function()
    local M = recorder("strict_test", { fail_housekeep = true })
    local c = assert(M.new({ want = { a = "1" } }, { id = "s9" }))
    local r = c:execute()
    assert.are.equal("failed", r.status)
    assert.has_error(function() c:execute { strict = true } end,
      "component strict_test (s9): housekeep: " .. r.phases.housekeep.error)
  end)

  it("runs only the phases asked for", function()
    local M, calls = recorder("some_phases")
    local c = assert(M.new({ want = { a = "1" } }))
    local r = c:execute { phases = { "discover" } }
    assert.are.equal("ok", r.status)
    assert.are.same({ "discover" }, calls)
    assert.is_nil(r.phases.process)
    assert.has_error(function() c:execute { phases = { "bogus" } } end,
      "execute: unknown phase 'bogus' (expected discover, process or housekeep)")
  end)

  it("validates config at new, naming the key path", function()
    local M = component.define {
      name = "schema_test",
      schema = {
        host = { type = "string", required = true, description = "BMC host" },
        mode = { type = "string", enum = { "uefi", "bios" }, default = "uefi" },
        nic = { type = "table", fields = {
          port = { type = "integer", default = 3260 },
          mac = { type = "string", pattern = "^%x%x:" },
        } },
        targets = { type = "list", items = { type = "table", fields = { name = { type = "string", required = true } } } },
      },
    }
    local c, err, code = M.new { host = 5, nic = { mac = "zz", extra = 1 }, targets = { { name = "a" }, {} },
      mode = "legacy", bogus = true }
    assert.is_nil(c)
    assert.are.equal("config", code)
    assert.matches("component schema_test config: bogus: unknown key", err, 1, true)
    assert.matches("host: expected string, got integer 5", err, 1, true)
    assert.matches("mode: expected one of uefi, bios, got legacy", err, 1, true)
    assert.matches("nic.extra: unknown key", err, 1, true)
    assert.matches('nic.mac: "zz" does not match pattern ^%x%x:', err, 1, true)
    assert.matches("targets[2].name: required string is missing", err, 1, true)
    local _, err2 = M.new {}
    assert.matches("host: required string is missing (BMC host)", err2, 1, true)
    local ok = assert(M.new { host = "idrac1", nic = {} })
    assert.are.equal("uefi", ok.config.mode)
    assert.are.equal(3260, ok.config.nic.port)
  end)

  it("rejects bad definitions", function()
    assert.has_error(function() component.define { name = "bad name" } end)
    assert.has_error(function() component.define { name = "x1", discovre = function() end } end,
      "component.define x1: unknown field 'discovre' (expected name, description, schema, discover, "
      .. "plan, apply, undo, housekeep)")
    assert.has_error(function() component.define { name = "x2", plan = function() end } end,
      "component.define x2: a component with plan needs apply")
    assert.has_error(function() component.define { name = "x3", schema = { a = { type = "strng" } } } end)
  end)

  it("records a bad plan as a process failure", function()
    local M = component.define { name = "bad_plan", plan = function() return { { resource = "r", action = "replace" } } end,
      apply = function() error("must not run") end }
    local r = assert(M.new()):execute()
    assert.are.equal("failed", r.status)
    assert.matches("plan: change 1: action must be create, update or delete, got replace", r.error, 1, true)
  end)

  it("serialises results to JSON, secrets redacted, artifacts with size and sha256", function()
    local secret = require "sbot.secret"
    local dir = helpers.tmpdir("lifecycle")
    local M = component.define { name = "json_test", schema = { pw = { type = "secret" } },
      discover = function(self) return { pw = self.config.pw, fine = "x" } end,
      housekeep = function(self)
        self:artifact { key = "out/report.txt", content = "hello" }
        return {}
      end }
    local c = assert(M.new({ pw = secret.new("hunter2-lifecycle") }, { id = "n1", artifact_dir = dir }))
    c:execute()
    local text = c:to_json()
    assert.is_nil(text:find("hunter2-lifecycle", 1, true))
    local back = assert(json.decode(text))
    assert.are.equal("<redacted>", back.discovery.pw)
    local a = back.artifacts[1]
    assert.are.equal("out/report.txt", a.key)
    assert.are.equal(5, a.size)
    assert.are.equal("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", a.sha256)
    assert.are.equal("hello", helpers.read_file(dir .. "/n1/json_test/out/report.txt"))
    assert.has_error(function() c:artifact { key = "../x", content = "" } end)
  end)
end)
