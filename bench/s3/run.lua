-- bench/s3: upload and download of a 1 GiB file to s3rver, sbot versus
-- Debian's awscli (`aws s3 cp`). Median of N runs (default 3) each; wall time
-- and peak RSS (GNU time) printed as ratios sbot / awscli.
-- Usage: build/sbot run bench/s3/run.lua [runs] [size_mib]
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local servers = require "s3servers"

local runs = tonumber(arg and arg[1]) or 3
local size_mib = tonumber(arg and arg[2]) or 1024
assert(runs >= 3, "bench/s3: at least 3 runs")

helpers.tmp_root = os.getenv("SBOT_TEST_TMP") or "/tmp/sbot-bench"
local srv = servers.start_s3rver()
local dir = helpers.tmpdir("bench-s3")
local file = dir .. "/payload"
assert(helpers.sh(string.format("head -c %d /dev/urandom > %s", size_mib * 1024 * 1024, file)))
local want = servers.sha256sum(file)
local env = string.format("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=us-east-1 " ..
  "AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null",
  servers.access_key, servers.secret_key)

local script = dir .. "/client.lua"
helpers.write_file(script, string.format([[
local s3 = require "sbot.s3"
local c = assert(s3.client{endpoint = %q})
local op, key, path = ...
if op == "mb" then assert(c:create_bucket("bench")) return end
if op == "put" then assert(c:put_object{bucket = "bench", key = key, file = path}) return end
assert(c:get_object{bucket = "bench", key = key, file = path})
]], srv.endpoint))

--- Run a command under GNU time; returns wall seconds, peak RSS KiB.
local function measure(cmd)
  local tfile = dir .. "/time.out"
  local t0 = helpers.now()
  local ok, _, out = helpers.sh(string.format("%s /usr/bin/time -f '%%M' -o %s %s 2>&1", env, tfile, cmd))
  local wall = helpers.now() - t0
  assert(ok, "bench/s3: command failed: " .. cmd .. "\n" .. out)
  local rss = tonumber(helpers.read_file(tfile):match("(%d+)%s*$"))
  return wall, rss
end

local sbot = helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(script)
local aws = "/usr/bin/aws --endpoint-url " .. srv.endpoint
measure(sbot .. " mb")

local cases = {
  { "upload", "sbot", function(i) return sbot .. " put sbot-" .. i .. " " .. file end },
  { "upload", "awscli", function(i) return aws .. " s3 cp --quiet " .. file .. " s3://bench/aws-" .. i end },
  { "download", "sbot", function(i) return sbot .. " get sbot-" .. i .. " " .. dir .. "/down" end },
  { "download", "awscli", function(i) return aws .. " s3 cp --quiet s3://bench/aws-" .. i .. " " .. dir .. "/down" end },
}

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local results = {}
for i = 1, runs do
  for _, case in ipairs(cases) do
    local wall, rss = measure(case[3](i))
    local k = case[1] .. "/" .. case[2]
    results[k] = results[k] or { wall = {}, rss = {} }
    table.insert(results[k].wall, wall)
    table.insert(results[k].rss, rss)
    if case[1] == "download" then
      assert(servers.sha256sum(dir .. "/down") == want, "bench/s3: downloaded file differs")
      os.remove(dir .. "/down")
    end
    io.stderr:write(string.format("run %d %-8s %-6s %7.2f s %8d KiB\n", i, case[1], case[2], wall, rss))
  end
end

print(string.format("bench/s3: %d MiB to s3rver on loopback, median of %d runs (baseline: awscli %s)",
  size_mib, runs, (select(3, helpers.sh("/usr/bin/aws --version 2>&1")) or ""):match("^(%S+)") or "?"))
for _, dirn in ipairs { "upload", "download" } do
  local s, a = results[dirn .. "/sbot"], results[dirn .. "/awscli"]
  local sw, aw, sr, ar = median(s.wall), median(a.wall), median(s.rss), median(a.rss)
  print(string.format("%-8s sbot %6.2f s %6.1f MiB/s RSS %6.1f MiB | awscli %6.2f s %6.1f MiB/s RSS %6.1f MiB" ..
    " | wall ratio sbot/awscli %.2f, RSS ratio %.2f",
    dirn, sw, size_mib / sw, sr / 1024, aw, size_mib / aw, ar / 1024, sw / aw, sr / ar))
end
servers.stop(srv)
os.execute("rm -rf " .. helpers.shquote(dir))
