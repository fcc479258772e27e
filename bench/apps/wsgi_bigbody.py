"""Large bodies over WSGI.

POST (any path): reads the whole request body in 64 KiB chunks, never keeping
it, and answers with its length.  GET /download?mib=N (default 100): streams N
MiB in 64 KiB chunks with a Content-Length.
"""

CHUNK = 64 * 1024
BLOCK = b"x" * CHUNK


def _download(size):
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        yield BLOCK
    if rest:
        yield BLOCK[:rest]


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        stream = environ["wsgi.input"]
        remaining = environ.get("CONTENT_LENGTH")
        total = 0
        if remaining:
            remaining = int(remaining)
            while remaining > 0:
                data = stream.read(min(CHUNK, remaining))
                if not data:
                    break
                total += len(data)
                remaining -= len(data)
        else:  # chunked: read until EOF
            while True:
                data = stream.read(CHUNK)
                if not data:
                    break
                total += len(data)
        body = str(total).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    mib = 100
    for part in environ.get("QUERY_STRING", "").split("&"):
        if part.startswith("mib="):
            mib = int(part[4:])
    size = mib * 1024 * 1024
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    return _download(size)


application = app
