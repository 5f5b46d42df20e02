-- The lab's S3 model (lua/sbot/lab/s3.lua) driven by the real client
-- (sbot.s3) and the store's s3:// backend, against a real `sbot lab` process
-- and the site file it writes: what s3rver lacks (versioning, bucket policy,
-- conditional writes, multipart listing and abort, an error inside a 200
-- answer, byte-exact keys), fault injection, and the lab-level checks
-- (signatures, presigned URLs, anonymous reads under the policy's prefix).
local helpers = require "helpers"
local servers = require "s3servers"
local s3 = require "sbot.s3"
local http = require "sbot.http"
local json = require "sbot.json"

local MiB = 1024 * 1024

describe("sbot.s3 against the lab's S3 model", function()
  local srv, c, tmp

  -- the python model's /__control switches, as lab faults (POST /lab/faults)
  local function control(t)
    if t.fail_part then srv.faults("s3:failpart=" .. t.fail_part)
    elseif t.complete_error then srv.faults("s3:completeerr=1")
    else srv.faults("") end
  end

  local function client(opts)
    local o = { endpoint = srv.endpoint, access_key = srv.access_key, secret_key = srv.secret_key,
      region = srv.region, tls = srv.tls }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(s3.client(o))
  end

  local function uploads(bucket)
    return assert(c:list_multipart_uploads{ bucket = bucket or "lab-m" })
  end

  setup(function()
    srv = servers.start_lab()
    tmp = helpers.tmpdir("labs3")
    c = client{ part_size = 5 * MiB, multipart_threshold = 5 * MiB, concurrency = 3 }
    assert(c:create_bucket("lab-m"))
  end)

  teardown(function()
    servers.stop(srv)
    if tmp then os.execute("rm -rf " .. helpers.shquote(tmp)) end
  end)

  before_each(function() control({}) end)

  require("s3checks").define(it, function() return { client = c, bucket = "lab-m", tls = srv.tls, tmp = tmp,
    access_key = srv.access_key, secret_key = srv.secret_key } end)

  it("checks signatures too (wrong secret rejected)", function()
    local bad = client{ secret_key = "nope" }
    local ok, err, code = bad:list_buckets()
    assert.is_nil(ok)
    assert.are.equal("SignatureDoesNotMatch", code)
    assert.matches("^SignatureDoesNotMatch: The request signature we calculated", err)
    -- a HEAD answer has no body: the code comes from the status
    ok, err, code = bad:head_object{ bucket = "lab-m", key = "x" }
    assert.is_nil(ok)
    assert.are.equal("AccessDenied", code)
    assert.matches("HTTP 403 %(HEAD lab%-m/x%)", err)
    -- creating a bucket you own in us-east-1 answers 200 (not 409), which is success
    local res = assert(c:_call{ method = "PUT", bucket = "lab-m" })
    assert.are.equal(200, res.status)
    assert.is_true(c:create_bucket("lab-m"))
  end)

  it("keeps '//', '.' and '..' segments and XML-special characters in keys", function()
    local keys = { "k/x//y", "k/x/../y", "k/./z", "k/a&b<c>'\"", "k/..", "k/." }
    for i, k in ipairs(keys) do assert(c:put_object{ bucket = "lab-m", key = k, body = "v" .. i }) end
    for i, k in ipairs(keys) do
      assert.are.equal("v" .. i, assert(c:get_object{ bucket = "lab-m", key = k }).body, k)
    end
    local listed = {}
    for _, o in ipairs(assert(c:list_objects_all{ bucket = "lab-m", prefix = "k/" })) do listed[#listed + 1] = o.key end
    table.sort(keys)
    assert.are.same(keys, listed)
    local r = assert(c:delete_objects{ bucket = "lab-m", objects = keys })
    assert.are.equal(#keys, #r.deleted)
  end)

  it("writes conditionally: If-None-Match * and If-Match etag", function()
    local r = assert(c:put_object{ bucket = "lab-m", key = "lock", body = "owner-1", if_none_match = "*" })
    local again, err, code = c:put_object{ bucket = "lab-m", key = "lock", body = "owner-2", if_none_match = "*" }
    assert.is_nil(again)
    assert.are.equal("PreconditionFailed", code)
    assert.matches("^PreconditionFailed: .*%(PUT lab%-m/lock%)$", err)
    assert.are.equal("owner-1", assert(c:get_object{ bucket = "lab-m", key = "lock" }).body)
    local r2 = assert(c:put_object{ bucket = "lab-m", key = "lock", body = "owner-1b", if_match = r.etag })
    local stale, _, scode = c:put_object{ bucket = "lab-m", key = "lock", body = "owner-3", if_match = r.etag }
    assert.is_nil(stale)
    assert.are.equal("PreconditionFailed", scode)
    assert.are.equal("owner-1b", assert(c:get_object{ bucket = "lab-m", key = "lock" }).body)
    assert.are_not.equal(r.etag, r2.etag)
    -- the same for a multipart upload: the condition is checked at completion
    local big = tmp .. "/cond"
    assert(helpers.sh("head -c " .. (11 * MiB) .. " /dev/urandom > " .. big))
    local mp, merr, mcode = c:put_object{ bucket = "lab-m", key = "lock", file = big, if_none_match = "*" }
    assert.is_nil(mp, merr)
    assert.are.equal("PreconditionFailed", mcode)
    assert.are.same({}, uploads())
  end)

  it("manages versioning, delete markers and version listings", function()
    assert(c:create_bucket("lab-v"))
    assert.is_nil(assert(c:get_bucket_versioning("lab-v")).status)
    assert.is_true(c:put_bucket_versioning{ bucket = "lab-v", status = "Enabled" })
    assert.are.equal("Enabled", assert(c:get_bucket_versioning("lab-v")).status)
    local v1 = assert(c:put_object{ bucket = "lab-v", key = "doc", body = "one" })
    local v2 = assert(c:put_object{ bucket = "lab-v", key = "doc", body = "two" })
    assert.is_string(v1.version_id)
    assert.are_not.equal(v1.version_id, v2.version_id)
    local d = assert(c:delete_object{ bucket = "lab-v", key = "doc" })
    assert.is_true(d.delete_marker)
    assert.are.equal("NoSuchKey", select(3, c:get_object{ bucket = "lab-v", key = "doc" }))
    assert.are.equal("one", assert(c:get_object{ bucket = "lab-v", key = "doc", version_id = v1.version_id }).body)
    local seen = {}
    for ver, err in c:list_object_versions{ bucket = "lab-v", max_keys = 1 } do
      assert.is_truthy(ver, err)
      seen[#seen + 1] = ver
    end
    assert.are.equal(3, #seen)
    local markers, versions = 0, 0
    for _, ver in ipairs(seen) do
      if ver.delete_marker then markers = markers + 1 else versions = versions + 1 end
    end
    assert.are.equal(1, markers)
    assert.are.equal(2, versions)
    -- removing data for good: delete every version id
    local objs = {}
    for _, ver in ipairs(seen) do objs[#objs + 1] = { key = ver.key, version_id = ver.version_id } end
    local r = assert(c:delete_objects{ bucket = "lab-v", objects = objs })
    assert.are.equal(3, #r.deleted)
    local left = 0
    for _ in c:list_object_versions{ bucket = "lab-v" } do left = left + 1 end
    assert.are.equal(0, left)
    assert.is_true(c:put_bucket_versioning{ bucket = "lab-v", status = "Suspended" })
    assert.are.equal("Suspended", assert(c:get_bucket_versioning("lab-v")).status)
    assert.has_error(function() c:put_bucket_versioning{ bucket = "lab-v", status = "on" } end)
  end)

  it("puts, gets and deletes a bucket policy", function()
    local none, _, code = c:get_bucket_policy("lab-m")
    assert.is_nil(none)
    assert.are.equal("NoSuchBucketPolicy", code)
    local policy = { Version = "2012-10-17", Statement = { { Effect = "Allow", Principal = { AWS = { "*" } },
      Action = { "s3:GetObject" }, Resource = { "arn:aws:s3:::lab-m/public/*" } } } }
    assert.is_true(c:put_bucket_policy{ bucket = "lab-m", policy = policy })
    local got = assert(json.decode(assert(c:get_bucket_policy("lab-m"))))
    assert.are.equal("arn:aws:s3:::lab-m/public/*", got.Statement[1].Resource[1])
    local bad, _, bcode = c:put_bucket_policy{ bucket = "lab-m", policy = "{not json" }
    assert.is_nil(bad)
    assert.are.equal("MalformedPolicy", bcode)
    assert.is_true(c:delete_bucket_policy("lab-m"))
    assert.are.equal("NoSuchBucketPolicy", select(3, c:get_bucket_policy("lab-m")))
  end)

  it("aborts the multipart upload when a part fails: no upload is left", function()
    local big = tmp .. "/fail"
    assert(helpers.sh("head -c " .. (23 * MiB) .. " /dev/urandom > " .. big))
    control({ fail_part = 4 })
    local r, err, code = c:put_object{ bucket = "lab-m", key = "mp/fail", file = big }
    assert.is_nil(r)
    assert.are.equal("InternalError", code)
    assert.matches("part 4", err)
    assert.are.same({}, uploads())
    assert.are.equal("NoSuchKey", select(3, c:head_object{ bucket = "lab-m", key = "mp/fail" }))
  end)

  it("aborts the multipart upload when interrupted midway (error raised in progress)", function()
    local big = tmp .. "/intr"
    assert(helpers.sh("head -c " .. (30 * MiB) .. " /dev/urandom > " .. big))
    local ci = client{ part_size = 5 * MiB, multipart_threshold = 5 * MiB }
    local ok, err = pcall(ci.put_object, ci, { bucket = "lab-m", key = "mp/intr", file = big,
      progress = function(done) if done > 12 * MiB then error("interrupted by the operator") end end })
    assert.is_false(ok)
    assert.matches("interrupted by the operator", tostring(err))
    assert.are.same({}, uploads())
  end)

  it("fails with FileChanged and aborts when the file changes during a sha256_metadata upload", function()
    local big = tmp .. "/chg"
    assert(helpers.sh("head -c " .. (35 * MiB) .. " /dev/urandom > " .. big))
    local changed = false
    -- 7 parts of 5 MiB, 3 at a time: part 7 is in the third wave, hashed
    -- while the second is sent, after the file was changed during the first
    local r, err, code = c:put_object{ bucket = "lab-m", key = "mp/chg", file = big, sha256_metadata = true,
      progress = function(done)
        if not changed and done > 0 then
          changed = true
          local f = assert(io.open(big, "r+b"))
          assert(f:seek("set", 32 * MiB))
          assert(f:write("changed"))
          assert(f:close())
        end
      end }
    assert.is_nil(r)
    assert.are.equal("FileChanged", code)
    assert.matches("changed while it was being uploaded (part 7)", err, 1, true)
    assert.are.same({}, uploads())
    assert.are.equal("NoSuchKey", select(3, c:head_object{ bucket = "lab-m", key = "mp/chg" }))
  end)

  it("treats an error inside a 200 CompleteMultipartUpload answer as an error and aborts", function()
    local big = tmp .. "/c200"
    assert(helpers.sh("head -c " .. (11 * MiB) .. " /dev/urandom > " .. big))
    control({ complete_error = true })
    local r, err, code = c:put_object{ bucket = "lab-m", key = "mp/c200", file = big }
    assert.is_nil(r)
    assert.are.equal("InternalError", code)
    assert.matches("POST lab%-m/mp/c200", err)
    control({})
    assert.are.same({}, uploads())
  end)

  it("streams GETs: the lab's peak RSS does not grow with the size of what it serves", function()
    local big = tmp .. "/stream"
    assert(helpers.sh("head -c " .. (96 * MiB) .. " /dev/urandom > " .. big))
    assert(c:put_object{ bucket = "lab-m", key = "mp/stream", file = big })
    local function kib(field)
      local f = assert(io.open("/proc/" .. srv.proc.pid .. "/status"))
      local text = f:read("a")
      f:close()
      return tonumber(text:match(field .. ":%s*(%d+) kB"))
    end
    -- reset the lab's peak RSS (VmHWM) to its current RSS, then read 96 MiB
    local f = assert(io.open("/proc/" .. srv.proc.pid .. "/clear_refs", "w"))
    f:write("5")
    f:close()
    local before = kib("VmRSS")
    local out, part = tmp .. "/stream.out", tmp .. "/stream.part"
    assert(c:get_object{ bucket = "lab-m", key = "mp/stream", file = out })
    local r = assert(c:get_object{ bucket = "lab-m", key = "mp/stream", file = part, range = { MiB, 41 * MiB - 1 } })
    local grew = kib("VmHWM") - before
    assert.is_true(grew < 16 * 1024, "the lab's peak RSS grew by " .. grew .. " KiB serving 136 MiB")
    assert.are.equal(servers.sha256sum(big), servers.sha256sum(out))
    assert.are.equal(206, r.status)
    assert.are.equal(40 * MiB, r.size)
    for _, p in ipairs { big, out, part } do os.remove(p) end
  end)

  it("ignores an invalid Range (first > last) and sends the whole object, as S3", function()
    assert(c:put_object{ bucket = "lab-m", key = "rng/inv", body = "0123456789" })
    local g = assert(c:get_object{ bucket = "lab-m", key = "rng/inv", range = "bytes=5-2" })
    assert.are.equal(200, g.status)
    assert.are.equal("0123456789", g.body)
    assert(c:put_object{ bucket = "lab-m", key = "rng/empty", body = "" })
    assert.are.equal("InvalidRange", select(3, c:get_object{ bucket = "lab-m", key = "rng/empty", range = { 0, 3 } }))
  end)

  it("uploads multipart and the parts reassemble exactly (etag -N)", function()
    local big = tmp .. "/ok"
    assert(helpers.sh("head -c " .. (17 * MiB + 1) .. " /dev/urandom > " .. big))
    local r = assert(c:put_object{ bucket = "lab-m", key = "mp/ok", file = big, metadata = { a = "b" } })
    assert.are.equal(4, r.parts)
    assert.matches("%-4$", r.etag)
    local out = tmp .. "/ok.out"
    assert(c:get_object{ bucket = "lab-m", key = "mp/ok", file = out })
    assert.are.equal(servers.sha256sum(big), servers.sha256sum(out))
    assert.are.same({ a = "b" }, assert(c:head_object{ bucket = "lab-m", key = "mp/ok" }).metadata)
  end)
  -- ---- lab-level checks ------------------------------------------------------

  it("stores a workflow's artifacts with --store s3:// using the site's S3 credentials and pin", function()
    local dir = helpers.tmpdir("labs3wf")
    -- a site with the lab's s3 section (its keys are secret: references to the
    -- lab's Vault, hence its vault section) and one server run by the test component
    helpers.write_file(dir .. "/site.lua", string.format([[
      local lab = dofile(%q)
      return {
        servers = { { id = "s1", idrac = { host = "10.0.0.1", password = "idrac-pw-Ww31" } } },
        components = { test_kv = { state_file = %q, calls_file = %q, want = { a = "1" },
          password = "dev-pw-Qq58" } },
        s3 = lab.s3,
        vault = lab.vault,
      }]], srv.site_path, dir .. "/{id}.state.json", dir .. "/{id}.calls"))
    os.execute("chmod 600 " .. helpers.shquote(dir .. "/site.lua")) -- it holds secrets in clear
    local store = string.format("s3://%s/runs?endpoint=%s&region=%s", srv.bucket, srv.endpoint, srv.region)
    local r = helpers.sbot({ "run", helpers.source_dir .. "/tests/support/workflows/kv.lua",
      "--site", dir .. "/site.lua", "--store", store, "--json" },
      { cwd = dir, env = "AWS_ACCESS_KEY_ID= AWS_SECRET_ACCESS_KEY= LUA_PATH="
        .. helpers.shquote(helpers.source_dir .. "/tests/support/?.lua;;") })
    assert.are.equal(0, r.code, r.stderr)
    local rec = assert(json.decode(r.stdout))
    local art = rec.results[1].artifacts[1]
    local key = "runs/" .. rec.run_id .. "/s1/test_kv/state.json"
    assert.are.equal("s3://" .. srv.bucket .. "/" .. key, art.stored)
    local head = assert(c:head_object{ bucket = srv.bucket, key = key })
    assert.are.equal(art.size, head.size)
    -- the site's keys are secrets: nowhere in the output
    assert.is_nil(r.stdout:find(srv.secret_key, 1, true))
    assert.is_nil(r.stderr:find(srv.secret_key, 1, true))
  end)

  it("writes a site s3 entry the site loader accepts, with its bucket created", function()
    local site = assert(require("sbot.site").load(srv.site_path))
    assert.are.equal(srv.endpoint, site.s3.endpoint)
    assert.matches("^https://127%.0%.0%.1:%d+$", site.s3.endpoint)
    assert.is_string(site.s3.tls.pin_sha256)
    -- the loader wraps the keys into secret objects, which the client takes as they are
    assert.are.equal("sbot.secret", getmetatable(site.s3.secret_key).__name)
    local sc = assert(s3.client{ endpoint = site.s3.endpoint, region = site.s3.region,
      access_key = site.s3.access_key, secret_key = site.s3.secret_key, tls = site.s3.tls })
    local names = {}
    for _, b in ipairs(assert(sc:list_buckets())) do names[b.name] = true end
    assert.is_true(names[site.s3.bucket])
    assert.is_true(names[site.s3.public_bucket])
    assert.are.equal("Enabled", assert(sc:get_bucket_versioning(site.s3.bucket)).status)
    -- without the pin (self-signed certificate) TLS verification fails
    local unpinned = assert(s3.client{ endpoint = site.s3.endpoint, access_key = srv.access_key,
      secret_key = srv.secret_key })
    assert.is_nil(unpinned:list_buckets())
  end)

  it("rejects a wrong secret and an unknown access key", function()
    local bad = client{ secret_key = srv.secret_key .. "x" }
    local r, err, code = bad:put_object{ bucket = srv.bucket, key = "nope", body = "x" }
    assert.is_nil(r)
    assert.are.equal("SignatureDoesNotMatch", code, err)
    local unknown = client{ access_key = "AKIAUNKNOWN0000000" }
    assert.are.equal("InvalidAccessKeyId", select(3, unknown:list_buckets()))
    assert.are.equal("NoSuchKey", select(3, c:head_object{ bucket = srv.bucket, key = "nope" }))
    -- an unsigned request is anonymous: denied without a policy
    local a = assert(http.get(srv.endpoint .. "/" .. srv.bucket .. "/nope", { tls = srv.tls }))
    assert.are.equal(403, a.status)
    assert.matches("<Code>AccessDenied</Code>", a.body)
  end)

  it("checks x-amz-content-sha256 against the body, and accepts UNSIGNED-PAYLOAD", function()
    local sigv4 = require "sbot.sigv4"
    local host = srv.endpoint:match("^https://(.*)$")
    local function send(body, payload_hash)
      local sg = sigv4.sign{ method = "PUT", path = "/" .. srv.bucket .. "/sha", host = host,
        payload_hash = payload_hash, access_key = srv.access_key, secret_key = srv.secret_key,
        region = srv.region, service = "s3" }
      return assert(http.request{ method = "PUT", url = srv.endpoint .. sg.uri, headers = sg.headers,
        body = body, tls = srv.tls })
    end
    local crypto = require "sbot.crypto"
    local r = send("the body", crypto.hex(crypto.sha256("another body")))
    assert.are.equal(400, r.status)
    assert.matches("XAmzContentSHA256Mismatch", r.body)
    assert.are.equal(200, send("the body", crypto.hex(crypto.sha256("the body"))).status)
    assert.are.equal(200, send("unsigned", "UNSIGNED-PAYLOAD").status)
    assert.are.equal("unsigned", assert(c:get_object{ bucket = srv.bucket, key = "sha" }).body)
  end)

  it("refuses an x-amz-* header the signature does not cover, as S3 does", function()
    local sigv4 = require "sbot.sigv4"
    local crypto = require "sbot.crypto"
    local host = srv.endpoint:match("^https://(.*)$")
    local body = "meta body"
    local sg = sigv4.sign{ method = "PUT", path = "/" .. srv.bucket .. "/unsigned-meta", host = host,
      payload_hash = crypto.hex(crypto.sha256(body)), access_key = srv.access_key,
      secret_key = srv.secret_key, region = srv.region, service = "s3" }
    local headers = {}
    for k, v in pairs(sg.headers) do headers[k] = v end
    headers["x-amz-meta-added-later"] = "1" -- added after signing
    local r = assert(http.request{ method = "PUT", url = srv.endpoint .. sg.uri, headers = headers,
      body = body, tls = srv.tls })
    assert.are.equal(403, r.status, r.body)
    assert.matches("<Code>AccessDenied</Code>", r.body, 1, true)
    assert.matches("not signed: x-amz-meta-added-later", r.body, 1, true)
    assert.are.equal("NoSuchKey", select(3, c:head_object{ bucket = srv.bucket, key = "unsigned-meta" }))
    -- the same header signed goes through
    sg = sigv4.sign{ method = "PUT", path = "/" .. srv.bucket .. "/unsigned-meta", host = host,
      headers = { ["x-amz-meta-added-later"] = "1" },
      payload_hash = crypto.hex(crypto.sha256(body)), access_key = srv.access_key,
      secret_key = srv.secret_key, region = srv.region, service = "s3" }
    headers = { ["x-amz-meta-added-later"] = "1" }
    for k, v in pairs(sg.headers) do headers[k] = v end
    r = assert(http.request{ method = "PUT", url = srv.endpoint .. sg.uri, headers = headers,
      body = body, tls = srv.tls })
    assert.are.equal(200, r.status, r.body)
    assert.are.same({ ["added-later"] = "1" },
      assert(c:head_object{ bucket = srv.bucket, key = "unsigned-meta" }).metadata)
  end)

  it("serves presigned URLs, and a tampered or expired one fails", function()
    assert(c:put_object{ bucket = srv.bucket, key = "pre/a b+c", body = "presigned body" })
    assert(c:put_object{ bucket = srv.bucket, key = "pre/other", body = "other" })
    local url = c:presign{ bucket = srv.bucket, key = "pre/a b+c", expires = 300 }
    local r = assert(http.get(url, { tls = srv.tls }))
    assert.are.equal(200, r.status)
    assert.are.equal("presigned body", r.body)
    local other = url:gsub("/pre/a%%20b%%2Bc%?", "/pre/other?")
    assert.are_not.equal(url, other)
    local t = assert(http.get(other, { tls = srv.tls }))
    assert.are.equal(403, t.status)
    assert.matches("SignatureDoesNotMatch", t.body)
    local longer = url:gsub("X%-Amz%-Expires=300", "X-Amz-Expires=3000")
    assert.are_not.equal(url, longer)
    assert.are.equal(403, assert(http.get(longer, { tls = srv.tls })).status)
    local sig = url:match("X%-Amz%-Signature=(%x+)")
    local flipped = url:gsub(sig, (sig:sub(1, -2) .. (sig:sub(-1) == "0" and "1" or "0")))
    assert.are.equal(403, assert(http.get(flipped, { tls = srv.tls })).status)
    -- a presigned PUT with another method is refused; with PUT it works
    local put_url = c:presign{ bucket = srv.bucket, key = "pre/put", method = "PUT", expires = 60 }
    assert.are.equal(403, assert(http.request{ method = "GET", url = put_url, tls = srv.tls }).status)
    assert.are.equal(200, assert(http.request{ method = "PUT", url = put_url, body = "via url", tls = srv.tls }).status)
    assert.are.equal("via url", assert(c:get_object{ bucket = srv.bucket, key = "pre/put" }).body)
    -- expired: signed 2 hours ago for 1 hour
    local sigv4 = require "sbot.sigv4"
    local host = srv.endpoint:match("^https://(.*)$")
    local p = sigv4.presign{ method = "GET", path = "/" .. srv.bucket .. "/pre/other", host = host, expires = 3600,
      time = os.time() - 7200, access_key = srv.access_key, secret_key = srv.secret_key, region = srv.region,
      service = "s3" }
    local e = assert(http.get(srv.endpoint .. p.uri, { tls = srv.tls }))
    assert.are.equal(403, e.status)
    assert.matches("expired", e.body)
  end)

  it("allows anonymous GET only under the public bucket policy's prefix", function()
    local pub = srv.public_bucket
    assert(c:put_object{ bucket = pub, key = "published/rhcos.iso", body = "iso bytes" })
    assert(c:put_object{ bucket = pub, key = "private/secret.txt", body = "not for you" })
    assert(c:put_object{ bucket = pub, key = "publishedx", body = "outside the prefix" })
    local function anon(method, path, body)
      return assert(http.request{ method = method, url = srv.endpoint .. path, body = body, tls = srv.tls })
    end
    local ok = anon("GET", "/" .. pub .. "/published/rhcos.iso")
    assert.are.equal(200, ok.status)
    assert.are.equal("iso bytes", ok.body)
    assert.are.equal(200, anon("HEAD", "/" .. pub .. "/published/rhcos.iso").status)
    assert.are.equal(403, anon("GET", "/" .. pub .. "/private/secret.txt").status)
    assert.are.equal(403, anon("GET", "/" .. pub .. "/publishedx").status)
    assert.are.equal(403, anon("PUT", "/" .. pub .. "/published/evil", "x").status)
    assert.are.equal(403, anon("DELETE", "/" .. pub .. "/published/rhcos.iso").status)
    assert.are.equal(403, anon("GET", "/" .. pub).status) -- no anonymous listing
    assert.are.equal(403, anon("GET", "/" .. srv.bucket .. "/anything").status)
    -- the policy the lab put there follows the field notes' shape
    local policy = assert(json.decode(assert(c:get_bucket_policy(pub))))
    assert.are.equal("arn:aws:s3:::" .. pub .. "/published/*", policy.Statement[1].Resource[1])
    -- removing the policy closes the bucket
    assert(c:delete_bucket_policy(pub))
    assert.are.equal(403, anon("GET", "/" .. pub .. "/published/rhcos.iso").status)
    assert(c:put_bucket_policy{ bucket = pub, policy = policy })
    assert.are.equal(200, anon("GET", "/" .. pub .. "/published/rhcos.iso").status)
  end)

  it("answers plain HTTP too, at the site's s3.public_endpoint: anonymous reads with Range, signed requests, "
    .. "presigned URLs for that address", function()
    local pub = srv.public_bucket
    assert.matches("^http://127%.0%.0%.1:%d+$", srv.public_endpoint)
    assert.are.equal(srv.public_endpoint, srv.info.http_url)
    assert(c:put_object{ bucket = pub, key = "published/boot.iso", body = string.rep("b", 40000) })
    local r = assert(http.get(srv.public_endpoint .. "/" .. pub .. "/published/boot.iso",
      { headers = { Range = "bytes=32768-34815" } }))
    assert.are.equal(206, r.status)
    assert.are.equal(2048, #r.body)
    assert.are.equal("bytes 32768-34815/40000", r.headers["content-range"])
    assert.are.equal(403, assert(http.get(srv.public_endpoint .. "/" .. srv.bucket .. "/x")).status)
    -- the same server: a client signing for the plain address reads the private bucket
    local plain = assert(s3.client { endpoint = srv.public_endpoint, access_key = srv.access_key,
      secret_key = srv.secret_key, region = srv.region })
    assert(c:put_object{ bucket = srv.bucket, key = "plain/secret", body = "private bytes" })
    assert.are.equal("private bytes", assert(plain:get_object{ bucket = srv.bucket, key = "plain/secret" }).body)
    local url = plain:presign{ bucket = srv.bucket, key = "plain/secret", expires = 60 }
    assert.matches("^http://", url)
    assert.are.equal("private bytes", assert(http.get(url)).body)
  end)

  it("lists with delimiter, start-after and continuation tokens; copies; serves ranges", function()
    assert(c:create_bucket("lab-l"))
    for _, k in ipairs { "a/1", "a/2", "b/x/1", "b/y", "c" } do assert(c:put_object{ bucket = "lab-l", key = k, body = k }) end
    local keys = {}
    for o in c:list_objects{ bucket = "lab-l", delimiter = "/", max_keys = 1 } do keys[#keys + 1] = o.key or o.prefix end
    assert.are.same({ "a/", "b/", "c" }, keys)
    keys = {}
    for o in c:list_objects{ bucket = "lab-l", prefix = "b/", start_after = "b/x/1" } do keys[#keys + 1] = o.key end
    assert.are.same({ "b/y" }, keys)
    keys = {}
    for o in c:list_objects{ bucket = "lab-l", max_keys = 2 } do keys[#keys + 1] = o.key end
    assert.are.same({ "a/1", "a/2", "b/x/1", "b/y", "c" }, keys)
    assert(c:put_object{ bucket = "lab-l", key = "m", body = "0123456789", metadata = { k = "v" }, content_type = "text/x" })
    assert(c:copy_object{ bucket = "lab-l", key = "m2", source_key = "m" })
    local h = assert(c:head_object{ bucket = "lab-l", key = "m2" })
    assert.are.same({ k = "v" }, h.metadata)
    assert.are.equal("text/x", h.content_type)
    assert(c:copy_object{ bucket = "lab-l", key = "m3", source_key = "m", metadata = { n = "w" } })
    assert.are.same({ n = "w" }, assert(c:head_object{ bucket = "lab-l", key = "m3" }).metadata)
    local g = assert(c:get_object{ bucket = "lab-l", key = "m2", range = { 2, 4 } })
    assert.are.equal(206, g.status)
    assert.are.equal("234", g.body)
    assert.are.equal("789", assert(c:get_object{ bucket = "lab-l", key = "m2", range = "bytes=-3" }).body)
    assert.are.equal("InvalidRange", select(3, c:get_object{ bucket = "lab-l", key = "m2", range = { 20 } }))
    assert.are.equal("BucketNotEmpty", select(3, c:delete_bucket("lab-l")))
  end)

  it("is the store's s3:// backend", function()
    local store = require "sbot.store"
    local st = assert(store.open("s3://" .. srv.bucket .. "/runs?endpoint=" .. srv.endpoint .. "&region=" .. srv.region,
      { access_key = srv.access_key, secret_key = srv.secret_key, tls = srv.tls }))
    local f = tmp .. "/artifact"
    assert(helpers.sh("head -c " .. (7 * MiB + 3) .. " /dev/urandom > " .. f))
    local put = assert(st:put("run-1/results.json", { file = f }, { stage = "test" }))
    assert.are.equal(servers.sha256sum(f), put.sha256)
    local h = assert(st:head("run-1/results.json"))
    assert.are.equal(7 * MiB + 3, h.size)
    local out = tmp .. "/artifact.out"
    assert(st:get("run-1/results.json", out))
    assert.are.equal(servers.sha256sum(f), servers.sha256sum(out))
    local listed = assert(st:list("run-1/"))
    assert.are.equal(1, #listed)
    assert(st:delete("run-1/results.json"))
    assert.is_nil(st:head("run-1/results.json"))
  end)

  it("injects faults deterministically: 503 SlowDown, counted in /lab/state", function()
    local function run(target)
      local raw = assert(s3.client{ endpoint = target.endpoint, access_key = target.access_key,
        secret_key = target.secret_key, region = target.region, tls = target.tls, retries = false })
      local seq = {}
      for i = 1, 12 do seq[i] = select(3, raw:head_bucket(target.bucket)) or "ok" end
      return table.concat(seq, ",")
    end
    srv.faults("s3:503=0.5")
    local first = run(srv)
    assert.matches("SlowDown", first)
    assert.matches("ok", first)
    assert.is_true(srv.state().faults["503"] > 0)
    srv.faults("")
    assert.are.equal("ok,ok,ok,ok,ok,ok,ok,ok,ok,ok,ok,ok", run(srv))
    -- the same seed and the same requests give the same faults: two fresh labs
    local function fresh()
      local lab = servers.start_lab({ "--faults", "s3:503=0.5", "--seed", "7" })
      local ok, seq = pcall(run, lab)
      servers.stop(lab)
      assert(ok, seq)
      return seq
    end
    local a, b = fresh(), fresh()
    assert.are.equal(a, b)
    assert.matches("SlowDown", a)
  end)

  it("loses the answers of the next N requests: they happen, the client is left without an answer", function()
    -- a fresh process: libcurl sends a request again by itself when a
    -- connection it reused dies before the answer; on a new one it does not
    local script = tmp .. "/lost.lua"
    helpers.write_file(script, string.format([[
      local s3 = require "sbot.s3"
      local c = assert(s3.client { endpoint = %q, access_key = %q, secret_key = %q, region = %q,
        tls = { pin_sha256 = %q }, retries = false })
      local function show(r, err, code) print(r and "answered" or ("nil " .. tostring(code) .. " " .. tostring(err))) end
      show(c:put_object { bucket = "lab-m", key = "lost/one", body = "first" })
      show(c:put_object { bucket = "lab-m", key = "lost/one", body = "second", if_none_match = "*" })
      local got = assert(c:get_object { bucket = "lab-m", key = "lost/one" })
      print("body " .. got.body)]], srv.endpoint, srv.access_key, srv.secret_key, srv.region, srv.tls.pin_sha256))
    local before = srv.state().faults.lostanswers or 0
    srv.faults("s3:lostanswers=2")
    local r = helpers.sbot({ "run", script })
    srv.faults("")
    assert.are.equal(0, r.code, r.stderr)
    local lines = {}
    for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
    -- neither write was answered; the first happened, the second (If-None-Match
    -- against the first) was refused unseen; the third request is answered
    assert.matches("^nil closed ", lines[1])
    assert.matches("^nil closed ", lines[2])
    assert.are.equal("body first", lines[3])
    assert.are.equal(before + 2, srv.state().faults.lostanswers)
    assert(c:delete_object { bucket = "lab-m", key = "lost/one" })
  end)

  it("verifies signatures made by an independent signer: awscli (multipart, metadata, versions)", function()
    -- the lab checks with sbot.sigv4, the signer sbot.s3 uses; awscli signs on its own
    local function aws(args, secret)
      return helpers.sh(string.format("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=%s " ..
        "AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null " ..
        "/usr/bin/aws --endpoint-url %s --ca-bundle %s %s 2>&1", helpers.shquote(srv.access_key),
        helpers.shquote(secret or srv.secret_key), srv.region, srv.endpoint, helpers.shquote(srv.info.cert_file), args))
    end
    local f = tmp .. "/aws-in"
    assert(helpers.sh("head -c " .. (19 * MiB + 7) .. " /dev/urandom > " .. f))
    local ok, _, out = aws("s3 cp --no-progress --metadata origin=awscli " .. helpers.shquote(f) ..
      " s3://" .. srv.bucket .. "/aws/big")
    assert(ok, out)
    local h = assert(c:head_object{ bucket = srv.bucket, key = "aws/big" })
    assert.matches("%-%d+$", h.etag) -- awscli went multipart (8 MiB parts)
    assert.are.same({ origin = "awscli" }, h.metadata)
    local back = tmp .. "/aws-back"
    assert(c:get_object{ bucket = srv.bucket, key = "aws/big", file = back })
    assert.are.equal(servers.sha256sum(f), servers.sha256sum(back))
    assert(c:put_object{ bucket = srv.bucket, key = "aws/small", body = "from sbot", metadata = { by = "sbot" } })
    local ok2, _, out2 = aws("s3api head-object --bucket " .. srv.bucket .. " --key aws/small")
    assert(ok2, out2)
    assert.matches('"by": "sbot"', out2)
    local ok3, _, out3 = aws("s3api list-object-versions --bucket " .. srv.bucket .. " --prefix aws/")
    assert(ok3, out3)
    assert.matches('"Key": "aws/big"', out3)
    local bad, _, out4 = aws("s3 ls s3://" .. srv.bucket .. "/", srv.secret_key .. "x")
    assert.is_false(bad)
    assert.matches("SignatureDoesNotMatch", out4)
  end)

  it("refuses a bad fault spec on POST /lab/faults, and other odd requests with S3 errors", function()
    local r = assert(http.post(srv.info.url .. "/lab/faults", { body = "s3:nope=1", tls = srv.tls }))
    assert.are.equal(400, r.status)
    assert.matches("unknown fault 'nope'", r.body)
    assert.are.equal("InvalidBucketName", select(3, c:create_bucket("UPPER_case")))
    assert.are.equal("NoSuchBucket", select(3, c:put_object{ bucket = "no-such-bucket", key = "k", body = "x" }))
    -- suspended versioning: writes replace the "null" version, older ids stay readable
    assert(c:create_bucket("lab-s"))
    assert(c:put_bucket_versioning{ bucket = "lab-s", status = "Enabled" })
    local v1 = assert(c:put_object{ bucket = "lab-s", key = "k", body = "1" })
    assert(c:put_bucket_versioning{ bucket = "lab-s", status = "Suspended" })
    assert(c:put_object{ bucket = "lab-s", key = "k", body = "2" })
    assert(c:put_object{ bucket = "lab-s", key = "k", body = "3" })
    local ids = {}
    for v in c:list_object_versions{ bucket = "lab-s" } do ids[#ids + 1] = v.version_id end
    table.sort(ids)
    local want = { v1.version_id, "null" }
    table.sort(want)
    assert.are.same(want, ids)
    assert.are.equal("3", assert(c:get_object{ bucket = "lab-s", key = "k" }).body)
    assert.are.equal("1", assert(c:get_object{ bucket = "lab-s", key = "k", version_id = v1.version_id }).body)
    -- conditional GET
    local cur = assert(c:head_object{ bucket = "lab-s", key = "k" })
    assert.are.equal("PreconditionFailed", select(3, c:get_object{ bucket = "lab-s", key = "k", if_match = "abc" }))
    assert.are.equal("3", assert(c:get_object{ bucket = "lab-s", key = "k", if_match = cur.etag }).body)
  end)
end)

describe("sbot.lab.s3 policy evaluation", function()
  local lab_s3 = require "sbot.lab.s3"
  local function policy(statements) return { Version = "2012-10-17", Statement = statements } end
  local allow = { Effect = "Allow", Principal = { AWS = { "*" } }, Action = { "s3:GetObject" },
    Resource = { "arn:aws:s3:::b/pub/*" } }

  it("allows anonymous GetObject only on matching resources, principals and actions", function()
    local p = policy({ allow })
    assert.is_true(lab_s3.policy_allows_anonymous(p, "s3:GetObject", "arn:aws:s3:::b/pub/x/y"))
    assert.is_false(lab_s3.policy_allows_anonymous(p, "s3:GetObject", "arn:aws:s3:::b/pubx"))
    assert.is_false(lab_s3.policy_allows_anonymous(p, "s3:PutObject", "arn:aws:s3:::b/pub/x"))
    assert.is_false(lab_s3.policy_allows_anonymous(p, "s3:GetObject", "arn:aws:s3:::c/pub/x"))
    local named = { Effect = "Allow", Principal = { AWS = { "arn:aws:iam::1:user/u" } }, Action = "s3:*",
      Resource = "arn:aws:s3:::b/*" }
    assert.is_false(lab_s3.policy_allows_anonymous(policy({ named }), "s3:GetObject", "arn:aws:s3:::b/pub/x"))
    local star = { Effect = "Allow", Principal = "*", Action = "s3:Get*", Resource = "arn:aws:s3:::b/*" }
    assert.is_true(lab_s3.policy_allows_anonymous(policy(star), "s3:GetObject", "arn:aws:s3:::b/a"))
  end)

  it("lets a matching Deny win", function()
    local deny = { Effect = "Deny", Principal = "*", Action = "s3:GetObject", Resource = "arn:aws:s3:::b/pub/secret*" }
    local p = policy({ allow, deny })
    assert.is_true(lab_s3.policy_allows_anonymous(p, "s3:GetObject", "arn:aws:s3:::b/pub/open"))
    assert.is_false(lab_s3.policy_allows_anonymous(p, "s3:GetObject", "arn:aws:s3:::b/pub/secret.txt"))
  end)
end)
