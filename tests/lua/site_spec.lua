-- sbot.schema, sbot.secret and sbot.site.
local helpers = require "helpers"
local json = require "sbot.json"
local log = require "sbot.log"
local pretty = require "sbot.pretty"
local schema = require "sbot.schema"
local secret = require "sbot.secret"
local site = require "sbot.site"

local function write_site(dir, text)
  local path = dir .. "/site.lua"
  helpers.write_file(path, text)
  return path
end

local function put_secret(dir, rel, value, mode)
  local path = dir .. "/secrets/" .. rel
  os.execute("mkdir -p " .. helpers.shquote(path:match("^(.*)/")))
  helpers.write_file(path, value .. "\n")
  os.execute("chmod " .. mode .. " " .. helpers.shquote(path))
end

describe("sbot.schema", function()
  local fields = {
    name = { type = "string", required = true },
    count = { type = "integer", default = 2, min = 1 },
    tags = { type = "list", items = { type = "string" } },
    opts = { type = "map", values = { type = "boolean" } },
  }

  it("fills defaults and returns a copy", function()
    local input = { name = "a", tags = {} }
    local out = assert(schema.validate(fields, input, "cfg"))
    assert.are.equal(2, out.count)
    assert.are_not.equal(input, out)
    assert.are.equal("[]", json.encode(out.tags))
  end)

  it("reports every problem with its key path", function()
    local out, err = schema.validate(fields, { count = 0, tags = { "a", 3 }, opts = { x = "yes" } }, "cfg")
    assert.is_nil(out)
    assert.matches("cfg: count: must be at least 1", err, 1, true)
    assert.matches("cfg: name: required string is missing", err, 1, true)
    assert.matches("cfg: tags[2]: expected string, got integer 3", err, 1, true)
    assert.matches('cfg: opts.x: expected boolean, got string "yes"', err, 1, true)
  end)

  it("raises on a bad schema", function()
    assert.has_error(function() schema.check { a = { type = "table", items = {} } } end,
      "schema a: 'items' needs type list")
  end)

  it("describes a schema with defaults and nested fields", function()
    local text = schema.describe { a = { type = "table", description = "outer", fields = {
      b = { type = "integer", default = 7, description = "inner" } } } }
    assert.matches("a%s+table\n%s+outer\n%s+b%s+integer, default 7\n%s+inner", text)
  end)
end)

describe("sbot.secret", function()
  it("hides the value from tostring, concatenation, JSON, pretty and logs", function()
    local s = secret.new("correct-horse-battery")
    assert.are.equal("<redacted>", tostring(s))
    assert.are.equal("pw=<redacted>", "pw=" .. s)
    assert.are.equal('{"pw":"<redacted>"}', json.encode { pw = s })
    assert.are.equal("{\n  pw = \"<redacted>\"\n}", pretty.format { pw = s })
    assert.are.equal("x <redacted> y", log.redact("x correct-horse-battery y"))
    assert.are.equal("correct-horse-battery", s:reveal())
    assert.has_error(function() s.x = 1 end, "sbot.secret: secret objects are read-only")
  end)

  it("derives environment variable names", function()
    assert.are.equal("IDRAC_R630_01_PASSWORD", secret.env_name("idrac/r630-01", "password"))
  end)

  it("tries resolvers in order; a new one can go first (Vault later)", function()
    local tried = {}
    local fake = { name = "vault", resolve = function(path, key)
      tried[#tried + 1] = path .. ":" .. key
      if key == "token" then return "from-vault" end
      return nil, "vault " .. path .. "/" .. key
    end }
    local chain = { fake, secret.env, secret.file }
    local s = assert(secret.resolve("secret:kv/x:token", { resolvers = chain, secrets_dir = "/nonexistent" }))
    assert.are.equal("from-vault", s:reveal())
    local _, err = secret.resolve("secret:kv/x:other", { resolvers = chain, secrets_dir = "/nonexistent" })
    assert.are.equal("secret:kv/x:other not found (tried vault kv/x/other, environment variable KV_X_OTHER, "
      .. "file /nonexistent/kv/x/other)", err)
  end)

  it("rejects malformed references", function()
    local _, err = secret.resolve("secret:../etc:passwd", {})
    assert.matches("malformed secret reference 'secret:../etc:passwd': bad path segment '..'", err, 1, true)
  end)
end)

describe("sbot.site", function()
  it("loads, resolves secrets from env and from 0600 files", function()
    local dir = helpers.tmpdir("site")
    put_secret(dir, "idrac/r1/password", "file-secret-1", "600")
    local path = write_site(dir, [[
      return { servers = { { id = "r1", idrac = { host = "10.0.0.1", password = "secret:idrac/r1:password" } } },
        truenas = { url = "wss://nas.test/api/current", api_key = "secret:truenas:api_key", pool = "tank",
          portal = "10.0.0.50:3260", tls = { ca_file = "/etc/sbot/nas-ca.pem" } } }
    ]])
    local s = assert(site.load(path, { getenv = function(n)
      return n == "TRUENAS_API_KEY" and "env-secret-2" or nil end }))
    assert.are.equal("file-secret-1", s.servers[1].idrac.password:reveal())
    assert.are.equal("env-secret-2", s.truenas.api_key:reveal())
    assert.are.equal("root", s.servers[1].idrac.user)
    assert.are.equal("10.0.0.1", s.servers[1].idrac.host)
    assert.are.equal("root", s.truenas.user)
    assert.are.same({ ca_file = "/etc/sbot/nas-ca.pem" }, s.truenas.tls)
    assert.are.equal(dir .. "/state", s.state_dir)
    assert.is_nil(json.encode(s.servers):find("file-secret-1", 1, true))
  end)

  it("refuses a secret file readable by others, saying so", function()
    local dir = helpers.tmpdir("site")
    put_secret(dir, "idrac/r1/password", "loose", "644")
    local path = write_site(dir, [[
      return { servers = { { id = "r1", idrac = { host = "a", password = "secret:idrac/r1:password" } } } }
    ]])
    local s, err, code = site.load(path)
    assert.is_nil(s)
    assert.are.equal("secret", code)
    assert.matches("site " .. path .. ": servers[1].idrac.password: secret:idrac/r1:password: secret file "
      .. dir .. "/secrets/idrac/r1/password has mode 0644; it must be 0600", err, 1, true)
  end)

  it("names the file and key path of every invalid value", function()
    local dir = helpers.tmpdir("site")
    local path = write_site(dir, [[
      return { servers = { { id = "r1", macs = { "zz" } }, { id = "r1", idrac = { host = 7, password = "p" } } },
        truenas = { url = "ftp://x", api_key = "k" }, colour = "blue" }
    ]])
    local s, err, code = site.load(path)
    assert.is_nil(s)
    assert.are.equal("invalid", code)
    local p = "site " .. path .. ": "
    assert.matches(p .. "colour: unknown key", err, 1, true)
    assert.matches(p .. 'servers[1].macs[1]: "zz" does not match pattern', err, 1, true)
    assert.matches(p .. "servers[2].idrac.host: expected string, got integer 7", err, 1, true)
    assert.matches(p .. "truenas.pool: required string is missing", err, 1, true)
    assert.matches(p .. "truenas.portal: required string is missing", err, 1, true)
  end)

  it("does not print a secret given with the wrong type (an unquoted numeric password)", function()
    local dir = helpers.tmpdir("site")
    local path = write_site(dir, [[
      return { servers = { { id = "r1", idrac = { host = "10.0.0.1", password = 80417723 } } } }
    ]])
    local s, err, code = site.load(path)
    assert.is_nil(s)
    assert.are.equal("invalid", code)
    assert.matches("site " .. path .. ": servers[1].idrac.password: expected a secret", err, 1, true)
    assert.is_nil(err:find("80417723", 1, true), err)
  end)

  it("takes idrac = {host, user, password, tls} and checks hosts, URLs and pins", function()
    local dir = helpers.tmpdir("site")
    local pin = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    local path = write_site(dir, string.format([[
      return { servers = {
          { id = "a", idrac = { host = "127.0.0.1:8443", password = "pw-a", tls = { pin_sha256 = %q } } },
          { id = "b", idrac = { host = "[::1]:443", user = "ops", password = "pw-b",
            tls = { pin_sha256 = "sha256//" .. %q } } },
          { id = "c", idrac = { host = "idrac-c.example.test", password = "pw-c", tls = { insecure = true } } } },
        truenas = { url = "https://nas.test/api/v2.0", api_key = "k-1", pool = "tank", portal = "10.0.0.50" },
        s3 = { endpoint = "https://s3.test", bucket = "b", tls = { ca_file = "/ca.pem" } } }
    ]], pin, pin))
    local s = assert(site.load(path))
    assert.are.equal("127.0.0.1:8443", s.servers[1].idrac.host)
    assert.are.equal(pin, s.servers[1].idrac.tls.pin_sha256)
    assert.are.equal("ops", s.servers[2].idrac.user)
    assert.is_true(s.servers[3].idrac.tls.insecure)
    assert.are.equal("/ca.pem", s.s3.tls.ca_file)
    -- plain-string secrets in the file become secret objects
    assert.is_true(secret.is_secret(s.servers[1].idrac.password))
    assert.is_true(secret.is_secret(s.truenas.api_key))
    assert.are.equal("pw-a", s.servers[1].idrac.password:reveal())
    assert.is_nil(json.encode(s):find("pw-a", 1, true))

    path = write_site(dir, [[
      return { servers = {
          { id = "a", idrac = { host = "https://10.0.0.1", password = "p", tls = { pin_sha256 = "abcd" } } },
          { id = "b", idrac = { host = "10.0.0.2:99999", password = "p", address = "x",
            tls = { pin_sha256 = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", insecure = true } } },
          { id = "c", idrac = { host = "10.0.0.3", password = "p", pin_sha256 = "x" } } },
        truenas = { url = "ftp://x", api_key = "k", pool = "p", portal = "a b" } }
    ]])
    local s2, err, code = site.load(path)
    assert.is_nil(s2)
    assert.are.equal("invalid", code)
    local p = "site " .. path .. ": "
    -- the old flat keys are named as unknown, with the keys that are expected
    assert.matches(p .. "servers[2].idrac.address: unknown key (expected one of: host, password, tls, user)",
      err, 1, true)
    assert.matches(p .. "servers[3].idrac.pin_sha256: unknown key", err, 1, true)
    -- the checks after the schema run only on a schema-valid table
    path = write_site(dir, [[
      return { servers = {
          { id = "a", idrac = { host = "https://10.0.0.1", password = "p", tls = { pin_sha256 = "abcd=" } } },
          { id = "b", idrac = { host = "10.0.0.2:99999", password = "p",
            tls = { pin_sha256 = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", insecure = true } } } },
        truenas = { url = "ftp://x", api_key = "k", pool = "p", portal = "a b",
          tls = { ca_file = "/x" } },
        s3 = { endpoint = "http://s3.test", bucket = "b", tls = { pin_sha256 = "sha256//abc=" } } }
    ]])
    s2, err = site.load(path)
    assert.is_nil(s2)
    assert.matches(p .. 'servers[1].idrac.host: "https://10.0.0.1": expected name-or-ip[:port], not a URL', err, 1, true)
    assert.matches(p .. "servers[1].idrac.tls.pin_sha256: 'abcd=' is not a SHA-256 public-key pin", err, 1, true)
    assert.matches(p .. 'servers[2].idrac.host: "10.0.0.2:99999": port 99999 is out of range', err, 1, true)
    assert.matches(p .. "servers[2].idrac.tls.insecure: insecure = true cannot be combined", err, 1, true)
    assert.matches(p .. 'truenas.url: "ftp://x": expected a ws://, wss://, http:// or https:// URL', err, 1, true)
    assert.matches(p .. 'truenas.portal: "a b": expected name-or-ip[:port]', err, 1, true)
    assert.matches(p .. "s3.tls.pin_sha256: 'sha256//abc=' is not a SHA-256 public-key pin", err, 1, true)
    assert.matches(p .. "s3.tls: TLS settings given for the plain-text URL http://s3.test; use https://", err, 1, true)
  end)

  it("reports duplicate server ids, syntax errors and missing files", function()
    local dir = helpers.tmpdir("site")
    local path = write_site(dir, [[ return { servers = { { id = "a" }, { id = "a" } } } ]])
    local _, err = site.load(path)
    assert.are.equal("site " .. path .. ': servers[2].id: duplicate id "a" (also servers[1])', err)
    path = write_site(dir, "return {")
    _, err = site.load(path)
    assert.matches("^site " .. path:gsub("%p", "%%%0") .. ":1:", err)
    -- a path longer than Lua's chunk-name limit is still named whole
    local long = helpers.tmpdir("site-a-directory-with-a-long-name-to-pass-lua-idsize")
    os.execute("mkdir -p " .. helpers.shquote(long .. "/more"))
    local lpath = write_site(long .. "/more", "return {")
    assert.is_true(#lpath > 60)
    _, err = site.load(lpath)
    assert.matches("^site " .. lpath:gsub("%p", "%%%0") .. ":1:", err)
    local _, err3, code = site.load(dir .. "/missing.lua")
    assert.are.equal("load", code)
    assert.matches("missing.lua", err3, 1, true)
  end)
end)
