"""Startup reports lifespan.startup.failed with a message."""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        msg = await receive()
        assert msg["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": "startup-failed-marker-4242: db unreachable"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"should never serve"})
