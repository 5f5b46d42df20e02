-- Serve the TrueNAS lab device on loopback for the tests, until killed.
-- usage: sbot run tests/servers/truenas_lab.lua key=value ...
--   port=N api_key=K [seed=N] [drop=RATE] [tls=DIR] [tgt_port=N tgt_dir=DIR [tgt_faketime=no]]
-- With tls=DIR the server uses a fresh self-signed certificate and writes
-- its pin to DIR/pin. Writes "ready" to stdout once listening.
local truenas = require "sbot.lab.truenas"
local httpd = require "sbot.httpd"

local o = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  assert(k, "bad argument " .. a)
  o[k] = v
end

local tgt
if o.tgt_port then
  tgt = { port = tonumber(o.tgt_port), dir = o.tgt_dir }
  if o.tgt_faketime == "no" then tgt.faketime = false end -- istgt at its own pace
end

local dev = assert(truenas.new {
  api_key = o.api_key, seed = tonumber(o.seed), faults = o.drop and { drop = tonumber(o.drop) } or nil,
  tgt = tgt,
})
local tls
if o.tls then
  local c = httpd.selfsigned { ips = { "127.0.0.1" } }
  tls = { cert = c.cert, key = c.key }
  local f = assert(io.open(o.tls .. "/pin", "w"))
  f:write(c.pin_sha256)
  f:close()
end
local srv = assert(httpd.listen { host = "127.0.0.1", port = tonumber(o.port), handler = dev.handler, tls = tls })
io.stdout:write("ready\n")
io.stdout:flush()
local ok, err = pcall(httpd.run, srv)
dev.close()
if not ok then error(err, 0) end
