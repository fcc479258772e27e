"""A framework-free ASGI app for the WebSocket tests (tests/test_ws_*.py).

WebSocket routes (on scope["path"], minus root_path):

  /scope              accept, send the scope as JSON (see ``describe``), close 1000
  /echo               echo every message (text as text, bytes as bytes) until the
                      client leaves; ``?id=`` records "disconnect:<code>:<reason>"
  /echo-len           like /echo but answers "<len>:<sha256>" (large messages)
  /accept?sub=X&hdr=1 accept with subprotocol X (and extra headers when hdr=1);
                      records what accept/send did: "accept:ok", "accept:<Exc>: msg"
  /close-before-accept   websocket.close before accept (-> HTTP 403)
  /return-before-accept  returns without accepting (-> HTTP 403)
  /raise-before-accept   raises before accepting (-> HTTP 500)
  /deny?status=N      websocket.http.response.* with a body in two chunks
  /close?code=&reason=   accept, wait for one message, close with code/reason
  /raise              accept, wait for one message, raise  (-> 1011)
  /return             accept, send "bye", return           (-> 1000)
  /flood-send?id=&size=&secs=  accept and send ``size``-byte messages as fast
                      as send() allows for ``secs`` seconds; records "sent@1s:<n>"
                      (sends completed after one second) and "sent:<n>"
  /slow-recv?id=      accept, then receive one message every 0.25 s; records
                      "received:<n>" when the client leaves
  /send-after-close?id=  accept, wait for the disconnect, then send(): records
                      "send:<exception>:oserror=<bool>" and what receive() gives next
  /chunks?id=         accept, receive messages and record their sizes/types
  /shared?n=&text=1   accept, send SHARED_BLOCK (or SHARED_TEXT) n times, close 1000

HTTP routes:

  /events?id=         {"events": [...]} recorded for that id
  /health             "ok"
  /pid                the process id (the Caddy process: Python is embedded)
  /shared-refs        {"bytes": n, "text": n}: the refcounts of SHARED_BLOCK and
                      SHARED_TEXT (large messages go to Go by reference)

Every loop is bounded in time so a misbehaving bridge cannot keep tasks alive.
"""

import asyncio
import gc
import hashlib
import sys
import json
import os
import time
from urllib.parse import parse_qs

EVENTS = []  # [(ident, event)]
SHARED_BLOCK = bytes(range(256)) * 256  # 64 KiB
SHARED_TEXT = "h\u00e9llo w\u00f6rld \u2603 " * 3000  # ~64 KiB of UTF-8
FLOOD_SECONDS = 4.0
MAX_SECONDS = 30.0


def record(ident, event):
    if ident:
        EVENTS.append((ident, event))


def qs(scope):
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def describe(obj):
    """JSON-able view keeping bytes and tuples distinguishable."""
    if isinstance(obj, bytes):
        return {"$b": obj.decode("latin-1")}
    if isinstance(obj, tuple):
        return {"$t": [describe(x) for x in obj]}
    if isinstance(obj, list):
        return [describe(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): describe(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return {"$repr": repr(obj)}


async def respond(send, status, body, content_type=b"text/plain; charset=utf-8"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def http_app(scope, receive, send):
    path = scope["path"][len(scope.get("root_path", "")):] or "/"
    q = qs(scope)
    if path == "/events":
        evs = [e for i, e in EVENTS if i == q.get("id")]
        await respond(send, 200, json.dumps({"events": evs}).encode(), b"application/json")
    elif path == "/health":
        await respond(send, 200, b"ok")
    elif path == "/pid":
        await respond(send, 200, str(os.getpid()).encode())
    elif path == "/shared-refs":
        gc.collect()  # a send() that raised leaves a cycle holding its message
        refs = {"bytes": sys.getrefcount(SHARED_BLOCK), "text": sys.getrefcount(SHARED_TEXT)}
        await respond(send, 200, json.dumps(refs).encode(), b"application/json")
    else:
        await respond(send, 404, b"not found")


async def lifespan(scope, receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            scope["state"]["ws_startup"] = "ws-startup-done"
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def connect(receive):
    msg = await receive()
    assert msg["type"] == "websocket.connect", msg
    return msg


async def accept(send, **kw):
    await send({"type": "websocket.accept", **kw})


async def recv_until_disconnect(receive, ident, on_message=None):
    deadline = time.monotonic() + MAX_SECONDS
    while time.monotonic() < deadline:
        try:
            msg = await asyncio.wait_for(receive(), max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            record(ident, "timeout")
            return None
        if msg["type"] == "websocket.disconnect":
            record(ident, "disconnect:%s:%s" % (msg.get("code"), msg.get("reason", "")))
            return msg
        if on_message is not None:
            await on_message(msg)
    return None


async def ws_app(scope, receive, send):
    path = scope["path"][len(scope.get("root_path", "")):] or "/"
    q = qs(scope)
    ident = q.get("id")

    if path == "/scope":
        await connect(receive)
        await accept(send)
        await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
        await send({"type": "websocket.close", "code": 1000})

    elif path in ("/echo", "/echo-len"):
        await connect(receive)
        await accept(send)
        record(ident, "accepted")

        async def echo(msg):
            text, data = msg.get("text"), msg.get("bytes")
            if path == "/echo-len":
                raw = text.encode("utf-8") if text is not None else data
                kind = "text" if text is not None else "bytes"
                await send({"type": "websocket.send",
                            "text": "%s:%d:%s" % (kind, len(raw), hashlib.sha256(raw).hexdigest())})
            elif text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": data})

        await recv_until_disconnect(receive, ident, echo)

    elif path == "/accept":
        await connect(receive)
        kw = {}
        if "sub" in q:
            kw["subprotocol"] = q["sub"]
        if q.get("hdr") == "1":
            kw["headers"] = [(b"x-ws-extra", b"extra-value"), (b"set-cookie", b"wscookie=1; Path=/")]
        try:
            await accept(send, **kw)
            await send({"type": "websocket.send", "text": "accepted:%s" % (q.get("sub"),)})
            record(ident, "accept:ok")
        except Exception as exc:  # the point of this route: report it
            record(ident, "accept:%s: %s" % (type(exc).__name__, exc))
            return
        await recv_until_disconnect(receive, ident)

    elif path == "/close-before-accept":
        await connect(receive)
        await send({"type": "websocket.close", "code": 1000})
        record(ident, "closed")

    elif path == "/return-before-accept":
        await connect(receive)

    elif path == "/raise-before-accept":
        await connect(receive)
        raise RuntimeError("raised before accept (test)")

    elif path == "/deny":
        # ?cl=: declare that Content-Length (the body is 17 bytes); ?body=0:
        # return after the start, without the body the spec requires.
        await connect(receive)
        status = int(q.get("status", "418"))
        headers = [(b"content-type", b"text/plain"), (b"x-denied", b"by-app")]
        if "cl" in q:
            headers.append((b"content-length", q["cl"].encode()))
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        if q.get("body") == "0":
            return
        await send({"type": "websocket.http.response.body", "body": b"denied ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"by the app"})
        record(ident, "denied")

    elif path == "/send-after-own-close":
        # The app's mistake: a message after its own close (?deny=1: after
        # its whole denial response); records what send() raised.
        await connect(receive)
        if q.get("deny") == "1":
            await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"no"})
            message = {"type": "websocket.accept"}
        else:
            await accept(send)
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            message = {"type": "websocket.send", "text": "x"}
        try:
            await send(message)
        except Exception as exc:
            record(ident, "send:%s:oserror=%s" % (type(exc).__name__, isinstance(exc, OSError)))
            raise

    elif path == "/close":
        await connect(receive)
        await accept(send)
        msg = await asyncio.wait_for(receive(), MAX_SECONDS)
        record(ident, "got:%s" % msg["type"])
        await send({"type": "websocket.close", "code": int(q.get("code", "1000")), "reason": q.get("reason", "")})
        record(ident, "closed")

    elif path == "/raise":
        await connect(receive)
        await accept(send)
        await asyncio.wait_for(receive(), MAX_SECONDS)
        raise RuntimeError("app raised after accept (test)")

    elif path == "/return":
        await connect(receive)
        await accept(send)
        await send({"type": "websocket.send", "text": "bye"})

    elif path == "/flood-send":
        await connect(receive)
        await accept(send)
        size = int(q.get("size", str(256 * 1024)))
        secs = float(q.get("secs", str(FLOOD_SECONDS)))
        payload = b"x" * size
        count = [0]

        async def report():
            await asyncio.sleep(1.0)
            record(ident, "sent@1s:%d" % count[0])

        reporter = asyncio.ensure_future(report())
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < secs:
                await asyncio.wait_for(send({"type": "websocket.send", "bytes": payload}), MAX_SECONDS)
                count[0] += 1
        except asyncio.TimeoutError:
            record(ident, "send-blocked")
        except Exception as exc:
            record(ident, "send-error:%s" % type(exc).__name__)
        await reporter
        record(ident, "sent:%d" % count[0])
        try:
            await send({"type": "websocket.close", "code": 1000})
        except Exception:
            pass

    elif path == "/slow-recv":
        await connect(receive)
        await accept(send)
        record(ident, "accepted")
        n, nbytes = 0, 0
        deadline = time.monotonic() + MAX_SECONDS
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(receive(), MAX_SECONDS)
            if msg["type"] == "websocket.disconnect":
                record(ident, "disconnect:%s:" % msg.get("code"))
                break
            n += 1
            nbytes += len(msg.get("bytes") or b"") + len(msg.get("text") or "")
            await asyncio.sleep(0.25)
        record(ident, "received:%d:%d" % (n, nbytes))

    elif path == "/idle-timeout":
        # A receive() given up after a timeout (no message yet) must not
        # spoil the next one: it gets the client's message.
        await connect(receive)
        await accept(send)
        try:
            await asyncio.wait_for(receive(), 0.2)
            record(ident, "early")
        except asyncio.TimeoutError:
            record(ident, "timeout")
        await send({"type": "websocket.send", "text": "go"})
        msg = await asyncio.wait_for(receive(), 5)
        await send({"type": "websocket.send", "text": "got:" + msg.get("text", "?")})
        await send({"type": "websocket.close", "code": 1000})

    elif path == "/send-after-close":
        await connect(receive)
        await accept(send)
        record(ident, "accepted")
        msg = await recv_until_disconnect(receive, ident)
        if msg is not None:
            try:
                await send({"type": "websocket.send", "text": "too late"})
                record(ident, "send:ok")
            except Exception as exc:
                record(ident, "send:%s:oserror=%s" % (type(exc).__name__, isinstance(exc, OSError)))
            again = await asyncio.wait_for(receive(), 5)
            record(ident, "receive-again:%s:%s" % (again["type"], again.get("code")))

    elif path == "/chunks":
        await connect(receive)
        await accept(send)

        async def note(msg):
            kind = "text" if msg.get("text") is not None else "bytes"
            raw = msg["text"].encode() if kind == "text" else msg["bytes"]
            record(ident, "%s:%d" % (kind, len(raw)))
            await send({"type": "websocket.send", "text": "ack"})

        await recv_until_disconnect(receive, ident, note)

    elif path == "/shared":
        await connect(receive)
        await accept(send)
        msg = {"type": "websocket.send", "text": SHARED_TEXT} if q.get("text") == "1" \
            else {"type": "websocket.send", "bytes": SHARED_BLOCK}
        t0 = time.monotonic()
        try:
            for _ in range(int(q.get("n", "16"))):
                await send(msg)
                if time.monotonic() - t0 > MAX_SECONDS:
                    break
            await send({"type": "websocket.close", "code": 1000})
        except OSError:
            pass  # the client left

    else:
        await connect(receive)
        await send({"type": "websocket.close", "code": 1000})


async def app(scope, receive, send):
    if scope["type"] == "http":
        await http_app(scope, receive, send)
    elif scope["type"] == "websocket":
        await ws_app(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
