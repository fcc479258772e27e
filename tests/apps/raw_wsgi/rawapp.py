"""A framework-free WSGI application exercising PEP 3333 corners.

Routing is on PATH_INFO.  Anything not listed in ROUTES echoes the environ
as JSON, so ``/env/<anything>`` shows how a path was decoded.

Events (close() calls, generator finalisation, ...) are appended to
``$CADDYSNAKE_TEST_STATE/events.log`` (or kept in memory when that variable is
unset) and read back with ``GET /events?id=<ident>``.
"""

import hashlib
import io
import json
import logging
import os
import sys
import threading
import time
from urllib.parse import parse_qs

STATE_DIR = os.environ.get("CADDYSNAKE_TEST_STATE", "")
_LOCK = threading.Lock()
_MEM_EVENTS = []

MAX_LOOP_SECONDS = 30.0
MAX_LOOP_ITERATIONS = 2_000_000


# ---------------------------------------------------------------- helpers

def record(event):
    with _LOCK:
        if STATE_DIR:
            with open(os.path.join(STATE_DIR, "events.log"), "a", encoding="utf-8") as f:
                f.write(event + "\n")
        else:
            _MEM_EVENTS.append(event)


def all_events():
    with _LOCK:
        if STATE_DIR:
            try:
                with open(os.path.join(STATE_DIR, "events.log"), encoding="utf-8") as f:
                    return f.read().splitlines()
            except FileNotFoundError:
                return []
        return list(_MEM_EVENTS)


def qs(environ):
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def respond_json(start_response, obj, status="200 OK", extra_headers=()):
    body = json.dumps(obj).encode("ascii")
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))] + list(extra_headers))
    return [body]


def respond_text(start_response, text, status="200 OK"):
    body = text.encode("utf-8") if isinstance(text, str) else text
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))])
    return [body]


def summarize(chunks, keep_limit=256 * 1024):
    data = b"".join(chunks)
    out = {
        "len": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "count": len(chunks),
        "lens": [len(c) for c in chunks] if len(chunks) <= 50000 else None,
        "types": sorted({type(c).__name__ for c in chunks}),
    }
    if len(data) <= keep_limit:
        out["chunks"] = [c.decode("latin-1") for c in chunks]
    return out


def bounded_loop(fn):
    """Call fn() until it returns a falsy value; bounded in time and count."""
    out = []
    start = time.monotonic()
    for _ in range(MAX_LOOP_ITERATIONS):
        item = fn()
        if not item:
            return out, False
        out.append(item)
        if time.monotonic() - start > MAX_LOOP_SECONDS:
            break
    return out, True


# ---------------------------------------------------------------- environ

def env_echo(environ, start_response):
    strs, non_str, not_latin1 = {}, [], []
    for k, v in environ.items():
        if not isinstance(k, str):
            non_str.append(repr(k))
            continue
        if k.startswith("wsgi."):
            continue
        if isinstance(v, str):
            strs[k] = v
            try:
                v.encode("latin-1")
            except UnicodeEncodeError:
                not_latin1.append(k)
        else:
            non_str.append(k)
    inp = environ["wsgi.input"]
    errors = environ["wsgi.errors"]
    body = inp.read()
    wsgi = {
        "version": list(environ["wsgi.version"]),
        "version_type": type(environ["wsgi.version"]).__name__,
        "url_scheme": environ["wsgi.url_scheme"],
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "run_once": environ["wsgi.run_once"],
        "input_terminated": environ.get("wsgi.input_terminated"),
        "has_file_wrapper": "wsgi.file_wrapper" in environ,
        "input_methods": {m: callable(getattr(inp, m, None))
                          for m in ("read", "readline", "readlines", "__iter__")},
        "errors_methods": {m: callable(getattr(errors, m, None))
                           for m in ("write", "writelines", "flush")},
        "keys": sorted(k for k in environ if isinstance(k, str) and k.startswith("wsgi.")),
    }
    return respond_json(start_response, {
        "environ": strs,
        "wsgi": wsgi,
        "non_str": non_str,
        "not_latin1": not_latin1,
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    })


# ---------------------------------------------------------------- wsgi.input

def input_read(environ, start_response):
    inp = environ["wsgi.input"]
    ident = qs(environ).get("id")
    if ident:
        record(f"reading:{ident}")
    data = inp.read()
    again = inp.read()
    again_n = inp.read(10)
    out = summarize([data])
    out["again"] = len(again)
    out["again_n"] = len(again_n)
    return respond_json(start_response, out)


def input_read_neg(environ, start_response):
    data = environ["wsgi.input"].read(-1)
    return respond_json(start_response, summarize([data]))


def input_read_n(environ, start_response):
    n = int(qs(environ).get("n", "1024"))
    inp = environ["wsgi.input"]
    chunks, overflow = bounded_loop(lambda: inp.read(n))
    out = summarize(chunks)
    out["overflow"] = overflow
    return respond_json(start_response, out)


def input_readinto(environ, start_response):
    """readinto() a buffer of n bytes until the end of the body."""
    n = int(qs(environ).get("n", "1024"))
    inp = environ["wsgi.input"]
    buf = bytearray(n)

    def piece():
        got = inp.readinto(buf)
        return bytes(buf[:got])

    chunks, overflow = bounded_loop(piece)
    out = summarize(chunks)
    out["overflow"] = overflow
    return respond_json(start_response, out)


def input_line_then_read_n(environ, start_response):
    """readline(), then read(n) until the end: the reader's buffer holds
    part of the first read(n)."""
    n = int(qs(environ).get("n", "1024"))
    inp = environ["wsgi.input"]
    chunks = [inp.readline()]
    more, overflow = bounded_loop(lambda: inp.read(n))
    out = summarize(chunks + more)
    out["overflow"] = overflow
    return respond_json(start_response, out)


def input_readline(environ, start_response):
    inp = environ["wsgi.input"]
    lines, overflow = bounded_loop(inp.readline)
    out = summarize(lines)
    out["overflow"] = overflow
    return respond_json(start_response, out)


def input_readline_n(environ, start_response):
    n = int(qs(environ).get("n", "5"))
    inp = environ["wsgi.input"]
    lines, overflow = bounded_loop(lambda: inp.readline(n))
    out = summarize(lines)
    out["overflow"] = overflow
    return respond_json(start_response, out)


def input_readlines(environ, start_response):
    lines = environ["wsgi.input"].readlines()
    return respond_json(start_response, summarize(list(lines)))


def input_iter(environ, start_response):
    lines = []
    start = time.monotonic()
    overflow = False
    for line in environ["wsgi.input"]:
        lines.append(line)
        if time.monotonic() - start > MAX_LOOP_SECONDS or len(lines) > MAX_LOOP_ITERATIONS:
            overflow = True
            break
    out = summarize(lines)
    out["overflow"] = overflow
    return respond_json(start_response, out)


def input_mixed(environ, start_response):
    inp = environ["wsgi.input"]
    a = inp.readline()
    b = inp.read(3)
    c = inp.readline(2)
    d = inp.readline()
    e = inp.read()
    return respond_json(start_response, {"parts": [x.decode("latin-1") for x in (a, b, c, d, e)]})


def echo_streamed(environ, start_response):
    """Answers first, then echoes the body's length piece by piece."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    inp = environ["wsgi.input"]

    def pieces():
        yield b"start\n"
        while True:
            data = inp.read(256)
            if not data:
                break
            yield b"%d\n" % len(data)
        yield b"end\n"
    return pieces()


def echo(environ, start_response):
    data = environ["wsgi.input"].read()
    ctype = environ.get("CONTENT_TYPE") or "application/octet-stream"
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


# ---------------------------------------------------------------- responses

def hello(environ, start_response):
    # literal header values on purpose: /hello is the "server still fine"
    # probe; /dyn_headers is the test for run-time built header values
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "11")])
    return [b"hello world"]


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"part1-")
    write(b"part2-")
    return [b"part3"]


def write_only(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"only-")
    write(b"write")
    return []


def exc_info_before(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Before", "1")])
    try:
        raise ValueError("replace the headers")
    except ValueError:
        start_response("503 Service Unavailable",
                       [("Content-Type", "text/plain"), ("X-Replaced", "yes")], sys.exc_info())
    return [b"replaced body"]


def empty_then_replace(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Before", "1")])

    def gen():
        yield b""
        yield b""
        try:
            raise ValueError("replace after empty yields")
        except ValueError:
            start_response("503 Service Unavailable",
                           [("Content-Type", "text/plain"), ("X-Replaced", "yes")], sys.exc_info())
        yield b"replaced after empty"
    return gen()


def exc_info_after(environ, start_response):
    ident = qs(environ).get("id", "x")
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"first chunk"
        try:
            raise ValueError(f"exc-info-after-{ident}")
        except ValueError:
            # headers are out: this must re-raise and abort the response
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        record(f"exc-info-not-reraised:{ident}")
        yield b"SHOULD-NOT-BE-SENT"
    return gen()


def double_start(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"second start_response was accepted"]


def empty_yields(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b""
        yield b""
        yield b"body"
        yield b""
        yield b"-end"
        yield b""
    return gen()


def stream(environ, start_response):
    q = qs(environ)
    n = min(int(q.get("n", "5")), 10000)
    delay = min(float(q.get("delay", "0.2")), 2.0)
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        for i in range(n):
            yield f"chunk-{i};".encode()
            if i != n - 1:
                time.sleep(delay)
    return gen()


# /firehose progress by ?id=: bytes the app has yielded so far.
FIREHOSE = {}


def firehose(environ, start_response):
    """?total= bytes in ?size=-byte chunks yielded in a tight loop, progress
    recorded under ?id= for /firehose-progress: shows how many small chunks
    the server coalesces, and how far the app gets ahead of a client that
    does not read."""
    q = qs(environ)
    size, total, ident = int(q.get("size", "10")), int(q.get("total", "10000")), q.get("id", "")
    chunk = b"x" * (size - 1) + b"\n"
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        FIREHOSE[ident] = 0
        for _ in range(total // size):
            yield chunk
            FIREHOSE[ident] += size
    return gen()


def mixed_chunks(environ, start_response):
    """Small chunks (queued for Go's writer) and 300 KB ones (written
    directly) alternating: tests/test_wsgi_response.py MIXED_CHUNKS."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (bytes([65 + i % 26]) * (7 if i % 3 else 300_000) for i in range(30))


def big_one(environ, start_response):
    """One large chunk (written by Go directly, not through the streamer)."""
    size = min(int(qs(environ).get("size", str(1 << 20))), 64 << 20)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    return [b"b" * size]


# One bytes object per size, served by /tail: its reference count shows how
# many responses Go still holds by reference (/tail-refs).
TAILS = {}


def _tail_body(environ):
    mb = min(int(qs(environ).get("mb", "8")), 64)
    body = TAILS.get(mb)
    if body is None:
        body = TAILS[mb] = hashlib.sha256(str(mb).encode()).digest() * (mb << 15)
    return body


def tail(environ, start_response):
    """A large last chunk: shape=list ([body], no Content-Length), cl (a
    generator of the body, with its Content-Length: Flask's and Django's
    shape) or stream (a small chunk first: the large one is then flushed as
    a streamed chunk, not a tail)."""
    body = _tail_body(environ)
    shape = qs(environ).get("shape", "list")
    headers = [("Content-Type", qs(environ).get("ctype", "application/octet-stream"))]
    if shape == "cl":
        headers.append(("Content-Length", str(len(body))))
    start_response("200 OK", headers)
    if shape == "list":
        return [body]
    if shape == "cl":
        return (b for b in (body,))
    return iter([b"first", body])


def tail_refs(environ, start_response):
    """The served body's references beyond TAILS's and getrefcount's own."""
    return respond_text(start_response, str(sys.getrefcount(_tail_body(environ)) - 2))


def firehose_progress(environ, start_response):
    return respond_text(start_response, str(FIREHOSE.get(qs(environ).get("id", ""), -1)))


def big(environ, start_response):
    size = min(int(qs(environ).get("size", str(1 << 20))), 64 << 20)
    block = bytes(range(256)) * 256  # 64 KiB
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def gen():
        left = size
        while left > 0:
            piece = block[:min(left, len(block))]
            left -= len(piece)
            yield piece
    return gen()


def multi_headers(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Set-Cookie", "a=1; Path=/"),
                              ("Set-Cookie", "b=2; Path=/"),
                              ("X-Dup", "one"),
                              ("X-Dup", "two"),
                              ("Content-Length", "2")])
    return [b"ok"]


STATUS_REASONS = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
                  404: "Not Found", 418: "I'm a teapot", 299: "Custom Thing"}


def status(environ, start_response):
    q = qs(environ)
    code = int(q.get("code", "200"))
    reason = q.get("reason", STATUS_REASONS.get(code, "Whatever"))
    with_body = q.get("body") == "1"
    headers = [("Content-Type", "text/plain"), ("X-Status-Test", str(code))]
    if "cl" in q:  # Django puts "Content-Length: 0" on every 204
        headers.append(("Content-Length", q["cl"]))
    start_response(f"{code} {reason}", headers)
    return [b"this body must not be sent"] if with_body else []


def cl_exact(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"he", b"l", b"lo"]


def cl_too_long(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello", b" world, this is past the declared length"]


def cl_short(environ, start_response):
    """Content-Length 100 and 5 bytes: in one chunk, or in ?n=N pieces."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    n = int(qs(environ).get("n", "1"))
    return [b"short"] * n


BAD = {
    "crlf_value": ("200 OK", [("X-Bad", "ok\r\nX-Injected: yes")]),
    "lf_value": ("200 OK", [("X-Bad", "ok\nX-Injected: yes")]),
    "cr_value": ("200 OK", [("X-Bad", "ok\rX-Injected: yes")]),
    "nul_value": ("200 OK", [("X-Bad", "ok\x00X-Injected: yes")]),
    "crlf_name": ("200 OK", [("X-Bad\r\nX-Injected", "yes")]),
    "crlf_status": ("200 OK\r\nX-Injected: yes", []),
    "status_abc": ("abc", []),
    "status_20": ("20 OK", []),
    "status_no_reason_space": ("200OK", []),
}


def bad(environ, start_response):
    status_line, headers = BAD[qs(environ)["kind"]]
    start_response(status_line, [("Content-Type", "text/plain")] + headers)
    return [b"bad response was sent"]


def headers_as(environ, start_response):
    """Response headers as a tuple (gunicorn takes one, PEP 3333 asks for a
    list), or as a dict (no server takes that)."""
    pairs = [("Content-Type", "text/plain"), ("X-Given-As", qs(environ)["as"])]
    start_response("200 OK", tuple(pairs) if qs(environ)["as"] == "tuple" else dict(pairs))
    return [b"headers given"]


class _Status(str):
    pass


class _Chunk(bytes):
    pass


def typed_values(environ, start_response):
    """A status line that is a str subclass and body chunks that are bytes
    subclasses (?list=1: a one-chunk list, else a generator): PEP 3333's
    "str" and "bytestrings", as gunicorn takes them."""
    start_response(_Status("201 Created"), [("Content-Type", "text/plain")])
    if qs(environ).get("list") == "1":
        return [_Chunk(b"typed")]
    return (c for c in [_Chunk(b"ty"), _Chunk(b"ped")])


def _start_dynamic(start_response, n, tag):
    values = {f"X-Dyn-{i}": f"value-{i}-{tag}-" + "v" * (i % 7) for i in range(n)}
    body = json.dumps(values).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
                   + [(k, v) for k, v in values.items()])
    return body  # the header str objects die here


def dyn_headers(environ, start_response):
    """Header names and values built at run time (freshly allocated str objects,
    freed right after start_response); then churn the allocator so that freed
    memory gets reused before the body (and so the headers) goes out."""
    q = qs(environ)
    n = min(int(q.get("n", "20")), 100)
    tag = q.get("tag", "t")
    body = _start_dynamic(start_response, n, tag)
    t = float(q.get("t", "0"))

    def gen():
        junk = [f"JUNK{i:06d}-" + "j" * (i % 13) for i in range(20000)]
        del junk
        junk = [str(i) for i in range(20000)]
        del junk
        if t:
            time.sleep(min(t, 1.0))
        yield body
    return gen()


def latin1_header(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Latin1", "caf\xe9 \xa7\xff"),
                              ("Content-Length", "2")])
    return [b"ok"]


HTML = b"<!DOCTYPE html><html><body>no type was set</body></html>"


def set_headers(environ, start_response):
    """Exactly the response headers given as ?h=Name:Value (repeatable), and
    an HTML-looking body in two chunks (so no length is known up front)."""
    pairs = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).get("h", [])
    start_response("200 OK", [tuple(p.split(":", 1)) for p in pairs])
    return [HTML[:20], HTML[20:]]


BAD_CHUNKS = {"none": None, "str_empty": "", "zero": 0}


def bad_chunk(environ, start_response):
    """A falsy chunk that is not bytes, after a good one."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"good chunk;", BAD_CHUNKS[qs(environ)["kind"]]]


def str_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["a str is not a bytestring"]


def return_none(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return None


def no_start_response(environ, start_response):
    return [b"body without start_response"]


def sleep(environ, start_response):
    q = qs(environ)
    t = min(float(q.get("t", "0.5")), 10.0)
    if "id" in q:
        record(f"sleep-start:{q['id']}")
    time.sleep(t)
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [b"slept"]


_OVERLAP = {"now": 0, "max": 0}


def overlap(environ, start_response):
    """Sleeps t seconds, counting how many such requests run at once."""
    t = min(float(qs(environ).get("t", "0.002")), 1.0)
    with _LOCK:
        _OVERLAP["now"] += 1
        _OVERLAP["max"] = max(_OVERLAP["max"], _OVERLAP["now"])
    try:
        time.sleep(t)
    finally:
        with _LOCK:
            _OVERLAP["now"] -= 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def overlap_max(environ, start_response):
    """The most /overlap requests seen at once; reset on reading."""
    with _LOCK:
        m, _OVERLAP["max"] = _OVERLAP["max"], 0
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(m).encode()]


def printer(environ, start_response):
    ident = qs(environ).get("id", "x")
    print(f"print-marker-{ident}")
    print(f"print-flush-marker-{ident}", flush=True)
    sys.stderr.write(f"stderr-marker-{ident}\n")
    sys.stderr.flush()
    errors = environ["wsgi.errors"]
    errors.write(f"wsgi-errors-marker-{ident}\n")
    errors.writelines([f"wsgi-errors-lines-{ident}-a\n", f"wsgi-errors-lines-{ident}-b\n"])
    errors.flush()
    return respond_text(start_response, "printed")


_logger = logging.getLogger("rawapp.logtest")
_logger.setLevel(logging.INFO)
_logger.propagate = False
_logger.addHandler(logging.StreamHandler(sys.stderr))  # as Django's "console" handler


def logging_view(environ, start_response):
    """Records of each level through logging handlers on sys.stderr and on
    wsgi.errors (Flask's default handler writes there), one with a traceback."""
    ident = qs(environ).get("id", "x")
    errors = logging.getLogger("rawapp.logtest.errors")
    if not errors.handlers:
        errors.addHandler(logging.StreamHandler(environ["wsgi.errors"]))
    _logger.info("log-info-%s", ident)
    _logger.error("log-error-%s", ident)
    try:
        1 / 0
    except ZeroDivisionError:
        _logger.exception("log-exception-%s", ident)
    errors.warning("log-errors-stream-warning-%s", ident)
    return respond_text(start_response, "logged")


def raiser(environ, start_response):
    ident = qs(environ).get("id", "x")
    raise RuntimeError(f"app-boom-{ident}")


def raise_after_start(environ, start_response):
    ident = qs(environ).get("id", "x")
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError(f"app-boom-after-start-{ident}")


# ---------------------------------------------------------------- close() tracking

class Tracked:
    """An iterable with close(), per PEP 3333."""

    def __init__(self, ident, n, delay=0.0, size=16, fail_at=None):
        self.ident, self.n, self.delay, self.size, self.fail_at = ident, n, delay, size, fail_at

    def __iter__(self):
        record(f"started:{self.ident}")
        start = time.monotonic()
        for i in range(self.n):
            if self.fail_at is not None and i == self.fail_at:
                raise RuntimeError(f"tracked-failure-{self.ident}")
            yield (f"c{i};".encode()).ljust(self.size, b".")
            if self.delay:
                time.sleep(self.delay)
            if time.monotonic() - start > MAX_LOOP_SECONDS:
                record(f"timeout:{self.ident}")
                return
        record(f"exhausted:{self.ident}")

    def close(self):
        record(f"closed:{self.ident}")


def close_app(environ, start_response):
    q = qs(environ)
    ident = q["id"]
    mode = environ["PATH_INFO"].rsplit("/", 1)[-1]
    start_response("200 OK", [("Content-Type", "text/plain")])
    if mode == "normal":
        return Tracked(ident, 3)
    if mode == "error":
        return Tracked(ident, 5, fail_at=int(q.get("fail_at", "2")))
    if mode == "stream":
        return Tracked(ident, 100000, delay=float(q.get("delay", "0.02")), size=int(q.get("size", "1024")))
    if mode == "genstream":
        delay = float(q.get("delay", "0.02"))

        def gen():
            record(f"started:{ident}")
            start = time.monotonic()
            try:
                i = 0
                while time.monotonic() - start < MAX_LOOP_SECONDS:
                    yield f"g{i};".encode().ljust(1024, b".")
                    i += 1
                    time.sleep(delay)
                record(f"timeout:{ident}")
            finally:
                record(f"gen-finally:{ident}")
        return gen()
    raise ValueError(mode)


def events(environ, start_response):
    ident = qs(environ).get("id")
    evs = all_events()
    if ident is not None:
        evs = [e for e in evs if e.endswith(":" + ident)]
    return respond_json(start_response, {"events": evs})


# ---------------------------------------------------------------- file_wrapper

class ReadOnlyFile:
    """A file-like object with only read() and close() (no fileno)."""

    def __init__(self, data, ident):
        self._buf = io.BytesIO(data)
        self.ident = ident

    def read(self, size=-1):
        return self._buf.read(size)

    def close(self):
        record(f"filelike-closed:{self.ident}")


def file_wrapper(environ, start_response):
    q = qs(environ)
    kind = q.get("kind", "file")
    headers = [("Content-Type", q.get("ctype", "application/octet-stream"))]
    if kind == "file":
        path = q["path"]
        f = open(path, "rb")
        size = os.path.getsize(path)
    elif kind == "bytesio":
        data = (b"bytesio-content-" * 4096)[: int(q.get("size", "50000"))]
        f, size = io.BytesIO(data), len(data)
    elif kind == "readonly":
        data = (b"readonly-content-" * 4096)[: int(q.get("size", "50000"))]
        f, size = ReadOnlyFile(data, q["id"]), len(data)
    else:
        raise ValueError(kind)
    if q.get("cl") == "1":
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None:
        return iter(lambda: f.read(65536), b"")
    wrapped = wrapper(f, 65536)
    if q.get("truncate_on_close") == "1":
        # The app's own close() empties the file: PEP 3333 runs it once the
        # response is done, so the client must still get every byte.
        def close():
            f.close()
            open(path, "wb").close()
        wrapped.close = close
    return wrapped


# ---------------------------------------------------------------- dispatch

ROUTES = {
    "/hello": hello,
    "/echo": echo,
    "/echo_streamed": echo_streamed,
    "/input/read": input_read,
    "/input/read_neg": input_read_neg,
    "/input/read_n": input_read_n,
    "/input/readinto": input_readinto,
    "/input/line_then_read_n": input_line_then_read_n,
    "/input/readline": input_readline,
    "/input/readline_n": input_readline_n,
    "/input/readlines": input_readlines,
    "/input/iter": input_iter,
    "/input/mixed": input_mixed,
    "/write": write_callable,
    "/write_only": write_only,
    "/exc_info_before": exc_info_before,
    "/empty_then_replace": empty_then_replace,
    "/exc_info_after": exc_info_after,
    "/double_start": double_start,
    "/empty_yields": empty_yields,
    "/stream": stream,
    "/big": big,
    "/big-one": big_one,
    "/tail": tail,
    "/tail-refs": tail_refs,
    "/firehose": firehose,
    "/mixed-chunks": mixed_chunks,
    "/firehose-progress": firehose_progress,
    "/multi_headers": multi_headers,
    "/status": status,
    "/cl_exact": cl_exact,
    "/cl_too_long": cl_too_long,
    "/cl_short": cl_short,
    "/bad": bad,
    "/headers_as": headers_as,
    "/typed_values": typed_values,
    "/sleep": sleep,
    "/overlap": overlap,
    "/overlap/max": overlap_max,
    "/latin1_header": latin1_header,
    "/dyn_headers": dyn_headers,
    "/str_body": str_body,
    "/set_headers": set_headers,
    "/bad_chunk": bad_chunk,
    "/return_none": return_none,
    "/no_start_response": no_start_response,
    "/print": printer,
    "/logging": logging_view,
    "/raise": raiser,
    "/raise_after_start": raise_after_start,
    "/close/normal": close_app,
    "/close/error": close_app,
    "/close/stream": close_app,
    "/close/genstream": close_app,
    "/events": events,
    "/file_wrapper": file_wrapper,
}


def app(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""), env_echo)
    return handler(environ, start_response)
