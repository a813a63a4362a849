#!/usr/bin/env bash
# symbols.sh - the library boundary (CTest test_symbols):
#   1. collide, a program defining set_error, parse_size and spec_parse of
#      its own, runs linked against libacache.a and against libacache.so;
#   2. the global names each library defines are exactly the functions
#      include/acache.h declares (ACACHE_API), no more, no fewer;
#   3. libacache.so carries a SONAME with its version.
# Usage: symbols.sh HEADER STATIC_LIB SHARED_LIB COLLIDE_STATIC COLLIDE_SHARED
set -euo pipefail
header=$1 static=$2 shared=$3
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/acache-symbols-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

for prog in "$4" "$5"; do
  out=$("$prog") || { echo "FAIL: $prog: $out"; fail=1; continue; }
  [ "$out" = ok ] || { echo "FAIL: $prog printed '$out'"; fail=1; }
done

grep -oE '^ACACHE_API [^(]*\bacache_[a-z0-9_]+\(' "$header" | grep -oE 'acache_[a-z0-9_]+\($' |
  tr -d '(' | sort -u > "$tmp/header"
[ "$(wc -l < "$tmp/header")" -ge 30 ] || { echo "FAIL: found only $(wc -l < "$tmp/header") functions in $header"; exit 1; }
# Names beginning with __ belong to the compiler's runtime (a sanitizer's).
nm -g --defined-only "$static" | awk 'NF == 3 { print $3 }' | grep -v '^__' | sort -u > "$tmp/static"
nm -D --defined-only "$shared" | awk 'NF == 3 { print $3 }' | grep -v '^__' | sort -u > "$tmp/shared"
for lib in static shared; do
  if ! diff -u "$tmp/header" "$tmp/$lib" > "$tmp/diff"; then
    echo "FAIL: the $lib library's global names differ from acache.h's functions (+ extra, - missing):"
    grep -E '^[-+][a-z_]' "$tmp/diff" || true
    fail=1
  else
    echo "$lib: $(wc -l < "$tmp/$lib") global names, all declared in acache.h"
  fi
done

soname=$(readelf -d "$shared" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
case $soname in
  libacache.so.[0-9]*) echo "SONAME $soname" ;;
  *) echo "FAIL: libacache.so has no versioned SONAME ('$soname')"; fail=1 ;;
esac
exit "$fail"
