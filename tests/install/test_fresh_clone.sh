#!/usr/bin/env bash
# A fresh clone stands alone: the tracked files (git ls-files, plus new files
# not yet committed) are copied into an empty temp dir with nothing beside
# them, and `sbot lab` runs from that copy (the built binary
# pointed at the copy's Lua library with SBOT_LUA_DIR) and from an installed,
# moved tree, and answers TrueNAS JSON-RPC calls whose arguments it validates
# against the schemas the repository carries; the README's main job
# (examples/iscsi_demo.sh) runs from the copy.
set -euo pipefail
src=${SBOT_SOURCE_DIR:?SBOT_SOURCE_DIR not set}
build=${SBOT_BUILD_DIR:?SBOT_BUILD_DIR not set}
sbot=${SBOT_BIN:?SBOT_BIN not set}
unset SBOT_TRUENAS_SCHEMAS SBOT_LUA_DIR
top=$(mktemp -d "${TMPDIR:-/tmp}/sbot-fresh.XXXXXX")
lab_pid=
cleanup() {
  if [ -n "$lab_pid" ] && kill -0 "$lab_pid" 2>/dev/null; then kill -INT "$lab_pid"; wait "$lab_pid" 2>/dev/null || true; fi
  rm -rf "$top"
}
trap cleanup EXIT
fail=0
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; fail=1; }

# 1. the copy: tracked and new (not ignored) files that exist
clone="$top/sbot"
mkdir -p "$clone"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$clone")
[ "$(ls -A "$top")" = sbot ] && ok "nothing beside the copy" || bad "something beside the copy: $(ls -A "$top")"
[ -f "$clone/lua/sbot/lab/truenas-schemas-v25_10_0.json" ] && ok "the schema subset is tracked" \
  || bad "lua/sbot/lab/truenas-schemas-v25_10_0.json is not in git ls-files"

# A TrueNAS call against a running lab: login, a query, and a create the
# middleware's schema refuses (unknown key) — proving the schemas were loaded.
cat > "$top/check.lua" <<'LUA'
local ws, json = require "sbot.ws", require "sbot.json"
-- the site file names its secrets as secret: references to the lab's Vault
local site = assert(require("sbot.site").load(arg[1]))
local t = site.truenas
local c = assert(ws.connect(t.url, { tls = t.tls, timeout = 10 }))
local id = 0
local function call(method, ...)
  id = id + 1
  assert(c:send(json.encode { jsonrpc = "2.0", id = id, method = method, params = json.array { ... } }))
  local m = assert(json.decode(assert(c:recv(10))))
  return m.result, m.error
end
local r = call("auth.login_ex", { mechanism = "API_KEY_PLAIN", username = t.user, api_key = t.api_key:reveal() })
assert(r and r.response_type == "SUCCESS", "login failed")
local pools = assert(call("pool.query"))
print("pool " .. pools[1].name)
local _, err = call("pool.dataset.create", { name = t.pool .. "/v1", type = "VOLUME", volsize = 16384, nmae = 1 })
print(err and err.data.reason or "accepted")
LUA

run_lab() { # $1 sbot binary, $2 label; the rest: env for it
  local bin=$1 label=$2; shift 2
  local dir="$top/lab-$label"
  rm -f "$top/lab.log"
  (cd "$top" && exec env "$@" "$bin" lab --servers 1 --dir "$dir" >"$top/lab.log" 2>&1) &
  lab_pid=$!
  for _ in $(seq 200); do
    [ -s "$dir/lab.json" ] && break
    kill -0 "$lab_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$dir/lab.json" ]; then
    bad "$label: sbot lab did not start: $(cat "$top/lab.log")"
  else
    out=$(cd "$top" && env "$@" "$bin" run "$top/check.lua" "$dir/site.lua" 2>&1) || true
    if grep -q '^pool tank$' <<<"$out" && grep -q '\.nmae: Extra inputs are not permitted' <<<"$out"; then
      ok "$label: sbot lab answers TrueNAS calls and validates them against its own schemas"
    else
      bad "$label: unexpected answer: $out"
    fi
  fi
  kill -INT "$lab_pid" 2>/dev/null || true
  wait "$lab_pid" 2>/dev/null || true
  lab_pid=
}

# 3. the built binary with the copy's Lua library
run_lab "$sbot" copy SBOT_LUA_DIR="$clone/lua"

# 4. the README's main job (examples/iscsi_demo.sh: sbot lab --tgt, the iscsi_only
# workflow, the iSCSI login proof) from the copy: its workflow, examples and Lua
demo=$(cd "$clone" && SBOT_LUA_DIR="$clone/lua" examples/iscsi_demo.sh "$sbot" 1 2>&1) && rc=0 || rc=$?
if [ $rc -eq 0 ] && grep -q '(apply) ok$' <<<"$demo" && grep -q '^r630-01: booted from iSCSI' <<<"$demo"; then
  ok "copy: examples/iscsi_demo.sh converges a server that then boots its zvol over iSCSI"
else
  bad "copy: examples/iscsi_demo.sh failed (exit $rc): $demo"
fi

# 5. an installed tree, moved away from its prefix
prefix="$top/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
[ -f "$prefix/share/sbot/lua/sbot/lab/truenas-schemas-v25_10_0.json" ] && ok "the schemas are installed" \
  || bad "share/sbot/lua/sbot/lab/truenas-schemas-v25_10_0.json not installed"
mv "$prefix" "$top/moved"
run_lab "$top/moved/bin/sbot" installed PATH="$PATH"

[ $fail -eq 0 ] && echo "fresh clone: all checks passed"
exit $fail
