#!/usr/bin/env bash
# test_gocacheprog.sh - end-to-end tests of `acache gocacheprog`: drives the
# real binary ($ACACHE_BIN) over pipes as the go command would. The cases
# live in gocacheprog_driver.py (Python 3, standard library only); names of
# cases given as arguments run only those.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${ACACHE_BIN:?ACACHE_BIN must name the acache binary}"
if ! command -v python3 >/dev/null; then
    echo "test_gocacheprog.sh: python3 is required" >&2
    exit 1
fi
exec python3 "$here/gocacheprog_driver.py" "$@"
