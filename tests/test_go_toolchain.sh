#!/usr/bin/env bash
# test_go_toolchain.sh - scripts/go-toolchain.sh keeps its promises:
#   * a version it does not provide (1.22, 1.2x, "latest") is refused with a
#     message and a non-zero status, and so is an unknown argument;
#   * --version 1.NN and ACACHE_GO_VERSION=1.NN print a go that is that
#     release (1.23: the cacheprog build), the same path both ways, and
#     ACACHE_GO is taken only when it is the release asked for;
#   * without a version, ACACHE_GO naming a Go >= 1.24 is preferred;
#   * the machine's apt sources, apt lists and installed packages are the
#     same before and after.
# The toolchains come from the script's cache directory (scripts/test.sh
# fetches them first; run alone, this test fetches what is missing).
set -euo pipefail
SRC=${ACACHE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
SCRIPT="$SRC/scripts/go-toolchain.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
WORK=$(mktemp -d /tmp/acache-go-toolchain-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The machine's apt configuration, lists and package database, as a digest.
machine_state() {
  {
    find /etc/apt /var/lib/apt/lists -maxdepth 2 -type f -printf '%p %s %T@\n' 2>/dev/null | sort
    md5sum /var/lib/dpkg/status
  } | md5sum
}
before=$(machine_state)

for bad in 1.22 1.2x latest 2.0; do
  if out=$(bash "$SCRIPT" --version "$bad" 2>&1); then
    fail "--version $bad was accepted: $out"
  fi
  [[ $out == *"go-toolchain: error:"* ]] || fail "--version $bad: no error message: $out"
done
if bash "$SCRIPT" --frobnicate >/dev/null 2>&1; then fail "an unknown argument was accepted"; fi

declare -A GO_OF=()
for v in 1.23 1.24 1.25 1.26; do
  go=$(env -u ACACHE_GO bash "$SCRIPT" --version "$v" 2>"$WORK/log") || { cat "$WORK/log"; fail "--version $v"; }
  [[ $go == /* && -x $go ]] || fail "--version $v printed '$go', not an absolute path to a program"
  line=$("$go" version)
  [[ $line == "go version go$v."* || $line == "go version go$v "* ]] || fail "--version $v gave $line"
  if [ "$v" = 1.23 ] && [[ $line != *X:*cacheprog* ]]; then fail "1.23 without the experiment: $line"; fi
  go2=$(env -u ACACHE_GO ACACHE_GO_VERSION="$v" bash "$SCRIPT" 2>/dev/null)
  [ "$go2" = "$go" ] || fail "ACACHE_GO_VERSION=$v gave $go2, --version $v gave $go"
  GO_OF[$v]=$go
  echo "ok: $v -> $line"
done

# ACACHE_GO is used when it is the release asked for, passed over otherwise,
# and preferred when no release is asked for.
got=$(ACACHE_GO="${GO_OF[1.25]}" bash "$SCRIPT" --version 1.25 2>/dev/null)
[ "$got" = "${GO_OF[1.25]}" ] || fail "ACACHE_GO of the release asked for not used: $got"
got=$(ACACHE_GO="${GO_OF[1.25]}" bash "$SCRIPT" --version 1.24 2>/dev/null)
[ "$got" = "${GO_OF[1.24]}" ] || fail "ACACHE_GO of another release used for 1.24: $got"
got=$(ACACHE_GO="${GO_OF[1.24]}" bash "$SCRIPT" 2>/dev/null)
[ "$got" = "${GO_OF[1.24]}" ] || fail "ACACHE_GO (Go 1.24) not preferred without a version: $got"
echo "ok: ACACHE_GO used only for its own release"

[ "$(machine_state)" = "$before" ] || fail "the machine's apt sources, lists or packages changed"
echo "ok: /etc/apt, /var/lib/apt/lists and the package database unchanged"
