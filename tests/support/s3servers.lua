--- Start real S3 servers for the specs: s3rver (npm, verifies SigV4) and the
-- lab's S3 model (`sbot lab`, lua/sbot/lab/s3.lua: versioning, bucket
-- policy, conditional writes, multipart listing/abort, fault injection).
local helpers = require "helpers"

local M = {}

M.access_key = "S3RVER"
M.secret_key = "S3RVER"

--- Install s3rver if needed (tests/setup-npm is idempotent) and start it on a
-- free port with a fresh directory. Returns {endpoint, port, dir, proc}.
function M.start_s3rver()
  local src = helpers.source_dir
  local ok, _, out = helpers.sh(helpers.shquote(src .. "/tests/setup-npm") .. " 2>&1")
  assert(ok, "tests/setup-npm failed: " .. tostring(out))
  local dir = helpers.tmpdir("s3rver")
  local port = helpers.free_port()
  local proc = helpers.spawn(string.format(
    "env NODE_OPTIONS=--openssl-legacy-provider node %s -d %s -a 127.0.0.1 -p %d -s",
    helpers.shquote(src .. "/tests/servers/s3rver.js"), helpers.shquote(dir .. "/data"), port))
  assert(helpers.wait_port(port, 20), "s3rver did not start: " .. proc:output())
  return { endpoint = "http://127.0.0.1:" .. port, port = port, dir = dir, proc = proc }
end

--- Start `sbot lab --servers 1` in a fresh directory and read the site file it
-- writes. Returns {endpoint, tls, region, bucket, public_bucket, access_key,
-- secret_key (plain strings from the site file), site_path, dir, proc,
-- faults(spec), state(), stop_url}.
function M.start_lab(extra)
  local http = require "sbot.http"
  local json = require "sbot.json"
  local args = { "--servers", "1" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local lab = require("labclient").start_lab(args)
  local proc, dir, info = lab.proc, lab.dir, lab.info
  local site = lab.site -- plain values, resolved from the lab's Vault
  assert(site.s3, "the lab's site file has no s3 entry")
  local s = { proc = proc, dir = dir, site_path = info.site, info = info.devices.s3 }
  for k, v in pairs(site.s3) do s[k] = v end
  local base = info.devices.s3.url
  --- Replace the lab's faults (a --faults spec, "" for none).
  function s.faults(spec)
    local r = assert(http.post(base .. "/lab/faults", { body = spec, tls = s.tls }))
    assert(r.status == 200, "POST /lab/faults: " .. tostring(r.status) .. " " .. tostring(r.body))
  end
  function s.state()
    local r = assert(http.get(base .. "/lab/state", { tls = s.tls }))
    return assert(json.decode(r.body)).devices.s3
  end
  return s
end

function M.stop(s)
  if s and s.proc then s.proc:stop() end
  if s and s.dir then os.execute("rm -rf " .. helpers.shquote(s.dir)) end
end

--- Run awscli against an endpoint; returns ok, stdout+stderr.
function M.aws(endpoint, args)
  local cmd = string.format("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=us-east-1 " ..
    "AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null " ..
    "/usr/bin/aws --endpoint-url %s %s 2>&1", M.access_key, M.secret_key, endpoint, args)
  local ok, _, out = helpers.sh(cmd)
  return ok, out
end

function M.sha256sum(path)
  local _, _, out = helpers.sh("sha256sum " .. helpers.shquote(path))
  return out:match("^(%x+)")
end

return M
