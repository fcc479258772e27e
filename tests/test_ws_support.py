"""Shared pieces of the WebSocket suite (tests/test_ws_*.py); holds no tests.

* ``ws_block`` / ``ws_sites``: Caddyfile ``python { module_asgi ... ws_* }`` blocks.
* ``ws_server`` (default WebSocket options) and ``ws_tuned_server``
  (ws_ping_interval 1s, ws_ping_timeout 1s, ws_compression off,
  ws_max_message_size 64KiB): the raw app ``apps/ws_raw/wsapp.py``, shared by
  the session and restarted if a test crashed it.  Test modules import the
  fixtures they use from here.
* ``RawWS``: a small raw-socket WebSocket client (handshake + RFC 6455
  framing) for what a well-behaved library refuses to do: invalid UTF-8,
  ignoring pings, dropping the TCP connection.
* ``connect``: ``websockets`` client with no proxy and the given options.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
from typing import Dict, List, Optional, Sequence, Tuple

import httpx
import pytest

from conftest import APPS_DIR, VENV_DIR, CaddyServer, _Restartable, wait_until

WS_RAW_DIR = APPS_DIR / "ws_raw"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# --------------------------------------------------------------------------
# Caddyfile
# --------------------------------------------------------------------------


def ws_block(module: str, working_dir: object, *, lifespan: Optional[str] = None,
             options: Optional[Dict[str, str]] = None, indent: str = "\t") -> str:
    lines = [f"{indent}python {{", f'{indent}\tmodule_asgi "{module}"', f'{indent}\tworking_dir "{working_dir}"',
             f'{indent}\tvenv "{VENV_DIR}"']
    if lifespan is not None:
        lines.append(f"{indent}\tlifespan {lifespan}")
    for k, v in (options or {}).items():
        lines.append(f"{indent}\t{k} {v}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def ws_sites(module: str, working_dir: object, *, prefix: bool = False, **kw) -> str:
    """A site on @PORT@ serving the app at the root (and under ``handle_path /prefix/*``)."""
    if not prefix:
        return "http://:@PORT@ {\n" + ws_block(module, working_dir, **kw) + "\n}\n"
    block = ws_block(module, working_dir, indent="\t\t", **kw)
    return ("http://:@PORT@ {\n"
            "\thandle_path /prefix/* {\n" + block + "\n\t}\n"
            "\thandle {\n" + block + "\n\t}\n"
            "}\n")


TUNED_OPTIONS = {"ws_ping_interval": "1s", "ws_ping_timeout": "1s", "ws_compression": "off",
                 "ws_max_message_size": "64KiB"}


@pytest.fixture(scope="session")
def _ws_server_holder(start_caddy, venv_dir):
    sites = ws_sites("wsapp:app", WS_RAW_DIR, prefix=True, lifespan="on")
    holder = _Restartable(lambda: start_caddy("ws-raw", sites=sites))
    yield holder
    if holder.server:
        holder.server.stop()


@pytest.fixture
def ws_server(_ws_server_holder) -> CaddyServer:
    """apps/ws_raw at the root and under /prefix, default ws_* options."""
    return _ws_server_holder.get()


@pytest.fixture(scope="session")
def _ws_tuned_holder(start_caddy, venv_dir):
    sites = ws_sites("wsapp:app", WS_RAW_DIR, lifespan="on", options=TUNED_OPTIONS)
    holder = _Restartable(lambda: start_caddy("ws-tuned", sites=sites))
    yield holder
    if holder.server:
        holder.server.stop()


@pytest.fixture
def ws_tuned_server(_ws_tuned_holder) -> CaddyServer:
    """apps/ws_raw with ws_ping_interval 1s, ws_ping_timeout 1s, ws_compression off,
    ws_max_message_size 64KiB."""
    return _ws_tuned_holder.get()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def ws_url(server: CaddyServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def connect(server: CaddyServer, path: str, **kw):
    """``websockets.asyncio.client.connect`` to the server, never via a proxy.

    Defaults: no client pings (so the tests see only what the server does),
    generous max_size, short timeouts.
    """
    from websockets.asyncio.client import connect as _connect
    kw.setdefault("proxy", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("max_size", 16 << 20)
    return _connect(ws_url(server, path), **kw)


def events(server: CaddyServer, ident: str, path: str = "/events") -> List[str]:
    r = httpx.get(server.url(path), params={"id": ident}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def wait_events(server: CaddyServer, ident: str, pred, timeout: float = 5.0, what: str = "events",
                path: str = "/events") -> List[str]:
    return wait_until(lambda: (lambda evs: evs if pred(evs) else None)(events(server, ident, path)),
                      timeout, interval=0.05, message=what)


def ident() -> str:
    return os.urandom(6).hex()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/%d/status" % pid)


def decode_scope(obj):
    """Inverse of wsapp.describe."""
    if isinstance(obj, dict):
        if set(obj) == {"$b"}:
            return obj["$b"].encode("latin-1")
        if set(obj) == {"$t"}:
            return tuple(decode_scope(x) for x in obj["$t"])
        return {k: decode_scope(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_scope(x) for x in obj]
    return obj


# --------------------------------------------------------------------------
# a raw-socket WebSocket client
# --------------------------------------------------------------------------


class HandshakeFailed(AssertionError):
    def __init__(self, status: Optional[int], head: str, body: bytes):
        super().__init__(f"handshake failed: {head[:300]!r} body={body[:200]!r}")
        self.status, self.head, self.body = status, head, body


class RawWS:
    """Minimal RFC 6455 client over a plain socket; frames are sent as given."""

    def __init__(self, port: int, path: str = "/", *, headers: Sequence[Tuple[str, str]] = (),
                 timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.last_rsv1 = False
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        for k, v in headers:
            req += f"{k}: {v}\r\n"
        self.sock.sendall((req + "\r\n").encode("latin-1"))
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        lines = self.head.split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            self.sock.close()
            raise HandshakeFailed(self.status, self.head, self.buf)
        expect = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        assert self.headers.get("sec-websocket-accept") == expect, self.head

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(remaining)
        c = self.sock.recv(65536)
        if not c:
            raise ConnectionError("server closed the TCP connection")
        self.buf += c

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> None:
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", b0, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _xor(payload, mask)
        self.sock.sendall(head + mask + masked)

    def send_close(self, code: Optional[int] = None, reason: str = "") -> None:
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
        self.send_frame(OP_CLOSE, payload)

    def recv_frame(self, timeout: Optional[float] = None) -> Tuple[bool, int, bytes]:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < 2:
            self._fill(deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        n, pos = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill(deadline)
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill(deadline)
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < pos + n:
            self._fill(deadline)
        payload, self.buf = self.buf[pos:pos + n], self.buf[pos + n:]
        self.last_rsv1 = bool(b0 & 0x40)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_until(self, opcodes, timeout: float = 10.0, answer_pings: bool = False) -> Tuple[int, bytes, List[int]]:
        """Read frames until one with an opcode in ``opcodes``; returns it and the opcodes seen before."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            fin, op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op in opcodes:
                return op, payload, seen
            seen.append(op)
            if answer_pings and op == OP_PING:
                self.send_frame(OP_PONG, payload)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Drop the connection with a TCP RST (no close frame)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _xor(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ m).to_bytes(n, "big")


def parse_close(payload: bytes) -> Tuple[Optional[int], str]:
    if len(payload) < 2:
        return None, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


def json_loads(s):
    return json.loads(s)
