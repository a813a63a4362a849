#!/usr/bin/env python3
"""remote_servers.py - the remote servers acache's tests and benchmarks run
against, started on 127.0.0.1 with free ports, with configurations written to
a temp directory, and always stopped.

Kinds of server:
  redis      redis-server (also on a unix socket), no persistence
  redisauth  redis-server that wants the password "acache-test-pw"
  nginx      nginx with WebDAV PUT/DELETE: a bazel-remote layout under /cache;
             /readonly/ refuses PUT (405), /broken/ answers 500
  hang       a listener that accepts connections and never answers
  closer     a listener that reads a little of each connection, answers ":0"
             (Redis for "not there"), reads a little more and closes it: a
             client still writing gets EPIPE (SIGPIPE, unless it guards)
  dead       a port nothing listens on
  s3         s3rver (npm, version S3RVER_VERSION, installed on first use into
             a cache directory) behind s3_proxy.py, which checks every
             request's SigV4 signature with botocore against TEST_KEYS for
             region us-east-1; buckets acache-test and acache-public
  s3-eu      the same s3rver, through a proxy that wants region eu-west-1:
             400 AuthorizationHeaderMalformed naming it
  s3-moved   the same, answering 301 PermanentRedirect instead
  s3-public  the same, unsigned GET and HEAD allowed (a public bucket)
  s3-hang    a proxy that reads each request and never answers
  dribble    a fake Redis that answers every connection's first command
             with a 30-byte value, one byte every 0.5 s (15 s and more)
  flood      a fake Redis that answers every connection's first command
             with a bulk header of 1 TiB and then streams bytes, up to
             64 MiB, for as long as the client reads
The s3 proxies log every request (s3_requests(kind) reads the log).

As a module:
    with Servers(workdir, ["redis", "nginx"]) as srv:
        srv.spec("redis", "timeout=2s")  ->  "redis://127.0.0.1:PORT/0?timeout=2s"
        srv.kill("redis")
        redis_command(srv.port("redis"), "DBSIZE")

As a command (for the C tests, which drive it over a pipe):
    remote_servers.py serve DIR KIND...
prints "KIND key=value ..." for each server, then "ready"; then reads commands
on stdin, one per line: "kill KIND" (answers "ok"); "report KIND" (dribble,
flood: waits, at most 30 s, for a connection to end and answers
"report sent=BYTES of=TOTAL cut=0|1", cut meaning that the client hung up
before the reply was whole, or "report none"); "stop" or end of input
stops everything and exits. The servers also die with this process
(PR_SET_PDEATHSIG), so a test that crashes leaves nothing running.

Never touches anything outside its directory; never waits without a bound.
"""
import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

START_TIMEOUT = 15.0
REDIS_PASSWORD = "acache-test-pw"
S3RVER_VERSION = "3.7.1"
NPM_TIMEOUT = 300
S3_BUCKETS = ("acache-test", "acache-public")
# The credentials the s3 proxies accept: access key id -> secret (and
# session token). Secrets hold '/' and '+', as real ones do.
TEST_KEYS = {
    "AKIDACACHETEST0000001": {"secret": "acache/test+secret/0001", "token": None},
    "AKIDACACHEPROFILE0002": {"secret": "acache/profile+secret/02", "token": None},
    "ASIAACACHESESSION0003": {"secret": "acache/session+secret/03",
                              "token": "acache-session-token/+=0003"},
}
# The key the drivers' S3 builds sign with (one of TEST_KEYS).
S3_KEY = "AKIDACACHETEST0000001"


def s3_env(secret=None):
    """The AWS environment of a client of the test s3 server: S3_KEY with
    its secret (or `secret`, to test a wrong one), nothing of the
    machine's (its files, profile, region)."""
    return {"AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": secret or TEST_KEYS[S3_KEY]["secret"],
            "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_REGION": "",
            "AWS_DEFAULT_REGION": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
            "AWS_CONFIG_FILE": "/nonexistent/config"}


S3_PROXIES = {  # kind -> s3_proxy.py options
    "s3": ["--region", "us-east-1"],
    "s3-eu": ["--region", "eu-west-1"],
    "s3-moved": ["--region", "eu-west-1", "--wrong-region", "301"],
    "s3-public": ["--region", "us-east-1", "--anonymous-read"],
    "s3-hang": ["--region", "us-east-1", "--hang"],
}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: the server gets SIGKILL when this process ends.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


# ---------------------------------------------------------------- RESP
def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError("redis error: " + rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError("bad RESP reply: %r" % line)


def redis_command(port, *args, password=None, timeout=5.0):
    """Runs one command on the redis at 127.0.0.1:port and returns its reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        if password:
            s.sendall(_resp_encode(["AUTH", password]))
            _resp_read(f)
        s.sendall(_resp_encode(list(args)))
        return _resp_read(f)


# ---------------------------------------------------------------- S3
def test_cache_dir():
    """Where the suite keeps what it installs: $ACACHE_TEST_CACHE, else
    $XDG_CACHE_HOME/acache-tests, else ~/.cache/acache-tests."""
    d = os.environ.get("ACACHE_TEST_CACHE")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "acache-tests")
    os.makedirs(d, exist_ok=True)
    return d


def s3rver_bin():
    """The s3rver command, installed from the npm registry (pinned version)
    into the test cache on first use; one installer at a time."""
    prefix = os.path.join(test_cache_dir(), "s3rver-" + S3RVER_VERSION)
    exe = os.path.join(prefix, "node_modules", ".bin", "s3rver")
    if os.path.exists(exe):
        return exe
    os.makedirs(prefix, exist_ok=True)
    with open(os.path.join(prefix, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(exe):
            for tool in ("node", "npm"):
                if not shutil_which(tool):
                    raise RuntimeError("%s is required for the S3 tests "
                                       "(scripts/install-deps.sh)" % tool)
            r = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                                "--omit=dev", "s3rver@" + S3RVER_VERSION],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=NPM_TIMEOUT)
            if r.returncode != 0 or not os.path.exists(exe):
                raise RuntimeError("npm install s3rver@%s failed:\n%s%s" %
                                   (S3RVER_VERSION, r.stdout[-2000:], r.stderr[-2000:]))
    return exe


def shutil_which(tool):
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and os.access(os.path.join(d, tool), os.X_OK):
            return os.path.join(d, tool)
    return None


def botocore_python():
    """A python that has botocore: Debian's (python3-botocore) first."""
    for py in ("/usr/bin/python3", sys.executable):
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import botocore.auth"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0:
            return py
    raise RuntimeError("the S3 tests need botocore (Debian: python3-botocore; "
                       "scripts/install-deps.sh)")


def _http_up(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        return s.recv(16).startswith(b"HTTP/")


# ---------------------------------------------------------------- servers
class Listener:
    """A TCP listener on 127.0.0.1, on a free port, whose thread hands each
    connection it accepts to self.on_conn (the subclass's). A subclass
    sets what on_conn uses before calling this __init__, which starts the
    thread; stop() ends the thread and closes the listening socket (a
    subclass closes the connections it kept after that)."""

    def __init__(self, backlog):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.on_conn(conn)

    def on_conn(self, conn):
        raise NotImplementedError

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=2)
        self.sock.close()


class _Hang(Listener):
    """Accepts connections and holds them, never sending a byte; with
    close_after_read, reads a little of each and closes it instead."""

    def __init__(self, close_after_read=False):
        self.close_after_read = close_after_read
        self.held = []
        super().__init__(128)

    def on_conn(self, conn):
        if not self.close_after_read:
            self.held.append(conn)
            return
        try:
            # Say "0" (a Redis EXISTS: not there), so that the client
            # goes on to write a value, then stop reading it.
            conn.settimeout(1)
            conn.recv(1024)
            conn.sendall(b":0\r\n")
            conn.recv(1024)
        except OSError:
            pass
        conn.close()

    def stop(self):
        super().stop()
        for c in self.held:
            c.close()


class _Scripted(Listener):
    """A fake Redis server that reads whatever a connection sends first and
    answers it with a scripted reply: "dribble" sends a 30-byte value one
    byte every 0.5 s; "flood" sends a bulk header of 1 TiB and then as many
    bytes as the client takes, up to 64 MiB. Each connection that ends is
    recorded: the bytes sent, and whether the client hung up first."""

    DRIBBLE = b":1\r\n$30\r\n" + b"d" * 30 + b"\r\n"
    FLOOD_CAP = 64 << 20

    def __init__(self, mode):
        self.mode = mode
        self.ended = []
        self.cv = threading.Condition()
        super().__init__(16)

    def on_conn(self, conn):
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _peer_closed(conn):
        """True once the client has closed its end (reads what it sent)."""
        while True:
            r, _, _ = select.select([conn], [], [], 0)
            if not r:
                return False
            try:
                if not conn.recv(65536):
                    return True
            except OSError:
                return True

    def _dribble(self, conn):
        sent = 0
        for i in range(len(self.DRIBBLE)):
            if self.stopping or self._peer_closed(conn):
                return sent, len(self.DRIBBLE), True
            try:
                conn.sendall(self.DRIBBLE[i:i + 1])
            except OSError:
                return sent, len(self.DRIBBLE), True
            sent += 1
            time.sleep(0.5)
        return sent, len(self.DRIBBLE), False

    def _flood(self, conn):
        head = b":1\r\n$%d\r\n" % (1 << 40)
        chunk = b"f" * 65536
        sent = 0
        conn.settimeout(10)
        try:
            conn.sendall(head)
            while sent < self.FLOOD_CAP and not self.stopping:
                conn.sendall(chunk)
                sent += len(chunk)
        except OSError:
            return sent, self.FLOOD_CAP, True
        # All sent: hold the connection until the client hangs up.
        deadline = time.monotonic() + 30
        while not self.stopping and time.monotonic() < deadline and not self._peer_closed(conn):
            time.sleep(0.05)
        return sent, self.FLOOD_CAP, False

    def _serve(self, conn):
        try:
            conn.settimeout(10)
            first = conn.recv(65536)
            conn.settimeout(None)
            if not first:
                return
            result = self._dribble(conn) if self.mode == "dribble" else self._flood(conn)
        except OSError:
            result = (0, 0, True)
        finally:
            conn.close()
        with self.cv:
            self.ended.append(result)
            self.cv.notify_all()

    def report(self):
        """The first connection that ended and was not reported yet."""
        with self.cv:
            self.cv.wait_for(lambda: self.ended, timeout=30)
            if not self.ended:
                return "report none"
            sent, total, cut = self.ended.pop(0)
            return "report sent=%d of=%d cut=%d" % (sent, total, 1 if cut else 0)

def _wait_until(check, what, proc=None, log=None):
    deadline = time.monotonic() + START_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if check():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.05)
    detail = ""
    if log and os.path.exists(log):
        with open(log, errors="replace") as f:
            detail = "\n" + f.read()[-2000:]
    raise RuntimeError("%s did not start within %.0fs (%s)%s" % (what, START_TIMEOUT, last, detail))


class Servers:
    """Starts the servers named in kinds under workdir; stop() (or leaving a
    with block) stops them all."""

    def __init__(self, workdir, kinds):
        self.dir = os.path.abspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.procs = {}
        self.info = {}
        self.listeners = {}
        try:
            for k in kinds:
                if k in S3_PROXIES and k != "s3":
                    self._start_s3_proxy(k)
                else:
                    getattr(self, "_start_" + k)()
        except BaseException:
            self.stop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def port(self, kind):
        return self.info[kind]["port"]

    def spec(self, kind, options=""):
        """A store spec for kind, with options ("a=b&c=d") appended."""
        i = self.info[kind]
        if kind == "redis":
            base = "redis://127.0.0.1:%d/0" % i["port"]
        elif kind == "redisauth":
            base = "redis://:%s@127.0.0.1:%d/0" % (REDIS_PASSWORD, i["port"])
        elif kind == "redis-unix":
            base = "redis+unix://%s" % self.info["redis"]["sock"]
        elif kind == "nginx":
            base = "http://127.0.0.1:%d/cache" % i["port"]
        elif kind.startswith("s3"):
            base = "s3://%s?endpoint=http://127.0.0.1:%d" % (
                "acache-public" if kind == "s3-public" else "acache-test", i["port"])
            return base + ("&" + options if options else "")
        else:  # hang, closer, dribble, flood, dead: spoken to as Redis
            base = "redis://127.0.0.1:%d/0" % i["port"]
        return base + ("?" + options if options else "")

    def _spawn(self, kind, argv, log):
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 preexec_fn=_die_with_parent, close_fds=True)
        self.procs[kind] = p
        return p

    def _start_redis(self, kind="redis", password=None):
        d = os.path.join(self.dir, kind)
        os.makedirs(d, exist_ok=True)
        log = os.path.join(d, "redis.log")
        for attempt in range(3):
            port = free_port()
            sock = os.path.join(d, "redis.sock")
            argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", d, "--daemonize", "no",
                    "--protected-mode", "no", "--unixsocket", sock, "--unixsocketperm", "700",
                    "--maxclients", "1000", "--logfile", log]
            if password:
                argv += ["--requirepass", password]
            p = self._spawn(kind, argv, log)
            try:
                _wait_until(lambda: redis_command(port, "PING", password=password,
                                                  timeout=1) == "PONG",
                            "redis-server", p, log)
            except RuntimeError:
                self._kill(kind)
                if attempt == 2:
                    raise
                continue
            self.info[kind] = {"port": port, "sock": sock, "pid": p.pid}
            return

    def _start_redisauth(self):
        self._start_redis("redisauth", REDIS_PASSWORD)

    def _start_nginx(self):
        d = os.path.join(self.dir, "nginx")
        root = os.path.join(d, "root")
        for sub in ("root/cache", "root/readonly", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        log = os.path.join(d, "error.log")
        for attempt in range(3):
            port = free_port()
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF % {"dir": d, "root": root, "port": port})
            p = self._spawn("nginx", ["nginx", "-p", d + "/", "-c", conf, "-e", log], log)

            def up():
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                    return s.recv(16).startswith(b"HTTP/")
            try:
                _wait_until(up, "nginx", p, log)
            except RuntimeError:
                self._kill("nginx")
                if attempt == 2:
                    raise
                continue
            self.info["nginx"] = {"port": port, "root": root, "pid": p.pid}
            return

    def _start_s3rver(self):
        if "s3rver" in self.info:
            return
        exe = s3rver_bin()
        d = os.path.join(self.dir, "s3rver")
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        log = os.path.join(d, "s3rver.log")
        for attempt in range(3):
            port = free_port()
            argv = [exe, "-d", os.path.join(d, "data"), "-a", "127.0.0.1", "-p", str(port), "-s"]
            for b in S3_BUCKETS:
                argv += ["--configure-bucket", b]
            p = self._spawn("s3rver", argv, log)
            try:
                _wait_until(lambda: _http_up(port), "s3rver", p, log)
            except RuntimeError:
                self._kill("s3rver")
                if attempt == 2:
                    raise
                continue
            self.info["s3rver"] = {"port": port, "data": os.path.join(d, "data"), "pid": p.pid}
            return

    def _start_s3_proxy(self, kind):
        self._start_s3rver()
        d = os.path.join(self.dir, kind)
        os.makedirs(d, exist_ok=True)
        keys = os.path.join(d, "keys.json")
        with open(keys, "w") as f:
            json.dump(TEST_KEYS, f)
        log = os.path.join(d, "proxy.log")
        requests = os.path.join(d, "requests.jsonl")
        py = botocore_python()
        for attempt in range(3):
            port = free_port()
            argv = [py, os.path.join(os.path.dirname(os.path.abspath(__file__)), "s3_proxy.py"),
                    "--port", str(port), "--upstream", str(self.info["s3rver"]["port"]),
                    "--keys", keys, "--log", requests] + S3_PROXIES[kind]
            p = self._spawn(kind, argv, log)
            up = (lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close()
                  or True) if kind == "s3-hang" else (lambda: _http_up(port))
            try:
                _wait_until(up, "s3 proxy", p, log)
            except RuntimeError:
                self._kill(kind)
                if attempt == 2:
                    raise
                continue
            self.info[kind] = {"port": port, "requests": requests, "pid": p.pid,
                               "data": self.info["s3rver"]["data"],
                               "upstream": self.info["s3rver"]["port"]}
            return

    def _start_s3(self):
        self._start_s3_proxy("s3")

    def s3_requests(self, kind="s3"):
        """The requests the proxy of kind has seen so far, as dicts."""
        path = self.info[kind]["requests"]
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]

    def s3_object_path(self, key, bucket="acache-test"):
        """Where s3rver keeps the bytes of bucket/key."""
        return os.path.join(self.info["s3rver"]["data"], bucket, key + "._S3rver_object")

    def _start_hang(self):
        self.listeners["hang"] = _Hang()
        self.info["hang"] = {"port": self.listeners["hang"].port}

    def _start_closer(self):
        self.listeners["closer"] = _Hang(close_after_read=True)
        self.info["closer"] = {"port": self.listeners["closer"].port}

    def _start_dribble(self):
        self.listeners["dribble"] = _Scripted("dribble")
        self.info["dribble"] = {"port": self.listeners["dribble"].port}

    def _start_flood(self):
        self.listeners["flood"] = _Scripted("flood")
        self.info["flood"] = {"port": self.listeners["flood"].port}

    def _start_dead(self):
        self.info["dead"] = {"port": free_port()}

    def _kill(self, kind):
        p = self.procs.pop(kind, None)
        if p is not None and p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def kill(self, kind):
        """Kills a server at once (SIGKILL), as a crash would."""
        if kind in self.listeners:
            self.listeners.pop(kind).stop()
        else:
            self._kill(kind)

    def stop(self):
        for kind in list(self.procs):
            self._kill(kind)
        for kind in list(self.listeners):
            self.listeners.pop(kind).stop()


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    keepalive_requests 1000000;
    # As Debian's own nginx.conf has it: files go out without a copy
    # through nginx's memory.
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
        client_max_body_size 0;
        location /cache/ {
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
        }
        location /readonly/ { }
        location /broken/ { return 500; }
    }
}
"""


def serve(argv):
    """The command mode: see the module's text."""
    if len(argv) < 2:
        sys.exit("usage: remote_servers.py serve DIR KIND...")
    srv = Servers(argv[0], argv[1:])
    try:
        for kind in argv[1:]:
            fields = " ".join("%s=%s" % kv for kv in sorted(srv.info[kind].items()))
            print(kind, fields, flush=True)
        print("ready", flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "stop":
                break
            if words[0] == "kill" and len(words) == 2:
                srv.kill(words[1])
                print("ok", flush=True)
            elif words[0] == "report" and len(words) == 2 and words[1] in srv.listeners:
                print(srv.listeners[words[1]].report(), flush=True)
            else:
                print("unknown command", flush=True)
    finally:
        srv.stop()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
        serve(sys.argv[2:])
    else:
        sys.exit(__doc__)
