--- sbot.workflow: what every workflow script shares - its command line
-- (argparse, with --help generated from the workflow's own declarations),
-- loading the site, picking servers, a run record, site-wide steps, each
-- server's steps in a fleet worker under the server's lock, the summary
-- table, --plan diff and --json output, and the exit status.
--
--   local workflow = require "sbot.workflow"
--   local Disk = require "sbot.component.scratch_volume"
--   local Boot = require "sbot.component.boot_script"
--   local wf = workflow.new {
--     name = "demo", description = "...",
--     arguments = function(parser) parser:option("--size", "disk size", "10G") end,
--     site_steps = function(ctx)          -- once per run, before the servers
--       ctx:step(Bucket, ctx:config("bucket"))
--     end,
--     steps = function(server, ctx)       -- runs in the server's worker
--       local disk = ctx:step(Disk, ctx:config("scratch_volume", { size = ctx.args.size }))
--       ctx:step(Boot, { target = disk.discovery.path })
--     end,
--   }
--   os.exit(wf:main(arg), true)
local argparse = require "argparse"
local fleet = require "sbot.fleet"
local json = require "sbot.json"
local log = require "sbot.log"
local lock = require "sbot.lock"
local run = require "sbot.run"
local site_mod = require "sbot.site"
local fsio = require "sbot.fsio"

local M = {}
M.__index = M

local PHASES = { discover = true, process = true, housekeep = true }

-- sbot.fleet's limit on workers at once (fleet.c MAX_JOBS)
M.MAX_JOBS = 256

-- Common options whose value may start with "-" (a negative number): argparse
-- would take "-5" for an option; "--jobs=-5" reaches the converter, which
-- then says what is wrong with it.
local SIGNED = { ["--jobs"] = true, ["--timeout"] = true, ["--grace"] = true }

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function query_of(url)
  local q = {}
  for part in (url:match("%?(.*)$") or ""):gmatch("[^&]+") do
    local k, v = part:match("^([^=]*)=?(.*)$")
    q[url_decode(k)] = url_decode(v)
  end
  return q
end

--- Check an artifact store URL without touching anything: nil when it is
-- usable, else what is wrong (`what` names where it came from).
function M.check_store_url(url, what)
  local scheme = url:match("^(%a[%w+.-]*)://")
  if scheme == "file" then
    local path = url_decode(url:match("^file://([^?]*)"))
    if path:sub(1, 1) ~= "/" then
      return what .. ": '" .. url .. "' must be file:///absolute/path"
    end
    for seg in path:gmatch("[^/]+") do
      if seg == ".." then return what .. ": '" .. url .. "' must not contain '..'" end
    end
    return nil
  elseif scheme == "s3" then
    if not url:match("^s3://([^/?]+)") then
      return what .. ": '" .. url .. "' must be s3://bucket/prefix[?endpoint=URL&region=R&path_style=true|false]"
    end
    for k, v in pairs(query_of(url)) do
      if k ~= "endpoint" and k ~= "region" and k ~= "path_style" then
        return what .. ": unknown parameter '" .. k .. "' in " .. url .. " (known: endpoint, region, path_style)"
      end
      if k == "endpoint" and not v:match("^https?://[^/]") then
        return what .. ": endpoint '" .. v .. "' in " .. url .. " must be an http:// or https:// URL"
      end
    end
    return nil
  end
  return what .. ": unsupported URL '" .. url .. "' (use s3://bucket/prefix or file:///dir)"
end

--- The store URL and store.open opts a run uses with a site: sbot.store's
-- for_site (an s3:// store signs with the site's S3 credentials only at the
-- site's endpoint). Returns url, opts or nil, err.
function M.store_for(url, site)
  return require("sbot.store").for_site(url, site, "--store")
end

--- Define a workflow. spec: {name, description, epilog, arguments = fn(parser),
-- steps = fn(server, ctx) (or the older components = fn(server, ctx) -> list of
-- component instances), site_steps = fn(ctx) (optional)}.
function M.new(spec)
  if type(spec) ~= "table" then error("workflow.new: expected a table", 2) end
  if type(spec.name) ~= "string" then error("workflow.new: name must be a string", 2) end
  for k in pairs(spec) do
    if not (k == "name" or k == "description" or k == "epilog" or k == "arguments" or k == "steps"
        or k == "components" or k == "site_steps") then
      error("workflow.new " .. spec.name .. ": unknown field '" .. tostring(k) .. "' (expected name, "
        .. "description, epilog, arguments, steps, components, site_steps)", 2)
    end
  end
  if (spec.steps ~= nil and spec.components ~= nil)
      or (spec.steps == nil and spec.components == nil and spec.site_steps == nil) then
    error("workflow.new " .. spec.name .. ": give exactly one of steps = function(server, ctx) "
      .. "or components = function(server, ctx) (or only site_steps, for a site-wide workflow)", 2)
  end
  for _, f in ipairs { "steps", "components", "arguments", "site_steps" } do
    if spec[f] ~= nil and type(spec[f]) ~= "function" then
      error("workflow.new " .. spec.name .. ": " .. f .. " must be a function, got " .. type(spec[f]), 2)
    end
  end
  if M._describe then error(setmetatable({ spec = spec }, M._describe), 0) end
  return setmetatable({ name = spec.name, description = spec.description, epilog = spec.epilog,
    arguments = spec.arguments, steps = spec.steps, components = spec.components,
    site_steps = spec.site_steps }, M)
end

-- An argparse converter for a number of seconds >= 0 (finite).
local function seconds(opt)
  return function(s)
    local n = tonumber(s)
    if not n or n ~= n or n < 0 or n == math.huge then
      return nil, opt .. " must be a number of seconds >= 0, got '" .. s .. "'"
    end
    return n
  end
end

--- The argparse parser: the common arguments plus the workflow's own.
function M:parser()
  local p = argparse("sbot run " .. self.name .. ".lua", self.description)
  if self.epilog then p:epilog(self.epilog) end
  p:help_max_width(100)
  p:option("--site", "Site file (Lua returning a table).", os.getenv("SBOT_SITE"))
    :argname("FILE")
  p:option("--server", "Server id to work on (repeatable; default: every server of the site).")
    :argname("ID"):count("*")
  p:flag("--plan", "Discover and plan only; print the plan as a diff and change nothing.")
  p:option("--phases", "Phases to run, comma separated.", "discover,process,housekeep")
    :argname("LIST")
  p:option("--jobs", "Servers worked on at once, each in its own worker (1 to " .. M.MAX_JOBS .. ").", "4")
    :argname("N"):convert(function(s)
      local n = math.tointeger(tonumber(s))
      if not n or n < 1 or n > M.MAX_JOBS then
        return nil, "--jobs must be an integer from 1 to " .. M.MAX_JOBS .. " (workers at once), got '" .. s .. "'"
      end
      return n
    end)
  p:option("--timeout", "Seconds one server's work may take before its worker is stopped (0: no limit).",
    "0"):argname("S"):convert(seconds("--timeout"))
  p:option("--grace", "Seconds a stopped worker (Ctrl-C, SIGTERM, --timeout) has to close its "
    .. "connections before it is killed.", "20"):argname("S"):convert(seconds("--grace"))
  p:flag("--json", "Print the run record as JSON (docs/run-record.schema.json) instead of the summary table.")
  p:option("--junit", "Also write a JUnit XML report to FILE (a testcase per server and step).")
    :argname("FILE")
  p:flag("--log-json", "Log lines as JSON on stderr.")
  p:option("--store", "Artifact store URL (s3://bucket/prefix or file:///dir).")
    :argname("URL"):convert(function(s)
      local bad = M.check_store_url(s, "--store")
      if bad then return nil, bad end
      return s
    end)
  p:option("--runs-dir", "Directory of run records (default: the site's runs_dir, else ./runs).")
    :argname("DIR")
  p:option("--state-dir", "Directory of lock files and state (default: the site's state_dir).")
    :argname("DIR")
  p:flag("-v --verbose", "Log at debug level.")
  if self.arguments then self.arguments(p) end
  return p
end

--- Parse argv (a list of strings). Returns args, or nil and a usage error.
-- --help prints the help and exits 0 (argparse's behaviour).
function M:parse(argv)
  local list, i = {}, 1
  argv = argv or {}
  while i <= #argv do
    local a, nxt = argv[i], argv[i + 1]
    if SIGNED[a] and nxt and nxt:match("^%-[^%-]") then
      list[#list + 1] = a .. "=" .. nxt
      i = i + 2
    else
      list[#list + 1] = a
      i = i + 1
    end
  end
  local p = self:parser()
  local ok, args = p:pparse(list)
  if not ok then return nil, p:get_usage() .. "\n\nerror: " .. args end
  local phases = {}
  for name in tostring(args.phases):gmatch("[^,%s]+") do
    if not PHASES[name] then
      return nil, "error: --phases: unknown phase '" .. name .. "' (expected discover, process, housekeep)"
    end
    phases[#phases + 1] = name
  end
  if #phases == 0 then return nil, "error: --phases: no phase given" end
  args.phases = phases
  args.mode = args.plan and "plan" or "apply"
  if args.junit then -- checked now: a report that cannot be written fails the run at its end
    local dir = args.junit:match("^(.*)/[^/]*$") or "."
    local st = fsio.stat(dir == "" and "/" or dir)
    if not st or st.type ~= "directory" then
      return nil, "error: --junit " .. args.junit .. ": no directory " .. dir
    end
  end
  if not args.site then return nil, p:get_usage() .. "\n\nerror: --site FILE is required" end
  return args
end

-- The context each server's work (and the site steps) gets, in its worker.
local Ctx = {}
Ctx.__index = Ctx

--- Config for component `name`: base < site.components[name] < server.components[name].
function Ctx:config(name, base)
  local out = {}
  local function merge(t) for k, v in pairs(t or {}) do out[k] = v end end
  merge(base)
  merge(self.site.components and self.site.components[name])
  merge(self.server and self.server.components and self.server.components[name])
  return out
end

--- The opts for Component.new: id, artifact_dir, site, server.
function Ctx:opts(extra)
  local o = { id = self.id, artifact_dir = self.artifact_dir, site = self.site,
    server = self.server }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function bare_result(id, component, status, msg)
  local r = { component = component, id = id, status = status, phases = {}, discovery = {},
    artifacts = json.array {} }
  if status == "skipped" then r.reason = msg else r.error = msg end
  return r
end

local function is_interrupt(err)
  return tostring(err):match("^[^\n]*interrupted!") ~= nil
end

-- Run instance c with the run's phases and mode; record its results. After
-- a failed step the later ones are skipped. An interruption is recorded
-- (the phase it stopped in shows it) and goes on.
function Ctx:_run(c, phases)
  local r
  if self.stopped then
    r = bare_result(self.id, c.component, "skipped", self.stopped)
  else
    log.info("component start", { server = self.id, component = c.component, mode = self.args.mode })
    local ok, res = pcall(c.execute, c, { phases = phases or self.args.phases, mode = self.args.mode })
    if not ok then
      r = c:results()
      r.status = "failed"
      r.error = r.error or tostring(res)
      self.results[#self.results + 1] = r
      self.stopped = "interrupted while " .. c.component .. " ran"
      error(res, 0)
    end
    r = res
    log.info("component " .. r.status, { server = self.id, component = c.component })
  end
  if r.status ~= "ok" and not self.stopped then
    self.stopped = "an earlier step (" .. tostring(r.step or r.component) .. ") " .. r.status
  end
  self.results[#self.results + 1] = r
  return r
end

--- Run component Module with config as the next step; returns its results
-- (status, discovery, plan, ...). After a failed step this returns a skipped
-- result without validating config. extra: more opts for Module.new, and
-- extra.step: the step's name (default the component's name; a second step
-- of the same name on this server gets "-2", ...), which names its
-- artifacts' directory and its entry in ctx.site_results.
function Ctx:step(Module, config, extra)
  if type(Module) ~= "table" or type(Module.new) ~= "function" or type(Module.name) ~= "string" then
    error("ctx:step(Module, config): Module must be a component module "
      .. "(require \"sbot.component.<name>\"), got " .. type(Module), 2)
  end
  if config ~= nil and type(config) ~= "table" then
    error("ctx:step(" .. Module.name .. ", config): config must be a table, got " .. type(config), 2)
  end
  if extra ~= nil and type(extra) ~= "table" then
    error("ctx:step(" .. Module.name .. ", config, opts): opts must be a table, got " .. type(extra), 2)
  end
  local name = extra and extra.step or Module.name
  if type(name) ~= "string" or not name:match("^[%w_][%w_.%-]*$") then
    error("ctx:step(" .. Module.name .. "): opts.step must be a name (letters, digits, _ . -), got "
      .. tostring(name), 2)
  end
  local n = (self.step_names[name] or 0) + 1
  self.step_names[name] = n
  if n > 1 then
    if extra and extra.step then
      error("ctx:step(" .. Module.name .. "): a step named " .. name .. " already ran for " .. self.id, 2)
    end
    name = name .. "-" .. n
  end
  -- opts.phases: the phases this step runs (e.g. {"discover"}: a read-only
  -- step that reads what a later step needs); those of the run's --phases,
  -- and discover always (it changes nothing, and later steps need its data)
  local phases
  if extra and extra.phases ~= nil then
    if type(extra.phases) ~= "table" or #extra.phases == 0 then
      error("ctx:step(" .. Module.name .. "): opts.phases must be a non-empty list of phases", 2)
    end
    local run_has = {}
    for _, p in ipairs(self.args.phases) do run_has[p] = true end
    phases = {}
    for _, p in ipairs(extra.phases) do
      if not PHASES[p] then
        error("ctx:step(" .. Module.name .. "): opts.phases: unknown phase '" .. tostring(p)
          .. "' (expected discover, process, housekeep)", 2)
      end
      if run_has[p] or p == "discover" then phases[#phases + 1] = p end
    end
  end
  local opts = { step = name }
  for k, v in pairs(extra or {}) do if k ~= "step" and k ~= "phases" then opts[k] = v end end
  local r
  if self.stopped then
    r = bare_result(self.id, Module.name, "skipped", self.stopped)
  elseif phases and #phases == 0 then -- none of its phases runs in this run
    r = bare_result(self.id, Module.name, "skipped", "its phases (" .. table.concat(extra.phases, ", ")
      .. ") are not among this run's")
    r.status = "ok"
  else
    local c, err = Module.new(config or {}, self:opts(opts))
    if c then
      local res = self:_run(c, phases)
      return res
    end
    r = bare_result(self.id, Module.name, "failed", err)
    self.stopped = "an earlier step (" .. name .. ") failed"
  end
  r.step = name
  self.results[#self.results + 1] = r
  return r
end

-- The lock of `name` (a server id, or "(site)") in apply mode when a phase
-- that changes anything runs: taken before the first step's discover, so two
-- runs cannot both plan from the same state.
local function needs_lock(args)
  if args.mode ~= "apply" then return false end
  for _, p in ipairs(args.phases) do
    if p == "process" or p == "housekeep" then return true end
  end
  return false
end

local function take_lock(job, name, label)
  local l, err = lock.acquire(job.lock_dir .. "/" .. name .. ".lock", { name = label })
  if l then log.info("lock taken", { server = name, lock = l:path() }) end
  -- with an s3:// store, also a lease in the store: one run per server across
  -- machines (sbot.store.lock, docs/store.md)
  if l and job.store then
    local lease, lerr = require("sbot.store").lock(job.store, job.store_opts, name,
      { label = label, run_id = job.run_id })
    if lease == nil then l:release(); return nil, lerr end
    if lease then
      local file_lock = l
      l = { release = function()
        local ok, rerr = lease:release()
        if not ok then log.warn(tostring(rerr), { server = name }) end
        return file_lock:release()
      end, path = function() return file_lock:path() end }
    end
  end
  return l, err
end

-- The parent's Vault tokens, for the workers (docs/vault.md, "Once per
-- run"): a step that speaks to Vault in a worker uses the token the site
-- was loaded with instead of logging in again. nil when no Vault was used.
local function vault_handoff()
  local v = package.loaded["sbot.vault"]
  return v and v.handoff() or nil
end

-- Revoke the Vault tokens this process logged in for (AppRole), if any.
local function vault_revoke(where)
  local v = package.loaded["sbot.vault"]
  if not v then return end
  local _, errs = v.revoke_logins()
  for _, e in ipairs(errs) do log.warn("vault: could not revoke the run's token: " .. tostring(e), where) end
end

-- One server's work (or the site steps: server = nil); runs in a fleet
-- worker (fresh Lua state). Returns the list of results.
local function work(job)
  local args, server = job.args, job.server
  log.configure { file = job.log_file, json = args.log_json or nil,
    level = args.verbose and "debug" or nil }
  if job.vault then require("sbot.vault").adopt(job.vault) end
  local id = server and server.id or "(site)"
  local ctx = setmetatable({ site = job.site, server = server, id = id, args = args,
    run_id = job.run_id, run_dir = job.run_dir, artifact_dir = job.artifact_dir,
    lock_dir = job.lock_dir, store = job.store, store_opts = job.store_opts,
    site_results = job.site_results or {}, results = {}, step_names = {} }, Ctx)
  local held
  if needs_lock(args) then
    local l, err = take_lock(job, id, server and ("server " .. id) or "the site steps")
    if not l then return { bare_result(id, "(lock)", "failed", err) } end
    held = l
  end
  local ok, err = pcall(function()
    if not server then return job.site_steps(ctx) end
    if job.steps then return job.steps(server, ctx) end
    local comps = job.components(server, ctx)
    if type(comps) ~= "table" then
      error("components() must return a list of instances, returned " .. type(comps), 0)
    end
    for _, c in ipairs(comps) do ctx:_run(c) end
  end)
  if held then held:release() end
  vault_revoke({ server = id }) -- a login of its own (the handed-over token had run out)
  if not ok then
    if is_interrupt(err) then
      log.error("stopped: " .. tostring(err):match("^[^\n]*"), { server = id })
    else
      local what = not server and "site_steps()" or job.steps and "steps()" or "building the components"
      ctx.results[#ctx.results + 1] = bare_result(id, "(workflow)", "failed",
        what .. " failed: " .. tostring(err))
    end
  end
  return ctx.results
end

-- Results of fleet outcomes: each worker's list, or a failed "(worker)" row.
local function collect(outcomes, ids, results)
  for i, o in ipairs(outcomes) do
    if type(o.value) == "table" then
      for _, res in ipairs(o.value) do results[#results + 1] = res end
    end
    if not o.ok then results[#results + 1] = bare_result(ids[i], "(worker)", "failed", o.error) end
  end
end

local main

--- Run the workflow with the command line argv; returns the exit status
-- (0 only if every component of every selected server is ok; 2 for usage errors).
function M:main(argv)
  local ok, code = pcall(main, self, argv)
  vault_revoke({}) -- also when the run stopped early (the site was loaded: a login)
  if not ok then error(code, 0) end
  return code
end

function main(self, argv)
  local args, err = self:parse(argv)
  if not args then
    io.stderr:write(err, "\n")
    return 2
  end
  if args.verbose then log.configure { level = "debug" } end
  if args.log_json then log.configure { json = true } end

  local site, serr = site_mod.load(args.site)
  if not site then
    io.stderr:write("sbot: ", log.redact(serr), "\n")
    return 2
  end
  local servers = {}
  local site_only = not self.steps and not self.components -- a site-wide workflow: no fan-out
  if site_only then
    if #args.server > 0 then
      io.stderr:write("sbot: ", self.name, " is a site-wide workflow: it takes no --server\n")
      return 2
    end
  elseif #args.server == 0 then
    servers = site.servers
  else
    local by_id = {} -- one pass over the site, whatever the number of --server
    for _, s in ipairs(site.servers) do by_id[s.id] = s end
    for _, id in ipairs(args.server) do
      local s = by_id[id]
      if not s then
        local _, e = site_mod.server(site, id)
        io.stderr:write("sbot: ", e, "\n")
        return 2
      end
      servers[#servers + 1] = s
    end
  end
  if #servers == 0 and not site_only then
    io.stderr:write("sbot: site ", site.file, " has no servers to work on\n")
    return 2
  end

  -- an s3:// artifact store signs with the site's S3 credentials and TLS
  -- settings, at the site's endpoint; checked before anything runs
  local store_url = args.store or site.store
  if store_url and not args.store then
    local bad = M.check_store_url(store_url, "site " .. site.file .. ": store")
    if bad then io.stderr:write("sbot: ", bad, "\n"); return 2 end
  end
  local store_opts
  if store_url then
    local u, o = M.store_for(store_url, site)
    if not u then io.stderr:write("sbot: ", o, "\n"); return 2 end
    store_url, store_opts = u, o
  end
  if store_url and store_url:match("^s3://") then
    local ok_s3, s3err = require("sbot.store").open(store_url, store_opts)
    if not ok_s3 then io.stderr:write("sbot: --store: ", tostring(s3err), "\n"); return 2 end
  end
  -- the lock directory first: a run record is only started for a run that can go on
  local lock_dir = (args.state_dir or site.state_dir) .. "/locks"
  local lok, lerr = fsio.mkdirs(lock_dir)
  if not lok then io.stderr:write("sbot: lock directory ", lock_dir, ": ", tostring(lerr), "\n"); return 1 end
  local public_args = {}
  for k, v in pairs(args) do if type(v) ~= "function" then public_args[k] = v end end
  local selected = {}
  for i, s in ipairs(servers) do selected[i] = s.id end
  local r, rerr = run.start { runs_dir = args.runs_dir or site.runs_dir, mode = args.mode,
    workflow = self.name, site = site.file, args = public_args, store = store_url,
    store_opts = store_opts, servers = selected }
  if not r then io.stderr:write("sbot: ", rerr, "\n"); return 1 end

  local base = { site = site, args = public_args, run_id = r.id, run_dir = r.dir,
    artifact_dir = r.artifact_dir, log_file = r.log_file, lock_dir = lock_dir,
    store = store_url and store_url:match("^s3://") and store_url or nil, store_opts = store_opts }
  -- vault: the parent's tokens (vault_handoff()), taken once per fan-out
  -- and given to each of its jobs: a token due for renewal is renewed once
  -- there, and a Vault that does not answer is asked once, not once per server
  local function job(extra, vault)
    local j = {}
    for k, v in pairs(base) do j[k] = v end
    for k, v in pairs(extra) do j[k] = v end
    j.vault = vault
    return j
  end
  local fleet_opts = { jobs = args.jobs, timeout = args.timeout, grace = args.grace, partial = true }
  -- partial: on Ctrl-C every worker is stopped and map returns what finished,
  -- so the run record still says what happened to each server
  local function map(jobs, ids)
    local results = {}
    local opts = {}
    for k, v in pairs(fleet_opts) do opts[k] = v end
    opts.labels = ids -- the progress board's lines and the workers' log lines name the server
    local ok_map, outcomes, interrupted = pcall(fleet.map, jobs, work, opts)
    if not ok_map then -- workers could not be started: nothing ran
      local msg = tostring(outcomes)
      log.error("run stopped: " .. msg, { run = r.id })
      outcomes = {}
      for i = 1, #jobs do outcomes[i] = { ok = false, error = "run stopped: " .. msg } end
    elseif interrupted then
      log.error("run interrupted (" .. interrupted .. "): every worker was stopped", { run = r.id })
    end
    collect(outcomes, ids, results)
    return results, interrupted
  end

  local results, interrupted = {}, nil
  local site_results, site_failed = {}, nil
  if self.site_steps then
    -- in a worker of its own, like a server: a crash or hang there is
    -- contained and timed out, the parent never holds its connections, and
    -- the results reach the servers as the same plain data a worker returns
    local rows
    rows, interrupted = map({ job({ site_steps = self.site_steps }, vault_handoff()) }, { "(site)" })
    for _, row in ipairs(rows) do
      results[#results + 1] = row
      if row.id == "(site)" and row.step then site_results[row.step] = row end
      if row.status ~= "ok" and not site_failed then
        site_failed = "not run: the site step " .. tostring(row.component) .. " " .. row.status
      end
    end
  end
  if interrupted or site_failed then
    for _, s in ipairs(servers) do
      results[#results + 1] = bare_result(s.id, "(workflow)", "skipped",
        interrupted and "not run: the run was interrupted during the site steps" or site_failed)
    end
  else
    local jobs, ids = {}, {}
    local vault = vault_handoff() -- after the site steps: renewed now if they took long
    for i, s in ipairs(servers) do
      -- each worker gets the site with its own server only: the whole list
      -- copied into every worker would make a run quadratic in the number
      -- of servers (site steps see them all)
      local view = {}
      for k, v in pairs(site) do view[k] = v end
      view.servers = json.array { s }
      jobs[i] = job({ server = s, site = view, steps = self.steps, components = self.components,
        site_results = site_results }, vault)
      ids[i] = s.id
    end
    local rows
    rows, interrupted = map(jobs, ids)
    for _, row in ipairs(rows) do results[#results + 1] = row end
  end
  -- the run's Vault token goes with the run, when sbot logged in for it
  -- (AppRole); a token the operator gave is theirs and stays valid
  vault_revoke({ run = r.id })
  local record = run.finish(r, results)
  if record.record_error then -- loudly: the run is not recorded
    io.stderr:write("sbot: run record ", r.dir, ": ", record.record_error, "\n")
  end
  local junit_failed
  if args.junit then
    local wrote, werr = fsio.write_atomic(args.junit, require("sbot.report").junit(record))
    if not wrote then
      junit_failed = true
      io.stderr:write("sbot: --junit: ", tostring(werr), "\n")
    end
  end
  if args.json then
    io.stdout:write(json.encode(record, { indent = true, secrets = "redact" }), "\n")
  else
    if args.plan then io.stdout:write(run.format_plan(record), "\n") end
    io.stdout:write(run.summary(record))
    io.stdout:write("run record: ", r.dir, "\n")
  end
  io.stdout:flush()
  if interrupted then return interrupted == "SIGTERM" and 143 or 130 end
  if record.record_error or junit_failed then return 1 end
  return record.ok and 0 or 1
end

return M
