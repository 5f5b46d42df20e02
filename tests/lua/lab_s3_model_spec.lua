-- The lab's S3 model (lua/sbot/lab/s3.lua) called directly, without the
-- network: requests signed with sbot.sigv4 (or unsigned = anonymous) go to
-- dev.handler, the answers are read as S3 clients read them. The points here
-- are where S3 behaves in a particular way (docs/lab.md, "The S3 model");
-- tests/lua/lab_s3_spec.lua drives the same model through a real `sbot lab`.
local helpers = require "helpers"
local lab_s3 = require "sbot.lab.s3"
local sigv4 = require "sbot.sigv4"
local crypto = require "sbot.crypto"
local s3xml = require "sbot.s3xml"
local json = require "sbot.json"
local fsio = require "sbot.fsio"

local AK, SK = "AKIALABMODEL0000TEST", "lab-model-secret"

local function encode_query(q)
  local names = {}
  for k in pairs(q or {}) do names[#names + 1] = k end
  table.sort(names)
  local out = {}
  for _, k in ipairs(names) do
    out[#out + 1] = sigv4.uri_encode(k) .. (q[k] == "" and "" or ("=" .. sigv4.uri_encode(q[k])))
  end
  return table.concat(out, "&")
end

--- Call the model like httpd would. o: query (table), headers, body,
-- anonymous (no signature). Returns {status, headers (lower-case names), body,
-- file = options.file, root, doc (parsed XML)}.
local function call(dev, method, path, o)
  o = o or {}
  local headers = { host = "s3.lab.test" }
  for k, v in pairs(o.headers or {}) do headers[k:lower()] = v end
  local raw_query = encode_query(o.query)
  local body = o.body or ""
  if not o.anonymous then
    local s = sigv4.sign { method = method, path = path, query = raw_query, headers = headers,
      body = body, access_key = AK, secret_key = SK, region = dev.region, service = "s3" }
    for k, v in pairs(s.headers) do headers[k:lower()] = v end
  end
  local req = { method = method, path = path, query = o.query or {}, raw_query = raw_query,
    headers = headers, body = body, remote = "127.0.0.1:1" }
  local status, h, b, opt = dev.handler(req)
  local r = { status = status, headers = {}, body = b, opt = opt }
  for k, v in pairs(h or {}) do r.headers[k:lower()] = v end
  if opt and opt.file then
    local f = assert(io.open(opt.file, "rb"))
    f:seek("set", opt.offset or 0)
    r.streamed = opt.length == 0 and "" or (opt.length and f:read(opt.length) or f:read("a"))
    f:close()
  end
  if type(b) == "string" and b:find("^<%?xml") then r.root, r.doc = s3xml.parse(b) end
  return r
end

local function md5b64(s) return crypto.base64_encode(crypto.md5(s)) end

describe("sbot.lab.s3 model", function()
  local tmp, dev

  before_each(function()
    tmp = helpers.tmpdir("s3model")
    dev = assert(lab_s3.new { dir = tmp, access_key = AK, secret_key = SK })
    assert.are.equal(200, call(dev, "PUT", "/mdl").status)
  end)

  after_each(function()
    dev.close()
    os.execute("rm -rf " .. helpers.shquote(tmp))
  end)

  local function put(key, body, headers)
    local r = call(dev, "PUT", "/mdl/" .. key, { body = body, headers = headers })
    assert.are.equal(200, r.status, r.body)
    return r
  end

  it("streams GET bodies from the object's file instead of building them in memory", function()
    put("big", string.rep("x", 100000))
    local r = call(dev, "GET", "/mdl/big")
    assert.are.equal(200, r.status)
    assert.is_nil(r.body) -- no string body: httpd sends the file
    assert.are.equal(100000, #r.streamed)
    local h = call(dev, "HEAD", "/mdl/big")
    assert.is_nil(h.body)
    assert.are.equal(h.opt.file, r.opt.file)
    local part = call(dev, "GET", "/mdl/big", { headers = { Range = "bytes=10-19" } })
    assert.are.equal(206, part.status)
    assert.are.same({ file = r.opt.file, offset = 10, length = 10 }, part.opt)
    assert.are.equal("bytes 10-19/100000", part.headers["content-range"])
  end)

  it("answers ListObjects with max-keys=0 with an empty page that is not truncated", function()
    put("a", "1")
    put("b", "2")
    for _, q in ipairs { { ["list-type"] = "2", ["max-keys"] = "0" }, { ["max-keys"] = "0" },
        { versions = "", ["max-keys"] = "0" } } do
      local r = call(dev, "GET", "/mdl", { query = q })
      assert.are.equal(200, r.status, r.body)
      assert.are.equal("false", r.doc.IsTruncated)
      assert.are.equal("0", r.doc.MaxKeys)
      assert.is_nil(r.doc.Contents)
      assert.is_nil(r.doc.Version)
      assert.is_nil(r.doc.NextContinuationToken)
    end
    assert.are.equal("0", call(dev, "GET", "/mdl", { query = { ["list-type"] = "2", ["max-keys"] = "0" } }).doc.KeyCount)
  end)

  it("reads Range headers as S3 does: invalid ones ignored, unsatisfiable ones 416", function()
    put("ten", "0123456789")
    put("empty", "")
    local function get(key, range) return call(dev, "GET", "/mdl/" .. key, { headers = { Range = range } }) end
    local r = get("ten", "bytes=5-2") -- first > last: not a valid range, the whole object
    assert.are.equal(200, r.status)
    assert.are.equal("0123456789", r.streamed)
    assert.is_nil(r.headers["content-range"])
    assert.are.equal("0123456789", get("ten", "bytes=0-1,4-5").streamed) -- several ranges: ignored
    assert.are.equal("0123456789", get("ten", "items=0-1").streamed)
    assert.are.equal("3456", get("ten", "bytes=3-6").streamed)
    assert.are.equal("89", get("ten", "bytes=-2").streamed)
    assert.are.equal("789", get("ten", "bytes=7-100").streamed)
    for _, case in ipairs { { "ten", "bytes=10-" }, { "ten", "bytes=-0" }, { "empty", "bytes=0-3" },
        { "empty", "bytes=0-" }, { "empty", "bytes=-1" } } do
      local e = get(case[1], case[2])
      assert.are.equal(416, e.status, case[2])
      assert.are.equal("InvalidRange", e.doc.Code)
      assert.are.equal(case[2], e.doc.RangeRequested)
    end
    assert.are.equal("10", get("ten", "bytes=10-").doc.ActualObjectSize)
    local whole = get("empty", "bytes=5-2") -- invalid, ignored: 200 with the (empty) object
    assert.are.equal(200, whole.status)
    assert.are.equal("", whole.body)
  end)

  it("answers 200 when you re-create your own bucket in us-east-1, 409 elsewhere", function()
    local again = call(dev, "PUT", "/mdl")
    assert.are.equal(200, again.status)
    assert.are.equal("/mdl", again.headers.location)
    local eu = assert(lab_s3.new { dir = tmp .. "/eu", access_key = AK, secret_key = SK, region = "eu-west-1" })
    local cfg = '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' ..
      "<LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"
    assert.are.equal(200, call(eu, "PUT", "/eu1", { body = cfg }).status)
    local dup = call(eu, "PUT", "/eu1", { body = cfg })
    assert.are.equal(409, dup.status)
    assert.are.equal("BucketAlreadyOwnedByYou", dup.doc.Code)
    assert.are.equal("eu1", dup.doc.BucketName)
    local none = call(eu, "PUT", "/eu2")
    assert.are.equal("IllegalLocationConstraintException", none.doc.Code)
    local other = call(dev, "PUT", "/eu3", { body = cfg })
    assert.are.equal(400, other.status)
    assert.are.equal("InvalidLocationConstraint", other.doc.Code)
    eu.close()
  end)

  it("applies S3's bucket naming rules", function()
    for _, name in ipairs { "ab", string.rep("a", 64), "Upper", "a..b", "-ab", "ab-", "a_b", "192.168.1.10",
        "xn--abc", "sthree-abc", "amzn-s3-demo-x", "abc-s3alias", "abc--ol-s3", "abc.mrap", "abc--x-s3" } do
      local r = call(dev, "PUT", "/" .. name)
      assert.are.equal(400, r.status, name)
      assert.are.equal("InvalidBucketName", r.doc.Code, name)
      assert.are.equal(name, r.doc.BucketName)
    end
    for _, name in ipairs { "abc", "a.b-c.1", "192.168.1", "my-xn--bucket", string.rep("a", 63) } do
      assert.are.equal(200, call(dev, "PUT", "/" .. name).status, name)
    end
  end)

  it("answers a malformed Content-MD5 with InvalidDigest and a wrong one with BadDigest", function()
    for _, md5 in ipairs { "notbase64!", "AAAA", md5b64("x") .. "AAAA", "" } do
      local r = call(dev, "PUT", "/mdl/k", { body = "data", headers = { ["Content-MD5"] = md5 } })
      assert.are.equal(400, r.status, md5)
      assert.are.equal("InvalidDigest", r.doc.Code, md5)
    end
    local r = call(dev, "PUT", "/mdl/k", { body = "data", headers = { ["Content-MD5"] = md5b64("other") } })
    assert.are.equal("BadDigest", r.doc.Code)
    assert.are.equal(200, call(dev, "PUT", "/mdl/k", { body = "data", headers = { ["Content-MD5"] = md5b64("data") } }).status)
    -- DeleteObjects and lifecycle configurations require it
    local del = call(dev, "POST", "/mdl", { query = { delete = "" },
      body = "<Delete><Object><Key>k</Key></Object></Delete>" })
    assert.are.equal("InvalidRequest", del.doc.Code)
    assert.matches("Content%-MD5", del.doc.Message)
  end)

  it("overrides response headers for a presigned GET with response-content-type", function()
    put("doc", "hello")
    local p = sigv4.presign { method = "GET", path = "/mdl/doc", host = "s3.lab.test",
      query = { ["response-content-type"] = "text/x-sbot", ["response-content-disposition"] = "attachment" },
      access_key = AK, secret_key = SK, region = dev.region, service = "s3" }
    local raw = p.uri:match("%?(.*)$")
    local q = {}
    for part in raw:gmatch("[^&]+") do
      local k, v = part:match("^([^=]*)=?(.*)$")
      q[k:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)] =
        v:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)
    end
    local status, h, _, opt = dev.handler { method = "GET", path = "/mdl/doc", query = q, raw_query = raw,
      headers = { host = "s3.lab.test" }, body = "" }
    assert.are.equal(200, status)
    assert.are.equal("text/x-sbot", h["Content-Type"])
    assert.are.equal("attachment", h["Content-Disposition"])
    assert.is_string(opt.file)
  end)

  it("writes error documents with Key, BucketName, UploadId, Condition, RequestId and HostId", function()
    local r = call(dev, "GET", "/mdl/missing")
    assert.are.equal(404, r.status)
    assert.are.equal("Error", r.root)
    assert.are.equal("NoSuchKey", r.doc.Code)
    assert.are.equal("missing", r.doc.Key)
    assert.matches("^%x+$", r.doc.RequestId)
    assert.are.equal(r.headers["x-amz-request-id"], r.doc.RequestId)
    assert.is_true(#r.doc.HostId > 20)
    assert.are.equal(r.headers["x-amz-id-2"], r.doc.HostId)
    assert.is_nil(r.doc.Resource)
    local nb = call(dev, "GET", "/nobucket/k")
    assert.are.equal("NoSuchBucket", nb.doc.Code)
    assert.are.equal("nobucket", nb.doc.BucketName)
    local nu = call(dev, "PUT", "/mdl/k", { query = { partNumber = "1", uploadId = "nope" }, body = "x" })
    assert.are.equal("NoSuchUpload", nu.doc.Code)
    assert.are.equal("nope", nu.doc.UploadId)
    put("k", "v")
    local pc = call(dev, "PUT", "/mdl/k", { body = "w", headers = { ["If-None-Match"] = "*" } })
    assert.are.equal(412, pc.status)
    assert.are.equal("If-None-Match", pc.doc.Condition)
    local head = call(dev, "HEAD", "/mdl/missing")
    assert.are.equal(404, head.status)
    assert.are.equal("", head.body)
    assert.is_string(head.headers["x-amz-request-id"])
  end)

  it("judges anonymous requests by the bucket policy", function()
    put("pub/a", "public")
    put("priv/b", "private")
    local function anon(method, path, o)
      o = o or {}
      o.anonymous = true
      return call(dev, method, path, o)
    end
    -- no policy: everything refused
    assert.are.equal(403, anon("GET", "/mdl/pub/a").status)
    assert.are.equal("AccessDenied", anon("GET", "/mdl/pub/a").doc.Code)
    assert.are.equal(403, anon("GET", "/mdl").status)
    assert.are.equal(403, anon("GET", "/").status)
    -- a bucket that does not exist is NoSuchBucket, also anonymously
    assert.are.equal("NoSuchBucket", anon("GET", "/nobucket/k").doc.Code)
    local policy = json.encode { Version = "2012-10-17", Statement = {
      { Effect = "Allow", Principal = { AWS = { "*" } }, Action = { "s3:GetObject" }, Resource = { "arn:aws:s3:::mdl/pub/*" } },
      { Effect = "Allow", Principal = "*", Action = "s3:PutObject", Resource = "arn:aws:s3:::mdl/drop/*" },
      { Effect = "Deny", Principal = "*", Action = "s3:GetObject", Resource = "arn:aws:s3:::mdl/pub/secret*" },
    } }
    assert.are.equal(204, call(dev, "PUT", "/mdl", { query = { policy = "" }, body = policy }).status)
    local g = anon("GET", "/mdl/pub/a")
    assert.are.equal(200, g.status)
    assert.are.equal("public", g.streamed)
    assert.are.equal(200, anon("HEAD", "/mdl/pub/a").status)
    assert.are.equal(403, anon("GET", "/mdl/priv/b").status)
    put("pub/secret.txt", "s")
    assert.are.equal(403, anon("GET", "/mdl/pub/secret.txt").status) -- Deny wins
    -- without s3:ListBucket a missing key is 403, not 404
    assert.are.equal(403, anon("GET", "/mdl/pub/missing").status)
    assert.are.equal(403, anon("GET", "/mdl").status)
    assert.are.equal(403, anon("GET", "/mdl/pub/a", { query = { versionId = "null" } }).status) -- GetObjectVersion
    assert.are.equal(200, anon("PUT", "/mdl/drop/x", { body = "anon" }).status)
    assert.are.equal(403, anon("PUT", "/mdl/pub/x", { body = "anon" }).status)
    assert.are.equal(403, anon("DELETE", "/mdl/pub/a").status)
    assert.are.equal(403, anon("GET", "/mdl", { query = { policy = "" } }).status)
    local rct = anon("GET", "/mdl/pub/a", { query = { ["response-content-type"] = "text/plain" } })
    assert.are.equal(400, rct.status)
    assert.are.equal("InvalidRequest", rct.doc.Code)
    local body = "<Delete><Object><Key>pub/a</Key></Object></Delete>"
    local d = anon("POST", "/mdl", { query = { delete = "" }, body = body, headers = { ["Content-MD5"] = md5b64(body) } })
    assert.are.equal(200, d.status)
    assert.are.equal("AccessDenied", d.doc.Error[1].Code)
    assert.are.equal(200, call(dev, "GET", "/mdl/pub/a").status) -- still there
    -- s3:ListBucket on the bucket opens listing, and missing keys become 404
    policy = json.encode { Statement = {
      { Effect = "Allow", Principal = "*", Action = { "s3:ListBucket", "s3:GetObject" },
        Resource = { "arn:aws:s3:::mdl", "arn:aws:s3:::mdl/pub/*" } } } }
    assert.are.equal(204, call(dev, "PUT", "/mdl", { query = { policy = "" }, body = policy }).status)
    local l = anon("GET", "/mdl", { query = { ["list-type"] = "2" } })
    assert.are.equal(200, l.status)
    assert.are.equal(404, anon("GET", "/mdl/pub/missing").status)
    -- a condition the model cannot evaluate is refused, not ignored
    local cond = json.encode { Statement = { { Effect = "Allow", Principal = "*", Action = "s3:GetObject",
      Resource = "arn:aws:s3:::mdl/*", Condition = { IpAddress = { ["aws:SourceIp"] = "10.0.0.0/8" } } } } }
    local c = call(dev, "PUT", "/mdl", { query = { policy = "" }, body = cond })
    assert.are.equal(501, c.status)
    assert.matches("Condition", c.doc.Message)
  end)

  it("keeps lifecycle configurations: validated, returned, deleted", function()
    assert.are.equal("NoSuchLifecycleConfiguration", call(dev, "GET", "/mdl", { query = { lifecycle = "" } }).doc.Code)
    local xml = '<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ID>sbot</ID>' ..
      "<Filter><Prefix>isos/</Prefix></Filter><Status>Enabled</Status>" ..
      "<NoncurrentVersionExpiration><NoncurrentDays>30</NoncurrentDays></NoncurrentVersionExpiration>" ..
      "<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload>" ..
      "</Rule></LifecycleConfiguration>"
    local nomd5 = call(dev, "PUT", "/mdl", { query = { lifecycle = "" }, body = xml })
    assert.are.equal("InvalidRequest", nomd5.doc.Code)
    local bad = xml:gsub("<NoncurrentDays>30", "<NoncurrentDays>0")
    local r = call(dev, "PUT", "/mdl", { query = { lifecycle = "" }, body = bad, headers = { ["Content-MD5"] = md5b64(bad) } })
    assert.are.equal(400, r.status)
    assert.are.equal("InvalidArgument", r.doc.Code)
    local noact = '<LifecycleConfiguration><Rule><ID>x</ID><Filter/><Status>Enabled</Status></Rule></LifecycleConfiguration>'
    assert.are.equal("InvalidArgument", call(dev, "PUT", "/mdl", { query = { lifecycle = "" }, body = noact,
      headers = { ["Content-MD5"] = md5b64(noact) } }).doc.Code)
    assert.are.equal(200, call(dev, "PUT", "/mdl", { query = { lifecycle = "" }, body = xml,
      headers = { ["Content-MD5"] = md5b64(xml) } }).status)
    local got = call(dev, "GET", "/mdl", { query = { lifecycle = "" } })
    assert.are.equal("LifecycleConfiguration", got.root)
    assert.are.equal("30", got.doc.Rule.NoncurrentVersionExpiration.NoncurrentDays)
    assert.are.equal(204, call(dev, "DELETE", "/mdl", { query = { lifecycle = "" } }).status)
    assert.are.equal(404, call(dev, "GET", "/mdl", { query = { lifecycle = "" } }).status)
  end)

  it("shares the data file of a copy, and frees it only when no version uses it", function()
    put("src", "copied bytes")
    local c = call(dev, "PUT", "/mdl/dst", { headers = { ["x-amz-copy-source"] = "/mdl/src" } })
    assert.are.equal(200, c.status)
    local a, b = call(dev, "GET", "/mdl/src"), call(dev, "GET", "/mdl/dst")
    assert.are.equal(a.opt.file, b.opt.file)
    assert.are.equal(200, call(dev, "DELETE", "/mdl/src").status == 204 and 200 or 0)
    assert.are.equal("copied bytes", call(dev, "GET", "/mdl/dst").streamed)
    assert.is_table(fsio.stat(b.opt.file))
    call(dev, "DELETE", "/mdl/dst")
    assert.is_nil(fsio.stat(b.opt.file))
  end)

  it("removes its data directory on close without a shell", function()
    put("x", "1")
    local data = dev.state().data_dir
    assert.is_table(fsio.stat(data))
    dev.close()
    assert.is_nil(fsio.stat(data))
    dev = assert(lab_s3.new { dir = tmp, access_key = AK, secret_key = SK })
  end)
end)
