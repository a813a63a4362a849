#!/usr/bin/env python3
"""gobench.py - helpers for bench/gobuild/run.sh (Python 3 standard library only).

    gobench.py time LOG -- CMD...    run CMD (stderr and stdout to LOG), print
                                     its wall time in seconds (time.monotonic);
                                     exits with CMD's status; appends to LOG the
                                     CPU time (user + system) of CMD and what it
                                     waited for, and of the processes under each
                                     pid in $GOBENCH_SERVER_PIDS (the servers)
    gobench.py buildcpu LOG          "BUILD SERVERS": those two CPU times
    gobench.py median X...           print the median
    gobench.py ratio A B             print A / B
    gobench.py le A LIMIT            exit 0 if A <= LIMIT, else 1
    gobench.py summary LOG           the last `acache gocacheprog -v` summary in
                                     LOG, shortened ("" when there is none)
    gobench.py remotes LOG           the remote lines of that summary, one per
                                     remote ("" when there are none)
    gobench.py plan STORE OUT        the entries of an acache disk store as
                                     bench_fetch's --plan wants them ("action
                                     output size", a line each); prints how many
    gobench.py rss ACACHE DIR MIB    peak-RSS growth of `ACACHE gocacheprog
                                     --dir DIR` over one MIB MiB put, against a
                                     helper that only did a tiny put; prints
                                     "delta_mib base_mib big_mib put_seconds"

This is benchmark plumbing: it reports numbers, it never judges them.
"""
import base64
import hashlib
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time

MIB = 1 << 20


def tree_cpu(roots):
    """User + system seconds of the processes roots and all below them."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        procs[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    total, todo, seen = 0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in procs:
            continue
        seen.add(pid)
        total += procs[pid][1]
        todo.extend(p for p, (ppid, _) in procs.items() if ppid == pid)
    return total / tick


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cmd_time(args):
    log, sep, cmd = args[0], args[1], args[2:]
    if sep != "--" or not cmd:
        sys.exit("usage: gobench.py time LOG -- CMD...")
    servers = [int(p) for p in os.environ.get("GOBENCH_SERVER_PIDS", "").split() if p.isdigit()]
    with open(log, "wb") as f:
        cpu0, srv0 = children_cpu(), tree_cpu(servers)
        start = time.monotonic()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        elapsed = time.monotonic() - start
        cpu, srv = children_cpu() - cpu0, tree_cpu(servers) - srv0
        f.write(b"gobench: cpu %.3f s build, %.3f s servers\n" % (cpu, srv))
    print("%.3f" % elapsed)
    return rc


def cmd_buildcpu(args):
    text = read_log(args[0])
    m = re.findall(r"gobench: cpu ([\d.]+) s build, ([\d.]+) s servers", text)
    print("%s %s" % m[-1] if m else "0 0")
    return 0


def cmd_median(args):
    print("%.3f" % statistics.median(float(a) for a in args))
    return 0


def cmd_ratio(args):
    a, b = float(args[0]), float(args[1])
    print("%.3f" % (a / b if b > 0 else float("inf")))
    return 0


def cmd_le(args):
    return 0 if float(args[0]) <= float(args[1]) else 1


def read_log(path):
    """The text of a log, or "" when there is none."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cmd_summary(args):
    text = read_log(args[0])
    m = re.findall(r"gocacheprog: (\d+) gets \((\d+) hits, (\d+) misses\), (\d+) puts, .*?"
                   r"([\d.]+) s in requests \(summed\), ([\d.]+) s wall", text)
    if m:
        gets, hits, misses, puts, busy, wall = m[-1]
        print("%s gets (%s hits), %s puts, %s s in requests (summed) / %s s helper wall"
              % (gets, hits, puts, busy, wall))
    return 0


def cmd_cpu(args):
    """The helper's CPU time (user + system, s) from its -v summary, or 0."""
    text = read_log(args[0])
    m = re.findall(r"; cpu ([\d.]+) s user, ([\d.]+) s system", text)
    print("%.3f" % (float(m[-1][0]) + float(m[-1][1])) if m else "0")
    return 0


def cmd_remotes(args):
    text = read_log(args[0])
    # "remote N: NAME (MODE): STATE; counters" lines of the final summary
    # (the ones at start have no counters).
    lines = re.findall(r"gocacheprog: (remote \d+: .*? hits, .*)", text)
    print("; ".join(lines))
    return 0


# ---------------------------------------------------------------------------
# Peak RSS of the helper during a large put, driven over a pipe exactly as the
# go command frames it: request line, empty line, body line (a JSON string of
# standard base64), then close.

def b64(raw):
    return base64.b64encode(raw).decode()


def req(obj):
    return (json.dumps(obj, separators=(",", ":")) + "\n\n").encode()


# Chunks are a multiple of 3 bytes so their base64 concatenates cleanly.
CHUNK = 3 * 256 * 1024


def body_chunks(size, seed):
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def vm_hwm_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/%d/status" % pid)


def read_response(p, want_id):
    line = p.stdout.readline()
    if not line:
        raise RuntimeError("helper closed stdout while waiting for ID %d" % want_id)
    resp = json.loads(line)
    if resp.get("ID") != want_id:
        raise RuntimeError("expected ID %d, got %r" % (want_id, resp))
    return resp


def one_put(acache, directory, size, seed):
    """Starts a helper, puts size bytes, returns (VmHWM MiB before close, put seconds)."""
    digest = hashlib.sha256()
    for chunk in body_chunks(size, seed):
        digest.update(chunk)
    action = hashlib.sha256(b"gobench-rss-%d-%d" % (size, seed)).digest()
    p = subprocess.Popen([acache, "gocacheprog", "--dir", directory],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        hello = json.loads(p.stdout.readline() or b"null")
        if not hello or hello.get("ID") != 0 or "put" not in hello.get("KnownCommands", []):
            raise RuntimeError("bad handshake: %r" % hello)
        start = time.monotonic()
        p.stdin.write(req({"ID": 1, "Command": "put", "ActionID": b64(action),
                           "OutputID": b64(digest.digest()), "BodySize": size}))
        p.stdin.write(b'"')
        for chunk in body_chunks(size, seed):
            p.stdin.write(base64.b64encode(chunk))
        p.stdin.write(b'"\n')
        p.stdin.flush()
        resp = read_response(p, 1)
        elapsed = time.monotonic() - start
        if resp.get("Err") or not resp.get("DiskPath"):
            raise RuntimeError("put failed: %r" % resp)
        if os.path.getsize(resp["DiskPath"]) != size:
            raise RuntimeError("stored object has the wrong size: %r" % resp)
        hwm = vm_hwm_mib(p.pid)
        p.stdin.write(req({"ID": 2, "Command": "close"}))
        p.stdin.flush()
        read_response(p, 2)
        p.stdin.close()
        rc = p.wait(timeout=60)
        if rc != 0:
            raise RuntimeError("helper exited with status %d" % rc)
        return hwm, elapsed
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def cmd_rss(args):
    acache, directory, mib = args[0], args[1], int(args[2])
    base, _ = one_put(acache, os.path.join(directory, "tiny"), 1024, 1)
    big, secs = one_put(acache, os.path.join(directory, "big"), mib * MIB, 2)
    print("%.1f %.1f %.1f %.2f" % (big - base, base, big, secs))
    return 0


def cmd_plan(args):
    store, out = args[0], args[1]
    adir = os.path.join(store, "v1", "a")
    n = 0
    with open(out, "w") as p:
        for shard in sorted(os.listdir(adir)):
            for name in sorted(os.listdir(os.path.join(adir, shard))):
                if len(name) != 64:
                    continue
                w = open(os.path.join(adir, shard, name)).read().split()
                p.write("%s %s %s\n" % (w[1], w[2], w[3]))
                n += 1
    print(n)
    return 0


COMMANDS = {"plan": cmd_plan, "time": cmd_time, "median": cmd_median, "ratio": cmd_ratio, "le": cmd_le,
            "summary": cmd_summary, "remotes": cmd_remotes, "cpu": cmd_cpu, "buildcpu": cmd_buildcpu, "rss": cmd_rss}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
