#!/usr/bin/env python3
"""gocacheprog_driver.py - end-to-end tests of `acache gocacheprog`.

Drives the real binary ($ACACHE_BIN) over pipes, as the go command does:
handshake, pipelined requests, put bodies, bad input of every kind, close.
Checks that stdout carries nothing but JSON response lines, that every
request is answered exactly once, that a failed put leaves nothing behind,
and that a 64 MiB put does not raise the helper's peak RSS by 32 MiB.
Run by test_gocacheprog.sh; standard library only.

Usage: gocacheprog_driver.py [TEST_NAME...]
"""
import base64
import hashlib
import json
import os
import queue
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BIN = os.environ.get("ACACHE_BIN", "acache")
TIMEOUT = float(os.environ.get("GCP_TEST_TIMEOUT", "60"))
MIB = 1 << 20


def b64(raw):
    return base64.b64encode(raw).decode()


def action(n):
    return hashlib.sha256(b"action-%d" % n).digest()


def sha(raw):
    return hashlib.sha256(raw).digest()


def req_line(obj, blank=True):
    """One request as the go command writes it: JSON, newline, empty line."""
    return (json.dumps(obj, separators=(",", ":")) + ("\n\n" if blank else "\n")).encode()


def get_req(rid, act):
    return req_line({"ID": rid, "Command": "get", "ActionID": b64(act)})


def put_req(rid, act, body, out=None, size=None, field="OutputID"):
    out = sha(body) if out is None else out
    size = len(body) if size is None else size
    obj = {"ID": rid, "Command": "put", "ActionID": b64(act), field: b64(out)}
    if size:
        obj["BodySize"] = size
    data = req_line(obj)
    if size > 0:
        data += b'"' + b64(body).encode() + b'"\n'
    return data


RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Helper:
    """One `acache gocacheprog` process and the threads reading its output."""

    def __init__(self, cache_dir, *args, cwd=None, expect_handshake=True):
        self.p = subprocess.Popen(
            [BIN, "gocacheprog", "--dir", cache_dir, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd)
        self.responses = queue.Queue()
        self.lines = []           # every stdout line, raw
        self.bad_lines = []       # stdout lines that are not responses
        self.stderr = b""
        self.t_out = threading.Thread(target=self._read_stdout, daemon=True)
        self.t_err = threading.Thread(target=self._read_stderr, daemon=True)
        self.t_out.start()
        self.t_err.start()
        if expect_handshake:
            hs = self.response()
            check(hs == {"ID": 0, "KnownCommands": ["get", "put", "close"]},
                  "bad handshake %r" % hs)

    def _read_stdout(self):
        for raw in self.p.stdout:
            self.lines.append(raw)
            try:
                obj = json.loads(raw.decode())
                ok = (raw.endswith(b"\n") and isinstance(obj, dict)
                      and isinstance(obj.get("ID"), int))
            except ValueError:
                ok = False
            if not ok:
                self.bad_lines.append(raw)
                continue
            self.responses.put(obj)
        self.responses.put(None)

    def _read_stderr(self):
        self.stderr = self.p.stderr.read()

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def response(self, timeout=TIMEOUT):
        try:
            r = self.responses.get(timeout=timeout)
        except queue.Empty:
            raise Failure("no response within %.0f s" % timeout)
        check(r is not None, "stdout ended while a response was expected; stderr: %r"
              % self.stderr_now())
        return r

    def responses_by_id(self, n, timeout=TIMEOUT):
        got = {}
        for _ in range(n):
            r = self.response(timeout)
            check(r["ID"] not in got, "ID %d answered twice" % r["ID"])
            got[r["ID"]] = r
        return got

    def request(self, data):
        self.send(data)
        return self.response()

    def stderr_now(self):
        return self.stderr

    def vm_hwm_kib(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise Failure("no VmHWM in /proc/%d/status" % self.p.pid)

    def finish(self, timeout=TIMEOUT):
        """Closes stdin and waits; returns the exit status. Checks that
        nothing but responses appeared on stdout and none is left over."""
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise Failure("helper did not exit after end of input")
        self.t_out.join(timeout)
        self.t_err.join(timeout)
        check(not self.bad_lines, "stdout carried non-protocol lines: %r" % self.bad_lines[:3])
        extra = []
        while True:
            r = self.responses.get()
            if r is None:
                break
            extra.append(r)
        self.leftover = extra
        return rc

    def close_and_finish(self, rid=999999):
        r = self.request(req_line({"ID": rid, "Command": "close"}))
        check(r == {"ID": rid}, "bad close answer %r" % r)
        rc = self.finish()
        check(rc == 0, "exit status %d after close; stderr: %r" % (rc, self.stderr))
        check(not self.leftover, "unexpected responses %r" % self.leftover)
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def check_hit(r, rid, body):
    check(r.get("ID") == rid, "wrong ID in %r" % r)
    check("Miss" not in r and "Err" not in r, "expected a hit, got %r" % r)
    check(r.get("OutputID") == b64(sha(body)), "OutputID %r" % r.get("OutputID"))
    check(r.get("Size") == len(body), "Size %r, want %d" % (r.get("Size"), len(body)))
    check(RFC3339NANO.match(r.get("Time", "")), "Time %r is not RFC 3339" % r.get("Time"))
    path = r.get("DiskPath", "")
    check(os.path.isabs(path), "DiskPath %r is not absolute" % path)
    check("." not in os.path.basename(path), "DiskPath %r has an extension" % path)
    with open(path, "rb") as f:
        check(f.read() == body, "file at DiskPath does not hold the body")


def check_err(r, rid):
    check(r.get("ID") == rid, "wrong ID in %r" % r)
    check(isinstance(r.get("Err"), str) and r["Err"], "expected Err, got %r" % r)


def check_miss(r, rid):
    check(r == {"ID": rid, "Miss": True}, "expected a miss for %d, got %r" % (rid, r))


def fresh_get_misses(cache_dir, act):
    """A new helper on the same directory misses act."""
    h = Helper(cache_dir)
    try:
        check_miss(h.request(get_req(1, act)), 1)
        h.close_and_finish()
    finally:
        h.kill()


def object_files(cache_dir):
    """Every regular file under the cache directory but the store's own
    bookkeeping (its counters in v1/stats, the trim's lock and state)."""
    out = []
    for root, dirs, files in os.walk(cache_dir):
        dirs[:] = [x for x in dirs if x != "stats"]
        out.extend(os.path.join(root, f) for f in files if not f.startswith("trim."))
    return out


def no_object_named(cache_dir, output_id):
    hexid = output_id.hex()
    found = [f for f in object_files(cache_dir) if hexid in os.path.basename(f)]
    check(not found, "a failed put left %r" % found)


def expect_fatal(h, what):
    rc = h.finish()
    check(rc != 0, "%s: exit status 0" % what)
    err = h.stderr.decode(errors="replace")
    check("acache:" in err, "%s: no acache: message on stderr (%r)" % (what, err))
    return err


# ----------------------------------------------------------------------
# Tests. Each takes a fresh cache directory.

def test_put_get_roundtrip(d):
    body = bytes(random.Random(1).getrandbits(8) for _ in range(100000))
    h = Helper(d)
    try:
        r = h.request(put_req(1, action(1), body))
        check_hit(r, 1, body)
        put_path = r["DiskPath"]
        r = h.request(get_req(2, action(1)))
        check_hit(r, 2, body)
        check(r["DiskPath"] == put_path, "get and put DiskPath differ")
        check_miss(h.request(get_req(3, action(2))), 3)
        h.close_and_finish(4)
        check(h.stderr == b"", "stderr not empty without -v: %r" % h.stderr)
    finally:
        h.kill()
    # A new session sees the entry, and the path outlives the helper.
    h = Helper(d)
    try:
        check_hit(h.request(get_req(1, action(1))), 1, body)
        h.close_and_finish(2)
    finally:
        h.kill()


def test_empty_put(d):
    h = Helper(d)
    try:
        r = h.request(put_req(1, action(1), b""))  # no BodySize, no body line
        check_hit(r, 1, b"")
        check(r["OutputID"] == b64(bytes.fromhex(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")), "empty id")
        check_hit(h.request(get_req(2, action(1))), 2, b"")
        h.close_and_finish(3)
    finally:
        h.kill()


def test_object_id_put(d):
    """Go 1.21-1.23 name the output id ObjectID; 1.24 may send both."""
    h = Helper(d)
    try:
        body = b"object id body" * 10
        check_hit(h.request(put_req(1, action(1), body, field="ObjectID")), 1, body)
        check_hit(h.request(get_req(2, action(1))), 2, body)
        body2 = b"both ids"
        obj = {"ID": 3, "Command": "put", "ActionID": b64(action(2)),
               "ObjectID": b64(sha(body2)), "OutputID": b64(sha(body2)), "BodySize": len(body2)}
        check_hit(h.request(req_line(obj) + b'"' + b64(body2).encode() + b'"\n'), 3, body2)
        h.close_and_finish(4)
    finally:
        h.kill()


RESPONSE_FIELDS = {"ID", "Err", "KnownCommands", "Miss", "OutputID", "Size", "Time", "DiskPath"}


def go_line(fields):
    """A request line byte for byte as Go's encoding/json writes the struct:
    fields in declaration order, empty ones left out, then the extra empty
    line the go command adds."""
    return (json.dumps(dict((k, v) for k, v in fields if v not in (None, 0, b"", "")),
                       separators=(",", ":")) + "\n\n").encode()


def go_put(release, rid, act, body):
    """A put as each release's go command writes it (the Request struct of
    cmd/go/internal/cache/prog.go in 1.23, cmd/go/internal/cacheprog in
    1.24+). "1.24x" is a 1.24 go built with GOEXPERIMENT=cacheprog, the only
    one that sends the deprecated ObjectID next to OutputID."""
    out = b64(sha(body))
    if release == "1.23":
        fields = [("ID", rid), ("Command", "put"), ("ActionID", b64(act)),
                  ("ObjectID", out), ("BodySize", len(body))]
    else:
        fields = [("ID", rid), ("Command", "put"), ("ActionID", b64(act)),
                  ("OutputID", out), ("BodySize", len(body)),
                  ("ObjectID", out if release == "1.24x" else None)]
    data = go_line(fields)
    if body:
        data += b'"' + b64(body).encode() + b'"\n'
    return data


def test_each_go_release(d):
    """The requests of Go 1.23 (cacheprog), 1.24 (with and without the
    experiment), 1.25 and 1.26, exactly as each writes them, on one store:
    every release reads back what the others stored, and the answers carry
    only the fields the Response struct defines."""
    releases = ["1.23", "1.24", "1.24x", "1.25", "1.26"]
    bodies = {rel: ("body stored by go %s " % rel).encode() * (i + 1)
              for i, rel in enumerate(releases)}
    for i, rel in enumerate(releases):
        h = Helper(d)
        try:
            rid = 1
            r = h.request(go_put(rel, rid, action(100 + i), bodies[rel]))
            check_hit(r, rid, bodies[rel])
            r = h.request(go_put(rel, rid + 1, action(200 + i), b""))
            check_hit(r, rid + 1, b"")
            rid += 2
            for j, other in enumerate(releases[:i + 1]):
                r = h.request(go_line([("ID", rid), ("Command", "get"),
                                       ("ActionID", b64(action(100 + j)))]))
                check_hit(r, rid, bodies[other])
                check(set(r) <= RESPONSE_FIELDS, "go %s: unknown response fields in %r" % (rel, r))
                rid += 1
            check_miss(h.request(go_line([("ID", rid), ("Command", "get"),
                                          ("ActionID", b64(action(999)))])), rid)
            r = h.request(go_line([("ID", rid + 1), ("Command", "close")]))
            check(r == {"ID": rid + 1}, "go %s: bad close answer %r" % (rel, r))
            check(h.finish() == 0, "go %s: exit status after close" % rel)
        finally:
            h.kill()


def test_unknown_fields_ignored(d):
    """Fields a later go command might add are ignored, wherever they are."""
    body = b"unknown fields" * 7
    h = Helper(d)
    try:
        obj = {"Hint": "x", "ID": 1, "Command": "put", "ActionID": b64(action(1)),
               "Priority": 3, "OutputID": b64(sha(body)), "BodySize": len(body),
               "Extra": {"Nested": [1, 2, {"ObjectIDs": None}]}, "Flag": True}
        check_hit(h.request(req_line(obj) + b'"' + b64(body).encode() + b'"\n'), 1, body)
        obj = {"ID": 2, "Command": "get", "ActionID": b64(action(1)), "Deadline": "2030-01-01T00:00:00Z"}
        check_hit(h.request(req_line(obj)), 2, body)
        obj = {"Version": 2, "ID": 3, "Command": "get", "ActionID": b64(action(2))}
        check_miss(h.request(req_line(obj)), 3)
        h.close_and_finish(4)
    finally:
        h.kill()


def test_future_commands_err(d):
    """Commands acache did not declare (the "get2" the Go docs foresee, the
    "output-file" Go 1.23's comments name) get Err, and the session goes on."""
    h = Helper(d)
    try:
        for rid, cmd in ((1, "get2"), (2, "output-file"), (3, "stat")):
            r = h.request(req_line({"ID": rid, "Command": cmd, "ActionID": b64(action(1))}))
            check_err(r, rid)
            check(cmd in r["Err"], "Err does not name %r: %r" % (cmd, r))
        body = b"after unknown commands"
        check_hit(h.request(put_req(4, action(1), body)), 4, body)
        check_hit(h.request(get_req(5, action(1))), 5, body)
        h.close_and_finish(6)
    finally:
        h.kill()


def test_help_names_go_releases(d):
    """--help says which go commands speak the protocol and which are tested
    (the releases of the Go matrix, test_go_1_NN)."""
    p = subprocess.run([BIN, "gocacheprog", "--help"], capture_output=True, timeout=TIMEOUT)
    text = " ".join((p.stdout + p.stderr).decode().split())
    check(p.returncode == 0, "--help exit status %d" % p.returncode)
    check("Tested end to end with Go 1.23 (cacheprog), 1.24, 1.25 and 1.26." in text,
          "--help does not name the tested Go releases: %r" % text)
    check("GOEXPERIMENT=cacheprog" in text, "--help does not say how 1.21-1.23 speak it")


def test_bad_id_length(d):
    h = Helper(d)
    try:
        check_err(h.request(req_line({"ID": 5, "Command": "get", "ActionID": b64(b"short")})), 5)
        check_err(h.request(req_line({"ID": 6, "Command": "get", "ActionID": "!!!!"})), 6)
        body = b"abc"
        check_err(h.request(put_req(7, action(1)[:16], body)), 7)
        check_err(h.request(put_req(8, action(1), body, out=sha(body)[:31])), 8)
        # The helper goes on, and nothing was stored.
        check_miss(h.request(get_req(9, action(1))), 9)
        h.close_and_finish(10)
    finally:
        h.kill()


def test_missing_fields(d):
    h = Helper(d)
    try:
        check_err(h.request(req_line({"ID": 1, "Command": "get"})), 1)
        # A put without an output id: its body is skipped, not taken for a
        # request.
        body = b"x" * 1000
        obj = {"ID": 2, "Command": "put", "ActionID": b64(action(1)), "BodySize": len(body)}
        check_err(h.request(req_line(obj) + b'"' + b64(body).encode() + b'"\n'), 2)
        obj = {"ID": 3, "Command": "put", "OutputID": b64(sha(body)), "BodySize": len(body)}
        check_err(h.request(req_line(obj) + b'"' + b64(body).encode() + b'"\n'), 3)
        check_err(h.request(req_line({"ID": 4})), 4)
        check_miss(h.request(get_req(5, action(1))), 5)
        h.close_and_finish(6)
    finally:
        h.kill()


def test_unknown_command(d):
    h = Helper(d)
    try:
        r = h.request(req_line({"ID": 1, "Command": "frobnicate"}))
        check_err(r, 1)
        check("frobnicate" in r["Err"], "Err does not name the command: %r" % r)
        check_miss(h.request(get_req(2, action(1))), 2)
        h.close_and_finish(3)
    finally:
        h.kill()


def test_not_json(d):
    h = Helper(d)
    try:
        h.send(get_req(1, action(1)) + b"this is not json\n\n" + get_req(2, action(2)))
        err = expect_fatal(h, "non-JSON line")
        check("not JSON" in err, "message does not say what is wrong: %r" % err)
        # The get before the bad line was due and answered; the one after
        # was never read.
        ids = [r["ID"] for r in h.leftover]
        check(ids == [1], "answers after a fatal line: %r" % h.leftover)
    finally:
        h.kill()
    for bad in (b"[1,2]\n", b'{"Command":"close"}\n', b'{"ID":99999999999999999999}\n'):
        h = Helper(d)
        try:
            h.send(bad)
            expect_fatal(h, "line %r" % bad)
        finally:
            h.kill()


def test_eof_mid_body(d):
    body = os.urandom(300000)
    full = put_req(1, action(1), body)
    for cut in (len(full) - 3, len(full) // 2, full.index(b'"') + 1):
        h = Helper(d)
        try:
            h.send(full[:cut])
            err = expect_fatal(h, "end of input in a body")
            check("end of input" in err, "unclear message %r" % err)
            check(not h.leftover, "a truncated put was answered: %r" % h.leftover)
        finally:
            h.kill()
    # Header sent, then nothing: also fatal.
    h = Helper(d)
    try:
        h.send(full[:full.index(b"\n") + 1])
        expect_fatal(h, "end of input before a body")
    finally:
        h.kill()
    no_object_named(d, sha(body))
    left = object_files(d)
    check(not left, "a put cut short left files behind: %r" % left)
    fresh_get_misses(d, action(1))


def test_body_size_mismatch(d):
    h = Helper(d)
    try:
        body = b"0123456789" * 100
        # Shorter than BodySize says.
        check_err(h.request(put_req(1, action(1), body, size=len(body) + 1)), 1)
        # Longer.
        check_err(h.request(put_req(2, action(2), body, size=len(body) - 1)), 2)
        check_miss(h.request(get_req(3, action(1))), 3)
        check_miss(h.request(get_req(4, action(2))), 4)
        h.close_and_finish(5)
    finally:
        h.kill()
    no_object_named(d, sha(body))
    fresh_get_misses(d, action(1))
    fresh_get_misses(d, action(2))


def test_sha_mismatch(d):
    h = Helper(d)
    try:
        body = b"the real body" * 50
        wrong = sha(b"something else")
        r = h.request(put_req(1, action(1), body, out=wrong))
        check_err(r, 1)
        check_miss(h.request(get_req(2, action(1))), 2)
        h.close_and_finish(3)
    finally:
        h.kill()
    no_object_named(d, sha(body))
    no_object_named(d, wrong)
    fresh_get_misses(d, action(1))


def test_bad_base64_body(d):
    h = Helper(d)
    try:
        body = b"abcdef"
        obj = {"ID": 1, "Command": "put", "ActionID": b64(action(1)),
               "OutputID": b64(sha(body)), "BodySize": len(body)}
        check_err(h.request(req_line(obj) + b'"YWJj!!ZGVm"\n'), 1)
        obj["ID"] = 2
        check_err(h.request(req_line(obj) + b'"YWJjZGV"\n'), 2)
        # The stream is still in step: the next requests work.
        check_miss(h.request(get_req(3, action(1))), 3)
        check_hit(h.request(put_req(4, action(1), body)), 4, body)
        h.close_and_finish(5)
    finally:
        h.kill()
    # A body whose string never ends on its line breaks the framing.
    h = Helper(d)
    try:
        obj = {"ID": 1, "Command": "put", "ActionID": b64(action(2)),
               "OutputID": b64(sha(body)), "BodySize": len(body)}
        h.send(req_line(obj) + b'"YWJj\nZGVm"\n')
        expect_fatal(h, "newline inside a body")
    finally:
        h.kill()


def test_pipelined(d):
    """Many requests written at once, answered in any order, each once."""
    h = Helper(d)
    try:
        bodies = {i: os.urandom(random.Random(i).randrange(0, 50000)) for i in range(100)}
        data = bytearray()
        rid = 1
        expect = {}
        for i in range(100):
            data += put_req(rid, action(i), bodies[i])
            expect[rid] = ("put", i)
            rid += 1
            data += get_req(rid, action(1000 + i))
            expect[rid] = ("miss", i)
            rid += 1
        writer = threading.Thread(target=h.send, args=(bytes(data),))
        writer.start()
        got = h.responses_by_id(len(expect))
        writer.join()
        check(set(got) == set(expect), "IDs answered differ from IDs sent")
        for r_id, (kind, i) in expect.items():
            if kind == "put":
                check_hit(got[r_id], r_id, bodies[i])
            else:
                check_miss(got[r_id], r_id)
        # Now all the gets, pipelined, then close at once: close comes last.
        data = b"".join(get_req(1000 + i, action(i)) for i in range(100))
        data += req_line({"ID": 5000, "Command": "close"})
        h.send(data)
        got = []
        for _ in range(101):
            got.append(h.response())
        check(got[-1] == {"ID": 5000}, "close was not answered last: %r" % got[-1])
        for r in got[:-1]:
            check_hit(r, r["ID"], bodies[r["ID"] - 1000])
        rc = h.finish()
        check(rc == 0, "exit status %d" % rc)
    finally:
        h.kill()


def test_framing_leniency(d):
    """No empty line after requests, several, CRLF: all fine."""
    h = Helper(d)
    try:
        body = b"lenient"
        obj = {"ID": 1, "Command": "put", "ActionID": b64(action(1)),
               "OutputID": b64(sha(body)), "BodySize": len(body)}
        data = req_line(obj, blank=False) + b'"' + b64(body).encode() + b'"\n'
        data += b"\n\n\n" + req_line({"ID": 2, "Command": "get", "ActionID": b64(action(1))},
                                      blank=False)
        data += b"\r\n" + json.dumps({"ID": 3, "Command": "get",
                                      "ActionID": b64(action(2))}).encode() + b"\r\n\r\n"
        h.send(data)
        got = h.responses_by_id(3)
        check_hit(got[1], 1, body)
        check_hit(got[2], 2, body)
        check_miss(got[3], 3)
        # The last request may lack its newline.
        h.send(json.dumps({"ID": 4, "Command": "close"}).encode())
        rc = h.finish()
        check(rc == 0, "exit status %d" % rc)
        check(h.leftover == [{"ID": 4}], "close without newline: %r" % h.leftover)
    finally:
        h.kill()


def test_eof_without_close(d):
    h = Helper(d)
    try:
        h.send(b"".join(get_req(i, action(i)) for i in range(1, 21)))
        rc = h.finish()
        check(rc == 0, "exit status %d at end of input without close" % rc)
        check(sorted(r["ID"] for r in h.leftover) == list(range(1, 21)),
              "not every request was answered before exit")
    finally:
        h.kill()


def test_long_line(d):
    """A request line longer than the limit (1 MiB) is answered Err for its
    ID, wherever the ID is in it, a put's body after it is skipped, and the
    helper goes on serving, its memory not growing with the line."""
    h = Helper(d)
    try:
        check_hit(h.request(put_req(1, action(1), b"warm" * 1000)), 1, b"warm" * 1000)
        base = h.vm_hwm_kib()
        # A get whose ID comes last, after 32 MiB of a nested field with
        # braces, quotes and a fake "ID" inside strings.
        pad = {"a": ["}{\"ID\":9", "x" * (32 * MIB)], "ID": 7}
        line = (b'{"Pad":' + json.dumps(pad).encode() + b', "Command": "get", '
                b'"ActionID": "' + b64(action(1)).encode() + b'", "ID": 2}\n')
        w = threading.Thread(target=lambda: h.send(line))
        w.start()
        r = h.response()
        w.join()
        check_err(r, 2)
        check("longer than" in r["Err"], "unclear Err %r" % r)
        # A put whose line is too long: Err for it, its body skipped.
        body = b"the body of a put whose line is too long"
        obj = {"ID": 3, "Pad": "y" * (2 * MIB), "Command": "put", "ActionID": b64(action(2)),
               "OutputID": b64(sha(body)), "BodySize": len(body)}
        h.send(req_line(obj, blank=False) + b'"' + b64(body).encode() + b'"\n')
        check_err(h.response(), 3)
        # Still serving, in step.
        check_hit(h.request(get_req(4, action(1))), 4, b"warm" * 1000)
        check_miss(h.request(get_req(5, action(2))), 5)
        peak = h.vm_hwm_kib()
        h.close_and_finish(6)
        grow = (peak - base) / 1024.0
        check(grow < 8, "peak RSS grew by %.1f MiB with a 32 MiB request line" % grow)
    finally:
        h.kill()


def test_long_line_not_a_request(d):
    """A line longer than the limit that is not a JSON object with an ID
    ends the helper, saying why."""
    for junk, what in ((b"x" * (MIB + 10), "not a JSON object"),
                       (b'{"Command":"get","Pad":"' + b"z" * (MIB + 10) + b'"}', "no integer ID")):
        h = Helper(d)
        try:
            w = threading.Thread(target=lambda: _send_ignoring_epipe(h, junk + b"\n"))
            w.start()
            # The helper must end on the line itself, so its input is closed
            # only once the line is sent (or the helper has gone): closed
            # earlier, the helper could meet a plain end of input first.
            w.join()
            err = expect_fatal(h, "a long line that is no request")
            check("longer than" in err and what in err, "unclear message %r" % err)
        finally:
            h.kill()


def _send_ignoring_epipe(h, data):
    try:
        h.send(data)
    except BrokenPipeError:
        pass


def test_verbose_summary(d):
    h = Helper(d, "-v")
    try:
        body = b"verbose"
        check_hit(h.request(put_req(1, action(1), body)), 1, body)
        check_hit(h.request(get_req(2, action(1))), 2, body)
        check_miss(h.request(get_req(3, action(2))), 3)
        check_err(h.request(req_line({"ID": 4, "Command": "nope"})), 4)
        h.close_and_finish(5)
        err = h.stderr.decode()
        check(re.search(r"2 gets \(1 hits, 1 misses\), 1 puts", err), "summary: %r" % err)
        check("errors" in err and "wall" in err, "summary: %r" % err)
        check(all(l.startswith("acache:") for l in err.splitlines()),
              "stderr line without the acache: prefix: %r" % err)
    finally:
        h.kill()


def test_relative_dir(d):
    h = Helper("rel-cache", cwd=d)
    try:
        body = b"relative"
        r = h.request(put_req(1, action(1), body))
        check_hit(r, 1, body)
        check(r["DiskPath"].startswith(os.path.realpath(d)) or r["DiskPath"].startswith(d),
              "DiskPath %r not under %r" % (r["DiskPath"], d))
        h.close_and_finish(2)
    finally:
        h.kill()


def test_bad_options(d):
    for args in (["--remote", "nosuchscheme://x"], ["--bogus"], ["--max-size", "1G&x=y"],
                 ["--workers", "many"], ["--workers", "65"], ["--workers", "-1"], ["--dir"]):
        p = subprocess.run([BIN, "gocacheprog", "--dir", d, *args] if args != ["--dir"]
                           else [BIN, "gocacheprog", "--dir"],
                           input=b"", capture_output=True, timeout=TIMEOUT)
        check(p.returncode == 2, "%r: exit status %d" % (args, p.returncode))
        check(p.stdout == b"", "%r: stdout %r" % (args, p.stdout))
        check(b"acache:" in p.stderr, "%r: stderr %r" % (args, p.stderr))


def test_remote_and_max_size(d):
    """--remote chains a store after the disk one; hits still carry a local
    DiskPath. --max-size reaches the disk store's spec."""
    h = Helper(d, "--remote", "mem:?max-size=1M", "--remote", "mem:", "--max-size", "1G")
    try:
        body = b"tiered" * 100
        check_hit(h.request(put_req(1, action(1), body)), 1, body)
        check_hit(h.request(get_req(2, action(1))), 2, body)
        h.close_and_finish(3)
    finally:
        h.kill()
    env = dict(os.environ, ACACHE_MAX_SIZE="not a size")
    p = subprocess.run([BIN, "gocacheprog", "--dir", d], input=b"", capture_output=True,
                       env=env, timeout=TIMEOUT)
    check(p.returncode == 2 and p.stdout == b"", "bad ACACHE_MAX_SIZE: exit %d" % p.returncode)
    env = dict(os.environ, ACACHE_REMOTE="mem: nosuch:x")
    p = subprocess.run([BIN, "gocacheprog", "--dir", d], input=b"", capture_output=True,
                       env=env, timeout=TIMEOUT)
    check(p.returncode == 2 and b"nosuch" in p.stderr, "bad ACACHE_REMOTE: %r" % p.stderr)


def _mapped_libcurl(pid):
    with open("/proc/%d/maps" % pid) as f:
        return [line for line in f if "libcurl" in line]


def _shared_libraries(path):
    """The absolute paths of the shared libraries ldd says path loads."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=TIMEOUT).stdout
    return re.findall(r"=> (/\S+\.so[.\d]*) ", out)


def test_http_without_libcurl(d):
    """libcurl is loaded only when an http remote is opened: a helper
    without one (and with a non-http remote) never maps it. When it cannot
    be loaded, opening the http remote fails, naming libcurl.so.4 and the
    loader's reason. The loader is made to fail the ordinary way, by
    LD_LIBRARY_PATH finding a 'libcurl.so.4' that is not libcurl: an empty
    file (not a library), then another real library (no curl symbols)."""
    for args in ([], ["--remote", "mem:"]):
        h = Helper(d, *args)
        try:
            check(not _mapped_libcurl(h.p.pid), "%r: libcurl mapped at start" % args)
            h.close_and_finish()
        finally:
            h.kill()
    fake = os.path.join(d, "fake-curl")
    os.mkdir(fake)
    # One of acache's own plain dependencies (not libc, the loader or a
    # sanitizer runtime, which do not take being loaded twice).
    others = [p for p in _shared_libraries(shutil.which(BIN) or BIN)
              if re.search(r"/lib(zstd|jansson|hiredis|crypto)\.so", p)]
    check(others, "ldd %s lists none of libzstd, jansson, hiredis, libcrypto" % BIN)
    cases = [(b"", "too short"), (open(others[0], "rb").read(), "curl_global_init")]
    for content, why in cases:
        with open(os.path.join(fake, "libcurl.so.4"), "wb") as f:
            f.write(content)
        env = dict(os.environ, LD_LIBRARY_PATH=fake)
        p = subprocess.run([BIN, "gocacheprog", "--dir", d, "--remote", "http://127.0.0.1:1/c"],
                           input=b"", capture_output=True, env=env, timeout=TIMEOUT)
        err = p.stderr.decode(errors="replace")
        check(p.returncode == 2 and p.stdout == b"", "%s: exit %d, stdout %r" %
              (why, p.returncode, p.stdout))
        check("cannot open remote http://127.0.0.1:1/c" in err and "libcurl.so.4" in err and
              why in err and fake in err, "%s: stderr %r" % (why, err))


def _stats(d):
    p = subprocess.run([BIN, "stats", "--dir", d, "--json"], capture_output=True,
                       timeout=TIMEOUT)
    check(p.returncode == 0, "acache stats: %r" % p.stderr)
    return json.loads(p.stdout)


def test_stdout_ends_before_exit_counts_kept(d):
    """After close and the end of stdin the helper ends its stdout (what
    the go command waits for) before closing the store and exiting, and
    only once its counts are written: a helper killed the moment stdout
    ends still has every get and put counted (folded by the next reader)."""
    for kill in (False, True):
        before = _stats(d)
        h = Helper(d)
        try:
            body = b"counted" * 10
            check_hit(h.request(put_req(1, action(1), body)), 1, body)
            for i in range(2, 7):
                check_hit(h.request(get_req(i, action(1))), i, body)
            check_miss(h.request(get_req(7, action(99))), 7)
            r = h.request(req_line({"ID": 8, "Command": "close"}))
            check(r == {"ID": 8}, "bad close answer %r" % r)
            h.p.stdin.close()
            h.t_out.join(TIMEOUT)
            check(not h.t_out.is_alive(), "stdout did not end after close")
            if kill:
                h.p.kill()
            h.p.wait(TIMEOUT)
        finally:
            h.kill()
        after = _stats(d)
        for key, want in (("hits", 5), ("misses", 1), ("puts", 1)):
            check(after[key] - before[key] == want, "kill=%s: %s went from %r to %r" %
                  (kill, key, before[key], after[key]))


def test_get_not_held_by_put(d):
    """A get sent before a put is answered while the put's body is still
    arriving."""
    h = Helper(d)
    try:
        body = b"z" * 3000000
        check_hit(h.request(put_req(1, action(1), body)), 1, body)
        full = put_req(3, action(2), body)
        h.send(get_req(2, action(1)) + full[:len(full) // 2])
        check_hit(h.response(), 2, body)
        h.send(full[len(full) // 2:])
        check_hit(h.response(), 3, body)
        h.close_and_finish(4)
    finally:
        h.kill()


def test_slow_get_does_not_block(d):
    """A get stuck in the store holds up neither other gets nor puts; close
    waits for it. The stuck get is made by replacing its action entry with
    a FIFO, whose open() blocks until the test opens the other end. With
    only the local store gets are served by the reader itself (a disk lookup
    is cheaper than a thread hand-off), so the pool is asked for here, as a
    configured remote would."""
    h = Helper(d, "--workers", "4")
    try:
        bx, by = b"slow entry" * 100, b"fast entry" * 100
        check_hit(h.request(put_req(1, action(1), bx)), 1, bx)
        check_hit(h.request(put_req(2, action(2), by)), 2, by)
        hexid = action(1).hex()
        entries = [f for f in object_files(d) if os.path.basename(f) == hexid]
        if len(entries) != 1:
            print("    skipped: no action entry file named %s in the cache" % hexid)
            h.close_and_finish(3)
            return
        with open(entries[0], "rb") as f:
            record = f.read()
        os.remove(entries[0])
        os.mkfifo(entries[0])
        h.send(get_req(10, action(1)))
        time.sleep(0.2)
        bz = b"another" * 100
        h.send(get_req(11, action(2)) + put_req(12, action(3), bz) + get_req(13, action(3))
               + get_req(14, action(4)))
        got = h.responses_by_id(4, timeout=10)
        check(sorted(got) == [11, 12, 13, 14], "answers while a get is stuck: %r" % sorted(got))
        check_hit(got[11], 11, by)
        check_hit(got[12], 12, bz)
        check_miss(got[14], 14)
        h.send(req_line({"ID": 15, "Command": "close"}))
        try:
            early = h.responses.get(timeout=0.5)
            raise Failure("answered while get 10 was in flight: %r" % early)
        except queue.Empty:
            pass
        with open(entries[0], "wb") as f:  # unblocks the stuck open()
            f.write(record)
        r = h.response()
        check(r.get("ID") == 10, "expected the stuck get first, got %r" % r)
        check(h.response() == {"ID": 15}, "close not answered last")
        check(h.finish() == 0, "exit status")
    finally:
        h.kill()


def _stream_put(h, rid, act, size, seed):
    """Sends a put of size pseudo-random bytes without ever holding them
    whole. Returns the body's SHA-256."""
    chunk = 3 * MIB  # a multiple of 3: chunks encode independently

    def chunks():
        rnd = random.Random(seed)
        left = size
        while left > 0:
            n = min(chunk, left)
            yield rnd.randbytes(n)
            left -= n

    digest = hashlib.sha256()
    for c in chunks():
        digest.update(c)
    out = digest.digest()
    obj = {"ID": rid, "Command": "put", "ActionID": b64(act),
           "OutputID": b64(out), "BodySize": size}
    h.send(req_line(obj) + b'"')
    for c in chunks():
        h.p.stdin.write(base64.b64encode(c))
    h.send(b'"\n')
    return out


def test_large_put_rss(d):
    size = 64 * MIB
    h = Helper(d)
    try:
        # Warm up: workers started, one small put and get served.
        check_hit(h.request(put_req(1, action(1), b"warm" * 1000)), 1, b"warm" * 1000)
        check_hit(h.request(get_req(2, action(1))), 2, b"warm" * 1000)
        base = h.vm_hwm_kib()
        t0 = time.monotonic()
        out = _stream_put(h, 3, action(2), size, 64)
        r = h.response()
        secs = time.monotonic() - t0
        check(r.get("ID") == 3 and "Err" not in r, "64 MiB put failed: %r" % r)
        check(r.get("Size") == size and r.get("OutputID") == b64(out), "bad answer %r" % r)
        peak = h.vm_hwm_kib()
        r = h.request(get_req(4, action(2)))
        check(r.get("Size") == size and r.get("OutputID") == b64(out), "bad get %r" % r)
        digest = hashlib.sha256()
        with open(r["DiskPath"], "rb") as f:
            for c in iter(lambda: f.read(MIB), b""):
                digest.update(c)
        check(digest.digest() == out, "file at DiskPath differs from the body")
        h.close_and_finish(5)
        grow = (peak - base) / 1024.0
        print("    64 MiB put: %.2f s; VmHWM %.1f MiB before, %.1f MiB after (+%.1f MiB)"
              % (secs, base / 1024.0, peak / 1024.0, grow))
        check(grow < 32, "peak RSS grew by %.1f MiB during a 64 MiB put" % grow)
    finally:
        h.kill()


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]


def main():
    names = sys.argv[1:]
    failed = []
    ran = 0
    for t in TESTS:
        if names and t.__name__ not in names:
            continue
        ran += 1
        d = tempfile.mkdtemp(prefix="acache-gcp-")
        start = time.monotonic()
        try:
            t(d)
            print("ok   %s (%.2f s)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            failed.append(t.__name__)
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
            if not isinstance(e, Failure):
                traceback.print_exc()
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print("%d tests, %d failed%s" % (ran, len(failed), (": " + " ".join(failed)) if failed else ""))
    return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
