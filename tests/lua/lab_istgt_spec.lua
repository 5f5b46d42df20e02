-- The lab's istgt controller (lua/sbot/lab/istgt.lua): apply() answers only
-- once the target really listens, however slowly istgt starts; its portal
-- port is outside the kernel's ephemeral range; a target with CHAP users
-- refuses a login without them or with a wrong secret, and a new secret
-- takes effect without a restart.
local helpers = require "helpers"
local istgt = require "sbot.lab.istgt"
local iscsi = require "sbot.iscsi"

local MiB = 1024 * 1024

local function program()
  local ok, _, out = helpers.sh("command -v istgt || ls /usr/sbin/istgt")
  assert(ok, "istgt must be installed (vendor/bootstrap)")
  return (out:gsub("%s+$", ""))
end

local function ephemeral_range()
  local f = assert(io.open("/proc/sys/net/ipv4/ip_local_port_range"))
  local low, high = f:read("a"):match("(%d+)%s+(%d+)")
  f:close()
  return tonumber(low), tonumber(high)
end

local function target(name, size, serial, users)
  return { name = name, groups = { { portals = { "127.0.0.1" }, initiators = { "ALL" }, netmasks = { "ALL" } } },
    luns = { { lun = 0, zvol = "tank/" .. name, size = size, serial = serial } },
    auth = users and { users = users } or nil }
end

local function config(size, users)
  return { nodebase = "iqn.2005-10.org.freenas.ctl", targets = { target("node1", size, "1e0a0b0c0d0e001", users) } }
end

describe("the lab's istgt", function()
  it("picks its portal port outside the ephemeral range", function()
    local low, high = ephemeral_range()
    for _ = 1, 5 do
      local port = assert(istgt.free_port())
      assert.is_true(port < low or port > high, port .. " is in " .. low .. "-" .. high)
    end
    -- and so does the TrueNAS device of `sbot lab --tgt`
    local dev = assert(require("sbot.lab.truenas").new { api_key = "1-" .. string.rep("k", 64), tgt = true,
      dir = helpers.tmpdir("tgtport") })
    local port = dev.model.tgt.port
    dev.close()
    assert.is_true(port < low or port > high, port .. " is in " .. low .. "-" .. high)
  end)

  it("answers apply only once a slow istgt listens, and a login right after works", function()
    local dir = helpers.tmpdir("slowistgt")
    -- a machine so loaded that istgt takes seconds to listen after it is started
    local wrapper = dir .. "/slow-istgt"
    helpers.write_file(wrapper, "#!/bin/sh\n( sleep 4; exec " .. helpers.shquote(program())
      .. " \"$@\" ) >/dev/null 2>&1 </dev/null &\nexit 0\n")
    assert(os.execute("chmod 755 " .. helpers.shquote(wrapper)))
    local port = assert(istgt.free_port())
    local ctl = assert(istgt.start { port = port, dir = dir, istgt = wrapper })
    local ok, err = ctl:apply(config(16 * MiB))
    local r, perr = iscsi.probe { portal = "127.0.0.1:" .. port, target = "iqn.2005-10.org.freenas.ctl:node1",
      lun = 0, timeout = 10 }
    local st = ctl:state()
    ctl:stop()
    assert(ok, err)
    assert(r, perr)
    assert.are.equal(16 * MiB, r.capacity.bytes)
    assert.are.same({}, st.errors)
  end)

  it("restarts on a change and answers with the new export", function()
    local dir = helpers.tmpdir("istgtrestart")
    local port = assert(istgt.free_port())
    local ctl = assert(istgt.start { port = port, dir = dir })
    local sizes = {}
    local ok, err = true, nil
    for i = 1, 3 do
      ok, err = ctl:apply(config((16 + i) * MiB))
      if not ok then break end
      local r, perr = iscsi.probe { portal = "127.0.0.1:" .. port, target = "iqn.2005-10.org.freenas.ctl:node1",
        lun = 0, timeout = 10 }
      sizes[i] = r and r.capacity.bytes or perr
    end
    local st = ctl:state()
    ctl:stop()
    assert(ok, err)
    assert.are.same({ 17 * MiB, 18 * MiB, 19 * MiB }, sizes)
    assert.are.equal(3, st.restarts)
  end)

  it("keeps auth.conf in step with the running istgt while a restart waits for logins", function()
    -- AuthGroup N is the Nth target: a target added in front renumbers
    -- them. auth.conf used to be rewritten before the restart, which waits
    -- for the logins in progress (IDLE_WAIT): meanwhile the running istgt
    -- read node1's AuthGroup from the new file and refused node1's user.
    local dir = helpers.tmpdir("istgtauth")
    local port = assert(istgt.free_port())
    local ctl = assert(istgt.start { port = port, dir = dir })
    local users = { { user = "r630-01", secret = "first-secret-01" } }
    local ok, err = ctl:apply(config(16 * MiB, users))
    local b = config(16 * MiB, users)
    table.insert(b.targets, 1, target("node0", 16 * MiB, "1e0a0b0c0d0e000",
      { { user = "r630-00", secret = "other-secret-00" } }))
    local holder, prober
    if ok then
      -- a connection that holds the restart back, and a login of node1's
      -- user while it waits
      holder = helpers.spawn(string.format([[python3 -c 'import socket,time; s=socket.create_connection(("127.0.0.1",%d)); time.sleep(2.5)']], port))
      helpers.write_file(dir .. "/probe.lua", string.format([[
os.execute("sleep 0.8")
local r, perr = require("sbot.iscsi").probe { portal = "127.0.0.1:%d", target = "iqn.2005-10.org.freenas.ctl:node1",
  lun = 0, timeout = 10, chap = { user = "r630-01", secret = "first-secret-01" } }
print(r and "login ok" or ("login failed: " .. tostring(perr)))
]], port))
      helpers.wait_for(function() return ctl:sessions() > 0 end, 10, "the holding connection")
      prober = helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(dir .. "/probe.lua"))
      ok, err = ctl:apply(b)
      helpers.wait_for(function() return not prober:alive() end, 20, "the probe")
    end
    local st = ctl:state()
    ctl:stop()
    if holder then holder:stop() end
    assert(ok, err)
    assert.matches("login ok", prober:output())
    assert(st.timings[#st.timings].waited_ms >= 1000, "the restart did not wait for the logins")
    assert.are.equal(2, st.restarts)
  end)

  it("asks CHAP of a target with users, and takes a new secret without restarting", function()
    local dir = helpers.tmpdir("istgtchap")
    local port = assert(istgt.free_port())
    local ctl = assert(istgt.start { port = port, dir = dir })
    local cfg = config(16 * MiB, { { user = "r630-01", secret = "first-secret-01" } })
    local function login(chap)
      local r, perr = iscsi.probe { portal = "127.0.0.1:" .. port, target = "iqn.2005-10.org.freenas.ctl:node1",
        lun = 0, timeout = 10, chap = chap }
      return r and "ok" or perr
    end
    local ok, err = ctl:apply(cfg)
    local out = {}
    if ok then
      out.none = login(nil)
      out.wrong = login { user = "r630-01", secret = "wrong-secret-01" }
      out.other_user = login { user = "r630-02", secret = "first-secret-01" }
      out.right = login { user = "r630-01", secret = "first-secret-01" }
      cfg.targets[1].auth.users[1].secret = "second-secret-2"
      ok, err = ctl:apply(cfg)
      out.old = login { user = "r630-01", secret = "first-secret-01" }
      out.new = login { user = "r630-01", secret = "second-secret-2" }
    end
    local st = ctl:state()
    local mode = string.format("%o", require("sbot.fsio").stat(dir .. "/auth.conf").mode)
    ctl:stop()
    assert(ok, err)
    for _, k in ipairs { "none", "wrong", "other_user", "old" } do
      assert.matches("login: .*Authentication failure", out[k], nil, false, k)
    end
    assert.are.equal("ok", out.right)
    assert.are.equal("ok", out.new)
    assert.are.equal(1, st.restarts) -- the new secret needed none
    assert.are.same({ mutual = false, users = { "r630-01" } }, st.targets[1].chap)
    assert.are.equal("600", mode)
  end)
end)
