#!/usr/bin/env bash
# test_go_e2e.sh - end to end with the real go command through
# `acache gocacheprog`, from empty directories:
#   1. `go build std` twice: the second build is served >= 95% from hits;
#   2. a program built through acache is byte-identical to one built with
#      the go command's own cache;
#   3. `go test` of a small package says "(cached)" the second time, and runs
#      again after `go clean -testcache`.
# Needs a go that honours GOCACHEPROG: $ACACHE_GO, else scripts/go-toolchain.sh.
set -euo pipefail
: "${ACACHE_BIN:?set by CTest}"
SRC=${ACACHE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
GO=${ACACHE_GO:-$(bash "$SRC/scripts/go-toolchain.sh")}
ACACHE_BIN=$(readlink -f "$ACACHE_BIN")

WORK=$(mktemp -d /tmp/acache-go-e2e-XXXXXX)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
export GOTOOLCHAIN=local GOPATH="$WORK/gopath" GOFLAGS= GO111MODULE=on
fail() { echo "FAIL: $*" >&2; exit 1; }

summary_field() { # summary_field LOG FIELD -> number from the -v summary
  python3 - "$1" "$2" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.findall(r"(\d+) gets \((\d+) hits, (\d+) misses\), (\d+) puts", text)
if not m:
    sys.exit("no acache -v summary in " + sys.argv[1])
gets, hits, misses, puts = map(int, m[-1])
print({"gets": gets, "hits": hits, "misses": misses, "puts": puts}[sys.argv[2]])
PY
}

# 1. go build std, cold then warm.
mkdir -p "$WORK/c1" "$WORK/g1"
export GOCACHE="$WORK/g1"
export GOCACHEPROG="$ACACHE_BIN gocacheprog --dir $WORK/c1 -v"
"$GO" build std 2>"$WORK/cold.log" || { cat "$WORK/cold.log"; fail "cold go build std"; }
"$GO" build std 2>"$WORK/warm.log" || { cat "$WORK/warm.log"; fail "warm go build std"; }
cold_puts=$(summary_field "$WORK/cold.log" puts)
gets=$(summary_field "$WORK/warm.log" gets)
hits=$(summary_field "$WORK/warm.log" hits)
echo "cold: $cold_puts puts; warm: $hits of $gets gets were hits"
[ "$cold_puts" -gt 100 ] || fail "cold build stored only $cold_puts entries"
[ "$gets" -gt 100 ] || fail "warm build asked only $gets gets"
[ $((hits * 100)) -ge $((gets * 95)) ] || fail "warm build: only $hits of $gets gets were hits (< 95%)"
if grep -v '^acache: gocacheprog: [0-9]* gets' "$WORK/warm.log" | grep -q .; then
  cat "$WORK/warm.log"; fail "unexpected output on the warm build's stderr"
fi

# 2. Byte-identical program.
mkdir -p "$WORK/hello"
cat >"$WORK/hello/go.mod" <<'GO'
module example.com/hello

go 1.21
GO
cat >"$WORK/hello/main.go" <<'GO'
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
)

func main() {
	fmt.Printf("%x\n", sha256.Sum256([]byte(os.Args[0])))
}
GO
cd "$WORK/hello"
mkdir -p "$WORK/g2" "$WORK/g3"
GOCACHE="$WORK/g2" "$GO" build -o "$WORK/hello-acache" . 2>"$WORK/hello.log" || { cat "$WORK/hello.log"; fail "build hello through acache"; }
GOCACHE="$WORK/g3" GOCACHEPROG= "$GO" build -o "$WORK/hello-own" . || fail "build hello with the go command's own cache"
cmp "$WORK/hello-acache" "$WORK/hello-own" || fail "program built through acache differs from the one built with the go command's own cache"
# and again, now from acache's hits
GOCACHE="$WORK/g2" "$GO" build -o "$WORK/hello-acache2" . 2>/dev/null || fail "rebuild hello through acache"
cmp "$WORK/hello-acache2" "$WORK/hello-own" || fail "program rebuilt from acache hits differs"
echo "hello: byte-identical through acache (cold and warm) and with the go command's own cache"

# 3. go test caching and go clean -testcache.
mkdir -p "$WORK/hello/calc"
cat >"$WORK/hello/calc/calc.go" <<'GO'
package calc

func Add(a, b int) int { return a + b }
GO
cat >"$WORK/hello/calc/calc_test.go" <<'GO'
package calc

import "testing"

func TestAdd(t *testing.T) {
	if Add(2, 3) != 5 {
		t.Fatal("2+3 != 5")
	}
}
GO
export GOCACHE="$WORK/g2"
out1=$("$GO" test ./calc 2>&1) || { echo "$out1"; fail "go test (first)"; }
echo "$out1" | grep -q '(cached)' && fail "first go test was cached: $out1"
out2=$("$GO" test ./calc 2>&1) || { echo "$out2"; fail "go test (second)"; }
echo "$out2" | grep -q '(cached)' || fail "second go test was not cached: $out2"
"$GO" clean -testcache 2>/dev/null || fail "go clean -testcache"
out3=$("$GO" test ./calc 2>&1) || { echo "$out3"; fail "go test (after clean)"; }
echo "$out3" | grep -q '(cached)' && fail "go test still cached after go clean -testcache: $out3"
echo "go test: ran, then (cached), then ran again after go clean -testcache"
