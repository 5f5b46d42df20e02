--- sbot.lease: a lock that works across machines, as a lease object in S3.
--
--   local lease = require "sbot.lease"
--   local l, err, code = lease.acquire(client, { bucket = "b", key = "locks/r630-01.lease",
--     name = "server r630-01", ttl = 120, holder = { run_id = id } })
--   ... work: a keeper process renews the lease every ttl/3 seconds ...
--   l:release()
--
-- The lease is created with `If-None-Match: *`, so of two operators only one
-- gets it. It is a JSON document {holder = {host, pid, run_id, ...}, token,
-- ttl, acquired, renewed}; renewing rewrites it with `If-Match` its ETag, so a
-- holder that lost it (taken over after it expired) finds out. A lease is
-- expired when the server's clock (its Date answer) is past the object's
-- Last-Modified plus its ttl — the server's clock on both sides, so the
-- operators' clocks do not matter — or at once when its holder ran on this
-- host and that process is gone. An expired lease is taken over with
-- `If-Match` its ETag (one taker wins) and a warning naming the holder.
-- Expected failures return nil, message, code: "Locked" when someone else
-- holds it, or the S3 code. Misuse raises.
local json = require "sbot.json"
local log = require "sbot.log"
local sys = require "sbot.sys"
local crypto = require "sbot.crypto"

local M = {}

M.DEFAULT_TTL = 120

local Lease = {}
Lease.__index = Lease
Lease.__name = "sbot.lease"

local function s3() return require "sbot.s3" end

local function body_of(holder, token, ttl, acquired)
  return json.encode({ holder = holder, token = token, ttl = ttl, acquired = acquired,
    renewed = sys.utc_iso() }, { indent = true })
end

--- read(client, bucket, key) -> info | nil, err, code ("NoSuchKey" when
-- there is none). info = {holder, token, ttl, acquired, renewed, etag,
-- last_modified (epoch), server_time (epoch), expires (epoch), stale, why}.
function M.read(client, bucket, key)
  local r, err, code = client:get_object { bucket = bucket, key = key }
  if not r then return nil, err, code end
  local doc = json.decode(r.body)
  if type(doc) ~= "table" or type(doc.holder) ~= "table" then
    return nil, "lease s3://" .. bucket .. "/" .. key .. ": not a lease document", "BadLease"
  end
  local info = { holder = doc.holder, token = doc.token, ttl = tonumber(doc.ttl) or M.DEFAULT_TTL,
    acquired = doc.acquired, renewed = doc.renewed, etag = r.etag }
  info.last_modified = s3().parse_http_date(r.last_modified)
  info.server_time = s3().parse_http_date(r.date) or os.time()
  if not info.last_modified then
    return nil, "lease s3://" .. bucket .. "/" .. key .. ": the answer has no Last-Modified date", "BadResponse"
  end
  info.expires = info.last_modified + info.ttl
  local h = info.holder
  if info.server_time > info.expires then
    info.stale, info.why = true, "expired at " .. os.date("!%Y-%m-%dT%H:%M:%SZ", info.expires)
  elseif h.host == sys.hostname() and math.tointeger(h.pid) and not sys.pid_alive(math.tointeger(h.pid)) then
    info.stale, info.why = true, "its process " .. tostring(math.tointeger(h.pid)) .. " on this host is gone"
  end
  return info
end

local function describe_holder(h)
  local pid = math.tointeger(h.pid) or h.pid -- JSON numbers come back as floats
  local s = "pid " .. tostring(pid) .. " on host " .. tostring(h.host)
  if h.run_id then s = s .. " (run " .. tostring(h.run_id) .. ")" end
  return s
end
M.describe_holder = describe_holder

--- acquire(client, {bucket, key, name, ttl, holder, keep}) -> lease | nil, err, code
-- `holder` adds fields (run_id, server, ...) to {host, pid}; `keep = false`
-- does not start the keeper (renew by hand with l:renew()).
function M.acquire(client, o)
  if type(o) ~= "table" or type(o.bucket) ~= "string" or type(o.key) ~= "string" then
    error("lease.acquire: expects (client, {bucket = string, key = string, ...})", 2)
  end
  local ttl = o.ttl or M.DEFAULT_TTL
  if math.type(ttl) ~= "integer" or ttl < 3 then error("lease.acquire: 'ttl' must be an integer >= 3 seconds", 2) end
  local name = o.name or ("lease s3://" .. o.bucket .. "/" .. o.key)
  local holder = { host = sys.hostname(), pid = sys.getpid() }
  for k, v in pairs(o.holder or {}) do holder[k] = v end
  local token = crypto.hex(crypto.random_bytes(16))
  local acquired = sys.utc_iso()
  local where = "s3://" .. o.bucket .. "/" .. o.key
  for _ = 1, 5 do
    local put, err, code = client:put_object { bucket = o.bucket, key = o.key, if_none_match = "*",
      body = body_of(holder, token, ttl, acquired), content_type = "application/json" }
    local taken_from
    if not put and code == "PreconditionFailed" then
      local info, rerr, rcode = M.read(client, o.bucket, o.key)
      if not info and rcode ~= "NoSuchKey" then return nil, name .. ": reading the lease " .. where .. ": " .. rerr, rcode end
      if info and info.token == token then
        -- our own create: it landed, its answer was lost, and the PUT sent
        -- again (sbot.http retries a PUT whose connection broke) met it
        put = { etag = info.etag }
      elseif info and not info.stale then
        return nil, string.format("%s is locked by %s since %s, until %s at the earliest (lease %s)", name,
          describe_holder(info.holder), tostring(info.acquired), os.date("!%Y-%m-%dT%H:%M:%SZ", info.expires), where), "Locked"
      elseif info then
        -- expired: take it over, only if nobody else did first
        put, err, code = client:put_object { bucket = o.bucket, key = o.key, if_match = info.etag,
          body = body_of(holder, token, ttl, acquired), content_type = "application/json" }
        taken_from = info
      end
    end
    if put and not taken_from and not o.trust_conditions then
      -- a server that ignores If-None-Match would let every operator in:
      -- a second conditional create of the same key must be refused
      local again, _, acode = client:put_object { bucket = o.bucket, key = o.key, if_none_match = "*",
        body = body_of(holder, token, ttl, acquired), content_type = "application/json" }
      if again then
        client:delete_object { bucket = o.bucket, key = o.key }
        return nil, name .. ": the server at " .. tostring(client.endpoint) .. " accepted a second " ..
          "'If-None-Match: *' create of " .. where .. ": it ignores conditional writes, so a lease there " ..
          "would not exclude anyone", "NoConditionalWrites"
      end
      if acode ~= "PreconditionFailed" then
        client:delete_object { bucket = o.bucket, key = o.key }
        return nil, name .. ": checking that " .. where .. " is exclusive: " .. tostring(acode), acode
      end
    end
    if put then
      if taken_from then
        log.warn(string.format("%s: took over the lease of %s (%s)", name, describe_holder(taken_from.holder),
          taken_from.why), { lease = where })
      end
      local l = setmetatable({ client = client, bucket = o.bucket, key = o.key, name = name, ttl = ttl,
        token = token, etag = put.etag, holder = holder, acquired = acquired, where = where }, Lease)
      if o.keep ~= false then
        local ok, kerr = l:_keep()
        if not ok then
          l:release()
          return nil, name .. ": cannot start renewing the lease: " .. tostring(kerr), "keeper"
        end
      end
      log.debug("lease taken", { lease = where, ttl = ttl })
      return l
    end
    -- lost a race (412 on the takeover, or the lease vanished): look again
    if code ~= "PreconditionFailed" and code ~= "NoSuchKey" and code ~= "ConditionalRequestConflict" then
      return nil, name .. ": " .. tostring(err), code
    end
  end
  return nil, name .. ": the lease " .. where .. " keeps changing hands; try again", "Locked"
end

--- Renew now: rewrite the lease with If-Match its ETag. nil, err, "LeaseLost"
-- when it is not ours any more.
function Lease:renew()
  if self.released then return nil, self.name .. ": the lease was released", "LeaseLost" end
  local put, err, code = self.client:put_object { bucket = self.bucket, key = self.key, if_match = self.etag,
    body = body_of(self.holder, self.token, self.ttl, self.acquired), content_type = "application/json" }
  if put then
    self.etag = put.etag
    return true
  end
  if code == "PreconditionFailed" then
    -- a renewal that landed with its answer lost (and was sent again, or
    -- is followed by this one) changed the ETag: the lease with our token
    -- is still ours
    local info = M.read(self.client, self.bucket, self.key)
    if info and info.token == self.token then
      self.etag = info.etag
      return true
    end
  end
  if code == "PreconditionFailed" or code == "NoSuchKey" then
    return nil, self.name .. ": the lease " .. self.where .. " is not ours any more (taken over or removed)", "LeaseLost"
  end
  return nil, self.name .. ": renewing " .. self.where .. ": " .. tostring(err), code
end

--- The keeper's tick (runs in the keeper process, see sbot.keeper): renew
-- the lease described by args; state carries the latest ETag. A renewal
-- that fails for another reason than the lease being lost (the endpoint
-- slow or away) is tried again at the next tick: the state counts the
-- failures in a row (`failures`, with the last `error`) and in all
-- (`failed`). Each request is bounded by a quarter of the ttl and made once
-- (a renewal that answers after the lease expired is worth nothing; the
-- next tick is the retry, on a fresh connection), so a tick takes at most
-- two requests: the PUT and, on a 412, the read.
local keeper_clients = {} -- one client per lease for every tick of a keeper process

-- Seconds between the keeper's renewals of a lease of ttl seconds.
local function tick(ttl) return math.max(1, ttl / 3) end

function M.keep(args, state)
  local ttl = tonumber(args.ttl) or M.DEFAULT_TTL
  local client = keeper_clients[args.where]
  if not client then
    local opts = {}
    for k, v in pairs(args.client) do opts[k] = v end
    local bound = math.max(1, ttl / 4)
    if type(opts.timeout) ~= "number" or opts.timeout > bound then opts.timeout = bound end
    opts.retries = false
    client = assert(s3().client(opts))
    keeper_clients[args.where] = client
  end
  local l = setmetatable({ client = client, bucket = args.bucket, key = args.key, name = args.name,
    ttl = args.ttl, token = args.token, holder = args.holder, acquired = args.acquired, where = args.where,
    etag = state and state.etag or args.etag }, Lease)
  local ok, err, code = l:renew()
  local failed = state and math.tointeger(state.failed) or nil
  if ok then return { etag = l.etag, renewed = sys.utc_iso(), failed = failed } end
  if code == "LeaseLost" then return nil, err end
  local failures = (state and math.tointeger(state.failures) or 0) + 1
  log.warn(string.format("%s: renewing the lease failed (%d in a row), trying again in %s s: %s", tostring(args.name),
    failures, tostring(tick(ttl)), tostring(err)), { lease = args.where })
  return { etag = l.etag, renewed = state and state.renewed, failures = failures, error = err,
    failed = (failed or 0) + 1 }
end

function Lease:_keep()
  local keeper = require "sbot.keeper"
  local k, err = keeper.start { module = "sbot.lease", fn = "keep", name = self.name,
    interval = tick(self.ttl),
    args = { client = self.client:options(), bucket = self.bucket, key = self.key, name = self.name,
      ttl = self.ttl, token = self.token, holder = self.holder, acquired = self.acquired,
      where = self.where, etag = self.etag } }
  if not k then return nil, err end
  self.keeper = k
  return true
end

--- Release: stop renewing, and delete the lease if it is still ours.
-- -> true | nil, err, code ("LeaseLost" when it was taken over meanwhile:
-- the work done under it was not exclusive for all of its time).
function Lease:release()
  if self.released then return true end
  self.released = true
  local lost
  if self.keeper then
    local st, kerr = self.keeper:stop()
    self.keeper = nil
    if type(st) == "table" and st.etag then
      self.etag = st.etag
      if st.error then
        log.warn(string.format("%s: the last %d renewal(s) of the lease failed: %s", self.name,
          math.tointeger(st.failures) or 1, tostring(st.error)), { lease = self.where })
      elseif st.failed then
        log.info(string.format("%s: %d renewal(s) of the lease failed during the run, each tried again at the next tick",
          self.name, math.tointeger(st.failed) or 0), { lease = self.where })
      end
    elseif not st then
      lost = kerr
    end
  end
  local info, err, code = M.read(self.client, self.bucket, self.key)
  if not info then
    if code == "NoSuchKey" then
      return nil, self.name .. ": the lease " .. self.where .. " was gone before release" ..
        (lost and (" (" .. lost .. ")") or ""), "LeaseLost"
    end
    return nil, self.name .. ": release: " .. tostring(err), code
  end
  if info.token ~= self.token then
    local msg = self.name .. ": the lease was taken over by " .. describe_holder(info.holder) ..
      " while this run held it" .. (lost and (" (" .. lost .. ")") or "")
    log.warn(msg, { lease = self.where })
    return nil, msg, "LeaseLost"
  end
  local ok, derr, dcode = self.client:delete_object { bucket = self.bucket, key = self.key }
  if not ok then return nil, self.name .. ": release: " .. tostring(derr), dcode end
  log.debug("lease released", { lease = self.where })
  if lost then
    log.warn(self.name .. ": renewing the lease failed during the run: " .. tostring(lost), { lease = self.where })
  end
  return true
end

Lease.__close = function(l) l:release() end
Lease.__gc = function(l)
  if not l.released and l.keeper then l.keeper:stop() end
end

return M
