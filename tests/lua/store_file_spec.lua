-- The file:// backend of sbot.store and the sbot.fsio / sbot.crypto primitives under it.
local helpers = require "helpers"
local store = require "sbot.store"
local fsio = require "sbot.fsio"
local crypto = require "sbot.crypto"

local function sha256sum(path)
  local _, _, out = helpers.sh("sha256sum " .. helpers.shquote(path))
  return out:match("^(%x+)")
end

describe("sbot.store file://", function()
  local root, st

  before_each(function()
    root = helpers.tmpdir("store")
    st = assert(store.open("file://" .. root .. "/artifacts"))
  end)

  after_each(function() os.execute("rm -rf " .. helpers.shquote(root)) end)

  it("puts a string and reads it back with size, sha256 and metadata", function()
    local r = assert(st:put("runs/1/results.json", '{"ok":true}', { run = "1", Owner = "ops" }))
    assert.are.equal("runs/1/results.json", r.key)
    assert.are.equal(11, r.size)
    assert.are.equal(crypto.hex(crypto.sha256('{"ok":true}')), r.sha256)
    assert.are.equal(sha256sum(root .. "/artifacts/runs/1/results.json"), r.sha256)
    local data, info = assert(st:get("runs/1/results.json"))
    assert.are.equal('{"ok":true}', data)
    assert.are.same({ run = "1", owner = "ops" }, info.metadata)
    local h = assert(st:head("runs/1/results.json"))
    assert.are.equal(11, h.size)
    assert.are.equal(r.sha256, h.sha256)
  end)

  it("streams a file in and out, checksums equal to sha256sum", function()
    local src = root .. "/src.bin"
    assert.is_true(helpers.sh("head -c 3000000 /dev/urandom > " .. helpers.shquote(src)))
    local r = assert(st:put("isos/a.iso", { file = src }))
    assert.are.equal(3000000, r.size)
    assert.are.equal(sha256sum(src), r.sha256)
    local out = root .. "/out.bin"
    local info = assert(st:get("isos/a.iso", { file = out }))
    assert.are.equal(out, info.file)
    assert.are.equal(sha256sum(src), sha256sum(out))
  end)

  it("puts a file that is already the object (a run's artifact written in place) without copying it", function()
    local path = root .. "/artifacts/runs/1/r630.json"
    assert(fsio.mkdirs(root .. "/artifacts/runs/1"))
    helpers.write_file(path, '{"after":{}}')
    local before = assert(fsio.stat(path))
    -- the same file through another spelling of its path
    local r = assert(st:put("runs/1/r630.json", { file = root .. "/artifacts/runs//1/../1/r630.json" }, { run = "1" }))
    assert.are.equal(before.ino, assert(fsio.stat(path)).ino, "the file was rewritten")
    assert.are.equal(12, r.size)
    assert.are.equal(sha256sum(path), r.sha256)
    local data, info = assert(st:get("runs/1/r630.json"))
    assert.are.equal('{"after":{}}', data)
    assert.are.same({ run = "1" }, info.metadata)
    assert.are.equal(r.sha256, assert(st:head("runs/1/r630.json")).sha256)
  end)

  it("rejects keys that would escape the root or collide with its own files", function()
    for _, bad in ipairs { "../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/.", "",
                           "x.sbot-meta.json" } do
      local r, err, code = st:put(bad, "x")
      assert.is_nil(r, bad)
      assert.are.equal("BadKey", code, bad)
      assert.is_string(err)
    end
    assert.is_nil(st:get("../outside"))
    assert.is_nil(io.open(root .. "/x", "r"))
    assert.has_error(function() st:put(42, "x") end)
    assert.has_error(function() st:put("k", 42) end)
  end)

  it("writes atomically: no temp file is left and a failed write keeps the old object", function()
    assert(st:put("a/b", "first"))
    -- a directory as the source: opening works, reading fails midway
    local ok, err = st:put("a/b", { file = root })
    assert.is_nil(ok)
    assert.matches("a/b", err)
    assert.matches("read", err)
    assert.are.equal("first", (st:get("a/b")))
    local entries = fsio.list(root .. "/artifacts/a")
    for _, e in ipairs(entries) do assert.is_nil(e.name:find("%.tmp%-")) end
  end)

  it("leaves no object behind when its metadata cannot be written", function()
    -- a directory where the metadata file goes makes its write fail
    assert(fsio.mkdirs(root .. "/artifacts/logs/boot.log.sbot-meta.json"))
    local r, err = st:put("logs/boot.log", "boot output")
    assert.is_nil(r)
    assert.matches("store put file://" .. root .. "/artifacts/logs/boot.log (metadata): ", err, 1, true)
    assert.is_nil(fsio.stat(root .. "/artifacts/logs/boot.log"))
    assert.are.same({}, st:list("logs/"))
  end)

  it("lists by prefix, sorted, without its own metadata files", function()
    for _, k in ipairs { "b/2", "a/1", "a/3", "c" } do assert(st:put(k, k)) end
    local keys = {}
    for _, o in ipairs(assert(st:list("a/"))) do keys[#keys + 1] = o.key end
    assert.are.same({ "a/1", "a/3" }, keys)
    keys = {}
    for _, o in ipairs(assert(st:list())) do keys[#keys + 1] = o.key end
    assert.are.same({ "a/1", "a/3", "b/2", "c" }, keys)
  end)

  it("deletes, prunes empty directories, and a second delete is fine", function()
    assert(st:put("x/y/z", "1"))
    assert.is_true(st:delete("x/y/z"))
    local _, _, code = st:head("x/y/z")
    assert.are.equal("NotFound", code)
    assert.is_nil(fsio.stat(root .. "/artifacts/x"))
    assert.is_true(st:delete("x/y/z"))
  end)

  it("detects a corrupted object", function()
    assert(st:put("k", "hello"))
    helpers.write_file(root .. "/artifacts/k", "jello")
    local data, err, code = st:get("k")
    assert.is_nil(data)
    assert.are.equal("Checksum", code)
    assert.matches("SHA%-256", err)
  end)

  it("gives file URLs and rejects bad store URLs", function()
    assert.are.equal("file://" .. root .. "/artifacts/a%20b/c", st:url("a b/c"))
    local s, err, code = store.open("file://relative/path")
    assert.is_nil(s)
    assert.are.equal("BadURL", code)
    assert.matches("absolute", err)
    s, err = store.open("ftp://x")
    assert.is_nil(s)
    assert.matches("unsupported", err)
  end)
end)

describe("part and whole-file digests (sbot.crypto, as the S3 multipart upload uses them)", function()
  it("hashes parts and the whole file in one read", function()
    local dir = helpers.tmpdir("fsio")
    local path = dir .. "/f"
    assert.is_true(helpers.sh("head -c 2500000 /dev/urandom > " .. helpers.shquote(path)))
    local size = assert(fsio.stat(path)).size
    assert.are.equal(2500000, size)
    -- one read: every chunk goes to the part hasher and the whole-file hasher
    local f = assert(io.open(path, "rb"))
    local whole = crypto.hasher("sha256")
    local parts = {}
    for off = 0, size - 1, 1000000 do
      local n = math.min(1000000, size - off)
      local h = crypto.hasher("sha256")
      local left = n
      while left > 0 do
        local chunk = assert(f:read(math.min(left, 65536)))
        h:update(chunk)
        whole:update(chunk)
        left = left - #chunk
      end
      local raw = h:digest()
      parts[#parts + 1] = { off, n, crypto.hex(raw), crypto.base64_encode(raw) }
    end
    f:close()
    assert.are.equal(3, #parts)
    assert.are.equal(500000, parts[3][2])
    assert.are.equal(2000000, parts[3][1])
    assert.are.equal(sha256sum(path), crypto.hex(whole:digest()))
    local _, _, out = helpers.sh(string.format("tail -c +1000001 %s | head -c 1000000 | sha256sum", path))
    assert.are.equal(out:match("^(%x+)"), parts[2][3])
    assert.are.equal(crypto.hex(assert(crypto.sha256_file(path, 1000000, 1000000))), parts[2][3])
    assert.are.equal(crypto.base64_encode(assert(crypto.sha256_file(path, 1000000, 1000000))), parts[2][4])
    local md5 = crypto.md5("")
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", crypto.hex(md5))
    assert.are.equal("1B2M2Y8AsgTpgAmY7PhCfg==", crypto.base64_encode(md5))
    local r, err, code = crypto.sha256_file(dir .. "/missing")
    assert.is_nil(r)
    assert.are.equal("ENOENT", code) -- the errno name (docs/errors.md), not "file"
    assert.matches("missing", err)
    os.execute("rm -rf " .. helpers.shquote(dir))
  end)
end)

describe("sbot.fsio", function()
  local dir
  before_each(function() dir = helpers.tmpdir("fsio") end)
  after_each(function() os.execute("rm -rf " .. helpers.shquote(dir)) end)

  it("stats files, directories and links (followed only when asked)", function()
    helpers.write_file(dir .. "/f", "12345")
    assert.is_true(helpers.sh("chmod 640 " .. helpers.shquote(dir .. "/f") ..
      " && ln -s f " .. helpers.shquote(dir .. "/l")))
    local st = assert(fsio.stat(dir .. "/f"))
    assert.are.equal("file", st.type)
    assert.are.equal(5, st.size)
    assert.are.equal(tonumber("640", 8), st.mode)
    local _, _, uid = helpers.sh("id -u")
    assert.are.equal(tonumber(uid), st.uid)
    assert.are.equal("link", fsio.stat(dir .. "/l").type)
    assert.are.equal("file", fsio.stat(dir .. "/l", true).type)
    assert.are.equal("directory", fsio.stat(dir).type)
    local r, err, code = fsio.stat(dir .. "/nope")
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
    assert.are.equal("stat: " .. dir .. "/nope: No such file or directory", err)
  end)

  it("creates missing parents with a mode and refuses a file in the way", function()
    assert.is_true(fsio.mkdirs(dir .. "/a/b/c", tonumber("700", 8)))
    assert.are.equal(tonumber("700", 8), fsio.stat(dir .. "/a/b/c").mode)
    assert.is_true(fsio.mkdirs(dir .. "/a/b/c")) -- existing: fine
    helpers.write_file(dir .. "/file", "x")
    local ok, err, code = fsio.mkdirs(dir .. "/file/sub")
    assert.is_nil(ok)
    assert.are.equal("ENOTDIR", code)
    assert.matches("file/sub", err, 1, true)
    ok, err, code = fsio.mkdirs(dir .. "/file")
    assert.is_nil(ok)
    assert.are.equal("ENOTDIR", code)
    assert.has_error(function() fsio.mkdirs("") end)
  end)

  it("resolves real paths", function()
    assert(fsio.mkdirs(dir .. "/x/y"))
    assert.is_true(helpers.sh("ln -s x/y " .. helpers.shquote(dir .. "/link")))
    local real = assert(fsio.realpath(dir))
    assert.are.equal(real .. "/x/y", fsio.realpath(dir .. "/link/../y/."))
    local r, err, code = fsio.realpath(dir .. "/none")
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
    assert.matches("realpath: ", err, 1, true)
  end)
end)
