#!/usr/bin/env bash
# bench/bench_fetch.sh - benchmark: fetching a real `go build std` store from
# a loopback Redis and nginx into an empty local store, through acache's
# production path and through the physical floor, in the same run.
#
# What it does:
#   1. starts redis-server and nginx (WebDAV) on 127.0.0.1 with free ports,
#      through tests/remote_servers.py (which stops them when this ends);
#   2. fills them with the records and objects of a real `go build std`:
#      from the data cache (--cache DIR) if it holds them, else by a cold
#      `go build std` through `acache gocacheprog --remote R --remote H`
#      (uploads to both), then a warm traced build from an empty local store
#      (the go command's requests are copied to a file: the get sequence,
#      and the session manifest the next session prefetches with), and the
#      nginx tree, the get sequence and the plan are kept in the cache;
#      Redis is loaded from the nginx tree (the same bytes under the same
#      names) with a pipelined SET;
#   3. runs bench_fetch (bench/bench_fetch.c), which interleaves acache and
#      floor runs on both servers and prints medians and acache/floor.
#
# What it must never do: be run as a test or have its timings asserted;
# write outside its temp dir and the data cache; touch the caller's GOCACHE
# or acache directory.
#
# Usage: bench/bench_fetch.sh [--runs N] [--threads N] [--cache DIR]
#          [--refill] [--build DIR] [--keep] [--only redis|http] [--help]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=5
THREADS=""
CACHE=${ACACHE_BENCH_FETCH_CACHE:-/var/tmp/acache-bench-fetch-cache}
REFILL=0
BUILD="$ROOT/build-bench"
KEEP=0
ONLY=""
FILL_ONLY=0
SERVE=0
COUNTS=0

usage() {
  cat <<EOF
usage: bench/bench_fetch.sh [options]

Fetches a real \`go build std\` store (records and objects) from a loopback
Redis and nginx into an empty local store, through acache (a tier chain with
session prefetch, replaying the go command's gets) and through the floor (a
plain C client, SHA-256, write+rename, same parallelism), interleaved; prints
wall and CPU (user+sys) medians, CPU per MiB and acache/floor.

  --runs N       runs per mode and server (default $RUNS)
  --threads N    floor threads (default: acache's prefetch threads, 4)
  --cache DIR    where the filled data is kept between runs
                 (default $CACHE; \$ACACHE_BENCH_FETCH_CACHE)
  --refill       ignore the cache and fill again with go build std
  --build DIR    cmake build directory (default $BUILD; Release, built
                 with the acache_cli and bench_fetch targets if needed)
  --only KIND    redis or http only
  --fill-only    fill the cache (if it is empty, or with --refill) and stop
  --counts N     instead of timing: N runs of each mode and server (one
                 at a time, --one) under strace -c -f and N under
                 /usr/bin/time, medians of system calls by kind, minor page
                 faults, context switches: figures that do not depend on how
                 busy the machine is (wall and CPU times do)
  --serve        start and fill the servers, print the bench_fetch --one
                 commands for them (for callgrind, strace) and keep them
                 until this script's input ends (or Ctrl-C)
  --keep         keep the temp directory
  --help         this text

TMPDIR=/dev/shm puts the local stores in tmpfs (no file system cost).
EOF
}
die() { echo "bench_fetch.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=${2:?}; shift 2 ;;
    --threads) THREADS=${2:?}; shift 2 ;;
    --cache) CACHE=${2:?}; shift 2 ;;
    --refill) REFILL=1; shift ;;
    --build) BUILD=${2:?}; shift 2 ;;
    --only) ONLY=${2:?}; shift 2 ;;
    --fill-only) FILL_ONLY=1; shift ;;
    --serve) SERVE=1; shift ;;
    --counts) COUNTS=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive integer"
case $ONLY in ""|redis|http) ;; *) die "--only: redis or http" ;; esac

if [ ! -x "$BUILD/acache" ] || { [ "$FILL_ONLY" = 0 ] && [ ! -x "$BUILD/bench/bench_fetch" ]; }; then
  echo "bench_fetch.sh: building $BUILD (Release)" >&2
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DACACHE_TESTS=OFF >&2
  cmake --build "$BUILD" -j2 --target acache_cli bench_fetch >&2
fi
for tool in redis-server nginx python3; do
  command -v "$tool" >/dev/null || die "$tool is needed (scripts/install-deps.sh)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/acache-fetch-XXXXXX")
SERVERS_PID=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [ -n "$SERVERS_PID" ]; then
    exec {SERVERS_IN}>&- 2>/dev/null || true
    wait "$SERVERS_PID" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then echo "kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private copies: others may rebuild $BUILD during the run.
mkdir -p "$WORK/bin"
cp "$BUILD/acache" "$WORK/bin/acache"
[ "$FILL_ONLY" = 1 ] || cp "$BUILD/bench/bench_fetch" "$WORK/bin/bench_fetch"
HELPER="$WORK/bin/acache"

mkfifo "$WORK/servers.in"
python3 "$ROOT/tests/remote_servers.py" serve "$WORK/servers" redis nginx \
  <"$WORK/servers.in" >"$WORK/servers.out" 2>"$WORK/servers.log" &
SERVERS_PID=$!
exec {SERVERS_IN}>"$WORK/servers.in"
for _ in $(seq 600); do
  grep -qx ready "$WORK/servers.out" 2>/dev/null && break
  kill -0 "$SERVERS_PID" 2>/dev/null || break
  sleep 0.1
done
grep -qx ready "$WORK/servers.out" || die "servers did not start: $(cat "$WORK/servers.log")"
port_of() { sed -n "s/^$1 .*port=\([0-9]*\).*/\1/p" "$WORK/servers.out"; }
REDIS_PORT=$(port_of redis) NGINX_PORT=$(port_of nginx)
REDIS_SPEC="redis://127.0.0.1:$REDIS_PORT/0?prefix=bench"
HTTP_SPEC="http://127.0.0.1:$NGINX_PORT/cache/bench"
TREE="$WORK/servers/nginx/root/cache/bench"

# fill: a cold build uploads to both remotes; a warm traced build from an
# empty local store records the go command's gets (and leaves the manifest
# of such a session in both remotes); the nginx tree, the gets and the plan
# (action output size of every entry the warm build fetched) go to $CACHE.
fill() {
  local GO; GO=${ACACHE_GO:-$(bash "$ROOT/scripts/go-toolchain.sh")}
  export GOTOOLCHAIN=local GOFLAGS='' GOENV=off GOPATH="$WORK/gopath"
  unset GOCACHEPROG GOEXPERIMENT
  mkdir -p "$WORK/fill/gocache" "$WORK/fill/dir" "$WORK/trace/gocache" "$WORK/trace/dir"
  echo "fill: cold go build std uploading to both remotes ($("$GO" version))" >&2
  (cd "$WORK" && GOCACHE="$WORK/fill/gocache" \
    GOCACHEPROG="$HELPER gocacheprog --dir $WORK/fill/dir --remote $REDIS_SPEC --remote $HTTP_SPEC" \
    "$GO" build std) >&2
  # The tracer: the go command's requests are copied to a file on their way.
  cat >"$WORK/bin/trace-prog" <<EOF
#!/bin/sh
tee "$WORK/trace/requests" | exec "\$@"
EOF
  chmod +x "$WORK/bin/trace-prog"
  echo "fill: warm traced go build std from an empty local store" >&2
  (cd "$WORK" && GOCACHE="$WORK/trace/gocache" \
    GOCACHEPROG="$WORK/bin/trace-prog $HELPER gocacheprog --dir $WORK/trace/dir --remote $REDIS_SPEC --remote $HTTP_SPEC" \
    "$GO" build std) >&2
  rm -rf "$CACHE.new"
  mkdir -p "$CACHE.new"
  python3 - "$WORK/trace/requests" "$WORK/trace/dir" "$CACHE.new" <<'EOF'
import base64, json, os, sys
reqs, store, out = sys.argv[1:4]
with open(reqs, "rb") as f, open(os.path.join(out, "gets.txt"), "w") as g:
    for line in f:
        line = line.strip()
        if not line.startswith(b"{"):
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("Command") == "get":
            g.write(base64.b64decode(r["ActionID"]).hex() + "\n")
# The plan: what a session that replays these gets stores (its manifest,
# rewritten by this session, lists just these), not what this one
# prefetched from the cold build's manifest.
wanted = set(open(os.path.join(out, "gets.txt")).read().split())
n = 0
with open(os.path.join(out, "plan.txt"), "w") as p:
    adir = os.path.join(store, "v1", "a")
    for shard in sorted(os.listdir(adir)):
        for name in sorted(os.listdir(os.path.join(adir, shard))):
            if len(name) != 64 or name not in wanted:
                continue
            w = open(os.path.join(adir, shard, name)).read().split()
            p.write("%s %s %s\n" % (w[1], w[2], w[3]))
            n += 1
print("fill: %d entries in the plan" % n, file=sys.stderr)
EOF
  cp -a "$TREE" "$CACHE.new/tree"
  "$GO" version >"$CACHE.new/go-version"
  rm -rf "$CACHE"
  mv "$CACHE.new" "$CACHE"
}

if [ "$REFILL" = 1 ] || [ ! -s "$CACHE/plan.txt" ] || [ ! -d "$CACHE/tree/cas" ]; then
  fill
else
  echo "bench_fetch.sh: remote data from $CACHE ($(cat "$CACHE/go-version"))" >&2
  mkdir -p "$TREE"
  cp -a "$CACHE/tree/." "$TREE/"
fi
[ "$FILL_ONLY" = 1 ] && exit 0
# Redis gets the nginx tree's bytes under the same names.
python3 - "$TREE" "$REDIS_PORT" <<'EOF'
import os, socket, sys
tree, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
n = 0
for ns in ("ac", "cas"):
    d = os.path.join(tree, ns)
    for name in os.listdir(d):
        data = open(os.path.join(d, name), "rb").read()
        key = ("bench:%s:%s" % (ns, name)).encode()
        s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key, len(data)) +
                  data + b"\r\n")
        n += 1
for _ in range(n):
    line = f.readline()
    if not line.startswith(b"+OK"):
        sys.exit("redis load: " + line.decode(errors="replace"))
print("redis: %d values loaded" % n, file=sys.stderr)
EOF

ARGS=(--runs "$RUNS" --gets "$CACHE/gets.txt" --plan "$CACHE/plan.txt" --dir "$WORK/runs")
[ -n "$THREADS" ] && ARGS+=(--threads "$THREADS")
[ "$ONLY" != http ] && ARGS+=(--redis "$REDIS_SPEC")
[ "$ONLY" != redis ] && ARGS+=(--http "$HTTP_SPEC")
mkdir -p "$WORK/runs"
# counts MODE SPEC: medians over $COUNTS runs of system calls (strace -c -f)
# and of faults and context switches (/usr/bin/time, without strace).
counts() {
  local mode=$1 spec=$2 i d
  for ((i = 0; i < COUNTS; i++)); do
    d=$(mktemp -d "$WORK/runs/c-XXXXXX")
    strace -c -f -o "$WORK/strace.$i" "$WORK/bin/bench_fetch" --one "$mode" --remote "$spec" \
      --gets "$CACHE/gets.txt" --plan "$CACHE/plan.txt" --dir "$d" >/dev/null 2>&1
    rm -rf "$d"; d=$(mktemp -d "$WORK/runs/c-XXXXXX")
    /usr/bin/time -o "$WORK/time.$i" -f "%R %w %c" "$WORK/bin/bench_fetch" --one "$mode" \
      --remote "$spec" --gets "$CACHE/gets.txt" --plan "$CACHE/plan.txt" --dir "$d" >/dev/null 2>&1
    rm -rf "$d"
  done
  python3 - "$WORK" "$COUNTS" <<'PYEOF'
import statistics, sys
work, n = sys.argv[1], int(sys.argv[2])
runs = []
for i in range(n):
    calls = {}
    for line in open("%s/strace.%d" % (work, i)):
        w = line.split()
        if len(w) >= 5 and w[0][0].isdigit() and w[-1] != "total":
            calls[w[-1]] = int(w[3])
    f = open("%s/time.%d" % (work, i)).read().split()
    runs.append((calls, [int(x) for x in f[-3:]]))
def med(fn):
    return int(statistics.median(fn(c, t) for c, t in runs))
groups = [("total", None), ("read+recv", ["read", "recvfrom", "recvmsg"]),
          ("write+send", ["write", "sendto", "sendmsg", "writev"]),
          ("poll", ["poll"]), ("futex", ["futex"]),
          ("sigmask", ["rt_sigprocmask", "rt_sigpending"]),
          ("file", ["openat", "close", "newfstatat", "fstat", "linkat", "unlink", "unlinkat",
                    "rename", "renameat", "renameat2", "mkdirat", "mkdir", "utimensat", "flock",
                    "chmod", "fchmod"]),
          ("getpid", ["getpid"])]
out = []
for name, keys in groups:
    out.append("%s %d" % (name, med(lambda c, t: sum(c.values()) if keys is None
                                    else sum(c.get(k, 0) for k in keys))))
out.append("| minflt %d vcsw %d ivcsw %d" % (med(lambda c, t: t[0]), med(lambda c, t: t[1]),
                                              med(lambda c, t: t[2])))
print("  ".join(out))
PYEOF
}
if [ "$COUNTS" != 0 ]; then
  command -v strace >/dev/null || die "--counts needs strace"
  echo "medians of $COUNTS runs each; syscalls from strace -c -f, the rest from /usr/bin/time; stores in $WORK/runs"
  for s in "$REDIS_SPEC" "$HTTP_SPEC"; do
    case $s in redis*) k=redis ;; *) k=http ;; esac
    [ -n "$ONLY" ] && [ "$ONLY" != "$k" ] && continue
    for m in acache floor; do
      printf '%-6s %-7s %s\n' "$k" "$m" "$(counts "$m" "$s")"
    done
  done
  exit 0
fi
if [ "$SERVE" = 1 ]; then
  for s in "$REDIS_SPEC" "$HTTP_SPEC"; do
    for m in acache floor; do
      echo "$WORK/bin/bench_fetch --one $m --remote '$s' --gets $CACHE/gets.txt --plan $CACHE/plan.txt --dir \$(mktemp -d)"
    done
  done
  echo "serving; end this script's input (Ctrl-D) or Ctrl-C to stop"
  cat >/dev/null || true
  exit 0
fi
echo "command: $WORK/bin/bench_fetch ${ARGS[*]}"
"$WORK/bin/bench_fetch" "${ARGS[@]}"
