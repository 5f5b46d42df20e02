-- sbot.schema, sbot.secret and sbot.site.
local helpers = require "helpers"
local json = require "sbot.json"
local log = require "sbot.log"
local pretty = require "sbot.pretty"
local schema = require "sbot.schema"
local secret = require "sbot.secret"
local site = require "sbot.site"

-- mode: the file's permissions, 600 unless given (a site file that holds
-- secrets in clear must be private)
local function write_site(dir, text, mode)
  local path = dir .. "/site.lua"
  helpers.write_file(path, text)
  os.execute("chmod " .. (mode or "600") .. " " .. helpers.shquote(path))
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

  it("reports a value that contains itself or nests too deeply, at its key path", function()
    local cyc = {}
    cyc.me = { cyc }
    local deep = {}
    for _ = 1, 200 do deep = { deep } end
    local shared = { 1 }
    local out, err = schema.validate({ a = { type = "any" }, b = { type = "map" }, c = { type = "table" } },
      { a = cyc, b = { d = deep }, c = { x = shared, y = shared } }, "cfg")
    assert.is_nil(out)
    assert.are.equal("cfg: a.me[1]: refers to itself (a cycle); a config value must be a tree\n"
      .. "cfg: b.d" .. string.rep("[1]", 64) .. ": nested deeper than 64 levels", err)
    -- the same table twice is not a cycle
    out = assert(schema.validate({ c = { type = "table" } }, { c = { x = shared, y = shared } }))
    assert.are.same({ 1 }, out.c.y)
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
    assert.are.equal('{"pw":"<redacted>"}', json.encode({ pw = s }, { secrets = "redact" }))
    assert.has_error(function() json.encode { pw = s } end) -- not without saying which: docs/json.md
    assert.are.equal("{\n  pw = \"<redacted>\"\n}", pretty.format { pw = s })
    assert.are.equal("x <redacted> y", log.redact("x correct-horse-battery y"))
    assert.are.equal("correct-horse-battery", s:reveal())
    assert.are.equal("literal", s:source())
    assert.has_error(function() s.x = 1 end, "sbot.secret: secret objects are read-only")
    assert.are.equal(s, secret.new(s))
  end)

  it("is one type, owned by the core: a table named sbot.secret is not a secret", function()
    local s = secret.new("typed-secret-Ty12", "env TYPED")
    assert.is_true(secret.is_secret(s))
    assert.are.equal(secret.is_secret, log.is_secret)
    assert.are.equal("env TYPED", s:source())
    local forged = setmetatable({}, { __name = "sbot.secret", __index = { reveal = function() return "x" end } })
    assert.is_false(secret.is_secret(forged))
    assert.are.equal("x-y", secret.reveal("x-y"))
    assert.has_error(function() return "a" .. s .. {} end, "attempt to concatenate a table value with a secret")
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

  it("refuses a secret shorter than 6 bytes wherever it enters, without showing it", function()
    -- from the environment: the reference, where it came from and the rule
    local s, err = secret.resolve("secret:idrac/r630-01:password",
      { getenv = function(n) return n == "IDRAC_R630_01_PASSWORD" and "a" or nil end })
    assert.is_nil(s)
    assert.are.equal("secret:idrac/r630-01:password (env IDRAC_R630_01_PASSWORD) is 1 byte long; sbot refuses "
      .. "secrets shorter than 6 bytes, which cannot be redacted from logs without hiding ordinary words and "
      .. "numbers too: use a longer secret", err)
    -- five bytes is still too short, six is enough (the iDRAC default `calvin`)
    _, err = secret.resolve("secret:x:k", { getenv = function() return "abcde" end })
    assert.matches("^secret:x:k %(env X_K%) is 5 bytes long; sbot refuses secrets shorter than 6 bytes", err)
    assert.are.equal("calvin", assert(secret.resolve("secret:x:k", { getenv = function() return "calvin" end })):reveal())
    -- wrapping directly is misuse
    assert.has_error(function() secret.new("abc", "test") end,
      "sbot.secret.new: the value (test) is 3 bytes long; sbot refuses secrets shorter than 6 bytes, which "
      .. "cannot be redacted from logs without hiding ordinary words and numbers too: use a longer secret")
    -- a short value never reached the redactor: ordinary text stays as it is
    assert.are.equal("a plan for abc", log.redact("a plan for abc"))
  end)

  it("takes an empty environment variable as an error, not as the secret or as absent", function()
    local dir = helpers.tmpdir("site")
    put_secret(dir, "idrac/r1/password", "from-the-file-7", "600")
    local path = write_site(dir, [[
      return { servers = { { id = "r1", idrac = { host = "a", password = "secret:idrac/r1:password" } } } }
    ]])
    local s, err, code = site.load(path, { getenv = function(n) return n == "IDRAC_R1_PASSWORD" and "" or nil end })
    assert.is_nil(s)
    assert.are.equal("secret", code)
    assert.are.equal("site " .. path .. ": servers[1].idrac.password: secret:idrac/r1:password: environment "
      .. "variable IDRAC_R1_PASSWORD is set but empty (unset it to try the next resolver)", err)
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
    assert.is_nil(json.encode(s.servers, { secrets = "redact" }):find("file-secret-1", 1, true))
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
      return { servers = { { id = "r1", macs = { "zz" } }, { id = "r1", idrac = { host = 7, password = "pw-Tt93x" } } },
        truenas = { url = "ftp://x", api_key = "key-Kk28x" }, colour = "blue" }
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

  it("refuses short secrets from the file, from files and from the environment, naming each key path", function()
    local dir = helpers.tmpdir("site")
    put_secret(dir, "truenas/api_key", "k1", "600")
    local path = write_site(dir, [[
      return { servers = { { id = "r1", idrac = { host = "10.0.0.1", password = "pw" } },
                           { id = "r2", idrac = { host = "10.0.0.2", password = "secret:idrac/r2:password" } } },
        truenas = { url = "wss://nas.test/api/current", api_key = "secret:truenas:api_key", pool = "tank",
          portal = "10.0.0.50" } }
    ]])
    local s, err, code = site.load(path, { getenv = function(n) return n == "IDRAC_R2_PASSWORD" and "x" or nil end })
    assert.is_nil(s)
    assert.are.equal("secret", code)
    local p = "site " .. path .. ": "
    assert.matches(p .. "servers[2].idrac.password: secret:idrac/r2:password (env IDRAC_R2_PASSWORD) is 1 byte long; "
      .. "sbot refuses secrets shorter than 6 bytes", err, 1, true)
    assert.matches(p .. "truenas.api_key: secret:truenas:api_key (file " .. dir .. "/secrets/truenas/api_key) is 2 "
      .. "bytes long", err, 1, true)
    -- once the references resolve, a short literal is a schema error at its key path
    put_secret(dir, "truenas/api_key", "long-enough-key-1", "600")
    s, err, code = site.load(path, { getenv = function(n) return n == "IDRAC_R2_PASSWORD" and "long-enough-2" or nil end })
    assert.is_nil(s)
    assert.are.equal("invalid", code)
    assert.are.equal(p .. "servers[1].idrac.password: the secret written here is 2 bytes long; sbot refuses secrets "
      .. "shorter than 6 bytes, which cannot be redacted from logs without hiding ordinary words and numbers too: "
      .. "use a longer secret", err)
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
          { id = "a", idrac = { host = "127.0.0.1:8443", password = "pw-a-Aa11", tls = { pin_sha256 = %q } } },
          { id = "b", idrac = { host = "[::1]:443", user = "ops", password = "pw-b-Bb22",
            tls = { pin_sha256 = "sha256//" .. %q } } },
          { id = "c", idrac = { host = "idrac-c.example.test", password = "pw-c-Cc33", tls = { insecure = true } } } },
        truenas = { url = "https://nas.test/api/v2.0", api_key = "key-1-Dd44", pool = "tank", portal = "10.0.0.50" },
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
    assert.are.equal("pw-a-Aa11", s.servers[1].idrac.password:reveal())
    assert.is_nil(json.encode(s, { secrets = "redact" }):find("pw-a-Aa11", 1, true))

    path = write_site(dir, [[
      return { servers = {
          { id = "a", idrac = { host = "https://10.0.0.1", password = "pw-Tt93x", tls = { pin_sha256 = "abcd" } } },
          { id = "b", idrac = { host = "10.0.0.2:99999", password = "pw-Tt93x", address = "x",
            tls = { pin_sha256 = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", insecure = true } } },
          { id = "c", idrac = { host = "10.0.0.3", password = "pw-Tt93x", pin_sha256 = "x" } } },
        truenas = { url = "ftp://x", api_key = "key-Kk28x", pool = "p", portal = "a b" } }
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
          { id = "a", idrac = { host = "https://10.0.0.1", password = "pw-Tt93x", tls = { pin_sha256 = "abcd=" } } },
          { id = "b", idrac = { host = "10.0.0.2:99999", password = "pw-Tt93x",
            tls = { pin_sha256 = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", insecure = true } } } },
        truenas = { url = "ftp://x", api_key = "key-Kk28x", pool = "p", portal = "a b",
          tls = { ca_file = "/x" } },
        s3 = { endpoint = "http://s3.test", bucket = "b", tls = { pin_sha256 = "sha256//abc=" } } }
    ]])
    s2, err = site.load(path)
    assert.is_nil(s2)
    assert.matches(p .. 'servers[1].idrac.host: "https://10.0.0.1": expected name-or-ip[:port], not a URL', err, 1, true)
    assert.matches(p .. "servers[1].idrac.tls.pin_sha256: 'abcd=' is not a SHA-256 public-key pin", err, 1, true)
    assert.matches(p .. "servers[2].idrac.host: '10.0.0.2:99999' has no port 1..65535 after its ':'", err, 1, true)
    assert.matches(p .. "servers[2].idrac.tls.insecure: insecure = true cannot be combined", err, 1, true)
    assert.matches(p .. 'truenas.url: "ftp://x": expected a ws://, wss://, http:// or https:// URL', err, 1, true)
    assert.matches(p .. "truenas.portal: 'a b' is not a host name or an IP address (IPv6 as [addr]:port)", err, 1, true)
    assert.matches(p .. "s3.tls.pin_sha256: 'sha256//abc=' is not a SHA-256 public-key pin", err, 1, true)
    assert.matches(p .. "s3.tls: TLS settings given for the plain-text URL http://s3.test; use https://", err, 1, true)
  end)

  it("takes an IPv6 portal or BMC in brackets, with or without its port, and nothing else", function()
    local dir = helpers.tmpdir("site")
    local function load(host, portal)
      return site.load(write_site(dir, string.format([[
        return { servers = { { id = "a", idrac = { host = %q, password = "pw-a-Aa11", tls = { insecure = true } } } },
          truenas = { url = "https://nas.test/api/v2.0", api_key = "key-1-Dd44", pool = "tank", portal = %q } }
      ]], host, portal)))
    end
    local s = assert(load("[fd00::7]", "[fd00::5]:3260"))
    assert.are.equal("[fd00::5]:3260", s.truenas.portal)
    assert(load("[fe80::7%eth0]:443", "[::1]"))
    local _, err = load("fd00::7", "fd00::5:3260")
    assert.matches("servers[1].idrac.host: 'fd00::7' holds an IPv6 address without brackets: write [addr]:port", err, 1, true)
    assert.matches("truenas.portal: 'fd00::5:3260' holds an IPv6 address without brackets", err, 1, true)
    _, err = load("[10.0.0.7]:443", "[::1]:0")
    assert.matches("servers[1].idrac.host: '[10.0.0.7]:443' has no IPv6 address in its brackets", err, 1, true)
    assert.matches("truenas.portal: '[::1]:0' has no port 1..65535 after its ':'", err, 1, true)
  end)

  -- One grammar with sbot.iscsi and sbot.redfish (sbot_check_hostport): every
  -- case of the table the C test reads, through the site's idrac.host and
  -- truenas.portal (both take the port as optional).
  it("takes exactly the hosts sbot_check_hostport takes (tests/fixtures/hostport_cases.txt)", function()
    local dir = helpers.tmpdir("site")
    local cases = helpers.hostport_cases()
    local n = 0
    for _, case in ipairs(cases) do
      if case.port == "optional" then
        n = n + 1
        local path = write_site(dir, string.format([[
          return { servers = { { id = "a", idrac = { host = %q, password = "pw-a-Aa11", tls = { insecure = true } } } },
            truenas = { url = "https://nas.test/api/v2.0", api_key = "key-1-Dd44", pool = "tank", portal = %q } }
        ]], case.value, case.value))
        local s, err, code = site.load(path)
        if case.verdict == "accept" then
          assert(s, case.value .. ": " .. tostring(err))
        else
          assert.is_nil(s, case.value)
          assert.are.equal("invalid", code)
          local want = string.format("'%s' %s", case.value, case.reason)
          assert.matches("servers[1].idrac.host: " .. want, err, 1, true)
          assert.matches("truenas.portal: " .. want, err, 1, true)
        end
      end
    end
    assert.is_true(n > 30)
  end)

  it("reports duplicate server ids, syntax errors and missing files", function()
    local dir = helpers.tmpdir("site")
    local path = write_site(dir, [[ return { servers = { { id = "a" }, { id = "a" } } } ]])
    local _, err = site.load(path)
    assert.are.equal("site " .. path .. ': servers[2].id: duplicate id "a" (also servers[1])', err)
    path = write_site(dir, "return {")
    _, err = site.load(path)
    assert.are.equal("site " .. path .. ":1: unexpected symbol (source text not shown: it may hold a secret)", err)
    -- a path longer than Lua's chunk-name limit is still named whole
    local long = helpers.tmpdir("site-a-directory-with-a-long-name-to-pass-lua-idsize")
    os.execute("mkdir -p " .. helpers.shquote(long .. "/more"))
    local lpath = write_site(long .. "/more", "return {")
    assert.is_true(#lpath > 60)
    _, err = site.load(lpath)
    assert.are.equal("site " .. lpath .. ":1: unexpected symbol (source text not shown: it may hold a secret)", err)
    local _, err3, code = site.load(dir .. "/missing.lua")
    assert.are.equal("ENOENT", code)
    assert.are.equal("site " .. dir .. "/missing.lua: cannot open the file: No such file or directory", err3)
    _, err3, code = site.load(dir)
    assert.are.equal("EISDIR", code)
    assert.are.equal("site " .. dir .. ": is a directory, not a site file", err3)
    _, err3, code = site.load(dir .. "/missing.lua/site.lua")
    assert.are.equal("ENOENT", code, err3)
  end)

  it("refuses a site file readable by others when it holds secrets in clear, not when it holds references", function()
    local dir = helpers.tmpdir("site")
    put_secret(dir, "idrac/r2/password", "from-a-file-Mm61", "600")
    local text = [[
      return { servers = { { id = "r1", idrac = { host = "10.0.0.1", password = "clear-pw-Mm60" } },
                           { id = "r2", idrac = { host = "10.0.0.2", password = "secret:idrac/r2:password" } } },
        s3 = { endpoint = "https://s3.test", bucket = "b", access_key = "AKIACLEARTEXT1", secret_key = "secret:s3:key" } }
    ]]
    local getenv = function(n) return n == "S3_KEY" and "from-the-env-Mm62" or nil end
    for _, mode in ipairs { "644", "640", "604" } do
      local path = write_site(dir, text, mode)
      local s, err, code = site.load(path, { getenv = getenv })
      assert.is_nil(s)
      assert.are.equal("secret", code)
      assert.are.equal(string.format("site %s: holds secrets in clear text (s3.access_key, servers[1].idrac.password) "
        .. "but has mode 0%s, readable by others: it must be 0600 (chmod 600 %s), or give the secrets as "
        .. "secret:PATH:KEY references", path, mode, path), err)
      assert.is_nil(err:find("clear-pw-Mm60", 1, true))
    end
    -- private: accepted
    local path = write_site(dir, text, "600")
    assert(site.load(path, { getenv = getenv }))
    -- references only: any mode (the secrets are not in the file)
    path = write_site(dir, [[
      return { servers = { { id = "r2", idrac = { host = "10.0.0.2", password = "secret:idrac/r2:password" } } } }
    ]], "644")
    assert.are.equal("from-a-file-Mm61", assert(site.load(path)).servers[1].idrac.password:reveal())
  end)

  it("never shows the source text of a syntax error (an unterminated password)", function()
    local dir = helpers.tmpdir("site")
    local path = write_site(dir, 'return { servers = { { id = "a", idrac = { host = "h",\n'
      .. '  password = "hunter2-Unterminated, } } } }\n')
    local s, err, code = site.load(path)
    assert.is_nil(s)
    assert.are.equal("invalid", code)
    assert.are.equal("site " .. path .. ":2: unfinished string (source text not shown: it may hold a secret)", err)
    path = write_site(dir, 'return { servers = { { id = "a" password = "hunter2-Unexpected" } } }\n')
    _, err = site.load(path)
    assert.are.equal("site " .. path .. ":1: '}' expected (source text not shown: it may hold a secret)", err)
  end)

  it("answers site FILE: ... for binary, deeply nested, cyclic and raising tables, never a traceback", function()
    local dir = helpers.tmpdir("site")
    local cases = {
      { "\x1bLua\x54\x00\x19\x93\r\n\x1a\n\x04\x08\x08", "invalid",
        "site %s: is a precompiled (binary) Lua chunk; a site file is Lua source text" },
      { "\xbe\xef\x00\x01binary", "invalid", "site %s:1: unexpected symbol (source text not shown: it may hold a secret)" },
      { "local t = {} t.x = t\nreturn { components = { a = t } }", "invalid",
        "site %s: components.a.x: refers to itself (a cycle); a config value must be a tree" },
      { "local t = {} for i = 1, 100000 do t = { t } end\nreturn { components = { a = t } }", "secret",
        "site %s: components.a" .. string.rep("[1]", 63) .. ": nested deeper than 64 levels" },
      { "return setmetatable({}, { __pairs = function() error('no pairs here', 0) end })", "invalid",
        "site %s: no pairs here" },
    }
    for _, c in ipairs(cases) do
      local path = write_site(dir, c[1])
      local s, err, code = site.load(path)
      assert.is_nil(s)
      assert.are.equal(c[2], code, err)
      assert.are.equal(string.format(c[3], path), err)
    end
    -- the same from a workflow run: the message and exit status 2, no traceback
    local path = write_site(dir, cases[3][1])
    local r = helpers.sbot({ "run", helpers.source_dir .. "/tests/support/workflows/kv.lua", "--site", path })
    assert.are.equal(2, r.code)
    assert.are.equal("sbot: " .. string.format(cases[3][3], path) .. "\n", r.stderr)
  end)

  it("checks server ids at load: letters, digits, . _ -, at most 63 characters", function()
    local dir = helpers.tmpdir("site")
    local function with_id(id)
      return write_site(dir, string.format("return { servers = { { id = %q } } }", id))
    end
    local id63 = "r" .. string.rep("x", 62)
    assert.are.equal(id63, assert(site.load(with_id(id63))).servers[1].id)
    local path = with_id(string.rep("a", 300))
    local s, err, code = site.load(path)
    assert.is_nil(s)
    assert.are.equal("invalid", code)
    assert.are.equal("site " .. path .. ": servers[1].id: length must be at most 63", err)
    for _, bad in ipairs { "a/b", "../x", ".hidden", "-x", "a b", "" } do
      path = with_id(bad)
      _, err = site.load(path)
      assert.are.equal(string.format("site %s: servers[1].id: %q does not match pattern ^[%%w][%%w_.%%-]*$", path, bad),
        err)
    end
  end)
end)
