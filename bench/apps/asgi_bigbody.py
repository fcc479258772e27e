"""Large bodies over ASGI (same behaviour as wsgi_bigbody)."""

CHUNK = 64 * 1024
BLOCK = b"x" * CHUNK


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] == "POST":
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(total).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    mib = 100
    for part in scope.get("query_string", b"").decode().split("&"):
        if part.startswith("mib="):
            mib = int(part[4:])
    size = mib * 1024 * 1024
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(size).encode())]})
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
    await send({"type": "http.response.body", "body": BLOCK[:rest], "more_body": False})
