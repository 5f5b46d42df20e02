#!/usr/bin/env bash
# examples/iscsi_demo.sh: the README's main job, end to end on loopback.
# Starts `sbot lab --tgt` (simulated R630 iDRACs, a TrueNAS SCALE whose iSCSI
# targets istgt exports for real, S3, and a Vault holding every credential),
# runs workflows/iscsi_only.lua with the site file the lab wrote (each server
# gets a zvol and a target on TrueNAS, its iDRAC is pointed at it and reboots
# once), prints the run's summary and the iSCSI login proof (what each
# simulated server booted, from the lab's /lab/state, and the workflow's own
# login check), runs the workflow again in --plan mode (nothing left to do),
# and stops the lab.
# Usage: examples/iscsi_demo.sh [SBOT_BINARY [SERVERS]]   (default: build/sbot 2)
set -euo pipefail
sbot=${1:-build/sbot}
servers=${2:-2}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$sbot" ] || { echo "iscsi_demo: $sbot is not an executable (build first)" >&2; exit 2; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/sbot-iscsi-demo.XXXXXX")
lab_pid=
cleanup() {
  if [ -n "$lab_pid" ] && kill -0 "$lab_pid" 2>/dev/null; then
    kill -INT "$lab_pid"; wait "$lab_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

# --time-scale 0.1: the simulated jobs and reboots take a tenth of their time
"$sbot" lab --servers "$servers" --tgt --time-scale 0.1 --dir "$dir/lab" --site-out "$dir/site.lua" \
  >"$dir/lab.log" 2>&1 &
lab_pid=$!
for _ in $(seq 200); do
  [ -s "$dir/lab/lab.json" ] && break
  kill -0 "$lab_pid" 2>/dev/null || { cat "$dir/lab.log" >&2; echo "iscsi_demo: the lab did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$dir/lab/lab.json" ] || { echo "iscsi_demo: the lab did not start within 20 s" >&2; exit 1; }

run() {
  "$sbot" run "$here/../workflows/iscsi_only.lua" --site "$dir/site.lua" --runs-dir "$dir/runs" \
    --state-dir "$dir/state" --poll-interval 0.2 "$@"
}
echo "== sbot run workflows/iscsi_only.lua --site lab-site.lua"
rc=0
out=$(run 2>"$dir/run.log") || rc=$?
echo "$out"
[ $rc -eq 0 ] || { tail -n 40 "$dir/run.log" >&2; echo "iscsi_demo: the workflow failed (exit $rc)" >&2; exit $rc; }
record=$(sed -n 's/^run record: //p' <<<"$out")

echo
"$sbot" run "$here/iscsi_proof.lua" "$dir/lab" "$record"

echo
echo "== again, with --plan: a converged server has nothing to change"
run --plan 2>/dev/null
