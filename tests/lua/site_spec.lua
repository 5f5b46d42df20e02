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
      return { servers = { { id = "r1", idrac = { address = "10.0.0.1", password = "secret:idrac/r1:password" } } },
        truenas = { url = "https://nas.test", api_key = "secret:truenas:api_key", pool = "tank" } }
    ]])
    local s = assert(site.load(path, { getenv = function(n)
      return n == "TRUENAS_API_KEY" and "env-secret-2" or nil end }))
    assert.are.equal("file-secret-1", s.servers[1].idrac.password:reveal())
    assert.are.equal("env-secret-2", s.truenas.api_key:reveal())
    assert.are.equal("root", s.servers[1].idrac.username)
    assert.are.equal(dir .. "/state", s.state_dir)
    assert.is_nil(json.encode(s.servers):find("file-secret-1", 1, true))
  end)

  it("refuses a secret file readable by others, saying so", function()
    local dir = helpers.tmpdir("site")
    put_secret(dir, "idrac/r1/password", "loose", "644")
    local path = write_site(dir, [[
      return { servers = { { id = "r1", idrac = { address = "a", password = "secret:idrac/r1:password" } } } }
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
      return { servers = { { id = "r1", macs = { "zz" } }, { id = "r1", idrac = { address = 7, password = "p" } } },
        truenas = { url = "ftp://x", api_key = "k" }, colour = "blue" }
    ]])
    local s, err, code = site.load(path)
    assert.is_nil(s)
    assert.are.equal("invalid", code)
    local p = "site " .. path .. ": "
    assert.matches(p .. "colour: unknown key", err, 1, true)
    assert.matches(p .. 'servers[1].macs[1]: "zz" does not match pattern', err, 1, true)
    assert.matches(p .. "servers[2].idrac.address: expected string, got integer 7", err, 1, true)
    assert.matches(p .. "truenas.pool: required string is missing", err, 1, true)
    assert.matches(p .. 'truenas.url: "ftp://x" does not match pattern', err, 1, true)
  end)

  it("reports duplicate server ids, syntax errors and missing files", function()
    local dir = helpers.tmpdir("site")
    local path = write_site(dir, [[ return { servers = { { id = "a" }, { id = "a" } } } ]])
    local _, err = site.load(path)
    assert.are.equal("site " .. path .. ': servers[2].id: duplicate id "a" (also servers[1])', err)
    path = write_site(dir, "return {")
    _, err = site.load(path)
    assert.matches("^site " .. path:gsub("%p", "%%%0") .. ":1:", err)
    local _, err3, code = site.load(dir .. "/missing.lua")
    assert.are.equal("load", code)
    assert.matches("missing.lua", err3, 1, true)
  end)
end)
