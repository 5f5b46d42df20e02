-- sbot.crypto: published test vectors, file streaming checked against
-- coreutils, encodings round-tripped.
local crypto = require "sbot.crypto"
local helpers = require "helpers"

local hex = crypto.hex

describe("sbot.crypto", function()
  it("computes SHA-256 (FIPS 180-2 vectors)", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex(crypto.sha256("")))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex(crypto.sha256("abc")))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      hex(crypto.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    assert.are.equal(32, #crypto.sha256("x"))
  end)

  it("computes MD5 (RFC 1321 vectors)", function()
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", hex(crypto.md5("")))
    assert.are.equal("900150983cd24fb0d6963f7d28e17f72", hex(crypto.md5("abc")))
    assert.are.equal("57edf4a22be3c955ac49da2e2107b67a",
      hex(crypto.md5("12345678901234567890123456789012345678901234567890123456789012345678901234567890")))
  end)

  it("computes HMAC-SHA256 (RFC 4231 test cases 1, 2 and 6)", function()
    assert.are.equal("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
      hex(crypto.hmac_sha256(string.rep("\x0b", 20), "Hi There")))
    assert.are.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      hex(crypto.hmac_sha256("Jefe", "what do ya want for nothing?")))
    assert.are.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
      hex(crypto.hmac_sha256(string.rep("\xaa", 131), "Test Using Larger Than Block-Size Key - Hash Key First")))
  end)

  describe("files", function()
    local dir, path, data
    setup(function()
      dir = helpers.tmpdir("crypto")
      path = dir .. "/data.bin"
      -- several read blocks plus a tail, random content
      data = crypto.random_bytes(1000000) .. crypto.random_bytes(12345)
      helpers.write_file(path, data)
    end)
    teardown(function() os.execute("rm -rf " .. helpers.shquote(dir)) end)

    it("streams SHA-256 and MD5 over a file, equal to coreutils and to the string digest", function()
      local _, _, s = helpers.sh("sha256sum " .. helpers.shquote(path))
      local _, _, m = helpers.sh("md5sum " .. helpers.shquote(path))
      assert.are.equal(s:match("^%x+"), hex(assert(crypto.sha256_file(path))))
      assert.are.equal(m:match("^%x+"), hex(assert(crypto.md5_file(path))))
      assert.are.equal(hex(crypto.sha256(data)), hex(crypto.sha256_file(path)))
    end)

    it("streams HMAC-SHA256 over a file, equal to openssl dgst", function()
      local _, _, o = helpers.sh("openssl dgst -sha256 -hmac secretkey -r " .. helpers.shquote(path))
      assert.are.equal(o:match("^%x+"), hex(assert(crypto.hmac_sha256_file("secretkey", path))))
      assert.are.equal(hex(crypto.hmac_sha256("secretkey", data)), hex(crypto.hmac_sha256_file("secretkey", path)))
    end)

    it("hashes a byte range of a file", function()
      assert.are.equal(hex(crypto.sha256(data:sub(70001, 70000 + 300000))), hex(crypto.sha256_file(path, 70000, 300000)))
      assert.are.equal(hex(crypto.md5(data:sub(1000001))), hex(crypto.md5_file(path, 1000000)))
      assert.are.equal(hex(crypto.hmac_sha256("k", data:sub(11, 20))), hex(crypto.hmac_sha256_file("k", path, 10, 10)))
      assert.are.equal(hex(crypto.sha256("")), hex(crypto.sha256_file(path, 5, 0)))
      local v, err, code = crypto.sha256_file(path, #data - 5, 10)
      assert.is_nil(v)
      assert.matches("ends before the requested range", err)
      assert.are.equal("ERANGE", code) -- as http.request's body_file shorter than its range
      assert.has_error(function() crypto.sha256_file(path, -1) end)
    end)

    it("hashes byte ranges in a worker thread, feeding a whole-file hasher in the same read", function()
      local h = crypto.hasher("sha256")
      h:update("prefix")
      local ranges = { { 0, 400000 }, { 400000, 400000 }, { 800000, #data - 800000 } }
      local job = crypto.sha256_ranges(path, ranges, h)
      local digests = assert(job:wait())
      assert.are.equal(3, #digests)
      for i, r in ipairs(ranges) do
        assert.are.equal(hex(crypto.sha256(data:sub(r[1] + 1, r[1] + r[2]))), hex(digests[i]))
      end
      assert.are.equal(hex(crypto.sha256("prefix" .. data)), hex(h:digest()))
      assert.has_error(function() job:wait() end, "crypto job: already waited for or closed")
      job:close()
      job:close() -- closing twice is fine
      -- without a hasher; an empty range; a range past the end
      local d = assert(crypto.sha256_ranges(path, { { 5, 0 }, { 10, 20 } }):wait())
      assert.are.equal(hex(crypto.sha256("")), hex(d[1]))
      assert.are.equal(hex(crypto.sha256(data:sub(11, 30))), hex(d[2]))
      local v, err, code = crypto.sha256_ranges(path, { { 0, 10 }, { #data - 5, 10 } }):wait()
      assert.is_nil(v)
      assert.matches("ends before the requested range", err)
      assert.are.equal("ERANGE", code) -- the code http.request gives a body_file shorter than its range
      v, err, code = crypto.sha256_ranges(dir .. "/missing", { { 0, 1 } }):wait()
      assert.is_nil(v)
      assert.matches("cannot read .*/missing: No such file or directory", err)
      assert.are.equal("ENOENT", code)
      -- a job closed (or collected) while it runs is cancelled and joined
      local big = crypto.sha256_ranges(path, { { 0, #data }, { 0, #data }, { 0, #data } }, crypto.hasher("sha256"))
      big:close()
      assert.has_error(function() big:wait() end, "crypto job: already waited for or closed")
      crypto.sha256_ranges(path, { { 0, #data } })
      collectgarbage()
      assert.has_error(function() crypto.sha256_ranges(path, {}) end)
      assert.has_error(function() crypto.sha256_ranges(path, { { -1, 5 } }) end)
      assert.has_error(function() crypto.sha256_ranges(path, { "x" }) end)
      local done = crypto.hasher("sha256")
      done:digest()
      assert.has_error(function() crypto.sha256_ranges(path, { { 0, 1 } }, done) end)
    end)

    it("returns nil, message, errno name for an unreadable file", function()
      for _, f in ipairs({ crypto.sha256_file, crypto.md5_file }) do
        local v, err, code = f(dir .. "/missing")
        assert.is_nil(v)
        assert.matches("cannot read .*/missing: No such file or directory", err)
        assert.are.equal("ENOENT", code)
      end
      local v, err, code = crypto.hmac_sha256_file("k", dir)
      assert.is_nil(v)
      assert.matches("Is a directory", err)
      assert.are.equal("EISDIR", code)
    end)

    it("hashes incrementally with a hasher", function()
      local h = crypto.hasher("sha256")
      for i = 1, #data, 70000 do h:update(data:sub(i, i + 69999)) end
      assert.are.equal(hex(crypto.sha256(data)), hex(h:digest()))
      assert.has_error(function() h:update("x") end,
        "crypto hasher: already finished (digest() was called or it was closed)")
      local m <close> = crypto.hasher("md5")
      assert.are.equal(hex(crypto.md5("abc")), hex(m:update("a"):update("bc"):digest()))
      assert.has_error(function() crypto.hasher("sha1") end)
    end)
  end)

  it("hex-encodes bytes", function()
    assert.are.equal("", hex(""))
    assert.are.equal("00ff10", hex("\0\255\16"))
  end)

  it("base64 encodes and decodes (RFC 4648 vectors, random round trips)", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(vectors) do
      assert.are.equal(enc, crypto.base64_encode(plain))
      assert.are.equal(plain, crypto.base64_decode(enc))
    end
    for n = 0, 40 do
      local b = crypto.random_bytes(n)
      assert.are.equal(b, crypto.base64_decode(crypto.base64_encode(b)))
    end
    assert.are.equal("foobar", crypto.base64_decode("Zm9v\nYmFy"))
    assert.are.equal("\251\255", crypto.base64_decode("-_8")) -- URL-safe alphabet, no padding
    local v, err, code = crypto.base64_decode("Zm9v*")
    assert.is_nil(v)
    assert.are.equal("crypto.base64_decode: invalid base64 at byte 5", err)
    assert.are.equal("invalid", code)
    assert.is_nil((crypto.base64_decode("Zm9vY")))
    assert.is_nil((crypto.base64_decode("Zg==Zg==")))
  end)

  it("makes random bytes and version-4 UUIDs", function()
    assert.are.equal(0, #crypto.random_bytes(0))
    assert.are.equal(64, #crypto.random_bytes(64))
    assert.are_not.equal(crypto.random_bytes(16), crypto.random_bytes(16))
    assert.has_error(function() crypto.random_bytes(-1) end)
    local seen = {}
    for _ = 1, 100 do
      local u = crypto.uuid4()
      assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", u)
      assert.is_nil(seen[u])
      seen[u] = true
    end
  end)
end)
