#!/usr/bin/env bash
# The README's main job: examples/lab_demo.sh starts `sbot lab`, runs the
# inventory workflow through the site file the lab wrote, and prints what the
# simulated iDRACs answered. Checks the run succeeded for both servers and that
# the recorded inventory holds what the lab's iDRACs serve (model, service
# tags, NICs reached by following links). The lab's site file takes every
# password from the lab's Vault, which the workflow checks first (site step).
set -u
sbot=${SBOT_BIN:-build/sbot}
out=$(examples/lab_demo.sh "$sbot" 2>&1); rc=$?
fail=0
check() { if grep -Eq -- "$2" <<<"$out"; then echo "ok   - $1"; else echo "FAIL - $1 (no /$2/)"; fail=1; fi; }
[ $rc -eq 0 ] && echo "ok   - demo exits 0" || { echo "FAIL - demo exited $rc"; fail=1; }
check "run summary ok" '^run [0-9TZ-]+-[0-9a-f]{6} \(apply\) ok$'
check "Vault pre-flight once, before the servers" '^\(site\) +vault +ok +0 +0 '
check "r630-01 inventoried" '^r630-01 +bmc_inventory +ok +0 +0 '
check "r630-02 inventoried" '^r630-02 +bmc_inventory +ok +0 +0 '
check "model from the BMC" '"model": "PowerEdge R630"'
check "service tag of server 1" '"service_tag": "LAB0001"'
check "service tag of server 2" '"service_tag": "LAB0002"'
check "NICs followed through links" '"id": "NIC.Integrated.1-1-1"'
if grep -q 'password' <<<"$out"; then echo "FAIL - the word password appears in the output"; fail=1; fi
[ $fail -eq 0 ] && echo "lab demo: all checks passed"
exit $fail
