-- sbot.fleet: forked workers with fresh Lua states.
local fleet = require "sbot.fleet"
local helpers = require "helpers"
local secret = require "sbot.secret"
local sys = require "sbot.sys"

local function zombies()
  local _, _, out = helpers.sh("ps -o stat= --ppid " .. sys.getpid())
  local n = 0
  for line in out:gmatch("[^\n]+") do if line:match("^%s*Z") then n = n + 1 end end
  return n
end

-- Whether process group pgid still has a process that runs. A killed process
-- stays a zombie until its parent reaps it - for an orphan, init, which may
-- take its time - and pgrep lists zombies: they have exited, they do not count.
local function group_runs(pgid)
  local _, _, out = helpers.sh("ps -o stat= -g " .. pgid)
  for line in out:gmatch("[^\n]+") do
    if not line:match("^%s*Z") then return true end
  end
  return false
end

-- The pid a worker wrote to path, once it has written it (the file exists
-- from its open on, empty until the write: a Ctrl-C then would stop the worker
-- before it says who it is).
local function pid_in(path)
  local f = io.open(path)
  if not f then return nil end
  local pid = tonumber(f:read("a"))
  f:close()
  return pid
end

describe("sbot.fleet.map", function()
  it("returns each item's result in item order, from fresh interpreters", function()
    local factor = 3
    local data = { offset = 100 }
    local json = require "sbot.json"
    _G.only_in_parent = true
    local res = fleet.map({ 5, 6, 7, 8 }, function(x, i)
      return { v = x * factor + data.offset, i = i, pid = sys.getpid(),
        fresh = _G.only_in_parent == nil, arr = json.encode(json.array {}) }
    end, { jobs = 2 })
    _G.only_in_parent = nil
    assert.are.equal(4, #res)
    local pids = {}
    for i, r in ipairs(res) do
      assert.is_true(r.ok, r.error)
      assert.are.equal(i, r.item)
      assert.are.equal(({ 5, 6, 7, 8 })[i] * 3 + 100, r.value.v)
      assert.are.equal(i, r.value.i)
      assert.is_true(r.value.fresh)
      assert.are.equal("[]", r.value.arr)
      assert.are_not.equal(sys.getpid(), r.value.pid)
      pids[r.value.pid] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.are.equal(4, n)
  end)

  it("does not hand the parent's open files and sockets to its workers", function()
    local dir = helpers.tmpdir("fleet-fds")
    local marker = dir .. "/parent-only"
    local f = assert(io.open(marker, "w"))
    local res = fleet.map({ 1, 2 }, function()
      local lfs = require "lfs"
      local open = {}
      for fd in lfs.dir("/proc/self/fd") do
        local a = fd ~= "." and fd ~= ".." and lfs.symlinkattributes("/proc/self/fd/" .. fd)
        if a and a.target then open[#open + 1] = a.target end
      end
      return open
    end, { jobs = 2 })
    f:close()
    for _, r in ipairs(res) do
      assert.is_true(r.ok, r.error)
      for _, target in ipairs(r.value) do
        assert.are_not.equal(marker, target)
      end
      -- stdin, stdout, stderr, the result pipe and the listing's own directory
      assert.is_true(#r.value <= 5, table.concat(r.value, " "))
    end
  end)

  it("isolates a crashing and a hanging worker; the others finish; no zombies", function()
    local res = fleet.map({ "ok1", "crash", "hang", "ok2" }, function(item)
      -- SIGKILL: a crash no handler (ASan included) can intercept
      if item == "crash" then assert(sys.kill(sys.getpid(), "KILL")) end
      if item == "hang" then while true do end end
      return item
    end, { jobs = 4, timeout = 2 * helpers.slowdown }) -- the others finish well within it
    assert.is_true(res[1].ok)
    assert.are.equal("ok1", res[1].value)
    assert.is_false(res[2].ok)
    assert.are.equal("crash", res[2].reason)
    assert.matches("worker for item 2 %(pid %d+%) crashed: killed by signal 9", res[2].error)
    assert.is_false(res[3].ok)
    assert.are.equal("timeout", res[3].reason)
    assert.matches("worker for item 3 %(pid %d+%) timed out after", res[3].error)
    assert.is_true(res[4].ok)
    assert.are.equal("ok2", res[4].value)
    assert.are.equal(0, zombies())
  end)

  it("reports a Lua error as that item's error, with secrets redacted", function()
    local pw = secret.new("fleet-secret-value-42")
    local res = fleet.map({ 1 }, function() error("login failed with " .. pw:reveal()) end)
    assert.is_false(res[1].ok)
    assert.are.equal("error", res[1].reason)
    assert.matches("login failed with <redacted>", res[1].error, 1, true)
    assert.is_nil(res[1].error:find("fleet-secret-value-42", 1, true))
  end)

  it("copies secrets as secrets, and refuses open resources", function()
    local pw = secret.new("copied-secret-7")
    local res = fleet.map({ 1 }, function()
      return { is_secret = secret.is_secret(pw), len = #pw:reveal(), shown = tostring(pw) }
    end)
    assert.are.same({ is_secret = true, len = 15, shown = "<redacted>" }, res[1].value)
    local f = io.stdout
    res = fleet.map({ 1 }, function() return f ~= nil end)
    assert.is_false(res[1].ok)
    assert.matches("fn upvalue 'f' is a FILE%* %(an open resource%?%), which cannot be copied", res[1].error)
  end)

  it("checks its arguments", function()
    assert.has_error(function() fleet.map({ 1 }, print, { jobs = 0 }) end,
      "fleet.map: jobs must be an integer from 1 to 256")
    assert.are.equal(0, #fleet.map({}, function() end))
  end)

  it("returns finished results and marks the rest with partial = true on Ctrl-C", function()
    local dir = helpers.tmpdir("fleet")
    local script = dir .. "/partial.lua"
    helpers.write_file(script, [[
      local fleet, json, sys = require "sbot.fleet", require "sbot.json", require "sbot.sys"
      local dir = ...
      local res, interrupted = fleet.map({ 1, 2, 3 }, function(i)
        if i == 1 then return "done" end
        local f = assert(io.open(dir .. "/w" .. i, "w")); f:write(sys.getpid()); f:close()
        while true do end
      end, { jobs = 2, partial = true })
      local f = assert(io.open(dir .. "/out.json", "w"))
      f:write(json.encode { res = res, interrupted = interrupted })
      f:close()
    ]])
    local h = helpers.spawn(string.format("%s run %s %s", helpers.shquote(helpers.sbot_bin),
      helpers.shquote(script), helpers.shquote(dir)))
    assert.is_truthy(helpers.wait_for(function() return pid_in(dir .. "/w2") and pid_in(dir .. "/w3") end, 60),
      "the workers did not start: " .. h:output())
    assert.is_true(sys.kill(h.pid, "INT"))
    assert.is_true(helpers.wait_for(function() return not h:alive() end, 60), "sbot did not stop on Ctrl-C")
    local out = assert(require "sbot.json".decode(helpers.read_file(dir .. "/out.json")))
    assert.are.equal("Ctrl-C", out.interrupted)
    assert.are.equal("done", out.res[1].value)
    for i = 2, 3 do
      assert.are.equal("interrupted", out.res[i].reason)
      assert.is_false(sys.pid_alive(tonumber(helpers.read_file(dir .. "/w" .. i))))
    end
  end)

  it("stops every worker (and what they started) on Ctrl-C", function()
    local dir = helpers.tmpdir("fleet")
    local h = helpers.spawn(string.format("%s run %s/tests/support/scripts/fleet_hang.lua %s",
      helpers.shquote(helpers.sbot_bin), helpers.shquote(helpers.source_dir), helpers.shquote(dir)))
    local pids = {}
    helpers.wait_for(function()
      pids = {}
      for i = 1, 3 do pids[#pids + 1] = pid_in(dir .. "/worker." .. i) end
      return #pids == 3
    end, 60)
    assert.are.equal(3, #pids)
    assert.is_true(sys.kill(h.pid, "INT"))
    helpers.wait_for(function() return not h:alive() end, 60)
    assert.is_false(h:alive())
    assert.matches("interrupted! %(Ctrl%-C%); every worker was stopped", h:output())
    for _, pid in ipairs(pids) do
      assert.is_false(sys.pid_alive(pid), "worker " .. pid .. " still alive")
      -- signals take a moment to land on a loaded machine
      helpers.wait_for(function() return not group_runs(pid) end, 30)
      assert.is_false(group_runs(pid), "process group " .. pid .. " still has processes")
    end
  end)

  it("stops a worker past its timeout with SIGTERM: its scopes close, what it sends back is kept", function()
    local dir = helpers.tmpdir("fleet")
    local t0 = sys.monotime()
    local res = fleet.map({ 1 }, function()
      local scope <close> = setmetatable({}, { __close = function()
        local f = assert(io.open(dir .. "/closed", "w")); f:write("closed"); f:close()
      end })
      local ok, err = pcall(function() while true do os.execute("sleep 0.05") end end)
      return { caught = tostring(err), ok = ok }
    end, { timeout = 0.5, grace = 60 })
    assert.is_true(sys.monotime() - t0 < 30, "the worker exited on SIGTERM, not after the grace period")
    local r = res[1]
    assert.is_false(r.ok)
    assert.are.equal("timeout", r.reason)
    assert.matches("^worker for item 1 %(pid %d+%) timed out after 0%.%d s: stopped with SIGTERM, "
      .. "it exited %d+%.%d s later$", r.error)
    assert.matches("interrupted! (the worker's time limit passed)", r.value.caught, 1, true)
    assert.are.equal("closed", helpers.read_file(dir .. "/closed"))
  end)

  it("kills a stopped worker that does not exit within the grace period", function()
    local t0 = sys.monotime()
    local res = fleet.map({ 1 }, function()
      local stuck <close> = setmetatable({}, { __close = function() os.execute("sleep 30") end })
      while true do os.execute("sleep 0.05") end
    end, { timeout = 0.3, grace = 0.4 })
    assert.is_true(sys.monotime() - t0 < 20, "killed after the grace period, not when its 30 s close ended")
    assert.are.equal("timeout", res[1].reason)
    assert.matches("stopped with SIGTERM, then killed (SIGKILL) after the 0.4 s grace period", res[1].error, 1, true)
    -- killed processes take a moment to disappear (longer on a loaded machine)
    local left = not helpers.wait_for(function() return not group_runs(res[1].pid) end, 30)
    local _, _, ps = helpers.sh("ps -o pid,ppid,pgid,stat,etimes,cmd -g " .. res[1].pid)
    assert.is_false(left, "the worker's sleep was killed with it:\n" .. ps)
  end)

  it("checks timeout and grace", function()
    for _, bad in ipairs { -1, 0 / 0, math.huge, "5" } do
      assert.has_error(function() fleet.map({ 1 }, function() end, { grace = bad }) end,
        "fleet.map: grace must be a number of seconds >= 0")
      assert.has_error(function() fleet.map({ 1 }, function() end, { timeout = bad }) end,
        "fleet.map: timeout must be a number of seconds >= 0")
    end
  end)

  it("Ctrl-C stops workers gracefully; a second Ctrl-C kills them at once", function()
    local dir = helpers.tmpdir("fleet")
    local script = dir .. "/twice.lua"
    helpers.write_file(script, [[
      local fleet, json, sys = require "sbot.fleet", require "sbot.json", require "sbot.sys"
      local dir = ...
      local res, interrupted = fleet.map({ 1, 2 }, function(i)
        local scope <close> = setmetatable({}, { __close = function()
          local f = assert(io.open(dir .. "/closing" .. i, "w")); f:close()
          if i == 2 then os.execute("sleep 60") end -- item 2 closes slowly
        end })
        local f = assert(io.open(dir .. "/w" .. i, "w")); f:write(sys.getpid()); f:close()
        while true do os.execute("sleep 0.05") end
      end, { jobs = 2, grace = 60, partial = true })
      local f = assert(io.open(dir .. "/out.json", "w"))
      f:write(json.encode { res = res, interrupted = interrupted })
      f:close()
    ]])
    local h = helpers.spawn(string.format("%s run %s %s", helpers.shquote(helpers.sbot_bin),
      helpers.shquote(script), helpers.shquote(dir)))
    assert.is_truthy(helpers.wait_for(function() return pid_in(dir .. "/w1") and pid_in(dir .. "/w2") end, 60),
      "the workers did not start: " .. h:output())
    assert.is_true(sys.kill(h.pid, "INT"))
    helpers.wait_for(function() return io.open(dir .. "/closing1") and io.open(dir .. "/closing2") end, 50)
    assert.is_truthy(io.open(dir .. "/closing1"), "item 1 closed its scope on the first Ctrl-C")
    assert.is_truthy(io.open(dir .. "/closing2"), "item 2 is closing its scope")
    assert.is_true(h:alive(), "the parent waits for item 2 within the grace period")
    assert.is_true(sys.kill(h.pid, "INT"))
    helpers.wait_for(function() return not h:alive() end, 30)
    assert.is_false(h:alive())
    local out = assert(require "sbot.json".decode(helpers.read_file(dir .. "/out.json")))
    assert.are.equal("Ctrl-C", out.interrupted)
    assert.matches("interrupted! (Ctrl-C) while item was running: its worker was stopped with SIGTERM, it exited",
      out.res[1].error, 1, true)
    assert.matches("stopped with SIGTERM, then killed (SIGKILL) at the second Ctrl-C", out.res[2].error, 1, true)
    assert.is_false(sys.pid_alive(tonumber(helpers.read_file(dir .. "/w2"))))
  end)
end)
