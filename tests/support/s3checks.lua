--- Checks that run against every S3 server the suite starts (s3rver from npm
-- and the lab's S3 model), for the points where s3rver behaves like S3: one
-- definition, so the lab is held to what an independent implementation does.
--
--   require("s3checks").define(it, function() return {client = c, bucket = "b", tls = ...} end)
--
-- called inside a describe block (busted's `it` passed in) after its setup made the client.
local http = require "sbot.http"
local s3xml = require "sbot.s3xml"
local assert = require "luassert"

local M = {}

function M.define(it, get)
  it("answers ListObjectsV2 with max-keys=0 with an empty page that is not truncated", function()
    local t = get()
    assert(t.client:put_object { bucket = t.bucket, key = "mk0/a", body = "1" })
    local res = assert(t.client:_call { method = "GET", bucket = t.bucket,
      query = { ["list-type"] = "2", prefix = "mk0/", ["max-keys"] = "0" } })
    assert.are.equal(200, res.status)
    local root, doc = s3xml.parse(res.body)
    assert.are.equal("ListBucketResult", root)
    assert.are.equal("false", doc.IsTruncated)
    assert.are.equal("0", doc.KeyCount)
    assert.is_nil(doc.Contents)
    assert.are.same({}, assert(t.client:list_objects_all { bucket = t.bucket, prefix = "mk0/", max_keys = 0 }))
  end)

  it("serves a presigned GET with response-content-type", function()
    local t = get()
    assert(t.client:put_object { bucket = t.bucket, key = "rct/doc", body = "typed", content_type = "text/plain" })
    local url = assert(t.client:presign { bucket = t.bucket, key = "rct/doc",
      query = { ["response-content-type"] = "application/x-sbot-test" } })
    local r = assert(http.get(url, { tls = t.tls }))
    assert.are.equal(200, r.status, r.body)
    assert.are.equal("application/x-sbot-test", r.headers["content-type"])
    assert.are.equal("typed", r.body)
    -- the override is signed: changing it breaks the signature
    local tampered = url:gsub("x%-sbot%-test", "x-other")
    assert.are.equal(403, assert(http.get(tampered, { tls = t.tls })).status)
  end)

  it("names the key and the bucket in error documents", function()
    local t = get()
    local res = assert(t.client:_call { method = "GET", bucket = t.bucket, key = "err/missing",
      ok = { [404] = true } })
    local root, doc = s3xml.parse(res.body)
    assert.are.equal("Error", root)
    assert.are.equal("NoSuchKey", doc.Code)
    assert.are.equal("err/missing", doc.Key)
    res = assert(t.client:_call { method = "GET", bucket = "no-such-bucket-x", key = "k", ok = { [404] = true } })
    root, doc = s3xml.parse(res.body)
    assert.are.equal("NoSuchBucket", doc.Code)
    assert.are.equal("no-such-bucket-x", doc.BucketName)
    local _, err, code = t.client:get_object { bucket = t.bucket, key = "err/missing" }
    assert.are.equal("NoSuchKey", code)
    assert.matches("^NoSuchKey: .*%(GET " .. t.bucket:gsub("%-", "%%-") .. "/err/missing%)$", err)
  end)

  it("refuses bucket names with '..' or fewer than 3 characters", function()
    local t = get()
    for _, name in ipairs { "a..b", "ab" } do
      local ok, _, code = t.client:create_bucket(name)
      assert.is_nil(ok, name)
      assert.are.equal("InvalidBucketName", code, name)
    end
  end)

  it("answers a range that starts past the end with 416 InvalidRange", function()
    local t = get()
    assert(t.client:put_object { bucket = t.bucket, key = "rng/ten", body = "0123456789" })
    local ok, _, code = t.client:get_object { bucket = t.bucket, key = "rng/ten", range = { 10 } }
    assert.is_nil(ok)
    assert.are.equal("InvalidRange", code)
    local g = assert(t.client:get_object { bucket = t.bucket, key = "rng/ten", range = { 7, 100 } })
    assert.are.equal(206, g.status)
    assert.are.equal("789", g.body)
  end)

  it("accepts a request signed from a URL-form path, and a presigned PUT (UNSIGNED-PAYLOAD)", function()
    local t = get()
    local sigv4 = require "sbot.sigv4"
    local ep = t.client.endpoint
    local sg = sigv4.sign { method = "PUT", url = "/" .. t.bucket .. "/enc/a%20b%2Bc%25", host = ep:match("^https?://([^/]+)"),
      body = "url form", access_key = t.access_key, secret_key = t.secret_key, region = "us-east-1", service = "s3" }
    local r = assert(http.request { method = "PUT", url = ep .. sg.uri, headers = sg.headers, body = "url form", tls = t.tls })
    assert.are.equal(200, r.status, r.body)
    assert.are.equal("url form", assert(t.client:get_object { bucket = t.bucket, key = "enc/a b+c%" }).body)
    local url = assert(t.client:presign { bucket = t.bucket, key = "enc/presigned put", method = "PUT", expires = 300 })
    assert.matches("X%-Amz%-SignedHeaders=host&", url)
    r = assert(http.request { method = "PUT", url = url, body = "sent without credentials", tls = t.tls })
    assert.are.equal(200, r.status, r.body)
    assert.are.equal("sent without credentials", assert(t.client:get_object { bucket = t.bucket, key = "enc/presigned put" }).body)
    -- the URL is for PUT only
    assert.are.equal(403, assert(http.request { method = "GET", url = url, tls = t.tls }).status)
  end)

  it("fails verify_sha256 when the bytes do not match the stored SHA-256, and removes the file", function()
    local t = get()
    local wrong = string.rep("0", 64)
    assert(t.client:put_object { bucket = t.bucket, key = "sha/bad", body = "payload",
      metadata = { ["sbot-sha256"] = wrong } })
    local r, err, code = t.client:get_object { bucket = t.bucket, key = "sha/bad", verify_sha256 = true }
    assert.is_nil(r)
    assert.are.equal("Checksum", code)
    assert.matches("differs from the stored " .. wrong, err)
    local out = t.tmp .. "/sha-bad.out"
    r, err, code = t.client:get_object { bucket = t.bucket, key = "sha/bad", file = out, verify_sha256 = true }
    assert.is_nil(r)
    assert.are.equal("Checksum", code)
    assert.is_nil(io.open(out, "rb"))
    -- without verify_sha256 the same read succeeds; a right digest verifies
    assert.are.equal("payload", assert(t.client:get_object { bucket = t.bucket, key = "sha/bad" }).body)
    assert(t.client:put_object { bucket = t.bucket, key = "sha/good", body = "payload", sha256_metadata = true })
    local good = assert(t.client:get_object { bucket = t.bucket, key = "sha/good", file = out, verify_sha256 = true })
    assert.are.equal("239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5", good.sha256)
  end)
end

return M
