#!/usr/bin/env bash
# The bash completion (generated at build time from lua/sbot/cli.lua, the
# source `sbot help` prints from): commands, options, the workflows `sbot run
# NAME` finds, the --server ids of the site on the command line (read without
# resolving its secrets), run ids, component names.
set -u
sbot=$(realpath "${SBOT_BIN:-build/sbot}")
src=$(realpath "${SBOT_SOURCE_DIR:-.}")
build=$(realpath "${SBOT_BUILD_DIR:-build}")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbot-completion.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
comp="$build/sbot.bash-completion"
[ -f "$comp" ] || { echo "FAIL - $comp was not generated"; exit 1; }
# it is what `sbot help --bash-completion` prints now (not a stale copy)
"$sbot" help --bash-completion >"$tmp/now" && cmp -s "$tmp/now" "$comp" &&
  echo "ok   - the installed script is what sbot help --bash-completion prints" ||
  { echo "FAIL - $comp differs from sbot help --bash-completion"; fail=1; }

export SBOT_WORKFLOW_PATH="$src/tests/support/workflows"
export SBOT_COMPONENT_PATH="$src/tests/support/components"
cat >"$tmp/site.lua" <<'SITE'
return { servers = {
  { id = "r630-01", idrac = { host = "10.0.0.1", password = "secret:idrac/r630-01:password" } },
  { id = "r630-02", idrac = { host = "10.0.0.2", password = "secret:idrac/r630-02:password" } } },
  vault = { addr = "https://127.0.0.1:1", auth = { method = "token", token = "secret-token-here" } } }
SITE
mkdir -p "$tmp/runs/20260101T000000Z-aaaaaa" "$tmp/runs/20260102T000000Z-bbbbbb"

# complete LINE: the words of COMPREPLY for the last word of LINE (a line
# ending in a space completes an empty word)
complete_line() {
  ( cd "$tmp"
    source "$comp"
    read -ra COMP_WORDS <<<"$1"
    [[ $1 == *" " ]] && COMP_WORDS+=("")
    COMP_WORDS[0]=$sbot
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _sbot
    printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' )
}
check() { # name line expected-words(regex over the sorted, space-joined list)
  local got
  got=$(complete_line "$2")
  if [[ $got =~ $3 ]]; then echo "ok   - $1"; else echo "FAIL - $1: '$2' gave '$got' (wanted /$3/)"; fail=1; fi
}
check "commands" "sbot " "^complete help lab repl run runs version $"
check "commands by prefix" "sbot r" "^repl run runs $"
check "global options" "sbot --" "--help --log-json --log-level --verbose"
check "log levels" "sbot --log-level " "^debug error info off warn $"
check "workflows after run (and files)" "sbot run " "kv .*report_demo .*steps .*wait "
check "workflow options" "sbot run wait --s" "^--server --site --state-dir --store $"
check "--server ids of the --site file, secrets not resolved" "sbot run wait --site site.lua --server " "^r630-01 r630-02 $"
check "--server by prefix" "sbot -v run wait --site site.lua --plan --server r630-02" "^r630-02 $"
check "runs subcommands" "sbot runs " "^list report runs show $"
check "run ids after runs show" "sbot runs show " "^20260101T000000Z-aaaaaa 20260102T000000Z-bbbbbb $"
check "run ids by prefix" "sbot runs report 202601" "^20260101T000000Z-aaaaaa 20260102T000000Z-bbbbbb $"
check "help topics" "sbot help " "^complete component help lab repl run runs version workflows $"
check "components after help component" "sbot help component " "iscsi .*openshift .*r630 .*test_kv .*test_wait .*vault"
check "runs report options" "sbot runs report last --" "--html .*--junit"
[ $fail -eq 0 ] && echo "completion: all checks passed"
exit $fail
