#!/usr/bin/env bash
# Drives `sbot repl` through a real pseudo-terminal (tmux) and checks tab
# completion, multi-line continuation, Ctrl-C interruption, result printing,
# secret redaction and the history file.
set -u
sbot=${SBOT_BIN:-build/sbot}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbot-repl.XXXXXX")
sock="sbot-repl-$$"
export HOME="$tmp"
fail=0
cleanup() { tmux -L "$sock" kill-server 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

screen() { tmux -L "$sock" capture-pane -p -S -200; }
# the last non-empty line of the screen is the bare prompt: the REPL is reading
prompt_ready() { screen | awk 'NF { last = $0 } END { exit !(last ~ /^(sbot|\.\.\.)>$/) }'; }
# Type only once the REPL waits at its prompt: text typed ahead is echoed by the
# terminal itself before libedit takes over, which would muddle the screen.
type_text() {
  for _ in $(seq 50); do prompt_ready && break; sleep 0.1; done
  tmux -L "$sock" send-keys -l "$1"
}
key() { tmux -L "$sock" send-keys "$@"; }
# wait until the screen matches a regex (5 s at most)
wait_for() {
  for _ in $(seq 50); do
    screen | grep -Eq -- "$1" && return 0
    sleep 0.1
  done
  return 1
}
check() { # name regex
  if wait_for "$2"; then echo "ok   - $1"; else echo "FAIL - $1 (no match for /$2/)"; fail=1; fi
}

tmux -L "$sock" -f /dev/null new-session -d -x 160 -y 50 "$sbot repl"
check "banner" '^sbot [0-9.]+ \(Lua 5\.4'

type_text 'string.for'; key Tab
check "tab completes a table field" '^sbot> string\.format\($'
key C-u
type_text 'os.ge'; key Tab
check "tab completes a library function" '^sbot> os\.getenv\($'
key C-u

type_text 'function double(x)'; key Enter
check "incomplete statement continues" '^\.\.\.>'
type_text 'return x * 2'; key Enter
type_text 'end'; key Enter
type_text 'double(21)'; key Enter
check "continued definition runs" '^42$'

type_text '{name = "r630-01", nics = {"NIC.Integrated.1-1-1"}}'; key Enter
check "tables are printed with inspect" 'nics = \{ "NIC\.Integrated\.1-1-1" \}'

type_text 'require("sbot.log").add_secret("hunter2-pass")'; key Enter
type_text '"password is hunter2-pass"'; key Enter
check "registered secrets are redacted" '^"password is <redacted>"$'
if screen | grep -qx '"password is hunter2-pass"'; then echo "FAIL - secret printed in clear"; fail=1; fi

type_text 'while true do end'; key Enter
sleep 0.5
key C-c
check "Ctrl-C interrupts running code" 'interrupted!'
type_text '6 * 7 + 0.5'; key Enter
check "prompt works after Ctrl-C" '^42\.5$'

type_text 'abandoned_line_'; key C-c
type_text 'if true then'; key Enter
for _ in $(seq 50); do prompt_ready && break; sleep 0.1; done
key C-c
type_text '"after" .. "-prompt-ctrl-c"'; key Enter
check "Ctrl-C at the prompt abandons the line and keeps the REPL" '^"after-prompt-ctrl-c"$'
if screen | grep -q 'abandoned_line_.*nil'; then echo "FAIL - abandoned line was run"; fail=1; fi

type_text 'error("custom failure")'; key Enter
check "errors are reported with their location" 'stdin:1: custom failure'

type_text ':help'; key Enter
check ":help" 'completes globals and table fields'

key C-d
for _ in $(seq 50); do tmux -L "$sock" has-session 2>/dev/null || break; sleep 0.1; done
if tmux -L "$sock" has-session 2>/dev/null; then echo "FAIL - Ctrl-D did not leave"; fail=1; else echo "ok   - Ctrl-D leaves"; fi
if grep -q 'double(21)' "$HOME/.sbot_history"; then echo "ok   - history saved"; else echo "FAIL - history not saved"; fail=1; fi

[ $fail -eq 0 ] && echo "repl: all checks passed"
exit $fail
