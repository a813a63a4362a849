#!/usr/bin/env python3
"""s3_proxy.py - a forwarding proxy in front of an S3 test server (s3rver)
that checks what s3rver does not: every request's AWS Signature Version 4,
recomputed with botocore's own signer (Debian's python3-botocore) from the
known test credentials, so that a wrong key, secret, token or region fails
here as it would on AWS, with the same status and S3 XML error.

    s3_proxy.py --port P --upstream UPORT --keys KEYS.json --region R
                [--wrong-region 400|301] [--anonymous-read] [--hang]
                --log REQUESTS.jsonl

KEYS.json: {"ACCESS_KEY_ID": {"secret": "...", "token": "..." or null}, ...}

Checks, in order (the first that fails answers):
  no Authorization header    403 AccessDenied (with --anonymous-read, GET
                             and HEAD pass unsigned, as on a public bucket)
  unknown access key id      403 InvalidAccessKeyId
  region of the scope        400 AuthorizationHeaderMalformed naming the
                             right region (--wrong-region 301: 301
                             PermanentRedirect), both with x-amz-bucket-region
  session token              403 InvalidToken when the key has one and the
                             request does not carry it, signed
  signature                  403 SignatureDoesNotMatch
  x-amz-content-sha256       400 XAmzContentSHA256Mismatch when it is not
                             UNSIGNED-PAYLOAD and not the body's SHA-256
  date                       403 RequestTimeTooSkewed beyond 15 minutes

A request that passes is forwarded to s3rver without its credentials (s3rver
takes anonymous requests), virtual-hosted names (BUCKET.localhost) turned
into path style. Every request is logged as one JSON line: method, path,
access key id, whether x-amz-content-sha256 was a real hash, the status,
and the client's port (one per connection: reuse shows).

--hang: read each request, then never answer (a server that hangs).

It never listens beyond 127.0.0.1 and exits when its parent dies
(PR_SET_PDEATHSIG is set by whoever starts it).
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import re
import socketserver
import sys
import threading
import uuid

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH_RE = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
                     r"\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$")
MAX_SKEW = datetime.timedelta(minutes=15)
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade",
               "proxy-connection", "authorization", "x-amz-security-token"}


class S3Error(Exception):
    def __init__(self, status, code, message, extra=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra = extra or {}
        self.headers = headers or {}


def error_xml(err):
    fields = "".join("<%s>%s</%s>" % (k, v, k) for k, v in err.extra.items())
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '%s<RequestId>%s</RequestId></Error>' % (err.code, err.message, fields,
                                                     uuid.uuid4().hex[:16])).encode()


class Verifier:
    def __init__(self, keys, region, wrong_region_status, anonymous_read):
        self.keys = keys
        self.region = region
        self.wrong_region_status = wrong_region_status
        self.anonymous_read = anonymous_read

    def region_error(self):
        h = {"x-amz-bucket-region": self.region}
        if self.wrong_region_status == 301:
            return S3Error(301, "PermanentRedirect", "The bucket you are attempting to access "
                           "must be addressed using the specified endpoint.",
                           {"Region": self.region}, h)
        return S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is "
                       "malformed; the region is wrong; expecting '%s'" % self.region,
                       {"Region": self.region}, h)

    def check(self, method, raw_path, headers, body):
        """Returns the access key id, or raises S3Error."""
        auth = headers.get("authorization")
        if auth is None:
            if self.anonymous_read and method in ("GET", "HEAD"):
                return None
            raise S3Error(403, "AccessDenied", "Access Denied")
        m = AUTH_RE.match(auth.strip())
        if not m:
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is "
                          "malformed")
        akid, day, region, service, signed, sig = m.groups()
        if akid not in self.keys:
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does "
                          "not exist in our records.")
        if region != self.region:
            raise self.region_error()
        if service != "s3":
            raise S3Error(400, "AuthorizationHeaderMalformed", "service must be s3")
        names = signed.split(";")
        if "host" not in names or "x-amz-date" not in names:
            raise S3Error(403, "AccessDenied", "host and x-amz-date must be signed")
        key = self.keys[akid]
        token = key.get("token")
        if token and (headers.get("x-amz-security-token") != token or
                      "x-amz-security-token" not in names):
            raise S3Error(403, "InvalidToken", "The provided token is malformed or otherwise "
                          "invalid.")
        stamp = headers.get("x-amz-date", "")
        try:
            when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
        except ValueError:
            raise S3Error(403, "AccessDenied", "bad x-amz-date")
        if stamp[:8] != day:
            raise S3Error(403, "SignatureDoesNotMatch", "date of the scope is not x-amz-date")
        if abs(datetime.datetime.utcnow() - when) > MAX_SKEW:
            raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request "
                          "time and the current time is too large.")
        want = self.signature(method, raw_path, headers, names, stamp, akid, key)
        if not hmac.compare_digest(want, sig):
            raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated "
                          "does not match the signature you provided. Check your key and "
                          "signing method.")
        claimed = headers.get("x-amz-content-sha256")
        if claimed is None:
            raise S3Error(400, "InvalidRequest", "Missing required header for this request: "
                          "x-amz-content-sha256")
        if claimed != "UNSIGNED-PAYLOAD" and claimed != hashlib.sha256(body).hexdigest():
            raise S3Error(400, "XAmzContentSHA256Mismatch", "The provided "
                          "'x-amz-content-sha256' header does not match what was computed.")
        return akid

    def signature(self, method, raw_path, headers, names, stamp, akid, key):
        """The signature botocore computes for the signed headers as sent."""
        signed = {n: headers.get(n, "") for n in names}
        req = AWSRequest(method=method, url="http://%s%s" % (headers.get("host"), raw_path),
                         headers=signed)
        req.context["timestamp"] = stamp
        signer = S3SigV4Auth(Credentials(akid, key["secret"], key.get("token")), "s3",
                             self.region)
        canonical = signer.canonical_request(req)
        return signer.signature(signer.string_to_sign(req, canonical), req)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "acache-s3-proxy"

    def log_message(self, fmt, *args):
        pass

    def _upstream(self):
        local = self.server.local
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=60)
        return local.conn

    def _record(self, akid, status, claimed):
        line = json.dumps({"method": self.command, "path": self.path, "akid": akid,
                           "status": status, "conn": self.client_address[1],
                           "hashed": bool(claimed) and claimed != "UNSIGNED-PAYLOAD"})
        with self.server.log_lock:
            with open(self.server.log, "a") as f:
                f.write(line + "\n")

    def _answer(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, headers, body):
        host = headers.get("host", "")
        path = self.path
        bucket = host.split(":")[0]
        if bucket.endswith(".localhost"):   # virtual-hosted: BUCKET.localhost
            path = "/" + bucket[:-len(".localhost")] + path
        out = {k: v for k, v in headers.items() if k not in HOP_HEADERS}
        out["host"] = "127.0.0.1:%d" % self.server.upstream
        for attempt in (0, 1):
            conn = self._upstream()
            try:
                conn.request(self.command, path, body=body if body else None, headers=out)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            except (OSError, http.client.HTTPException):
                conn.close()
                self.server.local.conn = None
                if attempt:
                    raise

    def _handle(self):
        headers = {k.lower(): v for k, v in self.headers.items()}
        n = int(headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.server.hang:
            self.server.stop.wait()
            self.close_connection = True
            return
        claimed = headers.get("x-amz-content-sha256")
        try:
            akid = self.server.verifier.check(self.command, self.path, headers, body)
        except S3Error as e:
            xml = error_xml(e)
            hs = [("Content-Type", "application/xml"), ("Content-Length", str(len(xml)))]
            hs += list(e.headers.items())
            self._record(None, e.status, claimed)
            self._answer(e.status, hs, xml)
            return
        status, hs, data = self._forward(headers, body)
        keep = [(k, v) for k, v in hs if k.lower() not in ("connection", "keep-alive", "date",
                                                           "transfer-encoding", "content-length")]
        # A HEAD's Content-Length is the object's, not this (empty) body's.
        keep.append(("Content-Length", dict((k.lower(), v) for k, v in hs).get(
            "content-length", "0") if self.command == "HEAD" else str(len(data))))
        self._record(akid, status, claimed)
        self._answer(status, keep, data)

    do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = _handle


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog (5) drops the SYNs of a burst of parallel clients,
    # which then wait a second to retry: a client with a 1s timeout fails.
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--wrong-region", type=int, choices=(301, 400), default=400)
    ap.add_argument("--anonymous-read", action="store_true")
    ap.add_argument("--hang", action="store_true")
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    with open(a.keys) as f:
        keys = json.load(f)
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.verifier = Verifier(keys, a.region, a.wrong_region, a.anonymous_read)
    srv.upstream = a.upstream
    srv.local = threading.local()
    srv.log = a.log
    srv.log_lock = threading.Lock()
    srv.hang = a.hang
    srv.stop = threading.Event()
    print("listening", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.stop.set()


if __name__ == "__main__":
    sys.exit(main())
