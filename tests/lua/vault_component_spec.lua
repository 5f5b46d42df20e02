-- The `vault` component (components/vault.c), the pre-flight check of a
-- site's Vault, against the lab's Vault: everything readable, a denial, a
-- sealed Vault, a short-lived token, an unreachable address; in the process
-- that loaded the site it adds no login; no secret value in its results.
local helpers = require "helpers"
local labclient = require "labclient"
local json = require "sbot.json"
local http = require "sbot.http"
local site_mod = require "sbot.site"
local Vault = require "sbot.component.vault"

local lab, V, root

local function admin(method, path, body)
  local r = assert(http.request { method = method, url = V.addr .. "/v1/" .. path, tls = V.tls, retries = false,
    headers = { ["X-Vault-Token"] = root, ["Content-Type"] = "application/json" },
    body = body and json.encode(body) or nil, timeout = 10 })
  return r.status, r.body ~= "" and json.decode(r.body) or nil
end

local function counts() return lab.state().devices.vault.counts end

local function faults(spec)
  local d = lab.info.devices.vault
  local r = assert(http.post(d.url .. "/lab/faults", { body = spec, tls = { pin_sha256 = d.pin_sha256 } }))
  assert(r.status == 200, r.body)
end

-- A site table for the component: the lab's Vault with a token of these policies.
local function token_site(spec)
  local st, doc = admin("POST", "auth/token/create", spec)
  assert(st == 200, json.encode(doc))
  return { vault = { addr = V.addr, tls = V.tls, auth = { method = "token", token = doc.auth.client_token } } },
    doc.auth.client_token
end

local function discover(config, site)
  local c = assert(Vault.new(config or {}, { id = "site", site = site }))
  return c:execute { phases = { "discover" } }
end

setup(function()
  lab = labclient.start_lab({ "--servers", "2", "--seed", "4" })
  V = lab.raw_site.vault
  root = helpers.read_file(lab.dir .. "/vault-root-token"):gsub("%s+$", "")
end)
teardown(function() if lab then lab.stop() end end)

describe("component vault", function()
  it("checks the lab's site: unsealed, token valid with its TTL, every reference readable", function()
    local site = assert(site_mod.load(lab.dir .. "/site.lua"))
    local r = discover(nil, site)
    assert.are.equal("ok", r.status, r.error)
    local d = r.discovery
    assert.is_false(d.sealed)
    assert.is_true(d.initialized)
    assert.are.equal("1.17.3", d.version)
    assert.are.equal(V.addr, d.addr)
    assert.are.equal("secret", d.mount)
    assert.are.equal(2, d.kv_version)
    assert.are.equal("approle", d.token.method)
    assert.is_true(d.token.ttl > 0 and d.token.ttl <= 1200, tostring(d.token.ttl))
    assert.is_true(d.token.renewable)
    assert.are.same({ "default", "sbot" }, d.token.policies)
    -- 2 iDRAC passwords, 2 CHAP secrets, the TrueNAS key, the two S3 keys, the OpenShift pull secret
    assert.are.equal(8, d.readable)
    assert.are.equal(0, d.unreadable)
    local at = {}
    for _, s in ipairs(d.secrets) do at[s.at] = s.ref; assert.is_true(s.ok) end
    assert.are.equal("secret:idrac/r630-02:password", at["servers[2].idrac.password"])
    assert.are.equal("secret:s3:secret_key", at["s3.secret_key"])
    assert.are.equal("secret:iscsi/r630-02:chap", at["servers[2].components.iscsi.chap.secret"])
    -- the results hold no value
    local text = json.encode(r)
    for _, v in ipairs { lab.site.servers[1].idrac.password, lab.site.truenas.api_key, lab.site.s3.secret_key,
      lab.site.servers[1].components.iscsi.chap.secret } do
      assert.is_nil(text:find(v, 1, true))
    end
  end)

  it("in the process that loaded the site it shares the login (one login for the whole run)", function()
    local dir = helpers.tmpdir("vstep")
    helpers.write_file(dir .. "/check.lua", string.format([[
      local site = assert(require("sbot.site").load(%q))
      local r = assert(require("sbot.component.vault").new({}, { site = site })):execute { phases = { "discover" } }
      print(r.status, r.discovery.readable)
    ]], lab.dir .. "/site.lua"))
    local before = counts()
    local out = helpers.sbot({ "run", dir .. "/check.lua" })
    assert.are.equal(0, out.code, out.stderr)
    assert.are.equal("ok\t8\n", out.stdout)
    local after = counts()
    assert.are.equal(before.logins + 1, after.logins)
  end)

  it("as a site step of a workflow: a failed pre-flight keeps every server from running", function()
    local dir = helpers.tmpdir("vpre")
    helpers.write_private(dir .. "/site.lua", string.format([[
      local site = dofile(%q)
      site.components = { vault = { references = { "idrac/r630-01:password", "idrac/r630-09:password" } } }
      return site]], lab.dir .. "/site.lua"))
    local r = helpers.sbot({ "run", helpers.source_dir .. "/examples/inventory.lua", "--site", dir .. "/site.lua",
      "--runs-dir", dir .. "/runs", "-v" },
      { cwd = dir, env = "SBOT_COMPONENT_PATH=" .. helpers.shquote(helpers.source_dir .. "/examples/components") })
    assert.are.equal(1, r.code, r.stderr)
    -- debug logging on: still no credential or value in the output or the run dir
    local _, _, all = helpers.sh("cat " .. helpers.shquote(dir) .. "/runs/*/results.json "
      .. helpers.shquote(dir) .. "/runs/*/log.jsonl")
    -- the parent logged in loading the site; the step's worker used that token
    assert.matches("vault: using the token of the process that loaded the site", all, 1, true)
    for _, v in ipairs { V.auth.secret_id, V.auth.role_id, lab.site.servers[1].idrac.password, lab.site.s3.secret_key } do
      assert.is_nil(all:find(v, 1, true))
      assert.is_nil(r.stdout:find(v, 1, true))
      assert.is_nil(r.stderr:find(v, 1, true))
    end
    assert.matches("\n%(site%)%s+vault%s+failed", r.stdout)
    assert.matches("\nr630%-01%s+%(workflow%)%s+skipped", r.stdout)
    assert.matches("\nr630%-02%s+%(workflow%)%s+skipped", r.stdout)
    local rec = json.decode(helpers.read_file((assert(io.popen("ls -d " .. dir .. "/runs/*/results.json")):read("l"))))
    local site_row = rec.results[1]
    assert.are.equal("(site)", site_row.id)
    assert.matches("1 of 2 secret reference(s) cannot be read from Vault", site_row.error, 1, true)
    assert.matches("GET secret/data/idrac/r630-09: no secret at this path (HTTP 404)", site_row.error, 1, true)
  end)

  it("fails naming every unreadable reference with Vault's message, and keeps the discovery", function()
    local site, tok = token_site({ policies = { "idrac-only" } })
    local r = discover({ references = { "idrac/r630-01:password", "truenas:api_key",
      "idrac/r630-01:nope", "idrac/r630-02:password@1" } }, site)
    assert.are.equal("failed", r.status)
    assert.matches("2 of 4 secret reference(s) cannot be read from Vault:", r.error, 1, true)
    assert.matches("references[2] (secret:truenas:api_key): vault https://127.0.0.1:", r.error, 1, true)
    assert.matches("GET secret/data/truenas: permission denied (HTTP 403)", r.error, 1, true)
    assert.matches('references%[3%] %(secret:idrac/r630%-01:nope%): vault https://127.0.0.1:%d+: secret/data/idrac/r630%-01 '
      .. '%(version 2%) has no key "nope"', r.error)
    assert.is_nil(r.error:find(tok, 1, true))
    local d = r.discovery
    assert.are.equal(2, d.readable)
    assert.are.equal(2, d.unreadable)
    assert.are.same({ true, false, false, true }, { d.secrets[1].ok, d.secrets[2].ok, d.secrets[3].ok, d.secrets[4].ok })
    assert.are.equal("permission_denied", d.secrets[2].code)
    assert.are.equal("not_found", d.secrets[3].code)
    assert.are.same({ "default", "idrac-only" }, d.token.policies)
  end)

  it("fails on a sealed Vault, saying so", function()
    local site = token_site({ policies = { "sbot" } })
    faults("vault:sealed=1")
    local ok, r = pcall(discover, { references = {} }, site)
    faults("")
    assert(ok, r)
    assert.are.equal("failed", r.status)
    assert.matches("vault https://127.0.0.1:%d+ is sealed: unseal it before the deployment", r.error)
    assert.is_true(r.discovery.sealed)
  end)

  it("fails when the token expires before min_ttl and cannot be renewed", function()
    local site = token_site({ policies = { "sbot" }, ttl = "60s", renewable = false })
    local r = discover({ references = {}, min_ttl = 3600 }, site)
    assert.are.equal("failed", r.status)
    assert.matches("the Vault token expires in %d+ s and cannot be renewed; the step asks for at least min_ttl = 3600 s",
      r.error)
    assert.is_false(r.discovery.token.renewable)
    -- a renewable token of the same TTL passes
    r = discover({ references = {}, min_ttl = 3600 }, token_site({ policies = { "sbot" }, ttl = "60s" }))
    assert.are.equal("ok", r.status, r.error)
  end)

  it("fails on an unreachable Vault with the transport's code in the message", function()
    local port = helpers.free_port()
    local r = discover({ references = {} }, { vault = { addr = "https://127.0.0.1:" .. port, timeout = 5,
      auth = { method = "token", token = "hvs.unreachable-token-Wq93" } } })
    assert.are.equal("failed", r.status)
    assert.matches("Vault unreachable: vault https://127.0.0.1:" .. port .. ": GET sys/health: ", r.error, 1, true)
  end)

  it("needs a site with a vault section", function()
    local r = discover({}, { servers = {} })
    assert.are.equal("failed", r.status)
    assert.matches("the site has no vault section", r.error, 1, true)
  end)
end)
