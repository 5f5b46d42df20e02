-- A static Redfish service in the style of DMTF's Redfish-Mockup-Server: the
-- resource at /redfish/v1/A/B is DIR/A/B/index.json (the root DIR/index.json),
-- served over HTTPS with a self-signed certificate. On top of the static
-- files: sessions at the collection the root's Links.Sessions names (POST
-- {UserName, Password} -> 201, X-Auth-Token, Location; DELETE), ETags on GET
-- and If-Match on PATCH (412 on a mismatch; a PATCH merges into the stored
-- document), POST to an action -> 204, and DMTF-style error bodies without
-- any vendor MessageIds. A linked resource without a file answers 404.
--   --no-sessions  the root has no SessionService and no Links.Sessions:
--                  clients must use Basic auth
--   --host ADDR    the address to listen on (default 127.0.0.1; ::1 for IPv6)
-- Writes DIR2/port and DIR2/pin (base64 SHA-256 of the key) when listening;
-- GET /mockup/state -> {sessions, logins, requests, max_inflight}; POST /mockup/quit
-- stops. /redfish/v1/Slow/<n> answers after 0.2 s (max_inflight counts them);
-- /redfish/v1/Plain/<status> answers that status with a text/plain page and no
-- Redfish error body (a proxy in front of a BMC, a firmware's error page).
-- usage: sbot run tests/servers/redfish_mockup.lua FIXTURES OUTDIR [--no-sessions] [--user U --password P] [--host ADDR]
local httpd = require "sbot.httpd"
local json = require "sbot.json"

local fixtures, out = assert(arg[1], "usage: redfish_mockup.lua FIXTURES OUTDIR [...]"), assert(arg[2])
local no_sessions, user, password, host = false, "admin", "mockup-pw", "127.0.0.1"
local i = 3
while arg[i] do
  if arg[i] == "--no-sessions" then no_sessions = true
  elseif arg[i] == "--user" then i = i + 1; user = arg[i]
  elseif arg[i] == "--password" then i = i + 1; password = arg[i]
  elseif arg[i] == "--host" then i = i + 1; host = arg[i]
  else error("unknown option " .. arg[i]) end
  i = i + 1
end

local docs = {}         -- path -> document (loaded lazily, changed by PATCH)
local sessions, next_id = {}, 1
local counts = { logins = 0, requests = 0, patches = 0, posts = 0 }
local SESSIONS = "/redfish/v1/SessionService/Sessions"

local function load(path)
  if docs[path] ~= nil then return docs[path] or nil end
  local rel = path:gsub("^/redfish/v1/?", "")
  local f = io.open(fixtures .. "/" .. (rel == "" and "" or rel .. "/") .. "index.json", "rb")
  if not f then docs[path] = false; return nil end
  local doc = json.decode(f:read("a"))
  f:close()
  if path == "/redfish/v1" and no_sessions then
    doc.SessionService = nil
    doc.Links = nil
  end
  docs[path] = doc
  return doc
end

local function fnv(s)
  local h = 0x811c9dc5
  for k = 1, #s do h = ((h ~ s:byte(k)) * 0x01000193) & 0xffffffff end
  return string.format('W/"%08x"', h)
end

local function reply(status, body, headers)
  headers = headers or {}
  headers["Content-Type"] = "application/json"
  headers["OData-Version"] = "4.0"
  return status, headers, body and json.encode(body) or ""
end

local function fail(status, id, message)
  return reply(status, { error = { code = "Base.1.16.GeneralError", message = "A general error has occurred.",
    ["@Message.ExtendedInfo"] = json.array({ { MessageId = "Base.1.16." .. id, Message = message,
      Severity = "Critical", Resolution = "None." } }) } })
end

local function authorized(req)
  local tok = req.headers["x-auth-token"]
  if tok and not no_sessions then
    for _, s in pairs(sessions) do if s.token == tok then return true end end
    return false
  end
  local b = (req.headers.authorization or ""):match("^Basic%s+(%S+)$")
  if b then
    local crypto = require "sbot.crypto"
    return crypto.base64_decode(b) == user .. ":" .. password
  end
  return false
end

-- /redfish/v1/Slow/<n>: a document answered after 0.2 s. Requests whose
-- answer is still due are in flight for the client: their most at once is
-- max_inflight (how a client's per-host cap shows from the server).
local due, max_inflight = {}, 0

local srv
local function handler(req)
  counts.requests = counts.requests + 1
  local path = req.path:gsub("/+$", "")
  if path == "/mockup/state" then
    local n = 0
    for _ in pairs(sessions) do n = n + 1 end
    return reply(200, { sessions = n, logins = counts.logins, requests = counts.requests,
      patches = counts.patches, posts = counts.posts, max_inflight = max_inflight })
  elseif path == "/mockup/reset-inflight" then
    max_inflight = 0
    return reply(200, {})
  elseif path == "/mockup/quit" then
    srv:close()
    return reply(200, {})
  end
  if path == "/redfish/v1" and req.method == "GET" then
    return reply(200, load(path))
  end
  if path == SESSIONS and req.method == "POST" and not no_sessions then
    local body = json.decode(req.body ~= "" and req.body or "null")
    if type(body) ~= "table" or body.UserName ~= user or body.Password ~= password then
      return fail(401, "ResourceAtUriUnauthorized", "Invalid user name or password.")
    end
    local id = string.format("%08d", next_id)
    next_id = next_id + 1
    local tok = string.format("mock-%s-%d", id, math.random(1, 1 << 30))
    sessions[id] = { token = tok }
    counts.logins = counts.logins + 1
    return reply(201, { ["@odata.id"] = SESSIONS .. "/" .. id, Id = id, UserName = user },
      { ["X-Auth-Token"] = tok, Location = SESSIONS .. "/" .. id })
  end
  if not authorized(req) then
    return fail(401, "InsufficientPrivilege", "There are insufficient privileges for the account or credentials associated with the current session to perform the requested operation.")
  end
  local sid = path:match("^" .. SESSIONS:gsub("%p", "%%%0") .. "/(%d+)$")
  if sid then
    if not sessions[sid] then return fail(404, "ResourceMissingAtURI", "The resource at the URI " .. path .. " was not found.") end
    if req.method == "DELETE" then sessions[sid] = nil; return reply(204) end
    return reply(200, { ["@odata.id"] = path, Id = sid, UserName = user })
  end
  if path == SESSIONS and req.method == "GET" then
    local m = {}
    for id in pairs(sessions) do m[#m + 1] = { ["@odata.id"] = SESSIONS .. "/" .. id } end
    return reply(200, { ["@odata.id"] = SESSIONS, Members = json.array(m), ["Members@odata.count"] = #m })
  end
  if path:match("^/redfish/v1/Slow/%d+$") and req.method == "GET" then
    local now = httpd.now()
    local live = {}
    for _, t in ipairs(due) do if t > now then live[#live + 1] = t end end
    live[#live + 1] = now + 0.2
    due = live
    if #live > max_inflight then max_inflight = #live end
    local st, h, b = reply(200, { ["@odata.id"] = path, Id = path:match("(%d+)$") })
    return st, h, b, { delay = 0.2 }
  end
  local plain = path:match("^/redfish/v1/Plain/(%d%d%d)$")
  if plain then
    return tonumber(plain), { ["Content-Type"] = "text/plain" }, plain .. " from the mockup's proxy\n"
  end
  if req.method == "POST" and path:match("/Actions/") then
    counts.posts = counts.posts + 1
    return reply(204)
  end
  local doc = load(path)
  if not doc then return fail(404, "ResourceMissingAtURI", "The resource at the URI " .. path .. " was not found.") end
  local etag = fnv(json.encode(doc))
  if req.method == "GET" then
    return reply(200, doc, { ETag = etag })
  elseif req.method == "PATCH" then
    local want = req.headers["if-match"]
    if want and want ~= etag then
      return fail(412, "PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource.")
    end
    local body = json.decode(req.body)
    if type(body) ~= "table" then return fail(400, "MalformedJSON", "The request body submitted was malformed JSON.") end
    local function merge(dst, src)
      for k, v in pairs(src) do
        if type(v) == "table" and type(dst[k]) == "table" and not json.is_array(v) then merge(dst[k], v) else dst[k] = v end
      end
    end
    merge(doc, body)
    counts.patches = counts.patches + 1
    return reply(204)
  end
  return fail(405, "OperationNotAllowed", "The HTTP method is not allowed on this resource.")
end

local cert = httpd.selfsigned({ cn = "redfish-mockup", ips = { "127.0.0.1", "::1" } })
srv = assert(httpd.listen({ host = host, port = 0, tls = cert, handler = handler }))
local function put(name, text)
  local f = assert(io.open(out .. "/" .. name .. ".tmp", "w"))
  f:write(text)
  f:close()
  assert(os.rename(out .. "/" .. name .. ".tmp", out .. "/" .. name))
end
put("pin", cert.pin_sha256)
put("port", tostring(srv:port()))
io.stdout:write("listening on ", srv:url(), "\n")
io.stdout:flush()
httpd.run(srv)
