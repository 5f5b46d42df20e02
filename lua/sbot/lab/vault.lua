--- sbot.lab.vault: a HashiCorp Vault model for `sbot lab` (docs/lab.md, "The Vault model").
--
-- The HTTP API of Vault 1.x as sbot uses it, with Vault's own shapes: every
-- answer in the response envelope ({request_id, lease_id, renewable,
-- lease_duration, data, wrap_info, warnings, auth, mount_type}), every error as
-- {"errors": [...]} with Vault's status codes and texts (go-multierror's "1 error
-- occurred:\n\t* permission denied\n\n" included), KV v1 and KV v2 mounts (v2:
-- data.data + data.metadata, versions, deleted and destroyed versions answer 404
-- with their metadata), tokens with TTLs, renewal capped by a max TTL, AppRole,
-- ACL policies in HCL (path globs, `+` segments, deny), namespaces
-- (X-Vault-Namespace) and a sealed mode (fault `vault:sealed=1`).
--
-- State is plain Lua tables (dev.st): mounts, tokens, policies, roles. Time is
-- the lab's clock (monotonic seconds), so short TTLs expire for real.
local crypto = require "sbot.crypto"
local fsio = require "sbot.fsio"
local json = require "sbot.json"

local M = {}

M.VERSION = "1.17.3"
M.KV1_LEASE = 2764800 -- what KV v1 answers as lease_duration (768h)
M.DEFAULT_MAX_TTL = 32 * 86400

local null = json.null

-- ---- errors -------------------------------------------------------------------

local VaultError = {}
VaultError.__index = VaultError
local function fail(status, ...)
  error(setmetatable({ status = status, errors = { ... } }, VaultError), 0)
end

-- go-multierror's text, as Vault puts it in "errors" for ACL failures
local function multierror(...)
  local items = { ... }
  local s = string.format("%d error%s occurred:\n", #items, #items == 1 and "" or "s")
  for _, e in ipairs(items) do s = s .. "\t* " .. e .. "\n" end
  return s .. "\n"
end

local function denied() fail(403, multierror("permission denied")) end
local function invalid_token() fail(403, multierror("permission denied", "invalid token")) end
local function no_route(path)
  fail(404, string.format("no handler for route %q. route entry not found.", path))
end

-- ---- small helpers ----------------------------------------------------------------

local function uuid()
  local h = crypto.hex(crypto.random_bytes(16))
  return string.format("%s-%s-%s-%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(13, 16), h:sub(17, 20), h:sub(21, 32))
end

local B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
local function token_id()
  local raw = crypto.random_bytes(24)
  return "hvs." .. raw:gsub(".", function(c)
    local i = c:byte() % 62 + 1
    return B62:sub(i, i)
  end)
end

local function rfc3339(epoch) return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(epoch)) .. "Z" end

--- Vault's duration: integer seconds, or "90s", "20m", "1h30m", "2d".
function M.parse_duration(v)
  if v == nil or v == null then return nil end
  if math.type(v) == "integer" then return v >= 0 and v or nil end
  if type(v) == "number" then return v >= 0 and math.floor(v) or nil end
  if type(v) ~= "string" then return nil end
  if v:match("^%d+$") then return tonumber(v) end
  local total, rest = 0, v
  local units = { s = 1, m = 60, h = 3600, d = 86400 }
  while rest ~= "" do
    local n, u, tail = rest:match("^(%d+%.?%d*)([smhd])(.*)$")
    if not n then return nil end
    total = total + tonumber(n) * units[u]
    rest = tail
  end
  return math.floor(total)
end

local function trim_slashes(s) return (s:gsub("^/+", ""):gsub("/+$", "")) end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return setmetatable(c, getmetatable(v))
end

-- ---- policies -------------------------------------------------------------------

local CAPS = { create = true, read = true, update = true, delete = true, list = true, sudo = true,
  deny = true, patch = true, subscribe = true }

--- Parse a policy in HCL (`path "p" { capabilities = ["read"] }`, comments
-- with # or //) or its JSON form ({"path": {"p": {"capabilities": [...]}}}).
-- Returns {rules = {{pattern, caps = set}}} or nil, message.
function M.parse_policy(text)
  if type(text) ~= "string" then return nil, "policy must be a string" end
  local rules = {}
  local function add(pattern, caps, where)
    local set = {}
    if type(caps) ~= "table" then return "capabilities of " .. where .. " must be a list" end
    for _, c in ipairs(caps) do
      if not CAPS[c] then return string.format("path %q: invalid capability %q", pattern, tostring(c)) end
      set[c] = true
    end
    rules[#rules + 1] = { pattern = pattern, caps = set }
  end
  if text:match("^%s*{") then
    local doc, err = json.decode(text)
    if type(doc) ~= "table" then return nil, "failed to parse policy: " .. tostring(err) end
    for p, spec in pairs(type(doc.path) == "table" and doc.path or {}) do
      local e = add(p, type(spec) == "table" and spec.capabilities, string.format("%q", p))
      if e then return nil, "failed to parse policy: " .. e end
    end
    return { rules = rules }
  end
  local src = text:gsub("#[^\n]*", ""):gsub("//[^\n]*", "")
  local pos = 1
  while true do
    local s, e, pattern, body = src:find('path%s+"([^"]*)"%s*(%b{})', pos)
    if not s then break end
    if src:sub(pos, s - 1):match("%S") then
      return nil, "failed to parse policy: unexpected text before path \"" .. pattern .. "\""
    end
    local list = body:match("capabilities%s*=%s*(%b[])")
    if not list then return nil, string.format("failed to parse policy: path %q has no capabilities", pattern) end
    local caps = {}
    for c in list:gmatch('"([^"]*)"') do caps[#caps + 1] = c end
    local err = add(pattern, caps, string.format("%q", pattern))
    if err then return nil, "failed to parse policy: " .. err end
    pos = e + 1
  end
  if src:sub(pos):match("%S") then return nil, "failed to parse policy: unexpected text at the end" end
  return { rules = rules }
end

-- Whether pattern (with * at the end and + for one segment) matches path;
-- returns the match's specificity (longer literal = more specific) or nil.
local function match_rule(pattern, path)
  local glob = pattern:sub(-1) == "*"
  local p = glob and pattern:sub(1, -2) or pattern
  -- turn + into one segment, the rest literal
  local lua = "^" .. p:gsub("[%^%$%(%)%%%.%[%]%*%-%?]", "%%%0"):gsub("%+", "[^/]+")
  if not glob then lua = lua .. "$" end
  if path:match(lua) then return (glob and 0 or 1e6) + #p end
  return nil
end

-- The capabilities a set of policies grants on path (Vault: the most specific
-- matching rule decides; the same pattern in several policies is merged).
local function capabilities(policies, path)
  local merged = {}
  for _, pol in ipairs(policies) do
    for _, r in ipairs(pol.rules) do
      local m = merged[r.pattern] or {}
      for c in pairs(r.caps) do m[c] = true end
      merged[r.pattern] = m
    end
  end
  local best, score = nil, -1
  for pattern, caps in pairs(merged) do
    local s = match_rule(pattern, path)
    if s and s > score then best, score = caps, s end
  end
  return best or {}
end

-- The default policy every token gets (what Vault's own default policy
-- allows that sbot uses).
local DEFAULT_POLICY = [[
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
]]

-- ---- the model ------------------------------------------------------------------------

local Model = {}
Model.__index = Model

--- A Vault model. opts: clock (fn -> seconds), now (fn -> epoch seconds),
-- namespace (everything lives in this namespace; "" = root).
function M.model(opts)
  opts = opts or {}
  local m = setmetatable({
    clock = opts.clock or os.time, now = opts.now or os.time,
    namespace = trim_slashes(opts.namespace or ""),
    sealed = false, cluster_name = "vault-cluster-lab", cluster_id = uuid(),
    mounts = {}, tokens = {}, policies = {}, roles = {},
    counts = { requests = 0, logins = 0, login_failures = 0, renewals = 0, lookups = 0, reads = 0,
      writes = 0, denied = 0, sealed = 0, tokens_created = 0, revocations = 0 },
  }, Model)
  m:set_policy("default", DEFAULT_POLICY)
  m:mount("secret", "kv", { version = "2" }, "key/value secret storage")
  m:mount("cubbyhole", "cubbyhole", nil, "per-token private secret storage")
  m.root_token = m:create_token({ policies = { "root" }, display_name = "root", path = "auth/token/root",
    no_default_policy = true }).id
  return m
end

function Model:mount(path, typ, options, description)
  path = trim_slashes(path) .. "/"
  self.mounts[path] = { path = path, type = typ, options = options, description = description or "",
    accessor = typ .. "_" .. crypto.hex(crypto.random_bytes(4)), uuid = uuid(), data = {},
    local_ = false, seal_wrap = false }
  return self.mounts[path]
end

function Model:set_policy(name, text)
  local p, err = M.parse_policy(text)
  if not p then return nil, err end
  p.name, p.text = name, text
  self.policies[name] = p
  return p
end

--- Create a token; spec: {policies, ttl, explicit_max_ttl, max_ttl, renewable,
-- display_name, path, no_default_policy, meta, num_uses, period}. max_ttl is
-- what an auth method's role sets (AppRole token_max_ttl): it caps renewals
-- like explicit_max_ttl but, as in Vault, lookup-self shows explicit_max_ttl 0.
function Model:create_token(spec)
  local pols = {}
  local seen = {}
  local function add(p) if not seen[p] then seen[p] = true; pols[#pols + 1] = p end end
  for _, p in ipairs(spec.policies or {}) do add(p) end
  if not spec.no_default_policy and not seen.root then add("default") end
  table.sort(pols)
  local now = self.clock()
  local root = seen.root
  local ttl = root and 0 or (spec.ttl or 2764800)
  local max = spec.explicit_max_ttl or 0
  local cap = M.DEFAULT_MAX_TTL
  if max > 0 then cap = math.min(cap, max) end
  if (spec.max_ttl or 0) > 0 then cap = math.min(cap, spec.max_ttl) end
  local t = { id = token_id(), accessor = crypto.hex(crypto.random_bytes(12)), policies = pols,
    display_name = spec.display_name or "token", path = spec.path or "auth/token/create",
    meta = spec.meta, num_uses = spec.num_uses or 0, orphan = spec.orphan ~= false,
    renewable = not root and spec.renewable ~= false, creation_ttl = ttl, explicit_max_ttl = max,
    created = now, created_epoch = self.now(), namespace = self.namespace, role = spec.role }
  if ttl > 0 then
    t.expires = now + ttl
    t.max_expires = now + cap
    if t.expires > t.max_expires then t.expires = t.max_expires end
  end
  self.tokens[t.id] = t
  self.counts.tokens_created = self.counts.tokens_created + 1
  return t
end

-- The live token with this id, or nil (expired ones are removed).
function Model:token(id)
  local t = id and self.tokens[id]
  if not t then return nil end
  if t.expires and self.clock() >= t.expires then
    self.tokens[id] = nil
    return nil
  end
  return t
end

function Model:ttl(t)
  if not t.expires then return 0 end
  -- whole seconds, rounded as Vault rounds its clock
  return math.max(0, math.floor(t.expires - self.clock() + 0.5))
end

function Model:token_policies(t)
  local out = {}
  for _, name in ipairs(t.policies) do
    if self.policies[name] then out[#out + 1] = self.policies[name] end
  end
  return out
end

function Model:is_root(t)
  for _, p in ipairs(t.policies) do if p == "root" then return true end end
  return false
end

--- Check that token t may do `cap` on path; raises 403 otherwise.
function Model:check(t, path, cap)
  if self:is_root(t) then return end
  local caps = capabilities(self:token_policies(t), path)
  if caps.deny or not caps[cap] then
    self.counts.denied = self.counts.denied + 1
    denied()
  end
end

-- Whether t may do anything under the mount prefix (hasMountAccess).
function Model:has_mount_access(t, prefix)
  if self:is_root(t) then return true end
  for _, pol in ipairs(self:token_policies(t)) do
    for _, r in ipairs(pol.rules) do
      local p = r.pattern:gsub("%*$", "")
      if not r.caps.deny and next(r.caps) and (p:sub(1, #prefix) == prefix or prefix:sub(1, #p) == p) then
        return true
      end
    end
  end
  return false
end

-- The mount serving path (longest prefix), and the path inside it.
function Model:find_mount(path)
  local best
  for mp, mt in pairs(self.mounts) do
    if (path .. "/"):sub(1, #mp) == mp and (not best or #mp > #best.path) then best = mt end
  end
  if not best then return nil end
  return best, path:sub(#best.path + 1)
end

function Model:mount_info(mt)
  return { type = mt.type, description = mt.description, accessor = mt.accessor, uuid = mt.uuid,
    options = mt.options or null, ["local"] = false, seal_wrap = false, external_entropy_access = false,
    plugin_version = "", running_plugin_version = "v" .. M.VERSION .. "+builtin.vault",
    running_sha256 = "", deprecation_status = mt.type == "kv" and "supported" or nil,
    config = { default_lease_ttl = 0, max_lease_ttl = 0, force_no_cache = false } }
end

-- ---- KV ----------------------------------------------------------------------------

--- Write a KV v2 version (what PUT <mount>/data/<path> does); returns the version metadata.
function Model:kv2_put(mt, path, data, cas)
  local e = mt.data[path]
  if cas ~= nil and cas ~= (e and e.current or 0) then
    fail(400, "check-and-set parameter did not match the current version")
  end
  if not e then
    e = { current = 0, versions = {}, created_time = rfc3339(self.now()), custom_metadata = null }
    mt.data[path] = e
  end
  e.current = e.current + 1
  e.versions[e.current] = { data = copy(data), created_time = rfc3339(self.now()), deletion_time = "",
    destroyed = false }
  e.updated_time = e.versions[e.current].created_time
  return self:kv2_meta(e, e.current)
end

function Model:kv2_meta(e, n)
  local v = e.versions[n]
  return { version = n, created_time = v.created_time, deletion_time = v.deletion_time,
    destroyed = v.destroyed, custom_metadata = e.custom_metadata }
end

--- Seed a secret into a mount (v1 or v2) without a request.
function Model:seed(mount, path, data)
  local mt = self.mounts[trim_slashes(mount) .. "/"]
  assert(mt, "lab vault: no mount " .. mount)
  if mt.options and mt.options.version == "2" then
    return self:kv2_put(mt, path, data)
  end
  mt.data[path] = copy(data)
end

-- ---- the API ----------------------------------------------------------------------------

-- Every handler: fn(model, req) where req = {method, path, op, body, query,
-- token (string or nil), ns} returns status, doc (the envelope is added for
-- "logical" answers: doc = {data =, auth =, warnings =, lease_duration =, renewable =}).
local api = {}

local function need_token(m, req)
  local t = m:token(req.token)
  if not t then
    m.counts.denied = m.counts.denied + 1
    if req.token == nil or req.token == "" then denied() end
    invalid_token()
  end
  return t
end

local function auth_block(m, t, warnings)
  return { client_token = t.id, accessor = t.accessor, policies = json.array(copy(t.policies)),
    token_policies = json.array(copy(t.policies)), metadata = t.meta or null,
    lease_duration = m:ttl(t), renewable = t.renewable, entity_id = "", token_type = "service",
    orphan = t.orphan, mfa_requirement = null, num_uses = t.num_uses }, warnings
end

api["sys/health"] = function(m, req)
  local q = req.query
  local body = { initialized = true, sealed = m.sealed, standby = false, performance_standby = false,
    replication_performance_mode = "disabled", replication_dr_mode = "disabled",
    server_time_utc = math.floor(m.now()), version = M.VERSION, enterprise = false,
    cluster_name = m.cluster_name, cluster_id = m.cluster_id, echo_duration_ms = 0, clock_skew_ms = 0 }
  local status = 200
  if m.sealed then status = tonumber(q.sealedcode) or 503 end
  return status, body, { raw = true }
end

api["sys/seal-status"] = function(m)
  return 200, { type = "shamir", initialized = true, sealed = m.sealed, t = 1, n = 1, progress = 0, nonce = "",
    version = M.VERSION, build_date = "2024-08-28T15:59:16Z", migration = false,
    cluster_name = m.cluster_name, cluster_id = m.cluster_id, recovery_seal = false,
    storage_type = "inmem" }, { raw = true }
end

local lookup_data

api["auth/token/lookup-self"] = function(m, req)
  if req.op ~= "read" and req.op ~= "update" then fail(405, "unsupported operation") end
  local t = need_token(m, req)
  m:check(t, "auth/token/lookup-self", "read")
  m.counts.lookups = m.counts.lookups + 1
  return 200, { data = lookup_data(m, t, t.id) }
end

-- LIST auth/token/accessors (sudo): the accessors of the live tokens.
api["auth/token/accessors"] = function(m, req)
  if req.op ~= "list" then fail(405, "unsupported operation") end
  local t = need_token(m, req)
  m:check(t, "auth/token/accessors", "list")
  m:check(t, "auth/token/accessors", "sudo")
  local keys = {}
  for id, x in pairs(m.tokens) do if m:token(id) then keys[#keys + 1] = x.accessor end end
  table.sort(keys)
  if #keys == 0 then return 404 end
  return 200, { data = { keys = json.array(keys) } }
end

-- POST auth/token/lookup-accessor {accessor}: the token's properties, id
-- blanked; a revoked or expired token's accessor -> 400 "invalid accessor".
api["auth/token/lookup-accessor"] = function(m, req)
  if req.op ~= "update" then fail(405, "unsupported operation") end
  local t = need_token(m, req)
  m:check(t, "auth/token/lookup-accessor", "update")
  local acc = req.body.accessor
  if type(acc) ~= "string" or acc == "" then fail(400, "missing accessor") end
  for id, x in pairs(m.tokens) do
    if x.accessor == acc and m:token(id) then return 200, { data = lookup_data(m, x, "") } end
  end
  fail(400, multierror("invalid accessor"))
end

function lookup_data(m, t, id)
  local ttl = m:ttl(t)
  return { id = id, accessor = t.accessor, policies = json.array(copy(t.policies)),
    path = t.path, meta = t.meta or null, display_name = t.display_name, num_uses = t.num_uses,
    orphan = t.orphan, creation_time = math.floor(t.created_epoch), creation_ttl = t.creation_ttl,
    ttl = ttl, explicit_max_ttl = t.explicit_max_ttl, entity_id = "", type = "service",
    renewable = t.renewable, issue_time = rfc3339(t.created_epoch),
    expire_time = t.expires and rfc3339(m.now() + ttl) or null,
    last_renewal_time = t.last_renewal_epoch and math.floor(t.last_renewal_epoch) or nil,
    last_renewal = t.last_renewal_epoch and rfc3339(t.last_renewal_epoch) or nil }
end

api["auth/token/renew-self"] = function(m, req)
  if req.op ~= "update" then fail(405, "unsupported operation") end
  local t = need_token(m, req)
  m:check(t, "auth/token/renew-self", "update")
  if not t.expires then
    -- a token without TTL (root) has no lease to extend
    return 200, { auth = auth_block(m, t) }
  end
  if not t.renewable then fail(400, "lease is not renewable") end
  local inc = M.parse_duration(req.body.increment) or t.creation_ttl
  local now = m.clock()
  local want = now + inc
  local warnings
  if want > t.max_expires then
    warnings = json.array { string.format("TTL of %q exceeded the effective max_ttl of %q; TTL value is capped accordingly",
      inc .. "s", math.floor(t.max_expires - now) .. "s") }
    want = t.max_expires
  end
  t.expires = want
  t.last_renewal_epoch = m.now()
  m.counts.renewals = m.counts.renewals + 1
  return 200, { auth = auth_block(m, t), warnings = warnings }
end

api["auth/token/revoke-self"] = function(m, req)
  if req.op ~= "update" then fail(405, "unsupported operation") end
  local t = need_token(m, req)
  m:check(t, "auth/token/revoke-self", "update")
  m.tokens[t.id] = nil
  m.counts.revocations = m.counts.revocations + 1
  return 204
end

api["auth/token/create"] = function(m, req)
  if req.op ~= "update" then fail(405, "unsupported operation") end
  local t = need_token(m, req)
  m:check(t, "auth/token/create", "update")
  local b = req.body
  local pols = {}
  for _, p in ipairs(type(b.policies) == "table" and b.policies or {}) do
    if not m:is_root(t) and p == "root" then denied() end
    pols[#pols + 1] = p
  end
  if #pols == 0 then for _, p in ipairs(t.policies) do pols[#pols + 1] = p end end
  local ttl = M.parse_duration(b.ttl)
  local max = M.parse_duration(b.explicit_max_ttl)
  if b.ttl ~= nil and not ttl then fail(400, "error parsing ttl: invalid duration " .. tostring(b.ttl)) end
  local nt = m:create_token({ policies = pols, ttl = ttl, explicit_max_ttl = max,
    renewable = b.renewable ~= false, display_name = "token" .. (b.display_name and ("-" .. b.display_name) or ""),
    no_default_policy = b.no_default_policy == true, num_uses = math.tointeger(b.num_uses) or 0,
    orphan = false, meta = b.meta })
  return 200, { auth = auth_block(m, nt) }
end

-- sys/policies/acl/<name>, sys/policy/<name>
local function policy_api(m, req, name)
  local t = need_token(m, req)
  local path = req.path
  if req.op == "read" then
    m:check(t, path, "read")
    local p = m.policies[name]
    if not p then return 404 end
    return 200, { data = { name = name, policy = p.text } }
  elseif req.op == "update" then
    m:check(t, path, "update")
    if name == "root" then fail(400, "cannot update \"root\" policy") end
    local text = req.body.policy or req.body.rules
    local ok, err = m:set_policy(name, text)
    if not ok then fail(400, err) end
    return 204
  elseif req.op == "delete" then
    m:check(t, path, "delete")
    m.policies[name] = nil
    return 204
  end
  fail(405, "unsupported operation")
end

api["sys/internal/ui/mounts/*"] = function(m, req, rest)
  local t = need_token(m, req)
  local path = trim_slashes(rest) .. "/"
  if rest == "" then fail(400, "path not set") end
  local msg = string.format("preflight capability check returned 403, please ensure client's policies grant "
    .. "access to path %q", path)
  local mt = m:find_mount(trim_slashes(rest))
  if not mt or not m:has_mount_access(t, mt.path) then
    m.counts.denied = m.counts.denied + 1
    fail(403, msg)
  end
  local data = m:mount_info(mt)
  data.path = (m.namespace ~= "" and (m.namespace .. "/") or "") .. mt.path
  return 200, { data = data }
end

api["sys/mounts/*"] = function(m, req, rest)
  local t = need_token(m, req)
  if req.op ~= "read" then fail(405, "unsupported operation") end
  m:check(t, "sys/mounts/" .. rest, "read")
  local mt = m.mounts[trim_slashes(rest) .. "/"]
  if not mt then fail(400, string.format("No secret engine mount at %s/", trim_slashes(rest))) end
  local data = m:mount_info(mt)
  return 200, { data = data, top = data } -- sys/mounts answers are also injected at the top level
end

-- auth/approle/...
local function approle_api(m, req, rest)
  if rest == "login" then
    if req.op ~= "update" then fail(405, "unsupported operation") end
    local b = req.body
    if type(b.role_id) ~= "string" or b.role_id == "" then fail(400, "missing role_id") end
    local role
    for _, r in pairs(m.roles) do if r.role_id == b.role_id then role = r end end
    local sid = role and role.secret_ids[b.secret_id]
    if sid and sid.expires and m.clock() >= sid.expires then
      role.secret_ids[b.secret_id] = nil
      sid = nil
    end
    if not role or (role.bind_secret_id and not sid) then
      m.counts.login_failures = m.counts.login_failures + 1
      fail(400, "invalid role or secret ID")
    end
    if sid and sid.num_uses > 0 then
      sid.uses = sid.uses + 1
      if sid.uses >= sid.num_uses then role.secret_ids[b.secret_id] = nil end
    end
    local t = m:create_token({ policies = role.token_policies, ttl = role.token_ttl,
      max_ttl = role.token_max_ttl, display_name = "approle", path = "auth/approle/login",
      meta = { role_name = role.name }, role = role.name })
    m.counts.logins = m.counts.logins + 1
    return 200, { auth = auth_block(m, t) }
  end
  local name, sub = rest:match("^role/([%w_.%-]+)/?(.*)$")
  if not name then no_route("auth/approle/" .. rest) end
  local t = need_token(m, req)
  local path = "auth/approle/" .. rest
  local role = m.roles[name]
  if sub == "" then
    if req.op == "update" then
      m:check(t, path, role and "update" or "create")
      m:set_role(name, req.body)
      return 204
    elseif req.op == "read" then
      m:check(t, path, "read")
      if not role then return 404 end
      return 200, { data = { token_policies = json.array(copy(role.token_policies)), token_ttl = role.token_ttl or 0,
        token_max_ttl = role.token_max_ttl or 0, bind_secret_id = role.bind_secret_id,
        secret_id_num_uses = role.secret_id_num_uses, secret_id_ttl = role.secret_id_ttl } }
    end
    fail(405, "unsupported operation")
  end
  if not role then fail(400, string.format("role %q does not exist", name)) end
  if sub == "role-id" and req.op == "read" then
    m:check(t, path, "read")
    return 200, { data = { role_id = role.role_id } }
  elseif sub == "secret-id" and req.op == "update" then
    m:check(t, path, "update")
    local sid = m:new_secret_id(role)
    return 200, { data = { secret_id = sid, secret_id_accessor = role.secret_ids[sid].accessor,
      secret_id_ttl = role.secret_id_ttl, secret_id_num_uses = role.secret_id_num_uses } }
  end
  no_route(path)
end

function Model:set_role(name, b)
  local role = self.roles[name] or { name = name, role_id = uuid(), secret_ids = {}, bind_secret_id = true,
    secret_id_num_uses = 0, secret_id_ttl = 0 }
  local pols = b.token_policies or b.policies
  if type(pols) == "string" then
    local list = {}
    for p in pols:gmatch("[^,%s]+") do list[#list + 1] = p end
    pols = list
  end
  if type(pols) == "table" then role.token_policies = pols end
  role.token_policies = role.token_policies or {}
  if b.token_ttl ~= nil then role.token_ttl = M.parse_duration(b.token_ttl) end
  if b.token_max_ttl ~= nil then role.token_max_ttl = M.parse_duration(b.token_max_ttl) end
  if b.secret_id_num_uses ~= nil then role.secret_id_num_uses = math.tointeger(b.secret_id_num_uses) or 0 end
  if b.secret_id_ttl ~= nil then role.secret_id_ttl = M.parse_duration(b.secret_id_ttl) or 0 end
  if b.bind_secret_id ~= nil then role.bind_secret_id = b.bind_secret_id ~= false end
  if b.role_id ~= nil then role.role_id = tostring(b.role_id) end
  self.roles[name] = role
  return role
end

function Model:new_secret_id(role)
  local sid = uuid()
  role.secret_ids[sid] = { accessor = uuid(), num_uses = role.secret_id_num_uses or 0, uses = 0,
    expires = (role.secret_id_ttl or 0) > 0 and (self.clock() + role.secret_id_ttl) or nil }
  return sid
end

-- A request for a secrets engine mount (KV v1 or v2).
local function kv_api(m, req, mt, sub)
  local t = need_token(m, req)
  local full = req.path
  if mt.type ~= "kv" then
    m:check(t, full, req.op)
    fail(405, "unsupported operation")
  end
  local v2 = mt.options and mt.options.version == "2"
  if not v2 then
    if sub == "" then fail(405, "unsupported operation") end
    if req.op == "read" then
      m:check(t, full, "read")
      local d = mt.data[sub]
      if not d then return 404 end
      m.counts.reads = m.counts.reads + 1
      return 200, { data = copy(d), lease_duration = M.KV1_LEASE, mount_type = "kv" }
    elseif req.op == "update" then
      m:check(t, full, mt.data[sub] and "update" or "create")
      mt.data[sub] = copy(req.body)
      m.counts.writes = m.counts.writes + 1
      return 204
    elseif req.op == "delete" then
      m:check(t, full, "delete")
      mt.data[sub] = nil
      return 204
    end
    fail(405, "unsupported operation")
  end
  local kind, path = sub:match("^(%a+)/(.+)$")
  if not kind then
    -- KV v2 paths all start with data/, metadata/, delete/, undelete/, destroy/
    m:check(t, full, req.op)
    no_route(full)
  end
  local e = mt.data[path]
  if kind == "data" then
    if req.op == "read" then
      m:check(t, full, "read")
      if not e then return 404 end
      local n = math.tointeger(tonumber(req.query.version or "")) or 0
      if n <= 0 then n = e.current end
      local v = e.versions[n]
      if not v then return 404 end
      local meta = m:kv2_meta(e, n)
      if v.destroyed or v.deletion_time ~= "" then
        return 404, { data = { data = null, metadata = meta }, mount_type = "kv" }
      end
      m.counts.reads = m.counts.reads + 1
      return 200, { data = { data = copy(v.data), metadata = meta }, mount_type = "kv" }
    elseif req.op == "update" then
      m:check(t, full, e and "update" or "create")
      if type(req.body.data) ~= "table" then fail(400, "no data provided") end
      local opts = type(req.body.options) == "table" and req.body.options or {}
      local meta = m:kv2_put(mt, path, req.body.data, opts.cas and math.tointeger(tonumber(opts.cas)))
      m.counts.writes = m.counts.writes + 1
      return 200, { data = meta, mount_type = "kv" }
    elseif req.op == "delete" then
      m:check(t, full, "delete")
      if e and e.versions[e.current] then e.versions[e.current].deletion_time = rfc3339(m.now()) end
      return 204
    end
    fail(405, "unsupported operation")
  elseif kind == "metadata" then
    if req.op ~= "read" then fail(405, "unsupported operation") end
    m:check(t, full, "read")
    if not e then return 404 end
    local versions = {}
    for n, v in pairs(e.versions) do
      versions[tostring(n)] = { created_time = v.created_time, deletion_time = v.deletion_time, destroyed = v.destroyed }
    end
    return 200, { data = { current_version = e.current, oldest_version = 1, max_versions = 0,
      created_time = e.created_time, updated_time = e.updated_time, cas_required = false,
      delete_version_after = "0s", custom_metadata = e.custom_metadata, versions = versions }, mount_type = "kv" }
  elseif kind == "delete" or kind == "destroy" or kind == "undelete" then
    if req.op ~= "update" then fail(405, "unsupported operation") end
    m:check(t, full, "update")
    if type(req.body.versions) ~= "table" then fail(400, "no version number provided") end
    for _, n in ipairs(req.body.versions) do
      local v = e and e.versions[math.tointeger(n) or 0]
      if v then
        if kind == "delete" then v.deletion_time = rfc3339(m.now())
        elseif kind == "undelete" then v.deletion_time = ""
        else v.destroyed = true; v.data = nil end
      end
    end
    return 204
  end
  m:check(t, full, req.op)
  no_route(full)
end

--- Route one request (path without /v1/). Returns status, doc, opts.
function Model:dispatch(req)
  local path = req.path
  if path == "sys/health" or path == "sys/seal-status" then return api[path](self, req) end
  if self.sealed then
    self.counts.sealed = self.counts.sealed + 1
    fail(503, "Vault is sealed")
  end
  -- namespaces: everything of this model lives in self.namespace
  if trim_slashes(req.ns or "") ~= self.namespace then
    if path == "auth/approle/login" then no_route(path) end
    self.counts.denied = self.counts.denied + 1
    if self:token(req.token) then denied() end
    invalid_token()
  end
  if api[path] then return api[path](self, req) end
  local rest = path:match("^sys/internal/ui/mounts/?(.*)$")
  if rest then return api["sys/internal/ui/mounts/*"](self, req, rest) end
  rest = path:match("^sys/mounts/(.+)$")
  if rest then return api["sys/mounts/*"](self, req, rest) end
  local pname = path:match("^sys/policies/acl/([%w_.%-]+)$") or path:match("^sys/policy/([%w_.%-]+)$")
  if pname then return policy_api(self, req, pname) end
  rest = path:match("^auth/approle/(.+)$")
  if rest then return approle_api(self, req, rest) end
  local mt, sub = self:find_mount(path)
  if mt and mt.type ~= "cubbyhole" then return kv_api(self, req, mt, sub) end
  local t = need_token(self, req)
  self:check(t, path, req.op)
  no_route(path)
end

-- ---- the device -------------------------------------------------------------------------

local OPS = { GET = "read", HEAD = "read", POST = "update", PUT = "update", DELETE = "delete", LIST = "list",
  PATCH = "patch" }

--- The device for `sbot lab` (docs/lab.md, device interface). ctx as the lab
-- gives it; ctx.namespace puts the model in a namespace.
function M.new(ctx)
  local m = M.model({ clock = ctx.clock, now = os.time, namespace = ctx.namespace })
  m:mount("kv", "kv", { version = "1" }, "KV version 1")
  m:mount("pki", "pki", nil, "not a KV engine (for clients that must refuse it)")
  m:set_policy("sbot", [[
# what sbot's AppRole may read: every secret of the site, both KV mounts
path "secret/data/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read", "list"] }
path "kv/*" { capabilities = ["read"] }
]])
  m:set_policy("idrac-only", [[
path "secret/data/idrac/*" { capabilities = ["read"] }
path "kv/idrac/*" { capabilities = ["read"] }
]])
  local role = m:set_role("sbot", { token_policies = { "sbot" }, token_ttl = "20m", token_max_ttl = "1h" })
  local secret_id = m:new_secret_id(role)

  local dev = { name = ctx.name or "vault", kind = "vault", model = m, st = m }
  -- the root token, as `vault operator init` hands it over: a 0600 file beside the site file
  local token_file = ctx.dir and (ctx.dir .. "/vault-root-token")
  if token_file then
    local ok, err = fsio.write_atomic(token_file, m.root_token .. "\n", { mode = "0600" })
    if not ok then return nil, "cannot write " .. token_file .. ": " .. tostring(err) end
  end

  local function respond(status, doc, opts)
    local h = { ["Content-Type"] = "application/json", ["Cache-Control"] = "no-store",
      ["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains" }
    if status == 204 then return 204, h, "" end
    if status == 404 and doc == nil then return 404, h, '{"errors":[]}\n' end
    if opts and opts.raw then return status, h, json.encode(doc) .. "\n" end
    local body = { request_id = uuid(), lease_id = "", renewable = doc.renewable or false,
      lease_duration = doc.lease_duration or 0, data = doc.data or null, wrap_info = null,
      warnings = doc.warnings or null, auth = doc.auth or null, mount_type = doc.mount_type or "" }
    if doc.top then for k, v in pairs(doc.top) do body[k] = v end end
    return status, h, json.encode(body) .. "\n"
  end

  function dev.handler(req)
    m.counts.requests = m.counts.requests + 1
    local path = req.path:match("^/v1/(.*)$")
    if not path then
      return 404, { ["Content-Type"] = "text/plain; charset=utf-8" }, "404 page not found\n"
    end
    m.sealed = dev.faults and dev.faults.config.sealed == true or false
    local op = OPS[req.method]
    if req.method == "GET" and (req.query.list == "true" or req.query.list == "1") then op = "list" end
    if not op then
      return 405, { ["Content-Type"] = "application/json" }, '{"errors":[]}\n'
    end
    local body = {}
    if (op == "update" or op == "patch") and req.body ~= "" then
      local doc = json.decode(req.body)
      if type(doc) ~= "table" then
        return 400, { ["Content-Type"] = "application/json" }, json.encode({ errors = { "error parsing JSON" } }) .. "\n"
      end
      body = doc
    end
    local r = { method = req.method, op = op, path = path, query = req.query or {}, body = body,
      token = req.headers["x-vault-token"], ns = req.headers["x-vault-namespace"] }
    local ok, status, doc, opts = pcall(m.dispatch, m, r)
    if not ok then
      if getmetatable(status) == VaultError then
        return status.status, { ["Content-Type"] = "application/json" },
          json.encode({ errors = json.array(status.errors) }) .. "\n"
      end
      error(status, 0)
    end
    return respond(status, doc, opts)
  end

  function dev.state()
    local live = 0
    for id in pairs(m.tokens) do if m:token(id) then live = live + 1 end end
    local mounts = {}
    for _, p in ipairs(sorted_keys(m.mounts)) do
      local mt = m.mounts[p]
      local paths = {}
      if mt.type == "kv" then paths = sorted_keys(mt.data) end
      mounts[p] = { type = mt.type, version = mt.options and mt.options.version or json.null,
        paths = json.array(paths) }
    end
    local counts = copy(m.counts)
    counts.live_tokens = live
    return { sealed = m.sealed, version = M.VERSION, namespace = m.namespace, mounts = mounts,
      policies = json.array(sorted_keys(m.policies)), roles = json.array(sorted_keys(m.roles)),
      counts = counts, root_token_file = token_file or json.null,
      faults = dev.faults and dev.faults.counts or json.null }
  end

  --- The site's vault section: AppRole "sbot" with a SecretID, the pinned certificate.
  function dev.site_entry(url, tls)
    local entry = { addr = url, tls = tls, auth = { method = "approle", role_id = role.role_id,
      secret_id = secret_id } }
    if m.namespace ~= "" then entry.namespace = m.namespace end
    return "vault", entry
  end

  --- Move every credential of the site into the KV mounts (v2 at secret/,
  -- v1 at kv/) and leave `secret:` references in its place.
  function dev.rewrite_site(site)
    local function store(path, data)
      m:seed("secret", path, data)
      m:seed("kv", path, data)
    end
    for _, s in ipairs(site.servers or {}) do
      if s.idrac and s.idrac.password and not tostring(s.idrac.password):match("^secret:") then
        local path = "idrac/" .. s.id
        -- version 1 is a password rotated away: a pin (@1) reads it, the latest is the live one
        m:seed("secret", path, { user = s.idrac.user, password = "rotated-" .. crypto.hex(crypto.random_bytes(6)) })
        store(path, { user = s.idrac.user, password = s.idrac.password })
        s.idrac.password = "secret:" .. path .. ":password"
      end
    end
    for _, s in ipairs(site.servers or {}) do
      local chap = s.components and s.components.iscsi and s.components.iscsi.chap
      if chap and chap.secret and not tostring(chap.secret):match("^secret:") then
        -- each server's CHAP secret: the iSCSI step gives it to TrueNAS, the R630 step to the BIOS
        local path = "iscsi/" .. s.id
        store(path, { chap = chap.secret })
        chap.secret = "secret:" .. path .. ":chap"
      end
    end
    if site.truenas and site.truenas.api_key then
      store("truenas", { api_key = site.truenas.api_key })
      site.truenas.api_key = "secret:truenas:api_key"
    end
    if site.s3 and site.s3.access_key then
      store("s3", { access_key = site.s3.access_key, secret_key = site.s3.secret_key })
      site.s3.access_key = "secret:s3:access_key"
      site.s3.secret_key = "secret:s3:secret_key"
    end
    if site.openshift and site.openshift.pull_secret then
      store("openshift", { pull_secret = site.openshift.pull_secret })
      site.openshift.pull_secret = "secret:openshift:pull_secret"
    end
  end

  return dev
end

return M
