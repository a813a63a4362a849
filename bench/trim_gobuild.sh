#!/usr/bin/env bash
# trim_gobuild.sh - what the automatic trim costs a warm `go build std`
# through `acache gocacheprog`. A warm build makes no puts, so it never
# starts a trim itself; the trim that can meet it is one another process's
# put started. So this measures warm builds while the real automatic trim
# runs: a second `acache gocacheprog` on a large store (bench_trim
# --fill-only) over its --max-size, made due and started by one put, kept
# alive for the whole build, then closed; against warm builds beside the
# same second helper, started the same way, 3 s before the build too, but
# with its trim not due: the only difference is the trim. Interleaved, in
# alternating order (so that neither side always comes first), same
# machine, same run; --builds K builds (default 5) beside each helper;
# prints each run, the medians of all builds and their ratio, and the
# median of the runs' own ratios (each run's two sides are seconds apart,
# so the load other work puts on the machine cancels better).
# --control makes the trim not due in both: what the difference is without
# any trim (the noise). A benchmark: it never fails on a timing.
#
#   bench/trim_gobuild.sh [--acache PATH] [--bench-trim PATH] [--runs N]
#                         [--entries N] [--dir DIR] [--builds K] [--control]
#
# Needs a go that honours GOCACHEPROG ($ACACHE_GO, else what
# scripts/go-toolchain.sh prints), and bench_trim.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
A="$SRC/build/acache"
B="$SRC/build/bench/bench_trim"
RUNS=15
ENTRIES=300000
PARENT=${TMPDIR:-/tmp}
CONTROL=0
BUILDS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --acache) A=$2; shift 2 ;;
    --bench-trim) B=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --entries) ENTRIES=$2; shift 2 ;;
    --dir) PARENT=$2; shift 2 ;;
    --control) CONTROL=1; shift ;;
    --builds) BUILDS=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
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
echo "cold go build std"
"$GO" build std
python3 - "$A" "$GO" "$WORK/junk" "$RUNS" "$CONTROL" "$BUILDS" <<'PY'
import base64, hashlib, json, os, statistics, subprocess, sys, time

acache, go, junk, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
control = sys.argv[5] == "1"
builds = int(sys.argv[6])

def stats():
    out = subprocess.run([acache, "stats", "--dir", junk, "--json"], capture_output=True, check=True)
    return json.loads(out.stdout)

def warm_build():
    t0 = time.monotonic()
    subprocess.run([go, "build", "std"], check=True)
    return time.monotonic() - t0

def start_helper(max_size, due):
    """A gocacheprog on the junk store, left running, whose one put starts
    the automatic trim if it was made due (else the last trim is made to
    look just finished, and the put starts nothing)."""
    now = time.time_ns() if not due else 1
    with open(os.path.join(junk, "v1", "trim.state"), "w") as f:
        f.write(f"acache-trim-v1\nstarted {now}\nfinished {now}\n")
    p = subprocess.Popen([acache, "gocacheprog", "--dir", junk, "--max-size", str(max_size),
                          "--grace", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.stdout.readline()  # the handshake
    body = os.urandom(64)
    req = {"ID": 1, "Command": "put", "ActionID": base64.b64encode(os.urandom(32)).decode(),
           "OutputID": base64.b64encode(hashlib.sha256(body).digest()).decode(), "BodySize": 64}
    p.stdin.write(json.dumps(req).encode() + b"\n" + b'"' + base64.b64encode(body) + b'"\n')
    p.stdin.flush()
    p.stdout.readline()  # its answer: the trim has started by now
    return p

def build_beside_helper(max_size, due):
    p = start_helper(max_size, due)
    time.sleep(3)  # past the trim's listing, into its removals
    t = [warm_build() for _ in range(builds)]
    st = stats()
    running = due and st["last_trim_ns"] > 1 and not st["last_trim_finished"]
    p.stdin.close()
    p.wait()
    return t, running

size = stats()["bytes"]
alone, during, ratios = [], [], []
for i in range(runs):
    # Each run asks for a tenth less, so the trim has work the whole build.
    max_size = size * (9 - i % 8) // 10
    if i % 2 == 0:
        a = build_beside_helper(max_size, False)[0]
    d, running = build_beside_helper(max_size, not control)
    if i % 2 == 1:
        a = build_beside_helper(max_size, False)[0]
    alone += a
    during += d
    ratios.append(statistics.median(d) / statistics.median(a))
    print(f"run {i + 1}: median of {builds}: alone {statistics.median(a):.3f} s, "
          f"during the automatic trim {statistics.median(d):.3f} s ({ratios[-1]:.3f}x) "
          f"(trim {'still running at the end' if running else 'finished before the end' if not control else 'not run: --control'})",
          flush=True)
ma, md = statistics.median(alone), statistics.median(during)
print(f"warm go build std: median {ma:.3f} s alone, {md:.3f} s during the automatic trim: "
      f"{md / ma:.3f}x ({(md / ma - 1) * 100:+.1f}%; target <= +1%: "
      f"{'PASS' if md / ma <= 1.01 else 'MISS'})")
mr = statistics.median(ratios)
print(f"median of the {runs} runs' ratios: {mr:.3f}x ({(mr - 1) * 100:+.1f}%)")
after = stats()
print(f"the trims removed {after['trimmed_entries']} entries in all")
PY
