#!/usr/bin/env bash
# go-toolchain.sh: make a `go` command that honours GOCACHEPROG available and
# print its absolute path.
#
# acache's `acache gocacheprog` serves Go's GOCACHEPROG protocol. To test it we
# need a go command that actually starts a GOCACHEPROG helper (see
# shared/GOCACHEPROG.md):
#   * Go >= 1.24 does so by default.
#   * Go 1.21-1.23 does so only if the go command and every tool under
#     pkg/tool were built with GOEXPERIMENT=cacheprog.
#
# What this script does, first match wins:
#   1. $ACACHE_GO if set, else `go` on PATH, if it is Go >= 1.24 (or a
#      1.21-1.23 go built with the cacheprog experiment): use it.
#   2. An already installed Debian /usr/lib/go-1.NN (NN >= 24): use it.
#   3. A cacheprog rebuild of Go 1.23 made by an earlier run (stamp file
#      present and current): use it.
#   4. Enable <codename>-backports (deb.debian.org), apt-get update, and if
#      golang-1.NN-go with NN >= 24 is available, install the newest one.
#   5. Otherwise install golang-1.23-go from backports, copy its GOROOT to
#      ${ACACHE_GO_HOME:-/var/cache/acache-go}/go1.23-cacheprog (falls back to
#      $HOME/.cache/acache-go when that is not writable), rebuild cmd/go and
#      every tool under pkg/tool with GOEXPERIMENT=cacheprog, verify it and
#      write a stamp so later runs take step 3 and return at once.
#
# Output: the absolute path of the go binary is the only line on stdout;
# all progress goes to stderr. Usage:
#     GO=$(scripts/go-toolchain.sh)
#     GOTOOLCHAIN=local GOCACHEPROG="acache gocacheprog" "$GO" build ./...
#
# Callers should export GOTOOLCHAIN=local when running the printed go: no
# toolchain can be downloaded here, and a go.mod asking for a newer Go would
# otherwise make the go command try to fetch one.
#
# Environment:
#   ACACHE_GO         go binary (name or path) to try first.
#   ACACHE_GO_HOME    where the cacheprog rebuild is kept (default
#                     /var/cache/acache-go).
#   ACACHE_GO_REBUILD=1  ignore the stamp and rebuild the Go 1.23 copy.
#
# Needs root or sudo only when packages must be installed. Idempotent.

set -euo pipefail

FALLBACK_MINOR=23 # Debian package rebuilt with the experiment when no >= 1.24
MIN_DEFAULT_MINOR=24 # first Go release with GOCACHEPROG on by default

export GOTOOLCHAIN=local # never try to download a toolchain

log() { printf 'go-toolchain: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

# Temporary directories removed on exit.
TMPDIRS=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local d
  for d in "${TMPDIRS[@]+"${TMPDIRS[@]}"}"; do rm -rf "$d"; done
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

# check_gocacheprog GO: prove GO really starts the GOCACHEPROG program: with
# GOCACHEPROG naming a program that does not exist, building a trivial
# package must fail with an error naming that program.
check_gocacheprog() {
  local go=$1 work bogus out
  new_tmpdir work
  mkdir -p "$work/mod"
  printf 'module example.com/check\n\ngo 1.21\n' >"$work/mod/go.mod"
  printf 'package check\n\nfunc F() int { return 1 }\n' >"$work/mod/check.go"
  bogus="$work/no-such-gocacheprog-helper"
  if out=$(cd "$work/mod" && env -u GOROOT -u GOFLAGS GOENV=off \
    GOPATH="$work/gopath" GOCACHE="$work/gocache" GOCACHEPROG="$bogus" \
    "$go" build . 2>&1); then
    log "go build succeeded although GOCACHEPROG=$bogus does not exist"
    return 1
  fi
  if [[ $out != *no-such-gocacheprog-helper* ]]; then
    log "go build failed, but not because of GOCACHEPROG:"
    printf '%s\n' "$out" >&2
    return 1
  fi
  log "GOCACHEPROG check ok: $(printf '%s' "$out" | head -n 1)"
}

# done_with GO: print GO as the result and exit.
done_with() {
  log "using $(go_version_line "$1") at $1"
  printf '%s\n' "$1"
  exit 0
}

# ---------------------------------------------------------------- step 1
if [ -n "${ACACHE_GO:-}" ]; then
  if cand=$(abs_path "$ACACHE_GO") && speaks_cacheprog "$cand"; then
    done_with "$cand"
  fi
  log "warning: ACACHE_GO=$ACACHE_GO is not a go >= 1.$MIN_DEFAULT_MINOR" \
    "(nor a cacheprog build); looking further"
elif cand=$(abs_path go) && speaks_cacheprog "$cand"; then
  done_with "$cand"
fi

# ---------------------------------------------------------------- step 2
# newest_installed_debian_go: newest /usr/lib/go-1.NN/bin/go with NN >= 24.
newest_installed_debian_go() {
  local d minor best=-1 bestgo=""
  for d in /usr/lib/go-1.*/; do
    [ -x "${d}bin/go" ] || continue
    minor=${d#/usr/lib/go-1.}
    minor=${minor%/}
    [[ $minor =~ ^[0-9]+$ ]] || continue
    if [ "$minor" -ge "$MIN_DEFAULT_MINOR" ] && [ "$minor" -gt "$best" ]; then
      best=$minor
      bestgo="${d}bin/go"
    fi
  done
  [ -n "$bestgo" ] && printf '%s\n' "$bestgo"
}
if cand=$(newest_installed_debian_go) && speaks_cacheprog "$cand"; then
  done_with "$cand"
fi

# ---------------------------------------------------------------- step 3
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
GO_HOME=$(choose_go_home) || die "no writable directory for the Go toolchain copy"
FALLBACK_PKG="golang-1.$FALLBACK_MINOR-go"
SRC_GOROOT="/usr/lib/go-1.$FALLBACK_MINOR"
DEST="$GO_HOME/go1.$FALLBACK_MINOR-cacheprog"
STAMP="$DEST/.acache-cacheprog-stamp"

# pkg_version PKG: version of PKG if installed, else nothing.
pkg_version() {
  dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null |
    sed -n 's/^ii *//p'
}

# stamp_ok: the rebuilt copy exists, is a cacheprog go, and was made from the
# Debian package version now installed (a copy whose package was removed
# since is still complete and usable).
stamp_ok() {
  [ "${ACACHE_GO_REBUILD:-0}" != 1 ] || return 1
  [ -f "$STAMP" ] && [ -x "$DEST/bin/go" ] || return 1
  local want
  want=$(pkg_version "$FALLBACK_PKG")
  if [ -n "$want" ] && ! grep -qxF "package=$FALLBACK_PKG $want" "$STAMP"; then
    log "stamp is for another $FALLBACK_PKG version; rebuilding"
    return 1
  fi
  speaks_cacheprog "$DEST/bin/go"
}
if stamp_ok; then
  done_with "$DEST/bin/go"
fi

# Everything below is the slow path. Serialise concurrent runs.
exec 9>"$GO_HOME/.lock"
flock 9
if stamp_ok; then # another run finished it while we waited
  done_with "$DEST/bin/go"
fi

# ---------------------------------------------------------------- step 4
command -v apt-get >/dev/null 2>&1 ||
  die "no suitable go found and no apt-get to install one; set ACACHE_GO"
if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
  die "need root or sudo to install Debian's Go packages"
fi

apt_install() {
  log "installing $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
}

# shellcheck disable=SC1091
CODENAME=$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}")
CODENAME=${CODENAME:-bookworm}
BACKPORTS="$CODENAME-backports"
if grep -rqs -- "$BACKPORTS" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "$BACKPORTS already enabled"
else
  log "enabling $BACKPORTS"
  $SUDO tee "/etc/apt/sources.list.d/$BACKPORTS.sources" >/dev/null <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $BACKPORTS
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
log "apt-get update"
$SUDO apt-get update >&2 || log "warning: apt-get update failed; using the package lists as they are"

has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

# Newest golang-1.NN-go with NN >= 24 that apt can install.
newest_pkg_minor=""
while read -r minor; do
  if has_candidate "golang-1.$minor-go"; then
    newest_pkg_minor=$minor
    break
  fi
done < <(apt-cache pkgnames golang-1. 2>/dev/null |
  sed -n 's/^golang-1\.\([0-9][0-9]*\)-go$/\1/p' |
  awk -v min="$MIN_DEFAULT_MINOR" '$1 >= min' | sort -rn)

if [ -n "$newest_pkg_minor" ]; then
  apt_install "golang-1.$newest_pkg_minor-go"
  cand="/usr/lib/go-1.$newest_pkg_minor/bin/go"
  speaks_cacheprog "$cand" || die "$cand is not a go >= 1.$MIN_DEFAULT_MINOR"
  check_gocacheprog "$cand" || die "$cand does not honour GOCACHEPROG"
  done_with "$cand"
fi

# ---------------------------------------------------------------- step 5
log "no Go >= 1.$MIN_DEFAULT_MINOR in the archive; rebuilding Go 1.$FALLBACK_MINOR with GOEXPERIMENT=cacheprog"
if has_candidate "$FALLBACK_PKG"; then
  apt_install "$FALLBACK_PKG" # installs, upgrades, or does nothing
elif [ -z "$(pkg_version "$FALLBACK_PKG")" ]; then
  die "$FALLBACK_PKG is not available from apt (is $BACKPORTS reachable?)"
fi
[ -x "$SRC_GOROOT/bin/go" ] || die "$SRC_GOROOT/bin/go missing after installing $FALLBACK_PKG"
PKG_VERSION=$(pkg_version "$FALLBACK_PKG")
SRC_VERSION=$(go_version_line "$SRC_GOROOT/bin/go") || die "$SRC_GOROOT/bin/go does not run"
log "source toolchain: $SRC_VERSION ($FALLBACK_PKG $PKG_VERSION)"

start=$SECONDS
BUILD="$DEST.tmp.$$"
TMPDIRS+=("$BUILD") # removed on failure; renamed away on success
rm -rf "$BUILD"
log "copying $SRC_GOROOT to $BUILD (symlinks into /usr/share resolved)"
# Debian's GOROOT links src, api, misc, test and pkg/include into
# /usr/share/go-1.NN; -L makes the copy self-contained and writable.
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

# ...the toolchain still builds and links a program (tools match cmd/go)...
mkdir -p "$SCRATCH/hello"
printf 'module example.com/hello\n\ngo 1.21\n' >"$SCRATCH/hello/go.mod"
printf 'package main\n\nfunc main() { println("hello from cacheprog go") }\n' >"$SCRATCH/hello/main.go"
(cd "$SCRATCH/hello" && build_env "$BUILD/bin/go" build -o "$SCRATCH/hello/hello" .) ||
  die "rebuilt toolchain cannot build a trivial program"
"$SCRATCH/hello/hello" 2>&1 | grep -q 'hello from cacheprog go' ||
  die "program built by the rebuilt toolchain does not run"

# ...and GOCACHEPROG is honoured, with GOROOT found from the binary's place.
rm -rf "$DEST"
mv "$BUILD" "$DEST"
check_gocacheprog "$DEST/bin/go" || die "rebuilt go does not honour GOCACHEPROG"

{
  echo "# written by scripts/go-toolchain.sh; delete to force a rebuild"
  echo "package=$FALLBACK_PKG $PKG_VERSION"
  echo "source=$SRC_VERSION"
  echo "result=$NEW_VERSION"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$STAMP"
log "rebuilt Go in $((SECONDS - start))s; stamp $STAMP"
done_with "$DEST/bin/go"
