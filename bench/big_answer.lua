-- bench/big_answer: what a big JSON answer costs in memory and time, from the
-- wire to a decoded Lua table, against a named baseline.
--
-- Two 60 MB documents (BENCH_MB), both JSON arrays of records:
--   objects  TrueNAS-like dataset records (nested objects, strings, numbers)
--   arrays   small records holding many empty arrays (the case the old
--            sbot.json rewrote before cjson decoded it, to tell [] from {})
-- For each, in a fresh sbot process per sample (peak RSS from the kernel's
-- VmHWM, median of BENCH_RUNS = 3):
--   floor      cjson.decode of the text read from a file: what any decoding
--              into Lua tables costs (the baseline)
--   http       http.get of the document (python3 -m http.server): the body only
--   http+json  http.get, then sbot.json.decode
--   ws         one WebSocket text message (tests/servers/ws_echo.py file:PATH)
--   ws+json    the message, then sbot.json.decode
-- Printed: peak MiB, peak / document size, peak / floor, and seconds.
-- Usage: bench/big_answer   (or: build/sbot run bench/big_answer.lua)
-- BENCH_PROBE_BIN: the sbot binary measured (default: the one running this), e.g.
-- an older build to compare with.
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local sys = require "sbot.sys"
local fsio = require "sbot.fsio"

local MB = tonumber(os.getenv("BENCH_MB") or "60")
local PROBE_BIN = os.getenv("BENCH_PROBE_BIN") or helpers.sbot_bin
local RUNS = tonumber(os.getenv("BENCH_RUNS") or "3")
local size = MB * 1000 * 1000

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

-- ---- the documents --------------------------------------------------------
local function objects_record(i)
  return string.format('{"id":"pool/zvol-%06d","name":"zvol-%06d","type":"VOLUME","used":{"parsed":%d,'
    .. '"rawvalue":"%d","source":"NONE"},"properties":{"volsize":{"parsed":128849018880,"value":"120G"},'
    .. '"compression":{"value":"LZ4"}},"children":[],"flag":true,"none":null}', i, i, i * 4096, i * 4096)
end

local function arrays_record(i)
  return string.format('{"id":%d,"a":[],"b":[],"c":[],"d":{"e":[],"f":[1,[]]},"g":"x"}', i)
end

local function write_doc(path, record)
  local parts, n, total, i = {}, 0, 2, 0
  while total < size do
    local r = record(i)
    n = n + 1
    parts[n] = r
    total = total + #r + 1
    i = i + 1
  end
  assert(fsio.write_atomic(path, "[" .. table.concat(parts, ",") .. "]"))
  return i
end

-- ---- one probe ------------------------------------------------------------
local PROBE = [[
local mode, arg = ...
local sys = require "sbot.sys"
local t0 = sys.monotime()
local text
if mode == "floor" then
  text = io.open(arg, "rb"):read("a")
  local v = require("cjson").decode(text)
  assert(type(v) == "table")
elseif mode:match("^http") then
  local r = assert(require("sbot.http").get(arg, { timeout = 600, max_body = 1e9 }))
  assert(r.status == 200, r.status)
  text = r.body
  r = nil
else
  local c = assert(require("sbot.ws").connect(arg:match("^(.-)|"), { timeout = 600, max_message = 1000000000 }))
  assert(c:send("file:" .. arg:match("|(.*)$")))
  text = assert(c:recv(600))
  c:close()
end
if mode:match("%+json$") then assert(type(require("sbot.json").decode(text)) == "table") end
local secs = sys.monotime() - t0
for l in io.lines("/proc/self/status") do
  local kb = l:match("^VmHWM:%s+(%d+) kB")
  if kb then print(kb, secs) end
end
]]

local dir = helpers.tmpdir("bench-answer")
local probe = dir .. "/probe.lua"
assert(fsio.write_atomic(probe, PROBE))

local function sample(mode, arg)
  local kbs, secs = {}, {}
  for run = 1, RUNS do
    local r = assert(sys.spawn { argv = { PROBE_BIN, "run", probe, mode, arg }, timeout = 900 })
    assert(r.status == 0, mode .. ": " .. r.stderr)
    local kb, s = r.stdout:match("(%d+)%s+([%d.]+)")
    kbs[run], secs[run] = tonumber(kb), tonumber(s)
  end
  return median(kbs) / 1024, median(secs)
end

-- ---- servers ---------------------------------------------------------------
local http_port = helpers.free_port()
local http_srv = helpers.spawn(string.format("python3 -m http.server --bind 127.0.0.1 --directory %s %d",
  helpers.shquote(dir), http_port))
local ws_port = helpers.free_port()
local ws_srv = helpers.spawn(string.format("python3 %s %d",
  helpers.shquote(helpers.source_dir .. "/tests/servers/ws_echo.py"), ws_port))
assert(helpers.wait_port(http_port, 15) and helpers.wait_port(ws_port, 15), "servers did not start")

print(string.format("bench/big_answer: %d MB documents, median of %d runs, peak RSS of a fresh sbot process (%s)",
  MB, RUNS, PROBE_BIN))
print(string.format("%-8s %-10s %9s %8s %8s %8s", "shape", "path", "peak MiB", "x size", "x floor", "seconds"))
for _, shape in ipairs({ { "objects", objects_record }, { "arrays", arrays_record } }) do
  local name, record = shape[1], shape[2]
  local path = dir .. "/" .. name .. ".json"
  local records = write_doc(path, record)
  local doc_mib = fsio.stat(path).size / 1048576
  local floor_mib, floor_s = sample("floor", path)
  local rows = { { "floor", floor_mib, floor_s } }
  for _, mode in ipairs({ "http", "http+json", "ws", "ws+json" }) do
    local arg = mode:match("^http") and string.format("http://127.0.0.1:%d/%s.json", http_port, name)
      or string.format("ws://127.0.0.1:%d/|%s", ws_port, path)
    local mib, s = sample(mode, arg)
    rows[#rows + 1] = { mode, mib, s }
  end
  for _, row in ipairs(rows) do
    print(string.format("%-8s %-10s %9.1f %8.2f %8.2f %8.2f", name, row[1], row[2], row[2] / doc_mib,
      row[2] / floor_mib, row[3]))
  end
  print(string.format("%-8s (%d records, %.1f MiB)", name, records, doc_mib))
  fsio.remove(path)
end
http_srv:stop()
ws_srv:stop()
os.execute("rm -rf " .. helpers.shquote(dir))
