-- The example components under examples/components (boot_script, scratch_volume):
-- their housekeep verifies the desired state, a resize keeps the volume's data;
-- and the artifact keys components record.
local helpers = require "helpers"
local fsio = require "sbot.fsio"

-- loaded from their files (define registers them as sbot.component.<name>)
local BootScript = dofile(helpers.source_dir .. "/examples/components/boot_script.lua")
local ScratchVolume = dofile(helpers.source_dir .. "/examples/components/scratch_volume.lua")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("example component boot_script", function()
  it("housekeep alone (--phases discover,housekeep) checks the file against the desired script", function()
    local dir = helpers.tmpdir("bootscript")
    local config = { dir = dir, portal = "10.0.0.1" }
    local opts = { id = "s1", artifact_dir = dir .. "/art" }
    helpers.write_file(dir .. "/s1.ipxe", "#!ipxe\nstale\n")
    local c = assert(BootScript.new(config, opts))
    local r = c:execute { phases = { "discover", "housekeep" }, mode = "apply" }
    assert.are.equal("failed", r.status)
    assert.matches(dir .. "/s1.ipxe: content read back differs from the script this server should have",
      r.error, 1, true)
    -- converge, then housekeep alone passes on the converged file
    r = assert(BootScript.new(config, opts)):execute { mode = "apply" }
    assert.are.equal("ok", r.status, r.error)
    assert.matches("sanboot iscsi:10.0.0.1::::iqn.2005-10.org.freenas.ctl:s1", read(dir .. "/s1.ipxe"), 1, true)
    r = assert(BootScript.new(config, opts)):execute { phases = { "discover", "housekeep" }, mode = "apply" }
    assert.are.equal("ok", r.status, r.error)
    assert.is_true(r.housekeeping.verified)
  end)

  it("a name_target hook that returns no name is an error naming the hook", function()
    local dir = helpers.tmpdir("bootscript")
    local site = { hooks = { name_target = function() return nil end } }
    local c = assert(BootScript.new({ dir = dir, portal = "10.0.0.1" }, { id = "s1", site = site, server = {} }))
    local r = c:execute { mode = "plan" }
    assert.are.equal("failed", r.status)
    assert.matches("site hook name_target(s1) returned nil", r.error, 1, true)
  end)
end)

describe("example component scratch_volume", function()
  it("grows and shrinks a volume and keeps its content", function()
    local dir = helpers.tmpdir("scratchvol")
    local opts = { id = "s1" }
    local r = assert(ScratchVolume.new({ dir = dir, size_mb = 1 }, opts)):execute { mode = "apply" }
    assert.are.equal("ok", r.status, r.error)
    local path = dir .. "/boot-s1.img"
    local f = assert(io.open(path, "r+b"))
    f:write("volume data")
    f:close()
    r = assert(ScratchVolume.new({ dir = dir, size_mb = 2 }, opts)):execute { mode = "apply" }
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal(1, #r.plan)
    assert.are.equal("update", r.plan[1].action)
    assert.are.equal(2 * 1048576, fsio.stat(path).size)
    assert.are.equal("volume data", read(path):sub(1, 11))
    -- and shrinks it in place (an undo of a grow is a shrink)
    r = assert(ScratchVolume.new({ dir = dir, size_mb = 1 }, opts)):execute { mode = "apply" }
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal(1048576, fsio.stat(path).size)
    assert.are.equal("volume data", read(path):sub(1, 11))
  end)
end)

describe("artifact keys", function()
  it("a key the store reserves for its own files is refused when recorded, not at the end of the run", function()
    local artifact = require "sbot.artifact"
    local dir = helpers.tmpdir("artkey")
    local self = { id = "s1", component = "c", artifact_dir = dir, artifacts = {} }
    local ok, err = pcall(artifact.record, self, { key = "bios.json.sbot-meta.json", content = "{}" })
    assert.is_false(ok)
    assert.matches("artifact: key 'bios.json.sbot-meta.json' uses a name reserved for the store's own files", err, 1, true)
    assert.are.equal(0, #self.artifacts)
    assert.is_table(artifact.record(self, { key = "bios.json", content = "{}" }))
  end)
end)

describe("example component bmc_inventory", function()
  local labclient = require "labclient"
  for _, gen in ipairs({ "8", "9" }) do
    it("inventories an iDRAC " .. gen .. " by following links, and leaves no session", function()
      local BmcInventory = dofile(helpers.source_dir .. "/examples/components/bmc_inventory.lua")
      local lab = labclient.start_lab({ "--servers", "1", "--idrac", gen, "--time-scale", "0.1" })
      local server = lab.site.servers[1]
      local dir = helpers.tmpdir("inv")
      local r = assert(BmcInventory.new({ timeout = 10 }, { id = server.id, server = server, artifact_dir = dir }))
        :execute { mode = "apply" }
      local st = lab.state().devices["idrac-1"]
      lab.stop()
      assert.are.equal("ok", r.status, r.error)
      assert.are.equal(tonumber(gen), r.discovery.bmc.generation)
      assert.are.equal("LAB0001", r.discovery.service_tag)
      assert.are.equal(4, #r.discovery.nics)
      assert.matches("^NIC%.Integrated%.1%-1%-1$", r.discovery.nics[1].id)
      assert.are.equal(0, st.sessions, "the session was deleted")
      assert.are.equal(0, st.leaked_logins)
      assert.are.equal(0, st.writes)
    end)
  end
end)
