"""A module whose import fails: the error must surface in `caddy validate`/`run`."""


def _explode():
    raise RuntimeError("caddysnake-import-boom-marker")


_explode()


def app(environ, start_response):  # never reached
    start_response("200 OK", [])
    return [b"unreachable"]
