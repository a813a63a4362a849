#!/usr/bin/env bash
# trim_gobuild.sh - what a running trim costs a warm `go build std` through
# `acache gocacheprog`. A warm build makes no puts, so it never starts an
# automatic trim itself; the trim that can meet it is one started by an
# earlier put (of this or another process). So: warm builds alone, and warm
# builds while a trim with much to remove runs on a large store on the same
# file system, at the automatic trim's priorities (nice 19, best-effort I/O
# priority 7), interleaved, same machine, same run. Prints each time, the
# medians and their ratio. A benchmark: it never fails on a timing.
#
#   bench/trim_gobuild.sh [--acache PATH] [--bench-trim PATH] [--runs N]
#                         [--entries N] [--dir DIR]
#
# Needs a go that honours GOCACHEPROG ($ACACHE_GO, else what
# scripts/go-toolchain.sh prints), and bench_trim (build-bench or build).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
A="$SRC/build/acache"
B="$SRC/build/bench/bench_trim"
RUNS=5
ENTRIES=400000
PARENT=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do
  case "$1" in
    --acache) A=$2; shift 2 ;;
    --bench-trim) B=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --entries) ENTRIES=$2; shift 2 ;;
    --dir) PARENT=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "trim_gobuild.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
GO=${ACACHE_GO:-$(bash "$SRC/scripts/go-toolchain.sh")}
A=$(readlink -f "$A")
B=$(readlink -f "$B")
WORK=$(mktemp -d "$PARENT/acache-trim-gobuild-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export GOTOOLCHAIN=local GOFLAGS= GOENV=off GOPATH="$WORK/gopath" GOCACHE="$WORK/gocache"
export GOCACHEPROG="$A gocacheprog --dir $WORK/cache"
echo "go: $("$GO" version); acache: $("$A" version); nproc: $(nproc)"
echo "store for the trim: $ENTRIES entries ($B --fill-only)"
"$B" --entries "$ENTRIES" --fill-only "$WORK/junk" >/dev/null 2>&1
size=$("$A" stats --dir "$WORK/junk" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
echo "cold go build std"
"$GO" build std

now() { python3 -c 'import time; print(time.monotonic())'; }
build() { # build -> wall seconds of one warm go build std
  local t0 t1
  t0=$(now)
  "$GO" build std
  t1=$(now)
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}
alone=() during=()
for i in $(seq 1 "$RUNS"); do
  alone+=("$(build)")
  # Each run trims a tenth more of the store, so that the trim has work
  # for the whole build (it says so below if it ran out).
  max=$(( size * (9 - i) / 10 ))
  nice -n 19 ionice -c 2 -n 7 "$A" trim --quick --dir "$WORK/junk" --max-size "$max" --grace 0 \
    >"$WORK/trim$i.log" 2>&1 &
  tpid=$!
  sleep 0.2
  during+=("$(build)")
  if kill -0 "$tpid" 2>/dev/null; then
    state="still running at the end of the build"
    kill "$tpid" 2>/dev/null || true
  else
    state="finished before the build did: $(head -1 "$WORK/trim$i.log")"
  fi
  wait "$tpid" 2>/dev/null || true
  echo "run $i: alone ${alone[-1]} s, during a trim ${during[-1]} s (trim $state)"
done
python3 - "${alone[*]}" "${during[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
d = [float(x) for x in sys.argv[2].split()]
ma, md = statistics.median(a), statistics.median(d)
print(f"warm go build std: median {ma:.3f} s alone, {md:.3f} s during a trim: {md / ma:.3f}x "
      f"({(md / ma - 1) * 100:+.1f}%; target <= +1%: {'PASS' if md / ma <= 1.01 else 'MISS'})")
PY
