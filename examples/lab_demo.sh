#!/usr/bin/env bash
# examples/lab_demo.sh: start `sbot lab` (two simulated R630 iDRACs, a
# TrueNAS, S3 and a Vault holding their credentials), run the inventory
# workflow against it with the site file the lab wrote (its secrets are read
# from the lab's Vault, which the workflow checks first), print the inventory
# it recorded, and stop the lab.
# Usage: examples/lab_demo.sh [SBOT_BINARY]   (default: build/sbot)
set -euo pipefail
sbot=${1:-build/sbot}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$sbot" ] || { echo "lab_demo: $sbot is not an executable (build first)" >&2; exit 2; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/sbot-lab-demo.XXXXXX")
lab_pid=
cleanup() {
  if [ -n "$lab_pid" ] && kill -0 "$lab_pid" 2>/dev/null; then
    kill -INT "$lab_pid"; wait "$lab_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

"$sbot" lab --servers 2 --dir "$dir/lab" --site-out "$dir/site.lua" >"$dir/lab.log" 2>&1 &
lab_pid=$!
for _ in $(seq 100); do
  [ -s "$dir/site.lua" ] && break
  kill -0 "$lab_pid" 2>/dev/null || { cat "$dir/lab.log" >&2; echo "lab_demo: the lab did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$dir/site.lua" ] || { echo "lab_demo: no site file after 10 s" >&2; exit 1; }

SBOT_COMPONENT_PATH="$here/components" "$sbot" run "$here/inventory.lua" --site "$dir/site.lua" --runs-dir "$dir/runs"
for f in "$dir"/runs/*/artifacts/*/bmc_inventory/inventory.json; do
  echo "== ${f#"$dir"/runs/*/artifacts/}"
  cat "$f"
done
