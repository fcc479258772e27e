"""Lifespan that works: startup (slow on purpose) sets state and writes
``startup-<instance>``; shutdown writes ``shutdown-<instance>``; both in
$CADDYSNAKE_LIFESPAN_DIR. GET / returns the request's state; GET /slow?<secs>
does the same after sleeping (marking ``slow-started-``/``slow-done-``); GET
/forever streams until the client leaves (an SSE feed)."""

import asyncio
import json
import os
import time
import uuid

DIR = os.environ.get("CADDYSNAKE_LIFESPAN_DIR", "")
STARTUP_DELAY = float(os.environ.get("CADDYSNAKE_STARTUP_DELAY", "1.0"))


def mark(name, text=""):
    if DIR:
        with open(os.path.join(DIR, name), "w") as f:
            f.write(text)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        instance = uuid.uuid4().hex[:12]
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await asyncio.sleep(STARTUP_DELAY)
                scope["state"]["instance"] = instance
                scope["state"]["greeting"] = "hello from startup"
                mark("startup-" + instance, repr(time.time()))
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                mark("shutdown-" + instance, repr(time.time()))
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/forever":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        while True:
            await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})
            await asyncio.sleep(0.2)
    if scope["path"] == "/slow":
        # an in-flight request: marks its start, sleeps, marks its end
        instance = scope["state"].get("instance", "?")
        mark("slow-started-" + instance, repr(time.time()))
        await asyncio.sleep(float(scope["query_string"] or b"1.5"))
        mark("slow-done-" + instance, repr(time.time()))
    body = json.dumps({"state": dict(scope.get("state", {})), "time": time.time()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
