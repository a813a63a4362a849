#!/usr/bin/env bash
# test_full_disk_go.sh - a real Go build through `acache gocacheprog` whose
# cache sits on a tmpfs with free blocks but few inodes (the full disk the
# block check alone does not see): the build succeeds, the program it
# built runs, the puts the cache had no room for were spilled (stats:
# spilled) to a directory under $TMPDIR that is gone after the build.
# Needs root to mount (skipped, saying so, where mount is not permitted)
# and a go that honours GOCACHEPROG ($ACACHE_GO, else scripts/go-toolchain.sh).
set -euo pipefail
: "${ACACHE_BIN:?set by CTest}"
SRC=${ACACHE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
A=$(readlink -f "$ACACHE_BIN")
WORK=$(mktemp -d /tmp/acache-fullgo-XXXXXX)
M="$WORK/cache"
cleanup() {
  mountpoint -q "$M" 2>/dev/null && umount "$M"
  chmod -R u+w "$WORK" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
unset ACACHE_DIR ACACHE_REMOTE ACACHE_MAX_SIZE
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$M"
if ! mount -t tmpfs -o size=256m,nr_inodes=150 tmpfs "$M" 2>"$WORK/err"; then
  echo "SKIP: cannot mount a tmpfs ($(cat "$WORK/err")); run as root to test a cache out of inodes"
  exit 0
fi
GO=${ACACHE_GO:-$(bash "$SRC/scripts/go-toolchain.sh")}

mkdir -p "$WORK/hello" "$WORK/gocache" "$WORK/gopath" "$WORK/tmp"
cat >"$WORK/hello/go.mod" <<'GO'
module example.com/hello

go 1.21
GO
cat >"$WORK/hello/main.go" <<'GO'
package main

import (
	"encoding/json"
	"fmt"
)

func main() {
	b, _ := json.Marshal(map[string]string{"from": "a cache out of inodes"})
	fmt.Println(string(b))
}
GO
(
  cd "$WORK/hello"
  export GOTOOLCHAIN=local GOFLAGS= GO111MODULE=on GOPATH="$WORK/gopath" GOCACHE="$WORK/gocache"
  export GOCACHEPROG="$A gocacheprog --dir $M/c -v" TMPDIR="$WORK/tmp"
  timeout 900 "$GO" build -o "$WORK/hello-bin" . 2>"$WORK/go.log" ||
    { tail -30 "$WORK/go.log"; fail "go build with a cache out of inodes"; }
)
[ "$("$WORK/hello-bin")" = '{"from":"a cache out of inodes"}' ] || fail "the program built with a full cache"
[ "$(df --output=iavail "$M" | tail -1 | tr -d ' ')" -lt 5 ] || fail "the cache did not run out of inodes"
spilled=$(sed -n "s/.*full (no space, inodes or quota): \([0-9]*\) new outputs.*/\1/p" "$WORK/go.log")
[ -n "$spilled" ] && [ "$spilled" -gt 0 ] || fail "no put was spilled (gocacheprog did not say so)"
[ -z "$(ls -A "$WORK/tmp")" ] || fail "spill directories left behind: $(ls "$WORK/tmp")"
echo "a Go build with its cache out of inodes: ok ($spilled puts spilled)"
