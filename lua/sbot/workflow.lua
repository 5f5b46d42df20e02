--- sbot.workflow: what every workflow script shares - its command line
-- (argparse, with --help generated from the workflow's own declarations),
-- loading the site, picking servers, a run record, running the components of
-- each server in a fleet worker under the server's lock, the summary table,
-- --plan diff and --json output, and the exit status.
--
--   local workflow = require "sbot.workflow"
--   local wf = workflow.new {
--     name = "demo", description = "...",
--     arguments = function(parser) parser:option("--size", "disk size", "10G") end,
--     components = function(server, ctx)   -- runs in the server's worker
--       return { Disk.new(ctx:config("disk", { size = ctx.args.size }), ctx:opts()) }
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

--- Define a workflow. spec: {name, description, epilog, arguments = fn(parser),
-- components = fn(server, ctx) -> list of component instances, site = "required"|"optional"}.
function M.new(spec)
  if type(spec) ~= "table" then error("workflow.new: expected a table", 2) end
  if type(spec.name) ~= "string" then error("workflow.new: name must be a string", 2) end
  if type(spec.components) ~= "function" then
    error("workflow.new " .. spec.name .. ": components must be a function(server, ctx)", 2)
  end
  if spec.arguments ~= nil and type(spec.arguments) ~= "function" then
    error("workflow.new " .. spec.name .. ": arguments must be a function(parser)", 2)
  end
  return setmetatable({ name = spec.name, description = spec.description, epilog = spec.epilog,
    arguments = spec.arguments, components = spec.components }, M)
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
  p:option("--jobs", "Servers worked on at once (each in its own worker).", "4")
    :argname("N"):convert(function(s)
      local n = tonumber(s)
      if not n or n < 1 or n ~= math.floor(n) then return nil, "--jobs must be a positive integer" end
      return math.tointeger(n)
    end)
  p:option("--timeout", "Seconds one server's work may take before its worker is killed (0: no limit).",
    "0"):argname("S"):convert(function(s)
      local n = tonumber(s)
      if not n or n < 0 then return nil, "--timeout must be a number of seconds >= 0" end
      return n
    end)
  p:flag("--json", "Print the results as JSON instead of the summary table.")
  p:flag("--log-json", "Log lines as JSON on stderr.")
  p:option("--store", "Artifact store URL (s3://bucket/prefix or file:///dir).")
    :argname("URL")
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
  local list = {}
  for i = 1, #(argv or {}) do list[i] = argv[i] end
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
  if not args.site then return nil, p:get_usage() .. "\n\nerror: --site FILE is required" end
  return args
end

-- The context each server's work gets (in its worker).
local Ctx = {}
Ctx.__index = Ctx

--- Config for component `name`: base < site.components[name] < server.components[name].
function Ctx:config(name, base)
  local out = {}
  local function merge(t) for k, v in pairs(t or {}) do out[k] = v end end
  merge(base)
  merge(self.site.components and self.site.components[name])
  merge(self.server.components and self.server.components[name])
  return out
end

--- The opts for Component.new: id, artifact_dir, site, server.
function Ctx:opts(extra)
  local o = { id = self.server.id, artifact_dir = self.artifact_dir, site = self.site,
    server = self.server }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function failed_result(server_id, component, msg)
  return { component = component, id = server_id, status = "failed", error = msg,
    phases = {}, artifacts = json.array {} }
end

-- One server's work; runs in a fleet worker (fresh Lua state).
local function server_job(job)
  local args, server = job.args, job.server
  log.configure { file = job.log_file, json = args.log_json or nil,
    level = args.verbose and "debug" or nil }
  local ctx = setmetatable({ site = job.site, server = server, args = args, run_id = job.run_id,
    run_dir = job.run_dir, artifact_dir = job.artifact_dir }, Ctx)
  local ok, comps = pcall(job.components, server, ctx)
  if not ok then
    return { failed_result(server.id, "(workflow)", "building the components failed: " .. tostring(comps)) }
  end
  if type(comps) ~= "table" then
    return { failed_result(server.id, "(workflow)", "components() must return a list of instances, returned " .. type(comps)) }
  end
  local held
  local function take_lock()
    if held then return end
    local l, err = lock.acquire(job.lock_dir .. "/" .. server.id .. ".lock", { name = "server " .. server.id })
    if not l then error(err, 0) end
    held = l
    log.info("lock taken", { server = server.id, lock = l:path() })
  end
  local results, failed = {}, false
  for i, c in ipairs(comps) do
    if failed then
      local r = c:results()
      r.status, r.error = "skipped", "an earlier component of this server failed"
      results[i] = r
    else
      log.info("component start", { server = server.id, component = c.component, mode = args.mode })
      local r = c:execute { phases = args.phases, mode = args.mode,
        before_process = args.mode == "apply" and take_lock or nil }
      log.info("component " .. r.status, { server = server.id, component = c.component })
      if r.status ~= "ok" then failed = true end
      results[i] = r
    end
  end
  if held then held:release() end
  return results
end

--- Run the workflow with the command line argv; returns the exit status
-- (0 only if every component of every selected server is ok; 2 for usage errors).
function M:main(argv)
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
  if #args.server == 0 then
    servers = site.servers
  else
    for _, id in ipairs(args.server) do
      local s, e = site_mod.server(site, id)
      if not s then io.stderr:write("sbot: ", e, "\n"); return 2 end
      servers[#servers + 1] = s
    end
  end
  if #servers == 0 then
    io.stderr:write("sbot: site ", site.file, " has no servers to work on\n")
    return 2
  end

  -- the lock directory first: a run record is only started for a run that can go on
  local lock_dir = (args.state_dir or site.state_dir) .. "/locks"
  local lok, lerr = fsio.mkdirs(lock_dir)
  if not lok then io.stderr:write("sbot: lock directory ", lock_dir, ": ", tostring(lerr), "\n"); return 1 end
  local public_args = {}
  for k, v in pairs(args) do if type(v) ~= "function" then public_args[k] = v end end
  -- an s3:// artifact store signs with the site's S3 credentials and TLS settings
  local store_url = args.store or site.store
  local store_opts
  if site.s3 and store_url and store_url:match("^s3://") then
    store_opts = { access_key = site.s3.access_key, secret_key = site.s3.secret_key, tls = site.s3.tls }
  end
  local r, rerr = run.start { runs_dir = args.runs_dir or site.runs_dir, mode = args.mode,
    workflow = self.name, site = site.file, args = public_args, store = store_url,
    store_opts = store_opts }
  if not r then io.stderr:write("sbot: ", rerr, "\n"); return 1 end

  local jobs = {}
  for i, s in ipairs(servers) do
    jobs[i] = { server = s, site = site, args = public_args, components = self.components,
      run_id = r.id, run_dir = r.dir, artifact_dir = r.artifact_dir, log_file = r.log_file,
      lock_dir = lock_dir }
  end
  -- partial: on Ctrl-C every worker is stopped and map returns what finished,
  -- so the run record still says what happened to each server
  local ok_map, outcomes, interrupted = pcall(fleet.map, jobs, server_job,
    { jobs = args.jobs, timeout = args.timeout, partial = true })
  if not ok_map then -- workers could not be started: nothing ran
    local msg = tostring(outcomes)
    log.error("run stopped: " .. msg, { run = r.id })
    outcomes = {}
    for i = 1, #servers do outcomes[i] = { ok = false, error = "run stopped: " .. msg } end
  elseif interrupted then
    log.error("run interrupted: every worker was stopped", { run = r.id })
  end
  local results = {}
  for i, o in ipairs(outcomes) do
    if o.ok then
      for _, res in ipairs(o.value) do results[#results + 1] = res end
    else
      results[#results + 1] = failed_result(servers[i].id, "(worker)", o.error)
    end
  end
  local record = run.finish(r, results)
  if args.json then
    io.stdout:write(json.encode(record, { indent = true }), "\n")
  else
    if args.plan then io.stdout:write(run.format_plan(record), "\n") end
    io.stdout:write(run.summary(record))
    io.stdout:write("run record: ", r.dir, "\n")
  end
  io.stdout:flush()
  if interrupted then return 130 end
  return record.ok and 0 or 1
end

return M
