#!/usr/bin/env bash
# go-toolchain.sh: make a `go` command that honours GOCACHEPROG available and
# print its absolute path.
#
# acache's `acache gocacheprog` serves Go's GOCACHEPROG protocol; its tests,
# its demo and its benchmark need a go command that really starts a
# GOCACHEPROG helper (see shared/GOCACHEPROG.md):
#   * Go >= 1.24 does so by default. Debian ships Go 1.24 (trixie), 1.25
#     (trixie-backports) and 1.26 (trixie-backports, sid); Go's binaries are
#     static, so these packages, unpacked, run on bookworm unchanged.
#   * Go 1.21-1.23 does so only if the go command and every tool under
#     pkg/tool were built with GOEXPERIMENT=cacheprog: Go 1.23
#     (bookworm-backports) is fetched the same way and rebuilt so.
#
# Which go, first match wins:
#   No version asked for:
#     1. $ACACHE_GO if set, else `go` on PATH, if it is Go >= 1.24 (or a
#        1.21-1.23 go built with the cacheprog experiment);
#     2. the newest /usr/lib/go-1.NN (NN >= 24) installed on the machine;
#     3. Go 1.26 from Debian, as below.
#   --version 1.NN (or ACACHE_GO_VERSION=1.NN):
#     1. $ACACHE_GO, `go` on PATH or /usr/lib/go-1.NN if it is exactly 1.NN
#        and honours GOCACHEPROG;
#     2. NN >= 24: Debian's golang-1.NN-go and golang-1.NN-src, fetched with
#        `apt-get download` through a private apt list and unpacked with
#        `dpkg -x` into $GO_HOME/go1.NN (the go is
#        $GO_HOME/go1.NN/usr/lib/go-1.NN/bin/go);
#        NN = 23: the same two packages from bookworm-backports, unpacked in
#        a temp dir, copied to $GO_HOME/go1.23-cacheprog and rebuilt there
#        with GOEXPERIMENT=cacheprog (about two minutes on two cores).
#   Each result is verified (`go version` says 1.NN, GOROOT is the unpacked
#   tree, and a go build with GOCACHEPROG naming a fake helper really starts
#   it) and a stamp is written; later runs find the stamp and return at once,
#   without the network.
#
# What it must never do: change the machine's apt sources (/etc/apt), its
# apt state (/var/lib/apt, /var/cache/apt) or its installed packages. The
# private apt list is a sources file, a lists directory and a cache directory
# of its own under $GO_HOME/apt, passed to apt-get with
# Dir::Etc::SourceList, Dir::Etc::SourceParts=/dev/null, Dir::State::Lists
# and Dir::Cache. Signatures are checked as usual, against
# /usr/share/keyrings/debian-archive-keyring.gpg (bookworm's
# debian-archive-keyring 2023.3+deb12u2 holds the bookworm and trixie archive
# keys, which sign trixie, trixie-backports, sid and bookworm-backports
# today); nothing is ever marked trusted. If Debian starts signing with a key
# that keyring lacks, apt-get update fails and so does this script, saying so:
# the remedy is a newer debian-archive-keyring from bookworm's own updates.
#
# Output: the absolute path of the go binary is the only line on stdout; all
# progress goes to stderr. Usage:
#     GO=$(scripts/go-toolchain.sh)                 # Go >= 1.24, else 1.26
#     GO=$(scripts/go-toolchain.sh --version 1.25)
#     GOTOOLCHAIN=local GOCACHEPROG="acache gocacheprog" "$GO" build ./...
#
# Callers should export GOTOOLCHAIN=local when running the printed go: no
# toolchain can be downloaded here, and a go.mod asking for a newer Go would
# otherwise make the go command try to fetch one.
#
# Environment:
#   ACACHE_GO_VERSION  the version to provide, as --version (1.23 ... 1.26).
#   ACACHE_GO          go binary (name or path) to try first.
#   ACACHE_GO_HOME     where fetched toolchains are kept (default
#                      /var/cache/acache-go, else $HOME/.cache/acache-go).
#   ACACHE_GO_REFETCH=1  ignore the stamp: fetch (and for 1.23 rebuild) again.
#   ACACHE_GO_REBUILD=1  the same, the name older versions of this script used.
#   ACACHE_GO_MIRROR   the Debian archive to fetch from (default
#                      http://deb.debian.org/debian); signatures are checked
#                      against the same keyring whatever the mirror.
#
# Idempotent; safe to run concurrently (a lock per toolchain).

set -euo pipefail

DEFAULT_MINOR=26     # what is fetched when nothing suitable is installed
MIN_DEFAULT_MINOR=24 # first Go release with GOCACHEPROG on by default
CACHEPROG_MINOR=23   # the one release rebuilt with GOEXPERIMENT=cacheprog
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR=${ACACHE_GO_MIRROR:-http://deb.debian.org/debian}

export GOTOOLCHAIN=local # never try to download a toolchain

log() { printf 'go-toolchain: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  cat <<'EOF'
usage: scripts/go-toolchain.sh [--version 1.NN]

Prints the absolute path of a go command that honours GOCACHEPROG. Without
--version: a Go >= 1.24 already on the machine, else Debian's Go 1.26. With
--version: that release (1.23 is rebuilt with GOEXPERIMENT=cacheprog; 1.24
and later are Debian's packages, unpacked). Fetched toolchains are kept under
$ACACHE_GO_HOME (default /var/cache/acache-go). Nothing is installed and the
machine's apt sources are not changed.
EOF
}

WANT="${ACACHE_GO_VERSION:-}"
while [ $# -gt 0 ]; do
  case $1 in
    --version) [ $# -ge 2 ] || die "--version needs a value"; WANT=$2; shift 2 ;;
    --version=*) WANT=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
WANT_MINOR=""
if [ -n "$WANT" ]; then
  [[ $WANT =~ ^(go)?1\.([0-9]+)$ ]] || die "--version wants 1.NN (e.g. 1.26), got '$WANT'"
  WANT_MINOR=${BASH_REMATCH[2]}
  if [ "$WANT_MINOR" -lt "$MIN_DEFAULT_MINOR" ] && [ "$WANT_MINOR" -ne "$CACHEPROG_MINOR" ]; then
    die "Go 1.$WANT_MINOR is not provided: 1.$CACHEPROG_MINOR (rebuilt) or 1.$MIN_DEFAULT_MINOR and later"
  fi
fi

# Temporary directories removed on exit.
TMPDIRS=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local d
  for d in "${TMPDIRS[@]+"${TMPDIRS[@]}"}"; do
    chmod -R u+w "$d" 2>/dev/null || true
    rm -rf "$d"
  done
}
trap cleanup EXIT
# new_tmpdir VAR: make a temporary directory, store its path in VAR.
# (Not a $(...) function: the subshell would lose the TMPDIRS entry.)
new_tmpdir() {
  local d
  d=$(mktemp -d "${TMPDIR:-/tmp}/acache-go.XXXXXX")
  TMPDIRS+=("$d")
  printf -v "$1" '%s' "$d"
}

# go_version_line GO: `go version` output, run from / so that no go.mod in
# the caller's directory can interfere.
go_version_line() {
  (cd / && env -u GOROOT GOENV=off "$1" version) 2>/dev/null
}

# go_minor LINE: the minor version from a `go version` line, e.g. 23.
go_minor() {
  local re='go version go1\.([0-9]+)'
  [[ $1 =~ $re ]] || return 1
  printf '%s\n' "${BASH_REMATCH[1]}"
}

# speaks_cacheprog GO: true when GO is a go command that honours GOCACHEPROG.
speaks_cacheprog() {
  local line minor
  line=$(go_version_line "$1") || return 1
  minor=$(go_minor "$line") || return 1
  if [ "$minor" -ge "$MIN_DEFAULT_MINOR" ]; then return 0; fi
  # 1.21-1.23 only with the experiment compiled in ("go1.23.5 X:cacheprog").
  [ "$minor" -ge 21 ] && [[ $line == *X:*cacheprog* ]]
}

# is_wanted GO: GO honours GOCACHEPROG and, if a version was asked for, is it.
is_wanted() {
  speaks_cacheprog "$1" || return 1
  [ -z "$WANT_MINOR" ] && return 0
  local minor
  minor=$(go_minor "$(go_version_line "$1")") && [ "$minor" -eq "$WANT_MINOR" ]
}

# abs_path NAME: absolute path of a command name or path (symlinks kept).
abs_path() {
  local p
  p=$(command -v "$1" 2>/dev/null) || return 1
  case $p in
    /*) ;;
    *) p="$(cd "$(dirname "$p")" && pwd)/$(basename "$p")" ;;
  esac
  printf '%s\n' "$p"
}

# check_gocacheprog GO: prove GO really starts the GOCACHEPROG program. The
# program named is a fake helper that records its start in a file and exits
# at once: the build must fail, and the record must exist.
check_gocacheprog() {
  local go=$1 work out
  new_tmpdir work
  mkdir -p "$work/mod"
  printf 'module example.com/check\n\ngo 1.21\n' >"$work/mod/go.mod"
  printf 'package check\n\nfunc F() int { return 1 }\n' >"$work/mod/check.go"
  cat >"$work/fake-helper" <<'EOF'
#!/bin/sh
# Records that the go command started it, then exits without a handshake.
echo "started with $*" >"$1"
exit 3
EOF
  chmod +x "$work/fake-helper"
  if out=$(cd "$work/mod" && env -u GOROOT -u GOFLAGS GOENV=off \
    GOPATH="$work/gopath" GOCACHE="$work/gocache" \
    GOCACHEPROG="$work/fake-helper $work/started" "$go" build . 2>&1); then
    log "go build succeeded although the GOCACHEPROG helper exited at once"
    return 1
  fi
  if [ ! -s "$work/started" ]; then
    log "go build did not start the GOCACHEPROG helper; it said:"
    printf '%s\n' "$out" >&2
    return 1
  fi
  log "GOCACHEPROG check ok: the go command started the helper and failed when it quit: $(printf '%s' "$out" | head -n 1)"
}

# done_with GO: print GO as the result and exit.
done_with() {
  log "using $(go_version_line "$1") at $1"
  printf '%s\n' "$1"
  exit 0
}

# ------------------------------------------------ a go already on the machine
if [ -n "${ACACHE_GO:-}" ]; then
  if cand=$(abs_path "$ACACHE_GO") && is_wanted "$cand"; then
    done_with "$cand"
  fi
  [ -n "$WANT_MINOR" ] || log "warning: ACACHE_GO=$ACACHE_GO is not a go >= 1.$MIN_DEFAULT_MINOR" \
    "(nor a cacheprog build); looking further"
elif cand=$(abs_path go) && is_wanted "$cand"; then
  done_with "$cand"
fi

# installed_debian_go: the /usr/lib/go-1.NN/bin/go wanted, else the newest
# with NN >= 24 when no version was asked for.
installed_debian_go() {
  local d minor best=-1 bestgo=""
  for d in /usr/lib/go-1.*/; do
    [ -x "${d}bin/go" ] || continue
    minor=${d#/usr/lib/go-1.}
    minor=${minor%/}
    [[ $minor =~ ^[0-9]+$ ]] || continue
    if [ -n "$WANT_MINOR" ]; then
      [ "$minor" -eq "$WANT_MINOR" ] || continue
    elif [ "$minor" -lt "$MIN_DEFAULT_MINOR" ]; then
      continue
    fi
    if [ "$minor" -gt "$best" ]; then
      best=$minor
      bestgo="${d}bin/go"
    fi
  done
  [ -n "$bestgo" ] && printf '%s\n' "$bestgo"
}
if cand=$(installed_debian_go) && is_wanted "$cand"; then
  done_with "$cand"
fi

# ------------------------------------------------ a toolchain of our own
MINOR=${WANT_MINOR:-$DEFAULT_MINOR}
choose_go_home() {
  local d
  for d in "${ACACHE_GO_HOME:-/var/cache/acache-go}" "${HOME:-/root}/.cache/acache-go"; do
    if mkdir -p "$d" 2>/dev/null && [ -w "$d" ]; then
      printf '%s\n' "$(cd "$d" && pwd)"
      return 0
    fi
    log "$d is not writable"
  done
  return 1
}
GO_HOME=$(choose_go_home) || die "no writable directory for the Go toolchains"
if [ "$MINOR" -eq "$CACHEPROG_MINOR" ]; then
  DEST="$GO_HOME/go1.$MINOR-cacheprog"
  DEST_GO="$DEST/bin/go"
else
  DEST="$GO_HOME/go1.$MINOR"
  DEST_GO="$DEST/usr/lib/go-1.$MINOR/bin/go"
fi
STAMP="$DEST/.acache-go-stamp"
# Earlier versions of this script stamped their 1.23 rebuild so; it is as good.
OLD_STAMP="$DEST/.acache-cacheprog-stamp"

# stamp_ok: the toolchain was made and verified by an earlier run.
stamp_ok() {
  [ "${ACACHE_GO_REFETCH:-0}" != 1 ] && [ "${ACACHE_GO_REBUILD:-0}" != 1 ] || return 1
  [ -f "$STAMP" ] || { [ "$MINOR" -eq "$CACHEPROG_MINOR" ] && [ -f "$OLD_STAMP" ]; } || return 1
  [ -x "$DEST_GO" ] || return 1
  speaks_cacheprog "$DEST_GO" &&
    [ "$(go_minor "$(go_version_line "$DEST_GO")")" = "$MINOR" ]
}
if stamp_ok; then
  done_with "$DEST_GO"
fi

# Everything below is the slow path. Serialise concurrent runs.
exec 9>"$GO_HOME/.lock-go1.$MINOR"
flock 9
if stamp_ok; then # another run finished it while we waited
  done_with "$DEST_GO"
fi
# The stamp is refused only once: the toolchain made below is kept.
ACACHE_GO_REFETCH=0 ACACHE_GO_REBUILD=0

# ------------------------------------------------ the private apt list
command -v apt-get >/dev/null 2>&1 || die "no go found and no apt-get to fetch one; set ACACHE_GO"
command -v dpkg >/dev/null 2>&1 || die "no dpkg to unpack Debian's Go packages"
[ -r "$KEYRING" ] || die "$KEYRING is missing (package debian-archive-keyring)"

# suite_sets MINOR: the private lists to try for golang-1.MINOR, one set of
# suites a line, smallest first (sid's index alone is 11 MB; trixie-backports'
# is 0.3 MB), then everything.
suite_sets() {
  case $1 in
    "$CACHEPROG_MINOR") echo "bookworm-backports" ;;
    24) echo "trixie" ;;
    *) echo "trixie-backports" ;;
  esac
  echo "trixie trixie-backports sid"
}

# apt_private SUITES ARGS...: apt-get with a private list of SUITES (space
# separated) of Debian's main archive. Its lists and cache live under
# $GO_HOME/apt/<suites>; /etc/apt's sources, preferences and the system's
# lists are not read, and nothing outside $GO_HOME is written.
apt_private() {
  local suites=$1 dir
  shift
  dir="$GO_HOME/apt/${suites// /+}"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  : >"$dir/sources.list"
  local s
  for s in $suites; do
    echo "deb [signed-by=$KEYRING] $MIRROR $s main" >>"$dir/sources.list"
  done
  local as_root=()
  # As root apt drops to _apt to download, which cannot write into a
  # directory of root's; downloading as root is what apt falls back to.
  [ "$(id -u)" -ne 0 ] || as_root=(-o APT::Sandbox::User=root)
  apt-get -q -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
    -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
    "${as_root[@]}" "$@"
}

# fetch_debs MINOR DIR: download golang-1.MINOR-go and -src into DIR;
# prints the "name version" of each.
fetch_debs() {
  local minor=$1 dir=$2 suites
  local pkgs=("golang-1.$minor-go" "golang-1.$minor-src")
  while read -r suites; do
    log "private apt list: $suites ($MIRROR); apt-get update"
    if ! apt_private "$suites" update >&2; then
      die "apt-get update of the private list ($suites) failed: no network to the archive," \
        "or its signatures cannot be checked against $KEYRING"
    fi
    if (cd "$dir" && apt_private "$suites" download "${pkgs[@]}" >&2); then
      local f
      for f in "$dir"/*.deb; do
        printf '%s %s\n' "$(dpkg-deb -f "$f" Package)" "$(dpkg-deb -f "$f" Version)"
      done
      return 0
    fi
    log "${pkgs[*]} not (all) in $suites"
    rm -f "$dir"/*.deb
  done < <(suite_sets "$minor")
  die "${pkgs[*]} not found in Debian's archive"
}

# unpack_debs DIR ROOT: dpkg -x every .deb of DIR into ROOT.
unpack_debs() {
  local f
  mkdir -p "$2"
  for f in "$1"/*.deb; do
    log "dpkg -x $(basename "$f")"
    dpkg -x "$f" "$2"
  done
}

# check_goroot GO ROOT: the go command finds its GOROOT inside ROOT (from
# its own place, not the path Debian compiled in) and builds and runs a
# program.
check_goroot() {
  local go=$1 root=$2 work goroot
  new_tmpdir work
  goroot=$(cd / && env -u GOROOT GOENV=off "$go" env GOROOT) || die "$go env GOROOT failed"
  case $(readlink -f "$goroot") in
    "$(readlink -f "$root")" | "$(readlink -f "$root")"/*) ;;
    *) die "$go uses GOROOT $goroot, not the tree in $root" ;;
  esac
  mkdir -p "$work/hello"
  printf 'module example.com/hello\n\ngo 1.21\n' >"$work/hello/go.mod"
  printf 'package main\n\nfunc main() { println("hello from go-toolchain") }\n' >"$work/hello/main.go"
  (cd "$work/hello" && env -u GOROOT -u GOFLAGS -u GOCACHEPROG GOENV=off GOPATH="$work/gopath" \
    GOCACHE="$work/gocache" "$go" build -o "$work/hello/hello" .) ||
    die "$go cannot build a trivial program"
  "$work/hello/hello" 2>&1 | grep -q 'hello from go-toolchain' ||
    die "a program built by $go does not run"
}

# write_stamp PKGS RESULT: the stamp that lets later runs return at once.
write_stamp() {
  {
    echo "# written by scripts/go-toolchain.sh; delete it (or ACACHE_GO_REFETCH=1) to fetch again"
    printf 'package=%s\n' "${1//$'\n'/ | }"
    echo "result=$2"
    echo "made=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$STAMP"
}

start=$SECONDS
DEBS=""
new_tmpdir DEBS
PKGS=$(fetch_debs "$MINOR" "$DEBS")
log "fetched: ${PKGS//$'\n'/, }"
BUILD="$DEST.tmp.$$"
TMPDIRS+=("$BUILD") # removed on failure; renamed away on success
rm -rf "$BUILD"

if [ "$MINOR" -ne "$CACHEPROG_MINOR" ]; then
  # ---------------------------------------------- 1.24 and later: unpack
  unpack_debs "$DEBS" "$BUILD"
  BUILD_GO="$BUILD/usr/lib/go-1.$MINOR/bin/go"
  [ -x "$BUILD_GO" ] || die "no usr/lib/go-1.$MINOR/bin/go in golang-1.$MINOR-go"
  line=$(go_version_line "$BUILD_GO") || die "$BUILD_GO does not run"
  [ "$(go_minor "$line")" = "$MINOR" ] || die "$BUILD_GO says: $line"
  rm -rf "$DEST"
  mv "$BUILD" "$DEST"
  check_goroot "$DEST_GO" "$DEST"
  check_gocacheprog "$DEST_GO" || die "$DEST_GO does not honour GOCACHEPROG"
  write_stamp "$PKGS" "$line"
  log "Go 1.$MINOR ready in $((SECONDS - start))s: $DEST"
  done_with "$DEST_GO"
fi

# ---------------------------------------------- 1.23: unpack and rebuild
UNPACKED=""
new_tmpdir UNPACKED
unpack_debs "$DEBS" "$UNPACKED"
SRC_GOROOT="$UNPACKED/usr/lib/go-1.$MINOR"
[ -x "$SRC_GOROOT/bin/go" ] || die "no usr/lib/go-1.$MINOR/bin/go in golang-1.$MINOR-go"
SRC_VERSION=$(go_version_line "$SRC_GOROOT/bin/go") || die "$SRC_GOROOT/bin/go does not run"
log "source toolchain: $SRC_VERSION"
log "copying $SRC_GOROOT to $BUILD (symlinks into usr/share resolved)"
# Debian's GOROOT links src, api, misc, test and pkg/include into
# usr/share/go-1.NN; -L makes the copy self-contained and writable.
cp -rL "$SRC_GOROOT" "$BUILD"
chmod -R u+w "$BUILD"

SCRATCH=""
new_tmpdir SCRATCH
# build_env: a clean environment for running the copied go command.
build_env() {
  env -u GOFLAGS -u GOOS -u GOARCH -u GOARM -u GOAMD64 -u GOCACHEPROG \
    GOENV=off GOROOT="$BUILD" GOPATH="$SCRATCH/gopath" GOCACHE="$SCRATCH/gocache" "$@"
}

TOOLDIR=$(build_env "$BUILD/bin/go" env GOTOOLDIR)
# Every program shipped in pkg/tool and bin is rebuilt: a tool left without
# the experiment makes the go command reject it ("version ... does not match
# go tool version ... X:cacheprog").
pkgs=()
for f in "$TOOLDIR"/* "$BUILD"/bin/*; do
  name=$(basename "$f")
  if [ -d "$BUILD/src/cmd/$name" ]; then
    pkgs+=("cmd/$name")
  else
    die "do not know how to rebuild $f (no src/cmd/$name)"
  fi
done
log "rebuilding with GOEXPERIMENT=cacheprog: ${pkgs[*]}"
(cd "$SCRATCH" && build_env GOEXPERIMENT=cacheprog "$BUILD/bin/go" install "${pkgs[@]}")

# Verify: every binary reports the experiment...
NEW_VERSION=$(go_version_line "$BUILD/bin/go")
log "rebuilt: $NEW_VERSION"
[[ $NEW_VERSION == *X:*cacheprog* ]] || die "rebuilt go lacks X:cacheprog: $NEW_VERSION"
bad=$(build_env "$BUILD/bin/go" version "$TOOLDIR"/* "$BUILD"/bin/* | grep -v 'X:.*cacheprog' || true)
[ -z "$bad" ] || die "binaries built without the experiment:"$'\n'"$bad"

# ...GOROOT is found from the binary's place, the toolchain still builds and
# links a program (tools match cmd/go), and GOCACHEPROG is honoured.
rm -rf "$DEST"
mv "$BUILD" "$DEST"
check_goroot "$DEST_GO" "$DEST"
check_gocacheprog "$DEST_GO" || die "rebuilt go does not honour GOCACHEPROG"
write_stamp "$PKGS" "$NEW_VERSION"
log "rebuilt Go 1.$MINOR in $((SECONDS - start))s; stamp $STAMP"
done_with "$DEST_GO"
