-- 1 GiB upload and download through sbot.http in constant memory: the
-- transfers run in a separate sbot process whose peak RSS (VmHWM) is measured.
local json = require "sbot.json"
local crypto = require "sbot.crypto"
local helpers = require "helpers"
local servers = require "test_servers"

local GiB = 1024 * 1024 * 1024
local MAX_RSS_KIB = 64 * 1024

local child = [[
local http = require "sbot.http"
local json = require "sbot.json"
local base, dir, size = arg[1], arg[2], arg[3]
local function hwm()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s+(%d+) kB")
    if kb then return tonumber(kb) end
  end
end
local start_kib = hwm()
local up_calls, down_calls, up_last, down_last = 0, 0, nil, nil
local up = assert(http.put(base .. "/upload", { body_file = dir .. "/up.bin", timeout = 900,
  progress = function(done, total) up_calls = up_calls + 1; up_last = { done, total } end }))
local down = assert(http.get(base .. "/download/" .. size .. "?id=big", { output_file = dir .. "/down.bin",
  timeout = 900, progress = function(done, total) down_calls = down_calls + 1; down_last = { done, total } end }))
print(json.encode({ up_status = up.status, up = json.decode(up.body), down_status = down.status,
  down_file = down.file, start_kib = start_kib, peak_kib = hwm(), up_calls = up_calls,
  down_calls = down_calls, up_last = up_last, down_last = down_last }))
]]

describe("sbot.http streaming", function()
  local srv, dir
  setup(function()
    srv = servers.httpbin()
    dir = helpers.tmpdir("stream")
  end)
  teardown(function()
    if srv then srv:stop() end
    if dir then os.execute("rm -rf " .. helpers.shquote(dir)) end
  end)

  it("uploads and downloads 1 GiB with peak RSS under 64 MiB and equal checksums", function()
    local up = dir .. "/up.bin"
    assert(helpers.sh(string.format("head -c %d /dev/urandom > %s", GiB, helpers.shquote(up))))
    helpers.write_file(dir .. "/child.lua", child)
    local run = helpers.sbot({ "run", dir .. "/child.lua", srv.url(""), dir, tostring(GiB) })
    assert.are.equal(0, run.code, run.stderr)
    local r = assert(json.decode(run.stdout:match("[^\n]+$") or run.stdout))
    print(string.format("\n  peak RSS of the sbot process: %.1f MiB (at start %.1f MiB); progress calls: up %d, down %d",
      r.peak_kib / 1024, r.start_kib / 1024, r.up_calls, r.down_calls))

    assert.is_true(r.peak_kib < MAX_RSS_KIB, "peak RSS " .. r.peak_kib .. " KiB")

    -- upload: what the server hashed equals the file, by two independent tools
    assert.are.equal(200, r.up_status)
    assert.are.equal(GiB, r.up.bytes)
    local local_hex = crypto.hex(assert(crypto.sha256_file(up)))
    local _, _, sum = helpers.sh("sha256sum " .. helpers.shquote(up))
    assert.are.equal(sum:match("^%x+"), local_hex)
    assert.are.equal(local_hex, r.up.sha256)
    assert.are.same({ GiB, GiB }, r.up_last)

    -- download: the file equals what the server sent
    assert.are.equal(200, r.down_status)
    assert.are.equal(dir .. "/down.bin", r.down_file)
    local sent = assert(require("sbot.http").get(srv.url("/hash/big"))).body
    assert.are.equal(sent, crypto.hex(assert(crypto.sha256_file(dir .. "/down.bin"))))
    assert.are.same({ GiB, GiB }, r.down_last)
    os.remove(up)
    os.remove(dir .. "/down.bin")
  end)
end)
