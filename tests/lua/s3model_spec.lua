-- sbot.s3 against tests/servers/s3model.py: what s3rver lacks (versioning,
-- bucket policy, conditional writes, multipart listing and abort, an error
-- inside a 200 answer, byte-exact keys), with fault injection.
local helpers = require "helpers"
local servers = require "s3servers"
local s3 = require "sbot.s3"
local http = require "sbot.http"
local json = require "sbot.json"

local MiB = 1024 * 1024

describe("sbot.s3 against the S3 model", function()
  local srv, c, tmp

  local function control(t)
    local r = assert(http.post(srv.endpoint .. "/__control", { body = json.encode(t) }))
    assert.are.equal(200, r.status)
  end

  local function uploads(bucket)
    return assert(c:list_multipart_uploads{ bucket = bucket or "m" })
  end

  setup(function()
    srv = servers.start_model()
    tmp = helpers.tmpdir("s3model")
    c = assert(s3.client{ endpoint = srv.endpoint, access_key = servers.access_key,
      secret_key = servers.secret_key, part_size = 5 * MiB, multipart_threshold = 5 * MiB,
      concurrency = 3 })
    assert(c:create_bucket("m"))
  end)

  teardown(function()
    servers.stop(srv)
    if tmp then os.execute("rm -rf " .. helpers.shquote(tmp)) end
  end)

  before_each(function() control({}) end)

  it("checks signatures too (wrong secret rejected)", function()
    local bad = assert(s3.client{ endpoint = srv.endpoint, access_key = servers.access_key, secret_key = "nope" })
    assert.are.equal("SignatureDoesNotMatch", select(3, bad:head_object{ bucket = "m", key = "x" }) and
      select(3, bad:list_buckets()))
    assert.is_true(c:create_bucket("m")) -- BucketAlreadyOwnedByYou is success
  end)

  it("keeps '//', '.' and '..' segments and XML-special characters in keys", function()
    local keys = { "k/x//y", "k/x/../y", "k/./z", "k/a&b<c>'\"", "k/..", "k/." }
    for i, k in ipairs(keys) do assert(c:put_object{ bucket = "m", key = k, body = "v" .. i }) end
    for i, k in ipairs(keys) do
      assert.are.equal("v" .. i, assert(c:get_object{ bucket = "m", key = k }).body, k)
    end
    local listed = {}
    for _, o in ipairs(assert(c:list_objects_all{ bucket = "m", prefix = "k/" })) do listed[#listed + 1] = o.key end
    table.sort(keys)
    assert.are.same(keys, listed)
    local r = assert(c:delete_objects{ bucket = "m", objects = keys })
    assert.are.equal(#keys, #r.deleted)
  end)

  it("writes conditionally: If-None-Match * and If-Match etag", function()
    local r = assert(c:put_object{ bucket = "m", key = "lock", body = "owner-1", if_none_match = "*" })
    local again, err, code = c:put_object{ bucket = "m", key = "lock", body = "owner-2", if_none_match = "*" }
    assert.is_nil(again)
    assert.are.equal("PreconditionFailed", code)
    assert.matches("^PreconditionFailed: .*%(PUT m/lock%)$", err)
    assert.are.equal("owner-1", assert(c:get_object{ bucket = "m", key = "lock" }).body)
    local r2 = assert(c:put_object{ bucket = "m", key = "lock", body = "owner-1b", if_match = r.etag })
    local stale, _, scode = c:put_object{ bucket = "m", key = "lock", body = "owner-3", if_match = r.etag }
    assert.is_nil(stale)
    assert.are.equal("PreconditionFailed", scode)
    assert.are.equal("owner-1b", assert(c:get_object{ bucket = "m", key = "lock" }).body)
    assert.are_not.equal(r.etag, r2.etag)
    -- the same for a multipart upload: the condition is checked at completion
    local big = tmp .. "/cond"
    assert(helpers.sh("head -c " .. (11 * MiB) .. " /dev/urandom > " .. big))
    local mp, merr, mcode = c:put_object{ bucket = "m", key = "lock", file = big, if_none_match = "*" }
    assert.is_nil(mp, merr)
    assert.are.equal("PreconditionFailed", mcode)
    assert.are.same({}, uploads())
  end)

  it("manages versioning, delete markers and version listings", function()
    assert(c:create_bucket("v"))
    assert.is_nil(assert(c:get_bucket_versioning("v")).status)
    assert.is_true(c:put_bucket_versioning{ bucket = "v", status = "Enabled" })
    assert.are.equal("Enabled", assert(c:get_bucket_versioning("v")).status)
    local v1 = assert(c:put_object{ bucket = "v", key = "doc", body = "one" })
    local v2 = assert(c:put_object{ bucket = "v", key = "doc", body = "two" })
    assert.is_string(v1.version_id)
    assert.are_not.equal(v1.version_id, v2.version_id)
    local d = assert(c:delete_object{ bucket = "v", key = "doc" })
    assert.is_true(d.delete_marker)
    assert.are.equal("NoSuchKey", select(3, c:get_object{ bucket = "v", key = "doc" }))
    assert.are.equal("one", assert(c:get_object{ bucket = "v", key = "doc", version_id = v1.version_id }).body)
    local seen = {}
    for ver, err in c:list_object_versions{ bucket = "v", max_keys = 1 } do
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
    local r = assert(c:delete_objects{ bucket = "v", objects = objs })
    assert.are.equal(3, #r.deleted)
    local left = 0
    for _ in c:list_object_versions{ bucket = "v" } do left = left + 1 end
    assert.are.equal(0, left)
    assert.is_true(c:put_bucket_versioning{ bucket = "v", status = "Suspended" })
    assert.are.equal("Suspended", assert(c:get_bucket_versioning("v")).status)
    assert.has_error(function() c:put_bucket_versioning{ bucket = "v", status = "on" } end)
  end)

  it("puts, gets and deletes a bucket policy", function()
    local none, _, code = c:get_bucket_policy("m")
    assert.is_nil(none)
    assert.are.equal("NoSuchBucketPolicy", code)
    local policy = { Version = "2012-10-17", Statement = { { Effect = "Allow", Principal = { AWS = { "*" } },
      Action = { "s3:GetObject" }, Resource = { "arn:aws:s3:::m/public/*" } } } }
    assert.is_true(c:put_bucket_policy{ bucket = "m", policy = policy })
    local got = assert(json.decode(assert(c:get_bucket_policy("m"))))
    assert.are.equal("arn:aws:s3:::m/public/*", got.Statement[1].Resource[1])
    local bad, _, bcode = c:put_bucket_policy{ bucket = "m", policy = "{not json" }
    assert.is_nil(bad)
    assert.are.equal("MalformedPolicy", bcode)
    assert.is_true(c:delete_bucket_policy("m"))
    assert.are.equal("NoSuchBucketPolicy", select(3, c:get_bucket_policy("m")))
  end)

  it("aborts the multipart upload when a part fails: no upload is left", function()
    local big = tmp .. "/fail"
    assert(helpers.sh("head -c " .. (23 * MiB) .. " /dev/urandom > " .. big))
    control({ fail_part = 4 })
    local r, err, code = c:put_object{ bucket = "m", key = "mp/fail", file = big }
    assert.is_nil(r)
    assert.are.equal("InternalError", code)
    assert.matches("part 4", err)
    assert.are.same({}, uploads())
    assert.are.equal("NoSuchKey", select(3, c:head_object{ bucket = "m", key = "mp/fail" }))
  end)

  it("aborts the multipart upload when interrupted midway (error raised in progress)", function()
    local big = tmp .. "/intr"
    assert(helpers.sh("head -c " .. (30 * MiB) .. " /dev/urandom > " .. big))
    local ci = assert(s3.client{ endpoint = srv.endpoint, access_key = servers.access_key,
      secret_key = servers.secret_key, part_size = 5 * MiB, multipart_threshold = 5 * MiB })
    local ok, err = pcall(ci.put_object, ci, { bucket = "m", key = "mp/intr", file = big,
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
    local r, err, code = c:put_object{ bucket = "m", key = "mp/chg", file = big, sha256_metadata = true,
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
    assert.are.equal("NoSuchKey", select(3, c:head_object{ bucket = "m", key = "mp/chg" }))
  end)

  it("treats an error inside a 200 CompleteMultipartUpload answer as an error and aborts", function()
    local big = tmp .. "/c200"
    assert(helpers.sh("head -c " .. (11 * MiB) .. " /dev/urandom > " .. big))
    control({ complete_error = true })
    local r, err, code = c:put_object{ bucket = "m", key = "mp/c200", file = big }
    assert.is_nil(r)
    assert.are.equal("InternalError", code)
    assert.matches("POST m/mp/c200", err)
    control({})
    assert.are.same({}, uploads())
  end)

  it("uploads multipart and the parts reassemble exactly (etag -N)", function()
    local big = tmp .. "/ok"
    assert(helpers.sh("head -c " .. (17 * MiB + 1) .. " /dev/urandom > " .. big))
    local r = assert(c:put_object{ bucket = "m", key = "mp/ok", file = big, metadata = { a = "b" } })
    assert.are.equal(4, r.parts)
    assert.matches("%-4$", r.etag)
    local out = tmp .. "/ok.out"
    assert(c:get_object{ bucket = "m", key = "mp/ok", file = out })
    assert.are.equal(servers.sha256sum(big), servers.sha256sum(out))
    assert.are.same({ a = "b" }, assert(c:head_object{ bucket = "m", key = "mp/ok" }).metadata)
  end)
end)
