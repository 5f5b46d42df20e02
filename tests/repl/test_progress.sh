#!/usr/bin/env bash
# The progress board on a real terminal (tmux): a workflow whose three
# servers each wait (tests/support/components/test_wait.lua: a job with a
# percent, then a child process without one) shows one line per server,
# redrawn in place (never a second copy in the scrollback), the percent
# going up, log lines scrolling above it, and nothing of it left at the end.
# Then the fallbacks: stdout not a terminal, and --log-json: plain log lines.
set -u
sbot=$(realpath "${SBOT_BIN:-build/sbot}")
src=$(realpath "${SBOT_SOURCE_DIR:-.}")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbot-progress.XXXXXX")
sock="sbot-progress-$$-0"
export SBOT_COMPONENT_PATH="$src/tests/support/components"
fail=0
cleanup() { tmux -L "$sock" kill-server 2>/dev/null; rm -rf "$tmp"; }
runs=0
trap cleanup EXIT

cat >"$tmp/site.lua" <<'EOF'
return { servers = { { id = "r630-01" }, { id = "r630-02" }, { id = "r630-03" } },
  components = { test_wait = { steps = 20, step_s = 0.1, spawn_s = 1.5, log_at = 10 } } }
EOF
wf="$src/tests/support/workflows/wait.lua"

screen() { tmux -L "$sock" capture-pane -p -S -300; }
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; fail=1; }

# run CMD in a fresh 150x40 terminal; sample the screen every 0.1 s into
# $tmp/samples/N until "run record:" shows (at most 30 s)
run_sampled() {
  rm -rf "$tmp/samples"; mkdir -p "$tmp/samples"
  tmux -L "$sock" kill-server 2>/dev/null
  # a tmux server of its own per run: a new session never meets the last one shutting down
  runs=$((runs + 1)); sock="sbot-progress-$$-$runs"
  tmux -L "$sock" -f /dev/null new-session -d -x 150 -y 40 -c "$tmp" "$1; echo EXIT=\$?; sleep 60"
  for i in $(seq 300); do
    screen >"$tmp/samples/$(printf %03d "$i")"
    grep -q '^EXIT=' "$tmp/samples/$(printf %03d "$i")" && return 0
    sleep 0.1
  done
  return 1
}

# ---- a terminal: the board -------------------------------------------------
bar_line='^r630-01  \[[#-]{10}\] +[0-9]+%  +[0-9]+s  test job r630-01  (Scheduled|Running)$'
run_sampled "$sbot run $wf --site site.lua" || bad "the workflow did not finish in 30 s"
final=$(ls "$tmp/samples" | tail -1)
grep -q '^EXIT=0$' "$tmp/samples/$final" && ok "the run exits 0" || bad "the run did not exit 0"

# every sample: at most one line per server in the whole scrollback
dups=0 seen=0
for f in "$tmp"/samples/*; do
  for s in 01 02 03; do
    n=$(grep -Ec "^r630-$s  \[" "$f")
    [ "$n" -gt 1 ] && dups=$((dups + 1))
    [ "$n" -eq 1 ] && seen=$((seen + 1))
  done
done
[ "$seen" -gt 0 ] && ok "one board line per server is shown" || bad "no board line was ever shown"
[ "$dups" -eq 0 ] && ok "lines are updated in place (never two copies of a server's line)" ||
  bad "$dups sample(s) had a server's line twice: the board scrolled instead of being redrawn"

# a sample with all three servers' job lines, the bar and the percent
if grep -lE "$bar_line" "$tmp"/samples/* | xargs -r grep -lE '^r630-02  \[[#-]{10}\] +[0-9]+%' |
   xargs -r grep -qE '^r630-03  \[[#-]{10}\] +[0-9]+%'; then
  ok "each server's line: bar, percent, elapsed, what it waits for, the device's state"
else
  bad "no sample shows the three job lines (/$bar_line/)"
fi
# the percent goes up over time
pcts=$(for f in "$tmp"/samples/*; do grep -E "$bar_line" "$f" | sed -E 's/.*\] +([0-9]+)%.*/\1/'; done | uniq)
first=$(echo "$pcts" | head -1) last=$(echo "$pcts" | tail -1)
if [ -n "$first" ] && [ "$last" -gt "$first" ] && [ "$(echo "$pcts" | wc -l)" -ge 3 ]; then
  ok "the percent goes up in place ($first% ... $last%)"
else
  bad "the percent did not move: $(echo $pcts)"
fi
# a wait without a fraction: a moving marker, no percent
if grep -qE '^r630-02  \[ *<=> *\] +[0-9]+s  reboot r630-02$' "$tmp"/samples/*; then
  ok "a wait without a percent (a child process) shows a moving marker and elapsed"
else
  bad "no line for the reboot wait"
fi
# log lines scroll above the board: in a sample with the log line, the board is below it
if (for f in "$tmp"/samples/*; do
     awk '/halfway through test job/ { logged = NR } /^r630-0[123]  \[/ { board = NR }
          END { exit !(logged && board > logged) }' "$f" && exit 0
   done; exit 1); then
  ok "log lines are written above the board"
else
  bad "no sample shows a log line above the board"
fi
# at the end: the board is gone, the summary is there, no log-mode lines
if grep -qE '^r630-0[123]  \[' "$tmp/samples/$final"; then bad "board lines are left on the screen at the end"
else ok "the board is erased when the run ends"; fi
grep -qE '^r630-03 +test_wait +ok' "$tmp/samples/$final" && ok "the summary follows" || bad "no summary"
grep -q 'waiting: test job' "$tmp/samples/$final" && bad "log-mode 'waiting:' lines on a terminal" ||
  ok "no 'waiting:' log lines on a terminal"

# ---- stdout is not a terminal: plain log lines on stderr ---------------------
run_sampled "$sbot run $wf --site site.lua >out.txt" || bad "the redirected run did not finish"
final=$(ls "$tmp/samples" | tail -1)
if grep -qE '^r630-0[123]  \[' "$tmp"/samples/*; then bad "a board was drawn although stdout is a file"
else ok "stdout not a terminal: no board"; fi
grep -qE 'INFO  waiting: test job r630-01 progress=start server=r630-01$' "$tmp/samples/$final" &&
  ok "stdout not a terminal: a 'waiting:' line with the server" || bad "no 'waiting:' line for r630-01"
grep -qE 'INFO  done: test job r630-02 after [0-9.]+ s .*percent=100 .*server=r630-02' "$tmp/samples/$final" &&
  ok "stdout not a terminal: a 'done: ... after N s' line" || bad "no 'done:' line for r630-02"
grep -qE 'INFO  done: reboot r630-03 after 1\.[0-9] s ' "$tmp/samples/$final" &&
  ok "stdout not a terminal: the child process's wait too" || bad "no 'done: reboot' line"
grep -qE '^r630-03 +test_wait +ok' "$tmp/out.txt" && ok "the summary went to the file" || bad "no summary in out.txt"

# ---- --log-json: JSON lines, no board -------------------------------------------
run_sampled "$sbot run $wf --site site.lua --log-json" || bad "the --log-json run did not finish"
final=$(ls "$tmp/samples" | tail -1)
if grep -qE '^r630-0[123]  \[' "$tmp"/samples/*; then bad "a board was drawn with --log-json"
else ok "--log-json: no board"; fi
tmux -L "$sock" capture-pane -p -J -S -300 >"$tmp/json.txt"
if grep -E '"progress":"start"' "$tmp/json.txt" | grep -q '"server":"r630-01","wait":"test job r630-01"'; then
  ok "--log-json: a JSON line per wait, with the server and the wait"
else
  bad "no JSON progress line for r630-01"
fi
grep -E '"progress":"done"' "$tmp/json.txt" | grep -qE '"elapsed_s":[0-9.]+,"percent":100' &&
  ok "--log-json: the done line has elapsed_s and percent" || bad "no JSON done line with elapsed_s and percent"

[ $fail -eq 0 ] && echo "progress: all checks passed"
exit $fail
