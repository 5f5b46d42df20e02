--- HTTP client for the lab specs, on sbot.http (the client the product uses).
-- Each request is one attempt on a fresh connection (retries = false,
-- connection_close = true), so a spec sees every answer and every injected
-- connection reset exactly as the lab produced it.
local json = require "sbot.json"
local http = require "sbot.http"
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

-- The sbot.http `tls` table for these options. A pin without a CA file is the
-- trust anchor on its own (no chain check), which is what `insecure` plus a pin
-- meant for curl (-k --pinnedpubkey).
function Client:tls()
  if not self.base:match("^https://") then return nil end
  local tls = {}
  if self.cacert then tls.ca_file = self.cacert end
  if self.pin then tls.pin_sha256 = self.pin end
  if self.insecure and not self.pin then tls.insecure = true end
  return tls
end

--- request(method, path, opts) -> response | nil, message, code
-- opts: body (table -> JSON, or string), headers {name = value},
-- auth ("token" (default when logged in), "basic", "none"), query (raw string).
-- response: {status, headers (lower-case names; a repeated header gives its
-- last value), body, json}. code is sbot.http's failure code ("tls",
-- "closed", "timeout", ...: docs/errors.md).
function Client:request(method, path, opts)
  opts = opts or {}
  local headers = {}
  local req = { method = method, headers = headers, timeout = self.timeout,
    connect_timeout = math.min(self.timeout, 10), retries = false, connection_close = true, tls = self:tls() }
  local auth = opts.auth or (self.token and "token" or "none")
  if auth == "basic" then
    req.basic_auth = { user = self.user, password = self.password }
  elseif auth == "token" and self.token then
    headers["X-Auth-Token"] = self.token
  end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.body ~= nil then
    -- a request body is the wire: a secret object in it carries its value
    -- (docs/json.md: protocol bodies encode with secrets = "reveal")
    req.body = type(opts.body) == "table" and json.encode(opts.body, { secrets = "reveal" }) or opts.body
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  end
  req.url = self.base .. path .. (opts.query and ("?" .. opts.query) or "")
  local r, err, code = http.request(req)
  if not r then return nil, err, code end
  local h = {}
  for k, v in pairs(r.headers) do h[k] = type(v) == "table" and v[#v] or v end
  return { status = r.status, headers = h, body = r.body, json = json.decode(r.body) }
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
-- ("IDRAC.1.6.RAC0218" -> "RAC0218"). ExtendedInfo may be one object or a list.
function M.message_id(res)
  local e = res and res.json and res.json.error
  local info = e and e["@Message.ExtendedInfo"]
  if type(info) == "table" and info.MessageId == nil then info = info[1] end -- one object or a list
  local id = info and info.MessageId
  return id and id:match("([^%.]+)$"), id
end

--- The lab's site file as plain values: loaded with sbot.site (every
-- `secret:` reference resolved, from the lab's Vault), secret objects
-- revealed, so a spec can send them. Returns the table or raises.
function M.read_site(path)
  local site_mod = require "sbot.site"
  local secret = require "sbot.secret"
  local site, err = site_mod.load(path)
  if not site then error("cannot load the lab's site file: " .. tostring(err), 2) end
  local seen = {}
  local function plain(v)
    if secret.is_secret(v) then return v:reveal() end
    if type(v) ~= "table" or seen[v] then return v end
    seen[v] = true
    for k, x in pairs(v) do v[k] = plain(x) end
    return v
  end
  return plain(site)
end

--- Start `sbot lab` with extra arguments; returns {proc, dir, info, site
-- (plain values, read_site), raw_site (the file as written), client(name) ->
-- Client, state() -> table, stop()}.
function M.start_lab(args)
  local dir = helpers.tmpdir("lab")
  local parts = { helpers.shquote(helpers.sbot_bin), "lab", "--dir", helpers.shquote(dir) }
  for _, a in ipairs(args or {}) do parts[#parts + 1] = helpers.shquote(a) end
  local proc = helpers.spawn(table.concat(parts, " "))
  local info
  for _ = 1, 400 do -- 20 s: under ASan with istgt the lab takes a while
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
  local ok, site = pcall(M.read_site, dir .. "/site.lua")
  if not ok then
    proc:stop()
    error(site, 0)
  end
  local lab = { proc = proc, dir = dir, info = info, site = site, raw_site = dofile(dir .. "/site.lua") }
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
