#!/usr/bin/env bash
# test_install.sh - `cmake --install` into a temp prefix, then the wasm2c
# example built against the installed copy every way another project
# would: find_package(acache) with CMake (acache::acache, the shared
# library, and acache::acache_static), and pkg-config --cflags --libs
# acache / acache-static with the C compiler. Every build then passes
# test_wasm2c_example.sh; the shared builds must load the installed
# libacache.so (by its SONAME), the static ones must not need it.
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
pcs=$(find "$prefix" -name acache-static.pc)
config=$(find "$prefix" -name acacheConfig.cmake)
[ -n "$pc" ] && [ -n "$pcs" ] && [ -n "$config" ] && [ -e "$(dirname "$config")/acacheConfigVersion.cmake" ] ||
    fail "acache.pc or the CMake package is missing"
libdir=$(cd "$(dirname "$pc")/.." && pwd)
[ -f "$libdir/libacache.a" ] || fail "no libacache.a next to acache.pc"
soname=$(readelf -d "$libdir/libacache.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -n "$soname" ] && [ -e "$libdir/$soname" ] || fail "libacache.so has no SONAME, or no file by that name"
"$prefix/bin/acache" version | grep -q "^acache " || fail "the installed command does not run"

# A sanitized build installs a sanitized library: its users need the same flags.
san=""
if grep -q '^ACACHE_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
    san="-fsanitize=address,undefined"
fi

# 1. CMake: find_package(acache), acache::acache and acache::acache_static.
for kind in shared static; do
    static=OFF
    [ $kind = static ] && static=ON
    timeout 300 cmake -S "$src/examples/wasm2c" -B "$tmp/cmake-$kind" -DCMAKE_PREFIX_PATH="$prefix" \
        -DACACHE_EXAMPLE_STATIC=$static -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" \
        >"$tmp/cmake.log" || { cat "$tmp/cmake.log" >&2; fail "configuring against the installed package ($kind)"; }
    timeout 300 cmake --build "$tmp/cmake-$kind" >"$tmp/build.log" 2>&1 ||
        { cat "$tmp/build.log" >&2; fail "building against the installed package ($kind)"; }
    grep -q "$prefix" "$tmp/cmake-$kind/CMakeCache.txt" || fail "find_package did not find the install"
done

# 2. pkg-config. Plain --libs, not --static: acache-static.pc lists the
# dependencies in Requires/Libs, so the plain form is enough to link it.
export PKG_CONFIG_PATH=$(dirname "$pc")
[ "$(pkg-config --modversion acache)" = "$(sed -n 's/^project(acache VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")" ] ||
    fail "pkg-config reports the wrong version"
[ "$(pkg-config --modversion acache-static)" = "$(pkg-config --modversion acache)" ] ||
    fail "acache.pc and acache-static.pc disagree on the version"
for field in Requires.private Libs.private; do
    grep -q "^$field: ..*" "$pc" || fail "acache.pc has an empty $field"
done
grep -q '^Requires: ..*' "$pcs" || fail "acache-static.pc does not require the dependencies"
for mod in acache acache-static; do
    flags=$(pkg-config --cflags --libs $mod)
    echo "pkg-config --cflags --libs $mod: $flags"
    # shellcheck disable=SC2086
    cc $san -o "$tmp/wasm2c_run-$mod" "$src/examples/wasm2c/wasm2c_run.c" $flags -ldl ||
        fail "building with pkg-config --cflags --libs $mod"
done

# The shared builds load the installed library; the static ones need none.
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for bin in "$tmp/cmake-shared/wasm2c_run" "$tmp/wasm2c_run-acache"; do
    ldd "$bin" > "$tmp/ldd" || fail "ldd $bin"
    grep -q "$soname => $libdir/" "$tmp/ldd" || fail "$bin does not load $libdir/$soname"
done
for bin in "$tmp/cmake-static/wasm2c_run" "$tmp/wasm2c_run-acache-static"; do
    ldd "$bin" > "$tmp/ldd" || fail "ldd $bin"
    ! grep -q libacache "$tmp/ldd" || fail "$bin loads libacache.so though linked statically"
done
for bin in "$tmp/cmake-shared/wasm2c_run" "$tmp/cmake-static/wasm2c_run" \
           "$tmp/wasm2c_run-acache" "$tmp/wasm2c_run-acache-static"; do
    echo "== $bin"
    WASM2C_RUN=$bin bash "$here/test_wasm2c_example.sh"
done
