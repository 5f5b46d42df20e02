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
    assert.are.equal("invalid", code)
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
      "component.define x1: unknown field 'discovre' (expected name, description, schema, open, discover, "
      .. "plan, apply, undo, housekeep, hooks)")
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

  it("records a rollback step as failed when the component defines no undo", function()
    local applied = {}
    local M = component.define { name = "no_undo",
      plan = function() return { { resource = "a", action = "create" }, { resource = "b", action = "create" } } end,
      apply = function(_, c)
        if c.resource == "b" then error("refused b") end
        applied[#applied + 1] = c.resource
      end }
    local r = assert(M.new()):execute()
    assert.are.equal("failed", r.status)
    assert.are.same({ "a" }, applied)
    assert.are.equal(1, #r.processing.undone)
    assert.are.same({ index = 1, resource = "a", action = "create", ok = false,
      error = "the component defines no undo" }, r.processing.undone[1])
    assert.matches("change 2 of 2 %(create b%) failed: .*refused b; 1 applied change%(s%) undone", r.error)
  end)

  it("to_json redacts values before encoding them, and never a key", function()
    require("sbot.log").add_secret('q"uote\\Zk7')
    require("sbot.log").add_secret("phases")
    local M = component.define { name = "json_escape",
      discover = function() return { said = 'the device said q"uote\\Zk7', list = json.array { 'q"uote\\Zk7' } } end }
    local c = assert(M.new())
    c:execute()
    local text = c:to_json()
    assert.is_nil(text:find("Zk7", 1, true), text)
    local back = assert(json.decode(text))
    assert.are.equal("the device said <redacted>", back.discovery.said)
    assert.are.same({ "<redacted>" }, back.discovery.list)
    assert.is_table(back.phases) -- the key "phases" is a secret here, and stays a key
    assert.is_true(back.phases.discover.ok)
  end)

  it("to_json encodes with the options it was given, secrets always redacted", function()
    local M = component.define { name = "json_opts",
      discover = function() return { pw = require("sbot.log").secret("to-json-secret", "test") } end }
    local c = assert(M.new())
    c:execute()
    -- what the encode collaborator (sbot.json.encode, handed over by
    -- sbot.component) is asked to do
    local lifecycle, got = require "sbot.lifecycle", {}
    local function wire(encode)
      lifecycle.configure { validate = require("sbot.schema").validate, check = require("sbot.schema").check,
        record_artifact = require("sbot.artifact").record, encode = encode }
    end
    wire(function(v, o) got[#got + 1] = o; return json.encode(v, o) end)
    local ok, text = pcall(c.to_json, c)
    local ok2, indented = pcall(c.to_json, c, { indent = true })
    wire(json.encode)
    assert(ok, text)
    assert(ok2, indented)
    -- not the component's module (once passed as the options by mistake)
    assert.are.same({ { secrets = "redact" }, { indent = true, secrets = "redact" } }, got)
    assert.are.equal("<redacted>", json.decode(text).discovery.pw)
    assert.is_nil(text:find("\n", 1, true))
    assert.truthy(indented:find("\n  ", 1, true))
    assert.has_error(function() c:to_json { secrets = "reveal" } end,
      "to_json: unknown option 'secrets' (expected indent): results are records, their secrets are always redacted")
  end)

  it("keeps a discovery table in the results of a failed component", function()
    local M = component.define { name = "fails_early", discover = function() error("unreachable") end }
    local r = assert(M.new()):execute()
    assert.are.equal("failed", r.status)
    assert.are.same({}, r.discovery)
    assert.are.equal("{}", json.encode(r.discovery))
  end)
end)

-- A resource that records what happens to it in a shared log.
local function resource_log()
  local log = {}
  local function new_resource(kind)
    local res = { kind = kind, closed = 0 }
    if kind == "method" then
      function res:close()
        self.closed = self.closed + 1
        log[#log + 1] = "close"
        return true
      end
    elseif kind == "metamethod" then
      setmetatable(res, { __close = function(r)
        r.closed = r.closed + 1
        log[#log + 1] = "__close"
      end })
    elseif kind == "failing" then
      function res:close() log[#log + 1] = "close"; return nil, "DELETE /session: 503" end
    end
    return res
  end
  return log, new_resource
end

describe("sbot.component resources (open / close)", function()
  local function define(name, opts)
    opts = opts or {}
    local log, new_resource = resource_log()
    local seen = {}
    local M = component.define {
      name = name,
      open = function(self)
        log[#log + 1] = "open"
        if opts.open_error then return nil, opts.open_error end
        if opts.open_raises then error(opts.open_raises) end
        return new_resource(opts.kind or "method")
      end,
      discover = not opts.no_discover and function(self, res)
        log[#log + 1] = "discover"
        seen.discover = res
        assert(self.resource == res, "self.resource is the resource")
        if opts.interrupt_in == "discover" then error("interrupted!") end
        if opts.fail_in == "discover" then error("discover broke") end
        return { have = "x" }
      end or nil,
      plan = function(self, res)
        log[#log + 1] = "plan"
        seen.plan = res
        return { { resource = "r1", action = "create", after = 1 }, { resource = "r2", action = "create" } }
      end,
      apply = function(self, change, res)
        log[#log + 1] = "apply " .. change.resource
        seen["apply " .. change.resource] = res
        if opts.interrupt_in == "apply" then error("interrupted!") end
        if opts.fail_in == "apply" and change.resource == "r2" then error("apply broke") end
      end,
      undo = function(self, change, res)
        log[#log + 1] = "undo " .. change.resource
        seen["undo " .. change.resource] = res
      end,
      housekeep = function(self, res)
        log[#log + 1] = "housekeep"
        seen.housekeep = res
        return {}
      end,
    }
    return M, log, seen
  end

  it("opens once, before the first phase, passes the resource last to every phase, closes after the last", function()
    local M, log, seen = define("res_ok")
    local c = assert(M.new())
    local r = c:execute()
    assert.are.equal("ok", r.status)
    assert.are.same({ "open", "discover", "plan", "apply r1", "apply r2", "housekeep", "close" }, log)
    assert.is_table(seen.discover)
    for _, k in ipairs { "plan", "apply r1", "apply r2", "housekeep" } do
      assert.are.equal(seen.discover, seen[k], k)
    end
    assert.are.equal(1, seen.discover.closed)
    assert.is_nil(c.resource)
    assert.is_true(r.phases.close.ok)
    assert.is_number(r.phases.close.ms)
    -- never part of the results or their JSON
    assert.is_nil(r.resource)
    assert.is_nil(json.decode(c:to_json()).resource)
  end)

  it("passes the resource to undo, and closes after a failed apply", function()
    local M, log, seen = define("res_undo", { fail_in = "apply" })
    local r = assert(M.new()):execute()
    assert.are.equal("failed", r.status)
    assert.are.same({ "open", "discover", "plan", "apply r1", "apply r2", "undo r1", "close" }, log)
    assert.are.equal(seen.discover, seen["undo r1"])
    assert.are.equal(1, seen.discover.closed)
  end)

  it("closes after a phase error, and with the __close metamethod when there is no close method", function()
    local M, log, seen = define("res_fail", { fail_in = "discover", kind = "metamethod" })
    local r = assert(M.new()):execute()
    assert.are.equal("failed", r.status)
    assert.matches("^discover: .*discover broke", r.error)
    assert.are.same({ "open", "discover", "__close" }, log)
    assert.are.equal(1, seen.discover.closed)
  end)

  it("open returning nil, err or raising fails the phase that needed it", function()
    local M, log = define("res_open_nil", { open_error = "login refused (401)" })
    local r = assert(M.new()):execute()
    assert.are.equal("failed", r.status)
    assert.matches("^discover: .*open: login refused %(401%)", r.error)
    assert.are.same({ "open" }, log)
    assert.is_nil(r.phases.close) -- nothing was opened
    local M2, log2 = define("res_open_raise", { open_raises = "no route to host", no_discover = true })
    local r2 = assert(M2.new()):execute()
    assert.are.equal("failed", r2.status)
    assert.matches("^process: .*no route to host", r2.error)
    assert.are.same({ "open" }, log2)
    local M3 = component.define { name = "res_open_nothing", open = function() end,
      discover = function() return {} end }
    assert.matches("open: returned no resource", assert(M3.new()):execute().error, 1, true)
  end)

  it("opens lazily: a component whose phases do not run never opens", function()
    local log = {}
    local M = component.define { name = "res_lazy",
      open = function() log[#log + 1] = "open"; return {} end,
      housekeep = function() log[#log + 1] = "housekeep"; return {} end }
    local c = assert(M.new())
    local r = c:execute { mode = "plan" } -- housekeep skipped in plan mode; no other phase defined
    assert.are.equal("ok", r.status)
    assert.are.same({}, log)
    assert.is_nil(r.phases.close)
    c:execute()
    assert.are.same({ "open", "housekeep" }, log)
  end)

  it("closes on interrupted!, records the phase, then re-raises", function()
    local M, log, seen = define("res_interrupt", { interrupt_in = "apply" })
    local c = assert(M.new())
    local ok, err = pcall(c.execute, c)
    assert.is_false(ok)
    assert.matches("interrupted!", tostring(err), 1, true)
    assert.are.same({ "open", "discover", "plan", "apply r1", "close" }, log)
    assert.are.equal(1, seen.discover.closed)
    local r = c:results()
    assert.are.equal("failed", r.status)
    assert.is_false(r.phases.process.ok)
    assert.matches("^process: .*interrupted!", r.error)
    assert.is_true(r.phases.close.ok)
  end)

  it("c:close() is idempotent; the instance is a to-be-closed variable; a phase reopens after close", function()
    local M, log, seen = define("res_manual")
    local c = assert(M.new())
    assert.is_table(c:discover())
    assert.is_table(c.resource)
    assert.is_true(c:close())
    assert.is_true(c:close())
    assert.are.same({ "open", "discover", "close" }, log)
    assert.are.equal(1, seen.discover.closed)
    do
      local c2 <close> = assert(M.new())
      c2:discover()
    end
    assert.are.same({ "open", "discover", "close", "open", "discover", "close" }, log)
  end)

  it("a close that fails is recorded and fails an otherwise ok component", function()
    local M, log = define("res_close_fails", { kind = "failing" })
    local c = assert(M.new())
    local r = c:execute()
    assert.are.equal("failed", r.status)
    assert.are.equal("close: DELETE /session: 503", r.error)
    assert.is_false(r.phases.close.ok)
    assert.are.equal("DELETE /session: 503", r.phases.close.error)
    assert.are.equal("close", log[#log])
    assert.is_true(r.phases.housekeep.ok)
    -- c:close() reports it as nil, err
    c:discover()
    local ok, err = c:close()
    assert.is_nil(ok)
    assert.are.equal("DELETE /session: 503", err)
  end)

  it("rejects bad open and hooks declarations", function()
    assert.has_error(function() component.define { name = "bo1", open = "x" } end,
      "component.define bo1: open must be a function, got string")
    assert.has_error(function() component.define { name = "bo2", hooks = { ["a b"] = { description = "x" } } } end,
      "component.define bo2: hooks: a hook name must be an identifier, got a b")
    assert.has_error(function() component.define { name = "bo3", hooks = { pick = { default = function() end } } } end,
      "component.define bo3: hooks.pick.description must be a string (it is what `sbot help component` shows)")
    assert.has_error(function() component.define { name = "bo4", hooks = { pick = { description = "d", dflt = 1 } } } end,
      "component.define bo4: hooks.pick: unknown field 'dflt' (expected description, default)")
    assert.has_error(function() component.define { name = "bo5", hooks = { pick = { description = "d", default = 3 } } } end,
      "component.define bo5: hooks.pick.default must be a function, got number")
  end)
end)

describe("sbot.component hooks", function()
  local M = component.define {
    name = "hooked",
    hooks = {
      choose_nic = { description = "pick the boot NIC from the discovered ones",
        default = function(nics) return nics[1], "default" end },
      name_target = { description = "the iSCSI target name of a server" },
    },
    discover = function(self) return { nic = self:hook("choose_nic", { "NIC.1", "NIC.2" }) } end,
  }

  it("calls the declared default when the site defines no such hook", function()
    local c = assert(M.new({}, { site = { hooks = {} } }))
    assert.are.equal("NIC.1", c:execute().discovery.nic)
    local a, b = c:hook("choose_nic", { "x" })
    assert.are.same({ "x", "default" }, { a, b })
  end)

  it("calls the site's hook when the site defines it", function()
    local site = { hooks = { choose_nic = function(nics) return nics[#nics] end,
      name_target = function(server, version) return server .. "-" .. version end } }
    local c = assert(M.new({}, { site = site, id = "r630-01" }))
    assert.are.equal("NIC.2", c:execute().discovery.nic)
    assert.are.equal("r630-01-4.16", c:hook("name_target", "r630-01", "4.16"))
  end)

  it("raises for an undeclared hook and for one with neither site hook nor default", function()
    local c = assert(M.new({}, { id = "s1" }))
    assert.has_error(function() c:hook("bogus") end,
      "component hooked (s1): hook 'bogus' is not declared in the component's spec (hooks = {...})")
    assert.has_error(function() c:hook("name_target", "s1") end,
      "component hooked (s1): hook 'name_target': the site defines no hooks.name_target and the component has no default")
  end)

  it("exposes the declarations on the module", function()
    assert.are.equal("the iSCSI target name of a server", M.hooks.name_target.description)
  end)
end)
