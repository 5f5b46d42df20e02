-- sbot.progress: the API, its log-mode lines (the terminal board is
-- tests/repl/test_progress.sh), throttling, and the waits wired into the
-- primitives: http (progress = "name"), sys.spawn, sbot.store, TrueNAS jobs
-- (against the lab), fleet workers labelled with their server.
local helpers = require "helpers"
local test_servers = require "test_servers"

-- Run a Lua snippet in a fresh sbot with progress in log mode; returns the
-- result of helpers.sbot.
local function run_lua(code, env)
  local dir = helpers.tmpdir("progress")
  helpers.write_file(dir .. "/t.lua", code)
  return helpers.sbot({ "run", dir .. "/t.lua" }, { env = "SBOT_PROGRESS=log " .. (env or "") })
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

describe("sbot.progress", function()
  it("log mode: a line when a wait begins, one per log_interval, and one when it ends", function()
    local r = run_lua([[
      local progress = require "sbot.progress"
      local sys = require "sbot.sys"
      assert(progress.mode() == "log", progress.mode())
      progress.configure { log_interval = 0.2 }
      local w <close> = progress.start("iDRAC job JID_7", "Scheduled")
      local t0 = sys.monotime()
      local i = 0
      while sys.monotime() - t0 < 0.7 do       -- updates as fast as the loop goes
        i = i + 1
        w:update(math.min((sys.monotime() - t0) / 0.7, 1), "Running")
      end
      io.stdout:write(i, "\n")
    ]])
    assert.are.equal(0, r.code, r.stderr)
    assert.is_true(tonumber(r.stdout) > 1000, "the loop ran " .. r.stdout .. " times")
    assert.matches("INFO  waiting: iDRAC job JID_7 detail=Scheduled progress=start\n", r.stderr)
    -- throttled: thousands of updates, a few lines (one per 0.2 s)
    local updates = count(r.stderr, "progress=update")
    assert.is_true(updates >= 2 and updates <= 4, updates .. " update lines:\n" .. r.stderr)
    assert.matches("INFO  waiting: iDRAC job JID_7 detail=Running elapsed_s=0%.%d+ percent=%d+ progress=update", r.stderr)
    assert.matches("INFO  done: iDRAC job JID_7 after 0%.%d s detail=Running elapsed_s=0%.%d+ percent=%d+ progress=done\n",
      r.stderr)
  end)

  it("--log-json: JSON lines with the wait, percent and elapsed time", function()
    local dir = helpers.tmpdir("progress")
    helpers.write_file(dir .. "/t.lua", [[
      local progress = require "sbot.progress"
      progress.update("upload agent.iso", 0.25, "25 of 100 MiB")
      progress.done("upload agent.iso")
    ]])
    local r = helpers.sbot({ "--log-json", "--log-level", "debug", "run", dir .. "/t.lua" })
    assert.are.equal(0, r.code, r.stderr)
    local json = require "sbot.json"
    local lines = {}
    for l in r.stderr:gmatch("[^\n]+") do lines[#lines + 1] = assert(json.decode(l)) end
    assert.are.equal(2, #lines, r.stderr)
    assert.are.same({ "info", "waiting: upload agent.iso", "start", "upload agent.iso", 25, "25 of 100 MiB" },
      { lines[1].level, lines[1].msg, lines[1].progress, lines[1].wait, lines[1].percent, lines[1].detail })
    assert.are.equal("debug", lines[2].level) -- a short wait ends quietly
    assert.are.equal("done", lines[2].progress)
    assert.are.equal("number", type(lines[2].elapsed_s))
  end)

  it("a short wait ends quietly (debug), a wait of a second or more says so", function()
    local r = run_lua([[
      local progress = require "sbot.progress"
      progress.update("quick", nil)
      progress.done("quick")
      progress.update("slow", nil)
      assert(require("sbot.sys").spawn { argv = { "sleep", "1.1" } })
      progress.done("slow")
    ]])
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("waiting: quick", r.stderr)
    assert.is_nil(r.stderr:find("done: quick", 1, true))
    assert.matches("done: slow after 1%.%d s", r.stderr)
  end)

  it("off: nothing; a registered secret in a wait's name is redacted", function()
    local r = run_lua([[
      local progress = require "sbot.progress"
      require("sbot.log").add_secret("tok-123456")
      progress.update("login with tok-123456", 0.5)
      progress.done("login with tok-123456")
      progress.configure { mode = "off" }
      progress.update("hidden wait", 0.5)
      progress.done("hidden wait")
    ]])
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("waiting: login with <redacted>", r.stderr)
    assert.is_nil(r.stderr:find("tok-123456", 1, true))
    assert.is_nil(r.stderr:find("hidden wait", 1, true))
  end)

  it("misuse raises: a fraction out of range, an unknown option, a wait done twice is harmless", function()
    local progress = require "sbot.progress"
    assert.has_error(function() progress.update("x", 1.5) end)
    assert.has_error(function() progress.update("x", -0.1) end)
    assert.has_error(function() progress.update(nil, 0.5) end)
    assert.has_error(function() progress.configure { colour = true } end,
      "progress.configure: unknown key 'colour' (expected mode, log_interval)")
    assert.has_error(function() progress.configure { mode = "loud" } end)
    progress.configure { mode = "off" }
    local w = progress.start("twice")
    w:done()
    w:done()
    assert.has_error(function() w:update(0.5) end, "progress: wait 'twice' is done already")
    progress.configure { mode = "auto" }
  end)

  it("fleet workers: each wait's lines name the worker's label (the server)", function()
    local r = run_lua([[
      local fleet = require "sbot.fleet"
      local out = fleet.map({ 1, 2 }, function(n)
        local progress = require "sbot.progress"
        progress.update("job " .. n, 0.5)
        progress.done("job " .. n)
        return n
      end, { labels = { "r630-01", "r630-02" } })
      assert(out[1].ok and out[2].ok)
    ]])
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("waiting: job 1 percent=50 progress=start server=r630%-01\n", r.stderr)
    assert.matches("waiting: job 2 percent=50 progress=start server=r630%-02\n", r.stderr)
    assert.has_error(function() require("sbot.fleet").map({ 1 }, function() end, { labels = { 7 } }) end,
      "fleet.map: labels[1] must be a string, got number")
  end)

  it("sys.spawn{progress = name}: the child's run is a wait", function()
    local r = run_lua([[
      local sys = require "sbot.sys"
      local res = assert(sys.spawn { argv = { "sleep", "1.05" }, progress = "reboot r630-01" })
      assert(res.status == 0)
      local ok, err = pcall(sys.spawn, { argv = { "true" }, progress = 5 })
      io.stdout:write(tostring(err))
    ]])
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("waiting: reboot r630%-01 progress=start\n", r.stderr)
    assert.matches("done: reboot r630%-01 after 1%.%d s", r.stderr)
    assert.matches("sys.spawn: 'progress' must be a string %(the wait's name%), got number", r.stdout)
  end)

  describe("http progress = name", function()
    local srv
    setup(function() srv = test_servers.httpbin() end)
    teardown(function() if srv then srv:stop() end end)

    it("a download reports bytes and percent, and ends with the transfer", function()
      local dir = helpers.tmpdir("progress")
      local r = run_lua(string.format([[
        require("sbot.progress").configure { log_interval = 0.2 }
        local http = require "sbot.http"
        local res = assert(http.get(%q, { output_file = %q, progress = "download drip" }))
        assert(res.status == 200, res.status)
        -- a function still works as before
        local calls = 0
        assert(http.get(%q, { progress = function(done, total) calls = calls + 1 end }))
        io.stdout:write(calls)
      ]], srv.url("/drip/4096?chunks=8&ms=100"), dir .. "/out", srv.url("/drip/100?chunks=2&ms=10")))
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("waiting: download drip", r.stderr)
      assert.matches("detail=[%d.]+ K?i?B of 4%.0 KiB elapsed_s=[%d.]+ percent=%d+ progress=update", r.stderr)
      assert.matches("done: download drip after 0%.%d s detail=4%.0 KiB of 4%.0 KiB elapsed_s=[%d.]+ percent=100", r.stderr)
      assert.is_true(tonumber(r.stdout) >= 1)
      assert.are.equal(4096, #helpers.read_file(dir .. "/out"))
    end)

    it("a failed transfer ends its wait too", function()
      local r = run_lua(string.format([[
        local http = require "sbot.http"
        local res, err = http.get(%q, { progress = "doomed", retries = false, timeout = 0.3 })
        assert(not res)
        io.stdout:write(err)
      ]], srv.url("/drip/100?chunks=10&ms=200")))
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("waiting: doomed", r.stderr)
      assert.matches("timeout", r.stdout)
      -- its end is logged at debug (short), but it is ended: no leftover
      local r2 = run_lua(string.format([[
        local http = require "sbot.http"
        local res = http.get(%q, { progress = "doomed", retries = false, timeout = 0.3 })
      ]], srv.url("/drip/100?chunks=10&ms=200")), "SBOT_LOG_LEVEL=debug")
      assert.matches("done: doomed after 0%.%d s", r2.stderr)
    end)
  end)

  it("store:put{file, progress}: the copy is a wait", function()
    local dir = helpers.tmpdir("progress")
    helpers.write_file(dir .. "/iso", string.rep("x", 1000))
    local r = run_lua(string.format([[
      local st = assert(require("sbot.store").open("file://%s/store"))
      assert(st:put("a.iso", { file = %q, progress = "upload a.iso" }))
      local ok, err = pcall(st.put, st, "b", { file = %q, progress = 1 })
      io.stdout:write(err)
    ]], dir, dir .. "/iso", dir .. "/iso"), "SBOT_LOG_LEVEL=debug")
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("waiting: upload a%.iso", r.stderr)
    assert.matches("done: upload a%.iso after", r.stderr)
    assert.matches("source.progress must be a string", r.stdout)
  end)

  describe("TrueNAS jobs (the lab)", function()
    local labclient = require "labclient"
    local lab
    setup(function() lab = labclient.start_lab { "--servers", "1" } end)
    teardown(function() if lab then lab.stop() end end)

    it("a job followed without a callback is a wait with TrueNAS's percent; with one, it is not", function()
      local r = run_lua(string.format([[
        local site = assert(require("sbot.site").load(%q))
        local tn = assert(require("sbot.truenas").connect { url = site.truenas.url,
          api_key = site.truenas.api_key, tls = site.truenas.tls })
        assert(tn:call("service.control", "START", "iscsitarget", {}))
        local seen = 0
        local tn2 = assert(require("sbot.truenas").connect { url = site.truenas.url,
          api_key = site.truenas.api_key, tls = site.truenas.tls,
          progress = function(job) seen = seen + 1 end })
        assert(tn2:call("service.control", "STOP", "iscsitarget", {}))
        io.stdout:write(seen)
      ]], lab.dir .. "/site.lua"), "SBOT_LOG_LEVEL=debug")
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("waiting: TrueNAS job %d+ service%.control percent=%d+ progress=start", r.stderr)
      assert.matches("done: TrueNAS job %d+ service%.control after", r.stderr)
      assert.are.equal(1, count(r.stderr, "waiting: TrueNAS job"), r.stderr)
      assert.is_true(tonumber(r.stdout) >= 1)
    end)

    it("an S3 multipart upload with progress = name is one wait over all its parts", function()
      local dir = helpers.tmpdir("progress")
      local f = assert(io.open(dir .. "/big", "wb"))
      f:write(string.rep("0123456789abcdef", 11 * 65536)) -- 11 MiB: 3 parts of 5 MiB
      f:close()
      local r = run_lua(string.format([[
        require("sbot.progress").configure { log_interval = 0 }
        local site = assert(require("sbot.site").load(%q))
        local c = assert(require("sbot.s3").client { endpoint = site.s3.endpoint, region = site.s3.region,
          path_style = true, tls = site.s3.tls, access_key = site.s3.access_key, secret_key = site.s3.secret_key,
          multipart_threshold = 5 * 1024 * 1024 })
        assert(c:put_object { bucket = site.s3.bucket, key = "progress/big", file = %q, progress = "upload big" })
      ]], lab.dir .. "/site.lua", dir .. "/big"), "SBOT_LOG_LEVEL=debug")
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(1, count(r.stderr, "waiting: upload big progress=start"), r.stderr)
      assert.matches("detail=[%d.]+ of 11%.0 MiB elapsed_s=[%d.]+ percent=%d+ progress=update", r.stderr)
      assert.matches("done: upload big after [%d.]+ s detail=11%.0 of 11%.0 MiB elapsed_s=[%d.]+ percent=100", r.stderr)
    end)
  end)
end)
