"""A tiny WSGI app for the Go tests (caddysnake_test)."""


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise RuntimeError("boom from the Go test app")
    if path == "/badlen":
        start_response("200 OK", [("Set-Cookie", "leak=1"), ("Content-Length", "abc")])
        return [b"x"]
    if path == "/big":  # a last chunk large enough to be a tail (tails.go)
        body = b"t" * 100_000
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return (b for b in (body,))
    if path == "/big-over":  # a tail longer than its Content-Length: cut there
        start_response("200 OK", [("Content-Length", "60000")])
        return [b"o" * 100_000]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("201 Created", [("Content-Type", "application/octet-stream")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Script", environ["SCRIPT_NAME"])])
    return [b"hello ", environ["REQUEST_METHOD"].encode()]
