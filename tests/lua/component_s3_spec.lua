-- The S3 component (components/s3.c) against the lab's S3 device, checked
-- with awscli as an independent client (signed and --no-sign-request), and
-- against s3rver, which lacks what the component needs.
local helpers = require "helpers"
local servers = require "s3servers"
local s3 = require "sbot.s3"
local json = require "sbot.json"
local sys = require "sbot.sys"
local keeper = require "sbot.keeper"
local site_mod = require "sbot.site"

local MiB = 1024 * 1024

describe("the S3 component against the lab's S3", function()
  local srv, site, c, tmp
  local S3

  local function aws(args, sign)
    local ok, _, out = helpers.sh(string.format("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=%s " ..
      "AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null " ..
      "/usr/bin/aws --endpoint-url %s --ca-bundle %s %s %s 2>&1", helpers.shquote(srv.access_key),
      helpers.shquote(srv.secret_key), srv.region, srv.endpoint, helpers.shquote(srv.info.cert_file),
      sign == false and "--no-sign-request" or "", args))
    return ok, out
  end

  local function run(config, mode)
    local comp = assert(S3.new(config, { id = "(site)", site = site }))
    return comp:execute { mode = mode or "apply" }
  end

  local function kinds(plan)
    local out = {}
    for _, ch in ipairs(plan) do out[#out + 1] = ch.kind .. ":" .. ch.action end
    return table.concat(out, " ")
  end

  setup(function()
    srv = servers.start_lab()
    site = assert(site_mod.load(srv.site_path))
    c = assert(s3.client { endpoint = srv.endpoint, access_key = srv.access_key, secret_key = srv.secret_key,
      region = srv.region, tls = srv.tls })
    tmp = helpers.tmpdir("comps3")
    S3 = require "sbot.component.s3"
  end)

  teardown(function()
    servers.stop(srv)
    if tmp then os.execute("rm -rf " .. helpers.shquote(tmp)) end
  end)

  it("makes both buckets, versioning, the public-read policy and lifecycle rules; uploads, publishes, indexes; a second run changes nothing", function()
    -- the public bucket exists already, with a statement of someone else's
    -- (kept), an anonymous read of everything (removed) and a foreign rule (kept)
    assert(c:create_bucket("cs-pub"))
    assert(c:put_bucket_policy { bucket = "cs-pub", policy = { Version = "2012-10-17", Statement = {
      { Sid = "KeepMe", Effect = "Deny", Principal = "*", Action = "s3:PutObject", Resource = "arn:aws:s3:::cs-pub/locked/*" },
      { Sid = "OpenAll", Effect = "Allow", Principal = "*", Action = "s3:GetObject", Resource = "arn:aws:s3:::cs-pub/*" } } } })
    assert(c:put_bucket_lifecycle { bucket = "cs-pub", rules = { { id = "theirs", prefix = "logs/", expiration_days = 90 } } })
    local iso = tmp .. "/agent.iso"
    assert(helpers.sh("head -c " .. (11 * MiB + 5) .. " /dev/urandom > " .. iso))
    helpers.write_file(tmp .. "/c.json", '{"config": 1}')
    local cfg = { bucket = "cs-priv", public_bucket = "cs-pub", prefix = "site-a",
      part_size = 5 * MiB, multipart_threshold = 5 * MiB,
      artifacts = { { key = "isos/agent.iso", file = iso }, { key = "configs/c.json", file = tmp .. "/c.json",
        content_type = "application/json" } } }
    local r = run(cfg)
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal("bucket:create versioning:create lifecycle:create policy:update lifecycle:update " ..
      "upload:create publish:create upload:create index:create", kinds(r.plan))
    assert.matches("removes anonymous access outside them %(OpenAll%)", r.plan[4].reason)

    -- awscli sees what was made
    local ok, out = aws("s3api get-bucket-versioning --bucket cs-priv")
    assert(ok, out)
    assert.are.equal("Enabled", json.decode(out).Status)
    ok, out = aws("s3api get-bucket-policy --bucket cs-pub")
    assert(ok, out)
    local policy = json.decode(json.decode(out).Policy)
    local sids = {}
    for _, st in ipairs(policy.Statement) do sids[st.Sid] = st end
    assert.is_table(sids.KeepMe)
    assert.is_nil(sids.OpenAll)
    assert.are.same({ "arn:aws:s3:::cs-pub/site-a/isos/*" }, sids.SbotPublicRead.Resource)
    assert.are.same({ "*" }, sids.SbotPublicRead.Principal.AWS)
    ok, out = aws("s3api get-bucket-lifecycle-configuration --bucket cs-priv")
    assert(ok, out)
    local rule = json.decode(out).Rules[1]
    assert.are.equal("sbot", rule.ID)
    assert.are.equal(30, rule.NoncurrentVersionExpiration.NoncurrentDays)
    assert.are.equal(2, rule.AbortIncompleteMultipartUpload.DaysAfterInitiation)
    ok, out = aws("s3api get-bucket-lifecycle-configuration --bucket cs-pub")
    assert(ok, out)
    local ids = {}
    for _, rl in ipairs(json.decode(out).Rules) do ids[#ids + 1] = rl.ID end
    assert.are.same({ "theirs", "sbot" }, ids)
    ok, out = aws("s3api head-object --bucket cs-priv --key site-a/isos/agent.iso")
    assert(ok, out)
    assert.are.equal(servers.sha256sum(iso), json.decode(out).Metadata["sbot-sha256"])
    -- anonymous (unsigned) reads: published yes, private and outside the prefixes no
    ok, out = aws("s3api get-object --bucket cs-pub --key site-a/isos/agent.iso " .. tmp .. "/anon.iso", false)
    assert(ok, out)
    assert.are.equal(servers.sha256sum(iso), servers.sha256sum(tmp .. "/anon.iso"))
    ok, out = aws("s3api get-object --bucket cs-priv --key site-a/isos/agent.iso " .. tmp .. "/no", false)
    assert.is_false(ok)
    assert.matches("AccessDenied", out)
    ok, out = aws("s3api get-object --bucket cs-pub --key site-a/configs/c.json " .. tmp .. "/no", false)
    assert.is_false(ok)
    assert.matches("AccessDenied", out)
    -- what housekeeping checked, for real
    local hk = r.housekeeping
    assert.are.same({ "s3://cs-priv/site-a/isos/agent.iso", "s3://cs-pub/site-a/isos/agent.iso",
      "s3://cs-priv/site-a/configs/c.json" }, hk.verified)
    local statuses = {}
    for _, a in ipairs(hk.anonymous) do statuses[#statuses + 1] = a.expect .. ":" .. math.tointeger(a.status) end
    assert.are.same({ "refused:403", "allowed:206", "refused:403", "refused:403" }, statuses)
    -- the index, read by awscli, lists both objects as stored
    ok, out = aws("s3 cp s3://cs-priv/site-a/metadata/index.json " .. tmp .. "/index.json")
    assert(ok, out)
    local index = json.decode(helpers.read_file(tmp .. "/index.json"))
    local head = assert(c:head_object { bucket = "cs-priv", key = "site-a/isos/agent.iso" })
    assert.are.equal(head.etag, index.objects["isos/agent.iso"].etag)
    assert.are.equal(head.version_id, index.objects["isos/agent.iso"].version_id)
    -- the URL readers (the BMCs) get: the site's s3.public_endpoint (plain HTTP in the lab)
    assert.are.equal(srv.public_endpoint .. "/cs-pub/site-a/isos/agent.iso", index.objects["isos/agent.iso"].public.url)
    assert.is_table(index.objects["configs/c.json"])
    assert.is_nil(index.objects["configs/c.json"].public)

    -- converged: the second run plans nothing and writes nothing
    local writes = srv.state().writes
    local again = run(cfg)
    assert.are.equal("ok", again.status, again.error)
    assert.are.equal(0, #again.plan)
    assert.are.equal(writes, srv.state().writes)
    assert.are.same({}, again.housekeeping.uploads_aborted)

    -- a changed file: a new version (the old one kept), published again, index updated
    assert(helpers.sh("head -c " .. (6 * MiB) .. " /dev/urandom > " .. iso))
    local r3 = run(cfg)
    assert.are.equal("ok", r3.status, r3.error)
    assert.are.equal("upload:update publish:update index:update", kinds(r3.plan))
    local versions = 0
    for v in c:list_object_versions { bucket = "cs-priv", prefix = "site-a/isos/" } do
      if v.key == "site-a/isos/agent.iso" then versions = versions + 1 end
    end
    assert.are.equal(2, versions)
    ok, out = aws("s3api get-object --bucket cs-pub --key site-a/isos/agent.iso " .. tmp .. "/anon2.iso", false)
    assert(ok, out)
    assert.are.equal(servers.sha256sum(iso), servers.sha256sum(tmp .. "/anon2.iso"))
  end)

  it("undoes what it did when a later change fails", function()
    local iso = tmp .. "/fail.iso"
    assert(helpers.sh("head -c " .. (11 * MiB) .. " /dev/urandom > " .. iso))
    srv.faults("s3:failpart=2")
    local r = run { bucket = "cs2-priv", public_bucket = "cs2-pub", part_size = 5 * MiB, multipart_threshold = 5 * MiB,
      artifacts = { { key = "isos/x.iso", file = iso } } }
    srv.faults("")
    assert.are.equal("failed", r.status)
    assert.matches("change 7 of 9 %(create s3://cs2%-priv/isos/x.iso%) failed: uploading isos/x.iso: InternalError", r.error)
    local undone = {}
    for _, u in ipairs(r.processing.undone) do undone[#undone + 1] = u.resource .. "=" .. tostring(u.ok) end
    assert.are.same({ "s3://cs2-pub?lifecycle=true", "s3://cs2-pub?policy=true", "s3://cs2-pub=true",
      "s3://cs2-priv?lifecycle=true", "s3://cs2-priv?versioning=false", "s3://cs2-priv=true" }, undone)
    assert.matches("cannot be turned off again", r.processing.undone[5].error)
    assert.are.equal("NoSuchBucket", select(3, c:head_bucket("cs2-priv")))
    assert.are.equal("NoSuchBucket", select(3, c:head_bucket("cs2-pub")))
    -- and no multipart upload was left behind (the client aborted it)
    assert.are.equal(0, srv.state().uploads)
  end)

  it("aborts sbot's own multipart upload left by a SIGKILLed run, and leaves others' alone", function()
    local iso = tmp .. "/big.iso"
    assert(helpers.sh("head -c " .. (60 * MiB) .. " /dev/urandom > " .. iso))
    assert(c:create_bucket("cs3-priv"))
    local script = tmp .. "/upload.lua"
    helpers.write_file(script, string.format([[
      local site = assert(require("sbot.site").load(%q))
      local S3 = require "sbot.component.s3"
      local comp = assert(S3.new({ bucket = "cs3-priv", public_bucket = "cs3-pub", part_size = 5 * 1048576,
        multipart_threshold = 5 * 1048576, concurrency = 1,
        artifacts = { { key = "isos/big.iso", file = %q } } }, { id = "(site)", site = site }))
      comp:execute { mode = "apply" }]], srv.site_path, iso))
    srv.faults("s3:latency=150-150") -- slow parts: the run is killed mid-upload
    local p = helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(script))
    local marker
    for _ = 1, 400 do
      local list = c:list_objects_all { bucket = "cs3-priv", prefix = ".sbot/uploads/" }
      if list and list[1] then marker = list[1].key; break end
      keeper.sleep(0.05)
    end
    assert(marker, "no upload marker appeared: " .. p:output())
    keeper.sleep(0.3)
    p:stop("KILL")
    srv.faults("")
    local uploads = assert(c:list_multipart_uploads { bucket = "cs3-priv" })
    assert.are.equal(1, #uploads)
    local killed = uploads[1].upload_id
    assert.are.equal(".sbot/uploads/" .. killed .. ".lease", marker)
    -- someone else's upload, started with awscli: not sbot's, left alone
    local ok, out = aws("s3api create-multipart-upload --bucket cs3-priv --key isos/someone-elses")
    assert(ok, out)
    local foreign = json.decode(out).UploadId
    local r = run { bucket = "cs3-priv", public_bucket = "cs3-pub", part_size = 5 * MiB, multipart_threshold = 5 * MiB,
      artifacts = { { key = "isos/big.iso", file = iso } } }
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal(1, #r.housekeeping.uploads_aborted)
    assert.are.equal(killed, r.housekeeping.uploads_aborted[1].upload_id)
    assert.matches("is gone", r.housekeeping.uploads_aborted[1].why)
    assert.are.equal(foreign, r.housekeeping.uploads_left[1].upload_id)
    assert.are.equal("not sbot's: no marker", r.housekeeping.uploads_left[1].why)
    ok, out = aws("s3api list-multipart-uploads --bucket cs3-priv")
    assert(ok, out)
    local left = json.decode(out).Uploads
    assert.are.equal(1, #left)
    assert.are.equal(foreign, left[1].UploadId)
    assert.are.same({}, assert(c:list_objects_all { bucket = "cs3-priv", prefix = ".sbot/uploads/" }))
    assert.is_false(sys.pid_alive(p.pid))
  end)

  it("finds an index entry whose object is gone (housekeep fails), and the next run drops it", function()
    helpers.write_file(tmp .. "/a.txt", "small artifact")
    local cfg = { bucket = "cs4-priv", public_bucket = "cs4-pub", artifacts = { { key = "configs/a.txt", file = tmp .. "/a.txt" } } }
    assert.are.equal("ok", run(cfg).status)
    assert(c:update_json { bucket = "cs4-priv", key = "metadata/index.json", update = function(doc)
      doc.objects["old/gone.iso"] = { key = "old/gone.iso", bucket = "cs4-priv", object = "old/gone.iso", etag = "0f" }
      return doc
    end })
    local comp = assert(S3.new(cfg, { id = "(site)", site = site }))
    local hk = comp:execute { phases = { "housekeep" } }
    assert.are.equal("failed", hk.status)
    assert.matches("the index lists s3://cs4%-priv/old/gone%.iso, which does not exist", hk.error)
    local r = run(cfg)
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal("index:update", kinds(r.plan))
    assert.are.same({ "old/gone.iso" }, r.plan[1].after.drop)
    local index = json.decode(assert(c:get_object { bucket = "cs4-priv", key = "metadata/index.json" }).body)
    assert.is_nil(index.objects["old/gone.iso"])
    assert.is_table(index.objects["configs/a.txt"])
  end)

  it("publishes an object the store already holds by server-side copy (never a second upload), under its "
    .. "SHA-256 ({sha256} in the key), planned before it exists; presigns the private one for readers", function()
    local store = require "sbot.store"
    local http = require "sbot.http"
    local st = assert(store.open("s3://cs5-priv/site-c?endpoint=" .. srv.endpoint,
      { access_key = srv.access_key, secret_key = srv.secret_key, tls = srv.tls }))
    local iso = tmp .. "/stored.iso"
    assert(helpers.sh("head -c 70000 /dev/urandom > " .. iso))
    local want = servers.sha256sum(iso)
    local warning = "it holds a pull secret"
    local cfg = { bucket = "cs5-priv", public_bucket = "cs5-pub", prefix = "site-c",
      artifacts = { { key = "isos/cl/{sha256}/agent.iso", source = "store/cl/agent.iso", warning = warning },
                    { key = "store/cl/agent.iso", source = "store/cl/agent.iso", publish = false, presign = 900 } } }
    -- --plan while the source is not stored yet (an earlier step stores it): the publish is planned,
    -- its key still the template; nothing to upload
    local p = run(cfg, "plan")
    assert.are.equal("ok", p.status, p.error)
    assert.are.equal("bucket:create versioning:create lifecycle:create bucket:create policy:create lifecycle:create "
      .. "publish:create index:create", kinds(p.plan))
    local pub = p.plan[7]
    assert.are.equal("s3://cs5-pub/site-c/isos/cl/{sha256}/agent.iso", pub.resource)
    assert.matches("once it is stored", pub.reason, 1, true)
    assert.matches("WARNING: " .. warning, pub.reason, 1, true)
    assert.is_true(p.discovery.artifacts[1].pending)
    -- the buckets, then the store puts the source (sbot-sha256 in its metadata)
    assert.are.equal("ok", run { bucket = "cs5-priv", public_bucket = "cs5-pub", prefix = "site-c" }.status)
    assert(st:put("store/cl/agent.iso", { file = iso }))
    local writes = srv.state().writes
    local r = run(cfg)
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal("publish:create index:create", kinds(r.plan))
    assert.are.equal("s3://cs5-pub/site-c/isos/cl/" .. want .. "/agent.iso", r.plan[1].resource)
    assert.are.equal(2, srv.state().writes - writes, "one copy and the index: no upload")
    local a = r.discovery.artifacts[1]
    assert.are.equal(srv.public_endpoint .. "/cs5-pub/site-c/isos/cl/" .. want .. "/agent.iso", a.public_url)
    assert.are.equal(a.public_url, a.url)
    -- anonymous readers at the public endpoint (plain HTTP): the copy, with Range; not the source
    local g = assert(http.get(a.url, { headers = { Range = "bytes=0-9" } }))
    assert.are.equal(206, g.status)
    local src = assert(http.get(srv.public_endpoint .. "/cs5-priv/site-c/store/cl/agent.iso"))
    assert.are.equal(403, src.status)
    -- the presigned URL of the private object works there, unsigned otherwise
    local b = r.discovery.artifacts[2]
    assert.is_nil(b.public_url)
    assert.matches("^" .. srv.public_endpoint:gsub("%p", "%%%0") .. "/cs5%-priv/site%-c/store/cl/agent%.iso%?.*X%-Amz%-Expires=900", b.url)
    local pg = assert(http.get(b.url, { headers = { Range = "bytes=0-9" } }))
    assert.are.equal(206, pg.status)
    -- housekeeping checked the copy against the source
    assert.are.same({ "s3://cs5-priv/site-c/store/cl/agent.iso", "s3://cs5-pub/site-c/isos/cl/" .. want .. "/agent.iso",
      "s3://cs5-priv/site-c/store/cl/agent.iso" }, r.housekeeping.verified)
    local index = json.decode(assert(c:get_object { bucket = "cs5-priv", key = "site-c/metadata/index.json" }).body)
    local e = index.objects["isos/cl/" .. want .. "/agent.iso"]
    assert.are.equal("site-c/store/cl/agent.iso", e.object)
    assert.are.equal(want, e.sha256)
    assert.are.equal(a.public_url, e.public.url)
    -- converged: nothing planned, nothing written
    writes = srv.state().writes
    local again = run(cfg)
    assert.are.equal("ok", again.status, again.error)
    assert.are.equal("", kinds(again.plan))
    assert.are.equal(writes, srv.state().writes)
    -- housekeep alone (no discover) finds the {sha256} key by itself
    local hk = assert(S3.new(cfg, { id = "(site)", site = site })):execute { phases = { "housekeep" } }
    assert.are.equal("ok", hk.status, hk.error)
    assert.are.same(r.housekeeping.verified, hk.housekeeping.verified)
    -- a source not stored by sbot (no sbot-sha256) is refused: sbot publishes what it can check
    assert(c:put_object { bucket = "cs5-priv", key = "site-c/store/cl/foreign.iso", body = "x" })
    local bad = run { bucket = "cs5-priv", public_bucket = "cs5-pub", prefix = "site-c",
      artifacts = { { key = "isos/foreign.iso", source = "store/cl/foreign.iso" } } }
    assert.are.equal("failed", bad.status)
    assert.matches("has no sbot%-sha256 metadata", bad.error)
    local both = run { artifacts = { { key = "isos/x", file = iso, source = "store/cl/agent.iso" } } }
    assert.matches("give file .* or source .*, not both", both.error)
  end)

  it("unpublishes the copies an artifact supersedes: v1's public copy gone after v2 (shown by --plan), the "
    .. "private copies kept, the index says so; keep_previous keeps the newest earlier ones", function()
    local store = require "sbot.store"
    local http = require "sbot.http"
    local st = assert(store.open("s3://cs7-priv/site-d?endpoint=" .. srv.endpoint,
      { access_key = srv.access_key, secret_key = srv.secret_key, tls = srv.tls }))
    local base = { bucket = "cs7-priv", public_bucket = "cs7-pub", prefix = "site-d" }
    assert.are.equal("ok", run(base).status)
    local sha = {}
    for _, v in ipairs { "4.1", "4.2", "4.3" } do
      local f = tmp .. "/v" .. v .. ".iso"
      assert(helpers.sh("head -c 40000 /dev/urandom > " .. f))
      sha[v] = servers.sha256sum(f)
      assert(st:put("store/cl/" .. v .. "/agent.iso", { file = f }))
    end
    local function cfg(v, keep)
      local t = {}
      for k, x in pairs(base) do t[k] = x end
      t.artifacts = { { key = "isos/cl/" .. v .. "/{sha256}/agent.iso", source = "store/cl/" .. v .. "/agent.iso",
        supersedes = "isos/cl/", keep_previous = keep } }
      return t
    end
    -- config errors name the artifact and the key
    for _, bad in ipairs {
      { { supersedes = "isos/cl" }, "artifacts%[1%]%.supersedes: expected a key prefix ending in '/'" },
      { { supersedes = "../cl/" }, "artifacts%[1%]%.supersedes: " },
    } do
      local a = { key = "isos/cl/x/{sha256}/agent.iso", source = "store/cl/4.1/agent.iso" }
      for k, v in pairs(bad[1]) do a[k] = v end
      local t = {}
      for k, x in pairs(base) do t[k] = x end
      t.artifacts = { a }
      local r = run(t)
      assert.are.equal("failed", r.status)
      assert.matches(bad[2], r.error)
    end
    local neg = { key = "isos/cl/x.iso", source = "store/cl/4.1/agent.iso", supersedes = "isos/cl/", keep_previous = -1 }
    local nc, nerr = S3.new({ bucket = "cs7-priv", artifacts = { neg } }, { id = "(site)", site = site })
    assert.is_nil(nc)
    assert.matches("artifacts%[1%]%.keep_previous: must be at least 0", nerr)
    local function public_key(v) return "site-d/isos/cl/" .. v .. "/" .. sha[v] .. "/agent.iso" end
    local function anon(v) return assert(http.get(srv.public_endpoint .. "/cs7-pub/" .. public_key(v))).status end
    local function index()
      return json.decode(assert(c:get_object { bucket = "cs7-priv", key = "site-d/metadata/index.json" }).body).objects
    end
    local r1 = run(cfg("4.1"))
    assert.are.equal("ok", r1.status, r1.error)
    assert.are.equal("publish:create index:create", kinds(r1.plan))
    assert.are.equal(200, anon("4.1"))
    os.execute("sleep 1.1") -- the index's `updated` has whole seconds: v2 is newer

    -- --plan of v2 shows the deletion of v1's copy, and changes nothing
    local writes = srv.state().writes
    local p = run(cfg("4.2"), "plan")
    assert.are.equal("ok", p.status, p.error)
    assert.are.equal("publish:create unpublish:delete index:update", kinds(p.plan))
    local del = p.plan[2]
    assert.are.equal("s3://cs7-pub/" .. public_key("4.1"), del.resource)
    assert.matches("superseded by isos/cl/4.2/" .. sha["4.2"] .. "/agent.iso", del.reason, 1, true)
    assert.matches("not versioned", del.reason, 1, true)
    assert.are.equal(sha["4.1"], del.before.sha256)
    assert.are.same({ "isos/cl/4.1/" .. sha["4.1"] .. "/agent.iso" }, p.plan[3].after.unpublish)
    assert.are.equal("unpublish", p.discovery.superseded[1].action)
    assert.are.equal(writes, srv.state().writes)
    assert.are.equal(200, anon("4.1"))

    local r2 = run(cfg("4.2"))
    assert.are.equal("ok", r2.status, r2.error)
    assert.are.equal("publish:create unpublish:delete index:update", kinds(r2.plan))
    assert.are.equal(403, anon("4.1"), "v1's public copy is gone")
    assert.are.equal(200, anon("4.2"))
    assert.are.equal("NoSuchKey", select(3, c:head_object { bucket = "cs7-pub", key = public_key("4.1") }))
    for _, v in ipairs { "4.1", "4.2" } do -- the private copies are kept
      assert.truthy(c:head_object { bucket = "cs7-priv", key = "site-d/store/cl/" .. v .. "/agent.iso" })
    end
    local un = r2.housekeeping.unpublished
    assert.are.equal(1, #un)
    assert.are.equal(403, math.tointeger(un[1].status))
    local objs = index()
    local e1 = objs["isos/cl/4.1/" .. sha["4.1"] .. "/agent.iso"]
    assert.is_nil(e1.public)
    assert.are.equal(public_key("4.1"), e1.unpublished.key)
    assert.matches("^%d%d%d%d%-", e1.unpublished.at)
    assert.are.equal("site-d/store/cl/4.1/agent.iso", e1.object)
    assert.is_table(objs["isos/cl/4.2/" .. sha["4.2"] .. "/agent.iso"].public)
    -- converged: a rerun plans nothing and writes nothing
    writes = srv.state().writes
    local again = run(cfg("4.2"))
    assert.are.equal("", kinds(again.plan))
    assert.are.equal(writes, srv.state().writes)

    -- keep_previous = 1: v3 keeps v2 published; with 0 v2 goes too
    os.execute("sleep 1.1")
    local r3 = run(cfg("4.3", 1))
    assert.are.equal("ok", r3.status, r3.error)
    assert.are.equal("publish:create index:update", kinds(r3.plan))
    assert.are.equal("kept", r3.discovery.superseded[1].action)
    assert.are.equal(200, anon("4.2"))
    local r4 = run(cfg("4.3", 0))
    assert.are.equal("unpublish:delete index:update", kinds(r4.plan))
    assert.are.equal(403, anon("4.2"))
    assert.are.equal(200, anon("4.3"))
    -- back to v1: published again under its key, v3 unpublished
    os.execute("sleep 1.1")
    local r5 = run(cfg("4.1"))
    assert.are.equal("publish:create unpublish:delete index:update", kinds(r5.plan))
    assert.are.equal(200, anon("4.1"))
    assert.are.equal(403, anon("4.3"))
    assert.is_nil(index()["isos/cl/4.1/" .. sha["4.1"] .. "/agent.iso"].unpublished)
    -- a public object that is no longer the copy sbot made is left alone
    assert(c:put_object { bucket = "cs7-pub", key = public_key("4.1"), body = "someone else's now" })
    os.execute("sleep 1.1")
    local r6 = run(cfg("4.2"))
    assert.are.equal("ok", r6.status, r6.error)
    assert.are.equal("publish:create index:update", kinds(r6.plan))
    local left = r6.discovery.superseded[1]
    assert.are.equal("left", left.action)
    assert.matches("not the copy sbot published", left.why, 1, true)
    assert.are.equal("someone else's now", assert(c:get_object { bucket = "cs7-pub", key = public_key("4.1") }).body)
  end)

  it("in a versioned public bucket every version of sbot's superseded copy is deleted, not hidden behind a "
    .. "delete marker; another writer's version is left", function()
    local store = require "sbot.store"
    local http = require "sbot.http"
    assert(c:create_bucket("cs8-pub"))
    assert(c:put_bucket_versioning { bucket = "cs8-pub", status = "Enabled" })
    local st = assert(store.open("s3://cs8-priv/?endpoint=" .. srv.endpoint,
      { access_key = srv.access_key, secret_key = srv.secret_key, tls = srv.tls }))
    local base = { bucket = "cs8-priv", public_bucket = "cs8-pub" }
    assert.are.equal("ok", run(base).status)
    local sha = {}
    for _, v in ipairs { "1", "2", "3", "4" } do
      local f = tmp .. "/w" .. v .. ".iso"
      assert(helpers.sh("head -c 30000 /dev/urandom > " .. f))
      sha[v] = servers.sha256sum(f)
      assert(st:put("store/" .. v .. ".iso", { file = f }))
    end
    local function cfg(v)
      return { bucket = "cs8-priv", public_bucket = "cs8-pub", artifacts = { { key = "isos/" .. v .. "/{sha256}.iso",
        source = "store/" .. v .. ".iso", supersedes = "isos/" } } }
    end
    local function key(v) return "isos/" .. v .. "/" .. sha[v] .. ".iso" end
    local function versions(k)
      local out = {}
      for v in c:list_object_versions { bucket = "cs8-pub", prefix = k } do out[#out + 1] = v end
      return out
    end
    assert.are.equal("ok", run(cfg("1")).status)
    -- a second version of the same copy (as a re-publish would make): both are sbot's
    assert(c:copy_object { bucket = "cs8-pub", key = key("1"), source_key = key("1"), metadata_directive = "REPLACE",
      metadata = { ["sbot-sha256"] = sha["1"] } })
    local old = versions(key("1"))
    assert.are.equal(2, #old)
    os.execute("sleep 1.1")
    local p = run(cfg("2"), "plan")
    assert.are.equal("publish:create unpublish:delete index:update", kinds(p.plan))
    assert.matches("every version of the key is deleted", p.plan[2].reason, 1, true)
    assert.are.equal(2, #p.plan[2].before.versions)
    local r = run(cfg("2"))
    assert.are.equal("ok", r.status, r.error)
    assert.are.same({}, versions(key("1")), "no version and no delete marker left")
    for _, v in ipairs(old) do
      local got, _, code = c:get_object { bucket = "cs8-pub", key = key("1"), version_id = v.version_id }
      assert.is_nil(got)
      assert.are.equal("NoSuchVersion", code)
    end
    assert.are.equal(403, assert(http.get(srv.public_endpoint .. "/cs8-pub/" .. key("1"))).status)
    local applied = r.processing.applied[2]
    assert.are.equal("s3://cs8-pub/" .. key("1"), applied.resource)
    assert.are.equal(2, #applied.result.deleted) -- recorded: which versions went

    -- someone else writes over v2's copy: sbot deletes its own version only, theirs stays current
    assert(c:put_object { bucket = "cs8-pub", key = key("2"), body = "someone else's" })
    os.execute("sleep 1.1")
    local r3 = run(cfg("3"))
    assert.are.equal("ok", r3.status, r3.error)
    assert.matches("other versions are not sbot's", r3.plan[2].reason, 1, true)
    local left = versions(key("2"))
    assert.are.equal(1, #left)
    assert.is_false(left[1].delete_marker)
    assert.are.equal("someone else's", assert(c:get_object { bucket = "cs8-pub", key = key("2") }).body)

    -- undoing those unpublish changes (as a later change failing would): sbot's copy is put back
    -- where it was what the key showed, never over the version someone else made current since
    local comp = assert(S3.new(cfg("3"), { id = "(site)", site = site }))
    local res = assert(S3.spec.open(comp))
    S3.spec.undo(comp, r3.plan[2], res)
    assert.are.equal("someone else's", assert(c:get_object { bucket = "cs8-pub", key = key("2") }).body)
    assert.are.equal(1, #versions(key("2")))
    assert.is_false(r3.plan[2].before.current)
    assert.is_true(r.plan[2].before.current)
    S3.spec.undo(comp, r.plan[2], res)
    local back = assert(c:head_object { bucket = "cs8-pub", key = key("1") })
    assert.are.equal(sha["1"], back.metadata["sbot-sha256"])

    -- someone deletes v3's key: a delete marker hides sbot's version, which stays stored; when
    -- v4 supersedes it, sbot's version goes by id and the marker with it (no other writer's
    -- version is left under the key), nothing is published again
    local marker = assert(c:delete_object { bucket = "cs8-pub", key = key("3") })
    assert.is_true(marker.delete_marker)
    assert.are.equal(2, #versions(key("3")))
    local r4 = run(cfg("4"))
    assert.are.equal("ok", r4.status, r4.error)
    assert.are.equal("publish:create unpublish:delete index:update", kinds(r4.plan))
    assert.are.equal(2, #r4.plan[2].before.versions)
    assert.is_false(r4.plan[2].before.current)
    assert.are.same({}, versions(key("3")), "sbot's version and the delete marker over it deleted")
  end)

  it("a step without artifacts is fine on a bucket that has no index yet", function()
    local r = run { bucket = "cs6-priv", public_bucket = "cs6-pub" }
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal(0, r.housekeeping.index_entries)
    assert.are.equal("NoSuchKey", select(3, c:head_object { bucket = "cs6-priv", key = "metadata/index.json" }))
  end)

  it("refuses bad configurations with the key path", function()
    local none, err = S3.new({ publish = "isos/" }, { id = "(site)", site = site })
    assert.is_nil(none)
    assert.matches("component s3 config: publish: expected list", err)
    local r = run { bucket = "same", public_bucket = "same" }
    assert.are.equal("failed", r.status)
    assert.matches("the public bucket must not be the private bucket", r.error)
    r = run { artifacts = { { key = "configs/x", file = "/etc/hostname", publish = true } } }
    assert.matches("publish = true, but the key is under none of the published prefixes", r.error)
    r = run { artifacts = { { key = "isos/../x", file = "/etc/hostname" } } }
    assert.matches("artifacts%[1%]%.key: .*'%.%.' segment", r.error)
    r = run { artifacts = { { key = "isos/missing", file = tmp .. "/does-not-exist" } } }
    assert.are.equal("failed", r.status)
    assert.matches("discover: artifact isos/missing: s3 hash_file: .*does%-not%-exist", r.error)
  end)
end)

describe("the S3 component against s3rver", function()
  it("fails discover clearly where the server lacks what it needs (versioning)", function()
    local srv = servers.start_s3rver()
    local dir = helpers.tmpdir("comps3r")
    helpers.write_file(dir .. "/site.lua", string.format([[return { s3 = { endpoint = %q, bucket = "priv",
      public_bucket = "pub", access_key = "S3RVER", secret_key = "S3RVER" } }]], srv.endpoint))
    os.execute("chmod 600 " .. helpers.shquote(dir .. "/site.lua")) -- it holds secrets in clear
    local site = assert(site_mod.load(dir .. "/site.lua"))
    local c = assert(s3.client { endpoint = srv.endpoint, access_key = "S3RVER", secret_key = "S3RVER" })
    assert(c:create_bucket("priv"))
    local comp = assert(require("sbot.component.s3").new({}, { id = "(site)", site = site }))
    local r = comp:execute { mode = "plan" }
    servers.stop(srv)
    os.execute("rm -rf " .. helpers.shquote(dir))
    assert.are.equal("failed", r.status)
    -- s3rver answers GET ?versioning with a listing
    assert.matches("discover: priv: GET priv: expected <VersioningConfiguration> in the answer, got <ListBucketResult> " ..
      "%(server does not support this call%?%)", r.error)
  end)
end)
