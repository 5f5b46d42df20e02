-- bench/s3_publish: publish a 1 GiB ISO — upload to the private bucket, copy
-- into the public bucket, update the index — with sbot
-- (`sbot run workflows/iso_to_s3.lua`) versus awscli doing the same three
-- steps (`aws s3 cp`; `aws s3api copy-object`; the index fetched, merged by a
-- small python3 step and put back), against the lab's S3 device (HTTPS on
-- loopback). Runs alternate (sbot, awscli, sbot, ...); the median of each is
-- printed with the ratios sbot / awscli of wall time and peak RSS (GNU time:
-- the process and its children).
--
-- sbot does more than the baseline in that time: it hashes the file
-- (SHA-256, stored as metadata), signs every part with its digest (the
-- server verifies it), reads back every object, checks anonymous access for
-- real and writes the index with conditional writes; awscli's index update
-- is unconditional (awscli 2.9 has no --if-match).
--
-- Usage: build/sbot run bench/s3_publish/run.lua [runs (>= 3)] [size_mib (1024)]
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local servers = require "s3servers"
local s3 = require "sbot.s3"

local runs = tonumber(arg and arg[1]) or 3
local size_mib = tonumber(arg and arg[2]) or 1024
assert(runs >= 3, "bench/s3_publish: at least 3 runs")

helpers.tmp_root = os.getenv("SBOT_TEST_TMP") or "/tmp/sbot-bench"
local lab = servers.start_lab()
local dir = helpers.tmpdir("bench-s3pub")
local ok, err = pcall(function()
  local file = dir .. "/agent.iso"
  assert(helpers.sh(string.format("head -c %d /dev/urandom > %s", size_mib * 1024 * 1024, helpers.shquote(file))))
  local c = assert(s3.client { endpoint = lab.endpoint, access_key = lab.access_key, secret_key = lab.secret_key,
    region = lab.region, tls = lab.tls })
  local env = string.format("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=%s " ..
    "AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null",
    helpers.shquote(lab.access_key), helpers.shquote(lab.secret_key), lab.region)
  local aws = string.format("/usr/bin/aws --endpoint-url %s --ca-bundle %s", lab.endpoint,
    helpers.shquote(lab.info.cert_file))
  local merge = dir .. "/merge.py"
  helpers.write_file(merge, [[
import json, sys
path, key, etag, size = sys.argv[1:5]
try:
    doc = json.load(open(path))
except (OSError, ValueError):
    doc = {}
doc.setdefault("objects", {})[key] = {"key": key, "etag": json.loads(etag), "size": int(size)}
json.dump(doc, open(path, "w"), indent=2)
]])

  local function aws_publish(i)
    local key = "isos/aws-" .. i .. ".iso"
    local idx = dir .. "/aws-index.json"
    return string.format("sh -c %s", helpers.shquote(table.concat({
      string.format("%s s3 cp --quiet %s s3://%s/%s", aws, helpers.shquote(file), lab.bucket, key),
      string.format("%s s3api copy-object --copy-source %s/%s --bucket %s --key %s >/dev/null", aws,
        lab.bucket, key, lab.public_bucket, key),
      string.format("rm -f %s; %s s3api get-object --bucket %s --key metadata/aws-index.json %s >/dev/null 2>&1 || true",
        idx, aws, lab.bucket, idx),
      string.format("etag=$(%s s3api head-object --bucket %s --key %s --query ETag)", aws, lab.bucket, key),
      string.format("python3 %s %s %s \"$etag\" %d", merge, idx, key, size_mib * 1024 * 1024),
      string.format("%s s3api put-object --bucket %s --key metadata/aws-index.json --body %s >/dev/null",
        aws, lab.bucket, idx),
    }, " && ")))
  end

  local function sbot_publish(i)
    return string.format("%s run %s --site %s --runs-dir %s %s --key isos/sbot-%d.iso",
      helpers.shquote(helpers.sbot_bin), helpers.shquote(src .. "/workflows/iso_to_s3.lua"),
      helpers.shquote(lab.site_path), helpers.shquote(dir .. "/runs"), helpers.shquote(file), i)
  end

  --- Run a command under GNU time; returns wall seconds, peak RSS KiB.
  local function measure(cmd)
    local tfile = dir .. "/time.out"
    local t0 = helpers.now()
    local rok, _, out = helpers.sh(string.format("cd %s && %s /usr/bin/time -f '%%M' -o %s %s 2>&1",
      helpers.shquote(dir), env, tfile, cmd))
    local wall = helpers.now() - t0
    assert(rok, "bench/s3_publish: command failed: " .. cmd .. "\n" .. out)
    local rss = tonumber(helpers.read_file(tfile):match("(%d+)%s*$"))
    return wall, rss, out
  end

  -- remove every version of what a run published (the lab keeps data on disk)
  local function clean(key)
    for _, b in ipairs { lab.bucket, lab.public_bucket } do
      local objs = {}
      for v in c:list_object_versions { bucket = b, prefix = key } do
        if v then objs[#objs + 1] = { key = v.key, version_id = v.version_id } end
      end
      if #objs > 0 then assert(c:delete_objects { bucket = b, objects = objs, quiet = true }) end
    end
  end

  local function median(t)
    local s = {}
    for i, v in ipairs(t) do s[i] = v end
    table.sort(s)
    return s[(#s + 1) // 2]
  end

  local res = { sbot = { wall = {}, rss = {} }, awscli = { wall = {}, rss = {} } }
  local want = servers.sha256sum(file)
  for i = 1, runs do
    for _, who in ipairs { "sbot", "awscli" } do
      local wall, rss, out = measure(who == "sbot" and sbot_publish(i) or aws_publish(i))
      local key = "isos/" .. (who == "sbot" and "sbot-" or "aws-") .. i .. ".iso"
      -- the public copy is there, whole
      local h = assert(c:head_object { bucket = lab.public_bucket, key = key })
      assert(h.size == size_mib * 1024 * 1024, "bench/s3_publish: " .. key .. " is " .. tostring(h.size) .. " bytes")
      if who == "sbot" then
        assert(out:find("public URL: ", 1, true), out)
        assert(h.metadata["sbot-sha256"] == want, "bench/s3_publish: the published copy's SHA-256 is not the file's")
      end
      table.insert(res[who].wall, wall)
      table.insert(res[who].rss, rss)
      io.stderr:write(string.format("run %d %-6s %7.2f s %8d KiB\n", i, who, wall, rss))
      clean(key)
    end
  end
  print(string.format("bench/s3_publish: publish %d MiB (upload + public copy + index) to the lab's S3 (HTTPS, loopback), " ..
    "median of %d alternated runs (baseline: awscli %s)", size_mib, runs,
    (select(3, helpers.sh("/usr/bin/aws --version 2>&1")) or ""):match("^(%S+)") or "?"))
  local sw, aw = median(res.sbot.wall), median(res.awscli.wall)
  local sr, ar = median(res.sbot.rss), median(res.awscli.rss)
  print(string.format("  wall: sbot %.2f s, awscli %.2f s: sbot/awscli %.2f (awscli/sbot %.2fx)", sw, aw, sw / aw, aw / sw))
  print(string.format("  peak RSS: sbot %.1f MiB, awscli %.1f MiB: sbot/awscli %.2f", sr / 1024, ar / 1024, sr / ar))
  print(string.format("  goal: >= 1.2x faster (%s), <= 32 MiB (%s)", aw / sw >= 1.2 and "met" or "NOT met",
    sr <= 32 * 1024 and "met" or "NOT met"))
end)
servers.stop(lab)
os.execute("rm -rf " .. helpers.shquote(dir))
if not ok then error(err, 0) end
