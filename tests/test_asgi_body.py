"""receive(): the request body as http.request events, and http.disconnect."""

import hashlib
import json
import os
import socket
import time
import uuid

import httpx
import pytest

from conftest import chunked_expect_twice, raw_request, read_first_chunk_and_close, wait_until


def read_events(server, ident):
    r = httpx.get(server.url("/events"), params={"id": ident}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


# ---------------------------------------------------------------- bodies


def test_echo_small_body(asgi_server):
    body = "h\u00e9llo \u2603 body".encode()
    r = httpx.post(asgi_server.url("/echo"), content=body, headers={"Content-Type": "text/x-test"}, timeout=10)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["content-type"] == "text/x-test"


def test_large_streamed_upload_arrives_in_chunks(asgi_server):
    """50 MiB sent from a generator (chunked transfer encoding)."""
    total_chunks, chunk = 50, os.urandom(1 << 20)
    expected = hashlib.sha256()
    for i in range(total_chunks):
        expected.update(bytes([i]) + chunk[1:])

    def gen():
        for i in range(total_chunks):
            yield bytes([i]) + chunk[1:]

    r = httpx.post(asgi_server.url("/upload"), content=gen(), timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["size"] == total_chunks << 20
    assert data["sha256"] == expected.hexdigest()
    assert data["nonempty"] > 1, "the body was delivered in one http.request event"
    assert data["first_more_flags"][0] is True


def test_large_upload_with_content_length(asgi_server):
    body = os.urandom(8 << 20)
    r = httpx.post(asgi_server.url("/upload"), content=body, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["size"] == len(body)
    assert data["sha256"] == hashlib.sha256(body).hexdigest()
    assert data["nonempty"] > 1
    assert data["first_more_flags"][0] is True


@pytest.mark.parametrize("size", [(16 << 10) - 1, 16 << 10, (16 << 10) + 1, (256 << 10) + 7,
                                  (272 << 10) - 1, 272 << 10, (64 << 10) + 3])
def test_upload_sizes_around_the_zero_copy_threshold(asgi_server, size):
    """Bodies of 16 KiB or more are read by Go straight into bytes objects
    the app sent along (no larger than what is left of the body, cut to the
    length read); smaller ones, and a rest under 16 KiB, are copied. Both
    arrive intact, also across the 256 KiB chunk size."""
    body = os.urandom(size)
    r = httpx.post(asgi_server.url("/upload"), content=body, timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()
    assert (data["size"], data["sha256"]) == (size, hashlib.sha256(body).hexdigest())
    assert data["max_chunk"] <= 256 << 10


def test_abandoned_uploads_free_their_read_buffers(asgi_server):
    """A client that leaves mid-upload while the app waits in receive()
    leaves no 256 KiB read buffer behind (300 of them would be 75 MiB)."""
    def in_use():
        return httpx.get(asgi_server.url("/malloc"), timeout=10).json()["in_use"]

    def abandon():
        s = socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + bytes(65536))
        time.sleep(0.002)
        s.close()

    if in_use() is None:
        pytest.skip("no mallinfo2 (not glibc)")
    for _ in range(50):
        abandon()
    time.sleep(0.5)
    before = in_use()
    for _ in range(300):
        abandon()
    time.sleep(0.5)
    grown = in_use() - before
    assert grown < 30 << 20, f"{grown >> 20} MiB more allocated after 300 abandoned uploads"


def test_body_split_across_slow_client_writes(asgi_server):
    """The app sees what has arrived so far; the last event has more_body False."""
    s = socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10)
    try:
        s.sendall(b"POST /body-events HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
        time.sleep(0.3)
        s.sendall(b"world")
        buf = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), buf[:500]
    events = json.loads(body)["events"]
    assert sum(e[0] for e in events) == 10
    assert len([e for e in events if e[0]]) == 2, events
    assert all(e[1] is True for e in events[:-1]) and events[-1][1] is False
    assert all(e[2] == "bytes" for e in events)


@pytest.mark.parametrize("kind", ["get", "post-empty", "chunked-empty"])
def test_empty_body_is_one_event(asgi_server, kind):
    if kind == "get":
        r = httpx.get(asgi_server.url("/body-events"), timeout=10)
        events = r.json()["events"]
    elif kind == "post-empty":
        r = httpx.post(asgi_server.url("/body-events"), content=b"", timeout=10)
        events = r.json()["events"]
    else:
        resp = raw_request(asgi_server.port, b"POST /body-events HTTP/1.1\r\nHost: h\r\n"
                                             b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n")
        assert resp.status == 200, resp.raw[:500]
        events = json.loads(resp.body)["events"]
    assert events == [[0, False, "bytes"]]


def test_receive_after_body_blocks(asgi_server):
    """After the last body event, receive() waits (the response is not done yet)."""
    r = httpx.post(asgi_server.url("/body-events?after=1"), content=b"abc", timeout=10)
    assert r.json() == {"events": [[3, False, "bytes"]], "after": "blocked"}
    r = httpx.get(asgi_server.url("/body-events?after=1"), timeout=10)
    assert r.json() == {"events": [[0, False, "bytes"]], "after": "blocked"}


# ---------------------------------------------------------------- http.disconnect


def test_disconnect_mid_response_gives_http_disconnect(asgi_server):
    ident = uuid.uuid4().hex[:12]
    read_first_chunk_and_close(asgi_server.port, f"/watch?id={ident}", b"c0;")
    t0 = time.monotonic()

    def seen():
        evs = read_events(asgi_server, ident)
        return evs if any(e.startswith("receive:") for e in evs) else None

    evs = wait_until(seen, 5.0, interval=0.1, message="the app's receive() to return after the client left")
    assert "started" in evs
    got = [e for e in evs if e.startswith("receive:")]
    assert got[0].startswith("receive:http.disconnect:"), evs
    assert "timeout" not in evs
    assert time.monotonic() - t0 < 5.0
    assert httpx.get(asgi_server.url("/hello"), timeout=10).text == "hello asgi"


def test_a_cancelled_receive_spoils_no_other(asgi_server):
    """A receive() cancelled by wait_for()'s timeout while another task waits
    in receive() too (sse-starlette checks is_disconnected() while listening
    for the disconnect): the other keeps waiting and gets http.disconnect
    once the response is complete; the next receive() waits again (a
    timeout), instead of raising CancelledError at once."""
    ident = uuid.uuid4().hex[:12]
    r = httpx.get(asgi_server.url(f"/receive-cancel?id={ident}"), timeout=10)
    assert r.status_code == 200
    assert r.json() == {"first": "timeout", "second": "timeout", "other_cancelled": False}
    evs = wait_until(lambda: read_events(asgi_server, ident), 5.0, message="the other receive() to return")
    assert evs == ["other:http.disconnect"]


def test_receive_returns_disconnect_after_response_complete(asgi_server):
    ident = uuid.uuid4().hex[:12]
    r = httpx.get(asgi_server.url(f"/receive-after-response?id={ident}"), timeout=10)
    assert r.status_code == 200 and r.text == "done"

    def seen():
        evs = read_events(asgi_server, ident)
        return evs if any(e.startswith("receive") for e in evs) else None

    evs = wait_until(seen, 5.0, interval=0.1, message="receive() to return once the response was sent")
    assert evs[0] == "responding", evs
    assert evs[1].startswith("receive:http.disconnect:"), evs


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_first_receive_after_the_response_is_disconnect(asgi_server, method):
    """Even with the request's body unread (a GET's empty one included)."""
    ident = uuid.uuid4().hex[:12]
    r = httpx.request(method, asgi_server.url(f"/receive-first-after-response?id={ident}"),
                      content=b"unread" if method == "POST" else None, timeout=10)
    assert r.status_code == 200 and r.text == "done"
    evs = wait_until(lambda: read_events(asgi_server, ident) or None, 5.0, interval=0.1,
                     message="the app's receive() after its response")
    assert evs == ["receive:http.disconnect"]


def test_many_disconnects_leave_server_healthy(asgi_server):
    idents = [uuid.uuid4().hex[:12] for _ in range(10)]
    for ident in idents:
        read_first_chunk_and_close(asgi_server.port, f"/watch?id={ident}", b"c0;")

    def all_seen():
        return all(any(e.startswith("receive:http.disconnect") for e in read_events(asgi_server, i))
                   for i in idents)

    wait_until(all_seen, 8.0, interval=0.2, message="every abandoned stream to see http.disconnect")
    t0 = time.monotonic()
    assert httpx.get(asgi_server.url("/hello"), timeout=10).status_code == 200
    assert time.monotonic() - t0 < 2.0


def test_expect_100_continue(asgi_server):
    """The 100 Continue goes out when the app asks for the body."""
    body = b"x" * 1000
    s = socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10)
    try:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n"
                  b"Connection: close\r\n\r\n")
        buf = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in buf:
            assert time.monotonic() < deadline, f"no interim response: {buf!r}"
            c = s.recv(4096)
            assert c, f"closed before 100 Continue: {buf!r}"
            buf += c
        assert buf.startswith(b"HTTP/1.1 100"), buf[:200]
        s.sendall(body)
        rest = buf.partition(b"\r\n\r\n")[2]
        while True:
            c = s.recv(65536)
            if not c:
                break
            rest += c
    finally:
        s.close()
    head, _, payload = rest.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), rest[:300]
    data = json.loads(payload)
    assert data["size"] == 1000
    assert data["sha256"] == hashlib.sha256(body).hexdigest()


def test_upload_over_h2c(asgi_server):
    pytest.importorskip("h2", reason="h2 package (httpx[http2]) not installed")
    body = os.urandom(6 << 20)
    with httpx.Client(http1=False, http2=True, timeout=60) as c:
        r = c.post(asgi_server.url("/upload"), content=body)
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["size"] == len(body)
    assert data["sha256"] == hashlib.sha256(body).hexdigest()
    assert data["nonempty"] > 1


def test_small_body_is_one_event(asgi_server):
    """A small body sent with its headers reaches the app whole, in the first receive()."""
    r = httpx.post(asgi_server.url("/body-events"), content=b"x" * 1000, timeout=10)
    assert r.status_code == 200
    assert r.json()["events"] == [[1000, False, "bytes"]]


def test_expect_100_continue_chunked_upload_read_whole_keeps_the_connection(asgi_server):
    """A chunked upload behind "Expect: 100-continue" that the app receives
    to its end leaves the connection open for the next request, as under
    uvicorn (its end was not counted, so the answer said "Connection: close")."""
    heads = chunked_expect_twice(asgi_server.port, "/echo")
    assert all(h.startswith(b"http/1.1 200") and b"connection: close" not in h for h in heads), heads


@pytest.mark.parametrize("connection", [b"Connection: close\r\n", b""])
def test_expect_100_continue_app_that_does_not_read(asgi_server, connection):
    """An app that answers without receive(): no 100 Continue is sent, and the
    client, which holds its body back, gets the answer at once (as under
    uvicorn), on a kept-alive connection too (which the answer then closes:
    Go, behind Caddy's body wrapper, would otherwise wait for the body)."""
    s = socket.create_connection(("127.0.0.1", asgi_server.port), timeout=10)
    try:
        s.sendall(b"POST /hello HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n"
                  b"Expect: 100-continue\r\n" + connection + b"\r\n")
        s.settimeout(5)
        buf = b""
        while b"\r\n\r\n" not in buf:
            c = s.recv(65536)
            assert c, buf
            buf += c
    finally:
        s.close()
    assert buf.startswith(b"HTTP/1.1 200"), buf[:300]
    head = buf.lower().partition(b"\r\n\r\n")[0] + b"\r\n"
    assert b"\r\nconnection: close\r\n" in head, buf[:300]  # not kept: the body was not read
