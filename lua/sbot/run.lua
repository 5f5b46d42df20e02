--- sbot.run: run records (runs/<id>/results.json, log.jsonl, artifacts),
-- the summary table and the readable plan diff.
--
-- A run directory holds `incomplete.lock` from the start of the run until
-- results.json is written (atomically): a lock file (sbot.lock) whose flock
-- lives as long as the process, so a run killed by any means leaves a
-- directory that says "incomplete (pid P gone)" (run.state, run.list).
local json = require "sbot.json"
local lock = require "sbot.lock"
local log = require "sbot.log"
local sys = require "sbot.sys"
local crypto = require "sbot.crypto"
local fsio = require "sbot.fsio"
local artifact = require "sbot.artifact"

local M = {}

--- The file that marks a run directory as not finished (see the header).
M.MARKER = "incomplete.lock"

--- Version of the run record's shape (results.json, `--json`): bumped when a
-- field changes meaning or goes away; docs/run-record.schema.json describes it.
M.SCHEMA_VERSION = 1

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
    store_opts = opts.store_opts, servers = opts.servers,
    started = sys.utc_iso(), t0 = sys.monotime(),
  }
  -- the marker first: from now on the directory says whether the run is
  -- still going, was killed, or finished
  local marker, merr = lock.acquire(dir .. "/" .. M.MARKER, { name = "run " .. id })
  if not marker then return nil, "run record: " .. tostring(merr) end
  run.marker = marker
  local lok, lerr = log.configure { file = run.log_file }
  if not lok then marker:release(); return nil, "run record: " .. tostring(lerr) end
  log.info("run started", { run = id, mode = run.mode, workflow = opts.workflow, dir = dir })
  return run
end

-- The runner's own words: these values of these keys are structure, set by
-- the runner, and stay as they are (a one-character secret must not turn a
-- status into "f<redacted>iled").
local VOCAB = {
  status = { ok = true, failed = true, skipped = true, pending = true },
  mode = { apply = true, plan = true },
  action = { create = true, update = true, delete = true },
}

-- Every string value in results goes through the redactor: a secret value
-- that a component read back from a device as a plain string is caught here
-- too. Keys are never rewritten (they are the record's structure), and
-- neither are the runner's own words above.
local function redact_tree(v, seen, key)
  if type(v) == "string" then
    local words = key ~= nil and VOCAB[key]
    if words and words[v] then return v end
    return log.redact(v)
  end
  -- a secret object (log.is_secret: the one test, never a __name string)
  -- stays as it is; json.encode writes it as <redacted>
  if log.is_secret(v) or type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[k] = redact_tree(x, seen, k) end
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

-- The ids of the servers a run worked on: the ones it was given, else the
-- rows' ids in order (without the site steps' "(site)").
local function server_ids(given, results)
  local out, seen = json.array {}, {}
  for _, id in ipairs(given or {}) do
    if not seen[id] then seen[id] = true; out[#out + 1] = id end
  end
  if given then return out end
  for _, r in ipairs(results or {}) do
    local id = r.id
    if type(id) == "string" and id ~= "(site)" and not seen[id] then seen[id] = true; out[#out + 1] = id end
  end
  return out
end

--- Finish a run: store artifacts, write results.json (and, with an s3://
-- store, keep the record there too: sbot.store.keep_run). Returns the record.
function M.finish(run, results)
  local stored, serr = artifact.store_all(results, { run_id = run.id, run_dir = run.dir,
    store = run.store, store_opts = run.store_opts })
  local record = {
    schema_version = M.SCHEMA_VERSION, servers = server_ids(run.servers, results),
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
  local text = json.encode(record, { indent = true, secrets = "redact" }) .. "\n"
  -- atomically (temp file, fsync, rename): a reader never sees a half
  -- record, a full disk never leaves an empty one; the marker goes only
  -- once the record is there
  local wrote, werr = fsio.write_atomic(run.results_file, text)
  if wrote then
    run.marker:release()
    log.info("run finished", { run = run.id, ok = record.ok, results = run.results_file })
  else
    record.ok = false
    record.record_error = "results.json not written: " .. tostring(werr)
    run.marker:detach() -- the directory stays marked incomplete
    log.error("run record: " .. record.record_error, { run = run.id })
  end
  log.configure { file = false }
  -- with an s3:// store, results.json and log.jsonl go there too and the run
  -- into the store's index (sbot.store.keep_run); failing that fails the run
  local kept, kerr = require("sbot.store").keep_run(run, record)
  if not kept then
    record.ok, record.record_error = false, log.redact(tostring(kerr))
    io.stderr:write("sbot: run record not kept in the store: ", record.record_error, "\n")
    local rf = assert(io.open(run.results_file, "wb"))
    rf:write(json.encode(record, { indent = true, secrets = "redact" }), "\n")
    assert(rf:close())
  end
  return record
end

-- What a listing says about a finished record: outcome, workflow, mode,
-- when it started, how long it took and on which servers.
local function complete_state(rec)
  return { state = "complete", ok = rec.ok == true, workflow = rec.workflow, mode = rec.mode,
    started = rec.started, ms = rec.ms, servers = server_ids(rec.servers, rec.results),
    text = rec.ok == true and "ok" or "FAILED" }
end

--- The state of a run directory: {state = "complete"|"running"|"incomplete",
-- text, pid, host, since (from the marker); complete runs also have ok,
-- workflow, mode, started, ms and servers}.
function M.state(dir)
  local probe = lock.probe(dir .. "/" .. M.MARKER)
  if probe then
    local who = probe.pid and string.format("pid %d on %s", probe.pid, probe.host) or "its process"
    if probe.held then
      return { state = "running", pid = probe.pid, host = probe.host, since = probe.since,
        text = "running (" .. who .. " since " .. tostring(probe.since) .. ")" }
    end
    return { state = "incomplete", pid = probe.pid, host = probe.host, since = probe.since,
      text = "incomplete (" .. who .. " gone)" }
  end
  local f = io.open(dir .. "/results.json", "rb")
  if not f then return { state = "incomplete", text = "incomplete (no results.json)" } end
  local rec = json.decode(f:read("a") or "")
  f:close()
  if type(rec) ~= "table" then return { state = "incomplete", text = "incomplete (results.json unreadable)" } end
  return complete_state(rec)
end

local RUN_ID = "^%d+T%d+Z%-%x+$"

local function is_url(s) return type(s) == "string" and s:match("^%a[%w+.-]*://") ~= nil end

---------------------------------------------------------------------------
-- Reading records back: from a runs directory or an artifact store.

local Records = {}
Records.__index = Records

--- Where run records are read from: a runs directory (default "runs") or an
-- artifact store URL (s3://bucket/prefix, file:///dir; opts are store.open's
-- credentials and TLS). Returns an object with :list(), :find(id), :load(id)
-- and :log(id), or nil, err when the store cannot be opened.
function M.records(where, opts)
  where = where or "runs"
  if type(where) ~= "string" then error("run.records: where must be a directory or a store URL", 2) end
  if is_url(where) then
    local st, err = require("sbot.store").open(where, opts)
    if not st then return nil, "runs in " .. log.redact(where) .. ": " .. tostring(err) end
    return setmetatable({ kind = "store", where = where, store = st }, Records)
  end
  return setmetatable({ kind = "dir", where = where }, Records)
end

--- Every run id, oldest first; nil, err when the place cannot be read. An
-- s3:// store's runs are those of its index (metadata/index.json, kept by
-- sbot.store.keep_run); another store's, the <id>/results.json it holds.
function Records:ids()
  local ids = {}
  if self.kind == "dir" then
    local entries, err = fsio.list(self.where)
    if not entries then return nil, "no runs in " .. self.where .. " (" .. tostring(err) .. ")" end
    for _, e in ipairs(entries) do
      if e.type == "directory" and e.name:match(RUN_ID) then ids[#ids + 1] = e.name end
    end
  elseif self.store.read_index then
    local doc, err = self.store:read_index()
    if not doc then return nil, "runs in " .. log.redact(self.where) .. ": " .. tostring(err) end
    self.index = doc.runs
    for id in pairs(doc.runs) do
      if type(id) == "string" and id:match(RUN_ID) then ids[#ids + 1] = id end
    end
  else
    local list, err = self.store:list("")
    if not list then return nil, "runs in " .. log.redact(self.where) .. ": " .. tostring(err) end
    for _, o in ipairs(list) do
      local id = o.key:match("^([^/]+)/results%.json$")
      if id and id:match(RUN_ID) then ids[#ids + 1] = id end
    end
  end
  table.sort(ids)
  return ids
end

-- The state of a run from its entry in an s3:// store's index.
local function index_state(e)
  local servers = {}
  for id in pairs(type(e.servers) == "table" and e.servers or {}) do
    if id ~= "(site)" then servers[#servers + 1] = id end
  end
  table.sort(servers)
  local t0, t1 = M.parse_time(e.started), M.parse_time(e.ended)
  return { state = "complete", ok = e.ok == true, workflow = e.workflow, mode = e.mode, started = e.started,
    ms = t0 and t1 and (t1 - t0) or nil, servers = servers, text = e.ok == true and "ok" or "FAILED" }
end

--- Every run, oldest first: {{id, dir (a directory's), state = M.state}, ...}.
function Records:list()
  local ids, err = self:ids()
  if not ids then return nil, err end
  local out = {}
  for i, id in ipairs(ids) do
    if self.kind == "dir" then
      local dir = self.where .. "/" .. id
      out[i] = { id = id, dir = dir, state = M.state(dir) }
    elseif self.index and type(self.index[id]) == "table" then
      out[i] = { id = id, state = index_state(self.index[id]) }
    else
      local rec, lerr = self:_read(id)
      out[i] = { id = id, state = rec and complete_state(rec)
        or { state = "incomplete", text = "unreadable (" .. tostring(lerr) .. ")" } }
    end
  end
  return out
end

--- The full id of a run: `id` itself, the only run whose id starts with it,
-- or the newest run when id is nil or "last". nil, err otherwise.
function Records:find(id)
  if id ~= nil and type(id) ~= "string" then error("run id must be a string, got " .. type(id), 2) end
  local ids, err = self:ids()
  if not ids then return nil, err end
  if #ids == 0 then return nil, "no runs in " .. log.redact(self.where) end
  if id == nil or id == "last" then return ids[#ids] end
  local hits = {}
  for _, x in ipairs(ids) do
    if x == id then return x end
    if x:sub(1, #id) == id then hits[#hits + 1] = x end
  end
  if #hits == 1 then return hits[1] end
  if #hits == 0 then return nil, "no run " .. id .. " in " .. log.redact(self.where) end
  return nil, "run id " .. id .. " is ambiguous in " .. log.redact(self.where) .. ": "
    .. table.concat(hits, ", ", 1, math.min(#hits, 5)) .. (#hits > 5 and ", ..." or "")
end

function Records:_read(id)
  local text, err
  if self.kind == "dir" then
    local dir = self.where .. "/" .. id
    local st = M.state(dir)
    if st.state ~= "complete" then return nil, "run " .. id .. " is " .. st.text end
    local f
    f, err = io.open(dir .. "/results.json", "rb")
    if not f then return nil, err end
    text = f:read("a")
    f:close()
  else
    text, err = self.store:get(id .. "/results.json")
    if not text then return nil, "run " .. id .. ": " .. tostring(err) end
  end
  local rec, jerr = json.decode(text)
  if type(rec) ~= "table" then return nil, "run " .. id .. ": results.json is not JSON: " .. tostring(jerr) end
  return rec
end

--- The record (results.json) of run `id` (see find); nil, err.
function Records:load(id)
  local full, err = self:find(id)
  if not full then return nil, err end
  return self:_read(full)
end

--- The text of run `id`'s log.jsonl; nil, err.
function Records:log(id)
  local full, err = self:find(id)
  if not full then return nil, err end
  if self.kind == "dir" then
    local f, ferr = io.open(self.where .. "/" .. full .. "/log.jsonl", "rb")
    if not f then return nil, ferr end
    local text = f:read("a")
    f:close()
    return text
  end
  local text, gerr = self.store:get(full .. "/log.jsonl")
  if not text then return nil, tostring(gerr) end
  return text
end

--- Every run under runs_dir, oldest first (run ids sort by time):
-- {{id, dir, state = M.state(dir)}, ...}; nil, err if runs_dir cannot be read.
function M.list(runs_dir)
  return M.records(runs_dir):list()
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- Milliseconds since the epoch of an ISO-8601 UTC time
-- ("2026-11-26T12:03:00.123Z"), or nil.
function M.parse_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, hh, mi, ss, frac = s:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$")
  if not y then return nil end
  local ms = tonumber(((frac or "") .. "000"):sub(1, 3)) or 0
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  return ((days * 24 + tonumber(hh)) * 60 + tonumber(mi)) * 60000 + tonumber(ss) * 1000 + ms
end

--- A number as text, an integral one without ".0" (JSON gives floats).
function M.num(v)
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
    return string.format("%d", v)
  end
  return tostring(v)
end

--- A duration in milliseconds as text: "850 ms", "12.3 s", "4m05s", "1h02m".
function M.duration(ms)
  ms = tonumber(ms)
  if not ms then return "-" end
  if ms < 1000 then return string.format("%d ms", math.floor(ms + 0.5)) end
  local s = ms / 1000
  if s < 60 then return string.format("%.1f s", s) end
  if s < 3600 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  return string.format("%dh%02dm", s // 3600, math.floor(s % 3600) // 60)
end

--- Lines of text as aligned columns; the last column is not padded.
function M.columns(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, c in ipairs(row) do widths[i] = math.max(widths[i] or 0, #c) end
  end
  local out = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for i = 1, #row - 1 do cells[i] = row[i] .. string.rep(" ", widths[i] - #row[i]) end
    cells[#row] = row[#row]
    out[#out + 1] = table.concat(cells, "  ")
  end
  return table.concat(out, "\n")
end

-- "r630-01, r630-02" for a few servers, "12 servers: r630-01, ..." for many.
local function servers_text(ids)
  if not ids or #ids == 0 then return "-" end
  local shown = {}
  for i = 1, math.min(#ids, 3) do shown[i] = log.redact(ids[i]) end
  local text = table.concat(shown, ", ")
  if #ids > 3 then text = #ids .. " servers: " .. text .. ", ..." end
  return text
end

--- The table of a list of runs (Records:list()): one row per run (id,
-- outcome, workflow and mode, servers, duration), oldest first.
function M.list_text_of(list, where)
  if #list == 0 then return "no runs in " .. log.redact(tostring(where)) end
  local rows = { { "RUN", "OUTCOME", "WORKFLOW", "SERVERS", "TIME" } }
  for _, r in ipairs(list) do
    local st = r.state
    rows[#rows + 1] = { r.id, st.text,
      st.workflow and (log.redact(st.workflow) .. " (" .. tostring(st.mode) .. ")") or "-",
      servers_text(st.servers), st.ms and M.duration(st.ms) or "-" }
  end
  return M.columns(rows)
end

--- Text of `sbot runs list`: M.list_text_of the runs in where (a runs
-- directory, default "runs", or a store URL; opts: the store's credentials).
function M.list_text(where, opts)
  where = where or "runs"
  local recs, rerr = M.records(where, opts)
  if not recs then return nil, rerr end
  local list, err = recs:list()
  if not list then return nil, err end
  return M.list_text_of(list, where) .. "\n"
end

--- Results of a record by server and step: {[server id] = {[step] = result}}
-- (the step name is the component's unless the workflow named it; site
-- steps are under "(site)"), in a table that lists them in run order too.
function M.by_server(record)
  local out = {}
  for _, r in ipairs(record.results or {}) do
    local id = type(r.id) == "string" and r.id or "-"
    local steps = out[id]
    if not steps then steps = {}; out[id] = steps end
    local name = r.step or r.component or "-"
    steps[name] = r
  end
  return out
end

---------------------------------------------------------------------------
-- Summary table.

-- A cell of text built from a value: redacted on its own, so the text
-- around it (headers, the runner's words) is never touched.
local function red(v) return log.redact(tostring(v)) end

-- The runner's word for key, as is, or the value redacted.
local function word(key, v)
  if v ~= nil and VOCAB[key][v] then return v end
  return v == nil and "?" or red(v)
end

-- A result's component, with its step name when the workflow gave another
-- (or a second step of the same component got "-2"); redacted.
local function label(r)
  local c = red(r.component or "-")
  if r.step and r.step ~= r.component then return c .. " (" .. red(r.step) .. ")" end
  return c
end
M.label = label

-- The first line(s) of an error, without its traceback; redacted.
local function message(e)
  local s = tostring(e)
  local tb = s:find("\nstack traceback:", 1, true)
  return red(tb and s:sub(1, tb - 1) or s)
end

--- The summary table text for a run record. Built from each value
-- redacted on its own (never the whole text: a short secret would rewrite
-- the table's own words); padding is linear in the cells' widths.
function M.summary(record)
  local rows = { { "SERVER", "COMPONENT", "STATUS", "PLANNED", "APPLIED", "TIME" } }
  local notes = {}
  for _, r in ipairs(record.results) do
    local p = r.processing or {}
    local ms = 0
    for _, ph in pairs(r.phases or {}) do ms = ms + (tonumber(ph.ms) or 0) end
    local id, lab = red(r.id or "-"), label(r)
    rows[#rows + 1] = { id, lab, word("status", r.status),
      tostring(r.plan and #r.plan or (p.planned or "-")), tostring(p.applied and #p.applied or "-"),
      string.format("%d ms", ms) }
    if r.error then notes[#notes + 1] = "error: " .. id .. " " .. lab .. ": " .. message(r.error)
    elseif r.status == "skipped" and r.reason then
      notes[#notes + 1] = "skipped: " .. id .. " " .. lab .. ": " .. red(r.reason)
    end
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for i, c in ipairs(row) do widths[i] = math.max(widths[i] or 0, #c) end
  end
  local out = { "run " .. red(record.run_id) .. " (" .. word("mode", record.mode) .. ") "
    .. (record.ok and "ok" or "FAILED") }
  local n = #rows[1]
  for _, row in ipairs(rows) do
    local cells = {}
    for i = 1, n - 1 do cells[i] = row[i] .. string.rep(" ", widths[i] - #row[i]) end
    cells[n] = row[n] -- the last column is not padded: no trailing blanks to strip
    out[#out + 1] = table.concat(cells, "  ")
  end
  for _, e in ipairs(notes) do out[#out + 1] = e end
  if record.artifact_error then out[#out + 1] = "error: artifacts: " .. red(record.artifact_error) end
  if record.record_error then out[#out + 1] = "error: run record: " .. red(record.record_error) end
  return table.concat(out, "\n") .. "\n"
end

---------------------------------------------------------------------------
-- Plan diff.

-- A value as text: redacted *before* it is quoted or JSON-encoded (an
-- escaped secret, say one with a '"', would no longer match the redactor).
local function render(v)
  if v == nil or v == json.null then return "(none)" end
  v = redact_tree(v)
  if type(v) == "string" then return string.format("%q", v) end
  local ok, s = pcall(json.encode, v, { secrets = "redact" })
  return ok and s or red(v)
end

local SIGN = { create = "+", update = "~", delete = "-" }

--- One change as readable lines: "+ create disk/vol1: (none) -> {...}",
-- updates of two tables show each changed key.
function M.format_change(c)
  local action = word("action", c.action)
  local head = string.format("  %s %-6s %s", SIGN[c.action] or "?", action, red(c.resource))
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
      if a ~= b then lines[#lines + 1] = string.format("      %s: %s -> %s", red(k), b, a) end
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
        if l ~= "" and not will[l] then lines[#lines + 1] = "      - " .. red(l) end
      end
    end
    if type(c.after) == "string" then
      for l in c.after:gmatch("([^\n]*)\n?") do
        if l ~= "" and not had[l] then lines[#lines + 1] = "      + " .. red(l) end
      end
    end
  else
    lines[1] = head .. ": " .. render(c.before) .. " -> " .. render(c.after)
  end
  if c.reason then lines[#lines + 1] = "      (" .. red(c.reason) .. ")" end
  return table.concat(lines, "\n")
end

--- The plan of every result as a readable diff (each value redacted on its own).
function M.format_plan(record)
  local out = {}
  for _, r in ipairs(record.results) do
    local header = red(r.id or "-") .. " / " .. label(r)
    if r.status == "failed" then
      out[#out + 1] = header .. ": FAILED: " .. message(r.error)
    elseif r.status == "skipped" then
      out[#out + 1] = header .. ": skipped" .. (r.reason and (" (" .. red(r.reason) .. ")") or "")
    elseif not r.plan or #r.plan == 0 then
      out[#out + 1] = header .. ": no changes"
    else
      out[#out + 1] = header .. ": " .. #r.plan .. " change(s)"
      for _, c in ipairs(r.plan) do out[#out + 1] = M.format_change(c) end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
