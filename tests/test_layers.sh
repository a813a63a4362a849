#!/usr/bin/env bash
# test_layers.sh - the dependency rule of docs/architecture.md, checked on
# the tree and on the built library:
#   1. a file under src/ includes headers of its own layer or of layers
#      below it, never above; the backends (disk, mem, prog, remote) never
#      include one another; nothing includes src/schemes.c's layer;
#   2. no two files of the library call each other, and there is no longer
#      cycle of calls between files (tsort of the "A calls B" graph);
#   3. no two files under src/ share a name (the archive lists members by
#      name only, and a reader should not have to ask which store.c).
# Layers, from the bottom: os 0, core 1, disk/mem/prog/remote 2,
# compose 3, src/*.c (the scheme table) 4.
# It must fail on any violation, naming the file; it changes nothing.
set -euo pipefail
src=${ACACHE_SOURCE_DIR:?}/src
lib=${ACACHE_LAYERS_LIB:-${ACACHE_BUILD_DIR:?}/libacache_internal.a}
fail=0

rank() {
  case $1 in
    os) echo 0 ;; core) echo 1 ;; disk|mem|prog|remote) echo 2 ;;
    compose) echo 3 ;; top) echo 4 ;; *) echo "unknown layer $1" >&2; echo 99 ;;
  esac
}

# 1. Includes.
while IFS= read -r f; do
  rel=${f#"$src"/}
  case $rel in */*) layer=${rel%%/*} ;; *) layer=top ;; esac
  mine=$(rank "$layer")
  [ "$mine" = 99 ] && { echo "FAIL: $rel is in no known layer"; fail=1; continue; }
  while IFS= read -r inc; do
    case $inc in */*) ;; *) echo "FAIL: $rel includes \"$inc\" without its layer folder"; fail=1; continue ;; esac
    other=${inc%%/*}
    theirs=$(rank "$other")
    if [ "$theirs" -gt "$mine" ]; then
      echo "FAIL: $rel ($layer) includes $inc, a layer above it"; fail=1
    elif [ "$theirs" = 2 ] && [ "$mine" = 2 ] && [ "$other" != "$layer" ]; then
      echo "FAIL: backend file $rel includes $inc of another backend"; fail=1
    fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" | grep -v '^acache\.h$' || true)
done < <(find "$src" -name '*.[ch]' | sort)

# 3. Unique names.
dups=$(find "$src" -name '*.[ch]' -printf '%f\n' | sort | uniq -d)
[ -z "$dups" ] || { echo "FAIL: file names used twice under src/: $dups"; fail=1; }

# 2. Calls between files, from the symbols each object defines and uses.
[ -f "$lib" ] || { echo "FAIL: no library at $lib"; exit 1; }
defs=$(mktemp); uses=$(mktemp); edges=$(mktemp)
trap 'rm -f "$defs" "$uses" "$edges"' EXIT
nm -A --defined-only "$lib" 2>/dev/null | awk '$(NF-1) ~ /^[TDBRVW]$/ {split($1, a, ":"); print a[2], $NF}' > "$defs"
nm -A --undefined-only "$lib" 2>/dev/null | awk '{split($1, a, ":"); print a[2], $NF}' > "$uses"
[ -s "$defs" ] || { echo "FAIL: nm found no symbols in $lib"; exit 1; }
awk 'NR == FNR { def[$2] = $1; next } ($2 in def) && def[$2] != $1 { print $1, def[$2] }' \
  "$defs" "$uses" | sort -u > "$edges"
[ -s "$edges" ] || { echo "FAIL: no calls between files found in $lib"; exit 1; }
mutual=$(awk '{ e[$1 " " $2] = 1 } END { for (k in e) { split(k, a, " "); if ((a[2] " " a[1]) in e && a[1] < a[2]) print a[1] " <-> " a[2] } }' "$edges")
[ -z "$mutual" ] || { echo "FAIL: files that call each other:"; echo "$mutual"; fail=1; }
if ! tsort "$edges" > /dev/null 2> "$defs.tsort"; then
  echo "FAIL: a cycle of calls between files:"; cat "$defs.tsort"; fail=1
fi
rm -f "$defs.tsort"

[ "$fail" = 0 ] && echo "layers: $(wc -l < "$edges") calls between files, all downward, no cycle"
exit "$fail"
