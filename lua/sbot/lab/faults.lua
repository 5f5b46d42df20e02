--- Fault injection for sbot lab: parse `--faults` specs and decide, per
-- request, deterministically under a seed, whether a device misbehaves.
--
-- Spec: "DEVICE:key=value,key=value;DEVICE:..." e.g.
--   "idrac:503=0.1,reset=0.05;truenas:drop=0.05"
-- DEVICE is a device kind ("idrac", "truenas", ...) or "*" for every kind.
-- Keys (rates are probabilities 0..1 per request or message):
--   503      answer 503 (device-specific body)
--   reset    close the connection without an answer
--   latency  extra delay in milliseconds: "200" or a range "100-300"
--   drop     (WebSocket devices) drop a message without answering
--   jobfail  (iDRAC) a configuration job ends Failed
--   failpart (S3) UploadPart number N answers 500 InternalError (an integer)
--   completeerr (S3) rate of CompleteMultipartUpload answered 200 with an <Error> body
--   zvoldev  (TrueNAS) a new zvol's /dev node appears 0.5 s (x time scale) late: an extent
--            created at once fails "Device /dev/zvol/... does not exist"
--   authrace (TrueNAS) rate of iscsi.auth.create calls that another client's create of an
--            entry with the same tag beats (a parallel run that picked the same free tag)
--   corrupt  (installer mirror) rate of release downloads served with one byte changed
--   sealed   (Vault) 1 = the Vault is sealed (every request but sys/health and
--            sys/seal-status answers 503 "Vault is sealed"), 0 = unsealed
--   noshutdown (iDRAC) rate of GracefulShutdown requests the host OS ignores
--   lostanswers the next N requests (an integer) are handled, then their connections
--            closed without the answer: the client cannot tell whether they happened
--            (TrueNAS: the next N JSON-RPC calls on its WebSocket, not the upgrade)
--   dropcalls (WebSocket devices) "METHOD*N": the replies to the next N calls of METHOD
--            are dropped (counted down, before the drop rate; draws nothing from the
--            random stream), e.g. truenas:dropcalls=service.update*2
local M = {}

local KEYS = {
  ["503"] = "rate", reset = "rate", drop = "rate", jobfail = "rate", latency = "ms",
  failpart = "int", completeerr = "rate", corrupt = "rate", sealed = "flag", zvoldev = "rate",
  noshutdown = "rate", lostanswers = "int", authrace = "rate", dropcalls = "calls",
}

--- A deterministic generator of floats in [0, 1) (xorshift64*, seeded by
-- splitmix64 of the seed and a stream name).
function M.rng(seed, stream)
  local h = math.tointeger(seed) or 0
  for i = 1, #(stream or "") do
    h = (h * 31 + stream:byte(i)) & 0x7fffffffffffffff
  end
  local z = h + 0x1E3779B97F4A7C15
  z = (z ~ (z >> 30)) * 0x3F58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x14D049BB133111EB
  local x = z ~ (z >> 31)
  if x == 0 then x = 0x2545F4914F6CDD1D end
  return function()
    x = x ~ (x >> 12)
    x = x ~ (x << 25)
    x = x ~ (x >> 27)
    local r = x * 0x2545F4914F6CDD1D
    return ((r >> 11) & ((1 << 53) - 1)) / 9007199254740992.0
  end
end

local function parse_value(key, value, where)
  local kind = KEYS[key]
  if not kind then
    local known = {}
    for k in pairs(KEYS) do known[#known + 1] = k end
    table.sort(known)
    error(string.format("%s: unknown fault '%s' (known: %s)", where, key, table.concat(known, ", ")), 0)
  end
  if kind == "rate" then
    local n = tonumber(value)
    if not n or n < 0 or n > 1 then
      error(string.format("%s: %s must be a rate between 0 and 1, got '%s'", where, key, value), 0)
    end
    return n
  end
  if kind == "flag" then
    if value == "1" or value == "true" or value == "on" then return true end
    if value == "0" or value == "false" or value == "off" then return false end
    error(string.format("%s: %s must be 1 or 0, got '%s'", where, key, value), 0)
  end
  if kind == "int" then
    local n = math.tointeger(tonumber(value))
    if not n or n < 1 then
      error(string.format("%s: %s must be a positive integer, got '%s'", where, key, value), 0)
    end
    return n
  end
  if kind == "calls" then
    local method, n = value:match("^([%w_%.]+)%*(%d+)$")
    n = math.tointeger(tonumber(n))
    if not method or not n or n < 1 then
      error(string.format("%s: %s must be METHOD*N (N a positive integer), got '%s'", where, key, value), 0)
    end
    return { method = method, n = n }
  end
  local lo, hi = value:match("^(%d+%.?%d*)%-(%d+%.?%d*)$")
  lo, hi = tonumber(lo), tonumber(hi)
  if not lo then
    lo = tonumber(value)
    hi = lo
  end
  if not lo or lo < 0 or hi < lo then
    error(string.format("%s: latency must be milliseconds 'N' or 'MIN-MAX', got '%s'", where, value), 0)
  end
  return { lo, hi }
end

--- Parse a spec string into {kind = {key = value}}. Raises a message naming
-- the part that is wrong.
function M.parse(spec)
  local out = {}
  if spec == nil or spec == "" then return out end
  for part in (spec .. ";"):gmatch("([^;]*);") do
    part = part:match("^%s*(.-)%s*$")
    if part ~= "" then
      local dev, list = part:match("^([%w_%*%-]+)%s*:%s*(.*)$")
      if not dev then
        error(string.format("--faults: '%s' is not DEVICE:key=value,...", part), 0)
      end
      out[dev] = out[dev] or {}
      for item in (list .. ","):gmatch("([^,]*),") do
        item = item:match("^%s*(.-)%s*$")
        if item ~= "" then
          local k, v = item:match("^([%w_]+)%s*=%s*(.+)$")
          if not k then
            error(string.format("--faults: '%s' in '%s' is not key=value", item, part), 0)
          end
          out[dev][k] = parse_value(k, v, "--faults " .. dev)
        end
      end
    end
  end
  return out
end

--- An injector for one device: decisions come from its own random stream so
-- they do not depend on the other devices' traffic.
-- opts: spec (parsed), kind, name, seed, latency_ms (global --latency),
-- answer_ms ({min, max}: the time every answer of the device takes, drawn
-- from a random stream of its own so that the faults' stream is the same
-- with it or without)
function M.injector(opts)
  local cfg = {}
  local function configure(spec)
    for k in pairs(cfg) do cfg[k] = nil end
    for _, src in ipairs({ spec["*"] or {}, spec[opts.kind] or {}, spec[opts.name] or {} }) do
      for k, v in pairs(src) do cfg[k] = v end
    end
  end
  configure(opts.spec or {})
  local rand = M.rng(opts.seed or 0, opts.name or opts.kind or "")
  local answer_rand = opts.answer_ms and M.rng(opts.seed or 0, (opts.name or opts.kind or "") .. ":answer")
  local inj = { config = cfg, counts = { requests = 0 } }

  --- Replace the configuration with a new parsed spec (the random stream
  -- goes on where it was).
  function inj.reconfigure(spec) configure(spec or {}) end

  local function hit(key)
    local rate = cfg[key]
    if not rate or rate <= 0 then return false end
    return rand() < rate
  end

  --- Whether the fault `key` (a rate) fires now; counts it.
  function inj.chance(key)
    local fired = hit(key)
    if fired then inj.counts[key] = (inj.counts[key] or 0) + 1 end
    return fired
  end

  --- Whether the reply to this call of `method` is dropped by `dropcalls`
  -- (the next N calls of one method); counts it as "dropcalls".
  function inj.drop_call(method)
    local d = cfg.dropcalls
    if not d or d.n <= 0 or d.method ~= method then return false end
    -- a copy: the parsed spec may be shared by every device
    cfg.dropcalls = { method = d.method, n = d.n - 1 }
    inj.counts.dropcalls = (inj.counts.dropcalls or 0) + 1
    return true
  end

  --- Whether the answer of the request or message being handled is lost
  -- (lostanswers, counted down); counts it.
  function inj.lostanswer()
    if (cfg.lostanswers or 0) > 0 then
      cfg.lostanswers = cfg.lostanswers - 1
      inj.counts.lostanswers = (inj.counts.lostanswers or 0) + 1
      return true
    end
    return false
  end

  --- Decide for one HTTP request: returns action ("reset", "503", "lostanswer"
  -- or nil) and a delay in seconds (0 for none). opts.upgrade: a WebSocket
  -- upgrade whose device loses the answers of its messages instead
  -- (lostanswers is not spent on the upgrade).
  function inj.request(ropts)
    inj.counts.requests = inj.counts.requests + 1
    if not (ropts and ropts.upgrade) and inj.lostanswer() then
      return "lostanswer", 0
    end
    local delay = (opts.latency_ms or 0) / 1000
    if answer_rand then
      local lo, hi = opts.answer_ms[1], opts.answer_ms[2]
      delay = delay + (lo + (hi - lo) * answer_rand()) / 1000
    end
    if cfg.latency then
      local lo, hi = cfg.latency[1], cfg.latency[2]
      delay = delay + (lo + (hi - lo) * rand()) / 1000
    end
    -- always draw both so one fault's rate does not shift the other's stream
    local r1, r2 = rand(), rand()
    if cfg.reset and r1 < cfg.reset then
      inj.counts.reset = (inj.counts.reset or 0) + 1
      return "reset", delay
    end
    if cfg["503"] and r2 < cfg["503"] then
      inj.counts["503"] = (inj.counts["503"] or 0) + 1
      return "503", delay
    end
    return nil, delay
  end

  return inj
end

return M
