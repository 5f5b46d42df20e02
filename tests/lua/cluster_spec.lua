-- sbot.cluster: the R630's iSCSI boot settings from an iSCSI step's results,
-- for IPv4 and IPv6 portals ("[addr]:port": the address goes to the BIOS
-- without its brackets).
local cluster = require "sbot.cluster"

describe("sbot.cluster.iscsi_boot", function()
  local function disk(portal, portal_ip)
    return { discovery = { iqn = "iqn.2005-10.org.freenas.ctl:r630-01", portal = portal, portal_ip = portal_ip,
      lun = 0, initiator = "iqn.2024-01.org.sbot:r630-01" } }
  end

  it("splits an IPv4 portal into target_ip and target_port", function()
    assert.are.same({ target_iqn = "iqn.2005-10.org.freenas.ctl:r630-01", target_ip = "10.0.0.5", target_port = 3260,
      lun = 0, initiator_iqn = "iqn.2024-01.org.sbot:r630-01" }, cluster.iscsi_boot(disk("10.0.0.5:3260")))
  end)

  it("takes the address of an IPv6 portal out of its brackets", function()
    local b = cluster.iscsi_boot(disk("[fd00::5]:3261"))
    assert.are.equal("fd00::5", b.target_ip)
    assert.are.equal(3261, b.target_port)
    b = cluster.iscsi_boot(disk("[fd00::5]:3260", "[fd00::5]"))
    assert.are.equal("fd00::5", b.target_ip)
    assert.are.equal("fd00::5", cluster.iscsi_boot(disk("[fd00::5]:3260", "fd00::5")).target_ip)
  end)

  it("leaves what the disk does not say unset", function()
    local b = cluster.iscsi_boot({ discovery = {} })
    assert.is_nil(b.target_ip)
    assert.is_nil(b.target_port)
    assert.are.same({}, cluster.iscsi_boot(nil))
  end)
end)
