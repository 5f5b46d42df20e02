#!/usr/bin/env bash
# `sbot runs report ID --html FILE` rendered by headless Chromium: a run with
# a site step, two servers of two steps each, one failed (a refused change,
# rolled back), one skipped, plans and artifacts; Chromium loads the page
# (--dump-dom: the elements are there as a browser parsed them) and takes a
# screenshot, whose pixels must show the outcome badge, the timeline's phase
# bars and the plan's diff colours. Also `sbot runs list/show` and the JUnit
# report of the same run. Without Chromium this test FAILS (it is a test
# dependency: vendor/packages).
set -u
sbot=$(realpath "${SBOT_BIN:-build/sbot}")
src=$(realpath "${SBOT_SOURCE_DIR:-.}")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbot-report.XXXXXX")
keep=${SBOT_REPORT_KEEP:-}   # a directory to copy report.html and report.png into (to look at them)
export SBOT_COMPONENT_PATH="$src/tests/support/components"
fail=0
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1"; fail=1; }

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
  echo "FAIL - chromium is not installed: it is a test dependency (vendor/packages; run vendor/bootstrap)"
  exit 1
fi

cd "$tmp"
cat >site.lua <<EOF
return {
  servers = {
    { id = "r630-01" },
    { id = "r630-02", components = { disk = { fail_apply_on = "bucket" } } },
    { id = "r630-03" },
  },
  components = {
    bucket = { state_file = "$tmp/{id}-bucket.json", want = { bucket = "images" } },
    disk = { state_file = "$tmp/{id}-disk.json", want = { bucket = "images", name = "vol" } },
    boot = { state_file = "$tmp/{id}-boot.json" },
  },
}
EOF
"$sbot" run "$src/tests/support/workflows/report_demo.lua" --site site.lua --runs-dir runs --jobs 2 \
  >run.out 2>run.err
rc=$?
[ $rc -eq 1 ] && ok "the run fails (exit 1): one server's step failed" || bad "the run exited $rc, not 1: $(cat run.out run.err)"
id=$(ls runs)

# ---- sbot runs list / show --------------------------------------------------
"$sbot" runs list runs >list.out 2>&1 || bad "sbot runs list failed: $(cat list.out)"
grep -Eq "^$id +FAILED +report_demo \\(apply\\) +r630-01, r630-02, r630-03 +[0-9.]+ (ms|s)$" list.out &&
  ok "runs list: id, outcome, workflow, servers, time" || bad "runs list: $(cat list.out)"
"$sbot" runs show "${id:0:12}" --runs-dir runs >show.out 2>&1 || bad "sbot runs show failed: $(cat show.out)"
grep -q "^run $id (apply) FAILED$" show.out && grep -q '^servers: r630-01, r630-02, r630-03$' show.out &&
  grep -Eq '^r630-02 +test_kv \(disk\) +failed' show.out && grep -Eq '^  r630-01 +test_kv \(boot\) +state\.json ' show.out &&
  ok "runs show ID-prefix: header, summary, artifacts" || bad "runs show: $(cat show.out)"

# ---- the report ------------------------------------------------------------
"$sbot" runs report "$id" --runs-dir runs --html report.html --junit junit.xml >rep.out 2>&1 ||
  bad "sbot runs report failed: $(cat rep.out)"
[ -s report.html ] || { bad "no report.html"; exit 1; }
if grep -Eq '(src|href)="(https?:)?//|@import|<script|<link ' report.html; then
  bad "the page loads something from elsewhere (it must be self-contained)"
else
  ok "the page is self-contained (no external assets, no script)"
fi

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --disable-dev-shm-usage --hide-scrollbars)
timeout 120 "$chromium" "${flags[@]}" --user-data-dir="$tmp/profile-dom" --dump-dom "file://$tmp/report.html" \
  >dom.html 2>chromium-dom.err
[ -s dom.html ] || { bad "chromium --dump-dom printed nothing: $(tail -5 chromium-dom.err)"; exit 1; }
has() { # name, regex over the DOM Chromium built
  if grep -Eq -- "$2" dom.html; then ok "DOM: $1"; else bad "DOM: $1 (no /$2/)"; fi
}
has "the outcome" '<span class="badge failed" id="outcome">FAILED</span>'
has "the summary table, a row per server and step" '<td class="mono">r630-02</td><td>test_kv \(disk\)</td><td class="status failed">failed</td>'
has "the timeline is an SVG" '<svg id="gantt"'
n=$(grep -o '<rect class="phase [a-z]*' dom.html | wc -l)
[ "$n" -ge 20 ] && ok "DOM: the timeline has a bar per phase ($n)" || bad "DOM: only $n phase bars"
has "a failed phase is marked in the timeline" '<rect class="phase process failed"'
has "the failure with its message" 'change 1 of 2 \(create kv/bucket\) failed: .*device refused bucket'
has "the skipped step with its reason" 'r630-02</span> / test_kv \(boot\): an earlier step \(disk\) failed'
has "the plan as a diff" '<span class="add">  \+ create kv/name: \(none\) -&gt; "vol"</span><span class="note">      \(wanted\)</span>'
has "links to the artifacts" "<a href=\"file://$tmp/runs/$id/artifacts/r630-01/boot/state.json\">"

timeout 120 "$chromium" "${flags[@]}" --user-data-dir="$tmp/profile-shot" --window-size=1300,1500 \
  --screenshot="$tmp/report.png" "file://$tmp/report.html" >chromium-shot.out 2>&1
[ -s report.png ] || { bad "no screenshot: $(tail -5 chromium-shot.out)"; exit 1; }
[ -n "$keep" ] && mkdir -p "$keep" && cp report.html report.png "$keep/"
# the screenshot's pixels: the colours the page draws with must be there
python3 - "$tmp/report.png" <<'EOF' || fail=1
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, chunks = 8, {}
idat = b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR": w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    if kind == b"IDAT": idat += body
    pos += 12 + n
bpp = {2: 3, 6: 4}[ctype]
raw = zlib.decompress(idat)
stride, prev, counts, i = w * bpp, bytearray(w * bpp), {}, 0
for y in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        px = bytes(line[x:x + 3]); counts[px] = counts.get(px, 0) + 1
    prev = line
def seen(name, hexrgb, least):
    n = counts.get(bytes.fromhex(hexrgb), 0)
    print(("ok   - " if n >= least else "FAIL - ") + "screenshot: %s (#%s, %d px)" % (name, hexrgb, n))
    return n >= least
good = all([
    seen("the FAILED badge and failure borders", "cf222e", 300),
    seen("discover bars", "0969da", 500),
    seen("process bars", "bc4c00", 100),
    seen("housekeep bars", "1a7f37", 100),
    seen("plan lines added", "dafbe1", 1000),
    seen("the failure box", "fff5f5", 1000),
])
print(("ok   - " if w >= 1200 and h >= 1400 else "FAIL - ") + "screenshot size %dx%d" % (w, h))
sys.exit(0 if good and w >= 1200 else 1)
EOF

# ---- JUnit -------------------------------------------------------------------
python3 - junit.xml <<'EOF' || fail=1
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = root.findall(".//testcase")
got = [(c.get("classname"), c.get("name"), "failure" if c.find("failure") is not None else
        "skipped" if c.find("skipped") is not None else "ok") for c in cases]
want = [("(site)", "bucket", "ok"), ("r630-01", "disk", "ok"), ("r630-01", "boot", "ok"),
        ("r630-02", "disk", "failure"), ("r630-02", "boot", "skipped"), ("r630-03", "disk", "ok"),
        ("r630-03", "boot", "ok")]
ok = got == want and root.get("tests") == "7" and root.get("failures") == "1" and root.get("skipped") == "1"
f = root.find(".//testcase[@name='disk'][@classname='r630-02']/failure")
ok = ok and "device refused bucket" in f.get("message")
print(("ok   - " if ok else "FAIL - ") + "junit: a testcase per server and step, the failure's message: %r" % (got,))
sys.exit(0 if ok else 1)
EOF

[ $fail -eq 0 ] && echo "report: all checks passed"
exit $fail
