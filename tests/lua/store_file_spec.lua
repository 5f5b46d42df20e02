-- The file:// backend of sbot.store and the sbot.fsio primitives under it.
local helpers = require "helpers"
local store = require "sbot.store"
local fsio = require "sbot.fsio"

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
    assert.are.equal(fsio.sha256('{"ok":true}'), r.sha256)
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

describe("sbot.fsio part hasher", function()
  it("hashes parts and the whole file in one read", function()
    local dir = helpers.tmpdir("fsio")
    local path = dir .. "/f"
    assert.is_true(helpers.sh("head -c 2500000 /dev/urandom > " .. helpers.shquote(path)))
    local h = assert(fsio.part_hasher(path, 1000000))
    assert.are.equal(2500000, h.size)
    local parts = {}
    while true do
      local off, n, hex, b64 = h:next()
      if not off then break end
      parts[#parts + 1] = { off, n, hex, b64 }
    end
    assert.are.equal(3, #parts)
    assert.are.equal(500000, parts[3][2])
    assert.are.equal(2000000, parts[3][1])
    assert.are.equal(sha256sum(path), h:sha256())
    local _, _, out = helpers.sh(string.format("tail -c +1000001 %s | head -c 1000000 | sha256sum", path))
    assert.are.equal(out:match("^(%x+)"), parts[2][3])
    assert.are.equal((fsio.sha256_file(path, 1000000, 1000000)), parts[2][3])
    h:close()
    local hex, b64, n = fsio.copy_range(path, 1000000, 1000000, dir .. "/copy")
    assert.are.equal(parts[2][3], hex)
    assert.are.equal(parts[2][4], b64)
    assert.are.equal(1000000, n)
    assert.are.equal(hex, sha256sum(dir .. "/copy"))
    local md5hex, md5b64 = fsio.md5("")
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", md5hex)
    assert.are.equal("1B2M2Y8AsgTpgAmY7PhCfg==", md5b64)
    local r, err, code = fsio.part_hasher(dir .. "/missing", 10)
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
    assert.matches("missing", err)
    os.execute("rm -rf " .. helpers.shquote(dir))
  end)
end)

describe("sbot.fsio part pipeline", function()
  it("prepares part files ahead in a worker thread with part and whole digests", function()
    local dir = helpers.tmpdir("pipe")
    local path = dir .. "/f"
    assert.is_true(helpers.sh("head -c 2500000 /dev/urandom > " .. helpers.shquote(path)))
    local p = assert(fsio.part_pipeline(path, 1000000, dir .. "/parts-dir-missing", 2, true))
    -- the part directory does not exist: the worker's failure comes back from take()
    local n, err, code = p:take()
    assert.is_nil(n)
    assert.matches("create part file", err)
    assert.are.equal("IO", code)
    p:close()
    assert(fsio.mkdirs(dir .. "/parts"))
    p = assert(fsio.part_pipeline(path, 1000000, dir .. "/parts", 2, true))
    assert.are.equal(3, p.parts)
    local seen = {}
    while true do
      local num, off, size, hex, b64, file = p:take()
      if not num then break end
      assert.are.equal(hex, sha256sum(file))
      assert.are.equal(hex, (fsio.sha256_file(path, off, size)))
      assert.is_string(b64)
      seen[#seen + 1] = size
      p:release(num)
      assert.is_nil(fsio.stat(file))
    end
    assert.are.same({ 1000000, 1000000, 500000 }, seen)
    assert.are.equal(sha256sum(path), p:sha256())
    assert.has_error(function() p:release(1) end)
    p:close()
    p:close() -- closing twice is fine
    -- closing early stops the worker and removes the part files it made
    p = assert(fsio.part_pipeline(path, 1000000, dir .. "/parts", 3, false))
    assert.is_truthy(p:take())
    p:close()
    assert.are.same({}, fsio.list(dir .. "/parts"))
    os.execute("rm -rf " .. helpers.shquote(dir))
  end)
end)
