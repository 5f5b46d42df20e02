--- sbot.lab.truenas: a TrueNAS SCALE 25.10 model for the lab.
--
-- State lives in plain tables (model.state); every API method is a Lua
-- function in `methods` below that reads and changes that state. Arguments
-- are validated against the middleware's own JSON schemas
-- (truenas-schemas-v25_10_0.json beside this file) before a method runs, so the
-- lab rejects what the real middleware rejects, with the same error shapes.
--
--   local truenas = require "sbot.lab.truenas"
--   local m = assert(truenas.model{ api_key = "1-abc", pool_size = 2^40 })
--   local session = m:session()
--   m:dispatch("auth.login_ex", {{mechanism = "API_KEY_PLAIN", username = "root", api_key = "1-abc"}}, session)
--   local target, err = m:dispatch("iscsi.target.create", {{name = "node1"}}, session)
--
-- dispatch returns the result, or nil and a JSON-RPC error object
-- {code, message, data = {error, errname, reason, extra, trace}}.
local json = require "sbot.json"
local jsonschema = require "sbot.jsonschema"

local M = {}

local null = json.null

local ERRNO = { EPERM = 1, ENOENT = 2, EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22,
                ENOSPC = 28, EACCES = 13, ENOTSUP = 95, ENOMETHOD = 201, ENOTAUTHENTICATED = 207 }
local ERRNAME = {}
for k, v in pairs(ERRNO) do ERRNAME[v] = k end
M.ERRNO = ERRNO

M.JSONRPC = { INVALID_JSON = -32700, INVALID_REQUEST = -32600, METHOD_NOT_FOUND = -32601,
              INVALID_PARAMS = -32602, INTERNAL_ERROR = -32603, TOO_MANY_CONCURRENT_CALLS = -32000,
              CALL_ERROR = -32001 }

---------------------------------------------------------------------------
-- Errors, shaped like middlewared's send_truenas_error /
-- send_truenas_validation_error.
---------------------------------------------------------------------------

local ValidationErrors = {}
ValidationErrors.__index = ValidationErrors

local function verrors() return setmetatable({ list = {} }, ValidationErrors) end
function ValidationErrors:add(attribute, message, errno)
  self.list[#self.list + 1] = { attribute, message, errno or ERRNO.EINVAL }
end
function ValidationErrors:any() return #self.list > 0 end

local function validation_error(list)
  local lines, extra = {}, json.array()
  for i, e in ipairs(list) do
    lines[i] = string.format("[%s] %s: %s", ERRNAME[e[3]] or "EINVAL", e[1], e[2])
    extra[i] = json.array { e[1], e[2], e[3] }
  end
  return { code = M.JSONRPC.INVALID_PARAMS, message = "Invalid params",
           data = { error = ERRNO.EINVAL, errname = "EINVAL", reason = table.concat(lines, "\n") .. "\n",
                    extra = extra, trace = null } }
end

-- A CallError: -32001, errno EFAULT unless the middleware gives another.
local function call_error(errno, message)
  errno = errno or ERRNO.EFAULT
  local name = ERRNAME[errno] or "EUNKNOWN"
  return { code = M.JSONRPC.CALL_ERROR, message = "Method call error",
           data = { error = errno, errname = name, reason = "[" .. name .. "] " .. message,
                    extra = null, trace = null } }
end
M.call_error = call_error

-- Methods raise these (error(obj)); dispatch turns them into return values.
local Raised = {}
local function raise(err) error(setmetatable({ err = err }, Raised), 0) end
local function fail(errno, message) raise(call_error(errno, message)) end
local function check(v) if v:any() then raise(validation_error(v.list)) end end
-- "does not exist" is a validation error in 25.10: -32602 EINVAL with
-- reason "[ENOENT] None: iSCSITarget 99 does not exist".
local function not_found(what, id)
  raise(validation_error({ { "None", string.format("%s %s does not exist", what, tostring(math.tointeger(id) or id)), ERRNO.ENOENT } }))
end
M.not_found_error = function(what, id)
  return validation_error({ { "None", string.format("%s %s does not exist", what, tostring(math.tointeger(id) or id)), ERRNO.ENOENT } })
end

---------------------------------------------------------------------------
-- Query filters and options: [["name", "=", "x"]], {get = true, ...}
---------------------------------------------------------------------------

local function field(obj, name)
  local v = obj
  for part in tostring(name):gmatch("[^%.]+") do
    if type(v) ~= "table" then return nil end
    v = v[part]
  end
  return v
end

local function values_equal(a, b)
  if type(a) == "number" and type(b) == "number" then return a == b end
  return a == b
end

local ops
ops = {
  ["="] = function(a, b) return values_equal(a, b) end,
  ["!="] = function(a, b) return not values_equal(a, b) end,
  [">"] = function(a, b) return type(a) == type(b) and a > b end,
  [">="] = function(a, b) return type(a) == type(b) and a >= b end,
  ["<"] = function(a, b) return type(a) == type(b) and a < b end,
  ["<="] = function(a, b) return type(a) == type(b) and a <= b end,
  ["~"] = function(a, b) return type(a) == "string" and a:find(b) ~= nil end,
  ["in"] = function(a, b)
    for _, x in ipairs(b) do if values_equal(a, x) then return true end end
    return false
  end,
  ["nin"] = function(a, b) return not ops["in"](a, b) end,
  ["^"] = function(a, b) return type(a) == "string" and a:sub(1, #b) == b end,
  ["$"] = function(a, b) return type(a) == "string" and (b == "" or a:sub(-#b) == b) end,
}

local function match_filter(obj, f, v)
  if type(f) ~= "table" then
    v:add("filters", "Filter must be a list")
    return false
  end
  if f[1] == "OR" then
    for _, sub in ipairs(f[2] or {}) do
      local all = true
      if type(sub[1]) == "table" then
        for _, s in ipairs(sub) do if not match_filter(obj, s, v) then all = false end end
      else
        all = match_filter(obj, sub, v)
      end
      if all then return true end
    end
    return false
  end
  local name, op, value = f[1], f[2], f[3]
  local fn = ops[op]
  if type(name) ~= "string" or not fn or #f ~= 3 then
    v:add("filters", "Invalid filter " .. json.encode(f))
    return false
  end
  if (op == "in" or op == "nin") and type(value) ~= "table" then
    v:add("filters", "Filter value for '" .. op .. "' must be a list")
    return false
  end
  return fn(field(obj, name), value)
end

local QUERY_OPTIONS = { get = true, limit = true, offset = true, order_by = true, select = true,
                        count = true, extra = true, relationships = true, force_sql_filters = true }

--- Apply TrueNAS query-filters and query-options to a list of entries.
function M.filter_list(list, filters, options)
  local v = verrors()
  if filters ~= nil and filters ~= null and not jsonschema.is_array(filters) then
    v:add("filters", "Input should be a valid list")
  end
  if options ~= nil and options ~= null and not jsonschema.is_object(options) then
    v:add("options", "Input should be a valid dictionary")
  end
  check(v)
  options = (options ~= null and options) or {}
  for k in pairs(options) do
    if not QUERY_OPTIONS[k] then v:add("options." .. tostring(k), "Extra inputs are not permitted") end
  end
  check(v)
  local out = {}
  for _, obj in ipairs(list) do
    local keep = true
    for _, f in ipairs((filters ~= null and filters) or {}) do
      if not match_filter(obj, f, v) then keep = false end
    end
    check(v)
    if keep then out[#out + 1] = obj end
  end
  for _, key in ipairs(options.order_by or {}) do
    local desc = key:sub(1, 1) == "-"
    local name = desc and key:sub(2) or key
    table.sort(out, function(a, b)
      local x, y = field(a, name), field(b, name)
      if type(x) ~= type(y) or x == nil then return false end
      if desc then return x > y end
      return x < y
    end)
    break
  end
  local offset = math.tointeger(options.offset or 0) or 0
  local limit = math.tointeger(options.limit or 0) or 0
  if offset > 0 or limit > 0 then
    local sliced = {}
    for i = offset + 1, (limit > 0 and math.min(#out, offset + limit) or #out) do sliced[#sliced + 1] = out[i] end
    out = sliced
  end
  if options.select then
    local sel = {}
    for i, obj in ipairs(out) do
      local o = {}
      for _, name in ipairs(options.select) do o[name] = field(obj, name) end
      sel[i] = o
    end
    out = sel
  end
  if options.count then return #out end
  if options.get then
    if #out == 0 then fail(ERRNO.ENOENT, "MatchNotFound") end
    return out[1]
  end
  return json.array(out)
end

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

local function copy(v)
  if type(v) ~= "table" or v == null then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return setmetatable(c, getmetatable(v))
end

local function sorted_values(map)
  local list = json.array()
  for _, v in pairs(map) do list[#list + 1] = v end
  table.sort(list, function(a, b)
    if type(a.id) == type(b.id) then return a.id < b.id end
    return tostring(a.id) < tostring(b.id)
  end)
  return list
end

local function int(v) return math.tointeger(v) or v end

local function human_size(n)
  local units = { "B", "K", "M", "G", "T", "P" }
  local i = 1
  while n >= 1024 and i < #units and n % 1024 == 0 do n = n // 1024 i = i + 1 end
  return string.format("%d%s", n, units[i])
end

local function parse_size(s)
  local n, u = tostring(s):upper():match("^(%d+)([KMGTP]?)$")
  if not n then return nil end
  local mult = { [""] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3, T = 1024 ^ 4, P = 1024 ^ 5 }
  return math.tointeger(tonumber(n) * mult[u])
end

local function prop(value, rawvalue, source)
  return { parsed = value, rawvalue = rawvalue or tostring(value), value = tostring(rawvalue or value),
           source = source or "LOCAL", source_info = null }
end

---------------------------------------------------------------------------
-- The model
---------------------------------------------------------------------------

local Model = {}
Model.__index = Model

-- The schema file installed with this module (same directory): the subset of
-- the middleware's schemas the lab uses, made by vendor/truenas-schemas.
M.SCHEMA_FILE_NAME = "truenas-schemas-v25_10_0.json"

local function default_schema_file()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$")
  if not dir then return nil end
  return dir .. "/" .. M.SCHEMA_FILE_NAME
end

--- Find and load the schema file: opts.schemas (a path or a loaded
-- registry), $SBOT_TRUENAS_SCHEMAS, or the file installed next to this module.
function M.load_schemas(spec)
  if type(spec) == "table" then return spec end
  local env = os.getenv("SBOT_TRUENAS_SCHEMAS")
  local path = spec or (env ~= "" and env) or default_schema_file()
  if not path then return nil, "truenas lab: cannot locate " .. M.SCHEMA_FILE_NAME .. " (set SBOT_TRUENAS_SCHEMAS)" end
  local reg, err = jsonschema.load(path)
  if not reg then
    return nil, "truenas lab: cannot load the TrueNAS API schemas: " .. err ..
      " (the file ships with the Lua library as sbot/lab/" .. M.SCHEMA_FILE_NAME ..
      "; opts.schemas or SBOT_TRUENAS_SCHEMAS override it)"
  end
  return reg
end

--- Create a model (the state and the API, no network). opts: api_key (required), username ("root"),
-- pool ("tank"), pool_size (bytes, default 1 TiB), hostname ("truenas-lab"),
-- basename ("iqn.2005-10.org.freenas.ctl"), schemas (path or registry),
-- tgt (an object with :apply(export_config), export_config a function that
-- gives the configuration when the target takes it; see sbot.lab.istgt),
-- clock (function returning seconds).
function M.model(opts)
  opts = opts or {}
  if type(opts.api_key) ~= "string" or opts.api_key == "" then
    error("truenas.model: opts.api_key (string) is required", 2)
  end
  local schemas, err = M.load_schemas(opts.schemas)
  if not schemas then return nil, err end
  local pool_size = math.tointeger(opts.pool_size or 2 ^ 40)
  if not pool_size or pool_size <= 0 then error("truenas.model: opts.pool_size must be a positive integer", 2) end
  local pool = opts.pool or "tank"
  local self = setmetatable({
    api_key = opts.api_key,
    username = opts.username or "root",
    schemas = schemas,
    tgt = opts.tgt,
    clock = opts.clock or os.time,
    now = opts.now or require("sbot.sys").monotime,
    scale = opts.scale or 1,
    export_host = opts.export_host or "127.0.0.1",
    fault = opts.fault or function() return false end,
    started = (opts.clock or os.time)(),
    calls = 0,
    by_method = {},
    writes = 0,
    rate = {},
    state = {
      system = { hostname = opts.hostname or "truenas-lab", version = "25.10.0" },
      pools = { [pool] = { id = 1, name = pool, guid = "1234567890123456789", status = "ONLINE",
                           healthy = true, path = "/mnt/" .. pool, size = pool_size } },
      datasets = {},
      iscsi = {
        global = { id = 1, basename = opts.basename or "iqn.2005-10.org.freenas.ctl",
                   isns_servers = json.array(), listen_port = opts.iscsi_port or 3260,
                   pool_avail_threshold = null, alua = false, iser = false },
        portals = {}, initiators = {}, targets = {}, extents = {}, targetextents = {}, auths = {},
      },
      services = {},
      jobs = {},
      next_id = { portal = 1, initiator = 1, target = 1, extent = 1, targetextent = 1, auth = 1, service = 1,
                  job = 1 },
      tgt_errors = {},
    },
  }, Model)
  self.state.datasets[pool] = { id = pool, name = pool, pool = pool, type = "FILESYSTEM", used = 0 }
  for _, name in ipairs { "cifs", "ftp", "iscsitarget", "nfs", "snmp", "ssh", "ups" } do
    local id = self.state.next_id.service
    self.state.next_id.service = id + 1
    self.state.services[name] = { id = id, service = name, enable = false,
                                  state = "STOPPED", pids = json.array() }
  end
  return self
end

function Model:next_id(kind)
  local id = self.state.next_id[kind]
  self.state.next_id[kind] = id + 1
  return id
end

--- A new connection's session (authenticated = false).
function Model:session(ip)
  return { authenticated = false, ip = ip, options = { legacy_jobs = true, private_methods = false,
                                                       py_exceptions = false } }
end

-- Bytes the pool has left: its size less every non-sparse zvol.
function Model:pool_free(pool)
  local p = self.state.pools[pool]
  local used = 0
  for _, ds in pairs(self.state.datasets) do
    if ds.pool == pool then
      used = used + (ds.type == "VOLUME" and ds.refreservation or 0)
    end
  end
  return p.size - used
end

function Model:pool_entry(p)
  local free = self:pool_free(p.name)
  return { id = p.id, name = p.name, guid = p.guid, status = p.status, healthy = p.healthy,
           path = p.path, size = p.size, allocated = p.size - free, free = free,
           is_decrypted = true, encrypt = 0, scan = null, topology = {} }
end

function Model:dataset_entry(ds)
  local children = json.array()
  for _, c in ipairs(sorted_values(self.state.datasets)) do
    if c.id:match("^(.*)/[^/]+$") == ds.id then children[#children + 1] = self:dataset_entry(c) end
  end
  local e = { id = ds.id, name = ds.id, pool = ds.pool, type = ds.type, encrypted = false,
              encryption_root = null, key_loaded = false, locked = false, children = children,
              user_properties = {}, comments = prop(ds.comments or "", ds.comments or "", "LOCAL"),
              mountpoint = ds.type == "FILESYSTEM" and ("/mnt/" .. ds.id) or null }
  if ds.type == "VOLUME" then
    e.volsize = prop(ds.volsize, tostring(ds.volsize))
    e.volsize.value = human_size(ds.volsize)
    e.volblocksize = prop(ds.volblocksize, ds.volblocksize_text, "DEFAULT")
    -- no `sparse` key on a zvol entry: thin = refreservation 0
    e.refreservation = prop(ds.refreservation, tostring(ds.refreservation))
  end
  local free = self:pool_free(ds.pool)
  e.available = prop(free, tostring(free))
  return e
end

function Model:iqn(target)
  return self.state.iscsi.global.basename .. ":" .. target.name
end

-- Every (target, lun, extent) mapping, with what tgt needs to export it.
function Model:mapping_info(te)
  local iscsi = self.state.iscsi
  local target, extent = iscsi.targets[te.target], iscsi.extents[te.extent]
  local zvol = extent and extent.disk and self.state.datasets[extent.disk:gsub("^zvol/", "")]
  return { id = te.id, target_id = te.target, iqn = target and self:iqn(target), lun = te.lunid,
           extent = extent and extent.name, serial = extent and extent.serial,
           zvol = zvol and zvol.id, size = zvol and zvol.volsize, blocksize = extent and extent.blocksize }
end

-- The listen IPs of a portal as the lab can serve them: a wildcard is the
-- lab's address, a loopback address is itself, anything else cannot be bound
-- on this host and is left out.
function Model:portal_ips(portal)
  local ips = {}
  for _, l in ipairs(portal.listen) do
    if l.ip == "0.0.0.0" or l.ip == "::" then ips[#ips + 1] = self.export_host
    elseif l.ip:match("^127%.") or l.ip == "::1" then ips[#ips + 1] = l.ip end
  end
  return ips
end

--- What TrueNAS 25.10 exports right now: nothing unless the iscsitarget
-- service is RUNNING; per target, its enabled extents at their LUN ids, visible
-- only to the initiator + portal pairs of its groups (a group without an
-- initiator group, or an initiator group without names, allows every
-- initiator; the target's auth_networks restrict the addresses).
-- -> {nodebase, running, targets = {{name, iqn, alias, groups = {{portals, initiators, netmasks}}, luns}}}
function Model:export_config()
  local st = self.state
  local cfg = { nodebase = st.iscsi.global.basename, targets = {},
                running = st.services.iscsitarget.state == "RUNNING" }
  if not cfg.running then return cfg end
  for _, t in ipairs(sorted_values(st.iscsi.targets)) do
    local luns = {}
    for _, te in ipairs(sorted_values(st.iscsi.targetextents)) do
      local e = st.iscsi.extents[te.extent]
      local zvol = te.target == t.id and e and e.enabled ~= false and e.disk and st.datasets[e.disk:gsub("^zvol/", "")]
      if zvol then
        luns[#luns + 1] = { lun = te.lunid, zvol = zvol.id, size = zvol.volsize, serial = e.serial,
                            blocksize = e.blocksize, vendor = e.vendor, product = e.product_id or "iSCSI Disk" }
      end
    end
    local groups = {}
    for _, g in ipairs(t.groups) do
      local portal = st.iscsi.portals[g.portal]
      local ips = portal and self:portal_ips(portal) or {}
      local ig = g.initiator ~= null and g.initiator ~= nil and st.iscsi.initiators[g.initiator]
      local names = {}
      if ig then for _, n in ipairs(ig.initiators) do names[#names + 1] = n end end
      if #names == 0 then names = { "ALL" } end -- an empty initiator group allows all
      local nets = {}
      for _, n in ipairs(t.auth_networks or {}) do nets[#nets + 1] = n end
      if #nets == 0 then nets = { "ALL" } end
      if #ips > 0 then
        groups[#groups + 1] = { portals = ips, initiators = names, netmasks = nets }
      end
    end
    if #luns > 0 then
      cfg.targets[#cfg.targets + 1] = { name = t.name, iqn = self:iqn(t),
        alias = t.alias ~= null and t.alias or nil, groups = groups, luns = luns, auth = self:target_auth(t) }
    end
  end
  return cfg
end

--- The CHAP a target asks for, as TrueNAS (SCST) renders it: authentication
-- is set per target, not per group — the users of every entry whose tag a
-- group with authmethod CHAP or CHAP_MUTUAL names, all of them accepted on
-- every portal of the target; for mutual CHAP the peer of the first such
-- group's first entry. A CHAP group whose tag has no entry adds no user (and
-- a target without users asks for no authentication at all, as SCST's
-- configuration then has no IncomingUser). -> {users = {{user, secret}},
-- mutual = {user, secret} | nil} or nil.
function Model:target_auth(t)
  local users, seen, mutual = {}, {}, nil
  for _, g in ipairs(t.groups) do
    if g.authmethod ~= "NONE" and g.auth ~= null and g.auth ~= nil then
      local entries = {}
      for _, a in ipairs(sorted_values(self.state.iscsi.auths)) do
        if a.tag == g.auth then entries[#entries + 1] = a end
      end
      if g.authmethod == "CHAP_MUTUAL" and not mutual and entries[1] and entries[1].peeruser ~= "" then
        mutual = { user = entries[1].peeruser, secret = entries[1].peersecret }
      end
      for _, a in ipairs(entries) do
        local key = a.user .. "\0" .. a.secret
        if not seen[key] then
          seen[key] = true
          users[#users + 1] = { user = a.user, secret = a.secret }
        end
      end
    end
  end
  if #users == 0 then return nil end
  return { users = users, mutual = mutual }
end

--- Push the export configuration to the real target (istgt) when there is
-- one. A failure is recorded (/lab/state tgt_errors) and returned (nil, why);
-- a configuration change that caused it still succeeds, as on a TrueNAS whose
-- target reload failed, but a service start does not (set_running).
function Model:sync_export()
  if not self.tgt then return true end
  -- the configuration as it is when istgt takes it (a call that waits for a
  -- restart in progress must not apply what the model held before it)
  local ok, err = self.tgt:apply(function() return self:export_config() end)
  if not ok then
    self.state.tgt_errors[#self.state.tgt_errors + 1] = tostring(err)
    return nil, tostring(err)
  end
  return true
end

--- Whether `initiator` would see LUN `lun` of target `iqn` through a portal
-- on `ip`, logging in with `chap` ({user, secret} or nil) (the model's answer,
-- used without a real target): true or false, reason.
function Model:visible(iqn, lun, initiator, ip, chap)
  local cfg = self:export_config()
  if not cfg.running then return false, "the iscsitarget service is not running" end
  for _, t in ipairs(cfg.targets) do
    if t.iqn == iqn then
      local seen
      for _, g in ipairs(t.groups) do
        local pok, iok = false, false
        for _, p in ipairs(g.portals) do if not ip or p == ip then pok = true end end
        for _, n in ipairs(g.initiators) do if n == "ALL" or n == initiator then iok = true end end
        if pok and iok then seen = true end
      end
      if not seen then return false, "Target not found: " .. tostring(initiator) .. " is in none of the target's groups" end
      if t.auth then
        local ok = false
        for _, u in ipairs(t.auth.users) do
          if chap and chap.user == u.user and chap.secret == u.secret then ok = true end
        end
        if not ok then
          return false, "Authentication failure: the target asks for CHAP and " ..
            (chap and ("user " .. tostring(chap.user) .. " with that secret is not one of its users") or "none was given")
        end
      end
      for _, l in ipairs(t.luns) do if l.lun == tonumber(lun) then return true end end
      return false, "target " .. iqn .. " has no LUN " .. tostring(lun)
    end
  end
  return false, "Target not found: " .. tostring(iqn) .. " is not exported"
end

-- CHAP secrets as TrueNAS shows them to a user without the write role: never
-- in /lab/state (it is the lab's witness, printed and saved by tests).
local REDACTED = "********"
local function redact_auth(a)
  local c = copy(a)
  if c.secret ~= nil and c.secret ~= "" then c.secret = REDACTED end
  if c.peersecret ~= nil and c.peersecret ~= "" then c.peersecret = REDACTED end
  return c
end

--- export_config() without the CHAP secrets (what /lab/state shows).
function Model:export_view()
  local cfg = self:export_config()
  for _, t in ipairs(cfg.targets) do
    if t.auth then
      local users = {}
      for i, u in ipairs(t.auth.users) do users[i] = u.user end
      t.auth = { method = t.auth.mutual and "CHAP_MUTUAL" or "CHAP", users = users,
                 mutual_user = t.auth.mutual and t.auth.mutual.user or nil }
    end
  end
  return cfg
end

--- What /lab/state shows for this device (CHAP secrets masked).
function Model:lab_state()
  local s = self.state
  local auths = json.array()
  for i, a in ipairs(sorted_values(s.iscsi.auths)) do auths[i] = redact_auth(a) end
  local mappings = {}
  for _, te in ipairs(sorted_values(s.iscsi.targetextents)) do mappings[#mappings + 1] = self:mapping_info(te) end
  return {
    pools = (function() local t = {} for _, p in pairs(s.pools) do t[#t + 1] = self:pool_entry(p) end return t end)(),
    datasets = sorted_values(s.datasets),
    iscsi = { global = s.iscsi.global, portals = sorted_values(s.iscsi.portals),
              initiators = sorted_values(s.iscsi.initiators), targets = sorted_values(s.iscsi.targets),
              extents = sorted_values(s.iscsi.extents), targetextents = sorted_values(s.iscsi.targetextents),
              auths = auths },
    mappings = mappings,
    services = sorted_values(s.services),
    jobs = sorted_values(s.jobs),
    exports = self:export_view(),
    calls = self.calls,
    by_method = self.by_method,
    writes = self.writes,
    tgt_errors = s.tgt_errors,
    tgt = self.tgt and self.tgt.state and self.tgt:state() or nil,
  }
end

---------------------------------------------------------------------------
-- Methods. Each: function(self, args, session) where args is the validated
-- positional argument list. `schema` names the Args schema in the file;
-- methods without one there take free-form arguments checked here.
---------------------------------------------------------------------------

local methods = {}
M.methods = methods

local function noargs(name)
  return function(args)
    if #args > 0 then
      raise(validation_error({ { name, string.format("Too many arguments (expected 0, found %d)", #args),
        ERRNO.EINVAL } }))
    end
  end
end

local function query_args(args)
  if #args > 2 then
    raise(validation_error({ { "", string.format("Too many arguments (expected 2, found %d)", #args),
      ERRNO.EINVAL } }))
  end
  return args[1], args[2]
end

-- auth ----------------------------------------------------------------------

methods["auth.login_ex"] = { public = true, fn = function(self, args, session)
  local data = args[1]
  local v = verrors()
  if #args ~= 1 or not jsonschema.is_object(data) then
    v:add("login_data", "Input should be a valid dictionary")
    check(v)
  end
  local mech = data.mechanism
  local known = { API_KEY_PLAIN = true, PASSWORD_PLAIN = true, TOKEN_PLAIN = true, OTP_TOKEN = true,
                  AUTH_TOKEN_PLAIN = true }
  if not known[mech] then
    v:add("login_data.mechanism", "Input tag " .. json.encode(mech) ..
      " found using 'mechanism' does not match any of the expected tags: 'API_KEY_PLAIN', " ..
      "'AUTH_TOKEN_PLAIN', 'OTP_TOKEN', 'PASSWORD_PLAIN' or 'TOKEN_PLAIN'")
    check(v)
  end
  if mech ~= "API_KEY_PLAIN" then
    fail(ERRNO.ENOTSUP, "truenas lab: only the API_KEY_PLAIN mechanism is modelled, not " .. mech)
  end
  for k in pairs(data) do
    if k ~= "mechanism" and k ~= "username" and k ~= "api_key" and k ~= "login_options" then
      v:add("login_data." .. tostring(k), "Extra inputs are not permitted")
    end
  end
  if type(data.username) ~= "string" then v:add("login_data.username", "Field required") end
  if type(data.api_key) ~= "string" then v:add("login_data.api_key", "Field required") end
  check(v)
  if data.username == self.username and data.api_key == self.api_key then
    session.authenticated = true
    session.username = data.username
    return { response_type = "SUCCESS", authenticator = "LEVEL_1",
             user_info = { pw_name = self.username, pw_uid = 0, pw_gid = 0,
                           privilege = { roles = json.array { "FULL_ADMIN" } } } }
  end
  return { response_type = "AUTH_ERR" }
end }

methods["auth.login_with_api_key"] = { public = true, fn = function(self, args, session)
  if #args ~= 1 or type(args[1]) ~= "string" then
    raise(validation_error({ { "api_key", "Input should be a valid string", ERRNO.EINVAL } }))
  end
  if args[1] == self.api_key then
    session.authenticated = true
    session.username = self.username
    return true
  end
  return false
end }

methods["auth.me"] = { fn = function(self, args, session)
  noargs("auth.me")(args)
  return { pw_name = session.username, pw_uid = 0, pw_gid = 0, attributes = {},
           privilege = { roles = json.array { "FULL_ADMIN" } } }
end }

-- core / system ------------------------------------------------------------

methods["core.ping"] = { public = true, fn = function(_, args)
  noargs("core.ping")(args)
  return "pong"
end }

methods["system.info"] = { fn = function(self, args)
  noargs("system.info")(args)
  return { version = self.state.system.version, hostname = self.state.system.hostname,
           uptime_seconds = self.clock() - self.started, physmem = 68719476736, model = "Lab CPU",
           cores = 8, physical_cores = 4, loadavg = json.array { 0, 0, 0 },
           system_product = "TrueNAS-LAB", system_manufacturer = "sbot lab",
           timezone = "UTC", ecc_memory = true, buildtime = null, datetime = null,
           boottime = null, license = null, system_serial = "LAB0001", remote_info = null }
end }

-- pools and datasets --------------------------------------------------------

methods["pool.query"] = { fn = function(self, args)
  local filters, options = query_args(args)
  local list = {}
  for _, p in pairs(self.state.pools) do list[#list + 1] = self:pool_entry(p) end
  table.sort(list, function(a, b) return a.id < b.id end)
  return M.filter_list(list, filters, options)
end }

methods["pool.dataset.query"] = { fn = function(self, args)
  local filters, options = query_args(args)
  local list = {}
  for _, ds in ipairs(sorted_values(self.state.datasets)) do list[#list + 1] = self:dataset_entry(ds) end
  return M.filter_list(list, filters, options)
end }

local VOLBLOCKSIZES = { ["512"] = true, ["512B"] = true, ["1K"] = true, ["2K"] = true, ["4K"] = true,
                        ["8K"] = true, ["16K"] = true, ["32K"] = true, ["64K"] = true, ["128K"] = true }

methods["pool.dataset.create"] = { schema = "pool_dataset.PoolDatasetCreateArgs", fn = function(self, args)
  local data = args[1]
  local v = verrors()
  local name = data.name
  local pool, rest = name:match("^([^/]+)/(.+)$")
  if not pool then
    v:add("pool_dataset_create.name", "You need to either specify a pool or a parent dataset")
    check(v)
  end
  if not self.state.pools[pool] then
    v:add("pool_dataset_create.name", "Pool " .. pool .. " not found", ERRNO.ENOENT)
    check(v)
  end
  if self.state.datasets[name] then
    v:add("pool_dataset_create.name", "Path " .. name .. " already exists", ERRNO.EEXIST)
    check(v)
  end
  if #name > 255 then -- ZFS's own limit (ZFS_MAX_DATASET_NAME_LEN); TrueNAS adds none for zvols
    v:add("pool_dataset_create.name", "Dataset name is too long (" .. #name .. " > 255 characters)")
  end
  if rest:find("[^%w%._%-:/ ]") or rest:find("//") or rest:sub(-1) == "/" then
    v:add("pool_dataset_create.name", "Invalid dataset name " .. name)
  end
  local parent = name:match("^(.*)/[^/]+$")
  local parent_ds = self.state.datasets[parent]
  if not parent_ds and not data.create_ancestors then
    v:add("pool_dataset_create.name", "Parent dataset " .. parent .. " does not exist", ERRNO.ENOENT)
  elseif parent_ds and parent_ds.type == "VOLUME" then
    v:add("pool_dataset_create.name", "Parent dataset " .. parent .. " is a zvol")
  end
  local ds = { id = name, name = name, pool = pool, type = data.type, comments = data.comments ~= "INHERIT" and data.comments or nil }
  if data.type == "VOLUME" then
    local volsize = math.tointeger(data.volsize)
    local bs_text = data.volblocksize or "16K"
    local bs = parse_size(bs_text)
    if data.volblocksize and not VOLBLOCKSIZES[data.volblocksize] then
      v:add("pool_dataset_create.volblocksize", "Input should be one of the valid block sizes")
    elseif volsize <= 0 then
      v:add("pool_dataset_create.volsize", "Input should be greater than 0")
    elseif volsize % bs ~= 0 then
      v:add("pool_dataset_create.volsize", "Volume size should be a multiple of volume block size")
    end
    -- 80 % of the parent's available space, sparse or not, unless force_size
    local sparse = data.sparse == true
    local avail = self:pool_free(pool)
    if volsize > 0 and volsize > avail * 0.8 and not data.force_size then
      v:add("pool_dataset_create.volsize",
        "It is not recommended to use more than 80% of your available space for VOLUME")
    end
    ds.volsize, ds.volblocksize, ds.volblocksize_text = volsize, bs, bs_text
    ds.refreservation = sparse and 0 or volsize
  end
  check(v)
  if ds.type == "VOLUME" and ds.refreservation > self:pool_free(pool) then
    -- forced past the rule, ZFS itself refuses a reservation it cannot hold
    fail(ERRNO.EFAULT, "Failed to create dataset: cannot create '" .. name .. "': out of space")
  end
  if ds.type == "VOLUME" and self.fault("zvoldev") then
    -- the /dev/zvol node shows up a little later (udev): an extent made at
    -- once fails "Device ... does not exist" until then
    ds.device_at = self.now() + 0.5 * self.scale
  end
  if data.create_ancestors and not parent_ds then
    local path = pool
    for part in rest:gmatch("[^/]+") do
      local next_path = path .. "/" .. part
      if next_path == name then break end
      if not self.state.datasets[next_path] then
        self.state.datasets[next_path] = { id = next_path, name = next_path, pool = pool, type = "FILESYSTEM" }
      end
      path = next_path
    end
  end
  self.state.datasets[name] = ds
  return self:dataset_entry(ds)
end }

local function targetextents_of(self, key, id)
  local list = {}
  for _, te in ipairs(sorted_values(self.state.iscsi.targetextents)) do
    if te[key] == id then list[#list + 1] = te end
  end
  return list
end

function Model:extents_on(zvol)
  local list = {}
  for _, e in ipairs(sorted_values(self.state.iscsi.extents)) do
    if e.type == "DISK" and e.disk == "zvol/" .. zvol then list[#list + 1] = e end
  end
  return list
end

methods["pool.dataset.get_instance"] = { fn = function(self, args)
  if #args ~= 1 or type(args[1]) ~= "string" then
    raise(validation_error({ { "id", "Input should be a valid string", ERRNO.EINVAL } }))
  end
  local ds = self.state.datasets[args[1]]
  if not ds then not_found("Dataset", args[1]) end
  return self:dataset_entry(ds)
end }

-- Delete an extent, its mappings, and the targets that are left without a
-- LUN (what the middleware does when the zvol under an extent goes).
function Model:cascade_extent(e)
  local targets = {}
  for _, te in ipairs(targetextents_of(self, "extent", e.id)) do
    targets[te.target] = true
    self.state.iscsi.targetextents[te.id] = nil
  end
  self.state.iscsi.extents[e.id] = nil
  for tid in pairs(targets) do
    if #targetextents_of(self, "target", tid) == 0 then self.state.iscsi.targets[tid] = nil end
  end
end

methods["pool.dataset.delete"] = { schema = "pool_dataset.PoolDatasetDeleteArgs", fn = function(self, args)
  local id, options = args[1], args[2] or {}
  local ds = self.state.datasets[id]
  if not ds then not_found("Dataset", id) end
  if self.state.pools[id] then fail(ERRNO.EINVAL, "Root dataset " .. id .. " of a pool cannot be deleted") end
  local children = {}
  for cid in pairs(self.state.datasets) do
    if cid:sub(1, #id + 1) == id .. "/" then children[#children + 1] = cid end
  end
  if #children > 0 and not options.recursive then
    fail(ERRNO.EBUSY, "Failed to delete dataset: cannot destroy '" .. id ..
      "': filesystem has children\nuse '-r' to destroy the following datasets:\n" .. table.concat(children, "\n"))
  end
  table.sort(children)
  -- not refused: the extents on these zvols go too, with their mappings and
  -- any target left without LUNs (TrueNAS 25.10)
  children[#children + 1] = id
  for _, cid in ipairs(children) do
    for _, e in ipairs(self:extents_on(cid)) do self:cascade_extent(e) end
  end
  for _, cid in ipairs(children) do self.state.datasets[cid] = nil end
  self:sync_export()
  if self.tgt and self.tgt.zvol_deleted then
    for _, cid in ipairs(children) do self.tgt:zvol_deleted(cid) end
  end
  return true
end }

-- iSCSI ---------------------------------------------------------------------

methods["iscsi.global.config"] = { fn = function(self, args)
  noargs("iscsi.global.config")(args)
  return copy(self.state.iscsi.global)
end }

local function crud(kind, plural, schema_prefix, arg_prefix, hooks)
  local prefix = "iscsi." .. kind
  local verbose = hooks.verbose
  methods[prefix .. ".query"] = { fn = function(self, args)
    local filters, options = query_args(args)
    local list = {}
    for _, obj in ipairs(sorted_values(self.state.iscsi[plural])) do list[#list + 1] = hooks.entry(self, obj) end
    return M.filter_list(list, filters, options)
  end }
  methods[prefix .. ".get_instance"] = { fn = function(self, args)
    local obj = self.state.iscsi[plural][int(args[1])]
    if not obj then not_found(verbose, args[1]) end
    return hooks.entry(self, obj)
  end }
  methods[prefix .. ".create"] = { schema = schema_prefix .. "CreateArgs", fn = function(self, args)
    local data = args[1]
    local v = verrors()
    hooks.validate(self, data, nil, v, arg_prefix .. "_create")
    check(v)
    if hooks.before_create then hooks.before_create(self, data) end
    local obj = hooks.build(self, data, self:next_id(kind))
    self.state.iscsi[plural][obj.id] = obj
    if hooks.created then
      local ok, err = pcall(hooks.created, self, obj)
      if not ok then
        self.state.iscsi[plural][obj.id] = nil
        error(err, 0)
      end
    end
    return hooks.entry(self, obj)
  end }
  methods[prefix .. ".update"] = { schema = schema_prefix .. "UpdateArgs", fn = function(self, args)
    local id, data = int(args[1]), args[2]
    local old = self.state.iscsi[plural][id]
    if not old then not_found(verbose, id) end
    local merged = copy(old)
    for k, val in pairs(data) do merged[k] = val end
    local v = verrors()
    hooks.validate(self, merged, old, v, arg_prefix .. "_update")
    check(v)
    local obj = hooks.build(self, merged, id)
    if hooks.updated then hooks.updated(self, old, obj) end
    self.state.iscsi[plural][id] = obj
    return hooks.entry(self, obj)
  end }
  methods[prefix .. ".delete"] = { schema = schema_prefix .. "DeleteArgs", fn = function(self, args)
    local id = int(args[1])
    local obj = self.state.iscsi[plural][id]
    if not obj then not_found(verbose, id) end
    if hooks.delete then hooks.delete(self, obj, args) end
    self.state.iscsi[plural][id] = nil
    return true
  end }
end

local function find_by(map, key, value, except_id)
  for _, o in pairs(map) do
    if o[key] == value and o.id ~= except_id then return o end
  end
end

-- portal
crud("portal", "portals", "iscsi_portal.ISCSIPortal", "iscsi_portal", {
  verbose = "iSCSIPortal",
  validate = function(self, data, old, v, at)
    local seen = {}
    for i, l in ipairs(data.listen or {}) do
      local ip = l.ip
      if not (ip == "0.0.0.0" or ip == "::" or ip:match("^%d+%.%d+%.%d+%.%d+$") or ip:find(":")) then
        v:add(at .. ".listen." .. (i - 1) .. ".ip", "Invalid IP address " .. ip)
      end
      if seen[ip] then v:add(at .. ".listen." .. (i - 1) .. ".ip", "IP " .. ip .. " listed twice", ERRNO.EEXIST) end
      seen[ip] = true
      for _, p in pairs(self.state.iscsi.portals) do
        if not old or p.id ~= old.id then
          for _, pl in ipairs(p.listen) do
            if pl.ip == ip then
              v:add(at .. ".listen." .. (i - 1) .. ".ip", ip .. " IP is already in use by portal " .. p.id,
                ERRNO.EEXIST)
            end
          end
        end
      end
    end
    if #(data.listen or {}) == 0 then v:add(at .. ".listen", "At least one listen entry is required") end
  end,
  build = function(_, data, id)
    local listen = json.array()
    for i, l in ipairs(data.listen) do listen[i] = { ip = l.ip } end
    return { id = id, tag = id, listen = listen, comment = data.comment or "" }
  end,
  entry = function(self, p)
    local listen = json.array()
    for i, l in ipairs(p.listen) do listen[i] = { ip = l.ip, port = self.state.iscsi.global.listen_port } end
    return { id = p.id, tag = p.tag, listen = listen, comment = p.comment }
  end,
  delete = function(self, p)
    for _, t in pairs(self.state.iscsi.targets) do
      for _, g in ipairs(t.groups) do
        if g.portal == p.id then
          fail(ERRNO.EBUSY, "Portal " .. p.id .. " is in use by target " .. t.name)
        end
      end
    end
  end,
})

-- initiator group
crud("initiator", "initiators", "iscsi_initiator.iSCSITargetAuthorizedInitiator", "iscsi_initiator", {
  verbose = "iSCSITargetAuthorizedInitiator",
  validate = function() end,
  build = function(_, data, id)
    local list = json.array()
    for i, n in ipairs(data.initiators or {}) do list[i] = n end
    return { id = id, initiators = list, comment = data.comment or "" }
  end,
  entry = function(_, i) return copy(i) end,
  delete = function(self, i)
    for _, t in pairs(self.state.iscsi.targets) do
      for _, g in ipairs(t.groups) do
        if g.initiator == i.id then
          fail(ERRNO.EBUSY, "Initiator group " .. i.id .. " is in use by target " .. t.name)
        end
      end
    end
  end,
})

-- target

crud("target", "targets", "iscsi_target.iSCSITarget", "iscsi_target", {
  verbose = "iSCSITarget",
  validate = function(self, data, old, v, at)
    local name = data.name
    if type(name) == "string" then
      if not name:match("^[-a-z0-9.:]+$") then
        v:add(at .. ".name", "Lowercase alphanumeric characters plus dot (.), dash (-), and colon (:) are allowed.")
      elseif find_by(self.state.iscsi.targets, "name", name, old and old.id) then
        v:add(at .. ".name", "Target name already exists", ERRNO.EEXIST)
      end
      if #(self.state.iscsi.global.basename .. ":" .. name) > 223 then
        v:add(at .. ".name", "Target name is too long: the IQN must be at most 223 characters")
      end
    end
    if data.alias ~= nil and data.alias ~= null and find_by(self.state.iscsi.targets, "alias", data.alias, old and old.id) then
      v:add(at .. ".alias", "Alias already exists", ERRNO.EEXIST)
    end
    if data.mode ~= nil and data.mode ~= "ISCSI" then
      v:add(at .. ".mode", "Fibre Channel requires a TrueNAS Enterprise license and an FC HBA")
    end
    local seen = {}
    for i, g in ipairs(data.groups or {}) do
      local gat = at .. ".groups." .. (i - 1)
      if not self.state.iscsi.portals[int(g.portal)] then
        v:add(gat .. ".portal", (g.portal and string.format("%d", g.portal) or "?") .. " Portal not found in database",
          ERRNO.ENOENT)
      end
      if g.initiator ~= nil and g.initiator ~= null and not self.state.iscsi.initiators[int(g.initiator)] then
        v:add(gat .. ".initiator", string.format("%d", g.initiator) .. " Initiator not found in database", ERRNO.ENOENT)
      end
      if (g.authmethod == "CHAP" or g.authmethod == "CHAP_MUTUAL") and (g.auth == nil or g.auth == null) then
        v:add(gat .. ".auth", "Authentication group is required for CHAP and CHAP Mutual")
      elseif g.authmethod == "CHAP_MUTUAL" then
        -- (for CHAP the tag is not checked: a tag without entries exports without authentication)
        local first
        for _, a in ipairs(sorted_values(self.state.iscsi.auths)) do
          if a.tag == int(g.auth) and not first then first = a end
        end
        if not first then
          v:add(gat .. ".auth", "Authentication group not found", ERRNO.ENOENT)
        elseif first.peeruser == "" then
          v:add(gat .. ".auth", "Authentication group " .. string.format("%d", g.auth) .. " does not support CHAP Mutual")
        end
      end
      local key = tostring(g.portal)
      if seen[key] then v:add(gat .. ".portal", "Portal " .. key .. " cannot be used twice in one target") end
      seen[key] = true
    end
  end,
  build = function(_, data, id)
    local groups = json.array()
    for i, g in ipairs(data.groups or {}) do
      groups[i] = { portal = int(g.portal), initiator = g.initiator == nil and null or int(g.initiator),
                    authmethod = g.authmethod or "NONE", auth = g.auth == nil and null or int(g.auth) }
    end
    local nets = json.array()
    for i, n in ipairs(data.auth_networks or {}) do nets[i] = n end
    return { id = id, name = data.name, alias = data.alias == nil and null or data.alias,
             mode = data.mode or "ISCSI", groups = groups, auth_networks = nets, rel_tgt_id = id,
             iscsi_parameters = data.iscsi_parameters == nil and null or data.iscsi_parameters }
  end,
  entry = function(_, t) return copy(t) end,
  delete = function(self, t, args)
    local delete_extents = args[3]
    for _, te in ipairs(targetextents_of(self, "target", t.id)) do
      self.state.iscsi.targetextents[te.id] = nil
      if delete_extents and #targetextents_of(self, "extent", te.extent) == 0 then
        self.state.iscsi.extents[te.extent] = nil
      end
    end
  end,
})

-- extent: a 15-hex-digit serial, vendor TrueNAS, product "iSCSI Disk", path = disk
local function serial_for(id)
  return string.format("%012x%03x", 0x1e0a0b0c0d0e, id % 4096)
end

crud("extent", "extents", "iscsi_extent.iSCSITargetExtent", "iscsi_extent", {
  verbose = "iSCSITargetExtent",
  validate = function(self, data, old, v, at)
    if find_by(self.state.iscsi.extents, "name", data.name, old and old.id) then
      v:add(at .. ".name", "Extent name must be unique", ERRNO.EEXIST)
    end
    if data.type == "FILE" then
      v:add(at .. ".type", "truenas lab: FILE extents are not modelled; use a DISK extent on a zvol", ERRNO.ENOTSUP)
      return
    end
    local disk = data.disk
    if disk == nil or disk == null then
      v:add(at .. ".disk", "This field is required for DISK extents")
      return
    end
    local zvol = disk:match("^zvol/(.+)$")
    local ds = zvol and self.state.datasets[zvol]
    if not zvol then
      v:add(at .. ".disk", "Disk must be of the form zvol/<pool>/<name>")
    elseif not ds or ds.type ~= "VOLUME" or (ds.device_at and self.now() < ds.device_at) then
      v:add(at .. ".disk", "Device /dev/zvol/" .. zvol .. " for volume " .. zvol .. " does not exist")
    else
      for _, e in pairs(self.state.iscsi.extents) do
        if e.disk == disk and (not old or e.id ~= old.id) then
          v:add(at .. ".disk", "Disk currently in use by extent " .. e.name, ERRNO.EEXIST)
        end
      end
    end
  end,
  build = function(_, data, id)
    local e = copy(data)
    e.id = id
    e.serial = (data.serial ~= nil and data.serial ~= null) and data.serial or serial_for(id)
    e.naa = e.naa or string.format("0x6589cfc0000000%018x", id)
    e.vendor = "TrueNAS"
    e.product_id = (data.product_id ~= nil and data.product_id ~= null) and data.product_id or "iSCSI Disk"
    e.locked = false
    e.path = e.disk ~= nil and e.disk or null
    e.blocksize = int(e.blocksize)
    return e
  end,
  entry = function(_, e) return copy(e) end,
  delete = function(self, e)
    for _, te in ipairs(targetextents_of(self, "extent", e.id)) do
      self.state.iscsi.targetextents[te.id] = nil
    end
    -- remove (delete the backing file) only applies to FILE extents, which
    -- the lab does not model; for a DISK extent the zvol stays.
  end,
})

-- target <-> extent mapping: LUN ids 0..16382, shown as given; an extent
-- belongs to one target only
crud("targetextent", "targetextents", "iscsi_target_to_extent.iSCSITargetToExtent", "iscsi_target_to_extent", {
  verbose = "iSCSITargetToExtent",
  validate = function(self, data, old, v, at)
    local target, extent = int(data.target), int(data.extent)
    if not self.state.iscsi.targets[target] then
      v:add(at .. ".target", "Target " .. tostring(target) .. " not found", ERRNO.ENOENT)
    end
    if not self.state.iscsi.extents[extent] then
      v:add(at .. ".extent", "Extent " .. tostring(extent) .. " not found", ERRNO.ENOENT)
    end
    local lunid = data.lunid
    if lunid ~= nil and lunid ~= null then
      if lunid < 0 or lunid > 16382 then v:add(at .. ".lunid", "LUN ID must be between 0 and 16382") end
      for _, te in pairs(self.state.iscsi.targetextents) do
        if te.target == target and te.lunid == int(lunid) and (not old or te.id ~= old.id) then
          v:add(at .. ".lunid", "LUN ID is already being used for this target.", ERRNO.EEXIST)
        end
      end
    end
    for _, te in pairs(self.state.iscsi.targetextents) do
      if te.extent == extent and (not old or te.id ~= old.id) then
        if te.target == target then
          v:add(at .. ".target", "Extent is already in this target.", ERRNO.EEXIST)
        else
          v:add(at .. ".extent", "Extent is already in use.")
        end
      end
    end
  end,
  build = function(self, data, id)
    local target = int(data.target)
    local lunid = data.lunid
    if lunid == nil or lunid == null then
      local used = {}
      for _, te in pairs(self.state.iscsi.targetextents) do
        if te.target == target then used[te.lunid] = true end
      end
      lunid = 0
      while used[lunid] do lunid = lunid + 1 end
    end
    return { id = id, target = target, extent = int(data.extent), lunid = int(lunid) }
  end,
  entry = function(_, te) return copy(te) end,
})

-- CHAP credentials (iscsi.auth): a tag is a group of entries that a target's
-- groups name (`auth`); the middleware's own rules (plugins/iscsi_/auth.py).
-- Query results carry the secrets in clear, as TrueNAS gives them to a full
-- admin (the lab's API key) or a holder of SHARING_ISCSI_AUTH_WRITE.
local AUTH_INVALID_CHARACTERS = "#"

local function auth_secret_rules(secret, field, title, at, v)
  if #secret < 12 or #secret > 16 then
    v:add(at .. "." .. field, title .. " must be between 12 and 16 characters.")
  end
  if secret ~= secret:match("^%s*(.-)%s*$") then
    v:add(at .. "." .. field, title .. " contains leading or trailing space.")
  end
  local bad = {}
  for ch in AUTH_INVALID_CHARACTERS:gmatch(".") do
    if secret:find(ch, 1, true) then bad[#bad + 1] = ch end
  end
  if #bad > 0 then v:add(at .. "." .. field, title .. " contains invalid characters: " .. table.concat(bad, ",")) end
end

-- The targets whose groups name `tag` (TrueNAS's is_in_use).
local function auth_usages(self, id, tag)
  local ids = {}
  for _, t in ipairs(sorted_values(self.state.iscsi.targets)) do
    for _, g in ipairs(t.groups) do
      if g.auth == tag then
        ids[#ids + 1] = string.format("%d", t.id)
        break
      end
    end
  end
  if #ids == 0 then return nil end
  return string.format("Authorized access of %d is being used by following target(s): %s", id, table.concat(ids, ", "))
end

local function other_with_tag(self, tag, id)
  for _, a in pairs(self.state.iscsi.auths) do
    if a.tag == tag and a.id ~= id then return a end
  end
end

crud("auth", "auths", "iscsi_auth.iSCSITargetAuthCredential", "iscsi_auth", {
  verbose = "iSCSITargetAuthCredential",
  validate = function(self, data, old, v, at)
    local secret, peer_secret, peer_user = data.secret, data.peersecret or "", data.peeruser or ""
    if data.discovery_auth ~= nil and data.discovery_auth ~= "NONE" then
      -- discovery sessions (SendTargets) are not modelled
      v:add(at .. ".discovery_auth", "truenas lab: discovery authentication is not modelled; use NONE",
        ERRNO.ENOTSUP)
    end
    if peer_user == "" and peer_secret ~= "" then
      v:add(at .. ".peersecret", "The peer user is required if you set a peer secret.")
    end
    auth_secret_rules(secret, "secret", "Secret", at, v)
    if peer_user ~= "" then
      if peer_secret == "" then
        v:add(at .. ".peersecret", "The peer secret is required if you set a peer user.")
      elseif peer_secret == secret then
        v:add(at .. ".peersecret", "The peer secret cannot be the same as user secret.")
      else
        auth_secret_rules(peer_secret, "peersecret", "Peer Secret", at, v)
      end
    end
    if old and data.tag ~= old.tag and not other_with_tag(self, old.tag, old.id) then
      local usages = auth_usages(self, old.id, old.tag)
      if usages then v:add(at .. ".tag", usages) end
    end
  end,
  build = function(_, data, id)
    return { id = id, tag = int(data.tag), user = data.user, secret = data.secret, peeruser = data.peeruser or "",
             peersecret = data.peersecret or "", discovery_auth = data.discovery_auth or "NONE" }
  end,
  -- fault authrace: another client (a parallel run that picked the same
  -- free tag) creates an entry with this tag just before this create
  before_create = function(self, data)
    if self.fault("authrace") then
      local id = self:next_id("auth")
      self.state.iscsi.auths[id] = { id = id, tag = int(data.tag), user = string.format("lab-race-%d", id),
        secret = string.format("race-secret-%d", id % 10000), peeruser = "", peersecret = "", discovery_auth = "NONE" }
    end
  end,
  entry = function(_, a) return copy(a) end,
  delete = function(self, a)
    -- the last entry of a tag a target uses cannot go
    if not other_with_tag(self, a.tag, a.id) then
      local usages = auth_usages(self, a.id, a.tag)
      if usages then fail(ERRNO.EFAULT, usages) end
    end
  end,
})

-- services ------------------------------------------------------------------

methods["service.query"] = { fn = function(self, args)
  local filters, options = query_args(args)
  return M.filter_list(sorted_values(self.state.services), filters, options)
end }

local function find_service(self, name)
  local svc = self.state.services[name]
  if not svc then
    for _, x in pairs(self.state.services) do if x.id == name then svc = x end end
  end
  return svc
end

local function service_args(self, args, method)
  local v = verrors()
  if type(args[1]) ~= "string" then
    v:add("service", "Input should be a valid string")
    check(v)
  end
  if #args > 2 then
    v:add("", string.format("Too many arguments (expected 2, found %d)", #args))
    check(v)
  end
  if args[2] ~= nil and args[2] ~= null and not jsonschema.is_object(args[2]) then
    v:add("options", "Input should be a valid dictionary")
    check(v)
  end
  local svc = self.state.services[args[1]]
  if not svc then fail(ERRNO.ENOENT, "The service " .. args[1] .. " does not exist (" .. method .. ")") end
  return svc
end

-- Start or stop a service. TrueNAS checks a service's health after starting
-- it: when the iscsitarget service cannot export (istgt under --tgt did not
-- come up), it is not running. Returns true, or false and why.
local function set_running(self, svc, running)
  svc.state = running and "RUNNING" or "STOPPED"
  svc.pids = running and json.array { 1000 + svc.id } or json.array()
  local ok, err = self:sync_export()
  if running and not ok and svc.service == "iscsitarget" then
    svc.state, svc.pids = "STOPPED", json.array()
    self:sync_export()
    return false, err
  end
  return true
end

methods["service.start"] = { fn = function(self, args)
  return (set_running(self, service_args(self, args, "service.start"), true))
end }

methods["service.stop"] = { fn = function(self, args)
  set_running(self, service_args(self, args, "service.stop"), false)
  return true
end }

local VERBS = { START = true, STOP = true, RESTART = true, RELOAD = true }
-- 25.10: service.control(verb, service, options) is a job; its result says
-- whether the service runs (START/RESTART/RELOAD) or stopped (STOP).
methods["service.control"] = { job = true, check = function(_, args)
  local v = verrors()
  if not VERBS[args[1]] then
    v:add("verb", "Input should be 'START', 'STOP', 'RESTART' or 'RELOAD'")
  end
  if type(args[2]) ~= "string" then v:add("service", "Input should be a valid string") end
  if args[3] ~= nil and args[3] ~= null and not jsonschema.is_object(args[3]) then
    v:add("options", "Input should be a valid dictionary")
  end
  if #args > 3 then v:add("", string.format("Too many arguments (expected 3, found %d)", #args)) end
  check(v)
  for k, val in pairs(args[3] or {}) do
    if k ~= "ha_propagate" and k ~= "silent" and k ~= "timeout" then
      v:add("options." .. tostring(k), "Extra inputs are not permitted")
    elseif k ~= "timeout" and type(val) ~= "boolean" then
      v:add("options." .. k, "Input should be a valid boolean")
    end
  end
  check(v)
end, fn = function(self, args)
  local svc = self.state.services[args[2]]
  if not svc then fail(ERRNO.ENOENT, "The service " .. args[2] .. " does not exist") end
  if args[1] == "STOP" then
    set_running(self, svc, false)
    return true
  end
  if args[1] == "RELOAD" and svc.state ~= "RUNNING" then return false end
  local ok, why = set_running(self, svc, true)
  if ok then return true end
  -- options.silent (default true): false; else the CallError TrueNAS raises
  -- with the service's failure logs
  if type(args[3]) == "table" and args[3].silent == false then
    fail(ERRNO.EFAULT, "Service not running after start: " .. tostring(why))
  end
  return false
end }

methods["service.update"] = { fn = function(self, args)
  local svc = find_service(self, args[1])
  if not svc then not_found("Service", args[1]) end
  local data = args[2]
  if not jsonschema.is_object(data) then
    raise(validation_error({ { "service_update", "Input should be a valid dictionary", ERRNO.EINVAL } }))
  end
  if data.enable == nil then
    raise(validation_error({ { "service_update.enable", "Field required", ERRNO.EINVAL } }))
  end
  for k, val in pairs(data) do
    if k ~= "enable" then
      raise(validation_error({ { "service_update." .. k, "Extra inputs are not permitted", ERRNO.EINVAL } }))
    end
    if type(val) ~= "boolean" then
      raise(validation_error({ { "service_update.enable", "Input should be a valid boolean", ERRNO.EINVAL } }))
    end
  end
  svc.enable = data.enable
  return svc.id
end }

-- jobs ------------------------------------------------------------------------
-- Lab jobs run to their end inside the call that starts them (no waiting
-- state is observable); what a client sees is TrueNAS's protocol: with
-- legacy_jobs (the default) the call returns the job id, followed with
-- core.job_wait (itself a job) or core.get_jobs; after core.set_options
-- {legacy_jobs = false} the call returns the job's result or its error.

local function iso() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

function Model:run_job(method, args, fn, session)
  local id = self:next_id("job")
  local job = { id = id, method = method, arguments = copy(args), message_ids = json.array(),
                transient = false, description = null, abortable = false, logs_path = null,
                logs_excerpt = null, progress = { percent = 0, description = null, extra = null },
                result = null, result_encoding_error = null, error = null, exception = null,
                exc_info = null, state = "RUNNING", time_started = { ["$date"] = iso() },
                time_finished = null, credentials = { type = "API_KEY", data = { username = session.username } } }
  self.state.jobs[id] = job
  local ok, result = pcall(fn, self, args, session)
  job.time_finished = { ["$date"] = iso() }
  if ok then
    job.state, job.result = "SUCCESS", result == nil and null or result
    job.progress = { percent = 100, description = null, extra = null }
  else
    local err = getmetatable(result) == Raised and result.err
      or call_error(ERRNO.EFAULT, tostring(result))
    job.state = "FAILED"
    job.error = err.data and err.data.reason or err.message
    job.exception = job.error
    job.exc_info = { repr = job.error, type = err.code == M.JSONRPC.INVALID_PARAMS and "VALIDATION" or "CallError",
                     errno = err.data and err.data.error or ERRNO.EFAULT,
                     extra = err.data and err.data.extra or null }
    job.raised = err
  end
  return job
end

methods["core.get_jobs"] = { fn = function(self, args)
  local filters, options = query_args(args)
  local list = {}
  for _, j in ipairs(sorted_values(self.state.jobs)) do
    local e = copy(j)
    e.raised = nil
    list[#list + 1] = e
  end
  return M.filter_list(list, filters, options)
end }

methods["core.job_wait"] = { job = true, check = function(_, args)
  if #args ~= 1 or not math.tointeger(args[1]) then
    raise(validation_error({ { "id", "Input should be a valid integer", ERRNO.EINVAL } }))
  end
end, fn = function(self, args)
  local id = math.tointeger(args[1])
  local job = self.state.jobs[id]
  if not job then fail(ERRNO.ENOENT, "Job with id " .. id .. " does not exist") end
  if job.state == "FAILED" then raise(job.raised) end
  return job.result
end }

methods["core.set_options"] = { fn = function(_, args, session)
  local opts = args[1]
  if #args ~= 1 or not jsonschema.is_object(opts) then
    raise(validation_error({ { "options", "Input should be a valid dictionary", ERRNO.EINVAL } }))
  end
  for _, k in ipairs { "legacy_jobs", "private_methods", "py_exceptions" } do
    if opts[k] ~= nil then
      if type(opts[k]) ~= "boolean" then
        raise(validation_error({ { "options." .. k, "Input should be a valid boolean", ERRNO.EINVAL } }))
      end
      session.options[k] = opts[k]
    end
  end -- other keys are ignored (newer clients may send more)
  return copy(session.options)
end }

methods["core.get_methods"] = { fn = function(self, args)
  local only = args[1] ~= null and args[1] or nil
  local out = {}
  for name, m in pairs(methods) do
    if not only or name:sub(1, #only + 1) == only .. "." then
      out[name] = { job = m.job == true, description = null, require_websocket = false }
    end
  end
  return out
end }

---------------------------------------------------------------------------
-- Dispatch
---------------------------------------------------------------------------

local function is_write(method)
  return method:match("%.create$") or method:match("%.update$") or method:match("%.delete$")
    or method:match("^service%.") and method ~= "service.query"
end
M.is_write = is_write

local RATE_LIMIT, RATE_WINDOW = 20, 60

--- Call a method: returns the result, or nil and a JSON-RPC error object.
function Model:dispatch(method, params, session)
  if type(method) ~= "string" then error("truenas dispatch: method must be a string", 2) end
  session = session or self:session()
  local m = methods[method]
  if not m then
    return nil, { code = M.JSONRPC.METHOD_NOT_FOUND, message = "Method not found",
                  data = { error = ERRNO.ENOMETHOD, errname = "ENOMETHOD",
                           reason = "[ENOMETHOD] Method " .. json.encode(method) .. " not found",
                           extra = null, trace = null } }
  end
  if not session.authenticated then
    -- a method that needs a login is refused at once; the ones callable
    -- without one (login, ping) count: 20 per method per address per minute
    -- (middlewared's authorize_method_call; the minute scaled by the lab's
    -- --time-scale, like its other durations)
    if not m.public then return nil, call_error(ERRNO.ENOTAUTHENTICATED, "Not authenticated") end
    local key = method .. "@" .. tostring(session.ip or "local")
    local now = self.clock()
    local r = self.rate[key]
    if not r or now - r.start >= RATE_WINDOW * self.scale then
      r = { start = now, n = 0 }
      self.rate[key] = r
    end
    r.n = r.n + 1
    if r.n > RATE_LIMIT then return nil, call_error(ERRNO.EBUSY, "Rate Limit Exceeded") end
  end
  if params == nil or params == null then params = json.array() end
  if not jsonschema.is_array(params) then
    return nil, { code = M.JSONRPC.INVALID_PARAMS, message = "Invalid params",
                  data = { error = ERRNO.EINVAL, errname = "EINVAL",
                           reason = "[EINVAL] params: Input should be a valid list", extra = null, trace = null } }
  end
  local args = params
  if m.schema then
    local out, errs = self.schemas:validate_args(m.schema, params)
    if not out then
      local list = {}
      for i, e in ipairs(errs) do list[i] = { e.path, e.message, ERRNO.EINVAL } end
      return nil, validation_error(list)
    end
    args = out
  end
  self.calls = self.calls + 1
  self.by_method[method] = (self.by_method[method] or 0) + 1
  if is_write(method) then self.writes = self.writes + 1 end
  if m.check then
    -- arguments are validated before a job exists
    local ok, e = pcall(m.check, self, args, session)
    if not ok then
      if getmetatable(e) == Raised then return nil, e.err end
      error(e, 0)
    end
  end
  if m.job then
    local job = self:run_job(method, args, m.fn, session)
    if session.options and session.options.legacy_jobs == false then
      if job.state == "FAILED" then return nil, job.raised end
      return job.result
    end
    return job.id
  end
  local ok, result = pcall(m.fn, self, args, session)
  if ok then
    if result == nil then result = null end
    if is_write(method) then self:sync_export() end
    return result
  end
  if getmetatable(result) == Raised then return nil, result.err end
  -- a bug in the model: reported as the middleware reports an exception
  return nil, { code = M.JSONRPC.CALL_ERROR, message = "Method call error",
                data = { error = ERRNO.EFAULT, errname = "EFAULT", reason = tostring(result),
                         extra = null, trace = { formatted = debug.traceback(tostring(result)) } } }
end

--- Names of the methods the model implements.
function M.method_names()
  local names = {}
  for k in pairs(methods) do names[#names + 1] = k end
  table.sort(names)
  return names
end

M.Model = Model
M.validation_error = validation_error

---------------------------------------------------------------------------
-- The device: the model served over JSON-RPC 2.0 on WebSocket and REST v2.0
-- through sbot.httpd.
---------------------------------------------------------------------------


local WS_PATHS = { ["/api/current"] = true, ["/api/v25.10.0"] = true, ["/api/v25.10"] = true }

local function rpc_reply(id, result, err)
  if err then
    return json.encode { jsonrpc = "2.0", id = id == nil and null or id, error = err }
  end
  return json.encode { jsonrpc = "2.0", id = id, result = result }
end

-- One JSON-RPC request text -> reply text or nil (notification / dropped).
local function handle_rpc(dev, session, text)
  local msg = json.decode(text)
  if type(msg) ~= "table" or msg == null or jsonschema.is_array(msg) then
    return rpc_reply(null, nil, { code = M.JSONRPC.INVALID_JSON, message = "Parse error",
                                  data = { reason = "invalid JSON-RPC message" } })
  end
  local id = msg.id
  if msg.jsonrpc ~= "2.0" or type(msg.method) ~= "string"
      or (msg.params ~= nil and msg.params ~= null and not jsonschema.is_array(msg.params)) then
    return rpc_reply(id, nil, { code = M.JSONRPC.INVALID_REQUEST, message = "Invalid Request",
      data = { reason = "expected {jsonrpc = \"2.0\", id, method (string), params (list)}" } })
  end
  local result, err = dev.model:dispatch(msg.method, msg.params, session)
  if id == nil then return nil end -- a notification gets no reply
  if (dev.inject.drop_call and dev.inject.drop_call(msg.method)) or dev.inject.chance("drop") then
    dev.dropped = dev.dropped + 1
    return nil
  end
  return rpc_reply(id, result, err)
end
M.handle_rpc = handle_rpc

-- REST v2.0 ------------------------------------------------------------------

local REST_NAMESPACES = {
  "iscsi/targetextent", "iscsi/target", "iscsi/extent", "iscsi/portal", "iscsi/initiator", "iscsi/auth",
  "pool/dataset", "service",
}

local function rest_error(err)
  local d = err.data or {}
  if err.code == M.JSONRPC.INVALID_PARAMS and type(d.extra) == "table" then
    local body = {}
    for _, e in ipairs(d.extra) do
      local attr = e[1] ~= "" and e[1] or "__all__"
      body[attr] = body[attr] or json.array()
      table.insert(body[attr], { message = e[2], errno = e[3] })
    end
    return 422, body
  end
  if err.code == M.JSONRPC.METHOD_NOT_FOUND then return 404, { message = d.reason or err.message } end
  if d.errname == "ENOENT" then return 404, { message = d.reason, errno = d.error } end
  if d.errname == "ENOTAUTHENTICATED" then return 401, { message = d.reason, errno = d.error } end
  return 422, { message = d.reason or err.message, errno = d.error }
end

-- A path id: integer for everything but datasets.
local function rest_id(ns, raw)
  if ns == "pool/dataset" then return raw end
  return math.tointeger(tonumber(raw)) or raw
end

local function query_value(v)
  if v == "true" then return true elseif v == "false" then return false end
  if v == "null" then return null end
  return math.tointeger(tonumber(v)) or v
end

-- Map one REST request to (method, params) or to an error status.
local function rest_route(dev, req)
  local path = req.path:gsub("^/api/v2%.0/?", ""):gsub("/$", "")
  local method = req.method
  local body
  if req.body ~= "" then
    local err
    body, err = json.decode(req.body)
    if body == nil then return nil, 400, { message = "Request body is not valid JSON: " .. tostring(err) } end
  end
  if path == "core/ping" and method == "GET" then return "core.ping", json.array() end
  if path == "system/info" and method == "GET" then return "system.info", json.array() end
  if path == "iscsi/global" and method == "GET" then return "iscsi.global.config", json.array() end
  if path == "pool" and method == "GET" then path = "pool" end
  if path == "service/start" and method == "POST" then
    return "service.start", json.array { type(body) == "table" and body.service or body }
  end
  if path == "auth/me" and method == "GET" then return "auth.me", json.array() end
  local ns, rest
  for _, n in ipairs(REST_NAMESPACES) do
    if path == n or path:sub(1, #n + 1) == n .. "/" then ns, rest = n, path:sub(#n + 2) break end
  end
  if not ns and (path == "pool" or path:match("^pool/id/")) then ns, rest = "pool", path:sub(6) end
  if not ns then return nil, 404, { message = "Not found: /api/v2.0/" .. path } end
  local mname = ns:gsub("/", ".")
  local id = rest:match("^id/(.+)$")
  if rest ~= "" and not id then return nil, 404, { message = "Not found: /api/v2.0/" .. path } end
  if method == "GET" then
    local filters, options = json.array(), {}
    for k, v in pairs(req.query or {}) do
      if k == "limit" or k == "offset" then options[k] = math.tointeger(tonumber(v))
      elseif k == "sort" then
        options.order_by = json.array()
        for f in v:gmatch("[^,]+") do options.order_by[#options.order_by + 1] = f end
      elseif k == "count" then options.count = v == "true"
      else filters[#filters + 1] = json.array { k, "=", query_value(v) } end
    end
    if id then
      filters = json.array { json.array { "id", "=", rest_id(ns, id) } }
      options = { get = true }
    end
    return mname .. ".query", json.array { filters, options }
  end
  if method == "POST" and not id then return mname .. ".create", json.array { body == nil and {} or body } end
  if method == "PUT" and id then return mname .. ".update", json.array { rest_id(ns, id), body == nil and {} or body } end
  if method == "DELETE" and id then
    local m = methods[mname .. ".delete"]
    local params = json.array { rest_id(ns, id) }
    if body ~= nil and m and m.schema then
      local names = dev.model.schemas:property_names(m.schema)
      if #names == 2 and not (jsonschema.is_object(body) and body[names[2]] ~= nil) then
        params[2] = body -- a single options object (pool.dataset.delete)
      elseif jsonschema.is_object(body) then
        -- named arguments (iscsi.target.delete: force, delete_extents)
        for k in pairs(body) do
          local known = false
          for _, n in ipairs(names) do if n == k then known = true end end
          if not known or k == names[1] then
            return nil, 422, { [mname .. "_delete." .. tostring(k)] =
              json.array { { message = "Extra inputs are not permitted", errno = ERRNO.EINVAL } } }
          end
        end
        -- positional: a gap takes the argument's schema default
        local props = dev.model.schemas:schema(m.schema).properties
        local last = 1
        for i = 2, #names do if body[names[i]] ~= nil then last = i end end
        for i = 2, last do
          local v = body[names[i]]
          if v == nil then v = props[names[i]].default end
          params[i] = v
        end
      else
        params[2] = body
      end
    end
    return mname .. ".delete", params
  end
  return nil, 405, { message = method .. " is not allowed on /api/v2.0/" .. path }
end

local function json_response(status, body)
  return status, { ["Content-Type"] = "application/json" }, json.encode(body)
end

--- Build the lab device. opts: everything M.model takes, plus name
-- ("truenas"), faults ({drop = rate}), seed, injector (an object with
-- chance(key), from sbot.lab.faults; overrides faults/seed).
-- Returns {name, kind, model, handler, serve_websocket, state, site_entry,
-- boot_hook, close}.
function M.new(opts)
  opts = opts or {}
  local started_tgt
  opts = (function() local c = {} for k, v in pairs(opts) do c[k] = v end return c end)()
  if opts.tgt == true then
    -- `sbot lab --tgt`: a private istgt on a free port under the lab's dir,
    -- outside the ephemeral range (nothing listens there while istgt
    -- restarts, and an outgoing connection could take an ephemeral port)
    local port = math.tointeger(opts.tgt_port)
    if not port then
      local perr
      port, perr = require("sbot.lab.istgt").free_port(opts.host or "127.0.0.1")
      if not port then return nil, perr end
    end
    opts.tgt = { port = port, host = opts.host or "127.0.0.1",
                 dir = (opts.dir or os.getenv("TMPDIR") or "/tmp") .. "/iscsi" }
  elseif opts.tgt == false then
    opts.tgt = nil
  end
  if type(opts.tgt) == "table" and not opts.tgt.apply then
    -- target options {port, dir, host}: this device runs its own istgt
    local terr
    started_tgt, terr = require("sbot.lab.istgt").start(opts.tgt)
    if not started_tgt then return nil, terr end
    -- in sbot lab, a restart waits as a lab task: the lab keeps serving
    started_tgt.tasks = opts.lab and opts.lab.tasks
    opts.tgt = started_tgt
    opts.iscsi_port = opts.iscsi_port or started_tgt.port
  end
  opts.export_host = opts.export_host or (started_tgt and started_tgt.host) or opts.host or "127.0.0.1"
  local model, err = M.model(opts)
  if not model then
    if started_tgt then started_tgt:stop() end
    return nil, err
  end
  local httpd = require "sbot.httpd"
  local dev = { name = opts.name or "truenas", kind = "truenas", model = model, dropped = 0,
                rpc_calls = 0, rest_calls = 0, lostanswers_per_message = true }
  local inject = opts.injector
  if not inject then
    local faults = opts.faults or {}
    for k, v in pairs(faults) do
      if k ~= "drop" and k ~= "zvoldev" and k ~= "authrace" then
        error("truenas.new: unknown fault '" .. tostring(k) .. "' (known: authrace, drop, zvoldev)", 2)
      end
      if type(v) ~= "number" or v < 0 or v > 1 then error("truenas.new: faults." .. k .. " must be a rate 0..1", 2) end
    end
    local rand = require("sbot.lab.faults").rng(opts.seed or 0, "truenas")
    local counts = {}
    inject = {
      counts = counts,
      chance = function(key)
        local rate = faults[key]
        if not rate or rate <= 0 then return false end
        local hit = rand() < rate
        if hit then counts[key] = (counts[key] or 0) + 1 end
        return hit
      end,
    }
  end
  dev.inject = inject
  dev.faults = opts.injector -- the lab's injector, when it gave one
  model.fault = function(key) return inject.chance(key) end

  -- The JSON-RPC connection loop. Not exported as `websocket` on purpose:
  -- sbot lab would then send every upgrade (any path) straight here, past
  -- its fault wrapper; handler() routes the upgrade instead.
  -- In sbot lab each call runs as a lab task, as the middleware runs each
  -- call as its own job: a call whose change restarts istgt answers once
  -- istgt is back, and meanwhile this and every other connection are served.
  local tasks = opts.lab and opts.lab.tasks
  function dev.serve_websocket(ws)
    local remote = ws.request and ws.request.remote or ""
    local session = model:session(remote:match("^%[(.*)%]:%d+$") or remote:match("^(.*):%d+$") or remote)
    -- false: the connection ends
    local function answer(text)
      local reply = handle_rpc(dev, session, text)
      -- fault lostanswers: the call happened, its answer is lost with the
      -- connection (the client sees it closed)
      if reply and dev.faults and dev.faults.lostanswer and dev.faults.lostanswer() then
        if tasks then ws:close() end
        return false
      end
      if reply and not ws:send(reply) then return false end
      return true
    end
    local function failed() ws:close(1011) end
    while true do
      local text = ws:recv()
      if not text then break end
      dev.rpc_calls = dev.rpc_calls + 1
      if tasks then
        tasks.spawn(answer, failed, text)
      elseif not answer(text) then
        break
      end
    end
  end

  function dev.handler(req)
    if WS_PATHS[req.path] then
      if (req.headers.upgrade or ""):lower() == "websocket" then return httpd.upgrade(dev.serve_websocket) end
      return json_response(400, { message = "WebSocket endpoint: send an HTTP/1.1 Upgrade: websocket request" })
    end
    if req.path == "/lab/state" and req.method == "GET" then
      return json_response(200, dev.state())
    end
    if req.path:match("^/api/v2%.0") then
      dev.rest_calls = dev.rest_calls + 1
      local auth = req.headers.authorization or ""
      local key = auth:match("^[Bb]earer%s+(.+)$")
      if key ~= model.api_key then
        return json_response(401, { message = "Authentication credentials were not provided or are invalid" })
      end
      local method, params, extra = rest_route(dev, req)
      if not method then return json_response(params, extra) end
      local session = { authenticated = true, username = model.username }
      local result, rerr = model:dispatch(method, params, session)
      if rerr then return json_response(rest_error(rerr)) end
      return json_response(200, result)
    end
    return json_response(404, { message = "Not found: " .. req.path })
  end

  function dev.state()
    local st = model:lab_state()
    st.name = dev.name
    st.faults = { dropped = dev.dropped, counts = inject.counts or {} }
    st.rpc_messages = dev.rpc_calls
    st.rest_calls = dev.rest_calls
    return st
  end

  --- sbot lab calls this on every simulated iDRAC boot. For an iSCSI boot it
  -- logs in for real with istgt running (else asks the model what would be visible)
  -- as the server's initiator (INQUIRY + READ CAPACITY), with the CHAP user and
  -- secret the booting firmware holds (idrac.boot_chap(boot): the BIOS's
  -- IscsiDev1Con1ChapName/ChapSecret, or the NIC's CHAPUsername/CHAPSecret);
  -- the result goes to boot.iscsi_login (shown in /lab/state; the secret never).
  function dev.boot_hook(boot, idrac)
    if boot.source ~= "iSCSI" or type(boot.target) ~= "table" then return end
    -- a boot during an istgt restart logs in once istgt is back (its
    -- iscsi_login appears then)
    if model.tgt and model.tgt.busy and model.tgt.when_ready then
      return model.tgt:when_ready(function() dev.boot_hook(boot, idrac) end)
    end
    local t = boot.target
    local chap = idrac and idrac.boot_chap and idrac.boot_chap(boot) or nil
    local login = { target = t.name, portal = tostring(t.ip) .. ":" .. tostring(t.port), lun = t.lun,
                    initiator = t.initiator, chap = chap and chap.user or nil }
    boot.iscsi_login = login
    local target, mapping
    for _, tg in pairs(model.state.iscsi.targets) do
      if model:iqn(tg) == t.name then target = tg end
    end
    if target then
      for _, te in pairs(model.state.iscsi.targetextents) do
        if te.target == target.id and te.lunid == tonumber(t.lun) then mapping = te end
      end
    end
    if mapping then login.zvol = model:mapping_info(mapping).zvol end
    if not model.tgt then
      -- no real target: the model says what an initiator would see
      local ok, why = model:visible(t.name, t.lun, t.initiator, tostring(t.ip), chap)
      login.ok, login.checked, login.error = ok, "model", not ok and why or nil
      return
    end
    local ok_iscsi, iscsi = pcall(require, "sbot.iscsi")
    if not ok_iscsi then
      login.ok, login.error = false, "sbot.iscsi is not available: " .. tostring(iscsi)
      return
    end
    local r, perr = iscsi.probe { portal = login.portal, target = t.name, lun = tonumber(t.lun) or 0,
                                  initiator = t.initiator ~= "" and t.initiator or nil, timeout = 5,
                                  chap = chap and chap.secret ~= "" and chap or nil }
    login.checked = "istgt"
    if r then
      login.ok, login.capacity, login.inquiry = true, r.capacity, r.inquiry
    else
      login.ok, login.error = false, perr
    end
  end

  --- Stop what the device started (its istgt). Safe to call twice.
  function dev.close()
    if started_tgt then started_tgt:stop() end
  end

  --- The site.lua `truenas` entry for this device served at base
  -- ("http://127.0.0.1:PORT" or https://...); tls is what a client needs
  -- ({pin_sha256 = ...}). Fills every key the site schema requires: the pool
  -- is the model's, the portal is where its iSCSI targets listen (the lab's
  -- istgt with --tgt, else the model's iscsi.global listen port on the lab host).
  -- Each server of the site built so far gets its own CHAP credentials for
  -- its boot disk (`components.iscsi.chap = {user = <id>, secret = 16 random
  -- characters}`; the lab's Vault then keeps the secret, docs/iscsi.md).
  function dev.site_entry(base, tls, _, site)
    local crypto = require "sbot.crypto"
    local alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    for _, s in ipairs(site and site.servers or {}) do
      local chars = {}
      for i, b in ipairs { crypto.random_bytes(16):byte(1, -1) } do
        local k = b % #alphabet + 1
        chars[i] = alphabet:sub(k, k)
      end
      s.components = s.components or {}
      s.components.iscsi = s.components.iscsi or {}
      s.components.iscsi.chap = { user = s.id, secret = table.concat(chars) }
    end
    local url = base:gsub("^http", "ws"):gsub("/$", "") .. "/api/current"
    local pool = next(model.state.pools)
    local global = model.state.iscsi.global
    local host = started_tgt and started_tgt.host or opts.host or "127.0.0.1"
    return { url = url, api_key = model.api_key, user = model.username, tls = tls, pool = pool,
             portal = host .. ":" .. tostring(global.listen_port), basename = global.basename }
  end

  return dev
end

return M
