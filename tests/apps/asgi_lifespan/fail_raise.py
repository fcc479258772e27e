"""Startup raises after receiving lifespan.startup."""


def connect_database():
    raise RuntimeError("startup-raise-marker-4343")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        msg = await receive()
        assert msg["type"] == "lifespan.startup"
        connect_database()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"should never serve"})
