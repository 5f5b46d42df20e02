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

-- A big answer held in memory (an http body, a WebSocket message) costs two
-- copies while it becomes a Lua string (the C buffer, the string), never more:
-- the bound is generous (2.6x the answer, on top of the process's start) so
-- that only a real regression (a third copy, a log line holding the body, a
-- doubling buffer that is written through) trips it. Measured in a separate
-- process from the kernel's VmHWM. bench/big_answer has the full picture.
describe("big answers in memory", function()
  local SIZE = 40 * 1000 * 1000
  local probe = [[
local mode, url = ...
local function hwm()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s+(%d+) kB")
    if kb then return tonumber(kb) end
  end
end
local http, ws = require "sbot.http", require "sbot.ws" -- the libraries count in the start
local start = hwm()
local text
if mode == "http" then
  local r = assert(http.get(url, { timeout = 120 }))
  assert(r.status == 200)
  text = r.body
else
  local c = assert(ws.connect(url, { timeout = 120 }))
  assert(c:send("big:" .. ]] .. SIZE .. [[))
  text = assert(c:recv(120))
end
print(#text, start, hwm())
]]
  local srv, ws_srv, ws_port, dir
  setup(function()
    srv = servers.httpbin()
    ws_port = helpers.free_port()
    ws_srv = helpers.spawn(string.format("python3 %s %d",
      helpers.shquote(helpers.source_dir .. "/tests/servers/ws_echo.py"), ws_port))
    assert(helpers.wait_port(ws_port, 10))
    dir = helpers.tmpdir("bigmem")
    helpers.write_file(dir .. "/probe.lua", probe)
  end)
  teardown(function()
    if srv then srv:stop() end
    if ws_srv then ws_srv:stop() end
  end)

  for _, mode in ipairs({ "http", "ws" }) do
    it("a " .. SIZE // 1000000 .. " MB " .. mode .. " answer costs under 2.6x its size", function()
      local url = mode == "http" and srv.url("/download/" .. SIZE .. "?id=mem")
        or string.format("ws://127.0.0.1:%d/", ws_port)
      local r = require("sbot.sys").spawn { argv = { helpers.sbot_bin, "run", dir .. "/probe.lua", mode, url },
        timeout = 300 }
      assert.are.equal(0, r.status, r.stderr)
      local n, start, peak = r.stdout:match("(%d+)%s+(%d+)%s+(%d+)")
      assert.are.equal(SIZE, tonumber(n))
      local cost = (tonumber(peak) - tonumber(start)) * 1024
      print(string.format("\n  %s: %.1f MB answer, peak RSS %.1f MiB over the start: %.2fx", mode, SIZE / 1e6,
        cost / 1048576, cost / SIZE))
      assert.is_true(cost < 2.6 * SIZE, string.format("%.2fx the answer", cost / SIZE))
    end)
  end
end)
