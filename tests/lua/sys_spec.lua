-- sbot.sys: process primitives, sys.spawn against real programs.
local sys = require "sbot.sys"

describe("sbot.sys", function()
  it("answers for real pids", function()
    assert.is_true(sys.pid_alive(sys.getpid()))
    assert.is_string(sys.hostname())
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", sys.utc_iso())
  end)

  it("a zombie (exited, not yet reaped) is not alive", function()
    -- sh starts a short sleep and becomes a long one, which never reaps the
    -- short one when it exits: a zombie for as long as the long sleep runs
    local helpers = require "helpers"
    local dir = helpers.tmpdir("zombie")
    local h = helpers.spawn("sh -c " .. helpers.shquote("sleep 0.1 & echo $! > " .. dir .. "/pid; exec sleep 30"))
    local pid, zombie
    for _ = 1, 200 do
      local pf = not pid and io.open(dir .. "/pid")
      if pf then pid = tonumber(pf:read("a")); pf:close() end
      local f = pid and io.open("/proc/" .. pid .. "/stat")
      if f then
        zombie = f:read("a"):match("^%d+ %b() (%a)") == "Z"
        f:close()
        if zombie then break end
      end
      os.execute("sleep 0.02")
    end
    local alive = zombie and sys.pid_alive(pid)
    h:stop("KILL")
    assert.is_true(zombie, "no zombie to look at (pid " .. tostring(pid) .. ")")
    assert.is_false(alive)
  end)

  it("refuses pids that do not fit a pid_t instead of signalling every process", function()
    -- 2^32 - 1 used to become kill(-1, ...): "alive" for pid_alive, and
    -- every process of the user for kill. (kill is only tried with a pid
    -- whose truncation is a harmless, unused one.)
    for _, pid in ipairs({ 4294967295, 0, -1 }) do
      local ok, err = pcall(function() return sys.pid_alive(pid) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w.]*pid_alive' %(pid must be a positive process id%)", err)
    end
    local ok, err = pcall(sys.kill, 4294967296 + 4194305, "CONT")
    assert.is_false(ok)
    assert.matches("pid must be a positive process id", err)
    local r, kerr, code = sys.kill(4194305, "CONT") -- above the kernel's PID_MAX_LIMIT: never a process
    assert.is_nil(r)
    assert.are.equal("kill 4194305: No such process", kerr)
    assert.are.equal("ESRCH", code) -- the errno name, as every OS failure (docs/errors.md)
  end)
end)

describe("sys.spawn", function()
  local helpers = require "helpers"
  local fsio = require "sbot.fsio"

  -- a pid is gone when no process has it, or only a zombie waiting for its reaper
  local function gone(pid)
    for _ = 1, 100 do
      if not sys.pid_alive(pid) then return true end
      local f = io.open("/proc/" .. pid .. "/stat")
      local stat = f and f:read("a") or ""
      if f then f:close() end
      if stat:match("^%d+ %b() Z") then return true end
      os.execute("sleep 0.05")
    end
    return false
  end

  local function secret(value)
    return require("sbot.secret").new(value)
  end

  it("runs a program without a shell: status, stdout, stderr, stdin", function()
    local r = assert(sys.spawn { argv = { "sh", "-c", "echo out; echo err >&2; cat; exit 3" },
      stdin = "from stdin\n" })
    assert.are.same({ status = 3, stdout = "out\nfrom stdin\n", stderr = "err\n" }, r)
    -- arguments reach the program as they are: no shell, no quoting
    local args = { "printf", "[%s]", "$(id)", "a b", "*", "'\"", "" }
    r = assert(sys.spawn { argv = args })
    assert.are.equal("[$(id)][a b][*]['\"][]", r.stdout)
    assert.are.equal(0, r.status)
    r = assert(sys.spawn { argv = { "sh", "-c", "read x; echo \"got $x\"" } }) -- no stdin: /dev/null
    assert.are.equal("got \n", r.stdout)
  end)

  it("gives the child exactly env, in cwd, and none of our descriptors", function()
    local dir = helpers.tmpdir("spawn")
    local r = assert(sys.spawn { argv = { "/usr/bin/env" }, env = { A = "1", B = 2, TOKEN = secret("s3cr3t") } })
    local lines = {}
    for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.are.same({ "A=1", "B=2", "TOKEN=s3cr3t" }, lines)
    r = assert(sys.spawn { argv = { "pwd" }, cwd = dir })
    assert.are.equal(fsio.realpath(dir) .. "\n", r.stdout)
    local held <close> = assert(io.open(dir .. "/held", "w")) -- an fd without close-on-exec
    r = assert(sys.spawn { argv = { "ls", "/proc/self/fd" } })
    assert.are.equal("0\n1\n2\n3\n", r.stdout) -- 3: ls's own directory handle
    r = assert(sys.spawn { argv = { "cat" }, stdin = secret("stdin-pw\n") })
    assert.are.equal("stdin-pw\n", r.stdout)
  end)

  it("reports a program that cannot start as nil, message, errno name", function()
    local r, err, code = sys.spawn { argv = { "sbot-no-such-program" } }
    assert.is_nil(r)
    assert.are.equal("sys.spawn sbot-no-such-program: No such file or directory", err)
    assert.are.equal("ENOENT", code)
    r, err, code = sys.spawn { argv = { "ls" }, cwd = "/nonexistent-dir" }
    assert.is_nil(r)
    assert.are.equal("sys.spawn ls: cwd /nonexistent-dir: No such file or directory", err)
    assert.are.equal("ENOENT", code)
    r, err, code = sys.spawn { argv = { "ls" }, cwd = "/etc/hostname" }
    assert.are.equal("ENOTDIR", code)
    local dir = helpers.tmpdir("spawn")
    assert(fsio.write_atomic(dir .. "/not-executable", "#!/bin/sh\necho ran\n", { mode = "0644" }))
    r, err, code = sys.spawn { argv = { dir .. "/not-executable" } }
    assert.is_nil(r)
    assert.are.equal("EACCES", code)
    assert.matches("Permission denied", err)
  end)

  it("a death by signal is data: the signal's name", function()
    local r = assert(sys.spawn { argv = { "sh", "-c", "echo before; kill -KILL $$" } })
    assert.is_nil(r.status)
    assert.are.equal("KILL", r.signal)
    assert.are.equal("before\n", r.stdout)
    assert.is_nil(r.timed_out)
  end)

  it("stops the whole process group at the deadline", function()
    local dir = helpers.tmpdir("spawn")
    -- sh and a background sleep that holds stdout open: both must go
    local t0 = sys.monotime()
    local r = assert(sys.spawn { argv = { "sh", "-c", "sleep 60 & echo $! > bg.pid; echo started; sleep 60" },
      cwd = dir, timeout = 0.5 })
    assert.is_true(sys.monotime() - t0 < 30, "spawn waited for the sleeps")
    assert.is_true(r.timed_out)
    assert.are.equal("TERM", r.signal)
    assert.is_nil(r.status)
    assert.are.equal("started\n", r.stdout)
    assert.is_true(gone(tonumber(helpers.read_file(dir .. "/bg.pid"))), "the background sleep survived")
    -- a group that ignores TERM gets KILL a grace period later
    r = assert(sys.spawn { argv = { "sh", "-c", "trap '' TERM; echo $$ > sh.pid; sleep 60" }, cwd = dir, timeout = 0.3 })
    assert.is_true(r.timed_out)
    assert.are.equal("KILL", r.signal)
    assert.is_true(gone(tonumber(helpers.read_file(dir .. "/sh.pid"))))
  end)

  it("caps captured output, keeps reading so the child never blocks, and survives an unread stdin", function()
    local r = assert(sys.spawn { argv = { "head", "-c", "3000000", "/dev/zero" }, output_limit = 1000 })
    assert.are.equal(0, r.status)
    assert.are.equal(string.rep("\0", 1000), r.stdout)
    assert.is_true(r.truncated)
    r = assert(sys.spawn { argv = { "head", "-c", "3000000", "/dev/zero" } })
    assert.are.equal(3000000, #r.stdout)
    assert.is_nil(r.truncated)
    r = assert(sys.spawn { argv = { "sh", "-c", "echo e >&2" }, output_limit = 0 })
    assert.are.same({ status = 0, stdout = "", stderr = "", truncated = true }, r)
    -- 8 MB of stdin for a program that reads 5 bytes and exits: EPIPE, not SIGPIPE
    r = assert(sys.spawn { argv = { "head", "-c", "5" }, stdin = string.rep("x", 8 * 1024 * 1024) })
    assert.are.same({ status = 0, stdout = "xxxxx", stderr = "" }, r)
    r = assert(sys.spawn { argv = { "wc", "-c" }, stdin = string.rep("y", 3 * 1024 * 1024 + 7) })
    assert.are.equal("3145735\n", r.stdout)
  end)

  it("Ctrl-C stops the child's group and raises interrupted!", function()
    local dir = helpers.tmpdir("spawn-int")
    local script = dir .. "/spawn.lua"
    helpers.write_file(script, string.format([[
local sys = require "sbot.sys"
local ok, err = pcall(sys.spawn, { argv = { "sh", "-c", "sleep 60 & echo $! > bg.pid; echo $$ > sh.pid; wait" },
  cwd = %q, timeout = 60 })
print("pcall", ok, err)
]], dir))
    local h = helpers.spawn(string.format("%s run %s", helpers.shquote(helpers.sbot_bin), helpers.shquote(script)))
    for _ = 1, 200 do
      local f = io.open(dir .. "/sh.pid")
      if f then f:close() break end
      os.execute("sleep 0.05")
    end
    local sh_pid = tonumber(helpers.read_file(dir .. "/sh.pid"))
    local bg_pid = tonumber(helpers.read_file(dir .. "/bg.pid"))
    assert.is_true(sys.kill(h.pid, "INT"))
    for _ = 1, 100 do
      if not h:alive() then break end
      os.execute("sleep 0.05")
    end
    assert.is_false(h:alive())
    assert.matches("pcall\tfalse\tsys.spawn: interrupted! (Ctrl-C); sh (process group " .. sh_pid .. ") was stopped",
      h:output(), 1, true)
    assert.is_true(gone(sh_pid))
    assert.is_true(gone(bg_pid))
  end)

  it("raises on misuse", function()
    local function raises(opts, msg)
      local ok, err = pcall(sys.spawn, opts)
      assert.is_false(ok)
      assert.matches(msg, err, 1, true)
    end
    raises({ argv = {} }, "sys.spawn: 'argv' must be a non-empty list of strings (got 0 elements)")
    raises({ argv = "ls" }, "sys.spawn: 'argv' must be a non-empty list of strings, got string")
    raises({ argv = { "ls" }, bogus = 1 }, "sys.spawn: unknown option 'bogus'")
    raises({ argv = { "ls", secret("argv-pw") } }, "sys.spawn: argv[2] is a secret: pass it in 'env' or 'stdin'")
    raises({ argv = { "ls", {} } }, "sys.spawn: argv[2] must be a string, got table")
    raises({ argv = { "ls", "a\0b" } }, "sys.spawn: argv[2] contains a NUL byte")
    raises({ argv = { "" } }, "sys.spawn: argv[1] (the program) is empty")
    raises({ argv = { "ls" }, timeout = 0 / 0 }, "sys.spawn: 'timeout' must be > 0 seconds")
    raises({ argv = { "ls" }, timeout = 0 }, "sys.spawn: 'timeout' must be > 0 seconds")
    raises({ argv = { "ls" }, output_limit = -1 }, "sys.spawn: 'output_limit' must be an integer number of bytes >= 0")
    raises({ argv = { "ls" }, env = { ["A=B"] = "x" } }, "sys.spawn: env: 'A=B' is not a variable name")
    raises({ argv = { "ls" }, env = { A = true } }, "sys.spawn: env.A must be a string, number or secret, got boolean")
    raises({ argv = { "ls" }, stdin = 5 }, "sys.spawn: 'stdin' must be a string or secret, got number")
    raises({ argv = { "ls" }, cwd = 5 }, "sys.spawn: 'cwd' must be a string, got number")
  end)
end)

-- The host[:port] grammar of sbot_check_hostport (engine/util.c): the same
-- table of cases tests/c/test_hostport.c reads, through the Lua face.
describe("sys.check_hostport", function()
  local helpers = require "helpers"

  it("accepts and refuses every case of tests/fixtures/hostport_cases.txt, with its reason", function()
    local cases = helpers.hostport_cases()
    assert.is_true(#cases > 60)
    for _, case in ipairs(cases) do
      local ok, err, code = sys.check_hostport(case.value, case.port == "required")
      if case.verdict == "accept" then
        assert.is_true(ok, case.value .. " (port " .. case.port .. "): " .. tostring(err))
      else
        assert.is_nil(ok, case.value .. " (port " .. case.port .. ")")
        assert.are.equal(string.format("'%s' %s", case.value, case.reason), err)
        assert.are.equal("invalid", code)
      end
    end
  end)

  it("takes the port as optional by default; a NUL byte is no host name; misuse raises", function()
    assert.is_true(sys.check_hostport("idrac.lab"))
    assert.is_nil(sys.check_hostport("idrac.lab", true))
    assert.is_nil(sys.check_hostport("idrac\0.lab"))
    assert.has_error(function() sys.check_hostport(5) end)
    assert.has_error(function() sys.check_hostport("a", "yes") end)
  end)
end)
