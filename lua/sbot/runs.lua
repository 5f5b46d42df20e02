--- sbot.runs: the `sbot runs` command - what ran, when, on which servers,
-- with which outcome, read back from a runs directory or an artifact store.
--
--   sbot runs [list] [DIR] [--store URL] [--site FILE]
--   sbot runs show ID [DIR] [--store URL] [--site FILE] [--json]
--   sbot runs report ID --html FILE [DIR] [--store URL] [--site FILE]
--   sbot runs report ID --junit FILE [...]
--
-- Where: DIR (or --runs-dir DIR), else --store URL, else the site's store,
-- else its runs_dir, else ./runs. With --site an s3:// store signs with the
-- site's S3 keys at its endpoint (as a workflow's --store does).
local argparse = require "argparse"
local fsio = require "sbot.fsio"
local json = require "sbot.json"
local log = require "sbot.log"
local run = require "sbot.run"

local M = {}

local COMMANDS = { list = true, show = true, report = true }

local function parser()
  local p = argparse("sbot runs", "The run records: list them, show one, or write its report.")
  p:help_max_width(100)
  p:command_target("command")
  local function where(cmd)
    cmd:argument("dir", "Runs directory (default: --store, the site's store or runs_dir, else ./runs)."):args("?")
    cmd:option("--runs-dir", "Runs directory (the same as DIR)."):argname("DIR")
    cmd:option("--store", "Artifact store holding the records (s3://bucket/prefix, file:///dir)."):argname("URL")
    cmd:option("--site", "Site file: its store or runs_dir, and its S3 credentials."):argname("FILE")
  end
  local list = p:command("list", "List the runs, oldest first: outcome, workflow, servers, time.")
  where(list)
  list:flag("--json", "The list as JSON.")
  local show = p:command("show", "One run: what ran, when, where, the outcome of each step, artifacts.")
  show:argument("id", "Run id, or the unique start of one, or 'last'.")
  where(show)
  show:flag("--json", "The run record (results.json) as it is.")
  local report = p:command("report", "Write one run's report: an HTML page and/or JUnit XML.")
  report:argument("id", "Run id, or the unique start of one, or 'last'.")
  where(report)
  report:option("--html", "Write the self-contained HTML report to FILE."):argname("FILE")
  report:option("--junit", "Write a JUnit XML report to FILE."):argname("FILE")
  return p
end

-- The records the arguments point at: nil, err (exit 2) when they cannot.
local function records(args)
  local where, opts = args.dir or args.runs_dir, nil
  if args.dir and args.runs_dir then return nil, "give DIR or --runs-dir, not both" end
  if where and args.store then return nil, "give a runs directory or --store, not both" end
  local site
  if args.site then
    local s, err = require("sbot.site").load(args.site)
    if not s then return nil, err end
    site = s
  end
  where = where or args.store or (site and (site.store or site.runs_dir)) or "runs"
  if where:match("^s3://") then
    local bad = require("sbot.workflow").check_store_url(where, "--store")
    if bad then return nil, bad end
    if site then
      local url, o = require("sbot.workflow").store_for(where, site)
      if not url then return nil, o end
      where, opts = url, o
    end
  elseif where:match("^%a[%w+.-]*://") then
    local bad = require("sbot.workflow").check_store_url(where, "--store")
    if bad then return nil, bad end
  end
  return run.records(where, opts)
end

local function artifacts_text(record)
  local rows = { { "SERVER", "COMPONENT", "KEY", "BYTES", "STORED" } }
  for _, r in ipairs(record.results or {}) do
    for _, a in ipairs(type(r.artifacts) == "table" and r.artifacts or {}) do
      rows[#rows + 1] = { log.redact(tostring(r.id or "-")), run.label(r), log.redact(tostring(a.key or "-")),
        a.size and run.num(a.size) or "-", log.redact(tostring(a.stored or a.path or "-")) }
    end
  end
  if #rows == 1 then return "artifacts: none\n" end
  return "artifacts:\n" .. run.columns(rows):gsub("([^\n]+)", "  %1") .. "\n"
end

--- Text of `sbot runs show`: the run's header, its summary table, the plan
-- diff of a --plan run, and its artifacts.
function M.show_text(record)
  local out = {}
  local function add(s) out[#out + 1] = s end
  local servers = {}
  for i, id in ipairs(record.servers or {}) do servers[i] = log.redact(tostring(id)) end
  add(string.format("workflow %s (%s), site %s", log.redact(tostring(record.workflow or "-")),
    tostring(record.mode or "-"), log.redact(tostring(record.site or "-"))))
  add(string.format("started %s, ended %s, took %s, on %s (pid %s)", tostring(record.started or "-"),
    tostring(record.ended or "-"), run.duration(record.ms), log.redact(tostring(record.host or "-")),
    record.pid and run.num(record.pid) or "-"))
  add("servers: " .. (#servers > 0 and table.concat(servers, ", ") or "-"))
  add("")
  local text = table.concat(out, "\n") .. "\n" .. run.summary(record)
  if record.mode == "plan" then text = text .. "\n" .. run.format_plan(record) end
  return text .. "\n" .. artifacts_text(record)
end

--- `sbot runs ARGS...`: returns the exit status (0, 1 when a record cannot
-- be read or a report written, 2 for a usage error).
function M.main(argv)
  argv = argv or {}
  -- `sbot runs [DIR]`: the list (the command's first form, kept)
  if not argv[1] or (not COMMANDS[argv[1]] and argv[1] ~= "-h" and argv[1] ~= "--help") then
    table.insert(argv, 1, "list")
  end
  local p = parser()
  local ok, args = p:pparse(argv)
  if not ok then
    io.stderr:write(p:get_usage(), "\n\nerror: ", args, "\n")
    return 2
  end
  local recs, err = records(args)
  if not recs then
    io.stderr:write("sbot runs: ", log.redact(tostring(err)), "\n")
    return 2
  end
  if args.command == "list" then
    local list, lerr = recs:list()
    if not list then io.stderr:write("sbot runs: ", log.redact(tostring(lerr)), "\n"); return 2 end
    if args.json then
      local rows = json.array {}
      for i, r in ipairs(list) do rows[i] = { id = r.id, state = r.state } end
      io.stdout:write(json.encode(run.redact_tree(rows), { indent = true }), "\n")
    else
      io.stdout:write(log.redact(run.list_text_of(list, recs.where)), "\n")
    end
    return 0
  end
  local record, rerr = recs:load(args.id)
  if not record then io.stderr:write("sbot runs: ", log.redact(tostring(rerr)), "\n"); return 1 end
  record = run.redact_tree(record)
  if args.command == "show" then
    if args.json then
      io.stdout:write(json.encode(record, { indent = true }), "\n")
    else
      io.stdout:write(M.show_text(record))
    end
    return 0
  end
  -- report
  if not args.html and not args.junit then
    io.stderr:write(p:get_usage(), "\n\nerror: runs report: give --html FILE and/or --junit FILE\n")
    return 2
  end
  local report = require "sbot.report"
  for _, w in ipairs { { args.html, report.html }, { args.junit, report.junit } } do
    if w[1] then
      local wrote, werr = fsio.write_atomic(w[1], w[2](record))
      if not wrote then io.stderr:write("sbot runs report: ", tostring(werr), "\n"); return 1 end
      io.stdout:write("wrote ", w[1], "\n")
    end
  end
  return 0
end

return M
