"""Request bodies the app cannot use. One it does not read never becomes the
next request on the connection (request smuggling): Go discards a rest of up
to 256 KiB and closes the connection after the reply when more is left, as
in front of reverse_proxy; checked on a body that begins with a whole HTTP
request. A malformed chunked body is the client's error: a 400."""

import re
import socket

import pytest

from conftest import raw_request

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


# ---------------------------------------------------------------- malformed bodies


def post_malformed(port, path):
    """A chunked body whose first chunk size is not hex."""
    head = (b"POST " + path + b" HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
    return raw_request(port, head + b"zz\r\n{\"a\": 1}\r\n0\r\n\r\n")


@pytest.mark.parametrize("bridge", [("raw_server", b"/echo"), ("asgi_server", b"/echo")], ids=["wsgi", "asgi"])
def test_a_malformed_chunked_body_is_a_400(request, bridge):
    """The client broke the chunked encoding: a 400, with a log line saying
    so, not a client disconnect (the app is told its read failed, and its
    answer is not sent) nor a 500."""
    server = request.getfixturevalue(bridge[0])
    mark = server.log_mark()
    resp = post_malformed(server.port, bridge[1])
    assert resp.status == 400, resp.raw[:300]
    log = server.wait_for_log("malformed request body", "invalid byte in chunk length", since=mark)
    assert "Traceback" not in log, log[-2000:]
