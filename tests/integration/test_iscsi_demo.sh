#!/usr/bin/env bash
# The README's main job: examples/iscsi_demo.sh starts `sbot lab --tgt`, runs
# workflows/iscsi_only.lua through the site file the lab wrote, prints the
# summary and the iSCSI login proof, runs the workflow again with --plan and
# stops the lab. Checks, on what the demo printed: both servers converged
# (zvol, portal, group, target, extent, mapping, service; BIOS, NIC, one
# reboot), each one's boot record shows it logged in to its own target as
# its own initiator through istgt and saw a LUN 0 of the zvol's size, with
# its own CHAP user (the lab's site gives each server CHAP credentials, kept
# in the lab's Vault), a login to that target without CHAP was refused (the
# proof's own login and the workflow's), the workflow's own login saw the
# same, the second run plans nothing, and no secret (of the shapes the lab
# makes) is in the output. tests/lua/iscsi_only_spec.lua looks for the CHAP
# secrets' very values in a run's output, log and record.
set -u
sbot=${SBOT_BIN:-build/sbot}
out=$(examples/iscsi_demo.sh "$sbot" 2>&1); rc=$?
fail=0
check() { if grep -Eq -- "$2" <<<"$out"; then echo "ok   - $1"; else echo "FAIL - $1 (no /$2/)"; fail=1; fi; }
absent() { if grep -Eq -- "$2" <<<"$out"; then echo "FAIL - $1 (/$2/ in the output)"; fail=1; else echo "ok   - $1"; fi; }
[ $rc -eq 0 ] && echo "ok   - demo exits 0" || { echo "FAIL - demo exited $rc"; fail=1; }
check "run summary ok" '^run [0-9TZ-]+-[0-9a-f]{6} \(apply\) ok$'
check "Vault pre-flight once, before the servers" '^\(site\) +vault +ok +0 +0 '
size=128849018880
for n in 01 02; do
  id="r630-$n"
  iqn="iqn\.2005-10\.org\.freenas\.ctl:r630-r630-$n\.openshift4\.16\.8"
  # 6 to 9 (zvol, group, CHAP credentials, target, extent, mapping; the portal and the
  # service (enable, start) are shared: made by whichever server comes first)
  check "$id: the iSCSI step made what it planned" "^$id +iscsi +ok +([6-9]) +\\1 "
  check "$id: the R630 step made BIOS, NIC and the reboot" "^$id +r630 +ok +3 +3 "
  check "$id: booted from iSCSI as its own initiator" "^$id: booted from iSCSI \(bios boot, boot #1\) as iqn\.2024-01\.org\.sbot:$id$"
  check "$id: logged in to its own target, LUN 0" "^  logged in to $iqn at 127\.0\.0\.1:[0-9]+, LUN 0$"
  check "$id: saw the zvol's LUN" "^  saw TrueNAS iSCSI Disk, $size bytes \(120\.0 GiB\): zvol tank/openshift_installations/r630_${id}_4_16_8$"
  check "$id: booted with its own CHAP user" "^  with CHAP user $id$"
  check "$id: a login without CHAP is refused" "^  a login without CHAP: refused \(authentication failure\)$"
  check "$id: the workflow's own login saw the same, with CHAP, and none without" "^  sbot's own check \(iscsi housekeep\): logged in as iqn\.2024-01\.org\.sbot:$id, LUN 0, $size bytes, CHAP user $id; without CHAP: refused$"
  check "$id: the second run plans nothing (iscsi)" "^$id +iscsi +ok +0 +0 "
  check "$id: the second run plans nothing (r630)" "^$id +r630 +ok +0 +0 "
done
check "the second run is a plan" '^run [0-9TZ-]+-[0-9a-f]{6} \(plan\) ok$'
absent "no TrueNAS API key" '[0-9]+-[A-Za-z0-9]{64}'
absent "no Vault token" 'hvs\.'
absent "no iDRAC password" 'calvin'
absent "no S3 secret key (40 base64 characters)" '[A-Za-z0-9+/]{40}'
absent "no word password, api_key or secret_id" 'password|api_key|secret_id'
[ $fail -eq 0 ] && echo "iscsi demo: all checks passed"
exit $fail
