"""An app that ends the lifespan scope by returning, as many framework-free
apps do (``if scope["type"] != "http": return``), or, with
CADDYSNAKE_LIFESPAN_RETURN=after-startup, by returning once it has answered
startup. Each lifespan message it receives leaves a marker file in
$CADDYSNAKE_LIFESPAN_DIR."""

import os

DIR = os.environ.get("CADDYSNAKE_LIFESPAN_DIR", "")
AFTER_STARTUP = os.environ.get("CADDYSNAKE_LIFESPAN_RETURN") == "after-startup"


def mark(name):
    if DIR:
        open(os.path.join(DIR, name), "w").close()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        mark("got-lifespan")
        if AFTER_STARTUP:
            message = await receive()
            mark("got-" + message["type"])
            scope["state"]["ready"] = True
            await send({"type": "lifespan.startup.complete"})
        return
    body = b"returned from lifespan; state=" + repr(sorted(scope.get("state", {}))).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
