-- The lab's OpenShift mirror and its stand-in openshift-install: served like
-- mirror.openshift.com, checked like the real installer checks its configs,
-- and writing a real bootable ISO.
local h = require "helpers"
local labclient = require "labclient"
local http = require "sbot.http"
local json = require "sbot.json"
local yaml = require "sbot.yaml"
local crypto = require "sbot.crypto"
local installer = require "sbot.lab.installer"

local PULL = '{"auths":{"cloud.openshift.com":{"auth":"bGFiOmxhYg==","email":"lab@sbot.invalid"}}}'

local function install_config(over)
  local t = {
    apiVersion = "v1", baseDomain = "sbot.invalid", metadata = { name = "lab" },
    compute = json.array { { name = "worker", replicas = 0 } },
    controlPlane = { name = "master", replicas = 3 },
    networking = { networkType = "OVNKubernetes", machineNetwork = json.array { { cidr = "10.99.0.0/24" } } },
    platform = { baremetal = { apiVIPs = json.array { "10.99.0.5" }, ingressVIPs = json.array { "10.99.0.6" } } },
    pullSecret = PULL,
  }
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

local function agent_config(n, over)
  local hosts = json.array {}
  for i = 1, n do
    hosts[i] = { hostname = "r630-0" .. i, role = "master",
      interfaces = json.array { { name = "eno1", macAddress = "24:6e:96:00:01:1" .. i } },
      rootDeviceHints = { deviceName = "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2005-10.org.freenas.ctl:r630-0"
        .. i .. ".openshift4168-lun-0" },
      networkConfig = { interfaces = json.array { { name = "eno1", type = "ethernet", state = "up",
        ["mac-address"] = "24:6e:96:00:01:1" .. i,
        ipv4 = { enabled = true, dhcp = false, address = json.array { { ip = "10.99.0.1" .. i, ["prefix-length"] = 24 } } } } } } }
  end
  local t = { apiVersion = "v1beta1", kind = "AgentConfig", metadata = { name = "lab" },
    rendezvousIP = "10.99.0.11", hosts = hosts }
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

describe("lab OpenShift mirror", function()
  local lab, base, tls, bin, version
  local tmp

  local function get(path, method)
    return assert(http.request { method = method or "GET", url = base .. path, tls = tls, timeout = 10 })
  end

  setup(function()
    lab = labclient.start_lab { "--servers", "3" }
    local d = lab.info.devices.installer
    assert(d, "the lab has no installer device")
    tls = { pin_sha256 = d.pin_sha256 }
    base = lab.site.openshift.installer.mirror_url
    version = lab.site.openshift.version
    tmp = h.tmpdir("mirror")
    -- download, check, unpack: what the OpenShift component does
    local r = get("/" .. version .. "/openshift-install-linux-" .. version .. ".tar.gz")
    assert.are.equal(200, r.status)
    h.write_file(tmp .. "/release.tar.gz", r.body)
    assert(h.sh("tar -xzf " .. h.shquote(tmp .. "/release.tar.gz") .. " -C " .. h.shquote(tmp)))
    bin = tmp .. "/openshift-install"
  end)

  teardown(function()
    if lab then lab.stop() end
    if tmp then os.execute("rm -rf " .. h.shquote(tmp)) end
  end)

  local function run(dir, ic_text, ac_text)
    os.execute("rm -rf " .. h.shquote(dir) .. " && mkdir -p " .. h.shquote(dir))
    if ic_text then h.write_file(dir .. "/install-config.yaml", ic_text) end
    if ac_text then h.write_file(dir .. "/agent-config.yaml", ac_text) end
    local ok, code, out = h.sh(h.shquote(bin) .. " agent create image --dir " .. h.shquote(dir) .. " 2>&1")
    return ok, code, out
  end

  it("completes the site file: an openshift section and the servers' cluster facts", function()
    local site = assert(require("sbot.site").load(lab.dir .. "/site.lua"))
    assert.are.equal(installer.DEFAULT_VERSION, site.openshift.version)
    assert.matches("^https://127%.0%.0%.1:%d+/pub/openshift%-v4/clients/ocp$", site.openshift.installer.mirror_url)
    assert.are.equal("10.99.0.5", site.openshift.api_vip)
    for i, s in ipairs(site.servers) do
      assert.are.equal("master", s.role)
      assert.are.equal(("10.99.0.%d/24"):format(10 + i), s.node_ip)
      assert.matches("^24:6e:96:%x%x:%x%x:%x%x$", s.macs[1])
    end
    -- the MAC is the iDRAC's first NIC's
    local st = lab.state().devices["idrac-1"]
    assert.are.equal(st.nics[1].mac:lower(), site.servers[1].macs[1])
  end)

  it("serves the release like the mirror: tarball, sha256sum.txt, listings, 404 for unknown versions", function()
    local sums = get("/" .. version .. "/sha256sum.txt")
    assert.are.equal(200, sums.status)
    local tarball = h.read_file(tmp .. "/release.tar.gz")
    local sum = crypto.hex(crypto.sha256(tarball))
    assert.are.equal(sum .. "  openshift-install-linux-" .. version .. ".tar.gz\n" .. sum
      .. "  openshift-install-linux.tar.gz\n", sums.body)
    -- the same bytes on every start (a site may pin the SHA-256)
    assert.are.equal(installer.release(version).sha256, sum)
    assert.are.equal(tarball, get("/" .. version .. "/openshift-install-linux.tar.gz").body)
    local head = get("/" .. version .. "/openshift-install-linux-" .. version .. ".tar.gz", "HEAD")
    assert.are.equal(200, head.status)
    assert.are.equal(tostring(#tarball), head.headers["content-length"])
    assert.matches("sha256sum.txt", get("/" .. version .. "/").body, 1, true)
    assert.are.equal(404, get("/4.99.0/sha256sum.txt").status)
    assert.are.equal(404, get("/4.11.0/sha256sum.txt").status)
    assert.are.equal(404, get("/" .. version .. "/nope.tar.gz").status)
    assert.are.equal(405, get("/" .. version .. "/sha256sum.txt", "POST").status)
    local _, _, list = h.sh("tar -tvzf " .. h.shquote(tmp .. "/release.tar.gz"))
    assert.matches("%-rwxr%-xr%-x root/root +%d+ [^\n]* openshift%-install\n", list)
    assert.matches("README.md", list, 1, true)
    local ok, _, out = h.sh(h.shquote(bin) .. " version")
    assert.is_true(ok)
    assert.matches("^openshift%-install " .. version:gsub("%.", "%%.") .. "\n", out)
    assert.matches("sbot lab stand-in, not the real installer", out, 1, true)
  end)

  it("agent create image: checks the configs, writes a bootable ISO embedding them, consumes them", function()
    local dir = tmp .. "/ok"
    local ic, ac = yaml.encode(install_config()), yaml.encode(agent_config(3))
    local ok, code, out = run(dir, ic, ac)
    assert(ok, "exit " .. tostring(code) .. ": " .. out)
    assert.matches('level=info msg="Configuration has 3 master replicas', out, 1, true)
    assert.matches('level=info msg="Generated ISO at ' .. dir .. '/agent.x86_64.iso."', out, 1, true)
    local iso = h.read_file(dir .. "/agent.x86_64.iso")
    -- ISO 9660 primary volume descriptor at sector 16, El Torito boot record at 17
    assert.are.equal("\1CD001\1", iso:sub(16 * 2048 + 1, 16 * 2048 + 7))
    assert.are.equal("\0CD001\1EL TORITO SPECIFICATION", iso:sub(17 * 2048 + 1, 17 * 2048 + 30))
    assert.matches("^agent%-sbot%-lab%-" .. version:gsub("%.", "%%.") .. " *$", iso:sub(16 * 2048 + 41, 16 * 2048 + 72))
    local _, _, report = h.sh("xorriso -indev " .. h.shquote(dir .. "/agent.x86_64.iso")
      .. " -report_el_torito plain 2>&1")
    assert.matches("El Torito boot img :   1  BIOS  y   none", report, 1, true)
    -- the configs are inside, byte for byte
    assert(h.sh("xorriso -osirrox on -indev " .. h.shquote(dir .. "/agent.x86_64.iso")
      .. " -extract /sbot-lab " .. h.shquote(dir .. "/x") .. " >/dev/null 2>&1"))
    assert.are.equal(ic, h.read_file(dir .. "/x/install-config.yaml"))
    assert.are.equal(ac, h.read_file(dir .. "/x/agent-config.yaml"))
    -- consumed, like the real installer; auth written 0600
    assert.is_nil(io.open(dir .. "/install-config.yaml"))
    assert.is_nil(io.open(dir .. "/agent-config.yaml"))
    local _, _, mode = h.sh("stat -c %a " .. h.shquote(dir .. "/auth/kubeadmin-password"))
    assert.are.equal("600\n", mode)
    assert.are.equal("10.99.0.11\n", h.read_file(dir .. "/rendezvousIP"))
  end)

  local refusals = {
    { "a pull secret that is missing",
      function() return yaml.encode(install_config { pullSecret = "" }), yaml.encode(agent_config(3)) end,
      'level=fatal msg="failed to fetch Agent Installer ISO: failed to load asset \\"Install Config\\": invalid '
        .. 'install-config configuration: pullSecret: Invalid value: \\"<redacted by the sbot lab stand-in>\\": '
        .. 'unexpected end of JSON input"' },
    { "a single node with VIPs (platform none has no VIP fields)",
      function()
        local ic = install_config { controlPlane = { name = "master", replicas = 1 },
          platform = { none = { apiVIPs = json.array { "10.99.0.5" } } } }
        return yaml.encode(ic), yaml.encode(agent_config(1))
      end,
      'failed to create install config: invalid \\"install-config.yaml\\" file: error unmarshaling JSON: while '
        .. 'decoding JSON: json: unknown field \\"apiVIPs\\""' },
    { "a single node on platform baremetal",
      function()
        return yaml.encode(install_config { controlPlane = { name = "master", replicas = 1 } }),
          yaml.encode(agent_config(1))
      end,
      'platform: Invalid value: \\"baremetal\\": Only platform none and external supports 1 ControlPlane and 0 Compute nodes' },
    { "a duplicate MAC",
      function()
        local ac = agent_config(3)
        ac.hosts[3].interfaces[1].macAddress = ac.hosts[1].interfaces[1].macAddress
        return yaml.encode(install_config()), yaml.encode(ac)
      end,
      'invalid Hosts configuration: Hosts[2].Interfaces[0].macAddress: Invalid value: \\"24:6e:96:00:01:11\\": '
        .. 'duplicate MAC address found"' },
    { "an unquoted MAC (YAML 1.1 reads 52:54:00:12:34:56 as a number)",
      function()
        local ac = yaml.encode(agent_config(3)):gsub("'(24:6e:96:00:01:12)'", "52:54:00:12:34:56")
        return yaml.encode(install_config()), ac
      end,
      "json: cannot unmarshal number into Go struct field Interface.hosts.interfaces.macAddress of type string" },
    { "a VIP outside the machine network",
      function()
        local ic = install_config()
        ic.platform.baremetal.apiVIPs = json.array { "10.1.0.5" }
        return yaml.encode(ic), yaml.encode(agent_config(3))
      end,
      'platform.baremetal.apiVIPs: Invalid value: \\"10.1.0.5\\": IP expected to be in one of the machine networks: 10.99.0.0/24' },
    { "a rendezvous IP on a worker",
      function()
        local ic = install_config { compute = json.array { { name = "worker", replicas = 1 } } }
        local ac = agent_config(4)
        ac.hosts[4].role = "worker"
        ac.rendezvousIP = "10.99.0.14"
        ac.hosts[4].networkConfig.interfaces[1].ipv4.address[1].ip = "10.99.0.14"
        return yaml.encode(ic), yaml.encode(ac)
      end,
      "Hosts[3].Host: Forbidden: Host r630-04 has role 'worker' and has the rendezvousIP assigned to it." },
    { "more hosts than replicas, and a root device outside /dev/disk/by-path",
      function()
        local ac = agent_config(4)
        ac.hosts[4].role = "worker"
        ac.hosts[2].rootDeviceHints.deviceName = "/dev/disk/by-id/wwn-0x6"
        return yaml.encode(install_config()), yaml.encode(ac)
      end,
      '[Hosts[1].rootDeviceHints.deviceName: Invalid value: \\"/dev/disk/by-id/wwn-0x6\\": Device Name of root device '
        .. 'hint must be path in /dev/ or /dev/disk/by-path/, Hosts: Too many: 4: must have at most 3 items]' },
    { "a duplicate key",
      function() return yaml.encode(install_config()), "apiVersion: v1beta1\nrendezvousIP: 10.99.0.11\nrendezvousIP: 10.99.0.12\n" end,
      'failed to unmarshal agent-config.yaml: error converting YAML to JSON: yaml: unmarshal errors:\\n  line 3: key '
        .. '\\"rendezvousIP\\" already set in map' },
  }
  for _, case in ipairs(refusals) do
    it("refuses " .. case[1] .. " like the real installer, and leaves the configs", function()
      local dir = tmp .. "/bad"
      local ic, ac = case[2]()
      local ok, code, out = run(dir, ic, ac)
      assert.is_false(ok)
      assert.are.equal(1, code)
      assert.matches(case[3], out, 1, true)
      assert.matches('level=fatal msg="failed to fetch Agent Installer ISO: ', out, 1, true)
      assert.is_nil(io.open(dir .. "/agent.x86_64.iso"))
      assert.is_not_nil(io.open(dir .. "/install-config.yaml"))
    end)
  end

  it("serves a corrupted tarball under the corrupt fault, with the right sha256sum.txt", function()
    local c = lab.client("installer")
    assert.are.equal(200, assert(c:request("POST", "/lab/faults", { body = "installer:corrupt=1" })).status)
    local r = get("/" .. version .. "/openshift-install-linux-" .. version .. ".tar.gz")
    assert.are.equal(200, assert(c:request("POST", "/lab/faults", { body = "" })).status)
    local good = h.read_file(tmp .. "/release.tar.gz")
    assert.are.equal(#good, #r.body)
    assert.are_not.equal(crypto.sha256(good), crypto.sha256(r.body))
    assert.matches(crypto.hex(crypto.sha256(good)), get("/" .. version .. "/sha256sum.txt").body, 1, true)
    local st = lab.state().devices.installer
    assert.are.equal(1, st.corrupted)
    assert.is_true(#st.downloads >= 3)
  end)
end)
