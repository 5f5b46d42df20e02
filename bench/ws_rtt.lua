-- bench/ws_rtt: round trip of one small WebSocket message (send, echo,
-- receive) to an sbot.httpd server, over wss:// (TLS: libmicrohttpd forwards
-- the upgraded connection) against the baseline of the same server over
-- plain ws://. The lab's TrueNAS model is such a wss:// server: every
-- TrueNAS call of a test pays this once.
--
-- Median of RUNS samples of BATCH round trips each, one connection per
-- sample; the server is a separate process (SERVER_BIN, default the sbot
-- running this script: compare two builds with SERVER_BIN=old/build/sbot).
--
-- Then the client's CPU (os.clock of this process) for BATCH echoes of a
-- 64 KB message, per MB received: what a big TrueNAS answer costs the client,
-- where over wss:// the size of the server's TLS records matters (sbot.httpd
-- sends full records; libmicrohttpd's own relay sent 4 bytes a record).
--
-- Usage: build/sbot run bench/ws_rtt.lua [RUNS (5)] [BATCH (50)]
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local ws = require "sbot.ws"
local sys = require "sbot.sys"

local runs = tonumber(arg and arg[1]) or 5
local batch = tonumber(arg and arg[2]) or 50
helpers.tmp_root = os.getenv("SBOT_TEST_TMP") or "/tmp/sbot-bench"
local dir = helpers.tmpdir("ws-rtt")
local bin = os.getenv("SERVER_BIN") or helpers.sbot_bin
helpers.write_file(dir .. "/echo.lua", [[
local httpd = require "sbot.httpd"
local cert = httpd.selfsigned { ips = { "127.0.0.1" } }
local srv = assert(httpd.listen { port = 0, tls = arg[1] == "wss" and cert or nil,
  handler = function() return 404, {}, "" end,
  websocket = function(w) while true do local m = w:recv(); if not m then break end; w:send(m) end end })
local f = assert(io.open(arg[2] .. ".tmp", "w"))
f:write(srv:url(), "\n", cert.pin_sha256, "\n")
f:close()
os.rename(arg[2] .. ".tmp", arg[2])
httpd.run({ srv }, { ["until"] = function() return false end })
]])

local function start(kind)
  local info = dir .. "/" .. kind .. ".info"
  local p = helpers.spawn(string.format("%s run %s %s %s", helpers.shquote(bin), helpers.shquote(dir .. "/echo.lua"),
    kind, helpers.shquote(info)))
  for _ = 1, 200 do
    local f = io.open(info)
    if f then
      local url, pin = f:read("l"), f:read("l")
      f:close()
      return p, url:gsub("^http", "ws") .. "/echo", pin
    end
    os.execute("sleep 0.05")
  end
  p:stop()
  error("the " .. kind .. " echo server did not start: " .. p:output())
end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local results = {}
local ok, err = pcall(function()
  for _, kind in ipairs { "ws", "wss" } do
    local p, url, pin = start(kind)
    local samples = {}
    for _ = 1, runs do
      local c <close> = assert(ws.connect(url, { tls = kind == "wss" and { pin_sha256 = pin } or nil, timeout = 10 }))
      assert(c:send("warm-up"))
      assert(c:recv(10))
      local t = sys.monotime()
      for i = 1, batch do
        assert(c:send('{"jsonrpc":"2.0","id":' .. i .. ',"method":"core.ping"}'))
        assert(c:recv(10))
      end
      samples[#samples + 1] = (sys.monotime() - t) / batch
    end
    local big, cpu = string.rep("x", 65536), {}
    for _ = 1, runs do
      local c <close> = assert(ws.connect(url, { tls = kind == "wss" and { pin_sha256 = pin } or nil, timeout = 10 }))
      local t = os.clock()
      for _ = 1, batch do
        assert(c:send(big))
        assert(#assert(c:recv(10)) == #big)
      end
      cpu[#cpu + 1] = (os.clock() - t) / (batch * #big / 1e6)
    end
    p:stop()
    results[kind] = median(samples)
    results[kind .. "_cpu"] = median(cpu)
  end
end)
os.execute("rm -rf " .. helpers.shquote(dir))
assert(ok, err)
print(string.format("round trip, median of %d x %d: ws %.3f ms, wss %.3f ms; wss / ws = %.1f",
  runs, batch, results.ws * 1000, results.wss * 1000, results.wss / results.ws))
print(string.format("client CPU per MB received (64 KB echoes), median of %d x %d: ws %.2f ms, wss %.2f ms; wss / ws = %.1f",
  runs, batch, results.ws_cpu * 1000, results.wss_cpu * 1000, results.wss_cpu / results.ws_cpu))
