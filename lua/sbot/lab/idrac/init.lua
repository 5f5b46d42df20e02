--- sbot.lab.idrac: a simulated Dell iDRAC 8 (PowerEdge R630, firmware
-- 2.75.75.75, Redfish 1.4.0) and, with flavour 9, an iDRAC 9 (firmware
-- 6.10.30.00, Redfish 1.17.0), faithful to the field notes on "Dell iDRAC
-- 8" — quirks and refusals included, so that a client that passes the lab
-- has met what real machines do.
--
-- The device is assembled from parts, one concern each:
--   model      the server: state tables, clock, jobs, power, what it boots
--   registry   BIOS attribute registry and iSCSIBoot limits, write checks
--   protocol   Redfish bodies and Dell error shapes
--   sessions   authentication, sessions (and iDRAC 8's leaking 405 path)
--   resources  GET bodies; PATCH of System Boot and of Settings objects
--   actions    Reset, jobs, virtual media (fetches the image), SCP import
-- and this file: the transport (routing, ETag/If-Match, $select/$expand,
-- SYS518 after a reset, request and write counters) and the lab interface
-- (state(), site_entry(), fault_503()). docs/lab.md describes the behaviour.
local json = require "sbot.json"
local model = require "sbot.lab.idrac.model"
local protocol = require "sbot.lab.idrac.protocol"

local M = {}

M.BOOT_TARGETS = model.BOOT_TARGETS
M.OVERRIDE_ENABLED = model.OVERRIDE_ENABLED
M.FLAVOURS = model.FLAVOURS
M.RESET_TYPES = model.FLAVOURS[8].reset_types
M.MAX_SESSIONS = model.FLAVOURS[8].max_sessions

local crypto = require "sbot.crypto"

-- ETag: the first 8 bytes of the body's SHA-256 (in C: the lab serves many
-- BMCs from one thread)
local function etag_of(body)
  local text = type(body) == "string" and body or json.encode(body)
  return '"' .. crypto.sha256(text):sub(1, 8):gsub(".", function(c) return string.format("%02x", c:byte()) end) .. '"'
end

--- Create an iDRAC device.
-- opts: index (1..), flavour (8|9), user, password, clock (function ->
-- seconds), scale (duration multiplier), faults (injector, optional),
-- on_boot (function(dev, boot), optional), pace ("quick" | "field": how long
-- jobs, reboots and answers take, model.PACES), session_timeout (seconds), fetch (function
-- (url) -> {volume_id, size} | nil, why: replaces the HTTP read of images),
-- request (function(req) -> response | nil, err | false: sends the image
-- reads an sbot.http request table describes; false = not handled, use
-- sbot.http — the lab passes one that serves its own devices in-process).
function M.new(opts)
  opts = opts or {}
  local flavour = tonumber(opts.flavour or 8)
  local F = model.FLAVOURS[flavour]
  if not F then error("lab idrac: flavour must be 8 or 9, got " .. tostring(opts.flavour), 2) end
  local index = opts.index or 1
  local dev = {
    name = "idrac-" .. index, kind = "idrac", flavour = flavour, index = index, F = F,
    user = opts.user or "root", password = opts.password or "calvin",
    faults = opts.faults, P = protocol.new(F),
  }
  local P = dev.P
  model.new(dev, opts)
  local st = dev.st

  local R = {} -- path (decoded, no trailing slash) -> {get, patch, post, delete, public, ...}
  function dev.resource(path, def) R[path] = def end

  require("sbot.lab.idrac.sessions").install(dev, opts)
  require("sbot.lab.idrac.resources").install(dev)
  require("sbot.lab.idrac.actions").install(dev, opts)

  local function lookup(path)
    return R[path] or dev.session_resource(path) or dev.job_resource(path)
  end

  -- ---- $select / $expand ---------------------------------------------------------

  local function expand(body, mode)
    local function is_link(x)
      if type(x) ~= "table" or type(x["@odata.id"]) ~= "string" then return false end
      for k in pairs(x) do if k ~= "@odata.id" then return false end end
      return true
    end
    local function walk(v, in_links)
      for k, x in pairs(v) do
        if type(x) == "table" then
          local links = in_links or k == "Links"
          if is_link(x) and k ~= "@odata.id" then
            if mode == "*" or (mode == "." and not links) or (mode == "~" and links) then
              local p = x["@odata.id"]:gsub("%%7C", "|"):gsub("/+$", "")
              local r = lookup(p)
              if r and r.get then v[k] = r.get() end
            end
          else
            walk(x, links)
          end
        end
      end
    end
    walk(body, false)
    return body
  end

  local function shape(req, body)
    local q = req.query
    local ex = q["$expand"]
    if ex then
      local mode, levels = ex:match("^([%.%*~])%(%$levels=(%d+)%)$")
      if not mode then mode = ex:match("^([%.%*~])$") end
      levels = tonumber(levels or 1)
      if not mode then
        return nil, { P.fail(400, "QueryParameterValueFormatError", string.format(
          "The value %s for the parameter $expand is of a different format than the parameter can accept.", ex)) }
      end
      if levels > 1 then
        return nil, { P.fail(400, "QueryParameterOutOfRange", string.format(
          "The value %d for the query parameter $levels is out of range (MaxLevels is 1).", levels)) }
      end
      body = expand(body, mode)
    end
    local sel = q["$select"]
    if sel then
      local keep = {}
      for name in sel:gmatch("[^,]+") do keep[name:match("^%s*(.-)%s*$")] = true end
      local out = {}
      for k, v in pairs(body) do
        if keep[k] or k:match("^@odata%.") then out[k] = v end
      end
      body = out
    end
    return body
  end

  -- ---- the handler -------------------------------------------------------------------

  local function decode_body(req)
    if req.body == "" then return nil, "empty" end
    local v = json.decode(req.body)
    if type(v) ~= "table" then return nil, "bad" end
    return v
  end

  local function route(req, path)
    if path == "/redfish" then
      return P.reply(200, { v1 = "/redfish/v1/" })
    end
    if dev.now() < st.not_ready_until then
      return P.fail(503, "SYS518", "iDRAC is not ready. The configuration values cannot be accessed. Please retry after a few minutes.",
        { severity = "Critical", resolution = "Retry the operation after a few seconds." })
    end
    local r = lookup(path)
    local method = req.method
    if method == "HEAD" then method = "GET" end
    if not r then
      return P.fail(404, "SYS403", "Unable to complete the operation because the resource " .. req.path .. " entered is not found.",
        { args = { req.path }, resolution = "Enter the correct resource and retry the operation." })
    end
    local public = (method == "GET" and r.public) or (method == "POST" and r.public_post)
    if not public and not dev.authenticate(req) then
      return P.fail(401, "NoValidSession", "There is no valid session established with the implementation.",
        { severity = "Critical", resolution = "Establish a session before attempting any operations.", single = true })
    end
    local handler = ({ GET = r.get, PATCH = r.patch, POST = r.post, DELETE = r.delete })[method]
    if not handler then
      return P.fail(405, "SYS402", "Unable to run the method because the requested HTTP method is not allowed.",
        { resolution = "Enter a valid HTTP method and retry the operation.", severity = "Informational" })
    end
    if method == "GET" then
      local body = r.get()
      -- a resource that never changes (the attribute registry) is encoded once
      local text = r.static and r.text or json.encode(body)
      if r.static then r.text = text end
      local etag = etag_of(text)
      if req.query["$select"] or req.query["$expand"] then
        local shaped, err = shape(req, body)
        if not shaped then return table.unpack(err) end
        text = shaped
      end
      local s, h, b = P.reply(200, text, { ETag = etag })
      if req.method == "HEAD" then b = "" end
      return s, h, b
    end
    local body = {}
    if method == "POST" or method == "PATCH" then
      local why
      body, why = decode_body(req)
      if not body then
        if why == "empty" and method == "POST" then body = {} else return P.malformed() end
      end
    end
    if method == "PATCH" then
      local want = req.headers["if-match"]
      if want and want ~= "*" and r.get then
        local have = etag_of(r.get())
        local ok = false
        for e in want:gmatch("[^,]+") do
          if e:match("^%s*(.-)%s*$"):gsub("^W/", "") == have then ok = true end
        end
        if not ok then
          return P.fail(412, "PreconditionFailed",
            "The ETag supplied did not match the ETag required to change this resource.",
            { resolution = "Read the resource again (GET) and retry with its current ETag.",
              headers = { ETag = have }, single = true })
        end
      end
    end
    return handler(body, req, r)
  end

  function dev.handler(req)
    dev.advance()
    local c = st.counts
    c.requests = c.requests + 1
    c.by_method[req.method] = (c.by_method[req.method] or 0) + 1
    local path = req.path:gsub("/+$", "")
    if path == "" then path = "/" end
    if req.method == "GET" then c.gets[path] = (c.gets[path] or 0) + 1 end
    -- a write is any request that may change configuration; logins and
    -- logouts are counted apart (sessions, logins, logouts)
    local r = R[path] or dev.session_resource(path)
    local session_op = r and ((r.login and req.method == "POST") or (r.logout and req.method == "DELETE"))
    local s, h, b = route(req, path)
    c.by_status[tostring(s)] = (c.by_status[tostring(s)] or 0) + 1
    if req.method ~= "GET" and req.method ~= "HEAD" then
      if not session_op then
        c.writes = c.writes + 1
        local log = c.write_log
        log[#log + 1] = string.format("%s %s %d", req.method, req.path, s)
        if #log > 50 then table.remove(log, 1) end
      end
    end
    return s, h, b
  end

  --- Plain-table snapshot for /lab/state.
  function dev.state()
    dev.advance()
    local t = dev.now()
    local jobs = {}
    for _, id in ipairs(st.job_order) do
      local j = st.jobs[id]
      if j then
        jobs[#jobs + 1] = { id = j.id, kind = j.kind, state = j.state, percent = j.percent,
          target = j.target, message = j.message, message_id = j.message_id }
      end
    end
    local nic_state = {}
    for p, n in ipairs(st.nics) do
      nic_state[p] = { fqdd = n.fqdd, mac = n.mac, iscsi = dev.iscsi_view(n.iscsi),
        pending = dev.iscsi_view(n.pending), legacy_boot_proto = n.legacy_boot_proto }
    end
    local vmedia = {}
    for id, v in pairs(st.vmedia) do
      vmedia[id] = { inserted = v.inserted, image = v.image, connected_via = v.connected_via,
        media_types = json.array(dev.copy(v.types)), volume_id = v.volume_id }
    end
    local c = st.counts
    return {
      name = dev.name, kind = dev.kind, flavour = flavour, service_tag = dev.tag,
      firmware = F.firmware, power = st.power, not_ready = t < st.not_ready_until,
      not_ready_for = math.max(0, st.not_ready_until - t),
      sessions = dev.count_sessions(), max_sessions = F.max_sessions,
      boot_override = dev.copy(st.boot),
      bios = { current = dev.bios_view(st.bios.current), pending = dev.bios_view(st.bios.pending) },
      nics = nic_state, jobs = json.array(jobs), vmedia = vmedia,
      vmedia_error = st.vmedia_error and dev.copy(st.vmedia_error) or json.null,
      idrac_attrs = dev.copy(st.idrac_attrs), resets = st.resets,
      ignored_shutdowns = st.ignored_shutdowns or 0,
      boots = json.array(dev.copy(st.boots)),
      last_boot = st.boots[#st.boots] and dev.copy(st.boots[#st.boots]) or json.null,
      requests = c.requests, by_status = dev.copy(c.by_status), by_method = dev.copy(c.by_method),
      gets = dev.copy(c.gets),
      writes = c.writes, write_log = json.array(dev.copy(c.write_log)),
      logins = c.logins, logouts = c.logouts, leaked_logins = c.leaked_logins,
      unchanged_attributes = json.array(dev.copy(c.unchanged_attributes)),
      image_fetches = c.fetches,
      faults = dev.faults and dev.copy(dev.faults.counts) or nil,
    }
  end

  --- The site file entry for this BMC. endpoint: {host, port, url, pin_sha256}.
  function dev.site_entry(_, _, endpoint)
    return "server", {
      id = string.format("r630-%02d", index),
      idrac = { host = endpoint.host .. ":" .. endpoint.port, user = dev.user, password = dev.password,
        tls = { pin_sha256 = endpoint.pin_sha256 } },
    }
  end

  --- The 503 a fault-injected request gets: what a busy iDRAC answers (SYS518,
  -- "not ready, retry"). The request did nothing.
  function dev.fault_503()
    return P.fail(503, "SYS518", "iDRAC is not ready. The configuration values cannot be accessed. Please retry after a few minutes.",
      { severity = "Critical", resolution = "Retry the operation after a few seconds." })
  end

  return dev
end

return M
