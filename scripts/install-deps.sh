#!/usr/bin/env bash
# install-deps.sh - installs the Debian packages acache's build and tests
# need. Idempotent: does nothing when they are all present. Runs as root, or
# through sudo otherwise. Never installs anything outside Debian's archive.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config        # the build
  libssl-dev libzstd-dev libjansson-dev   # libcrypto, zstd, JSON
  libhiredis-dev libcurl4-openssl-dev     # remote tiers
  libcmocka-dev python3                   # the tests
  redis-server nginx                      # remote tier tests: a real Redis, and
                                          # nginx (bookworm's nginx has WebDAV
                                          # PUT: --with-http_dav_module)
  clang                                   # libFuzzer target
  wabt                                    # wasm2c, wat2wasm: the wasm2c example
  python3-botocore                        # S3 tests: the proxy checking SigV4
)
# Needed as commands, from whichever package provides them (a machine may
# have Node.js from another Debian-format package that bundles npm): the S3
# tests install s3rver from the npm registry and run it with node.
COMMANDS=(node:nodejs npm:npm)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

for c in "${COMMANDS[@]}"; do
  if ! command -v "${c%%:*}" >/dev/null 2>&1; then
    missing+=("${c#*:}")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present" >&2
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
