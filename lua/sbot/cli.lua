--- sbot.cli: the command line described once, as data. `sbot help`, `sbot
-- help COMMAND`, the usage lines of errors, the man page sbot(1) (`sbot help
-- --man`, generated at build time and installed) and the bash completion
-- (`sbot help --bash-completion`, installed too) are all rendered from the
-- tables below; docs/cli.md is checked against them (tests/lua/cli_doc_spec.lua).
local M = {}

M.name = "sbot"
M.summary = "provision bare-metal servers to boot from iSCSI (Dell R630, TrueNAS SCALE, S3)"
M.synopsis = "sbot [-v | --log-level LEVEL] [--log-json] COMMAND [ARGS...]"
M.description = {
  "sbot provisions Dell PowerEdge R630 servers (iDRAC 8) to boot OpenShift from iSCSI zvols on "
    .. "TrueNAS SCALE, with every ISO, config and result kept in S3. It is one program embedding Lua 5.4: "
    .. "the protocol primitives and the component phases (discover, process, housekeep) are C, workflows "
    .. "and per-site decisions are Lua scripts.",
  "A workflow takes a site file (--site FILE) and works on its servers, each in a worker process of "
    .. "its own; --plan shows the changes without making any. Every run leaves a record (runs/ID/): "
    .. "results.json, log.jsonl and its artifacts.",
}

M.global_options = {
  { "-v, --verbose", "log at debug level (same as --log-level debug)" },
  { "--log-level LEVEL", "debug, info (default), warn, error or off" },
  { "--log-json", "log lines as JSON on stderr" },
  { "-h, --help", "print the usage" },
}

M.levels = { "debug", "info", "warn", "error", "off" }

--- The commands, in the order `sbot help` lists them. `args` tells the
-- bash completion what each argument is: file, workflow, dir, run,
-- component, command, words = {...}; `options` are the command's own.
M.commands = {
  { name = "run", synopsis = "run FILE|NAME [ARGS...]", summary = "run a Lua workflow or script (or a workflow by NAME)",
    help = [[
Run the Lua script FILE in sbot's interpreter. The script sees its arguments
in the global 'arg' (arg[0] is FILE) and as '...'. Every sbot module is
available through require "sbot.<name>".
A bare NAME that is no file runs the workflow NAME.lua from $SBOT_WORKFLOW_PATH
(colon-separated directories), then the tree's workflows/ or the installed
share/sbot/workflows ('sbot help workflows' lists them).
A workflow takes --site FILE, --server ID (repeatable), --plan, --phases,
--jobs N, --timeout S, --grace S, --json, --junit FILE, --log-json, --store URL,
--runs-dir DIR, --state-dir DIR and its own options: 'sbot run NAME --help'.

Exit status: 0 on success; 1 on a runtime error (printed as
'sbot: FILE:LINE: message' with a traceback); 2 when FILE is missing,
unreadable or not valid Lua; or the status given to os.exit(n). A workflow:
0 when every step of every server is ok, 1 otherwise, 2 for a usage error,
130 after Ctrl-C, 143 after SIGTERM.
]], args = { "workflow_or_file" },
    options = { "--site", "--server", "--plan", "--phases", "--jobs", "--timeout", "--grace", "--json", "--junit",
      "--log-json", "--store", "--runs-dir", "--state-dir", "--verbose", "--help" } },
  { name = "repl", synopsis = "repl [--site FILE]", summary = "interactive Lua prompt with sbot's modules loaded",
    help = [[
Start an interactive Lua prompt with sbot's modules loaded.
With --site FILE the site is loaded first (secrets resolved) and the globals
site, server(id), component(name, id), discover(name, id), plan(name, id),
discover_all(name) (every server at once, printed as a table), runs() and
run(id) (recorded runs: run(id).servers["r630-01"].<step>.discovery)
explore it without changing anything (docs/repl.md).
Each line is tried as an expression first ('return <line>'); incomplete
statements continue on the next line; results are printed with inspect,
secrets shown as <redacted>. Tab completes globals, table fields, t["key"]
and the string arguments of run(", server(", discover_all("; Ctrl-C stops
running code, Ctrl-D leaves. History is kept in ~/.sbot_history. Type :help
at the prompt for more.
]], options = { "--site" } },
  { name = "lab", synopsis = "lab [--servers N] [--dir DIR] [--site-out FILE] [--latency MS] [--faults SPEC]\n"
      .. "                [--seed N] [--time-scale X] [--tgt] [--idrac 8|9] [--host ADDR]",
    summary = "simulated iDRACs, TrueNAS, S3 and Vault on loopback (sbot help lab)",
    help = [[
Run simulated devices (Dell R630 iDRACs, TrueNAS when installed, S3, an
OpenShift mirror and a Vault) on loopback until Ctrl-C, and write a ready
site file for them. Details: sbot lab --help and docs/lab.md.
]], options = { "--servers", "--dir", "--site-out", "--latency", "--faults", "--seed", "--time-scale", "--tgt",
      "--idrac", "--host", "--help" } },
  { name = "runs", synopsis = "runs [list] [DIR] | runs show ID | runs report ID --html FILE [--junit FILE]",
    summary = "the run records: list them, show one, write its HTML or JUnit report",
    help = [[
List the run records under DIR (default: --store URL, the --site's store or
runs_dir, else ./runs), oldest first, each with its outcome (ok, FAILED,
running (pid P on host H since T), incomplete (pid P on host H gone) for a
run killed before it wrote its results.json), workflow, servers and time.
  runs [list] [DIR] [--store URL] [--site FILE] [--json]
  runs show ID [DIR] [--store URL] [--site FILE] [--json]
      ID: a run id, its unique start, or 'last'. What ran, when, where, the
      outcome of each step, the plan of a --plan run, the artifacts.
  runs report ID --html FILE [--junit FILE] [DIR] [--store URL] [--site FILE]
      one self-contained HTML page: summary, a timeline of every server's
      phases, failures, the plan as a diff, links to the artifacts; and/or
      JUnit XML (a testcase per server and step).
Exit status: 0; 1 when a record cannot be read or a report written; 2 for a
usage error or a place that cannot be read.
]], args = { "runs_subcommand" },
    options = { "--store", "--site", "--runs-dir", "--json", "--html", "--junit", "--help" } },
  { name = "version", synopsis = "version", summary = "print the versions of sbot and its libraries",
    help = "Print the versions of sbot, Lua, libcurl and OpenSSL.\n" },
  { name = "help", synopsis = "help [COMMAND] | help component NAME | help workflows",
    summary = "describe a command (help component NAME: a component;\n"
      .. "help workflows: the workflows sbot run NAME finds)",
    help = [[
Print the list of commands, or describe one. 'help component NAME' prints a
component's description, phases, hooks and configuration schema with
defaults. 'help workflows' lists the workflows 'sbot run NAME' finds, with
their descriptions. 'help --man [FILE]' writes the man page sbot(1) and
'help --bash-completion [FILE]' the bash completion script (both are
generated at build time and installed).
]], args = { "help_topic" } },
  { name = "complete", synopsis = "complete commands|workflows|components|servers SITE|runs [DIR]",
    summary = "names for shell completion (used by the bash completion)",
    help = [[
Print one name per line, for shell completion: the commands, the workflows
'sbot run NAME' finds, the components 'help component' knows, the server ids
of a site file (read without resolving its secrets), or the run ids in DIR.
]] },
}

M.exit_status = {
  { "0", "success (a workflow: every step of every selected server is ok)" },
  { "1", "a runtime error (sbot: FILE:LINE: message and a traceback on stderr, secrets redacted); a workflow with a step that is not ok, or whose record or --junit report could not be written; sbot runs: a record that cannot be read or a report that cannot be written" },
  { "2", "a usage error: unknown command or option, a bad --log-level, a missing, unreadable or syntactically invalid script, an invalid site file, bad workflow arguments (--jobs, --timeout, --store, ...), a runs directory or store that cannot be read" },
  { "n", "the status a script gives os.exit(n)" },
  { "130", "a workflow stopped by Ctrl-C (SIGINT): its workers were stopped, the record written" },
  { "143", "a workflow stopped by SIGTERM" },
}

M.environment = {
  { "SBOT_LOG_LEVEL", "initial log level (debug, info, warn, error, off)" },
  { "SBOT_SITE", "the site file when a workflow gets no --site" },
  { "SBOT_COMPONENT_PATH", "colon-separated directories searched first for sbot.component.NAME as NAME.lua" },
  { "SBOT_WORKFLOW_PATH", "colon-separated directories searched first by sbot run NAME and sbot help workflows" },
  { "SBOT_PROGRESS", "tty, log or off: how long waits are shown (default: a board on a terminal, else log lines)" },
  { "SBOT_LUA_DIR", "use another Lua library directory" },
  { "HOME", "the REPL's history file ~/.sbot_history" },
  { "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN", "S3 credentials of an s3:// store when the site has no s3 section" },
}

M.files = {
  { "runs/ID/results.json", "a run's record (docs/run-record.schema.json); also log.jsonl and artifacts/" },
  { "share/sbot/workflows", "installed workflows (sbot run NAME)" },
  { "share/sbot/components", "installed Lua components" },
  { "share/sbot/types", "LuaCATS type stubs of sbot's modules, for editors (lua-language-server)" },
  { "~/.sbot_history", "the REPL's history" },
}

M.examples = {
  { "sbot lab --servers 2 --dir /tmp/lab --site-out lab-site.lua", "start the lab; write its site file" },
  { "sbot run inventory --site lab-site.lua", "run the workflow workflows/inventory.lua" },
  { "sbot run local_boot --site site.lua --plan", "show the changes it would make" },
  { "sbot run local_boot --site site.lua --json --junit report.xml", "in a pipeline" },
  { "sbot runs show last", "what the last run did" },
  { "sbot runs report last --html report.html", "a report to open in a browser" },
  { "sbot repl --site site.lua", "explore: d = discover_all(\"bmc_inventory\")" },
}

function M.command(name)
  for _, c in ipairs(M.commands) do
    if c.name == name then return c end
  end
end

-- Rows of two columns; the second column's continuation lines line up.
local function rows_text(rows, width)
  local out = {}
  for _, r in ipairs(rows) do
    local text = r[2]:gsub("\n%s*", "\n" .. string.rep(" ", width + 4))
    out[#out + 1] = string.format("  %-" .. width .. "s  %s", r[1], text)
  end
  return table.concat(out, "\n")
end

--- The usage text `sbot help` (and a usage error) prints.
function M.usage()
  local cmds = {}
  for _, c in ipairs(M.commands) do
    if c.name ~= "complete" then
      local head = c.name == "repl" and "repl [--site FILE]" or c.name == "run" and "run FILE [ARGS...]"
        or c.name == "lab" and "lab [OPTIONS]" or c.name == "runs" and "runs [list|show|report]"
        or c.name == "help" and "help [COMMAND]" or c.name
      cmds[#cmds + 1] = { head, c.summary }
    end
  end
  local globals = {}
  for _, o in ipairs(M.global_options) do
    if o[1] ~= "-h, --help" then globals[#globals + 1] = o end
  end
  local width = 0
  for _, r in ipairs(cmds) do width = math.max(width, #r[1]) end
  for _, r in ipairs(globals) do width = math.max(width, #r[1]) end
  return "usage: " .. M.synopsis .. "\n\ncommands:\n" .. rows_text(cmds, width)
    .. "\n\nglobal options:\n" .. rows_text(globals, width) .. "\n"
end

--- The text of `sbot help COMMAND`, or nil.
function M.help(name)
  local c = M.command(name)
  if not c then return nil end
  return "usage: sbot " .. c.synopsis .. "\n\n" .. c.help
end

-- roff: escape backslashes and leading dots/quotes; "-" as \-.
local function roff(s)
  s = tostring(s):gsub("\\", "\\e"):gsub("%-", "\\-")
  s = s:gsub("\n([.'])", "\n\\&%1")
  if s:match("^[.']") then s = "\\&" .. s end
  return s
end

--- The man page sbot(1), in roff (man macros).
function M.man(version, date)
  local out = {}
  local function add(s) out[#out + 1] = s end
  add(string.format('.TH SBOT 1 "%s" "sbot %s" "User Commands"', date or "", version or ""))
  add(".SH NAME")
  add("sbot \\- " .. roff(M.summary))
  add(".SH SYNOPSIS")
  add(".B sbot")
  add(roff("[-v | --log-level LEVEL] [--log-json] COMMAND [ARGS...]"))
  add(".SH DESCRIPTION")
  for _, p in ipairs(M.description) do add(".PP"); add(roff(p)) end
  add(".SH OPTIONS")
  for _, o in ipairs(M.global_options) do
    add(".TP"); add(".B " .. roff(o[1])); add(roff(o[2]))
  end
  add(".SH COMMANDS")
  for _, c in ipairs(M.commands) do
    add(".TP")
    add(".B sbot " .. roff((c.synopsis:gsub("\n%s*", " "))))
    add(roff((c.summary:gsub("\n%s*", " "))) .. ".")
    add(".RS")
    add(".PP")
    add(".nf")
    add(roff(c.help:gsub("\n$", "")))
    add(".fi")
    add(".RE")
  end
  add(".SH EXIT STATUS")
  for _, e in ipairs(M.exit_status) do
    add(".TP"); add(".B " .. roff(e[1])); add(roff(e[2]))
  end
  add(".SH ENVIRONMENT")
  for _, e in ipairs(M.environment) do
    add(".TP"); add(".B " .. roff(e[1])); add(roff(e[2]))
  end
  add(".SH FILES")
  for _, f in ipairs(M.files) do
    add(".TP"); add(".I " .. roff(f[1])); add(roff(f[2]))
  end
  add(".SH EXAMPLES")
  for _, e in ipairs(M.examples) do
    add(".TP"); add(".B " .. roff(e[1])); add(roff(e[2]))
  end
  add(".SH SEE ALSO")
  add("The reference pages under share/doc or docs/ of the source: cli.md, workflow.md, repl.md, progress.md, "
    .. "lab.md; LuaCATS type definitions in share/sbot/types.")
  return table.concat(out, "\n") .. "\n"
end

--- The bash completion script: commands, options and their values, the
-- workflows `sbot run NAME` finds, a site's server ids after --server, run
-- ids after `runs show`/`runs report`, component names after `help
-- component` (the dynamic names come from `sbot complete`).
function M.bash_completion()
  local names, globals, per = {}, {}, {}
  for _, c in ipairs(M.commands) do
    names[#names + 1] = c.name
    per[#per + 1] = string.format("    %s) opts=%q ;;", c.name, table.concat(c.options or {}, " "))
  end
  for _, o in ipairs(M.global_options) do
    for flag in o[1]:gmatch("%-%-?[%w-]+") do globals[#globals + 1] = flag end
  end
  local text = ([==[
# bash completion for sbot(1): generated by `sbot help --bash-completion`
# from lua/sbot/cli.lua (the same source as `sbot help` and the man page).
_sbot() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local sbot=${COMP_WORDS[0]} i cmd= cmdi=0 site=${SBOT_SITE:-} runsdir=
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --log-level) ((i++)) ;;
      -*) ;;
      *) if [ -z "$cmd" ]; then cmd=${COMP_WORDS[i]}; cmdi=$i; fi ;;
    esac
    case ${COMP_WORDS[i]} in
      --site) site=${COMP_WORDS[i+1]} ;;
      --runs-dir) runsdir=${COMP_WORDS[i+1]} ;;
    esac
  done
  local -a words
  _sbot_names() { mapfile -t words < <("$sbot" complete "$@" 2>/dev/null); COMPREPLY=($(compgen -W "${words[*]}" -- "$cur")); }
  case $prev in
    --log-level) COMPREPLY=($(compgen -W "@LEVELS@" -- "$cur")); return ;;
    --site|--junit|--html|--site-out) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --dir|--runs-dir|--state-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --server) [ -n "$site" ] && _sbot_names servers "$site"; return ;;
    --phases) COMPREPLY=($(compgen -W "discover process housekeep discover,process discover,process,housekeep" -- "$cur")); return ;;
    --idrac) COMPREPLY=($(compgen -W "8 9" -- "$cur")); return ;;
  esac
  if [ -z "$cmd" ]; then
    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "@GLOBALS@" -- "$cur"))
    else COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur")); fi
    return
  fi
  local opts=
  case $cmd in
@PER@
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); return; fi
  local n=$((COMP_CWORD - cmdi))
  case $cmd in
    run) if [ $n -eq 1 ]; then _sbot_names workflows; COMPREPLY+=($(compgen -f -- "$cur")); fi ;;
    help) if [ $n -eq 1 ]; then COMPREPLY=($(compgen -W "@COMMANDS@ component workflows" -- "$cur"))
          elif [ $n -eq 2 ] && [ "${COMP_WORDS[cmdi+1]}" = component ]; then _sbot_names components; fi ;;
    runs) if [ $n -eq 1 ]; then COMPREPLY=($(compgen -W "list show report" -- "$cur")); COMPREPLY+=($(compgen -d -- "$cur"))
          elif [ $n -eq 2 ] && [[ ${COMP_WORDS[cmdi+1]} =~ ^(show|report)$ ]]; then _sbot_names runs ${runsdir:-runs}; fi ;;
    complete) [ $n -eq 1 ] && COMPREPLY=($(compgen -W "commands workflows components servers runs" -- "$cur")) ;;
  esac
}
complete -F _sbot sbot
]==]):gsub("@(%u+)@", {
    LEVELS = table.concat(M.levels, " "), GLOBALS = table.concat(globals, " "),
    COMMANDS = table.concat(names, " "), PER = table.concat(per, "\n"),
  })
  return text
end

--- The names `sbot complete KIND [ARG]` prints: a list, or nil, err.
function M.complete(kind, arg, workflow_dirs)
  if kind == "commands" then
    local out = {}
    for _, c in ipairs(M.commands) do out[#out + 1] = c.name end
    return out
  elseif kind == "workflows" then
    local out, seen = {}, {}
    for _, dir in ipairs(workflow_dirs or {}) do
      for _, e in ipairs(require("sbot.fsio").list(dir) or {}) do
        local n = e.name:match("^([%w_.%-]+)%.lua$")
        if n and not seen[n] then seen[n] = true; out[#out + 1] = n end
      end
    end
    table.sort(out)
    return out
  elseif kind == "components" then
    return require("sbot.explore").component_names()
  elseif kind == "servers" then
    if not arg then return nil, "complete servers SITE: which site file?" end
    -- the file as Lua, without resolving its secrets (no Vault call on Tab)
    local chunk, err = loadfile(arg, "t", setmetatable({}, { __index = _G }))
    if not chunk then return nil, err end
    local ok, site = pcall(chunk)
    if not ok or type(site) ~= "table" or type(site.servers) ~= "table" then
      return nil, "site " .. arg .. ": no servers list"
    end
    local out = {}
    for _, s in ipairs(site.servers) do
      if type(s) == "table" and type(s.id) == "string" then out[#out + 1] = s.id end
    end
    return out
  elseif kind == "runs" then
    local recs = require("sbot.run").records(arg or "runs")
    return recs and recs:ids() or {}
  end
  return nil, "complete: unknown kind '" .. tostring(kind) .. "' (commands, workflows, components, servers, runs)"
end

return M
