"""An ASGI app for bench/soak.py: one path per way a response can cross the
bridge (and fail), a WebSocket echo, and /stats, which reports what would
grow if the server leaked: Python memory blocks and objects, tasks, and
streams or WebSockets still running after their client left.
"""

import asyncio
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

_running = {"feeds": 0, "ws": 0}


def _headers(ctype, length=None):
    h = [(b"content-type", ctype)]
    if length is not None:
        h.append((b"content-length", str(length).encode()))
    return h


async def _text(send, body, status=200):
    await send({"type": "http.response.start", "status": status, "headers": _headers(b"text/plain", len(body))})
    await send({"type": "http.response.body", "body": body})


async def _stats(send):
    gc.collect()
    body = json.dumps({
        "blocks": sys.getallocatedblocks(),
        "objects": len(gc.get_objects()),
        "threads": threading.active_count(),
        # less this one, and the loop thread's root task, which lives for
        # ever (caddysnake_py.asgi._root, as uvicorn's serve())
        "tasks": sum(t.get_coro().__qualname__ != "_root" for t in asyncio.all_tasks()) - 1,
        "feeds": _running["feeds"],
        "websockets": _running["ws"],
    }).encode()
    await _text(send, body)


async def _feed(receive, send):
    """An event feed that never ends by itself: only the client's leaving
    (http.disconnect, or send() raising) stops it."""
    _running["feeds"] += 1
    try:
        await send({"type": "http.response.start", "status": 200, "headers": _headers(b"text/event-stream")})
        while True:
            await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})
            await asyncio.sleep(0.01)
    finally:
        _running["feeds"] -= 1


async def _ws(receive, send):
    _running["ws"] += 1
    try:
        msg = await receive()
        assert msg["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                await send({"type": "websocket.send", "text": msg["text"]})
            else:
                await send({"type": "websocket.send", "bytes": msg["bytes"]})
    finally:
        _running["ws"] -= 1


async def app(scope, receive, send):
    kind = scope["type"]  # served with lifespan off: "http" or "websocket"
    if kind == "websocket":
        return await _ws(receive, send)
    path = scope["path"][len(scope.get("root_path", "")):]  # path includes root_path (ASGI, uvicorn)
    if path == "/hello":
        await _text(send, b"Hello, world!")
    elif path == "/echo":
        h, n, more = hashlib.sha256(), 0, True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client left
            h.update(msg["body"])
            n += len(msg["body"])
            more = msg.get("more_body", False)
        await _text(send, ("%d %s" % (n, h.hexdigest())).encode())
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": _headers(b"text/plain")})
        for _ in range(100):
            await send({"type": "http.response.body", "body": b"s" * KIB, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":  # one chunk over the zero-copy threshold
        await send({"type": "http.response.start", "status": 200,
                    "headers": _headers(b"application/octet-stream", len(BIG))})
        await send({"type": "http.response.body", "body": BIG})
    elif path == "/pathsend":
        await send({"type": "http.response.start", "status": 200,
                    "headers": _headers(b"application/octet-stream", 256 * KIB)})
        await send({"type": "http.response.pathsend", "path": _file.name})
    elif path == "/feed":
        await _feed(receive, send)
    elif path == "/raise":
        raise RuntimeError("soak: failing on purpose")
    elif path == "/raise-mid":
        await send({"type": "http.response.start", "status": 200, "headers": _headers(b"text/plain")})
        await send({"type": "http.response.body", "body": b"x" * KIB, "more_body": True})
        raise RuntimeError("soak: failing mid-stream on purpose")
    elif path == "/garbage":
        await send({"type": "http.response.start", "status": "two hundred"})
    elif path == "/stats":
        await _stats(send)
    else:
        await _text(send, b"not found", 404)
