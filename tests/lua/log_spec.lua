-- sbot.log through whole runs: every sink (stderr human, stderr JSON, the run's
-- log.jsonl) redacts a secret that JSON escaping would change (quote,
-- backslash, tab). The redactor itself is tested in tests/c/test_log.c.
local helpers = require "helpers"
local json = require "sbot.json"
local log = require "sbot.log"

local WF = helpers.source_dir .. "/tests/support/workflows/kv.lua"
-- what each secret becomes inside a JSON string
local function json_spelling(s) return json.encode(s):sub(2, -2) end

local function setup(dev_pw)
  local dir = helpers.tmpdir("logrun")
  helpers.write_file(dir .. "/site.lua", string.format([[
    return {
      servers = { { id = "s1", idrac = { host = "10.0.0.1", password = "secret:idrac/s1:password" } } },
      components = { test_kv = { state_file = %q, want = { a = "1" }, password = "secret:dev:password" } },
    }]], dir .. "/{id}.state.json"))
  local env = "IDRAC_S1_PASSWORD=idrac-pw-Lg40 DEV_PASSWORD=" .. helpers.shquote(dev_pw)
  return dir, env
end

local function run_dir(dir)
  local _, _, out = helpers.sh("ls -t " .. dir .. "/runs")
  return dir .. "/runs/" .. out:match("^(%S+)")
end

local function assert_hidden(where, text, secret)
  assert.is_nil(text:find(secret, 1, true), where .. " holds the secret as it is")
  assert.is_nil(text:find(json_spelling(secret), 1, true), where .. " holds the secret JSON-escaped")
  assert.is_nil(text:find("tail-Qw81", 1, true), where .. " holds the end of the secret")
end

describe("log redaction on every sink of a run", function()
  local secret = 'pa"ss\\word\twith-tail-Qw81'

  it("human stderr and the run's log.jsonl", function()
    local dir, env = setup(secret)
    local r = helpers.sbot({ "run", WF, "--site", dir .. "/site.lua" }, { cwd = dir, env = env })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("INFO  logging in with <redacted>\n", r.stderr, 1, true)
    assert_hidden("stderr", r.stderr, secret)
    assert_hidden("stdout", r.stdout, secret)
    local logtext = helpers.read_file(run_dir(dir) .. "/log.jsonl")
    assert.matches('"msg":"logging in with <redacted>"', logtext, 1, true)
    assert_hidden("log.jsonl", logtext, secret)
    for line in logtext:gmatch("[^\n]+") do assert.is_table(json.decode(line), line) end
    local rec = helpers.read_file(run_dir(dir) .. "/results.json")
    assert_hidden("results.json", rec, secret)
  end)

  it("JSON stderr (--log-json)", function()
    local dir, env = setup(secret)
    local r = helpers.sbot({ "--log-json", "run", WF, "--site", dir .. "/site.lua" }, { cwd = dir, env = env })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches('"msg":"logging in with <redacted>"', r.stderr, 1, true)
    assert_hidden("stderr", r.stderr, secret)
    local n = 0
    for line in r.stderr:gmatch("[^\n]+") do
      n = n + 1
      assert.is_table(json.decode(line), line)
    end
    assert.is_true(n > 0)
  end)

  it("log.jsonl stays JSON with fields that are infinite or not a number", function()
    local file = helpers.tmpdir("logjson") .. "/log.jsonl"
    assert(log.configure { file = file })
    log.info("numbers", { inf = math.huge, ninf = -math.huge, nan = 0 / 0, half = 0.5, n = 3, yes = true })
    log.configure { file = false }
    local line = helpers.read_file(file):match("[^\n]+")
    -- JSON has no inf or nan: written as strings, what a strict reader accepts
    local ok = helpers.sh("python3 -c 'import json,sys; json.loads(sys.stdin.read(), "
      .. "parse_constant=lambda c: sys.exit(1))' <<'EOF'\n" .. line .. "\nEOF")
    assert.is_true(ok, line)
    local t = assert(json.decode(line))
    assert.are.equal("inf", t.inf)
    assert.are.equal("-inf", t.ninf)
    assert.matches("^%-?nan$", t.nan)
    assert.are.equal(0.5, t.half)
    assert.are.equal(3, t.n)
    assert.is_true(t.yes)
  end)

  it("a log file that cannot be opened is nil, message, errno name (docs/errors.md)", function()
    local dir = helpers.tmpdir("lognofile")
    local ok, err, code = log.configure { file = dir .. "/missing/log.jsonl" }
    assert.is_nil(ok)
    assert.are.equal(dir .. "/missing/log.jsonl: No such file or directory", err)
    assert.are.equal("ENOENT", code)
  end)

  it("log.redact finds a secret with a quote, a backslash and a tab as it is", function()
    log.add_secret('q"b\\t\tz-Lq70')
    assert.are.equal("x <redacted> y", log.redact('x q"b\\t\tz-Lq70 y'))
  end)
end)
