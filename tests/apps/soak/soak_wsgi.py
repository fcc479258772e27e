"""A WSGI app for bench/soak.py: one path per way a response can cross the
bridge (and fail), plus /stats, which reports what would grow if the server
leaked: Python memory blocks and objects, threads, and response iterables
that were opened but never closed (PEP 3333: the server must call close()).
"""

import gc
import hashlib
import json
import sys
import tempfile
import threading

KIB = 1024
BIG = b"b" * (1024 * KIB)
_file = tempfile.NamedTemporaryFile(prefix="soak-", suffix=".bin")  # removed at exit
_file.write(b"f" * (256 * KIB))
_file.flush()

_lock = threading.Lock()
_open = 0  # iterables returned and not yet closed


class Counted:
    """A response iterable that counts itself until the server closes it."""

    def __init__(self, chunks, fail_after=None):
        global _open
        self.chunks, self.fail_after = chunks, fail_after
        with _lock:
            _open += 1

    def __iter__(self):
        for i, c in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("soak: failing mid-stream on purpose")
            yield c

    def close(self):
        global _open
        with _lock:
            _open -= 1


def _text(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _read_all(environ):
    stream = environ["wsgi.input"]
    h = hashlib.sha256()
    n = 0
    while True:
        data = stream.read(64 * KIB)
        if not data:
            break
        h.update(data)
        n += len(data)
    return n, h.hexdigest()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hello":
        return _text(start_response, b"Hello, world!")
    if path == "/echo":
        n, digest = _read_all(environ)
        return _text(start_response, ("%d %s" % (n, digest)).encode())
    if path == "/lines":
        stream = environ["wsgi.input"]
        lines = sum(1 for _ in iter(stream.readline, b""))
        return _text(start_response, str(lines).encode())
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted([b"s" * KIB] * 100)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(10):
            write(b"w" * (4 * KIB))
        return Counted([b"tail"])
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(_file.name, "rb"), 64 * KIB)
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))])
        return Counted([BIG])
    if path == "/raise":
        raise RuntimeError("soak: failing on purpose")
    if path == "/raise-mid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted([b"x" * KIB] * 10, fail_after=3)
    if path == "/garbage":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return 42
    if path == "/stats":
        gc.collect()
        with _lock:
            opened = _open
        body = json.dumps({
            "blocks": sys.getallocatedblocks(),
            "objects": len(gc.get_objects()),
            "threads": threading.active_count(),
            "open_iterables": opened,
        }).encode()
        return _text(start_response, body)
    return _text(start_response, b"not found", "404 Not Found")

