#!/usr/bin/env bash
# test_remote_go.sh - the go command through `acache gocacheprog --remote`
# against a real redis-server and nginx (WebDAV) that the test starts on
# 127.0.0.1 and stops: builds served from a remote into an empty local store,
# a remote killed mid-build, a hanging and a dead remote. The cases live in
# remote_go_driver.py; names given as arguments run only those.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${ACACHE_BIN:?set by CTest}"
for tool in python3 redis-server nginx node npm; do
  command -v "$tool" >/dev/null || { echo "test_remote_go.sh: $tool is required (scripts/install-deps.sh)" >&2; exit 1; }
done
exec python3 "$here/remote_go_driver.py" "$@"
