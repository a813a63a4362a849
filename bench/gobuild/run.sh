#!/usr/bin/env bash
# bench/gobuild/run.sh - benchmark: real `go build` through `acache gocacheprog`
# against the go command's own build cache, on this machine, in the same run.
#
# What it measures, for each target (`go build std`, `go build std cmd`) and
# each mode -- (own) GOCACHE only, GOCACHEPROG unset; (acache) GOCACHEPROG=
# "acache gocacheprog --dir DIR -v" with a fresh DIR and a fresh GOCACHE --:
#   * one cold build from empty directories (wall time of the whole go command);
#   * N warm builds (default 5), interleaved own, acache, own, acache, ... so
#     machine noise falls on both modes alike; the median is reported;
#   * ratios acache/own for the cold time and the warm median.
# Also the helper's peak RSS (VmHWM) growth over one 64 MiB put driven over a
# pipe with the GOCACHEPROG framing, against a helper that did a tiny put.
# With remotes (default for the std target; --remotes, --remote-targets), on
# a redis-server, an nginx (WebDAV) and an S3 server (s3rver, spoken to
# directly: see below) that it starts on 127.0.0.1 through
# tests/remote_servers.py, more modes join the warm runs:
#   (redis) (http) (s3)  an empty --dir and GOCACHE every run, the remote
#                  full (filled once, untimed, by a cold build uploading to
#                  all of them, then primed: see below);
#   (s3http)       the same through an s3:// remote whose endpoint is the
#                  http mode's nginx: S3 path-style names are the http
#                  remote's paths (/cache/bench/ac/<hex>), so it reads the
#                  very files the http mode reads, signed by libcurl as on
#                  S3 (nginx ignores the signature);
#   (dead) (hang)  the acache mode's warm --dir with a remote configured that
#                  refuses connections, or accepts them and never answers;
#   (s3dead) (s3hang) the same with an s3:// remote.
# redis, http and s3 are compared with own (target: 1.5x), the dead and
# hanging ones with acache (target: 1.05x); s3http's helper CPU time (user +
# system, from its -v line) with http's (target: 1.2x: signing must cost
# little; the test server's speed is not acache's), and s3's (s3rver) too,
# for information. Why s3http: s3rver (JavaScript) takes milliseconds a
# request where nginx takes microseconds, so every request of the s3 mode
# blocks in poll(2) and wakes, which costs the helper system time that
# nginx's answers do not (strace of the helper, same build: ~2,600 poll
# waits against ~750, twice the futex calls and voluntary context switches);
# the same server for both isolates what the S3 transport itself costs.
# Why s3rver directly: the tests' SigV4-checking proxy (tests/s3_proxy.py)
# recomputes every signature in Python and forwards every request, which
# made the s3 build 5x slower again (22 s against 4 s) and so distorted the
# helper's waits more; the helper signs every request all the same (with
# s3rver's own test key, S3RVER), and the tests check the signatures.
# Priming: after the fill, one untimed warm build per remote mode, so that
# every timed run finds the warm build's prefetch manifest (the cold build's
# lists ~400 ids a warm build never asks for; the first warm session
# replaces it) and any object an upload missed has been stored: every timed
# run of every remote mode then fetches the same entries.
# A last mode, (floor), is the protocol's own cost:
# floor.c, a helper that answers every get of (a copy of) the acache mode's
# store from memory and writes puts to files unhashed and unchecked, cold
# and warm, so that acache/floor shows how far acache's helper is from the
# fastest any GOCACHEPROG helper can be here. With --floor-spin USEC two
# more modes join it, cold and warm: (floor-spin) the same helper spinning up
# to USEC microseconds for the next request before it blocks (floor.c
# --spin), and (floor-aa) a second, unchanged floor: the A/A pair that shows
# how far two identical modes come apart on this machine.
# With --remote-floor, the remote build's floor joins the warm runs:
# (redis-floor) (http-floor) the floor helper above, warm, and from the
# moment the go command starts it, bench_fetch's floor client
# (bench/bench_fetch.c: per entry one round trip, the bytes read into a
# reused buffer, hashed, written and renamed; 4 threads, --fetch-threads) fetching from that
# remote, into an empty directory, every entry the first warm run of the
# redis (http) mode stored; the time runs until both are done. That is the least a warm build from an empty
# local store and a full remote can cost on this machine: the protocol at
# its floor and the fetch at its floor, overlapped perfectly, with nothing
# waiting on anything. A ratio to own above a target for the remote modes
# shows that no helper can meet it here.
# Needs a C compiler (cc, or $CC); skipped with a message without one.
# Times come from a monotonic clock (Python time.monotonic) around the go
# command. Verdicts against the targets are printed, never enforced: the exit
# status is non-zero only when a build (or the RSS driver) fails.
#
# What it must never do: be run as a test or have its timings asserted by one
# (timings on shared machines are noise; tests check behaviour, this reports
# numbers); write outside its temp dir (--keep leaves that dir for a look);
# touch the caller's GOCACHE or acache directory.
#
# Usage: bench/gobuild/run.sh [--runs N] [--cold-runs N] [--targets LIST]
#                             [--remotes LIST] [--remote-targets LIST]
#                             [--acache PATH] [--go VERSION|PATH] [--floor-spin USEC]
#                             [--remote-floor] [--fetch-threads N] [--bench-fetch PATH] [--keep]
#                             [--help]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY="$HERE/gobench.py"

RUNS=5
COLD_RUNS=1
TARGETS="std,std cmd"
ACACHE=""
KEEP=0
RSS_MIB=64
REMOTES="redis,http,s3,s3http,dead,hang,s3dead,s3hang"
REMOTE_TARGETS="std"
FLOOR_SPIN=""
REMOTE_FLOOR=0
BENCH_FETCH=""
FETCH_THREADS=4
GO_WANT=1.26

usage() {
  cat <<EOF
usage: bench/gobuild/run.sh [options]

Times \`go build std\` and \`go build std cmd\` cold and warm with the go
command's own cache and through \`acache gocacheprog\`, and measures the
helper's peak RSS growth over a 64 MiB put. Prints medians and acache/own
ratios; exits non-zero only if a build fails.

  --runs N         warm runs per target and mode (default $RUNS)
  --cold-runs N    cold runs per target and mode, each from empty
                   directories; the median is reported (default $COLD_RUNS)
  --targets LIST   comma-separated go build targets (default "std,std cmd";
                   e.g. --targets std)
  --remotes LIST   remote modes, comma-separated, from redis,http,s3,s3http,
                   dead,hang,s3dead,s3hang
                   (default all; "none" for none)
  --remote-targets LIST
                   the targets that get the remote modes (default "std")
  --acache PATH    the acache binary (default \$PWD/build/acache, built with
                   cmake in Release mode if missing)
  --floor-spin USEC
                   also run floor-spin (floor.c --spin USEC: look for the
                   next request for up to USEC microseconds before blocking)
                   and floor-aa (an unchanged floor again: the A/A noise),
                   cold and warm, interleaved with the others; e.g.
                   --targets std --remotes none --runs 15 --floor-spin 50
  --remote-floor   also run redis-floor and http-floor (with the redis and
                   http modes): the floor helper and bench_fetch's floor
                   client fetching the same entries, at once (see the top)
  --fetch-threads N
                   the remote floors' fetch threads (default $FETCH_THREADS, as
                   acache's prefetch)
  --bench-fetch PATH
                   bench_fetch for --remote-floor (default: bench/bench_fetch
                   in the build directory of --acache)
  --go VERSION     the Go release to build with (default $GO_WANT; 1.23 to
                   1.26), from scripts/go-toolchain.sh --version VERSION, or
                   the path of a go command
  --keep           keep the temp directory (caches and logs)
  --help           this text

Needs a go that honours GOCACHEPROG: what scripts/go-toolchain.sh --version
prints (\$ACACHE_GO when it is that release; otherwise fetched from Debian's
archive once and kept). The go used is printed at the top. GOTOOLCHAIN=local
is always set.
EOF
}

die() { echo "run.sh: $*" >&2; exit 2; }
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }

while [ $# -gt 0 ]; do
  case $1 in
    --runs) [ $# -ge 2 ] || die "--runs needs a value"; posint --runs "$2"; RUNS=$2; shift 2 ;;
    --runs=*) posint --runs "${1#*=}"; RUNS=${1#*=}; shift ;;
    --cold-runs) [ $# -ge 2 ] || die "--cold-runs needs a value"; posint --cold-runs "$2"; COLD_RUNS=$2; shift 2 ;;
    --cold-runs=*) posint --cold-runs "${1#*=}"; COLD_RUNS=${1#*=}; shift ;;
    --targets) [ $# -ge 2 ] || die "--targets needs a value"; TARGETS=$2; shift 2 ;;
    --targets=*) TARGETS=${1#*=}; shift ;;
    --remotes) [ $# -ge 2 ] || die "--remotes needs a value"; REMOTES=$2; shift 2 ;;
    --remotes=*) REMOTES=${1#*=}; shift ;;
    --remote-targets) [ $# -ge 2 ] || die "--remote-targets needs a value"; REMOTE_TARGETS=$2; shift 2 ;;
    --remote-targets=*) REMOTE_TARGETS=${1#*=}; shift ;;
    --acache) [ $# -ge 2 ] || die "--acache needs a value"; ACACHE=$2; shift 2 ;;
    --acache=*) ACACHE=${1#*=}; shift ;;
    --floor-spin) [ $# -ge 2 ] || die "--floor-spin needs a value"; posint --floor-spin "$2"; FLOOR_SPIN=$2; shift 2 ;;
    --floor-spin=*) posint --floor-spin "${1#*=}"; FLOOR_SPIN=${1#*=}; shift ;;
    --remote-floor) REMOTE_FLOOR=1; shift ;;
    --fetch-threads) [ $# -ge 2 ] || die "--fetch-threads needs a value"; posint --fetch-threads "$2"; FETCH_THREADS=$2; shift 2 ;;
    --fetch-threads=*) posint --fetch-threads "${1#*=}"; FETCH_THREADS=${1#*=}; shift ;;
    --bench-fetch) [ $# -ge 2 ] || die "--bench-fetch needs a value"; BENCH_FETCH=$2; shift 2 ;;
    --bench-fetch=*) BENCH_FETCH=${1#*=}; shift ;;
    --go) [ $# -ge 2 ] || die "--go needs a value"; GO_WANT=$2; shift 2 ;;
    --go=*) GO_WANT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# split_list VAR TEXT: the comma-separated items of TEXT, blanks squeezed,
# empty ones dropped, into the array VAR.
split_list() {
  local -n _out=$1
  local item
  _out=()
  IFS=',' read -r -a _raw <<<"$2"
  for item in "${_raw[@]}"; do
    item=$(echo "$item" | xargs)
    [ -n "$item" ] && _out+=("$item")
  done
  return 0
}
# Targets: each is the argument list of go build.
declare -a TLIST=() RLIST=() _rt=()
split_list TLIST "$TARGETS"
[ ${#TLIST[@]} -gt 0 ] || die "--targets is empty"
if [ "$REMOTES" != none ]; then
  split_list RLIST "$REMOTES"
  for r in "${RLIST[@]}"; do
    case $r in
      redis|http|s3|s3http|dead|hang|s3dead|s3hang) ;;
      *) die "--remotes: unknown mode '$r' (want redis, http, s3, s3http, dead, hang, s3dead, s3hang or none)" ;;
    esac
  done
fi
declare -A HAS_REMOTES=()
split_list _rt "$REMOTE_TARGETS"
for t in "${_rt[@]}"; do HAS_REMOTES[$t]=1; done
floor_modes() { # the floor modes, in run order: the spin between the A and the A
  if [ -n "$FLOOR" ]; then
    if [ -n "$FLOOR_SPIN" ]; then echo "floor floor-spin floor-aa"; else echo floor; fi
  fi
}
is_floor() { case $1 in floor|floor-spin|floor-aa) return 0 ;; esac; return 1; }
modes_of() { # modes_of TARGET -> the warm modes of a target, in run order:
  # the modes that write nothing first, the ones that fill a store last
  local m="own acache" r
  m="$m $(floor_modes)"
  if [ -n "${HAS_REMOTES[$1]:-}" ]; then
    for r in dead hang s3dead s3hang redis http s3http s3; do
      if [[ " ${RLIST[*]} " == *" $r "* ]]; then m="$m $r"; fi
    done
    if [ "$REMOTE_FLOOR" = 1 ] && [ -n "$FLOOR" ]; then
      for r in redis http; do
        if [[ " ${RLIST[*]} " == *" $r "* ]]; then m="$m $r-floor"; fi
      done
    fi
  fi
  echo "$m"
}

# The acache binary: default $PWD/build/acache, built if missing.
if [ -z "$ACACHE" ]; then
  ACACHE="$PWD/build/acache"
  if [ ! -x "$ACACHE" ]; then
    echo "run.sh: $ACACHE missing; building it (Release)" >&2
    (cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2 &&
     cmake --build build --target acache_cli -j2 >&2) || die "building acache failed"
  fi
fi
[ -x "$ACACHE" ] || die "no executable acache at $ACACHE"
ACACHE=$(readlink -f "$ACACHE")
if [ "$REMOTE_FLOOR" = 1 ]; then
  BENCH_FETCH=${BENCH_FETCH:-$(dirname "$ACACHE")/bench/bench_fetch}
  [ -x "$BENCH_FETCH" ] || die "--remote-floor needs bench_fetch (cmake --build DIR --target bench_fetch), not at $BENCH_FETCH; or --bench-fetch PATH"
  BENCH_FETCH=$(readlink -f "$BENCH_FETCH")
fi
BUILD_TYPE=""
if [ -f "$(dirname "$ACACHE")/CMakeCache.txt" ]; then
  BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$ACACHE")/CMakeCache.txt")
  BUILD_TYPE=${BUILD_TYPE:-"(empty: project default)"}
fi

# The go command: Go 1.26 unless --go names another release or a binary.
if [[ $GO_WANT == */* ]]; then
  GO=$GO_WANT
else
  GO=$(bash "$ROOT/scripts/go-toolchain.sh" --version "$GO_WANT") ||
    die "no Go $GO_WANT (scripts/go-toolchain.sh --version $GO_WANT failed)"
fi
[ -x "$GO" ] || die "no go command at '$GO'"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/acache-gobench-XXXXXX")
SERVERS_PID=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [ -n "$SERVERS_PID" ]; then # end of its input: the servers stop
    exec {SERVERS_IN}>&- 2>/dev/null || true
    wait "$SERVERS_PID" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then
    echo "kept: $WORK" >&2
  else
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private copy of the binary: others may rebuild build/ during the run.
mkdir -p "$WORK/bin"
cp "$ACACHE" "$WORK/bin/acache"
HELPER="$WORK/bin/acache"
# The protocol floor (floor.c): a helper answering from memory, no storage.
FLOOR="$WORK/bin/floor"
# floor-start FIFO CMD...: the remote floors' helper, which tells the fetch
# floor waiting on FIFO that the go command has started it, and runs CMD.
cat >"$WORK/bin/floor-start" <<'EOF'
#!/bin/sh
fifo=$1; shift
echo started >"$fifo" &
exec "$@"
EOF
chmod +x "$WORK/bin/floor-start"
if ! ${CC:-cc} -O2 -o "$FLOOR" "$HERE/floor.c" 2>"$WORK/floor-build.log"; then
  echo "run.sh: cannot build floor.c (no floor mode): $(cat "$WORK/floor-build.log")" >&2
  FLOOR=""
fi

# Same environment for every go command; GOCACHE and GOCACHEPROG per mode.
export GOTOOLCHAIN=local GOFLAGS='' GOENV=off GOPATH="$WORK/gopath"
unset GOCACHEPROG GOEXPERIMENT
cd "$WORK"

GO_VERSION=$("$GO" version) || die "$GO version failed"
GOROOT_DIR=$("$GO" env GOROOT)
ACACHE_VERSION=$("$HELPER" version 2>&1) || die "$ACACHE version failed: $ACACHE_VERSION"
ACACHE_VERSION=${ACACHE_VERSION%%$'\n'*}

# The remote servers, if any remote mode runs: they live as long as this
# script (remote_servers.py stops them at the end of its input).
REDIS_SPEC="" HTTP_SPEC="" DEAD_SPEC="" HANG_SPEC="" S3_SPEC="" S3HTTP_SPEC="" S3DEAD_SPEC=""
S3HANG_SPEC=""
S3_MODES=0
for r in "${RLIST[@]}"; do case $r in s3|s3http|s3dead|s3hang) S3_MODES=1 ;; esac; done
need_servers=0
for t in "${TLIST[@]}"; do
  if [ ${#RLIST[@]} -gt 0 ] && [ -n "${HAS_REMOTES[$t]:-}" ]; then need_servers=1; fi
done
if [ "$need_servers" = 1 ]; then
  for tool in redis-server nginx; do
    command -v "$tool" >/dev/null || die "$tool is needed for the remote modes (scripts/install-deps.sh), or --remotes none"
  done
  kinds="redis nginx hang dead"
  if [ "$S3_MODES" = 1 ]; then
    for tool in node npm; do
      command -v "$tool" >/dev/null || die "$tool is needed for the s3 modes (scripts/install-deps.sh)"
    done
    kinds="$kinds s3 s3-hang"
    # s3rver's own test key (it takes any signature of it; see the top), and
    # nothing of the caller's AWS setup.
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
    export AWS_SHARED_CREDENTIALS_FILE=/nonexistent AWS_CONFIG_FILE=/nonexistent
    unset AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
  fi
  mkfifo "$WORK/servers.in"
  # shellcheck disable=SC2086  # a list of kinds
  python3 "$ROOT/tests/remote_servers.py" serve "$WORK/servers" $kinds \
    <"$WORK/servers.in" >"$WORK/servers.out" 2>"$WORK/servers.log" &
  SERVERS_PID=$!
  exec {SERVERS_IN}>"$WORK/servers.in"
  for _ in $(seq 600); do
    grep -qx ready "$WORK/servers.out" 2>/dev/null && break
    kill -0 "$SERVERS_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep -qx ready "$WORK/servers.out" || die "remote servers did not start: $(cat "$WORK/servers.log")"
  port_of() { sed -n "s/^$1 .*port=\([0-9]*\).*/\1/p" "$WORK/servers.out"; }
  # Every run's log gets the servers' CPU time beside the build's (gobench.py time).
  GOBENCH_SERVER_PIDS=$(grep -o ' pid=[0-9]*' "$WORK/servers.out" | cut -d= -f2 | tr '\n' ' ')
  export GOBENCH_SERVER_PIDS
  REDIS_SPEC="redis://127.0.0.1:$(port_of redis)/0?prefix=bench"
  HTTP_SPEC="http://127.0.0.1:$(port_of nginx)/cache/bench"
  DEAD_SPEC="redis://127.0.0.1:$(port_of dead)/0"
  HANG_SPEC="redis://127.0.0.1:$(port_of hang)/0"
  if [ "$S3_MODES" = 1 ]; then
    # s3rver itself: the port behind the tests' proxy (upstream=).
    s3rver_port=$(sed -n 's/^s3 .*upstream=\([0-9]*\).*/\1/p' "$WORK/servers.out")
    S3_SPEC="s3://acache-test/bench?endpoint=http://127.0.0.1:$s3rver_port"
    S3HTTP_SPEC="s3://cache/bench?endpoint=http://127.0.0.1:$(port_of nginx)"
    S3DEAD_SPEC="s3://acache-test/bench?endpoint=http://127.0.0.1:$(port_of dead)"
    S3HANG_SPEC="s3://acache-test/bench?endpoint=http://127.0.0.1:$(port_of s3-hang)"
  fi
fi
with_opt() { # with_opt SPEC OPT: SPEC with one more ?option
  case $1 in *\?*) echo "$1&$2" ;; *) echo "$1?$2" ;; esac
}
remote_spec() { # remote_spec MODE
  case $1 in
    redis) echo "$REDIS_SPEC" ;; http) echo "$HTTP_SPEC" ;;
    dead) echo "$DEAD_SPEC" ;; hang) echo "$HANG_SPEC" ;;
    s3) echo "$S3_SPEC" ;; s3http) echo "$S3HTTP_SPEC" ;;
    s3dead) echo "$S3DEAD_SPEC" ;; s3hang) echo "$S3HANG_SPEC" ;;
  esac
}

tdir() { echo "$WORK/t-${1// /_}"; }            # per-target directory
prog() { # prog TARGET [MODE]: the GOCACHEPROG of acache and the remote modes
  local mode=${2:-acache}
  if [ "$mode" = acache ]; then
    echo "$HELPER gocacheprog --dir $(tdir "$1")/acache/dir -v"
  elif [ "$mode" = floor ] || [ "$mode" = floor-aa ]; then
    echo "$FLOOR $(tdir "$1")/$mode/dir"
  elif [[ $mode == *-floor ]]; then # floor.c, starting the fetch floor as it starts
    echo "$WORK/bin/floor-start $(tdir "$1")/$mode.started $FLOOR $(tdir "$1")/$mode/dir"
  elif [ "$mode" = floor-spin ]; then
    echo "$FLOOR --spin $FLOOR_SPIN $(tdir "$1")/$mode/dir"
  else
    echo "$HELPER gocacheprog --dir $(tdir "$1")/$mode/dir -v --remote $(remote_spec "$mode")"
  fi
}
cmdline() { # cmdline TARGET MODE -> the exact command, for printing
  local d; d=$(tdir "$1")
  if [ "$2" = own ]; then
    echo "GOCACHE=$d/own/gocache GOCACHEPROG= $GO build $1"
  else
    echo "GOCACHE=$d/$2/gocache GOCACHEPROG='$(prog "$1" "$2")' $GO build $1"
  fi
}

echo "== acache gocacheprog vs the go command's own cache: go build, cold and warm =="
echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "go:       $GO_VERSION ($GO)"
echo "acache:   $ACACHE_VERSION ($ACACHE${BUILD_TYPE:+, CMAKE_BUILD_TYPE=$BUILD_TYPE}; run from the copy $HELPER)"
echo "nproc:    $(nproc)   kernel: $(uname -r)   temp dir: $WORK ($(df -T "$WORK" | awk 'NR==2{print $2}'))"
echo "plan:     per target and mode $COLD_RUNS cold run(s) from empty directories, then $RUNS warm runs interleaved own/acache[/remote modes]"
echo "env:      GOTOOLCHAIN=local GOFLAGS= GOENV=off GOPATH=$WORK/gopath, cwd $WORK"
echo "commands:"
for t in "${TLIST[@]}"; do
  for mode in $(modes_of "$t"); do
    printf '  %-7s %s\n' "$mode:" "$(cmdline "$t" "$mode")"
  done
  if [ "$(modes_of "$t")" != "own acache" ]; then
    echo "  (redis, http, s3, s3http: a new empty --dir and GOCACHE for every run; dead, hang: a copy"
    echo "   of the acache mode's directories after its cold run; the remotes are filled once, untimed,"
    echo "   by a cold build uploading to all of them (each with flush-timeout=10m, so none is dropped),"
    echo "   then primed by one untimed warm build per remote mode)"
  fi
done
echo "  rss:    python3 $PY rss $HELPER $WORK/rss $RSS_MIB   (drives '$HELPER gocacheprog --dir D' over a pipe)"
echo

# Page cache: read the toolchain once so the first cold build does not pay
# for disk reads that the second one would not.
find "$GOROOT_DIR" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true

run_build() { # run_build TARGET MODE LOG -> prints seconds; exits on failure
  local t=$1 mode=$2 log=$3 d secs
  d=$(tdir "$t")
  # shellcheck disable=SC2086  # the target is a list of package patterns
  if [ "$mode" = own ]; then
    secs=$(env -u GOCACHEPROG GOCACHE="$d/own/gocache" python3 "$PY" time "$log" -- "$GO" build $t) || {
      echo "run.sh: go build $t ($mode) failed; log $log:" >&2; tail -n 30 "$log" >&2; exit 1; }
  elif [[ $mode == *-floor ]]; then
    # The build, and the fetch floor from the moment the go command starts
    # its helper (floor-start opens the fifo); done when both are (see the top).
    rm -rf "$d/$mode.fetch" "$d/$mode.started"; mkdir -p "$d/$mode.fetch"; mkfifo "$d/$mode.started"
    secs=$(GOCACHE="$d/$mode/gocache" GOCACHEPROG="$(prog "$t" "$mode")" python3 "$PY" time "$log" -- \
      bash -c '{ read -r _ <"$6" && exec "$1" --one floor --remote "$2" --gets "$3" --plan "$3" --dir "$4" --threads "$7"; } >"$5" 2>&1 &
               f=$!; shift 7; "$@"; rc=$?
               [ $rc = 0 ] || kill "$f" 2>/dev/null
               wait "$f" || { echo "the fetch floor failed" >&2; rc=1; }; exit $rc' \
      fetch-floor "$BENCH_FETCH" "$(remote_spec "${mode%-floor}")" "$d/plan-${mode%-floor}.txt" \
      "$d/$mode.fetch" "$log.fetch" "$d/$mode.started" "$FETCH_THREADS" "$GO" build $t) || {
      echo "run.sh: go build $t ($mode) failed; log $log:" >&2; tail -n 30 "$log" "$log.fetch" >&2; exit 1; }
  else
    secs=$(GOCACHE="$d/$mode/gocache" GOCACHEPROG="$(prog "$t" "$mode")" python3 "$PY" time "$log" -- "$GO" build $t) || {
      echo "run.sh: go build $t ($mode) failed; log $log:" >&2; tail -n 30 "$log" >&2; exit 1; }
  fi
  echo "$secs"
}
fresh() { # fresh TARGET MODE: empty cache directories for a cold run
  local d; d=$(tdir "$1")/$2
  chmod -R u+w "$d" 2>/dev/null || true
  rm -rf "$d"
  mkdir -p "$d/gocache" "$d/dir"
}

# An empty directory for each warm run of a remote mode, all kept until the
# runs are over: deleting the last run's ~2,000 files just before the next
# run would time ext4's inode allocator instead of the build (without a
# journal, ext4 walks past every inode freed in the last half minute or
# more when it creates a file; this machine's / is such an ext4). A real
# empty store is a directory nothing was just deleted from.
WORK_FS=$(stat -f -c %T "$WORK")
fresh_run() { # fresh_run TARGET MODE RUN: "$d/MODE" points to a new empty pair
  local d; d=$(tdir "$1")
  mkdir -p "$d/$2.runs/$3/gocache" "$d/$2.runs/$3/dir"
  rm -rf "${d:?}/$2"
  ln -s "$2.runs/$3" "$d/$2"
}

declare -A COLD WARM WARMS SUMMARY_COLD SUMMARY_WARM STD_RATIO CPUS BCPUS SCPUS
STD_COLD_RATIO="" STD_WARM_RATIO=""

for t in "${TLIST[@]}"; do
  d=$(tdir "$t"); mkdir -p "$d/logs"
  echo "-- go build $t --"
  colds_own=() colds_ac=()
  declare -A colds_fl=()
  for ((i = 1; i <= COLD_RUNS; i++)); do
    # With several cold runs, alternate which mode goes first.
    if ((i % 2)); then order="own acache"; else order="acache own"; fi
    order="$order $(floor_modes)"
    for mode in $order; do
      fresh "$t" "$mode"
      s=$(run_build "$t" "$mode" "$d/logs/$mode-cold-$i.log")
      printf '  cold %d  %-10s %8.3f s\n' "$i" "$mode" "$s"
      case $mode in
        own) colds_own+=("$s") ;; acache) colds_ac+=("$s") ;; *) colds_fl[$mode]="${colds_fl[$mode]:-} $s" ;;
      esac
    done
  done
  for mode in $(floor_modes); do
    # shellcheck disable=SC2086  # a list of numbers
    COLD[$t,$mode]=$(python3 "$PY" median ${colds_fl[$mode]})
  done
  unset colds_fl
  SUMMARY_COLD[$t]=$(python3 "$PY" summary "$d/logs/acache-cold-$COLD_RUNS.log")
  modes=$(modes_of "$t")
  for mode in $modes; do
    case $mode in
      dead|hang|s3dead|s3hang) # the acache mode's warm state, with a remote that fails
        rm -rf "${d:?}/$mode"; cp -a "$d/acache" "$d/$mode" ;;
      floor|floor-spin|floor-aa|*-floor) # the acache mode's records, read at start; its own GOCACHE
        rm -rf "${d:?}/$mode"; cp -a "$d/acache" "$d/$mode"; rm -rf "$d/$mode/gocache"
        mkdir -p "$d/$mode/gocache" ;;
    esac
  done
  fill_remotes=""
  for mode in redis http s3; do
    # s3http reads what the http fill stores in nginx.
    if [[ " $modes " == *" $mode "* ]] || { [ $mode = http ] && [[ " $modes " == *" s3http "* ]]; }; then
      fill_remotes="$fill_remotes --remote $(with_opt "$(remote_spec $mode)" flush-timeout=10m)"
    fi
  done
  if [ -n "$fill_remotes" ]; then
    fresh "$t" fill
    fill_log="$d/logs/fill.log"
    # shellcheck disable=SC2086  # the target is a list of package patterns
    s=$(GOCACHE="$d/fill/gocache" GOCACHEPROG="$HELPER gocacheprog --dir $d/fill/dir -v$fill_remotes" \
        python3 "$PY" time "$fill_log" -- "$GO" build $t) || {
      echo "run.sh: filling the remotes failed; log $fill_log:" >&2; tail -n 30 "$fill_log" >&2; exit 1; }
    printf '  fill    remotes %7.3f s (not in the results)\n' "$s"
    python3 "$PY" remotes "$fill_log" | sed 's/^/    /'
    # Priming (see the top): one untimed warm build per remote mode.
    for mode in $modes; do
      case $mode in redis|http|s3|s3http) ;; *) continue ;; esac
      fresh "$t" "prime-$mode"
      plog="$d/logs/prime-$mode.log"
      # shellcheck disable=SC2086  # the target is a list of package patterns
      s=$(GOCACHE="$d/prime-$mode/gocache" GOCACHEPROG="$HELPER gocacheprog --dir $d/prime-$mode/dir -v --remote $(with_opt "$(remote_spec "$mode")" flush-timeout=10m)" \
          python3 "$PY" time "$plog" -- "$GO" build $t) || {
        echo "run.sh: priming $mode failed; log $plog:" >&2; tail -n 30 "$plog" >&2; exit 1; }
      printf '  prime   %-7s %7.3f s (not in the results)\n' "$mode" "$s"
      python3 "$PY" remotes "$plog" | sed 's/^/    /'
      rm -rf "${d:?}/prime-$mode"
    done
  fi
  declare -A runs=()
  for ((i = 1; i <= RUNS; i++)); do
    for mode in $modes; do
      case $mode in redis|http|s3|s3http) fresh_run "$t" "$mode" "$i" ;; esac
      s=$(run_build "$t" "$mode" "$d/logs/$mode-warm-$i.log")
      printf '  warm %d  %-10s %8.3f s\n' "$i" "$mode" "$s"
      runs[$mode]="${runs[$mode]:-} $s"
      # The remote floors fetch what the first warm run of their remote stored.
      case $mode in redis|http)
        if [ ! -s "$d/plan-$mode.txt" ] && [ "$REMOTE_FLOOR" = 1 ]; then
          python3 "$PY" plan "$d/$mode/dir" "$d/plan-$mode.txt" >/dev/null
        fi ;;
      esac
      case $mode in redis|http|s3|s3http) CPUS[$t,$mode]="${CPUS[$t,$mode]:-} $(python3 "$PY" cpu "$d/logs/$mode-warm-$i.log")" ;; esac
      read -r bcpu scpu < <(python3 "$PY" buildcpu "$d/logs/$mode-warm-$i.log")
      BCPUS[$t,$mode]="${BCPUS[$t,$mode]:-} $bcpu"; SCPUS[$t,$mode]="${SCPUS[$t,$mode]:-} $scpu"
      # A run that filled a store leaves ~150 MiB to write back: not on the
      # clock of the next one. On tmpfs (no inode walk, see fresh_run) the
      # store goes now, so that the next run reuses its memory: on this
      # virtual machine memory never used before costs a fault in the host
      # per page at first touch (bench_fetch's runs took three times the
      # CPU time once their kept stores filled 2.4 GB).
      case $mode in redis|http|s3|s3http)
        [ "$WORK_FS" = tmpfs ] && rm -rf "${d:?}/$mode.runs/$i"
        sync; sleep 0.5 ;;
      *-floor) rm -rf "${d:?}/$mode.fetch"; sync; sleep 0.5 ;;
      esac
    done
  done
  for mode in redis http s3 s3http; do rm -rf "${d:?}/$mode" "${d:?}/$mode.runs"; done
  # shellcheck disable=SC2206  # the run lists are numbers
  warms_own=(${runs[own]}) warms_ac=(${runs[acache]})
  for mode in $modes; do
    case $mode in own|acache) continue ;; esac
    # shellcheck disable=SC2206
    rr=(${runs[$mode]})
    WARM[$t,$mode]=$(python3 "$PY" median "${rr[@]}")
    WARMS[$t,$mode]="${rr[*]}"
    { is_floor "$mode" || [[ $mode == *-floor ]]; } && continue
    SUMMARY_WARM[$t,$mode]="$(python3 "$PY" summary "$d/logs/$mode-warm-$RUNS.log") | $(python3 "$PY" remotes "$d/logs/$mode-warm-$RUNS.log")"
  done
  unset runs
  SUMMARY_WARM[$t]=$(python3 "$PY" summary "$d/logs/acache-warm-$RUNS.log")
  COLD[$t,own]=$(python3 "$PY" median "${colds_own[@]}")
  COLD[$t,acache]=$(python3 "$PY" median "${colds_ac[@]}")
  WARM[$t,own]=$(python3 "$PY" median "${warms_own[@]}")
  WARM[$t,acache]=$(python3 "$PY" median "${warms_ac[@]}")
  WARMS[$t,own]="${warms_own[*]}"; WARMS[$t,acache]="${warms_ac[*]}"
  if [ "$t" = std ]; then
    STD_COLD_RATIO=$(python3 "$PY" ratio "${COLD[$t,acache]}" "${COLD[$t,own]}")
    STD_WARM_RATIO=$(python3 "$PY" ratio "${WARM[$t,acache]}" "${WARM[$t,own]}")
    for mode in redis http s3 s3http redis-floor http-floor; do
      if [ -n "${WARM[$t,$mode]:-}" ]; then
        STD_RATIO[$mode]=$(python3 "$PY" ratio "${WARM[$t,$mode]}" "${WARM[$t,own]}")
      fi
    done
    # Helper CPU against http's: s3http (the same server) is the target,
    # s3 (s3rver) for information.
    for mode in s3http s3; do
      if [ -n "${CPUS[$t,$mode]:-}" ] && [ -n "${CPUS[$t,http]:-}" ]; then
        # shellcheck disable=SC2086  # lists of numbers
        STD_RATIO[${mode}cpu]=$(python3 "$PY" ratio "$(python3 "$PY" median ${CPUS[$t,$mode]})" \
          "$(python3 "$PY" median ${CPUS[$t,http]})")
      fi
    done
    for mode in dead hang s3dead s3hang; do
      if [ -n "${WARM[$t,$mode]:-}" ]; then
        STD_RATIO[$mode]=$(python3 "$PY" ratio "${WARM[$t,$mode]}" "${WARM[$t,acache]}")
      fi
    done
  fi
  du_own=$(du -sm "$d/own" | cut -f1); du_ac=$(du -sm "$d/acache" | cut -f1)
  echo "  cache size: own ${du_own} MiB; acache ${du_ac} MiB (dir + gocache)"
  echo
done

echo "-- helper peak RSS over one $RSS_MIB MiB put --"
mkdir -p "$WORK/rss"
read -r RSS_DELTA RSS_BASE RSS_BIG RSS_SECS < <(python3 "$PY" rss "$HELPER" "$WORK/rss" "$RSS_MIB") || {
  echo "run.sh: the RSS driver failed" >&2; exit 1; }
[ -n "${RSS_DELTA:-}" ] || { echo "run.sh: the RSS driver printed nothing" >&2; exit 1; }
echo "  VmHWM after a tiny put: $RSS_BASE MiB; after a $RSS_MIB MiB put: $RSS_BIG MiB; growth $RSS_DELTA MiB (put took $RSS_SECS s, driver included)"
echo

# cpu_bound TARGET MODE: the warm runs' CPU time (user + system; medians):
# the go command's and its tools' (the helper is not among them: the go
# command does not wait for it), the helper's (from its -v summary) and
# the servers', and their sum over the cores: the least wall time this
# machine allows for that much work, against the runs' median wall time.
cpu_bound() {
  local t=$1 mode=$2 b s h=0
  [ -n "${BCPUS[$t,$mode]:-}" ] || return 0
  # shellcheck disable=SC2086  # lists of numbers
  b=$(python3 "$PY" median ${BCPUS[$t,$mode]})
  # shellcheck disable=SC2086
  s=$(python3 "$PY" median ${SCPUS[$t,$mode]})
  # shellcheck disable=SC2086
  [ -n "${CPUS[$t,$mode]:-}" ] && h=$(python3 "$PY" median ${CPUS[$t,$mode]})
  python3 - "$t" "$mode" "$b" "$h" "$s" "$(nproc)" "${WARM[$t,$mode]}" <<'PYEOF'
import sys
t, mode, b, h, s, n, wall = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
total = b + h + s
bound = total / n
print("  CPU of a warm %s run (medians): go %.3f s + helper %.3f s + servers %.3f s = %.3f s;"
      " over %d cores at least %.3f s, wall %.3f s (%.2fx that bound)"
      % (mode, b, h, s, total, n, bound, wall, wall / bound if bound else 0))
PYEOF
}

echo "== results (seconds; cold = median of $COLD_RUNS, warm = median of $RUNS) =="
printf '%-10s %-7s %9s %11s   %s\n' target mode cold "warm med" "warm runs"
for t in "${TLIST[@]}"; do
  for mode in own acache; do
    printf '%-10s %-7s %9.3f %11.3f   %s\n' "$t" "$mode" "${COLD[$t,$mode]}" "${WARM[$t,$mode]}" "${WARMS[$t,$mode]}"
  done
  cr=$(python3 "$PY" ratio "${COLD[$t,acache]}" "${COLD[$t,own]}")
  wr=$(python3 "$PY" ratio "${WARM[$t,acache]}" "${WARM[$t,own]}")
  printf '%-10s %-7s %8.3fx %10.3fx\n' "$t" "ac/own" "$cr" "$wr"
  echo "  helper, last cold run: ${SUMMARY_COLD[$t]:-(no -v summary)}"
  echo "  helper, last warm run: ${SUMMARY_WARM[$t]:-(no -v summary)}"
  for mode in $(modes_of "$t"); do
    case $mode in own|acache) continue ;; redis|http|s3|s3http|floor|*-floor) base=own ;; floor-*) base=floor ;; *) base=acache ;; esac
    rr=$(python3 "$PY" ratio "${WARM[$t,$mode]}" "${WARM[$t,$base]}")
    printf '%-10s %-10s %9s %11.3f   %s   (%.3fx %s)\n' "$t" "$mode" "-" "${WARM[$t,$mode]}" "${WARMS[$t,$mode]}" "$rr" "$base"
    if [ "$mode" = floor ]; then
      printf '  the protocol floor (floor.c): gets answered from memory, puts written unchecked;\n'
      printf '  cold median %.3f s (%.3fx own); acache/floor: cold %.3fx, warm %.3fx\n' \
        "${COLD[$t,floor]}" "$(python3 "$PY" ratio "${COLD[$t,floor]}" "${COLD[$t,own]}")" \
        "$(python3 "$PY" ratio "${COLD[$t,acache]}" "${COLD[$t,floor]}")" \
        "$(python3 "$PY" ratio "${WARM[$t,acache]}" "${WARM[$t,floor]}")"
      continue
    fi
    if [[ $mode == *-floor ]]; then
      printf '  the %s remote floor: floor.c and bench_fetch'"'"'s floor client at once, done when both are;\n' "${mode%-floor}"
      printf '  %s/%s-floor: %.3fx (how far the %s mode is from the least this machine allows)\n' \
        "${mode%-floor}" "${mode%-floor}" "$(python3 "$PY" ratio "${WARM[$t,${mode%-floor}]}" "${WARM[$t,$mode]}")" "${mode%-floor}"
      continue
    fi
    if is_floor "$mode"; then
      printf '  %s: cold median %.3f s (%.3fx floor); warm %.3fx floor (A/A: floor-aa/floor)\n' "$mode" \
        "${COLD[$t,$mode]}" "$(python3 "$PY" ratio "${COLD[$t,$mode]}" "${COLD[$t,floor]}")" \
        "$(python3 "$PY" ratio "${WARM[$t,$mode]}" "${WARM[$t,floor]}")"
      tail -n 3 "$(tdir "$t")/logs/$mode-warm-$RUNS.log" | grep '^floor: spin' | sed 's/^/  last warm run: /' || true
      continue
    fi
    echo "  helper, last $mode run: ${SUMMARY_WARM[$t,$mode]:-(no -v summary)}"
    if [ -n "${CPUS[$t,$mode]:-}" ]; then echo "  helper CPU (user + system) per run, s:${CPUS[$t,$mode]}"; fi
  done
  for mode in own acache floor redis http s3http redis-floor http-floor; do
    cpu_bound "$t" "$mode"
  done
  if [[ " $(modes_of "$t") " == *"-floor "* ]]; then
    echo "  (in the *-floor lines, go's CPU includes bench_fetch's floor client, and helper is 0: floor.c's is not measured)"
  fi
done
echo

verdict() { # verdict LABEL VALUE OP LIMIT UNIT
  local label=$1 v=$2 op=$3 lim=$4 unit=$5 ok
  if [ -z "$v" ]; then
    printf '  %-44s %s %s%s  %-9s n/a (not measured)\n' "$label" "$op" "$lim" "$unit" ""
    return
  fi
  if [ "$op" = "<=" ]; then
    python3 "$PY" le "$v" "$lim" && ok=met || ok=MISSED
  else # strictly less than
    if python3 "$PY" le "$lim" "$v"; then ok=MISSED; else ok=met; fi
  fi
  printf '  %-44s %s %s%s  %9s  %s\n' "$label" "$op" "$lim" "$unit" "$v$unit" "$ok"
}
echo "== targets (report only: the exit status ignores them) =="
verdict "warm go build std, acache/own median" "$STD_WARM_RATIO" "<=" 1.00 x
verdict "cold go build std, acache/own" "$STD_COLD_RATIO" "<=" 1.02 x
verdict "$RSS_MIB MiB put, helper peak RSS growth" "$RSS_DELTA" "<" 32 " MiB"
if [ -n "${HAS_REMOTES[std]:-}" ] && [[ " ${TLIST[*]} " == *" std "* ]]; then
  for mode in "${RLIST[@]}"; do
    case $mode in
      redis) verdict "warm std, empty dir + full Redis / own" "${STD_RATIO[redis]:-}" "<=" 1.50 x ;;
      http) verdict "warm std, empty dir + full HTTP / own" "${STD_RATIO[http]:-}" "<=" 1.50 x ;;
      dead) verdict "warm std, dead remote / no remote" "${STD_RATIO[dead]:-}" "<=" 1.05 x ;;
      hang) verdict "warm std, hanging remote / no remote" "${STD_RATIO[hang]:-}" "<=" 1.05 x ;;
      s3) verdict "warm std, empty dir + full S3 / own" "${STD_RATIO[s3]:-}" "<=" 1.50 x
          if [ -n "${STD_RATIO[s3cpu]:-}" ]; then
            echo "  (warm std from s3rver, helper CPU / from HTTP: ${STD_RATIO[s3cpu]}x, not a target:" \
                 "s3rver is slower than nginx)"
          fi ;;
      s3http) verdict "warm std, S3 on nginx, helper CPU / HTTP" "${STD_RATIO[s3httpcpu]:-}" "<=" 1.20 x ;;
      s3dead) verdict "warm std, dead S3 / no remote" "${STD_RATIO[s3dead]:-}" "<=" 1.05 x ;;
      s3hang) verdict "warm std, hanging S3 / no remote" "${STD_RATIO[s3hang]:-}" "<=" 1.05 x ;;
    esac
  done
  for mode in redis-floor http-floor; do
    if [ -n "${STD_RATIO[$mode]:-}" ]; then
      echo "  (the least a warm std from a full ${mode%-floor} remote can take here, $mode / own: ${STD_RATIO[$mode]}x)"
    fi
  done
fi
exit 0
