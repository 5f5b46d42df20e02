-- bench/s3_publish/lab_get_rss.lua [SIZE_MIB] [MODEL_FILE]: how much the lab's
-- S3 model's peak RSS grows while it serves one GET of a SIZE_MIB object
-- (default 1024). The object is uploaded (multipart), the server's peak RSS
-- is reset (/proc/PID/clear_refs), the object is read to a file, and the
-- growth of VmHWM over the RSS before the GET is printed.
--   build/sbot run bench/s3_publish/lab_get_rss.lua 1024
--   git show main:lua/sbot/lab/s3.lua > /tmp/old.lua && build/sbot run bench/s3_publish/lab_get_rss.lua 1024 /tmp/old.lua
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local json = require "sbot.json"
local s3 = require "sbot.s3"

local size_mib = tonumber(arg[1]) or 1024
local model_file = arg[2] or ""
helpers.tmp_root = os.getenv("SBOT_TEST_TMP") or "/tmp/sbot-bench"
local dir = helpers.tmpdir("lab-get-rss")
local proc = helpers.spawn(string.format("%s run %s %s %s", helpers.shquote(helpers.sbot_bin),
  helpers.shquote(src .. "/bench/s3_publish/serve_s3.lua"), helpers.shquote(dir), helpers.shquote(model_file)))
local info
for _ = 1, 200 do
  local f = io.open(dir .. "/serve.json", "rb")
  if f then info = json.decode(f:read("a")); f:close(); break end
  os.execute("sleep 0.05")
end
assert(info, "serve_s3 did not start: " .. proc:output())
info.pid = math.tointeger(info.pid)

local function status(field)
  local f = assert(io.open("/proc/" .. info.pid .. "/status"))
  local t = f:read("a")
  f:close()
  return tonumber(t:match(field .. ":%s*(%d+) kB"))
end

local c = assert(s3.client { endpoint = info.endpoint, access_key = info.access_key, secret_key = info.secret_key })
local file = dir .. "/object"
assert(helpers.sh(string.format("head -c %d /dev/zero > %s", size_mib * 1024 * 1024, helpers.shquote(file))))
assert(c:put_object { bucket = info.bucket, key = "big", file = file })
os.remove(file)
local f = assert(io.open("/proc/" .. info.pid .. "/clear_refs", "w"))
f:write("5")
f:close()
local rss0 = status("VmRSS")
local t0 = helpers.now()
assert(c:get_object { bucket = info.bucket, key = "big", file = dir .. "/down" })
local secs = helpers.now() - t0
local hwm = status("VmHWM")
print(string.format("lab S3 model (%s): GET of %d MiB: RSS before %.1f MiB, peak during the GET %.1f MiB: +%.1f MiB (%.2f s)",
  model_file ~= "" and model_file or "lua/sbot/lab/s3.lua", size_mib, rss0 / 1024, hwm / 1024, (hwm - rss0) / 1024, secs))
proc:stop()
os.execute("rm -rf " .. helpers.shquote(dir))
