-- The run record's documented schema (docs/run-record.schema.json) checked
-- against real `--json` output of real runs: ok, failed with a rollback and
-- a skipped step, --plan, a worker stopped at its time limit; results.json is
-- the same document; and the schema refuses what it should (so this test can
-- fail).
local helpers = require "helpers"
local json = require "sbot.json"
local jsonschema = require "sbot.jsonschema"
local run = require "sbot.run"

local SCHEMA_FILE = helpers.source_dir .. "/docs/run-record.schema.json"
local REPORT_WF = helpers.source_dir .. "/tests/support/workflows/report_demo.lua"
local KV_WF = helpers.source_dir .. "/tests/support/workflows/kv.lua"

local schema = assert(json.decode(helpers.read_file(SCHEMA_FILE)))

local function check(record)
  local ok, errs = jsonschema.validate(schema, record)
  return ok ~= nil, errs and jsonschema.format(errs) or nil
end

local function demo_site(dir)
  helpers.write_file(dir .. "/site.lua", string.format([[
    return { servers = { { id = "r630-01" }, { id = "r630-02", components = { disk = { fail_apply_on = "bucket" } } } },
      components = {
        bucket = { state_file = %q, want = { bucket = "images" } },
        disk = { state_file = %q, want = { bucket = "images", name = "vol" } },
        boot = { state_file = %q } } }]], dir .. "/{id}-bucket.json", dir .. "/{id}-disk.json", dir .. "/{id}-boot.json"))
  return dir .. "/site.lua"
end

-- run a workflow with --json; returns the decoded stdout, the exit code, and
-- the results.json it left
local function json_run(wf, args, dir)
  local argv = { "run", wf, "--json", "--runs-dir", dir .. "/runs", "--state-dir", dir .. "/state" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = helpers.sbot(argv, { cwd = dir })
  local rec = json.decode(r.stdout)
  assert(type(rec) == "table", "no JSON on stdout: " .. r.stdout .. r.stderr)
  local file = json.decode(helpers.read_file(dir .. "/runs/" .. rec.run_id .. "/results.json"))
  return rec, r.code, file
end

describe("the run record's JSON schema", function()
  it("is a version the runner writes", function()
    assert.are.equal(run.SCHEMA_VERSION, schema.properties.schema_version.const)
  end)

  it("describes a run with a site step, a failed step rolled back and a skipped one", function()
    local dir = helpers.tmpdir("schema")
    local rec, code, file = json_run(REPORT_WF, { "--site", demo_site(dir) }, dir)
    assert.are.equal(1, code)
    assert.are.equal(1, rec.schema_version)
    local ok, err = check(rec)
    assert(ok, err)
    assert.are.same(rec, file) -- --json prints results.json
    local statuses = {}
    for _, r in ipairs(rec.results) do statuses[#statuses + 1] = r.id .. ":" .. r.step .. ":" .. r.status end
    assert.are.same({ "(site):bucket:ok", "r630-01:disk:ok", "r630-01:boot:ok", "r630-02:disk:failed",
      "r630-02:boot:skipped" }, statuses)
    assert.are.equal("kv/bucket", rec.results[4].processing.failed.resource)
  end)

  it("describes a --plan run", function()
    local dir = helpers.tmpdir("schema-plan")
    local rec, code = json_run(REPORT_WF, { "--site", demo_site(dir), "--plan" }, dir)
    assert.are.equal(0, code)
    assert.is_true(rec.plan)
    local ok, err = check(rec)
    assert(ok, err)
    assert.are.same({ skipped = true, reason = "plan mode" }, rec.results[2].phases.housekeep)
  end)

  it("describes a worker stopped at its time limit (a (worker) row)", function()
    local dir = helpers.tmpdir("schema-timeout")
    helpers.write_file(dir .. "/site.lua", string.format([[
      return { servers = { { id = "s1" } }, components = { test_kv = { state_file = %q, calls_file = %q,
        hang_discover = true } } }]], dir .. "/s1.json", dir .. "/s1.calls"))
    local rec, code = json_run(KV_WF, { "--site", dir .. "/site.lua", "--timeout", "1", "--grace", "5" }, dir)
    assert.are.equal(1, code)
    local ok, err = check(rec)
    assert(ok, err)
    assert.are.equal("(worker)", rec.results[#rec.results].component)
  end)

  it("refuses a record that is not one (the test can fail)", function()
    local dir = helpers.tmpdir("schema-bad")
    local rec = json_run(REPORT_WF, { "--site", demo_site(dir) }, dir)
    local function bad(mutate, want)
      local copy = json.decode(json.encode(rec))
      mutate(copy)
      local ok, err = check(copy)
      assert.is_false(ok)
      assert.matches(want, err)
    end
    bad(function(r) r.schema_version = 2 end, "schema_version")
    bad(function(r) r.surprise = true end, "surprise")
    bad(function(r) r.results[1].status = "done" end, "results%.0%.status")
    bad(function(r) r.results[2].artifacts[1].sha256 = "xyz" end, "sha256")
    bad(function(r) r.results[2].phases.discover.ms = "fast" end, "ms")
    bad(function(r) r.run_id = nil end, "run_id")
  end)

  it("--junit FILE: a testcase per server and step, the failure's message, the skipped reason", function()
    local dir = helpers.tmpdir("junit")
    local _, code = json_run(REPORT_WF, { "--site", demo_site(dir), "--junit", dir .. "/junit.xml" }, dir)
    assert.are.equal(1, code)
    local s3xml = require "sbot.s3xml"
    local root, doc = s3xml.parse(helpers.read_file(dir .. "/junit.xml"), { "testsuite", "testcase" })
    assert.are.equal("testsuites", root, tostring(doc))
    local cases = {}
    for _, suite in ipairs(doc.testsuite) do
      for _, c in ipairs(suite.testcase) do
        cases[#cases + 1] = (c.failure and "failure: " .. c.failure or c.skipped and "skipped" or "ok")
      end
    end
    assert.are.equal(5, #cases)
    assert.are.same({ "ok", "ok", "ok" }, { cases[1], cases[2], cases[3] })
    assert.matches("^failure: process: change 1 of 2 %(create kv/bucket%) failed: .*device refused bucket", cases[4])
    assert.are.equal("skipped", cases[5])
    -- a directory that is not there: a usage error before anything runs
    local r = helpers.sbot({ "run", REPORT_WF, "--site", demo_site(dir), "--runs-dir", dir .. "/runs2",
      "--junit", dir .. "/nowhere/junit.xml" }, { cwd = dir })
    assert.are.equal(2, r.code)
    assert.matches("%-%-junit " .. dir:gsub("%p", "%%%0") .. "/nowhere/junit%.xml: no directory ", r.stderr)
    assert.is_nil(io.open(dir .. "/runs2"))
  end)
end)
