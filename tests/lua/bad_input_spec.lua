-- Bad input is refused before anything happens (no run record, no lock, no
-- component call), with a message that names what is wrong; and an s3://
-- store gets the site's endpoint, never another host with the site's keys.
local helpers = require "helpers"
local json = require "sbot.json"
local fsio = require "sbot.fsio"

local WF = helpers.source_dir .. "/tests/support/workflows/kv.lua"

local function make_site(site_extra)
  local dir = helpers.tmpdir("badin")
  helpers.write_private(dir .. "/site.lua", string.format([[
    return { servers = { { id = "s1" } }, %s
      components = { test_kv = { state_file = %q, calls_file = %q, want = { a = "1" } } } }]],
    site_extra or "", dir .. "/s1.json", dir .. "/s1.calls"))
  return dir
end

local function run(dir, args)
  local argv = { "run", WF, "--site", dir .. "/site.lua", "--runs-dir", dir .. "/runs",
    "--state-dir", dir .. "/state" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return helpers.sbot(argv, { cwd = dir })
end

-- refused with exit 2 and this message on stderr, before anything started
local function refused(dir, args, message)
  local r = run(dir, args)
  assert.are.equal(2, r.code, table.concat(args, " ") .. ": " .. r.stdout .. r.stderr)
  assert.matches(message, r.stderr, 1, true)
  assert.is_nil(fsio.stat(dir .. "/runs"), "a run record was started")
  assert.is_nil(fsio.stat(dir .. "/state"), "a lock directory was made")
  assert.is_nil(fsio.stat(dir .. "/s1.calls"), "a component ran")
  return r
end

describe("bad input, refused early", function()
  it("--jobs out of range, negative or not an integer", function()
    local dir = make_site()
    refused(dir, { "--jobs", "100000" }, "--jobs must be an integer from 1 to 256 (workers at once), got '100000'")
    refused(dir, { "--jobs", "-5" }, "--jobs must be an integer from 1 to 256 (workers at once), got '-5'")
    refused(dir, { "--jobs", "0" }, "got '0'")
    refused(dir, { "--jobs", "2.5" }, "got '2.5'")
    refused(dir, { "--jobs", "many" }, "got 'many'")
    assert.are.equal(0, run(dir, { "--jobs", "256" }).code)
  end)

  it("--timeout and --grace: NaN, infinite, negative", function()
    local dir = make_site()
    for _, opt in ipairs { "--timeout", "--grace" } do
      for _, v in ipairs { "nan", "-nan", "inf", "1e999", "-1", "-0.5", "soon" } do
        refused(dir, { opt, v }, opt .. " must be a number of seconds >= 0, got '" .. v .. "'")
      end
    end
  end)

  it("--store with an unsupported or malformed URL, and a bad store in the site", function()
    local dir = make_site()
    refused(dir, { "--store", "ftp://x" }, "--store: unsupported URL 'ftp://x' (use s3://bucket/prefix or file:///dir)")
    refused(dir, { "--store", "/tmp/store" }, "--store: unsupported URL '/tmp/store'")
    refused(dir, { "--store", "file://relative/dir" }, "--store: 'file://relative/dir' must be file:///absolute/path")
    refused(dir, { "--store", "file:///a/../b" }, "must not contain '..'")
    refused(dir, { "--store", "s3://" }, "--store: 's3://' must be s3://bucket/prefix")
    refused(dir, { "--store", "s3://b/p?endpoint=http://x&colour=red" },
      "--store: unknown parameter 'colour' in s3://b/p?endpoint=http://x&colour=red (known: endpoint, region, path_style)")
    refused(dir, { "--store", "s3://b/p?endpoint=ftp://x" }, "--store: endpoint 'ftp://x' in s3://b/p?endpoint=ftp://x "
      .. "must be an http:// or https:// URL")
    local dir2 = make_site('store = "gopher://x/y",')
    refused(dir2, {}, "site " .. dir2 .. "/site.lua: store: unsupported URL 'gopher://x/y'")
  end)

  it("an s3:// store naming another endpoint than the site's is refused when the site's keys would sign", function()
    local dir = make_site([[s3 = { endpoint = "http://127.0.0.1:9", bucket = "b", access_key = "AKIDEXAMPLE1",
      secret_key = "site-secret-Zt81" },]])
    local r = refused(dir, { "--store", "s3://b/runs?endpoint=http://127.0.0.2:9" },
      "sbot: --store s3://b/runs?endpoint=http://127.0.0.2:9: endpoint http://127.0.0.2:9 is not the site's "
      .. "s3.endpoint http://127.0.0.1:9; the site's S3 credentials are sent only to the endpoint the site names")
    assert.is_nil(r.stderr:find("site-secret-Zt81", 1, true))
    -- the same endpoint spelt differently is the site's
    local ok = run(dir, { "--store", "s3://b/runs?endpoint=HTTP://127.0.0.1:9/", "--phases", "discover" })
    assert.is_nil(ok.stderr:find("is not the site's", 1, true), ok.stderr)
  end)

  it("sbot --log-level with an unknown level or none", function()
    local r = helpers.sbot { "--log-level", "bogus", "run", WF }
    assert.are.equal(2, r.code)
    assert.matches("^sbot: %-%-log%-level: unknown level 'bogus' %(expected debug, info, warn, error or off%)\n", r.stderr)
    r = helpers.sbot { "--log-level" }
    assert.are.equal(2, r.code)
    assert.matches("^sbot: %-%-log%-level needs a LEVEL", r.stderr)
  end)
end)

describe("--store s3:// without ?endpoint=", function()
  local servers = require "s3servers"
  local s3 = require "sbot.s3"
  local srv

  setup(function() srv = servers.start_lab() end)
  teardown(function() servers.stop(srv) end)

  it("uses the site's s3.endpoint (the lab's S3), signed with the site's keys", function()
    local dir = helpers.tmpdir("s3ep")
    helpers.write_private(dir .. "/site.lua", string.format([[
      local lab = dofile(%q)
      -- the lab's S3 keys are secret: references to the lab's Vault
      return { servers = { { id = "s1" } }, s3 = lab.s3, vault = lab.vault,
        components = { test_kv = { state_file = %q, want = { a = "1" } } } }]],
      srv.site_path, dir .. "/s1.json"))
    -- no AWS_* variables: the keys can only come from the site
    local r = helpers.sbot({ "run", WF, "--site", dir .. "/site.lua", "--runs-dir", dir .. "/runs",
      "--store", "s3://" .. srv.bucket .. "/runs", "--json" },
      { cwd = dir, env = "AWS_ACCESS_KEY_ID= AWS_SECRET_ACCESS_KEY= AWS_ENDPOINT_URL=" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    local rec = assert(json.decode(r.stdout))
    local key = "runs/" .. rec.run_id .. "/s1/test_kv/state.json"
    assert.are.equal("s3://" .. srv.bucket .. "/" .. key, rec.results[1].artifacts[1].stored)
    local c = assert(s3.client { endpoint = srv.endpoint, access_key = srv.access_key,
      secret_key = srv.secret_key, region = srv.region, tls = srv.tls })
    local head = assert(c:head_object { bucket = srv.bucket, key = key })
    assert.are.equal(rec.results[1].artifacts[1].size, head.size)
  end)
end)
