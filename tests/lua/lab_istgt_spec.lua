-- The lab's istgt controller (lua/sbot/lab/istgt.lua): apply() answers only
-- once the target really listens, however slowly istgt starts; its portal
-- port is outside the kernel's ephemeral range.
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

local function config(size)
  return { nodebase = "iqn.2005-10.org.freenas.ctl", targets = {
    { name = "node1", groups = { { portals = { "127.0.0.1" }, initiators = { "ALL" }, netmasks = { "ALL" } } },
      luns = { { lun = 0, zvol = "tank/node1", size = size, serial = "1e0a0b0c0d0e001" } } } } }
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
end)
