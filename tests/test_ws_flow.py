"""Backpressure both ways (apps/ws_raw): a client that does not read slows the
app's send(); a client that floods an app that reads slowly does not make
Caddy buffer without bound."""

import socket
import struct
import threading
import time

import httpx
import pytest

from conftest import wait_until
from test_ws_support import (  # noqa: F401  (fixtures)
    OP_BINARY, OP_CLOSE, OP_TEXT, RawWS, _ws_server_holder, events, ident, parse_close, rss_kib, wait_events, ws_server,
)

MSG = 256 * 1024


def test_slow_reader_slows_the_app(ws_server):
    """The app sends 256 KiB messages in a loop to a client that reads nothing
    for 2 s: in the first second only about what fits in the socket buffers
    goes out, not thousands of messages; once the client reads, everything
    arrives intact and in order."""
    i = ident()
    c = RawWS(ws_server.port, f"/flood-send?id={i}&size={MSG}&secs=3")
    try:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        evs = wait_events(ws_server, i, lambda e: any(x.startswith("sent@1s:") for x in e), timeout=5)
        at1 = int([x for x in evs if x.startswith("sent@1s:")][0].split(":")[1])
        time.sleep(1.0)
        mid = events(ws_server, i)
        assert not any(x.startswith("sent:") for x in mid), f"the app finished while nothing was read: {mid}"
        # now drain
        received, closed = 0, None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            fin, op, payload = c.recv_frame(max(0.05, deadline - time.monotonic()))
            if op == OP_CLOSE:
                closed = parse_close(payload)
                break
            assert op == OP_BINARY and fin and len(payload) == MSG and payload == b"x" * MSG
            received += 1
    finally:
        c.close()
    evs = wait_events(ws_server, i, lambda e: any(x.startswith("sent:") for x in e))
    total = int([x for x in evs if x.startswith("sent:")][0].split(":")[1])
    assert closed == (1000, ""), closed
    assert received == total, (received, total, evs)
    # bounded: what fits in the socket buffers (a few MiB), not an unbounded queue
    assert at1 <= 64, f"{at1} sends of {MSG} bytes completed in 1 s while the client read nothing"
    assert total > at1, "the app was not resumed once the client read"


def test_small_messages_to_a_slow_reader_are_bounded(ws_server):
    """send() of small messages returns at once while little is queued (as
    under uvicorn), but not without bound: to a client that reads nothing,
    the app gets no further than the socket buffers and a 256 KiB window."""
    i = ident()
    size = 4096
    c = RawWS(ws_server.port, f"/flood-send?id={i}&size={size}&secs=2")
    try:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        evs = wait_events(ws_server, i, lambda e: any(x.startswith("sent@1s:") for x in e), timeout=5)
        at1 = int([x for x in evs if x.startswith("sent@1s:")][0].split(":")[1])
        assert 0 < at1 * size < 32 << 20, f"{at1} messages of {size} bytes sent in 1 s to a client reading nothing"
    finally:
        c.close()


def test_flooding_client_does_not_grow_memory(ws_server):
    """1 MiB messages as fast as the socket takes them, for 3 s, at an app that
    reads four messages a second: Caddy's RSS must stay bounded and the flood
    must be throttled by TCP."""
    pid = ws_server.proc.pid
    i = ident()
    c = RawWS(ws_server.port, f"/slow-recv?id={i}")
    stop = threading.Event()
    sent = [0]
    peak = [0]

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.05)

    payload = b"z" * (1 << 20)
    mask = b"\x01\x02\x03\x04"
    masked = bytes(a ^ b for a, b in zip(payload, mask * (len(payload) // 4)))
    frame = struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, len(payload)) + mask + masked
    try:
        assert wait_events(ws_server, i, lambda e: "accepted" in e)
        time.sleep(0.2)
        base = rss_kib(pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        c.sock.settimeout(0.2)
        view = memoryview(frame)
        pos = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                n = c.sock.send(view[pos:])
            except socket.timeout:
                continue
            sent[0] += n
            pos += n
            if pos == len(frame):
                pos = 0
        stop.set()
        sampler.join(5)
        peak[0] = max(peak[0], rss_kib(pid))
    finally:
        stop.set()
        c.abort()
    growth_mib = (peak[0] - base) / 1024
    sent_mib = sent[0] / (1 << 20)
    evs = wait_events(ws_server, i, lambda e: any(x.startswith("received:") for x in e), timeout=40)
    got = [x for x in evs if x.startswith("received:")][0]
    assert growth_mib < 64, f"caddy RSS grew by {growth_mib:.1f} MiB while the client flooded {sent_mib:.0f} MiB"
    # The app took ~4 messages/s: the client must have been stalled by TCP.
    assert sent_mib < 200, f"the server swallowed {sent_mib:.0f} MiB in 3 s for an app reading 4 MiB/s ({got})"
    assert httpx.get(ws_server.url("/health"), timeout=10).text == "ok"


SHARED_BLOCK = bytes(range(256)) * 256  # apps/ws_raw's SHARED_BLOCK and SHARED_TEXT
SHARED_TEXT = "h\u00e9llo w\u00f6rld \u2603 " * 3000


def shared_refs(server):
    return httpx.get(server.url("/shared-refs"), timeout=10).json()


@pytest.mark.parametrize("text", [False, True], ids=["bytes", "text"])
def test_large_messages_go_by_reference_and_come_back(ws_server, text):
    """Messages of 16 KiB or more are written from the app's own bytes or
    str (its UTF-8), not copied: they arrive intact, and every reference is
    given back, after a clean close and after a client that drops mid-flood
    (a leak leaves a refcount high, a double release low)."""
    base = shared_refs(ws_server)
    op, expected = (OP_TEXT, SHARED_TEXT.encode()) if text else (OP_BINARY, SHARED_BLOCK)
    with RawWS(ws_server.port, f"/shared?n=40&text={int(text)}") as c:
        for _ in range(40):
            fin, got_op, payload = c.recv_frame()
            assert (fin, got_op, payload == expected) == (True, op, True)
        assert c.recv_until({OP_CLOSE})[0] == OP_CLOSE
    for _ in range(3):
        with RawWS(ws_server.port, f"/shared?n=100000&text={int(text)}") as c:
            c.recv_frame()
            c.abort()
    wait_until(lambda: shared_refs(ws_server) == base, 10, message="every message reference given back")
