--- HTTP client for the lab specs. It drives curl (a Debian test dependency)
-- through io.popen until sbot.http lands; specs only use request() and the
-- response table, so swapping the transport later touches this file only.
local json = require "sbot.json"
local helpers = require "helpers"

local M = {}
local Client = {}
Client.__index = Client

--- opts: base ("https://127.0.0.1:PORT"), cacert (file), pin (base64 sha256),
-- user, password, insecure (skip chain check; the pin still applies),
-- timeout (seconds, default 10).
function M.new(opts)
  return setmetatable({ base = opts.base, cacert = opts.cacert, pin = opts.pin, user = opts.user,
    password = opts.password, insecure = opts.insecure, timeout = opts.timeout or 10 }, Client)
end

local function parse_headers(text)
  local h = {}
  -- keep only the last response's headers (curl writes all of them)
  local last = text
  for block in text:gmatch("HTTP/[^\r\n]*\r?\n.-\r?\n\r?\n") do last = block end
  for name, value in last:gmatch("([%w%-]+):%s*([^\r\n]*)") do h[name:lower()] = value end
  return h
end

--- request(method, path, opts) -> response | nil, message, curl_exit
-- opts: body (table -> JSON, or string), headers {name = value},
-- auth ("token" (default when logged in), "basic", "none"), query (raw string).
-- response: {status, headers (lower-case names), body, json}.
function Client:request(method, path, opts)
  opts = opts or {}
  local dir = helpers.tmpdir("curl")
  local args = { "curl", "-sS", "--max-time", tostring(self.timeout), "-X", method,
    "-D", dir .. "/headers", "-o", dir .. "/body", "-w", "%{http_code}" }
  if self.cacert then args[#args + 1] = "--cacert"; args[#args + 1] = self.cacert end
  if self.insecure then args[#args + 1] = "-k" end
  if self.pin then args[#args + 1] = "--pinnedpubkey"; args[#args + 1] = "sha256//" .. self.pin end
  local auth = opts.auth or (self.token and "token" or "none")
  if auth == "basic" then
    args[#args + 1] = "-u"; args[#args + 1] = self.user .. ":" .. self.password
  elseif auth == "token" and self.token then
    args[#args + 1] = "-H"; args[#args + 1] = "X-Auth-Token: " .. self.token
  end
  for k, v in pairs(opts.headers or {}) do
    args[#args + 1] = "-H"; args[#args + 1] = k .. ": " .. v
  end
  if opts.body ~= nil then
    local body = type(opts.body) == "table" and json.encode(opts.body) or opts.body
    helpers.write_file(dir .. "/req", body)
    args[#args + 1] = "-H"; args[#args + 1] = "Content-Type: application/json"
    args[#args + 1] = "--data-binary"; args[#args + 1] = "@" .. dir .. "/req"
  end
  local url = self.base .. path
  if opts.query then url = url .. "?" .. opts.query end
  args[#args + 1] = url
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = helpers.shquote(a) end
  local ok, code, out = helpers.sh(table.concat(quoted, " ") .. " 2>" .. dir .. "/err")
  local res
  if ok then
    res = { status = tonumber(out), headers = parse_headers(helpers.read_file(dir .. "/headers")),
      body = helpers.read_file(dir .. "/body") }
    res.json = json.decode(res.body)
  end
  local err = helpers.read_file(dir .. "/err")
  os.execute("rm -rf " .. helpers.shquote(dir))
  if not res then return nil, "curl " .. method .. " " .. url .. ": " .. err, code end
  return res
end

function Client:get(path, opts) return self:request("GET", path, opts) end

--- Log in (POST to the given sessions path); keeps the token.
function Client:login(sessions_path)
  local r, err = self:request("POST", sessions_path or "/redfish/v1/Sessions",
    { body = { UserName = self.user, Password = self.password }, auth = "none" })
  if not r then return nil, err end
  if r.status == 201 then
    self.token = r.headers["x-auth-token"]
    self.session = r.headers["location"]
  end
  return r
end

function Client:logout()
  if not self.session then return nil end
  local r = self:request("DELETE", self.session)
  self.token, self.session = nil, nil
  return r
end

--- The Dell MessageId of an error response, without the registry prefix
-- ("IDRAC.1.6.RAC0218" -> "RAC0218").
function M.message_id(res)
  local e = res and res.json and res.json.error
  local info = e and e["@Message.ExtendedInfo"] and e["@Message.ExtendedInfo"][1]
  local id = info and info.MessageId
  return id and id:match("([^%.]+)$"), id
end

--- Start `sbot lab` with extra arguments; returns {proc, dir, info, site,
-- client(name) -> Client, state() -> table, stop()}.
function M.start_lab(args)
  local dir = helpers.tmpdir("lab")
  local parts = { helpers.shquote(helpers.sbot_bin), "lab", "--dir", helpers.shquote(dir) }
  for _, a in ipairs(args or {}) do parts[#parts + 1] = helpers.shquote(a) end
  local proc = helpers.spawn(table.concat(parts, " "))
  local info
  for _ = 1, 200 do
    local f = io.open(dir .. "/lab.json", "rb")
    if f then
      info = json.decode(f:read("a"))
      f:close()
      if info then break end
    end
    if not proc:alive() then break end
    os.execute("sleep 0.05")
  end
  if not info then
    local out = proc:output()
    proc:stop()
    error("sbot lab did not start: " .. out)
  end
  local lab = { proc = proc, dir = dir, info = info, site = dofile(dir .. "/site.lua") }
  function lab.client(name, extra)
    local d = assert(info.devices[name], "no lab device " .. tostring(name))
    local o = { base = d.url, cacert = d.cert_file, pin = d.pin_sha256, user = "root", password = "calvin" }
    for k, v in pairs(extra or {}) do o[k] = v end
    return M.new(o)
  end
  function lab.state()
    local first
    for _, d in pairs(info.devices) do first = first or d end
    local c = M.new({ base = first.url, cacert = first.cert_file })
    local r = assert(c:get("/lab/state"))
    return r.json
  end
  --- Stop the lab cleanly (POST /lab/stop) and return its output; falls back
  -- to SIGTERM when it does not exit.
  function lab.stop()
    local first
    for _, d in pairs(info.devices) do first = first or d end
    M.new({ base = first.url, cacert = first.cert_file }):request("POST", "/lab/stop")
    for _ = 1, 100 do
      if not proc:alive() then break end
      os.execute("sleep 0.05")
    end
    local clean = not proc:alive()
    proc:stop()
    return proc:output(), clean
  end
  return lab
end

return M
