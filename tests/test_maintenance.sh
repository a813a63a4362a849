#!/usr/bin/env bash
# test_maintenance.sh - the commands that look after a cache, end to end
# through the real binary ($ACACHE_BIN): put and get (exit 0 hit, 1 miss,
# 2 error; -o FILE), stats (--json), trim (--dry-run, --max-size, --max-age,
# --grace), verify (exit 1 on problems, --repair), clear, config (where each
# value comes from; remotes accepted or refused), --help and bad arguments,
# progress only on a terminal, and --verify-reads through get and through
# gocacheprog. Every command runs under a timeout.
set -euo pipefail
: "${ACACHE_BIN:?ACACHE_BIN must name the acache binary}"
A=$(readlink -f "$ACACHE_BIN")
WORK=$(mktemp -d /tmp/acache-maint-XXXXXX)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
unset ACACHE_DIR ACACHE_REMOTE ACACHE_MAX_SIZE
export HOME="$WORK/home" XDG_CACHE_HOME=
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 60 "$A" "$@"; }
# rc CMD...: the exit status, without tripping set -e
rc() { local r=0; timeout 60 "$A" "$@" >"$WORK/out" 2>"$WORK/err" || r=$?; echo "$r"; }
act() { printf '%064x' "$1"; }
D="$WORK/c"

echo "== put and get"
printf 'hello\n' >"$WORK/f1"
out=$(run put --dir "$D" "$(act 1)" "$WORK/f1")
[ "$out" = "$(sha256sum "$WORK/f1" | cut -c1-64)" ] || fail "put printed $out, not the SHA-256"
path=$(run get --dir "$D" "$(act 1)")
case "$path" in "$D"/v1/o/*) ;; *) fail "get printed $path" ;; esac
cmp "$path" "$WORK/f1" || fail "the path holds other bytes"
run get --dir "$D" "$(act 1)" -o "$WORK/copy"
cmp "$WORK/copy" "$WORK/f1" || fail "get -o FILE"
# get -o never writes through a symlink: not one planted at the temp name
# the command used to take (FILE.acache-tmp-PID: sh execs acache, which
# keeps sh's PID), not one at FILE itself (replaced, its target untouched).
printf 'precious\n' >"$WORK/victim"
timeout 60 sh -c 'ln -s "$1" "$2.acache-tmp-$$" && exec "$3" get --dir "$4" "$5" -o "$2"' \
  _ "$WORK/victim" "$WORK/copy2" "$A" "$D" "$(act 1)" || fail "get -o with a planted symlink"
[ "$(cat "$WORK/victim")" = precious ] || fail "get -o wrote through a symlink at its temp name"
[ -f "$WORK/copy2" ] && [ ! -L "$WORK/copy2" ] || fail "get -o did not make a plain file"
cmp "$WORK/copy2" "$WORK/f1" || fail "get -o FILE (planted symlink)"
ln -s "$WORK/victim" "$WORK/copy3"
run get --dir "$D" "$(act 1)" -o "$WORK/copy3"
[ "$(cat "$WORK/victim")" = precious ] || fail "get -o wrote through a symlink at FILE"
[ ! -L "$WORK/copy3" ] && cmp "$WORK/copy3" "$WORK/f1" || fail "get -o did not replace the symlink"
[ "$(stat -c %a "$WORK/copy3")" = "$(printf '%o' $(( 0666 & ~$(umask) )))" ] || fail "get -o mode"
[ -z "$(find "$WORK" -maxdepth 1 -name '.*acache-*')" ] || fail "get -o left a temp file"
run get --dir "$D" "$(act 1)" -o - | cmp - "$WORK/f1" || fail "get -o -"
printf 'from stdin' | run put --dir "$D" "$(act 2)" - >/dev/null
[ "$(run get --dir "$D" "$(act 2)" -o -)" = "from stdin" ] || fail "put from stdin"
[ "$(rc get --dir "$D" "$(act 99)")" = 1 ] || fail "a miss is not exit 1"
[ ! -s "$WORK/out" ] || fail "a miss printed $(cat "$WORK/out")"
[ "$(rc get --dir "$D" nothex)" = 2 ] || fail "a bad id is not exit 2"
grep -q "^acache: " "$WORK/err" || fail "no message for a bad id"
[ "$(rc put --dir "$D" "$(act 3)" "$WORK/nosuchfile")" = 2 ] || fail "put of a missing file"
# A get that fails (the record is a directory): exit 2, not 1.
rec="$D/v1/a/00/$(act 4)"
mkdir -p "$rec"
[ "$(rc get --dir "$D" "$(act 4)")" = 2 ] || fail "a failing get is not exit 2"
rmdir "$rec"
[ "$(rc get --dir "$D" "$(act 1)" -o "$WORK/nosuchdir/x")" = 2 ] || fail "get -o into a missing directory"

echo "== stats"
run stats --dir "$D" >"$WORK/stats"
grep -Eq '^entries +2 \(2 objects\)' "$WORK/stats" || { cat "$WORK/stats"; fail "stats entries"; }
grep -Eq '^hits +[0-9]+' "$WORK/stats" || fail "stats hits"
run stats --dir "$D" --json >"$WORK/stats.json"
python3 - "$WORK/stats.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["entries"] == 2 and d["objects"] == 2, d
assert d["bytes"] == 4 * 4096, d
assert d["hits"] == 7 and d["misses"] == 1 and d["puts"] == 2, d
assert d["max_size"] == 10 << 30 and d["counted_ns"] > 0, d
PY
[ "$(rc stats --dir "$WORK/nosuch")" = 2 ] || fail "stats of a missing directory"
[ ! -e "$WORK/nosuch" ] || fail "stats created the directory it looked at"
[ "$(rc stats --dir "$D" extra)" = 2 ] || fail "stats with an extra argument"

echo "== trim"
for i in 10 11 12 13; do
  head -c 5000 /dev/urandom >"$WORK/b$i"
  run put --dir "$D" "$(act $i)" "$WORK/b$i" >/dev/null
done
# Everything last used two hours ago, but act 13 used just now.
find "$D/v1/a" "$D/v1/o" -type f -exec touch -d '2 hours ago' {} +
run get --dir "$D" "$(act 13)" >/dev/null # refreshes it
run trim --dir "$D" --max-size 0 --dry-run >"$WORK/out"
grep -q "^would remove 5 entries" "$WORK/out" || { cat "$WORK/out"; fail "trim --dry-run"; }
[ "$(rc get --dir "$D" "$(act 10)")" = 0 ] || fail "a dry run removed something"
find "$D/v1/a" "$D/v1/o" -type f -exec touch -d '2 hours ago' {} +
touch "$D/v1/a/00/$(act 13)"
run trim --dir "$D" --max-size 0 >"$WORK/out"
grep -q "^removed 5 entries" "$WORK/out" || { cat "$WORK/out"; fail "trim --max-size 0"; }
grep -q "grace period" "$WORK/out" || fail "trim did not say what it kept"
[ "$(rc get --dir "$D" "$(act 13)")" = 0 ] || fail "trim removed an entry used just now"
[ "$(rc get --dir "$D" "$(act 10)")" = 1 ] || fail "trim kept an old entry"
run trim --dir "$D" --max-size 0 --grace 0 >"$WORK/out"
grep -q "^removed 1 entries" "$WORK/out" || { cat "$WORK/out"; fail "trim --grace 0"; }
# --max-age.
for i in 20 21; do
  head -c 100 /dev/urandom >"$WORK/b$i"
  run put --dir "$D" "$(act $i)" "$WORK/b$i" >/dev/null
done
touch -d '40 days ago' "$D/v1/a/00/$(act 20)"
run trim --dir "$D" --max-age 30d >"$WORK/out"
grep -q "^removed 1 entries" "$WORK/out" || { cat "$WORK/out"; fail "trim --max-age"; }
[ "$(rc get --dir "$D" "$(act 21)")" = 0 ] || fail "trim --max-age removed a young entry"
[ "$(rc trim --dir "$D" --max-size lots)" = 2 ] || fail "a bad size"
grep -q "max-size" "$WORK/err" || fail "no message for a bad size"
[ "$(rc trim --dir "$D" --max-age forever)" = 2 ] || fail "a bad duration"
[ "$(rc trim --dir "$D" --max-size '1G&x=y')" = 2 ] || fail "a size smuggling an option"

echo "== verify"
run verify --dir "$D" >"$WORK/out" || fail "verify of a clean cache"
grep -q "no problems" "$WORK/out" || fail "verify said $(cat "$WORK/out")"
for i in 30 31; do
  head -c 3000 /dev/urandom >"$WORK/b$i"
  run put --dir "$D" "$(act $i)" "$WORK/b$i" >/dev/null
done
obj=$(run get --dir "$D" "$(act 30)")
head -c 3000 /dev/urandom >"$obj" # same size, other bytes: written in place
[ "$(rc get --dir "$D" "$(act 30)")" = 0 ] || fail "without --verify-reads the size matches: a hit"
[ "$(rc get --dir "$D" --verify-reads "$(act 31)")" = 0 ] || fail "--verify-reads of a good entry"
[ "$(rc verify --dir "$D")" = 1 ] || fail "verify of a corrupt object is not exit 1"
grep -q "$obj: content does not match" "$WORK/out" || { cat "$WORK/out"; fail "verify did not name the object"; }
[ "$(rc verify --dir "$D" --repair)" = 0 ] || { cat "$WORK/out"; fail "verify --repair"; }
grep -q "(repaired)" "$WORK/out" || fail "verify --repair did not say so"
[ ! -e "$obj" ] || fail "verify --repair left the corrupt object"
[ "$(rc verify --dir "$D")" = 0 ] || fail "verify after the repair"
[ "$(rc get --dir "$D" "$(act 30)")" = 1 ] || fail "a repaired entry is not a miss"
# --verify-reads: a corrupt object is never served, and is removed.
obj=$(run get --dir "$D" "$(act 31)")
head -c 3000 /dev/urandom >"$obj"
[ "$(rc get --dir "$D" --verify-reads "$(act 31)")" = 1 ] || fail "--verify-reads served a corrupt object"
[ "$(rc get --dir "$D" "$(act 31)")" = 1 ] || fail "the corrupt entry was not removed"

echo "== progress only on a terminal"
run verify --dir "$D" 2>"$WORK/err" >/dev/null
[ ! -s "$WORK/err" ] || fail "progress on a pipe: $(cat "$WORK/err")"
script -qec "timeout 60 $A verify --dir $D" /dev/null >"$WORK/tty" </dev/null || fail "verify on a terminal"
grep -q "acache: objects" "$WORK/tty" || fail "no progress on a terminal: $(cat -v "$WORK/tty")"
script -qec "timeout 60 $A trim --dir $D" /dev/null >"$WORK/tty" </dev/null || fail "trim on a terminal"
grep -q "acache: sweep" "$WORK/tty" || fail "no trim progress on a terminal: $(cat -v "$WORK/tty")"
run trim --dir "$D" 2>"$WORK/err" >/dev/null
[ ! -s "$WORK/err" ] || fail "trim progress on a pipe: $(cat "$WORK/err")"

echo "== clear"
run clear --dir "$D" >"$WORK/out"
grep -q "^removed [1-9][0-9]* entries" "$WORK/out" || fail "clear said $(cat "$WORK/out")"
[ "$(rc get --dir "$D" "$(act 1)")" = 1 ] || fail "clear left an entry"
python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["entries"]==0 and d["bytes"]==0, d' \
  < <(run stats --dir "$D" --json) || fail "stats after clear"
[ "$(rc clear --dir "$WORK/nosuch")" = 2 ] || fail "clear of a missing directory"

echo "== config"
run config >"$WORK/out"
grep -q "^dir  *$HOME/.cache/acache  (default: \$HOME/.cache/acache)" "$WORK/out" || { cat "$WORK/out"; fail "config dir default"; }
grep -q "^max-size  *10.0 GiB  (default)" "$WORK/out" || fail "config max-size default"
grep -q "not created yet" "$WORK/out" || fail "config created or opened a missing store"
[ ! -e "$HOME/.cache/acache" ] || fail "config created the cache directory"
ACACHE_DIR="$D" ACACHE_MAX_SIZE=1G run config >"$WORK/out"
grep -q "^dir  *$D  (ACACHE_DIR)" "$WORK/out" || fail "config dir from ACACHE_DIR"
grep -q "^max-size  *1.0 GiB  (ACACHE_MAX_SIZE)" "$WORK/out" || fail "config max-size from ACACHE_MAX_SIZE"
grep -q "^ *accepted" "$WORK/out" || fail "config did not open the store"
ACACHE_MAX_SIZE=1G run config --dir "$D" --max-size 2G --max-age 7d >"$WORK/out"
grep -q "^dir  *$D  (--dir)" "$WORK/out" || fail "config --dir"
grep -q "^max-size  *2.0 GiB  (--max-size)" "$WORK/out" || fail "flags override the environment"
grep -q "^max-age  *7d  (--max-age)" "$WORK/out" || fail "config --max-age"
grep -q "^remotes  *none" "$WORK/out" || fail "config remotes"
[ "$(ACACHE_REMOTE="mem: bogus:x" rc config --dir "$D")" = 1 ] || fail "a refused remote is not exit 1"
grep -q "^remote 1  *mem:  (ACACHE_REMOTE)" "$WORK/out" || { cat "$WORK/out"; fail "config remote 1"; }
grep -q "refused: .*bogus" "$WORK/out" || fail "config did not show why a remote is refused"
[ "$(ACACHE_REMOTE="bogus:x" rc config --dir "$D" --remote mem:)" = 0 ] || fail "--remote overrides ACACHE_REMOTE"
# Credentials in a remote's spec are never printed, accepted or refused.
rc config --dir "$D" --remote 'redis://bob:s3cret@127.0.0.1:1/0' --remote 'nosuch://bob:s3cret@h/x' >/dev/null
! grep -q s3cret "$WORK/out" "$WORK/err" || fail "config printed a password: $(cat "$WORK/out")"
grep -q 'redis://\*\*\*@127.0.0.1' "$WORK/out" || fail "config did not show the redacted remote"
# An s3 remote: where its region, endpoint and credentials come from, never
# the secret or the session token (opening it touches no network).
mkdir -p "$WORK/aws"
printf '[ci]\naws_access_key_id = AKIDCONFIGTEST\naws_secret_access_key = cfg/s3cret+key\n' >"$WORK/aws/credentials"
printf '[profile ci]\nregion = eu-north-1\n' >"$WORK/aws/config"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_REGION -u AWS_DEFAULT_REGION \
    -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 AWS_PROFILE=ci \
    AWS_SHARED_CREDENTIALS_FILE="$WORK/aws/credentials" AWS_CONFIG_FILE="$WORK/aws/config" \
    "$A" config --dir "$D" --remote 's3://team-cache/go' >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/out" "$WORK/err"; fail "config of an s3 remote"; }
grep -q "region eu-north-1 (profile ci in $WORK/aws/config), endpoint https://s3.eu-north-1.amazonaws.com (AWS default), virtual addressing, credentials: profile ci in $WORK/aws/credentials" "$WORK/out" ||
  { cat "$WORK/out"; fail "config does not say where the s3 credentials came from"; }
env AWS_ACCESS_KEY_ID=AKIDENVTEST AWS_SECRET_ACCESS_KEY=env/s3cret AWS_SESSION_TOKEN=tok3n-s3cret \
    AWS_SHARED_CREDENTIALS_FILE=/nonexistent AWS_CONFIG_FILE=/nonexistent \
    "$A" config --dir "$D" --remote 's3://team-cache/go?endpoint=http://minio:9000' >>"$WORK/out" 2>>"$WORK/err" || fail "config of an s3 remote (environment)"
grep -q "credentials: environment (AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN)" "$WORK/out" || { cat "$WORK/out"; fail "config s3 environment keys"; }
! grep -q s3cret "$WORK/out" "$WORK/err" || fail "config printed an AWS secret: $(cat "$WORK/out")"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_SHARED_CREDENTIALS_FILE=/nonexistent AWS_CONFIG_FILE=/nonexistent \
    "$A" config --dir "$D" --remote 's3://team-cache/go' >"$WORK/out" 2>&1 && fail "anonymous rw s3 accepted"
grep -q "refused: .*anonymous access needs mode=ro" "$WORK/out" || { cat "$WORK/out"; fail "config anonymous s3"; }

echo "== --help and bad arguments"
for cmd in put get stats trim verify clear config gocacheprog; do
  timeout 60 "$A" "$cmd" --help >"$WORK/out" 2>&1 || fail "$cmd --help"
  grep -q "usage: acache $cmd" "$WORK/out" || fail "$cmd --help printed $(cat "$WORK/out")"
done
for cmd in stats trim verify clear config; do
  [ "$(rc "$cmd" --bogus)" = 2 ] || fail "$cmd --bogus"
done
run help | grep -q "^  trim " || fail "acache help does not list trim"

echo "== gocacheprog --verify-reads"
G="$WORK/g"
head -c 2000 /dev/urandom >"$WORK/gb"
run put --dir "$G" "$(act 40)" "$WORK/gb" >/dev/null
obj=$(run get --dir "$G" "$(act 40)")
head -c 2000 /dev/urandom >"$obj"
gget() { # gget ARGS...: the response to one get of act 40
  python3 - "$A" "$(act 40)" "$@" <<'PY'
import base64, json, subprocess, sys
a, hexid, args = sys.argv[1], sys.argv[2], sys.argv[3:]
req = json.dumps({"ID": 1, "Command": "get", "ActionID": base64.b64encode(bytes.fromhex(hexid)).decode()})
req += "\n" + json.dumps({"ID": 2, "Command": "close"}) + "\n"
p = subprocess.run([a, "gocacheprog", *args], input=req.encode(), capture_output=True, timeout=60)
lines = [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]
print(json.dumps([l for l in lines if l.get("ID") == 1][0]))
PY
}
gget --dir "$G" | grep -q '"DiskPath"' || fail "gocacheprog without --verify-reads: no hit"
gget --dir "$G" --verify-reads | grep -q '"Miss": true' || fail "gocacheprog --verify-reads served a corrupt object"
gget --dir "$G" | grep -q '"Miss": true' || fail "the corrupt entry was not removed"
[ "$(rc gocacheprog --dir "$G" --max-age never </dev/null)" = 2 ] || fail "gocacheprog --max-age never"
[ "$(rc gocacheprog --dir "$G" --grace 5m --max-age 1d </dev/null)" = 0 ] || fail "gocacheprog --grace --max-age"
echo "all maintenance command tests passed"
