#!/usr/bin/env bash
# vendor/bootstrap: a no-op when everything is installed, a clear error (exit
# 1, naming the packages and the command to run) when not root and something
# is missing, exit 2 for a bad option or an unreadable manifest.
set -u
boot=vendor/bootstrap
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbot-boot.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; fail=1; }

out=$("$boot" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q 'nothing to install' <<<"$out"; then ok "no-op when all present"; else bad "no-op ($rc): $out"; fi

printf 'coreutils\tbuild\tpresent\nsbot-no-such-package-xyz\ttest\tmissing on purpose\n' > "$tmp/packages"
chmod 644 "$tmp/packages"
# as an unprivileged user (a copy, so the checkout's permissions do not matter):
# must refuse and say what to install
cp "$boot" "$tmp/bootstrap"; chmod 755 "$tmp/bootstrap"
out=$(cd / && SBOT_PACKAGES="$tmp/packages" setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/bootstrap" 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q 'not root; install them with: sudo apt-get install sbot-no-such-package-xyz' <<<"$out"
then ok "not root: clear error"; else bad "not root ($rc): $out"; fi

out=$(SBOT_PACKAGES="$tmp/packages" "$boot" --build-only 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q 'all 1 packages present' <<<"$out"; then ok "--build-only skips test packages"; else bad "--build-only ($rc): $out"; fi

# a name an installed package provides (virtual) counts as present: pick one
# from dpkg's own database, so the case holds on any machine
virt=$(dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null |
  awk -F'|' '$1 ~ /^ii/ && $2 != "" { split($2, p, ","); sub(/ .*/, "", p[1]); print p[1] }' |
  while read -r v; do dpkg-query -W -f='${Status}' "$v" 2>/dev/null | grep -q ' installed$' || { echo "$v"; break; }; done)
if [ -n "$virt" ]; then
  printf '%s\tbuild\tprovided by another package\n' "$virt" > "$tmp/virtual"
  out=$(SBOT_PACKAGES="$tmp/virtual" "$boot" 2>&1); rc=$?
  if [ $rc -eq 0 ] && grep -q 'all 1 packages present' <<<"$out"; then ok "a provided name ($virt) is present"
  else bad "provided name $virt ($rc): $out"; fi
else
  echo "skip - no installed package provides a name that is not itself installed"
fi

out=$("$boot" --bogus 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "unknown option '--bogus'" <<<"$out"; then ok "bad option"; else bad "bad option ($rc): $out"; fi

out=$(SBOT_PACKAGES="$tmp/none" "$boot" 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "cannot read manifest" <<<"$out"; then ok "unreadable manifest"; else bad "manifest ($rc): $out"; fi

# every manifest line has a package, a known group and a purpose
if awk -F'\t' '!/^#/ && NF { if (NF != 3 || ($2 != "build" && $2 != "test") || $3 == "") { print; bad = 1 } } END { exit bad }' vendor/packages
then ok "manifest lines well formed"; else bad "malformed manifest lines above"; fi
exit $fail
