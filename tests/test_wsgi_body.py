"""wsgi.input: every reading method returns exactly the bytes the client sent."""

import hashlib
import io
import json
import os
import random
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from conftest import RAW_APP_DIR, chunked_expect_twice, python_block, raw_request, tls_site

SMALL_LINES = (
    b"first line\n"
    b"\n"
    b"a much longer second line that is longer than any small n used by the tests\n"
    b"binary \x00\x01\xff\xfe bytes\r\n"
    b"x\n"
    b"no trailing newline at the end"
)


def text_lines_body(n_lines=5000, seed=1):
    rnd = random.Random(seed)
    out = io.BytesIO()
    for i in range(n_lines):
        out.write(f"{i}:".encode() + bytes(rnd.choice(b"abcdefghij") for _ in range(rnd.randint(0, 120))) + b"\n")
    out.write(b"tail-without-newline")
    return out.getvalue()


BIG_BINARY = random.Random(42).randbytes(3 * 1024 * 1024 + 17)
MEDIUM_TEXT = text_lines_body()

BODIES = {
    "empty": b"",
    "small": SMALL_LINES,
    "medium_text": MEDIUM_TEXT,
}


def chunked(data, size=7919):
    def gen():
        for i in range(0, len(data), size):
            yield data[i:i + size]
    return gen()


def post(server, path, data, *, use_chunked, params=None):
    content = chunked(data) if use_chunked else data
    r = httpx.post(server.url(path), content=content, params=params, timeout=30,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, (r.status_code, r.text[:2000])
    return r.json()


def reference(fn, data):
    buf = io.BytesIO(data)
    out = []
    for _ in range(10_000_000):
        item = fn(buf)
        if not item:
            return out
        out.append(item)
    raise AssertionError("reference loop did not terminate")


def check_summary(res, expected_chunks):
    data = b"".join(expected_chunks)
    assert res["len"] == len(data)
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert res["types"] in ([], ["bytes"])
    if "chunks" in res:
        assert [c.encode("latin-1") for c in res["chunks"]] == expected_chunks


TRANSFER = [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")]


@pytest.mark.parametrize("use_chunked", TRANSFER)
@pytest.mark.parametrize("body", list(BODIES) + ["big_binary"])
def test_read_all(raw_server, body, use_chunked):
    data = BIG_BINARY if body == "big_binary" else BODIES[body]
    res = post(raw_server, "/input/read", data, use_chunked=use_chunked)
    assert res["len"] == len(data)
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    # after EOF, read() and read(n) keep returning b""
    assert res["again"] == 0
    assert res["again_n"] == 0


@pytest.mark.parametrize("use_chunked", TRANSFER)
def test_read_negative_size(raw_server, use_chunked):
    res = post(raw_server, "/input/read_neg", SMALL_LINES, use_chunked=use_chunked)
    check_summary(res, [SMALL_LINES])


@pytest.mark.parametrize("use_chunked", TRANSFER)
@pytest.mark.parametrize("n", [1, 7, 4096, 65536])
def test_read_n_loop(raw_server, n, use_chunked):
    data = MEDIUM_TEXT[:20000] if n == 1 else MEDIUM_TEXT if n < 4096 else BIG_BINARY
    res = post(raw_server, "/input/read_n", data, use_chunked=use_chunked, params={"n": n})
    assert res["overflow"] is False
    assert res["len"] == len(data)
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert all(0 < L <= n for L in res["lens"]), "read(n) returned more than n bytes or an empty chunk"


def send_in_pieces(path, data, *, use_chunked, piece=50_000, pause=0.05):
    """A sock_hook for raw_request: the body in pieces, with pauses, so
    each read finds only part of what it asks for."""
    framing = b"Transfer-Encoding: chunked" if use_chunked else b"Content-Length: %d" % len(data)

    def hook(s):
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n\r\n" % (path, framing))
        for i in range(0, len(data), piece):
            part = data[i:i + piece]
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part) if use_chunked else part)
            time.sleep(pause)
        if use_chunked:
            s.sendall(b"0\r\n\r\n")
    return hook


@pytest.mark.parametrize("use_chunked", TRANSFER)
@pytest.mark.parametrize("path", [b"/input/read_n?n=100000", b"/input/readinto?n=100000",
                                  b"/input/line_then_read_n?n=100000"])
def test_large_reads_are_filled_however_the_body_arrives(raw_server, path, use_chunked):
    """read(n) and readinto() of a buffered stream return n bytes until the
    end of the body, though it arrives in smaller pieces, as a parser
    reading fixed-size records expects (gunicorn's read(n) does too)."""
    data = BIG_BINARY[:420_000]
    hook = send_in_pieces(path, data, use_chunked=use_chunked)
    r = raw_request(raw_server.port, b"", sock_hook=hook)
    assert r.status == 200, r.body[:500]
    res = json.loads(r.body)
    assert (res["len"], res["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    lens = res["lens"]
    if b"line_then" in path:
        lens = lens[1:]  # the first line, then reads of n
    assert lens[:-1] == [100_000] * (len(lens) - 1), lens
    assert 0 < lens[-1] <= 100_000


@pytest.mark.parametrize("use_chunked", TRANSFER)
@pytest.mark.parametrize("path", ["/input/read_n", "/input/line_then_read_n"])
def test_read_of_far_more_than_the_body(raw_server, path, use_chunked):
    """read(2**40) returns the (rest of the) body, without first allocating
    2**40 bytes (gunicorn's read(n) collects what arrives; a buffered
    reader would allocate n up front and fail with MemoryError)."""
    data = b"a first line\n" + BIG_BINARY[:300_000]
    res = post(raw_server, path, data, use_chunked=use_chunked, params={"n": 2 ** 40})
    assert (res["len"], res["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert res["lens"] == ([len(data)] if path == "/input/read_n" else [13, len(data) - 13])


@pytest.mark.parametrize("use_chunked", TRANSFER)
@pytest.mark.parametrize("body", list(BODIES))
def test_readline(raw_server, body, use_chunked):
    data = BODIES[body]
    res = post(raw_server, "/input/readline", data, use_chunked=use_chunked)
    assert res["overflow"] is False
    check_summary(res, reference(lambda b: b.readline(), data))


@pytest.mark.parametrize("use_chunked", TRANSFER)
@pytest.mark.parametrize("n", [1, 5, 64])
def test_readline_n(raw_server, n, use_chunked):
    for data in (SMALL_LINES, MEDIUM_TEXT[:20000] if n == 1 else MEDIUM_TEXT):
        res = post(raw_server, "/input/readline_n", data, use_chunked=use_chunked, params={"n": n})
        assert res["overflow"] is False
        check_summary(res, reference(lambda b: b.readline(n), data))


@pytest.mark.parametrize("use_chunked", TRANSFER)
@pytest.mark.parametrize("body", list(BODIES))
def test_readlines(raw_server, body, use_chunked):
    data = BODIES[body]
    res = post(raw_server, "/input/readlines", data, use_chunked=use_chunked)
    check_summary(res, data.splitlines(keepends=True))


@pytest.mark.parametrize("use_chunked", TRANSFER)
@pytest.mark.parametrize("body", list(BODIES))
def test_iteration(raw_server, body, use_chunked):
    data = BODIES[body]
    res = post(raw_server, "/input/iter", data, use_chunked=use_chunked)
    assert res["overflow"] is False
    check_summary(res, data.splitlines(keepends=True))


@pytest.mark.parametrize("use_chunked", TRANSFER)
def test_mixed_methods_share_one_buffer(raw_server, use_chunked):
    data = b"line one\nabcdefgh\nrest of line\n\x00tail\nend"
    res = post(raw_server, "/input/mixed", data, use_chunked=use_chunked)
    buf = io.BytesIO(data)
    expected = [buf.readline(), buf.read(3), buf.readline(2), buf.readline(), buf.read()]
    assert [p.encode("latin-1") for p in res["parts"]] == expected


@pytest.mark.parametrize("use_chunked", TRANSFER)
def test_read_after_readline_of_a_large_body(raw_server, use_chunked):
    """read() after readline(): the rest of the body, part of which the
    input buffer already holds and part of which Go reads in one call (a
    body of known length) or in pieces (chunked)."""
    data = b"line one\nabcdefgh\nrest of line\n\x00tail\n" + MEDIUM_TEXT + BIG_BINARY[:300_000].hex().encode()
    res = post(raw_server, "/input/mixed", data, use_chunked=use_chunked)
    buf = io.BytesIO(data)
    expected = [buf.readline(), buf.read(3), buf.readline(2), buf.readline(), buf.read()]
    assert [p.encode("latin-1") for p in res["parts"]] == expected


def test_read_of_a_large_body_sent_in_pieces(raw_server):
    """read() returns the whole body of known length, however it arrives."""
    data = BIG_BINARY[:200_000]

    def send_in_pieces(s):
        s.sendall(b"POST /input/read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(data))
        for i in range(0, len(data), 50_000):
            s.sendall(data[i:i + 50_000])
            time.sleep(0.05)

    res = json.loads(raw_request(raw_server.port, b"", sock_hook=send_in_pieces).body)
    assert (res["len"], res["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_echo_binary_roundtrip(raw_server):
    r = httpx.post(raw_server.url("/echo"), content=BIG_BINARY, timeout=30,
                   headers={"Content-Type": "application/x-binary"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-binary"
    assert r.content == BIG_BINARY


def test_reads_stop_at_content_length(raw_server):
    """The client keeps the connection open after the body: the app's read()
    and read(n > CONTENT_LENGTH) must return the declared bytes, not wait for more."""
    for path in ("/input/read", "/input/read_n?n=1000", "/input/readline", "/input/readlines",
                 "/input/iter"):
        req = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               f"Content-Length: 11\r\n\r\n").encode() + b"hello\nworld"
        with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
            s.sendall(req)
            buf = b""
            deadline = time.monotonic() + 10
            while True:
                assert time.monotonic() < deadline, f"{path}: no complete response in 10s, got {buf!r}"
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = buf[:head_end].decode("latin-1").lower()
                    cl = [int(L.split(":", 1)[1]) for L in head.split("\r\n") if L.startswith("content-length:")]
                    if cl and len(buf) >= head_end + 4 + cl[0]:
                        break
                s.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    c = s.recv(65536)
                except socket.timeout:
                    continue
                assert c, f"{path}: connection closed early, got {buf!r}"
                buf += c
        assert buf.startswith(b"HTTP/1.1 200"), buf[:300]
        res = json.loads(buf[head_end + 4:])
        assert res["len"] == 11, (path, res)
        assert res["sha256"] == hashlib.sha256(b"hello\nworld").hexdigest(), (path, res)


def test_expect_100_continue(raw_server):
    """The server answers 100 Continue before the app reads, then reads the body."""
    payload = b"sent only after 100 Continue\n" * 100
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall((f"POST /input/read HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n"
                   f"Expect: 100-continue\r\nConnection: close\r\n\r\n").encode())
        buf = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in buf:
            assert time.monotonic() < deadline, f"no interim response: {buf!r}"
            s.settimeout(max(0.05, deadline - time.monotonic()))
            c = s.recv(4096)
            assert c, f"closed before 100 Continue: {buf!r}"
            buf += c
        assert buf.startswith(b"HTTP/1.1 100 Continue"), buf[:200]
        rest = buf.split(b"\r\n\r\n", 1)[1]
        s.sendall(payload)
        while True:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            c = s.recv(65536)
            if not c:
                break
            rest += c
    head, _, body = rest.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), rest[:300]
    res = json.loads(body)
    assert res["len"] == len(payload)
    assert res["sha256"] == hashlib.sha256(payload).hexdigest()


def test_unread_request_body_then_keepalive(raw_server):
    """The app ignores a large body; the next request on the connection still works."""
    with httpx.Client(timeout=30) as c:
        for _ in range(3):
            r = c.post(raw_server.url("/hello"), content=BIG_BINARY)
            assert r.status_code == 200
            assert r.text == "hello world"
            r = c.get(raw_server.url("/env/after"))
            assert r.status_code == 200
            assert r.json()["environ"]["PATH_INFO"] == "/env/after"


def test_slow_chunked_upload(raw_server):
    """read() blocks until the whole body arrived, across pauses in the upload."""
    pieces = [b"first-", b"second-", b"third"]

    def gen():
        for i, p in enumerate(pieces):
            if i:
                time.sleep(0.3)
            yield p

    r = httpx.post(raw_server.url("/input/read"), content=gen(), timeout=30)
    assert r.status_code == 200
    data = b"".join(pieces)
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert r.json()["len"] == len(data)


def send_and_read_all(port, pieces, pause=0.3, timeout=10):
    """Send pieces with a pause between them; return all the server sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for i, p in enumerate(pieces):
            if i:
                time.sleep(pause)
            s.sendall(p)
        buf = b""
        while True:
            c = s.recv(65536)
            if not c:
                return buf
            buf += c


@pytest.mark.parametrize("path", ["/input/read", "/input/read_n?n=7", "/input/readline"])
def test_small_body_arriving_in_pieces(raw_server, path):
    """Go reads a small body before the app runs, however it arrives; the
    app gets every byte."""
    data = b"".join(b"line %d of a small body\n" % i for i in range(200))[:4000]
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    buf = send_and_read_all(raw_server.port, [head + data[:100], data[100:3000], data[3000:]])
    assert buf.startswith(b"HTTP/1.1 200"), buf[:300]
    res = json.loads(buf.partition(b"\r\n\r\n")[2])
    assert res["len"] == len(data)
    assert res["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("connection", [b"Connection: close\r\n", b""])
def test_expect_100_continue_app_that_does_not_read(raw_server, connection):
    """An app that answers without reading the body: no 100 Continue is sent,
    and the client, which holds its body back, gets the answer at once, on a
    kept-alive connection too (which the answer then closes: Go, behind
    Caddy's body wrapper, would otherwise wait for the body first)."""
    with socket.create_connection(("127.0.0.1", raw_server.port), timeout=10) as s:
        s.sendall(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                  b"Expect: 100-continue\r\n" + connection + b"\r\n")
        s.settimeout(5)
        buf = b""
        while not buf.endswith(b"hello world"):
            c = s.recv(65536)
            assert c, buf
            buf += c
    assert buf.startswith(b"HTTP/1.1 200"), buf[:300]
    head = buf.lower().partition(b"\r\n\r\n")[0] + b"\r\n"
    assert b"\r\nconnection: close\r\n" in head, buf[:300]  # not kept: the body was not read


def test_expect_100_continue_chunked_upload_read_whole_keeps_the_connection(raw_server):
    """A chunked upload behind "Expect: 100-continue" that the app reads to
    its end leaves the connection open for the next request, as gunicorn and
    a Content-Length upload do (its end was not counted, so the answer said
    "Connection: close")."""
    heads = chunked_expect_twice(raw_server.port, "/input_read")
    assert all(h.startswith(b"http/1.1 200") and b"connection: close" not in h for h in heads), heads


@pytest.fixture(scope="module")
def tls_raw_server(start_caddy, tmp_path_factory):
    """The raw WSGI app over HTTPS (HTTP/2), threads 8."""
    sites = tls_site(tmp_path_factory, "wsgi-tls-cert", python_block("rawapp:app", RAW_APP_DIR, threads=8))
    srv = start_caddy("wsgi-tls", sites=sites)
    srv.base_url = f"https://127.0.0.1:{srv.port}"
    yield srv
    srv.stop()


def test_more_parallel_uploads_than_threads_over_one_h2_connection(tls_raw_server, tmp_path):
    """50 uploads of 100 KB multiplexed on one HTTP/2 connection, to an app
    with 8 threads. The bodies of the uploads waiting for a thread are
    drained to disk: left unread, they filled the connection's shared
    flow-control window, and the uploads being served could never get the
    rest of theirs (all stalled until the client gave up)."""
    curl = shutil.which("curl")
    if not curl or "HTTP2" not in subprocess.run([curl, "-V"], capture_output=True, text=True).stdout:
        pytest.skip("curl with HTTP/2 not available")
    body = tmp_path / "body"
    body.write_bytes(b"u" * 100_000)
    urls = []
    for i in range(50):
        urls += ["-o", os.devnull, f"{tls_raw_server.base_url}/input_read?i={i}"]
    t0 = time.monotonic()
    res = subprocess.run([curl, "-sS", "-k", "--http2", "-Z", "--parallel-max", "50", "-m", "20",
                          "--data-binary", f"@{body}", "-w", "%{http_code} %{http_version}\n", *urls],
                         capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    codes = res.stdout.split("\n")
    assert codes.count("200 2") == 50, (res.stdout[-2000:], res.stderr[-2000:])
    assert elapsed < 15, elapsed
    assert httpx.get(f"{tls_raw_server.base_url}/hello", verify=False, timeout=10).status_code == 200
