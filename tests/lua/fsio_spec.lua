-- sbot.fsio: modes and the real errno names of failures (docs/errors.md), on
-- real file systems: a read-only and a full tmpfs in a private mount namespace.
local fsio = require "sbot.fsio"
local sys = require "sbot.sys"
local helpers = require "helpers"

describe("sbot.fsio", function()
  it("write_atomic gives the file exactly its mode, whatever the umask", function()
    local dir = helpers.tmpdir("fsio")
    local script = dir .. "/w.lua"
    helpers.write_file(script, string.format([[
local fsio = require "sbot.fsio"
assert(fsio.write_atomic(%q, "k", { mode = "0660" }))
assert(fsio.write_atomic(%q, "k", { mode = tonumber("604", 8) }))
assert(fsio.write_atomic(%q, "k"))
]], dir .. "/a", dir .. "/b", dir .. "/c"))
    local r = assert(sys.spawn { argv = { "sh", "-c", 'umask 077 && exec "$0" run "$1"', helpers.sbot_bin, script } })
    assert.are.equal(0, r.status, r.stderr)
    assert.are.equal(tonumber("660", 8), fsio.stat(dir .. "/a").mode)
    assert.are.equal(tonumber("604", 8), fsio.stat(dir .. "/b").mode)
    assert.are.equal(tonumber("600", 8), fsio.stat(dir .. "/c").mode) -- no mode: 0644 & ~umask
  end)

  it("write_atomic sets the mode before any data goes in", function()
    if not sys.spawn { argv = { "strace", "-V" } } then
      pending("strace is not installed (vendor/packages)")
      return
    end
    local dir = helpers.tmpdir("fsio")
    local script = dir .. "/w.lua"
    helpers.write_file(script, string.format([[
local fsio = require "sbot.fsio"
assert(fsio.write_atomic(%q, "TOPSECRET", { mode = "0640" }))
]], dir .. "/s"))
    -- LeakSanitizer cannot run under ptrace (sanitizer builds): off for the traced process only
    local asan = "ASAN_OPTIONS=" .. (os.getenv("ASAN_OPTIONS") or "") .. ":detect_leaks=0"
    local r = assert(sys.spawn { argv = { "strace", "-f", "-e", "trace=openat,fchmod,write", "-o", dir .. "/trace",
      "env", asan, helpers.sbot_bin, "run", script } })
    assert.are.equal(0, r.status, r.stderr)
    local trace = helpers.read_file(dir .. "/trace")
    local open_at = trace:find('openat%([^\n]*/s%.tmp%-%x+", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600%) = (%d+)')
    local fd = trace:match('openat%([^\n]*/s%.tmp%-%x+", [^\n]*%) = (%d+)')
    assert(open_at and fd, "no owner-only create of the temp file in:\n" .. trace)
    local chmod_at = trace:find("fchmod%(" .. fd .. ", 0640%)%s*= 0", open_at)
    local write_at = trace:find("write%(" .. fd .. ', "TOPSECRET"', open_at)
    assert(chmod_at and write_at, trace)
    assert.is_true(chmod_at < write_at)
    assert.are.equal(tonumber("640", 8), fsio.stat(dir .. "/s").mode)
  end)

  it("refuses a mode written as a Lua number that looks octal", function()
    local ok, err = pcall(fsio.write_atomic, "/tmp/x", "k", { mode = 0600 })
    assert.is_false(ok)
    assert.matches("fsio.write_atomic: 'mode': 600 is not a permission mode (0 to 0777); Lua has no octal "
      .. "literals (0600 is the decimal 600)", err, 1, true)
    ok, err = pcall(fsio.mkdirs, "/tmp/x", 755)
    assert.is_false(ok)
    assert.matches("fsio.mkdirs: mode: 755 is not a permission mode", err, 1, true)
    ok, err = pcall(fsio.write_atomic, "/tmp/x", "k", { mode = "rw" })
    assert.matches("must be octal permission digits such as \"0600\", got \"rw\"", err, 1, true)
    ok, err = pcall(fsio.write_atomic, "/tmp/x", "k", { owner = "root" })
    assert.matches("fsio.write_atomic: unknown option 'owner' (expected mode)", err, 1, true)
  end)

  it("returns the real errno name of every failure", function()
    local dir = helpers.tmpdir("fsio")
    assert(fsio.mkdirs(dir .. "/full/sub"))
    assert(fsio.write_atomic(dir .. "/file", "x"))
    os.execute("ln -s loop " .. helpers.shquote(dir .. "/loop"))
    local long = dir .. "/" .. string.rep("n", 300)
    local function code(f, ...)
      local r, err, c = f(...)
      assert.is_nil(r)
      assert.is_string(err)
      return c
    end
    assert.are.equal("ENOTEMPTY", code(fsio.remove, dir .. "/full"))
    assert.are.equal("ENAMETOOLONG", code(fsio.write_atomic, long, "x"))
    assert.are.equal("ENAMETOOLONG", code(fsio.stat, long))
    assert.are.equal("ENAMETOOLONG", code(fsio.mkdirs, long))
    assert.are.equal("ELOOP", code(fsio.stat, dir .. "/loop", true))
    assert.are.equal("ELOOP", code(fsio.realpath, dir .. "/loop"))
    assert.are.equal("EISDIR", code(fsio.write_atomic, dir .. "/full", "x"))
    assert.are.equal("ENOTDIR", code(fsio.list, dir .. "/file"))
    assert.are.equal("ENOTDIR", code(fsio.mkdirs, dir .. "/file/sub"))
    assert.are.equal("ENOENT", code(fsio.write_atomic, dir .. "/x", { file = dir .. "/missing" }))
    assert.are.equal("ENOENT", code(fsio.remove, dir .. "/missing"))
    local r, err = fsio.remove(dir .. "/full")
    assert.is_nil(r)
    assert.are.equal("remove: " .. dir .. "/full: Directory not empty", err)
  end)

  it("returns EROFS and ENOSPC from read-only and full file systems", function()
    local probe = sys.spawn { argv = { "unshare", "-m", "true" } }
    if not probe or probe.status ~= 0 then
      pending("no private mount namespace here (unshare -m needs root): " .. (probe and probe.stderr or "no unshare"))
      return
    end
    local dir = helpers.tmpdir("fsio-mnt")
    local script = dir .. "/codes.lua"
    helpers.write_file(script, string.format([[
local fsio = require "sbot.fsio"
local ro, full = %q, %q
local function show(what, ...) print(what, select(3, ...)) end
show("ro write", fsio.write_atomic(ro .. "/f", "x"))
show("ro mkdirs", fsio.mkdirs(ro .. "/d"))
show("ro remove", fsio.remove(ro .. "/existing"))
show("full write", fsio.write_atomic(full .. "/f", string.rep("x", 1024 * 1024)))
local left = fsio.list(full)
print("full left", #left)
]], dir .. "/ro", dir .. "/full"))
    local sh = 'set -e; mkdir -p "$1/ro" "$1/full"; mount -t tmpfs -o size=64k tmpfs "$1/ro"; '
      .. 'touch "$1/ro/existing"; mount -o remount,ro "$1/ro"; mount -t tmpfs -o size=64k tmpfs "$1/full"; '
      .. 'exec "$2" run "$3"'
    local r = assert(sys.spawn { argv = { "unshare", "-m", "sh", "-c", sh, "sh", dir, helpers.sbot_bin, script } })
    assert.are.equal(0, r.status, r.stderr)
    assert.matches("ro write\tEROFS\n", r.stdout, 1, true)
    assert.matches("ro mkdirs\tEROFS\n", r.stdout, 1, true)
    assert.matches("ro remove\tEROFS\n", r.stdout, 1, true)
    assert.matches("full write\tENOSPC\n", r.stdout, 1, true)
    assert.matches("full left\t0\n", r.stdout, 1, true) -- the temp file went with the failure
  end)
end)
