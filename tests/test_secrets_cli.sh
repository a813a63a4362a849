#!/usr/bin/env bash
# test_secrets_cli.sh - no credential of a remote spec ever reaches the
# command's output: `acache config` (accepted and refused specs), the
# "cannot open remote" line of `acache gocacheprog`, and the "switched
# off" line and the -v summary of a remote that fails (an HTTP remote,
# whose libcurl errors quote the URL, and a Redis one). The password holds
# '@', ':' and '%40', which the parsers read up to the last '@'; a token
# option is hidden too. Every command runs under a timeout; the remotes
# are ports nothing listens on.
set -euo pipefail
: "${ACACHE_BIN:?ACACHE_BIN must name the acache binary}"
A=$(readlink -f "$ACACHE_BIN")
WORK=$(mktemp -d /tmp/acache-secrets-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
unset ACACHE_DIR ACACHE_REMOTE ACACHE_MAX_SIZE
fail() { echo "FAIL: $*" >&2; exit 1; }

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CRED='alice:p@ss:w%40rd'
# Pieces of the credential, any of which showing is a leak.
no_secret() {
  local what=$1 file=$2
  for piece in alice 'p@ss' 'ss:w' '40rd' 'w@rd' 'tok-s3cret'; do
    if grep -qF -- "$piece" "$file"; then
      cat "$file" >&2
      fail "$what shows '$piece'"
    fi
  done
}
has() { grep -qF -- "$2" "$3" || { cat "$3" >&2; fail "$1 does not say '$2'"; }; }
# One get then close, as the go command sends them.
requests() {
  printf '{"ID":1,"Command":"get","ActionID":"%s"}\n' "$(head -c 32 /dev/zero | base64)"
  printf '{"ID":2,"Command":"close"}\n'
}

echo "== acache config"
for scheme in http redis; do
  spec="$scheme://$CRED@127.0.0.1:$PORT/0"
  timeout 60 "$A" config --dir "$WORK/c" --remote "$spec" >"$WORK/out" 2>&1 || fail "config refused $spec"
  no_secret "config ($scheme)" "$WORK/out"
  has "config ($scheme)" "$scheme://***@127.0.0.1:$PORT/0" "$WORK/out"
  r=0
  timeout 60 "$A" config --dir "$WORK/c" --remote "$spec?token=tok-s3cret" >"$WORK/out" 2>&1 || r=$?
  [ "$r" = 1 ] || fail "config took an unknown option (exit $r)"
  no_secret "config, refused ($scheme)" "$WORK/out"
  has "config, refused ($scheme)" "token=***" "$WORK/out"
done

echo "== gocacheprog: cannot open remote"
for scheme in http redis; do
  r=0
  timeout 60 "$A" gocacheprog --dir "$WORK/c" \
    --remote "$scheme://$CRED@127.0.0.1:$PORT/0?timeout=1s&nosuch=1" </dev/null >"$WORK/out" 2>"$WORK/err" || r=$?
  [ "$r" != 0 ] || fail "gocacheprog opened a remote with an unknown option"
  has "cannot open remote ($scheme)" "cannot open remote $scheme://***@127.0.0.1" "$WORK/err"
  no_secret "cannot open remote ($scheme)" "$WORK/err"
done

echo "== a failing remote: switched off, and -v"
for scheme in http redis; do
  spec="$scheme://$CRED@127.0.0.1:$PORT/0?failures=1&prefetch=0&timeout=1s"
  requests | timeout 60 "$A" gocacheprog --dir "$WORK/c" -v --remote "$spec" >"$WORK/out" 2>"$WORK/err" ||
    fail "gocacheprog failed with a dead remote ($scheme)"
  has "switched off ($scheme)" "switched off" "$WORK/err"
  has "-v ($scheme)" "$scheme://***@127.0.0.1:$PORT/0" "$WORK/err"
  no_secret "switched off and -v ($scheme)" "$WORK/err"
  no_secret "protocol ($scheme)" "$WORK/out"
done
echo "secrets: none shown"
