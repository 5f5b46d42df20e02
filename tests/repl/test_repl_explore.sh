#!/usr/bin/env bash
# Drives `sbot repl --site` through a real pseudo-terminal (tmux) against
# `sbot lab`: discover_all over every server (bmc_inventory from examples/,
# and the C components iscsi, vault, r630, openshift), printed as aligned tables;
# runs() and run(id) reading a recorded run back; Tab completion into those
# tables and into run("<id>, server("<id>, discover_all("<name>; :help;
# secrets shown as <redacted>.
set -u
sbot=$(realpath "${SBOT_BIN:-build/sbot}")
src=$(realpath "${SBOT_SOURCE_DIR:-.}")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbot-repl-explore.XXXXXX")
sock="sbot-explore-$$"
export HOME="$tmp"
export SBOT_COMPONENT_PATH="$src/examples/components"
fail=0
lab_pid=
cleanup() {
  tmux -L "$sock" kill-server 2>/dev/null
  if [ -n "$lab_pid" ] && kill -0 "$lab_pid" 2>/dev/null; then kill -INT "$lab_pid"; wait "$lab_pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$sbot" lab --servers 2 --dir "$tmp/lab" --site-out "$tmp/site.lua" >"$tmp/lab.log" 2>&1 &
lab_pid=$!
for _ in $(seq 300); do [ -s "$tmp/site.lua" ] && break; sleep 0.1; done
if [ ! -s "$tmp/site.lua" ]; then echo "FAIL - the lab did not start"; cat "$tmp/lab.log"; exit 1; fi
# one recorded run to read back; the site's runs_dir is relative: run from $tmp
(cd "$tmp" && "$sbot" run "$src/examples/inventory.lua" --site site.lua >"$tmp/run.out" 2>&1) ||
  { echo "FAIL - the inventory run failed"; cat "$tmp/run.out"; exit 1; }
run_id=$(ls "$tmp/runs")
# and one kept in the lab's S3 too (the record goes to the store: runs/<id>/)
(cd "$tmp" && "$sbot" run "$src/examples/inventory.lua" --site site.lua --runs-dir runs-s3 \
  --store s3://sbot/repl-test >"$tmp/run2.out" 2>&1) ||
  { echo "FAIL - the inventory run with an S3 store failed"; cat "$tmp/run2.out"; exit 1; }
s3_id=$(ls "$tmp/runs-s3")
# sbot runs reads it back from the store's index and record (the site gives the S3 keys)
(cd "$tmp" && "$sbot" runs list --store s3://sbot/repl-test --site site.lua) >"$tmp/list.out" 2>&1
grep -Eq "^$s3_id +ok +inventory \(apply\) +r630-01, r630-02 +[0-9.]+ m?s$" "$tmp/list.out" &&
  echo "ok   - sbot runs list --store s3://... lists the run from the store's index" ||
  { echo "FAIL - sbot runs list --store: $(cat "$tmp/list.out")"; fail=1; }
(cd "$tmp" && "$sbot" runs show "${s3_id:0:10}" --store s3://sbot/repl-test --site site.lua --json) >"$tmp/show.out" 2>&1
grep -q "\"run_id\": \"$s3_id\"" "$tmp/show.out" &&
  echo "ok   - sbot runs show ID --store s3://... reads its results.json" ||
  { echo "FAIL - sbot runs show --store: $(head -5 "$tmp/show.out")"; fail=1; }

screen() { tmux -L "$sock" capture-pane -p -J -S -400; }
prompt_ready() { screen | awk 'NF { last = $0 } END { exit !(last ~ /^(sbot|\.\.\.)> *$/) }'; }
type_text() {
  for _ in $(seq 150); do prompt_ready && break; sleep 0.1; done
  tmux -L "$sock" send-keys -l "$1"
}
# more of a line being edited (after a Tab): no prompt to wait for
type_more() { tmux -L "$sock" send-keys -l "$1"; }
key() { tmux -L "$sock" send-keys "$@"; }
clear_screen() { for _ in $(seq 150); do prompt_ready && break; sleep 0.1; done; tmux -L "$sock" clear-history; key C-l; sleep 0.2; }
wait_for() { # regex [tries of 0.1 s]
  for _ in $(seq "${2:-150}"); do
    screen | grep -Eq -- "$1" && return 0
    sleep 0.1
  done
  return 1
}
check() { # name regex
  if screen | grep -q '^REPL-EXITED='; then
    echo "FAIL - $1: the REPL ended early:"; screen | grep -v "^ *$" | tail -25; exit 1
  fi
  [ -n "${TRACE:-}" ] && echo "$(date +%T.%N | cut -c1-12) $1" >&2
  if wait_for "$2"; then echo "ok   - $1"; else echo "FAIL - $1 (no match for /$2/)"; screen | grep -v "^ *$" | tail -25; fail=1; fi
}
check_not() { # name regex: must not be on the screen now
  if screen | grep -Eq -- "$2"; then echo "FAIL - $1 (/$2/ is on the screen)"; fail=1; else echo "ok   - $1"; fi
}

# the REPL's output stays readable when it ends (a REPL that died is reported, not waited for)
tmux -L "$sock" -f /dev/null new-session -d -x 220 -y 60 -c "$tmp" "$sbot repl --site site.lua; echo REPL-EXITED=\$?; sleep 600"
check "banner names the site's servers" '2 server\(s\): r630-01, r630-02'
check "banner lists the explore globals" 'discover_all\(name\), runs\(\), run\(id\)'

type_text 'd = discover_all("bmc_'; key Tab
check "Tab completes a component name in discover_all(\"" '^sbot> d = discover_all\("bmc_inventory"$'
type_more ')'; key Enter
type_text 'd'; key Enter
check "discover_all prints an aligned table" '^SERVER +STATUS +TIME +bios_version .*boot_mode .*model .*service_tag'
check "one row per server" '^r630-01 +ok +[0-9.]+ m?s +2\.19\.0 .*Uefi .*PowerEdge R630 +\[4\] .*LAB0001'
check "second server's row" '^r630-02 +ok .*LAB0002'
clear_screen

type_text 'd["r6'; key Tab
check "Tab completes a server id key" '^sbot> d\["r630-0$'
type_more '1"].disc'; key Tab
check "Tab completes into the server's results" '^sbot> d\["r630-01"\]\.discovery\.$'
type_more 'ni'; key Tab
check "Tab completes a discovery field" '^sbot> d\["r630-01"\]\.discovery\.nics\.$'
key BSpace; type_more '[1].m'; key Tab
check "Tab completes a list entry's field" '^sbot> d\["r630-01"\]\.discovery\.nics\[1\]\.mac$'
key Enter
check "the field's value" '^"24:6E:96:00:01:11"$'
clear_screen

type_text 'discover_all("iscsi")'; key Enter
# basename, chap (the lab's site gives each server CHAP credentials: a table, shown as {n}), chap_tags, initiator
check "iscsi (a C component) over the fleet" '^r630-01 +ok .*iqn\.2005-10\.org\.freenas\.ctl +\{[0-9]+\} +\[[0-9]+\] +iqn\.2024-01\.org\.sbot:r630-01'
type_text 'discover_all("vault")'; key Enter
check "vault over the fleet" '^r630-02 +ok .*https://127\.0\.0\.1:[0-9]+ +vault-cluster-lab'
type_text 'discover_all("r630")'; key Enter
check "r630 (Redfish) over the fleet" '^r630-02 +ok .*/redfish/v1/Systems/System\.Em'
type_text 'discover_all("openshift")'; key Enter
check "a failing component: ERROR column with the message" '^r630-01 +failed .*discover: .*no boot disk for this server'
clear_screen

type_text 'runs()'; key Enter
check "runs() lists the recorded run" "^$run_id +ok +inventory \\(apply\\) +r630-01, r630-02"
type_text 'r = run("'"${run_id:0:6}"; key Tab
check "Tab completes a run id in run(\"" "^sbot> r = run\\(\"$run_id\"$"
type_more ')'; key Enter
type_text 'r'; key Enter
check "run(id) prints its summary" "^run $run_id \\(apply\\) ok"
check "run(id) summary rows" '^r630-02 +bmc_inventory +ok'
type_text 'runs("s3://sbot/repl-test")'; key Enter
check "runs(\"s3://...\") lists the run kept in the store" "^$s3_id +ok +inventory \\(apply\\) +r630-01, r630-02"
type_text 'run("last", "s3://sbot/repl-test").servers["r630-01"].bmc_inventory.discovery.model'; key Enter
check "run(id, \"s3://...\") reads a record from the store" '^"PowerEdge R630"$'
clear_screen
type_text 'r.servers["r630-02"].bm'; key Tab
check "Tab completes a step of a server in a run" '^sbot> r\.servers\["r630-02"\]\.bmc_inventory\.$'
type_more 'discovery.service_tag'; key Enter
check "run(id).servers[id].<step>.discovery" '^"LAB0002"$'
type_text 'server("r'; key Tab
check "Tab completes a server id in server(\"" '^sbot> server\("r630-0$'
key C-u

type_text 'site.servers[1].idrac.password'; key Enter
check "a secret prints <redacted>" '^<redacted>$'
type_text 'server("r630-01").idrac.password:reveal()'; key Enter
check "its value prints <redacted> too" '^"<redacted>"$'

clear_screen
type_text ':help'; key Enter
check ":help lists discover_all with an example" 'discover_all\(name \[, opts\]\) +d = discover_all\("bmc_inventory"\)'
check ":help lists run(id) with an example" 'r\.servers\["r630-01"\]\.bmc_inventory\.discovery\.nics'
check ":help lists runs()" '^  runs\(\[where\]\) '
check ":help keeps the general part" 'completes globals and table fields'

key C-d
wait_for '^REPL-EXITED=0$' 50 && echo "ok   - Ctrl-D leaves (exit 0)" || { echo "FAIL - Ctrl-D did not leave with 0"; fail=1; }
[ $fail -eq 0 ] && echo "repl explore: all checks passed"
exit $fail
