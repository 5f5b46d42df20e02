--- The lab's OpenShift mirror: a stand-in `openshift-install` release served
-- the way mirror.openshift.com serves the real one, so that the OpenShift
-- component's download, checksum, spawn and ISO handling run for real with no
-- network.
--
--   GET /pub/openshift-v4/clients/ocp/<version>/openshift-install-linux-<version>.tar.gz
--   GET /pub/openshift-v4/clients/ocp/<version>/openshift-install-linux.tar.gz
--   GET /pub/openshift-v4/clients/ocp/<version>/sha256sum.txt
--   GET /pub/openshift-v4/clients/ocp/<version>/release.txt
--
-- The tarball holds `openshift-install`, a Python 3 script that says it is the
-- sbot lab's stand-in (lua/sbot/lab/openshift-install.py: it reads the configs
-- with PyYAML, a YAML 1.1 reader like the real installer's, and writes a small
-- bootable ISO with xorriso), and a README.md. Releases are built in memory,
-- byte-for-byte the same for a version on every start (fixed mtimes, stored
-- deflate blocks), so a site may pin their SHA-256.
--
-- The device also completes the lab's site file: an `openshift` section whose
-- installer.mirror_url points here, and for each lab server the role, MAC and
-- node IP the cluster needs (docs/lab.md, "The OpenShift mirror").
local json = require "sbot.json"
local crypto = require "sbot.crypto"

local M = {}

M.BASE = "/pub/openshift-v4/clients/ocp"
M.DEFAULT_VERSION = "4.16.8"
M.MIN_MINOR, M.MAX_MINOR = 12, 30
M.MTIME = 1718000000 -- fixed: the same version gives the same bytes

-- ---- tar (ustar) and gzip (stored deflate blocks), in memory ------------------

local function octal(n, width)
  return string.format("%0" .. (width - 1) .. "o", n) .. "\0"
end

local function tar_entry(name, mode, content)
  local fields = {
    name .. string.rep("\0", 100 - #name), octal(mode, 8), octal(0, 8), octal(0, 8),
    octal(#content, 12), octal(M.MTIME, 12), "        ", "0", string.rep("\0", 100),
    "ustar\0", "00", ("root" .. string.rep("\0", 28)), ("root" .. string.rep("\0", 28)),
    octal(0, 8), octal(0, 8), string.rep("\0", 155),
  }
  local header = table.concat(fields)
  header = header .. string.rep("\0", 512 - #header)
  local sum = 0
  for i = 1, 512 do sum = sum + header:byte(i) end
  header = header:sub(1, 148) .. string.format("%06o", sum) .. "\0 " .. header:sub(157)
  local pad = (512 - #content % 512) % 512
  return header .. content .. string.rep("\0", pad)
end

local function tar(entries)
  local parts = {}
  for _, e in ipairs(entries) do parts[#parts + 1] = tar_entry(e.name, e.mode, e.content) end
  parts[#parts + 1] = string.rep("\0", 1024)
  return table.concat(parts)
end

local crc_table
local function crc32(s)
  if not crc_table then
    crc_table = {}
    for i = 0, 255 do
      local c = i
      for _ = 1, 8 do
        if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
      end
      crc_table[i] = c
    end
  end
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

local function gzip(data)
  local out = { "\31\139\8\0" .. string.pack("<I4", M.MTIME) .. "\0\3" }
  local pos = 1
  repeat
    local chunk = data:sub(pos, pos + 65534)
    pos = pos + #chunk
    local final = pos > #data and 1 or 0
    out[#out + 1] = string.pack("<BI2I2", final, #chunk, (~#chunk) & 0xFFFF) .. chunk
  until final == 1
  out[#out + 1] = string.pack("<I4I4", crc32(data), #data & 0xFFFFFFFF)
  return table.concat(out)
end
M.gzip, M.tar, M.crc32 = gzip, tar, crc32

-- ---- releases ---------------------------------------------------------------------

local function script_source()
  local path = assert(package.searchpath("sbot.lab.installer", package.path),
    "sbot.lab.installer: cannot find its own file on package.path")
  local file = path:gsub("installer%.lua$", "openshift-install.py")
  local f, err = io.open(file, "rb")
  if not f then error("sbot lab installer: cannot read the stand-in " .. tostring(err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

--- Is `v` a version this mirror serves (4.<minor>.<patch>)?
function M.serves(v)
  local minor = v:match("^4%.(%d+)%.%d+$")
  minor = tonumber(minor)
  return minor ~= nil and minor >= M.MIN_MINOR and minor <= M.MAX_MINOR
end

--- The release of a version: {tarball, name, sha256 (hex), files = {name -> body}}.
function M.release(v, source)
  local script = (source or script_source()):gsub("@VERSION@", v)
  local readme = table.concat({
    "# openshift-install " .. v .. " (sbot lab stand-in)",
    "",
    "This is NOT Red Hat's OpenShift installer. `sbot lab` serves it so that sbot's",
    "OpenShift component can be tested without a network. `openshift-install agent",
    "create image --dir DIR` checks install-config.yaml and agent-config.yaml and writes",
    "a small bootable ISO (DIR/agent.x86_64.iso) that embeds them. Point the site's",
    "openshift.installer.mirror_url at https://mirror.openshift.com/pub/openshift-v4/clients/ocp",
    "for the real installer.",
    "",
  }, "\n")
  local tarball = gzip(tar {
    { name = "README.md", mode = 420, content = readme },
    { name = "openshift-install", mode = 493, content = script },
  })
  local name = "openshift-install-linux-" .. v .. ".tar.gz"
  local sum = crypto.hex(crypto.sha256(tarball))
  local sums = string.format("%s  %s\n%s  %s\n", sum, name, sum, "openshift-install-linux.tar.gz")
  local release = string.format(
    "Client tools for OpenShift (sbot lab stand-in)\n------------------------\n\nName:           %s\n"
    .. "Digest:         sha256:%s\nCreated:        %s\n\nPull From: quay.io/openshift-release-dev/ocp-release@sha256:%s\n",
    v, crypto.hex(crypto.sha256("sbot-lab-release-" .. v)), os.date("!%Y-%m-%dT%H:%M:%SZ", M.MTIME),
    crypto.hex(crypto.sha256("sbot-lab-release-" .. v)))
  return { name = name, sha256 = sum, tarball = tarball,
    files = { [name] = tarball, ["openshift-install-linux.tar.gz"] = tarball, ["sha256sum.txt"] = sums,
      ["release.txt"] = release } }
end

-- ---- the device ---------------------------------------------------------------------

local function html(title, items)
  local lines = { "<html><head><title>Index of " .. title .. "</title></head><body><h1>Index of "
    .. title .. "</h1><ul>" }
  for _, i in ipairs(items) do lines[#lines + 1] = string.format('<li><a href="%s">%s</a></li>', i, i) end
  lines[#lines + 1] = "</ul><p>sbot lab stand-in mirror</p></body></html>\n"
  return table.concat(lines, "\n")
end

local function not_found()
  return 404, { ["Content-Type"] = "text/html" },
    "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
    .. "<p>The requested URL was not found on this server.</p></body></html>\n"
end

--- A random ed25519-shaped public key (the stand-in checks the format).
local function ssh_key()
  local blob = string.pack(">s4s4", "ssh-ed25519", crypto.random_bytes(32))
  return "ssh-ed25519 " .. crypto.base64_encode(blob) .. " sbot-lab"
end

function M.new(ctx)
  local source = script_source()
  local releases, st = {}, { requests = 0, downloads = {}, corrupted = 0 }
  local function release(v)
    releases[v] = releases[v] or M.release(v, source)
    return releases[v]
  end
  local dev = { name = "installer", kind = "installer" }

  function dev.handler(req)
    st.requests = st.requests + 1
    if req.method ~= "GET" and req.method ~= "HEAD" then
      return 405, { ["Content-Type"] = "text/plain", Allow = "GET, HEAD" }, "Method Not Allowed\n"
    end
    local path = req.path
    if path == M.BASE or path == M.BASE .. "/" then
      return 200, { ["Content-Type"] = "text/html" },
        html(M.BASE .. "/", { M.DEFAULT_VERSION .. "/", "(any 4." .. M.MIN_MINOR .. "-4." .. M.MAX_MINOR .. " x.y.z)" })
    end
    local v, file = path:match("^" .. M.BASE:gsub("%-", "%%-") .. "/([^/]+)/?(.*)$")
    if not v or not M.serves(v) then return not_found() end
    local r = release(v)
    if file == "" then
      local names = {}
      for n in pairs(r.files) do names[#names + 1] = n end
      table.sort(names)
      return 200, { ["Content-Type"] = "text/html" }, html(M.BASE .. "/" .. v .. "/", names)
    end
    local body = r.files[file]
    if not body then return not_found() end
    local headers = { ["Content-Type"] = file:match("%.gz$") and "application/x-gzip" or "text/plain",
      ["Last-Modified"] = os.date("!%a, %d %b %Y %H:%M:%S GMT", M.MTIME), ["Accept-Ranges"] = "none" }
    if file:match("%.tar%.gz$") then
      st.downloads[#st.downloads + 1] = { version = v, file = file, method = req.method }
      -- fault `corrupt`: one byte changed (sha256sum.txt stays right), as a
      -- broken proxy or disk would
      if req.method == "GET" and dev.faults and dev.faults.chance("corrupt") then
        st.corrupted = st.corrupted + 1
        local i = #body // 2
        body = body:sub(1, i - 1) .. string.char((body:byte(i) + 1) % 256) .. body:sub(i + 1)
      end
    end
    return 200, headers, body -- libmicrohttpd sends no body for HEAD, with its Content-Length
  end

  function dev.state()
    local served = {}
    for v, r in pairs(releases) do served[v] = { name = r.name, sha256 = r.sha256, size = #r.tarball } end
    return { requests = st.requests, downloads = json.array(st.downloads), corrupted = st.corrupted,
      releases = served, faults = dev.faults and dev.faults.counts or nil }
  end

  --- site_entry(url, tls, endpoint, site): the `openshift` section, and the
  -- cluster facts of the lab's servers (role, MAC, node IP) where the iDRAC
  -- entries left them out. 1 server: single node (sno); 2: the first is a
  -- single node, the second stays out (role other); 3 or more: three
  -- masters, the rest workers.
  function dev.site_entry(url, tls, _, site)
    local idracs = {}
    for _, d in ipairs(ctx.lab and ctx.lab.devices or {}) do
      if d.kind == "idrac" then idracs[#idracs + 1] = d end
    end
    local servers = site and site.servers or {}
    local n = #servers
    for i, s in ipairs(servers) do
      if s.role == nil then
        s.role = n == 1 and "sno" or n == 2 and (i == 1 and "sno" or "other") or (i <= 3 and "master" or "worker")
      end
      local d = idracs[i]
      local nics = d and d.state and d.state().nics
      if s.macs == nil and nics and nics[1] and nics[1].mac then
        s.macs = { nics[1].mac:lower() }
        s.boot_nic = s.boot_nic or nics[1].fqdd
      end
      s.node_ip = s.node_ip or string.format("10.99.0.%d/24", 10 + i)
      s.gateway = s.gateway or "10.99.0.1"
      s.hostname = s.hostname or s.id
    end
    local sno = n <= 2
    local pull = json.encode { auths = { ["cloud.openshift.com"] = {
      auth = crypto.base64_encode("sbot-lab:" .. crypto.hex(crypto.random_bytes(12))), email = "lab@sbot.invalid" } } }
    return "openshift", {
      version = M.DEFAULT_VERSION, cluster_name = "lab", base_domain = "sbot.invalid",
      pull_secret = pull, ssh_key = ssh_key(),
      machine_network = "10.99.0.0/24", dns_servers = { "10.99.0.1" },
      api_vip = not sno and "10.99.0.5" or nil, ingress_vip = not sno and "10.99.0.6" or nil,
      installer = { mirror_url = url .. M.BASE, tls = tls },
    }
  end

  return dev
end

return M
