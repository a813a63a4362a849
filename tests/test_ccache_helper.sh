#!/usr/bin/env bash
# test_ccache_helper.sh - acache as ccache's remote storage helper, with the
# real ccache (Debian sid's 4.14, fetched by scripts/ccache-debian.sh and
# kept between runs) against a real redis-server, nginx (WebDAV) and S3
# (s3rver from npm behind tests/s3_proxy.py, which checks SigV4 with
# botocore) that the test starts on 127.0.0.1 and stops; a hanging server of
# its own that records what reaches it; and the helper's protocol handling with
# a small client of its own (malformed requests, the endpoint rules). The
# cases live in ccache_driver.py; names given as arguments run only those.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${ACACHE_BIN:?set by CTest}"
for tool in python3 redis-server nginx gcc make; do
  command -v "$tool" >/dev/null || { echo "test_ccache_helper.sh: $tool is required (scripts/install-deps.sh)" >&2; exit 1; }
done
if [ -z "${ACACHE_CCACHE:-}" ]; then
  ACACHE_CCACHE=$(bash "$here/../scripts/ccache-debian.sh")
  export ACACHE_CCACHE
fi
exec python3 "$here/ccache_driver.py" "$@"
