--- sbot.site: load and validate a site configuration (site.lua).
--
-- A site file is Lua returning a table. Loading runs it, resolves every
-- `secret:PATH:KEY` string (see sbot.secret), validates the result against
-- `site.schema` and returns the normalised table. Every error names the file
-- and the key path.
local fsio = require "sbot.fsio"
local schema = require "sbot.schema"
local secret = require "sbot.secret"
local sys = require "sbot.sys"
local tls = require "sbot.tls"

local M = {}

local ID = "^[%w][%w_.%-]*$"
local MAC = "^%x%x:%x%x:%x%x:%x%x:%x%x:%x%x$"
local URL = "^https?://."
local IP = "^[%x:.]+$"
local CIDR = "^[%x:.]+/%d+$"

--- TLS settings of one endpoint, the table sbot.http and sbot.ws take as
-- `tls` unchanged: {ca_file, pin_sha256, insecure, server_name}, checked in
-- check_tls by sbot.tls, the one parser every client uses (docs/tls.md).
local function tls_spec(what)
  return { type = "table", description = "TLS verification of " .. what .. ": {ca_file = path, pin_sha256 = "
    .. "base64 | sha256//base64 | hex, insecure = bool, server_name = name}; absent: system CAs, host name "
    .. "checked (docs/tls.md)" }
end

M.tls_spec = tls_spec

--- The site schema. Later modules may add top-level sections with
-- site.add_section(name, spec) before loading.
M.schema = {
  name = { type = "string", description = "site name, shown in run records" },
  secrets_dir = { type = "string",
    description = "directory of secret files <dir>/PATH/KEY (mode 0600); default <site dir>/secrets" },
  state_dir = { type = "string", description = "lock files and state; default <site dir>/state" },
  runs_dir = { type = "string", description = "run records; default ./runs" },
  store = { type = "string", pattern = "^%a[%w+.-]*://",
    description = "artifact store URL (s3://bucket/prefix or file:///dir); default file:// under the run dir" },
  servers = { type = "list", default = {}, description = "the machines this site manages",
    items = { type = "table", fields = {
      id = { type = "string", required = true, pattern = ID, max = 63,
        description = "unique server id: letters, digits, '.', '_', '-', starting with a letter or digit, "
          .. "at most 63 characters (it names files: locks, run records, artifacts)" },
      hostname = { type = "string", description = "host name the node gets" },
      role = { type = "string", enum = { "master", "worker", "sno", "other" }, default = "other" },
      idrac = { type = "table", description = "the BMC", fields = {
        host = { type = "string", required = true,
          description = "BMC host name or IP, optionally with :port (name-or-ip[:port], [v6]:port)" },
        user = { type = "string", default = "root" },
        password = { type = "secret", required = true },
        tls = tls_spec("the BMC"),
      } },
      macs = { type = "list", items = { type = "string", pattern = MAC },
        description = "NIC MAC addresses (lower case, colon separated)" },
      boot_nic = { type = "string", description = "NIC used for iSCSI boot, e.g. NIC.Integrated.1-1-1" },
      node_ip = { type = "string", description = "node IP address (CIDR)" },
      gateway = { type = "string" },
      labels = { type = "map", values = { type = "string" } },
      components = { type = "map", values = { type = "table" },
        description = "per-component config overrides for this server" },
    } } },
  truenas = { type = "table", description = "the TrueNAS SCALE system serving the zvols",
    fields = {
      url = { type = "string", required = true, pattern = "^%a+://.",
        description = "ws:// or wss:// URL of the JSON-RPC endpoint (.../api/current), "
          .. "or http:// or https:// base of the REST API (.../api/v2.0)" },
      api_key = { type = "secret", required = true },
      user = { type = "string", default = "root", description = "user the API key belongs to (auth.login_ex)" },
      tls = tls_spec("the TrueNAS API"),
      pool = { type = "string", required = true, description = "pool the zvols are created in" },
      portal = { type = "string", required = true,
        description = "iSCSI portal the servers boot from: IP or IP:port (port 3260 when absent)" },
      basename = { type = "string", description = "iSCSI global basename, read from the server if absent" },
      zvol_size = { type = "string", pattern = "^%d+[KMGT]?i?B?$", default = "120G" },
    } },
  s3 = { type = "table", description = "S3-compatible object storage",
    fields = {
      endpoint = { type = "string", required = true, pattern = URL },
      tls = tls_spec("the S3 endpoint"),
      region = { type = "string", default = "us-east-1" },
      bucket = { type = "string", required = true },
      public_bucket = { type = "string" },
      public_endpoint = { type = "string", pattern = URL,
        description = "base URL anonymous readers (the BMCs) fetch published objects from, e.g. "
          .. "http://s3.example:9000 (iDRAC 8 virtual media: http only); default: endpoint" },
      prefix = { type = "string", default = "" },
      path_style = { type = "boolean", default = true },
      access_key = { type = "secret" },
      secret_key = { type = "secret" },
    } },
  openshift = { type = "table", description = "the cluster to install (docs/openshift.md)",
    fields = {
      version = { type = "string", required = true, pattern = "^%d+%.%d+" },
      cluster_name = { type = "string", required = true, pattern = ID },
      base_domain = { type = "string", required = true },
      pull_secret = { type = "secret", required = true },
      ssh_key = { type = "string" },
      -- what the OpenShift component renders into install-config.yaml and
      -- agent-config.yaml; it checks them against each other and the servers
      machine_network = { type = "string", pattern = CIDR, description = "CIDR holding every node IP and the VIPs" },
      cluster_network = { type = "string", pattern = CIDR, default = "10.128.0.0/14" },
      host_prefix = { type = "integer", min = 1, max = 128, default = 23 },
      service_network = { type = "string", pattern = CIDR, default = "172.30.0.0/16" },
      network_type = { type = "string", default = "OVNKubernetes" },
      api_vip = { type = "string", pattern = IP, description = "API VIP (not with a single node)" },
      ingress_vip = { type = "string", pattern = IP, description = "ingress VIP (not with a single node)" },
      rendezvous_ip = { type = "string", pattern = IP, description = "node IP of the rendezvous host; default: the first master's" },
      dns_servers = { type = "list", items = { type = "string", pattern = IP } },
      ntp_servers = { type = "list", items = { type = "string" } },
      iso = { type = "table", description = "how the BMCs get the agent ISO (docs/openshift.md, \"Publishing\")",
        default = { publish = "public" },
        fields = {
          publish = { type = "string", enum = { "public", "presigned" }, default = "public",
            description = "public: a copy in the public bucket under an unguessable key (anyone who "
              .. "reaches s3.public_endpoint and learns the URL can read it, and the ISO holds the "
              .. "pull secret); presigned: the private copy through a presigned URL that expires" },
          expires = { type = "integer", min = 900, max = 604800, default = 86400,
            description = "presigned: seconds the URL stays valid (SigV4 allows at most 7 days)" },
          keep_previous = { type = "integer", min = 0, default = 0,
            description = "public copies of this cluster's earlier ISOs that stay published, newest "
              .. "first (default 0: each holds the pull secret; docs/openshift.md)" },
        } },
      installer = { type = "table", description = "where openshift-install comes from",
        fields = {
          mirror_url = { type = "string", pattern = URL,
            description = "base of the client mirror; default https://mirror.openshift.com/pub/openshift-v4/clients/ocp" },
          sha256 = { type = "string", pattern = "^" .. string.rep("%x", 64) .. "$",
            description = "pin: SHA-256 (hex) the release tarball must have, beside its sha256sum.txt" },
          tls = tls_spec("the mirror"),
          timeout = { type = "number", min = 1, description = "seconds `agent create image` may take (default 1800)" },
        } },
    } },
  hooks = { type = "map", values = { type = "function" },
    description = "site decision hooks, e.g. name_target(server, version)" },
  components = { type = "map", values = { type = "table" },
    description = "config for each component by name, shared by every server" },
}

-- Checks the schema language cannot express; each returns a message or nil.

--- "name-or-ip[:port]" (IPv6 in brackets); what idrac.host and truenas.portal take:
-- the grammar sbot.iscsi.probe and sbot.redfish check, sbot_check_hostport
-- (engine/util.c) through sys.check_hostport, so the site refuses exactly what
-- they would (tests/fixtures/hostport_cases.txt). A URL gets its own advice.
local function check_hostport(v)
  if v:find("://", 1, true) then
    return string.format("%q: expected name-or-ip[:port], not a URL", v)
  end
  local ok, why = sys.check_hostport(v, false)
  if not ok then return why end
end

local function check_tls(t, url, path, errors)
  if t == nil then return end
  local ok, err = tls.check(t, path .. ".tls", url)
  if not ok then errors[#errors + 1] = err end
end

local function check_site(site, prefix)
  local errors = {}
  for i, s in ipairs(site.servers) do
    local p = string.format("%sservers[%d].idrac", prefix, i)
    if s.idrac then
      local m = check_hostport(s.idrac.host)
      if m then errors[#errors + 1] = p .. ".host: " .. m end
      check_tls(s.idrac.tls, nil, p, errors)
    end
  end
  local tn = site.truenas
  if tn then
    local scheme = tn.url:match("^(%a+)://")
    if scheme ~= "ws" and scheme ~= "wss" and scheme ~= "http" and scheme ~= "https" then
      errors[#errors + 1] = string.format("%struenas.url: %q: expected a ws://, wss://, http:// or https:// URL",
        prefix, tn.url)
    end
    local m = check_hostport(tn.portal)
    if m then errors[#errors + 1] = prefix .. "truenas.portal: " .. m end
    check_tls(tn.tls, tn.url, prefix .. "truenas", errors)
  end
  if site.s3 then check_tls(site.s3.tls, site.s3.endpoint, prefix .. "s3", errors) end
  local inst = site.openshift and site.openshift.installer
  if inst then check_tls(inst.tls, inst.mirror_url, prefix .. "openshift.installer", errors) end
  if #errors > 0 then return table.concat(errors, "\n") end
end

--- Add (or replace) a top-level section of the site schema.
function M.add_section(name, spec)
  schema.check { [name] = spec }
  M.schema[name] = spec
end

--- Sections that bring a secret resolver of their own: name -> module,
-- required only when a site file has the section. The module gives
-- `site_section` (its schema spec, added with add_section) and
-- `site_resolver(section, where)` -> resolver (see sbot.secret). Such a section
-- is resolved (from the other resolvers) and validated first; its resolver is
-- then tried before env and file for the rest of the file (docs/vault.md).
M.resolver_sections = { vault = "sbot.vault" }

-- The resolver chain for the rest of the file, or nil, error lines (each
-- starting with `where`), code ("secret" or "invalid").
local function section_resolvers(t, ctx, where)
  local chain = {}
  local names = {}
  for name in pairs(M.resolver_sections) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    if t[name] ~= nil then
      local mod = require(M.resolver_sections[name])
      M.add_section(name, mod.site_section)
      if type(t[name]) == "table" then
        local _, serr = secret.resolve_tree(t[name], ctx, name)
        if serr then return nil, where .. ": " .. serr:gsub("\n", "\n" .. where .. ": "), "secret" end
      end
      local sec, verr = schema.validate({ [name] = mod.site_section }, { [name] = t[name] }, where)
      if not sec then return nil, verr, "invalid" end
      t[name] = sec[name]
      local r, rerr = mod.site_resolver(t[name], where .. ": " .. name)
      if not r then return nil, rerr, "invalid" end
      chain[#chain + 1] = r
    end
  end
  for _, r in ipairs(ctx.resolvers or secret.resolvers) do chain[#chain + 1] = r end
  return chain
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Lua names a chunk "@path" in messages, shortened to "..." and the last 56
-- characters when the path is longer than 59 (LUA_IDSIZE): put the whole
-- path back so an error always names the file.
local function whole_path(msg, path)
  if #path + 1 <= 60 then return msg end
  local short = "..." .. path:sub(-56)
  return (msg:gsub(short:gsub("%p", "%%%0"), (path:gsub("%%", "%%%%"))))
end

-- A syntax error as "site PATH:LINE: message", without Lua's `near '<token>'`:
-- the token is source text, and in a site file that may be a password (an
-- unterminated string shows everything up to the end of its line).
local function load_error(err, path)
  err = whole_path(err, path)
  if err:find("binary chunk", 1, true) then
    return "site " .. path .. ": is a precompiled (binary) Lua chunk; a site file is Lua source text"
  end
  local esc = path:gsub("%p", "%%%0")
  local line, msg = err:match("^" .. esc .. ":(%d+): (.*)$")
  if line then
    local bare = msg:match("^(.-) near .*$")
    if bare then msg = bare .. " (source text not shown: it may hold a secret)" end
    return "site " .. path .. ":" .. line .. ": " .. msg
  end
  local verb, why = err:match("^cannot (%a+) " .. esc .. ": (.*)$") -- "cannot open PATH: why"
  if verb then return "site " .. path .. ": cannot " .. verb .. " the file: " .. why end
  return "site " .. path .. ": " .. err
end

-- Key paths of the secrets written in clear in the file (schema-wrapped
-- literals), in the validated site.
local function clear_text_secrets(site)
  local found = {}
  local function walk(node, p, depth)
    if depth > schema.MAX_DEPTH then return end
    for k, v in pairs(node) do
      local kp = type(k) == "number" and (p .. "[" .. k .. "]") or (p == "" and tostring(k) or (p .. "." .. tostring(k)))
      if secret.is_secret(v) then
        if v:source() == schema.LITERAL_SOURCE then found[#found + 1] = kp end
      elseif type(v) == "table" then
        walk(v, kp, depth + 1)
      end
    end
  end
  walk(site, "", 0)
  table.sort(found)
  return found
end

-- A file that holds secrets in clear must be as private as a secret file:
-- no group or other permission bits (like secret.file's check).
local function check_private(path, site)
  local found = clear_text_secrets(site)
  if #found == 0 then return nil end
  local st, err = fsio.stat(path, true)
  if not st then return "site " .. path .. ": cannot check its mode: " .. tostring(err) end
  if st.mode & 0x3f == 0 then return nil end
  return string.format("site %s: holds secrets in clear text (%s) but has mode %04o, readable by others: "
    .. "it must be 0600 (chmod 600 %s), or give the secrets as secret:PATH:KEY references", path,
    table.concat(found, ", "), st.mode, path)
end

-- Resolve, validate and check the table a site file returned. Returns the
-- site, or nil, message, code.
local function process(t, path, opts)
  local dir = dirname(path)
  local secrets_dir = opts.secrets_dir or (type(rawget(t, "secrets_dir")) == "string" and t.secrets_dir)
    or os.getenv("SBOT_SECRETS_DIR") or (dir .. "/secrets")
  if secrets_dir:sub(1, 1) ~= "/" and type(rawget(t, "secrets_dir")) == "string" and not opts.secrets_dir then
    secrets_dir = dir .. "/" .. secrets_dir
  end
  local ctx = { secrets_dir = secrets_dir, getenv = opts.getenv, max_depth = schema.MAX_DEPTH }
  local chain, rerr, rcode = section_resolvers(t, ctx, "site " .. path)
  if not chain then return nil, rerr, rcode end
  ctx.resolvers = chain
  local _, serr = secret.resolve_tree(t, ctx)
  if serr then
    return nil, "site " .. path .. ": " .. serr:gsub("\n", "\nsite " .. path .. ": "), "secret"
  end
  local site, verr = schema.validate(M.schema, t, "site " .. path)
  if not site then return nil, verr, "invalid" end
  local cerr = check_site(site, "site " .. path .. ": ")
  if cerr then return nil, cerr, "invalid" end
  local seen = {}
  for i, s in ipairs(site.servers) do
    if seen[s.id] then
      return nil, string.format("site %s: servers[%d].id: duplicate id %q (also servers[%d])",
        path, i, s.id, seen[s.id]), "invalid"
    end
    seen[s.id] = i
  end
  local perr = check_private(path, site)
  if perr then return nil, perr, "secret" end
  site.file = path
  site.dir = dir
  site.secrets_dir = secrets_dir
  -- paths given in the site file are relative to the file's directory
  local function rel(p) return (p:sub(1, 1) == "/" or dir == ".") and p or (dir .. "/" .. p) end
  site.state_dir = site.state_dir and rel(site.state_dir) or (dir .. "/state")
  site.runs_dir = site.runs_dir and rel(site.runs_dir) or "runs"
  return site
end

--- Load a site file. opts: {secrets_dir = dir, getenv = fn}.
-- Returns the validated site table (with `site.file` and `site.dir` set),
-- or nil and an error naming the file and key path, and a code: the errno
-- name when the file cannot be read ("ENOENT", "EACCES", "EISDIR"), "invalid"
-- when it is not Lua that returns a valid site table (docs/errors.md), "secret"
-- when its secrets cannot be had. Whatever the file holds (a binary chunk,
-- tables nested without end or referring to themselves, metatables that
-- raise), the answer is such a message, never a raised error.
function M.load(path, opts)
  if type(path) ~= "string" then error("site.load: expected a file path, got " .. type(path), 2) end
  opts = opts or {}
  -- loadfile's "cannot open" carries no errno name: ask the file system first
  local st, serr, scode = fsio.stat(path, true)
  if not st then -- serr is "<what>: <path>: <strerror>"
    return nil, "site " .. path .. ": cannot open the file: " .. (serr:match(".*: (.-)$") or serr), scode
  end
  if st.type == "directory" then return nil, "site " .. path .. ": is a directory, not a site file", "EISDIR" end
  local chunk, err = loadfile(path, "t")
  if not chunk then
    if err:match("^cannot %a+ ") then -- the file is there but cannot be opened or read
      local again, _, acode = fsio.stat(path, true)
      return nil, load_error(err, path), (not again and acode) or (err:match("Permission denied$") and "EACCES") or "EIO"
    end
    return nil, load_error(err, path), "invalid" -- not Lua source text
  end
  local ok, t = pcall(chunk)
  if not ok then return nil, "site " .. path .. ": " .. whole_path(tostring(t), path), "invalid" end
  if type(t) ~= "table" then
    return nil, "site " .. path .. ": must return a table, returned " .. type(t), "invalid"
  end
  local pok, site, perr, code = pcall(process, t, path, opts)
  if not pok then -- the table itself raised (a metatable's __index or __pairs)
    return nil, "site " .. path .. ": " .. whole_path(tostring(site), path), "invalid"
  end
  return site, perr, code
end

--- The server table with this id, or nil and a message listing the ids.
function M.server(site, id)
  local ids = {}
  for _, s in ipairs(site.servers) do
    if s.id == id then return s end
    ids[#ids + 1] = s.id
  end
  return nil, string.format("site %s: no server %q (servers: %s)", site.file or "?", id,
    #ids > 0 and table.concat(ids, ", ") or "none")
end

return M
