--- Shared helpers for the busted specs: temp dirs, running sbot, and
-- starting/stopping real server processes on loopback.
local M = {}

M.sbot_bin = os.getenv("SBOT_BIN") or "build/sbot"
M.source_dir = os.getenv("SBOT_SOURCE_DIR") or "."
M.tmp_root = os.getenv("SBOT_TEST_TMP") or "/tmp/sbot-test"

--- How much slower than a plain build this one runs (SBOT_TEST_SLOWDOWN, an
-- integer >= 1; tests/CMakeLists.txt sets 3 for the sanitizer build, where
-- everything takes 2-3 times as long). A test about timing whose windows are
-- measured in wall-clock time scales them by this (ttl, sleeps, bounds
-- together), so that the same order of events happens with the same slack
-- relative to the machine; a test not about timing just waits generously.
M.slowdown = math.tointeger(tonumber(os.getenv("SBOT_TEST_SLOWDOWN") or "1")) or 1
assert(M.slowdown >= 1, "SBOT_TEST_SLOWDOWN must be an integer >= 1")

--- Quote a string for /bin/sh.
function M.shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Run a shell command; returns ok (exit 0), exit code, stdout.
function M.sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok == true, code, out
end

--- A fresh empty directory under the test temp root.
function M.tmpdir(tag)
  os.execute("mkdir -p " .. M.shquote(M.tmp_root))
  local ok, _, out = M.sh("mktemp -d " .. M.shquote(M.tmp_root .. "/" .. (tag or "t") .. ".XXXXXX"))
  assert(ok, "mktemp failed")
  return (out:gsub("%s+$", ""))
end

function M.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

--- Write a file only its owner may read (mode 0600), e.g. a site file that
-- holds secrets in clear (sbot.site refuses it at a looser mode).
function M.write_private(path, data)
  M.write_file(path, "")
  assert(M.sh("chmod 600 " .. M.shquote(path)))
  M.write_file(path, data)
end

--- Run sbot with an argument list; returns {code, stdout, stderr}.
-- opts.env: a string of VAR=value assignments; opts.stdin: text to feed.
function M.sbot(args, opts)
  opts = opts or {}
  local dir = M.tmpdir("run")
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = M.shquote(a) end
  local input = dir .. "/stdin"
  M.write_file(input, opts.stdin or "")
  local cmd = string.format("cd %s && %s %s %s <%s >%s/stdout 2>%s/stderr; echo $?",
    M.shquote(opts.cwd or M.source_dir), opts.env or "", M.shquote(M.sbot_bin),
    table.concat(parts, " "), M.shquote(input), dir, dir)
  local _, _, rc = M.sh(cmd)
  local r = { code = tonumber(rc), stdout = M.read_file(dir .. "/stdout"),
              stderr = M.read_file(dir .. "/stderr") }
  os.execute("rm -rf " .. M.shquote(dir))
  return r
end

--- A TCP port that nothing listens on right now (bound then released).
function M.free_port()
  local _, _, out = M.sh([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])']])
  return tonumber(out)
end

--- Start a background process (in its own process group); returns a handle
-- with :stop() and .pid, .log (its combined output file).
function M.spawn(cmd, opts)
  opts = opts or {}
  local log = opts.log or (M.tmpdir("proc") .. "/output.log")
  local _, _, out = M.sh(string.format("setsid sh -c %s >%s 2>&1 </dev/null & echo $!",
    M.shquote("exec " .. cmd), M.shquote(log)))
  local h = { pid = tonumber(out), log = log }
  -- an exited process nobody has reaped yet (its parent, the shell above,
  -- is gone; init reaps late on some machines) is a zombie: not alive
  function h:alive()
    return require("sbot.sys").pid_alive(self.pid)
  end
  function h:stop(sig)
    os.execute(string.format("kill -%s -- -%d 2>/dev/null; kill -%s %d 2>/dev/null",
      sig or "TERM", self.pid, sig or "TERM", self.pid))
    for _ = 1, 50 do
      if not self:alive() then return end
      os.execute("sleep 0.1")
    end
    os.execute(string.format("kill -KILL -- -%d 2>/dev/null", self.pid))
  end
  function h:output() return M.read_file(self.log) end
  return h
end

--- Wait until a TCP port accepts connections (or the timeout passes).
function M.wait_port(port, timeout, host)
  local cmd = string.format([[python3 -c 'import socket,sys,time
end=time.time()+%f
while time.time()<end:
    try:
        socket.create_connection(("%s",%d),0.5).close(); sys.exit(0)
    except OSError: time.sleep(0.05)
sys.exit(1)']], timeout or 10, host or "127.0.0.1", port)
  return os.execute(cmd) == true
end

--- Wait until pred() is true, polling every 0.05 s for at most `seconds`
-- (monotonic time: a loaded machine polls less often, never waits less).
-- Returns pred()'s last result; with `what`, a result that is still false
-- raises "timed out waiting for <what>".
function M.wait_for(pred, seconds, what)
  local sys = require "sbot.sys"
  local deadline = sys.monotime() + seconds
  while sys.monotime() < deadline do
    local v = pred()
    if v then return v end
    os.execute("sleep 0.05")
  end
  local v = pred()
  if not v and what then error("timed out waiting for " .. what, 2) end
  return v
end

--- tests/servers/reloading_portal.py with these arguments (a string): the
-- process and the port it listens on (nil when it printed none within 10 s).
function M.reloading_portal(args)
  local fwd = M.spawn("python3 " .. M.shquote(M.source_dir .. "/tests/servers/reloading_portal.py") .. " " .. args)
  local port = M.wait_for(function() return tonumber(M.read_file(fwd.log):match("^(%d+)\n")) end, 10)
  return fwd, port
end

--- Wall-clock seconds (sub-second resolution).
function M.now()
  local _, _, out = M.sh("date +%s.%N")
  return tonumber(out)
end

--- The host[:port] cases shared with tests/c/test_hostport.c
-- (tests/fixtures/hostport_cases.txt): {verdict = "accept"|"refuse",
-- port = "required"|"optional", value, reason}.
function M.hostport_cases()
  local out = {}
  for line in M.read_file(M.source_dir .. "/tests/fixtures/hostport_cases.txt"):gmatch("[^\n]+") do
    if not line:match("^#") then
      local verdict, port, value, reason = line:match("^(%a+)\t(%a+)\t([^\t]*)\t(.*)$")
      assert(verdict, "hostport_cases.txt: cannot read " .. line)
      out[#out + 1] = { verdict = verdict, port = port, value = value, reason = reason }
    end
  end
  return out
end

return M
