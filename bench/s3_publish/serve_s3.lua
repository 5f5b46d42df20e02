-- bench/s3_publish/serve_s3.lua DIR [MODEL_FILE]: the lab's S3 model alone on
-- plain HTTP (127.0.0.1, a free port), for measuring the model itself.
-- MODEL_FILE (default: require "sbot.lab.s3") lets a measurement load another
-- version of lua/sbot/lab/s3.lua, e.g. `git show main:lua/sbot/lab/s3.lua`.
-- Writes DIR/serve.json {endpoint, access_key, secret_key, pid} and serves
-- until killed.
local httpd = require "sbot.httpd"
local json = require "sbot.json"
local sys = require "sbot.sys"
local dir, model_file = arg[1], arg[2]
assert(dir, "usage: serve_s3.lua DIR [MODEL_FILE]")
local model = model_file and model_file ~= "" and dofile(model_file) or require "sbot.lab.s3"
local dev = assert(model.new { dir = dir, name = "s3", access_key = "BENCHLAB0000000000", secret_key = "bench-secret" })
local srv = assert(httpd.listen { host = "127.0.0.1", port = 0, handler = dev.handler, max_body = dev.max_body })
local f = assert(io.open(dir .. "/serve.json.tmp", "wb"))
f:write(json.encode { endpoint = srv:url(), access_key = "BENCHLAB0000000000", secret_key = "bench-secret",
  pid = sys.getpid(), bucket = model.BUCKET, public_bucket = model.PUBLIC_BUCKET })
f:close()
assert(os.rename(dir .. "/serve.json.tmp", dir .. "/serve.json"))
httpd.run({ srv })
