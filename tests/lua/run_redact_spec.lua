-- Run records and the summary redact values, never keys or the runner's own
-- words, and redact each value before it is quoted or encoded.
local helpers = require "helpers"
local json = require "sbot.json"
local log = require "sbot.log"
local run = require "sbot.run"

-- secrets that are also keys of a record, words of the summary and of the
-- plan diff, and one that changes when quoted
local SECRETS = { "processing", "discovery", "failed", "change", "update", 'pa"ss\\Qx1' }

describe("redaction of run records and summaries", function()
  setup(function() for _, s in ipairs(SECRETS) do log.add_secret(s) end end)

  local record = {
    run_id = "20260101T000000Z-abcdef", mode = "apply", ok = false,
    results = json.array {
      { component = "kv", id = "s1", status = "failed", error = "process: change 1 of 1 failed: pa\"ss\\Qx1 refused",
        phases = { discover = { ms = 2 }, process = { ms = 3 } },
        discovery = { echo = "login with processing" },
        plan = json.array { { resource = "kv/a", action = "update", before = "old", after = 'pa"ss\\Qx1' } },
        processing = { planned = 1, applied = json.array { { index = 1 } } } },
    },
  }

  it("redact_tree rewrites values only: keys and the runner's words stay", function()
    local r = run.redact_tree(record)
    local res = r.results[1]
    assert.is_table(res.processing)   -- the key "processing" is a secret, and stays a key
    assert.is_table(res.discovery)
    assert.are.equal("failed", res.status)            -- the runner's word
    assert.are.equal("update", res.plan[1].action)
    assert.are.equal("login with <redacted>", res.discovery.echo)
    assert.are.equal("<redacted>", res.plan[1].after)
    assert.is_true(json.is_array(r.results))
    local text = json.encode(r)
    assert.is_nil(text:find('pa\\"ss', 1, true))
  end)

  it("the summary is built from redacted values: its columns and words survive", function()
    local s = run.summary(run.redact_tree(record))
    assert.are.equal(table.concat({
      "run 20260101T000000Z-abcdef (apply) FAILED",
      "SERVER  COMPONENT  STATUS  PLANNED  APPLIED  TIME",
      "s1      kv         failed  1        1        5 ms",
      "error: s1 kv: process: <redacted> 1 of 1 <redacted>: <redacted> refused",
    }, "\n") .. "\n", s)
    -- also from a record that was never redacted
    assert.are.equal(s, run.summary(record))
  end)

  it("the plan diff keeps its words and redacts each value before quoting it", function()
    local ok = { run_id = "x", mode = "plan", ok = true, results = { {
      component = "kv", id = "s1", status = "ok",
      plan = { { resource = "kv/a", action = "update", before = "old", after = 'pa"ss\\Qx1', reason = "update wanted" },
               { resource = "kv/t", action = "create", after = "line1\npa\"ss\\Qx1 here\n" } } } } }
    local text = run.format_plan(ok)
    assert.are.equal(table.concat({
      "s1 / kv: 2 change(s)",
      '  ~ update kv/a: "old" -> "<redacted>"',
      "      (<redacted> wanted)",
      "  + create kv/t",
      "      + line1",
      "      + <redacted> here",
    }, "\n") .. "\n", text)
  end)

  it("a table that only names itself sbot.secret is not a secret: its values are redacted", function()
    -- the one test of the secret type is log.is_secret (a userdata with the
    -- core's metatable); a __name string is no proof
    local forged = setmetatable({ echo = "login with processing" }, { __name = "sbot.secret" })
    local r = run.redact_tree({ results = json.array { { discovery = forged } } })
    assert.are.equal("login with <redacted>", r.results[1].discovery.echo)
    -- a real secret object stays itself (json.encode writes it as <redacted>)
    local s = log.secret("a-real-secret", "test")
    assert.are.equal(s, run.redact_tree({ v = s }).v)
  end)

  it("the summary pads to the widest cell and leaves no trailing blanks, whatever the id length", function()
    local long = string.rep("r", 5000)
    local s = run.summary { run_id = "r", mode = "plan", ok = true, results = {
      { id = long, component = "c", status = "ok" }, { id = "s2", component = "c", status = "ok" } } }
    local lines = {}
    for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(4, #lines)
    for _, l in ipairs(lines) do assert.is_nil(l:find("%s$"), "trailing blank") end
    assert.are.equal(5000 + 3, lines[4]:find("c", 1, true)) -- "s2" padded to the long id's width, then 2 blanks
  end)

  it("a whole run: results.json keeps every key, the summary its numbers", function()
    local dir = helpers.tmpdir("redrun")
    helpers.write_file(dir .. "/site.lua", string.format([[
      return { servers = { { id = "s1" } },
        components = { test_kv = { state_file = %q, want = { a = "1" }, password = "secret:dev:password" } } }]],
      dir .. "/s1.json"))
    local r = helpers.sbot({ "run", helpers.source_dir .. "/tests/support/workflows/kv.lua", "--site",
      dir .. "/site.lua", "--runs-dir", dir .. "/runs", "--state-dir", dir .. "/state" },
      { cwd = dir, env = "DEV_PASSWORD=processing" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("s1%s+test_kv%s+ok%s+1%s+1%s+%d+ ms", r.stdout)
    local list = assert(run.list(dir .. "/runs"))
    local rec = assert(json.decode(helpers.read_file(list[1].dir .. "/results.json")))
    local res = rec.results[1]
    assert.are.equal(1, res.processing.planned)
    assert.are.equal("login with <redacted>", res.discovery.echo)
    assert.is_nil(helpers.read_file(list[1].dir .. "/results.json"):find("<redacted>\":", 1, true),
      "a key was redacted")
  end)
end)
