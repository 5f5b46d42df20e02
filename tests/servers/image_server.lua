-- An HTTP file server for virtual-media tests: serves the files of DIR with
-- byte-range support (Range: bytes=a-b, a-, -n -> 206 + Content-Range), the
-- way Apache serves ISO images to an iDRAC. With --no-range it ignores Range
-- and sends whole files (what python's http.server does), which an iDRAC
-- refuses. Writes the port to DIR/port when listening; GET /quit stops it.
-- usage: sbot run tests/servers/image_server.lua DIR [--no-range]
local httpd = require "sbot.httpd"
local dir = assert(arg[1], "usage: image_server.lua DIR [--no-range]")
local ranges = arg[2] ~= "--no-range"

local served = {} -- path -> count, for the log
local srv
local function handler(req)
  if req.path == "/quit" then
    srv:close()
    return 200, {}, "bye\n"
  end
  local name = req.path:match("^/([%w%._%-]+)$")
  local f = name and io.open(dir .. "/" .. name, "rb")
  if not f then return 404, { ["Content-Type"] = "text/plain" }, "not found\n" end
  local data = f:read("a")
  f:close()
  served[name] = (served[name] or 0) + 1
  io.stdout:write(string.format("%s %s range=%s\n", req.method, req.path, req.headers.range or "-"))
  io.stdout:flush()
  local h = { ["Content-Type"] = "application/octet-stream" }
  local range = ranges and req.headers.range
  if range then
    h["Accept-Ranges"] = "bytes"
    local a, b = range:match("^bytes=(%d*)%-(%d*)$")
    local size = #data
    local first, last
    if a and a ~= "" then
      first, last = tonumber(a), (b ~= "" and tonumber(b) or size - 1)
    elseif b and b ~= "" then
      first, last = size - tonumber(b), size - 1
    end
    if not first or first >= size or last < first then
      h["Content-Range"] = "bytes */" .. size
      return 416, h, ""
    end
    if last >= size then last = size - 1 end
    h["Content-Range"] = string.format("bytes %d-%d/%d", first, last, size)
    return 206, h, req.method == "HEAD" and "" or data:sub(first + 1, last + 1)
  end
  return 200, h, req.method == "HEAD" and "" or data
end

srv = assert(httpd.listen({ host = "127.0.0.1", port = 0, handler = handler }))
local pf = assert(io.open(dir .. "/port.tmp", "w"))
pf:write(tostring(srv:port()))
pf:close()
assert(os.rename(dir .. "/port.tmp", dir .. "/port"))
io.stdout:write("listening on ", srv:url(), "\n")
io.stdout:flush()
httpd.run(srv)
