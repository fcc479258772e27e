"""A request body the app does not read never becomes the next request on
the connection (request smuggling): Go discards a rest of up to 256 KiB and
closes the connection after the reply when more is left, as in front of
reverse_proxy. Checked on a body that begins with a whole HTTP request."""

import re
import socket

import pytest

BRIDGES = [("raw_server", "/hello"), ("asgi_server", "/hello")]


def responses(port, path, pad):
    host = b"127.0.0.1:%d" % port
    inner = b"GET /hello?smuggled=1 HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: %d\r\n\r\n" % pad
    body = inner + b"A" * pad
    outer = (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + host +
             b"\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(body))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(1.5)  # a kept connection: stop waiting once nothing more comes
    out = b""
    try:
        s.sendall(outer + body)
        while chunk := s.recv(65536):
            out += chunk
    except OSError:  # a timeout (the connection stayed open) or a reset
        pass
    finally:
        s.close()
    return re.findall(rb"HTTP/1\.1 \d{3}", out)


@pytest.mark.parametrize("pad", [100_000, 300_000], ids=["rest-under-256k", "rest-over-256k"])
@pytest.mark.parametrize("bridge", BRIDGES, ids=["wsgi", "asgi"])
def test_an_unread_body_is_not_taken_for_the_next_request(request, bridge, pad):
    server = request.getfixturevalue(bridge[0])
    assert responses(server.port, bridge[1], pad) == [b"HTTP/1.1 200"]
