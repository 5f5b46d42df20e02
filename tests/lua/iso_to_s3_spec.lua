-- workflows/iso_to_s3.lua against the lab's S3 device: --plan shows what would
-- be uploaded and changed, a run publishes and prints the public URL (read back
-- unsigned, as the iDRACs will), a second run changes nothing; peak RSS of a
-- 96 MiB publish (bench/s3_publish measures 1 GiB against awscli).
local helpers = require "helpers"
local servers = require "s3servers"
local http = require "sbot.http"
local json = require "sbot.json"
local s3 = require "sbot.s3"

local MiB = 1024 * 1024

describe("workflows/iso_to_s3.lua", function()
  local srv, tmp, c

  setup(function()
    srv = servers.start_lab()
    tmp = helpers.tmpdir("iso2s3")
    c = assert(s3.client { endpoint = srv.endpoint, access_key = srv.access_key, secret_key = srv.secret_key,
      region = srv.region, tls = srv.tls })
  end)
  teardown(function()
    servers.stop(srv)
    if tmp then os.execute("rm -rf " .. helpers.shquote(tmp)) end
  end)

  local function run(args, prefix)
    local all = { "run", helpers.source_dir .. "/workflows/iso_to_s3.lua", "--site", srv.site_path }
    for _, a in ipairs(args) do all[#all + 1] = a end
    return helpers.sbot(all, { cwd = tmp, env = prefix })
  end

  it("plans, publishes and prints the public URL; a second run changes nothing", function()
    local iso = tmp .. "/agent-4.16.iso"
    assert(helpers.sh("head -c " .. (96 * MiB) .. " /dev/urandom > " .. iso))
    local want = servers.sha256sum(iso)
    local p = run { iso, "--plan" }
    assert.are.equal(0, p.code, p.stderr)
    assert.matches("%+ create s3://sbot/isos/agent%-4%.16%.iso: %(none%) %-> {[^\n]*\"sha256\":\"" .. want .. "\"", p.stdout)
    assert.matches("%+ create s3://sbot%-public/isos/agent%-4%.16%.iso", p.stdout)
    assert.matches("s3://sbot%-public%?policy", p.stdout)
    -- the readers' address: the lab's S3 answers plain HTTP there (s3.public_endpoint)
    assert.matches("^http://", srv.public_endpoint)
    assert.matches("public URL %(after an apply run%): " .. srv.public_endpoint:gsub("%p", "%%%0") ..
      "/sbot%-public/isos/agent%-4%.16%.iso", p.stdout)
    assert.are.equal("NoSuchKey", select(3, c:head_object { bucket = srv.bucket, key = "isos/agent-4.16.iso" }))

    -- the run, with its peak RSS (the run and its workers)
    local r = run({ iso }, "/usr/bin/time -f 'peak-rss %M' -o " .. helpers.shquote(tmp .. "/rss"))
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    local url = r.stdout:match("public URL: (%S+)")
    assert.are.equal(srv.public_endpoint .. "/sbot-public/isos/agent-4.16.iso", url)
    local rss = tonumber(helpers.read_file(tmp .. "/rss"):match("peak%-rss (%d+)"))
    io.stderr:write(string.format("[iso_to_s3: publishing 96 MiB peaked at %.1f MiB RSS]\n", rss / 1024))
    if not (os.getenv("ASAN_OPTIONS") or helpers.sbot_bin:find("asan")) then
      assert.is_true(rss < 32 * 1024, "peak RSS " .. rss .. " KiB publishing 96 MiB")
    end
    -- anyone can fetch it from that URL: unsigned, the bytes of the file
    local out = tmp .. "/fetched.iso"
    local g = assert(http.get(url, { output_file = out }))
    assert.are.equal(200, g.status)
    assert.are.equal(want, servers.sha256sum(out))
    local index = json.decode(assert(c:get_object { bucket = srv.bucket, key = "metadata/index.json" }).body)
    assert.are.equal(want, index.objects["isos/agent-4.16.iso"].sha256)
    assert.are.equal(url, index.objects["isos/agent-4.16.iso"].public.url)

    local again = run { iso, "--plan" }
    assert.are.equal(0, again.code, again.stderr)
    assert.matches("%(site%) / s3: no changes", again.stdout)
    assert.matches("public URL: ", again.stdout)
    -- --json prints only the run record, the URL inside it
    local j = run { iso, "--plan", "--json" }
    local rec = assert(json.decode(j.stdout), j.stdout)
    assert.are.equal(url, rec.results[1].discovery.artifacts[1].public_url)
  end)

  it("refuses a key outside the published prefixes, and a missing file, clearly", function()
    local f = tmp .. "/small"
    helpers.write_file(f, "x")
    local r = run { f, "--key", "private/small" }
    assert.are.equal(1, r.code)
    assert.matches("publish = true, but the key is under none of the published prefixes", r.stdout)
    r = run { tmp .. "/nope.iso", "--plan" }
    assert.are.equal(1, r.code)
    assert.matches("artifact isos/nope%.iso: s3 hash_file: .*nope%.iso", r.stdout)
    r = run { f, "--server", "idrac-1" }
    assert.are.equal(2, r.code)
    assert.matches("site%-wide workflow: it takes no %-%-server", r.stderr)
  end)
end)
