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
echo "install: relocatable tree works ($moved)"
