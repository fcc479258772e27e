"""caddysnake_py: the Python half of caddysnake.

These modules are embedded in the caddy binary and executed at start-up by the
C shim (caddysnake.c); they are never installed with pip.

    logs    — file-like streams that write to Caddy's log (print, wsgi.errors)
    loader  — imports an app per configured handler, with reload and isolation
    wsgi    — PEP 3333: completes the environ, drives the app, streams the body

The native module ``_caddysnake`` (built into the binary) is the only way
these modules reach Go: Request.readinto/send/sendfile/abort and log().
"""

import sys


def bootstrap():
    """Called once by the C shim after every embedded module is loaded."""
    import linecache

    # Make tracebacks through this package show source lines: the modules have
    # no files on disk, so give linecache the embedded source.
    for name, mod in list(sys.modules.items()):
        if name == __name__ or name.startswith(__name__ + "."):
            src = mod.__dict__.pop("__cs_source__", None)
            if src is not None:
                lines = src.splitlines(True)
                linecache.cache[mod.__file__] = (len(src), None, lines, mod.__file__)

    from . import loader, logs

    logs.install()
    loader.activate_environment_venv()
