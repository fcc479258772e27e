"""A plain WSGI hello, served next to busy_asgi in the same Caddy."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
