--- Start real S3 servers for the specs: s3rver (npm, verifies SigV4) and the
-- python S3 model in tests/servers/s3model.py (versioning, policy,
-- conditional writes, multipart listing/abort, fault injection).
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

--- Start the python S3 model. Returns {endpoint, port, proc, control(cmd)}.
function M.start_model()
  local src = helpers.source_dir
  local port = helpers.free_port()
  local proc = helpers.spawn(string.format("python3 %s --port %d --access-key %s --secret-key %s",
    helpers.shquote(src .. "/tests/servers/s3model.py"), port, M.access_key, M.secret_key))
  assert(helpers.wait_port(port, 20), "s3model did not start: " .. proc:output())
  return { endpoint = "http://127.0.0.1:" .. port, port = port, proc = proc }
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
