--- sbot lab: simulated devices (iDRACs, and TrueNAS when sbot.lab.truenas is
-- installed) served over HTTPS on loopback, one port per device, with fault
-- injection and a scaled clock. `sbot lab --help` for the options; the device
-- interface is described in docs/lab.md.
local crypto = require "sbot.crypto"
local fsio = require "sbot.fsio"
local httpd = require "sbot.httpd"
local json = require "sbot.json"
local log = require "sbot.log"
local faults = require "sbot.lab.faults"
local idrac_model = require "sbot.lab.idrac.model"

local M = {}

M.usage = [[
usage: sbot lab [--servers N] [--dir DIR] [--site-out FILE] [--latency MS]
                [--faults SPEC] [--seed N] [--time-scale X] [--tgt] [--idrac 8|9]
                [--host ADDR] [--vault-namespace NS] [--pace quick|field]

Runs simulated devices on loopback until Ctrl-C: N iDRACs (Dell R630, iDRAC 8
Redfish, or iDRAC 9 with --idrac 9), each on its own HTTPS port with its own
self-signed certificate, plus the TrueNAS model when it is installed, an
S3 server (SigV4, versioning, bucket policies, conditional writes, multipart)
an OpenShift client mirror serving a stand-in openshift-install,
and a HashiCorp Vault holding every credential of the site file (KV v2 at
secret/, KV v1 at kv/; the site file names them as secret:PATH:KEY and logs
in with AppRole; the root token is in DIR/vault-root-token).

  --servers N      number of simulated servers (default 2)
  --dir DIR        where certificates, lab.json and the default site file go
                   (default ./sbot-lab)
  --site-out FILE  write the ready site file here (default DIR/site.lua)
  --latency MS     add MS milliseconds to every response
  --faults SPEC    e.g. 'idrac:503=0.1,reset=0.05,latency=50-200;truenas:drop=0.05'
                   (503 | reset | drop | jobfail | completeerr | corrupt rates,
                   latency in ms, failpart=N: S3 UploadPart N fails,
                   lostanswers=N: the next N requests happen, their answers are lost,
                   truenas:dropcalls=METHOD*N: the next N replies to METHOD are dropped,
                   vault:sealed=1: the Vault is sealed)
  --seed N         seed of the fault injection (default 1): same seed and same
                   requests give the same faults
  --time-scale X   multiply job, reboot and not-ready durations (and the
                   iDRAC's answer time with --pace field) by X (default 1; 0.1 =
                   10x faster)
  --pace P         how long the iDRAC takes at --time-scale 1: quick (default:
                   a config job 0.5 s, a reboot 1 s, answers at once) or field
                   (an R630 as the field notes have it: a config job 120 s, a
                   reboot to the OS 180 s, SYS518 for 60 s after a reset, a
                   graceful shutdown 30 s, every answer 0.3-2 s)
  --tgt            export TrueNAS iSCSI targets for real with istgt (TrueNAS model)
  --idrac 8|9      iDRAC generation to simulate (default 8)
  --host ADDR      loopback address to listen on (default 127.0.0.1)
  --vault-namespace NS
                   the Vault's mounts, roles and tokens live in namespace NS
                   (Vault Enterprise / HCP; the site file sets vault.namespace)

Every device port also answers GET /lab/state (JSON state of every device),
POST /lab/faults (body: a new --faults spec) and POST /lab/stop (stops the lab).
]]

--- Parse `sbot lab` arguments; returns options or nil, message.
function M.parse_args(argv)
  local o = { servers = 2, dir = "sbot-lab", latency = 0, faults = "", seed = 1,
    time_scale = 1, tgt = false, idrac = 8, host = "127.0.0.1", pace = "quick" }
  local i = 1
  local function value(name)
    i = i + 1
    local v = argv[i]
    if v == nil then error(name .. " needs a value", 0) end
    return v
  end
  local function number(name, v, min, integer)
    local n = tonumber(v)
    if not n or n < min or (integer and n ~= math.floor(n)) then
      error(string.format("%s: expected %s >= %s, got '%s'", name, integer and "an integer" or "a number", min, v), 0)
    end
    return integer and math.tointeger(n) or n
  end
  local ok, err = pcall(function()
    while i <= #argv do
      local a = argv[i]
      local name, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
      if name then
        a = name
        table.insert(argv, i + 1, inline)
      end
      if a == "--servers" then o.servers = number(a, value(a), 1, true)
      elseif a == "--dir" then o.dir = value(a)
      elseif a == "--site-out" then o.site_out = value(a)
      elseif a == "--latency" then o.latency = number(a, value(a), 0)
      elseif a == "--faults" then o.faults = value(a)
      elseif a == "--seed" then o.seed = number(a, value(a), 0, true)
      elseif a == "--time-scale" then o.time_scale = number(a, value(a), 0)
      elseif a == "--tgt" then o.tgt = true
      elseif a == "--pace" then
        o.pace = value(a)
        if not idrac_model.PACES[o.pace] then error("--pace: expected quick or field, got '" .. o.pace .. "'", 0) end
      elseif a == "--idrac" then
        o.idrac = number(a, value(a), 8, true)
        if o.idrac ~= 8 and o.idrac ~= 9 then error("--idrac: expected 8 or 9, got " .. o.idrac, 0) end
      elseif a == "--host" then o.host = value(a)
      elseif a == "--vault-namespace" then
        o.vault_namespace = value(a)
        if not o.vault_namespace:match("^[%w_.%-]+$") then
          error("--vault-namespace: expected a namespace name ([A-Za-z0-9_.-]), got '" .. o.vault_namespace .. "'", 0)
        end
      elseif a == "-h" or a == "--help" then o.help = true
      else error("unknown option '" .. a .. "'", 0) end
      i = i + 1
    end
    if o.servers > 200 then error("--servers: at most 200", 0) end
    o.fault_spec = faults.parse(o.faults)
  end)
  if not ok then return nil, err end
  o.site_out = o.site_out or (o.dir .. "/site.lua")
  return o
end

-- ---- writing files -----------------------------------------------------------

local function lua_literal(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  if v == json.null then return "nil" end
  if t ~= "table" then error("site file: cannot write a " .. t, 2) end
  local inner = indent .. "  "
  local parts = {}
  local n = #v
  for i = 1, n do parts[#parts + 1] = inner .. lua_literal(v[i], inner) .. "," end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local key = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k or "[" .. lua_literal(k) .. "]"
    parts[#parts + 1] = inner .. key .. " = " .. lua_literal(v[k], inner) .. ","
  end
  if #parts == 0 then return "{}" end
  return "{\n" .. table.concat(parts, "\n") .. "\n" .. indent .. "}"
end
M.lua_literal = lua_literal

local function write_atomic(path, text, mode)
  -- with a mode, it is set before the content goes in (the site file holds the lab's credentials)
  local ok, err = fsio.write_atomic(path, text, mode and { mode = mode } or nil)
  if not ok then return nil, "sbot lab: cannot write " .. path .. ": " .. err end
  return true
end

local function mkdir_p(dir)
  local ok, err = fsio.mkdirs(dir)
  if not ok then return nil, "sbot lab: cannot create directory " .. dir .. ": " .. err end
  return true
end

-- ---- the lab -------------------------------------------------------------------

--- Device kinds beyond the iDRAC: a module sbot.lab.<kind> exporting
-- new(ctx) -> device. Missing modules are skipped; broken ones raise.
M.optional_devices = { "truenas", "s3", "installer", "vault" }

local function try_require(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  if tostring(mod):find("module '" .. name .. "' not found", 1, true) then return nil end
  error(mod, 0)
end

--- An API key in TrueNAS's form: "<id>-<64 alphanumerics>".
local function random_api_key()
  local raw = crypto.random_bytes(48)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
  local out = raw:gsub(".", function(c)
    local i = c:byte() % #alphabet + 1
    return alphabet:sub(i, i)
  end)
  return "1-" .. out .. out:sub(1, 16)
end

--- The lab's tasks: work that waits (an istgt restart lets logins finish,
-- then waits for the new daemon to listen) runs as a coroutine that sleeps
-- with tasks.sleep(s); the lab's loop resumes it when it is due and serves
-- every other connection meanwhile (the lab is one thread).
--   tasks.spawn(fn, on_error, ...) runs fn(...) now, as a task; if it raises,
--     on_error(message with traceback) is called (the error is logged).
--   tasks.current() -> whether the caller is a task that may sleep now.
--   tasks.sleep(s) (only in a task) -> returns after s seconds.
--   tasks.wait(max) -> seconds until the next task is due (at most max).
--   tasks.run_due() resumes the tasks that are due.
function M.tasks()
  local T = { parked = {} }
  local running
  local function step(task, ...)
    local prev = running
    running = task
    local ok, wake = coroutine.resume(task.co, ...)
    running = prev
    if not ok then
      local msg = debug.traceback(task.co, tostring(wake))
      log.error("lab task failed", { error = msg })
      if task.on_error then pcall(task.on_error, msg) end
    elseif coroutine.status(task.co) == "suspended" then
      task.wake = wake
      T.parked[#T.parked + 1] = task
    end
  end
  function T.spawn(fn, on_error, ...)
    step({ co = coroutine.create(fn), on_error = on_error }, ...)
  end
  function T.current()
    return running ~= nil and coroutine.running() == running.co and coroutine.isyieldable()
  end
  function T.sleep(s)
    if not T.current() then error("lab tasks.sleep: not called from a lab task", 2) end
    coroutine.yield(httpd.now() + s)
  end
  function T.wait(max)
    local now, w = httpd.now(), max
    for _, t in ipairs(T.parked) do w = math.min(w, math.max(0, t.wake - now)) end
    return w
  end
  function T.run_due()
    local now, due, keep = httpd.now(), {}, {}
    for _, t in ipairs(T.parked) do
      if t.wake <= now then due[#due + 1] = t else keep[#keep + 1] = t end
    end
    T.parked = keep
    for _, t in ipairs(due) do step(t) end
  end
  return T
end

--- Start a lab (without running its loop). Returns the lab object:
-- {devices, servers, site, info, tasks, poll(timeout), run(), stop(), state()}.
function M.start(o)
  local lab = { devices = {}, servers = {}, options = o, stopping = false, boot_hooks = {}, tasks = M.tasks() }
  local t0 = httpd.now()
  lab.clock = httpd.now
  lab.started = os.time()

  local function add(dev)
    assert(type(dev.name) == "string" and type(dev.handler) == "function",
      "sbot lab: a device needs a name and a handler")
    dev.faults = dev.faults or faults.injector({ spec = o.fault_spec, kind = dev.kind, name = dev.name,
      seed = o.seed, latency_ms = o.latency })
    lab.devices[#lab.devices + 1] = dev
    if dev.boot_hook then lab.boot_hooks[#lab.boot_hooks + 1] = dev.boot_hook end
  end

  local idrac = require "sbot.lab.idrac"
  -- every answer of an iDRAC takes its pace's time, scaled like its durations
  local pace = o.pace or "quick"
  local answer = idrac_model.PACES[pace].answer
  answer = answer and { answer[1] * o.time_scale, answer[2] * o.time_scale }
  for i = 1, o.servers do
    local name = "idrac-" .. i
    add(idrac.new({ index = i, flavour = o.idrac, clock = lab.clock, scale = o.time_scale,
      pace = pace,
      request = function(req) return lab.local_request(req) end,
      faults = faults.injector({ spec = o.fault_spec, kind = "idrac", name = name, seed = o.seed,
        latency_ms = o.latency, answer_ms = answer }),
      on_boot = function(dev, boot)
        for _, hook in ipairs(lab.boot_hooks) do hook(boot, dev) end
      end }))
  end
  for _, kind in ipairs(M.optional_devices) do
    local mod = try_require("sbot.lab." .. kind)
    if mod then
      local inj = faults.injector({ spec = o.fault_spec, kind = kind, name = kind, seed = o.seed,
        latency_ms = o.latency })
      local ctx = { name = kind, clock = lab.clock, scale = o.time_scale, seed = o.seed, dir = o.dir,
        tgt = o.tgt, host = o.host, lab = lab, injector = inj, api_key = random_api_key(),
        namespace = o.vault_namespace }
      local dev, derr = mod.new(ctx)
      if not dev then error("sbot lab: cannot create the " .. kind .. " device: " .. tostring(derr), 0) end
      dev.faults = dev.faults or inj
      add(dev)
    elseif kind == "truenas" and o.tgt then
      error("sbot lab: --tgt needs the TrueNAS model (sbot.lab.truenas), which is not installed", 0)
    end
  end

  local function state()
    local devs = {}
    for _, d in ipairs(lab.devices) do devs[d.name] = d.state() end
    return { devices = devs, seed = o.seed, time_scale = o.time_scale, idrac = o.idrac, pace = pace,
      uptime = httpd.now() - t0, faults = o.faults, latency_ms = o.latency }
  end
  lab.state = state

  local function lab_endpoint(req)
    local h = { ["Content-Type"] = "application/json" }
    if req.path == "/lab/state" and (req.method == "GET" or req.method == "HEAD") then
      return 200, h, json.encode(state(), { indent = true })
    elseif req.path == "/lab/stop" and req.method == "POST" then
      lab.stopping = true
      return 200, h, '{"stopping":true}'
    elseif req.path == "/lab/faults" and req.method == "POST" then
      -- replace every device's fault configuration (body: a --faults spec)
      local ok, spec = pcall(faults.parse, req.body)
      if not ok then return 400, h, json.encode({ error = tostring(spec) }) end
      o.faults, o.fault_spec = req.body, spec
      for _, d in ipairs(lab.devices) do
        if d.faults and d.faults.reconfigure then d.faults.reconfigure(spec) end
      end
      return 200, h, json.encode({ faults = req.body })
    end
    return 404, h, json.encode({ error = "unknown lab endpoint " .. req.method .. " " .. req.path })
  end

  local function wrap(dev)
    return function(req)
      if req.path:sub(1, 5) == "/lab/" then return lab_endpoint(req) end
      local upgrade = dev.lostanswers_per_message and (req.headers.upgrade or ""):lower() == "websocket"
      local action, delay = dev.faults.request({ upgrade = upgrade })
      if action == "reset" then return httpd.reset() end
      if action == "lostanswer" then
        dev.handler(req) -- done, but the answer never reaches the client
        return httpd.reset()
      end
      local s, h, b, opt
      if action == "503" then
        if dev.fault_503 then s, h, b = dev.fault_503() else s, h, b = 503, {}, "Service Unavailable\n" end
      else
        s, h, b, opt = dev.handler(req)
      end
      if type(s) ~= "number" then return s, h, b, opt end -- httpd.upgrade / httpd.reset
      if delay > 0 then
        opt = opt or {}
        opt.delay = (opt.delay or 0) + delay
      end
      return s, h, b, opt
    end
  end

  --- An sbot.http request table for one of the lab's own listeners, served
  -- in-process: the lab is one thread, so a device reading from another
  -- (an iDRAC fetching a virtual-media image from the S3 device) cannot go
  -- through a socket to itself; the request goes to that device's handler
  -- exactly as the server would hand it over (path decoded, query parsed,
  -- headers lower-cased, the device's faults applied), and a file body is
  -- read from the file. Returns {status, headers, body}, nil and an error
  -- (a reset), or false when the URL is not one of the lab's.
  function lab.local_request(req)
    local scheme, authority, path, query = tostring(req.url):match("^(%a+)://([^/?#]+)([^?#]*)%??([^#]*)")
    if not scheme then return false end
    scheme = scheme:lower()
    local target
    for _, d in ipairs(lab.devices) do
      local e = d.endpoint
      if e then
        local hp = e.host .. ":" .. e.port
        if (scheme == "https" and authority == hp and d.tls ~= false)
            or (scheme == "http" and e.http_port and authority == e.host .. ":" .. e.http_port)
            or (scheme == "http" and d.tls == false and authority == hp) then
          target = d
        end
      end
    end
    if not target then return false end
    local function decode(x)
      return (x:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
    end
    local q = {}
    for part in query:gmatch("[^&]+") do
      local k, v = part:match("^([^=]*)=?(.*)$")
      q[decode(k)] = decode(v)
    end
    local headers = { host = authority }
    for k, v in pairs(req.headers or {}) do headers[k:lower()] = tostring(v) end
    local method = req.method or (req.body and "POST" or "GET")
    local s, h, b, opt = target.wrapped({ method = method, path = decode(path ~= "" and path or "/"),
      raw_query = query, query = q, headers = headers, body = req.body or "", remote = "127.0.0.1:0",
      tls = scheme == "https" })
    if type(s) ~= "number" then return nil, "the lab device closed the connection", "closed" end
    local out = {}
    for k, v in pairs(h or {}) do out[k:lower()] = tostring(v) end
    if opt and opt.file then
      local f, ferr = io.open(opt.file, "rb")
      if not f then return nil, "lab: " .. tostring(ferr), "io" end
      f:seek("set", opt.offset or 0)
      b = opt.length and f:read(opt.length) or f:read("a")
      f:close()
    end
    if method == "HEAD" then b = "" end
    return { status = s, headers = out, body = b or "" }
  end

  function lab.stop()
    for _, s in ipairs(lab.servers) do s:close() end
    for _, d in ipairs(lab.devices) do
      if d.close then pcall(d.close) end
    end
  end

  local ok, err = mkdir_p(o.dir)
  if not ok then return nil, err end
  local site = { servers = {} }
  local info = { devices = {}, site = o.site_out }
  for _, dev in ipairs(lab.devices) do
    local cert = httpd.selfsigned({ cn = dev.name .. ".lab.sbot", ips = { o.host } })
    dev.wrapped = wrap(dev)
    local srv, lerr = httpd.listen({ host = o.host, port = 0, tls = dev.tls == false and nil or cert,
      handler = dev.wrapped, websocket = dev.websocket, max_body = dev.max_body })
    if not srv then
      lab.stop()
      return nil, lerr
    end
    lab.servers[#lab.servers + 1] = srv
    -- a device may also answer plain HTTP on a second port (the S3 device:
    -- iDRAC 8 reads virtual media over http only)
    local plain
    if dev.plain_http then
      plain, lerr = httpd.listen({ host = o.host, port = 0, handler = dev.wrapped, max_body = dev.max_body })
      if not plain then
        lab.stop()
        return nil, lerr
      end
      lab.servers[#lab.servers + 1] = plain
    end
    local cert_file = o.dir .. "/" .. dev.name .. ".pem"
    ok, err = write_atomic(cert_file, cert.cert)
    if not ok then lab.stop(); return nil, err end
    local endpoint = { host = o.host, port = srv:port(), url = srv:url(), pin_sha256 = cert.pin_sha256,
      cert_file = cert_file, http_port = plain and plain:port(), http_url = plain and plain:url() }
    dev.endpoint = endpoint
    -- site_entry(url, tls, endpoint, site) -> "server", entry | KEY, value | value
    -- (a bare value goes to site[dev.kind]); `site` is the site built so far
    -- (the iDRACs' servers come first), which a device may complete
    local key, value = dev.site_entry(endpoint.url, { pin_sha256 = cert.pin_sha256 }, endpoint, site)
    if type(key) ~= "string" then key, value = dev.kind, key end
    if key == "server" then
      site.servers[#site.servers + 1] = value
    elseif key ~= nil then
      site[key] = value
    end
    info.devices[dev.name] = { kind = dev.kind, url = endpoint.url, port = endpoint.port,
      pin_sha256 = cert.pin_sha256, cert_file = cert_file, state_url = endpoint.url .. "/lab/state",
      http_url = endpoint.http_url }
    log.info("lab device listening", { device = dev.name, url = endpoint.url })
  end
  -- devices that rewrite the finished site (the Vault moves every credential
  -- into its KV mounts and leaves secret: references)
  for _, dev in ipairs(lab.devices) do
    if dev.rewrite_site then dev.rewrite_site(site) end
  end
  lab.site = site
  lab.info = info

  local header = string.format("-- Site file for the sbot lab (generated by `sbot lab`, seed %d, %d server(s)).\n" ..
    "-- Every endpoint is a simulated device on loopback; certificates are pinned.\n", o.seed, o.servers)
  ok, err = write_atomic(o.site_out, header .. "return " .. lua_literal(site) .. "\n", "0600")
  if not ok then lab.stop(); return nil, err end
  ok, err = write_atomic(o.dir .. "/lab.json", json.encode(info, { indent = true }) .. "\n")
  if not ok then lab.stop(); return nil, err end

  -- one round: the tasks that are due, then the servers (up to `timeout`
  -- seconds, less when a task is due sooner)
  function lab.poll(timeout)
    lab.tasks.run_due()
    return httpd.poll(lab.servers, lab.tasks.wait(timeout or 0))
  end
  function lab.run()
    while not lab.stopping do lab.poll(0.2) end
    return true
  end
  return lab
end

--- Entry point of `sbot lab`; returns the exit status.
function M.main(argv)
  local o, err = M.parse_args(argv)
  if not o then
    io.stderr:write("sbot lab: ", err, "\n\n", M.usage)
    return 2
  end
  if o.help then
    io.stdout:write(M.usage)
    return 0
  end
  local ok_start, lab, serr = pcall(M.start, o)
  if not ok_start or not lab then
    io.stderr:write(tostring(ok_start and serr or lab), "\n")
    return 1
  end
  io.stdout:write(string.format("sbot lab: %d device(s) up; site file %s; state %s\n",
    #lab.devices, o.site_out, lab.devices[1].endpoint.url .. "/lab/state"))
  for _, d in ipairs(lab.devices) do
    io.stdout:write(string.format("  %-10s %s\n", d.name, d.endpoint.url))
  end
  io.stdout:write("Ctrl-C stops the lab.\n")
  io.stdout:flush()
  local ok, rerr = pcall(lab.run)
  lab.stop()
  if not ok and not tostring(rerr):find("interrupted!", 1, true) then
    io.stderr:write("sbot lab: ", tostring(rerr), "\n")
    return 1
  end
  io.stdout:write("sbot lab: stopped\n")
  return 0
end

return M
