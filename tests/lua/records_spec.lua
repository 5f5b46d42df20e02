-- Run records: results.json written atomically and checked (a full disk fails
-- the run loudly), and a run directory that tells a finished, a running and
-- a killed run apart (incomplete.lock; run.state, run.list, `sbot runs`).
local helpers = require "helpers"
local json = require "sbot.json"
local sys = require "sbot.sys"
local run = require "sbot.run"

local WF = helpers.source_dir .. "/tests/support/workflows/kv.lua"

local function site(dir, extra)
  helpers.write_file(dir .. "/site.lua", string.format([[
    return { servers = { { id = "s1" } },
      components = { test_kv = { state_file = %q, calls_file = %q, want = { a = "1" } %s } } }]],
    dir .. "/s1.json", dir .. "/s1.calls", extra or ""))
  return dir .. "/site.lua"
end

local function esc(s) return (s:gsub("%p", "%%%0")) end

local function ls(dir)
  local _, _, out = helpers.sh("ls -A " .. helpers.shquote(dir))
  return out
end

describe("run records", function()
  it("a finished run: results.json, no marker; run.state and sbot runs say ok", function()
    local dir = helpers.tmpdir("rec")
    local r = helpers.sbot({ "run", WF, "--site", site(dir), "--runs-dir", dir .. "/runs" }, { cwd = dir })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    local list = assert(run.list(dir .. "/runs"))
    assert.are.equal(1, #list)
    assert.are.equal("artifacts\nlog.jsonl\nresults.json\n", ls(list[1].dir))
    local st = list[1].state
    assert.are.same({ state = "complete", ok = true, workflow = "kv", mode = "apply", text = "ok", servers = { "s1" } },
      { state = st.state, ok = st.ok, workflow = st.workflow, mode = st.mode, text = st.text, servers = st.servers })
    assert.matches("^%d+%-%d+%-%d+T[%d:.]+Z$", st.started)
    assert.are.equal("number", type(st.ms))
    -- `sbot runs DIR` is `sbot runs list DIR`: what ran, when, where, how it ended
    for _, args in ipairs { { "runs", dir .. "/runs" }, { "runs", "list", dir .. "/runs" },
      { "runs", "list", "--runs-dir", dir .. "/runs" } } do
      local out = helpers.sbot(args)
      assert.are.equal(0, out.code, out.stderr)
      assert.matches("^RUN +OUTCOME +WORKFLOW +SERVERS +TIME\n" .. esc(list[1].id) .. "  ok +kv %(apply%)  s1 +[%d.]+ m?s\n$",
        out.stdout)
    end
  end)

  it("a full disk: results.json is not written, sbot says so and exits 1, never ok; the run stays incomplete", function()
    local dir = helpers.tmpdir("full")
    local mnt = dir .. "/full"
    os.execute("mkdir -p " .. helpers.shquote(mnt))
    if not os.execute("mount -t tmpfs -o size=64k tmpfs " .. helpers.shquote(mnt) .. " 2>/dev/null") then
      pending("cannot mount a tmpfs here (not root?): the full-disk case is not checked")
      return
    end
    local ok, err = pcall(function()
      -- 15 of the 16 pages taken: the run's marker gets the last one
      assert(os.execute("dd if=/dev/zero of=" .. helpers.shquote(mnt .. "/filler") .. " bs=4096 count=15 2>/dev/null"))
      -- no housekeep: no artifact, so every component is ok and only the record fails
      local r = helpers.sbot({ "run", WF, "--site", site(dir), "--runs-dir", mnt .. "/runs",
        "--state-dir", dir .. "/state", "--phases", "discover,process" }, { cwd = dir })
      assert.are.equal(1, r.code, r.stdout .. r.stderr)
      assert.matches("run %S+ %(apply%) FAILED\n", r.stdout)
      assert.matches("s1%s+test_kv%s+ok", r.stdout)
      assert.is_nil(r.stdout:match("%) ok\n"))
      assert.matches("error: run record: results%.json not written: write: " .. esc(mnt) .. "/runs/%S+/results%.json: "
        .. "No space left on device", r.stdout)
      assert.matches("sbot: run record " .. esc(mnt) .. "/runs/%S+: results%.json not written: ", r.stderr)
      local list = assert(run.list(mnt .. "/runs"))
      assert.are.equal(1, #list)
      -- no results.json, not even an empty or partial one, and no temp file left
      assert.are.equal("artifacts\nincomplete.lock\nlog.jsonl\n", ls(list[1].dir))
      assert.are.equal("incomplete", list[1].state.state)
      assert.matches("^incomplete %(pid %d+ on %S+ gone%)$", list[1].state.text)
    end)
    os.execute("umount " .. helpers.shquote(mnt))
    assert(ok, err)
  end)

  it("a run killed with SIGKILL is running while it runs, then incomplete (pid P gone)", function()
    local dir = helpers.tmpdir("killed")
    local s = site(dir, ", hang_discover = true")
    local h = helpers.spawn(string.format("%s run %s --site %s --runs-dir %s", helpers.shquote(helpers.sbot_bin),
      helpers.shquote(WF), helpers.shquote(s), helpers.shquote(dir .. "/runs")))
    for _ = 1, 200 do
      if io.open(dir .. "/s1.calls.pid") then break end
      os.execute("sleep 0.05")
    end
    local list = assert(run.list(dir .. "/runs"))
    assert.are.equal(1, #list)
    assert.are.equal("running", list[1].state.state)
    assert.are.equal(h.pid, list[1].state.pid)
    assert.matches("^running %(pid " .. h.pid .. " on %S+ since %S+%)$", list[1].state.text)
    assert.is_true(sys.kill(h.pid, "KILL"))
    for _ = 1, 100 do
      if not h:alive() then break end
      os.execute("sleep 0.05")
    end
    local worker = tonumber(helpers.read_file(dir .. "/s1.calls.pid"))
    for _ = 1, 100 do -- the worker dies with its parent (PR_SET_PDEATHSIG)
      if not sys.pid_alive(worker) then break end
      os.execute("sleep 0.05")
    end
    assert.is_false(sys.pid_alive(worker))
    local st = run.state(list[1].dir)
    assert.are.equal("incomplete", st.state)
    assert.are.equal("incomplete (pid " .. h.pid .. " on " .. sys.hostname() .. " gone)", st.text)
    local out = helpers.sbot { "runs", dir .. "/runs" }
    assert.matches("\n" .. esc(list[1].id) .. "  incomplete %(pid " .. h.pid .. " on " .. esc(sys.hostname())
      .. " gone%)  %-         %-        %-\n$", out.stdout)
  end)

  it("a directory without marker or record, and a runs dir that is not there", function()
    local dir = helpers.tmpdir("odd")
    os.execute("mkdir -p " .. helpers.shquote(dir .. "/runs/20260101T000000Z-abcdef"))
    helpers.write_file(dir .. "/runs/not-a-run", "")
    local list = assert(run.list(dir .. "/runs"))
    assert.are.equal(1, #list)
    assert.are.equal("incomplete (no results.json)", list[1].state.text)
    local out = helpers.sbot { "runs", dir .. "/nothing" }
    assert.are.equal(2, out.code)
    assert.matches("^sbot runs: no runs in " .. esc(dir) .. "/nothing %(list: " .. esc(dir)
      .. "/nothing: No such file or directory%)\n$", out.stderr)
    assert.are.equal("no runs in " .. dir .. "/runs/20260101T000000Z-abcdef\n",
      helpers.sbot({ "runs", dir .. "/runs/20260101T000000Z-abcdef" }).stdout)
  end)

  it("runs show and report: an unknown or ambiguous id, a missing option", function()
    local dir = helpers.tmpdir("ids")
    for _, id in ipairs { "20260101T000000Z-aaaaaa", "20260101T000001Z-bbbbbb" } do
      os.execute("mkdir -p " .. helpers.shquote(dir .. "/runs/" .. id))
      helpers.write_file(dir .. "/runs/" .. id .. "/results.json", json.encode { run_id = id, ok = true,
        mode = "apply", workflow = "kv", results = json.array {} })
    end
    local out = helpers.sbot { "runs", "show", "2026", dir .. "/runs" }
    assert.are.equal(1, out.code)
    assert.matches("run id 2026 is ambiguous in " .. esc(dir) .. "/runs: 20260101T000000Z%-aaaaaa, "
      .. "20260101T000001Z%-bbbbbb", out.stderr)
    out = helpers.sbot { "runs", "show", "2027", dir .. "/runs" }
    assert.matches("no run 2027 in ", out.stderr)
    out = helpers.sbot { "runs", "show", "last", dir .. "/runs" }
    assert.are.equal(0, out.code, out.stderr)
    assert.matches("run 20260101T000001Z%-bbbbbb %(apply%) ok", out.stdout)
    out = helpers.sbot { "runs", "report", "last", dir .. "/runs" }
    assert.are.equal(2, out.code)
    assert.matches("give %-%-html FILE and/or %-%-junit FILE", out.stderr)
    out = helpers.sbot { "runs", "frobnicate", "x", "y" }
    assert.are.equal(2, out.code)
  end)
end)
