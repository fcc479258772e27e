"""An app without lifespan support: a lifespan scope is an error (and leaves a
marker file in $CADDYSNAKE_LIFESPAN_DIR, if set)."""

import os

DIR = os.environ.get("CADDYSNAKE_LIFESPAN_DIR", "")


async def app(scope, receive, send):
    if scope["type"] != "http":
        if DIR:
            open(os.path.join(DIR, "got-" + scope["type"]), "w").close()
        raise RuntimeError("no-lifespan-marker-unexpected-scope-" + scope["type"])
    body = b"no lifespan here; state=" + repr(sorted(scope.get("state", {}))).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
