--- sbot.explore: what `sbot repl --site FILE` sets up, so a rack can be
-- explored interactively without changing anything. Globals it defines:
--   site                      the loaded site (secrets print as <redacted>)
--   server(id)                one server's table
--   component(name, id [, config])  a component instance for server id, with
--                             config = base < site.components[name] < server.components[name]
--   discover(name, id [, config])   that instance after discover(); look at .discovery
--   plan(name, id [, config])       after discover() and plan(); look at .plan (no writes)
--   discover_all(name [, opts])     discover on every server at once (sbot.fleet
--                             workers, --jobs caps); prints as an aligned table,
--                             indexes by server id: d["r630-01"].discovery
--   runs([where])             the recorded runs (runs dir or store), an aligned table
--   run([id [, where]])       one run's record: run(id).servers["r630-01"].<step>.discovery
-- discover() and plan() close the component's resource (its open()) when done;
-- component() leaves that to you (c:close()).
local site_mod = require "sbot.site"
local json = require "sbot.json"
local log = require "sbot.log"
local run_mod = require "sbot.run"
local repl = require "sbot.repl"

local M = {}

-- A cell of an aligned table: one line, redacted, at most `max` characters.
local function cell(v, max)
  local s
  if v == nil or v == json.null then
    s = "-"
  elseif log.is_secret(v) then
    s = log.REDACTED
  elseif type(v) == "table" then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    if json.is_array(v) or (#v > 0 and #v == n) then s = "[" .. n .. "]" else s = "{" .. n .. "}" end
  elseif math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
    s = string.format("%d", v) -- an integer that went through JSON
  else
    s = tostring(v)
  end
  s = log.redact((s:gsub("%s*\n.*$", " ...")))
  max = max or 40
  if #s > max then s = s:sub(1, max - 3) .. "..." end
  return s
end
M.cell = cell

-- The first line of an error, without its traceback.
local function first_line(e)
  return tostring(e or ""):match("^[^\n]*")
end

--- The aligned table of discover_all's results: SERVER, STATUS, TIME, then
-- the discovery's top-level fields while they fit in `width` characters
-- (tables show as [n] or {n}), and ERROR for a failed server.
function M.render_discovery(list, width)
  width = width or tonumber(os.getenv("COLUMNS")) or 160
  local keys, seen = {}, {}
  for _, r in ipairs(list) do
    for k in pairs(type(r.discovery) == "table" and r.discovery or {}) do
      if type(k) == "string" and not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
  end
  table.sort(keys)
  local base = { "SERVER", "STATUS", "TIME" }
  local rows = {}
  local any_error = false
  for i, r in ipairs(list) do
    local ms = 0
    for _, ph in pairs(r.phases or {}) do ms = ms + (tonumber(ph.ms) or 0) end
    rows[i] = { cell(r.id, 40), cell(r.status, 10), run_mod.duration(ms) }
    if r.error then any_error = true end
  end
  -- widths so far; add discovery columns while the line fits
  local function colw(header, get)
    local w = #header
    for i, r in ipairs(list) do w = math.max(w, #get(r, i)) end
    return w
  end
  local used = 0
  for c = 1, #base do used = used + colw(base[c], function(_, i) return rows[i][c] end) + 2 end
  local shown, hidden = {}, 0
  for _, k in ipairs(keys) do
    local function get(r)
      if type(r.discovery) ~= "table" then return cell(nil) end
      return cell(r.discovery[k], 32)
    end
    local w = colw(k, get)
    if used + w + 2 <= width then
      shown[#shown + 1] = k
      used = used + w + 2
      for i, r in ipairs(list) do rows[i][#rows[i] + 1] = get(r) end
    else
      hidden = hidden + 1
    end
  end
  local header = { table.unpack(base) }
  for _, k in ipairs(shown) do header[#header + 1] = k end
  if any_error then
    header[#header + 1] = "ERROR"
    for i, r in ipairs(list) do rows[i][#rows[i] + 1] = r.error and cell(first_line(r.error), 100) or "" end
  end
  table.insert(rows, 1, header)
  local text = run_mod.columns(rows)
  if hidden > 0 then
    text = text .. "\n(" .. hidden .. " more field(s) not shown: d[\"" .. tostring(list[1] and list[1].id)
      .. "\"].discovery has them all)"
  end
  return text
end

-- A per-server view of the site: its other keys, this server only (what
-- a workflow's worker gets: copying every server into every worker would
-- make it quadratic).
local function site_view(site, s)
  local view = {}
  for k, v in pairs(site) do view[k] = v end
  view.servers = json.array { s }
  return view
end

-- config = base < site.components[name] < server.components[name]
local function merged_config(site, s, name, base)
  local config = {}
  for _, t in ipairs { base or {}, site.components and site.components[name] or {},
    s.components and s.components[name] or {} } do
    for k, v in pairs(t) do config[k] = v end
  end
  return config
end

-- In a fleet worker: one server's discover, as plain data.
local function discover_one(job)
  local ok, Module = pcall(require, "sbot.component." .. job.name)
  local r
  if not ok then
    r = { component = job.name, id = job.server.id, status = "failed", error = tostring(Module),
      discovery = {}, phases = {} }
  else
    local c, err = Module.new(merged_config(job.site, job.server, job.name, job.base),
      { id = job.server.id, site = job.site, server = job.server })
    if not c then
      r = { component = job.name, id = job.server.id, status = "failed", error = err, discovery = {}, phases = {} }
    else
      r = c:execute { phases = { "discover" }, mode = "plan" }
    end
  end
  return require("sbot.run").redact_tree(r)
end

local RunView = {}

--- The component names `require "sbot.component.<name>"` finds: the C
-- components linked in, the Lua ones in the component path, those loaded.
function M.component_names()
  local names, seen = {}, {}
  local function add(n)
    if n and not seen[n] then seen[n] = true; names[#names + 1] = n end
  end
  for k in pairs(package.preload) do add(k:match("^sbot%.component%.([%w_]+)$")) end
  for k in pairs(package.loaded) do add(k:match("^sbot%.component%.([%w_]+)$")) end
  local fsio = require "sbot.fsio"
  for _, dir in ipairs(require("sbot.component").path()) do
    for _, e in ipairs(fsio.list(dir) or {}) do add(e.name:match("^([%a_][%w_]*)%.lua$")) end
  end
  table.sort(names)
  return names
end

--- Open the site at path and define the REPL's globals; returns the banner
-- text, or nil, err.
function M.open(path)
  local site, err = site_mod.load(path)
  if not site then return nil, err end
  local function server(id)
    return assert(site_mod.server(site, id))
  end
  local function component(name, id, base)
    if type(name) ~= "string" then error("component(name, server_id [, config]): name must be a string", 2) end
    local s = server(id)
    local Module = require("sbot.component." .. name)
    return assert(Module.new(merged_config(site, s, name, base), { id = s.id, site = site, server = s }))
  end

  --- discover_all(name [, opts]): opts {config = base config, jobs = 4 (1..256),
  -- timeout = seconds per server (0: none), servers = {ids}}.
  local function discover_all(name, opts)
    if type(name) ~= "string" then error("discover_all(name [, opts]): name must be a component name", 2) end
    if opts ~= nil and type(opts) ~= "table" then error("discover_all(name, opts): opts must be a table", 2) end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "config" and k ~= "jobs" and k ~= "timeout" and k ~= "servers" then
        error("discover_all: unknown option '" .. tostring(k) .. "' (config, jobs, timeout, servers)", 2)
      end
    end
    require("sbot.component." .. name) -- a name that is no component fails here, once
    local servers = site.servers
    if opts.servers then
      servers = {}
      for i, id in ipairs(opts.servers) do servers[i] = server(id) end
    end
    local jobs, labels = {}, {}
    for i, s in ipairs(servers) do
      jobs[i] = { name = name, site = site_view(site, s), server = s, base = opts.config }
      labels[i] = s.id
    end
    local outcomes = require("sbot.fleet").map(jobs, discover_one, { jobs = opts.jobs or 4,
      timeout = opts.timeout or 0, partial = true, labels = labels })
    local list, by_id = {}, {}
    for i, o in ipairs(outcomes) do
      local r = o.value
      if type(r) ~= "table" then
        r = { component = name, id = servers[i].id, status = "failed", error = o.error, discovery = {}, phases = {} }
      end
      list[i] = r
      by_id[servers[i].id] = r
    end
    return setmetatable(by_id, { __pretty = function() return M.render_discovery(list) end,
      __index = { list = function() return list end } })
  end

  local function where_default(where)
    if where ~= nil then return where end
    return site.store or site.runs_dir or "runs"
  end
  local function records(where)
    local w = where_default(where)
    local opts
    if w:match("^s3://") then
      local url, o = require("sbot.workflow").store_for(w, site)
      if not url then error(o, 3) end
      w, opts = url, o
    end
    local recs, err = run_mod.records(w, opts)
    if not recs then error(err, 3) end
    return recs
  end

  _G.site = site
  _G.server = server
  _G.component = component
  _G.discover = function(name, id, base)
    local c = component(name, id, base)
    c:discover()
    c:close()
    return c
  end
  _G.plan = function(name, id, base)
    local c = component(name, id, base)
    if c:discover() then c:plan() end
    c:close()
    return c
  end
  _G.discover_all = discover_all
  _G.runs = function(where)
    local recs = records(where)
    local list, err = recs:list()
    if not list then error(err, 2) end
    local w = where_default(where)
    return setmetatable(list, { __pretty = function() return run_mod.list_text_of(list, w) end })
  end
  _G.run = function(id, where)
    local recs = records(where)
    local rec, err = recs:load(id)
    if not rec then error(err, 2) end
    return M.run_view(rec)
  end

  local ids = {}
  for i, s in ipairs(site.servers) do ids[i] = s.id end
  repl.arg_completers.server = function() return ids end
  repl.arg_completers.discover_all = M.component_names
  repl.arg_completers.discover = M.component_names
  repl.arg_completers.plan = M.component_names
  repl.arg_completers.component = M.component_names
  repl.arg_completers.run = function()
    local ok, recs = pcall(records, nil)
    local list = ok and recs:ids() or {}
    return list
  end
  repl.help_sections[#repl.help_sections + 1] = M.HELP
  return string.format("site %s: %d server(s): %s\n"
    .. "globals: site, server(id), component(name, id), discover(name, id), plan(name, id),\n"
    .. "         discover_all(name), runs(), run(id) (:help shows an example of each)\n",
    path, #ids, table.concat(ids, ", "))
end

--- A run record as the REPL shows it: the record's fields, plus
-- `servers[id][step]` = that step's results, and `failures` (the rows that
-- are not ok); prints as the run's summary.
function M.run_view(record)
  local view = {}
  for k, v in pairs(record) do view[k] = v end
  view.servers = run_mod.by_server(record)
  local failures = {}
  for _, r in ipairs(record.results or {}) do
    if r.status ~= "ok" then failures[#failures + 1] = r end
  end
  view.failures = failures
  return setmetatable(view, RunView)
end
RunView.__pretty = function(v)
  return run_mod.summary(v)
    .. string.format("workflow %s, site %s, started %s on %s, took %s\n", cell(v.workflow, 60), cell(v.site, 80),
      cell(v.started), cell(v.host), run_mod.duration(v.ms))
    .. "fields: servers[id][step] (e.g. .servers[\"" .. cell(v.servers and next(v.servers) or "ID", 63)
    .. "\"]), failures, results, args, plan"
end

M.HELP = [==[
with --site (each with an example):
  site                          the site; site.servers[1].idrac.host  (secrets print <redacted>)
  server(id)                    server("r630-01").idrac
  component(name, id [, cfg])   c = component("iscsi", "r630-01"); c:discover(); c:close()
  discover(name, id [, cfg])    discover("bmc_inventory", "r630-01").discovery.nics
  plan(name, id [, cfg])        plan("iscsi", "r630-01").plan     (changes nothing)
  discover_all(name [, opts])   d = discover_all("bmc_inventory")  -- every server at once,
                                printed as a table; d["r630-01"].discovery; opts {jobs, timeout,
                                config, servers}
  runs([where])                 runs()  -- the site's store or runs dir, or runs("runs"), runs("s3://b/p")
  run([id [, where]])           r = run("20261126T1203")  -- an id or its unique start; run() = newest
                                r.servers["r630-01"].bmc_inventory.discovery.nics; r.failures;
                                run("last", "s3://sbot/runs") reads a store
  Tab completes inside these: r.servers["r6<Tab>, run("2026<Tab>, server("<Tab>
]==]

return M
