#!/usr/bin/env python3
"""ccache_driver.py - acache as ccache's remote storage helper, end to end.

With the real ccache ($ACACHE_CCACHE: Debian sid's 4.14, run through its own
loader) building a generated C project of PROJECT_FILES files with `make -j8`,
against real servers on 127.0.0.1 (remote_servers.py):

  from_remote  Redis and nginx (WebDAV): a build with one CCACHE_DIR fills the
               remote through one helper shared by every compile of make -j8;
               `ccache --stop-storage-helpers` stops it (uploads flushed);
               the same build with an empty CCACHE_DIR is then all remote hits
               (ccache --print-stats) and every object file is byte-identical.
  s3           the same through S3 (s3rver behind tests/s3_proxy.py, which
               checks every request's SigV4 signature), @endpoint= and
               @region= as attributes, every request signed with the test
               key; a wrong secret: the remote switched off with a line
               saying why (403), the build done without a ccache timeout,
               and no secret in ccache's log or on the helper's stderr.
  poisoned     every object on the remote overwritten with other bytes: a
               build from an empty CCACHE_DIR gets no remote hit, recompiles,
               and its objects are byte-identical; the helper counts rejects.
  signed       records written without a key are refused by a helper with
               @key-file (no hits, rejected counted); records written with it
               are hits.
  dead_hang    a port nothing listens on, and a listener that never answers:
               the build succeeds, no ccache request times out, and the helper
               says the remote was switched off.
  killed       the helper SIGKILLed in the middle of a build (by the compiler
               wrapper of one file, a hook at a known point): the build
               succeeds, and a later compile starts a new helper.
  idle         CRSH_IDLE_TIMEOUT: the helper exits by itself when idle, its
               socket removed and its uploads on the remote.
  queue_and_off  the helper alone against a hanging, a dead and a refusing
               server: a put past upload-queue is "not stored", a queued value
               is served; a remote switched off (failures) or whose uploads
               are switched off (405s) answers gets, puts and removes at once.
  failing      the helper alone against a hanging HTTP server that records
               what reaches it: after one get timed out, the next gets are
               answered at once and never reach the server (a background
               probe makes the requests that switch it off); a Redis server
               stopped (SIGSTOP) and continued is found again by a probe.
  protocol     the helper alone (acache ccache-helper with CRSH_*), a client of
               our own: unknown opcode, key length past the data, value length
               2^63, connection closed mid-value: each answered with an error or
               dropped, while another client's put/get/info go on; the endpoint
               rules (umask 077, stale socket replaced, live socket and regular
               file refused) and an unknown @attribute refused at start, with
               no password in any message.

Every server, helper and build has a time limit and is stopped on the way
out. Usage: ccache_driver.py [CASE...]
"""
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from remote_servers import (Servers, Listener, redis_command, REDIS_PASSWORD,  # noqa: E402
                            TEST_KEYS, S3_KEY, s3_env)

BIN = os.path.realpath(os.environ["ACACHE_BIN"])
CCACHE = os.environ["ACACHE_CCACHE"]
PROJECT_FILES = 40
BUILD_TIMEOUT = 600
WAIT = 30.0  # longest wait for a helper to start or exit


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def wait_for(pred, what, timeout=WAIT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise Fail("timed out waiting for " + what)


# ---------------------------------------------------------------- project
def write_project(d, n=PROJECT_FILES):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "common.h"), "w") as f:
        f.write("#include <stdint.h>\n")
        for i in range(n):
            f.write("uint64_t f%d(uint64_t x);\n" % i)
    for i in range(n):
        with open(os.path.join(d, "f%d.c" % i), "w") as f:
            f.write('#include "common.h"\n'
                    "static const uint64_t table%d[] = { %s };\n"
                    "uint64_t f%d(uint64_t x) {\n"
                    "    uint64_t h = %dULL;\n"
                    "    for (unsigned i = 0; i < sizeof table%d / sizeof table%d[0]; i++)\n"
                    "        h = (h ^ table%d[i] ^ x) * 1099511628211ULL;\n"
                    "    return h;\n}\n"
                    % (i, ", ".join(str(i * 31 + k) for k in range(32)), i, i, i, i, i))
    with open(os.path.join(d, "main.c"), "w") as f:
        f.write('#include <stdio.h>\n#include "common.h"\nint main(void) {\n    uint64_t h = 0;\n')
        for i in range(n):
            f.write("    h ^= f%d(%d);\n" % (i, i))
        f.write('    printf("%llu\\n", (unsigned long long)h);\n    return 0;\n}\n')
    objs = " ".join(["main.o"] + ["f%d.o" % i for i in range(n)])
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write("OBJS = %s\nprog: $(OBJS)\n\tgcc -o $@ $(OBJS)\n"
                "%%.o: %%.c common.h\n\t$(CC) -O2 -c $< -o $@\n"
                "clean:\n\trm -f prog $(OBJS)\n" % objs)
    return n + 1  # compiles per build


def objects(d):
    out = {}
    for name in sorted(os.listdir(d)):
        if name.endswith(".o"):
            with open(os.path.join(d, name), "rb") as f:
                out[name] = f.read()
    return out


# ---------------------------------------------------------------- ccache
class Env:
    """A work directory: the helper links, ccache's runtime dir, logs."""

    def __init__(self, root):
        self.root = root
        self.bin = os.path.join(root, "bin")
        os.makedirs(self.bin, exist_ok=True)
        for scheme in ("redis", "http", "s3"):
            os.symlink(BIN, os.path.join(self.bin, "ccache-storage-" + scheme))
        self.rt = os.path.join(root, "rt")
        os.makedirs(self.rt, mode=0o700, exist_ok=True)
        self.conf = os.path.join(root, "ccache.conf")
        open(self.conf, "w").close()
        self.ndirs = 0
        self.extra = {}  # more environment for ccache (and the helpers it starts)

    def helper(self, scheme):
        return os.path.join(self.bin, "ccache-storage-" + scheme)

    def storage(self, url, attrs="", props=""):
        scheme = url.split(":", 1)[0]
        return " ".join(x for x in (url, "helper=" + self.helper(scheme), props, attrs) if x)

    def env(self, cache_dir, storage, log=None, cc_wrapper=None):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("CCACHE_") or k.startswith("CRSH_"):
                del e[k]
        e.update({"CCACHE_DIR": cache_dir, "CCACHE_CONFIGPATH": self.conf,
                  "CCACHE_REMOTE_STORAGE": storage, "XDG_RUNTIME_DIR": self.rt,
                  "CCACHE_LOGFILE": log or os.path.join(self.root, "ccache.log")})
        e.update(self.extra)
        return e

    def new_cache_dir(self):
        self.ndirs += 1
        return os.path.join(self.root, "cache%d" % self.ndirs)


def run(argv, env, cwd=None, timeout=BUILD_TIMEOUT, ok=True):
    p = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    if ok and p.returncode != 0:
        raise Fail("%s exited %d:\n%s" % (" ".join(argv), p.returncode, p.stdout[-3000:]))
    return p


def stats(env):
    out = run([CCACHE, "--print-stats"], env).stdout
    s = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].strip().isdigit():
            s[parts[0]] = int(parts[1])
    return s


def build(e, proj, cache_dir, storage, log, cc="gcc", jobs=8):
    env = e.env(cache_dir, storage, log)
    run(["make", "-C", proj, "clean"], env)
    run(["make", "-C", proj, "-j%d" % jobs, "CC=%s %s" % (CCACHE, cc)], env)
    return stats(env), env


def stop_helpers(env):
    run([CCACHE, "--stop-storage-helpers"], env)


def helper_pids(e):
    """Pids of running helpers started through this work dir's links."""
    return pids_under(e.bin)


def pids_under(prefix):
    """Pids of live processes whose argv[0] lies under the directory prefix."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argv0.startswith(prefix + "/") and state != "Z":
            pids.append(int(d))
    return pids


def sockets(e):
    d = os.path.join(e.rt, "ccache-tmp")
    if not os.path.isdir(d):
        return []
    return [n for n in os.listdir(d) if stat.S_ISSOCK(os.lstat(os.path.join(d, n)).st_mode)]


def diagnostics(log):
    with open(log, errors="replace") as f:
        return [line.split("Storage helper diagnostic: ", 1)[1].strip()
                for line in f if "Storage helper diagnostic: " in line]


def count_in_log(log, text):
    with open(log, errors="replace") as f:
        return sum(1 for line in f if text in line)


def counter(lines, name):
    """The largest "N <name>" among diagnostics lines (0 if none)."""
    vals = [int(m) for d in lines for m in re.findall(r"(\d+) " + name, d)]
    return max(vals) if vals else 0


def redis_keys(port, pattern):
    return redis_command(port, "KEYS", pattern)


# ---------------------------------------------------------------- cases
def fill_and_serve(e, proj, url, attrs, tag):
    """Build once (fill), stop the helper, build from an empty cache dir."""
    n = write_project(proj)
    storage = e.storage(url, attrs)
    log1 = os.path.join(e.root, tag + "-fill.log")
    s1, env1 = build(e, proj, e.new_cache_dir(), storage, log1)
    check(s1.get("cache_miss") == n, "%s fill: %d misses, want %d" % (tag, s1.get("cache_miss", 0), n))
    check(s1.get("remote_storage_miss", 0) == n and s1.get("remote_storage_error", 0) == 0,
          "%s fill: remote misses/errors %s" % (tag, s1))
    spawned = count_in_log(log1, "Spawned helper process with PID")
    check(spawned == 1, "%s fill: make -j8 spawned %d helpers, want 1 shared" % (tag, spawned))
    pids = {d.split("helper: pid ", 1)[1].split(",")[0] for d in diagnostics(log1)
            if d.startswith("helper: pid ")}
    check(len(pids) == 1, "%s fill: answers came from helpers %s" % (tag, pids))
    want = objects(proj)
    stop_helpers(env1)
    wait_for(lambda: not helper_pids(e), "the helper to stop (ccache --stop-storage-helpers)")
    check(not sockets(e), "socket left after stop: %s" % sockets(e))
    log2 = os.path.join(e.root, tag + "-serve.log")
    s2, env2 = build(e, proj, e.new_cache_dir(), storage, log2)
    check(s2.get("remote_storage_hit") == n and s2.get("cache_miss", 0) == 0,
          "%s: second build not all remote hits: %s" % (tag, s2))
    check(objects(proj) == want, "%s: objects differ from the first build" % tag)
    stop_helpers(env2)
    return n, want


def case_from_remote(work):
    with Servers(os.path.join(work, "srv"), ["redis", "nginx"]) as srv:
        e = Env(os.path.join(work, "e"))
        port = srv.port("redis")
        n, _ = fill_and_serve(e, os.path.join(work, "p1"), "redis://127.0.0.1:%d" % port, "", "redis")
        acs = redis_keys(port, "acache:ac:*")
        check(len(acs) >= n, "redis holds %d records, want >= %d" % (len(acs), n))
        fill_and_serve(e, os.path.join(work, "p2"), "http://127.0.0.1:%d/cache" % srv.port("nginx"),
                       "@compress=zstd", "http")
        ac_dir = os.path.join(srv.info["nginx"]["root"], "cache", "ac")
        check(os.path.isdir(ac_dir) and len(os.listdir(ac_dir)) >= n, "nginx holds no records")


def case_poisoned(work):
    with Servers(os.path.join(work, "srv"), ["redis"]) as srv:
        e = Env(os.path.join(work, "e"))
        port = srv.port("redis")
        url = "redis://127.0.0.1:%d" % port
        proj = os.path.join(work, "p")
        # @inline=0: records that carried their (small) objects would be
        # served whatever cas/ holds; this case is about cas/.
        n, want = fill_and_serve(e, proj, url, "@inline=0", "fill")
        cas = redis_keys(port, "acache:cas:*")
        check(len(cas) >= n, "redis holds %d objects" % len(cas))
        for k in cas:
            redis_command(port, "SET", k, "poisoned bytes, not what the id names")
        log = os.path.join(e.root, "poisoned.log")
        s, env = build(e, proj, e.new_cache_dir(), e.storage(url), log)
        check(s.get("remote_storage_hit", 0) == 0, "a poisoned object was served: %s" % s)
        check(s.get("cache_miss") == n, "poisoned: %s misses, want %d" % (s.get("cache_miss"), n))
        check(objects(proj) == want, "poisoned: objects differ")
        check(counter(diagnostics(log), "rejected") > 0, "the helper counted no rejects")
        stop_helpers(env)


def case_signed(work):
    with Servers(os.path.join(work, "srv"), ["redis"]) as srv:
        e = Env(os.path.join(work, "e"))
        key = os.path.join(work, "remote.key")
        with open(key, "w") as f:
            f.write("a secret of more than sixteen bytes\n")
        url = "redis://127.0.0.1:%d" % srv.port("redis")
        proj = os.path.join(work, "p")
        n, want = fill_and_serve(e, proj, url, "", "unsigned")
        log = os.path.join(e.root, "keyed.log")
        signed = "@key-file=" + key
        s, env = build(e, proj, e.new_cache_dir(), e.storage(url, signed), log)
        check(s.get("remote_storage_hit", 0) == 0, "an unsigned record was used: %s" % s)
        check(objects(proj) == want, "signed: objects differ")
        check(counter(diagnostics(log), "rejected") > 0, "unsigned records not counted as rejected")
        stop_helpers(env)  # its uploads (signed) are flushed
        wait_for(lambda: not helper_pids(e), "the keyed helper to stop")
        s, env = build(e, proj, e.new_cache_dir(), e.storage(url, signed),
                       os.path.join(e.root, "keyed2.log"))
        check(s.get("remote_storage_hit") == n, "signed records not served: %s" % s)
        stop_helpers(env)


def case_dead_hang(work):
    with Servers(os.path.join(work, "srv"), ["dead", "hang"]) as srv:
        e = Env(os.path.join(work, "e"))
        proj = os.path.join(work, "p")
        n = write_project(proj)
        for kind in ("dead", "hang"):
            url = "redis://127.0.0.1:%d" % srv.port(kind)
            log = os.path.join(e.root, kind + ".log")
            s, env = build(e, proj, e.new_cache_dir(), e.storage(url, "@timeout=500ms"), log)
            check(s.get("cache_miss") == n, "%s: %s" % (kind, s))
            check(s.get("remote_storage_timeout", 0) == 0,
                  "%s: ccache timed out waiting for the helper: %s" % (kind, s))
            diags = diagnostics(log)
            check(any(d.endswith(": switched off") for d in diags),
                  "%s: the helper did not switch the remote off: %s" % (kind, diags[-4:]))
            stop_helpers(env)


def kill_wrapper(e):
    """A compiler wrapper that SIGKILLs the running helper(s) when it
    compiles f7.c, once: the hook puts the kill in the middle of the build."""
    path = os.path.join(e.root, "cc-kill")
    marker = os.path.join(e.root, "killed")
    with open(path, "w") as f:
        f.write("""#!/usr/bin/env python3
import os, signal, sys
BIN = %r
MARKER = %r
if any(a.endswith("f7.c") for a in sys.argv) and "-E" not in sys.argv:
    try:
        fd = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        fd = None
    if fd is not None:
        killed = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%%s/cmdline" %% d, "rb") as f:
                    argv0 = f.read().split(b"\\0")[0].decode()
            except OSError:
                continue
            if argv0.startswith(BIN + "/"):
                os.kill(int(d), signal.SIGKILL)
                killed.append(d)
        os.write(fd, " ".join(killed).encode())
        os.close(fd)
os.execvp("gcc", ["gcc"] + sys.argv[1:])
""" % (e.bin, marker))
    os.chmod(path, 0o755)
    return path, marker


def case_killed(work):
    with Servers(os.path.join(work, "srv"), ["redis"]) as srv:
        e = Env(os.path.join(work, "e"))
        proj = os.path.join(work, "p")
        n = write_project(proj)
        url = "redis://127.0.0.1:%d" % srv.port("redis")
        wrapper, marker = kill_wrapper(e)
        log = os.path.join(e.root, "killed.log")
        s, env = build(e, proj, e.new_cache_dir(), e.storage(url), log, cc=wrapper, jobs=4)
        check(os.path.exists(marker), "the kill hook did not run")
        with open(marker) as f:
            killed = f.read().split()
        check(len(killed) == 1, "the hook killed %s helpers, want 1" % killed)
        check(s.get("cache_miss") == n, "killed: %s" % s)
        # The next compile finds the stale socket and starts a new helper.
        before = count_in_log(log, "Spawned helper process with PID")
        with open(os.path.join(proj, "extra.c"), "w") as f:
            f.write("int extra(void) { return 42; }\n")
        run([CCACHE, "gcc", "-c", "extra.c", "-o", "extra.o"], env, cwd=proj)
        check(count_in_log(log, "Spawned helper process with PID") > before or
              any(p != int(killed[0]) for p in helper_pids(e)),
              "no new helper after the kill")
        pids = helper_pids(e)
        check(pids and str(pids[0]) not in killed, "no live helper after the kill: %s" % pids)
        s2 = stats(env)
        check(s2.get("remote_storage_miss", 0) >= 1, "the compile after the kill did not reach a helper")
        stop_helpers(env)


def case_idle(work):
    with Servers(os.path.join(work, "srv"), ["redis"]) as srv:
        e = Env(os.path.join(work, "e"))
        proj = os.path.join(work, "p")
        write_project(proj, 3)
        port = srv.port("redis")
        url = "redis://127.0.0.1:%d" % port
        storage = e.storage(url, props="idle-timeout=2s")
        env = e.env(e.new_cache_dir(), storage, os.path.join(e.root, "idle.log"))
        run([CCACHE, "gcc", "-c", "f0.c", "-o", "f0.o"], env, cwd=proj)
        check(len(helper_pids(e)) == 1 and len(sockets(e)) == 1, "no helper after a compile")
        wait_for(lambda: not helper_pids(e), "the helper's idle exit")
        check(not sockets(e), "the socket stayed after the idle exit")
        check(len(redis_keys(port, "acache:ac:*")) == 2,
              "uploads not flushed at the idle exit (want the result and the manifest)")


# ---------------------------------------------------------------- protocol
class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        g = self.recv(2)
        check(g[0] == 1, "greeting version %d" % g[0])
        caps = self.recv(g[1])
        check(set(caps) == {0, 1}, "capabilities %r" % caps)

    def recv(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("closed after %d of %d bytes" % (len(b), n))
            b += c
        return b

    def msg(self):
        return self.recv(self.recv(1)[0]).decode()

    def status(self):
        st = self.recv(1)[0]
        return (st, self.msg()) if st == 2 else (st, None)

    def put(self, key, value, flags=1):
        self.s.sendall(b"\x01" + bytes([len(key)]) + key + bytes([flags]) +
                       struct.pack("=Q", len(value)) + value)
        return self.status()

    def get(self, key):
        self.s.sendall(b"\x00" + bytes([len(key)]) + key)
        st = self.recv(1)[0]
        if st == 0:
            return 0, self.recv(struct.unpack("=Q", self.recv(8))[0])
        return (st, self.msg()) if st == 2 else (st, None)

    def remove(self, key):
        self.s.sendall(b"\x02" + bytes([len(key)]) + key)
        return self.status()

    def info(self):
        self.s.sendall(b"\x04")
        ident = self.msg()
        return ident, [self.msg() for _ in range(self.recv(1)[0])]

    def closed(self):
        """True if the helper hung up (no more bytes, end of file)."""
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True


def can_connect(path):
    try:
        Client(path).s.close()
        return True
    except (OSError, EOFError):
        return False


def start_helper(url, endpoint, attrs=(), idle="0", extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRSH_")}
    env.update(extra or {})
    env.update({"CRSH_IPC_ENDPOINT": endpoint, "CRSH_URL": url, "CRSH_IDLE_TIMEOUT": idle,
                "CRSH_NUM_ATTR": str(len(attrs))})
    for i, (k, v) in enumerate(attrs):
        env["CRSH_ATTR_KEY_%d" % i] = k
        env["CRSH_ATTR_VALUE_%d" % i] = v
    return subprocess.Popen([BIN, "ccache-helper"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def refused(url, endpoint, attrs=()):
    p = start_helper(url, endpoint, attrs)
    out, err = p.communicate(timeout=WAIT)
    check(p.returncode != 0, "helper started where it should refuse: %s" % err)
    return err


def malformed(path):
    """Each bad request: answered with an error and hung up, or dropped."""
    c = Client(path)
    c.s.sendall(b"\x09")
    st, msg = c.status()
    check(st == 2 and "unknown request" in msg and c.closed(), "unknown opcode: %r" % msg)
    c = Client(path)  # key length past the data, then end of input
    c.s.sendall(b"\x00\xc8" + b"k" * 10)
    c.s.shutdown(socket.SHUT_WR)
    check(c.closed(), "short key: not dropped")
    c = Client(path)
    c.s.sendall(b"\x01\x01k\x01" + struct.pack("=Q", 1 << 63))
    st, msg = c.status()
    check(st == 2 and "larger than" in msg and c.closed(), "value length 2^63: %r" % msg)
    c = Client(path)  # closed mid-value: nothing stored
    c.s.sendall(b"\x01\x04half\x01" + struct.pack("=Q", 1000) + b"x" * 10)
    c.s.close()


def case_protocol(work):
    with Servers(os.path.join(work, "srv"), ["redis", "redisauth"]) as srv:
        os.makedirs(os.path.join(work, "rt"), mode=0o700)
        path = os.path.join(work, "rt", "helper.sock")
        url = "redis://127.0.0.1:%d" % srv.port("redis")
        h = start_helper(url, path)
        try:
            wait_for(lambda: os.path.exists(path), "the helper's socket")
            check(stat.S_IMODE(os.lstat(path).st_mode) & 0o077 == 0, "socket not made with umask 077")
            good = Client(path)
            check(good.put(b"\x01" * 20, b"value one") == (0, None), "put")
            malformed(path)
            check(good.get(b"\x01" * 20) == (0, b"value one"), "get after the bad clients")
            check(good.get(b"half")[0] == 1, "a value cut off mid-way was stored")
            check(good.put(b"gone", b"soon removed") == (0, None), "put before remove")
            check(good.remove(b"gone") == (0, None), "remove of a value just put")
            check(good.get(b"gone")[0] == 1, "a removed value was served")
            check(good.remove(b"never there")[0] == 1, "remove of a missing key")
            big = os.urandom(3 << 20)
            check(good.put(b"big", big) == (0, None), "put of 3 MiB")
            check(good.get(b"big") == (0, big), "get of 3 MiB")
            ident, diags = good.info()
            check(ident.startswith("acache ") and any("bad requests" in d for d in diags), ident)
            check(any(" 2 bad requests" in d for d in diags), "bad requests not counted: %s" % diags)
            check(all(len(d.encode()) <= 255 for d in diags), "a message over 255 bytes")
            # A second helper for a live socket refuses to start.
            err = refused(url, path)
            check("already listens" in err, "live socket: %s" % err)
            good.s.sendall(b"\x03")
            check(good.recv(1) == b"\x00", "stop not answered")
            h.wait(timeout=WAIT)
            check(h.returncode == 0 and not os.path.exists(path), "stop: exit %s" % h.returncode)
            # Stored on the remote, not just in the helper's queue.
            h = start_helper(url, path)
            wait_for(lambda: os.path.exists(path), "the second helper's socket")
            check(Client(path).get(b"\x01" * 20) == (0, b"value one"), "not on the remote after stop")
            h.kill()
            h.wait()
            check(os.path.exists(path), "SIGKILL should leave a stale socket")
            h = start_helper(url, path)  # replaces the stale socket
            wait_for(lambda: can_connect(path), "a helper on the stale socket's path")
            h.send_signal(signal.SIGTERM)
            h.wait(timeout=WAIT)
        finally:
            if h.poll() is None:
                h.kill()
                h.wait()
        # Idle exit after its last client, the queued upload flushed first,
        # everything released (a sanitizer build checks leaks here).
        ipath = os.path.join(work, "rt", "idle.sock")
        h = start_helper(url, ipath, idle="1")
        wait_for(lambda: os.path.exists(ipath), "the idle helper's socket")
        c = Client(ipath)
        check(c.put(b"idle-key", b"idle value") == (0, None), "put before the idle exit")
        c.s.close()
        out, err = h.communicate(timeout=WAIT)
        check(h.returncode == 0 and "Sanitizer" not in err and not os.path.exists(ipath),
              "idle exit: status %s, stderr %s" % (h.returncode, err[-2000:]))
        h = start_helper(url, ipath)
        wait_for(lambda: os.path.exists(ipath), "the idle helper's successor")
        check(Client(ipath).get(b"idle-key") == (0, b"idle value"), "not uploaded at the idle exit")
        h.kill()
        h.wait()
        with open(path + "-file", "w") as f:
            f.write("not a socket")
        err = refused(url, path + "-file")
        check("not a socket" in err, "regular file at the endpoint: %s" % err)
        check(open(path + "-file").read() == "not a socket", "the file was touched")
        err = refused(url, os.path.join(work, "rt", "x.sock"), [("bogus-option", "1")])
        check("bogus-option" in err, "unknown attribute: %s" % err)
        authurl = "redis://:%s@127.0.0.1:%d" % (REDIS_PASSWORD, srv.port("redisauth"))
        err = refused(authurl, os.path.join(work, "rt", "y.sock"), [("bogus", "1")])
        check(REDIS_PASSWORD not in err and "bogus" in err, "password in a message: %s" % err)


def case_queue_and_off(work):
    """The upload queue's bound, a queued value served, a remote switched
    off answering at once. The hanging server holds the one upload the
    queue has room for (its timeout is far longer than the test)."""
    with Servers(os.path.join(work, "srv"), ["hang", "dead"]) as srv:
        os.makedirs(os.path.join(work, "rt"), mode=0o700)
        path = os.path.join(work, "rt", "q.sock")
        h = start_helper("redis://127.0.0.1:%d" % srv.port("hang"), path,
                         [("upload-queue", "1"), ("timeout", "60s"), ("flush-timeout", "0")])
        try:
            wait_for(lambda: os.path.exists(path), "the helper's socket")
            c = Client(path)
            check(c.put(b"one", b"first") == (0, None), "first put not queued")
            check(c.put(b"two", b"second") == (1, None), "a put past upload-queue was taken")
            check(c.get(b"one") == (0, b"first"), "a queued value was not served")
            ident, diags = c.info()
            check(counter(diags, "dropped") == 1 and counter(diags, "pending") == 1, diags)
        finally:
            h.kill()
            h.wait()
        path = os.path.join(work, "rt", "d.sock")
        h = start_helper("redis://127.0.0.1:%d" % srv.port("dead"), path, [("failures", "2")])
        try:
            wait_for(lambda: os.path.exists(path), "the helper's socket")
            c = Client(path)
            st, msg = c.get(b"k")
            check(st == 2 and "127.0.0.1" in msg, "a dead remote's get: %r" % msg)
            # The second failure is the background probe's.
            wait_for(lambda: any(d.endswith(": switched off") for d in c.info()[1]),
                     "the probe to switch the dead remote off")
            check(c.get(b"k") == (1, None), "a switched-off remote's get is not a plain miss")
            check(c.put(b"k", b"v") == (1, None), "a switched-off remote took a put")
            check(c.remove(b"k") == (1, None), "a switched-off remote's remove")
        finally:
            h.kill()
            h.wait()
    with Servers(os.path.join(work, "srv2"), ["nginx"]) as srv:
        # A server that refuses uploads (405): after `failures` refusals
        # uploads are switched off and puts are "not stored" at once.
        path = os.path.join(work, "rt", "r.sock")
        h = start_helper("http://127.0.0.1:%d/readonly" % srv.port("nginx"), path,
                         [("failures", "2")])
        try:
            wait_for(lambda: os.path.exists(path), "the helper's socket")
            c = Client(path)
            for i in range(2):
                check(c.put(b"r%d" % i, b"v") == (0, None), "put %d not queued" % i)

            def uploads_off():
                return any("uploads switched off" in d for d in c.info()[1])
            wait_for(uploads_off, "uploads switched off after the server refused them")
            check(c.put(b"r9", b"v") == (1, None), "a put taken after uploads were switched off")
            check(c.get(b"r9")[0] == 1, "gets go on (a miss) with uploads off")
        finally:
            h.kill()
            h.wait()


class RecordingHang(Listener):
    """An HTTP server that reads each request's head, records its path and
    never answers: which requests reached a hanging server, and for which
    keys, without timing anything."""

    def __init__(self):
        self.paths, self.conns, self.lock = [], [], threading.Lock()
        super().__init__(64)

    def on_conn(self, conn):
        with self.lock:
            self.conns.append(conn)
        threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        buf = b""
        try:
            while not self.stopping:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    with self.lock:
                        self.paths.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        except OSError:
            return

    def requests(self):
        with self.lock:
            return list(self.paths)

    def stop(self):
        super().stop()
        with self.lock:
            for c in self.conns:
                c.close()


def info_line(c, start):
    return [d for d in c.info()[1] if d.startswith(start)]


def case_failing(work):
    """A remote whose request failed is not asked on clients' time: after
    one get timed out on a hanging server, the next gets are answered at
    once (with a message saying so) and never reach the server; a probe in
    the background makes the requests that switch it off. And a server that
    stops answering (SIGSTOP) and comes back (SIGCONT) is found again by a
    probe and serves hits."""
    os.makedirs(os.path.join(work, "rt"), mode=0o700)
    hang = RecordingHang()
    path = os.path.join(work, "rt", "f.sock")
    h = start_helper("http://127.0.0.1:%d/cache" % hang.port, path,
                     [("timeout", "500ms"), ("failures", "3")])
    try:
        wait_for(lambda: os.path.exists(path), "the helper's socket")
        c = Client(path)
        st, msg = c.get(b"key-0")
        check(st == 2 and "background probe" not in msg, "first get on a hanging server: %r" % msg)
        for i in range(1, 6):
            st, msg = c.get(b"key-%d" % i)
            check(st == 1 or (st == 2 and "background probe" in msg),
                  "get %d while the remote fails was not answered without it: %r" % (i, msg))
        wait_for(lambda: any(d.endswith(": switched off") for d in c.info()[1]),
                 "the probes to switch the hanging remote off")
        for i in range(6, 9):
            check(c.get(b"key-%d" % i) == (1, None), "a get after the switch-off")
        ac = [r for r in hang.requests() if "/cache/ac/" in r]
        # key-0 and the probe's own key; without the probe key-1 and key-2
        # would have waited on the server too.
        check(len(set(ac)) == 2 and len(ac) == 3,
              "requests that reached the hanging server: %s" % ac)
        skipped = counter(info_line(c, "failing remote:"), "requests answered without it")
        check(skipped >= 5, "gets answered without the remote: %d" % skipped)
    finally:
        h.kill()
        h.wait()
        hang.stop()
    with Servers(os.path.join(work, "srv"), ["redis"]) as srv:
        path = os.path.join(work, "rt", "s.sock")
        pid = srv.info["redis"]["pid"]
        h = start_helper("redis://127.0.0.1:%d" % srv.port("redis"), path,
                         [("timeout", "500ms"), ("failures", "100")])
        try:
            wait_for(lambda: os.path.exists(path), "the helper's socket")
            c = Client(path)
            check(c.put(b"kept", b"a value on the server") == (0, None), "put")
            wait_for(lambda: counter(info_line(c, "remote redis"), "uploads") == 1, "the upload")
            os.kill(pid, signal.SIGSTOP)
            try:
                st, msg = c.get(b"other")
                check(st == 2 and "background probe" not in msg, "get on a stopped server: %r" % msg)
                st, msg = c.get(b"kept")
                check(st == 2 and "background probe" in msg, "a get while failing: %r" % msg)
            finally:
                os.kill(pid, signal.SIGCONT)
            wait_for(lambda: counter(info_line(c, "failing remote:"), "recoveries") == 1,
                     "a probe to find the server answering again")
            check(c.get(b"kept") == (0, b"a value on the server"), "no hit after the recovery")
            check(counter(info_line(c, "remote redis"), "hits") == 1, "the hit was not the remote's")
        finally:
            h.kill()
            h.wait()


def case_s3(work):
    """S3 (s3rver behind the SigV4-checking proxy): a build fills it through
    the helper, a second empty CCACHE_DIR gets every result from it; every
    request signed with the test key. A wrong secret switches the remote off
    with a line saying why, the build succeeds without a ccache timeout, and
    no secret is in ccache's log or the helper's stderr."""
    wrong = "not/the+secret"
    secrets = (wrong, TEST_KEYS[S3_KEY]["secret"])
    with Servers(os.path.join(work, "srv"), ["s3"]) as srv:
        e = Env(os.path.join(work, "e"))
        e.extra = s3_env()
        url = "s3://acache-test/ccache"
        attrs = "@endpoint=http://127.0.0.1:%d @region=us-east-1 @compress=zstd" % srv.port("s3")
        proj = os.path.join(work, "p")
        n, want = fill_and_serve(e, proj, url, attrs, "s3")
        reqs = [r for r in srv.s3_requests("s3") if r["path"].startswith("/acache-test/ccache/")]
        bad = [r for r in reqs if r["akid"] != S3_KEY or (r["status"] >= 400 and not (
            r["status"] == 404 and r["method"] in ("GET", "HEAD")))]
        check(not bad, "s3 requests unsigned or refused: %r" % bad[:5])
        puts = [r for r in reqs if r["method"] == "PUT" and "/ccache/ac/" in r["path"]]
        check(len(puts) >= n, "%d records stored in S3, want >= %d" % (len(puts), n))
        e.extra = s3_env(wrong)
        log = os.path.join(e.root, "s3-wrong.log")
        s, env = build(e, proj, e.new_cache_dir(), e.storage(url, attrs), log)
        check(s.get("cache_miss") == n and s.get("remote_storage_hit", 0) == 0, "wrong secret: %s" % s)
        check(s.get("remote_storage_timeout", 0) == 0, "wrong secret: ccache timed out: %s" % s)
        check(objects(proj) == want, "wrong secret: objects differ")
        diags = diagnostics(log)
        check(any(d.endswith(": switched off") for d in diags), "not switched off: %s" % diags[-5:])
        why = [d for d in diags if ": why: " in d]
        check(why and any(w in why[-1] for w in ("SignatureDoesNotMatch", "HTTP 403")),
              "the reason does not say the server refused the signature: %s" % why[-1:])
        stop_helpers(env)
        for name in os.listdir(e.root):
            if name.endswith(".log"):
                with open(os.path.join(e.root, name), errors="replace") as f:
                    text = f.read()
                check(not any(x in text for x in secrets), "a secret in ccache's log %s" % name)
        # The helper run by hand: its stderr says why, without a secret.
        os.makedirs(os.path.join(work, "rt"), mode=0o700)
        path = os.path.join(work, "rt", "s3.sock")
        h = start_helper(url, path, [a[1:].split("=", 1) for a in attrs.split()],
                         extra=s3_env(wrong))
        try:
            wait_for(lambda: os.path.exists(path), "the helper's socket")
            c = Client(path)
            st, msg = c.get(b"k")
            check(st == 2 and not any(x in msg for x in secrets), "wrong secret's get: %r" % msg)
            wait_for(lambda: any(d.endswith(": switched off") for d in c.info()[1]),
                     "the wrong secret to switch the remote off")
            check(c.get(b"k") == (1, None), "a get after the switch-off")
            c.s.sendall(b"\x03")
            check(c.recv(1) == b"\x00", "stop not answered")
            _, err = h.communicate(timeout=WAIT)
        finally:
            if h.poll() is None:
                h.kill()
                h.wait()
        off = [l for l in err.splitlines() if "switched off for the rest" in l]
        check(len(off) == 1 and any(w in off[0] for w in ("SignatureDoesNotMatch", "HTTP 403")),
              "helper's stderr: %s" % err)
        check(not any(x in err for x in secrets), "a secret on the helper's stderr")


CASES = {
    "queue_and_off": case_queue_and_off,
    "failing": case_failing,
    "protocol": case_protocol,
    "from_remote": case_from_remote,
    "poisoned": case_poisoned,
    "signed": case_signed,
    "dead_hang": case_dead_hang,
    "s3": case_s3,
    "killed": case_killed,
    "idle": case_idle,
}


def main():
    names = sys.argv[1:] or list(CASES)
    failed = []
    for name in names:
        work = tempfile.mkdtemp(prefix="acc-")  # short: socket paths under it must fit 108 bytes
        t0 = time.monotonic()
        try:
            CASES[name](work)
            print("ok   %s (%.1f s)" % (name, time.monotonic() - t0), flush=True)
            shutil.rmtree(work, ignore_errors=True)
        except Exception:
            failed.append(name)
            print("FAIL %s (work dir kept: %s)" % (name, work), flush=True)
            traceback.print_exc()
        finally:
            # Helpers ccache started for this case (through its links) and
            # left running after a failure.
            for pid in pids_under(work):
                os.kill(pid, signal.SIGKILL)
    if failed:
        print("failed: " + " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
