-- sbot.lab.faults: spec parsing and the deterministic injector (in-process).
local faults = require "sbot.lab.faults"

describe("sbot.lab.faults", function()
  it("parses device sections, rates and latency ranges", function()
    local spec = faults.parse(" idrac:503=0.1, reset=0.05 ,latency=100-300; truenas:drop=0.5;*:latency=20 ")
    assert.are.same({ ["503"] = 0.1, reset = 0.05, latency = { 100, 300 } }, spec.idrac)
    assert.are.same({ drop = 0.5 }, spec.truenas)
    assert.are.same({ latency = { 20, 20 } }, spec["*"])
    assert.are.same({}, faults.parse(""))
    assert.are.same({}, faults.parse(nil))
  end)

  it("names what is wrong in a bad spec", function()
    assert.has_error(function() faults.parse("idrac") end, "--faults: 'idrac' is not DEVICE:key=value,...")
    assert.has_error(function() faults.parse("idrac:503") end, "--faults: '503' in 'idrac:503' is not key=value")
    assert.has_error(function() faults.parse("idrac:503=-1") end,
      "--faults idrac: 503 must be a rate between 0 and 1, got '-1'")
    assert.has_error(function() faults.parse("idrac:latency=5-1") end,
      "--faults idrac: latency must be milliseconds 'N' or 'MIN-MAX', got '5-1'")
    assert.has_error(function() faults.parse("idrac:nope=1") end,
      "--faults idrac: unknown fault 'nope' (known: 503, authrace, completeerr, corrupt, drop, dropcalls, failpart, jobfail, latency, lostanswers, noshutdown, reset, sealed, zvoldev)")
    assert.has_error(function() faults.parse("vault:sealed=2") end,
      "--faults vault: sealed must be 1 or 0, got '2'")
    assert.has_error(function() faults.parse("s3:failpart=0") end,
      "--faults s3: failpart must be a positive integer, got '0'")
    assert.has_error(function() faults.parse("s3:failpart=2.5") end,
      "--faults s3: failpart must be a positive integer, got '2.5'")
    assert.has_error(function() faults.parse("truenas:dropcalls=service.update") end,
      "--faults truenas: dropcalls must be METHOD*N (N a positive integer), got 'service.update'")
    assert.has_error(function() faults.parse("truenas:dropcalls=service.update*0") end,
      "--faults truenas: dropcalls must be METHOD*N (N a positive integer), got 'service.update*0'")
  end)

  it("parses the Vault's sealed flag", function()
    assert.are.same({ vault = { sealed = true } }, faults.parse("vault:sealed=1"))
    assert.are.same({ vault = { sealed = false } }, faults.parse("vault:sealed=0"))
    local inj = faults.injector({ spec = faults.parse("vault:sealed=1"), kind = "vault", name = "vault", seed = 1 })
    assert.is_true(inj.config.sealed)
    inj.reconfigure(faults.parse(""))
    assert.is_nil(inj.config.sealed)
  end)

  it("parses the S3 keys and reconfigures an injector in place", function()
    local inj = faults.injector({ spec = faults.parse("s3:failpart=4,completeerr=1"), kind = "s3", name = "s3", seed = 1 })
    local cfg = inj.config
    assert.are.same({ failpart = 4, completeerr = 1 }, cfg)
    assert.is_true(inj.chance("completeerr"))
    inj.reconfigure(faults.parse("*:503=1"))
    assert.are.equal(cfg, inj.config)
    assert.are.same({ ["503"] = 1 }, inj.config)
    assert.are.equal("503", (inj.request()))
    inj.reconfigure(faults.parse(""))
    assert.are.same({}, inj.config)
    assert.is_nil((inj.request()))
  end)

  it("loses the answers of the next N requests, then none", function()
    local inj = faults.injector({ spec = faults.parse("s3:lostanswers=2"), kind = "s3", name = "s3", seed = 1 })
    assert.are.equal("lostanswer", (inj.request()))
    assert.are.equal("lostanswer", (inj.request()))
    assert.is_nil((inj.request()))
    assert.are.equal(2, inj.counts.lostanswers)
  end)

  it("drops the replies to the next N calls of one method, drawing nothing from the stream", function()
    local spec = faults.parse("truenas:dropcalls=service.update*2")
    local inj = faults.injector({ spec = spec, kind = "truenas", name = "truenas", seed = 1 })
    assert.is_false(inj.drop_call("service.query"))
    assert.is_true(inj.drop_call("service.update"))
    assert.is_true(inj.drop_call("service.update"))
    assert.is_false(inj.drop_call("service.update"))
    assert.are.equal(2, inj.counts.dropcalls)
    -- the parsed spec is left as it was (another device may share it)
    assert.are.same({ truenas = { dropcalls = { method = "service.update", n = 2 } } }, spec)
  end)

  it("a WebSocket device loses the answers of its next N messages, not its upgrade (TrueNAS)", function()
    local inj = faults.injector({ spec = faults.parse("truenas:lostanswers=1"), kind = "truenas", name = "truenas",
      seed = 1 })
    assert.is_nil((inj.request({ upgrade = true })))
    assert.is_true(inj.lostanswer())
    assert.is_false(inj.lostanswer())
    assert.is_nil((inj.request()))
    assert.are.equal(1, inj.counts.lostanswers)
  end)

  it("gives the same decisions for the same seed and stream, others for another", function()
    local spec = faults.parse("idrac:503=0.3,reset=0.1,latency=10-20")
    local function run(seed, name)
      local inj = faults.injector({ spec = spec, kind = "idrac", name = name, seed = seed, latency_ms = 5 })
      local out = {}
      for i = 1, 400 do
        local action, delay = inj.request()
        assert.is_true(delay >= 0.015 - 1e-9 and delay <= 0.025 + 1e-9)
        out[i] = action or "ok"
      end
      return out, inj.counts
    end
    local a, counts = run(5, "idrac-1")
    assert.are.same(a, (run(5, "idrac-1")))
    assert.are_not.same(a, (run(6, "idrac-1")))
    assert.are_not.same(a, (run(5, "idrac-2")))
    assert.are.equal(400, counts.requests)
    -- rates within a generous tolerance of 0.1 and 0.9 * 0.3 = 0.27
    assert.is_true(counts.reset > 20 and counts.reset < 65, "resets " .. counts.reset)
    assert.is_true(counts["503"] > 75 and counts["503"] < 145, "503s " .. counts["503"])
  end)

  it("applies '*', kind and name sections in that order, and chance() for message faults", function()
    local spec = faults.parse("*:drop=1;truenas:drop=0;idrac-2:jobfail=1")
    local t = faults.injector({ spec = spec, kind = "truenas", name = "truenas", seed = 1 })
    local i2 = faults.injector({ spec = spec, kind = "idrac", name = "idrac-2", seed = 1 })
    assert.is_false(t.chance("drop"))
    assert.is_true(i2.chance("drop"))
    assert.is_true(i2.chance("jobfail"))
    assert.are.equal(1, i2.counts.jobfail)
  end)
end)

describe("sbot lab --pace", function()
  local lab = require "sbot.lab"

  it("takes quick or field and names anything else", function()
    assert.are.equal("quick", assert(lab.parse_args({})).pace)
    assert.are.equal("field", assert(lab.parse_args({ "--pace", "field" })).pace)
    assert.are.equal("field", assert(lab.parse_args({ "--pace=field" })).pace)
    local o, err = lab.parse_args({ "--pace", "slow" })
    assert.is_nil(o)
    assert.are.equal("--pace: expected quick or field, got 'slow'", err)
  end)

  it("field: every answer takes its time, from a stream apart from the faults'", function()
    local spec = faults.parse("idrac:503=0.3,reset=0.2")
    local plain = faults.injector({ spec = spec, kind = "idrac", name = "idrac-1", seed = 9 })
    local paced = faults.injector({ spec = spec, kind = "idrac", name = "idrac-1", seed = 9, answer_ms = { 30, 200 } })
    local lo, hi = math.huge, 0
    for _ = 1, 200 do
      local a1, d1 = plain.request()
      local a2, d2 = paced.request()
      assert.are.equal(a1, a2) -- the same faults with the pace or without
      assert.are.equal(0, d1)
      lo, hi = math.min(lo, d2), math.max(hi, d2)
    end
    assert.is_true(lo >= 0.030 and hi <= 0.200, string.format("answer times %g..%g s", lo, hi))
    assert.is_true(hi - lo > 0.1, "the answer times are drawn, not one value")
  end)

  it("field: the R630's job, reboot, not-ready and shutdown durations, scaled; quick: the test pace", function()
    local idrac = require "sbot.lab.idrac"
    local function dur(pace)
      return idrac.new({ index = 1, flavour = 8, clock = function() return 0 end, scale = 0.1, pace = pace,
        faults = faults.injector({ kind = "idrac", name = "idrac-1" }) }).dur
    end
    assert.are.same({ job = 12, reboot = 18, not_ready = 6, shutdown = 3 }, dur("field"))
    assert.are.same({ job = 0.05, reboot = 0.1, not_ready = 0.1, shutdown = 0.05 }, dur("quick"))
    assert.are.same(dur("quick"), dur(nil))
  end)
end)
