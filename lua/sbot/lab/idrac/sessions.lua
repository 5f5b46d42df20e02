--- sbot.lab.idrac.sessions: authentication and the session service.
--
-- Logins go to the flavour's sessions collection (iDRAC 8: /redfish/v1/Sessions,
-- the service root's Links.Sessions; iDRAC 9: /redfish/v1/SessionService/Sessions).
-- At most F.max_sessions live at once, then 503 RAC0218. Idle sessions expire
-- (session_timeout). Basic auth is accepted and creates no session.
--
-- iDRAC 8's trap, modelled on purpose: POST /redfish/v1/SessionService/Sessions
-- answers 405 but, with valid credentials, still creates a session the client
-- never learns about (counted in /lab/state as leaked_logins; it occupies a
-- slot until it times out).
local M = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64decode(s)
  s = s:gsub("[^%w%+/=]", "")
  local bits = s:gsub("=", ""):gsub(".", function(c)
    local n = B64:find(c, 1, true) - 1
    local r = ""
    for i = 5, 0, -1 do r = r .. ((n >> i) & 1) end
    return r
  end)
  return (bits:gsub("%d%d%d%d%d%d%d%d", function(b) return string.char(tonumber(b, 2)) end)
    :sub(1, math.floor(#bits / 8)))
end

local function random_token()
  return (require("sbot.crypto").random_bytes(16):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function M.install(dev, opts)
  local F, st, P = dev.F, dev.st, dev.P
  local timeout = opts.session_timeout or 1800

  local function expired(s) return dev.now() - s.last > timeout end

  function dev.count_sessions()
    local n = 0
    for id, s in pairs(st.sessions) do
      if expired(s) then st.sessions[id] = nil else n = n + 1 end
    end
    return n
  end

  local function session_by_token(tok)
    for id, s in pairs(st.sessions) do
      if s.token == tok then
        if expired(s) then
          st.sessions[id] = nil
          return nil
        end
        s.last = dev.now()
        return s
      end
    end
  end

  local basic_cache, basic_cached = {}, 0 -- Authorization value -> "user:pass" (bounded)

  --- The caller of a request: a session, {basic = true}, or nil.
  function dev.authenticate(req)
    local tok = req.headers["x-auth-token"]
    if tok then return session_by_token(tok) end
    local b = (req.headers["authorization"] or ""):match("^[Bb]asic%s+(%S+)")
    if b then
      local decoded = basic_cache[b]
      if not decoded then
        decoded = b64decode(b)
        if basic_cached >= 64 then basic_cache, basic_cached = {}, 0 end
        basic_cache[b] = decoded
        basic_cached = basic_cached + 1
      end
      local user, pass = decoded:match("^([^:]*):(.*)$")
      if user == dev.user and pass == dev.password then return { user = user, basic = true } end
    end
    return nil
  end

  local function session_body(id, s)
    return P.odata(F.sessions .. "/" .. id, "#Session.v1_0_2.Session", {
      Id = tostring(id), Name = "User Session", UserName = s.user, Description = "User Session" })
  end

  --- Check credentials and capacity, create the session. Returns the
  -- session id, or nil and the error response (status, headers, body).
  local function create(body, where)
    local user, pass = body.UserName, body.Password
    if type(user) ~= "string" or type(pass) ~= "string" then
      return nil, { P.fail(400, "PropertyMissing", "The properties UserName and Password are required.",
        { props = { "#/UserName", "#/Password" } }) }
    end
    if user ~= dev.user or pass ~= dev.password then
      return nil, { P.fail(401, "ResourceAtUriUnauthorized",
        "While accessing the resource at " .. where .. ", the service received an authorization error: invalid user name or password.",
        { severity = "Critical", single = true }) }
    end
    if dev.count_sessions() >= F.max_sessions then
      return nil, { P.fail(503, "RAC0218", "The maximum number of user sessions is reached.",
        { severity = "Critical", resolution = "Close one or more sessions and retry the operation." }) }
    end
    local id = st.next_session
    st.next_session = id + 1
    st.sessions[id] = { user = user, token = random_token(), created = dev.now(), last = dev.now() }
    return id
  end

  dev.resource(F.sessions, {
    public_post = true, login = true,
    get = function()
      local ids = {}
      for id in pairs(st.sessions) do ids[#ids + 1] = id end
      table.sort(ids)
      local m = {}
      for _, id in ipairs(ids) do m[#m + 1] = F.sessions .. "/" .. id end
      return P.collection(F.sessions, "#SessionCollection.SessionCollection", "Session Collection", m)
    end,
    post = function(body)
      local id, err = create(body, F.sessions)
      if not id then return table.unpack(err) end
      st.counts.logins = st.counts.logins + 1
      local s = st.sessions[id]
      local status, h, b = P.reply(201, session_body(id, s))
      h["X-Auth-Token"] = s.token
      h["Location"] = F.sessions .. "/" .. id
      return status, h, b
    end,
  })

  if F.generation == 8 then
    -- the DMTF path exists on iDRAC 8: it lists nothing and refuses logins
    -- with 405 — after creating the session anyway
    local dmtf = "/redfish/v1/SessionService/Sessions"
    dev.resource(dmtf, {
      public_post = true, login = true,
      get = function()
        return P.collection(dmtf, "#SessionCollection.SessionCollection", "Session Collection", {})
      end,
      post = function(body)
        if type(body.UserName) == "string" and type(body.Password) == "string" then
          local id = create(body, dmtf)
          if id then st.counts.leaked_logins = st.counts.leaked_logins + 1 end
        end
        return P.fail(405, "SYS402",
          "Unable to run the method because the requested HTTP method is not allowed.",
          { resolution = "Enter a valid HTTP method and retry the operation.", severity = "Informational" })
      end,
    })
  end

  --- A session member resource (dynamic path), or nil.
  function dev.session_resource(path)
    local prefix = F.sessions .. "/"
    if path:sub(1, #prefix) ~= prefix then return nil end
    local sid = tonumber(path:sub(#prefix + 1):match("^(%d+)$"))
    local s = sid and st.sessions[sid]
    if not s or expired(s) then return nil end
    return {
      logout = true,
      get = function() return session_body(sid, s) end,
      delete = function()
        st.sessions[sid] = nil
        st.counts.logouts = st.counts.logouts + 1
        return P.success(200)
      end,
    }
  end

  dev.resource("/redfish/v1/SessionService", { get = function()
    return P.odata("/redfish/v1/SessionService", "#SessionService.v1_1_3.SessionService", {
      Id = "SessionService", Name = "Session Service", ServiceEnabled = true,
      SessionTimeout = timeout, Sessions = { ["@odata.id"] = F.sessions } })
  end })
end

return M
