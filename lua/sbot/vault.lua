--- sbot.vault: a HashiCorp Vault client for secrets in KV v1 and v2, over sbot.http.
--
--   local vault = require "sbot.vault"
--   local c = assert(vault.client{ addr = "https://vault.example:8200", mount = "secret",
--     auth = { method = "approle", role_id = "...", secret_id = secret_object } })
--   local pw = assert(c:get("idrac/r630-01", "password"))   -- a secret object
--
-- Layering: like sbot.s3, C does the mechanics (http.c moves the bytes with
-- TLS, pins, timeouts and retries; cjson parses) and this file is the
-- protocol: a few JSON requests with no signing, streaming or hashing, so
-- there is nothing C would do faster. What matters is the protocol logic -
-- KV v1 and v2 told apart, AppRole login, token renewal, Vault's error shapes -
-- kept in one place for the secret resolver of site loading and for the
-- `vault` component (components/vault.c). Expected failures return
-- nil, message, code (docs/vault.md); misuse raises. The token, the secret_id
-- and every value read are secret objects: never logged, never in an error.
local http = require "sbot.http"
local json = require "sbot.json"
local log = require "sbot.log"
local secret = require "sbot.secret"
local sys = require "sbot.sys"
local crypto = require "sbot.crypto"
local tls = require "sbot.tls"

local M = {}

M.defaults = { mount = "secret", kv_version = "auto", timeout = 30, auth_mount = "approle" }

--- A token is renewed (renew-self) once this fraction of its lease has gone.
M.RENEW_AT = 2 / 3

local MAX_BODY = 8 * 1024 * 1024

-- ---------------------------------------------------------------------------
-- configuration
-- ---------------------------------------------------------------------------

local SEGMENT = "^[%w_.%-]+$"

-- "a/b/c" with every segment [%w_.-]+ and no "." or "..": mount points,
-- namespaces and secret paths all go into URLs as they are.
local function check_path(p)
  if type(p) ~= "string" or p == "" then return false end
  for seg in (p .. "/"):gmatch("([^/]*)/") do
    if not seg:match(SEGMENT) or seg == "." or seg == ".." then return false end
  end
  return true
end

local function trim_slashes(s) return (s:gsub("^/+", ""):gsub("/+$", "")) end

--- Check and normalise a client configuration (the site's `vault` section).
-- Returns the normalised copy or nil and a message naming the key.
function M.check_config(cfg)
  if type(cfg) ~= "table" then return nil, "expected a table, got " .. type(cfg) end
  local known = { addr = true, auth = true, namespace = true, mount = true, kv_version = true,
    tls = true, timeout = true }
  for k in pairs(cfg) do
    if not known[k] then return nil, tostring(k) .. ": unknown key (expected addr, auth, kv_version, "
      .. "mount, namespace, timeout, tls)" end
  end
  local out = {}
  if type(cfg.addr) ~= "string" or not cfg.addr:match("^https?://[^/?#]+") then
    return nil, "addr: expected the Vault address as an http:// or https:// URL (e.g. https://vault:8200), got "
      .. (type(cfg.addr) == "string" and string.format("%q", cfg.addr) or type(cfg.addr))
  end
  if cfg.addr:find("@", 1, true) then return nil, "addr: credentials do not belong in the URL" end
  out.addr = cfg.addr:gsub("/+$", "")
  local a = cfg.auth
  if type(a) ~= "table" then return nil, "auth: expected a table {method = \"token\"|\"approle\", ...}" end
  local method = a.method or "token"
  local function sec(k)
    local v = a[k]
    if v == nil then return nil end
    if secret.is_secret(v) then return v end
    if type(v) == "string" and v ~= "" then return secret.new(v, "vault auth." .. k) end
    return false
  end
  if method == "token" then
    for k in pairs(a) do
      if k ~= "method" and k ~= "token" then
        return nil, "auth." .. tostring(k) .. ": not used by method \"token\" (give auth.token)"
      end
    end
    local t = sec("token")
    if not t then return nil, "auth.token: required for method \"token\" (e.g. token = \"secret:vault:token\", "
      .. "read from $VAULT_TOKEN or <secrets_dir>/vault/token)" end
    out.auth = { method = "token", token = t }
  elseif method == "approle" then
    for k in pairs(a) do
      if k ~= "method" and k ~= "role_id" and k ~= "secret_id" and k ~= "mount" then
        return nil, "auth." .. tostring(k) .. ": not used by method \"approle\" (role_id, secret_id, mount)"
      end
    end
    local rid, sid = sec("role_id"), sec("secret_id")
    if not rid then return nil, "auth.role_id: required for method \"approle\"" end
    if not sid then return nil, "auth.secret_id: required for method \"approle\" (e.g. secret_id = "
      .. "\"secret:vault:secret_id\", read from $VAULT_SECRET_ID or <secrets_dir>/vault/secret_id)" end
    local m = a.mount or M.defaults.auth_mount
    if type(m) ~= "string" or not check_path(trim_slashes(m)) then
      return nil, "auth.mount: expected the path the AppRole method is mounted at, e.g. \"approle\""
    end
    out.auth = { method = "approle", role_id = rid, secret_id = sid, mount = trim_slashes(m) }
  else
    return nil, "auth.method: expected \"token\" or \"approle\", got " .. string.format("%q", tostring(method))
  end
  if cfg.namespace ~= nil then
    if type(cfg.namespace) ~= "string" or not check_path(trim_slashes(cfg.namespace)) then
      return nil, "namespace: expected a namespace path such as \"admin\" or \"admin/team\""
    end
    out.namespace = trim_slashes(cfg.namespace)
    if out.namespace == "" then out.namespace = nil end
  end
  local mount = cfg.mount or M.defaults.mount
  if type(mount) ~= "string" or not check_path(trim_slashes(mount)) then
    return nil, "mount: expected the path of the KV secrets engine, e.g. \"secret\", got "
      .. string.format("%q", tostring(mount))
  end
  out.mount = trim_slashes(mount)
  local kv = cfg.kv_version
  if kv == nil then kv = M.defaults.kv_version end
  if kv ~= "auto" and kv ~= 1 and kv ~= 2 then
    return nil, "kv_version: expected \"auto\", 1 or 2, got " .. string.format("%q", tostring(kv))
  end
  out.kv_version = kv
  if cfg.tls ~= nil then
    -- the one parser of tls tables (docs/tls.md), as for every other section
    local ok, terr = tls.check(cfg.tls, "tls", out.addr)
    if not ok then return nil, terr end
    out.tls = cfg.tls
  end
  local timeout = cfg.timeout or M.defaults.timeout
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 or timeout > 3600 then
    return nil, "timeout: expected seconds in (0, 3600], got " .. tostring(timeout)
  end
  out.timeout = timeout
  return out
end

--- The site's `vault` section (sbot.site adds it when a site file has one).
M.site_section = { type = "table",
  description = "HashiCorp Vault: where secret:PATH:KEY references are read first (docs/vault.md)",
  fields = {
    addr = { type = "string", required = true, pattern = "^https?://.",
      description = "Vault address, e.g. https://vault.example:8200" },
    auth = { type = "table", required = true, description = "how sbot logs in",
      fields = {
        method = { type = "string", enum = { "token", "approle" }, default = "token" },
        token = { type = "secret", description = "method token: the Vault token (e.g. secret:vault:token)" },
        role_id = { type = "secret", description = "method approle: the role's RoleID" },
        secret_id = { type = "secret", description = "method approle: a SecretID (e.g. secret:vault:secret_id)" },
        mount = { type = "string", description = "method approle: where the AppRole method is mounted (default approle)" },
      } },
    namespace = { type = "string", description = "Vault Enterprise / HCP namespace (sent as X-Vault-Namespace)" },
    mount = { type = "string", default = "secret", description = "path of the KV secrets engine" },
    kv_version = { type = "any", default = "auto",
      description = "\"auto\" (asked from sys/internal/ui/mounts), 1 or 2" },
    tls = require("sbot.site").tls_spec("Vault"),
    timeout = { type = "number", default = 30, min = 0.001, description = "seconds per request" },
  } }

-- ---------------------------------------------------------------------------
-- errors
-- ---------------------------------------------------------------------------

-- Vault's {"errors": [...]} as one line. Vault wraps some in go-multierror's
-- text ("1 error occurred:\n\t* permission denied\n\n"): the items are kept.
local function vault_message(doc)
  if type(doc) ~= "table" or type(doc.errors) ~= "table" then return nil end
  local out = {}
  for _, e in ipairs(doc.errors) do
    e = tostring(e)
    if e:match("^%d+ errors? occurred") then
      for item in e:gmatch("\n\t%* ([^\n]+)") do out[#out + 1] = item end
    else
      out[#out + 1] = (e:gsub("%s+$", ""):gsub("\n", " "))
    end
  end
  return table.concat(out, "; ")
end

local STATUS_CODES = { [400] = "invalid_request", [403] = "permission_denied", [404] = "not_found",
  [405] = "unsupported_operation", [412] = "precondition_failed", [429] = "rate_limited",
  [500] = "server_error", [502] = "server_error", [503] = "unavailable", [504] = "server_error" }

local STATUS_TEXT = { [400] = "invalid request", [403] = "permission denied", [404] = "not found",
  [405] = "unsupported operation", [429] = "too many requests", [500] = "internal server error",
  [502] = "bad gateway", [503] = "service unavailable", [504] = "gateway timeout" }

-- ---------------------------------------------------------------------------
-- the client
-- ---------------------------------------------------------------------------

local Client = {}
Client.__index = Client
Client.__name = "sbot.vault.client"

--- vault.client{addr, auth, namespace, mount, kv_version, tls, timeout} -> client.
-- Raises on a bad configuration (misuse); nothing is sent until it is needed.
function M.client(cfg)
  local c, err = M.check_config(cfg)
  if not c then error("vault.client: " .. err, 2) end
  return setmetatable({ cfg = c, mounts = {}, cache = {}, clock = sys.monotime,
    stats = { logins = 0, renewals = 0, reads = 0, requests = 0, lookups = 0, revocations = 0 } }, Client)
end

function Client:__tostring()
  return string.format("sbot.vault.client(%s, %s)", self.cfg.addr, self.cfg.auth.method)
end

local shared = {}  -- for the life of the process (a run): one login
local adopted = {} -- tokens handed over by the parent process (M.adopt), by identity

-- The identity of a checked configuration: address, namespace, credentials, mount.
local function identity(c)
  local a = c.auth
  return table.concat({ c.addr, c.namespace or "", a.method, a.mount or "",
    crypto.hex(crypto.sha256(secret.reveal(a.token or a.role_id) .. "\0" .. (a.secret_id and a.secret_id:reveal() or ""))),
    c.mount, tostring(c.kv_version) }, "|")
end

--- One client per Vault identity (address, namespace, credentials) in this
-- process: site loading and the `vault` component share its token, so a run
-- logs in once. In a fleet worker the client starts with the token the
-- parent handed over (M.adopt), if any. cfg as for vault.client.
function M.shared(cfg)
  local c, err = M.check_config(cfg)
  if not c then error("vault.shared: " .. err, 2) end
  local id = identity(c)
  local cl = shared[id]
  if not cl then
    cl = M.client(c)
    shared[id] = cl
    local h = adopted[id]
    if h then cl:adopt(h) end
  end
  return cl
end

--- What a fleet worker needs to use this process's tokens instead of
-- logging in again: {[identity] = {token (a secret object), lease,
-- renewable, issued_lease, expires_in, renew_in, mounts}} for every shared
-- client holding a token, or nil when none does. The workflow runner puts it
-- in each worker's job (the fleet copies the token as a secret object); the
-- worker calls M.adopt with it. A handed-over token is never revoked by the
-- worker: the process that logged in revokes it (M.revoke_logins).
function M.handoff()
  local out, any = {}, false
  for id, cl in pairs(shared) do
    if cl.token and cl.renew_at and cl.clock() >= cl.renew_at then
      -- past its renewal point (the parent did other work since, e.g. a long
      -- site step): renewed - or replaced by a new login - before it is
      -- copied, so a worker gets at least a third of a lease, not a token
      -- about to run out that it would have to log in again for
      local ok, err = cl:ensure_token()
      if not ok then
        log.warn("vault: could not renew the token before handing it to the workers", { vault = cl.cfg.addr,
          error = err })
      end
    end
    if cl.token then
      local now = cl.clock()
      local mounts = {}
      for k, v in pairs(cl.mounts) do mounts[k] = v end
      out[id] = { token = cl.token, lease = cl.lease, renewable = cl.renewable, issued_lease = cl.issued_lease,
        expires_in = cl.expires and (cl.expires - now) or nil, renew_in = cl.renew_at and (cl.renew_at - now) or nil,
        mounts = mounts }
      any = true
    end
  end
  return any and out or nil
end

--- In a fleet worker: take the parent's tokens (M.handoff's table). The
-- shared client of each identity starts with that token (renewed when its
-- lease says so, like any other) instead of logging in.
function M.adopt(h)
  if h == nil then return end
  if type(h) ~= "table" then error("vault.adopt: expected the table vault.handoff() returned", 2) end
  for id, t in pairs(h) do
    if type(t) ~= "table" or not secret.is_secret(t.token) then
      error("vault.adopt: entry " .. tostring(id) .. " has no token (a secret object)", 2)
    end
    -- the lease runs from now (the handoff was just made), not from when
    -- a step first asks for the client
    local a = {}
    for k, v in pairs(t) do a[k] = v end
    a.received = sys.monotime()
    adopted[id] = a
    local cl = shared[id]
    if cl and not cl.token then cl:adopt(a) end
  end
end

--- Revoke (auth/token/revoke-self) every token this process got by logging
-- in with AppRole: at the end of a run nothing it logged in for stays valid.
-- A token the operator gave (method token) or one handed over by the parent
-- process is never revoked here. Returns the number revoked and a list of
-- failure messages (a token Vault no longer knows is already gone, not a
-- failure); never raises for Vault's answers.
function M.revoke_logins()
  local n, errs = 0, {}
  for _, cl in pairs(shared) do
    if cl.token and cl.owned then
      local ok, err = cl:revoke()
      if ok then n = n + 1 else errs[#errs + 1] = err end
    end
  end
  return n, errs
end

-- "vault https://vault:8200: GET secret/data/x" (+ namespace)
function Client:where(method, path)
  local ns = self.cfg.namespace and (" [namespace " .. self.cfg.namespace .. "]") or ""
  return string.format("vault %s%s: %s %s", self.cfg.addr, ns, method, path)
end

-- The failure triple for an HTTP answer that is not a success.
function Client:fail(method, path, res, doc, what)
  local msg = vault_message(doc)
  local code = STATUS_CODES[res.status] or ("http_" .. res.status)
  if msg == nil then
    -- not Vault's JSON (a proxy's page): its first line, shortened
    local line = (res.body or ""):match("^%s*([^\r\n]*)") or ""
    if #line > 120 then line = line:sub(1, 120) .. "..." end
    msg = line ~= "" and line or (STATUS_TEXT[res.status] or "error")
  elseif msg == "" then
    msg = STATUS_TEXT[res.status] or "error"
  end
  if res.status == 503 and msg:lower():find("sealed", 1, true) then code = "sealed" end
  local text = string.format("%s: %s%s (HTTP %d)", self:where(method, path), what and (what .. ": ") or "",
    msg, res.status)
  return nil, log.redact(text), code
end

local function retry_if(method)
  return function(res, _, code)
    if res then
      if res.status == 503 and (res.body or ""):lower():find("sealed", 1, true) then return false end
      return method == "GET" and (res.status == 429 or res.status == 502 or res.status == 503 or res.status == 504)
    end
    -- a POST (login, renew) is repeated only when it cannot have arrived
    return code == "connect" or (method == "GET" and (code == "closed" or code == "io"))
  end
end

--- One request: returns the HTTP response and its decoded JSON body (nil
-- when empty), or nil, message, code for transport failures.
-- opts: body (table), query (string), token (false: send none; a secret
-- object: that token instead of the client's), namespace (false: none)
function Client:call(method, path, opts)
  opts = opts or {}
  local headers = { ["X-Vault-Request"] = "true" }
  local token = opts.token
  if token == nil then token = self.token end
  if token then headers["X-Vault-Token"] = token end
  if opts.namespace ~= false and self.cfg.namespace then headers["X-Vault-Namespace"] = self.cfg.namespace end
  local body
  if opts.body ~= nil then
    body = json.encode(opts.body, { secrets = "reveal" }) -- the wire: a secret object carries its value
    headers["Content-Type"] = "application/json"
  end
  self.stats.requests = self.stats.requests + 1
  local res, err, code = http.request { method = method,
    url = self.cfg.addr .. "/v1/" .. path .. (opts.query and ("?" .. opts.query) or ""),
    headers = headers, body = body, tls = self.cfg.tls, timeout = self.cfg.timeout,
    connect_timeout = math.min(10, self.cfg.timeout), max_body = MAX_BODY,
    retries = { max = 2, base = 0.25, cap = 2 }, retry_if = retry_if(method) }
  if not res then return nil, log.redact(self:where(method, path) .. ": " .. tostring(err)), code end
  local doc
  if res.body and res.body:match("%S") then doc = json.decode(res.body) end
  return res, doc
end

-- ---- tokens -----------------------------------------------------------------

-- Remember a token's lease: expires (monotonic seconds, nil = never) and when to renew.
function Client:set_lease(lease, renewable)
  local now = self.clock()
  lease = tonumber(lease) or 0
  self.lease = lease
  self.renewable = renewable and true or false
  if lease > 0 then
    self.expires = now + lease
    self.renew_at = now + lease * M.RENEW_AT
  else
    self.expires, self.renew_at = nil, nil
  end
end

--- Log in: with AppRole, POST auth/<mount>/login; with a token, look it up
-- (lookup-self) to learn its TTL. Returns true or nil, message, code.
function Client:login()
  local a = self.cfg.auth
  -- a token this process logged in for earlier (at its max TTL, or no
  -- longer renewable) is revoked once the new one is there, not abandoned;
  -- if the login fails it stays this client's, so the end of the run still
  -- revokes it. A handed-over token (not owned) is the parent's to revoke.
  local old = self.owned and self.token or nil
  self.owned = false
  if a.method == "token" then
    self.token = a.token
    local info, err, code = self:lookup()
    if not info then self.token = nil; return nil, err, code end
    return true
  end
  local function give_up(...)
    if old then self.token, self.owned = old, true else self.token = nil end
    return ...
  end
  local path = "auth/" .. a.mount .. "/login"
  local body = { role_id = a.role_id:reveal(), secret_id = a.secret_id:reveal() }
  self.token = nil
  local res, doc, code = self:call("POST", path, { body = body, token = false })
  if not res then return give_up(nil, doc, code) end
  if res.status ~= 200 then return give_up(self:fail("POST", path, res, doc, "AppRole login failed")) end
  local auth = type(doc) == "table" and doc.auth
  if type(auth) ~= "table" or type(auth.client_token) ~= "string" or auth.client_token == "" then
    return give_up(nil, self:where("POST", path) .. ": the answer has no auth.client_token", "invalid_response")
  end
  self.token = secret.new(auth.client_token, "vault token (AppRole login)")
  self.owned = true -- this process logged in: it revokes the token at the end of the run
  self:set_lease(auth.lease_duration, auth.renewable)
  self.issued_lease = self.lease
  self.stats.logins = self.stats.logins + 1
  log.debug("vault: logged in with AppRole", { vault = self.cfg.addr, ttl = self.lease,
    renewable = self.renewable })
  if old then
    local ok, err = self:revoke_token(old)
    if not ok then
      log.warn("vault: could not revoke the token the new login replaced (it expires by its TTL)",
        { vault = self.cfg.addr, error = err })
    end
  end
  return true
end

--- auth/token/lookup-self: the token's properties, without its id and
-- accessor: {ttl, renewable, policies, expire_time, creation_ttl,
-- explicit_max_ttl, display_name, type, num_uses, orphan, period}.
function Client:lookup()
  local res, doc, code = self:call("GET", "auth/token/lookup-self")
  if not res then return nil, doc, code end
  if res.status ~= 200 then return self:fail("GET", "auth/token/lookup-self", res, doc, "token lookup failed") end
  local d = type(doc) == "table" and type(doc.data) == "table" and doc.data
  if not d then return nil, self:where("GET", "auth/token/lookup-self") .. ": the answer has no data", "invalid_response" end
  self.stats.lookups = self.stats.lookups + 1
  local info = {}
  for _, k in ipairs { "ttl", "renewable", "policies", "expire_time", "creation_ttl", "explicit_max_ttl",
    "display_name", "type", "num_uses", "orphan", "period", "path" } do
    if d[k] ~= nil and d[k] ~= json.null then info[k] = d[k] end
  end
  self:set_lease(d.ttl, d.renewable)
  return info
end

--- Start with a token another process got (an entry of M.handoff): its
-- lease as that process knew it, the mounts it had looked up. Not owned:
-- this client never revokes it.
function Client:adopt(h)
  local now = self.clock()
  self.token = h.token
  self.owned = false
  self.lease = tonumber(h.lease) or 0
  self.renewable = h.renewable and true or false
  self.issued_lease = h.issued_lease
  -- expires_in/renew_in count from the handoff: less the time since M.adopt received it
  local age = h.received and (sys.monotime() - h.received) or 0
  self.expires = h.expires_in and (now + h.expires_in - age) or nil
  self.renew_at = h.renew_in and (now + h.renew_in - age) or nil
  for k, v in pairs(type(h.mounts) == "table" and h.mounts or {}) do
    if self.mounts[k] == nil then self.mounts[k] = v end
  end
  log.debug("vault: using the token of the process that loaded the site", { vault = self.cfg.addr,
    ttl = self.expires and math.floor(self.expires - now) or nil })
end

--- auth/token/revoke-self: the token is revoked and forgotten (the next
-- request logs in again). Vault is asked even when the lease this process
-- knows has run out (a worker may have renewed the token since); a token
-- Vault no longer knows (403 "invalid token": expired) is gone already. Returns true or nil,
-- message, code.
function Client:revoke()
  if not self.token then return nil, "vault: not logged in", "not_logged_in" end
  local ok, err, code = self:revoke_token(self.token)
  if not ok then return nil, err, code end
  self.token, self.owned, self.expires, self.renew_at, self.lease = nil, nil, nil, nil, nil
  return true
end

--- revoke-self with the given token (a secret object), not necessarily the
-- client's current one: true when Vault revoked it or no longer knows it
-- (403 "invalid token": expired or revoked already), else nil, message, code.
function Client:revoke_token(token)
  local res, doc, code = self:call("POST", "auth/token/revoke-self", { body = {}, token = token })
  if not res then return nil, doc, code end
  local gone = res.status == 403 and (vault_message(doc) or ""):find("invalid token", 1, true) ~= nil
  if not gone and res.status ~= 204 and res.status ~= 200 then
    return self:fail("POST", "auth/token/revoke-self", res, doc, "token revocation failed")
  end
  if not gone then self.stats.revocations = self.stats.revocations + 1 end
  log.debug(gone and "vault: the token had expired already" or "vault: token revoked", { vault = self.cfg.addr })
  return true
end

--- auth/token/renew-self. Returns the new lease in seconds or nil, message, code.
function Client:renew()
  if not self.token then return nil, "vault: not logged in", "not_logged_in" end
  local res, doc, code = self:call("POST", "auth/token/renew-self", { body = {} })
  if not res then return nil, doc, code end
  if res.status ~= 200 then return self:fail("POST", "auth/token/renew-self", res, doc, "token renewal failed") end
  local auth = type(doc) == "table" and doc.auth
  if type(auth) ~= "table" then
    return nil, self:where("POST", "auth/token/renew-self") .. ": the answer has no auth", "invalid_response"
  end
  self.stats.renewals = self.stats.renewals + 1
  local lease = tonumber(auth.lease_duration) or 0
  if lease <= 0 and self.expires then
    -- no lease left to give: the token is at its max TTL
    self.renew_at = self.clock()
    return nil, self:where("POST", "auth/token/renew-self") .. ": the token is at its max TTL (lease 0)",
      "token_expired"
  end
  self:set_lease(lease, auth.renewable)
  log.debug("vault: token renewed", { vault = self.cfg.addr, ttl = self.lease })
  return self.lease
end

--- Make sure there is a token that is not about to expire: log in when
-- there is none; past RENEW_AT of its lease renew it (renew-self). An AppRole
-- token that cannot be renewed (any more) is replaced by a new login; a
-- token given in the site is used until it expires.
function Client:ensure_token()
  if not self.token then return self:login() end
  if not self.renew_at or self.clock() < self.renew_at then return true end
  local approle = self.cfg.auth.method == "approle"
  local err, code
  if self.renewable then
    local lease
    lease, err, code = self:renew()
    -- Vault caps a renewal at the token's max TTL: an AppRole token that came
    -- back with a third of its first lease or less is replaced by a new login
    if lease and not (approle and self.issued_lease and lease <= self.issued_lease / 3) then return true end
  end
  if approle then return self:login() end
  if self.expires and self.clock() >= self.expires then
    return nil, string.format("vault %s: the token has expired and %s", self.cfg.addr,
      err and ("could not be renewed: " .. err) or "is not renewable"), code or "token_expired"
  end
  if err and not self.warned then
    self.warned = true
    log.warn("vault: token renewal failed; the token is used until it expires", { vault = self.cfg.addr,
      error = err })
  end
  return true
end

-- ---- KV -------------------------------------------------------------------

--- The KV version (1 or 2) of the client's mount: kv_version when set, else
-- from sys/internal/ui/mounts/<mount> (falling back to sys/mounts/<mount>).
-- Returns version, mount info {type, version, path} or nil, message, code.
function Client:kv_version()
  local mount = self.cfg.mount
  local known = self.mounts[mount]
  if known then return known.version, known end
  if self.cfg.kv_version ~= "auto" then
    known = { version = self.cfg.kv_version, path = mount .. "/", configured = true }
    self.mounts[mount] = known
    return known.version, known
  end
  local ok, err, code = self:ensure_token()
  if not ok then return nil, err, code end
  local path = "sys/internal/ui/mounts/" .. mount
  local res, doc, tcode = self:call("GET", path)
  if not res then return nil, doc, tcode end
  local info
  if res.status == 200 then
    info = type(doc) == "table" and doc.data
  else
    local _, first, fcode = self:fail("GET", path, res, doc)
    if fcode == "sealed" or res.status >= 500 then return nil, first, fcode end
    -- a token that may not ask the UI endpoint may still read the mount table
    local path2 = "sys/mounts/" .. mount
    local res2, doc2, tcode2 = self:call("GET", path2)
    if not res2 then return nil, doc2, tcode2 end
    if res2.status ~= 200 then
      local _, second = self:fail("GET", path2, res2, doc2)
      return nil, string.format("cannot tell the KV version of mount %s/: %s; %s; set vault.kv_version = 1 "
        .. "or 2 in the site, or allow the token to read %s", mount, first, second, path), fcode
    end
    info = type(doc2) == "table" and (type(doc2.data) == "table" and doc2.data or doc2)
  end
  if type(info) ~= "table" or type(info.type) ~= "string" then
    return nil, self:where("GET", path) .. ": the answer has no mount type", "invalid_response"
  end
  if info.type ~= "kv" and info.type ~= "generic" then
    return nil, string.format("%s: mount %s/ is a %q secrets engine, not KV; vault.mount must name a KV mount",
      self:where("GET", path), mount, info.type), "unsupported_mount"
  end
  local opts = type(info.options) == "table" and info.options or {}
  known = { version = tostring(opts.version) == "2" and 2 or 1, type = info.type,
    path = type(info.path) == "string" and info.path or (mount .. "/") }
  self.mounts[mount] = known
  return known.version, known
end

-- The API path of a secret: <mount>/data/<path> (v2) or <mount>/<path> (v1).
function Client:api_path(path, version)
  return version == 2 and (self.cfg.mount .. "/data/" .. path) or (self.cfg.mount .. "/" .. path)
end

-- A value read from Vault as a secret object, or nil and why it cannot be
-- one (sbot.secret refuses values it could not redact, e.g. too short; the
-- reason never shows the value).
local function wrap_value(v, where)
  if v == json.null or v == nil then return nil, "the value is null" end
  if type(v) == "table" then v = json.encode(v)
  elseif type(v) == "number" then v = tostring(math.tointeger(v) or v) -- JSON 8443 decodes as 8443.0
  elseif type(v) ~= "string" then v = tostring(v) end
  local ok, s = pcall(secret.new, v, where)
  if ok then return s end
  return nil, (tostring(s):gsub("^.-sbot%.secret%.new: ", ""))
end

--- Read a secret: {data = {key = secret object}, metadata = {...} (KV v2),
-- kv_version, api_path} or nil, message, code. version pins a KV v2 version.
-- Answers are cached: the same path is read once per client.
function Client:read(path, version)
  if not check_path(path) then
    error("vault.read: path must be segments of [%w_.-] separated by '/', got " .. tostring(path), 2)
  end
  if version ~= nil and (math.type(version) ~= "integer" or version < 1) then
    error("vault.read: version must be an integer >= 1", 2)
  end
  local kv, err, code = self:kv_version()
  if not kv then return nil, err, code end
  local api = self:api_path(path, kv)
  if version and kv ~= 2 then
    return nil, string.format("vault %s: %s@%d: version pinning needs KV v2; mount %s/ is KV version 1",
      self.cfg.addr, path, version, self.cfg.mount), "unsupported_mount"
  end
  local key = api .. "@" .. tostring(version or "")
  local hit = self.cache[key]
  if hit then return hit end
  local ok, terr, tcode = self:ensure_token()
  if not ok then return nil, terr, tcode end
  local query = version and ("version=" .. version) or nil
  local res, doc, hcode = self:call("GET", api, { query = query })
  if not res then return nil, doc, hcode end
  local shown = api .. (version and ("?version=" .. version) or "")
  if res.status == 404 and kv == 2 and type(doc) == "table" and type(doc.data) == "table"
    and type(doc.data.metadata) == "table" then
    -- Vault answers 404 with the metadata for a deleted or destroyed version
    local m = doc.data.metadata
    m.version = math.tointeger(m.version) or m.version
    local why = m.destroyed == true and "was destroyed"
      or ("was deleted" .. (type(m.deletion_time) == "string" and m.deletion_time ~= "" and (" at " .. m.deletion_time) or ""))
    return nil, string.format("%s: version %s %s (HTTP 404)", self:where("GET", shown), tostring(m.version), why),
      "not_found"
  end
  if res.status == 404 and vault_message(doc) == "" then
    return nil, string.format("%s: no secret at this path (HTTP 404)", self:where("GET", shown)), "not_found"
  end
  if res.status ~= 200 then return self:fail("GET", shown, res, doc) end
  local d = type(doc) == "table" and doc.data
  local data, meta = d, nil
  if kv == 2 then
    if type(d) ~= "table" then
      return nil, self:where("GET", shown) .. ": the answer has no data (is the mount really KV v2?)", "invalid_response"
    end
    data, meta = d.data, d.metadata
    if data == json.null and type(meta) == "table" then
      return nil, string.format("%s: version %s has no data (deleted)", self:where("GET", shown),
        tostring(math.tointeger(meta.version) or meta.version)), "not_found"
    end
  end
  if type(data) ~= "table" then
    return nil, self:where("GET", shown) .. ": the answer has no data", "invalid_response"
  end
  local out = { data = {}, refused = {}, kv_version = kv, api_path = api }
  if type(meta) == "table" then
    out.metadata = { version = math.tointeger(meta.version) or meta.version, created_time = meta.created_time,
      deletion_time = meta.deletion_time, destroyed = meta.destroyed }
  end
  for k, v in pairs(data) do
    local where = "vault " .. api .. (version and ("@" .. version) or "") .. " key " .. k
    local w, why = wrap_value(v, where)
    if w then out.data[k] = w else out.refused[k] = why end
  end
  self.stats.reads = self.stats.reads + 1
  self.cache[key] = out
  return out
end

--- One key of a secret as a secret object, or nil, message, code
-- ("not_found" when the path or the key is absent).
function Client:get(path, key, version)
  if type(key) ~= "string" or key == "" then error("vault.get: key must be a non-empty string", 2) end
  local r, err, code = self:read(path, version)
  if not r then return nil, err, code end
  local v = r.data[key]
  if v == nil and r.refused[key] then
    return nil, string.format("vault %s: %s key %q: %s", self.cfg.addr, r.api_path, key, r.refused[key]),
      "invalid_value"
  end
  if v == nil then
    local keys = {}
    for k in pairs(r.data) do keys[#keys + 1] = k end
    for k in pairs(r.refused) do keys[#keys + 1] = k end
    table.sort(keys)
    local ver = r.metadata and r.metadata.version and (" (version " .. tostring(r.metadata.version) .. ")") or ""
    return nil, string.format("vault %s: %s%s has no key %q (keys: %s)", self.cfg.addr, r.api_path, ver, key,
      #keys > 0 and table.concat(keys, ", ") or "none"), "not_found"
  end
  return v
end

--- Forget the answers read so far (the next get reads Vault again).
function Client:forget()
  self.cache = {}
end

--- sys/health (unauthenticated): {initialized, sealed, standby, version,
-- cluster_name, server_time_utc} or nil, message, code. A sealed Vault is an
-- answer here (sealed = true), not a failure.
function Client:health()
  local path = "sys/health"
  local res, doc, code = self:call("GET", path, { token = false, namespace = false,
    query = "standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200" })
  if not res then return nil, doc, code end
  if res.status ~= 200 or type(doc) ~= "table" then return self:fail("GET", path, res, doc) end
  return { initialized = doc.initialized, sealed = doc.sealed, standby = doc.standby, version = doc.version,
    cluster_name = doc.cluster_name ~= json.null and doc.cluster_name or nil, server_time_utc = doc.server_time_utc }
end

--- A resolver for sbot.secret: `secret:PATH:KEY[@N]` is key KEY of PATH under
-- the mount. A path or key Vault does not have lets the next resolver try
-- (its message is kept for the final error); any other failure (denied,
-- sealed, unreachable, wrong mount) stops resolution with Vault's message.
function Client:resolver()
  return { name = "vault", versions = true, client = self,
    resolve = function(path, key, _, version)
      local v, err, code = self:get(path, key, version)
      if v then return v:reveal(), "vault " .. self.cfg.mount .. ":" .. path .. ":" .. key
        .. (version and ("@" .. version) or "") end
      if code == "not_found" then return nil, err end
      return nil, err, "error"
    end }
end

--- What sbot.site calls for a site file with a `vault` section: the
-- resolver of the shared client for that section (no request is made until
-- a reference is resolved).
function M.site_resolver(section, where)
  local cfg, err = M.check_config(section)
  if not cfg then return nil, where .. "." .. err end
  return M.shared(cfg):resolver()
end

--- Every `secret:` reference a site file makes, outside its vault section:
-- a list of {at = "servers[1].idrac.password", ref = "secret:..."} sorted by
-- key path; or nil, message. The file is run again (it is Lua returning a
-- table), nothing is resolved.
function M.site_references(file)
  local chunk, err = loadfile(file, "t")
  if not chunk then return nil, "site " .. tostring(err) end
  local ok, t = pcall(chunk)
  if not ok then return nil, "site " .. file .. ": " .. tostring(t) end
  if type(t) ~= "table" then return nil, "site " .. file .. ": must return a table" end
  local out, seen = {}, {}
  local function walk(node, prefix)
    if seen[node] then return end
    seen[node] = true
    for k, v in pairs(node) do
      local p = type(k) == "number" and (prefix .. "[" .. k .. "]") or (prefix == "" and tostring(k) or (prefix .. "." .. tostring(k)))
      if type(v) == "string" and v:sub(1, 7) == "secret:" then
        out[#out + 1] = { at = p, ref = v }
      elseif type(v) == "table" and getmetatable(v) == nil and not (prefix == "" and k == "vault") then
        walk(v, p)
      end
    end
  end
  walk(t, "")
  table.sort(out, function(a, b) return a.at < b.at end)
  return out
end

return M
