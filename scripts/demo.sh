#!/usr/bin/env bash
# demo.sh - the main job: builds acache, then runs `go build std` through
# `acache gocacheprog` on the local disk store twice, cold (empty cache) then
# warm, and prints the hits and the time saved. Installs what it needs from
# Debian's archive first, and takes Go 1.26 from scripts/go-toolchain.sh
# (Debian's package, unpacked under its cache directory on first use: no
# rebuild, nothing installed). Leaves nothing behind but build/ and that
# toolchain. Prints how long the set-up took.
#
# Environment: ACACHE_DEMO_DIR (default: a fresh temp dir, removed after),
# DEMO_TARGET (default: std), DEMO_GO (the Go release, default 1.26).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SETUP_START=$(date +%s.%N)

bash scripts/install-deps.sh
GO=$(bash scripts/go-toolchain.sh --version "${DEMO_GO:-1.26}")
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DACACHE_TESTS=OFF -DACACHE_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target acache_cli >/dev/null
ACACHE="$ROOT/build/acache"
SETUP_END=$(date +%s.%N)

WORK=${ACACHE_DEMO_DIR:-$(mktemp -d /tmp/acache-demo-XXXXXX)}
cleanup() { [ -n "${ACACHE_DEMO_DIR:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/cache" "$WORK/gocache"

export GOTOOLCHAIN=local GOPATH="$WORK/gopath"
export GOCACHE="$WORK/gocache"
export GOCACHEPROG="$ACACHE gocacheprog --dir $WORK/cache -v"
TARGET=${DEMO_TARGET:-std}

run() {
  local label=$1 start end
  start=$(date +%s.%N)
  "$GO" build "$TARGET" 2>"$WORK/$label.log"
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l 2>/dev/null || python3 -c "print($end - $start)"
}

printf 'set-up (packages, Go toolchain, acache build): %.1f s\n' \
  "$(python3 -c "print($SETUP_END - $SETUP_START)")"
echo "acache demo: $("$GO" version), go build $TARGET through $ACACHE gocacheprog"
echo "cache directory: $WORK/cache"
cold=$(run cold)
warm=$(run warm)
summary() { grep -h "gocacheprog:.*gets" "$WORK/$1.log" | tail -1 | sed 's/^acache: gocacheprog: //'; }
printf '\n%-6s %8s  %s\n' run seconds "acache -v summary"
printf '%-6s %8.2f  %s\n' cold "$cold" "$(summary cold)"
printf '%-6s %8.2f  %s\n' warm "$warm" "$(summary warm)"
python3 - "$cold" "$warm" "$WORK/warm.log" "$WORK/cache" <<'PY'
import os, re, sys
cold, warm, log, cache = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
text = open(log).read()
m = re.search(r"(\d+) gets \((\d+) hits, (\d+) misses\)", text)
gets, hits = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
seen = {}  # objects are hard-linked from their actions: count each file once
for d, _, fs in os.walk(cache):
    for f in fs:
        st = os.lstat(os.path.join(d, f))
        seen[(st.st_dev, st.st_ino)] = st.st_size
size = sum(seen.values())
print()
print(f"warm build: {hits} of {gets} gets were hits ({100.0 * hits / max(gets, 1):.1f}%)")
print(f"time saved: {cold - warm:.2f} s of {cold:.2f} s ({100.0 * (cold - warm) / cold:.1f}%), "
      f"warm build {cold / max(warm, 1e-9):.1f}x faster")
print(f"cache size: {size / 1048576:.1f} MiB")
PY
