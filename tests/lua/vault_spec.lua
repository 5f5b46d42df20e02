-- sbot.vault against the lab's Vault (a real `sbot lab` process): KV v2 and
-- v1, token and AppRole, a policy denial, a sealed Vault, missing keys and
-- paths, a mount that is not KV, renewal during a long run, namespaces, and
-- site loading through the `vault` section (one login for 50 servers, no
-- secret in any log, record or error).
local helpers = require "helpers"
local labclient = require "labclient"
local json = require "sbot.json"
local http = require "sbot.http"
local secret = require "sbot.secret"
local site_mod = require "sbot.site"
local vault = require "sbot.vault"

local lab, V, root

-- A request to the lab's Vault with the root token (how a test sets Vault up).
local function admin(method, path, body, token)
  local r = assert(http.request { method = method, url = V.addr .. "/v1/" .. path, tls = V.tls, retries = false,
    headers = { ["X-Vault-Token"] = token or root, ["Content-Type"] = "application/json" },
    body = body and json.encode(body) or nil, timeout = 10 })
  return r.status, r.body ~= "" and json.decode(r.body) or nil
end

local function counts() return lab.state().devices.vault.counts end

local function faults(spec)
  local d = lab.info.devices.vault
  local r = assert(http.post(d.url .. "/lab/faults", { body = spec, tls = { pin_sha256 = d.pin_sha256 } }))
  assert(r.status == 200, r.body)
end

-- A token from the lab's Vault: spec as auth/token/create takes it.
local function new_token(spec)
  local st, doc = admin("POST", "auth/token/create", spec)
  assert(st == 200, json.encode(doc))
  return doc.auth.client_token
end

local function approle()
  return { method = "approle", role_id = V.auth.role_id, secret_id = V.auth.secret_id }
end

-- A new AppRole `name` whose tokens (policy sbot) live ttl, renewable up to
-- max_ttl (Vault durations, "3s"): the auth section that logs in with it.
local function new_approle(name, ttl, max_ttl)
  assert.are.equal(204, (admin("POST", "auth/approle/role/" .. name, { token_policies = { "sbot" },
    token_ttl = ttl, token_max_ttl = max_ttl })))
  local _, rid = admin("GET", "auth/approle/role/" .. name .. "/role-id")
  local _, sid = admin("POST", "auth/approle/role/" .. name .. "/secret-id")
  return { method = "approle", role_id = rid.data.role_id, secret_id = sid.data.secret_id }
end

local function client(extra)
  local cfg = { addr = V.addr, tls = V.tls, auth = approle() }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return vault.client(cfg)
end

setup(function()
  lab = labclient.start_lab({ "--servers", "3", "--seed", "11" })
  V = lab.raw_site.vault
  root = helpers.read_file(lab.dir .. "/vault-root-token"):gsub("%s+$", "")
end)
teardown(function() if lab then lab.stop() end end)

describe("sbot.vault client", function()
  it("reads KV v2 with AppRole: one login, secret objects, versions pinned with @N", function()
    local before = counts()
    local c = client()
    local pw, err = c:get("idrac/r630-01", "password")
    assert.is_true(secret.is_secret(pw), err)
    assert.are.equal(lab.site.servers[1].idrac.password, pw:reveal())
    assert.are.equal("<redacted>", tostring(pw))
    -- version 1 is the password rotated away; the latest is 2
    local old = assert(c:get("idrac/r630-01", "password", 1))
    assert.matches("^rotated%-", old:reveal())
    local r = assert(c:read("idrac/r630-01"))
    assert.are.equal(2, r.metadata.version)
    assert.are.equal(2, r.kv_version)
    assert.are.equal("secret/data/idrac/r630-01", r.api_path)
    local after = counts()
    assert.are.equal(before.logins + 1, after.logins)
    assert.are.equal(1, c.stats.logins)
    -- the same path is read once (cached), the pinned version once more
    assert.are.equal(before.reads + 2, after.reads)
  end)

  it("tells KV v1 from v2 by asking sys/internal/ui/mounts, and refuses a pin on v1", function()
    local c = client({ mount = "kv" })
    assert.are.equal(1, (c:kv_version()))
    assert.are.equal(lab.site.truenas.api_key, assert(c:get("truenas", "api_key")):reveal())
    local v, err, code = c:get("truenas", "api_key", 2)
    assert.is_nil(v)
    assert.are.equal("unsupported_mount", code)
    assert.matches("version pinning needs KV v2; mount kv/ is KV version 1", err, 1, true)
  end)

  it("refuses a mount that is not a KV engine, naming its type", function()
    -- (the lab's AppRole may not even see pki/: root may)
    local v, err, code = vault.client({ addr = V.addr, tls = V.tls, mount = "pki",
      auth = { method = "token", token = root } }):get("x", "y")
    assert.is_nil(v)
    assert.are.equal("unsupported_mount", code)
    assert.matches('mount pki/ is a "pki" secrets engine, not KV', err, 1, true)
  end)

  it("names the path and key when a key or a path is missing", function()
    local c = client()
    local v, err, code = c:get("idrac/r630-01", "pasword")
    assert.is_nil(v)
    assert.are.equal("not_found", code)
    assert.matches('secret/data/idrac/r630-01 (version 2) has no key "pasword" (keys: password, user)', err, 1, true)
    v, err, code = c:get("idrac/r630-99", "password")
    assert.is_nil(v)
    assert.are.equal("not_found", code)
    assert.matches("GET secret/data/idrac/r630-99: no secret at this path (HTTP 404)", err, 1, true)
    v, err, code = c:get("idrac/r630-01", "password", 9)
    assert.is_nil(v)
    assert.are.equal("not_found", code)
    assert.matches("secret/data/idrac/r630-01?version=9: no secret at this path (HTTP 404)", err, 1, true)
  end)

  it("gives a JSON value as its JSON text and refuses a null, naming the key", function()
    assert.are.equal(200, (admin("POST", "secret/data/shapes", { data = { doc = { auths = { ["quay.io"] = { auth = "cXVheTpxdWF5" } } },
      port = 84430443, none = json.null } })))
    local c = client()
    assert.are.equal('{"auths":{"quay.io":{"auth":"cXVheTpxdWF5"}}}', assert(c:get("shapes", "doc")):reveal())
    assert.are.equal("84430443", assert(c:get("shapes", "port")):reveal())
    local v, err, code = c:get("shapes", "none")
    assert.is_nil(v)
    assert.are.equal("invalid_value", code)
    assert.matches('secret/data/shapes key "none": the value is null', err, 1, true)
    _, err = c:get("shapes", "nope")
    assert.matches("(keys: doc, none, port)", err, 1, true)
  end)

  it("reports a deleted version with Vault's metadata", function()
    assert.are.equal(200, (admin("POST", "secret/data/rotating", { data = { k = "one-Ab12" } })))
    assert.are.equal(200, (admin("POST", "secret/data/rotating", { data = { k = "two-Cd34" } })))
    assert.are.equal(204, (admin("POST", "secret/delete/rotating", { versions = { 1 } })))
    local c = client()
    local v, err, code = c:get("rotating", "k", 1)
    assert.is_nil(v)
    assert.are.equal("not_found", code)
    assert.matches("version 1 was deleted at %d%d%d%d%-", err)
    assert.are.equal("two-Cd34", c:get("rotating", "k"):reveal())
  end)

  it("with a token: lookup-self gives its TTL; a policy denial carries Vault's message", function()
    local tok = new_token({ policies = { "idrac-only" }, ttl = "1h" })
    local c = vault.client { addr = V.addr, tls = V.tls, auth = { method = "token", token = tok } }
    assert.is_true(c:login())
    local info = assert(c:lookup())
    assert.is_true(info.ttl > 3500 and info.ttl <= 3600, tostring(info.ttl))
    assert.is_true(info.renewable)
    assert.are.same({ "default", "idrac-only" }, info.policies)
    assert.is_nil(info.id)
    assert.truthy(c:get("idrac/r630-02", "password"))
    local v, err, code = c:get("truenas", "api_key")
    assert.is_nil(v)
    assert.are.equal("permission_denied", code)
    assert.matches("GET secret/data/truenas: permission denied (HTTP 403)", err, 1, true)
    assert.is_nil(err:find(tok, 1, true))
  end)

  it("a token that may not read the mount table: the error says to set kv_version", function()
    assert.are.equal(204, (admin("PUT", "sys/policies/acl/kv1-only", { policy = 'path "kv/*" { capabilities = ["read"] }' })))
    local tok = new_token({ policies = { "kv1-only" } })
    local c = vault.client { addr = V.addr, tls = V.tls, auth = { method = "token", token = tok } }
    local v, err, code = c:get("truenas", "api_key")
    assert.is_nil(v)
    assert.are.equal("permission_denied", code)
    assert.matches("cannot tell the KV version of mount secret/", err, 1, true)
    assert.matches("preflight capability check returned 403", err, 1, true)
    assert.matches("set vault.kv_version = 1 or 2", err, 1, true)
    -- told the version, it reads what its policy allows
    local c1 = vault.client { addr = V.addr, tls = V.tls, mount = "kv", kv_version = 1,
      auth = { method = "token", token = tok } }
    assert.are.equal(lab.site.truenas.api_key, assert(c1:get("truenas", "api_key")):reveal())
  end)

  it("AppRole with a wrong SecretID: Vault's message, the SecretID nowhere", function()
    local bad = "0badbad0-1111-2222-3333-444455556666"
    local c = vault.client { addr = V.addr, tls = V.tls,
      auth = { method = "approle", role_id = V.auth.role_id, secret_id = bad } }
    local v, err, code = c:get("truenas", "api_key")
    assert.is_nil(v)
    assert.are.equal("invalid_request", code)
    assert.matches("POST auth/approle/login: AppRole login failed: invalid role or secret ID (HTTP 400)", err, 1, true)
    assert.is_nil(err:find(bad, 1, true))
  end)

  it("a sealed Vault: 503 'Vault is sealed' for reads, sealed = true from sys/health", function()
    faults("vault:sealed=1")
    local ok, e = pcall(function()
      local c = client()
      local v, err, code = c:get("truenas", "api_key")
      assert.is_nil(v)
      assert.are.equal("sealed", code)
      assert.matches("Vault is sealed (HTTP 503)", err, 1, true)
      local h = assert(c:health())
      assert.is_true(h.sealed)
      assert.is_true(h.initialized)
    end)
    faults("")
    assert(ok, e)
    assert.is_false(assert(client():health()).sealed)
  end)

  it("renews tokens during a long run; an AppRole token at its max TTL is replaced by a new login", function()
    -- a 3 s token renewed after 2/3 of its lease, and an AppRole whose tokens live 3 s, at most 5 s;
    -- every duration x the build's slowdown (real Vault leases in wall-clock seconds: the
    -- replaced token has 0.8 s x slowdown left when it is revoked)
    local x = helpers.slowdown
    local tok = new_token({ policies = { "sbot" }, ttl = 3 * x .. "s", explicit_max_ttl = "60s" })
    local ct = vault.client { addr = V.addr, tls = V.tls, auth = { method = "token", token = tok } }
    local ca = vault.client { addr = V.addr, tls = V.tls, auth = new_approle("short", 3 * x .. "s", 5 * x .. "s") }
    local before = counts()
    local paths = { "idrac/r630-01", "idrac/r630-02", "idrac/r630-03" }
    local first
    for i, p in ipairs(paths) do
      if i > 1 then os.execute("sleep " .. 2.1 * x) end
      assert.truthy(ct:get(p, "password"))
      assert.truthy(ca:get(p, "password"))
      first = first or ca.token
    end
    -- 4.2 s after the start: the 3 s token still works because it was renewed twice
    assert.are.equal(2, ct.stats.renewals)
    assert.are.equal(0, ct.stats.logins)
    local info = assert(ct:lookup())
    assert.is_true(info.ttl >= 2 * x, tostring(info.ttl))
    -- the AppRole token: renewed at 2.1 s (capped at 5 s), replaced by a new login at 4.2 s
    assert.are.equal(2, ca.stats.logins)
    assert.are.equal(2, ca.stats.renewals)
    local after = counts()
    assert.are.equal(before.renewals + 4, after.renewals)
    assert.are.equal(before.logins + 2, after.logins)
    -- the token the new login replaced (still valid for 0.8 s) was revoked, not abandoned
    assert.are.equal(before.revocations + 1, after.revocations)
    assert.are.equal(1, ca.stats.revocations)
    assert.are_not.equal(first, ca.token)
    local st, doc = admin("GET", "auth/token/lookup-self", nil, first:reveal())
    assert.are.equal(403, st)
    assert.matches("invalid token", json.encode(doc), 1, true)
    -- as in Vault, the role's token_max_ttl caps renewals without being the token's explicit max TTL
    assert.are.equal(0, assert(ca:lookup()).explicit_max_ttl)
  end)

  it("a token that expired before the new login: its revocation is skipped quietly (Vault no longer knows it)", function()
    local ca = vault.client { addr = V.addr, tls = V.tls, auth = new_approle("tiny", "1s", "60s") }
    assert.truthy(ca:get("idrac/r630-01", "password"))
    local before = counts()
    os.execute("sleep 1.3")
    -- renewal fails (403 invalid token), a new login, the old token's revocation answers 403 too
    local v, err = ca:get("idrac/r630-02", "password")
    assert.truthy(v, err)
    assert.are.equal(2, ca.stats.logins)
    assert.are.equal(0, ca.stats.revocations)
    local after = counts()
    assert.are.equal(before.logins + 1, after.logins)
    assert.are.equal(before.revocations, after.revocations)
    assert.is_true(assert(ca:revoke()))
    assert.are.equal(before.revocations + 1, counts().revocations)
  end)

  it("sends X-Vault-Namespace: a lab in a namespace answers only within it", function()
    local nslab = labclient.start_lab({ "--servers", "1", "--vault-namespace", "team1" })
    local ok, e = pcall(function()
      local NV = nslab.raw_site.vault
      assert.are.equal("team1", NV.namespace)
      -- read_site above resolved the lab's secrets through the namespace
      assert.is_string(nslab.site.servers[1].idrac.password)
      local c = vault.client { addr = NV.addr, tls = NV.tls, namespace = "team1",
        auth = { method = "approle", role_id = NV.auth.role_id, secret_id = NV.auth.secret_id } }
      assert.are.equal(nslab.site.servers[1].idrac.password, assert(c:get("idrac/r630-01", "password")):reveal())
      local outside = vault.client { addr = NV.addr, tls = NV.tls,
        auth = { method = "approle", role_id = NV.auth.role_id, secret_id = NV.auth.secret_id } }
      local v, err, code = outside:get("idrac/r630-01", "password")
      assert.is_nil(v)
      assert.are.equal("not_found", code)
      assert.matches('no handler for route "auth/approle/login"', err, 1, true)
    end)
    nslab.stop()
    assert(ok, e)
  end)

  it("raises on a bad configuration, naming the key", function()
    local tok = "hvs.not-a-real-token-Qm4x"
    assert.has_error(function() vault.client { addr = "vault:8200", auth = { token = tok } } end,
      'vault.client: addr: expected the Vault address as an http:// or https:// URL (e.g. https://vault:8200), got "vault:8200"')
    local _, err = vault.check_config { addr = V.addr, auth = { method = "approle", role_id = "not-a-role-id-Pz7" } }
    assert.matches("auth.secret_id: required for method \"approle\"", err, 1, true)
    _, err = vault.check_config { addr = V.addr, auth = { token = tok }, kv_version = 3 }
    assert.matches('kv_version: expected "auto", 1 or 2, got "3"', err, 1, true)
    _, err = vault.check_config { addr = "http://v:8200", auth = { token = tok }, tls = { insecure = true } }
    assert.matches("tls: TLS settings given for the plain-text URL http://v:8200", err, 1, true)
    _, err = vault.check_config { addr = V.addr, auth = { token = tok }, tls = { pin = "x" } }
    assert.matches("tls: unknown key 'pin'", err, 1, true)
    _, err = vault.check_config { addr = V.addr, auth = { method = "token" } }
    assert.matches("auth.token: required for method \"token\"", err, 1, true)
  end)
end)

describe("site files with a vault section", function()
  local dir

  before_each(function() dir = helpers.tmpdir("vsite") end)

  -- A site file over the lab's Vault: servers from `servers`, extra top-level text.
  local function write_site(servers, extra, vault_text)
    local lines = {}
    for _, s in ipairs(servers) do
      lines[#lines + 1] = string.format('{ id = %q, idrac = { host = "10.0.0.1", password = %q } },', s.id, s.password)
    end
    local path = dir .. "/site.lua"
    helpers.write_private(path, string.format([[
local lab = dofile(%q)
return {
  vault = %s,
  servers = {
%s
  },
%s
}
]], lab.dir .. "/site.lua", vault_text or "lab.vault", table.concat(lines, "\n"), extra or ""))
    return path
  end

  it("resolves through Vault first, falls back to env for a path Vault lacks, and names Vault's answer", function()
    local path = write_site({ { id = "a", password = "secret:idrac/r630-01:password" },
      { id = "b", password = "secret:local/b:password" } })
    local site, err = site_mod.load(path, { getenv = function(n) return n == "LOCAL_B_PASSWORD" and "env-b-Zx81" or nil end })
    assert.is_table(site, err)
    assert.are.equal(lab.site.servers[1].idrac.password, site.servers[1].idrac.password:reveal())
    assert.matches("^vault secret:idrac/r630%-01:password$", site.servers[1].idrac.password:source())
    assert.are.equal("env-b-Zx81", site.servers[2].idrac.password:reveal())
    -- not in Vault and nowhere else: Vault's 404 is part of the message
    local _, err2, code = site_mod.load(path, { getenv = function() return nil end })
    assert.are.equal("secret", code)
    assert.matches("servers%[2%]%.idrac%.password: secret:local/b:password not found %(tried vault https://127%.0%.0%.1:%d+: "
      .. "GET secret/data/local/b: no secret at this path %(HTTP 404%), environment variable LOCAL_B_PASSWORD", err2)
    -- a pinned version never comes from env or a file
    local p2 = write_site({ { id = "a", password = "secret:local/b:password@2" } })
    _, err2 = site_mod.load(p2, { getenv = function() return "env-b-Zx81" end })
    assert.matches("env %(keeps no versions%), file %(keeps no versions%)", err2)
  end)

  it("stops at a denial, naming the file, the key path, the reference and Vault's message", function()
    local tok = new_token({ policies = { "idrac-only" } })
    local path = write_site({ { id = "a", password = "secret:idrac/r630-01:password" } },
      "truenas = { url = 'wss://127.0.0.1:1/api/current', api_key = 'secret:truenas:api_key', pool = 'tank', portal = '127.0.0.1' },",
      string.format("{ addr = lab.vault.addr, tls = lab.vault.tls, auth = { method = 'token', token = %q } }", tok))
    local site, err, code = site_mod.load(path)
    assert.is_nil(site)
    assert.are.equal("secret", code)
    assert.matches("site " .. path .. ": truenas.api_key: secret:truenas:api_key: vault https://127.0.0.1:", err, 1, true)
    assert.matches("GET secret/data/truenas: permission denied (HTTP 403)", err, 1, true)
    assert.is_nil(err:find(tok, 1, true))
  end)

  it("takes the Vault credentials from env (secret:vault:secret_id) and checks the section", function()
    local path = write_site({ { id = "a", password = "secret:idrac/r630-02:password" } }, nil,
      "{ addr = lab.vault.addr, tls = lab.vault.tls, auth = { method = 'approle', role_id = lab.vault.auth.role_id, "
        .. "secret_id = 'secret:vault:secret_id' } }")
    local env = { VAULT_SECRET_ID = V.auth.secret_id }
    local site, err = site_mod.load(path, { getenv = function(n) return env[n] end })
    assert.is_table(site, err)
    assert.are.equal(lab.site.servers[2].idrac.password, site.servers[1].idrac.password:reveal())
    assert.is_true(secret.is_secret(site.vault.auth.secret_id))
    -- without it: the error names vault.auth.secret_id
    local _, err2, code = site_mod.load(path, { getenv = function() return nil end })
    assert.are.equal("secret", code)
    assert.matches("site " .. path .. ": vault.auth.secret_id: secret:vault:secret_id not found "
      .. "(tried environment variable VAULT_SECRET_ID", err2, 1, true)
    -- a section that does not say how to log in
    local p3 = write_site({}, nil, "{ addr = lab.vault.addr, auth = { method = 'approle' } }")
    local _, err3, code3 = site_mod.load(p3)
    assert.are.equal("invalid", code3)
    assert.matches("site " .. p3 .. ": vault.auth.role_id: required for method \"approle\"", err3, 1, true)
    local p4 = write_site({}, nil, "{ addr = lab.vault.addr, auth = { method = 'ldap' } }")
    local _, err4 = site_mod.load(p4)
    assert.matches("vault.auth.method", err4, 1, true)
  end)

  -- n secrets in Vault, one per server, and a site file of n servers that
  -- reference them (vault_text: the site's vault section, default the lab's)
  local function fleet_site(n, vault_text)
    local passwords = {}
    for i = 1, n do
      passwords[i] = string.format("fleet-pw-%02d-%s", i, helpers.read_file("/proc/sys/kernel/random/uuid"):sub(1, 8))
      assert.are.equal(200, (admin("POST", string.format("secret/data/fleet/n%02d", i), { data = { password = passwords[i] } })))
    end
    local servers = {}
    for i = 1, n do servers[i] = { id = string.format("n%02d", i), password = string.format("secret:fleet/n%02d:password", i) } end
    local path = write_site(servers, string.format(
      "components = { test_kv = { state_file = %q, want = { a = '1' }, password = 'secret:fleet/n01:password' } },",
      dir .. "/{id}.state.json"), vault_text)
    return path, passwords
  end

  -- the site's vault section: the lab's Vault, logging in with auth (new_approle)
  local function approle_section(auth)
    return string.format("{ addr = lab.vault.addr, tls = lab.vault.tls, auth = { method = 'approle', "
      .. "role_id = %q, secret_id = %q } }", auth.role_id, auth.secret_id)
  end

  local function run_wf(name, path, extra)
    local argv = { "run", helpers.source_dir .. "/tests/support/workflows/" .. name .. ".lua", "--site", path,
      "--jobs", "8", "--runs-dir", dir .. "/runs" }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    return helpers.sbot(argv, { cwd = dir })
  end

  -- The workflow in the background (helpers.spawn), for a test that stops it.
  local function spawn_wf(name, path, extra)
    local cmd = { helpers.shquote(helpers.sbot_bin), "run",
      helpers.shquote(helpers.source_dir .. "/tests/support/workflows/" .. name .. ".lua"),
      "--site", helpers.shquote(path), "--runs-dir", helpers.shquote(dir .. "/runs") }
    for _, a in ipairs(extra or {}) do cmd[#cmd + 1] = helpers.shquote(a) end
    return helpers.spawn(table.concat(cmd, " "), { log = dir .. "/out.log" })
  end

  -- Wait (30 s at most) until cond() holds while p runs; p exiting first fails at once.
  local function wait_running(p, cond, what)
    helpers.wait_for(function() return cond() or not p:alive() end, 30)
    assert(cond(), what .. ": " .. p:output())
  end

  -- Ctrl-C to p, and wait (30 s at most) until it has exited.
  local function interrupt(p)
    os.execute("kill -INT " .. p.pid)
    assert(helpers.wait_for(function() return not p:alive() end, 30), "sbot did not stop on SIGINT")
  end

  it("a run over 50 servers logs in once in the parent; no secret reaches the run dir or the output", function()
    local path, passwords = fleet_site(50)
    local before = counts()
    local r = run_wf("kv", path)
    assert.are.equal(0, r.code, r.stderr)
    local after = counts()
    assert.are.equal(before.logins + 1, after.logins)
    assert.are.equal(before.reads + 50, after.reads) -- 50 paths, each read once, none by the workers
    assert.are.equal(before.lookups, after.lookups)
    local _, _, all = helpers.sh("cat " .. helpers.shquote(dir) .. "/runs/*/results.json "
      .. helpers.shquote(dir) .. "/runs/*/log.jsonl")
    assert.is_true(#all > 1000)
    for _, pw in ipairs(passwords) do
      assert.is_nil(all:find(pw, 1, true), "a password in the run record")
      assert.is_nil(r.stdout:find(pw, 1, true))
      assert.is_nil(r.stderr:find(pw, 1, true))
    end
    local _, _, grep = helpers.sh("grep -rlF " .. helpers.shquote(V.auth.secret_id) .. " " .. helpers.shquote(dir .. "/runs")
      .. "; grep -rlF fleet-pw- " .. helpers.shquote(dir .. "/runs"))
    assert.are.equal("", grep)
  end)
  it("the Vault pre-flight as a site step and 50 servers: one login for the whole run, revoked at its end", function()
    local path, passwords = fleet_site(50)
    local before = counts()
    local r = run_wf("vault_kv", path, { "-v" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("\n%(site%)%s+vault%s+ok", r.stdout)
    local after = counts()
    -- the site step's worker used the parent's token: no login of its own
    assert.are.equal(before.logins + 1, after.logins)
    -- sbot logged in with AppRole: the token went with the run
    assert.are.equal(before.revocations + 1, after.revocations)
    -- the check read every reference with the handed-over token (50 paths again)
    assert.are.equal(before.reads + 100, after.reads)
    local rec = json.decode(helpers.read_file((assert(io.popen("ls -d " .. dir .. "/runs/*/results.json")):read("l"))))
    assert.are.equal(51, rec.results[1].discovery.readable)
    -- the token was in the workers (a secret object): never in a record, a log or the output
    local _, _, all = helpers.sh("cat " .. helpers.shquote(dir) .. "/runs/*/results.json "
      .. helpers.shquote(dir) .. "/runs/*/log.jsonl")
    assert.matches("vault: using the token of the process that loaded the site", all, 1, true)
    assert.is_nil(all:find("hvs%.[%w]+"), "a Vault token in the run record")
    assert.is_nil(r.stderr:find("hvs%.[%w]+"))
    for _, pw in ipairs(passwords) do assert.is_nil(all:find(pw, 1, true)) end
  end)

  it("a failed run still makes one login and revokes its token at its end", function()
    local path = fleet_site(3)
    -- every server's step fails (its discover raises), after the Vault pre-flight passed
    local failing = dir .. "/site-failing.lua"
    helpers.write_private(failing, string.format([[
local site = dofile(%q)
site.components.test_kv.fail_discover = true
return site
]], path))
    local before = counts()
    local r = run_wf("vault_kv", failing)
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("\n%(site%)%s+vault%s+ok", r.stdout)
    assert.matches("n01%s+test_kv%s+failed", r.stdout)
    local after = counts()
    assert.are.equal(before.logins + 1, after.logins)
    assert.are.equal(before.revocations + 1, after.revocations, "the failed run's token was revoked")
  end)

  it("a worker renews the handed-over token when its lease says so, instead of logging in", function()
    -- an AppRole whose tokens live 3 s (at most 60 s): the site step starts 2.2 s after the login
    -- (x the build's slowdown: the worker must get the token before its lease runs out)
    local x = helpers.slowdown
    local path = fleet_site(2, approle_section(new_approle("brief", 3 * x .. "s", "60s")))
    local before = counts()
    local r = run_wf("vault_kv", path, { "--wait", tostring(2.2 * x) })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    local after = counts()
    assert.are.equal(before.logins + 1, after.logins)
    -- two renewals: the site step's worker (2.2 s into a 3 s lease, past its renewal point), then
    -- the parent, handing the token to the servers' workers after the site step; without the
    -- worker's, the parent's alone would be one
    assert.are.equal(before.renewals + 2, after.renewals, "the worker renewed the token")
    assert.are.equal(before.revocations + 1, after.revocations)
  end)

  it("a site step longer than the token's renewal point: the parent renews it before the servers' workers get it", function()
    -- tokens that live 5 s (at most 60 s), due for renewal after 3.3 s: the site step takes 3.6 s after its
    -- check, then each server works 2 s before reading Vault - past the lease the token had left then;
    -- every duration x the build's slowdown (the renewal must come within the 5 s lease)
    local x = helpers.slowdown
    local path = fleet_site(2, approle_section(new_approle("iso", 5 * x .. "s", "60s")))
    local before = counts()
    local r = run_wf("vault_long", path, { "--site-wait", tostring(3.6 * x), "--server-wait", tostring(2 * x) })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("\n%(site%)%s+vault%s+ok", r.stdout)
    assert.matches("\nn01%s+vault%s+ok", r.stdout)
    assert.matches("\nn02%s+vault%s+ok", r.stdout)
    local after = counts()
    assert.are.equal(before.logins + 1, after.logins, "one login for the whole run")
    assert.are.equal(before.login_failures, after.login_failures)
    assert.is_true(after.renewals > before.renewals, "the parent renewed the token")
    -- the parent read both paths at site loading, then each of the three workers read them with the token
    assert.are.equal(before.reads + 8, after.reads)
    assert.are.equal(before.revocations + 1, after.revocations)
  end)

  it("Ctrl-C during a run that logged in with AppRole: its token is revoked before sbot exits", function()
    local path = fleet_site(2)
    local function accessors()
      local st, doc = admin("GET", "auth/token/accessors?list=true")
      assert.are.equal(200, st)
      return doc.data.keys
    end
    -- listing accessors needs sudo (Vault's rule): the AppRole's policy has none
    assert.are.equal(403, (admin("GET", "auth/token/accessors?list=true", nil,
      new_token({ policies = { "sbot" }, ttl = "1m" }))))
    local known = {}
    for _, a in ipairs(accessors()) do known[a] = true end
    local before = counts()
    local p = spawn_wf("vault_long", path, { "--site-wait", "60" })
    -- the pre-flight site step has read both paths with the parent's token: the site step now sleeps
    wait_running(p, function() return counts().reads >= before.reads + 4 end, "the pre-flight did not run")
    local new = {}
    for _, a in ipairs(accessors()) do if not known[a] then new[#new + 1] = a end end
    assert.are.equal(1, #new, "one token made for the run")
    assert.are.equal(200, (admin("POST", "auth/token/lookup-accessor", { accessor = new[1] })))
    interrupt(p)
    assert.matches("run interrupted (Ctrl-C)", p:output(), 1, true)
    local after = counts()
    assert.are.equal(before.logins + 1, after.logins)
    assert.are.equal(before.revocations + 1, after.revocations)
    local st, doc = admin("POST", "auth/token/lookup-accessor", { accessor = new[1] })
    assert.are.equal(400, st)
    assert.matches("invalid accessor", json.encode(doc), 1, true)
  end)

  it("a Vault that does not answer when the servers' workers are handed the token is asked once, not per server", function()
    -- 3 s tokens: due for renewal when the 4 s site step ends; Vault is sealed by then
    local path = fleet_site(3, approle_section(new_approle("sealed", "3s", "60s")))
    local before = counts()
    local p = spawn_wf("vault_long", path, { "--site-wait", "4", "--server-wait", "60" })
    wait_running(p, function() return counts().reads >= before.reads + 6 end, "the pre-flight did not run")
    faults("vault:sealed=1")
    local warning = "vault: could not renew the token before handing it to the workers"
    wait_running(p, function() return p:output():find(warning, 1, true) end, "no warning")
    os.execute("sleep 0.5")
    local sealed = counts().sealed - before.sealed
    faults("")
    interrupt(p)
    -- renew-self, then the AppRole login that would replace the token: both refused, once
    assert.are.equal(2, sealed)
    local out = p:output()
    local _, warnings = out:gsub(warning:gsub("%p", "%%%0"), "")
    assert.are.equal(1, warnings)
    assert.matches("Vault is sealed", out, 1, true)
    assert.is_nil(out:find("hvs%.[%w]+"), "a token in the output")
  end)

  it("never revokes a token the operator gave", function()
    local tok = new_token({ policies = { "sbot" }, ttl = "1h" })
    local path = fleet_site(2, string.format("{ addr = lab.vault.addr, tls = lab.vault.tls, auth = { method = 'token', "
      .. "token = %q } }", tok))
    local before = counts()
    local r = run_wf("vault_kv", path)
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    local after = counts()
    assert.are.equal(before.logins, after.logins)
    assert.are.equal(before.revocations, after.revocations)
    assert.are.equal(200, (admin("GET", "auth/token/lookup-self", nil, tok)), "the operator's token still works")
  end)
end)
