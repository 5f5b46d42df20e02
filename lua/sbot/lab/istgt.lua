--- sbot.lab.istgt: a private istgt (Debian package istgt, the userspace iSCSI
-- target of FreeNAS's own lineage) that exports what the TrueNAS model says is
-- exported, for real.
--
--   local istgt = assert(require "sbot.lab.istgt".start{port = 3260, dir = "/tmp/lab/iscsi"})
--   assert(istgt:apply{ nodebase = "iqn.2005-10.org.freenas.ctl", targets = {
--     { name = "node1", groups = { { portals = {"127.0.0.1"}, initiators = {"ALL"}, netmasks = {"ALL"} } },
--       luns = { { lun = 0, zvol = "tank/node1", size = 8 * 2^30, serial = "1e0a0b0c0d0e001",
--                  blocksize = 512, vendor = "TrueNAS", product = "iSCSI Disk" } } } } })
--   ...
--   istgt:stop()
--
-- Why istgt and not tgt: TrueNAS (SCST) shows a mapped LUN at its own number and
-- only to the initiator + portal pairs of the target's groups. istgt has the
-- same model — NodeBase + short TargetName, `Mapping PortalGroupN
-- InitiatorGroupM`, `LUN0 Storage <file>` as a disk — while tgt keeps LUN 0 for
-- its controller (the model's LUN 0 would be LUN 1 on the wire). istgt's own
-- limits, recorded per target in state().unexported with the reason: every
-- target needs a LUN 0 (SCST would show LUN n alone) and LUNs go up to 63.
--
-- istgt reads its configuration once (this version has no reload), so apply()
-- rewrites DIR/istgt.conf and restarts the daemon when the configuration
-- changed. istgt is started with sbot.sys.spawn (no shell) and daemonizes into
-- its own session once its portal listens on HOST:PORT; stop() (the lab's
-- close) kills it by the pid in DIR/istgt.pid. Each zvol is a sparse file of
-- its size under DIR.
--
-- apply() returns only once the new istgt answers a login on its portal (or
-- with the reason it does not): the old one must have exited (its portal
-- released) before the new one binds, and both waits are bounded by time, not
-- by a number of polls, so a loaded machine makes them slower, never wrong.
-- Called from a lab task (controller.tasks, the lab's: sbot lab runs each
-- TrueNAS call as one), those waits sleep in the task and the lab serves
-- everything else meanwhile, as a TrueNAS's API does during a target reload.
-- The portal's port is best outside the kernel's ephemeral range
-- (M.free_port): while istgt restarts nothing listens there, and any outgoing
-- connection on the host could take a free ephemeral port as its own.
local sys = require "sbot.sys"

local M = {}
local Istgt = {}
Istgt.__index = Istgt
M.MAX_LUN = 63
M.IDLE_WAIT = 3
M.SPEED = 20
M.START_TIMEOUT = 30 -- seconds a (re)started istgt may take to answer on its portal
M.STOP_TIMEOUT = 10  -- seconds a killed istgt may take to exit (and release its portal)

--- A free TCP port on host for istgt, outside the ephemeral range
-- (/proc/sys/net/ipv4/ip_local_port_range) so that no outgoing connection
-- can take it while istgt restarts. Returns the port or nil, message.
function M.free_port(host)
  host = host or "127.0.0.1"
  local low, high = 32768, 60999
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range", "rb")
  if f then
    local a, b = f:read("a"):match("(%d+)%s+(%d+)")
    f:close()
    low, high = tonumber(a) or low, tonumber(b) or high
  end
  local ranges = {}
  if low - 1 >= 10000 then ranges[#ranges + 1] = { 10000, low - 1 } end
  if high + 1 <= 65535 then ranges[#ranges + 1] = { high + 1, 65535 } end
  if #ranges == 0 then return nil, "istgt: no port outside the ephemeral range " .. low .. "-" .. high end
  local crypto, httpd = require "sbot.crypto", require "sbot.httpd"
  for _ = 1, 64 do
    local r = ranges[1 + string.unpack("<I2", crypto.random_bytes(2)) % #ranges]
    local port = r[1] + string.unpack("<I4", crypto.random_bytes(4)) % (r[2] - r[1] + 1)
    local srv = httpd.listen { host = host, port = port, handler = function() return 404 end }
    if srv then
      srv:close()
      return port
    end
  end
  return nil, "istgt: no free port found outside the ephemeral range " .. low .. "-" .. high
end


-- A short pause without a shell, for a controller used outside a lab task
-- (it blocks the thread).
local function pause(s)
  sys.spawn { argv = { "sleep", string.format("%.3f", s) }, timeout = s + 5 }
end

-- A pause inside a restart: a lab task (self.tasks, see sbot.lab's
-- M.tasks) sleeps and the lab serves every other connection meanwhile;
-- anywhere else the thread waits.
function Istgt:pause(s)
  if self.tasks and self.tasks.current() then return self.tasks.sleep(s) end
  pause(s)
end

local function exists(program)
  for dir in (os.getenv("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"):gmatch("[^:]+") do
    local f = io.open(dir .. "/" .. program, "rb")
    if f then f:close() return dir .. "/" .. program end
  end
  for _, dir in ipairs { "/usr/sbin", "/sbin" } do
    local f = io.open(dir .. "/" .. program, "rb")
    if f then f:close() return dir .. "/" .. program end
  end
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- Start the controller (the daemon starts on the first apply with a target).
-- opts: port (required), dir (required), host ("127.0.0.1"), istgt (program),
-- faketime (path of libfaketimeMT.so.1, or false for none; default: found),
-- start_timeout (seconds, M.START_TIMEOUT), tasks (the lab's tasks: a restart
-- applied from a task sleeps instead of blocking the lab; also settable later
-- as controller.tasks).
-- Returns the controller or nil, message.
function M.start(opts)
  opts = opts or {}
  local port = math.tointeger(opts.port)
  if not port or port < 1 or port > 65535 then error("istgt.start: opts.port must be a TCP port", 2) end
  if type(opts.dir) ~= "string" then error("istgt.start: opts.dir (string) is required", 2) end
  local program = opts.istgt or exists("istgt")
  if not program then return nil, "istgt: program istgt not found (install the Debian package istgt)" end
  local ok, err = require("sbot.fsio").mkdirs(opts.dir)
  if not ok then return nil, "istgt: cannot create " .. opts.dir .. ": " .. tostring(err) end
  local start_timeout = opts.start_timeout or M.START_TIMEOUT
  if type(start_timeout) ~= "number" or not (start_timeout > 0) then
    error("istgt.start: opts.start_timeout must be a number of seconds > 0", 2)
  end
  -- istgt sleeps whole seconds where TrueNAS does not: one after accepting
  -- each connection (so it takes one login a second) and one in every login.
  -- Under libfaketime at SPEED times the clock those seconds are 1/SPEED s;
  -- without it, istgt runs at its own pace (state().pace says which).
  local faketime = opts.faketime
  if faketime == nil then
    for _, dir in ipairs { "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib" } do
      local f = io.open(dir .. "/faketime/libfaketimeMT.so.1", "rb")
      if f then
        f:close()
        faketime = dir .. "/faketime/libfaketimeMT.so.1"
        break
      end
    end
  end
  local self = setmetatable({ faketime = faketime or nil, speed = faketime and M.SPEED or 1,
    port = port, host = opts.host or "127.0.0.1", dir = opts.dir, program = program,
    conf_file = opts.dir .. "/istgt.conf", pid_file = opts.dir .. "/istgt.pid", log = opts.dir .. "/istgt.log",
    start_timeout = start_timeout, tasks = opts.tasks, busy = false, ready_waiters = {},
    conf = nil, exported = {}, unexported = {}, files = {}, restarts = 0, errors = {}, timings = {} }, Istgt)
  return self
end

--- The backing file of a zvol.
function Istgt:backing_file(zvol)
  return self.dir .. "/" .. zvol:gsub("[^%w%.%-]", "_") .. ".img"
end

-- A sparse file of exactly `size` bytes (grown, never shrunk, keeping data).
function Istgt:ensure_file(zvol, size)
  local file = self:backing_file(zvol)
  local f = io.open(file, "r+b") or io.open(file, "w+b")
  if not f then return nil, "istgt: cannot create backing file " .. file end
  local cur = f:seek("end")
  if cur < size then
    f:seek("set", size - 1)
    f:write("\0")
  end
  f:close()
  self.files[zvol] = file
  return file
end

--- The zvol is gone: its backing file goes too.
function Istgt:zvol_deleted(zvol)
  local file = self:backing_file(zvol)
  os.remove(file)
  self.files[zvol] = nil
end

local function q(s) return '"' .. tostring(s):gsub('[\\"]', "") .. '"' end

-- A CHAP user or secret istgt's auth.conf can hold: its quoted strings have
-- no escapes.
local function auth_word_ok(w) return type(w) == "string" and w ~= "" and not w:find('[\\"%c]') end

-- config = {nodebase, targets = {{name, alias, groups = {{portals, initiators, netmasks}}, luns,
-- auth = {users = {{user, secret}}, mutual = {user, secret}} | nil}}}
-- -> istgt.conf text (nil when nothing is exported), the list of targets left
-- out, and auth.conf text (one AuthGroup per target that asks for CHAP).
function Istgt:render(config)
  local out, skipped, auth = {}, {}, {}
  local pg, ig = {}, {}
  local lus = {}
  for _, t in ipairs(config.targets or {}) do
    local reason
    local has0 = false
    for _, l in ipairs(t.luns) do
      if l.lun == 0 then has0 = true end
      if l.lun > M.MAX_LUN then reason = "istgt serves LUNs 0.." .. M.MAX_LUN .. ", not " .. l.lun end
    end
    if #t.luns == 0 then reason = "no LUN"
    elseif not has0 then reason = reason or "istgt needs a LUN 0 in every target (TrueNAS would show the others alone)"
    elseif #t.groups == 0 then reason = "no portal/initiator group: nothing is visible" end
    if not reason and t.auth then
      for _, u in ipairs(t.auth.users) do
        if not (auth_word_ok(u.user) and auth_word_ok(u.secret)) then
          reason = "istgt's auth.conf cannot hold CHAP user " .. tostring(u.user) .. " or its secret (a quote, "
            .. "backslash or control character)"
        end
      end
      local m = t.auth.mutual
      if m and not (auth_word_ok(m.user) and auth_word_ok(m.secret)) then
        reason = "istgt's auth.conf cannot hold the mutual CHAP user " .. tostring(m.user) .. " or its secret"
      end
    end
    if reason then
      skipped[#skipped + 1] = { name = t.name, reason = reason }
    else
      local maps = {}
      for _, g in ipairs(t.groups) do
        local pkey = table.concat(g.portals, ",")
        if not pg[pkey] then
          pg[#pg + 1] = g.portals
          pg[pkey] = #pg
        end
        ig[#ig + 1] = g
        maps[#maps + 1] = string.format("  Mapping PortalGroup%d InitiatorGroup%d", pg[pkey], #ig)
      end
      lus[#lus + 1] = { t = t, maps = maps }
    end
  end
  if #lus == 0 then return nil, skipped, "" end
  out[#out + 1] = "[Global]"
  out[#out + 1] = "  NodeBase " .. q(config.nodebase)
  out[#out + 1] = "  PidFile " .. self.pid_file
  out[#out + 1] = "  AuthFile " .. self.dir .. "/auth.conf"
  out[#out + 1] = "  MediaDirectory " .. self.dir
  -- istgt's 30 s timeout and 20 s NOP-In interval, in its own (faster) clock
  out[#out + 1] = string.format("  Timeout %d\n  NopInInterval %d\n  DiscoveryAuthMethod None\n  MaxSessions 32\n"
    .. "  MaxConnections 4", 30 * self.speed, 20 * self.speed)
  out[#out + 1] = "[UnitControl]\n  AuthMethod None"
  for i, portals in ipairs(pg) do
    out[#out + 1] = string.format("[PortalGroup%d]", i)
    for j, ip in ipairs(portals) do
      local addr = ip:find(":") and ("[" .. ip .. "]") or ip
      out[#out + 1] = string.format("  Portal P%d %s:%d", j, addr, self.port)
    end
  end
  for i, g in ipairs(ig) do
    out[#out + 1] = string.format("[InitiatorGroup%d]", i)
    for _, n in ipairs(g.initiators) do out[#out + 1] = "  InitiatorName " .. q(n) end
    for _, n in ipairs(g.netmasks) do out[#out + 1] = "  Netmask " .. n end
  end
  for i, lu in ipairs(lus) do
    local t = lu.t
    out[#out + 1] = string.format("[LogicalUnit%d]", i)
    out[#out + 1] = "  TargetName " .. t.name
    if t.alias then out[#out + 1] = "  TargetAlias " .. q(t.alias) end
    for _, m in ipairs(lu.maps) do out[#out + 1] = m end
    if t.auth then
      -- as SCST on TrueNAS: CHAP asked of every initiator of the target; the
      -- users (and the mutual peer) in auth.conf, which istgt reads at each login
      out[#out + 1] = t.auth.mutual and "  AuthMethod CHAP Mutual" or "  AuthMethod CHAP"
      out[#out + 1] = string.format("  AuthGroup AuthGroup%d", i)
      auth[#auth + 1] = string.format("[AuthGroup%d]", i)
      for _, u in ipairs(t.auth.users) do
        local m = t.auth.mutual
        auth[#auth + 1] = string.format('  Auth "%s" "%s"%s', u.user, u.secret,
          m and string.format(' "%s" "%s"', m.user, m.secret) or "")
      end
    else
      out[#out + 1] = "  AuthMethod None"
    end
    out[#out + 1] = "  UseDigest Auto\n  UnitType Disk"
    local first = t.luns[1]
    out[#out + 1] = string.format("  UnitInquiry %s %s %s %s", q(first.vendor or "TrueNAS"),
      q(first.product or "iSCSI Disk"), q("0123"), q(first.serial or "0"))
    if first.blocksize and first.blocksize ~= 512 then out[#out + 1] = "  BlockLength " .. first.blocksize end
    table.sort(t.luns, function(a, b) return a.lun < b.lun end)
    for _, l in ipairs(t.luns) do
      out[#out + 1] = string.format("  LUN%d Storage %s %dMB", l.lun, l.file, math.max(1, l.size // (1024 * 1024)))
      if l.serial then out[#out + 1] = string.format("  LUN%d Option Serial %s", l.lun, q(l.serial)) end
    end
  end
  return table.concat(out, "\n") .. "\n", skipped, table.concat(auth, "\n") .. "\n"
end

-- Whether pid has exited (sys.pid_alive counts a zombie as gone: istgt
-- daemonizes, so init reaps it, late; a zombie has closed its sockets).
local function exited(pid)
  return not sys.pid_alive(pid)
end

function Istgt:alive()
  return self.pid ~= nil and not exited(self.pid)
end

-- Kill istgt and wait until it has exited, so its portal is free again.
-- Returns true, or nil and why (it is still there after M.STOP_TIMEOUT).
function Istgt:kill()
  local pid = self.pid
  if not pid then return true end
  if not exited(pid) then
    -- SIGTERM makes istgt wait seconds for its connections; nothing is
    -- lost with SIGKILL (every write went to the backing file already)
    sys.kill(pid, "KILL")
    local deadline = sys.monotime() + M.STOP_TIMEOUT
    while not exited(pid) do
      if sys.monotime() > deadline then
        return nil, string.format("istgt pid %d is still running %g s after SIGKILL (its portal %s:%d stays "
          .. "bound)", pid, M.STOP_TIMEOUT, self.host, self.port)
      end
      self:pause(0.005)
    end
  end
  self.pid = nil
  return true
end

--- The number of TCP connections istgt has on its portal now (ESTABLISHED,
-- from /proc/net/tcp and tcp6).
function Istgt:sessions()
  local n, port = 0, string.format(":%04X", self.port)
  for _, file in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    local f = io.open(file, "rb")
    if f then
      for line in f:lines() do
        local loc, st = line:match("^%s*%d+:%s+(%S+)%s+%S+%s+(%x%x)")
        if loc and st == "01" and loc:sub(-5) == port then n = n + 1 end
      end
      f:close()
    end
  end
  return n
end

-- Whether istgt's portal accepts TCP connections. istgt listens by the time
-- it has daemonized, so this is a confirmation. Not an iSCSI login: istgt
-- pauses a second in every login, and the lab (one thread) would stand still
-- that long at every restart. A connection that is accepted and then waits
-- (istgt reads a PDU that never comes) times out; only a refusal is "connect".
function Istgt:listening()
  local _, _, code = require("sbot.http").request { url = "http://" .. self.host .. ":" .. self.port .. "/",
    method = "HEAD", timeout = 0.05, connect_timeout = 0.05, retries = false }
  return code ~= "connect"
end

--- Export exactly what config says (see render; config or a function that
-- returns it); restarts istgt when the configuration changed. Returns true
-- or nil, message.
-- Applied from a lab task, the waits of a restart sleep (the lab keeps
-- serving) and an apply that comes while another one restarts istgt waits
-- for it; elsewhere they block, and an apply during a task's restart is
-- refused (it could not wait without stopping that restart).
function Istgt:apply(config)
  if self.busy then
    if not (self.tasks and self.tasks.current()) then
      return nil, "istgt: a restart of istgt is in progress; this change cannot wait for it here (not a lab task)"
    end
    while self.busy do self.tasks.sleep(0.01) end
  end
  -- config may be a function giving it: read after the wait, so that a task
  -- that waited never applies what the model held before the changes the
  -- restart it waited for (or others) made
  if type(config) == "function" then config = config() end
  self.busy = true
  local ok, done, err = pcall(self.apply_now, self, config)
  self.busy = false
  local waiters = self.ready_waiters
  self.ready_waiters = {}
  for _, fn in ipairs(waiters) do
    local wok, werr = pcall(fn)
    if not wok then self.errors[#self.errors + 1] = "istgt: after a restart: " .. tostring(werr) end
  end
  if not ok then error(done, 0) end
  return done, err
end

--- Run fn() once no restart is in progress: now, or when the restart
-- ends (whether istgt came up or not). Who logs in to istgt (the lab
-- iDRAC's boot) waits so, never reaching a portal where nothing listens yet.
function Istgt:when_ready(fn)
  if not self.busy then return fn() end
  self.ready_waiters[#self.ready_waiters + 1] = fn
end

function Istgt:apply_now(config)
  for _, t in ipairs(config.targets or {}) do
    for _, l in ipairs(t.luns) do
      local file, err = self:ensure_file(l.zvol, l.size)
      if not file then return nil, err end
      l.file = file
    end
  end
  local text, skipped, auth = self:render(config)
  self.unexported = skipped
  self.exported = {}
  if text then
    for _, t in ipairs(config.targets) do
      local left = false
      for _, s in ipairs(skipped) do if s.name == t.name then left = true end end
      if not left then self.exported[#self.exported + 1] = t end
    end
  end
  -- istgt reads auth.conf at every login: a new CHAP secret needs no restart
  -- (TrueNAS reloads its target without dropping sessions too); the file is
  -- replaced whole (rename), private to the lab's user. It goes with the
  -- istgt.conf it was rendered with (AuthGroup N is the Nth target): under a
  -- running istgt only when that one stays, else while istgt is down, so that
  -- a login meanwhile never meets another target's users.
  local function write_auth()
    if auth == self.auth then return true end
    local ok, aerr = require("sbot.fsio").write_atomic(self.dir .. "/auth.conf", auth, { mode = "0600" })
    if not ok then return nil, "istgt: cannot write " .. self.dir .. "/auth.conf: " .. tostring(aerr) end
    self.auth = auth
    return true
  end
  if text == self.conf and (text == nil or self:alive()) then return write_auth() end
  -- A TrueNAS applies a configuration change without dropping the sessions
  -- it has; istgt must restart for it. Let the logins in progress finish
  -- first (a login takes istgt a second), for at most IDLE_WAIT seconds.
  local t0 = sys.monotime()
  local deadline = t0 + M.IDLE_WAIT
  while self:alive() and self:sessions() > 0 and sys.monotime() < deadline do self:pause(0.01) end
  local t1 = sys.monotime()
  local killed, kerr = self:kill()
  if not killed then
    self.errors[#self.errors + 1] = kerr
    return nil, kerr
  end
  self.conf = text
  local wrote, werr = write_auth()
  if not wrote then return nil, werr end
  if not text then return true end
  local f = io.open(self.conf_file, "wb")
  if not f then return nil, "istgt: cannot write " .. self.conf_file end
  f:write(text)
  f:close()
  -- istgt daemonizes (its own session) once its portals listen; the pid
  -- comes from its pid file. sys.spawn runs it without a shell.
  os.remove(self.pid_file)
  local env
  if self.faketime then
    env = { PATH = os.getenv("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin", LD_PRELOAD = self.faketime,
            FAKETIME = "+0 x" .. self.speed }
  end
  local r, serr = sys.spawn { argv = { self.program, "-c", self.conf_file, "-p", self.pid_file }, env = env,
    timeout = 30 }
  self.restarts = self.restarts + 1
  if not r then return nil, "istgt: cannot run " .. self.program .. ": " .. tostring(serr) end
  local wf = io.open(self.log, "ab")
  if wf then wf:write(r.stdout, r.stderr) wf:close() end
  if r.status ~= 0 then
    local err = string.format("istgt on %s:%d refused its configuration (exit %s): %s", self.host, self.port,
      tostring(r.status), (r.stdout .. r.stderr):sub(-600))
    self.errors[#self.errors + 1] = err
    return nil, err
  end
  -- ready when its portal accepts connections (it wrote its pid file by then); the
  -- wait is bounded by time: on a loaded machine polls are slower, not fewer
  local deadline = sys.monotime() + self.start_timeout
  repeat
    self.pid = self.pid or tonumber(read_file(self.pid_file):match("%d+"))
    if self.pid and exited(self.pid) then break end
    if self.pid and self:listening() then
      -- the last restarts: how long the lab waited for logins, then restarting took
      self.timings[#self.timings + 1] = { waited_ms = math.floor((t1 - t0) * 1000),
        restart_ms = math.floor((sys.monotime() - t1) * 1000) }
      if #self.timings > 20 then table.remove(self.timings, 1) end
      return true
    end
    self:pause(0.01)
  until sys.monotime() > deadline
  local log = read_file(self.log)
  local err = string.format("istgt on %s:%d did not come up%s: %s", self.host, self.port,
    self.pid and exited(self.pid) and " (it exited)" or
      string.format(" within %g s", self.start_timeout), log:sub(-600))
  self.errors[#self.errors + 1] = err
  self:kill()
  return nil, err
end

--- What the lab shows in /lab/state.
function Istgt:state()
  local targets = {}
  for _, t in ipairs(self.exported) do
    local luns = {}
    for _, l in ipairs(t.luns) do luns[#luns + 1] = { lun = l.lun, zvol = l.zvol, size = l.size } end
    local chap
    if t.auth then
      chap = { mutual = t.auth.mutual ~= nil, users = {} }
      for i, u in ipairs(t.auth.users) do chap.users[i] = u.user end -- the names; secrets never
    end
    targets[#targets + 1] = { name = t.name, luns = luns, groups = t.groups, chap = chap }
  end
  return { program = "istgt", portal = self.host .. ":" .. self.port, pid = self.pid, alive = self:alive(),
           sessions = self:alive() and self:sessions() or 0, restarts = self.restarts, timings = self.timings,
           pace = self.faketime and ("libfaketime x" .. self.speed) or "its own (libfaketime not found)", targets = targets, unexported = self.unexported, errors = self.errors }
end

--- Stop istgt and remove the backing files. Safe to call twice.
function Istgt:stop()
  self:kill()
  for zvol in pairs(self.files) do self:zvol_deleted(zvol) end
  os.remove(self.pid_file)
  self.conf = nil
end

return M
