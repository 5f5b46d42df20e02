-- Whole workflow runs (sbot.workflow, sbot.run, locks, run records) with the
-- Lua-defined test component test_kv; no network.
local helpers = require "helpers"
local json = require "sbot.json"
local sys = require "sbot.sys"
local crypto = require "sbot.crypto"
local fsio = require "sbot.fsio"

local WF = helpers.source_dir .. "/tests/support/workflows/kv.lua"
local SECRETS = { "file-pw-s1-Zq81", "env-pw-s2-Kx27", "device-pw-Pp55" }
local ENV = "IDRAC_S2_PASSWORD=" .. SECRETS[2] .. " DEV_PASSWORD=" .. SECRETS[3]

local function setup(extra)
  local dir = helpers.tmpdir("wf")
  os.execute("mkdir -p " .. dir .. "/secrets/idrac/s1")
  helpers.write_file(dir .. "/secrets/idrac/s1/password", SECRETS[1] .. "\n")
  os.execute("chmod 600 " .. dir .. "/secrets/idrac/s1/password")
  helpers.write_file(dir .. "/site.lua", string.format([[
    return {
      servers = {
        { id = "s1", idrac = { host = "10.0.0.1", password = "secret:idrac/s1:password" } %s },
        { id = "s2", idrac = { host = "10.0.0.2", password = "secret:idrac/s2:password" } },
      },
      components = { test_kv = { state_file = %q, calls_file = %q, want = { a = "1", b = "2" },
        password = "secret:dev:password" } },
    }]], extra or "", dir .. "/{id}.state.json", dir .. "/{id}.calls"))
  return dir
end

local function run(dir, args, env)
  local argv = { "run", WF, "--site", dir .. "/site.lua" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return helpers.sbot(argv, { cwd = dir, env = ENV .. " " .. (env or "") })
end

local function only_run_dir(dir)
  local _, _, out = helpers.sh("ls -t " .. dir .. "/runs")
  return dir .. "/runs/" .. out:match("^(%S+)")
end

local function calls(dir, id)
  local f = io.open(dir .. "/" .. id .. ".calls")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function assert_no_secrets(where, text)
  for _, s in ipairs(SECRETS) do
    assert.is_nil(text:find(s, 1, true), where .. " contains the secret " .. s)
  end
end

describe("workflow runs", function()
  it("apply: converges, writes the run record, prints the summary, exits 0", function()
    local dir = setup()
    local r = run(dir)
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("run %S+ %(apply%) ok", r.stdout)
    assert.matches("s1%s+test_kv%s+ok%s+2%s+2%s+%d+ ms", r.stdout)
    assert.matches("s2%s+test_kv%s+ok%s+2%s+2%s+%d+ ms", r.stdout)
    assert.are.same({ a = "1", b = "2" }, json.decode(helpers.read_file(dir .. "/s1.state.json")))
    assert.are.equal("s1 discover\ns1 plan\ns1 apply a\ns1 apply b\ns1 housekeep\n", calls(dir, "s1"))

    local rd = only_run_dir(dir)
    assert.matches("^%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ%-%x%x%x%x%x%x$", rd:match("[^/]+$"))
    local rec = assert(json.decode(helpers.read_file(rd .. "/results.json")))
    assert.are.equal("apply", rec.mode)
    assert.is_false(rec.plan)
    assert.is_true(rec.ok)
    assert.are.equal(2, #rec.results)
    assert.are.equal("<redacted>", rec.results[1].discovery.password)
    assert.are.equal("login with <redacted>", rec.results[1].discovery.echo)
    local art = rec.results[1].artifacts[1]
    assert.are.equal("state.json", art.key)
    -- stored in the embedded file:// store under the run dir
    local stored = art.stored:match("^file://(/.+)$")
    assert.is_string(stored, art.stored)
    assert.are.equal(fsio.realpath(rd) .. "/artifacts/s1/test_kv/state.json", stored)
    assert.are.equal(art.sha256, crypto.hex(assert(crypto.sha256_file(stored))))
    local logtext = helpers.read_file(rd .. "/log.jsonl")
    assert.matches('"msg":"logging in with <redacted>"', logtext, 1, true)
    for line in logtext:gmatch("[^\n]+") do assert.is_table(json.decode(line)) end

    -- the secrets are nowhere: run dir, stdout, stderr
    local ok = helpers.sh("grep -r -l -F -e " .. SECRETS[1] .. " -e " .. SECRETS[2] .. " -e "
      .. SECRETS[3] .. " " .. helpers.shquote(rd))
    assert.is_false(ok, "a secret was found in the run directory")
    assert_no_secrets("stdout", r.stdout)
    assert_no_secrets("stderr", r.stderr)
  end)

  it("a component's hook runs the site file's function, in the worker", function()
    local dir = setup()
    local site = helpers.read_file(dir .. "/site.lua")
    site = site:gsub("components = {", "hooks = { value_for = function(k, v) return k .. '=' .. v end },\n"
      .. "      components = {", 1)
    helpers.write_file(dir .. "/site.lua", site)
    local r = run(dir, { "--server", "s1" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.are.same({ a = "a=1", b = "b=2" }, json.decode(helpers.read_file(dir .. "/s1.state.json")))
  end)

  it("--store: through sbot.store when it exists, else an error that says so", function()
    local dir = setup()
    local r = run(dir, { "--server", "s1", "--store", "file://" .. dir .. "/store" })
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    if pcall(require, "sbot.store") then
      assert.are.equal(0, r.code, r.stdout .. r.stderr)
      assert.is_true(rec.ok)
      assert.is_string(rec.results[1].artifacts[1].stored)
    else
      assert.are.equal(1, r.code)
      assert.is_false(rec.ok)
      assert.matches("artifact store file://" .. dir .. "/store requested but sbot.store is not available",
        rec.artifact_error, 1, true)
      assert.matches("error: artifacts: artifact store", r.stdout, 1, true)
    end
  end)

  it("a second run over converged state plans zero changes and writes nothing", function()
    local dir = setup()
    assert.are.equal(0, run(dir).code)
    os.remove(dir .. "/s1.calls")
    local before = helpers.read_file(dir .. "/s1.state.json")
    local r = run(dir, { "--json" })
    assert.are.equal(0, r.code, r.stderr)
    local rec = assert(json.decode(r.stdout))
    for _, res in ipairs(rec.results) do
      assert.are.equal(0, #res.plan)
      assert.are.equal(0, #res.processing.applied)
    end
    assert.are.equal("s1 discover\ns1 plan\ns1 housekeep\n", calls(dir, "s1"))
    assert.are.equal(before, helpers.read_file(dir .. "/s1.state.json"))
    assert_no_secrets("--json output", r.stdout)
  end)

  it("--plan prints a diff, applies nothing, and records a plan", function()
    local dir = setup()
    assert.are.equal(0, run(dir).code)
    os.remove(dir .. "/s1.calls")
    local r = run(dir, { "--plan", "--server", "s1", "--extra-key", "c=3" })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("s1 / test_kv: 1 change(s)\n  + create kv/c: (none) -> \"3\"\n      (wanted)", r.stdout, 1, true)
    assert.matches("run %S+ %(plan%) ok", r.stdout)
    assert.is_nil(r.stdout:find("s2", 1, true))
    assert.are.equal("s1 discover\ns1 plan\n", calls(dir, "s1"))
    assert.are.same({ a = "1", b = "2" }, json.decode(helpers.read_file(dir .. "/s1.state.json")))
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    assert.is_true(rec.plan)
    assert.are.equal("plan", rec.mode)
    assert.are.equal("plan mode", rec.results[1].phases.housekeep.reason)
  end)

  it("a failing change is rolled back, reported, and the exit status is 1", function()
    local dir = setup(", components = { test_kv = { fail_apply_on = \"b\" } }")
    local r = run(dir, { "--server", "s1" })
    assert.are.equal(1, r.code)
    assert.matches("run %S+ %(apply%) FAILED", r.stdout)
    assert.matches("s1%s+test_kv%s+failed%s+2%s+1", r.stdout)
    assert.matches("error: s1 test_kv: process: change 2 of 2 (create kv/b) failed:", r.stdout, 1, true)
    assert.are.equal("s1 discover\ns1 plan\ns1 apply a\ns1 apply b\ns1 undo a\n", calls(dir, "s1"))
    assert.are.same({}, json.decode(helpers.read_file(dir .. "/s1.state.json")))
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    assert.are.equal("kv/a", rec.results[1].processing.undone[1].resource)
    assert.is_true(rec.results[1].processing.undone[1].ok)
  end)

  it("a locked server fails at once; a stale lock is taken over with a warning", function()
    local dir = setup()
    local lockfile = dir .. "/state/locks/s1.lock"
    os.execute("mkdir -p " .. dir .. "/state/locks")
    local h = helpers.spawn(string.format("%s run %s/tests/support/scripts/hold_lock.lua %s %s",
      helpers.shquote(helpers.sbot_bin), helpers.shquote(helpers.source_dir), lockfile, dir .. "/ready"))
    for _ = 1, 100 do
      if io.open(dir .. "/ready") then break end
      os.execute("sleep 0.05")
    end
    local owner = assert(require "sbot.lock".owner(lockfile))
    local r = run(dir, { "--server", "s1" })
    assert.are.equal(1, r.code)
    assert.matches(string.format("server s1 is locked by pid %d on host %s since %s", owner.pid,
      owner.host, owner.since), r.stdout, 1, true)
    assert.are.equal("", calls(dir, "s1")) -- the lock comes before discover
    h:stop("KILL")
    -- the holder died without releasing: its file stays, its flock is gone
    assert.is_table(require "sbot.lock".owner(lockfile))
    r = run(dir, { "--server", "s1" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches(string.format("server s1: taking over stale lock %s of pid %d", lockfile, owner.pid),
      r.stderr, 1, true)
    assert.is_nil(io.open(lockfile)) -- released at the end of the run
  end)

  -- sbot run in the background, through a shell that records its exit status
  local function spawn_run(dir, args)
    local cmd = string.format("env %s %s run %s --site %s --runs-dir %s %s; echo $? > %s", ENV,
      helpers.shquote(helpers.sbot_bin), helpers.shquote(WF), helpers.shquote(dir .. "/site.lua"),
      helpers.shquote(dir .. "/runs"), table.concat(args or {}, " "), helpers.shquote(dir .. "/rc"))
    local h = helpers.spawn("sh -c " .. helpers.shquote(cmd))
    function h:sbot_pid()
      for _ = 1, 100 do
        local ok, _, out = helpers.sh("pgrep -P " .. self.pid .. " -x sbot")
        if ok then return tonumber(out) end
        os.execute("sleep 0.02")
      end
    end
    function h:wait(seconds)
      for _ = 1, (seconds or 10) * 20 do
        if not self:alive() then break end
        os.execute("sleep 0.05")
      end
      assert.is_false(self:alive())
      return tonumber(helpers.read_file(dir .. "/rc"))
    end
    return h
  end

  it("Ctrl-C stops every worker gracefully: resources close, the run record is written, exit 130", function()
    local dir = setup(", components = { test_kv = { hang_discover = true, session_log = \"SESSION\" } }")
    local site = helpers.read_file(dir .. "/site.lua"):gsub('"SESSION"', string.format("%q", dir .. "/session.log"))
    helpers.write_file(dir .. "/site.lua", site)
    local h = spawn_run(dir, { "-v" })
    for _ = 1, 200 do
      -- s1 hangs in discover; s2 runs to the end (the parent has reaped its worker)
      if io.open(dir .. "/s1.calls.pid") and h:output():find("fleet: item 2 %(pid %d+%) finished: ok") then
        break
      end
      os.execute("sleep 0.05")
    end
    assert.matches("s1 discover", calls(dir, "s1"))
    assert.matches("fleet: item 2 %(pid %d+%) finished: ok", h:output())
    assert.are.equal("s1 open\n", helpers.read_file(dir .. "/session.log"))
    assert.is_true(sys.kill(assert(h:sbot_pid()), "INT"))
    assert.are.equal(130, h:wait())
    -- the worker's interpreter was interrupted, the component's resource closed
    assert.are.equal("s1 open\ns1 closing\ns1 close\n", helpers.read_file(dir .. "/session.log"))
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    assert.is_false(rec.ok)
    local s1 = rec.results[1]
    assert.are.equal("s1", s1.id)
    assert.are.equal("failed", s1.status)
    assert.matches("^discover: .*interrupted! %(Ctrl%-C: the run is stopping%)", s1.error)
    assert.is_true(s1.phases.close.ok)
    assert.are.equal("(worker)", rec.results[2].component)
    assert.matches("interrupted! %(Ctrl%-C%) while item was running: its worker was stopped with SIGTERM, "
      .. "it exited", rec.results[2].error)
    assert.are.equal("s2", rec.results[3].id) -- finished before Ctrl-C: its results are kept
    assert.are.equal("ok", rec.results[3].status)
    assert.matches("s1%s+%(worker%)%s+failed", h:output())
    local pid = tonumber(helpers.read_file(dir .. "/s1.calls.pid")) -- s1 hangs, s2 finishes
    assert.is_false(sys.pid_alive(pid), "the worker of s1 is still alive")
  end)

  it("SIGTERM to sbot stops the workers the same way, exit 143", function()
    local dir = setup(", components = { test_kv = { hang_discover = true, session_log = \"SESSION\" } }")
    local site = helpers.read_file(dir .. "/site.lua"):gsub('"SESSION"', string.format("%q", dir .. "/session.log"))
    helpers.write_file(dir .. "/site.lua", site)
    local h = spawn_run(dir, { "--server", "s1" })
    for _ = 1, 200 do
      if io.open(dir .. "/s1.calls.pid") then break end
      os.execute("sleep 0.05")
    end
    assert.is_true(sys.kill(assert(h:sbot_pid()), "TERM"))
    assert.are.equal(143, h:wait())
    assert.are.equal("s1 open\ns1 closing\ns1 close\n", helpers.read_file(dir .. "/session.log"))
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    assert.matches("interrupted! (SIGTERM: the run is stopping)", rec.results[1].error, 1, true)
  end)

  it("--timeout stops the worker with SIGTERM: the component's resource closes; --grace bounds the wait", function()
    local dir = setup(", components = { test_kv = { hang_discover = true, session_log = \"SESSION\" } }")
    local site = helpers.read_file(dir .. "/site.lua"):gsub('"SESSION"', string.format("%q", dir .. "/session.log"))
    helpers.write_file(dir .. "/site.lua", site)
    local h = spawn_run(dir, { "--server", "s1", "--timeout", "1" })
    assert.are.equal(1, h:wait(15))
    assert.are.equal("s1 open\ns1 closing\ns1 close\n", helpers.read_file(dir .. "/session.log"))
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    assert.matches("^discover: .*interrupted! %(the worker.s time limit passed%)", rec.results[1].error)
    assert.matches("^worker for item 1 %(pid %d+%) timed out after 1%.%d s: stopped with SIGTERM, it exited",
      rec.results[2].error)
    -- a close that takes longer than the grace period: the worker is killed
    helpers.write_file(dir .. "/site.lua", helpers.read_file(dir .. "/site.lua"):gsub("hang_discover = true,",
      "hang_discover = true, slow_close = 30,"))
    os.remove(dir .. "/session.log")
    local t0 = sys.monotime()
    h = spawn_run(dir, { "--server", "s1", "--timeout", "0.5", "--grace", "0.5" })
    assert.are.equal(1, h:wait(15))
    assert.is_true(sys.monotime() - t0 < 10)
    assert.are.equal("s1 open\ns1 closing\n", helpers.read_file(dir .. "/session.log"))
    rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    assert.matches("stopped with SIGTERM, then killed (SIGKILL) after the 0.5 s grace period",
      rec.results[1].error, 1, true)
  end)

  it("--help lists the common arguments and the workflow's own", function()
    local r = helpers.sbot { "run", WF, "--help" }
    assert.are.equal(0, r.code)
    assert.matches("Usage: sbot run kv.lua", r.stdout, 1, true)
    assert.matches("Test workflow: converge each server's key/value file.", r.stdout, 1, true)
    for _, opt in ipairs { "--site FILE", "--server ID", "--plan", "--phases LIST", "--jobs N",
      "--json", "--log-json", "--store URL", "-v, --verbose", "--extra-key KV", "Also want this key" } do
      assert.matches(opt, r.stdout, 1, true)
    end
    local bad = helpers.sbot { "run", WF, "--site", "x.lua", "--jobz", "2" }
    assert.are.equal(2, bad.code)
    assert.matches("unknown option '--jobz'", bad.stderr, 1, true)
    local nosite = helpers.sbot { "run", WF }
    assert.are.equal(2, nosite.code)
    assert.matches("--site FILE is required", nosite.stderr, 1, true)
  end)

  it("a bad site stops the run with the file and key path", function()
    local dir = setup(", colour = 'red'")
    local r = run(dir)
    assert.are.equal(2, r.code)
    assert.matches("site " .. dir .. "/site.lua: servers[1].colour: unknown key", r.stderr, 1, true)
  end)

  it("a lock directory that cannot be made stops the run before a run record is started", function()
    local dir = setup()
    helpers.write_file(dir .. "/blocker", "a file where the state directory should be\n")
    local r = run(dir, { "--runs-dir", dir .. "/runs", "--state-dir", dir .. "/blocker/state" })
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("sbot: lock directory " .. dir .. "/blocker/state/locks: ", r.stderr, 1, true)
    assert.is_nil(fsio.stat(dir .. "/runs"), "no run record for a run that did not start")
  end)

  it("sbot help component prints the schema with defaults", function()
    -- found by name in $SBOT_COMPONENT_PATH (tests/support/components), no LUA_PATH
    local r = helpers.sbot { "help", "component", "test_kv" }
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("component test_kv", r.stdout, 1, true)
    assert.matches("phases: discover, plan, apply, undo, housekeep", r.stdout, 1, true)
    assert.matches("state_file%s+string, required\n%s+the JSON file standing in for a device", r.stdout)
    assert.matches("mode%s+string, default \"safe\", one of fast|safe", r.stdout)
    assert.matches("    port%s+integer, default 443", r.stdout)
    assert.matches("resource: open(self) once before the first phase; closed after the last", r.stdout, 1, true)
    assert.matches("\nhooks (the site file's hooks = { NAME = function(...) end } overrides the default):\n"
      .. "  value_for  the value wanted for a key (default: the configured one)\n", r.stdout, 1, true)
    local missing = helpers.sbot { "help", "component", "no_such_thing" }
    assert.are.equal(2, missing.code)
    assert.matches("no component 'no_such_thing'", missing.stderr, 1, true)
    -- a component that exists but fails to load says why
    local dir = helpers.tmpdir("brokencomp")
    helpers.write_file(dir .. "/broken.lua", 'error("broken on purpose")\n')
    local broken = helpers.sbot({ "help", "component", "broken" },
      { env = "SBOT_COMPONENT_PATH=" .. helpers.shquote(dir) })
    assert.are.equal(2, broken.code)
    assert.matches("component 'broken' does not load: .*broken on purpose", broken.stderr)
  end)
end)

describe("sbot repl --site", function()
  it("loads the site and explores discovery, secrets redacted", function()
    local dir = setup()
    -- the REPL uses the site's component config as is ({id} is the workflow's business)
    helpers.write_file(dir .. "/{id}.state.json", '{"a":"1"}')
    local r = helpers.sbot({ "repl", "--site", dir .. "/site.lua" }, {
      env = ENV,
      stdin = 'discover("test_kv", "s1").discovery.pairs\n'
        .. 'site.servers[1].idrac.password\n#plan("test_kv", "s1").plan\n' })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("2 server(s): s1, s2", r.stdout, 1, true)
    assert.matches('a = "1"', r.stdout, 1, true)
    assert.matches("<redacted>", r.stdout, 1, true)
    assert.matches("\n1\n", r.stdout, 1, true) -- one change planned: b
    assert_no_secrets("repl output", r.stdout .. r.stderr)
    assert.are.same({ a = "1" }, json.decode(helpers.read_file(dir .. "/{id}.state.json")))
    local bad = helpers.sbot { "repl", "--site", dir .. "/nope.lua" }
    assert.are.equal(2, bad.code)
    assert.matches("nope.lua", bad.stderr, 1, true)
  end)
end)

describe("the example workflow (examples/local_boot.lua)", function()
  it("plans, applies, then finds nothing to change", function()
    local dir = helpers.tmpdir("example")
    local argv = { "run", helpers.source_dir .. "/examples/local_boot.lua",
      "--site", helpers.source_dir .. "/examples/site.lua", "--runs-dir", dir .. "/runs",
      "--state-dir", dir .. "/state" }
    local env = "IDRAC_R630_01_PASSWORD=ex-pw-1 IDRAC_R630_02_PASSWORD=ex-pw-2 SBOT_COMPONENT_PATH="
      .. helpers.shquote(helpers.source_dir .. "/examples/components")
    local function go(extra)
      local a = {}
      for i, v in ipairs(argv) do a[i] = v end
      for _, v in ipairs(extra) do a[#a + 1] = v end
      return helpers.sbot(a, { cwd = dir, env = env })
    end
    local r = go { "--plan" }
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("r630-01 / scratch_volume: 1 change(s)", r.stdout, 1, true)
    assert.matches("+ sanboot iscsi:192.0.2.50:3260::::iqn.2005-10.org.freenas.ctl:ocp-r630-01", r.stdout, 1, true)
    assert.is_nil(io.open(dir .. "/example-state/volumes/boot-r630-01.img"))
    r = go {}
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.are.equal(64 * 1048576, fsio.stat(dir .. "/example-state/volumes/boot-r630-01.img").size)
    r = go { "--json" }
    assert.are.equal(0, r.code, r.stderr)
    local rec = assert(json.decode(r.stdout))
    assert.are.equal(4, #rec.results)
    for _, res in ipairs(rec.results) do assert.are.equal(0, #res.plan) end
  end)
end)

describe("workflow steps (ctx:step, site_steps)", function()
  local STEPS = helpers.source_dir .. "/tests/support/workflows/steps.lua"

  local function setup_steps(extra)
    local dir = helpers.tmpdir("steps")
    helpers.write_file(dir .. "/site.lua", string.format([[
      return {
        servers = { { id = "s1" }, { id = "s2" } },
        components = {
          bucket = { state_file = %q, calls_file = %q, want = { bucket = "b-1" } },
          disk = { state_file = %q, calls_file = %q },
          boot = { state_file = %q, calls_file = %q },
        },
        %s
      }]], dir .. "/site.json", dir .. "/site.calls", dir .. "/{id}.disk.json", dir .. "/{id}.calls",
      dir .. "/{id}.boot.json", dir .. "/{id}.calls", extra or ""))
    return dir
  end

  local function run_steps(dir, args)
    local argv = { "run", STEPS, "--site", dir .. "/site.lua" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return helpers.sbot(argv, { cwd = dir })
  end

  it("runs the site step once, then each server's steps with the values of the earlier ones", function()
    local dir = setup_steps()
    local r = run_steps(dir)
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.are.equal("(site) discover\n(site) plan\n(site) apply bucket\n(site) housekeep\n", calls(dir, "site"))
    assert.are.same({ bucket = "b-1" }, json.decode(helpers.read_file(dir .. "/site.json")))
    for _, id in ipairs { "s1", "s2" } do
      assert.are.same({ name = "vol-" .. id, bucket = "b-1" }, json.decode(helpers.read_file(dir .. "/" .. id .. ".disk.json")))
      assert.are.same({ target = "vol-" .. id }, json.decode(helpers.read_file(dir .. "/" .. id .. ".boot.json")))
    end
    -- the site row first, then each server's two steps
    assert.matches("SERVER%s+COMPONENT%s+STATUS[^\n]*\n%(site%)%s+test_kv%s+ok%s+1%s+1[^\n]*\ns1%s+test_kv%s+ok%s+2%s+2[^\n]*\n"
      .. "s1%s+test_kv %(test_kv%-2%)%s+ok%s+1%s+1", r.stdout)
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    assert.are.equal(5, #rec.results)
    assert.are.equal("(site)", rec.results[1].id)
    assert.are.equal("%28site%29/test_kv/state.json", rec.results[1].artifacts[1].stored:match("artifacts/(.*)$"))
    assert.are.equal("test_kv-2", rec.results[3].step) -- the second step of one component gets its own name
    assert.matches("artifacts/s1/test_kv%-2/state.json$", rec.results[3].artifacts[1].stored)
  end)

  it("--plan shows the plan of every step, later steps planned from the earlier steps' discovery", function()
    local dir = setup_steps()
    local r = run_steps(dir, { "--plan", "--server", "s1" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches('(site) / test_kv: 1 change(s)\n  + create kv/bucket: (none) -> "b-1"', r.stdout, 1, true)
    assert.matches('s1 / test_kv: 2 change(s)\n  + create kv/bucket: (none) -> "b-1"\n      (wanted)\n'
      .. '  + create kv/name: (none) -> "vol-s1"', r.stdout, 1, true)
    assert.matches('s1 / test_kv (test_kv-2): 1 change(s)\n  + create kv/target: (none) -> "vol-s1"', r.stdout, 1, true)
    assert.is_nil(io.open(dir .. "/s1.disk.json"))
    assert.is_nil(io.open(dir .. "/site.json"))
  end)

  it("after a failed step the later ones are skipped with the reason, their config not validated", function()
    local dir = setup_steps()
    local r = run_steps(dir, { "--fail", "disk", "--server", "s1" })
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    local disk, boot = rec.results[2], rec.results[3]
    assert.are.equal("failed", disk.status)
    assert.are.same({}, disk.discovery)
    assert.are.equal("skipped", boot.status)
    assert.are.equal("an earlier step (test_kv) failed", boot.reason)
    assert.is_nil(boot.error) -- its incomplete config (no state_file) was not validated
    assert.matches("s1%s+test_kv %(test_kv%-2%)%s+skipped", r.stdout)
    assert.matches("skipped: s1 test_kv (test_kv-2): an earlier step (test_kv) failed", r.stdout, 1, true)
    assert.are.equal("s1 discover\n", calls(dir, "s1"))
  end)

  it("a failed site step skips every server, each with its own row", function()
    local dir = setup_steps()
    local r = run_steps(dir, { "--fail", "bucket" })
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("%(site%)%s+test_kv%s+failed", r.stdout)
    assert.matches("s1%s+%(workflow%)%s+skipped", r.stdout)
    assert.matches("s2%s+%(workflow%)%s+skipped", r.stdout)
    assert.matches("skipped: s2 (workflow): not run: the site step test_kv failed", r.stdout, 1, true)
    assert.are.equal("", calls(dir, "s1"))
  end)

  it("a workflow without site steps, and ctx:step misuse recorded as a (workflow) failure", function()
    local dir = setup_steps()
    local r = run_steps(dir, { "--no-site", "--server", "s1" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.are.same({ name = "vol-s1", bucket = "none" }, json.decode(helpers.read_file(dir .. "/s1.disk.json")))
    r = run_steps(dir, { "--no-site", "--server", "s1", "--bad-step" })
    assert.are.equal(1, r.code)
    assert.matches("error: s1 (workflow): steps() failed: ", r.stdout, 1, true)
    assert.matches("ctx:step(Module, config): Module must be a component module "
      .. '(require "sbot.component.<name>"), got string', r.stdout, 1, true)
  end)

  it("a step with opts.phases = {\"discover\"} only reads, in apply mode too; an unknown phase is misuse", function()
    local dir = setup_steps()
    local r = run_steps(dir, { "--no-site", "--server", "s1", "--peek" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.are.equal("s1 discover\ns1 discover\ns1 plan\ns1 apply bucket\ns1 apply name\ns1 housekeep\n"
      .. "s1 discover\ns1 plan\ns1 apply target\ns1 housekeep\n", calls(dir, "s1"))
    assert.matches("s1%s+test_kv %(peek%)%s+ok%s+%-%s+%-", r.stdout)
    local rec = assert(json.decode(helpers.read_file(only_run_dir(dir) .. "/results.json")))
    assert.are.equal("peek", rec.results[1].step)
    assert.is_nil(rec.results[1].phases.process)
    r = run_steps(dir, { "--no-site", "--server", "s1", "--bad-phases" })
    assert.are.equal(1, r.code)
    assert.matches("opts.phases: unknown phase 'apply' (expected discover, process, housekeep)", r.stdout, 1, true)
  end)

  it("in apply mode the server's lock covers discover: of two runs over the same server one applies", function()
    local dir = setup_steps("")
    local site = helpers.read_file(dir .. "/site.lua"):gsub("disk = {", "disk = { slow_discover = 1.5,", 1)
    helpers.write_file(dir .. "/site.lua", site)
    local cmd = string.format("env -C %s %s run %s --site %s --no-site --server s1", helpers.shquote(dir),
      helpers.shquote(helpers.sbot_bin), helpers.shquote(STEPS), helpers.shquote(dir .. "/site.lua"))
    local a = helpers.spawn(cmd)
    for _ = 1, 100 do
      if calls(dir, "s1"):find("discover") then break end
      os.execute("sleep 0.05")
    end
    local b = helpers.spawn(cmd)
    for _ = 1, 200 do
      if not a:alive() and not b:alive() then break end
      os.execute("sleep 0.05")
    end
    local out = a:output() .. b:output()
    -- one run applied both steps; the other found the server locked before its discover
    local c = calls(dir, "s1")
    local _, applies = c:gsub("apply name", "")
    local _, discovers = c:gsub("discover", "")
    assert.are.equal(1, applies, c .. out)
    assert.are.equal(2, discovers, c) -- disk and boot of the one run
    assert.matches("server s1 is locked by pid %d+", out)
    assert.matches("s1%s+%(lock%)%s+failed", out)
  end)
end)
