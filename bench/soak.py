"""Soak: one Caddy serving a raw WSGI app, a raw ASGI app, Flask, FastAPI and
Django at once under a mixed load for several rounds, watching for what a
leak would grow.

    bench/.venv/bin/python bench/soak.py [--rounds 6] [--duration 30] [--conns 32]

Each round runs wrk over a mix of normal requests (small and large bodies
each way, streams, write(), file_wrapper, pathsend, zero-copy chunks, JSON
posts through each framework) while side clients make the requests a server
must clean up after: apps that raise before and during their response or
return garbage, clients that leave mid-response or mid-upload, chunked
uploads, WebSocket sessions closed cleanly or dropped. After each round, with
the load stopped, it records the Caddy process's RSS, open fds and OS
threads, and each app's /stats: Python memory blocks and objects (after
gc.collect()), response iterables not closed, tasks, event feeds and
WebSockets still running.

The first round warms up (imports, pools, caches). It fails (exit 1) if
anything that must return to zero did not; if Python threads grew, or OS
threads or fds by more than 4; if Python objects, blocks or RSS grew from
the end of round 1 to the end of the last round by more than
--max-objects-growth / --max-blocks-growth / --max-rss-growth-mib; if wrk
saw errors or non-2xx answers; or if a side client got an answer it should
not.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench

KIB = 1024


# The two soak apps are also served by tests/test_leaks.py, which runs the
# side scenarios below (Side) for a short while as a regression test.
SOAK_APPS = bench.REPO / "tests" / "apps" / "soak"


def handle_blocks(routes, workdir: Path, venv: Path) -> str:
    """A handle_path block serving each (path matcher, wsgi|asgi, module:app)."""
    return "".join(f"\thandle_path {m} {{\n\t\tpython {{\n\t\t\tmodule_{k} \"{t}\"\n"
                   f"\t\t\tworking_dir \"{workdir}\"\n\t\t\tvenv \"{venv}\"\n\t\t}}\n\t}}\n"
                   for m, k, t in routes)


def soak_routes(venv: Path) -> str:
    """The blocks of the two soak apps: /w/ (WSGI) and /a/ (ASGI)."""
    return handle_blocks([("/w/*", "wsgi", "soak_wsgi:app"), ("/a/*", "asgi", "soak_asgi:app")], SOAK_APPS, venv)


def site(port: int) -> str:
    frameworks = [("/flask/*", "wsgi", "flask_hello:app"), ("/fastapi/*", "asgi", "fastapi_hello:app"),
                  ("/django/*", "wsgi", "django_wsgi:application")]
    return f":{port} {{\n{soak_routes(bench.VENV)}{handle_blocks(frameworks, bench.APPS, bench.VENV)}}}\n"


# --- the wrk mix -------------------------------------------------------------

OCTET, TEXT, JSON = "application/octet-stream", "text/plain", "application/json"
# The normal requests, each answered 2xx: (method, path, content type, body),
# a body given as (text, times repeated).
NORMAL = [
    ("GET", "/w/hello", None, None), ("POST", "/w/echo", OCTET, ("e", 8192)),
    ("POST", "/w/echo", OCTET, ("E", 200000)), ("POST", "/w/lines", TEXT, ("line\n", 800)),
    ("GET", "/w/stream", None, None), ("GET", "/w/write", None, None), ("GET", "/w/file", None, None),
    ("GET", "/w/big", None, None),
    ("GET", "/a/hello", None, None), ("POST", "/a/echo", OCTET, ("e", 8192)),
    ("POST", "/a/echo", OCTET, ("E", 200000)),
    ("GET", "/a/stream", None, None), ("GET", "/a/big", None, None), ("GET", "/a/pathsend", None, None),
    ("GET", "/flask/", None, None), ("POST", "/flask/items", JSON, (bench.JSON_BODY.decode(), 1)),
    ("GET", "/fastapi/", None, None), ("POST", "/fastapi/items", JSON, (bench.JSON_BODY.decode(), 1)),
    ("GET", "/django/", None, None),
]


def body_bytes(body) -> bytes:
    return b"" if body is None else body[0].encode() * body[1]


def mix_script(workdir: Path) -> Path:
    """A wrk script cycling through the NORMAL requests."""
    def lua(body) -> str:
        text, times = body
        return f"[[{text}]]" if times == 1 else f'string.rep("{text.encode("unicode_escape").decode()}", {times})'
    reqs = [(m, p, c, None if b is None else lua(b)) for m, p, c, b in NORMAL]
    # Built in init, where wrk.headers has the Host header wrk.format adds.
    lines = ["local reqs = {}", "init = function(args)"]
    for i, (method, path, ctype, body) in enumerate(reqs, 1):
        if body is None:
            lines.append(f'  reqs[{i}] = wrk.format("{method}", "{path}")')
        else:
            lines.append(f'  reqs[{i}] = wrk.format("{method}", "{path}", '
                         f'{{["Host"] = wrk.headers["Host"], ["Content-Type"] = "{ctype}"}}, {body})')
    lines += ["end",
              "local i = 0",
              "request = function()",
              "  i = i + 1",
              "  return reqs[(i % #reqs) + 1]",
              "end"]
    path = workdir / "soak_mix.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- side clients: the requests a server must clean up after -----------------

class Side:
    """Runs the cleanup scenarios in a loop until stopped, counting each
    scenario and every unexpected outcome."""

    def __init__(self, port: int, seed: int):
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.rand = random.Random(seed)
        self.done: dict = {}
        self.bad: list = []
        self.stop = threading.Event()

    def run(self) -> None:
        scenarios = [getattr(self, n) for n in dir(self) if n.startswith("s_")]
        while not self.stop.is_set():
            fn = self.rand.choice(scenarios)
            try:
                fn()
            except Exception as exc:  # an outcome the scenario did not allow
                self.bad.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")
            self.done[fn.__name__] = self.done.get(fn.__name__, 0) + 1

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def expect(self, method: str, path: str, statuses: tuple, body=None, chunked=False) -> bytes:
        c = self.conn()
        try:
            c.request(method, path, body=body, encode_chunked=chunked)
            r = c.getresponse()
            try:
                data = r.read()
            except (http.client.IncompleteRead, OSError):
                data = b""
                if r.status not in statuses:
                    raise
            if r.status not in statuses:
                raise AssertionError(f"{method} {path}: HTTP {r.status}, want {statuses}")
            return data
        finally:
            c.close()

    def raw(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    # apps that fail
    def s_raise(self):
        for p in ("/w/raise", "/a/raise", "/w/garbage", "/a/garbage"):
            self.expect("GET", p, (500,))

    def s_raise_mid(self):
        # The status line is out when the app fails: a cut-off 200.
        for p in ("/w/raise-mid", "/a/raise-mid"):
            self.expect("GET", p, (200,))

    # clients that leave
    def s_leave_mid_response(self):
        for p in ("/w/big", "/a/big", "/w/stream", "/a/stream", "/w/file", "/a/feed"):
            s = self.raw()
            s.sendall(f"GET {p} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
            head = s.recv(4096)
            s.close()
            if not head.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"GET {p}: {head[:40]!r}")

    def s_leave_mid_upload(self):
        for p in ("/w/echo", "/a/echo"):
            s = self.raw()
            s.sendall(f"POST {p} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {1024 * KIB}\r\n\r\n".encode())
            s.sendall(b"u" * (128 * KIB))
            time.sleep(0.01)
            s.close()

    def s_feed_disconnect(self):
        # An endless feed, read for a while, then dropped: the app must stop.
        s = self.raw()
        s.sendall(f"GET /a/feed HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        got = b""
        deadline = time.monotonic() + 0.1
        while time.monotonic() < deadline:
            data = s.recv(4096)
            if not data:
                raise AssertionError("the feed ended by itself")
            got += data
        s.close()
        if not got.startswith(b"HTTP/1.1 200") or b"data: tick" not in got:
            raise AssertionError(f"the feed answered {got[:80]!r}")

    def s_chunked_upload(self):
        data = os.urandom(300 * KIB)
        want = f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()

        def chunks():
            for i in range(0, len(data), 7000):
                yield data[i:i + 7000]
        for p in ("/w/echo", "/a/echo"):
            got = self.expect("POST", p, (200,), body=chunks(), chunked=True)
            if got != want:
                raise AssertionError(f"POST {p} chunked: {got[:80]!r}, want {want!r}")

    def s_websocket(self):
        from websockets.sync.client import connect
        with connect(f"ws://127.0.0.1:{self.port}/a/ws", open_timeout=10, close_timeout=5) as ws:
            for i in range(20):
                ws.send(f"text {i}")
                if ws.recv(timeout=10) != f"text {i}":
                    raise AssertionError("websocket text echo differs")
                blob = os.urandom(self.rand.choice((10, 5000, 70000)))
                ws.send(blob)
                if ws.recv(timeout=10) != blob:
                    raise AssertionError("websocket binary echo differs")

    def s_websocket_dropped(self):
        # Opened, one message each way, then the TCP connection just ends
        # (no close frame).
        s = self.raw()
        s.sendall(f"GET /a/ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            if not data:
                raise AssertionError("no WebSocket handshake answer")
            head += data
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"WebSocket handshake: {head[:40]!r}")
        mask = os.urandom(4)
        payload = b"hello"
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        if len(head.split(b"\r\n\r\n", 1)[1]) < 2:
            s.recv(4096)  # the echo
        s.close()


# --- measuring ---------------------------------------------------------------

def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def os_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def stats(port: int, prefix: str) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", f"{prefix}/stats")
    r = c.getresponse()
    doc = json.loads(r.read())
    c.close()
    return doc


def snapshot(port: int, pid: int) -> dict:
    time.sleep(1.0)  # let the last disconnects and closes land
    w, a = stats(port, "/w"), stats(port, "/a")
    return {"rss_mib": bench._vmrss_kib(pid) / 1024, "fds": fds(pid), "os_threads": os_threads(pid),
            "py_blocks": a["blocks"], "py_objects": a["objects"], "py_threads": w["threads"],
            "open_iterables": w["open_iterables"], "tasks": a["tasks"], "feeds": a["feeds"],
            "websockets": a["websockets"]}


COLS = ["rss_mib", "fds", "os_threads", "py_blocks", "py_objects", "py_threads", "open_iterables", "tasks",
        "feeds", "websockets"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caddy", type=Path, default=Path(os.environ.get("CADDY_BIN", bench.REPO / "caddy")))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=30, help="seconds of load per round")
    ap.add_argument("--conns", type=int, default=32, help="wrk connections")
    ap.add_argument("--side", type=int, default=2, help="side clients (cleanup scenarios) running at once")
    ap.add_argument("--max-rss-growth-mib", type=float, default=32.0,
                    help="RSS growth allowed after round 1 (it moves by ~15 MiB between rounds: Go heap, malloc arenas)")
    ap.add_argument("--max-objects-growth", type=int, default=500,
                    help="objects the GC tracks allowed to grow after round 1 (measured: none)")
    ap.add_argument("--max-blocks-growth", type=int, default=20000,
                    help="Python memory blocks (sys.getallocatedblocks) allowed to grow after round 1")
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error("--rounds must be at least 2 (the first one warms up)")

    with tempfile.TemporaryDirectory(prefix="cs-soak-") as tmp:
        work = Path(tmp)
        ctx = bench.Ctx(bench.snapshot_binary(args.caddy, work), work, work)
        script = mix_script(work)
        port = bench.free_port()
        proc = ctx.start_caddy("soak", site(port))
        rows, wrks, sides = [], [], []
        try:
            bench.wait_ready(port, [proc], path="/w/hello")
            rows.append(snapshot(port, proc.pid))
            for rnd in range(1, args.rounds + 1):
                round_sides = [Side(port, seed=rnd * 100 + i) for i in range(args.side)]
                threads = [threading.Thread(target=s.run, daemon=True) for s in round_sides]
                for t in threads:
                    t.start()
                res = bench.wrk(port, args.conns, args.duration, 2, script)
                for s in round_sides:
                    s.stop.set()
                for t in threads:
                    t.join(30)
                if not proc.alive():
                    print(f"caddy exited during round {rnd}:\n{proc.log_tail()}")
                    return 1
                wrks.append(res)
                sides.append(round_sides)
                rows.append(snapshot(port, proc.pid))
                r = rows[-1]
                print(f"round {rnd}: wrk {res['rps'] or 0:,.0f} req/s, errors {res['errors']}; side "
                      f"{sum(sum(s.done.values()) for s in round_sides)} scenarios, "
                      f"{sum(len(s.bad) for s in round_sides)} bad; " +
                      ", ".join(f"{k} {r[k]:.1f}" if k == "rss_mib" else f"{k} {r[k]}" for k in COLS), flush=True)
        finally:
            proc.stop()
        log = proc.log.read_text(errors="replace")
    return verdict(args, rows, wrks, sides, log)


def verdict(args, rows, wrks, sides, log: str) -> int:
    first, last = rows[1], rows[-1]  # after the warm-up round, after the last
    fails = []
    for k in ("open_iterables", "tasks", "feeds", "websockets"):
        if last[k] != 0:
            fails.append(f"{k} is {last[k]} with no load (want 0)")
    # A leak per request grows these by thousands; Go may start a thread or
    # two more as load shifts, and a connection may be closing at the snapshot.
    for k, slack in (("fds", 4), ("os_threads", 4), ("py_threads", 0)):
        if last[k] > first[k] + slack:
            fails.append(f"{k} grew {first[k]} -> {last[k]}")
    if last["py_objects"] - first["py_objects"] > args.max_objects_growth:
        fails.append(f"Python objects grew {first['py_objects']} -> {last['py_objects']}")
    if last["py_blocks"] - first["py_blocks"] > args.max_blocks_growth:
        fails.append(f"Python blocks grew {first['py_blocks']} -> {last['py_blocks']}")
    if last["rss_mib"] - first["rss_mib"] > args.max_rss_growth_mib:
        fails.append(f"RSS grew {first['rss_mib']:.1f} -> {last['rss_mib']:.1f} MiB")
    for i, w in enumerate(wrks, 1):
        if w["rps"] is None or w["errors"]:
            fails.append(f"round {i}: wrk errors {w.get('errors')} {w.get('raw', '')[:300]}")
    bad = [b for rs in sides for s in rs for b in s.bad]
    if bad:
        fails.append(f"{len(bad)} unexpected side outcomes, e.g. " + "; ".join(sorted(set(bad))[:5]))
    if "panic" in log or "fatal error" in log:
        fails.append("the Caddy log has a panic or a fatal error")
    done: dict = {}
    for rs in sides:
        for s in rs:
            for k, v in s.done.items():
                done[k] = done.get(k, 0) + v
    total = sum(w.get("requests") or 0 for w in wrks)
    print(f"\n{total:,} wrk requests and side scenarios " + ", ".join(f"{k[2:]} {v}" for k, v in sorted(done.items())))
    print(f"from the end of round 1 to the end of round {len(rows) - 1}: RSS {first['rss_mib']:.1f} -> "
          f"{last['rss_mib']:.1f} MiB, Python blocks {first['py_blocks']} -> {last['py_blocks']}, objects "
          f"{first['py_objects']} -> {last['py_objects']}, fds {first['fds']} -> {last['fds']}, OS threads "
          f"{first['os_threads']} -> {last['os_threads']}")
    for f in fails:
        print("FAIL:", f)
    print("PASS" if not fails else "FAILED")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
