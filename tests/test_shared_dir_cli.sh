#!/usr/bin/env bash
# test_shared_dir_cli.sh - the umask option from the command line:
# --umask and $ACACHE_UMASK reach the store (modes of what `acache put`
# makes), --umask wins over the environment, a malformed one is refused
# (exit 2) before anything is made, and `acache config` shows it.
set -euo pipefail
: "${ACACHE_BIN:?set by CTest}"
A=$(readlink -f "$ACACHE_BIN")
WORK=$(mktemp -d /tmp/acache-shared-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
unset ACACHE_DIR ACACHE_REMOTE ACACHE_MAX_SIZE ACACHE_UMASK
fail() { echo "FAIL: $*" >&2; exit 1; }
act=$(printf '%064x' 7)
echo hello >"$WORK/in"
umask 077

mode() { stat -c %a "$1"; }
obj() { find "$1/v1/o" -type f | head -1; }

ACACHE_UMASK=002 "$A" put --dir "$WORK/env" "$act" "$WORK/in" >/dev/null
[ "$(mode "$WORK/env/v1")" = 2775 ] || fail "ACACHE_UMASK=002: v1 is $(mode "$WORK/env/v1")"
[ "$(mode "$(obj "$WORK/env")")" = 664 ] || fail "ACACHE_UMASK=002: object is $(mode "$(obj "$WORK/env")")"

ACACHE_UMASK=002 "$A" put --dir "$WORK/flag" --umask 027 "$act" "$WORK/in" >/dev/null
[ "$(mode "$WORK/flag/v1/a")" = 2750 ] || fail "--umask 027: a/ is $(mode "$WORK/flag/v1/a")"
[ "$(mode "$(obj "$WORK/flag")")" = 640 ] || fail "--umask 027: object is $(mode "$(obj "$WORK/flag")")"

"$A" put --dir "$WORK/private" "$act" "$WORK/in" >/dev/null
[ "$(mode "$WORK/private/v1")" = 700 ] || fail "default: v1 is $(mode "$WORK/private/v1")"
[ "$(mode "$(obj "$WORK/private")")" = 600 ] || fail "default: object is $(mode "$(obj "$WORK/private")")"

r=0; "$A" put --dir "$WORK/bad" --umask 0o22 "$act" "$WORK/in" >/dev/null 2>"$WORK/err" || r=$?
[ "$r" = 2 ] || fail "a malformed umask: exit $r"
grep -q "umask" "$WORK/err" || fail "a malformed umask: $(cat "$WORK/err")"
[ ! -e "$WORK/bad" ] || fail "a malformed umask made the directory"

ACACHE_UMASK=002 "$A" config --dir "$WORK/env" | grep -q "^umask *002 *(ACACHE_UMASK)" ||
  fail "config does not show the umask: $(ACACHE_UMASK=002 "$A" config --dir "$WORK/env")"
echo "umask from the command line: ok"
