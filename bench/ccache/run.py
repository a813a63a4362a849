#!/usr/bin/env python3
"""bench/ccache/run.py - benchmark: a real C code base built through ccache
with an empty local cache and a full remote, acache's storage helper against
ccache's own built-in backends on the same servers, in the same run.

The code base: Debian's busybox source (a few hundred C files; `make
defconfig`), fetched once with `apt-get source` through a private apt list
of bookworm's deb-src (nothing under /etc/apt is touched) and kept in
--cache-dir; or, for a smoke run, --generated N files of our own.
ccache: Debian sid's 4.14 (scripts/ccache-debian.sh). Servers: redis-server
and nginx (WebDAV) on 127.0.0.1 (tests/remote_servers.py), plus a port
nothing listens on (dead) and a listener that never answers (hang).

Modes, each a `make -jJOBS` from `make clean` with a fresh CCACHE_DIR:
  none          no remote: every file compiled (the reference for dead/hang)
  acache-redis  remote_storage=redis://... helper=acache, remote full
  ccache-redis  the same URL through ccache's built-in Redis backend
  acache-http   http://.../acache through acache's helper, remote full
  ccache-http   http://.../ccache through ccache's built-in HTTP backend
  acache-dead, ccache-dead, acache-hang, ccache-hang
                a remote that refuses, or accepts and never answers: every
                file compiled (compared with none)
Each remote is filled once, untimed, by a build through the same backend.
Every iteration runs every mode once, in a rotated order, so machine noise
falls on all alike; the median of --runs iterations is reported with the
ratios the issue sets targets for:
  acache-X / ccache-X   empty local cache, full remote: target <= 1.0
  acache-dead / none, acache-hang / none: target <= 1.05
Each remote build's ccache statistics are checked (remote hits for all but
at most 2% of the files, which no cache serves and which compile in every
mode) so that a ratio never compares hits with compiles.

Never run as a test; never asserts a timing; writes only under its temp
dir and --cache-dir. Verdicts are printed, the exit status is non-zero only
when a build fails or a full remote did not serve every file.

Usage: bench/ccache/run.py [--runs N] [--jobs N] [--modes LIST]
                           [--generated N] [--acache PATH] [--keep]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from remote_servers import Servers  # noqa: E402

ALL_MODES = ["none", "acache-redis", "ccache-redis", "acache-http", "ccache-http",
             "acache-dead", "ccache-dead", "acache-hang", "ccache-hang"]
BUILD_TIMEOUT = 3600


def log(msg):
    print("ccache-bench: " + msg, file=sys.stderr, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


# ---------------------------------------------------------------- sources
def fetch_busybox(cache_dir):
    """Unpacked busybox source from bookworm's deb-src, kept in cache_dir."""
    src = os.path.join(cache_dir, "busybox-src")
    if os.path.exists(os.path.join(src, "Makefile")):
        return src
    apt = os.path.join(cache_dir, "apt")
    for d in ("lists/partial", "cache/archives/partial", "dl"):
        os.makedirs(os.path.join(apt, d), exist_ok=True)
    with open(os.path.join(apt, "sources.list"), "w") as f:
        f.write("deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                "http://deb.debian.org/debian bookworm main\n")
    opts = ["-o", "Dir::Etc::SourceList=" + os.path.join(apt, "sources.list"),
            "-o", "Dir::Etc::SourceParts=/dev/null", "-o", "Dir::State::Lists=" + apt + "/lists",
            "-o", "Dir::Cache=" + apt + "/cache", "-o", "Debug::NoLocking=1",
            "-o", "Dir::Cache::pkgcache=" + apt + "/cache/pkgcache.bin",
            "-o", "Dir::Cache::srcpkgcache=" + apt + "/cache/srcpkgcache.bin"]
    log("fetching busybox's source (private apt list in %s)" % apt)
    sh(["apt-get", "-q"] + opts + ["update"], stdout=sys.stderr)
    dl = os.path.join(apt, "dl")
    sh(["apt-get", "-q"] + opts + ["source", "--download-only", "busybox"], cwd=dl,
       stdout=sys.stderr)
    dsc = [f for f in os.listdir(dl) if f.endswith(".dsc")][0]
    tmp = src + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sh(["dpkg-source", "--no-check", "-x", os.path.join(dl, dsc), tmp], stdout=sys.stderr)
    sh(["make", "-C", tmp, "defconfig"], stdout=subprocess.DEVNULL)
    os.rename(tmp, src)
    return src


def generated(work, n, acache):
    # The test driver's project generator (it reads these at import).
    os.environ.setdefault("ACACHE_BIN", acache)
    os.environ.setdefault("ACACHE_CCACHE", "ccache")
    from ccache_driver import write_project  # noqa: E402
    d = os.path.join(work, "gen")
    write_project(d, n)
    return d


# ---------------------------------------------------------------- ccache
class Bench:
    def __init__(self, args, work, srv, src):
        self.args, self.work, self.srv, self.src = args, work, srv, src
        self.ccache = subprocess.check_output(
            ["bash", os.path.join(ROOT, "scripts", "ccache-debian.sh")], text=True).strip()
        self.links = os.path.join(work, "libexec")
        self.empty = os.path.join(work, "empty-libexec")
        os.makedirs(self.links)
        os.makedirs(self.empty)
        for scheme in ("redis", "http"):
            os.symlink(args.acache, os.path.join(self.links, "ccache-storage-" + scheme))
        self.rt = tempfile.mkdtemp(prefix="accb-")  # socket paths must be short
        self.n = 0

    def url(self, mode):
        backend = mode.split("-", 1)[1] if "-" in mode else ""
        if backend == "redis":
            db = 1 if mode.startswith("acache") else 2
            return "redis://127.0.0.1:%d/%d" % (self.srv.port("redis"), db)
        if backend == "http":
            return "http://127.0.0.1:%d/cache/%s" % (self.srv.port("nginx"), mode.split("-")[0])
        if backend in ("dead", "hang"):
            return "redis://127.0.0.1:%d" % self.srv.port(backend)
        return ""

    def env(self, mode):
        self.n += 1
        conf = os.path.join(self.work, "ccache-%s.conf" % mode)
        libexec = self.links if mode.startswith("acache") else self.empty
        with open(conf, "w") as f:
            f.write("libexec_dirs = %s\n" % libexec)
        e = {k: v for k, v in os.environ.items() if not k.startswith(("CCACHE_", "CRSH_"))}
        e.update({"CCACHE_DIR": os.path.join(self.work, "cache-%d" % self.n),
                  "CCACHE_CONFIGPATH": conf, "XDG_RUNTIME_DIR": self.rt,
                  "CCACHE_REMOTE_STORAGE": self.url(mode)})
        return e

    def build(self, mode):
        """One timed build from `make clean` with a fresh CCACHE_DIR."""
        e = self.env(mode)
        sh(["make", "-C", self.src, "clean"], env=e, stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        sh(["make", "-C", self.src, "-j%d" % self.args.jobs, "CC=%s gcc" % self.ccache], env=e,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=BUILD_TIMEOUT)
        dt = time.monotonic() - t0
        out = subprocess.check_output([self.ccache, "--print-stats"], env=e, text=True)
        st = {}
        for line in out.splitlines():
            k, _, v = line.partition("\t")
            if v.strip().isdigit():
                st[k] = int(v)
        shutil.rmtree(e["CCACHE_DIR"], ignore_errors=True)
        return dt, st

    def stop_helpers(self, mode):
        subprocess.run([self.ccache, "--stop-storage-helpers"], env=self.env(mode),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def check_full(mode, st):
    """A full-remote build must be served by the remote. A file or two that
    no cache can serve (busybox regenerates one per build) compile in every
    mode alike; more than 2% means the remote was not full."""
    if mode.split("-")[-1] in ("redis", "http"):
        hits, miss = st.get("remote_storage_hit", 0), st.get("cache_miss", 0)
        if miss > max(2, (hits + miss) // 50):
            raise SystemExit("ccache-bench: %s: %d remote hits but %d compiles: the remote was "
                             "not full; ratios would be meaningless" % (mode, hits, miss))


def run(args, b, modes):
    fills = [m for m in modes if m.split("-")[-1] in ("redis", "http")]
    for m in fills:
        log("filling the remote for %s (untimed)" % m)
        b.build(m)
        if m.startswith("acache"):
            b.stop_helpers(m)  # its uploads flushed
    times = {m: [] for m in modes}
    for i in range(args.runs):
        order = modes[i % len(modes):] + modes[:i % len(modes)]
        for m in order:
            dt, st = b.build(m)
            check_full(m, st)
            times[m].append(dt)
            log("run %d %-13s %7.2f s  (remote hits %d, compiles %d, remote errors %d, "
                "timeouts %d)" % (i + 1, m, dt, st.get("remote_storage_hit", 0),
                                  st.get("cache_miss", 0), st.get("remote_storage_error", 0),
                                  st.get("remote_storage_timeout", 0)))
        for m in modes:
            if m.startswith("acache"):
                b.stop_helpers(m)
    return {m: statistics.median(v) for m, v in times.items()}


def report(med):
    print("median build time (s), empty local cache:")
    for m, v in med.items():
        print("  %-13s %8.2f" % (m, v))
    print("ratios:")

    def ratio(a, b, target):
        if a in med and b in med and med[b] > 0:
            r = med[a] / med[b]
            print("  %-13s / %-13s %6.3f  (target <= %.2f: %s)"
                  % (a, b, r, target, "met" if r <= target else "NOT met"))
    for x in ("redis", "http"):
        ratio("acache-" + x, "ccache-" + x, 1.0)
    for x in ("dead", "hang"):
        ratio("acache-" + x, "none", 1.05)
        ratio("ccache-" + x, "none", 1.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--modes", default=",".join(ALL_MODES))
    ap.add_argument("--generated", type=int, default=0,
                    help="build N generated files instead of busybox (a smoke run)")
    ap.add_argument("--acache", default=os.path.join(ROOT, "build", "acache"))
    ap.add_argument("--cache-dir", default=os.environ.get("ACACHE_BENCH_CACHE",
                                                         "/var/cache/acache-bench"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.acache = os.path.realpath(args.acache)
    modes = [m for m in args.modes.split(",") if m]
    bad = set(modes) - set(ALL_MODES)
    if bad:
        raise SystemExit("unknown modes: %s (known: %s)" % (bad, ",".join(ALL_MODES)))
    work = tempfile.mkdtemp(prefix="acache-ccache-bench-")
    try:
        os.makedirs(args.cache_dir, exist_ok=True)
        src = generated(work, args.generated, args.acache) if args.generated else fetch_busybox(args.cache_dir)
        with Servers(os.path.join(work, "srv"), ["redis", "nginx", "dead", "hang"]) as srv:
            b = Bench(args, work, srv, src)
            try:
                report(run(args, b, modes))
            finally:
                for m in modes:
                    if m.startswith("acache"):
                        b.stop_helpers(m)
                shutil.rmtree(b.rt, ignore_errors=True)
    finally:
        if args.keep:
            log("kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
