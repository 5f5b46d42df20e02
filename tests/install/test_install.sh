#!/usr/bin/env bash
# `cmake --install` gives a relocatable tree: bin/sbot finds its Lua library in
# share/sbot/lua and its extension library in lib*/sbot, not the source tree.
set -euo pipefail
build=${SBOT_BUILD_DIR:?SBOT_BUILD_DIR not set}
prefix=$(mktemp -d "${TMPDIR:-/tmp}/sbot-install.XXXXXX")
trap 'rm -rf "$prefix" "$moved"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
test -x "$prefix/bin/sbot"
test -f "$prefix/share/sbot/lua/sbot/json.lua"
test -d "$prefix/share/sbot/workflows"
ls "$prefix"/lib*/sbot/libsbot-ext.so >/dev/null
# the man page and the bash completion (generated at build time from
# lua/sbot/cli.lua), and the LuaCATS type definitions for editors
man1="$prefix/share/man/man1/sbot.1"
test -f "$man1" || { echo "FAIL: share/man/man1/sbot.1 not installed"; exit 1; }
for c in run repl lab runs version help complete; do
  grep -q "^\.B sbot $c" "$man1" || { echo "FAIL: the man page has no command $c"; exit 1; }
done
grep -q '^\.SH EXIT STATUS' "$man1" || { echo "FAIL: the man page has no EXIT STATUS"; exit 1; }
if command -v man >/dev/null; then
  MANWIDTH=80 man -l "$man1" 2>/dev/null | grep -q 'sbot runs \[list\]' || { echo "FAIL: man -l does not render it"; exit 1; }
fi
test -f "$prefix/share/bash-completion/completions/sbot" || { echo "FAIL: bash completion not installed"; exit 1; }
bash -n "$prefix/share/bash-completion/completions/sbot" || { echo "FAIL: the completion is not valid bash"; exit 1; }
test -f "$prefix/share/sbot/types/sbot/http.lua" || { echo "FAIL: share/sbot/types not installed"; exit 1; }
head -1 "$prefix/share/sbot/types/sbot/http.lua" | grep -q '^---@meta' || { echo "FAIL: types are not ---@meta stubs"; exit 1; }
# move the whole tree: nothing may point back at the build or source tree
moved=$(mktemp -d "${TMPDIR:-/tmp}/sbot-moved.XXXXXX")
mv "$prefix"/* "$moved"/
cd /
script="$moved/check.lua"
cat > "$script" <<'LUA'
local json = require "sbot.json"
print(package.searchpath("sbot.json", package.path))
print(json.encode({ok = true}))
LUA
out=$("$moved/bin/sbot" run "$script")
expected="$moved/bin/../share/sbot/lua/sbot/json.lua
{\"ok\":true}"
if [ "$out" != "$expected" ]; then
  echo "FAIL: installed sbot loaded its library from the wrong place:"; echo "$out"; exit 1
fi
"$moved/bin/sbot" version | grep -q '^libcurl ' || { echo "FAIL: extension library not found"; exit 1; }

# components and workflows by name from share/sbot/{components,workflows},
# with no SBOT_COMPONENT_PATH, SBOT_WORKFLOW_PATH or LUA_PATH
test -d "$moved/share/sbot/components" || { echo "FAIL: share/sbot/components not installed"; exit 1; }
cat > "$moved/share/sbot/components/installed_probe.lua" <<'LUA'
return require("sbot.component").define {
  name = "installed_probe", description = "A component found in share/sbot/components.",
  discover = function() return { found = true } end,
}
LUA
cat > "$moved/share/sbot/workflows/probe_flow.lua" <<'LUA'
local workflow = require "sbot.workflow"
local Probe = require "sbot.component.installed_probe"
local wf = workflow.new { name = "probe_flow", description = "Probe of the installed lookup.",
  steps = function(server, ctx) ctx:step(Probe, {}) end }
os.exit(wf:main(arg), true)
LUA
printf 'return { servers = { { id = "n1" } } }\n' > "$moved/site.lua"
clean_env=(env -u SBOT_COMPONENT_PATH -u SBOT_WORKFLOW_PATH -u LUA_PATH -u SBOT_LUA_DIR)
out=$("${clean_env[@]}" "$moved/bin/sbot" help component installed_probe) ||
  { echo "FAIL: help component installed_probe: $out"; exit 1; }
grep -q 'A component found in share/sbot/components.' <<<"$out" || { echo "FAIL: help component: $out"; exit 1; }
out=$("${clean_env[@]}" "$moved/bin/sbot" help workflows)
grep -Eq '^  probe_flow +Probe of the installed lookup\.$' <<<"$out" || { echo "FAIL: help workflows: $out"; exit 1; }
out=$(cd "$moved" && "${clean_env[@]}" "$moved/bin/sbot" run probe_flow --site "$moved/site.lua" --runs-dir "$moved/runs") ||
  { echo "FAIL: sbot run probe_flow: $out"; exit 1; }
grep -Eq '^n1 +installed_probe +ok' <<<"$out" || { echo "FAIL: sbot run probe_flow: $out"; exit 1; }
echo "install: relocatable tree works ($moved)"
