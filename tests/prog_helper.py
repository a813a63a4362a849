#!/usr/bin/env python3
"""prog_helper.py - a GOCACHEPROG helper that misbehaves on request, for the
tests of the prog: backend (test_prog.c). Standard library only.

Usage: prog_helper.py MODE DIR

DIR holds its store (a-<action hex> index files, o-<output hex> objects) and
requests.log, one line per request received ("get", "put", "close").

Modes:
  ok                    a correct helper
  get-only, put-only    KnownCommands without put / without get
  exit-early            exits with status 3 before the handshake
  garbage-first         prints a line that is not the handshake
  silent-start          says nothing at all
  exit-after-handshake  exits with status 4 on the first request
  garbage               answers the first request with a non-JSON line
  silent                reads requests and never answers them
  unknown-id            answers with an ID nobody asked
  reverse               holds answers to gets until 4 are due, then sends
                        them last first
  wrong-size            hits whose Size is not the file's size
  wrong-hash            hits whose file does not hash to the OutputID
  no-close              answers everything but close, and never exits
"""
import base64
import datetime
import hashlib
import json
import os
import sys
import time

mode, store = sys.argv[1], sys.argv[2]
log = open(os.path.join(store, "requests.log"), "a")
out = sys.stdout


def send(obj):
    out.write(json.dumps(obj) + "\n")
    out.flush()


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


if mode == "exit-early":
    sys.exit(3)
if mode == "garbage-first":
    out.write("hello, I am not a cache\n")
    out.flush()
    time.sleep(60)
    sys.exit(0)
if mode == "silent-start":
    time.sleep(60)
    sys.exit(0)

known = {"get-only": ["get", "close"], "put-only": ["put", "close"]}.get(
    mode, ["get", "put", "close"])
send({"ID": 0, "KnownCommands": known})

inp = sys.stdin.buffer


def read_nonblank():
    while True:
        line = inp.readline()
        if not line:
            return None
        if line.strip():
            return line


held = []
while True:
    line = read_nonblank()
    if line is None:
        break
    req = json.loads(line)
    cmd, rid = req["Command"], req["ID"]
    log.write(cmd + "\n")
    log.flush()
    body = b""
    if cmd == "put" and req.get("BodySize", 0) > 0:
        body = base64.b64decode(json.loads(read_nonblank()))
    if mode == "exit-after-handshake":
        sys.exit(4)
    if mode == "garbage":
        out.write("panic: something went wrong\n")
        out.flush()
        continue
    if mode == "silent" or (mode == "no-close" and cmd == "close"):
        continue
    if mode == "unknown-id":
        send({"ID": rid + 1000, "Miss": True})
        continue
    if cmd == "close":
        send({"ID": rid})
        continue
    if cmd == "put":
        oid = base64.b64decode(req["OutputID"])
        if hashlib.sha256(body).digest() != oid or len(body) != req.get("BodySize", 0):
            send({"ID": rid, "Err": "body does not match"})
            continue
        path = os.path.join(store, "o-" + oid.hex())
        with open(path, "wb") as f:
            f.write(body)
        act = base64.b64decode(req["ActionID"]).hex()
        with open(os.path.join(store, "a-" + act), "w") as f:
            json.dump({"OutputID": req["OutputID"], "Size": len(body)}, f)
        send({"ID": rid, "OutputID": req["OutputID"], "Size": len(body),
              "DiskPath": path, "Time": now()})
        continue
    # get
    act = base64.b64decode(req["ActionID"]).hex()
    try:
        with open(os.path.join(store, "a-" + act)) as f:
            entry = json.load(f)
    except FileNotFoundError:
        resp = {"ID": rid, "Miss": True}
    else:
        oid = base64.b64decode(entry["OutputID"])
        path = os.path.join(store, "o-" + oid.hex())
        size = entry["Size"]
        if mode == "wrong-size":
            size += 1
        if mode == "wrong-hash":
            with open(path, "rb") as f:
                data = bytearray(f.read())
            data[0] ^= 1
            path = os.path.join(store, "bad-" + oid.hex())
            with open(path, "wb") as f:
                f.write(bytes(data))
        resp = {"ID": rid, "OutputID": entry["OutputID"], "Size": size,
                "DiskPath": path, "Time": now()}
    if mode == "reverse":
        held.append(resp)
        if len(held) == 4:
            for r in reversed(held):
                send(r)
            held = []
        continue
    send(resp)

if mode == "no-close":
    time.sleep(60)
