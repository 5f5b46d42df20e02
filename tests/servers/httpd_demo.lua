-- Test server for tests/lua/httpd_spec.lua: sbot.httpd serving a few
-- behaviours on two ports (plain and TLS). Writes DIR/ports.json when ready.
-- usage: sbot run tests/servers/httpd_demo.lua DIR
local httpd = require "sbot.httpd"
local json = require "sbot.json"
local dir = assert(arg[1], "usage: httpd_demo.lua DIR")

local cert = httpd.selfsigned({ cn = "demo", ips = { "127.0.0.1" } })
local f = assert(io.open(dir .. "/cert.pem", "w"))
f:write(cert.cert)
f:close()

local servers = {}
local function handler(req)
  if req.path == "/echo" then
    return 200, { ["Content-Type"] = "application/json", ["X-Count"] = 7 }, json.encode(req)
  elseif req.path == "/reset" then
    return httpd.reset()
  elseif req.path == "/slow" then
    return 200, {}, "slow\n", { delay = tonumber(req.query.s or "1") }
  elseif req.path == "/error" then
    error("boom from the handler")
  elseif req.path == "/badstatus" then
    return "not a status"
  elseif req.path == "/ws-callback" then
    return httpd.upgrade(function(ws)
      ws.count = 0
      ws.on_message = function(w, msg)
        w.count = w.count + 1
        w:send(string.format("cb%d:%s", w.count, msg))
        if msg == "bye" then w:close(1000, "bye") end
      end
    end)
  elseif req.path == "/quit" then
    for _, s in ipairs(servers) do s:close() end
    return 200, {}, "bye\n"
  end
  return 404, { ["Content-Type"] = "text/plain" }, "no route for " .. req.method .. " " .. req.path .. "\n"
end

local function websocket(ws, req)
  if req.path ~= "/ws-echo" then
    ws:close(1008, "no websocket at " .. req.path)
    return
  end
  ws:send("hello " .. req.path)
  while true do
    local msg = ws:recv()
    if not msg then break end
    ws:send("echo:" .. msg)
  end
end

servers[1] = assert(httpd.listen({ port = 0, handler = handler, max_body = 1024, websocket = websocket }))
servers[2] = assert(httpd.listen({ port = 0, handler = handler, tls = cert }))
local out = assert(io.open(dir .. "/ports.json.tmp", "w"))
out:write(json.encode({ plain = servers[1]:port(), tls = servers[2]:port(), pin = cert.pin_sha256,
  url = servers[1]:url(), tls_url = servers[2]:url() }))
out:close()
os.rename(dir .. "/ports.json.tmp", dir .. "/ports.json")
httpd.run(servers, { tick = 0.1 })
print("all servers closed")
