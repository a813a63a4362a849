#!/usr/bin/env bash
# test_faults_cli.sh - the acache command under faults: `acache put` and
# `acache trim` killed with SIGKILL at random moments, again and again,
# then `acache verify` finds nothing wrong; a full file system (a 4 MiB
# tmpfs mounted here; skipped, saying so, where mount is not permitted):
# puts fail cleanly (exit 2, "No space left", nothing partial left), what
# was stored stays readable, and a Go build through `acache gocacheprog` on
# it still succeeds, its new outputs spilled to a temporary directory
# removed at exit ($ACACHE_GO; skipped, saying so, when unset). Every
# command runs under a timeout.
set -euo pipefail
: "${ACACHE_BIN:?ACACHE_BIN must name the acache binary}"
A=$(readlink -f "$ACACHE_BIN")
WORK=$(mktemp -d /tmp/acache-faults-XXXXXX)
M="$WORK/small"
cleanup() {
  mountpoint -q "$M" 2>/dev/null && umount "$M"
  chmod -R u+w "$WORK" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
unset ACACHE_DIR ACACHE_REMOTE ACACHE_MAX_SIZE
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 120 "$A" "$@"; }
rc() { local r=0; timeout 120 "$A" "$@" >"$WORK/out" 2>"$WORK/err" || r=$?; echo "$r"; }
act() { printf '%064x' "$1"; }

echo "== kill -9 during puts and trims"
D="$WORK/c"
for i in $(seq 1 40); do head -c $((RANDOM % 20000)) /dev/urandom >"$WORK/in$i"; done
# A writer: puts in a loop (each key one value, some keys two), with an
# aggressive automatic trim (ACACHE_MAX_SIZE small).
writer() {
  local n=0
  while :; do
    n=$(( (n + 7) % 40 + 1 ))
    ACACHE_MAX_SIZE=64K "$A" put --dir "$D" "$(act $(( n % 25 )))" "$WORK/in$n" >/dev/null 2>&1 || true
  done
}
export -f writer act
export A D WORK
# kill9 PID: kills the process group PID leads, or, if setsid has not made
# it a group leader yet (a loaded machine), the process itself: the writer
# never outlives its round, or `wait` would wait for it forever.
kill9() {
  kill -9 -- "-$1" 2>/dev/null || kill -9 "$1" 2>/dev/null || true
}
for round in $(seq 1 30); do
  setsid bash -c writer &
  pid=$!
  sleep "0.0$((RANDOM % 9 + 1))"
  kill9 "$pid"
  wait "$pid" 2>/dev/null || true
done
# Trims killed halfway: a cache of old entries, trimmed without grace.
for round in $(seq 1 15); do
  for i in $(seq 1 40); do run put --dir "$D" "$(act $((100 + i)))" "$WORK/in$i" >/dev/null; done
  find "$D/v1/a" "$D/v1/o" -type f -exec touch -d '3 hours ago' {} + 2>/dev/null || true
  setsid timeout 60 "$A" trim --dir "$D" --max-size 0 --grace 0 >/dev/null 2>&1 &
  pid=$!
  sleep "0.00$((RANDOM % 9 + 1))"
  kill9 "$pid"
  wait "$pid" 2>/dev/null || true
done
[ "$(rc verify --dir "$D")" = 0 ] || { cat "$WORK/out" "$WORK/err"; fail "verify after kills"; }
grep -q "no problems" "$WORK/out" || fail "verify said $(cat "$WORK/out")"
# And the cache still works.
run put --dir "$D" "$(act 999)" "$WORK/in1" >/dev/null
run get --dir "$D" "$(act 999)" -o - | cmp - "$WORK/in1" || fail "the cache no longer works"

echo "== a full file system"
mkdir -p "$M"
if ! mount -t tmpfs -o size=4m tmpfs "$M" 2>"$WORK/err"; then
  echo "SKIP: cannot mount a 4 MiB tmpfs ($(cat "$WORK/err")); run as root to test a full file system"
  echo "all fault tests that could run passed"
  exit 0
fi
F="$M/cache"
stored=0
for i in $(seq 1 100); do
  head -c 300000 /dev/urandom >"$WORK/big"
  r=$(rc put --dir "$F" "$(act $i)" "$WORK/big")
  if [ "$r" != 0 ]; then
    [ "$r" = 2 ] || fail "a put on a full file system exited $r"
    grep -q "No space left" "$WORK/err" || fail "no clear message: $(cat "$WORK/err")"
    break
  fi
  cp "$WORK/big" "$WORK/kept$i"
  stored=$i
done
[ "$stored" -ge 3 ] && [ "$stored" -lt 100 ] || fail "stored $stored entries on a 4 MiB file system"
# Nothing partial: no temp file, no object of a failed put.
[ -z "$(ls -A "$F/v1/tmp")" ] || fail "temp files left: $(ls "$F/v1/tmp")"
[ "$(find "$F/v1/o" -type f | wc -l)" = "$stored" ] || fail "objects of failed puts were left"
for i in $(seq 1 "$stored"); do
  run get --dir "$F" "$(act $i)" -o - | cmp - "$WORK/kept$i" || fail "entry $i unreadable on a full file system"
done
[ "$(rc verify --dir "$F")" = 0 ] || fail "verify on a full file system"

echo "== a Go build on the full file system"
if [ -z "${ACACHE_GO:-}" ]; then
  echo "SKIP: ACACHE_GO is not set (bash scripts/go-toolchain.sh prints a go that honours GOCACHEPROG)"
  echo "all fault tests that could run passed"
  exit 0
fi
mkdir -p "$WORK/hello" "$WORK/gocache" "$WORK/gopath"
cat >"$WORK/hello/go.mod" <<'GO'
module example.com/hello

go 1.21
GO
cat >"$WORK/hello/main.go" <<'GO'
package main

import "fmt"

func main() { fmt.Println("hello from a full cache") }
GO
(
  cd "$WORK/hello"
  export GOTOOLCHAIN=local GOFLAGS= GO111MODULE=on GOPATH="$WORK/gopath" GOCACHE="$WORK/gocache"
  export GOCACHEPROG="$A gocacheprog --dir $F -v" TMPDIR="$WORK/spill"
  mkdir -p "$TMPDIR"
  timeout 600 "$ACACHE_GO" build -o "$WORK/hello-bin" . 2>"$WORK/go.log" || { cat "$WORK/go.log"; fail "go build with a full cache"; }
)
[ "$("$WORK/hello-bin")" = "hello from a full cache" ] || fail "the program built with a full cache"
grep -q "file system is full" "$WORK/go.log" || fail "gocacheprog did not say the cache is full"
[ -z "$(ls -A "$WORK/spill")" ] || fail "the spill directory was left behind: $(ls "$WORK/spill")"
[ "$(find "$F/v1/o" -type f | wc -l)" = "$stored" ] || fail "the full cache changed"
echo "all fault tests passed"
