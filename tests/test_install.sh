#!/usr/bin/env bash
# test_install.sh - `cmake --install` into a temp prefix, then the wasm2c
# example built against the installed copy both ways another project
# would: find_package(acache) with CMake, and pkg-config --cflags --libs
# acache with the C compiler. Both builds then pass test_wasm2c_example.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${ACACHE_BUILD_DIR:?ACACHE_BUILD_DIR must name the build directory}
src=${ACACHE_SOURCE_DIR:?ACACHE_SOURCE_DIR must name the source directory}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/acache-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

prefix=$tmp/prefix
timeout 300 cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
for f in include/acache.h bin/acache; do
    [ -e "$prefix/$f" ] || fail "$f not installed"
done
pc=$(find "$prefix" -name acache.pc)
config=$(find "$prefix" -name acacheConfig.cmake)
[ -n "$pc" ] && [ -n "$config" ] && [ -e "$(dirname "$config")/acacheConfigVersion.cmake" ] ||
    fail "acache.pc or the CMake package is missing"
ls "$(dirname "$pc")"/../libacache.* >/dev/null || fail "no library next to acache.pc"
"$prefix/bin/acache" version | grep -q "^acache " || fail "the installed command does not run"

# A sanitized build installs a sanitized library: its users need the same flags.
san=""
if grep -q '^ACACHE_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
    san="-fsanitize=address,undefined"
fi

# 1. CMake: find_package(acache) and acache::acache.
timeout 300 cmake -S "$src/examples/wasm2c" -B "$tmp/with-cmake" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >"$tmp/cmake.log" ||
    { cat "$tmp/cmake.log" >&2; fail "configuring against the installed package"; }
timeout 300 cmake --build "$tmp/with-cmake" >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log" >&2; fail "building against the installed package"; }
grep -q "$prefix" "$tmp/with-cmake/CMakeCache.txt" || fail "find_package did not find the install"

# 2. pkg-config. Plain --libs, not --static: a static libacache lists its
# dependencies in Requires/Libs, so the plain form is enough to link it.
export PKG_CONFIG_PATH=$(dirname "$pc")
[ "$(pkg-config --modversion acache)" = "$(sed -n 's/^project(acache VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")" ] ||
    fail "pkg-config reports the wrong version"
for field in Requires.private Libs.private; do
    grep -q "^$field: ..*" "$pc" || fail "acache.pc has an empty $field"
done
flags=$(pkg-config --cflags --libs acache)
echo "pkg-config --cflags --libs acache: $flags"
# shellcheck disable=SC2086
cc $san -o "$tmp/wasm2c_run-pc" "$src/examples/wasm2c/wasm2c_run.c" $flags -ldl ||
    fail "building with pkg-config --cflags --libs"

for bin in "$tmp/with-cmake/wasm2c_run" "$tmp/wasm2c_run-pc"; do
    echo "== $bin"
    WASM2C_RUN=$bin bash "$here/test_wasm2c_example.sh"
done
