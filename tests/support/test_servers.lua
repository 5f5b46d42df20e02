--- Start the loopback servers of tests/servers for the sbot.http specs and bench.
local helpers = require "helpers"

local M = {}

local function server_path(name)
  return helpers.source_dir .. "/tests/servers/" .. name
end

--- Start a server script with arguments; waits for its port. Returns handle
-- (:stop(), .port, .url(path, host)).
function M.start(script, args, opts)
  opts = opts or {}
  local port = helpers.free_port()
  local cmd = "python3 " .. helpers.shquote(server_path(script)) .. " --port " .. port
  for _, a in ipairs(args or {}) do cmd = cmd .. " " .. helpers.shquote(a) end
  local h = helpers.spawn(cmd)
  h.port = port
  local ready
  if opts.wait_output then
    -- a peer that cannot accept connections: wait for its "listening" line
    for _ = 1, 150 do
      local f = io.open(h.log, "rb")
      ready = f and (f:read("a") or ""):find("listening", 1, true) ~= nil
      if f then f:close() end
      if ready then break end
      os.execute("sleep 0.1")
    end
  else
    ready = helpers.wait_port(port, 15)
  end
  if not ready then
    local out = h:output()
    h:stop()
    error("server " .. script .. " did not start on port " .. port .. ": " .. out)
  end
  local scheme = opts.tls and "https" or "http"
  function h.url(path, host)
    return string.format("%s://%s:%d%s", scheme, host or "127.0.0.1", port, path or "/")
  end
  return h
end

--- The httpbin server (tests/servers/httpbin.py); opts.tls = {cert, key},
-- opts.binds = {"127.0.0.1", "127.0.0.2"}.
function M.httpbin(opts)
  opts = opts or {}
  local args = {}
  for _, b in ipairs(opts.binds or {}) do
    args[#args + 1] = "--bind"; args[#args + 1] = b
  end
  if opts.tls then
    args[#args + 1] = "--tls"; args[#args + 1] = opts.tls[1]; args[#args + 1] = opts.tls[2]
  end
  return M.start("httpbin.py", args, opts)
end

--- A self-signed certificate for 127.0.0.1 made by `openssl req`; returns
-- cert path, key path and the base64 SHA-256 pin of its public key.
function M.make_cert(dir, cn)
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  local ok, _, out = helpers.sh(string.format(
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 -subj /CN=%s " ..
    "-addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>&1",
    helpers.shquote(key), helpers.shquote(cert), cn or "127.0.0.1"))
  assert(ok, "openssl req failed: " .. tostring(out))
  local pin
  ok, _, pin = helpers.sh(string.format(
    "openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform der | " ..
    "openssl dgst -sha256 -binary | base64", helpers.shquote(cert)))
  assert(ok, "computing the pin failed")
  return cert, key, (pin:gsub("%s+", ""))
end

--- A private CA and a certificate it signs for the DNS name `name` only (no
-- IP address: connecting to 127.0.0.1 needs tls.server_name = name). EC keys
-- (quick to make). Returns {ca = path, cert = path, key = path, pin = base64
-- SHA-256 of the leaf's public key}.
function M.make_ca_cert(dir, name)
  local function run(cmd)
    local ok, _, out = helpers.sh("cd " .. helpers.shquote(dir) .. " && " .. cmd .. " 2>&1")
    assert(ok, cmd .. ": " .. tostring(out))
  end
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  run("openssl req -x509 " .. ec .. " -keyout ca.key -out ca.pem -days 2 -subj /CN=sbot-test-ca")
  run("openssl req " .. ec .. " -keyout leaf.key -out leaf.csr -subj /CN=" .. name)
  helpers.write_file(dir .. "/leaf.ext", "subjectAltName=DNS:" .. name .. "\n")
  run("openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 "
    .. "-extfile leaf.ext")
  local tls = require "sbot.tls"
  return { ca = dir .. "/ca.pem", cert = dir .. "/leaf.pem", key = dir .. "/leaf.key",
    pin = assert(tls.pin_sha256(helpers.read_file(dir .. "/leaf.pem"))) }
end

--- The static Redfish service of tests/servers/redfish_mockup.lua over
-- tests/fixtures/redfish-mockup (HTTPS, self-signed). extra: more arguments
-- ("--no-sessions"); ipv6: listen on ::1. Returns {proc, host = "addr:port",
-- pin, state() (GET /mockup/state), stop()}.
function M.redfish_mockup(extra, ipv6)
  local dir = helpers.tmpdir("mockup")
  local cmd = helpers.shquote(helpers.sbot_bin) .. " run " ..
    helpers.shquote(server_path("redfish_mockup.lua")) .. " " ..
    helpers.shquote(helpers.source_dir .. "/tests/fixtures/redfish-mockup") .. " " .. helpers.shquote(dir) ..
    " " .. (extra or "") .. (ipv6 and " --host ::1" or "")
  local p = helpers.spawn(cmd)
  helpers.wait_for(function()
    local f = io.open(dir .. "/port")
    if f then f:close() end
    return f or not p:alive()
  end, 20)
  local f = io.open(dir .. "/port")
  local port = f and tonumber(f:read("a"))
  if f then f:close() end
  if not port then
    local out = p:output()
    p:stop()
    error("redfish_mockup.lua did not start: " .. out)
  end
  local m = { proc = p, host = (ipv6 and "[::1]:" or "127.0.0.1:") .. port, pin = helpers.read_file(dir .. "/pin") }
  function m.state()
    local c = require("labclient").new({ base = "https://" .. m.host, pin = m.pin, insecure = true })
    return assert(c:get("/mockup/state")).json
  end
  function m.stop() p:stop() end
  return m
end

return M
