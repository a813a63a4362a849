#!/usr/bin/env bash
# test.sh - builds acache and runs the whole test suite: the normal build,
# then the same suite under AddressSanitizer + UndefinedBehaviorSanitizer,
# then the libFuzzer target for a bounded time. Installs what it needs from
# Debian's archive first (scripts/install-deps.sh), and fetches Go 1.23
# (rebuilt with the cacheprog experiment), 1.24, 1.25 and 1.26 for the Go
# matrix (scripts/go-toolchain.sh: private apt list, nothing installed).
# Exit status is non-zero if anything fails.
#
# Environment: ACACHE_FUZZ_SECONDS (default 30, for each target), ACACHE_SKIP_ASAN=1,
# ACACHE_SKIP_FUZZ=1, JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-$(nproc)}
bash scripts/install-deps.sh
# The end-to-end tests need go commands that honour GOCACHEPROG: the Go
# matrix (test_go_1_NN) one per release, fetched here once (kept between
# runs under scripts/go-toolchain.sh's cache directory), and the other tests
# the default one (a Go >= 1.24 on the machine, else 1.26).
GO_VERSIONS=(1.23 1.24 1.25 1.26)
for v in "${GO_VERSIONS[@]}"; do
  go_path=$(bash scripts/go-toolchain.sh --version "$v")
  export "ACACHE_GO_${v/./_}=$go_path"
done
ACACHE_GO=$(bash scripts/go-toolchain.sh)
export ACACHE_GO
echo "== go toolchains ready (${SECONDS}s)"
# ...and a ccache that starts storage helpers (Debian sid's, kept between runs).
ACACHE_CCACHE=$(bash scripts/ccache-debian.sh)
export ACACHE_CCACHE

echo "== build and test (RelWithDebInfo, -Werror)"
# Tests on and the build type named: scripts/demo.sh configures build/ as a
# Release build without tests, and the cache would keep that.
GO_LIST=$(IFS=';' && echo "${GO_VERSIONS[*]}")
cmake -S . -B build -DACACHE_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DACACHE_TESTS=ON \
  -DACACHE_GO_VERSIONS="$GO_LIST" -DACACHE_GO_FULL_VERSIONS="$GO_LIST" >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"

if [ "${ACACHE_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build and test under AddressSanitizer + UndefinedBehaviorSanitizer (${SECONDS}s)"
  # The Go matrix runs in the normal build only; under the sanitizers the
  # helper is checked with Go 1.26 (the full set).
  cmake -S . -B build-asan -DACACHE_WERROR=ON -DACACHE_SANITIZE=ON -DACACHE_BENCH=OFF \
    -DACACHE_GO_VERSIONS=1.26 -DACACHE_GO_FULL_VERSIONS=1.26 >/dev/null
  cmake --build build-asan -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS"
fi

if [ "${ACACHE_SKIP_FUZZ:-0}" != 1 ] && [ -d fuzz ]; then
  secs=${ACACHE_FUZZ_SECONDS:-30}
  CC=clang cmake -S . -B build-fuzz -DACACHE_FUZZ=ON -DACACHE_TESTS=OFF -DACACHE_BENCH=OFF >/dev/null
  cmake --build build-fuzz -j"$JOBS" --target fuzz_gocacheprog fuzz_ccache_proto
  echo "== libFuzzer: GOCACHEPROG request parser for ${secs}s"
  mkdir -p build-fuzz/corpus build-fuzz/corpus-ccache
  build-fuzz/fuzz/fuzz_gocacheprog -max_total_time="$secs" -max_len=4096 build-fuzz/corpus fuzz/seeds 2>&1 | tail -5
  echo "== libFuzzer: ccache storage helper protocol for ${secs}s"
  build-fuzz/fuzz/fuzz_ccache_proto -max_total_time="$secs" -max_len=4096 build-fuzz/corpus-ccache fuzz/seeds-ccache 2>&1 | tail -5
fi
echo "== all tests passed (${SECONDS}s)"
