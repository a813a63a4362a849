#!/usr/bin/env bash
# test_go_e2e.sh - end to end with a real go command of one release through
# `acache gocacheprog`, from empty directories. CTest runs it once per Go
# release as test_go_1_NN (tests/CMakeLists.txt, ACACHE_GO_VERSIONS), so a
# failure names its release.
#
# Usage: test_go_e2e.sh 1.NN [full|short]
#
# The short set (build, identical binary, test cache) is:
#   1. `go build std` twice: the second build is served >= 95% from hits;
#   2. a program built through acache is byte-identical to one built with
#      the go command's own cache, cold and warm;
#   3. `go test` of a small package says "(cached)" the second time, and runs
#      again after `go clean -testcache` (acache's Time answers make that
#      work).
# The full set (the default) adds:
#   4. `go test -cover` runs, then is "(cached)" with the same coverage;
#   5. `go vet` twice on a clean package (the second >= 95% hits), and twice on
#      a package with a vet finding (reported both times: a cached vet must
#      never hide one);
#   6. `go list -export -f '{{.Export}}'`: every path printed is absolute,
#      extension-free, in acache's directory, readable after the go command
#      and the helper have exited, and byte-identical to the export data the
#      go command's own cache holds for the same package;
#   7. `go run` prints the program's output, twice, the second time from hits
#      (>= 90%: linking is not cached through GOCACHEPROG).
#
# The go command: $ACACHE_GO_1_NN if set (scripts/test.sh fetches each
# release once and exports it), else `scripts/go-toolchain.sh --version 1.NN`.
# The test checks that it is that release (and for 1.23 the cacheprog build).
# Never writes outside its temp dir (and the toolchain cache, through
# go-toolchain.sh); asserts behaviour, never timings (the per-step seconds it
# prints are for reading).
set -euo pipefail
: "${ACACHE_BIN:?set by CTest}"
VERSION=${1:?usage: test_go_e2e.sh 1.NN [full|short]}
SET=${2:-full}
[[ $VERSION =~ ^1\.([0-9]+)$ ]] || { echo "bad version '$VERSION'" >&2; exit 2; }
MINOR=${BASH_REMATCH[1]}
case $SET in full | short) ;; *) echo "bad set '$SET' (full or short)" >&2; exit 2 ;; esac
SRC=${ACACHE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
var="ACACHE_GO_1_$MINOR"
GO=${!var:-}
if [ -z "$GO" ]; then
  GO=$(bash "$SRC/scripts/go-toolchain.sh" --version "$VERSION")
fi
ACACHE_BIN=$(readlink -f "$ACACHE_BIN")

WORK=$(mktemp -d /tmp/acache-go-e2e-XXXXXX)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
export GOTOOLCHAIN=local GOPATH="$WORK/gopath" GOFLAGS='' GO111MODULE=on GOENV=off
unset GOROOT GOOS GOARCH GOEXPERIMENT
fail() { echo "FAIL (go $VERSION): $*" >&2; exit 1; }
T0=$SECONDS
step() { echo "[go $VERSION, $((SECONDS - T0))s] $*"; }

line=$("$GO" version) || fail "$GO version"
[[ $line == "go version go$VERSION."* || $line == "go version go$VERSION "* ]] ||
  fail "$GO is not Go $VERSION: $line"
if [ "$MINOR" -lt 24 ] && [[ $line != *X:*cacheprog* ]]; then
  fail "$GO is Go $VERSION without the cacheprog experiment: $line"
fi
step "$line ($GO), $SET set"

summary_field() { # summary_field LOG FIELD -> number from the last -v summary
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

# run_go LOG ARGS...: the go command with stdout+stderr in LOG; prints LOG
# and fails on a non-zero exit.
run_go() {
  local log=$1
  shift
  "$GO" "$@" >"$log" 2>&1 || { cat "$log"; fail "go $*"; }
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
step "go build std: cold $cold_puts puts; warm $hits of $gets gets were hits"
[ "$cold_puts" -gt 100 ] || fail "cold build stored only $cold_puts entries"
[ "$gets" -gt 100 ] || fail "warm build asked only $gets gets"
[ $((hits * 100)) -ge $((gets * 95)) ] || fail "warm build: only $hits of $gets gets were hits (< 95%)"
if grep -v '^acache: gocacheprog: [0-9]* gets' "$WORK/warm.log" | grep -q .; then
  cat "$WORK/warm.log"
  fail "unexpected output on the warm build's stderr"
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

	"example.com/hello/calc"
)

func main() {
	fmt.Printf("%x %d\n", sha256.Sum256([]byte(os.Args[0])), calc.Add(20, 22))
}
GO
mkdir -p "$WORK/hello/calc"
cat >"$WORK/hello/calc/calc.go" <<'GO'
package calc

// Add returns a+b.
func Add(a, b int) int { return a + b }

// Twice returns 2*a; no test calls it, so coverage is 50%.
func Twice(a int) int { return a * 2 }
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
cd "$WORK/hello"
mkdir -p "$WORK/g2" "$WORK/g3"
GOCACHE="$WORK/g2" run_go "$WORK/hello.log" build -o "$WORK/hello-acache" .
GOCACHE="$WORK/g3" GOCACHEPROG='' run_go "$WORK/hello-own.log" build -o "$WORK/hello-own" .
cmp "$WORK/hello-acache" "$WORK/hello-own" ||
  fail "program built through acache differs from the one built with the go command's own cache"
# and again, now from acache's hits
GOCACHE="$WORK/g2" run_go "$WORK/hello2.log" build -o "$WORK/hello-acache2" .
cmp "$WORK/hello-acache2" "$WORK/hello-own" || fail "program rebuilt from acache hits differs"
# The packages come from hits; the link step itself is not cached through
# GOCACHEPROG, so a few gets miss.
hg=$(summary_field "$WORK/hello2.log" gets)
hh=$(summary_field "$WORK/hello2.log" hits)
if [ $((hh * 100)) -lt $((hg * 90)) ]; then
  cat "$WORK/hello2.log"
  fail "the rebuild of hello: only $hh of $hg gets were hits"
fi
step "hello: byte-identical through acache (cold, and warm with $hh of $hg gets hits) and with the go command's own cache"

# 3. go test caching and go clean -testcache.
export GOCACHE="$WORK/g2"
out1=$("$GO" test ./calc 2>&1) || { echo "$out1"; fail "go test (first)"; }
echo "$out1" | grep -q '(cached)' && fail "first go test was cached: $out1"
echo "$out1" | grep -q '^ok' || fail "first go test did not pass: $out1"
out2=$("$GO" test ./calc 2>&1) || { echo "$out2"; fail "go test (second)"; }
echo "$out2" | grep -q '^ok.*(cached)' || fail "second go test was not cached: $out2"
"$GO" clean -testcache 2>/dev/null || fail "go clean -testcache"
out3=$("$GO" test ./calc 2>&1) || { echo "$out3"; fail "go test (after clean)"; }
echo "$out3" | grep -q '(cached)' && fail "go test still cached after go clean -testcache: $out3"
step "go test: ran, then (cached), then ran again after go clean -testcache"

if [ "$SET" = short ]; then
  step "short set passed"
  exit 0
fi

# 4. go test -cover.
cov() { # the coverage figure of a go test -cover line
  sed -n 's/.*coverage: \([0-9.]*%\) of statements.*/\1/p' <<<"$1" | head -n 1
}
out1=$("$GO" test -cover ./calc 2>&1) || { echo "$out1"; fail "go test -cover (first)"; }
echo "$out1" | grep -q '(cached)' && fail "first go test -cover was cached: $out1"
c1=$(cov "$out1")
[ "$c1" = "50.0%" ] || fail "go test -cover: coverage '$c1', want 50.0%: $out1"
out2=$("$GO" test -cover ./calc 2>&1) || { echo "$out2"; fail "go test -cover (second)"; }
echo "$out2" | grep -q '(cached)' || fail "second go test -cover was not cached: $out2"
[ "$(cov "$out2")" = "$c1" ] || fail "cached go test -cover reports '$(cov "$out2")', not $c1: $out2"
step "go test -cover: $c1, then (cached) with the same figure"

# 5. go vet twice: clean, then with a finding.
run_go "$WORK/vet1.log" vet ./...
run_go "$WORK/vet2.log" vet ./...
vg=$(summary_field "$WORK/vet2.log" gets)
vh=$(summary_field "$WORK/vet2.log" hits)
if [ "$vg" -eq 0 ] || [ $((vh * 100)) -lt $((vg * 95)) ]; then
  cat "$WORK/vet2.log"
  fail "second go vet: only $vh of $vg gets were hits (< 95%)"
fi
mkdir -p "$WORK/hello/bad"
cat >"$WORK/hello/bad/bad.go" <<'GO'
package bad

import "fmt"

// Show has a printf verb without its argument: go vet reports it.
func Show() string { return fmt.Sprintf("%d apples") }
GO
for n in 1 2; do
  if "$GO" vet ./bad >"$WORK/vetbad$n.log" 2>&1; then
    cat "$WORK/vetbad$n.log"
    fail "go vet #$n passed a package with a vet finding"
  fi
  grep -q 'Sprintf format %d reads arg #1, but call has 0 args' "$WORK/vetbad$n.log" || {
    cat "$WORK/vetbad$n.log"
    fail "go vet #$n failed without reporting the finding"
  }
done
rm -rf "$WORK/hello/bad"
step "go vet: clean twice (second: $vh of $vg gets hits); the finding reported twice"

# 6. go list -export: paths that outlive the go command and the helper.
"$GO" list -export -f '{{.ImportPath}} {{.Export}}' ./... fmt >"$WORK/export.txt" 2>"$WORK/export.log" ||
  { cat "$WORK/export.log"; fail "go list -export"; }
GOCACHE="$WORK/g3" GOCACHEPROG='' "$GO" list -export -f '{{.ImportPath}} {{.Export}}' ./... fmt \
  >"$WORK/export-own.txt" 2>&1 || { cat "$WORK/export-own.txt"; fail "go list -export (own cache)"; }
python3 - "$WORK/export.txt" "$WORK/export-own.txt" "$WORK/c1" <<'PY' || fail "go list -export paths"
import os, sys
def read(p):
    return dict(l.split(" ", 1) for l in open(p).read().split("\n") if l)
mine, own, store = read(sys.argv[1]), read(sys.argv[2]), os.path.realpath(sys.argv[3])
want = {"example.com/hello", "example.com/hello/calc", "fmt"}
if set(mine) != want:
    sys.exit("go list -export listed %r, want %r" % (sorted(mine), sorted(want)))
for pkg, path in sorted(mine.items()):
    if not os.path.isabs(path):
        sys.exit("%s: export path %r is not absolute" % (pkg, path))
    if "." in os.path.basename(path):
        sys.exit("%s: export path %r has an extension" % (pkg, path))
    if not os.path.realpath(path).startswith(store + os.sep):
        sys.exit("%s: export path %r is not in acache's directory %s" % (pkg, path, store))
    with open(path, "rb") as f:  # the go command and the helper have exited
        data = f.read()
    if not data:
        sys.exit("%s: export file %s is empty" % (pkg, path))
    with open(own[pkg], "rb") as f:
        if f.read() != data:
            sys.exit("%s: export data differs from the go command's own cache" % pkg)
print("go list -export: %d paths, readable after exit, identical to the own cache's" % len(mine))
PY
step "go list -export checked"

# 7. go run, twice.
for n in 1 2; do
  "$GO" run . >"$WORK/run$n.out" 2>"$WORK/run$n.log" || { cat "$WORK/run$n.log"; fail "go run #$n"; }
  grep -Eq '^[0-9a-f]{64} 42$' "$WORK/run$n.out" || {
    cat "$WORK/run$n.out"
    fail "go run #$n printed the wrong thing"
  }
done
rg=$(summary_field "$WORK/run2.log" gets)
rh=$(summary_field "$WORK/run2.log" hits)
if [ $((rh * 100)) -lt $((rg * 90)) ]; then
  cat "$WORK/run2.log"
  fail "second go run: only $rh of $rg gets were hits"
fi
step "go run: right output twice, the second with $rh of $rg gets hits"
step "full set passed"
