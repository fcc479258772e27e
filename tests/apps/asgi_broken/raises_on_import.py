"""An ASGI module that fails while being imported."""


def _configure():
    raise RuntimeError("caddysnake-asgi-import-boom-marker")


_configure()


async def app(scope, receive, send):  # never reached
    pass
