"""Clients that read slowly hold no WSGI thread once the app has made its
whole response: its last large chunk (by reference, no copy) and a
wsgi.file_wrapper file are written by Caddy after the thread is free, as
Caddy→gunicorn frees gunicorn's thread into the socket buffers between them
(tails.go)."""

import hashlib
import socket
import time

import httpx
import pytest

from conftest import RAW_APP_DIR, python_block, wait_until

STALLED = 6  # clients that stop reading: three times the threads
MB = 8  # per response: more than the socket buffers take on loopback


@pytest.fixture(scope="module")
def server(start_caddy):
    sites = "http://:@PORT@ {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, threads=2) + "\n}\n"
    srv = start_caddy("tails", sites=sites)
    yield srv
    srv.stop()


def tail_body(mb):
    """What rawapp's /tail serves (_tail_body)."""
    return hashlib.sha256(str(mb).encode()).digest() * (mb << 15)


def stall(server, target):
    """Send a request and read no more than the response's headers."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    s.settimeout(10)
    s.connect(("127.0.0.1", server.port))
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        piece = s.recv(4096)
        assert piece, "the connection closed before the headers"
        got += piece
    return s, got


def read_rest(s, got):
    """The body of a stalled response, read to its end (Connection: close)."""
    s.settimeout(30)
    while True:
        piece = s.recv(1 << 20)
        if not piece:
            break
        got += piece
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    return head, body


def dechunk_if(head, body):
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    out, rest = b"", body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        n = int(size_line, 16)
        if n == 0:
            return out
        out, rest = out + rest[:n], rest[n + 2:]


def refs(server, mb=MB):
    return int(httpx.get(server.url(f"/tail-refs?mb={mb}"), timeout=5).text)


def assert_threads_free(server):
    # With both threads writing to stalled clients this would wait for them.
    t0 = time.monotonic()
    r = httpx.get(server.url("/hello"), timeout=5)
    assert r.status_code == 200, r.status_code
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("shape", ["list", "cl"])
def test_stalled_readers_of_a_large_last_chunk_hold_no_thread(server, shape):
    assert refs(server) == 0
    stalled = [stall(server, f"/tail?shape={shape}&mb={MB}") for _ in range(STALLED)]
    assert_threads_free(server)
    # Go holds each response by reference: the bytes object was not copied.
    assert refs(server) == STALLED
    want = tail_body(MB)
    for s, got in stalled:
        head, body = read_rest(s, got)
        assert head.startswith(b"HTTP/1.1 200"), head
        if shape == "cl":
            assert f"content-length: {len(want)}".encode() in head.lower()
        assert dechunk_if(head, body) == want
    # Handed back once written, with no other request to drop them: the
    # sweep takes the GIL for it.
    time.sleep(0.5)
    assert refs(server) == 0


def test_a_streamed_body_is_unchanged(server):
    # The large chunk after a small one is a streamed chunk, not a tail.
    r = httpx.get(server.url("/tail?shape=stream&mb=2"), timeout=30)
    assert r.status_code == 200
    assert r.content == b"first" + tail_body(2)
    wait_until(lambda: refs(server, 2) == 0, 5, message="no reference left")


def test_stalled_readers_of_a_wrapped_file_hold_no_thread(server, tmp_path):
    data = hashlib.sha256(b"file").digest() * (MB << 15)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    stalled = [stall(server, f"/file_wrapper?kind=file&cl=1&path={path}") for _ in range(STALLED)]
    assert_threads_free(server)
    path.unlink()  # the files stay open for the writes in progress
    for s, got in stalled:
        head, body = read_rest(s, got)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert body == data


def test_a_client_that_leaves_a_tail_releases_it(server):
    stalled = [stall(server, f"/tail?shape=list&mb={MB}") for _ in range(STALLED)]
    assert refs(server) == STALLED
    for s, _ in stalled:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset: the writes fail
    wait_until(lambda: refs(server) == 0, 5, message="the departed clients' tails released")
    assert_threads_free(server)


@pytest.fixture(scope="module")
def wrapped_server(start_caddy):
    """The same app behind `encode gzip`, over HTTP/1.1 and h2c."""
    sites = ("http://:@PORT@ {\n\tencode gzip\n"
             + python_block("rawapp:app", RAW_APP_DIR, venv=False, threads=2) + "\n}\n")
    srv = start_caddy("tails-wrapped", sites=sites, global_extra="\tservers {\n\t\tprotocols h1 h2c\n\t}")
    yield srv
    srv.stop()


@pytest.mark.parametrize("h2", [False, True], ids=["http1", "h2c"])
@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
def test_tails_through_an_encoder_and_over_h2(wrapped_server, tmp_path, h2, gzip):
    """A kept last chunk and a kept file reach the client whole whatever sits
    between the handler and the connection, and no reference is left."""
    if h2:
        pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    data = hashlib.sha256(b"wrapped").digest() * (1 << 15)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    with httpx.Client(http1=not h2, http2=h2, timeout=60, headers=headers) as c:
        for shape in ("list", "cl"):
            # text/plain: a type Caddy's encode compresses (not octet-stream)
            r = c.get(wrapped_server.url(f"/tail?shape={shape}&mb=2&ctype=text/plain"))
            assert r.status_code == 200 and r.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
            assert r.headers.get("content-encoding") == ("gzip" if gzip else None)
            assert r.content == tail_body(2), shape  # httpx decodes gzip
        r = c.get(wrapped_server.url(f"/file_wrapper?kind=file&cl=1&ctype=text/plain&path={path}"))
        assert r.status_code == 200 and r.content == data
        assert r.headers.get("content-encoding") == ("gzip" if gzip else None)
    time.sleep(0.3)
    assert refs(wrapped_server, 2) == 0
