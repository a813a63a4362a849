#!/usr/bin/env bash
# test_spill_cli.sh - `acache gocacheprog` on a cache whose file system has
# no free block: its spill store cannot be opened (a '?' in $TMPDIR makes
# the spill store's spec unreadable), yet the put is answered with a path
# holding its bytes (the store's own overflow), and no spill directory is
# left behind in $TMPDIR once the helper has exited. Needs root to mount a
# tmpfs (skipped, saying so, where mount is not permitted).
set -euo pipefail
: "${ACACHE_BIN:?set by CTest}"
A=$(readlink -f "$ACACHE_BIN")
WORK=$(mktemp -d /tmp/acache-spill-test-XXXXXX)
M="$WORK/full"
cleanup() {
  mountpoint -q "$M" 2>/dev/null && umount "$M"
  rm -rf "$WORK"
}
trap cleanup EXIT
unset ACACHE_DIR ACACHE_REMOTE ACACHE_MAX_SIZE ACACHE_UMASK
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$M"
if ! mount -t tmpfs -o size=1m tmpfs "$M" 2>"$WORK/err"; then
  echo "SKIP: cannot mount a tmpfs ($(cat "$WORK/err")); run as root to test a full cache"
  exit 0
fi
mkdir "$M/c"
"$A" stats --dir "$M/c" >/dev/null 2>&1 || true  # the store's directories, while there is room
head -c 2000000 /dev/zero >"$M/filler" 2>/dev/null || true
T="$WORK/odd?tmp"
mkdir -p "$T"
TMPDIR="$T" timeout 60 python3 - "$A" "$M/c" >"$WORK/out" 2>"$WORK/err" <<'PY' || { cat "$WORK/err"; fail "the put through a full cache"; }
import base64, hashlib, json, subprocess, sys
a, d = sys.argv[1], sys.argv[2]
body = b"bytes of a full cache\n" * 100
b64 = lambda raw: base64.b64encode(raw).decode()
req = {"ID": 1, "Command": "put", "ActionID": b64(hashlib.sha256(b"a").digest()),
       "OutputID": b64(hashlib.sha256(body).digest()), "BodySize": len(body)}
data = (json.dumps(req) + "\n" + '"' + b64(body) + '"\n').encode()
p = subprocess.run([a, "gocacheprog", "--dir", d], input=data, capture_output=True, timeout=50)
lines = [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]
put = [l for l in lines if l.get("ID") == 1]
assert put, p.stderr.decode()
assert "Err" not in put[0], put[0]
print(put[0]["DiskPath"])
sys.stderr.write(p.stderr.decode())
PY
grep -q "no room elsewhere" "$WORK/err" || fail "the spill store was expected to fail: $(cat "$WORK/err")"
left=$(ls -A "$T")
[ -z "$left" ] || fail "left behind in \$TMPDIR: $left"
echo "a spill store that cannot be opened leaves nothing behind: ok"
