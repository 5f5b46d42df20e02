--- sbot.lab.tgt: a private tgtd (Debian package tgt, user-space iSCSI target)
-- that exports the TrueNAS model's target/LUN mappings for real.
--
--   local tgt = assert(require "sbot.lab.tgt".start{port = 3260, dir = "/tmp/lab"})
--   assert(tgt:export{iqn = "iqn.2005-10.org.freenas.ctl:node1", lun = 0,
--                     zvol = "tank/node1", size = 8 * 2^30, serial = "abc"})
--   ...
--   tgt:stop()
--
-- The daemon runs in the foreground (`tgtd -f`) as a child of the lab, on
-- 127.0.0.1:PORT, with its own management channel (`-C N`, an abstract
-- socket named after N) so it never talks to or clashes with a system tgtd.
-- Each zvol is backed by a sparse file of the zvol's size under DIR.
--
-- tgt reserves LUN 0 of every target for its own controller device, so the
-- model's LUN n is exported as tgt LUN n + 1 (`lun_offset`); /lab/state
-- shows both. Every command runs under coreutils `timeout`.
local M = {}

local function shquote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(cmd, timeout)
  local p = io.popen(string.format("timeout %d sh -c %s 2>&1", timeout or 10, shquote(cmd)), "r")
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok == true, out:gsub("%s+$", ""), code
end

local function sleep(s) os.execute("sleep " .. s) end

local Tgt = {}
Tgt.__index = Tgt
M.LUN_OFFSET = 1

function Tgt:adm(args)
  local ok, out, code = run(string.format("%s -C %d --lld iscsi %s", self.tgtadm, self.control, args))
  if not ok then
    return nil, string.format("tgtadm %s failed (exit %s): %s", args, tostring(code), out)
  end
  return out
end

--- Start tgtd. opts: port (iSCSI portal port, required), host ("127.0.0.1"),
-- dir (for backing files, pid file and log; required), control (management
-- channel number 1..32767, default derived from the port), tgtd/tgtadm (program paths).
-- Returns the controller or nil, message.
function M.start(opts)
  opts = opts or {}
  local port = math.tointeger(opts.port)
  if not port or port < 1 or port > 65535 then error("tgt.start: opts.port must be a TCP port", 2) end
  if type(opts.dir) ~= "string" then error("tgt.start: opts.dir (string) is required", 2) end
  local self = setmetatable({
    port = port, host = opts.host or "127.0.0.1", dir = opts.dir,
    control = math.tointeger(opts.control) or (port % 32767 + 1), -- tgtd takes 0..32767
    tgtd = opts.tgtd or "tgtd", tgtadm = opts.tgtadm or "tgtadm",
    tids = {}, next_tid = 1, luns = {}, backing = {}, lun_offset = M.LUN_OFFSET,
  }, Tgt)
  os.execute("mkdir -p " .. shquote(self.dir))
  local which = run("command -v " .. shquote(self.tgtd))
  if not which then
    return nil, "tgt: " .. self.tgtd .. " not found (install the Debian package tgt)"
  end
  self.pid_file = self.dir .. "/tgtd.pid"
  self.log = self.dir .. "/tgtd.log"
  -- not setsid: tgtd stays in the lab's process group, so stopping the
  -- group stops it too
  local p = io.popen(string.format("%s -f -C %d --iscsi portal=%s:%d >%s 2>&1 </dev/null & echo $!",
    shquote(self.tgtd), self.control, self.host, port, shquote(self.log)), "r")
  self.pid = tonumber(p:read("a"))
  p:close()
  if not self.pid then return nil, "tgt: could not start " .. self.tgtd end
  local f = io.open(self.pid_file, "w")
  if f then f:write(self.pid, "\n") f:close() end
  -- ready when the management channel answers
  for _ = 1, 100 do
    if self:adm("--mode target --op show") then
      self.started = true
      return self
    end
    if not self:alive() then break end
    sleep(0.05)
  end
  local log = io.open(self.log) and io.open(self.log):read("a") or ""
  self:stop()
  return nil, string.format("tgt: tgtd on %s:%d (control %d) did not come up: %s", self.host, port,
    self.control, log:sub(-400))
end

function Tgt:alive()
  return self.pid and os.execute("kill -0 " .. self.pid .. " 2>/dev/null") == true
end

function Tgt:backing_file(zvol)
  return self.dir .. "/" .. zvol:gsub("[^%w%.%-]", "_") .. ".img"
end

--- Export one mapping: info = {iqn, lun, zvol, size, serial, blocksize}.
function Tgt:export(info)
  if not (info.iqn and info.zvol and info.size) then
    return nil, "tgt export: mapping needs iqn, zvol and size"
  end
  local tid = self.tids[info.iqn]
  if not tid then
    tid = self.next_tid
    local ok, err = self:adm(string.format("--mode target --op new --tid %d --targetname %s", tid, shquote(info.iqn)))
    if not ok then return nil, err end
    ok, err = self:adm(string.format("--mode target --op bind --tid %d --initiator-address ALL", tid))
    if not ok then return nil, err end
    self.next_tid = tid + 1
    self.tids[info.iqn] = tid
    self.luns[tid] = {}
  end
  local file = self:backing_file(info.zvol)
  if not self.backing[file] then
    local ok, err = run(string.format("truncate -s %d %s", math.tointeger(info.size), shquote(file)))
    if not ok then return nil, "tgt export: cannot create backing file " .. file .. ": " .. err end
  end
  local tlun = info.lun + self.lun_offset
  local ok, err = self:adm(string.format("--mode logicalunit --op new --tid %d --lun %d --backing-store %s%s",
    tid, tlun, shquote(file), info.blocksize and info.blocksize ~= 512 and (" --blocksize " .. info.blocksize) or ""))
  if not ok then return nil, err end
  local params = "vendor_id=TrueNAS,product_id=iSCSI Disk"
  if info.serial then params = params .. ",scsi_sn=" .. tostring(info.serial):sub(1, 36) end
  ok, err = self:adm(string.format("--mode logicalunit --op update --tid %d --lun %d --params %s",
    tid, tlun, shquote(params)))
  if not ok then return nil, err end
  self.luns[tid][tlun] = info.zvol
  self.backing[file] = (self.backing[file] or 0) + 1
  return true
end

--- Remove one mapping (and the target when it has no LUN left).
function Tgt:unexport(info)
  local tid = self.tids[info.iqn]
  if not tid then return nil, "tgt unexport: " .. tostring(info.iqn) .. " is not exported" end
  local tlun = info.lun + self.lun_offset
  if self.luns[tid][tlun] then
    local ok, err = self:adm(string.format("--mode logicalunit --op delete --tid %d --lun %d", tid, tlun))
    if not ok then return nil, err end
    local file = self:backing_file(self.luns[tid][tlun])
    self.backing[file] = (self.backing[file] or 1) - 1
    self.luns[tid][tlun] = nil
  end
  if next(self.luns[tid]) == nil then
    local ok, err = self:adm(string.format("--mode target --op delete --force --tid %d", tid))
    if not ok then return nil, err end
    self.tids[info.iqn] = nil
    self.luns[tid] = nil
  end
  return true
end

--- The zvol is gone: delete its backing file.
function Tgt:zvol_deleted(zvol)
  local file = self:backing_file(zvol)
  if (self.backing[file] or 0) <= 0 then
    os.remove(file)
    self.backing[file] = nil
  end
end

--- Number of initiator sessions (I_T nexuses) logged in to a target.
function Tgt:sessions(iqn)
  local tid = self.tids[iqn]
  if not tid then return 0 end
  local out = self:adm(string.format("--mode conn --op show --tid %d", tid))
  if not out then return 0 end
  local n = 0
  for _ in out:gmatch("Session:") do n = n + 1 end
  return n
end

--- What the lab shows in /lab/state.
function Tgt:state()
  local targets = {}
  for iqn, tid in pairs(self.tids) do
    local luns = {}
    for l, z in pairs(self.luns[tid]) do luns[#luns + 1] = { tgt_lun = l, lun = l - self.lun_offset, zvol = z } end
    table.sort(luns, function(a, b) return a.tgt_lun < b.tgt_lun end)
    targets[#targets + 1] = { iqn = iqn, tid = tid, luns = luns }
  end
  table.sort(targets, function(a, b) return a.tid < b.tid end)
  return { portal = self.host .. ":" .. self.port, control = self.control, pid = self.pid,
           alive = self:alive(), lun_offset = self.lun_offset, targets = targets }
end

--- Stop tgtd: drop every target, shut the daemon down, kill it if it lingers.
function Tgt:stop()
  if not self.pid then return end
  if self:alive() then
    for _, tid in pairs(self.tids) do
      self:adm(string.format("--mode target --op delete --force --tid %d", tid))
    end
    run(string.format("%s -C %d --mode system --op delete", self.tgtadm, self.control), 5)
    for _ = 1, 40 do
      if not self:alive() then break end
      sleep(0.1)
    end
    if self:alive() then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  end
  for file in pairs(self.backing) do os.remove(file) end
  os.remove(self.pid_file)
  self.tids, self.luns, self.backing = {}, {}, {}
  self.pid = nil
end

return M
