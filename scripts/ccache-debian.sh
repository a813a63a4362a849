#!/usr/bin/env bash
# ccache-debian.sh: make Debian's ccache 4.14 (from sid) runnable on this
# machine and print the absolute path of a `ccache` command that runs it.
#
# acache's ccache storage helper (`acache ccache-helper`) needs a ccache that
# starts storage helpers (4.13 or later). bookworm ships 4.8, and sid's
# ccache is built against a newer glibc. It runs unchanged here through its
# own dynamic loader (shared/CCACHE_HELPER.md):
#   1. a private apt configuration (a sources list, list and cache
#      directories of our own) for Debian's sid and trixie suites;
#   2. `apt-get download` of ccache and the libraries it needs;
#   3. `dpkg -x` of each into one directory P;
#   4. a wrapper P/ccache that runs P's loader with P's libraries on
#      P/usr/bin/ccache. The compiler ccache starts, and the helper it
#      spawns, use the system's own loader and libraries.
#
# Rules it keeps: never touches /etc/apt, /var/lib/apt, /var/cache/apt or
# the installed packages (no root needed); the result is kept between runs
# under ${ACACHE_CCACHE_HOME:-/var/cache/acache-ccache} (else
# ~/.cache/acache-ccache) with a stamp file, so a later run only checks it
# and prints the path; concurrent runs are serialised with flock.
#
# Output: the wrapper's absolute path is the only line on stdout; progress
# goes to stderr. Exit 1 (message on stderr) when it cannot be made.
#
# Environment:
#   ACACHE_CCACHE_HOME   where P is kept (default above)
#   ACACHE_CCACHE_REFETCH=1  ignore the stamp and fetch again
#   ACACHE_DEBIAN_MIRROR     (default http://deb.debian.org/debian)
set -euo pipefail

WANT_SERIES=4.14 # the ccache series the tests were written against
MIRROR=${ACACHE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# ccache and every library it links (ldd of sid's 4.14.2), newest first.
PACKAGES=(ccache libc6 libstdc++6 libgcc-s1 libfmt11 libblake3-0 libhiredis1.1.0
  libxxhash0 libzstd1)

log() { printf 'ccache-debian: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

choose_home() {
  local d
  for d in "${ACACHE_CCACHE_HOME:-/var/cache/acache-ccache}" "${HOME:-/root}/.cache/acache-ccache"; do
    if mkdir -p "$d" 2>/dev/null && [ -w "$d" ]; then
      printf '%s\n' "$(cd "$d" && pwd)"
      return 0
    fi
    log "$d is not writable"
  done
  return 1
}
HOME_DIR=$(choose_home) || die "no writable directory to keep ccache in"
P="$HOME_DIR/root"
WRAPPER="$P/ccache"
STAMP="$P/.acache-stamp"

# works: the wrapper runs and is a ccache of the wanted series.
works() {
  [ -x "$WRAPPER" ] || return 1
  local v
  v=$("$WRAPPER" --version 2>/dev/null | head -n 1) || return 1
  [[ $v == "ccache version $WANT_SERIES"* ]]
}

stamp_ok() {
  [ "${ACACHE_CCACHE_REFETCH:-0}" != 1 ] && [ -f "$STAMP" ] && works
}

done_with() {
  log "using $("$WRAPPER" --version | head -n 1) at $WRAPPER"
  printf '%s\n' "$WRAPPER"
  exit 0
}

if stamp_ok; then
  done_with
fi
exec 9>"$HOME_DIR/.lock"
flock 9
if stamp_ok; then # another run made it while we waited
  done_with
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get is needed to fetch Debian's ccache"
command -v dpkg >/dev/null 2>&1 || die "dpkg is needed to unpack Debian's ccache"
[ -r "$KEYRING" ] || die "$KEYRING is missing (package debian-archive-keyring)"

APTDIR="$HOME_DIR/apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs"
cat >"$APTDIR/sources.list" <<EOF
deb [signed-by=$KEYRING] $MIRROR sid main
deb [signed-by=$KEYRING] $MIRROR trixie main
EOF
# Everything apt reads or writes is ours, except the archive keyring and
# dpkg's status file (read only, for the architecture).
APT=(apt-get -q
  -o "Dir::Etc::SourceList=$APTDIR/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "Dir::State::Lists=$APTDIR/lists"
  -o "Dir::Cache=$APTDIR/cache"
  -o "Dir::Cache::pkgcache=$APTDIR/cache/pkgcache.bin"
  -o "Dir::Cache::srcpkgcache=$APTDIR/cache/srcpkgcache.bin"
  -o "APT::Sandbox::User=$(id -un)"
  -o "Debug::NoLocking=1")

log "apt-get update (private lists in $APTDIR)"
"${APT[@]}" update >&2 || die "apt-get update of sid/trixie failed"

rm -f "$APTDIR/debs"/*.deb
# Every package from sid (the newest): ccache 4.14 and the glibc it needs.
want=()
for p in "${PACKAGES[@]}"; do want+=("$p/sid"); done
log "downloading ${want[*]}"
(cd "$APTDIR/debs" && "${APT[@]}" download "${want[@]}" >&2) || die "apt-get download failed"

NEW="$P.new.$$"
rm -rf "$NEW"
mkdir -p "$NEW"
for deb in "$APTDIR/debs"/*.deb; do
  log "unpacking $(basename "$deb")"
  dpkg -x "$deb" "$NEW"
done
LIB="$NEW/usr/lib/x86_64-linux-gnu"
[ -x "$LIB/ld-linux-x86-64.so.2" ] || die "no loader in the unpacked libc6 (not x86-64?)"
[ -x "$NEW/usr/bin/ccache" ] || die "no usr/bin/ccache in the unpacked ccache"

# The wrapper finds its own directory, so P can be moved into place.
cat >"$NEW/ccache" <<'EOF'
#!/bin/sh
# Written by scripts/ccache-debian.sh: Debian sid's ccache through its own
# loader and libraries (nothing of the system's glibc is replaced).
d=$(dirname "$(readlink -f "$0")")
exec "$d/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
  --library-path "$d/usr/lib/x86_64-linux-gnu" "$d/usr/bin/ccache" "$@"
EOF
chmod +x "$NEW/ccache"
rm -rf "$P"
mv "$NEW" "$P"
works || die "the unpacked ccache does not run as ccache $WANT_SERIES"
{
  echo "# written by scripts/ccache-debian.sh; delete to fetch again"
  for deb in "$APTDIR/debs"/*.deb; do basename "$deb"; done
  echo "fetched=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$STAMP"
rm -f "$APTDIR/debs"/*.deb
done_with
