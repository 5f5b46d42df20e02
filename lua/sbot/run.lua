--- sbot.run: run records (runs/<id>/results.json, log.jsonl, artifacts),
-- the summary table and the readable plan diff.
local json = require "sbot.json"
local log = require "sbot.log"
local sys = require "sbot.sys"
local crypto = require "sbot.crypto"
local fsio = require "sbot.fsio"
local artifact = require "sbot.artifact"

local M = {}

--- A new run id: UTC time plus 6 random hex digits, e.g. 20261126T120301Z-4f9a2c.
function M.new_id()
  return os.date("!%Y%m%dT%H%M%SZ") .. "-" .. crypto.hex(crypto.random_bytes(3))
end

--- Start a run: create <runs_dir>/<id>/ and send every log line to its
-- log.jsonl. opts: {runs_dir = "runs", mode = "apply"|"plan", workflow, site, args}.
-- Returns the run table {id, dir, log_file, artifact_dir, started, mode, ...}.
function M.start(opts)
  opts = opts or {}
  local id = opts.id or M.new_id()
  local dir = (opts.runs_dir or "runs") .. "/" .. id
  local ok, err = fsio.mkdirs(dir .. "/artifacts")
  if not ok then return nil, "run record: " .. err end
  local run = {
    id = id, dir = dir, log_file = dir .. "/log.jsonl", artifact_dir = dir .. "/artifacts",
    results_file = dir .. "/results.json", mode = opts.mode or "apply",
    workflow = opts.workflow, site = opts.site, args = opts.args, store = opts.store,
    store_opts = opts.store_opts,
    started = sys.utc_iso(), t0 = sys.monotime(),
  }
  local lok, lerr = log.configure { file = run.log_file }
  if not lok then return nil, "run record: " .. tostring(lerr) end
  log.info("run started", { run = id, mode = run.mode, workflow = opts.workflow, dir = dir })
  return run
end

-- Every string in results goes through the redactor: a secret value that a
-- component read back from a device as a plain string is caught here too.
local function redact_tree(v, seen)
  if type(v) == "string" then return log.redact(v) end
  if type(v) ~= "table" then return v end
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__name == "sbot.secret" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[redact_tree(k, seen)] = redact_tree(x, seen) end
  if json.is_array(v) then json.array(out) end
  return out
end
M.redact_tree = redact_tree

--- True when every result has status "ok".
function M.all_ok(results)
  if #results == 0 then return false end
  for _, r in ipairs(results) do
    if r.status ~= "ok" then return false end
  end
  return true
end

--- Finish a run: store artifacts, write results.json. Returns the record.
function M.finish(run, results)
  local stored, serr = artifact.store_all(results, { run_id = run.id, run_dir = run.dir,
    store = run.store, store_opts = run.store_opts })
  local record = {
    run_id = run.id, mode = run.mode, plan = run.mode == "plan", workflow = run.workflow,
    site = run.site, args = run.args, started = run.started, ended = sys.utc_iso(),
    ms = math.floor((sys.monotime() - run.t0) * 1000 + 0.5),
    results = json.array(results), ok = M.all_ok(results) and stored == true,
    host = sys.hostname(), pid = sys.getpid(),
  }
  if not stored then
    record.artifact_error = serr
    log.error("artifacts: " .. serr, { run = run.id })
  end
  record = redact_tree(record)
  local f = assert(io.open(run.results_file, "wb"))
  f:write(json.encode(record, { indent = true }), "\n")
  assert(f:close())
  log.info("run finished", { run = run.id, ok = record.ok, results = run.results_file })
  log.configure { file = false }
  -- with an s3:// store, results.json and log.jsonl go there too and the run
  -- into the store's index (sbot.store.keep_run); failing that fails the run
  local kept, kerr = require("sbot.store").keep_run(run, record)
  if not kept then
    record.ok, record.record_error = false, log.redact(tostring(kerr))
    io.stderr:write("sbot: run record not kept in the store: ", record.record_error, "\n")
    local rf = assert(io.open(run.results_file, "wb"))
    rf:write(json.encode(record, { indent = true }), "\n")
    assert(rf:close())
  end
  return record
end

---------------------------------------------------------------------------
-- Summary table.

local function pad(s, n) s = tostring(s); return s .. string.rep(" ", n - #s) end

-- A result's component, with its step name when the workflow gave another
-- (or a second step of the same component got "-2").
local function label(r)
  local c = r.component or "-"
  if r.step and r.step ~= c then return c .. " (" .. r.step .. ")" end
  return c
end
M.label = label

--- The summary table text for a results list.
function M.summary(record)
  local rows = { { "SERVER", "COMPONENT", "STATUS", "PLANNED", "APPLIED", "TIME" } }
  local errors = {}
  for _, r in ipairs(record.results) do
    local p = r.processing or {}
    local ms = 0
    for _, ph in pairs(r.phases or {}) do ms = ms + (ph.ms or 0) end
    rows[#rows + 1] = { r.id or "-", label(r), r.status or "?",
      r.plan and #r.plan or (p.planned or "-"), p.applied and #p.applied or "-",
      string.format("%d ms", ms) }
    if r.error then errors[#errors + 1] = string.format("error: %s %s: %s", r.id or "-", label(r),
      (tostring(r.error):gsub("\nstack traceback:.*", "")))
    elseif r.status == "skipped" and r.reason then
      errors[#errors + 1] = string.format("skipped: %s %s: %s", r.id or "-", label(r), r.reason)
    end
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for i, c in ipairs(row) do widths[i] = math.max(widths[i] or 0, #tostring(c)) end
  end
  local out = { string.format("run %s (%s) %s", record.run_id, record.mode,
    record.ok and "ok" or "FAILED") }
  for _, row in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(row) do cells[i] = pad(c, widths[i]) end
    out[#out + 1] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  for _, e in ipairs(errors) do out[#out + 1] = e end
  if record.artifact_error then out[#out + 1] = "error: artifacts: " .. record.artifact_error end
  return log.redact(table.concat(out, "\n")) .. "\n"
end

---------------------------------------------------------------------------
-- Plan diff.

local function render(v)
  if v == nil or v == json.null then return "(none)" end
  if type(v) == "string" then return string.format("%q", v) end
  local ok, s = pcall(json.encode, v)
  return ok and s or tostring(v)
end

local SIGN = { create = "+", update = "~", delete = "-" }

--- One change as readable lines: "+ create disk/vol1: (none) -> {...}",
-- updates of two tables show each changed key.
function M.format_change(c)
  local head = string.format("  %s %-6s %s", SIGN[c.action] or "?", c.action, c.resource)
  local lines = {}
  if c.action == "update" and type(c.before) == "table" and type(c.after) == "table"
    and getmetatable(c.before) == nil and getmetatable(c.after) == nil then
    lines[1] = head
    local keys, seen = {}, {}
    for k in pairs(c.before) do if not seen[k] then seen[k] = true; keys[#keys + 1] = k end end
    for k in pairs(c.after) do if not seen[k] then seen[k] = true; keys[#keys + 1] = k end end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local b, a = render(c.before[k]), render(c.after[k])
      if a ~= b then lines[#lines + 1] = string.format("      %s: %s -> %s", tostring(k), b, a) end
    end
  elseif (type(c.before) == "string" and c.before:find("\n")) or
         (type(c.after) == "string" and c.after:find("\n")) then
    -- text: the lines that go and the lines that come
    lines[1] = head
    local function set(s)
      local t = {}
      for l in tostring(s or ""):gmatch("[^\n]*") do t[l] = true end
      return t
    end
    local had, will = set(c.before), set(c.after)
    if type(c.before) == "string" then
      for l in c.before:gmatch("([^\n]*)\n?") do
        if l ~= "" and not will[l] then lines[#lines + 1] = "      - " .. l end
      end
    end
    if type(c.after) == "string" then
      for l in c.after:gmatch("([^\n]*)\n?") do
        if l ~= "" and not had[l] then lines[#lines + 1] = "      + " .. l end
      end
    end
  else
    lines[1] = head .. ": " .. render(c.before) .. " -> " .. render(c.after)
  end
  if c.reason then lines[#lines + 1] = "      (" .. tostring(c.reason) .. ")" end
  return table.concat(lines, "\n")
end

--- The plan of every result as a readable diff.
function M.format_plan(record)
  local out = {}
  for _, r in ipairs(record.results) do
    local header = string.format("%s / %s", r.id or "-", label(r))
    if r.status == "failed" then
      out[#out + 1] = header .. ": FAILED: " .. (tostring(r.error):gsub("\nstack traceback:.*", ""))
    elseif not r.plan or #r.plan == 0 then
      out[#out + 1] = header .. ": no changes"
    else
      out[#out + 1] = header .. ": " .. #r.plan .. " change(s)"
      for _, c in ipairs(r.plan) do out[#out + 1] = M.format_change(c) end
    end
  end
  return log.redact(table.concat(out, "\n")) .. "\n"
end

return M
