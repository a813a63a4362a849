#!/usr/bin/env python3
"""remote_go_driver.py - the real go command through `acache gocacheprog
--remote`, against real servers (remote_servers.py) on 127.0.0.1:

  from_remote   a cold build fills Redis and nginx (WebDAV) at once; the same
                build from an empty --dir and an empty GOCACHE is then served
                from each of them (>= 90% of gets are hits, all from the
                remote), and a program built that way is byte-identical to one
                built with the go command's own cache;
  killed        Redis killed in the middle of a cold build: the build succeeds,
                one line says the remote was switched off;
  hanging       a remote that accepts connections and never answers, and one
                where nothing listens, over Redis and HTTP: the cold build
                succeeds, one line says the remote was switched off, and it
                takes at most a timeout or two longer than with no remote;
  s3            S3 (s3rver behind a proxy that checks every SigV4 signature):
                a cold `go build std` fills it (compress=zstd, records signed
                with a key, no upload dropped), `go build std` from an empty
                --dir and GOCACHE is served from it (>= 90% hits, nearly all
                from S3, a prefetch manifest found), every request was signed
                with the test key and none refused, and a program built that
                way is byte-identical to the go command's own;
  s3_failing    a wrong secret, a missing bucket, a server that never
                answers: the build succeeds, with one line naming the
                bucket, region and credential source (never the secret).

Run by test_remote_go.sh. Needs $ACACHE_BIN and a go that honours GOCACHEPROG
($ACACHE_GO, else scripts/go-toolchain.sh). Every server it starts is stopped
on the way out, also on failure; every build has a time limit.

Usage: remote_go_driver.py [CASE...]   (ACACHE_TEST_VERBOSE=1: print the
helper's stderr of the hanging and dead builds)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from remote_servers import Servers, TEST_KEYS, S3_KEY, s3_env, redis_command  # noqa: E402

SRC = os.environ.get("ACACHE_SOURCE_DIR", os.path.dirname(HERE))
BIN = os.path.realpath(os.environ["ACACHE_BIN"])
# Packages of std that take a few seconds to build cold (runtime and its
# deps are most of it) and exercise ~100 actions.
PKGS = ["encoding/json", "net/url", "text/template"]
BUILD_TIMEOUT = 600

HELLO = """package main

import (
\t"encoding/json"
\t"fmt"
\t"os"
)

func main() {
\tb, _ := json.Marshal(os.Args)
\tfmt.Println(string(b))
}
"""


def go_binary():
    go = os.environ.get("ACACHE_GO")
    if go:
        return go
    return subprocess.check_output(["bash", os.path.join(SRC, "scripts", "go-toolchain.sh")],
                                   text=True).strip()


GO = go_binary()


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def summary(stderr):
    """The helper's -v numbers: gets, hits, misses, puts."""
    m = re.findall(r"(\d+) gets \((\d+) hits, (\d+) misses\), (\d+) puts", stderr)
    check(m, "no acache -v summary in:\n" + stderr)
    gets, hits, misses, puts = map(int, m[-1])
    return {"gets": gets, "hits": hits, "misses": misses, "puts": puts}


def remote_lines(stderr):
    return re.findall(r"gocacheprog: remote \d+: (.*)", stderr)


def remote_hits(stderr):
    m = re.findall(r"gocacheprog: remote \d+: .*?(\d+) hits, (\d+) misses", stderr)
    check(m, "no remote summary line in:\n" + stderr)
    return int(m[-1][0])


def unexpected_lines(stderr):
    """stderr lines that are neither -v output nor a remote switched off."""
    return [l for l in stderr.splitlines()
            if l.strip() and not l.startswith("acache: gocacheprog: ")
            and "switched off" not in l]


class Work:
    def __init__(self, root):
        self.root = root
        self.n = 0

    def fresh(self, tag):
        """An empty GOCACHE and acache --dir."""
        self.n += 1
        d = os.path.join(self.root, "%02d-%s" % (self.n, tag))
        os.makedirs(os.path.join(d, "gocache"))
        os.makedirs(os.path.join(d, "dir"))
        return d

    def build(self, d, remotes, args=None, cwd=None, on_start=None, env_extra=None):
        """go build through acache with the given remotes; returns
        (seconds, stderr). The build must succeed."""
        prog = "%s gocacheprog --dir %s -v %s" % (
            BIN, os.path.join(d, "dir"), " ".join("--remote " + r for r in remotes))
        env = dict(os.environ, GOCACHE=os.path.join(d, "gocache"), GOCACHEPROG=prog,
                   GOTOOLCHAIN="local", GOFLAGS="", GOPATH=os.path.join(self.root, "gopath"),
                   GO111MODULE="on")
        env.pop("ACACHE_REMOTE", None)
        env.update(env_extra or {})
        start = time.monotonic()
        p = subprocess.Popen([GO, "build"] + (args or PKGS), env=env, cwd=cwd or self.root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if on_start:
            on_start(p)
        try:
            out, err = p.communicate(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise Fail("go build timed out after %ds:\n%s" % (BUILD_TIMEOUT, err))
        secs = time.monotonic() - start
        check(p.returncode == 0, "go build failed (%d):\n%s%s" % (p.returncode, out, err))
        return secs, err

    def hello(self):
        d = os.path.join(self.root, "hello")
        if not os.path.isdir(d):
            os.makedirs(d)
            with open(os.path.join(d, "go.mod"), "w") as f:
                f.write("module example.com/hello\n\ngo 1.21\n")
            with open(os.path.join(d, "main.go"), "w") as f:
                f.write(HELLO)
        return d


def case_from_remote(w):
    with Servers(os.path.join(w.root, "srv1"), ["redis", "nginx"]) as srv:
        redis = srv.spec("redis", "prefix=go")
        http = srv.spec("nginx")
        d = w.fresh("fill")
        secs, err = w.build(d, [redis, http])
        s = summary(err)
        check(s["puts"] > 50, "the cold build stored only %d entries" % s["puts"])
        check(not unexpected_lines(err), "unexpected stderr:\n" + err)
        hello = w.hello()
        _, herr = w.build(d, [redis, http], ["-o", os.path.join(w.root, "hello-fill"), "."],
                          cwd=hello)
        check(not unexpected_lines(herr), "unexpected stderr:\n" + herr)
        for line in remote_lines(err)[-2:]:
            check(" 0 dropped" in line and "failures" in line and " 0 failures" in line,
                  "uploads lost while filling: " + line)
        print("fill: cold build in %.1fs, %d puts, uploaded to both remotes" % (secs, s["puts"]))
        check(redis_command(srv.port("redis"), "DBSIZE") >= s["puts"], "Redis holds too little")

        for name, spec in (("redis", redis), ("http", http)):
            d = w.fresh("from-" + name)
            secs, err = w.build(d, [spec])
            s = summary(err)
            rh = remote_hits(err)
            print("%s: build from an empty local store in %.2fs: %d of %d gets hit, %d from the "
                  "remote" % (name, secs, s["hits"], s["gets"], rh))
            check(s["gets"] > 50, "only %d gets" % s["gets"])
            check(s["hits"] * 100 >= s["gets"] * 90,
                  "%s: only %d of %d gets were hits" % (name, s["hits"], s["gets"]))
            check(rh >= s["hits"] * 9 // 10, "%s: only %d hits came from the remote" % (name, rh))
            check(not unexpected_lines(err), "unexpected stderr:\n" + err)
            # The fill build left a manifest: most entries came ahead of the go command.
            m = re.search(r"prefetch: a manifest of (\d+) entries; (\d+) fetched ahead, "
                          r"(\d+) already local, (\d+) not found", err)
            check(m, "%s: the session prefetch found no manifest:\n%s" % (name, err))
            listed, ahead, local, missing = map(int, m.groups())
            print("%s: prefetch: a manifest of %d entries, %d fetched ahead, %d already local" %
                  (name, listed, ahead, local))
            check(ahead > 0 and missing == 0, "%s: prefetch fetched %d, %d not found" %
                  (name, ahead, missing))
            # A program linked from what the remote served: byte-identical.
            out = os.path.join(w.root, "hello-" + name)
            w.build(d, [spec], ["-o", out, "."], cwd=hello)
            own = os.path.join(w.root, "hello-own")
            if not os.path.exists(own):
                env = dict(os.environ, GOCACHE=os.path.join(w.root, "own-gocache"),
                           GOCACHEPROG="", GOTOOLCHAIN="local", GOFLAGS="",
                           GOPATH=os.path.join(w.root, "gopath"))
                subprocess.run([GO, "build", "-o", own, "."], cwd=hello, env=env, check=True,
                               timeout=BUILD_TIMEOUT)
            with open(out, "rb") as a, open(own, "rb") as b:
                check(a.read() == b.read(), "hello built from %s differs from the go "
                                            "command's own build" % name)
        print("hello: byte-identical when built from either remote")


def case_killed(w):
    with Servers(os.path.join(w.root, "srv2"), ["redis"]) as srv:
        spec = srv.spec("redis", "timeout=500ms")
        port = srv.port("redis")
        d = w.fresh("killed")
        state = {}

        def kill_when_busy(p):
            # Kill once uploads have started (or after 20s at most).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and p.poll() is None:
                try:
                    if redis_command(port, "DBSIZE", timeout=1) >= 20:
                        break
                except OSError:
                    break
                time.sleep(0.05)
            state["running"] = p.poll() is None
            srv.kill("redis")

        secs, err = w.build(d, [spec], on_start=kill_when_busy)
        check(state.get("running"), "the build ended before Redis could be killed")
        off = [l for l in err.splitlines() if "switched off for the rest" in l]
        check(len(off) == 1, "want one switched-off line, got:\n" + err)
        check(not unexpected_lines(err), "unexpected stderr:\n" + err)
        line = remote_lines(err)[-1]
        check("switched off" in line, "summary does not say switched off: " + line)
        print("killed: build succeeded in %.1fs; %s" % (secs, off[0].strip()))
        print("        %s" % line)


def case_hanging(w):
    with Servers(os.path.join(w.root, "srv3"), ["hang", "dead"]) as srv:
        base, err = w.build(w.fresh("no-remote"), [])
        print("no remote: cold build in %.1fs" % base)
        for kind in ("hang", "dead"):
            # timeout=2s: a remote that was never switched off would cost more
            # than a minute here (~130 gets, ~250 uploads), whatever the load.
            for spec in (srv.spec(kind, "timeout=2s"),
                         "http://127.0.0.1:%d/cache?timeout=2s" % srv.port(kind)):
                secs, err = w.build(w.fresh(kind), [spec])
                off = [l for l in err.splitlines() if "switched off for the rest" in l]
                check(len(off) == 1, "%s: want one switched-off line, got:\n%s" % (spec, err))
                check(not unexpected_lines(err), "unexpected stderr:\n" + err)
                # What bounds the cost is how many requests waited out a
                # timeout, not the time (bench/gobuild measures that; a test
                # asserts no timings): the switch-off threshold and the
                # requests already in flight then (GCP_WORKERS gets, the
                # uploader), against ~450 for a remote never switched off.
                # No upload is tried after it.
                line = remote_lines(err)[-1]
                m = re.search(r"(\d+) failures; (\d+) uploads", line)
                check(m and int(m.group(1)) <= 12 and int(m.group(2)) == 0,
                      "%s: want at most 12 failures and no upload, got: %s" % (spec, line))
                print("%s %s: cold build in %.1fs (no remote: %.1fs)" % (kind, spec.split(":")[0],
                                                                        secs, base))
                if os.environ.get("ACACHE_TEST_VERBOSE"):
                    print(err)


def own_build(w, hello):
    """hello built by the go command with its own cache (once)."""
    own = os.path.join(w.root, "hello-own")
    if not os.path.exists(own):
        env = dict(os.environ, GOCACHE=os.path.join(w.root, "own-gocache"), GOCACHEPROG="",
                   GOTOOLCHAIN="local", GOFLAGS="", GOPATH=os.path.join(w.root, "gopath"))
        subprocess.run([GO, "build", "-o", own, "."], cwd=hello, env=env, check=True,
                       timeout=BUILD_TIMEOUT)
    return own


def case_s3(w):
    with Servers(os.path.join(w.root, "srv4"), ["s3"]) as srv:
        key = os.path.join(w.root, "remote.key")
        with open(key, "w") as f:
            f.write("acache-s3-test-signing-key-0123456789\n")
        # The test server (s3rver behind a Python proxy) takes milliseconds a
        # request, and more than the default 1s now and then on a busy
        # machine: this case checks what is served, not how fast, so a
        # request gets 20s and the fill waits for every upload (the default
        # 5s at exit would drop the last ones).
        spec = ("s3://acache-test/go?endpoint=http://127.0.0.1:%d&compress=zstd&key-file=%s"
                "&timeout=20s" % (srv.port("s3"), key))
        fill_spec = spec + "&flush-timeout=10m"
        env = s3_env()
        d = w.fresh("s3-fill")
        secs, err = w.build(d, [fill_spec], ["std"], env_extra=env)
        s = summary(err)
        check(s["puts"] > 500, "the cold build of std stored only %d entries" % s["puts"])
        check(not unexpected_lines(err), "unexpected stderr:\n" + err)
        hello = w.hello()
        _, herr = w.build(d, [fill_spec], ["-o", os.path.join(w.root, "hello-fill"), "."],
                          cwd=hello, env_extra=env)
        for e in (err, herr):
            line = remote_lines(e)[-1]
            check(" 0 dropped" in line and " 0 failures" in line, "uploads lost: " + line)
        check("credentials: environment (AWS_ACCESS_KEY_ID)" in err,
              "-v does not say where the credentials came from:\n" + err)
        print("s3 fill: cold go build std in %.1fs, %d puts" % (secs, s["puts"]))

        d = w.fresh("from-s3")
        secs, err = w.build(d, [spec], ["std"], env_extra=env)
        s = summary(err)
        rh = remote_hits(err)
        print("s3: go build std from an empty local store in %.2fs: %d of %d gets hit, %d from "
              "the remote" % (secs, s["hits"], s["gets"], rh))
        check(" 0 failures" in remote_lines(err)[-1], "s3: requests failed:\n" + err)
        check(s["gets"] > 500 and s["hits"] * 100 >= s["gets"] * 90,
              "s3: only %d of %d gets were hits" % (s["hits"], s["gets"]))
        check(rh >= s["hits"] * 9 // 10, "s3: only %d hits came from the remote" % rh)
        check(not unexpected_lines(err), "unexpected stderr:\n" + err)
        m = re.search(r"prefetch: a manifest of (\d+) entries; (\d+) fetched ahead, "
                      r"(\d+) already local, (\d+) not found", err)
        check(m and int(m.group(2)) > 0 and int(m.group(4)) == 0,
              "s3: the session prefetch did not fetch from S3:\n" + err)
        print("s3: prefetch: a manifest of %s entries, %s fetched ahead" % (m.group(1), m.group(2)))
        out = os.path.join(w.root, "hello-s3")
        w.build(d, [spec], ["-o", out, "."], cwd=hello, env_extra=env)
        with open(out, "rb") as a, open(own_build(w, hello), "rb") as b:
            check(a.read() == b.read(), "hello built from S3 differs from the go command's own")
        reqs = [r for r in srv.s3_requests("s3") if r["path"].startswith("/acache-test/")]
        bad = [r for r in reqs if r["akid"] != S3_KEY or (r["status"] >= 400 and not (
            r["status"] == 404 and r["method"] in ("GET", "HEAD")))]
        check(not bad, "requests unsigned or refused: %r" % bad[:5])
        puts = [r for r in reqs if r["method"] == "PUT"]
        check(puts and all(r["hashed"] for r in puts), "a PUT without its payload hash")
        # Connections are pooled and reused across requests and threads.
        conns = len(set(r["conn"] for r in reqs))
        check(conns * 5 <= len(reqs), "%d connections for %d requests" % (conns, len(reqs)))
        print("s3: %d requests on %d connections, all signed with the test key, %d PUTs with "
              "their SHA-256; hello byte-identical" % (len(reqs), conns, len(puts)))


def case_s3_failing(w):
    with Servers(os.path.join(w.root, "srv5"), ["s3", "s3-hang"]) as srv:
        hello = w.hello()
        port = srv.port("s3")
        cases = [
            ("wrong secret", "s3://acache-test/go?endpoint=http://127.0.0.1:%d" % port,
             s3_env("not/the+secret"), ("SignatureDoesNotMatch", "HTTP 403: access denied")),
            ("missing bucket", "s3://acache-missing/go?endpoint=http://127.0.0.1:%d" % port,
             s3_env(), ("NoSuchBucket",)),
            ("hanging", "s3://acache-test/go?endpoint=http://127.0.0.1:%d&timeout=2s" %
             srv.port("s3-hang"), s3_env(), ("consecutive failures",)),
        ]
        for name, spec, env, why in cases:
            d = w.fresh("s3-" + name.replace(" ", "-"))
            out = os.path.join(w.root, "hello-" + name.replace(" ", "-"))
            secs, err = w.build(d, [spec], ["-o", out, "."], cwd=hello, env_extra=env)
            off = [l for l in err.splitlines() if "switched off for the rest" in l]
            check(len(off) == 1, "%s: want one switched-off line, got:\n%s" % (name, err))
            # A HEAD (the uploader's check) has no body to carry S3's error code, so
            # which words the line has depends on whether a GET or a HEAD failed first.
            check(any(w in off[0] for w in why),
                  "%s: the line says none of %s: %s" % (name, why, off[0]))
            if name != "hanging":
                check("bucket acache-" in off[0] and "region us-east-1" in off[0] and
                      "credentials: environment (AWS_ACCESS_KEY_ID)" in off[0],
                      "%s: the line does not name bucket, region and credentials: %s" %
                      (name, off[0]))
            check("not/the+secret" not in err and TEST_KEYS[S3_KEY]["secret"] not in err,
                  "a secret on stderr:\n" + err)
            check(not unexpected_lines(err), "unexpected stderr:\n" + err)
            with open(out, "rb") as a, open(own_build(w, hello), "rb") as b:
                check(a.read() == b.read(), "%s: hello differs from the go command's own" % name)
            print("%s: built in %.1fs; %s" % (name, secs, off[0].strip()))


CASES = {"from_remote": case_from_remote, "killed": case_killed, "hanging": case_hanging,
         "s3": case_s3, "s3_failing": case_s3_failing}


def main(argv):
    names = argv or list(CASES)
    root = tempfile.mkdtemp(prefix="acache-remote-go-")
    failed = []
    try:
        for name in names:
            t0 = time.monotonic()
            print("== %s" % name, flush=True)
            try:
                CASES[name](Work(os.path.join(root, name)))
                print("   ok (%.1fs)" % (time.monotonic() - t0), flush=True)
            except Exception:
                traceback.print_exc()
                failed.append(name)
    finally:
        subprocess.run(["chmod", "-R", "u+w", root], check=False)
        shutil.rmtree(root, ignore_errors=True)
    print("%d passed, %d failed" % (len(names) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
