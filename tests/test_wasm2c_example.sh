#!/usr/bin/env bash
# test_wasm2c_example.sh - the wasm2c example end to end: a module made from
# .wat with wat2wasm is compiled to a shared object once (wasm2c + cc), and
# every later run, or the same run in four processes at once, loads it from
# the cache and compiles nothing. Prints the time the cache saved.
#
# Runs $WASM2C_RUN if set (test_install.sh points it at copies built against
# the installed library), else the example built in $ACACHE_BUILD_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
run=${WASM2C_RUN:-${ACACHE_BUILD_DIR:?ACACHE_BUILD_DIR must name the build directory}/examples/wasm2c/wasm2c_run}
for tool in wat2wasm wasm2c cc; do
    command -v "$tool" >/dev/null || { echo "test_wasm2c_example: $tool is missing (scripts/install-deps.sh installs wabt)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/acache-wasm2c-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cache=$tmp/cache
wat2wasm "$here/data/fib.wat" -o "$tmp/fib.wasm"

fail() { echo "FAIL: $*" >&2; exit 1; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# runs the example with a time bound; output in $tmp/out
ex() { timeout 120 "$run" --cache "$cache" "$@" >"$tmp/out" 2>"$tmp/err"; }
expect() { grep -qF -- "$1" "$tmp/out" || { cat "$tmp/out" "$tmp/err" >&2; fail "expected '$1'"; }; }

t0=$(ms); ex "$tmp/fib.wasm" fib 24; t1=$(ms)
expect "compiled: yes"; expect "fib(24) = 46368"
ex "$tmp/fib.wasm" fib 24; t2=$(ms)
expect "compiled: no (cache hit"; expect "fib(24) = 46368"
first=$((t1 - t0)); second=$((t2 - t1))
echo "first run ${first} ms (compiled), second run ${second} ms (cache hit): saved $((first - second)) ms"
[ "$second" -lt "$first" ] || fail "the cached run was not faster"

# Other exports of the same module: still no compile.
ex "$tmp/fib.wasm" add 40 2; expect "compiled: no"; expect "add(40, 2) = 42"
ex "$tmp/fib.wasm" answer; expect "compiled: no"; expect "answer() = 42"
# A trap is reported, not a crash.
if ex "$tmp/fib.wasm" boom; then fail "boom did not trap"; fi
grep -q "Unreachable" "$tmp/err" || { cat "$tmp/err" >&2; fail "no trap message"; }

# Another fingerprint (-march=native, the CPU features join it): compiled
# once more, then a hit; the first entry is still there.
ex --native "$tmp/fib.wasm" fib 10; expect "compiled: yes"; expect "fib(10) = 55"
ex --native "$tmp/fib.wasm" fib 10; expect "compiled: no (cache hit"
ex "$tmp/fib.wasm" fib 10; expect "compiled: no (cache hit"

# A module that is not Wasm: a clear error, and nothing cached.
printf 'not wasm' >"$tmp/bad.wasm"
if ex "$tmp/bad.wasm" f; then fail "a broken module ran"; fi
grep -q "wasm2c failed" "$tmp/err" || { cat "$tmp/err" >&2; fail "no wasm2c error"; }
if ex "$tmp/bad.wasm" f; then fail "a broken module ran"; fi
grep -q "wasm2c failed" "$tmp/err" || fail "the failure was cached"

# Four processes at once on a fresh cache: one compiles, three wait for it.
cache=$tmp/cache2
pids=()
for i in 1 2 3 4; do
    timeout 120 "$run" --cache "$cache" "$tmp/fib.wasm" fib 20 >"$tmp/par$i" 2>&1 & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel run failed"; done
compiled=$(cat "$tmp"/par? | grep -c "compiled: yes" || true)
grep -h "compiled" "$tmp"/par?
[ "$compiled" = 1 ] || fail "$compiled of 4 parallel runs compiled"
[ "$(cat "$tmp"/par? | grep -c "fib(20) = 6765")" = 4 ] || fail "wrong results"
